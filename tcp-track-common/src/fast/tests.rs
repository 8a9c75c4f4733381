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
