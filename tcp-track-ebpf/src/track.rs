//! The glue between a hook and the shared logic: parse, find or create the
//! flow record, run the state machine on it, and tell the daemon what is
//! worth telling.
//!
//! Stack budget: BPF gives a call chain 512 bytes in all. The segment and a
//! fresh flow record live in a per-CPU scratch slot instead of on the stack,
//! and the big pieces (parser, state machine, event builder) are separate
//! subprograms whose frames are not live at the same time.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, macros::map, maps::LruHashMap, maps::PerCpuArray};
use tcp_track_common::{
    counters,
    event::{event_kind, FlowEvent},
    flow::{direction, initiator_of, key_v4, key_v6, FlowRecord},
    parse::{parse, Packet, Segment, Skip, FAMILY_IPV4},
    state::{step, Outcome, STATE_NONE},
    tcp,
};

use crate::maps::{count, EVENTS, FLOWS_V4, FLOWS_V6};

/// Per-CPU working memory of one program run.
pub struct Scratch {
    seg: Segment,
    fresh: FlowRecord,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// What became of a frame, for the hook's (optional) debug log.
pub enum Observed {
    NotTcp,
    /// `parse::Malformed` as its number.
    Malformed(u8),
    Tracked,
    Untracked,
}

/// Where and when a segment was seen.
pub struct Seen {
    pub now: u64,
    pub ifindex: u32,
    pub hook: u8,
}

/// Parse one frame and account it to its flow. Never fails: a frame that is
/// not TCP, or that we cannot account, is counted and left alone.
#[inline(always)]
pub fn observe<P: Packet>(pkt: &P, ifindex: u32, hook: u8) -> Observed {
    // A one-slot per-CPU array always has its slot; if not, track nothing.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Observed::Untracked;
    };
    // SAFETY: per-CPU memory, used by this program run only (BPF programs
    // do not nest on a CPU for these hooks).
    let scratch = unsafe { &mut *scratch };
    match parse_frame(pkt, &mut scratch.seg) {
        PARSED => {}
        NOT_TCP => {
            count(counters::NOT_TCP);
            return Observed::NotTcp;
        }
        malformed => {
            count(counters::MALFORMED);
            return Observed::Malformed(malformed - MALFORMED_BASE);
        }
    }
    count(counters::TCP_SEGMENTS);
    if !tcp::flags_valid(scratch.seg.flags) {
        count(counters::INVALID_FLAGS);
    }
    let seen = Seen { now: unsafe { bpf_ktime_get_ns() }, ifindex, hook };
    let tracked = if scratch.seg.family == FAMILY_IPV4 { account_v4(scratch, &seen) } else { account_v6(scratch, &seen) };
    if tracked != 0 { Observed::Tracked } else { Observed::Untracked }
}

const PARSED: u8 = 0;
const NOT_TCP: u8 = 1;
const MALFORMED_BASE: u8 = 2;

/// The parser as a BPF subprogram: its temporaries live in its own frame,
/// gone by the time the flow is accounted. Writes the segment to `out`.
#[inline(never)]
fn parse_frame<P: Packet>(pkt: &P, out: &mut Segment) -> u8 {
    match parse(pkt) {
        Ok(seg) => {
            *out = seg;
            PARSED
        }
        Err(Skip::NotTcp) => NOT_TCP,
        Err(Skip::Malformed(m)) => MALFORMED_BASE + m as u8,
    }
}

// One subprogram per family (each returns 1 when the segment was accounted,
// 0 when the map refused it: a value, since a BPF subprogram must leave a
// scalar in R0).
#[inline(never)]
fn account_v4(scratch: &mut Scratch, seen: &Seen) -> u32 {
    let dir = direction(&scratch.seg);
    account(&FLOWS_V4, &key_v4(&scratch.seg, dir), scratch, dir, seen)
}

#[inline(never)]
fn account_v6(scratch: &mut Scratch, seen: &Seen) -> u32 {
    let dir = direction(&scratch.seg);
    account(&FLOWS_V6, &key_v6(&scratch.seg, dir), scratch, dir, seen)
}

/// Find the flow's record (or start one), run the shared state machine on
/// the segment, and report the outcome.
#[inline(always)]
fn account<K>(map: &LruHashMap<K, FlowRecord>, key: &K, scratch: &mut Scratch, dir: u8, seen: &Seen) -> u32 {
    let Scratch { seg, fresh } = scratch;
    if let Some(rec) = map.get_ptr_mut(key) {
        // SAFETY: `rec` points into a map value that stays valid for the
        // rest of this program run (RCU). See FlowRecord for the (benign,
        // documented) race between CPUs updating one flow.
        let rec = unsafe { &mut *rec };
        let out = step_flow(rec, seg, dir, seen.now);
        report(seg, dir, rec, &out, seen);
        return 1;
    }
    // A flow we have no record of: the state machine decides whether this
    // segment starts one (a RST or a malformed segment does not).
    *fresh = FlowRecord::default();
    fresh.initiator = initiator_of(seg, dir).0;
    let out = step_flow(fresh, seg, dir, seen.now);
    if out.new_state == STATE_NONE {
        report(seg, dir, fresh, &out, seen);
        return 1;
    }
    match map.insert(key, &*fresh, BPF_NOEXIST as u64) {
        Ok(()) => {
            count(counters::FLOWS_CREATED);
            report(seg, dir, fresh, &out, seen);
            1
        }
        // Another CPU created it between our lookup and insert: step theirs.
        Err(_) => match map.get_ptr_mut(key) {
            Some(rec) => {
                let rec = unsafe { &mut *rec };
                let out = step_flow(rec, seg, dir, seen.now);
                report(seg, dir, rec, &out, seen);
                1
            }
            None => {
                // -ENOMEM / -EBUSY, or evicted at once: this segment goes untracked.
                count(counters::MAP_UPDATE_FAILED);
                0
            }
        },
    }
}

/// The shared state machine as one BPF subprogram, called from three places.
#[inline(never)]
fn step_flow(rec: &mut FlowRecord, seg: &Segment, dir: u8, now: u64) -> Outcome {
    step(rec, seg, dir, now)
}

/// Its own BPF subprogram: building an event is big, and inlined at every
/// call site it would not fit the stack.
#[inline(never)]
fn report(seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) -> u32 {
    let Some(kind) = event_kind(out) else { return 0 };
    // Reserve and fill in place: a FlowEvent on the stack would not fit the
    // 512-byte BPF stack next to everything else.
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            entry.write(FlowEvent::new(kind, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook));
            entry.submit(0);
            1
        }
        None => {
            count(counters::EVENTS_LOST);
            0
        }
    }
}
