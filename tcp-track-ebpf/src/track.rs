//! The glue between a hook and the shared logic: the clock, the RST policy,
//! the per-CPU scratch slot, and the events and counters the shared logic
//! (`tcp_track_common::track::observe`) reports, into the ring buffer and
//! the per-CPU counters.
//!
//! Stack budget: BPF gives a call chain 512 bytes in all. The segment and a
//! fresh flow record live in the per-CPU scratch slot instead of on the
//! stack, and the big pieces (parser, table logic, state machine, event
//! builder) are separate subprograms (see `tcp_track_common::table`) whose
//! frames are not live at the same time.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_jiffies64, bpf_ktime_get_ns},
};
use tcp_track_common::{
    counters,
    event::{ConnEnd, FlowEvent, EVENT_CONN_END, HOOK_XDP},
    flow::FlowRecord,
    guard::RST_POLICY_OBSERVE,
    parse::{Packet, Segment, FAMILY_IPV4},
    state::Outcome,
    table::{account, Driver, FlowKey, Seen},
    track::{self, Observed},
};

use crate::maps::{all_strict, count, CLOCK, EVENTS, LIBERAL_ANY, LIBERAL_IFACES, RST_POLICY, SCRATCH, V4, V6};

/// Unread bytes in the event ring past which a submit wakes the daemon
/// (an eighth of the 1 MiB ring: about 1,800 events).
const WAKE_AT: u64 = 128 * 1024;

/// Parse one frame seen by `HOOK` (`event::HOOK_*`) and account it to its
/// flow in the tables of `FAMILY`. Never fails: a frame that is not TCP,
/// or that we cannot account, is counted and left alone.
///
/// One full path per hook and family, each a program of its own: the
/// verifier allows a program a million instructions walked, and both
/// families' table logic and state machine in one program came to more.
#[inline(always)]
pub fn observe<P: Packet, const HOOK: u8, const FAMILY: u8>(pkt: &P, ifindex: u32) -> Observed {
    // A one-slot per-CPU array always has its slot; if not, track nothing.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Observed::Untracked;
    };
    // SAFETY: per-CPU memory, used by this program run only (BPF programs
    // do not nest on a CPU for these hooks).
    let scratch = unsafe { &mut *scratch };
    let mut cx = match track::prepare(pkt, scratch, Kernel::<HOOK>, ifindex, HOOK) {
        Ok(cx) => cx,
        Err(observed) => return observed,
    };
    // The hook chose this family's program (`parse::frame_family`), and
    // the parse agrees; were it not so, the frame goes untracked rather
    // than into the other family's logic, which is another program's.
    if scratch.seg.family != FAMILY {
        return Observed::Untracked;
    }
    let verdict = if FAMILY == FAMILY_IPV4 { account(&mut V4, scratch, &mut cx) } else { account(&mut V6, scratch, &mut cx) };
    verdict.into()
}

/// Whether `ifindex` is a liberal interface (`LIBERAL_IFACES`): 1 or 0.
///
/// A *global* function (exported by name: see `xtask/src/bpf_toolchain.rs`),
/// so that to the verifier its result is one unknown value on every path,
/// rather than a lookup that splits each path in two (liberal, strict)
/// through the rest of the program: inlined, it took the XDP program past
/// the verifier's million instructions.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn tcp_track_liberal(ifindex: u32) -> u32 {
    match LIBERAL_ANY.get(0) {
        Some(&any) if any != 0 => {}
        _ => return 0,
    }
    // SAFETY: a read-only lookup with a key on the stack.
    unsafe { LIBERAL_IFACES.get(&ifindex) }.is_some() as u32
}

/// `Driver::now_cheap` in the kernel, for the full path and the fast one
/// (`fast`): the precise clock at most once per tick and CPU.
/// `bpf_jiffies64` is inlined by the JIT (a load), `bpf_ktime_get_ns` costs
/// about 40 ns on a VM (kvm-clock). The value is at most one tick old (1 to
/// 10 ms, by CONFIG_HZ), and never ahead of `now` on this CPU.
#[inline(always)]
pub fn now_cheap() -> u64 {
    // SAFETY: no preconditions.
    let tick = unsafe { bpf_jiffies64() };
    let Some(clock) = CLOCK.get_ptr_mut(0) else { return unsafe { bpf_ktime_get_ns() } };
    // SAFETY: per-CPU memory, used by this program run only.
    let clock = unsafe { &mut *clock };
    if clock.jiffies != tick || clock.ns == 0 {
        // SAFETY: no preconditions.
        clock.ns = unsafe { bpf_ktime_get_ns() };
        clock.jiffies = tick;
    }
    clock.ns
}

/// The kernel as the shared logic's driver, for one hook. The hook is part
/// of the type so that egress, which never drops, gets its own copy of the
/// table logic without the drop rule (see `tcp_track_common::table`).
struct Kernel<const HOOK: u8>;

impl<const HOOK: u8> Driver for Kernel<HOOK> {
    #[inline(always)]
    fn now(&mut self) -> u64 {
        // SAFETY: no preconditions.
        unsafe { bpf_ktime_get_ns() }
    }

    #[inline(always)]
    fn now_cheap(&mut self) -> u64 {
        now_cheap()
    }

    #[inline(always)]
    fn rst_policy(&mut self, _ifindex: u32) -> u8 {
        if HOOK != HOOK_XDP {
            return RST_POLICY_OBSERVE;
        }
        RST_POLICY.load()
    }

    #[inline(always)]
    fn liberal(&mut self, ifindex: u32) -> bool {
        // No interface liberal (the usual case, `LIBERAL_ANY`): no call of
        // the global function, which costs about 8 ns.
        if all_strict() {
            return false;
        }
        tcp_track_liberal(ifindex) & 1 != 0
    }

    #[inline(always)]
    fn count(&mut self, counter: u32) {
        count(counter);
    }

    #[inline(always)]
    fn event(&mut self, kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        // Reserve and fill in place: a FlowEvent on the stack would not fit
        // the 512-byte BPF stack next to everything else.
        match EVENTS.reserve::<FlowEvent>(0) {
            Some(mut entry) => {
                entry.write(FlowEvent::new(kind, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook));
                // No wake-up per event: the daemon drains on a short timer,
                // and is woken early only when the ring fills past WAKE_AT.
                submit(entry);
            }
            None => count(counters::EVENTS_LOST),
        }
    }

    #[inline(always)]
    fn conn_end(&mut self, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        match EVENTS.reserve::<ConnEnd>(0) {
            Some(mut entry) => {
                let p = entry.as_mut_ptr();
                // SAFETY: `p` points at the reserved, writable 168 bytes;
                // both halves are written before the submit.
                unsafe {
                    (*p).event = FlowEvent::new(EVENT_CONN_END, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook);
                    (*p).rec.copy_from(rec);
                }
                submit(entry);
            }
            None => count(counters::EVENTS_LOST),
        }
    }

    #[inline(always)]
    fn conn_evicted<K: FlowKey>(&mut self, key: &K, rec: &FlowRecord, seen: &Seen) {
        match EVENTS.reserve::<ConnEnd>(0) {
            Some(mut entry) => {
                let p = entry.as_mut_ptr();
                let (family, lo, lo_port, hi, hi_port) = key.endpoints();
                // SAFETY: as in `conn_end`.
                unsafe {
                    (*p).event = FlowEvent::evicted(family, (&lo, lo_port), (&hi, hi_port), rec, seen.now, seen.ifindex, seen.hook);
                    (*p).rec.copy_from(rec);
                }
                submit(entry);
            }
            None => count(counters::EVENTS_LOST),
        }
    }
}

/// Submit a reserved record, waking the daemon only past `WAKE_AT`.
#[inline(always)]
pub fn submit<T>(entry: aya_ebpf::maps::ring_buf::RingBufEntry<T>) {
    let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > WAKE_AT { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    entry.submit(flags as u64);
}
