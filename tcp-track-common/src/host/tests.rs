//! The flow tables' logic (`table`) over the in-memory tables: promotion,
//! eviction by age, the insert race, floods, the LRU, and the drop rule,
//! driven by real frames and a clock of the test's own.

use super::*;
use crate::estab::STASH_MIN;
use crate::{
    event::{DETAIL_DROPPED, EVENT_FLOW_NEW, EVENT_RST, EVENT_STATE, HOOK_TC_EGRESS, HOOK_XDP},
    flow::{direction, key_v4},
    guard::RST_POLICY_INVALID,
    parse::parse,
    state::{step, STATE_ESTABLISHED, STATE_SYN_RECV, STATE_SYN_SENT},
    table::{account, Cx, Verdict},
};
use etherparse::PacketBuilder;

type Endpoint = ([u8; 4], u16);
const CLIENT: Endpoint = ([198, 18, 0, 1], 40000);
const SERVER: Endpoint = ([198, 18, 0, 2], 80);
const IFINDEX: u32 = 7;
const SEED: u32 = 0x5eed_1234;
/// A little more than one unit of the coarse clock the half-open table
/// ages entries by (2^20 ns).
const MS: u64 = 1 << 21;

/// A TCP segment from `from` to `to`; flags as tcpdump writes them (S, A, R, F, P).
fn frame(from: Endpoint, to: Endpoint, flags: &str, seq: u32, ack: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(from.0, to.0, 64).tcp(from.1, to.1, seq, 1024);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(ack),
            'R' => b.rst(),
            'F' => b.fin(),
            'P' => b.psh(),
            _ => panic!("flag {f}"),
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// An ACK with `len` bytes of data.
fn data_frame(from: Endpoint, to: Endpoint, seq: u32, ack: u32, len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(from.0, to.0, 64).tcp(from.1, to.1, seq, 1024).ack(ack);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; len]).unwrap();
    out
}

fn key(f: &[u8]) -> FlowKeyV4 {
    let seg = parse(f).unwrap();
    key_v4(&seg, direction(&seg))
}

/// A client of the server, one per `i`, from 198.19.0.0/16.
fn spoofed(i: u32) -> Endpoint {
    ([198, 19, (i >> 8) as u8, i as u8], 1024 + (i % 50_000) as u16)
}

struct Run {
    t: HostTracker,
    now: u64,
    events: Vec<FlowEvent>,
}

impl Run {
    fn new(max_flows: u32, max_half_open: u32) -> Run {
        Run { t: HostTracker::new(max_flows, max_half_open, SEED), now: 1 << 30, events: Vec::new() }
    }

    /// One frame at XDP, one coarse clock unit after the previous one.
    fn xdp(&mut self, f: &[u8]) -> Observed {
        self.now += MS;
        self.t.segment(f, IFINDEX, HOOK_XDP, self.now, &mut self.events)
    }

    fn get(&self, f: &[u8]) -> Option<(Table, FlowRecord)> {
        self.t.get_v4(&key(f))
    }

    fn count(&self, c: u32) -> u64 {
        self.t.counters()[c as usize]
    }

    /// SYN, SYN-ACK, ACK between `client` and the server, then data.
    fn handshake(&mut self, client: Endpoint) {
        for f in [
            frame(client, SERVER, "S", 1000, 0),
            frame(SERVER, client, "SA", 5000, 1001),
            frame(client, SERVER, "A", 1001, 5001),
            frame(client, SERVER, "AP", 1001, 5001),
        ] {
            assert_eq!(self.xdp(&f), Observed::Tracked);
        }
    }
}

#[test]
fn a_completed_handshake_moves_the_flow_to_the_established_table() {
    let mut r = Run::new(1024, 64);
    let syn = frame(CLIENT, SERVER, "S", 1000, 0);
    r.xdp(&syn);
    assert_eq!(r.get(&syn).map(|(t, rec)| (t, rec.state)), Some((Table::HalfOpen, STATE_SYN_SENT)));
    r.xdp(&frame(SERVER, CLIENT, "SA", 5000, 1001));
    assert_eq!(r.get(&syn).map(|(t, rec)| (t, rec.state)), Some((Table::HalfOpen, STATE_SYN_RECV)));
    assert_eq!(r.t.v4().half_open_len().0, 1);
    r.xdp(&frame(CLIENT, SERVER, "A", 1001, 5001));
    assert_eq!(r.get(&syn).map(|(t, rec)| (t, rec.state)), Some((Table::Established, STATE_ESTABLISHED)));
    assert_eq!(r.t.v4().half_open_len().0, 0, "its half-open way is free again");
    assert_eq!(r.t.v4().established_len(), 1);
    assert_eq!((r.count(counters::FLOWS_CREATED), r.count(counters::FLOWS_PROMOTED)), (1, 1));
    assert_eq!(r.count(counters::TCP_SEGMENTS), 3);
    let kinds: Vec<u16> = r.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EVENT_FLOW_NEW, EVENT_STATE, EVENT_STATE]);
    assert_eq!(r.events.iter().map(|e| e.ifindex).collect::<Vec<_>>(), [IFINDEX; 3]);
    // The record the established table took is the one the state machine
    // made of the three segments.
    // (One millisecond apart, as `Run::xdp` saw them: the record's clock
    // fields must agree too.)
    let mut expected = FlowRecord::default();
    for (i, f) in [syn, frame(SERVER, CLIENT, "SA", 5000, 1001), frame(CLIENT, SERVER, "A", 1001, 5001)].iter().enumerate() {
        let seg = parse(f.as_slice()).unwrap();
        let dir = direction(&seg);
        if i == 0 {
            expected.initiator = crate::flow::initiator_of(&seg, dir).0;
        }
        step(&mut expected, &seg, dir, r.now - (2 - i as u64) * MS, false);
    }
    assert_eq!(r.get(&frame(CLIENT, SERVER, "A", 0, 0)).unwrap().1, expected);
}

#[test]
fn a_reset_handshake_leaves_the_half_open_table_and_is_not_promoted() {
    let mut r = Run::new(1024, 64);
    let syn = frame(CLIENT, SERVER, "S", 1000, 0);
    r.xdp(&syn);
    r.xdp(&frame(SERVER, CLIENT, "RA", 0, 1001));
    assert_eq!(r.get(&syn), None);
    assert_eq!((r.count(counters::FLOWS_PROMOTED), r.count(counters::FLOWS_CLOSED)), (0, 1));
    assert_eq!(r.t.v4().half_open_len().0, 0);
}

#[test]
fn half_open_entries_are_evicted_by_birth_and_retransmissions_do_not_rejuvenate_them() {
    // Four flows: one set, so every flow competes with every other.
    let mut r = Run::new(1024, 4);
    let syn = |i| frame(spoofed(i), SERVER, "S", i, 0);
    let present = |r: &Run, i| r.get(&syn(i)).map(|(t, _)| t) == Some(Table::HalfOpen);
    for i in 1..=4 {
        r.xdp(&syn(i));
    }
    // Flow 1 retransmits its SYN; flow 2 gets a SYN-ACK, retransmitted.
    r.xdp(&syn(1));
    r.xdp(&frame(SERVER, spoofed(2), "SA", 9000, 3));
    r.xdp(&frame(SERVER, spoofed(2), "SA", 9000, 3));
    assert_eq!(r.get(&syn(2)).unwrap().1.peer.iter().map(|p| p.retrans).max(), Some(1));
    assert_eq!(r.get(&syn(1)).unwrap().1.peer.iter().map(|p| p.retrans).max(), Some(1));
    // A fifth flow evicts the oldest by birth, flow 1, as if it had not
    // retransmitted (an LRU would evict flow 3, the least recently used).
    r.xdp(&syn(5));
    assert_eq!((1..=5).map(|i| present(&r, i)).collect::<Vec<_>>(), [false, true, true, true, true]);
    r.xdp(&syn(6));
    assert_eq!((2..=6).map(|i| present(&r, i)).collect::<Vec<_>>(), [false, true, true, true, true], "then flow 2, SYN-ACKs and all");
    assert_eq!(r.count(counters::HALF_OPEN_EVICTED), 2);
    assert_eq!(r.count(counters::FLOWS_CREATED), 6);
}

#[test]
fn a_syn_flood_cannot_evict_an_established_flow() {
    let mut r = Run::new(1024, 64);
    r.handshake(CLIENT);
    let data = frame(CLIENT, SERVER, "AP", 1001, 5001);
    let (table, before) = r.get(&data).unwrap();
    assert_eq!((table, before.state), (Table::Established, STATE_ESTABLISHED));
    // 10,000 SYNs from distinct spoofed sources into a 64-entry half-open table.
    for i in 0..10_000 {
        assert_eq!(r.xdp(&frame(spoofed(i), SERVER, "S", i, 0)), Observed::Tracked);
    }
    assert_eq!(r.get(&data), Some((Table::Established, before)), "the established flow is intact");
    assert_eq!(r.t.v4().half_open_len(), (64, 64), "the flood filled the half-open table, and only it");
    assert_eq!(r.t.v4().established_len(), 1);
    assert_eq!(r.t.v4().lru_evicted(), 0);
    assert_eq!(r.count(counters::HALF_OPEN_EVICTED), 10_000 - 64);
    assert_eq!(r.count(counters::FLOWS_CREATED), 10_001);
}

/// A store where another CPU creates the flow between the lookup and the
/// insert: its `Insert::New` finds `rival` there (or nothing at all, when
/// `rival` is None: out of memory).
struct Racy {
    inner: HostStoreV4,
    rival: Option<FlowRecord>,
    raced: bool,
}

impl FlowStore for Racy {
    type Key = FlowKeyV4;
    type Set = SetV4;

    fn established(&mut self, key: &FlowKeyV4) -> Option<&mut FlowRecord> {
        self.inner.established(key)
    }

    fn insert(&mut self, key: &FlowKeyV4, rec: &FlowRecord, mode: Insert) -> bool {
        if mode == Insert::New && !self.raced {
            self.raced = true;
            if let Some(rival) = self.rival {
                assert!(self.inner.insert(key, &rival, Insert::New));
            }
            return false;
        }
        self.inner.insert(key, rec, mode)
    }

    fn promote(&mut self, key: &FlowKeyV4, index: u32, way: u32) -> bool {
        self.inner.promote(key, index, way)
    }

    fn remove(&mut self, key: &FlowKeyV4) -> bool {
        self.inner.remove(key)
    }

    fn half_open_layout(&self) -> (u32, u32) {
        self.inner.half_open_layout()
    }

    fn half_open_set(&mut self, index: u32) -> Option<&mut SetV4> {
        self.inner.half_open_set(index)
    }
}

/// Account `f` (a segment of a flow picked up mid-stream, which goes
/// straight to the established table) to a racy store.
fn account_racing(rival: Option<FlowRecord>, f: &[u8]) -> (Verdict, Racy, [u64; counters::COUNT as usize], Vec<FlowEvent>) {
    let mut store = Racy { inner: HostStore::new(1024, 64, SEED), rival, raced: false };
    let (mut counters, mut events) = ([0; counters::COUNT as usize], Vec::new());
    let mut scratch = Scratch { seg: parse(f).unwrap(), ..Scratch::default() };
    let mut conns = Vec::new();
    let driver = HostDriver { counters: &mut counters, events: &mut events, conns: &mut conns, now: 1 << 30, rst_policy: RST_POLICY_OBSERVE, liberal: false };
    let mut cx = Cx { driver, seen: Seen::new(1 << 30, IFINDEX, HOOK_XDP) };
    let verdict = account(&mut store, &mut scratch, &mut cx);
    (verdict, store, counters, events)
}

#[test]
fn losing_the_insert_race_steps_the_record_the_other_cpu_made() {
    // The other CPU saw the server's data first and made its record of it.
    let theirs = parse(frame(SERVER, CLIENT, "AP", 5001, 1001).as_slice()).unwrap();
    let mut rival = FlowRecord { initiator: crate::flow::initiator_of(&theirs, direction(&theirs)).0, ..FlowRecord::default() };
    step(&mut rival, &theirs, direction(&theirs), 1 << 29, false);
    assert_eq!((rival.state, rival.packets.iter().sum::<u32>()), (STATE_ESTABLISHED, 1));

    let ours = frame(CLIENT, SERVER, "A", 1001, 5001);
    let (verdict, store, counters, events) = account_racing(Some(rival), &ours);
    assert_eq!(verdict, Verdict::Accounted);
    let (table, rec) = store.inner.get(&key(&ours)).unwrap();
    assert_eq!(table, Table::Established);
    assert_eq!(rec.packets.iter().sum::<u32>(), 2, "our segment was stepped on their record, not dropped and not recorded apart");
    let mut expected = rival;
    let seg = parse(ours.as_slice()).unwrap();
    step(&mut expected, &seg, direction(&seg), 1 << 30, false);
    assert_eq!(rec, expected);
    assert_eq!(counters[counters::FLOWS_CREATED as usize], 0, "the other CPU counts the flow it created");
    assert_eq!(counters[counters::MAP_UPDATE_FAILED as usize], 0);
    assert!(events.iter().all(|e| e.kind != EVENT_FLOW_NEW), "not reported as new a second time: {events:?}");
}

#[test]
fn an_insert_refused_for_want_of_room_leaves_the_segment_untracked() {
    let ours = frame(CLIENT, SERVER, "A", 1001, 5001);
    let (verdict, store, counters, events) = account_racing(None, &ours);
    assert_eq!(verdict, Verdict::Untracked);
    assert_eq!(store.inner.get(&key(&ours)), None);
    assert_eq!(counters[counters::MAP_UPDATE_FAILED as usize], 1);
    assert!(events.is_empty());
}

/// A table of one set (`--max-flows 8`) and the smallest stash: flows 1-8
/// fill the set, the next `STASH_MIN` the stash.
fn full_table() -> Run {
    let mut r = Run::new(8, 64);
    // Flows picked up mid-stream go straight to the established table.
    for i in 1..=8 + STASH_MIN {
        r.xdp(&frame(spoofed(i), SERVER, "A", 1, 1));
    }
    assert_eq!((r.t.v4().established_len(), r.t.v4().lru_evicted()), (8 + STASH_MIN as usize, 0), "a way or a stash entry each, nothing lost");
    r
}

#[test]
fn a_full_stash_evicts_its_least_recently_used_flow_and_counts_it() {
    let mut r = full_table();
    // Flow 9 was the stash's first; used again, it is the most recent.
    r.xdp(&frame(SERVER, spoofed(9), "A", 1, 1));
    let newcomer = frame(spoofed(1000), SERVER, "A", 1, 1);
    r.xdp(&newcomer);
    assert!(r.get(&frame(spoofed(9), SERVER, "A", 1, 1)).is_some() && r.get(&newcomer).is_some());
    assert_eq!(r.get(&frame(spoofed(10), SERVER, "A", 1, 1)), None, "flow 10 was the stash's least recently used");
    assert_eq!(r.t.v4().lru_evicted(), 1);
    assert!((1..=8).all(|i| r.get(&frame(spoofed(i), SERVER, "A", 1, 1)).is_some()), "a flow in a set is never evicted");
    assert_eq!(r.t.v4().established_len(), 8 + STASH_MIN as usize);
}

#[test]
fn reads_do_not_count_as_use_and_removal_forgets_either_table() {
    let mut r = full_table();
    let first_stashed = frame(spoofed(9), SERVER, "A", 1, 1);
    assert!(r.get(&first_stashed).is_some(), "a look (as the daemon's), not a use");
    r.xdp(&frame(spoofed(1000), SERVER, "A", 1, 1));
    assert_eq!(r.get(&first_stashed), None, "it was still unused, and the first the hand reached");

    let syn = frame(CLIENT, SERVER, "S", 1000, 0);
    r.xdp(&syn);
    assert!(r.t.remove_v4(&key(&syn)));
    assert_eq!((r.get(&syn), r.t.v4().half_open_len().0), (None, 0));
    // A flow of the set, and one of the stash.
    for i in [3, 11] {
        let c = frame(spoofed(i), SERVER, "A", 1, 1);
        assert!(r.t.remove_v4(&key(&c)), "flow {i}");
        assert_eq!(r.get(&c), None);
        assert!(!r.t.remove_v4(&key(&c)), "gone already");
    }
    // The freed way takes the next new flow, ahead of the stash.
    let next = frame(spoofed(2000), SERVER, "A", 1, 1);
    r.xdp(&next);
    assert_eq!(r.t.v4().established_len(), 8 + STASH_MIN as usize - 1);
    let again = frame(spoofed(2001), SERVER, "A", 1, 1);
    r.xdp(&again);
    assert_eq!(r.t.v4().lru_evicted(), 1, "only the stash's full state evicts: once above");
}

#[test]
fn the_rst_policy_applies_at_xdp_on_interfaces_that_are_not_liberal() {
    let mut r = Run::new(1024, 64);
    r.t.set_rst_policy(RST_POLICY_INVALID);
    r.handshake(CLIENT);
    let before = r.get(&frame(CLIENT, SERVER, "A", 0, 0)).unwrap().1;
    // Far outside the client's window.
    let forged = frame(SERVER, CLIENT, "R", 5001u32.wrapping_add(0x4000_0000), 0);
    assert_eq!(r.xdp(&forged), Observed::Dropped);
    let after = r.get(&forged).unwrap().1;
    assert_eq!(after.rst_dropped, before.rst_dropped + 1, "the flow's record counts it");
    assert_eq!(FlowRecord { rst_dropped: before.rst_dropped, ..after }, before, "a dropped RST changes nothing else");
    assert_eq!(r.count(counters::RST_DROPPED), 1);
    let last = r.events.last().unwrap();
    assert_eq!((last.kind, last.detail & DETAIL_DROPPED != 0), (EVENT_RST, true));
    // Egress RSTs come from the host's own stack; a liberal interface sees
    // one direction only: neither is judged for dropping.
    assert_eq!(r.t.segment(&forged[..], IFINDEX, HOOK_TC_EGRESS, r.now, &mut r.events), Observed::Tracked);
    r.t.set_liberal(IFINDEX, true);
    assert_eq!(r.xdp(&forged), Observed::Tracked);
    assert_eq!(r.count(counters::RST_DROPPED), 1);
    // A corrupt RST is the stack's business.
    let mut corrupt = frame(SERVER, CLIENT, "R", 5001, 0);
    corrupt[14 + 20 + 16] ^= 0x5a;
    assert_eq!(r.xdp(&corrupt), Observed::BadChecksum);
    assert_eq!(r.count(counters::RST_BAD_CHECKSUM), 1);
}

#[test]
fn frames_that_are_not_tcp_or_malformed_are_counted_and_left_alone() {
    let mut r = Run::new(1024, 64);
    let mut udp = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(CLIENT.0, SERVER.0, 64).udp(1, 2).write(&mut udp, b"x").unwrap();
    assert_eq!(r.xdp(&udp), Observed::NotTcp);
    let mut bad = frame(CLIENT, SERVER, "S", 1, 0);
    bad[14] = 0x44; // IHL 4
    assert!(matches!(r.xdp(&bad), Observed::Malformed(_)));
    assert_eq!((r.count(counters::NOT_TCP), r.count(counters::MALFORMED), r.count(counters::TCP_SEGMENTS)), (1, 1, 0));
    assert!(r.events.is_empty());
}

/// The host driver with a cheap clock of its own, one tick behind: what the
/// kernel's `now_cheap` may give.
struct Ticking<'a> {
    inner: HostDriver<'a>,
    tick: u64,
}

impl Driver for Ticking<'_> {
    fn now(&mut self) -> u64 {
        self.inner.now()
    }
    fn now_cheap(&mut self) -> u64 {
        self.tick
    }
    fn rst_policy(&mut self, ifindex: u32) -> u8 {
        self.inner.rst_policy(ifindex)
    }
    fn liberal(&mut self, ifindex: u32) -> bool {
        self.inner.liberal(ifindex)
    }
    fn count(&mut self, counter: u32) {
        self.inner.count(counter)
    }
    fn event(&mut self, kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.inner.event(kind, seg, dir, rec, out, seen)
    }
    fn conn_end(&mut self, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.inner.conn_end(seg, dir, rec, out, seen)
    }
    fn conn_evicted<K: crate::table::FlowKey>(&mut self, key: &K, rec: &FlowRecord, seen: &Seen) {
        self.inner.conn_evicted(key, rec, seen)
    }
}

#[test]
fn only_segments_that_keep_an_established_flow_alive_take_the_cheap_clock() {
    let mut store = HostStoreV4::new(1024, 64, SEED);
    let (mut counters, mut events, mut conns) = ([0; counters::COUNT as usize], Vec::new(), Vec::new());
    let mut feed = |f: &[u8], now: u64, events: &mut Vec<FlowEvent>| {
        let mut scratch = Scratch { seg: parse(f).unwrap(), ..Scratch::default() };
        let inner = HostDriver { counters: &mut counters, events, conns: &mut conns, now, rst_policy: RST_POLICY_OBSERVE, liberal: false };
        // The cheap clock is 5 ms behind: a stale tick.
        let mut cx = Cx { driver: Ticking { inner, tick: now - 5 * MS }, seen: Seen::new(0, IFINDEX, HOOK_XDP) };
        assert_eq!(account(&mut store, &mut scratch, &mut cx), Verdict::Accounted);
        store.get(&key(f)).unwrap().1
    };
    let t0: u64 = 1 << 32;
    // The handshake: precise (its timing is measured).
    feed(&frame(CLIENT, SERVER, "S", 1000, 0), t0, &mut events);
    feed(&frame(SERVER, CLIENT, "SA", 5000, 1001), t0 + MS, &mut events);
    let rec = feed(&frame(CLIENT, SERVER, "A", 1001, 5001), t0 + 2 * MS, &mut events);
    assert_eq!((rec.state, rec.last_seen), (STATE_ESTABLISHED, crate::flow::coarse_time(t0 + 2 * MS)));
    // An ACK of an established flow: the cheap clock.
    let now = t0 + 100 * MS;
    let rec = feed(&frame(SERVER, CLIENT, "A", 5001, 1001), now, &mut events);
    assert_eq!(rec.last_seen, crate::flow::coarse_time(now - 5 * MS), "the cheap clock kept it alive");
    // Data, then the same data again: the retransmission's event carries
    // the precise time, though the segment took the cheap clock.
    feed(&data_frame(SERVER, CLIENT, 5001, 1001, 100), t0 + 110 * MS, &mut events);
    let now = t0 + 120 * MS;
    feed(&data_frame(SERVER, CLIENT, 5001, 1001, 100), now, &mut events);
    let retransmit = events.last().unwrap();
    assert_eq!((retransmit.kind, retransmit.ts_ns), (crate::event::EVENT_DATA_RETRANS, now));
    // A FIN may change the state: the precise clock.
    let now = t0 + 200 * MS;
    let rec = feed(&frame(CLIENT, SERVER, "FA", 1001, 5001), now, &mut events);
    assert_eq!(rec.last_seen, crate::flow::coarse_time(now));
    let fin = events.last().unwrap();
    assert_eq!((fin.kind, fin.ts_ns), (crate::event::EVENT_FIN, now));
    // The server's ACK of that FIN: no longer ESTABLISHED, precise again.
    let now = t0 + 300 * MS;
    let rec = feed(&frame(SERVER, CLIENT, "A", 5001, 1002), now, &mut events);
    assert_eq!(rec.last_seen, crate::flow::coarse_time(now));
}

/// Connection records: one per flow created, whichever way it ends. A SYN
/// reusing a 4-tuple in TIME_WAIT, or after a reset, starts a new flow on
/// the same entry, counted as created and ended on its own; a RST in
/// TIME_WAIT ends nothing new; a half-open entry evicted gets its record
/// with its own key.
#[test]
fn every_flow_created_ends_in_exactly_one_connection_record() {
    use crate::event::{CONN_END_EVICTED, CONN_END_FIN, CONN_END_RESET};
    let mut r = Run::new(1024, 4);
    let close = [
        frame(CLIENT, SERVER, "S", 100, 0),
        frame(SERVER, CLIENT, "SA", 500, 101),
        frame(CLIENT, SERVER, "A", 101, 501),
        frame(CLIENT, SERVER, "FA", 101, 501),
        frame(SERVER, CLIENT, "FA", 501, 102),
        frame(CLIENT, SERVER, "A", 102, 502),
    ];
    for f in &close {
        r.xdp(f);
    }
    // The closer's TIME_WAIT assassinated: no second record.
    r.xdp(&frame(SERVER, CLIENT, "R", 502, 0));
    // The 4-tuple reused after the reset: a new flow, refused.
    r.xdp(&frame(CLIENT, SERVER, "S", 9000, 0));
    r.xdp(&frame(SERVER, CLIENT, "RA", 0, 9001));
    // Four SYNs into the one-set half-open table, then a fifth: one eviction.
    for i in 0..5 {
        r.xdp(&frame(spoofed(i), SERVER, "S", i, 0));
    }
    let ends = r.t.take_conn_ends();
    let kinds: Vec<u8> = ends.iter().map(|c| c.event.end).collect();
    assert_eq!(kinds, [CONN_END_FIN, CONN_END_RESET, CONN_END_EVICTED]);
    assert_eq!(r.count(counters::FLOWS_CREATED), 7, "the first, its reuse, five SYNs");
    let open = 4;
    assert_eq!(ends.len() as u64 + open, r.count(counters::FLOWS_CREATED), "every flow ended once, or is still open");
    assert_eq!(ends[0].rec.packets, [4, 2], "the record as the last ACK left it");
    assert_eq!((ends[2].event.lo_port.max(ends[2].event.hi_port), ends[2].rec.peer(ends[2].rec.initiator).isn), (1024, 0), "spoofed(0), the oldest");
    let heads: Vec<u16> = r.events.iter().filter(|e| e.kind == crate::event::EVENT_CONN_END).map(|e| e.kind).collect();
    assert_eq!(heads.len(), 3, "each also among the events, in order");
}

// ---- control segments prove their checksum at XDP (issue 17 item 4) ----

/// `f` with one bit of its TCP header's window field flipped: the checksum
/// no longer matches.
fn corrupt(mut f: Vec<u8>) -> Vec<u8> {
    f[14 + 20 + 14] ^= 0x10;
    f
}

#[test]
fn corrupt_syns_start_nothing_and_flood_nothing() {
    let mut r = Run::new(1024, 64);
    for i in 0..1000 {
        assert_eq!(r.xdp(&corrupt(frame(spoofed(i), SERVER, "S", i, 0))), Observed::BadChecksum, "SYN {i}");
    }
    assert_eq!(r.count(counters::BAD_CHECKSUM), 1000);
    assert_eq!((r.count(counters::FLOWS_CREATED), r.count(counters::HALF_OPEN_EVICTED)), (0, 0));
    assert_eq!(r.t.v4().half_open_len().0, 0, "no half-open entry");
    assert!(r.events.is_empty(), "no event, so nothing for the flood detector: {:?}", r.events);
    // The same SYN intact starts a flow.
    assert_eq!(r.xdp(&frame(spoofed(1), SERVER, "S", 1, 0)), Observed::Tracked);
    assert_eq!(r.count(counters::FLOWS_CREATED), 1);
    assert_eq!(r.count(counters::RST_BAD_CHECKSUM), 0, "counted apart from corrupt RSTs");
}

#[test]
fn corrupt_synacks_and_fins_change_nothing_at_xdp() {
    let mut r = Run::new(1024, 64);
    let syn = frame(CLIENT, SERVER, "S", 1000, 0);
    assert_eq!(r.t.segment(&syn[..], IFINDEX, HOOK_TC_EGRESS, r.now, &mut r.events), Observed::Tracked);
    let before = r.get(&syn).unwrap();
    assert_eq!(r.xdp(&corrupt(frame(SERVER, CLIENT, "SA", 5000, 1001))), Observed::BadChecksum);
    assert_eq!(r.get(&syn), Some(before), "a corrupt SYN-ACK moves no handshake");
    assert_eq!(r.xdp(&frame(SERVER, CLIENT, "SA", 5000, 1001)), Observed::Tracked);
    r.t.segment(&frame(CLIENT, SERVER, "A", 1001, 5001)[..], IFINDEX, HOOK_TC_EGRESS, r.now, &mut r.events);
    let est = r.get(&syn).unwrap();
    assert_eq!(est.1.state, STATE_ESTABLISHED);
    assert_eq!(r.xdp(&corrupt(frame(SERVER, CLIENT, "FA", 5001, 1001))), Observed::BadChecksum);
    assert_eq!(r.get(&syn), Some(est), "a corrupt FIN closes nothing");
    assert_eq!(r.count(counters::BAD_CHECKSUM), 2);
    // Plain ACKs are not verified (their cost is the hot path's), nor is
    // anything at egress (the host's own stack sent it).
    assert_eq!(r.xdp(&corrupt(frame(SERVER, CLIENT, "A", 5001, 1001))), Observed::Tracked);
    let fin = corrupt(frame(CLIENT, SERVER, "FA", 1001, 5001));
    assert_eq!(r.t.segment(&fin[..], IFINDEX, HOOK_TC_EGRESS, r.now, &mut r.events), Observed::Tracked);
    assert_eq!(r.count(counters::BAD_CHECKSUM), 2);
}

// ---- liberal interfaces (issue 17 item 5) ----

#[test]
fn liberal_interface_infers_the_synack_of_one_legged_traffic() {
    // Only the client's half crosses this interface (one-legged routing):
    // SYN, ACK, data, FIN, all arriving at XDP.
    let client_half = [
        frame(CLIENT, SERVER, "S", 1000, 0),
        frame(CLIENT, SERVER, "A", 1001, 5001),
        frame(CLIENT, SERVER, "PA", 1001, 5001),
        frame(CLIENT, SERVER, "FA", 1001, 5001),
    ];
    let mut strict = Run::new(1024, 64);
    let mut liberal = Run::new(1024, 64);
    liberal.t.set_liberal(IFINDEX, true);
    for f in &client_half {
        assert_eq!(strict.xdp(f), Observed::Tracked);
        assert_eq!(liberal.xdp(f), Observed::Tracked);
    }
    let (table, rec) = liberal.get(&client_half[0]).unwrap();
    assert_eq!((table, rec.state), (Table::Established, crate::state::STATE_FIN_WAIT), "promoted once established");
    assert_ne!(rec.info & crate::flow::INFO_SYNACK_INFERRED, 0);
    let est = liberal.events.iter().find(|e| e.new_state == STATE_ESTABLISHED).expect("an established event");
    assert_eq!((est.kind, est.old_state), (EVENT_STATE, STATE_SYN_SENT));
    assert_ne!(est.detail & crate::event::DETAIL_SYNACK_INFERRED, 0, "the event says the SYN-ACK was inferred");
    assert_eq!(crate::conn::conn_state_name(crate::conn::conn_state(&rec)), "SH");
    // Strict: still a half-open attempt, S0.
    let (table, rec) = strict.get(&client_half[0]).unwrap();
    assert_eq!((table, rec.state), (Table::HalfOpen, STATE_SYN_SENT));
    assert_eq!(crate::conn::conn_state_name(crate::conn::conn_state(&rec)), "S0");
    assert_eq!(strict.count(counters::OUT_OF_WINDOW), 0, "rejected in SYN_SENT, not for the window");
}

#[test]
fn out_of_window_segments_are_counted_on_strict_interfaces_only() {
    for liberal in [false, true] {
        let mut r = Run::new(1024, 64);
        r.t.set_liberal(IFINDEX, liberal);
        r.handshake(CLIENT);
        // 300 MB of the client's data never reached this capture point.
        let gap = 1001u32 + (300 << 20);
        for f in [frame(CLIENT, SERVER, "FA", gap, 5001), frame(SERVER, CLIENT, "FA", 5001, gap + 1), frame(CLIENT, SERVER, "A", gap + 1, 5002)] {
            r.xdp(&f);
        }
        let rec = r.get(&frame(CLIENT, SERVER, "A", 0, 0)).unwrap().1;
        let want = if liberal { (crate::state::STATE_TIME_WAIT, 0) } else { (STATE_ESTABLISHED, 3) };
        assert_eq!((rec.state, r.count(counters::OUT_OF_WINDOW)), want, "liberal={liberal}");
    }
}
