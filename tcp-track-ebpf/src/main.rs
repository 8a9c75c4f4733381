//! tcp-track's kernel programs.
//!
//! Thin by design: each hook turns its context into a `Packet`, and
//! `track::observe` parses it with the shared parser and updates the shared
//! flow maps. Every path ends in the hook's "let it through" verdict
//! (XDP_PASS, TC "next"): a tracker never breaks traffic by accident.
#![no_std]
#![no_main]
// Single packet loads at unaligned offsets (packet.rs).
#![feature(asm_experimental_arch)]

mod maps;
mod packet;
mod tc;
mod track;
mod xdp;

/// Never reached: nothing in these programs can panic (no indexing without
/// `get`, no unwrap, wrapping arithmetic), and the verifier would reject a
/// program that could loop here.
#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
