//! The glue between a hook and the shared logic: parse, find or create the
//! flow entry, update it, and tell the daemon about what is worth telling.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns, maps::LruHashMap};
use tcp_track_common::{
    counters,
    event::{FlowEvent, EVENT_FIN, EVENT_FLOW_NEW, EVENT_RST},
    flow::{Canonical, FlowRecord},
    parse::{parse, Malformed, Packet, Segment, Skip, FAMILY_IPV4},
    tcp,
};

use crate::maps::{count, EVENTS, FLOWS_V4, FLOWS_V6};

/// What became of a frame, for the hook's (optional) debug log.
pub enum Observed {
    NotTcp,
    Malformed(Malformed),
    Tracked,
    Untracked,
}

/// Parse one frame and account it to its flow. Never fails: a frame that is
/// not TCP, or that we cannot account, is counted and left alone.
#[inline(always)]
pub fn observe<P: Packet>(pkt: &P, ifindex: u32, hook: u8) -> Observed {
    let seg = match parse_frame(pkt) {
        Ok(seg) => seg,
        Err(Skip::NotTcp) => {
            count(counters::NOT_TCP);
            return Observed::NotTcp;
        }
        Err(Skip::Malformed(m)) => {
            count(counters::MALFORMED);
            return Observed::Malformed(m);
        }
    };
    count(counters::TCP_SEGMENTS);
    if !tcp::flags_valid(seg.flags) {
        count(counters::INVALID_FLAGS);
    }
    let seen = Seen { now: unsafe { bpf_ktime_get_ns() }, ifindex, hook };
    let tracked = if seg.family == FAMILY_IPV4 { account_v4(&seg, &seen) } else { account_v6(&seg, &seen) };
    if tracked != 0 { Observed::Tracked } else { Observed::Untracked }
}

/// Where and when a segment was seen.
pub struct Seen {
    pub now: u64,
    pub ifindex: u32,
    pub hook: u8,
}

// One subprogram per family (BPF calls take at most five arguments, and a
// separate frame keeps the stack within 512 bytes).
// Both return 1 when the segment was accounted, 0 when the map refused it
// (a value, not `()`: a BPF subprogram must leave a scalar in R0).
#[inline(never)]
fn account_v4(seg: &Segment, seen: &Seen) -> u32 {
    let canon = Canonical::of(seg);
    account(&FLOWS_V4, &canon.key_v4(), seg, &canon, seen)
}

#[inline(never)]
fn account_v6(seg: &Segment, seen: &Seen) -> u32 {
    let canon = Canonical::of(seg);
    account(&FLOWS_V6, &canon.key_v6(), seg, &canon, seen)
}

/// The parser as a BPF subprogram: its temporaries live in its own stack
/// frame, which is gone by the time the flow is accounted.
#[inline(never)]
fn parse_frame<P: Packet>(pkt: &P) -> Result<Segment, Skip> {
    parse(pkt)
}

#[inline(always)]
fn account<K>(map: &LruHashMap<K, FlowRecord>, key: &K, seg: &Segment, canon: &Canonical, seen: &Seen) -> u32 {
    let now = seen.now;
    let rec = match map.get_ptr_mut(key) {
        Some(rec) => rec,
        None => {
            let fresh = FlowRecord::first(seg, canon, now);
            match map.insert(key, &fresh, BPF_NOEXIST as u64) {
                // We created it: the flow is new to us.
                Ok(()) => {
                    count(counters::FLOWS_CREATED);
                    emit(EVENT_FLOW_NEW, seg, canon, &fresh, seen);
                }
                // Another CPU created it between our lookup and insert: use theirs.
                Err(_) => {}
            }
            match map.get_ptr_mut(key) {
                Some(rec) => rec,
                None => {
                    // Insert failed for another reason (-ENOMEM, -EBUSY) or the
                    // entry was evicted at once: this segment goes untracked.
                    count(counters::MAP_UPDATE_FAILED);
                    return 0;
                }
            }
        }
    };
    let d = (canon.dir & 1) as usize;
    // SAFETY: `rec` points into a map value that stays valid for the rest of
    // this program run (RCU); the fields are naturally aligned. Ingress and
    // egress update the same entry from different CPUs: the counters take
    // atomic adds, and each direction's flags byte is only written by that
    // direction's segments, so the two hooks never overwrite each other.
    let before = unsafe {
        atomic_add(&raw mut (*rec).packets[d], 1);
        atomic_add(&raw mut (*rec).bytes[d], seg.ip_len as u64);
        (*rec).last_seen_ns = now;
        let before = (*rec).flags_seen[d];
        (*rec).flags_seen[d] = before | seg.flags;
        before
    };
    let rec = unsafe { &*rec };
    // The first FIN and the first RST from each side are worth telling. Two
    // CPUs handling the same direction at once could both see "first"; RSS
    // keeps one direction of a flow on one queue, so that is rare and costs
    // at most a duplicate line.
    if seg.has(tcp::FIN) && before & tcp::FIN == 0 {
        emit(EVENT_FIN, seg, canon, rec, seen);
    }
    if seg.has(tcp::RST) && before & tcp::RST == 0 {
        emit(EVENT_RST, seg, canon, rec, seen);
    }
    1
}

/// `*ptr += val` as one BPF atomic add (`lock xadd`): `core`'s atomics have
/// no read-modify-write operations on the BPF target.
#[inline(always)]
unsafe fn atomic_add(ptr: *mut u64, val: u64) {
    unsafe {
        core::arch::asm!("lock *(u64 *)({p} + 0) += {v}", p = in(reg) ptr, v = in(reg) val, options(nostack));
    }
}

#[inline(always)]
fn emit(kind: u16, seg: &Segment, canon: &Canonical, rec: &FlowRecord, seen: &Seen) {
    // Reserve and fill in place: a FlowEvent on the stack would not fit the
    // 512-byte BPF stack next to the parser's buffers.
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            entry.write(FlowEvent::new(kind, seg, canon, rec, seen.now, seen.ifindex, seen.hook));
            entry.submit(0);
        }
        None => count(counters::EVENTS_LOST),
    }
}
