//! Connection records from crafted conversations: each `conn_state` Zeek
//! defines that segments can produce, exact byte, packet and
//! retransmission counts, handshake timing, and properties over random
//! conversations.

use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::flow::{note_dropped_rst, DIR_HI_TO_LO, DIR_LO_TO_HI, ORIGIN_MIDSTREAM, ORIGIN_SYN_ACK};
use crate::parse::{Segment, FAMILY_IPV4, NO_WSCALE, OPT_WSCALE};
use crate::seq::after;
use crate::state::{step, Outcome, STATE_CLOSE, STATE_ESTABLISHED, STATE_SYN_RECV, STATE_TIME_WAIT};
use crate::tcp::{ACK, FIN, PSH, RST, SYN};

thread_local! {
    /// Makes `step` do all of a segment's bookkeeping in `tcp_track_tally`,
    /// skipping its inline shortcut, so that the two can be compared.
    pub(crate) static ALWAYS_TALLY: Cell<bool> = const { Cell::new(false) };
    /// How many segments the inline shortcut took care of.
    pub(crate) static SHORTCUTS: Cell<u64> = const { Cell::new(0) };
}

const MS: u64 = 1_000_000;
const CLIENT: usize = 0;
const SERVER: usize = 1;

/// Two endpoints talking through the state machine, on a clock the test
/// moves. Sides are `CLIENT` and `SERVER`; the client sends in direction
/// `dir[CLIENT]`, so both directions of the record get exercised.
struct Wire {
    rec: FlowRecord,
    now: u64,
    dir: [u8; 2],
    /// SND.NXT of each side.
    next: [u32; 2],
    /// Window field each side advertises (scale 14 once both SYNs offered it).
    win: u16,
}

impl Wire {
    fn new(client_dir: u8, isn: [u32; 2]) -> Wire {
        Wire { rec: FlowRecord::default(), now: 7_000_000_000, dir: [client_dir, client_dir ^ 1], next: isn, win: 65535 }
    }

    fn wait(&mut self, ns: u64) -> &mut Self {
        self.now += ns;
        self
    }

    /// The segment `who` would send now: its next sequence number,
    /// acknowledging all the other side sent.
    fn seg(&self, who: usize, flags: u8, len: u32) -> Segment {
        let mut s = Segment {
            family: FAMILY_IPV4,
            flags,
            seq: self.next[who],
            ack: if flags & ACK != 0 { self.next[who ^ 1] } else { 0 },
            payload_len: len,
            window: self.win,
            wscale: NO_WSCALE,
            ..Segment::default()
        };
        if flags & SYN != 0 {
            s.opt_flags = OPT_WSCALE;
            s.wscale = 14;
        }
        s
    }

    /// Step a segment from `who`; an accepted one moves its SND.NXT on.
    fn put(&mut self, who: usize, seg: Segment) -> Outcome {
        if self.rec.state == crate::state::STATE_NONE {
            // The caller's guess for a flow picked up mid-stream: right.
            self.rec.initiator = self.dir[CLIENT];
        }
        let out = step(&mut self.rec, &seg, self.dir[who], self.now, false);
        let end = seg.seq.wrapping_add(seg.seq_len());
        if out.valid && seg.flags & RST == 0 && after(end, self.next[who]) {
            self.next[who] = end;
        }
        out
    }

    fn send(&mut self, who: usize, flags: u8, len: u32) -> Outcome {
        let s = self.seg(who, flags, len);
        self.put(who, s)
    }

    fn handshake(&mut self) -> &mut Self {
        self.send(CLIENT, SYN, 0);
        self.send(SERVER, SYN | ACK, 0);
        assert_eq!(self.send(CLIENT, ACK, 0).new_state, STATE_ESTABLISHED);
        self
    }

    /// `who` sends `len` bytes in segments of at most `mss`, each
    /// acknowledged by the other side.
    fn transfer(&mut self, who: usize, len: u64, mss: u32) -> &mut Self {
        let mut left = len;
        while left > 0 {
            let n = left.min(mss as u64) as u32;
            assert!(self.send(who, ACK | PSH, n).valid);
            assert!(self.send(who ^ 1, ACK, 0).valid);
            left -= n as u64;
        }
        self
    }

    fn summary(&self) -> ConnSummary {
        ConnSummary::of(&self.rec)
    }

    fn state(&self) -> &'static str {
        conn_state_name(conn_state(&self.rec))
    }
}

/// Both client directions (lo→hi and hi→lo) for every scenario.
fn wires(isn: [u32; 2]) -> [Wire; 2] {
    [Wire::new(DIR_LO_TO_HI, isn), Wire::new(DIR_HI_TO_LO, isn)]
}

// ---- conn_state, one test per code ----

#[test]
fn sf_client_closes_first() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(CLIENT, 300, 100).transfer(SERVER, 4000, 1448);
        w.send(CLIENT, FIN | ACK, 0);
        assert_eq!(w.state(), "S2", "only the client closed so far");
        w.send(SERVER, ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        assert_eq!(w.send(CLIENT, ACK, 0).new_state, STATE_TIME_WAIT);
        assert_eq!(w.state(), "SF");
        assert_eq!(w.summary().bytes, [300, 4000]);
    }
}

#[test]
fn sf_server_closes_first() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(CLIENT, 10, 10);
        w.send(SERVER, FIN | ACK, 0);
        assert_eq!(w.state(), "S3", "only the server closed so far");
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, ACK, 0);
        assert_eq!(w.state(), "SF");
        assert_eq!(w.summary().bytes, [10, 0]);
    }
}

#[test]
fn sf_after_both_fins_even_with_a_late_rst() {
    // Zeek: a RST after both FINs changes nothing (UpdateClosedState), and
    // a FIN then a RST from one side followed by the other side's FIN is a
    // normal termination (UpdateEstablishedState).
    for mut w in wires([1000, 5000]) {
        w.handshake();
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        w.send(CLIENT, RST, 0);
        assert_eq!(w.state(), "SF");
    }
    let mut side = [0u8; 2];
    zeek_step(&mut side, 0, true, SYN, 0);
    zeek_step(&mut side, 1, false, SYN | ACK, 0);
    zeek_step(&mut side, 0, true, FIN | ACK, 0);
    zeek_step(&mut side, 0, true, RST, 0);
    assert_eq!(side[0] & SIDE_ZEEK_STATE, ZEEK_RESET);
    zeek_step(&mut side, 1, false, FIN | ACK, 0);
    assert_eq!((side[0] & SIDE_ZEEK_STATE, side[1] & SIDE_ZEEK_STATE), (ZEEK_CLOSED, ZEEK_CLOSED));
}

#[test]
fn rej_refused_syn() {
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 0);
        let rst = Segment { seq: 0, ack: 1001, ..w.seg(SERVER, RST | ACK, 0) };
        assert_eq!(w.put(SERVER, rst).new_state, STATE_CLOSE);
        assert_eq!(w.state(), "REJ");
        assert_eq!(w.summary().bytes, [0, 0]);
        assert_eq!(w.summary().packets, [1, 1]);
    }
}

#[test]
fn s0_syn_unanswered_with_retransmissions() {
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 0);
        assert_eq!(w.state(), "S0");
        for _ in 0..3 {
            let again = Segment { seq: 1000, ..w.seg(CLIENT, SYN, 0) };
            assert!(w.wait(1000 * MS).put(CLIENT, again).retransmission);
        }
        let s = w.summary();
        assert_eq!((w.state(), s.packets, s.retransmits, s.bytes), ("S0", [4, 0], [3, 0], [0, 0]));
        assert_eq!((s.syn_to_synack_us, s.synack_to_ack_us), (None, None));
    }
}

#[test]
fn s1_established_and_open() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(SERVER, 5, 5);
        assert_eq!(w.state(), "S1");
    }
}

#[test]
fn rsto_client_aborts() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(CLIENT, 100, 100);
        assert_eq!(w.send(CLIENT, RST | ACK, 0).new_state, STATE_CLOSE);
        assert_eq!(w.state(), "RSTO");
        assert_eq!(w.summary().bytes, [100, 0]);
    }
}

#[test]
fn rstr_server_aborts() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(CLIENT, 100, 100);
        assert_eq!(w.send(SERVER, RST | ACK, 0).new_state, STATE_CLOSE);
        assert_eq!(w.state(), "RSTR");
    }
}

#[test]
fn rstos0_syn_then_the_clients_rst() {
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 0);
        assert_eq!(w.send(CLIENT, RST, 0).new_state, STATE_CLOSE);
        assert_eq!(w.state(), "RSTOS0");
    }
}

#[test]
fn rstos0_needs_no_ack_or_fin_before_the_rst() {
    // The history test behind RSTOS0 (S, then no H, A, F before R): an
    // originator that sent a pure ACK first is OTH. The state machine does
    // not accept that ACK in SYN_SENT today, so the endpoint machine is
    // driven directly.
    for (middle, expect) in [(None, CONN_RSTOS0), (Some((ACK, 0)), CONN_OTH), (Some((ACK | PSH, 10)), CONN_RSTOS0)] {
        let mut rec = FlowRecord { origin: ORIGIN_SYN, ..FlowRecord::default() };
        zeek_step(&mut rec.side, 0, true, SYN, 0);
        if let Some((flags, len)) = middle {
            zeek_step(&mut rec.side, 0, true, flags, len);
        }
        zeek_step(&mut rec.side, 0, true, RST, 0);
        assert_eq!(conn_state(&rec), expect, "{middle:?}");
    }
}

#[test]
fn rstrh_synack_then_the_servers_rst() {
    for mut w in wires([1000, 5000]) {
        w.send(SERVER, SYN | ACK, 0);
        assert_eq!(w.rec.origin, ORIGIN_SYN_ACK);
        assert_eq!(w.send(SERVER, RST, 0).new_state, STATE_CLOSE);
        assert_eq!(w.state(), "RSTRH");
    }
}

#[test]
fn sh_client_data_then_fin_server_silent() {
    // Picked up mid-stream: the client sends data and closes, the server is
    // never seen.
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, ACK | PSH, 100);
        assert_eq!(w.rec.origin, ORIGIN_MIDSTREAM);
        w.send(CLIENT, FIN | ACK, 0);
        assert_eq!(w.state(), "SH");
        assert_eq!(w.summary().bytes, [100, 0], "counted from the first sequence number seen");
    }
}

#[test]
fn shr_synack_then_the_servers_fin() {
    for mut w in wires([1000, 5000]) {
        w.send(SERVER, SYN | ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        assert_eq!(w.state(), "SHR");
    }
}

#[test]
fn s2_and_s3_one_side_closed() {
    for mut w in wires([1000, 5000]) {
        w.handshake();
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, ACK, 0);
        assert_eq!(w.state(), "S2");
    }
    for mut w in wires([1000, 5000]) {
        w.handshake();
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        assert_eq!(w.state(), "S3");
    }
}

#[test]
fn oth_picked_up_mid_stream() {
    for mut w in wires([1000, 5000]) {
        w.send(SERVER, ACK | PSH, 200);
        w.send(CLIENT, ACK, 0);
        w.transfer(CLIENT, 50, 50);
        assert_eq!(w.state(), "OTH");
        assert_eq!(w.summary().bytes, [50, 200]);
        // The client aborts: no SYN was ever seen, still OTH (Zeek's RSTOS0
        // needs the history to start with the originator's SYN).
        w.send(CLIENT, RST | ACK, 0);
        assert_eq!((zeek_state(&w.rec, w.dir[CLIENT]), w.state()), (ZEEK_RESET, "OTH"));
    }
}

#[test]
fn an_ack_of_the_syn_before_the_synack_is_not_partial() {
    // Zeek's "eccentric TCP" rule: a responder's bare ACK while the
    // originator is in SYN_SENT leaves the responder INACTIVE.
    let mut side = [0u8; 2];
    zeek_step(&mut side, 1, true, SYN, 0);
    zeek_step(&mut side, 0, false, ACK, 0);
    assert_eq!(side[0] & SIDE_ZEEK_STATE, ZEEK_INACTIVE);
    zeek_step(&mut side, 0, false, ACK | PSH, 1);
    assert_eq!(side[0] & SIDE_ZEEK_STATE, ZEEK_PARTIAL);
}

#[test]
fn rejected_segments_change_no_conn_state() {
    // An out-of-window RST is ignored by its receiver: the connection stays
    // S1 (Zeek, which does not judge windows, would say RSTR).
    for mut w in wires([1000, 5000]) {
        w.handshake();
        let forged = Segment { seq: 5001u32.wrapping_add(0x4000_0000), ..w.seg(SERVER, RST, 0) };
        assert!(!w.put(SERVER, forged).valid);
        assert_eq!(w.state(), "S1");
        assert_eq!(w.summary().packets, [2, 2], "but it was seen");
    }
}

// ---- bytes, packets, retransmissions ----

#[test]
fn bytes_packets_and_retransmissions_are_exact() {
    for mut w in wires([0xffff_ff00, 77]) {
        w.handshake();
        // 10,000 bytes from the client, across the 2^32 sequence wrap.
        w.transfer(CLIENT, 10_000, 1448);
        // 123,456 from the server; two segments sent again.
        w.transfer(SERVER, 120_000, 1448);
        let old = Segment { seq: w.next[SERVER].wrapping_sub(1448), ..w.seg(SERVER, ACK | PSH, 1448) };
        assert!(w.put(SERVER, old).retransmission);
        assert!(w.put(SERVER, old).retransmission);
        w.transfer(SERVER, 3456, 1448);
        // An ACK far outside the window: rejected, seen, counts nothing.
        let wild = Segment { ack: w.next[SERVER].wrapping_add(0x7000_0000), ..w.seg(CLIENT, ACK, 0) };
        assert!(!w.put(CLIENT, wild).valid);
        // Invalid flags: seen, nothing else.
        assert!(!w.put(CLIENT, w.seg(CLIENT, FIN, 0)).valid);
        let s = w.summary();
        assert_eq!(s.bytes, [10_000, 123_456]);
        // Client: SYN, ACK, 7 data, 83 + 3 ACKs, the wild ACK, the FIN alone.
        // Server: SYN-ACK, 7 ACKs, 83 data, 2 again, 3 data.
        assert_eq!(s.packets, [2 + 7 + 83 + 3 + 2, 1 + 7 + 83 + 2 + 3]);
        assert_eq!(s.retransmits, [0, 2]);
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        assert_eq!((w.state(), w.summary().bytes), ("SF", [10_000, 123_456]), "FINs are not payload");
    }
}

#[test]
fn bytes_past_4_gib() {
    for mut w in wires([0x8000_0000, 5000]) {
        w.handshake();
        let total = 5 * (1u64 << 30) + 12_345;
        w.transfer(CLIENT, total, 1 << 28);
        assert_eq!(w.summary().bytes, [total, 0]);
        assert_eq!(pair(&w.rec.seq_wraps, w.dir[CLIENT]), 1);
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        assert_eq!(w.summary().bytes, [total, 0]);
    }
}

#[test]
fn bytes_of_a_side_never_seen_come_from_the_acknowledgments() {
    // Only the server's direction is visible (picked up mid-stream): what
    // it acknowledged is what the client sent, past 4 GiB too.
    for mut w in wires([1000, 5000]) {
        let (mut acked, total) = (0u64, 4 * (1u64 << 30) + 999);
        w.send(SERVER, ACK, 0);
        while acked < total {
            let n = (total - acked).min(1 << 28) as u32;
            w.next[CLIENT] = w.next[CLIENT].wrapping_add(n);
            acked += n as u64;
            assert!(w.send(SERVER, ACK, 0).valid);
        }
        assert_eq!(w.summary().bytes, [acked, 0]);
    }
}

#[test]
fn a_syn_with_data_counts_it() {
    // TCP Fast Open: the SYN's payload is payload.
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 100);
        w.send(SERVER, SYN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        assert_eq!(w.summary().bytes, [100, 0]);
    }
}

#[test]
fn dropped_rsts_are_counted_and_saturate() {
    let mut rec = FlowRecord::default();
    for _ in 0..3 {
        note_dropped_rst(&mut rec);
    }
    assert_eq!(rec, FlowRecord { rst_dropped: 3, ..FlowRecord::default() }, "nothing else changes");
    rec.rst_dropped = u16::MAX - 1;
    note_dropped_rst(&mut rec);
    note_dropped_rst(&mut rec);
    assert_eq!(ConnSummary::of(&rec).rst_dropped, u16::MAX);
}

#[test]
fn a_reused_tuple_starts_a_new_record() {
    for mut w in wires([1000, 5000]) {
        w.handshake().transfer(CLIENT, 10, 10);
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, ACK, 0);
        let first = w.rec.first_ns;
        w.next = [900_000, 7000];
        w.wait(5 * MS).send(CLIENT, SYN, 0);
        let s = w.summary();
        assert_eq!((w.state(), s.packets, s.bytes), ("S0", [1, 0], [0, 0]));
        assert_eq!(s.first_ns, first + 5 * MS, "the new incarnation's SYN");
    }
}

// ---- handshake timing ----

#[test]
fn handshake_timing_is_exact() {
    for mut w in wires([1000, 5000]) {
        let t0 = w.now;
        w.send(CLIENT, SYN, 0);
        w.wait(30 * MS).send(SERVER, SYN | ACK, 0);
        assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (Some(30_000), None));
        w.wait(10 * MS).send(CLIENT, ACK, 0);
        let s = w.summary();
        assert_eq!((s.syn_to_synack_us, s.synack_to_ack_us, s.first_ns), (Some(30_000), Some(10_000), t0));
        // Later segments change nothing.
        w.wait(500 * MS).transfer(CLIENT, 10, 10);
        assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (Some(30_000), Some(10_000)));
    }
}

#[test]
fn handshake_timing_runs_from_the_latest_syn_and_synack() {
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 0);
        let again = Segment { seq: 1000, ..w.seg(CLIENT, SYN, 0) };
        w.wait(1000 * MS).put(CLIENT, again);
        w.wait(2000 * MS).put(CLIENT, again);
        w.wait(25 * MS).send(SERVER, SYN | ACK, 0);
        let synack = Segment { seq: 5000, ..w.seg(SERVER, SYN | ACK, 0) };
        w.wait(1000 * MS).put(SERVER, synack);
        w.wait(7 * MS).send(CLIENT, ACK | PSH, 20);
        let s = w.summary();
        assert_eq!((s.syn_to_synack_us, s.synack_to_ack_us), (Some(25_000), Some(7_000)));
        assert_eq!(s.retransmits, [2, 1]);
    }
}

#[test]
fn handshake_timing_absent_when_not_seen() {
    for mut w in wires([1000, 5000]) {
        // The SYN missed: only SYN-ACK → ACK.
        w.send(SERVER, SYN | ACK, 0);
        w.wait(3 * MS).send(CLIENT, ACK, 0);
        assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (None, Some(3000)));
    }
    for mut w in wires([1000, 5000]) {
        // Refused: no SYN-ACK, nothing measured.
        w.send(CLIENT, SYN, 0);
        let rst = Segment { seq: 0, ack: 1001, ..w.seg(SERVER, RST | ACK, 0) };
        w.wait(MS).put(SERVER, rst);
        assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (None, None));
        // A handshake that never completes: SYN → SYN-ACK only.
    }
    for mut w in wires([1000, 5000]) {
        w.send(CLIENT, SYN, 0);
        w.wait(MS).send(SERVER, SYN | ACK, 0);
        assert_eq!(w.rec.state, STATE_SYN_RECV);
        w.wait(MS).send(SERVER, RST, 0);
        assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (Some(1000), None));
    }
}

#[test]
fn handshake_timing_survives_the_microsecond_clock_wrapping() {
    let mut w = Wire::new(DIR_LO_TO_HI, [1000, 5000]);
    w.now = (u32::MAX as u64) * 1000 - 10 * MS;
    w.send(CLIENT, SYN, 0);
    w.wait(30 * MS).send(SERVER, SYN | ACK, 0);
    w.wait(10 * MS).send(CLIENT, ACK, 0);
    assert_eq!((w.summary().syn_to_synack_us, w.summary().synack_to_ack_us), (Some(30_000), Some(10_000)));
}

#[test]
fn names() {
    for code in CONN_S0..=CONN_OTH {
        assert!(!conn_state_name(code).is_empty());
    }
    assert_eq!(conn_state_name(0), "");
    for st in ZEEK_INACTIVE..=ZEEK_RESET {
        assert!(!zeek_state_name(st).is_empty());
    }
}

#[test]
fn last_seen_on_the_callers_clock() {
    let mut w = Wire::new(DIR_LO_TO_HI, [1000, 5000]);
    w.handshake();
    let last = w.now;
    let back = last_seen_ns(&w.rec, last + 3_600_000 * MS);
    assert!(back <= last && last - back < 1 << 20, "{back} vs {last}");
}

// ---- properties ----

/// One move of a well-behaved conversation after the handshake.
#[derive(Clone, Debug)]
enum Move {
    /// `who` sends new data.
    Data(usize, u32),
    /// `who` acknowledges everything.
    Ack(usize),
    /// `who` sends one of its earlier segments again (`back` bytes behind its SND.NXT).
    Again(usize, u32),
    /// A forged or broken segment: seen, mostly rejected.
    Junk(usize, u8, u32, u32),
    Wait(u32),
}

fn arb_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        4 => (0..2usize, 1..70_000u32).prop_map(|(w, n)| Move::Data(w, n)),
        3 => (0..2usize).prop_map(Move::Ack),
        1 => (0..2usize, 1..3000u32).prop_map(|(w, b)| Move::Again(w, b)),
        // Not RST (it would end the conversation) nor FIN (a FIN behind the
        // sender's data is no real TCP's, and its octet is not payload).
        1 => (0..2usize, any::<u8>(), any::<u32>(), any::<u32>()).prop_map(|(w, f, s, a)| Move::Junk(w, f & !(RST | FIN), s, a)),
        1 => (0..5000u32).prop_map(Move::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    /// Counters never decrease, bytes never exceed what each side really
    /// sent, and once everything is acknowledged and closed they are exact.
    #[test]
    fn counters_grow_and_bytes_stay_within_what_was_sent(
        client_dir in 0..2u8,
        isn in any::<[u32; 2]>(),
        moves in prop::collection::vec(arb_move(), 0..120),
    ) {
        let mut w = Wire::new(client_dir, isn);
        w.handshake();
        let mut sent = [0u64; 2];
        let mut before = w.summary();
        for m in moves {
            match m {
                Move::Data(who, n) => {
                    if w.send(who, ACK | PSH, n).valid {
                        sent[who] += n as u64;
                    }
                }
                Move::Ack(who) => { w.send(who, ACK, 0); }
                Move::Again(who, back) => {
                    let back = back.min(sent[who] as u32);
                    let s = Segment { seq: w.next[who].wrapping_sub(back), ..w.seg(who, ACK | PSH, back) };
                    w.put(who, s);
                }
                Move::Junk(who, flags, seq, ack) => {
                    // Never acknowledging more than was sent: a forged ACK
                    // past SND.NXT would be "evidence" of data never sent.
                    let ack = if after(ack, w.next[who ^ 1]) { w.next[who ^ 1] } else { ack };
                    let s = Segment { flags, seq, ack, ..w.seg(who, flags, 0) };
                    let out = w.put(who, s);
                    // Junk that the state machine accepts as a sender's data
                    // moves what that side "sent".
                    if out.valid && after(w.next[who], w.rec.peer(w.dir[who]).end) {
                        w.next[who] = w.rec.peer(w.dir[who]).end;
                    }
                }
                Move::Wait(ms) => { w.wait(ms as u64 * MS); }
            }
            let now = w.summary();
            for i in 0..2 {
                prop_assert!(now.packets[i] >= before.packets[i]);
                prop_assert!(now.retransmits[i] >= before.retransmits[i]);
                prop_assert!(now.bytes[i] >= before.bytes[i], "bytes went back: {:?} -> {:?}", before, now);
                let seen_sent = w.next[i].wrapping_sub(isn[i].wrapping_add(1)) as u64;
                prop_assert!(now.bytes[i] <= seen_sent.max(sent[i]), "side {} counted {} of {}", i, now.bytes[i], seen_sent);
            }
            prop_assert_eq!((now.syn_to_synack_us, now.first_ns), (before.syn_to_synack_us, before.first_ns));
            before = now;
        }
        // Close in order: everything acknowledged, so the counts are exact.
        w.send(CLIENT, ACK, 0);
        w.send(SERVER, FIN | ACK, 0);
        w.send(CLIENT, FIN | ACK, 0);
        w.send(SERVER, ACK, 0);
        prop_assert_eq!(w.rec.state, STATE_TIME_WAIT);
        let s = w.summary();
        for (i, isn) in isn.iter().enumerate() {
            prop_assert_eq!(s.bytes[i], w.next[i].wrapping_sub(*isn).wrapping_sub(2) as u64);
        }
    }
}

// ---- the table behind zeek_step ----

/// Side bytes a record can hold: any Zeek state, the FROM bits only with
/// RESET, and the other bits in any combination.
fn side_bytes() -> impl Iterator<Item = u8> {
    (0..=255u8).filter(|b| {
        let from = b & (SIDE_RESET_FROM_CLOSED | SIDE_RESET_FROM_SYN_SENT);
        b & SIDE_ZEEK_STATE <= ZEEK_RESET
            && from != SIDE_RESET_FROM_CLOSED | SIDE_RESET_FROM_SYN_SENT
            && (from == 0 || b & SIDE_ZEEK_STATE == ZEEK_RESET)
    })
}

#[test]
fn the_table_is_the_state_machine() {
    let mut checked = 0;
    for e in side_bytes() {
        for p in side_bytes() {
            for flags in (0..=255u8).filter(|&f| crate::tcp::flags_valid(f)) {
                for len in [0, 1, 1460] {
                    for is_orig in [false, true] {
                        let want = zeek_transition(e, p, is_orig, zeek_event(flags, len));
                        for s in [0u8, 1] {
                            let mut side = [0u8; 2];
                            side[s as usize] = e;
                            side[(s ^ 1) as usize] = p;
                            zeek_step(&mut side, s, is_orig, flags, len);
                            assert_eq!(
                                (side[s as usize], side[(s ^ 1) as usize]),
                                (want as u8, (want >> 8) as u8),
                                "e {e:#04x} p {p:#04x} flags {flags:#04x} len {len} orig {is_orig}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1_000_000, "{checked}");
}

#[test]
fn events_by_flags() {
    assert_eq!(zeek_event(SYN, 0), EV_SYN);
    assert_eq!(zeek_event(SYN | crate::tcp::ECE | crate::tcp::CWR, 10), EV_SYN, "a SYN with data is a SYN");
    assert_eq!(zeek_event(SYN | ACK, 0), EV_SYN_ACK);
    assert_eq!(zeek_event(RST, 0), EV_RST);
    assert_eq!(zeek_event(RST | ACK, 0), EV_RST);
    assert_eq!(zeek_event(FIN | ACK, 5), EV_FIN);
    assert_eq!(zeek_event(ACK, 0), EV_ACK);
    assert_eq!(zeek_event(ACK | PSH, 1), EV_DATA);
    assert_eq!(zeek_event(ACK, u32::MAX), EV_DATA);
    assert_eq!(zeek_event(ACK, 1 << 31), EV_DATA);
    assert_eq!(zeek_event(FIN, 0), EV_NONE);
    assert_eq!(zeek_event(SYN | FIN, 0), EV_NONE);
    assert_eq!(zeek_event(0, 0), EV_NONE);
}

// ---- the inline shortcut of the bookkeeping ----

/// One segment of a random conversation, from its first segment on.
#[derive(Clone, Debug)]
enum Act {
    /// `who` sends the next segment with these flags and bytes.
    Send(usize, u8, u32),
    /// `who` sends again what it sent `back` bytes ago (a SYN or SYN-ACK
    /// again when `back` is 0 and the flags carry SYN).
    Again(usize, u8, u32),
    /// Anything at all.
    Junk(usize, u8, u32, u32, u32),
    Wait(u32),
}

fn arb_act() -> impl Strategy<Value = Act> {
    let flags = prop::sample::select(vec![SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK]);
    prop_oneof![
        6 => (0..2usize, flags.clone(), prop::sample::select(vec![0u32, 0, 1, 100, 1448, 70_000])).prop_map(|(w, f, n)| Act::Send(w, f, n)),
        2 => (0..2usize, flags, 0..2000u32).prop_map(|(w, f, b)| Act::Again(w, f, b)),
        1 => (0..2usize, any::<u8>(), any::<u32>(), any::<u32>(), 0..100u32).prop_map(|(w, f, s, a, n)| Act::Junk(w, f, s, a, n)),
        1 => (0..3000u32).prop_map(Act::Wait),
    ]
}

impl Wire {
    fn segment_for(&self, act: &Act) -> Option<(usize, Segment)> {
        Some(match *act {
            Act::Send(who, flags, len) => (who, self.seg(who, flags, len)),
            Act::Again(who, flags, back) => {
                let len = if flags & SYN != 0 { 0 } else { back };
                let seq = if flags & SYN != 0 { self.rec.peer(self.dir[who]).isn } else { self.next[who].wrapping_sub(back) };
                (who, Segment { seq, ..self.seg(who, flags, len) })
            }
            Act::Junk(who, flags, seq, ack, len) => (who, Segment { flags, seq, ack, payload_len: len, ..self.seg(who, 0, 0) }),
            Act::Wait(_) => return None,
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    /// `step`'s inline shortcut leaves every record exactly as the whole
    /// bookkeeping (`tcp_track_tally`) would.
    #[test]
    fn the_shortcut_agrees_with_the_whole_bookkeeping(
        client_dir in 0..2u8,
        isn in any::<[u32; 2]>(),
        acts in prop::collection::vec(arb_act(), 1..80),
    ) {
        let mut quick = Wire::new(client_dir, isn);
        let mut whole = Wire::new(client_dir, isn);
        for act in &acts {
            if let Act::Wait(ms) = act {
                quick.wait(*ms as u64 * MS);
                whole.wait(*ms as u64 * MS);
                continue;
            }
            let (who, seg) = quick.segment_for(act).unwrap();
            let a = quick.put(who, seg);
            ALWAYS_TALLY.with(|t| t.set(true));
            let b = whole.put(who, seg);
            ALWAYS_TALLY.with(|t| t.set(false));
            prop_assert_eq!(a, b);
            prop_assert_eq!(quick.rec, whole.rec, "after {:?}", act);
        }
    }
}

#[test]
fn the_shortcut_takes_the_common_segments() {
    let taken = |w: &mut Wire, who: usize, seg: Segment| -> bool {
        let before = SHORTCUTS.with(|n| n.get());
        w.put(who, seg);
        SHORTCUTS.with(|n| n.get()) > before
    };
    let mut w = Wire::new(DIR_LO_TO_HI, [1000, 5000]);
    let check = |w: &mut Wire, who: usize, seg: Segment, expect: bool, what: &str| assert_eq!(taken(w, who, seg), expect, "{what}");
    let s = w.seg(CLIENT, SYN, 0);
    check(&mut w, CLIENT, s, false, "the first segment starts the record");
    let s = Segment { seq: 1000, ..w.seg(CLIENT, SYN, 0) };
    check(&mut w, CLIENT, s, true, "a SYN sent again");
    let s = w.seg(SERVER, SYN | ACK, 0);
    check(&mut w, SERVER, s, false, "the SYN-ACK answers: timed");
    let s = Segment { seq: 5000, ..w.seg(SERVER, SYN | ACK, 0) };
    check(&mut w, SERVER, s, true, "a SYN-ACK sent again");
    let s = w.seg(CLIENT, ACK, 0);
    check(&mut w, CLIENT, s, false, "the handshake completes: timed");
    let s = w.seg(CLIENT, ACK | PSH, 100);
    check(&mut w, CLIENT, s, true, "data");
    let s = w.seg(SERVER, ACK, 0);
    check(&mut w, SERVER, s, true, "an ACK");
    let s = Segment { seq: 1001, ..w.seg(CLIENT, ACK | PSH, 100) };
    check(&mut w, CLIENT, s, true, "data sent again");
    let s = Segment { seq: 0x7000_0000, ..w.seg(CLIENT, ACK, 0) };
    check(&mut w, CLIENT, s, true, "a rejected segment");
    let s = w.seg(CLIENT, FIN | ACK, 0);
    check(&mut w, CLIENT, s, false, "a FIN");
    let s = Segment { seq: w.next[CLIENT].wrapping_sub(1), ..w.seg(CLIENT, FIN | ACK, 0) };
    check(&mut w, CLIENT, s, true, "a FIN sent again");
    let s = w.seg(SERVER, RST, 0);
    check(&mut w, SERVER, s, false, "a RST");
    assert_eq!(w.state(), "RSTR");
}

#[test]
fn a_segment_stamped_after_now_is_not_quiet_for_weeks() {
    let now = 5_000u64 << 20;
    let mut rec = FlowRecord { last_seen: crate::flow::coarse_time(now) - 3, ..FlowRecord::default() };
    assert_eq!(quiet_units(&rec, now), 3);
    assert_eq!(last_seen_ns(&rec, now), now - (3 << 20));
    // The kernel stamped it one unit after the reader took `now`.
    rec.last_seen = crate::flow::coarse_time(now) + 1;
    assert_eq!(quiet_units(&rec, now), 0);
    assert_eq!(last_seen_ns(&rec, now), now);
}
