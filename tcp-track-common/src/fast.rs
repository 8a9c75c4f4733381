//! The fast path: the segment that makes up nearly all traffic, an ACK or
//! in-window data of an ESTABLISHED flow (flags ACK or ACK|PSH), applied to
//! its record with no call of the state machine, no segment summary and no
//! event decision: [`step`] does exactly what `table`'s path would have done
//! with it (`state::step`, the connection record's figures, the table's
//! counters: none), or nothing at all when the segment is anything else,
//! and the caller then runs the full path (`track::observe`). A property
//! test holds it to that (`fast::tests`).
//!
//! What the full path would do with such a segment (RFC 9293 §3.10.7.4,
//! "ESTABLISHED STATE", seen from the wire; nf_conntrack's `tcp_in_window`):
//! judge it against both windows, move the sender's `end`, `maxack`,
//! `maxwin` and the receiver's `maxend` (and `maxwin` when the sender went
//! past its `maxend`) forward with the same lock-free advances
//! (`advance`, see `flow::FlowRecord`), count a retransmission, stamp
//! `last_seen`, note the segment for the RST train, count the packet and,
//! for data, the sequence span's wraps. It changes no state and no flag
//! byte, and is worth no event, but for the first retransmission of a run
//! (`EVENT_DATA_RETRANS`): that one, like every segment that is not this
//! case, goes to the full path.
//!
//! Not the common case, so left to the full path: any other flag
//! (SYN, FIN, RST, URG, invalid combinations); a flow in any state but
//! ESTABLISHED; a side not seen yet or without an acknowledgment yet, a
//! liberal flow or interface (windows being learnt or not enforced); a
//! segment outside the window; an ACK acknowledging more than the receiver
//! was seen sending (its byte span moves: `state::tally`); a side whose
//! Zeek state this segment changes (its first pure ACK); a record whose
//! first segment was not stamped (`first_ns`); the first retransmission.
//!
//! The invalid RST has a fast path of its own ([`reset`]): a bare RST
//! (RST or RST|ACK, a 20-byte header, no payload) of a flow in the
//! established table, at XDP, on a strict interface, whose checksum holds
//! ([`reset_checksum_ok`]) and which the RST policy drops, is judged
//! (`state::classify_reset`, RFC 5961 §3.2, RFC 9293 §3.10.7.4, RFC 1337),
//! counted and reported exactly as `table`'s drop rule does, with none of
//! the full path's parse, scratch slot or subprograms. A RST the policy
//! lets through changes the flow, and takes the full path, which judges
//! it again. A property test holds it to the full path too.
//!
//! In the kernel another CPU may step the same record between the check and
//! the update, as it may during the full path's (see `flow::FlowRecord`):
//! the fields that judge a RST still only move forward. One difference: a
//! segment that looked new when checked, and whose `end` another CPU's
//! further segment passed meanwhile, counts as a retransmission (as on the
//! full path) without the full path's `EVENT_DATA_RETRANS` for it, an event
//! that would only report two CPUs' reordering.

use crate::{
    advance,
    event::{FlowEvent, EVENT_RST, HOOK_XDP},
    flow::{coarse_time, note_dropped_rst, pair, pair_mut, FlowKeyV4, FlowRecord, PEER_LIBERAL, PEER_MAXACK_SET, PEER_SEEN},
    guard::{drops, RST_POLICY_OBSERVE},
    parse::{
        checksum::{halves, holds},
        SegmentFields, FAMILY_IPV4, IPPROTO_TCP,
    },
    seq::{self, after, before_eq},
    state::{
        classify_reset, in_window, note_last_end, retransmitted, scaled,
        tally::{ack_keeps_zeek_state, count_packet, note_wrap},
        Outcome, STATE_ESTABLISHED,
    },
    table::FlowKey,
    tcp,
};

/// What the fast path reads of a segment: what the kernel's lean parse of
/// the common frame yields (`parse::Segment` has these fields too, and
/// [`Lean::of`] takes them from it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lean {
    pub seq: u32,
    pub ack: u32,
    /// TCP payload bytes (`Segment::payload_len`).
    pub payload_len: u32,
    /// The window field as sent.
    pub window: u16,
    /// TCP flags byte.
    pub flags: u8,
}

impl Lean {
    #[inline(always)]
    pub fn of(seg: &crate::parse::Segment) -> Lean {
        Lean { seq: seg.seq, ack: seg.ack, payload_len: seg.payload_len, window: seg.window, flags: seg.flags }
    }
}

/// The fast paths take IPv4 only.
impl SegmentFields for Lean {
    #[inline(always)]
    fn seq(&self) -> u32 {
        self.seq
    }
    #[inline(always)]
    fn ack(&self) -> u32 {
        self.ack
    }
    #[inline(always)]
    fn flags(&self) -> u8 {
        self.flags
    }
    #[inline(always)]
    fn family(&self) -> u8 {
        FAMILY_IPV4
    }
}

/// Flags of the common segment: ACK, with or without PSH, nothing else.
#[inline(always)]
pub const fn common_flags(flags: u8) -> bool {
    flags & !tcp::PSH == tcp::ACK
}

/// Step `rec` with the segment `seg`, sent in direction `dir` (`flow::DIR_*`)
/// at `now_ns` on a strict (not `--liberal-iface`) interface, if it is the
/// common case: true, and the record is what the full path would have made
/// of it, no counter but the segment count (`counters::TCP_SEGMENTS`, the
/// caller's) and no event due. Otherwise false and the record untouched.
#[inline(always)]
pub fn step(rec: &mut FlowRecord, seg: &Lean, dir: u8, now_ns: u64) -> bool {
    if !common_flags(seg.flags) || rec.state != STATE_ESTABLISHED || rec.first_ns == 0 {
        return false;
    }
    let (s, r) = (dir & 1, (dir ^ 1) & 1);
    let (sender, receiver) = (rec.peer(s), rec.peer(r));
    // Both windows known and enforced (`state::track_window`'s `liberal`),
    // and the sender's first acknowledgment seen (it sets a flag).
    let learnt = PEER_SEEN | PEER_MAXACK_SET;
    if (sender.flags | receiver.flags | rec.info) & PEER_LIBERAL != 0 || sender.flags & learnt != learnt || receiver.flags & PEER_SEEN == 0 {
        return false;
    }
    let end = seg.seq.wrapping_add(seg.payload_len);
    if !in_window(seg.seq, end, seg.ack, (sender.end, sender.maxend, sender.maxwin), (receiver.end, receiver.maxwin)) {
        return false;
    }
    // The first retransmission of a run is an event.
    if sender.retrans == 0 && seg.payload_len != 0 && !after(end, sender.end) {
        return false;
    }
    // The receiver's byte span moves when this acknowledgment goes past
    // what it was seen sending (`state::tally`).
    if after(seq::max(seg.ack, sender.maxack), receiver.end) || !ack_keeps_zeek_state(pair(&rec.side, s), seg.payload_len) {
        return false;
    }
    apply(rec, seg, s, now_ns);
    true
}

/// `state::step` on a segment `step` found to be the common case, from
/// side `s`: `track_window`'s updates, then what `step` and its `tally`
/// shortcut do after an accepted segment, in their order.
#[inline(always)]
fn apply(rec: &mut FlowRecord, seg: &Lean, s: u8, now_ns: u64) {
    let r = s ^ 1;
    let end = seg.seq.wrapping_add(seg.payload_len);
    let win = scaled(seg.window, rec.peer(s).scale);
    let mut out = Outcome::default();
    let p = rec.peer_mut(s);
    advance::max(&mut p.maxwin, win);
    if advance::seq(&mut p.end, end) {
        p.retrans = 0;
    } else if seg.payload_len > 0 && before_eq(end, p.end) {
        retransmitted(p, &mut out);
    }
    // The sender's acknowledgment was set before (`PEER_MAXACK_SET`).
    advance::seq(&mut p.maxack, seg.ack);
    let sender_maxend = p.maxend;
    let q = rec.peer_mut(r);
    if q.maxwin != 0 && after(end, sender_maxend) {
        advance::add(&mut q.maxwin, end.wrapping_sub(sender_maxend));
    }
    advance::seq(&mut q.maxend, seg.ack.wrapping_add(if win == 0 { 1 } else { win }));
    rec.last_seen = coarse_time(now_ns);
    note_last_end(rec, end, s, true);
    count_packet(rec, s);
    if seg.payload_len != 0 {
        note_wrap(rec, s);
    }
    if out.retransmission {
        let n = pair_mut(&mut rec.retransmits, s);
        *n = n.saturating_add(1);
    }
}

/// Flags of a RST the fast path may judge: RST alone or RST|ACK (both
/// valid: `tcp::flags_valid`, so nothing else is counted for them). Any
/// other combination with RST takes the full path.
#[inline(always)]
pub const fn reset_flags(flags: u8) -> bool {
    flags & !tcp::ACK == tcp::RST
}

/// Whether a payload-less IPv4 TCP segment with a 20-byte header, from
/// `saddr` to `daddr` (as read, big-endian), whose header is `header`
/// (five big-endian 32-bit words), proves its checksum: what
/// `parse::checksum::tcp_checksum` answers with `CSUM_OK` for it (the
/// ones'-complement sum over the pseudo-header and the header, or the
/// folded pseudo-header sum alone in the checksum field of a
/// CHECKSUM_PARTIAL segment from a local stack). False where it answers
/// `CSUM_BAD`: the full path counts that.
#[inline(always)]
pub fn reset_checksum_ok(saddr: u32, daddr: u32, header: &[u32; 5]) -> bool {
    let pseudo = halves(saddr) + halves(daddr) + IPPROTO_TCP as u64 + 20;
    let sum = halves(header[0]) + halves(header[1]) + halves(header[2]) + halves(header[3]) + halves(header[4]);
    // The checksum field: bytes 16-17 of the header.
    holds(pseudo, sum, (header[4] >> 16) as u16)
}

/// Judge a bare RST (`reset_flags`, no payload) sent in direction `dir` on
/// the established record `rec`, seen at XDP on a strict interface with a
/// checksum that holds, under RST policy `policy` (`guard::RST_POLICY_*`):
/// when the policy drops it, what `table`'s drop rule does to the record
/// (`note_dropped_rst`), and its outcome (`Outcome::dropped_reset`, the
/// event's: [`reset_event`]); the caller counts `TCP_SEGMENTS` and
/// `RST_DROPPED` and drops the frame. Otherwise `None`, the record
/// untouched, and the full path takes the RST (and applies it).
#[inline(always)]
pub fn reset(rec: &mut FlowRecord, seg: &Lean, dir: u8, policy: u8) -> Option<Outcome> {
    if !reset_flags(seg.flags) || seg.payload_len != 0 || policy == RST_POLICY_OBSERVE {
        return None;
    }
    // Judged before anything changes: a dropped RST changes nothing but
    // its count (RFC 5961 §3.2: the receiver ignores it or challenges it).
    let class = classify_reset(rec, seg, dir);
    if !drops(policy, class) {
        return None;
    }
    note_dropped_rst(rec);
    Some(Outcome::dropped_reset(rec.state, class))
}

/// The event of a RST [`reset`] dropped, as `table::report` writes it:
/// `EVENT_RST` (a dropped reset's outcome is always worth that one, and
/// ends no connection), seen by XDP on `ifindex` at `now_ns` (the precise
/// clock, as every event), on the IPv4 flow `key`.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the event's pieces, as `FlowEvent::new`'s
pub fn reset_event(seg: &Lean, key: &FlowKeyV4, dir: u8, rec: &FlowRecord, out: &Outcome, now_ns: u64, ifindex: u32) -> FlowEvent {
    let (_, lo, lo_port, hi, hi_port) = key.endpoints();
    FlowEvent::of(EVENT_RST, seg, (&lo, lo_port, &hi, hi_port), dir, rec, out, now_ns, ifindex, HOOK_XDP)
}

#[cfg(test)]
mod tests;
