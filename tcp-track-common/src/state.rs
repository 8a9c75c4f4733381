//! The TCP observer: from the segments it sees in both directions, the state
//! of a connection and of each of its endpoints, as the endpoints themselves
//! know it.
//!
//! Modelled on Linux's nf_conntrack (`nf_conntrack_proto_tcp.c`): a
//! connection state per flow, per-direction window tracking as in
//! `tcp_in_window` (`td_end`, `td_maxend`, `td_maxwin`, `td_maxack`,
//! `td_scale`), SYN_SENT2 for simultaneous open, be_liberal for flows picked
//! up mid-stream and on interfaces that see only part of each conversation
//! (`step`'s `liberal`), the "RST train" tolerance, and keeping state on an
//! in-window inexact RST so that the endpoint's challenge ACK can do its
//! work. Resets are classified as RFC 9293, RFC 5961 and RFC 1337 say an
//! endpoint judges them.
//!
//! Pure: no allocation, no panics, wrapping sequence arithmetic, and time
//! passed in by the caller.

use crate::{
    advance,
    flow::{
        closer_bit, coarse_time, FlowRecord, Peer, INFO_CLOSER_HI, INFO_CLOSER_LO, INFO_LAST_ACK, INFO_LAST_DIR_HI,
        INFO_LIBERAL, INFO_REUSED, INFO_SIMULTANEOUS_OPEN, INFO_SYNACK_INFERRED, picked_up, ORIGIN_MIDSTREAM, ORIGIN_SYN, ORIGIN_SYN_ACK, PEER_FIN, PEER_LIBERAL, PEER_MAXACK_SET, PEER_RST,
        PEER_SACK_PERM, PEER_SEEN, PEER_SYN, PEER_WSCALE,
    },
    parse::{clamp_wscale, Segment, SegmentFields, NO_WSCALE, OPT_SACK_PERM, OPT_WSCALE},
    seq::{after, after_eq, before, before_eq, between},
    tcp,
};

/// Connection states (`FlowRecord::state`), seen from the wire.
/// No segment accepted yet: a record in this state is never stored.
pub const STATE_NONE: u8 = 0;
/// The client's SYN was seen (client SYN-SENT, RFC 9293 §3.3.2).
pub const STATE_SYN_SENT: u8 = 1;
/// Both sides sent a SYN without ACK: simultaneous open (RFC 9293 §3.5,
/// figure 7; nf_conntrack's SYN_SENT2).
pub const STATE_SYN_SENT2: u8 = 2;
/// The server answered with SYN-ACK (server SYN-RECEIVED).
pub const STATE_SYN_RECV: u8 = 3;
pub const STATE_ESTABLISHED: u8 = 4;
/// One side (the closer) sent a FIN that is not acknowledged yet: closer in
/// FIN-WAIT-1, the other side in CLOSE-WAIT.
pub const STATE_FIN_WAIT: u8 = 5;
/// The closer's FIN was acknowledged and the other side has not closed:
/// a half-closed connection (closer FIN-WAIT-2, other CLOSE-WAIT).
pub const STATE_CLOSE_WAIT: u8 = 6;
/// Both sides sent a FIN and the last one is not acknowledged yet (other
/// side LAST-ACK; or both CLOSING after a simultaneous close).
pub const STATE_LAST_ACK: u8 = 7;
/// Both FINs are acknowledged: the active closer is in TIME-WAIT (both
/// sides, after a simultaneous close) and the other side is CLOSED.
pub const STATE_TIME_WAIT: u8 = 8;
/// Reset: both endpoints are CLOSED.
pub const STATE_CLOSE: u8 = 9;

/// Reset classes (`Outcome::reset`).
pub const RESET_NONE: u8 = 0;
/// Answers a SYN, acknowledging it: connection refused (RFC 9293 §3.10.7.3).
pub const RESET_REFUSED: u8 = 1;
/// Sequence number exactly what the receiver expects next, or the end of
/// the sender's last segment (nf_conntrack's RST train): a valid reset, the
/// sender aborted (RFC 5961 §3.2; SO_LINGER 0, close with unread data).
pub const RESET_EXACT: u8 = 2;
/// No ACK flag and the sequence number equal to the acknowledgment it
/// answers: the reply of an endpoint that has no such connection (RFC 9293
/// §3.10.7.1), so the receiver was half-open.
pub const RESET_STATELESS_PEER: u8 = 3;
/// Hits an endpoint in TIME-WAIT: an assassination (RFC 1337).
pub const RESET_TIME_WAIT: u8 = 4;
/// Inside the receive window but not exact: the receiver sends a challenge
/// ACK and keeps the connection (RFC 5961 §3.2).
pub const RESET_IN_WINDOW: u8 = 5;
/// Outside the receive window: the receiver ignores it (RFC 9293 §3.10.7.4,
/// RFC 5961 §3.2); in SYN-SENT, one that does not acknowledge the SYN.
pub const RESET_OUT_OF_WINDOW: u8 = 6;
/// The receiver's window is not known (flow picked up mid-stream, or one
/// direction never seen): accepted unjudged, like nf_conntrack's be_liberal.
pub const RESET_UNJUDGED: u8 = 7;
/// No record of the flow at all.
pub const RESET_UNKNOWN_FLOW: u8 = 8;
/// The client in SYN-SENT answering an unacceptable ACK (one that does not
/// acknowledge its SYN) with `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 §3.10.7.3):
/// it stays in SYN-SENT and lost nothing. Its receiver, if it holds an old
/// connection on the 4-tuple, learns that it is half-open (RFC 9293 §3.5.2,
/// figure 10). Legitimate: never dropped, and the flow stays in SYN_SENT.
pub const RESET_UNACCEPTABLE_ACK: u8 = 9;
/// The shape of a stateless peer's reply (no ACK flag; as sequence number
/// the acknowledgment of the segment it answers), from an endpoint that had
/// sent its FIN:
/// it closed on purpose and new data arrived after its close (RFC 1122
/// §4.2.2.13; Linux's TCPAbortOnData), or its socket is gone after an
/// orderly close. Not a lost peer.
pub const RESET_DATA_AFTER_CLOSE: u8 = 10;

/// Endpoint states (RFC 9293 §3.3.2), as `ss` names them.
pub const EP_NONE: u8 = 0;
pub const EP_SYN_SENT: u8 = 1;
pub const EP_SYN_RECV: u8 = 2;
pub const EP_ESTABLISHED: u8 = 3;
pub const EP_FIN_WAIT_1: u8 = 4;
pub const EP_FIN_WAIT_2: u8 = 5;
pub const EP_CLOSE_WAIT: u8 = 6;
pub const EP_CLOSING: u8 = 7;
pub const EP_LAST_ACK: u8 = 8;
pub const EP_TIME_WAIT: u8 = 9;
pub const EP_CLOSED: u8 = 10;

/// nf_conntrack's MAXACKWINCONST: how far back an ACK may be when the
/// sender's window is not known.
const MAX_ACK_WINDOW: u32 = 66000;
/// Window scale assumed for a flow picked up mid-stream: the option only
/// travels in SYNs, so the real one cannot be known; the largest (RFC 7323)
/// keeps window checks from rejecting what the endpoints accept.
const PICKUP_SCALE: u8 = 14;

/// What one segment did to a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub old_state: u8,
    pub new_state: u8,
    /// `RESET_*` for RST segments, `RESET_NONE` otherwise.
    pub reset: u8,
    /// Dropping this segment would be justified: an invalid RST or a
    /// TIME-WAIT assassination attempt. Never set for anything else.
    pub drop_justified: bool,
    /// The segment was acceptable (flags valid, in window).
    pub valid: bool,
    /// A SYN on a 4-tuple in TIME_WAIT started a new incarnation.
    pub reused: bool,
    /// For `reused`: the new ISN is beyond the old incarnation's final
    /// sequence number in that direction (RFC 6191, RFC 1122 §4.2.2.13).
    pub isn_advanced: bool,
    /// A retransmitted SYN, SYN-ACK or data segment.
    pub retransmission: bool,
    /// The sender's retransmission count after this segment.
    pub retrans: u8,
    /// The sender's first FIN.
    pub first_fin: bool,
    /// Set by the caller: a drop rule dropped the segment (the record was
    /// not changed).
    pub dropped: bool,
}

impl Outcome {
    /// The segment, not a RST, was rejected only because it lay outside
    /// the window the tracker knows (RFC 9293 §3.10.7.4): what a liberal
    /// interface accepts. From SYN_RECV on, the window is the one thing
    /// `segment` rejects a SYN-less segment with valid flags for (`syn`
    /// and `reset` judge the others; in SYN_SENT nothing is in a window
    /// yet). Derived rather than carried: in BPF a field set on the
    /// rejecting path alone keeps the verifier from merging that path with
    /// the others, which cost it 200,000 instructions.
    #[inline(always)]
    pub fn out_of_window(&self, seg: &Segment) -> bool {
        !self.valid
            && self.reset == RESET_NONE
            && self.old_state >= STATE_SYN_RECV
            && seg.flags & (tcp::SYN | tcp::RST) == 0
            && tcp::flags_valid(seg.flags)
    }
}

impl Outcome {
    /// The outcome of a RST of class `class` that a drop rule dropped
    /// before it could change anything.
    #[inline(always)]
    pub fn dropped_reset(state: u8, class: u8) -> Self {
        Outcome { old_state: state, new_state: state, reset: class, drop_justified: true, dropped: true, ..Outcome::default() }
    }
}

impl Outcome {
    #[inline(always)]
    fn at(state: u8) -> Self {
        Outcome { old_state: state, new_state: state, valid: true, ..Outcome::default() }
    }
}

/// Feed one segment, sent in direction `dir` (`flow::DIR_*`), to the flow.
/// A record in `STATE_NONE` (zeroed) starts a new flow; if the outcome's
/// `new_state` is still `STATE_NONE`, the segment cannot start one (a RST,
/// invalid flags) and the record should not be stored. For a new flow the
/// caller presets `initiator` with `flow::initiator_of`'s guess, which is
/// used when the first segment is neither SYN nor SYN-ACK. Every segment
/// also counts in the record's connection figures (`conn`).
///
/// A segment the outcome calls invalid changes neither the state nor the
/// window state; it is only counted (`packets`, `last_seen`). The one
/// thing it may leave behind is evidence for judging the RST that answers
/// it: the acknowledgment of an unacceptable ACK in SYN_SENT.
///
/// `liberal`: the segment was seen where only part of the conversation is
/// visible (`--liberal-iface`: a tap, a mirror port, one leg of asymmetric
/// routing), as nf_conntrack's `be_liberal`: no segment is rejected for
/// lying outside the window, and in SYN_SENT a segment proving that a
/// SYN-ACK was sent on a path not seen establishes the flow
/// (`INFO_SYNACK_INFERRED`). RSTs are judged the same either way.
///
/// The kernel programs step the common segment (an ACK or data of an
/// ESTABLISHED flow) with `fast::step` instead, which must do what this
/// does with it: its property test compares the two on random records.
#[inline(always)]
pub fn step(rec: &mut FlowRecord, seg: &Segment, dir: u8, now_ns: u64, liberal: bool) -> Outcome {
    let dir = dir & 1;
    let mut out = Outcome::at(rec.state);
    if !tcp::flags_valid(seg.flags) {
        // nf_conntrack's tcp_valid_flags: never sent by a conforming TCP; no
        // state change (an endpoint drops these). Seen all the same.
        out.valid = false;
        if rec.state != STATE_NONE {
            tally::count_packet(rec, dir);
        }
        return out;
    }
    // The interface's verdict, kept in the record for `track_window`
    // (branch-free: in BPF the verifier then sees one unknown value, not
    // two paths), and in SYN_SENT the evidence of a SYN-ACK not seen.
    rec.info = (rec.info & !INFO_LIBERAL) | ((liberal as u8) * INFO_LIBERAL);
    if liberal && rec.state == STATE_SYN_SENT {
        syn_sent_evidence(rec, seg, dir);
    }
    let sender_was_seen = rec.peer(dir).flags & PEER_SEEN != 0;
    // Each branch is its own function. `segment`, the biggest, stays a BPF
    // subprogram with its own stack frame: inlined with the others it
    // overflows the 512-byte stack. `start`, `syn` and `reset` are inlined
    // (a SYN, SYN-ACK or RST pays no subprogram call, about 9 ns each on a
    // CPU whose returns go through a return thunk; BENCHMARKS.md). Each
    // returns the new state (a BPF subprogram must leave a scalar in R0),
    // and that value is used below: a discarded result lets LLVM drop the
    // return value altogether, and R0 then holds whatever was there.
    let new_state = if rec.state == STATE_NONE {
        start(rec, seg, dir, &mut out)
    } else if seg.has(tcp::RST) {
        reset(rec, seg, dir, &mut out)
    } else if seg.has(tcp::SYN) {
        syn(rec, seg, dir, &mut out)
    } else {
        segment(rec, seg, dir, &mut out)
    };
    if new_state != STATE_NONE {
        // Every segment of a known flow is counted and keeps it alive (the
        // daemon tells a live handshake from an abandoned one by it).
        rec.last_seen = coarse_time(now_ns);
        // Only an acceptable segment may vouch for a RST after it (the RST
        // train): nf_conntrack records `last_*` only once a segment passed
        // tcp_in_window. A rejected one, such as a blind attacker's ACK,
        // would otherwise make his next RST look exact.
        if out.valid {
            note_last(rec, seg, dir);
        }
        // The connection record's figures (see `tally`): the common
        // segment's inline, any other's in a function of its own.
        tally::count_packet(rec, dir);
        if !tally::quick(rec, seg, dir, now_ns, &out, sender_was_seen) {
            tally::tcp_track_tally(rec, seg, now_ns, tally::facts(dir, &out, sender_was_seen));
        }
    }
    out.new_state = new_state;
    out
}

/// First segment of a flow we have no record of.
#[inline(always)]
fn start(rec: &mut FlowRecord, seg: &Segment, dir: u8, out: &mut Outcome) -> u8 {
    if seg.has(tcp::RST) {
        // A reset for a connection we never saw: nothing to track or judge.
        out.reset = RESET_UNKNOWN_FLOW;
        return rec.state;
    }
    let other = dir ^ 1;
    if seg.has(tcp::SYN) && !seg.has(tcp::ACK) {
        // RFC 9293 §3.5: active open; the sender is the client.
        *rec = FlowRecord { initiator: dir, origin: ORIGIN_SYN, state: STATE_SYN_SENT, ..FlowRecord::default() };
        init_syn_sender(rec.peer_mut(dir), seg);
    } else if seg.has(tcp::SYN) {
        // We missed the SYN: its receiver (this SYN-ACK's receiver) is the client.
        *rec = FlowRecord { initiator: other, origin: ORIGIN_SYN_ACK, state: STATE_SYN_RECV, ..FlowRecord::default() };
        init_syn_sender(rec.peer_mut(dir), seg);
        // The client's window is unknown until it sends: judge nothing of it
        // yet. A SYN-ACK with window scaling means the SYN offered it too,
        // with a shift we did not see: assume the largest.
        let client = rec.peer_mut(other);
        client.end = seg.ack;
        client.maxend = seg.ack;
        client.flags = PEER_LIBERAL;
        if seg.opt_flags & OPT_WSCALE != 0 {
            client.flags |= PEER_WSCALE;
            client.scale = PICKUP_SCALE;
        }
        learn_synack(rec, seg, dir);
    } else {
        // Picked up mid-stream (nf_conntrack's tcp_new with nf_ct_tcp_loose):
        // no claim about the handshake, liberal until both sides are seen.
        // The initiator is the caller's guess (`flow::initiator_of`), preset
        // in the zeroed record.
        let initiator = rec.initiator & 1;
        *rec = FlowRecord { initiator, origin: ORIGIN_MIDSTREAM, state: STATE_ESTABLISHED, ..FlowRecord::default() };
        rec.peer_mut(other).flags = PEER_LIBERAL;
        segment(rec, seg, dir, out);
    }
    rec.state
}

/// A SYN or SYN-ACK sender's window state (nf_conntrack tcp_in_window, SYN
/// case). The window of a SYN is never scaled (RFC 7323 §2.2).
#[inline(always)]
fn init_syn_sender(p: &mut Peer, seg: &Segment) {
    let end = seg.seq.wrapping_add(seg.seq_len());
    let mut flags = PEER_SEEN | PEER_SYN;
    if seg.opt_flags & OPT_WSCALE != 0 {
        flags |= PEER_WSCALE;
    }
    if seg.opt_flags & OPT_SACK_PERM != 0 {
        flags |= PEER_SACK_PERM;
    }
    let mut maxack = 0;
    if seg.has(tcp::ACK) {
        flags |= PEER_MAXACK_SET;
        maxack = seg.ack;
    }
    *p = Peer {
        end,
        maxend: end,
        maxwin: if seg.window == 0 { 1 } else { seg.window as u32 },
        maxack,
        isn: seg.seq,
        scale: if seg.wscale == NO_WSCALE { 0 } else { seg.wscale },
        flags,
        retrans: 0,
        _pad: 0,
    };
}

/// A SYN-ACK from `dir` completes option negotiation and tells the client
/// how far it may send.
#[inline(always)]
fn learn_synack(rec: &mut FlowRecord, seg: &Segment, dir: u8) {
    let (s, c) = (dir & 1, (dir ^ 1) & 1);
    // RFC 7323 §2.2: scaling applies only when both SYNs carried the option.
    if rec.peer(s).flags & PEER_WSCALE == 0 || rec.peer(c).flags & PEER_WSCALE == 0 {
        rec.peer_mut(s).scale = 0;
        rec.peer_mut(c).scale = 0;
    }
    let edge = seg.ack.wrapping_add(if seg.window == 0 { 1 } else { seg.window as u32 });
    if after(edge, rec.peer(c).maxend) || rec.peer(c).flags & PEER_SEEN == 0 {
        rec.peer_mut(c).maxend = edge;
    }
}

/// A SYN (with or without ACK) on a flow we know.
#[inline(always)]
fn syn(rec: &mut FlowRecord, seg: &Segment, dir: u8, out: &mut Outcome) -> u8 {
    let d = dir & 1;
    let from_client = dir == rec.initiator;
    let with_ack = seg.has(tcp::ACK);
    match (rec.state, with_ack) {
        // RFC 6191 / RFC 1122 §4.2.2.13: a SYN for a 4-tuple in TIME-WAIT may
        // open a new incarnation; the endpoint in TIME-WAIT accepts it when
        // the new ISN is beyond what it received from that side.
        (STATE_TIME_WAIT, false) => {
            out.reused = true;
            out.isn_advanced = after(seg.seq, rec.peer(d).end);
            reincarnate(rec, seg, dir, INFO_REUSED);
        }
        // After a reset the 4-tuple is free: a new connection.
        (STATE_CLOSE, false) => reincarnate(rec, seg, dir, 0),
        // The client's SYN again: a retransmission (same ISN, Linux backs off
        // 1 s, 2 s, 4 s...), or a new attempt with a new ISN.
        (STATE_SYN_SENT, false) if from_client => {
            if seg.seq == rec.peer(d).isn {
                retransmitted(rec.peer_mut(d), out);
            } else {
                init_syn_sender(rec.peer_mut(d), seg);
            }
        }
        // RFC 9293 §3.5 (figure 7): the other side sent its own SYN, without
        // ACK, before seeing ours: simultaneous open (nf_conntrack SYN_SENT2).
        (STATE_SYN_SENT, false) => {
            init_syn_sender(rec.peer_mut(d), seg);
            rec.info |= INFO_SIMULTANEOUS_OPEN;
            rec.state = STATE_SYN_SENT2;
        }
        (STATE_SYN_SENT2, false) | (STATE_SYN_RECV, false) => {
            if seg.seq == rec.peer(d).isn && rec.peer(d).flags & PEER_SYN != 0 {
                retransmitted(rec.peer_mut(d), out);
            } else {
                out.valid = false;
            }
        }
        // RFC 9293 §3.10.7.3: a SYN-ACK is acceptable in SYN-SENT only if it
        // acknowledges exactly our SYN (SND.UNA < SEG.ACK =< SND.NXT).
        (STATE_SYN_SENT, true) if !from_client => {
            if seg.ack == rec.peer(dir ^ 1).end {
                init_syn_sender(rec.peer_mut(d), seg);
                learn_synack(rec, seg, dir);
                rec.state = STATE_SYN_RECV;
            } else {
                out.valid = false;
                note_unacceptable_ack(rec, seg, dir);
            }
        }
        // Simultaneous open, second half: each side answers the other's SYN
        // with a SYN-ACK (RFC 9293 figure 7).
        (STATE_SYN_SENT2, true) => {
            if seg.ack == rec.peer(dir ^ 1).end && seg.seq == rec.peer(d).isn {
                let p = rec.peer_mut(d);
                p.maxack = seg.ack;
                p.flags |= PEER_MAXACK_SET;
                learn_synack(rec, seg, dir);
                rec.state = STATE_SYN_RECV;
            } else {
                out.valid = false;
            }
        }
        // The server's SYN-ACK again: the server in SYN-RECEIVED retransmits
        // until the handshake's last ACK arrives (Linux: 1 s, 2 s, 4 s...),
        // and also answers a retransmitted SYN. Also seen after ESTABLISHED
        // when the client's ACK was lost.
        (STATE_SYN_RECV, true) | (STATE_ESTABLISHED, true) => {
            if seg.seq == rec.peer(d).isn && rec.peer(d).flags & PEER_SYN != 0 {
                retransmitted(rec.peer_mut(d), out);
            } else {
                out.valid = false;
            }
        }
        // A SYN in a synchronized state: an endpoint answers it with a
        // challenge ACK (RFC 5961 §4) and keeps the connection; nf_conntrack
        // marks it invalid.
        _ => out.valid = false,
    }
    rec.state
}

#[inline(always)]
pub(crate) fn retransmitted(p: &mut Peer, out: &mut Outcome) {
    p.retrans = p.retrans.saturating_add(1);
    out.retransmission = true;
    out.retrans = p.retrans;
}

/// A fresh incarnation of the 4-tuple, opened by a SYN from `dir`.
#[inline(always)]
fn reincarnate(rec: &mut FlowRecord, seg: &Segment, dir: u8, info: u8) {
    *rec = FlowRecord { initiator: dir, origin: ORIGIN_SYN, state: STATE_SYN_SENT, info, ..FlowRecord::default() };
    init_syn_sender(rec.peer_mut(dir), seg);
}

/// In SYN_SENT, a segment with ACK from the side that has not sent a SYN,
/// whose acknowledgment is not acceptable to the client (RFC 9293
/// §3.10.7.3: acceptable means SND.UNA < SEG.ACK =< SND.NXT, here ISN <
/// SEG.ACK =< end of the SYN). The client answers it with
/// `<SEQ=SEG.ACK><CTL=RST>`; remembering SEG.ACK as that side's `maxack`
/// lets `classify_reset` recognise the answer (nf_conntrack likewise
/// annotates an ignored ACK so that the RST answering it is understood).
/// The side stays unseen (`PEER_SEEN` clear): its window is not learnt, and
/// an acceptable SYN-ACK later overwrites the whole entry.
#[inline(always)]
fn note_unacceptable_ack(rec: &mut FlowRecord, seg: &Segment, dir: u8) {
    let (s, c) = (dir & 1, (dir ^ 1) & 1);
    if s == rec.initiator & 1 || !seg.has(tcp::ACK) || rec.peer(s).flags & PEER_SYN != 0 {
        return;
    }
    let client = rec.peer(c);
    if after(seg.ack, client.isn) && before_eq(seg.ack, client.end) {
        return;
    }
    let p = rec.peer_mut(s);
    p.maxack = seg.ack;
    p.flags |= PEER_MAXACK_SET;
}

/// Whether a segment in SYN_SENT proves that the server answered the SYN
/// with a SYN-ACK the tracker did not see. From the client: an ACK at or
/// past the end of its SYN (RFC 9293 §3.10.7.3: a client in SYN-SENT sends
/// nothing with ACK until an acceptable SYN-ACK arrived; its ACK field is
/// then the server's ISN + 1), less than the largest window (2^30, RFC
/// 7323) beyond it. From the server: an ACK acceptable to the client in
/// SYN-SENT (SND.UNA < SEG.ACK =< SND.NXT), which a server sends only from
/// SYN-RECEIVED on. A RST or SYN proves nothing (they take other branches).
#[inline(always)]
fn synack_proven(rec: &FlowRecord, seg: &Segment, dir: u8) -> bool {
    let client = rec.peer(rec.initiator);
    if !seg.has(tcp::ACK) {
        return false;
    }
    if dir & 1 == rec.initiator & 1 {
        seg.seq.wrapping_sub(client.end) < 1 << 30
    } else {
        after(seg.ack, client.isn) && before_eq(seg.ack, client.end)
    }
}

/// On a liberal interface, a segment in SYN_SENT: if it proves that a
/// SYN-ACK was sent on a path not seen (a tap, a mirror port or one leg of
/// asymmetric routing missed it), the flow is established from that
/// evidence, as nf_conntrack's be_liberal and peer analyzers pick up what
/// they did not see; `step` then judges the segment as usual. Its own BPF
/// subprogram, so that the paths after it are the strict ones'.
#[inline(never)]
fn syn_sent_evidence(rec: &mut FlowRecord, seg: &Segment, dir: u8) -> u8 {
    if seg.flags & (tcp::SYN | tcp::RST) == 0 && tcp::flags_valid(seg.flags) && synack_proven(rec, seg, dir) {
        infer_synack(rec, seg, dir);
    }
    rec.state
}

/// The SYN-ACK inferred (`synack_proven`): the flow is established, the
/// server's window unknown (liberal, as for a flow whose SYN-ACK was the
/// first segment seen: `start`), and its sequence space known from the
/// client's acknowledgment, if it is the client that proved it.
#[inline(always)]
fn infer_synack(rec: &mut FlowRecord, seg: &Segment, dir: u8) {
    let c = rec.initiator & 1;
    let client_scales = rec.peer(c).flags & PEER_WSCALE != 0;
    let server = rec.peer_mut(c ^ 1);
    // A server answering a SYN that offered window scaling most likely
    // offered it too, with a shift not seen: assume the largest. The
    // client keeps its own.
    server.scale = if client_scales { PICKUP_SCALE } else { 0 };
    server.flags = PEER_LIBERAL;
    if dir & 1 == c {
        server.end = seg.ack;
        server.maxend = seg.ack;
        server.isn = seg.ack.wrapping_sub(1);
    }
    rec.info |= INFO_SYNACK_INFERRED;
    rec.state = STATE_ESTABLISHED;
}

/// ACK, data, FIN: window tracking, then the handshake and teardown
/// transitions.
#[inline(never)]
fn segment(rec: &mut FlowRecord, seg: &Segment, dir: u8, out: &mut Outcome) -> u8 {
    if rec.state == STATE_SYN_SENT || rec.state == STATE_SYN_SENT2 {
        // No SYN-ACK seen. An ACK, data or FIN now either took a path we do
        // not see (asymmetric routing) or is unacceptable to its receiver
        // (RFC 9293 §3.10.7.3 SYN-SENT: "if neither of the SYN or RST bits
        // is set then drop the segment"; with a bad ACK, answer it with a
        // RST). nf_conntrack calls it invalid or ignores it; we do not
        // claim a handshake we did not see either. Rejected before window
        // tracking: it must not teach the windows anything, nor count as a
        // retransmission of the SYN.
        out.valid = false;
        if rec.state == STATE_SYN_SENT {
            note_unacceptable_ack(rec, seg, dir);
        }
        return rec.state;
    }
    if !track_window(rec, seg, dir, out) {
        // Out of window: an endpoint drops it (RFC 9293 §3.10.7.4) and so
        // does nf_conntrack's state machine; no transition. Where the
        // tracker sees only part of the conversation (a tap that drops, a
        // capture that missed hundreds of megabytes) the window it knows
        // is stale, not the endpoints': a liberal interface never gets here.
        out.valid = false;
        return rec.state;
    }
    let (s, r) = (dir & 1, (dir ^ 1) & 1);
    // RFC 9293 §3.10.7.4 SYN-RECEIVED: an ACK that acknowledges the
    // server's SYN completes the handshake. After a simultaneous open
    // either side's ACK does.
    if rec.state == STATE_SYN_RECV {
        // Only the client's ACK completes a normal handshake: a server
        // answering a duplicate SYN with a plain ACK (RFC 9293 §3.10.7.4)
        // or sending Fast Open data is still in SYN-RECEIVED.
        let may_complete = dir == rec.initiator & 1 || rec.info & INFO_SIMULTANEOUS_OPEN != 0;
        if may_complete && seg.has(tcp::ACK) && rec.peer(r).flags & PEER_SYN != 0 && after_eq(seg.ack, rec.peer(r).isn.wrapping_add(1)) {
            rec.state = STATE_ESTABLISHED;
        }
    }
    // Teardown. An ACK covering the closer's FIN first, then this segment's FIN.
    if rec.state == STATE_FIN_WAIT && fin_acked(rec, closer_dir(rec)) {
        // RFC 9293 §3.6: the closer's FIN is acknowledged: it is in
        // FIN-WAIT-2, the other side in CLOSE-WAIT (half-closed).
        rec.state = STATE_CLOSE_WAIT;
    }
    if seg.has(tcp::FIN) {
        let first = rec.peer(s).flags & PEER_FIN == 0;
        rec.peer_mut(s).flags |= PEER_FIN;
        out.first_fin = first;
        match rec.state {
            // RFC 9293 §3.6 case 1: this side closes first (active close).
            STATE_ESTABLISHED | STATE_SYN_RECV => {
                rec.info |= closer_bit(dir);
                rec.state = STATE_FIN_WAIT;
            }
            STATE_FIN_WAIT | STATE_CLOSE_WAIT if first && rec.info & closer_bit(dir) == 0 => {
                // RFC 9293 §3.6: the other side closes too. If its FIN does not
                // acknowledge the closer's FIN, it was sent before the closer's
                // FIN arrived: a simultaneous close (case 2), both CLOSING.
                if !(seg.has(tcp::ACK) && after_eq(seg.ack, rec.peer(r).end)) {
                    rec.info |= closer_bit(dir);
                }
                rec.state = STATE_LAST_ACK;
            }
            _ => {}
        }
    }
    if rec.state == STATE_LAST_ACK && fin_acked(rec, 0) && fin_acked(rec, 1) {
        // Both FINs acknowledged: the closer(s) in TIME-WAIT for 2 MSL (RFC
        // 9293 §3.6, Linux 60 s), the other side CLOSED.
        rec.state = STATE_TIME_WAIT;
    }
    rec.state
}

/// The direction of the first closer (lo if both closed at once).
#[inline(always)]
fn closer_dir(rec: &FlowRecord) -> u8 {
    if rec.info & INFO_CLOSER_LO != 0 { 0 } else { 1 }
}

/// Side `d` sent a FIN and the other side acknowledged it.
#[inline(always)]
fn fin_acked(rec: &FlowRecord, d: u8) -> bool {
    let (p, o) = (rec.peer(d), rec.peer(d ^ 1));
    p.flags & PEER_FIN != 0 && o.flags & PEER_MAXACK_SET != 0 && after_eq(o.maxack, p.end)
}

/// nf_conntrack's tcp_in_window for non-SYN segments: is the segment
/// acceptable, and what does it teach about both windows?
#[inline(always)]
fn track_window(rec: &mut FlowRecord, seg: &Segment, dir: u8, out: &mut Outcome) -> bool {
    let (s, r) = (dir & 1, (dir ^ 1) & 1);
    let seq = seg.seq;
    let end = seg.seq.wrapping_add(seg.seq_len());
    let first_from_sender = rec.peer(s).flags & PEER_SEEN == 0;
    if first_from_sender {
        // First segment from this side after a pickup or a missed SYN:
        // learn where it is (nf_conntrack: "first packet from this direction").
        let midstream = picked_up(rec.origin);
        let p = rec.peer_mut(s);
        let liberal = p.flags & PEER_LIBERAL != 0 || midstream;
        p.scale = if midstream { PICKUP_SCALE } else { p.scale };
        let win = scaled(seg.window, p.scale);
        p.end = end;
        p.isn = seq;
        p.maxwin = if win == 0 { 1 } else { win };
        p.maxend = end.wrapping_add(p.maxwin);
        p.flags |= PEER_SEEN | if liberal { PEER_LIBERAL } else { 0 };
        let q = rec.peer_mut(r);
        if q.flags & PEER_SEEN == 0 && seg.has(tcp::ACK) {
            q.end = seg.ack;
            q.maxend = seg.ack;
        }
    }
    let ack = if seg.has(tcp::ACK) { seg.ack } else { rec.peer(r).end };
    let win = scaled(seg.window, rec.peer(s).scale);
    // Scalars rather than copies of the two Peer structs: in BPF every byte
    // of this function's frame counts against the 512-byte stack.
    let (s_maxend, s_end, s_maxwin, s_flags) = (rec.peer(s).maxend, rec.peer(s).end, rec.peer(s).maxwin, rec.peer(s).flags);
    let (r_end, r_maxwin, r_flags) = (rec.peer(r).end, rec.peer(r).maxwin, rec.peer(r).flags);
    // Liberal: a side's window is unknown, or the segment was seen on a
    // liberal interface (`INFO_LIBERAL`, the same bit as `PEER_LIBERAL`).
    let liberal = (s_flags | r_flags | rec.info) & PEER_LIBERAL != 0 || r_flags & PEER_SEEN == 0;
    if !in_window(seq, end, ack, (s_end, s_maxend, s_maxwin), (r_end, r_maxwin)) && !liberal {
        return false;
    }
    // Update the sender. `end`, `maxack`, `maxend` and `maxwin` only move
    // forward (`advance`): the same direction stepped on two CPUs at once
    // must not move them back (see `FlowRecord`).
    let p = rec.peer_mut(s);
    advance::max(&mut p.maxwin, win);
    if advance::seq(&mut p.end, end) {
        p.retrans = 0;
    } else if !first_from_sender && seg.seq_len() > 0 && before_eq(end, p.end) {
        // Nothing new: data (or a FIN) sent again.
        retransmitted(p, out);
    }
    if seg.has(tcp::ACK) {
        let first_ack = p.flags & PEER_MAXACK_SET == 0;
        advance::seq_or_set(&mut p.maxack, ack, first_ack);
        // Byte-wide fields are stored only when they change: a store of a
        // stale copy made on another CPU would undo what that CPU set
        // meanwhile (a FIN's PEER_FIN: the close's last ACK then never
        // counts, the flow stays in LAST_ACK; see `FlowRecord`).
        if first_ack {
            p.flags |= PEER_MAXACK_SET;
        }
    }
    let sender_maxend = p.maxend;
    // Update the receiver: how far the sender may now go.
    let q = rec.peer_mut(r);
    if q.maxwin != 0 && after(end, sender_maxend) {
        advance::add(&mut q.maxwin, end.wrapping_sub(sender_maxend));
    }
    // This segment's ack + window is how far the other side may send.
    let edge = ack.wrapping_add(if win == 0 { 1 } else { win });
    advance::seq(&mut q.maxend, edge);
    // Windows learnt: both sides seen, so a picked-up flow stops being liberal.
    // Stored only when a bit is set, as above: this writes both sides'
    // flags, and the other side's may be changing on another CPU.
    let learnt = PEER_SEEN | PEER_MAXACK_SET;
    if rec.peer(0).flags & learnt == learnt && rec.peer(1).flags & learnt == learnt && (rec.peer(0).flags | rec.peer(1).flags) & PEER_LIBERAL != 0 {
        rec.peer_mut(0).flags &= !PEER_LIBERAL;
        rec.peer_mut(1).flags &= !PEER_LIBERAL;
    }
    true
}

/// nf_conntrack's window check (`tcp_in_window`): a segment `seq..end`
/// acknowledging `ack` from a sender whose `(end, maxend, maxwin)` are
/// `sender`, to a receiver whose `(end, maxwin)` are `receiver`.
#[inline(always)]
pub(crate) fn in_window(seq: u32, end: u32, ack: u32, sender: (u32, u32, u32), receiver: (u32, u32)) -> bool {
    let ((s_end, s_maxend, s_maxwin), (r_end, r_maxwin)) = (sender, receiver);
    let max_ack_window = if s_maxwin == 0 { MAX_ACK_WINDOW } else { s_maxwin };
    before_eq(seq, s_maxend)
        && after_eq(end, s_end.wrapping_sub(r_maxwin))
        && before_eq(ack, r_end)
        && after_eq(ack, r_end.wrapping_sub(max_ack_window))
}

/// A window field scaled by a shift, which RFC 7323 §2.3 caps at 14. A
/// record can only hold larger shifts if it was corrupted (a race, or a
/// map written by something else); clamping keeps the shift from
/// overflowing either way.
#[inline(always)]
pub(crate) fn scaled(window: u16, scale: u8) -> u32 {
    (window as u32) << clamp_wscale(scale)
}

/// Judge a RST from `dir` as its receiver would, then apply it.
#[inline(always)]
fn reset(rec: &mut FlowRecord, seg: &Segment, dir: u8, out: &mut Outcome) -> u8 {
    let class = classify_reset(rec, seg, dir);
    out.reset = class;
    match reset_fate(class) {
        ResetFate::Accepted => {
            rec.peer_mut(dir).flags |= PEER_RST;
            rec.state = STATE_CLOSE;
        }
        // RFC 9293 §3.10.7.3: the client answering an unacceptable ACK
        // stays in SYN-SENT; its SYN (retransmitted) goes on. Nothing to
        // change, nothing to drop: it is how a half-open peer learns of its
        // state (§3.5.2).
        ResetFate::Unchanged => {}
        ResetFate::TimeWait => {
            // RFC 1337 §3: an endpoint should ignore it (Linux does with
            // net.ipv4.tcp_rfc1337=1). By default Linux kills the TIME-WAIT
            // socket when the RST's sequence number is exactly the next one
            // it expects (tcp_timewait_state_process); any other it answers
            // with an ACK. Dropping it is justified either way.
            out.drop_justified = true;
            let receiver = rec.peer((dir ^ 1) & 1);
            if seg.seq == receiver.maxack || seg.seq == rec.peer(dir).end {
                rec.peer_mut(dir).flags |= PEER_RST;
                rec.state = STATE_CLOSE;
            }
        }
        ResetFate::Challenged | ResetFate::Ignored => {
            // RFC 5961 §3.2: in window but inexact, the receiver sends a
            // challenge ACK and keeps the connection; out of window it
            // ignores the RST. Either way the state stays (nf_conntrack keeps
            // established state for the challenge ACK to work).
            out.valid = false;
            out.drop_justified = true;
        }
    }
    rec.state
}

/// How the receiver of a RST from `dir` judges it. Pure: does not change
/// the record, so a caller can decide to drop before applying it.
#[inline(always)]
pub fn classify_reset<S: SegmentFields>(rec: &FlowRecord, seg: &S, dir: u8) -> u8 {
    let (s, r) = (dir & 1, (dir ^ 1) & 1);
    let (sender, receiver) = (rec.peer(s), rec.peer(r));
    match rec.state {
        STATE_NONE => return RESET_UNKNOWN_FLOW,
        // RFC 9293 §3.10.7.3 SYN-SENT: a RST is acceptable only if its ACK
        // acknowledges the SYN (Linux answers a SYN to a closed port with
        // RST|ACK, seq 0, ack ISN+1).
        STATE_SYN_SENT | STATE_SYN_SENT2 if receiver.flags & PEER_SYN != 0 && receiver.flags & PEER_MAXACK_SET == 0 => {
            let acks_syn = seg.has_ack() && seg.ack() == receiver.end;
            return if acks_syn || (seg.seq() == 0 && !seg.has_ack()) { RESET_REFUSED } else { RESET_OUT_OF_WINDOW };
        }
        // RFC 9293 §3.10.7.3 SYN-SENT: "If SEG.ACK =< ISS or SEG.ACK >
        // SND.NXT, send a reset <SEQ=SEG.ACK><CTL=RST>": the client answers
        // the unacceptable ACK we saw (`note_unacceptable_ack`) and stays in
        // SYN-SENT.
        STATE_SYN_SENT
            if s == rec.initiator & 1
                && receiver.flags & (PEER_SYN | PEER_MAXACK_SET) == PEER_MAXACK_SET
                && !seg.has_ack()
                && seg.seq() == receiver.maxack =>
        {
            return RESET_UNACCEPTABLE_ACK;
        }
        // RFC 1337: a RST towards an endpoint in TIME-WAIT.
        STATE_TIME_WAIT if rec.info & closer_bit(r) != 0 => return RESET_TIME_WAIT,
        _ => {}
    }
    // Synchronized states: RFC 5961 §3.2 / RFC 9293 §3.10.7.4.
    if receiver.flags & (PEER_LIBERAL | PEER_SEEN) != PEER_SEEN || receiver.flags & PEER_MAXACK_SET == 0 {
        return RESET_UNJUDGED;
    }
    // What the receiver expects next: at least what it acknowledged, at most
    // everything the sender sent (when no ACK for it has been seen yet).
    let rcv_nxt = receiver.maxack;
    if seg.seq() == rcv_nxt && !seg.has_ack() && rec.state != STATE_SYN_RECV {
        // The reply of a TCP with no such connection to a segment carrying
        // ACK: RST, seq = that ACK, no ACK flag (RFC 9293 §3.10.7.1). From
        // a side that sent its FIN, it is the answer to data after its close
        // (RFC 1122 §4.2.2.13: Linux resets on new data in FIN-WAIT once the
        // application closed, and answers from a FIN-WAIT-2 timewait socket
        // or no socket at all later): it closed on purpose and lost nothing.
        return if sender.flags & PEER_FIN != 0 { RESET_DATA_AFTER_CLOSE } else { RESET_STATELESS_PEER };
    }
    if seg.seq() == rcv_nxt || seg.seq() == sender.end {
        return RESET_EXACT;
    }
    // Behind what the receiver already acknowledged: nf_conntrack's
    // "invalid rst" (before(seq, td_maxack)), checked before the train rule
    // so that an old retransmission cannot make a stale RST look exact.
    if before(seg.seq(), rcv_nxt) {
        return RESET_OUT_OF_WINDOW;
    }
    // nf_conntrack's RST train: RST right after the sender's own segment,
    // with the sequence number at that segment's end.
    let last_dir = if rec.info & INFO_LAST_DIR_HI != 0 { 1 } else { 0 };
    if rec.info & INFO_LAST_ACK != 0 && last_dir == s && seg.seq() == rec.last_end {
        return RESET_EXACT;
    }
    // The receive window's right edge is the furthest the receiver allowed
    // the sender to go.
    if between(seg.seq(), rcv_nxt, sender.maxend) {
        RESET_IN_WINDOW
    } else {
        RESET_OUT_OF_WINDOW
    }
}

#[inline(always)]
fn note_last(rec: &mut FlowRecord, seg: &Segment, dir: u8) {
    let plain_ack = seg.flags & (tcp::SYN | tcp::FIN | tcp::RST) == 0 && seg.has(tcp::ACK);
    note_last_end(rec, seg.seq.wrapping_add(seg.seq_len()), dir, plain_ack);
}

/// `note_last` of a segment ending at `end`, a plain ACK (no SYN, FIN or
/// RST) or not.
#[inline(always)]
pub(crate) fn note_last_end(rec: &mut FlowRecord, end: u32, dir: u8, plain_ack: bool) {
    rec.last_end = end;
    let mut info = rec.info & !(INFO_LAST_DIR_HI | INFO_LAST_ACK);
    if dir & 1 == 1 {
        info |= INFO_LAST_DIR_HI;
    }
    if plain_ack {
        info |= INFO_LAST_ACK;
    }
    // Only when it changes (a run of segments one way leaves it as it is):
    // `info` also holds the closer's bits, which a stale store would lose.
    if info != rec.info {
        rec.info = info;
    }
}

/// Each endpoint's state (`EP_*`), for the endpoint that sends in `dir`.
#[inline(always)]
pub fn endpoint_state(rec: &FlowRecord, dir: u8) -> u8 {
    let d = dir & 1;
    let is_client = d == rec.initiator & 1;
    let closer = rec.info & closer_bit(d) != 0;
    let both_closed = rec.info & (INFO_CLOSER_LO | INFO_CLOSER_HI) == (INFO_CLOSER_LO | INFO_CLOSER_HI);
    match rec.state {
        STATE_SYN_SENT => {
            if is_client { EP_SYN_SENT } else { EP_NONE }
        }
        STATE_SYN_SENT2 => EP_SYN_SENT,
        STATE_SYN_RECV => {
            if rec.info & INFO_SIMULTANEOUS_OPEN == 0 && is_client {
                // It received the SYN-ACK (or will): established as soon as it does.
                EP_ESTABLISHED
            } else {
                EP_SYN_RECV
            }
        }
        STATE_ESTABLISHED => EP_ESTABLISHED,
        STATE_FIN_WAIT => {
            if closer { EP_FIN_WAIT_1 } else { EP_CLOSE_WAIT }
        }
        STATE_CLOSE_WAIT => {
            if closer { EP_FIN_WAIT_2 } else { EP_CLOSE_WAIT }
        }
        STATE_LAST_ACK => {
            if both_closed {
                // Simultaneous close: CLOSING until its own FIN is acknowledged,
                // then TIME-WAIT.
                if fin_acked(rec, d) { EP_TIME_WAIT } else { EP_CLOSING }
            } else if closer {
                EP_TIME_WAIT
            } else {
                EP_LAST_ACK
            }
        }
        STATE_TIME_WAIT => {
            if closer { EP_TIME_WAIT } else { EP_CLOSED }
        }
        STATE_CLOSE => EP_CLOSED,
        _ => EP_NONE,
    }
}

/// Names, as nf_conntrack and `ss` print them.
pub const fn state_name(state: u8) -> &'static str {
    match state {
        STATE_SYN_SENT => "SYN_SENT",
        STATE_SYN_SENT2 => "SYN_SENT2",
        STATE_SYN_RECV => "SYN_RECV",
        STATE_ESTABLISHED => "ESTABLISHED",
        STATE_FIN_WAIT => "FIN_WAIT",
        STATE_CLOSE_WAIT => "CLOSE_WAIT",
        STATE_LAST_ACK => "LAST_ACK",
        STATE_TIME_WAIT => "TIME_WAIT",
        STATE_CLOSE => "CLOSE",
        _ => "NONE",
    }
}

pub const fn endpoint_state_name(state: u8) -> &'static str {
    match state {
        EP_SYN_SENT => "SYN-SENT",
        EP_SYN_RECV => "SYN-RECV",
        EP_ESTABLISHED => "ESTAB",
        EP_FIN_WAIT_1 => "FIN-WAIT-1",
        EP_FIN_WAIT_2 => "FIN-WAIT-2",
        EP_CLOSE_WAIT => "CLOSE-WAIT",
        EP_CLOSING => "CLOSING",
        EP_LAST_ACK => "LAST-ACK",
        EP_TIME_WAIT => "TIME-WAIT",
        EP_CLOSED => "CLOSED",
        _ => "NONE",
    }
}

/// What the receiver of a RST does with it, by class (`RESET_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetFate {
    /// It accepts it and the connection is gone (RFC 9293 §3.10.7): a
    /// refusal, an exact reset, a stateless peer's reply, or one it cannot
    /// be judged against (window unknown; no record at all). Never dropped.
    Accepted,
    /// Legitimate, and its sender keeps its state: the client in SYN-SENT
    /// answering an unacceptable ACK (RFC 9293 §3.10.7.3). Never dropped.
    Unchanged,
    /// Towards an endpoint in TIME-WAIT: RFC 1337 says ignore it; Linux by
    /// default accepts an exact one (`reset`). Dropping it is justified.
    TimeWait,
    /// Inside the window but inexact: the receiver answers with a
    /// challenge ACK and keeps the connection (RFC 5961 §3.2).
    Challenged,
    /// Outside the window: the receiver ignores it (RFC 9293 §3.10.7.4).
    Ignored,
}

impl ResetFate {
    /// Whether the RST may end the connection at its receiver.
    pub const fn accepted(self) -> bool {
        matches!(self, ResetFate::Accepted | ResetFate::TimeWait)
    }

    /// Whether dropping the RST before its receiver sees it is justified:
    /// it is invalid, or an assassination (`Outcome::drop_justified`).
    pub const fn drop_justified(self) -> bool {
        matches!(self, ResetFate::TimeWait | ResetFate::Challenged | ResetFate::Ignored)
    }
}

/// The one table of reset classes: `reset` applies it, `guard::drops`
/// decides from it which RSTs a policy drops. A class not listed (none,
/// or a value no version of `classify_reset` returns) is never dropped.
pub const fn reset_fate(class: u8) -> ResetFate {
    match class {
        RESET_TIME_WAIT => ResetFate::TimeWait,
        RESET_IN_WINDOW => ResetFate::Challenged,
        RESET_OUT_OF_WINDOW => ResetFate::Ignored,
        RESET_UNACCEPTABLE_ACK => ResetFate::Unchanged,
        // RESET_REFUSED, RESET_EXACT, RESET_STATELESS_PEER,
        // RESET_DATA_AFTER_CLOSE, RESET_UNJUDGED, RESET_UNKNOWN_FLOW.
        _ => ResetFate::Accepted,
    }
}

pub(crate) mod tally;

#[cfg(test)]
mod tests;
