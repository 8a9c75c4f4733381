//! One fixture per state (as smoltcp's `socket_established()`), and a test
//! per transition: each applies segments to a fixture and compares with the
//! target state.

use super::*;
use crate::flow::{DIR_HI_TO_LO, DIR_LO_TO_HI, INFO_REUSED, INFO_SYNACK_INFERRED, ORIGIN_MIDSTREAM, ORIGIN_SYN, PEER_LIBERAL};
use crate::parse::{FAMILY_IPV4, OPT_MSS, OPT_SACK_PERM, OPT_WSCALE};
use crate::tcp::{ACK, FIN, PSH, RST, SYN};

/// The client sends in direction lo→hi, the server in hi→lo.
const C: u8 = DIR_LO_TO_HI;
const S: u8 = DIR_HI_TO_LO;

/// A conversation: the flow record plus what each endpoint would send next.
#[derive(Clone, Debug)]
struct Conn {
    rec: FlowRecord,
    now: u64,
    /// Next sequence number of each side (SND.NXT), indexed by direction.
    next: [u32; 2],
    /// Window field each side puts in its segments (unscaled).
    win: [u16; 2],
    /// Window-scale option each side offers in its SYN (None: no option).
    wscale: [Option<u8>; 2],
    /// Seen on a liberal interface (`step`'s `liberal`).
    liberal: bool,
}

fn segment(flags: u8, seq: u32, ack: u32, len: u32, window: u16) -> Segment {
    Segment { family: FAMILY_IPV4, flags, seq, ack, payload_len: len, window, wscale: NO_WSCALE, ..Segment::default() }
}

impl Conn {
    fn new(client_isn: u32, server_isn: u32) -> Conn {
        Conn {
            rec: FlowRecord::default(),
            now: 1_000_000_000,
            next: [client_isn, server_isn],
            win: [64240, 65160],
            wscale: [Some(7), Some(7)],
            liberal: false,
        }
    }

    /// Build the segment `dir` would send now with `flags` and `len` bytes,
    /// acknowledging everything the other side sent.
    fn make(&self, dir: u8, flags: u8, len: u32) -> Segment {
        let d = dir as usize;
        let ack = if flags & ACK != 0 { self.next[d ^ 1] } else { 0 };
        let mut s = segment(flags, self.next[d], ack, len, self.win[d]);
        if flags & SYN != 0 {
            s.opt_flags = OPT_MSS | OPT_SACK_PERM;
            s.mss = 1460;
            if let Some(ws) = self.wscale[d] {
                s.opt_flags |= OPT_WSCALE;
                s.wscale = ws;
            }
        }
        s
    }

    /// Apply a segment; an accepted one advances the sender's SND.NXT
    /// (forged or rejected segments do not move the real endpoints).
    fn apply(&mut self, dir: u8, seg: Segment) -> Outcome {
        self.now += 1_000_000;
        let out = step(&mut self.rec, &seg, dir, self.now, self.liberal);
        let end = seg.seq.wrapping_add(seg.seq_len());
        if out.valid && seg.flags & RST == 0 && after(end, self.next[dir as usize]) {
            self.next[dir as usize] = end;
        }
        out
    }

    fn send(&mut self, dir: u8, flags: u8, len: u32) -> Outcome {
        let seg = self.make(dir, flags, len);
        self.apply(dir, seg)
    }

    fn state(&self) -> u8 {
        self.rec.state
    }

    fn endpoints(&self) -> (&'static str, &'static str) {
        (endpoint_state_name(endpoint_state(&self.rec, C)), endpoint_state_name(endpoint_state(&self.rec, S)))
    }
}

// ---- fixtures, one per state ----

fn conn_syn_sent() -> Conn {
    let mut c = Conn::new(1000, 5000);
    let out = c.send(C, SYN, 0);
    assert_eq!((out.old_state, out.new_state), (STATE_NONE, STATE_SYN_SENT));
    c
}

fn conn_syn_recv() -> Conn {
    let mut c = conn_syn_sent();
    assert_eq!(c.send(S, SYN | ACK, 0).new_state, STATE_SYN_RECV);
    c
}

fn conn_established() -> Conn {
    let mut c = conn_syn_recv();
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_ESTABLISHED);
    c
}

/// The client closed first (FIN sent, not yet acknowledged).
fn conn_fin_wait() -> Conn {
    let mut c = conn_established();
    let out = c.send(C, FIN | ACK, 0);
    assert!(out.first_fin);
    assert_eq!(out.new_state, STATE_FIN_WAIT);
    c
}

/// The client's FIN acknowledged; the server still open (half-closed).
fn conn_close_wait() -> Conn {
    let mut c = conn_fin_wait();
    assert_eq!(c.send(S, ACK, 0).new_state, STATE_CLOSE_WAIT);
    c
}

/// The server closed too; its FIN not yet acknowledged.
fn conn_last_ack() -> Conn {
    let mut c = conn_close_wait();
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_LAST_ACK);
    c
}

fn conn_time_wait() -> Conn {
    let mut c = conn_last_ack();
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
    c
}

fn conn_closed() -> Conn {
    let mut c = conn_established();
    let out = c.send(C, RST | ACK, 0);
    assert_eq!((out.reset, out.new_state), (RESET_EXACT, STATE_CLOSE));
    c
}

// ---- opening ----

#[test]
fn syn_starts_a_flow_with_the_sender_as_client() {
    let c = conn_syn_sent();
    assert_eq!((c.rec.initiator, c.rec.origin), (C, ORIGIN_SYN));
    let p = &c.rec.peer[C as usize];
    assert_eq!((p.isn, p.end, p.scale), (1000, 1001, 7));
    assert_eq!(c.endpoints(), ("SYN-SENT", "NONE"));
}

#[test]
fn syn_retransmission_is_counted() {
    let mut c = conn_syn_sent();
    let again = segment(SYN, 1000, 0, 0, 64240);
    let out = c.apply(C, again);
    assert!(out.retransmission);
    assert_eq!((out.new_state, c.rec.peer[C as usize].retrans), (STATE_SYN_SENT, 1));
    c.apply(C, again);
    assert_eq!(c.rec.peer[C as usize].retrans, 2);
}

#[test]
fn syn_with_a_new_isn_restarts_the_attempt() {
    let mut c = conn_syn_sent();
    let out = c.apply(C, segment(SYN, 77, 0, 0, 64240));
    assert!(!out.retransmission);
    assert_eq!(c.rec.peer[C as usize].isn, 77);
}

#[test]
fn synack_must_acknowledge_the_syn() {
    let mut c = conn_syn_sent();
    let wrong = segment(SYN | ACK, 5000, 4242, 0, 65160);
    let out = c.apply(S, wrong);
    assert!(!out.valid);
    assert_eq!(out.new_state, STATE_SYN_SENT);
}

#[test]
fn synack_moves_to_syn_recv_and_negotiates_scale() {
    let c = conn_syn_recv();
    assert_eq!((c.rec.peer[C as usize].scale, c.rec.peer[S as usize].scale), (7, 7));
    assert_eq!(c.endpoints(), ("ESTAB", "SYN-RECV"));
    // The client may send up to the server's ack + its (unscaled SYN) window.
    assert_eq!(c.rec.peer[C as usize].maxend, 1001 + 65160);
}

#[test]
fn synack_retransmissions_are_counted() {
    let mut c = conn_syn_recv();
    for n in 1..=3u8 {
        let out = c.apply(S, segment(SYN | ACK, 5000, 1001, 0, 65160));
        assert!(out.retransmission);
        assert_eq!((out.new_state, c.rec.peer[S as usize].retrans), (STATE_SYN_RECV, n));
    }
}

#[test]
fn final_ack_establishes() {
    let c = conn_established();
    assert_eq!(c.endpoints(), ("ESTAB", "ESTAB"));
}

#[test]
fn window_scale_needs_both_sides() {
    let mut c = Conn::new(1000, 5000);
    c.wscale = [Some(7), None];
    c.send(C, SYN, 0);
    c.send(S, SYN | ACK, 0);
    assert_eq!((c.rec.peer[0].scale, c.rec.peer[1].scale), (0, 0), "RFC 7323 §2.2: no scaling unless both offered it");
}

#[test]
fn scaled_window_admits_data_beyond_the_raw_window() {
    // nf_conntrack checks where a segment starts against the right edge of
    // the receiver's window (td_maxend); the client advertises 502, which
    // is 502 << 7 = 64256 bytes when scaling was negotiated.
    let mut c = conn_established();
    c.win[C as usize] = 502;
    c.send(C, ACK, 0);
    for _ in 0..3 {
        assert!(c.send(S, ACK | PSH, 20000).valid, "inside the scaled window");
    }
    // Without scaling the same window is 502 bytes: the third segment starts past it.
    let mut u = Conn::new(1000, 5000);
    u.wscale = [None, None];
    u.send(C, SYN, 0);
    u.send(S, SYN | ACK, 0);
    u.win[C as usize] = 502;
    u.send(C, ACK, 0);
    assert!(u.send(S, ACK | PSH, 400).valid);
    assert!(u.send(S, ACK | PSH, 400).valid, "starts at 5401, inside 5001 + 502");
    assert!(!u.send(S, ACK | PSH, 400).valid, "starts at 5801, beyond 5001 + 502");
}

#[test]
fn simultaneous_open() {
    let mut c = conn_syn_sent();
    // The other side's SYN without ACK, sent before it saw ours.
    let out = c.send(S, SYN, 0);
    assert_eq!(out.new_state, STATE_SYN_SENT2);
    assert_eq!(c.endpoints(), ("SYN-SENT", "SYN-SENT"));
    // Each answers the other's SYN with SYN-ACK (same ISN, acknowledging).
    let synack_s = segment(SYN | ACK, 5000, 1001, 0, 65160);
    assert_eq!(c.apply(S, synack_s).new_state, STATE_SYN_RECV);
    assert_eq!(c.endpoints(), ("SYN-RECV", "SYN-RECV"));
    let synack_c = segment(SYN | ACK, 1000, 5001, 0, 64240);
    c.apply(C, synack_c);
    let out = c.send(C, ACK, 0);
    assert_eq!(out.new_state, STATE_ESTABLISHED);
}

// ---- data ----

#[test]
fn data_both_ways_stays_established() {
    let mut c = conn_established();
    for _ in 0..3 {
        assert!(c.send(C, ACK | PSH, 100).valid);
        assert!(c.send(S, ACK | PSH, 1400).valid);
    }
    assert_eq!(c.state(), STATE_ESTABLISHED);
    assert_eq!(c.rec.peer[C as usize].end, 1001 + 300);
    assert_eq!(c.rec.peer[S as usize].maxack, 1001 + 300);
}

#[test]
fn data_retransmission_is_counted_and_reset_by_new_data() {
    let mut c = conn_established();
    let data = c.make(C, ACK | PSH, 100);
    c.apply(C, data);
    let out = c.apply(C, data);
    assert!(out.retransmission);
    assert_eq!(c.rec.peer[C as usize].retrans, 1);
    c.send(C, ACK | PSH, 10);
    assert_eq!(c.rec.peer[C as usize].retrans, 0);
}

#[test]
fn segment_far_outside_the_window_is_invalid() {
    let mut c = conn_established();
    let out = c.apply(C, segment(ACK, 1001u32.wrapping_add(10_000_000), 5001, 10, 500));
    assert!(!out.valid);
    assert_eq!(c.state(), STATE_ESTABLISHED);
}

#[test]
fn ack_of_data_never_sent_is_invalid() {
    let mut c = conn_established();
    let out = c.apply(C, segment(ACK, 1001, 5001 + 100_000, 0, 500));
    assert!(!out.valid);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut c = Conn::new(u32::MAX - 10, u32::MAX - 100);
    c.send(C, SYN, 0);
    c.send(S, SYN | ACK, 0);
    c.send(C, ACK, 0);
    for _ in 0..5 {
        assert!(c.send(C, ACK | PSH, 30).valid, "client data across 2^32");
        assert!(c.send(S, ACK | PSH, 60).valid, "server data across 2^32");
    }
    assert!(c.rec.peer[C as usize].end < 1000, "the client's sequence wrapped");
    c.send(C, FIN | ACK, 0);
    c.send(S, FIN | ACK, 0);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
}

#[test]
fn invalid_flag_combinations_change_nothing() {
    for flags in [0, SYN | FIN, SYN | RST, FIN, SYN | FIN | PSH | crate::tcp::URG] {
        let mut c = conn_established();
        let before = c.rec;
        let seg = c.make(C, flags, 0);
        let out = step(&mut c.rec, &seg, C, 5, false);
        assert!(!out.valid, "flags {flags:#x}");
        // Seen on the wire, so counted; nothing else.
        let mut counted = before;
        counted.packets[C as usize] += 1;
        assert_eq!(c.rec, counted, "flags {flags:#x} changed the record");
    }
    let mut fresh = FlowRecord::default();
    let out = step(&mut fresh, &segment(SYN | FIN, 1, 0, 0, 1), C, 5, false);
    assert_eq!(out.new_state, STATE_NONE, "a malformed segment does not start a flow");
}

#[test]
fn syn_in_established_is_invalid() {
    let mut c = conn_established();
    let out = c.apply(C, segment(SYN, 99_999, 0, 0, 500));
    assert!(!out.valid);
    assert_eq!(c.state(), STATE_ESTABLISHED);
}

// ---- closing ----

#[test]
fn client_closes_first() {
    let c = conn_fin_wait();
    assert_eq!(c.endpoints(), ("FIN-WAIT-1", "CLOSE-WAIT"));
    assert_ne!(c.rec.info & INFO_CLOSER_LO, 0);
    let c = conn_close_wait();
    assert_eq!(c.endpoints(), ("FIN-WAIT-2", "CLOSE-WAIT"));
    let c = conn_last_ack();
    assert_eq!(c.endpoints(), ("TIME-WAIT", "LAST-ACK"));
    let c = conn_time_wait();
    assert_eq!(c.endpoints(), ("TIME-WAIT", "CLOSED"));
}

#[test]
fn server_closes_first() {
    let mut c = conn_established();
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_FIN_WAIT);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_CLOSE_WAIT);
    assert_eq!(c.send(C, FIN | ACK, 0).new_state, STATE_LAST_ACK);
    assert_eq!(c.send(S, ACK, 0).new_state, STATE_TIME_WAIT);
    assert_eq!(c.endpoints(), ("CLOSED", "TIME-WAIT"));
}

#[test]
fn fin_and_ack_in_one_segment() {
    // The server acknowledges the client's FIN and sends its own at once.
    let mut c = conn_fin_wait();
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_LAST_ACK);
    assert_eq!(c.endpoints(), ("TIME-WAIT", "LAST-ACK"));
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
}

#[test]
fn half_close_with_data_flowing_the_other_way() {
    let mut c = conn_close_wait();
    for _ in 0..4 {
        assert!(c.send(S, ACK | PSH, 1000).valid, "the server keeps sending after the client's FIN");
        assert!(c.send(C, ACK, 0).valid, "the half-closed client still acknowledges");
        assert_eq!(c.state(), STATE_CLOSE_WAIT);
    }
    assert_eq!(c.endpoints(), ("FIN-WAIT-2", "CLOSE-WAIT"));
    c.send(S, FIN | ACK, 0);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
}

#[test]
fn simultaneous_close() {
    let mut c = conn_established();
    // Both FINs sent before either arrives: neither acknowledges the other's FIN.
    let fin_c = c.make(C, FIN | ACK, 0);
    let fin_s = c.make(S, FIN | ACK, 0);
    c.apply(C, fin_c);
    let out = c.apply(S, fin_s);
    assert_eq!(out.new_state, STATE_LAST_ACK);
    assert_eq!(c.rec.info & (INFO_CLOSER_LO | INFO_CLOSER_HI), INFO_CLOSER_LO | INFO_CLOSER_HI);
    assert_eq!(c.endpoints(), ("CLOSING", "CLOSING"));
    c.send(C, ACK, 0);
    assert_eq!(c.endpoints(), ("CLOSING", "TIME-WAIT"), "the server's FIN is acknowledged first");
    assert_eq!(c.send(S, ACK, 0).new_state, STATE_TIME_WAIT);
    assert_eq!(c.endpoints(), ("TIME-WAIT", "TIME-WAIT"), "both ends of a simultaneous close wait");
}

#[test]
fn fin_retransmission_in_time_wait_keeps_time_wait() {
    let mut c = conn_time_wait();
    let fin_again = segment(FIN | ACK, 5001, 1002, 0, 65160);
    let out = c.apply(S, fin_again);
    assert!(out.retransmission);
    assert_eq!(out.new_state, STATE_TIME_WAIT);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
}

// ---- new incarnations ----

#[test]
fn syn_on_a_time_wait_tuple_starts_a_new_incarnation() {
    let mut c = conn_time_wait();
    let out = c.apply(C, segment(SYN, 1_000_000, 0, 0, 64240));
    assert!(out.reused && out.isn_advanced);
    assert_eq!((out.old_state, out.new_state), (STATE_TIME_WAIT, STATE_SYN_SENT));
    assert_ne!(c.rec.info & INFO_REUSED, 0);
    assert_eq!(c.rec.peer[C as usize].isn, 1_000_000);
    assert_eq!(c.rec.peer[S as usize], Peer::default(), "nothing of the old server side remains");
}

#[test]
fn reuse_with_an_isn_behind_the_old_connection() {
    let mut c = conn_time_wait();
    let out = c.apply(C, segment(SYN, 500, 0, 0, 64240));
    assert!(out.reused && !out.isn_advanced, "RFC 6191: 500 is before the old final sequence 1002");
}

#[test]
fn syn_after_a_reset_is_a_new_connection_not_a_reuse() {
    let mut c = conn_closed();
    let out = c.apply(C, segment(SYN, 9, 0, 0, 64240));
    assert!(!out.reused);
    assert_eq!(out.new_state, STATE_SYN_SENT);
}

// ---- resets ----

#[test]
fn reset_answering_a_syn_is_a_refusal() {
    let mut c = conn_syn_sent();
    // Linux to a closed port: RST|ACK, seq 0, ack ISN+1.
    let out = c.apply(S, segment(RST | ACK, 0, 1001, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_REFUSED, STATE_CLOSE, false));
    assert_eq!(c.endpoints(), ("CLOSED", "CLOSED"));
}

#[test]
fn reset_in_syn_sent_with_a_wrong_ack_is_invalid() {
    let mut c = conn_syn_sent();
    let out = c.apply(S, segment(RST | ACK, 0, 4444, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_OUT_OF_WINDOW, STATE_SYN_SENT, true));
}

#[test]
fn exact_reset_is_an_abort() {
    let mut c = conn_established();
    c.send(S, ACK | PSH, 100);
    // The client aborts (SO_LINGER 0): RST|ACK at its SND.NXT.
    let out = c.send(C, RST | ACK, 0);
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_EXACT, STATE_CLOSE, false));
}

#[test]
fn reset_after_the_senders_data_is_part_of_a_train() {
    let mut c = conn_established();
    c.send(S, ACK | PSH, 19);
    // The server aborts right after its data, before the client acknowledged it.
    let out = c.send(S, RST | ACK, 0);
    assert_eq!(out.reset, RESET_EXACT);
}

#[test]
fn reset_at_a_stale_but_recent_sequence_is_exact_via_the_train() {
    let mut c = conn_established();
    let data = c.make(S, ACK | PSH, 19);
    c.apply(S, data);
    // A RST whose seq is the end of that last segment (RST train) even if the
    // client's maxack lags.
    let out = c.apply(S, segment(RST, data.seq + 19, 0, 0, 0));
    assert_ne!(out.reset, RESET_IN_WINDOW);
    assert!(reset_fate(out.reset).accepted());
}

#[test]
fn stateless_peer_reset() {
    let mut c = conn_established();
    // The client lost its socket; the server sends data; the client's stack
    // answers with RST, seq = the ACK it received, no ACK flag.
    let data = c.make(S, ACK | PSH, 50);
    c.apply(S, data);
    let out = c.apply(C, segment(RST, data.ack, 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_STATELESS_PEER, STATE_CLOSE, false));
}

#[test]
fn in_window_inexact_reset_keeps_the_connection() {
    let mut c = conn_established();
    // In the server's sequence space, 500 bytes past what the client expects.
    let out = c.apply(S, segment(RST, 5001 + 500, 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified, out.valid), (RESET_IN_WINDOW, STATE_ESTABLISHED, true, false));
    // The connection goes on.
    assert!(c.send(C, ACK | PSH, 10).valid);
}

#[test]
fn out_of_window_reset_is_invalid() {
    let mut c = conn_established();
    let out = c.apply(S, segment(RST, 5001u32.wrapping_add(0x4000_0000), 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_OUT_OF_WINDOW, STATE_ESTABLISHED, true));
}

#[test]
fn reset_in_time_wait_is_an_assassination() {
    let mut c = conn_time_wait();
    // A RST towards the client, which is in TIME-WAIT, with an acceptable sequence.
    let out = c.apply(S, segment(RST, 5002, 0, 0, 0));
    assert_eq!((out.reset, out.drop_justified), (RESET_TIME_WAIT, true));
    assert_eq!(out.new_state, STATE_CLOSE, "let through, Linux's default kills the TIME-WAIT socket");
}

#[test]
fn classify_reset_does_not_change_the_record() {
    let c = conn_time_wait();
    let before = c.rec;
    assert_eq!(classify_reset(&c.rec, &segment(RST, 5002, 0, 0, 0), S), RESET_TIME_WAIT);
    assert_eq!(c.rec, before);
}

#[test]
fn reset_for_an_unknown_flow_creates_nothing() {
    let mut rec = FlowRecord::default();
    let out = step(&mut rec, &segment(RST | ACK, 5, 6, 0, 0), C, 1, false);
    assert_eq!((out.reset, out.new_state), (RESET_UNKNOWN_FLOW, STATE_NONE));
    assert_eq!(rec, FlowRecord::default());
}

// ---- mid-stream pickup ----

fn picked_up() -> Conn {
    let mut c = Conn::new(70_000, 900_000);
    // The daemon starts while data flows: the first segment is the server's.
    c.rec.initiator = C;
    let out = c.send(S, ACK | PSH, 1000);
    assert_eq!((out.old_state, out.new_state), (STATE_NONE, STATE_ESTABLISHED));
    assert_eq!(c.rec.origin, ORIGIN_MIDSTREAM);
    c
}

#[test]
fn midstream_pickup_is_liberal_until_both_sides_are_seen() {
    let mut c = picked_up();
    assert_ne!(c.rec.peer[C as usize].flags & PEER_LIBERAL, 0);
    // A RST towards the unseen side cannot be judged.
    let out = classify_reset(&c.rec, &segment(RST, 12345, 0, 0, 0), S);
    assert_eq!(out, RESET_UNJUDGED);
    // Wild sequence numbers are not rejected while liberal.
    assert!(c.apply(S, segment(ACK, 900_000 + 5_000_000, 70_000, 10, 100)).valid);
    // Once the client has sent, windows are learnt and checks apply.
    let mut c = picked_up();
    c.send(C, ACK, 0);
    assert_eq!(c.rec.peer[0].flags & PEER_LIBERAL, 0);
    assert_eq!(c.rec.peer[1].flags & PEER_LIBERAL, 0);
    let far = segment(ACK, 901_000u32.wrapping_add(0x7000_0000), 70_000, 10, 100);
    assert!(!c.apply(S, far).valid);
    assert_eq!(c.endpoints(), ("ESTAB", "ESTAB"));
}

#[test]
fn midstream_flow_closes_normally() {
    let mut c = picked_up();
    c.send(C, ACK, 0);
    c.send(C, FIN | ACK, 0);
    c.send(S, FIN | ACK, 0);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
}

#[test]
fn synack_first_makes_its_receiver_the_client() {
    let mut rec = FlowRecord::default();
    let mut s = segment(SYN | ACK, 5000, 1001, 0, 65160);
    s.opt_flags = OPT_WSCALE;
    s.wscale = 7;
    let out = step(&mut rec, &s, S, 1, false);
    assert_eq!(out.new_state, STATE_SYN_RECV);
    assert_eq!((rec.initiator, rec.origin), (C, crate::flow::ORIGIN_SYN_ACK));
    let out = step(&mut rec, &segment(ACK, 1001, 5001, 0, 502), C, 2, false);
    assert_eq!(out.new_state, STATE_ESTABLISHED);
}

#[test]
fn names() {
    assert_eq!(state_name(STATE_TIME_WAIT), "TIME_WAIT");
    assert_eq!(endpoint_state_name(EP_FIN_WAIT_2), "FIN-WAIT-2");
    assert_eq!(state_name(200), "NONE");
}

#[test]
fn a_corrupted_window_scale_cannot_overflow_the_shift() {
    // Found by the conversation property test: a record holding a shift
    // above RFC 7323's 14 made `window << scale` overflow.
    let mut c = conn_established();
    c.rec.peer[0].scale = 255;
    c.rec.peer[1].scale = 200;
    assert!(c.send(C, ACK | PSH, 10).valid);
    assert!(c.send(S, ACK, 0).valid);
    let mut fresh = FlowRecord { state: STATE_ESTABLISHED, origin: ORIGIN_MIDSTREAM, ..FlowRecord::default() };
    fresh.peer[1].scale = 99;
    step(&mut fresh, &segment(ACK, 1, 1, 5, 1000), S, 1, false);
}

#[test]
fn blind_reset_in_time_wait_is_an_attempt_that_leaves_time_wait() {
    let mut c = conn_time_wait();
    let out = c.apply(S, segment(RST, 0x1234_5678, 0, 0, 0));
    assert_eq!((out.reset, out.drop_justified), (RESET_TIME_WAIT, true));
    assert_eq!(out.new_state, STATE_TIME_WAIT, "Linux only kills TIME-WAIT on an exact RST");
}

// ---- judging like the endpoints (issue 17) ----

/// The record with the two fields every segment of a known flow updates
/// (its clock and its count) cleared: what a rejected segment must leave
/// exactly as it was.
fn judged_part(rec: &FlowRecord) -> FlowRecord {
    FlowRecord { last_seen: 0, packets: [0; 2], ..*rec }
}

/// The record's Zeek `conn_state`, as its `conn` record would give it.
fn conn_state_of(c: &Conn) -> &'static str {
    crate::conn::conn_state_name(crate::conn::conn_state(&c.rec))
}

const POLICIES: [u8; 3] = [crate::guard::RST_POLICY_OBSERVE, crate::guard::RST_POLICY_OUT_OF_WINDOW, crate::guard::RST_POLICY_INVALID];

#[test]
fn segments_rejected_in_syn_sent_change_nothing_and_are_no_syn_retransmission() {
    // Client SYN; the SYN-ACK takes a path we do not see; the client's ACK,
    // data, FIN|ACK and the FIN|ACK again. Each is rejected in SYN_SENT and
    // must neither teach the windows anything nor count as a retransmitted
    // SYN (it used to: `handshake_retransmit`, then `syn_retransmits=1`).
    let mut c = conn_syn_sent();
    for (i, seg) in [
        segment(ACK, 1001, 5001, 0, 502),
        segment(ACK | PSH, 1001, 5001, 100, 502),
        segment(FIN | ACK, 1101, 5001, 0, 502),
        segment(FIN | ACK, 1101, 5001, 0, 502),
    ]
    .into_iter()
    .enumerate()
    {
        let before = c.rec;
        let out = c.apply(C, seg);
        assert_eq!((out.valid, out.new_state, out.reset), (false, STATE_SYN_SENT, RESET_NONE), "segment {i}");
        assert!(!out.retransmission && !out.first_fin, "segment {i}: {out:?}");
        assert_eq!(crate::event::event_kind(&out), None, "segment {i}: worth no event");
        assert_eq!(judged_part(&c.rec), judged_part(&before), "segment {i} changed the record");
        assert_eq!(c.rec.packets[C as usize], before.packets[C as usize] + 1, "segment {i} is still counted");
    }
    assert_eq!(c.endpoints(), ("SYN-SENT", "NONE"));
    // Strict: nothing accepted after the SYN, a connection attempt without
    // a reply (Zeek, which accepts every segment, says SH: see conn.rs; on
    // a liberal interface ours does too).
    assert_eq!(conn_state_of(&c), "S0");
    // A real SYN retransmission is the first one.
    let out = c.apply(C, segment(SYN, 1000, 0, 0, 64240));
    assert!(out.retransmission);
    assert_eq!(c.rec.peer[C as usize].retrans, 1);
    // And the handshake can still complete once a SYN-ACK is seen.
    assert_eq!(c.apply(S, segment(SYN | ACK, 5000, 1001, 0, 65160)).new_state, STATE_SYN_RECV);
    assert_eq!(c.apply(C, segment(ACK, 1001, 5001, 0, 502)).new_state, STATE_ESTABLISHED);
}

#[test]
fn segments_rejected_in_syn_sent2_change_nothing() {
    let mut c = conn_syn_sent();
    c.send(S, SYN, 0);
    assert_eq!(c.state(), STATE_SYN_SENT2);
    for dir in [C, S] {
        let before = c.rec;
        let out = c.apply(dir, c.make(dir, ACK | PSH, 10));
        assert_eq!((out.valid, out.new_state), (false, STATE_SYN_SENT2));
        assert_eq!(judged_part(&c.rec), judged_part(&before));
    }
}

#[test]
fn a_rejected_segment_cannot_vouch_for_a_reset_after_it() {
    // A blind attacker cannot know the acknowledgment: his ACK is rejected.
    // It must not become the last segment of an RST train, or his RST at
    // its end would be taken as exact (not dropped, and closing the flow).
    let mut c = conn_established();
    let forged = 5001 + 30_000;
    let out = c.apply(S, segment(ACK, forged, 0xdead_0000, 0, 100));
    assert!(!out.valid);
    let out = c.apply(S, segment(RST, forged, 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_IN_WINDOW, STATE_ESTABLISHED, true));
    assert!(crate::guard::drops(crate::guard::RST_POLICY_INVALID, out.reset));
    // The same RST after an acceptable segment of that length is a train.
    let mut c = conn_established();
    let data = c.make(S, ACK | PSH, 19);
    c.apply(S, data);
    assert_eq!(c.apply(S, segment(RST, data.seq + 19, 0, 0, 0)).reset, RESET_EXACT);
}

#[test]
fn reset_answering_an_unacceptable_ack_in_syn_sent() {
    // RFC 9293 §3.5.2 figure 10: the client (re)connects while the server
    // still holds an old connection on the 4-tuple, which answers the SYN
    // with an ACK of its own sequence space. The client answers
    // <SEQ=SEG.ACK><CTL=RST> (§3.10.7.3) and stays in SYN-SENT.
    let mut c = conn_syn_sent();
    let old_ack = segment(ACK, 300, 100, 0, 65160);
    let out = c.apply(S, old_ack);
    assert_eq!((out.valid, out.new_state), (false, STATE_SYN_SENT));
    assert_eq!(c.rec.peer[S as usize].flags & PEER_SEEN, 0, "the server's window is not learnt from it");
    let rst = segment(RST, 100, 0, 0, 0);
    assert_eq!(classify_reset(&c.rec, &rst, C), RESET_UNACCEPTABLE_ACK);
    let out = c.apply(C, rst);
    let got = (out.reset, out.new_state, out.drop_justified, out.valid);
    assert_eq!(got, (RESET_UNACCEPTABLE_ACK, STATE_SYN_SENT, false, true));
    assert_eq!(c.endpoints(), ("SYN-SENT", "NONE"), "the client lost nothing");
    // The RST answered a segment of another connection and ended nothing:
    // still an attempt without a reply (Zeek: RSTOS0, see conn.rs).
    assert_eq!(conn_state_of(&c), "S0");
    assert_eq!(crate::event::event_kind(&out), Some(crate::event::EVENT_RST));
    for policy in POLICIES {
        assert!(!crate::guard::drops(policy, RESET_UNACCEPTABLE_ACK), "policy {policy}");
    }
    assert_eq!(reset_fate(RESET_UNACCEPTABLE_ACK), ResetFate::Unchanged, "legitimate, and the client stays in SYN-SENT");
    // The client retransmits its SYN (figure 10, line 7); the handshake goes on.
    let out = c.apply(C, segment(SYN, 1000, 0, 0, 64240));
    assert!(out.retransmission);
    assert_eq!(c.send(S, SYN | ACK, 0).new_state, STATE_SYN_RECV);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_ESTABLISHED);
}

#[test]
fn reset_answering_a_synack_with_a_wrong_ack() {
    // The same rule for a SYN-ACK that does not acknowledge the SYN.
    let mut c = conn_syn_sent();
    assert!(!c.apply(S, segment(SYN | ACK, 5000, 4242, 0, 65160)).valid);
    let out = c.apply(C, segment(RST, 4242, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_UNACCEPTABLE_ACK, STATE_SYN_SENT));
    // Then the right SYN-ACK replaces everything learnt from the wrong one.
    assert_eq!(c.send(S, SYN | ACK, 0).new_state, STATE_SYN_RECV);
    assert_eq!(c.rec.peer[S as usize].maxack, 1001);
}

#[test]
fn client_reset_in_syn_sent_without_that_evidence_is_judged_as_before() {
    // Without an unacceptable ACK to answer, or with another sequence
    // number, or with the ACK flag, it is no answer to one.
    let syn_sent = conn_syn_sent();
    let mut with_ack = syn_sent.clone();
    with_ack.apply(S, segment(ACK, 300, 100, 0, 65160));
    // An acceptable ACK (SEG.ACK = ISN + 1) is dropped silently by the
    // client (RFC 9293 §3.10.7.3): it is no evidence either.
    let mut acceptable = syn_sent.clone();
    acceptable.apply(S, segment(ACK, 300, 1001, 0, 65160));
    assert_eq!(acceptable.rec.peer[S as usize].flags & PEER_MAXACK_SET, 0);
    for (name, c, rst) in [
        ("no unacceptable ACK seen", &syn_sent, segment(RST, 100, 0, 0, 0)),
        ("another sequence number", &with_ack, segment(RST, 101, 0, 0, 0)),
        ("with the ACK flag", &with_ack, segment(RST | ACK, 100, 5001, 0, 0)),
        ("after an acceptable ACK", &acceptable, segment(RST, 1001, 0, 0, 0)),
    ] {
        assert_eq!(classify_reset(&c.rec, &rst, C), RESET_UNJUDGED, "{name}");
    }
    // A RST from the server side is judged against the client's SYN as ever.
    assert_eq!(classify_reset(&with_ack.rec, &segment(RST | ACK, 0, 1001, 0, 0), S), RESET_REFUSED);
    assert_eq!(classify_reset(&with_ack.rec, &segment(RST, 100, 0, 0, 0), S), RESET_OUT_OF_WINDOW);
}

/// The server closed (its FIN acknowledged: it is in FIN-WAIT-2, its socket
/// closed by the application); the client, in CLOSE-WAIT, sends more data.
fn conn_server_closed_then_client_data() -> (Conn, Segment) {
    let mut c = conn_established();
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_FIN_WAIT);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_CLOSE_WAIT);
    let data = c.make(C, ACK | PSH, 100);
    assert!(c.apply(C, data).valid);
    (c, data)
}

#[test]
fn reset_answering_data_after_close_is_not_a_lost_peer() {
    // RFC 1122 §4.2.2.13: Linux answers data after close with RST, seq =
    // the data's ACK, no ACK flag (the shape of a stateless peer's reply).
    let (mut c, data) = conn_server_closed_then_client_data();
    let out = c.apply(S, segment(RST, data.ack, 0, 0, 0));
    let got = (out.reset, out.new_state, out.drop_justified, out.valid);
    assert_eq!(got, (RESET_DATA_AFTER_CLOSE, STATE_CLOSE, false, true));
    assert_eq!(c.endpoints(), ("CLOSED", "CLOSED"));
    for policy in POLICIES {
        assert!(!crate::guard::drops(policy, RESET_DATA_AFTER_CLOSE), "policy {policy}");
    }
    assert!(reset_fate(RESET_DATA_AFTER_CLOSE).accepted());
    // The client never sent a FIN, the server reset: Zeek's RSTR.
    assert_eq!(conn_state_of(&c), "RSTR");
}

#[test]
fn reset_answering_data_and_fin_after_close() {
    // Both FINs on the wire: the client's last data comes with its FIN, and
    // the server, which closed first, resets (LAST_ACK).
    let mut c = conn_established();
    c.send(S, FIN | ACK, 0);
    c.send(C, ACK, 0);
    let last = c.make(C, FIN | ACK | PSH, 50);
    assert_eq!(c.apply(C, last).new_state, STATE_LAST_ACK);
    let out = c.apply(S, segment(RST, last.ack, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_DATA_AFTER_CLOSE, STATE_CLOSE));
    // Both FINs came before the RST: a normal termination for Zeek too
    // (UpdateClosedState ignores a RST after both FINs).
    assert_eq!(conn_state_of(&c), "SF");
}

#[test]
fn reset_answering_data_that_crossed_the_fin() {
    // The client's data left before the server's FIN arrived (it does not
    // acknowledge the FIN): the closed server resets it all the same.
    let mut c = conn_established();
    let data = c.make(C, ACK | PSH, 100);
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_FIN_WAIT);
    c.apply(C, data);
    assert_eq!(c.state(), STATE_FIN_WAIT);
    let out = c.apply(S, segment(RST, data.ack, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_DATA_AFTER_CLOSE, STATE_CLOSE));
}

#[test]
fn the_client_closing_first_is_judged_the_same_way() {
    let mut c = conn_established();
    c.send(C, FIN | ACK, 0);
    c.send(S, ACK, 0);
    let data = c.make(S, ACK | PSH, 1000);
    c.apply(S, data);
    let out = c.apply(C, segment(RST, data.ack, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_DATA_AFTER_CLOSE, STATE_CLOSE));
}

#[test]
fn a_stateless_reset_from_the_side_that_did_not_close_is_a_lost_peer() {
    // The server closed; the client, which has not, loses its socket: its
    // stack answers the server's ACK with a stateless RST.
    let (mut c, _) = conn_server_closed_then_client_data();
    let ack = c.make(S, ACK, 0);
    c.apply(S, ack);
    let out = c.apply(C, segment(RST, ack.ack, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_STATELESS_PEER, STATE_CLOSE));
}

#[test]
fn exact_and_invalid_resets_after_close_keep_their_classes() {
    // An abort after the FIN (SO_LINGER 0 after shutdown): RST|ACK at SND.NXT.
    let (mut c, _) = conn_server_closed_then_client_data();
    assert_eq!(c.send(S, RST | ACK, 0).reset, RESET_EXACT);
    // A forged RST from the closed side with a sequence number off by
    // 1000 is still an invalid one.
    let (mut c, data) = conn_server_closed_then_client_data();
    let out = c.apply(S, segment(RST, data.ack + 1000, 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_IN_WINDOW, STATE_CLOSE_WAIT, true));
    // Towards an endpoint in TIME-WAIT it is still RFC 1337's case.
    let mut c = conn_time_wait();
    assert_eq!(c.apply(S, segment(RST, 5002, 0, 0, 0)).reset, RESET_TIME_WAIT);
}

// ---- one direction visible: liberal interfaces (issue 17 item 5) ----

/// Sequence A: the client's SYN, then (its SYN-ACK on a path not seen) the
/// client's ACK, data and FIN, each acknowledging the server's ISN + 1.
fn sequence_a(liberal: bool) -> (Conn, Vec<Outcome>) {
    let mut c = Conn::new(1000, 5000);
    c.liberal = liberal;
    let mut outs = vec![c.send(C, SYN, 0)];
    for seg in [segment(ACK, 1001, 5001, 0, 502), segment(ACK | PSH, 1001, 5001, 100, 502), segment(FIN | ACK, 1101, 5001, 0, 502)] {
        outs.push(c.apply(C, seg));
    }
    (c, outs)
}

#[test]
fn liberal_syn_then_client_ack_infers_the_synack() {
    let (c, outs) = sequence_a(true);
    let got: Vec<_> = outs.iter().map(|o| (o.old_state, o.new_state, o.valid)).collect();
    assert_eq!(
        got,
        [
            (STATE_NONE, STATE_SYN_SENT, true),
            (STATE_SYN_SENT, STATE_ESTABLISHED, true),
            (STATE_ESTABLISHED, STATE_ESTABLISHED, true),
            (STATE_ESTABLISHED, STATE_FIN_WAIT, true),
        ]
    );
    assert!(outs[3].first_fin);
    assert_ne!(c.rec.info & INFO_SYNACK_INFERRED, 0, "the SYN-ACK was inferred, never seen");
    assert_ne!(c.rec.info & closer_bit(C), 0, "the client closed");
    assert_eq!(c.endpoints(), ("FIN-WAIT-1", "CLOSE-WAIT"));
    assert_eq!(crate::event::event_kind(&outs[1]), Some(crate::event::EVENT_STATE));
    // The server's sequence space is known from the client's ACK field.
    assert_eq!(c.rec.peer[S as usize].end, 5001);
    // Zeek calls it SH: the originator sent a SYN and a FIN, no SYN-ACK seen.
    assert_eq!(conn_state_of(&c), "SH");
}

#[test]
fn liberal_inferred_flow_closes_when_the_server_shows_up() {
    // The tap missed only the SYN-ACK: the server's FIN and the last ACK
    // close the connection as usual.
    let (mut c, _) = sequence_a(true);
    c.next = [1102, 5001];
    assert_eq!(c.send(S, FIN | ACK, 0).new_state, STATE_LAST_ACK);
    assert_eq!(c.send(C, ACK, 0).new_state, STATE_TIME_WAIT);
    assert_eq!(c.endpoints(), ("TIME-WAIT", "CLOSED"));
    assert_eq!(crate::conn::conn_state_name(crate::conn::conn_state(&c.rec)), "SF");
}

#[test]
fn liberal_server_ack_of_the_syn_proves_the_synack_too() {
    // A mirror port that lost the SYN-ACK: the server's data acknowledges
    // the SYN (RFC 9293: acceptable in SYN-SENT), then it closes.
    let mut c = conn_syn_sent();
    c.liberal = true;
    let out = c.apply(S, segment(ACK | PSH, 5001, 1001, 200, 509));
    assert_eq!((out.old_state, out.new_state, out.valid), (STATE_SYN_SENT, STATE_ESTABLISHED, true));
    assert_ne!(c.rec.info & INFO_SYNACK_INFERRED, 0);
    // An ACK that does not acknowledge the SYN proves nothing.
    let mut c = conn_syn_sent();
    c.liberal = true;
    let out = c.apply(S, segment(ACK, 300, 100, 0, 509));
    assert_eq!((out.new_state, out.valid), (STATE_SYN_SENT, false));
    assert_eq!(c.rec.info & INFO_SYNACK_INFERRED, 0);
}

#[test]
fn strict_syn_then_client_ack_stays_syn_sent() {
    // Without the liberal flag the same segments are rejected (item 1) and
    // the connection record says S0: only the SYN was accepted.
    let (c, outs) = sequence_a(false);
    assert!(outs[1..].iter().all(|o| !o.valid && o.new_state == STATE_SYN_SENT), "{outs:?}");
    let ack = segment(ACK, 1001, 5001, 0, 502);
    assert!(!outs[1].out_of_window(&ack), "rejected in SYN_SENT, not for the window");
    assert_eq!(c.rec.info & INFO_SYNACK_INFERRED, 0);
    assert_eq!(crate::conn::conn_state_name(crate::conn::conn_state(&c.rec)), "S0");
}

#[test]
fn liberal_changes_nothing_about_resets() {
    // A RST is judged the same whatever the interface: the client's
    // unacceptable-ACK answer keeps SYN_SENT, a forged one in an
    // established flow is still out of window and drop-justified.
    let mut c = conn_syn_sent();
    c.liberal = true;
    c.apply(S, segment(ACK, 300, 100, 0, 65160));
    let out = c.apply(C, segment(RST, 100, 0, 0, 0));
    assert_eq!((out.reset, out.new_state), (RESET_UNACCEPTABLE_ACK, STATE_SYN_SENT));
    let mut c = conn_established();
    c.liberal = true;
    let out = c.apply(S, segment(RST, 5001 + 0x4000_0000, 0, 0, 0));
    assert_eq!((out.reset, out.new_state, out.drop_justified), (RESET_OUT_OF_WINDOW, STATE_ESTABLISHED, true));
}

/// Sequence B: an established flow of which the capture point then missed
/// 300 MB from the client, then both FINs (each acknowledging all the
/// other sent) and the last ACK.
/// Each outcome with whether it counts as out of window.
fn sequence_b(liberal: bool) -> (Conn, Vec<(Outcome, bool)>) {
    let mut c = conn_established();
    c.liberal = liberal;
    let mut outs = Vec::new();
    let mut send = |c: &mut Conn, dir: u8, flags: u8, len: u32| {
        let seg = c.make(dir, flags, len);
        let out = c.apply(dir, seg);
        outs.push((out, out.out_of_window(&seg)));
    };
    send(&mut c, C, ACK | PSH, 1000);
    c.next[C as usize] = c.next[C as usize].wrapping_add(300 << 20);
    send(&mut c, C, ACK | PSH, 1000);
    send(&mut c, C, FIN | ACK, 0);
    c.next[C as usize] = c.next[C as usize].wrapping_add(1);
    send(&mut c, S, FIN | ACK, 0);
    c.next[S as usize] = c.next[S as usize].wrapping_add(1);
    send(&mut c, C, ACK, 0);
    (c, outs)
}

#[test]
fn liberal_fins_after_a_huge_gap_still_close() {
    let (c, outs) = sequence_b(true);
    assert!(outs.iter().all(|(o, oow)| o.valid && !oow), "{outs:?}");
    assert_eq!(c.state(), STATE_TIME_WAIT);
    assert_eq!(c.endpoints(), ("TIME-WAIT", "CLOSED"));
    assert_eq!(crate::conn::conn_state_name(crate::conn::conn_state(&c.rec)), "SF");
}

#[test]
fn strict_segments_after_a_huge_gap_are_out_of_window() {
    // On a strict interface the segments beyond the window the tracker
    // knows are rejected, the FINs too: the flow stays ESTABLISHED (until
    // the daemon's idle timeout), and each is flagged for the counter.
    let (c, outs) = sequence_b(false);
    assert!(outs[0].0.valid && !outs[0].1);
    for (i, (o, oow)) in outs[1..].iter().enumerate() {
        assert!(!o.valid && *oow && o.new_state == STATE_ESTABLISHED, "segment {}: {o:?}", i + 1);
    }
    assert_eq!(c.state(), STATE_ESTABLISHED);
}

