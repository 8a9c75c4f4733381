//! The figures of a connection record (packets, retransmissions, Zeek's
//! endpoint states, the byte counts' wraps, handshake timing), kept up to
//! date after the state machine has judged a segment: `step` calls these
//! after its branch function has returned (so their frames are never live
//! together). `tcp_track_tally` does it all; `quick` does, inline, the
//! share of the segments that make up nearly all traffic (ACKs and data of
//! established flows, handshake retransmissions), where a call would cost
//! more than the work. Both hold the same rules: a test runs random
//! conversations through each and compares the records.

use crate::{
    conn::{seq_span, zeek_step},
    flow::{
        pair, pair_mut, FlowRecord, INFO_SIMULTANEOUS_OPEN, PEER_SEEN, SIDE_ANSWERED, SIDE_HAF_BEFORE_RST,
        SIDE_SPAN_UPPER, SIDE_ZEEK_STATE, ZEEK_CLOSED, ZEEK_INACTIVE, ZEEK_RESET,
    },
    parse::Segment,
    seq::after,
    state::{Outcome, STATE_CLOSE, STATE_SYN_RECV, STATE_SYN_SENT},
    tcp,
};

/// Count a segment from `dir` that reached the state machine, whatever it
/// made of it.
#[inline(always)]
pub(crate) fn count_packet(rec: &mut FlowRecord, dir: u8) {
    let n = pair_mut(&mut rec.packets, dir);
    *n = n.wrapping_add(1);
}

/// `tcp_track_tally`'s facts about the segment, packed into one argument
/// (a BPF function has five): see `facts`.
const VALID: u32 = 0x01;
const RETRANSMISSION: u32 = 0x02;
const SENDER_WAS_SEEN: u32 = 0x04;
const DIR_HI: u32 = 0x08;

/// What `tcp_track_tally` needs of the outcome: `dir`, `out.valid`,
/// `out.retransmission`, the sender's `PEER_SEEN` before the segment
/// (`sender_was_seen`), and the old state in bits 8-15.
#[inline(always)]
pub(super) fn facts(dir: u8, out: &Outcome, sender_was_seen: bool) -> u32 {
    (out.valid as u32) | (out.retransmission as u32) << 1 | (sender_was_seen as u32) << 2 | ((dir & 1) as u32) << 3 | (out.old_state as u32) << 8
}

/// The common segment's share of `tcp_track_tally`, done inline, or false
/// when the segment needs the whole of it. Common: a segment the state
/// machine rejected; an ACK, data or FIN segment of a flow past its
/// handshake, from a side whose Zeek state it cannot change (an ACK or
/// data from a side past INACTIVE, a FIN sent again); a SYN or SYN-ACK
/// sent again during the handshake. Each acknowledging no more than the
/// other side was seen sending. What it does is exactly what
/// `tcp_track_tally` would (a test holds it to that); it exists because a
/// call costs more per packet than this work.
#[inline(always)]
pub(super) fn quick(rec: &mut FlowRecord, seg: &Segment, dir: u8, now_ns: u64, out: &Outcome, sender_was_seen: bool) -> bool {
    #[cfg(test)]
    if crate::conn::tests::ALWAYS_TALLY.with(|a| a.get()) {
        return false;
    }
    let taken = shortcut(rec, seg, dir, now_ns, out, sender_was_seen);
    #[cfg(test)]
    if taken {
        crate::conn::tests::SHORTCUTS.with(|n| n.set(n.get() + 1));
    }
    taken
}

#[inline(always)]
fn shortcut(rec: &mut FlowRecord, seg: &Segment, dir: u8, now_ns: u64, out: &Outcome, sender_was_seen: bool) -> bool {
    if rec.first_ns == 0 {
        return false;
    }
    if !out.valid {
        return true;
    }
    let (s, r) = (dir & 1, (dir ^ 1) & 1);
    let (syn, ack) = (seg.has(tcp::SYN), seg.has(tcp::ACK));
    // The receiver's byte span moves when an acknowledgment goes past what
    // it was seen sending, or it was never seen.
    if !sender_was_seen || (ack && (rec.peer(r).flags & PEER_SEEN == 0 || after(rec.peer(s).maxack, rec.peer(r).end))) {
        return false;
    }
    let from_client = s == rec.initiator & 1;
    if seg.has(tcp::RST) {
        return false;
    } else if !syn && out.old_state > STATE_SYN_RECV && rec.state > STATE_SYN_RECV {
        // Zeek's state machine: an ACK or data segment changes nothing for
        // a side past INACTIVE, but for noting its first pure ACK; a FIN
        // nothing for a side that sent one before (CLOSED, and noted).
        let e = pair(&rec.side, s);
        let unchanged = if seg.has(tcp::FIN) {
            e & SIDE_ZEEK_STATE == ZEEK_CLOSED && e & SIDE_HAF_BEFORE_RST != 0
        } else {
            ack_keeps_zeek_state(e, seg.payload_len)
        };
        if !unchanged {
            return false;
        }
        if seg.seq_len() != 0 {
            note_wrap(rec, s);
        }
    } else if syn
        && out.retransmission
        && rec.info & INFO_SIMULTANEOUS_OPEN == 0
        && ((from_client && !ack && out.old_state == STATE_SYN_SENT && rec.state == STATE_SYN_SENT)
            || (!from_client && ack && out.old_state == STATE_SYN_RECV && rec.state == STATE_SYN_RECV))
    {
        // Sent again, it changes neither its sender's Zeek state (the
        // client's SYN_SENT, the server's ESTABLISHED with its SYN-ACK
        // noted) nor anything in sequence space; its sender's handshake
        // clock restarts.
        restart_clock(rec, s, now_ns);
    } else {
        return false;
    }
    if out.retransmission {
        let n = pair_mut(&mut rec.retransmits, s);
        *n = n.saturating_add(1);
    }
    true
}

/// Whether an ACK or data segment (no SYN, FIN or RST) the state machine
/// accepted leaves its sender's Zeek state as it is: a side past INACTIVE,
/// whose first pure ACK was noted before (or that sends data, which notes
/// nothing, or was reset). `e`: the sender's `FlowRecord::side` byte.
#[inline(always)]
pub(crate) fn ack_keeps_zeek_state(e: u8, payload_len: u32) -> bool {
    let (zs, noted) = (e & SIDE_ZEEK_STATE, e & SIDE_HAF_BEFORE_RST != 0);
    zs != ZEEK_INACTIVE && (noted || payload_len != 0 || zs == ZEEK_RESET)
}

/// Everything but the packet count, for a segment the state machine
/// judged (`facts`), after which the flow is in `rec.state`. Returns that
/// state (a BPF function must leave a scalar in R0; being exported, it
/// keeps its return value even where the caller ignores it).
///
/// In BPF this is a *global* function (exported by name; see
/// `xtask/src/bpf_toolchain.rs`): the verifier checks it once, on its own,
/// instead of once for every way the state machine can reach it (about a
/// thousand: each branch function's exits at each of `step`'s call sites),
/// which for this much code cost about 140,000 of the program's million
/// verified instructions. A global function's pointer arguments may be
/// NULL as far as the verifier knows, hence the checks.
#[cfg_attr(target_arch = "bpf", no_mangle)]
#[inline(never)]
pub(super) extern "C" fn tcp_track_tally(rec: *mut FlowRecord, seg: *const Segment, now_ns: u64, facts: u32) -> u32 {
    // SAFETY: `step` passes references; the checks are for the verifier.
    match unsafe { (rec.as_mut(), seg.as_ref()) } {
        (Some(rec), Some(seg)) => {
            tally(rec, seg, now_ns, facts);
            rec.state as u32
        }
        _ => 0,
    }
}

#[inline(always)]
fn tally(rec: &mut FlowRecord, seg: &Segment, now_ns: u64, facts: u32) {
    let s = if facts & DIR_HI != 0 { 1 } else { 0 };
    if rec.first_ns == 0 {
        // The segment that started this incarnation (`start`, or a reused
        // 4-tuple, whose record was reset).
        rec.first_ns = now_ns;
    }
    if facts & VALID == 0 {
        // Rejected (out of window, unacceptable in this state): nothing
        // derived from sequence numbers or flags may change.
        return;
    }
    if facts & RETRANSMISSION != 0 {
        let r = pair_mut(&mut rec.retransmits, s);
        *r = r.saturating_add(1);
    }
    let new_state = rec.state;
    // A RST counts when it closed the connection: one its receiver ignored
    // (challenge ACK, RFC 5961) ended nothing.
    if !seg.has(tcp::RST) || new_state == STATE_CLOSE {
        zeek_step(&mut rec.side, s, s == rec.initiator & 1, seg.flags, seg.payload_len);
    }
    // Byte counts: note each side's span wrapping past 2^32 (`seq_span`).
    // A span moves forward by less than 2^31 per segment (a window is at
    // most 2^30, RFC 7323), so it is seen in the upper half of its range
    // before it wraps; it is looked at whenever it may have moved. The
    // sender's moves when it sends sequence space or is first seen (it then
    // counts from here: its span so far was from the other side's
    // acknowledgments).
    if facts & SENDER_WAS_SEEN == 0 {
        *pair_mut(&mut rec.seq_wraps, s) = 0;
        *pair_mut(&mut rec.side, s) &= !SIDE_SPAN_UPPER;
        note_wrap(rec, s);
    } else if seg.seq_len() != 0 {
        note_wrap(rec, s);
    }
    // The receiver's moves with this acknowledgment only when it
    // acknowledges more than the receiver was seen sending, or the receiver
    // was never seen.
    let r = s ^ 1;
    if seg.has(tcp::ACK) && (rec.peer(r).flags & PEER_SEEN == 0 || after(rec.peer(s).maxack, rec.peer(r).end)) {
        note_wrap(rec, r);
    }
    // The handshake is timed from its segments to the one completing it (a
    // client SYN after TIME_WAIT or a reset starts a new one).
    let old_state = (facts >> 8) as u8;
    if (old_state <= STATE_SYN_RECV || new_state <= STATE_SYN_RECV) && rec.info & INFO_SIMULTANEOUS_OPEN == 0 {
        handshake(rec, seg, s, now_ns, old_state, new_state);
    }
}

#[inline(always)]
pub(crate) fn note_wrap(rec: &mut FlowRecord, d: u8) {
    let upper = seq_span(rec, d) >= 1 << 31;
    let side = pair_mut(&mut rec.side, d);
    if *side & SIDE_SPAN_UPPER != 0 && !upper {
        let w = pair_mut(&mut rec.seq_wraps, d);
        *w = w.wrapping_add(1);
    }
    *side = if upper { *side | SIDE_SPAN_UPPER } else { *side & !SIDE_SPAN_UPPER };
}

/// Handshake timing (RFC 9293 §3.5's three-way handshake; a simultaneous
/// open is not timed). Each side's `handshake_us` holds the time of its
/// latest SYN (client) or SYN-ACK (server) until the answer comes, then
/// the interval, marked by `SIDE_ANSWERED`.
#[inline(always)]
fn handshake(rec: &mut FlowRecord, seg: &Segment, s: u8, now_ns: u64, old_state: u8, new_state: u8) {
    let from_client = s == rec.initiator & 1;
    let (syn, ack) = (seg.has(tcp::SYN), seg.has(tcp::ACK));
    if syn && !ack && from_client && new_state == STATE_SYN_SENT {
        // The client's SYN, first or again: the clock starts (again).
        restart_clock(rec, s, now_ns);
    } else if syn && ack && !from_client && new_state == STATE_SYN_RECV {
        if old_state == STATE_SYN_SENT {
            // The SYN-ACK answers the client's SYN.
            let c = s ^ 1;
            let since = pair(&rec.handshake_us, c);
            *pair_mut(&mut rec.handshake_us, c) = micros(now_ns).wrapping_sub(since);
            *pair_mut(&mut rec.side, c) |= SIDE_ANSWERED;
        }
        // The server's SYN-ACK, first or again: its clock starts (again).
        restart_clock(rec, s, now_ns);
    } else if from_client && !syn && old_state == STATE_SYN_RECV && new_state != STATE_SYN_RECV && new_state != STATE_CLOSE {
        // The client's segment completing the handshake answers the SYN-ACK.
        let srv = s ^ 1;
        let since = pair(&rec.handshake_us, srv);
        *pair_mut(&mut rec.handshake_us, srv) = micros(now_ns).wrapping_sub(since);
        *pair_mut(&mut rec.side, srv) |= SIDE_ANSWERED;
    }
}

/// Side `d` sent its SYN or SYN-ACK (again): the time its answer is
/// measured from.
#[inline(always)]
fn restart_clock(rec: &mut FlowRecord, d: u8, now_ns: u64) {
    *pair_mut(&mut rec.handshake_us, d) = micros(now_ns);
}

/// A 32-bit microsecond clock (wraps every 71 minutes).
#[inline(always)]
fn micros(now_ns: u64) -> u32 {
    (now_ns / 1000) as u32
}
