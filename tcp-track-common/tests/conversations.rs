//! Random but valid TCP conversations, played by a reference model of two
//! endpoints and watched on the wire by the observer (`state::step`): the
//! endpoint states the observer infers must be the states the endpoints are
//! really in. Also: no byte string makes the parser panic, and no segment,
//! however malformed, makes `step` panic.
//!
//! Where the observer sits: a segment is handed to `step` at the instant its
//! receiver processes it. A lost segment is seen by neither. This is what the
//! observer's own conventions assume (the client is ESTAB as soon as the
//! SYN-ACK is seen: it is processing it), and it makes "the observer is
//! behind" a question of which segments it has not seen yet, which the
//! harness knows exactly.
//!
//! What is compared, and when: after every delivered segment, each endpoint
//! whose state the wire can show (`Sim::comparable`: its own SYN and FIN
//! seen, everything seen from its peer taken in, and for resets, the RST
//! accepted) must be in the state the observer reports for it. A sender's
//! state changes when it sends, so a FIN still in flight or lost leaves the
//! observer rightly behind; a receiver that dropped an out-of-order FIN has
//! not moved although the observer saw the FIN. At every quiescent point
//! (nothing in flight, nothing unacknowledged, no abort) and at the end of
//! every conversation without an abort, both endpoints must be comparable,
//! so the rule cannot quietly exclude everything.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tcp_track_common::flow::{self, FlowRecord, DIR_HI_TO_LO, DIR_LO_TO_HI};
use tcp_track_common::parse::{self, Segment, FAMILY_IPV4, NO_WSCALE, OPT_MSS, OPT_SACK_PERM, OPT_WSCALE};
use tcp_track_common::seq::{after, after_eq, before, before_eq};
use tcp_track_common::state::{
    classify_reset, endpoint_state, endpoint_state_name, state_name, step, EP_CLOSED, EP_CLOSE_WAIT, EP_CLOSING,
    EP_ESTABLISHED, EP_FIN_WAIT_1, EP_FIN_WAIT_2, EP_LAST_ACK, EP_NONE, EP_SYN_RECV, EP_SYN_SENT, EP_TIME_WAIT,
    RESET_DATA_AFTER_CLOSE, RESET_STATELESS_PEER, STATE_CLOSE, STATE_NONE,
};
use tcp_track_common::tcp::{self, ACK, FIN, PSH, RST, SYN};

/// The client sends in lo→hi, the server in hi→lo; also indexes per-side arrays.
const C: usize = DIR_LO_TO_HI as usize;
const S: usize = DIR_HI_TO_LO as usize;

/// Window field of every segment. The model never has more than this many
/// bytes unacknowledged, so whether scaling was negotiated never limits it.
const WINDOW: u16 = 65535;

/// Data each side may send in one conversation. A retransmission is a copy
/// of the original segment, ACK field included, so an old copy can carry an
/// acknowledgment far behind the peer's data. A real TCP refreshes the ACK
/// field and never sends one older than a window; staying under the
/// smallest window (65535, unscaled) keeps the copies within the bound
/// nf_conntrack's window check (and so the observer's) rightly enforces.
const MAX_DATA: u32 = 60_000;

// ---------------------------------------------------------------------------
// The reference model: two RFC 9293 endpoints.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// The server before the SYN arrives.
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl St {
    /// The observer's name for the state. A listener has no connection yet,
    /// which the observer calls NONE.
    fn ep(self) -> u8 {
        match self {
            St::Listen => EP_NONE,
            St::SynSent => EP_SYN_SENT,
            St::SynReceived => EP_SYN_RECV,
            St::Established => EP_ESTABLISHED,
            St::FinWait1 => EP_FIN_WAIT_1,
            St::FinWait2 => EP_FIN_WAIT_2,
            St::CloseWait => EP_CLOSE_WAIT,
            St::Closing => EP_CLOSING,
            St::LastAck => EP_LAST_ACK,
            St::TimeWait => EP_TIME_WAIT,
            St::Closed => EP_CLOSED,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// It aborted (sent RST).
    Abort,
    /// It accepted a RST.
    Reset,
    /// LAST-ACK, its FIN acknowledged.
    Close,
}

#[derive(Clone, Debug)]
struct Endpoint {
    state: St,
    closed_by: Option<Cause>,
    iss: u32,
    snd_una: u32,
    snd_nxt: u32,
    /// None until the peer's SYN arrives.
    rcv_nxt: Option<u32>,
    /// Shift offered in its SYN; cleared on the server if the client's SYN
    /// did not offer one (RFC 7323 §2.2: the SYN-ACK may only echo it).
    wscale: Option<u8>,
    /// Receive window in bytes, once scaling is settled.
    rcv_wnd: u32,
    /// Segments occupying sequence space, sent and not yet acknowledged
    /// (oldest first): what a timeout retransmits.
    rtx: VecDeque<Segment>,
    data_sent: u32,
    sent_syn: bool,
    sent_fin: bool,
}

impl Endpoint {
    fn new(state: St, iss: u32, wscale: Option<u8>) -> Self {
        Endpoint {
            state,
            closed_by: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            rcv_nxt: None,
            wscale,
            rcv_wnd: WINDOW as u32,
            rtx: VecDeque::new(),
            data_sent: 0,
            sent_syn: false,
            sent_fin: false,
        }
    }

    fn can_send_data(&self) -> bool {
        matches!(self.state, St::Established | St::CloseWait)
    }

    fn in_flight(&self) -> u32 {
        self.snd_nxt.wrapping_sub(self.snd_una)
    }

    fn prune_acked(&mut self) {
        let una = self.snd_una;
        self.rtx.retain(|s| after(s.seq.wrapping_add(s.seq_len()), una));
    }
}

/// Why a segment is on the wire, for the trace of a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Syn,
    Data,
    Fin,
    Ack,
    Abort,
    /// RFC 9293 §3.10.7.1: a closed endpoint's answer.
    ResetReply,
    /// RFC 5961 §3.2: an in-window RST that is not exact.
    ChallengeAck,
    Retransmission,
}

#[derive(Clone, Copy, Debug)]
struct Wire {
    seg: Segment,
    kind: Kind,
}

/// What a conversation went through, so that the run can prove the
/// generator reaches every scenario the brief lists.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    cases: u32,
    compared: u32,
    quiescent: u32,
    client_closed_first: u32,
    server_closed_first: u32,
    simultaneous_close: u32,
    half_close_data: u32,
    time_wait: u32,
    last_ack_closed: u32,
    client_abort: u32,
    server_abort: u32,
    reset_accepted: u32,
    reset_reply: u32,
    challenge_ack: u32,
    lost_syn: u32,
    lost_synack: u32,
    lost_data: u32,
    lost_fin: u32,
    lost_ack: u32,
    out_of_order: u32,
    wrapped: u32,
    fully_compared_at_end: u32,
    /// Conversations stopped at the known limitation (see
    /// `known_limitation_stale_stateless_reset`).
    known_limitation_stale_reset: u32,
}

impl Coverage {
    fn add(&mut self, o: &Coverage) {
        macro_rules! sum { ($($f:ident),*) => { $( self.$f += o.$f; )* } }
        sum!(
            cases, compared, quiescent, client_closed_first, server_closed_first, simultaneous_close, half_close_data,
            time_wait, last_ack_closed, client_abort, server_abort, reset_accepted, reset_reply, challenge_ack,
            lost_syn, lost_synack, lost_data, lost_fin, lost_ack, out_of_order, wrapped, fully_compared_at_end,
            known_limitation_stale_reset
        );
    }

    /// Per conversation, count each scenario once.
    fn once(&self) -> Coverage {
        let b = |v: u32| (v > 0) as u32;
        Coverage {
            cases: 1,
            compared: self.compared,
            quiescent: self.quiescent,
            client_closed_first: b(self.client_closed_first),
            server_closed_first: b(self.server_closed_first),
            simultaneous_close: b(self.simultaneous_close),
            half_close_data: b(self.half_close_data),
            time_wait: b(self.time_wait),
            last_ack_closed: b(self.last_ack_closed),
            client_abort: b(self.client_abort),
            server_abort: b(self.server_abort),
            reset_accepted: b(self.reset_accepted),
            reset_reply: b(self.reset_reply),
            challenge_ack: b(self.challenge_ack),
            lost_syn: b(self.lost_syn),
            lost_synack: b(self.lost_synack),
            lost_data: b(self.lost_data),
            lost_fin: b(self.lost_fin),
            lost_ack: b(self.lost_ack),
            out_of_order: b(self.out_of_order),
            wrapped: b(self.wrapped),
            fully_compared_at_end: b(self.fully_compared_at_end),
            known_limitation_stale_reset: b(self.known_limitation_stale_reset),
        }
    }
}

fn in_window(x: u32, lo: u32, wnd: u32) -> bool {
    after_eq(x, lo) && before(x, lo.wrapping_add(wnd))
}

fn side_name(d: usize) -> &'static str {
    if d == C { "C" } else { "S" }
}

fn flag_names(f: u8) -> String {
    let mut v = Vec::new();
    for (bit, name) in [(SYN, "SYN"), (RST, "RST"), (FIN, "FIN"), (PSH, "PSH"), (ACK, "ACK")] {
        if f & bit != 0 {
            v.push(name);
        }
    }
    v.join("|")
}

/// Two endpoints, the wire between them, and the observer.
struct Sim {
    ep: [Endpoint; 2],
    /// Sent by each side and not yet delivered or lost, in order (no reordering).
    flight: [VecDeque<Wire>; 2],
    rec: FlowRecord,
    now: u64,
    /// What the observer has seen of each side: the furthest end of a
    /// non-RST segment, and whether it saw its SYN and its FIN.
    seen_end: [Option<u32>; 2],
    seen_syn: [bool; 2],
    seen_fin: [bool; 2],
    /// The highest acknowledgment seen from each side.
    seen_ack: [Option<u32>; 2],
    /// The last segment seen, and its sender.
    last_seen: Option<(usize, Segment)>,
    aborted: bool,
    /// Stop at the known limitation of the observer (the property goes on
    /// looking for real disagreements), or fail on it (its own test).
    tolerate_known_limitation: bool,
    halted: bool,
    /// The server answers a duplicate SYN in SYN-RECEIVED as RFC 9293
    /// §3.10.7.4 says (an ACK) rather than as Linux does (the SYN-ACK again).
    rfc_dup_syn: bool,
    trace: String,
    cov: Coverage,
}

impl Sim {
    fn new(isn: [u32; 2], wscale: [Option<u8>; 2]) -> Sim {
        let mut sim = Sim {
            ep: [Endpoint::new(St::SynSent, isn[C], wscale[C]), Endpoint::new(St::Listen, isn[S], wscale[S])],
            flight: [VecDeque::new(), VecDeque::new()],
            rec: FlowRecord::default(),
            now: 1_000_000_000,
            seen_end: [None; 2],
            seen_syn: [false; 2],
            seen_fin: [false; 2],
            seen_ack: [None; 2],
            last_seen: None,
            aborted: false,
            tolerate_known_limitation: true,
            halted: false,
            rfc_dup_syn: false,
            trace: String::new(),
            cov: Coverage::default(),
        };
        let _ = writeln!(
            sim.trace,
            "ISN C={} S={}, wscale offered C={:?} S={:?}; seq/ack below are relative to the ISNs",
            isn[C], isn[S], wscale[C], wscale[S]
        );
        // connect(): the conversation always starts with the client's SYN.
        let syn = sim.make(C, SYN, 0);
        sim.emit(C, syn, Kind::Syn);
        sim
    }

    fn make(&self, d: usize, flags: u8, payload: u32) -> Segment {
        let e = &self.ep[d];
        let mut s = Segment {
            family: FAMILY_IPV4,
            flags,
            seq: e.snd_nxt,
            window: WINDOW,
            payload_len: payload,
            wscale: NO_WSCALE,
            ..Segment::default()
        };
        if flags & ACK != 0 {
            s.ack = e.rcv_nxt.expect("the model only acknowledges after the peer's SYN");
        }
        if flags & SYN != 0 {
            s.opt_flags = OPT_MSS | OPT_SACK_PERM;
            s.mss = 1460;
            if let Some(ws) = e.wscale {
                s.opt_flags |= OPT_WSCALE;
                s.wscale = ws;
            }
        }
        s
    }

    fn describe(&self, d: usize, seg: &Segment) -> String {
        let rel_seq = seg.seq.wrapping_sub(self.ep[d].iss);
        let mut s = format!("{}→{} {:<11} seq={}", side_name(d), side_name(d ^ 1), flag_names(seg.flags), rel_seq);
        if seg.flags & ACK != 0 {
            let _ = write!(s, " ack={}", seg.ack.wrapping_sub(self.ep[d ^ 1].iss));
        }
        if seg.payload_len > 0 {
            let _ = write!(s, " len={}", seg.payload_len);
        }
        if seg.wscale != NO_WSCALE {
            let _ = write!(s, " wscale={}", seg.wscale);
        }
        s
    }

    fn states(&self) -> String {
        let (oc, os) = (endpoint_state(&self.rec, C as u8), endpoint_state(&self.rec, S as u8));
        format!(
            "model C={} S={} | observer {} C={} S={}",
            endpoint_state_name(self.ep[C].state.ep()),
            endpoint_state_name(self.ep[S].state.ep()),
            state_name(self.rec.state),
            endpoint_state_name(oc),
            endpoint_state_name(os)
        )
    }

    /// Put a new segment on the wire; one that occupies sequence space
    /// advances SND.NXT and waits for its acknowledgment.
    fn emit(&mut self, d: usize, seg: Segment, kind: Kind) {
        let len = seg.seq_len();
        if len > 0 && seg.flags & RST == 0 {
            let e = &mut self.ep[d];
            e.snd_nxt = seg.seq.wrapping_add(len);
            e.rtx.push_back(seg);
            e.sent_syn |= seg.has(SYN);
            e.sent_fin |= seg.has(FIN);
            if seg.seq.checked_add(len).is_none() {
                self.cov.wrapped += 1;
            }
        }
        let _ = writeln!(self.trace, "  send   {} ({kind:?})", self.describe(d, &seg));
        self.flight[d].push_back(Wire { seg, kind });
    }

    /// The same segment again, ACK field and all: a copy is the one
    /// retransmission every TCP could send, whatever else it refreshes.
    fn resend(&mut self, d: usize, seg: Segment) {
        let _ = writeln!(self.trace, "  resend {}", self.describe(d, &seg));
        self.flight[d].push_back(Wire { seg, kind: Kind::Retransmission });
    }

    fn ack_now(&mut self, d: usize, kind: Kind) {
        let s = self.make(d, ACK, 0);
        self.emit(d, s, kind);
    }

    fn close(&mut self, d: usize, cause: Cause) {
        let e = &mut self.ep[d];
        e.state = St::Closed;
        e.closed_by = Some(cause);
        e.rtx.clear();
        match cause {
            Cause::Reset => self.cov.reset_accepted += 1,
            Cause::Close => self.cov.last_ack_closed += 1,
            Cause::Abort => {}
        }
    }

    /// RFC 9293 §3.10.7.1: what an endpoint with no connection answers.
    fn reply_reset(&mut self, d: usize, to: &Segment) {
        if to.has(RST) {
            return;
        }
        let mut r = Segment { family: FAMILY_IPV4, wscale: NO_WSCALE, ..Segment::default() };
        if to.has(ACK) {
            r.flags = RST;
            r.seq = to.ack;
        } else {
            r.flags = RST | ACK;
            r.ack = to.seq.wrapping_add(to.seq_len());
        }
        self.cov.reset_reply += 1;
        self.emit(d, r, Kind::ResetReply);
    }

    // ---- the receiving side of the model (RFC 9293 §3.10.7) ----

    fn receive(&mut self, d: usize, seg: Segment) {
        match self.ep[d].state {
            St::Closed => return self.reply_reset(d, &seg),
            St::Listen => {
                if seg.has(SYN) && !seg.has(ACK) {
                    let client_scale = (seg.opt_flags & OPT_WSCALE != 0).then_some(seg.wscale);
                    let e = &mut self.ep[d];
                    e.rcv_nxt = Some(seg.seq.wrapping_add(1));
                    if client_scale.is_none() {
                        e.wscale = None;
                    }
                    if let (Some(mine), Some(_)) = (e.wscale, client_scale) {
                        e.rcv_wnd = (WINDOW as u32) << mine;
                    }
                    e.state = St::SynReceived;
                    let synack = self.make(d, SYN | ACK, 0);
                    self.emit(d, synack, Kind::Syn);
                } else {
                    self.reply_reset(d, &seg);
                }
                return;
            }
            St::SynSent => {
                let e = &self.ep[d];
                let acks_syn = seg.has(ACK) && seg.ack == e.iss.wrapping_add(1);
                if seg.has(RST) {
                    if acks_syn {
                        self.close(d, Cause::Reset);
                    }
                } else if seg.has(ACK) && !acks_syn {
                    self.reply_reset(d, &seg);
                } else if seg.has(SYN) && acks_syn {
                    let server_scale = (seg.opt_flags & OPT_WSCALE != 0).then_some(seg.wscale);
                    let e = &mut self.ep[d];
                    e.rcv_nxt = Some(seg.seq.wrapping_add(1));
                    e.snd_una = seg.ack;
                    e.prune_acked();
                    if let (Some(mine), Some(_)) = (e.wscale, server_scale) {
                        e.rcv_wnd = (WINDOW as u32) << mine;
                    }
                    e.state = St::Established;
                    self.ack_now(d, Kind::Ack);
                }
                return;
            }
            _ => {}
        }

        let rcv_nxt = self.ep[d].rcv_nxt.expect("synchronized");
        let wnd = self.ep[d].rcv_wnd;
        if seg.has(RST) {
            // RFC 5961 §3.2.
            if seg.seq == rcv_nxt {
                self.close(d, Cause::Reset);
            } else if in_window(seg.seq, rcv_nxt, wnd) {
                self.cov.challenge_ack += 1;
                self.ack_now(d, Kind::ChallengeAck);
            }
            return;
        }
        if seg.has(SYN) {
            if self.ep[d].state == St::SynReceived && !seg.has(ACK) && !self.rfc_dup_syn {
                // The client's SYN again: our SYN-ACK was lost or is late.
                // Linux answers with the SYN-ACK (inet_rtx_syn_ack).
                if let Some(synack) = self.ep[d].rtx.front().copied() {
                    self.resend(d, synack);
                }
            } else {
                // A copy of a SYN-ACK already acknowledged: below RCV.NXT,
                // unacceptable, answered with an ACK. RFC 9293 §3.10.7.4
                // answers a duplicate SYN in SYN-RECEIVED the same way.
                self.ack_now(d, Kind::Ack);
            }
            return;
        }

        let len = seg.seq_len();
        let acceptable = if len == 0 {
            in_window(seg.seq, rcv_nxt, wnd)
        } else {
            in_window(seg.seq, rcv_nxt, wnd) || in_window(seg.seq.wrapping_add(len - 1), rcv_nxt, wnd)
        };
        if !acceptable {
            self.ack_now(d, Kind::Ack);
            return;
        }
        if !seg.has(ACK) {
            return;
        }

        // The ACK field.
        {
            let e = &mut self.ep[d];
            if e.state == St::SynReceived {
                if seg.ack != e.iss.wrapping_add(1) {
                    return self.reply_reset(d, &seg);
                }
                e.state = St::Established;
            }
            if after(seg.ack, e.snd_una) && before_eq(seg.ack, e.snd_nxt) {
                e.snd_una = seg.ack;
                e.prune_acked();
            }
            let fin_acked = e.sent_fin && e.snd_una == e.snd_nxt;
            match e.state {
                St::FinWait1 if fin_acked => e.state = St::FinWait2,
                St::Closing if fin_acked => {
                    e.state = St::TimeWait;
                    self.cov.time_wait += 1;
                }
                St::LastAck if fin_acked => return self.close(d, Cause::Close),
                _ => {}
            }
        }

        if len == 0 {
            return;
        }
        // Data and FIN, only in order: without a reassembly queue (RFC 9293
        // allows one but does not require it) an out-of-order segment is
        // dropped and the sender's timeout repairs the gap.
        let e = &mut self.ep[d];
        let receiving = matches!(e.state, St::Established | St::FinWait1 | St::FinWait2);
        if seg.seq == rcv_nxt && receiving {
            let mut next = rcv_nxt.wrapping_add(seg.payload_len);
            if seg.payload_len > 0 && matches!(e.state, St::FinWait1 | St::FinWait2) {
                self.cov.half_close_data += 1;
            }
            if seg.has(FIN) {
                next = next.wrapping_add(1);
                e.state = match e.state {
                    St::Established => St::CloseWait,
                    // Our FIN is not acknowledged (else we would be in
                    // FIN-WAIT-2 by now): both FINs crossed.
                    St::FinWait1 => St::Closing,
                    _ => St::TimeWait,
                };
                match e.state {
                    St::Closing => self.cov.simultaneous_close += 1,
                    St::TimeWait => self.cov.time_wait += 1,
                    _ => {}
                }
            }
            self.ep[d].rcv_nxt = Some(next);
        } else if after(seg.seq, rcv_nxt) {
            self.cov.out_of_order += 1;
        }
        self.ack_now(d, Kind::Ack);
    }

    // ---- the observer ----

    /// Can the observer know `d`'s state right now? Only if it has seen
    /// every segment that changed that state, and the endpoint has taken in
    /// everything the observer saw from its peer. The wire cannot show a
    /// FIN or SYN that was sent but lost (or is still in flight), nor that a
    /// receiver dropped a segment it got out of order.
    fn comparable(&self, d: usize) -> bool {
        let (me, peer) = (&self.ep[d], &self.ep[d ^ 1]);
        match me.closed_by {
            // Its acceptance of the RST is on the wire (it was delivered and
            // accepted, so the observer judged the same segment).
            Some(Cause::Reset) => return true,
            // The observer follows the receiver's judgement of a RST (RFC
            // 5961: an inexact one may be forged), so an aborted endpoint is
            // visibly closed only once its peer accepted a RST from it. (If
            // both aborted, neither judged the other's RST: not comparable.)
            Some(Cause::Abort) => return peer.closed_by == Some(Cause::Reset),
            _ => {}
        }
        if (me.sent_syn && !self.seen_syn[d]) || (me.sent_fin && !self.seen_fin[d]) {
            return false;
        }
        me.state == St::Closed || self.seen_end[d ^ 1] == me.rcv_nxt
    }

    fn compare(&mut self) -> Result<(), TestCaseError> {
        for d in [C, S] {
            if !self.comparable(d) {
                continue;
            }
            self.cov.compared += 1;
            let (model, seen) = (self.ep[d].state.ep(), endpoint_state(&self.rec, d as u8));
            if model != seen {
                return Err(TestCaseError::fail(format!(
                    "{} is {} but the observer says {}\nconversation:\n{}",
                    if d == C { "the client" } else { "the server" },
                    endpoint_state_name(model),
                    endpoint_state_name(seen),
                    self.trace
                )));
            }
        }
        Ok(())
    }

    /// Everything sent has been delivered and acknowledged, and nobody
    /// aborted: the wire has shown all there is, so both endpoints must be
    /// comparable (this keeps `comparable` from quietly excluding too much).
    fn quiescent_check(&mut self) -> Result<(), TestCaseError> {
        let quiet = self.flight.iter().all(VecDeque::is_empty)
            && self.ep.iter().all(|e| e.state == St::Closed || e.rtx.is_empty())
            && !self.aborted;
        if !quiet {
            return Ok(());
        }
        self.cov.quiescent += 1;
        for d in [C, S] {
            if !self.comparable(d) {
                return Err(TestCaseError::fail(format!(
                    "quiescent but {} is not comparable\nconversation:\n{}",
                    side_name(d),
                    self.trace
                )));
            }
        }
        Ok(())
    }

    fn deliver(&mut self, d: usize) -> Result<(), TestCaseError> {
        let Some(w) = self.flight[d].pop_front() else { return Ok(()) };
        self.now += 1_000_000;
        let out = step(&mut self.rec, &w.seg, d as u8, self.now, false);
        let seg = w.seg;
        // The receiver's highest ACK before this segment.
        let receiver_acked = self.seen_ack[d ^ 1];
        if seg.has(ACK) && self.seen_ack[d].is_none_or(|a| after(seg.ack, a)) {
            self.seen_ack[d] = Some(seg.ack);
        }
        self.last_seen = Some((d, seg));
        if !seg.has(RST) {
            let end = seg.seq.wrapping_add(seg.seq_len());
            if self.seen_end[d].is_none_or(|e| after(end, e)) {
                self.seen_end[d] = Some(end);
            }
            self.seen_syn[d] |= seg.has(SYN);
            self.seen_fin[d] |= seg.has(FIN);
        }
        let _ = writeln!(
            self.trace,
            "  arrive {} ({:?}){}{}",
            self.describe(d, &seg),
            w.kind,
            if seg.has(RST) { format!(" reset class {}", out.reset) } else { String::new() },
            if out.valid { "" } else { " (observer: invalid)" }
        );
        let receiver_was_open = self.ep[d ^ 1].state != St::Closed;
        self.receive(d ^ 1, seg);
        let _ = writeln!(self.trace, "         {}", self.states());
        if self.tolerate_known_limitation
            && seg.has(RST)
            && matches!(out.reset, RESET_STATELESS_PEER | RESET_DATA_AFTER_CLOSE)
            && receiver_acked == Some(seg.seq)
            && receiver_was_open
            && self.ep[d ^ 1].state != St::Closed
        {
            // KNOWN LIMITATION (see `known_limitation_stale_stateless_reset`):
            // a RST without ACK whose seq is the receiver's last *seen* ACK
            // is taken as exact although the receiver has since taken in
            // more (the observer saw it arrive), so the receiver ignores it
            // and the observer closes the flow. The two can never agree
            // again; stop here and count it. From a side that had sent its
            // FIN the same RST is classed RESET_DATA_AFTER_CLOSE (and a
            // Linux receiver in CLOSE-WAIT would accept it, RCV.NXT - 1
            // after a FIN: tcp_reset_check; this model is strict RFC 5961).
            self.cov.known_limitation_stale_reset += 1;
            self.halted = true;
            return Ok(());
        }
        // The RST-train and server-ACK bugs this property found are fixed
        // in state.rs (their `fixed_*` regression tests are below), so they
        // are not tolerated here: a regression fails the property.
        self.compare()?;
        self.quiescent_check()
    }

    fn lose(&mut self, d: usize) {
        let Some(w) = self.flight[d].pop_front() else { return };
        let seg = w.seg;
        let _ = writeln!(self.trace, "  LOST   {}", self.describe(d, &seg));
        match (seg.flags & (SYN | ACK), seg.has(FIN), seg.payload_len > 0) {
            _ if seg.has(RST) => {}
            (SYN, _, _) => self.cov.lost_syn += 1,
            (f, _, _) if f == SYN | ACK => self.cov.lost_synack += 1,
            (_, true, _) => self.cov.lost_fin += 1,
            (_, _, true) => self.cov.lost_data += 1,
            _ => self.cov.lost_ack += 1,
        }
        // The sender's retransmission timer fires for what it still waits
        // to see acknowledged; a pure ACK or a RST is never retransmitted.
        let e = &self.ep[d];
        let end = seg.seq.wrapping_add(seg.seq_len());
        if seg.seq_len() > 0 && !seg.has(RST) && e.state != St::Closed && after(end, e.snd_una) {
            self.resend(d, seg);
        }
    }

    fn timeout(&mut self, d: usize) {
        if self.ep[d].state == St::Closed {
            return;
        }
        if let Some(oldest) = self.ep[d].rtx.front().copied() {
            self.resend(d, oldest);
        }
    }

    fn send(&mut self, d: usize, n: u32) {
        let e = &self.ep[d];
        if e.can_send_data() && e.in_flight() + n <= WINDOW as u32 && e.data_sent + n <= MAX_DATA {
            self.ep[d].data_sent += n;
            let s = self.make(d, ACK | PSH, n);
            self.emit(d, s, Kind::Data);
        }
    }

    fn shutdown(&mut self, d: usize, n: u32) {
        let e = &self.ep[d];
        // The FIN takes one more sequence number than the data.
        let n = if e.in_flight() + n < WINDOW as u32 && e.data_sent + n <= MAX_DATA { n } else { 0 };
        let next = match e.state {
            St::Established => St::FinWait1,
            St::CloseWait => St::LastAck,
            _ => return,
        };
        if !self.ep[d ^ 1].sent_fin {
            if d == C {
                self.cov.client_closed_first += 1;
            } else {
                self.cov.server_closed_first += 1;
            }
        }
        self.ep[d].data_sent += n;
        self.ep[d].state = next;
        let s = self.make(d, FIN | ACK | if n > 0 { PSH } else { 0 }, n);
        self.emit(d, s, Kind::Fin);
    }

    /// RFC 9293 §3.10.4 ABORT: RST at SND.NXT (with ACK, as Linux sends it).
    fn abort(&mut self, d: usize) {
        if !matches!(self.ep[d].state, St::Established | St::FinWait1 | St::FinWait2 | St::CloseWait) {
            return;
        }
        self.aborted = true;
        if d == C {
            self.cov.client_abort += 1;
        } else {
            self.cov.server_abort += 1;
        }
        let r = self.make(d, RST | ACK, 0);
        self.emit(d, r, Kind::Abort);
        self.close(d, Cause::Abort);
    }

    fn settle(&mut self) -> Result<(), TestCaseError> {
        let mut turn = C;
        while !self.halted && (!self.flight[C].is_empty() || !self.flight[S].is_empty()) {
            if self.flight[turn].is_empty() {
                turn ^= 1;
            }
            self.deliver(turn)?;
            turn ^= 1;
        }
        Ok(())
    }

    fn play(&mut self, actions: &[Action]) -> Result<(), TestCaseError> {
        for a in actions {
            if self.halted {
                return Ok(());
            }
            let _ = writeln!(self.trace, "{a:?}");
            match *a {
                Action::Send(x, n) => self.send(x.d(), n as u32),
                Action::Close(x, n) => self.shutdown(x.d(), n as u32),
                Action::Abort(x) => self.abort(x.d()),
                Action::Deliver(x) => self.deliver(x.d())?,
                Action::Lose(x) => self.lose(x.d()),
                Action::Timeout(x) => self.timeout(x.d()),
                Action::Settle => self.settle()?,
            }
        }
        self.finish()
    }

    /// Let the conversation run to rest: deliver everything, let timers
    /// retransmit whatever is unacknowledged, and let a live endpoint facing
    /// an aborted peer send a byte, which is how it would learn of it.
    fn finish(&mut self) -> Result<(), TestCaseError> {
        let _ = writeln!(self.trace, "(run to rest)");
        let mut poked = [false; 2];
        for _ in 0..10_000 {
            if self.halted {
                return Ok(());
            }
            if !self.flight[C].is_empty() || !self.flight[S].is_empty() {
                self.settle()?;
            } else if let Some(d) = [C, S].into_iter().find(|&d| self.ep[d].state != St::Closed && !self.ep[d].rtx.is_empty()) {
                self.timeout(d);
            } else if let Some(d) =
                [C, S].into_iter().find(|&d| !poked[d] && self.ep[d ^ 1].state == St::Closed && self.ep[d].can_send_data())
            {
                poked[d] = true;
                let s = self.make(d, ACK | PSH, 1);
                self.emit(d, s, Kind::Data);
            } else {
                break;
            }
        }
        self.compare()?;
        let all = self.comparable(C) && self.comparable(S);
        if all {
            self.cov.fully_compared_at_end += 1;
        } else if !self.aborted {
            return Err(TestCaseError::fail(format!("at rest but not comparable\nconversation:\n{}", self.trace)));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Generating conversations.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    C,
    S,
}

impl Side {
    fn d(self) -> usize {
        match self {
            Side::C => C,
            Side::S => S,
        }
    }
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(side_name(self.d()))
    }
}

/// An action that does not apply in the current state (sending from a
/// closed side, delivering from an empty wire) is skipped, so every
/// sequence is a valid conversation and shrinking stays valid too.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// Send n bytes of data.
    Send(Side, u16),
    /// close(): FIN, carrying n bytes of data with it.
    Close(Side, u16),
    /// Abort: RST|ACK at SND.NXT.
    Abort(Side),
    /// The oldest segment in flight from this side arrives (and is seen).
    Deliver(Side),
    /// The oldest segment in flight from this side is lost; if it is
    /// unacknowledged sequence space, its sender sends it again.
    Lose(Side),
    /// A retransmission timeout (spurious if the ACK is merely late).
    Timeout(Side),
    /// Deliver everything in flight, answers included, without loss.
    Settle,
}

#[derive(Clone, Debug)]
struct Conversation {
    isn: [u32; 2],
    wscale: [Option<u8>; 2],
    rfc_dup_syn: bool,
    actions: Vec<Action>,
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::C), Just(Side::S)]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        40 => side().prop_map(Action::Deliver),
        20 => (side(), 1u16..=2000).prop_map(|(s, n)| Action::Send(s, n)),
        10 => side().prop_map(Action::Lose),
        4 => side().prop_map(Action::Timeout),
        6 => (side(), prop_oneof![3 => Just(0u16), 1 => 1u16..=500]).prop_map(|(s, n)| Action::Close(s, n)),
        1 => side().prop_map(Action::Abort),
        6 => Just(Action::Settle),
    ]
}

/// Two ISNs in three a little below 2^32, so that the sequence numbers wrap
/// during the conversation (or, for the larger distances, the acknowledgment
/// of a late segment does).
fn isn() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..8_000).prop_map(|k| 0u32.wrapping_sub(k)), (0u32..70_000).prop_map(|k| 0u32.wrapping_sub(k))]
}

fn wscale() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), Just(Some(7)), Just(Some(0)), Just(Some(14))]
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (isn(), isn(), wscale(), wscale(), prop::bool::weighted(0.25), prop::collection::vec(action(), 0..100)).prop_map(
        |(ci, si, cw, sw, rfc_dup_syn, actions)| Conversation { isn: [ci, si], wscale: [cw, sw], rfc_dup_syn, actions },
    )
}

fn play(conv: &Conversation) -> Result<Coverage, TestCaseError> {
    let mut sim = Sim::new(conv.isn, conv.wscale);
    sim.rfc_dup_syn = conv.rfc_dup_syn;
    sim.play(&conv.actions)?;
    Ok(sim.cov.once())
}

const CONVERSATIONS: u32 = 3000;

#[test]
fn observer_agrees_with_the_endpoints() {
    // No failure persistence: it would write a regressions file next to this
    // one. A failure prints the minimal conversation and its segment trace.
    let config = Config { cases: CONVERSATIONS, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let total = RefCell::new(Coverage::default());
    let result = runner.run(&conversation(), |conv| {
        let cov = play(&conv)?;
        total.borrow_mut().add(&cov);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = total.into_inner();
    println!("{t:#?}");
    // The property is only as good as the conversations: every scenario
    // must actually occur, and comparisons must actually happen.
    let min = CONVERSATIONS / 100;
    for (name, n) in [
        ("client closed first", t.client_closed_first),
        ("server closed first", t.server_closed_first),
        ("simultaneous close", t.simultaneous_close),
        ("data into a half-closed endpoint", t.half_close_data),
        ("TIME-WAIT reached", t.time_wait),
        ("LAST-ACK to CLOSED", t.last_ack_closed),
        ("client abort", t.client_abort),
        ("server abort", t.server_abort),
        ("reset accepted", t.reset_accepted),
        ("reset answering a closed endpoint", t.reset_reply),
        ("challenge ACK", t.challenge_ack),
        ("lost SYN", t.lost_syn),
        ("lost SYN-ACK", t.lost_synack),
        ("lost data", t.lost_data),
        ("lost FIN", t.lost_fin),
        ("lost ACK", t.lost_ack),
        ("out-of-order arrival", t.out_of_order),
        ("sequence numbers wrapped", t.wrapped),
        ("fully compared at rest", t.fully_compared_at_end),
    ] {
        assert!(n >= min, "only {n} of {} conversations had: {name}", t.cases);
    }
    assert!(t.compared >= 10 * t.cases, "only {} comparisons in {} conversations", t.compared, t.cases);
    assert!(t.quiescent >= t.cases, "only {} quiescent points in {} conversations", t.quiescent, t.cases);
}

// ---------------------------------------------------------------------------
// No panics, whatever the input.
// ---------------------------------------------------------------------------

fn no_persistence(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// A sequence or acknowledgment number: anything, or close to something the
/// record knows, so that arbitrary segments also reach the in-window paths.
#[derive(Clone, Copy, Debug)]
enum Num {
    Any(u32),
    Near(u8, i32),
}

impl Num {
    fn resolve(self, rec: &FlowRecord, dir: u8) -> u32 {
        match self {
            Num::Any(v) => v,
            Num::Near(anchor, off) => {
                let (me, other) = (&rec.peer[(dir & 1) as usize], &rec.peer[((dir & 1) ^ 1) as usize]);
                let base = match anchor % 7 {
                    0 => me.end,
                    1 => other.end,
                    2 => me.maxack,
                    3 => other.maxack,
                    4 => me.isn,
                    5 => other.maxend,
                    _ => rec.last_end,
                };
                base.wrapping_add(off as u32)
            }
        }
    }
}

fn num() -> impl Strategy<Value = Num> {
    prop_oneof![
        any::<u32>().prop_map(Num::Any),
        (any::<u8>(), -3i32..=3).prop_map(|(a, o)| Num::Near(a, o)),
        (any::<u8>(), any::<i32>()).prop_map(|(a, o)| Num::Near(a, o)),
    ]
}

#[derive(Clone, Debug)]
struct ArbSegment {
    dir: u8,
    flags: u8,
    seq: Num,
    ack: Num,
    window: u16,
    payload_len: u32,
    wscale: u8,
    opt_flags: u8,
    dt: u64,
}

fn arb_segment() -> impl Strategy<Value = ArbSegment> {
    let flags = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK]),
    ];
    (
        any::<u8>(),
        flags,
        num(),
        num(),
        any::<u16>(),
        prop_oneof![0u32..3000, any::<u32>()],
        // The parser clamps the shift to 14 (RFC 7323 §2.3); a Segment built
        // any other way may carry anything.
        prop_oneof![Just(NO_WSCALE), 0u8..=14, any::<u8>()],
        any::<u8>(),
        prop_oneof![0u64..1_000_000_000, any::<u64>()],
    )
        .prop_map(|(dir, flags, seq, ack, window, payload_len, wscale, opt_flags, dt)| ArbSegment {
            dir,
            flags,
            seq,
            ack,
            window,
            payload_len,
            wscale,
            opt_flags,
            dt,
        })
}

/// Feed segments to a record; check what `step` promises about its result.
fn run_segments(mut rec: FlowRecord, segs: &[ArbSegment], sane: bool) -> Result<(), TestCaseError> {
    let mut now = 0u64;
    for a in segs {
        let seg = Segment {
            family: FAMILY_IPV4,
            flags: a.flags,
            seq: a.seq.resolve(&rec, a.dir),
            ack: a.ack.resolve(&rec, a.dir),
            window: a.window,
            payload_len: a.payload_len,
            wscale: a.wscale,
            opt_flags: a.opt_flags,
            ..Segment::default()
        };
        now = now.wrapping_add(a.dt);
        let before_step = rec;
        let _ = classify_reset(&rec, &seg, a.dir);
        let out = step(&mut rec, &seg, a.dir, now, false);
        prop_assert_eq!(out.old_state, before_step.state);
        prop_assert_eq!(out.new_state, rec.state);
        if !tcp::flags_valid(seg.flags) {
            // Counted as seen (a known flow), nothing else.
            let mut counted = before_step;
            if counted.state != STATE_NONE {
                let n = flow::pair_mut(&mut counted.packets, a.dir);
                *n = n.wrapping_add(1);
            }
            prop_assert_eq!(rec, counted, "flags {:#04x} changed the record", seg.flags);
        }
        for d in [0u8, 1, a.dir] {
            let ep = endpoint_state(&rec, d);
            prop_assert!(ep <= EP_CLOSED);
            prop_assert!(!endpoint_state_name(ep).is_empty());
        }
        // A record that started from zero only ever holds real states.
        if sane {
            prop_assert!(rec.state <= STATE_CLOSE, "state {}", rec.state);
        }
        if before_step.state == STATE_NONE && rec.state == STATE_NONE {
            // Nothing started: the caller would not store it.
            rec = before_step;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(no_persistence(1000))]

    #[test]
    fn parse_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        let _ = parse::parse(&bytes[..]);
    }

    /// Random bytes rarely get past the Ethernet and IP checks; a real frame
    /// with a few bytes changed and a random cut does.
    #[test]
    fn parse_never_panics_on_damaged_frames(
        v6 in any::<bool>(),
        vlan in any::<bool>(),
        flags in any::<u8>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        window in any::<u16>(),
        options in prop::collection::vec(any::<[u8; 4]>(), 0..=10).prop_map(|w| w.concat()),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        damage in prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
        cut in any::<Index>(),
        cut_it in any::<bool>(),
        then in prop::collection::vec(arb_segment(), 0..20),
    ) {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = if v6 {
            b.ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 64)
        } else {
            b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        };
        let mut t = etherparse::TcpHeader::new(40000, 80, seq, window);
        t.fin = flags & FIN != 0;
        t.syn = flags & SYN != 0;
        t.rst = flags & RST != 0;
        t.psh = flags & PSH != 0;
        t.ack = flags & ACK != 0;
        t.urg = flags & tcp::URG != 0;
        t.ece = flags & tcp::ECE != 0;
        t.cwr = flags & tcp::CWR != 0;
        t.acknowledgment_number = ack;
        t.set_options_raw(&options).unwrap();
        let mut frame = Vec::new();
        ip.tcp_header(t).write(&mut frame, &payload).unwrap();
        if vlan {
            // An 802.1Q tag (TPID, TCI) goes between the MAC addresses and the ethertype.
            frame.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        }

        // Undamaged, it must parse to what was built.
        let seg = parse::parse(&frame[..]).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!((seg.flags, seg.seq, seg.ack, seg.window, seg.payload_len), (flags, seq, ack, window, payload.len() as u32));

        for (at, byte) in damage {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if cut_it {
            frame.truncate(cut.index(frame.len() + 1));
        }
        if let Ok(seg) = parse::parse(&frame[..]) {
            // Whatever the parser makes of it, the state machine takes it.
            let mut rec = FlowRecord::default();
            step(&mut rec, &seg, 0, 1, false);
            run_segments(rec, &then, true)?;
        }
    }

    #[test]
    fn step_never_panics_from_a_fresh_record(initiator in any::<u8>(), segs in prop::collection::vec(arb_segment(), 1..120)) {
        run_segments(FlowRecord { initiator, ..FlowRecord::default() }, &segs, true)?;
    }

    /// Map entries are written by two hooks without a lock (flow.rs), so a
    /// record may hold any bytes at all.
    #[test]
    fn step_never_panics_on_any_record(
        bytes in (any::<[u8; 32]>(), any::<[u8; 32]>()),
        segs in prop::collection::vec(arb_segment(), 1..60),
    ) {
        let mut raw = [0u8; core::mem::size_of::<FlowRecord>()];
        for (i, b) in raw.iter_mut().enumerate() {
            // The 64 random bytes over and over.
            *b = if i % 64 < 32 { bytes.0[i % 32] } else { bytes.1[i % 32] };
        }
        let rec: FlowRecord = bytemuck::cast(raw);
        run_segments(rec, &segs, false)?;
    }
}

// ---------------------------------------------------------------------------
// What the properties above found, each as its minimal reproduction: two
// observer bugs, fixed in state.rs (`fixed_*`: regression tests), and one
// limitation the wire cannot resolve (ignored: it would fail; the property
// stops and counts when it runs into it, and goes on looking for others).
// ---------------------------------------------------------------------------

/// Replays a conversation and fails on any disagreement, the known
/// limitation included.
fn replay(isn: [u32; 2], wscale: [Option<u8>; 2], rfc_dup_syn: bool, actions: &[Action]) {
    let mut sim = Sim::new(isn, wscale);
    sim.rfc_dup_syn = rfc_dup_syn;
    sim.tolerate_known_limitation = false;
    if let Err(e) = sim.play(actions) {
        panic!("{e}");
    }
}

use Action::*;
use Side::{C as Client, S as Server};

/// KNOWN LIMITATION. Simultaneous close, then the client aborts and its
/// RST is lost. The server's FIN (sent before the client's FIN arrived, so
/// ack=1) reaches the closed client, which answers RST seq=1 without ACK
/// (RFC 9293 §3.10.7.1). The server already took in the client's FIN (the
/// observer saw it arrive, and saw it in order): its RCV.NXT is 2, the RST
/// is out of window and ignored, the server stays CLOSING. The observer
/// compares the RST with the server's last ACK it has seen (1, the server's
/// newer ACK is still in flight), calls it RESET_DATA_AFTER_CLOSE (the
/// stateless reply's shape from a side that sent its FIN) and closes the
/// flow: "server CLOSING but the observer says CLOSED". (A Linux server
/// would accept it: in CLOSING it takes a RST at RCV.NXT - 1 after a FIN,
/// tcp_reset_check; this model follows RFC 5961 strictly.)
///
///   C→S SYN seq=0; S→C SYN|ACK seq=0 ack=1; C→S ACK seq=1 ack=1
///   S sends FIN|ACK seq=1 ack=1; C sends FIN|ACK seq=1 ack=1; C sends RST|ACK seq=2 ack=1
///   C→S FIN|ACK seq=1 ack=1 arrives (S: CLOSING, sends ACK seq=2 ack=2)
///   C→S RST|ACK seq=2 is lost
///   S→C FIN|ACK seq=1 ack=1 arrives at the closed C, which sends RST seq=1
///   C→S RST seq=1 arrives: observer CLOSE, server still CLOSING
///
/// Left as a known limitation: whether the server's RCV.NXT already covers a
/// FIN the observer saw pass (2) or is still the last ACK it saw (1) cannot
/// be told from the wire; tcp-track judges by acknowledgments, as
/// nf_conntrack does (td_maxack), which is right when the observer sits
/// upstream of a loss and wrong here.
#[test]
#[ignore = "known limitation, see above: the wire cannot show whether the receiver got the FIN the observer saw"]
fn known_limitation_stale_stateless_reset() {
    replay(
        [0, 0],
        [None, None],
        false,
        &[Settle, Close(Server, 0), Close(Client, 0), Abort(Client), Deliver(Client), Lose(Client), Deliver(Client), Deliver(Client)],
    );
}

/// FIXED OBSERVER BUG (the observer now lets only the client's ACK, or
/// either side's after a simultaneous open, complete the handshake). In
/// SYN_RECV, any non-SYN segment with an ACK at or past the *client's*
/// ISN + 1 counted as the handshake's last ACK, including one sent by the
/// server. RFC 9293 §3.10.7.4 has a server in SYN-RECEIVED
/// answer an unacceptable segment, such as a retransmitted SYN, with
/// <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (Linux answers with the SYN-ACK
/// instead; a TCP Fast Open server's data would do the same). The observer
/// then reported the server ESTAB while it was still SYN-RECV.
///
///   C→S SYN seq=0; C→S SYN seq=0 (retransmission)
///   first SYN arrives: S→C SYN|ACK seq=0 ack=1; it arrives: C→S ACK seq=1 ack=1
///   second SYN arrives: S→C ACK seq=1 ack=1; it arrives: the observer said
///   ESTABLISHED, the server still SYN-RECV (the client's ACK still in flight)
#[test]
fn fixed_server_ack_completing_the_handshake() {
    replay([0, 0], [None, None], true, &[Timeout(Client), Send(Client, 1)]);
}

/// FIXED OBSERVER BUG (`classify_reset` now rejects a RST behind the
/// receiver's acknowledgment before the train rule, as nf_conntrack does).
/// The "RST train" rule (a RST at the end of the same side's last plain
/// segment is exact) also accepted a RST whose sequence number is behind
/// what the receiver has already acknowledged, when that last segment was
/// an old retransmission. The receiver's RCV.NXT is past the RST, so it
/// ignores it; nf_conntrack rejects such a RST before the train check
/// ("invalid rst": seq before td_maxack).
///
///   handshake; C sends data seq=1 len=1, it arrives (S queues ACK ack=2)
///   C sends data seq=2 len=1; C's timer resends seq=1 len=1; C aborts (RST seq=3)
///   S→C ACK ack=2 arrives at the closed C: C queues RST seq=2 (no ACK)
///   seq=2 arrives, S→C ACK ack=3 arrives (C queues RST seq=3), seq=1 again arrives
///   C's RST seq=3 (the abort) is lost; C→S RST seq=2 arrives: the observer
///   called it exact (train after the seq=1 copy) and closed; S (RCV.NXT=3)
///   ignores it and stays ESTAB
#[test]
fn fixed_reset_train_behind_the_ack() {
    replay(
        [0, 0],
        [None, None],
        false,
        &[
            Settle,
            Send(Client, 1),
            Deliver(Client),
            Send(Client, 1),
            Timeout(Client),
            Abort(Client),
            Deliver(Server),
            Deliver(Client),
            Deliver(Server),
            Deliver(Client),
            Lose(Client),
            Deliver(Client),
        ],
    );
}
