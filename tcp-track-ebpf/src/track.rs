//! The glue between a hook and the shared logic: parse, find or create the
//! flow record, run the state machine on it, and tell the daemon what is
//! worth telling.
//!
//! Stack budget: BPF gives a call chain 512 bytes in all. The segment and a
//! fresh flow record live in a per-CPU scratch slot instead of on the stack,
//! and the big pieces (parser, state machine, event builder) are separate
//! subprograms whose frames are not live at the same time.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    Global,
};
use tcp_track_common::{
    counters,
    event::{event_kind, FlowEvent, HOOK_XDP},
    flow::{direction, initiator_of, key_v4, key_v6, FlowRecord},
    guard::{drops, RST_POLICY_OBSERVE},
    halfopen::{born, find, set_of, victim, Set, Words},
    parse::{
        checksum::{tcp_checksum, CSUM_BAD, CSUM_OK},
        parse_into, Packet, Segment, Skip, FAMILY_IPV4,
    },
    state::{classify_reset, step, Outcome, STATE_CLOSE, STATE_NONE, STATE_SYN_RECV, STATE_TIME_WAIT},
    tcp,
};

use crate::maps::{count, EVENTS, FLOWS_V4, FLOWS_V6, HALF_OPEN_SEED, HALF_OPEN_SET_MASK, HALF_OPEN_V4, HALF_OPEN_V6};

/// Per-CPU working memory of one program run.
pub struct Scratch {
    seg: Segment,
    fresh: FlowRecord,
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Which RSTs XDP drops (`guard::RST_POLICY_*`), set by the daemon at load
/// time; observe-only unless asked.
#[unsafe(no_mangle)]
static RST_POLICY: Global<u8> = Global::new(RST_POLICY_OBSERVE);

/// Interfaces where only one direction is visible (asymmetric routing): the
/// tracker cannot judge anything there, so it drops nothing (key: ifindex).
#[map]
static LIBERAL_IFACES: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// What became of a frame, for the hook's (optional) debug log.
pub enum Observed {
    NotTcp,
    /// `parse::Malformed` as its number.
    Malformed(u8),
    Tracked,
    Untracked,
    /// A forged RST the policy drops: the hook returns XDP_DROP.
    Dropped,
    /// A RST with a bad TCP checksum: the stack's business, not ours.
    BadChecksum,
}

/// Where and when a segment was seen, and what may be done about it.
pub struct Seen {
    pub now: u64,
    pub ifindex: u32,
    pub hook: u8,
    /// RST policy in force for this segment (observe outside XDP and on
    /// liberal interfaces).
    pub policy: u8,
    /// `parse::checksum::CSUM_*` of a RST.
    pub csum: u8,
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
    let mut seen = Seen { now: unsafe { bpf_ktime_get_ns() }, ifindex, hook, policy: RST_POLICY_OBSERVE, csum: CSUM_OK };
    if scratch.seg.has(tcp::RST) && hook == HOOK_XDP {
        // XDP runs before the stack has checked anything: a RST must prove
        // its checksum before it may change a flow or be called an attack.
        // (Egress RSTs come from this host's own stack.)
        seen.csum = rst_checksum(pkt, &scratch.seg);
        if seen.csum == CSUM_BAD {
            count(counters::RST_BAD_CHECKSUM);
            return Observed::BadChecksum;
        }
        // SAFETY: a read-only lookup with a key on the stack.
        let liberal = unsafe { LIBERAL_IFACES.get(&ifindex) }.is_some();
        if !liberal {
            seen.policy = RST_POLICY.load();
        }
    }
    let tracked = if scratch.seg.family == FAMILY_IPV4 { account_v4(scratch, &seen) } else { account_v6(scratch, &seen) };
    match tracked {
        ACCOUNTED => Observed::Tracked,
        DROP => Observed::Dropped,
        _ => Observed::Untracked,
    }
}

/// Unread bytes in the event ring past which a submit wakes the daemon
/// (an eighth of the 1 MiB ring: about 1,800 events).
const WAKE_AT: u64 = 128 * 1024;

const UNTRACKED: u32 = 0;
const ACCOUNTED: u32 = 1;
const DROP: u32 = 2;

/// The checksum check as a BPF subprogram (its loop in its own frame).
#[inline(never)]
fn rst_checksum<P: Packet>(pkt: &P, seg: &Segment) -> u8 {
    tcp_checksum(pkt, seg)
}

const PARSED: u8 = 0;
const NOT_TCP: u8 = 1;
const MALFORMED_BASE: u8 = 2;

/// The parser as a BPF subprogram: its temporaries live in its own frame,
/// gone by the time the flow is accounted. Writes the segment to `out`
/// (the per-CPU scratch slot).
#[inline(never)]
fn parse_frame<P: Packet>(pkt: &P, out: &mut Segment) -> u8 {
    match parse_into(pkt, out) {
        Ok(()) => PARSED,
        Err(Skip::NotTcp) => NOT_TCP,
        Err(Skip::Malformed(m)) => MALFORMED_BASE + m as u8,
    }
}

// One subprogram per family, each returning ACCOUNTED, DROP, or UNTRACKED
// when the map refused it (a value: a BPF subprogram must leave a scalar in
// R0).
#[inline(never)]
fn account_v4(scratch: &mut Scratch, seen: &Seen) -> u32 {
    let dir = direction(&scratch.seg);
    account(&FLOWS_V4, &HALF_OPEN_V4, &key_v4(&scratch.seg, dir), scratch, dir, seen)
}

#[inline(never)]
fn account_v6(scratch: &mut Scratch, seen: &Seen) -> u32 {
    let dir = direction(&scratch.seg);
    account(&FLOWS_V6, &HALF_OPEN_V6, &key_v6(&scratch.seg, dir), scratch, dir, seen)
}

/// Find the flow's record (established table first, then half-open), or
/// start one, run the shared state machine on the segment, report the
/// outcome, and move a flow out of the half-open table once its handshake
/// is over.
#[inline(always)]
fn account<K: Words + Copy, S: Set<Key = K>>(flows: &LruHashMap<K, FlowRecord>, half: &Array<S>, key: &K, scratch: &mut Scratch, dir: u8, seen: &Seen) -> u32 {
    let Scratch { seg, fresh } = scratch;
    if let Some(rec) = flows.get_ptr_mut(key) {
        // SAFETY: `rec` points into a map value that stays valid for the
        // rest of this program run (RCU). See FlowRecord for the (benign,
        // documented) race between CPUs updating one flow.
        return on_record(unsafe { &mut *rec }, seg, dir, seen);
    }
    // The key's set in the half-open table. Looking an entry up changes
    // nothing about its age (unlike an LRU lookup): a retransmitted SYN or
    // SYN-ACK keeps the entry as old as its first SYN.
    let Some(set) = half.get_ptr_mut(set_of(key, HALF_OPEN_SEED.load(), HALF_OPEN_SET_MASK.load())) else {
        // Only if the daemon sized the table and its mask apart.
        count(counters::MAP_UPDATE_FAILED);
        return UNTRACKED;
    };
    // SAFETY: array values live as long as the map; see `halfopen` for the
    // unlocked writes.
    let set = unsafe { &mut *set };
    if let Some(way) = find(set, key) {
        let rec = set.record_mut(way);
        let verdict = on_record(rec, seg, dir, seen);
        if rec.state > STATE_SYN_RECV {
            // The handshake completed (or the attempt was reset): promote an
            // open connection to the established table, forget the rest.
            if rec.state != STATE_CLOSE {
                if flows.insert(key, &*rec, 0).is_ok() {
                    count(counters::FLOWS_PROMOTED);
                } else {
                    count(counters::MAP_UPDATE_FAILED);
                }
            }
            set.clear(way);
        }
        return verdict;
    }
    // A flow we have no record of: the state machine decides whether this
    // segment starts one (a RST or a malformed segment does not), and where
    // it lives: a SYN or SYN-ACK in the half-open table, a flow picked up
    // mid-stream in the established one.
    *fresh = FlowRecord::default();
    fresh.initiator = initiator_of(seg, dir).0;
    let out = step_flow(fresh, seg, dir, seen.now);
    if out.new_state == STATE_NONE {
        report(seg, dir, fresh, &out, seen);
        return ACCOUNTED;
    }
    if out.new_state <= STATE_SYN_RECV {
        // A free way of the set, else the one created longest ago.
        let (way, evicts) = victim(set.born(), seen.now);
        set.fill(way, key, born(seen.now), fresh);
        if evicts {
            count(counters::HALF_OPEN_EVICTED);
        }
        count(counters::FLOWS_CREATED);
        report(seg, dir, fresh, &out, seen);
        return ACCOUNTED;
    }
    match flows.insert(key, &*fresh, BPF_NOEXIST as u64) {
        Ok(()) => {
            count(counters::FLOWS_CREATED);
            report(seg, dir, fresh, &out, seen);
            ACCOUNTED
        }
        // Another CPU created it between our lookup and insert: step theirs.
        Err(_) => match flows.get_ptr_mut(key) {
            Some(rec) => on_record(unsafe { &mut *rec }, seg, dir, seen),
            None => {
                // -ENOMEM / -EBUSY, or evicted at once: this segment goes untracked.
                count(counters::MAP_UPDATE_FAILED);
                UNTRACKED
            }
        },
    }
}

/// A segment of a flow we have a record of: the drop rule, then the state
/// machine.
#[inline(always)]
fn on_record(rec: &mut FlowRecord, seg: &Segment, dir: u8, seen: &Seen) -> u32 {
    if seen.policy != RST_POLICY_OBSERVE && seg.has(tcp::RST) && seen.csum == CSUM_OK {
        // Judge before applying: a dropped RST must not change the flow.
        let class = classify_reset(rec, seg, dir);
        if drops(seen.policy, class) {
            count(counters::RST_DROPPED);
            report(seg, dir, rec, &Outcome::dropped_reset(rec.state, class), seen);
            return DROP;
        }
    }
    let out = step_flow(rec, seg, dir, seen.now);
    report(seg, dir, rec, &out, seen);
    ACCOUNTED
}

/// The shared state machine as one BPF subprogram, called from the four
/// places in `account` that step a record.
#[inline(never)]
fn step_flow(rec: &mut FlowRecord, seg: &Segment, dir: u8, now: u64) -> Outcome {
    let out = step(rec, seg, dir, now);
    // Closed once: on the way into TIME_WAIT or CLOSE, not from one to the other.
    if out.old_state < STATE_TIME_WAIT && (out.new_state == STATE_TIME_WAIT || out.new_state == STATE_CLOSE) {
        count(counters::FLOWS_CLOSED);
    }
    out
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
            // No wake-up per event: the daemon drains on a short timer, and
            // is woken early only when the ring fills past WAKE_AT.
            let flags = if EVENTS.query(BPF_RB_AVAIL_DATA as u64) > WAKE_AT { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
            entry.submit(flags as u64);
            1
        }
        None => {
            count(counters::EVENTS_LOST);
            0
        }
    }
}
