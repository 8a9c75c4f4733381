//! The fast path against the full one (`table::step_flow` and
//! `table::report`, as `table::account` runs them on a record it found):
//! whenever `fast::step` takes a segment, the record, the counters and the
//! events must be the full path's; whenever it does not, the record must be
//! untouched.

use std::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::{
    event::HOOK_XDP,
    flow::{Peer, DIR_HI_TO_LO, DIR_LO_TO_HI, INFO_LAST_ACK, PEER_FIN, PEER_SYN, SIDE_HAF_BEFORE_RST, ZEEK_ESTABLISHED},
    parse::{Segment, FAMILY_IPV4},
    state::{self as sm, STATE_SYN_SENT},
    table::{report, step_flow, Cx, Driver, FlowKey, Seen},
    tcp::{ACK, FIN, PSH, RST, SYN, URG},
};

thread_local! {
    /// Segments `fast::step` took in this thread's tests.
    static TAKEN: Cell<u64> = const { Cell::new(0) };
}

/// A driver that writes down what the full path counts and reports.
#[derive(Default)]
struct Recorder {
    counts: Vec<u32>,
    events: Vec<u16>,
}

impl Driver for Recorder {
    fn now(&mut self) -> u64 {
        NOW
    }
    fn rst_policy(&mut self, _ifindex: u32) -> u8 {
        crate::guard::RST_POLICY_OBSERVE
    }
    fn liberal(&mut self, _ifindex: u32) -> bool {
        false
    }
    fn count(&mut self, counter: u32) {
        self.counts.push(counter);
    }
    fn event(&mut self, kind: u16, _seg: &Segment, _dir: u8, _rec: &FlowRecord, _out: &Outcome, _seen: &Seen) {
        self.events.push(kind);
    }
    fn conn_end(&mut self, _seg: &Segment, _dir: u8, _rec: &FlowRecord, _out: &Outcome, _seen: &Seen) {
        self.events.push(crate::event::EVENT_CONN_END);
    }
    fn conn_evicted<K: FlowKey>(&mut self, _key: &K, _rec: &FlowRecord, _seen: &Seen) {
        self.events.push(crate::event::EVENT_CONN_END);
    }
}

const NOW: u64 = 9_000_000_000;

fn segment(seg: &Lean) -> Segment {
    Segment { family: FAMILY_IPV4, flags: seg.flags, seq: seg.seq, ack: seg.ack, window: seg.window, payload_len: seg.payload_len, ..Segment::default() }
}

/// The full path on `rec`: (record after, counters, events).
fn full(rec: &FlowRecord, seg: &Lean, dir: u8, now: u64) -> (FlowRecord, Vec<u32>, Vec<u16>) {
    let (mut rec, seg) = (*rec, segment(seg));
    let mut cx = Cx { driver: Recorder::default(), seen: Seen::new(now, 1, HOOK_XDP) };
    let out = step_flow(&mut rec, &seg, dir, &mut cx);
    report(&seg, &rec, &out, &mut cx);
    (rec, cx.driver.counts, cx.driver.events)
}

/// `fast::step` on a copy of `rec`, checked against the full path; whether
/// it took the segment.
fn check(rec: &FlowRecord, seg: &Lean, dir: u8, now: u64) -> Result<bool, TestCaseError> {
    let mut fast = *rec;
    let taken = step(&mut fast, seg, dir, now);
    if taken {
        TAKEN.with(|n| n.set(n.get() + 1));
        let (after, counts, events) = full(rec, seg, dir, now);
        prop_assert_eq!(fast, after, "record differs from the full path's for {:?} dir {} on {:?}", seg, dir, rec);
        prop_assert!(counts.is_empty(), "the full path counted {:?}", counts);
        prop_assert!(events.is_empty(), "the full path reported {:?}", events);
    } else {
        prop_assert_eq!(&fast, rec, "not taken, yet the record changed");
    }
    Ok(taken)
}

/// An ESTABLISHED record as a real handshake leaves it (client `c`, ISNs
/// 1000 and 5000, windows 64240), stamped.
fn established(c: u8) -> FlowRecord {
    let peer = |isn: u32, ack: u32| Peer {
        end: isn.wrapping_add(1),
        maxend: ack.wrapping_add(64240),
        maxwin: 64240,
        maxack: ack,
        isn,
        flags: PEER_SEEN | PEER_SYN | PEER_MAXACK_SET,
        ..Peer::default()
    };
    let (client, server) = (peer(1000, 5001), peer(5000, 1001));
    let mut rec = FlowRecord { state: STATE_ESTABLISHED, initiator: c, first_ns: 1, ..FlowRecord::default() };
    *rec.peer_mut(c) = client;
    *rec.peer_mut(c ^ 1) = server;
    rec.side = [ZEEK_ESTABLISHED | SIDE_HAF_BEFORE_RST; 2];
    rec
}

fn lean(flags: u8, seq: u32, ack: u32, payload_len: u32) -> Lean {
    Lean { seq, ack, payload_len, window: 502, flags }
}

#[test]
fn common_segments_take_it_and_others_do_not() {
    for c in [DIR_LO_TO_HI, DIR_HI_TO_LO] {
        let rec = established(c);
        let taken = |seg: Lean, dir: u8| check(&rec, &seg, dir, NOW).unwrap();
        assert!(taken(lean(ACK | PSH, 1001, 5001, 100), c), "client data");
        assert!(taken(lean(ACK, 5001, 1001, 0), c ^ 1), "server pure ACK");
        assert!(taken(lean(ACK, 5001, 1001, 1460), c ^ 1), "server data");
        assert!(!taken(lean(ACK | FIN, 1001, 5001, 0), c), "FIN");
        assert!(!taken(lean(ACK | URG, 1001, 5001, 10), c), "URG");
        assert!(!taken(lean(RST, 1001, 0, 0), c), "RST");
        assert!(!taken(lean(SYN | ACK, 5000, 1001, 0), c ^ 1), "SYN-ACK again");
        assert!(!taken(lean(ACK, 1001 + 0x4000_0000, 5001, 0), c), "out of window");
        assert!(!taken(lean(ACK, 1001, 5001 + 1, 0), c), "acknowledges what the server never sent");
        // Data sent again: the first of a run is an event, the next ones are not.
        let mut again = rec;
        again.peer_mut(c).end = 1101;
        assert!(!check(&again, &lean(ACK | PSH, 1001, 5001, 100), c, NOW).unwrap(), "first retransmission");
        again.peer_mut(c).retrans = 1;
        assert!(check(&again, &lean(ACK | PSH, 1001, 5001, 100), c, NOW).unwrap(), "second retransmission");
        // States and flags the fast path leaves alone.
        for change in [
            |r: &mut FlowRecord| r.state = sm::STATE_FIN_WAIT,
            |r: &mut FlowRecord| r.first_ns = 0,
            |r: &mut FlowRecord| r.info |= crate::flow::INFO_LIBERAL,
            |r: &mut FlowRecord| r.peer[1].flags |= PEER_LIBERAL,
            |r: &mut FlowRecord| r.peer.iter_mut().for_each(|p| p.flags &= !PEER_MAXACK_SET),
            |r: &mut FlowRecord| r.peer.iter_mut().for_each(|p| p.flags &= !PEER_SEEN),
            |r: &mut FlowRecord| r.side = [ZEEK_ESTABLISHED; 2],
        ] {
            let mut other = rec;
            change(&mut other);
            for dir in [0, 1] {
                let (seq, ack) = if dir == c { (1001, 5001) } else { (5001, 1001) };
                assert!(!check(&other, &lean(ACK, seq, ack, 0), dir, NOW).unwrap(), "{other:?}");
            }
        }
    }
}

/// A conversation through the state machine from its SYN: every segment
/// after the handshake that the fast path takes leaves what the full path
/// leaves, and the fast path takes most of them.
#[test]
fn a_conversation_runs_on_the_fast_path() {
    let c = DIR_HI_TO_LO;
    let mut rec = FlowRecord::default();
    let mut now = NOW;
    let put = |rec: &mut FlowRecord, flags: u8, seq: u32, ack: u32, len: u32, dir: u8, now: u64| {
        let seg = lean(flags, seq, ack, len);
        let fast = check(rec, &seg, dir, now).unwrap();
        *rec = full(rec, &seg, dir, now).0;
        fast
    };
    put(&mut rec, SYN, 1000, 0, 0, c, now);
    assert_eq!(rec.state, STATE_SYN_SENT);
    put(&mut rec, SYN | ACK, 5000, 1001, 0, c ^ 1, now);
    put(&mut rec, ACK, 1001, 5001, 0, c, now);
    let (mut cn, mut sn, mut taken) = (1001u32, 5001u32, 0);
    for i in 0..200u32 {
        now += 1_000_000;
        let len = 1 + i * 37 % 1400;
        taken += put(&mut rec, ACK | PSH, cn, sn, len, c, now) as u32;
        cn = cn.wrapping_add(len);
        taken += put(&mut rec, ACK, sn, cn, 0, c ^ 1, now) as u32;
        taken += put(&mut rec, ACK | PSH, sn, cn, 2 * len, c ^ 1, now) as u32;
        sn = sn.wrapping_add(2 * len);
        taken += put(&mut rec, ACK, cn, sn, 0, c, now) as u32;
    }
    assert_eq!(rec.state, STATE_ESTABLISHED);
    assert!(rec.info & INFO_LAST_ACK != 0);
    // The first segments of each side note their first pure ACK: full path.
    assert!(taken >= 790, "only {taken} of 800 segments on the fast path");
    let fin = lean(ACK | FIN, cn, sn, 0);
    assert!(!check(&rec, &fin, c, now).unwrap());
}

/// A side whose sequence numbers are near `base`, acknowledging near
/// `other`: mostly as a real side's are (its window's right edge ahead of
/// what it sent, its acknowledgment behind what the other side sent), and
/// sometimes anywhere around.
fn arb_peer(base: u32, other: u32) -> impl Strategy<Value = Peer> {
    let offset = || prop_oneof![4 => 0..100_000i64, 1 => -100_000..100_000i64];
    (0..2000u32, offset(), offset(), prop_oneof![3 => Just(64240u32), 1 => any::<u32>(), 1 => Just(0u32)], any::<u32>(), 0..16u8, any::<u8>(), prop_oneof![Just(0u8), Just(1), Just(255), any::<u8>()])
        .prop_map(move |(d_end, d_maxend, d_maxack, maxwin, isn, scale, flags, retrans)| {
            let end = base.wrapping_add(d_end);
            let maxend = end.wrapping_add(d_maxend as u32);
            let maxack = other.wrapping_sub(d_maxack as u32);
            // Mostly a side seen and acknowledging, not liberal.
            let flags = if flags < 200 { (flags & !(PEER_LIBERAL | PEER_FIN)) | PEER_SEEN | PEER_MAXACK_SET } else { flags };
            Peer { end, maxend, maxwin, maxack, isn, scale, flags, retrans, _pad: 0 }
        })
}

fn arb_record() -> impl Strategy<Value = FlowRecord> {
    (any::<u32>(), any::<u32>())
        .prop_flat_map(|(a, b)| {
            (
                arb_peer(a, b),
                arb_peer(b, a),
                prop_oneof![6 => Just(STATE_ESTABLISHED), 1 => 0..10u8],
                any::<[u8; 2]>(),
                any::<u8>(),
                any::<[u16; 2]>(),
                any::<[u16; 2]>(),
                any::<u32>(),
                prop_oneof![4 => Just(1u64), 1 => Just(0u64)],
            )
        })
        .prop_map(|(p0, p1, state, side, info, retransmits, seq_wraps, last_end, first_ns)| FlowRecord {
            peer: [p0, p1],
            state,
            side,
            info: if info < 200 { info & !PEER_LIBERAL } else { info },
            retransmits,
            seq_wraps,
            last_end,
            first_ns,
            packets: [7, u32::MAX],
            initiator: info & 1,
            ..FlowRecord::default()
        })
}

/// A segment from `dir` near where the record's sides are in sequence space.
fn arb_segment(rec: &FlowRecord, dir: u8) -> impl Strategy<Value = Lean> {
    let (s, r) = (*rec.peer(dir), *rec.peer(dir ^ 1));
    let flags = prop_oneof![8 => Just(ACK), 8 => Just(ACK | PSH), 1 => any::<u8>()];
    let near = |base: u32| {
        prop_oneof![
            6 => (0..4000u32).prop_map(move |d| base.wrapping_sub(d)),
            3 => (0..140_000u32).prop_map(move |d| base.wrapping_add(d).wrapping_sub(70_000)),
            1 => any::<u32>(),
        ]
    };
    let len = prop_oneof![3 => Just(0u32), 3 => 1..1500u32, 1 => any::<u32>()];
    (flags, near(s.end), near(r.end), len, any::<u16>()).prop_map(|(flags, seq, ack, payload_len, window)| Lean { seq, ack, payload_len, window, flags })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random records and segments: taken means exactly the full path's
    /// record, no counter and no event; not taken means untouched.
    #[test]
    fn taken_means_the_full_paths_result(
        (rec, dir, seg) in (arb_record(), 0..2u8).prop_flat_map(|(rec, dir)| (Just(rec), Just(dir), arb_segment(&rec, dir))),
        now in any::<u64>(),
    ) {
        check(&rec, &seg, dir, now)?;
    }
}

/// The random cases above must exercise the fast path, not only its refusals.
#[test]
fn random_cases_take_the_fast_path_often() {
    TAKEN.with(|n| n.set(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() });
    let strategy = (arb_record(), 0..2u8).prop_flat_map(|(rec, dir)| (Just(rec), Just(dir), arb_segment(&rec, dir)));
    runner.run(&strategy, |(rec, dir, seg)| check(&rec, &seg, dir, NOW).map(|_| ())).unwrap();
    let taken = TAKEN.with(|n| n.get());
    assert!(taken >= 200, "the fast path took only {taken} of 5,000 random segments");
}

// The invalid RST's fast path (`fast::reset`) against the full path's drop
// rule (`table::on_record`, as `table::account` runs it on a record it
// found at XDP, the checksum proven, on a strict interface).

/// A driver with a RST policy that keeps whole events.
struct Judge {
    policy: u8,
    counts: Vec<u32>,
    events: Vec<crate::event::FlowEvent>,
}

impl Driver for Judge {
    fn now(&mut self) -> u64 {
        NOW
    }
    fn rst_policy(&mut self, _ifindex: u32) -> u8 {
        self.policy
    }
    fn liberal(&mut self, _ifindex: u32) -> bool {
        false
    }
    fn count(&mut self, counter: u32) {
        self.counts.push(counter);
    }
    fn event(&mut self, kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.events.push(crate::event::FlowEvent::new(kind, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook));
    }
    fn conn_end(&mut self, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.event(crate::event::EVENT_CONN_END, seg, dir, rec, out, seen);
    }
    fn conn_evicted<K: FlowKey>(&mut self, _key: &K, _rec: &FlowRecord, _seen: &Seen) {
        self.counts.push(u32::MAX);
    }
}

const IFINDEX: u32 = 7;

thread_local! {
    /// RSTs `fast::reset` dropped in this thread's tests.
    static DROPPED: Cell<u64> = const { Cell::new(0) };
}

/// The RST `seg` from `from` (address, port) to `to` through `fast::reset`
/// on a copy of `rec` and through the full path's drop rule on another:
/// dropped by one exactly when by the other, with the same record,
/// counters and event; untouched when not dropped. Whether it was dropped.
fn check_reset(rec: &FlowRecord, seg: &Lean, from: ([u8; 4], u16), to: ([u8; 4], u16), policy: u8) -> Result<bool, TestCaseError> {
    let mut full_seg = Segment { family: FAMILY_IPV4, flags: seg.flags, seq: seg.seq, ack: seg.ack, window: seg.window, payload_len: seg.payload_len, ..Segment::default() };
    full_seg.saddr[..4].copy_from_slice(&from.0);
    full_seg.daddr[..4].copy_from_slice(&to.0);
    (full_seg.sport, full_seg.dport) = (from.1, to.1);
    let dir = crate::flow::direction(&full_seg);
    let key = crate::flow::key_v4(&full_seg, dir);
    let mut full = *rec;
    let seen = Seen { now: NOW, ifindex: IFINDEX, hook: HOOK_XDP, csum: crate::parse::checksum::CSUM_OK, cheap: false, liberal: false };
    let mut cx = Cx { driver: Judge { policy, counts: Vec::new(), events: Vec::new() }, seen };
    let verdict = crate::table::on_record(&mut full, &full_seg, dir, &mut cx);
    let mut fast = *rec;
    match reset(&mut fast, seg, dir, policy) {
        Some(out) => {
            DROPPED.with(|n| n.set(n.get() + 1));
            prop_assert_eq!(verdict, crate::table::Verdict::Drop, "the fast path dropped what the full path lets through: {:?} dir {} on {:?}", seg, dir, rec);
            prop_assert_eq!(fast, full, "record differs");
            prop_assert_eq!(&cx.driver.counts, &vec![crate::counters::RST_DROPPED], "counters differ");
            let event = reset_event(seg, &key, dir, &fast, &out, NOW, IFINDEX);
            prop_assert_eq!(&cx.driver.events, &vec![event], "events differ");
            Ok(true)
        }
        None => {
            prop_assert_eq!(&fast, rec, "not dropped, yet the record changed");
            if reset_flags(seg.flags) && seg.payload_len == 0 {
                prop_assert_ne!(verdict, crate::table::Verdict::Drop, "the full path drops what the fast path left to it: {:?} dir {} on {:?}", seg, dir, rec);
            }
            Ok(false)
        }
    }
}

const CLIENT: ([u8; 4], u16) = ([198, 18, 0, 1], 40000);
const SERVER: ([u8; 4], u16) = ([198, 18, 0, 2], 80);

#[test]
fn invalid_resets_are_dropped_as_the_full_path_drops_them() {
    use crate::guard::{RST_POLICY_INVALID, RST_POLICY_OUT_OF_WINDOW};
    // CLIENT sorts first: it is `lo`, and sends in DIR_LO_TO_HI.
    let rec = established(DIR_LO_TO_HI);
    let to_client = |seq: u32, flags: u8, policy: u8| check_reset(&rec, &lean(flags, seq, 1001, 0), SERVER, CLIENT, policy).unwrap();
    for flags in [RST, RST | ACK] {
        assert!(to_client(5001u32.wrapping_add(0x4000_0000), flags, RST_POLICY_OUT_OF_WINDOW), "out of window");
        assert!(to_client(5001u32.wrapping_add(0x4000_0000), flags, RST_POLICY_INVALID), "out of window");
        assert!(!to_client(5001u32.wrapping_add(0x4000_0000), flags, RST_POLICY_OBSERVE), "observe");
        assert!(to_client(5001 + 100, flags, RST_POLICY_INVALID), "in window, inexact");
        assert!(!to_client(5001 + 100, flags, RST_POLICY_OUT_OF_WINDOW), "in window, inexact");
        assert!(!to_client(5001, flags, RST_POLICY_INVALID), "exact");
    }
    assert!(!to_client(5001u32.wrapping_add(0x4000_0000), RST | PSH, RST_POLICY_INVALID), "RST|PSH: the full path");
    assert!(!check_reset(&rec, &lean(RST, 9, 0, 3), SERVER, CLIENT, RST_POLICY_INVALID).unwrap(), "payload: the full path");
    // RFC 1337: towards the closer in TIME-WAIT.
    let mut tw = rec;
    tw.state = sm::STATE_TIME_WAIT;
    tw.info |= crate::flow::INFO_CLOSER_LO;
    assert!(check_reset(&tw, &lean(RST, 5001 + 100, 0, 0), SERVER, CLIENT, RST_POLICY_INVALID).unwrap(), "TIME-WAIT");
}

/// A RST from `dir`'s side of `rec`, its sequence number where the
/// judgement turns: the receiver's acknowledgment, the sender's end and
/// window edge, the last segment's end, zero, and near and far of those.
fn arb_reset(rec: &FlowRecord, dir: u8) -> impl Strategy<Value = Lean> {
    let (s, r) = (*rec.peer(dir), *rec.peer(dir ^ 1));
    let flags = prop_oneof![4 => Just(RST), 4 => Just(RST | ACK), 1 => any::<u8>()];
    let seq = prop_oneof![
        2 => Just(r.maxack),
        2 => Just(s.end),
        1 => Just(s.maxend),
        1 => Just(rec.last_end),
        1 => Just(0u32),
        4 => (0..140_000u32).prop_map(move |d| r.maxack.wrapping_add(d).wrapping_sub(70_000)),
        2 => any::<u32>(),
    ];
    let ack = prop_oneof![2 => Just(r.end), 1 => Just(0u32), 1 => any::<u32>()];
    let len = prop_oneof![8 => Just(0u32), 1 => 1..100u32];
    (flags, seq, ack, len).prop_map(|(flags, seq, ack, payload_len)| Lean { seq, ack, payload_len, window: 0, flags })
}

/// A record in any state, with the closer bits, `last_end` and flags a
/// real one may have.
fn arb_any_record() -> impl Strategy<Value = FlowRecord> {
    (arb_record(), 0..10u8, any::<u8>(), any::<bool>()).prop_map(|(mut rec, state, info, keep)| {
        if !keep {
            rec.state = state;
            rec.info = info;
        }
        rec
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random records, RSTs and policies: dropped by the fast path exactly
    /// when by the full path, with the same record, counters and event.
    #[test]
    fn dropped_means_the_full_paths_drop(
        (rec, from_client, seg) in (arb_any_record(), any::<bool>()).prop_flat_map(|(rec, c)| {
            // CLIENT is `lo`: from the client is DIR_LO_TO_HI.
            let dir = if c { DIR_LO_TO_HI } else { DIR_HI_TO_LO };
            (Just(rec), Just(c), arb_reset(&rec, dir))
        }),
        policy in 0..4u8,
    ) {
        let (from, to) = if from_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        check_reset(&rec, &seg, from, to, policy)?;
    }
}

/// The random cases above must exercise drops, not only refusals.
#[test]
fn random_resets_are_often_dropped() {
    DROPPED.with(|n| n.set(0));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 5_000, failure_persistence: None, ..ProptestConfig::default() });
    let strategy = (arb_any_record(), any::<bool>(), 1..3u8).prop_flat_map(|(rec, c, policy)| {
        let dir = if c { DIR_LO_TO_HI } else { DIR_HI_TO_LO };
        (Just(rec), Just(c), arb_reset(&rec, dir), Just(policy))
    });
    runner
        .run(&strategy, |(rec, c, seg, policy)| {
            let (from, to) = if c { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
            check_reset(&rec, &seg, from, to, policy).map(|_| ())
        })
        .unwrap();
    let dropped = DROPPED.with(|n| n.get());
    assert!(dropped >= 500, "the fast path dropped only {dropped} of 5,000 random RSTs");
}

/// An Ethernet/IPv4/TCP frame of a bare 20-byte TCP header (`header`, five
/// big-endian words; its data offset forced to 5) from `saddr` to `daddr`.
fn bare_frame(saddr: u32, daddr: u32, header: &[u32; 5]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 40];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..26].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f[26..30].copy_from_slice(&saddr.to_be_bytes());
    f[30..34].copy_from_slice(&daddr.to_be_bytes());
    for (i, w) in header.iter().enumerate() {
        f[34 + 4 * i..38 + 4 * i].copy_from_slice(&w.to_be_bytes());
    }
    f[34 + 12] = 0x50;
    f
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// `reset_checksum_ok` says OK exactly where `tcp_checksum` does, for
    /// random headers whose checksum field is right, a local stack's
    /// partial sum, or anything.
    #[test]
    fn reset_checksum_is_tcp_checksum(saddr in any::<u32>(), daddr in any::<u32>(), mut header in any::<[u32; 5]>(), field in 0..3u8, flip in any::<u16>()) {
        use crate::parse::checksum::{tcp_checksum, CSUM_OK};
        header[3] = (header[3] & 0x00ff_ffff) | 0x5000_0000;
        let f = bare_frame(saddr, daddr, &header);
        let seg = crate::parse::parse(f.as_slice()).unwrap();
        let halves = |w: u32| (w >> 16) as u64 + (w & 0xffff) as u64;
        let pseudo = halves(saddr) + halves(daddr) + 6 + 20;
        header[4] &= 0x0000_ffff;
        let sum = pseudo + header.iter().map(|&w| halves(w)).sum::<u64>();
        let value = match field {
            0 => !crate::parse::checksum::fold(sum),
            1 => crate::parse::checksum::fold(pseudo),
            _ => flip,
        };
        header[4] |= (value as u32) << 16;
        let f = bare_frame(saddr, daddr, &header);
        let seg2 = crate::parse::parse(f.as_slice()).unwrap();
        prop_assert_eq!(seg.payload_len, 0);
        prop_assert_eq!(seg2.l4_len, 20);
        let ok = tcp_checksum(f.as_slice(), &seg2) == CSUM_OK;
        prop_assert_eq!(reset_checksum_ok(saddr, daddr, &header), ok, "field {:04x} mode {}", value, field);
        if field < 2 {
            prop_assert!(ok);
        }
    }
}
