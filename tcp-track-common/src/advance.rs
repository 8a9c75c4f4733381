//! Fields of a flow record that only move forward, updated without a lock
//! by every CPU that steps the flow (see `flow::FlowRecord` for which fields
//! and why).
//!
//! A plain check-then-write (`if after(to, *f) { *f = to }`) run on two CPUs
//! at once can move the field backwards: both read the old value, the CPU
//! with the further value writes first, the other overwrites it with its
//! nearer one. Here the write is a compare-and-swap from the value the
//! check was made against, so a field only ever takes a value that was
//! further than the one it replaced: it never goes backwards, whoever runs
//! at the same time. In BPF the compare-and-swap is the `BPF_ATOMIC |
//! BPF_CMPXCHG` instruction on a 32-bit word (BPF ISA v3 with 32-bit
//! subregisters, Linux 5.12; the object is built with `-C target-cpu=v3`:
//! `xtask/src/bpf_toolchain.rs`), which the JIT turns into `lock cmpxchg`
//! on x86-64 and an LSE or LL/SC sequence on arm64.
//!
//! Rust's `core` for the BPF target offers no compare-and-swap (its target
//! spec says `atomic-cas: false` and no atomics narrower than 64 bits), so
//! in BPF `cas` is
//! one instruction of inline assembly; on the host it is `AtomicU32`'s. The
//! update logic around it (`tcp_track_advance`) is one piece of code for
//! both.
//!
//! The retry loop is bounded (the verifier accepts no unbounded loop): a
//! compare-and-swap fails only when another CPU wrote the field since it
//! was read, and the loop then looks again whether the new value is still
//! behind. After `TRIES` failures in a row (as many writes by other CPUs,
//! each itself an advance, inside this one update) the advance is given
//! up: the field is then behind this segment but not behind anything it
//! held before, and the next segment of the flow moves it on. With two
//! writers a second failure already needs the other CPU to write twice
//! while this one runs a handful of instructions.
//!
//! The host steps a flow on one thread at a time: there the same function
//! is a load, a compare and an uncontended compare-and-swap, and behaves
//! exactly like the plain check-then-write.

use crate::seq::after;

/// Compare-and-swap attempts per update.
const TRIES: u32 = 4;

/// `*field = new` if it holds `expected`, in one atomic step; the value it
/// held either way.
///
/// # Safety
/// `field` is valid and 4-byte aligned for the call; other CPUs access it
/// only atomically or with plain aligned loads and stores of the whole word.
#[cfg(target_arch = "bpf")]
#[inline(always)]
pub(crate) unsafe fn cas(field: *mut u32, expected: u32, new: u32) -> u32 {
    let mut r0 = expected as u64;
    // BPF_STX | BPF_ATOMIC | BPF_W, imm BPF_CMPXCHG: compares w0 with the
    // word at `field`, stores `new` if equal, loads the old word into w0
    // (zero-extended). A full barrier.
    // SAFETY: the caller's.
    unsafe {
        core::arch::asm!(
            "w0 = cmpxchg32_32({p} + 0, w0, {n})",
            p = in(reg) field,
            n = in(wreg) new,
            inout("r0") r0,
            options(nostack, preserves_flags),
        )
    };
    r0 as u32
}

#[cfg(not(target_arch = "bpf"))]
#[inline(always)]
pub(crate) unsafe fn cas(field: *mut u32, expected: u32, new: u32) -> u32 {
    use core::sync::atomic::{AtomicU32, Ordering::Relaxed};
    // SAFETY: the caller's.
    let cell = unsafe { AtomicU32::from_ptr(field) };
    match cell.compare_exchange(expected, new, Relaxed, Relaxed) {
        Ok(old) | Err(old) => old,
    }
}

/// `tcp_track_advance` modes: what the new value of a field is.
/// The later of the field and `to`, in sequence space.
const SEQ: u32 = 0;
/// `to` whatever the field holds, on the first attempt (a field not yet
/// set); `SEQ` on the next ones, against a value another CPU wrote.
const SET_THEN_SEQ: u32 = 1;
/// The larger of the field and `to`, unsigned.
const MAX: u32 = 2;
/// The field plus `to`, wrapping.
const ADD: u32 = 3;
/// The field with the bits of `to` set.
const OR: u32 = 4;
/// The field with the bits of `to` cleared.
const AND_NOT: u32 = 5;

/// Replace `*field` by what `mode` makes of it and `to`, with a
/// compare-and-swap from the value that was judged; 1 if this call wrote,
/// 0 if the field needed no change (or the update was given up, see the
/// module's notes).
///
/// In BPF this is a *global* function (exported by name; see
/// `xtask/src/bpf_toolchain.rs`), as `state::tally`'s is: the verifier
/// checks its retry loop once, on its own, and each call site sees one
/// unknown result instead of every path through the loop (inlined at each
/// of the state machine's call sites, the loop took the XDP program past
/// the verifier's million instructions). A global function's pointer may
/// be NULL as far as the verifier knows, hence the check. The callers
/// (`seq`, `max`, ...) look first, inline, whether there is anything to
/// write: most segments move nothing forward, and they pay no call.
#[cfg_attr(target_arch = "bpf", no_mangle)]
#[inline(never)]
extern "C" fn tcp_track_advance(field: *mut u32, to: u32, mode: u32) -> u32 {
    if field.is_null() {
        return 0;
    }
    // SAFETY: not NULL; the callers pass a `&mut u32` (valid, aligned).
    // Other CPUs touch a record's fields only through this function or
    // with whole-word loads and stores (see `flow::FlowRecord`).
    let mut current = unsafe { field.read_volatile() };
    let mut force = mode == SET_THEN_SEQ;
    let mut i = 0;
    while i < TRIES {
        let new = if force {
            to
        } else if mode == MAX {
            if to <= current {
                return 0;
            }
            to
        } else if mode == ADD {
            current.wrapping_add(to)
        } else if mode == OR {
            current | to
        } else if mode == AND_NOT {
            current & !to
        } else {
            if !after(to, current) {
                return 0;
            }
            to
        };
        // SAFETY: as above.
        let old = unsafe { cas(field, current, new) };
        if old == current {
            return 1;
        }
        // Another CPU wrote it meanwhile: its value counts as set.
        current = old;
        force = false;
        i += 1;
    }
    0
}

/// Move the sequence number `*field` forward to `to` if `to` comes after it
/// (RFC 9293 §3.4 order); true if it did.
#[inline(always)]
pub fn seq(field: &mut u32, to: u32) -> bool {
    after(to, *field) && tcp_track_advance(field, to, SEQ) != 0
}

/// As `seq`, but set `*field` to `to` unconditionally when `unset` (the
/// field holds no value yet): the first write wins over nothing, and one
/// from another CPU meanwhile is then advanced on as usual.
#[inline(always)]
pub fn seq_or_set(field: &mut u32, to: u32, unset: bool) -> bool {
    if unset {
        tcp_track_advance(field, to, SET_THEN_SEQ) != 0
    } else {
        seq(field, to)
    }
}

/// Raise the unsigned `*field` to `to` if `to` is larger; true if it did.
#[inline(always)]
pub fn max(field: &mut u32, to: u32) -> bool {
    to > *field && tcp_track_advance(field, to, MAX) != 0
}

/// Add `delta` to `*field` (wrapping), so that two CPUs adding at once both
/// count; true unless given up.
#[inline(always)]
pub fn add(field: &mut u32, delta: u32) -> bool {
    tcp_track_advance(field, delta, ADD) != 0
}

/// Set the bits of `bits` in `*field`, whatever other CPUs do to its
/// other bits meanwhile; true unless given up.
#[inline(always)]
pub fn set_bits(field: &mut u32, bits: u32) -> bool {
    tcp_track_advance(field, bits, OR) != 0
}

/// Clear the bits of `bits` in `*field`, as `set_bits` sets them.
#[inline(always)]
pub fn clear_bits(field: &mut u32, bits: u32) -> bool {
    tcp_track_advance(field, bits, AND_NOT) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_moves_forward_only_and_wraps() {
        let mut f = u32::MAX - 1;
        assert!(seq(&mut f, 3), "3 is after 2^32 - 2");
        assert_eq!(f, 3);
        assert!(!seq(&mut f, u32::MAX - 1), "behind: unchanged");
        assert!(!seq(&mut f, 3), "equal: unchanged");
        assert_eq!(f, 3);
    }

    #[test]
    fn seq_or_set_sets_an_unset_field_whatever_it_holds() {
        let mut f = 1000;
        assert!(seq_or_set(&mut f, 10, true));
        assert_eq!(f, 10);
        assert!(!seq_or_set(&mut f, 5, false));
        assert_eq!(f, 10);
    }

    #[test]
    fn max_is_unsigned_and_add_wraps() {
        let mut f = 5;
        assert!(max(&mut f, 0x8000_0000));
        assert!(!max(&mut f, 7));
        assert_eq!(f, 0x8000_0000);
        add(&mut f, 0x8000_0001);
        assert_eq!(f, 1);
    }

    #[test]
    fn bits_are_set_and_cleared_alone() {
        let mut f = 0b1001;
        assert!(set_bits(&mut f, 0b0110));
        assert_eq!(f, 0b1111);
        assert!(clear_bits(&mut f, 0b0011));
        assert_eq!(f, 0b1100);
    }

    /// Two threads advancing one field with interleaved values: every value
    /// a reader sees is at or after the one it saw before, and the field
    /// ends at the furthest value written.
    #[test]
    fn concurrent_advances_never_go_backwards() {
        use std::sync::atomic::{AtomicBool, AtomicU32 as A, Ordering::Relaxed};
        let field = A::new(0);
        let done = AtomicBool::new(false);
        let steps = 200_000u32;
        std::thread::scope(|s| {
            let (field, done) = (&field, &done);
            let reader = s.spawn(move || {
                let (mut last, mut reads) = (0, 0u64);
                while !done.load(Relaxed) {
                    let now = field.load(Relaxed);
                    assert!(!after(last, now), "went backwards: {last} then {now}");
                    last = now;
                    reads += 1;
                }
                reads
            });
            let writers: Vec<_> = (0..2u32)
                .map(|t| {
                    s.spawn(move || {
                        for i in 0..steps {
                            // Thread 0 writes even values, thread 1 odd ones.
                            // SAFETY: every access to `field` is atomic.
                            seq(unsafe { &mut *field.as_ptr() }, 2 * i + t);
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            done.store(true, Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(field.load(Relaxed), 2 * (steps - 1) + 1);
    }
}
