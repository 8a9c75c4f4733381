//! tcp-track's kernel programs.
//!
//! Thin by design: each hook (`xdp`, `tc`) turns its context into a
//! `Packet` (`packet`); `fast` accounts the common frame (an ACK or data
//! of an established flow) through the shared fast path, and at XDP drops
//! the bare RST the policy judges forged through the shared RST fast path,
//! both inline in the hook; any other frame the hook hands by a tail call
//! (`maps::FULL_XDP`, `maps::FULL_TC`) to its full path
//! (`tcp_track_xdp_full`, `tcp_track_tc_full`), where `track::observe`
//! hands it to the shared logic (`tcp_track_common::track`: parser, flow
//! tables' logic, state machine) with the kernel as its driver: the clock,
//! the RST policy, the ring buffer and the per-CPU counters. `maps` holds the maps and the flow
//! store over them. `reference` is the benchmark's floor (parse, one LRU
//! lookup and update), never attached. Every path ends in the hook's "let it through" verdict
//! (XDP_PASS, TC "next"), except XDP's for a RST the configured policy
//! judges forged (XDP_DROP). A hook whose tail call finds no program (a
//! daemon that never filled the slot) lets the frame through untracked.
#![no_std]
#![no_main]
// Single packet loads at unaligned offsets (packet.rs).
#![feature(asm_experimental_arch)]

mod fast;
mod maps;
mod packet;
mod reference;
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
