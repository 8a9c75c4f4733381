//! The reporter with a fake clock and a fake flow table.

use std::{
    collections::HashMap as Map,
    time::{Duration, SystemTime},
};

use tcp_track_common::{
    event::{EVENT_DATA_RETRANS, EVENT_FIN, EVENT_FLOW_NEW, EVENT_HANDSHAKE_RETRANS, EVENT_REUSE, EVENT_RST, EVENT_STATE},
    flow::{coarse_time, FlowRecord, DIR_HI_TO_LO, DIR_LO_TO_HI, INFO_CLOSER_LO},
    state::{
        RESET_EXACT, RESET_IN_WINDOW, RESET_STATELESS_PEER, STATE_CLOSE, STATE_CLOSE_WAIT, STATE_ESTABLISHED, STATE_FIN_WAIT,
        STATE_LAST_ACK, STATE_SYN_RECV, STATE_SYN_SENT, STATE_TIME_WAIT,
    },
    tcp::{ACK, FIN, RST, SYN},
};

use super::*;
use crate::{
    config::{EventSet, EventSets},
    events::FieldValue,
};
use crate::{
    clock::WallClock,
    events::Decoder,
    output::{
        tests::{assert_like_reference, writers},
        Writer,
    },
};

/// A flow table a test fills.
#[derive(Default)]
pub(crate) struct FakeTable {
    records: Map<FlowId, FlowRecord>,
    removed: Vec<FlowId>,
}

impl FakeTable {
    /// Put `rec` in the table as flow `id`'s record.
    pub(crate) fn insert(&mut self, id: FlowId, rec: FlowRecord) {
        self.records.insert(id, rec);
    }
}

impl FlowLookup for FakeTable {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord> {
        self.records.get(id).copied()
    }
    fn remove(&mut self, id: &FlowId) {
        self.records.remove(id);
        self.removed.push(*id);
    }
    fn open_flows(&self) -> Vec<(FlowId, FlowRecord)> {
        let mut all: Vec<_> = self.records.iter().map(|(id, r)| (*id, *r)).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

const S: u64 = 1_000_000_000;
const T0: u64 = 1000 * S;

fn cfg() -> ReportConfig {
    ReportConfig {
        half_open_timeout: Duration::from_secs(3),
        time_wait_timeout: Duration::from_secs(2),
        close_wait_timeout: Duration::from_secs(5),
        syn_flood_threshold: 10,
        time_wait_pressure: 3,
        events: EventSet::Notable.into(),
        idle_timeout: Duration::from_secs(3600),
        conn_interval: None,
        per_flow_rate: 10,
        max_half_open_tracked: 1000,
        max_tracked: 10_000,
    }
}

struct Rig {
    r: Reporter<FakeTable>,
    dec: Decoder,
    /// Every event the tests see is also printed and checked against the
    /// reference output.
    writers: (Writer, Writer),
}

impl Rig {
    fn new(cfg: ReportConfig) -> Rig {
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH, 0);
        Rig {
            r: Reporter::new(cfg, FakeTable::default(), clock),
            dec: Decoder::new(clock, Map::from([(3, "veth0".into())])),
            writers: writers(),
        }
    }

    fn feed(&mut self, raw: FlowEvent) -> Vec<Event> {
        let evs: Vec<Event> = self.r.on_event(&raw, &self.dec).unwrap().collect();
        self.check(evs)
    }

    fn on_time(&mut self, now: u64) -> Vec<Event> {
        let evs = self.r.on_time(now);
        self.check(evs)
    }

    fn check(&mut self, evs: Vec<Event>) -> Vec<Event> {
        for ev in &evs {
            assert_like_reference(&mut self.writers, ev);
        }
        evs
    }

    fn set_record(&mut self, raw: &FlowEvent, state: u8, f: impl FnOnce(&mut FlowRecord)) {
        let mut rec = FlowRecord { state, initiator: raw.initiator, ..FlowRecord::default() };
        f(&mut rec);
        self.r.lookup_mut().records.insert(FlowId::of(raw), rec);
    }
}

/// A kernel event on the flow client 198.18.0.1:port → server 198.18.0.2:80.
/// The server (198.18.0.2... sorts after .1) is `hi`; the client `lo`.
pub(crate) fn raw(kind: u16, port: u16, ts: u64, from_client: bool, flags: u8, old: u8, new: u8) -> FlowEvent {
    let mut e = FlowEvent {
        ts_ns: ts,
        ifindex: 3,
        kind,
        family: 4,
        dir: if from_client { DIR_LO_TO_HI } else { DIR_HI_TO_LO },
        tcp_flags: flags,
        initiator: DIR_LO_TO_HI,
        origin: ORIGIN_SYN,
        old_state: old,
        new_state: new,
        lo_port: port,
        hi_port: 80,
        ..FlowEvent::default()
    };
    e.lo_addr[..4].copy_from_slice(&[198, 18, 0, 1]);
    e.hi_addr[..4].copy_from_slice(&[198, 18, 0, 2]);
    e
}

fn names(evs: &[Event]) -> Vec<&'static str> {
    evs.iter().map(|e| e.event.as_str()).collect()
}

/// Found by the `decode` fuzz target: a record from a corrupt kernel side
/// with a timestamp near the end of time; its deadlines saturate instead
/// of overflowing.
#[test]
fn a_timestamp_at_the_end_of_time_does_not_overflow_deadlines() {
    let mut g = Rig::new(cfg());
    let end = u64::MAX - 1;
    g.feed(raw(EVENT_FLOW_NEW, 40000, end, true, SYN, 0, STATE_SYN_SENT));
    g.feed(raw(EVENT_STATE, 40000, end, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    g.feed(raw(EVENT_FIN, 40001, end, true, FIN | ACK, STATE_ESTABLISHED, STATE_TIME_WAIT));
    g.on_time(u64::MAX);
}

#[test]
fn unanswered_syn_is_reported_then_expires() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40000, T0, true, SYN, 0, STATE_SYN_SENT);
    assert!(g.feed(syn).is_empty(), "a new flow is not notable by itself");
    g.set_record(&syn, STATE_SYN_SENT, |r| {
        r.peer[0].retrans = 2;
        r.last_seen = coarse_time(T0 + 3 * S);
    });
    assert!(g.on_time(T0 + 2 * S).is_empty(), "not yet");
    let evs = g.on_time(T0 + 3 * S);
    assert_eq!(names(&evs), ["half_open"]);
    assert_eq!(evs[0].field("kind").unwrap(), "syn_sent");
    assert_eq!(evs[0].field("syn_retransmits").unwrap(), 2);
    assert_eq!(evs[0].client.unwrap().to_string(), "198.18.0.1:40000");
    // Quiet for a whole timeout after that: the story ends.
    let evs = g.on_time(T0 + 7 * S);
    assert_eq!(names(&evs), ["half_open_ended"]);
    assert_eq!(evs[0].field("outcome").unwrap(), "expired");
    assert_eq!(g.r.lookup_mut().removed, [FlowId::of(&syn)]);
    assert_eq!(g.r.tracked_flows(), 0);
}

#[test]
fn stuck_syn_recv_reports_synack_retransmissions_and_a_late_handshake() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40001, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    g.feed(raw(EVENT_STATE, 40001, T0 + 1000, false, SYN | ACK, STATE_SYN_SENT, STATE_SYN_RECV));
    for i in 1..=2u8 {
        let mut rt = raw(EVENT_HANDSHAKE_RETRANS, 40001, T0 + i as u64 * S, false, SYN | ACK, STATE_SYN_RECV, STATE_SYN_RECV);
        rt.retrans = i;
        assert!(g.feed(rt).is_empty());
    }
    g.set_record(&syn, STATE_SYN_RECV, |r| r.peer[1].retrans = 2);
    let evs = g.on_time(T0 + 3 * S);
    assert_eq!(names(&evs), ["half_open"]);
    assert_eq!(evs[0].field("kind").unwrap(), "syn_recv");
    assert_eq!(evs[0].field("synack_retransmits").unwrap(), 2);
    let FieldValue::Times(times) = evs[0].field("retransmit_times").unwrap() else { panic!("a list of times") };
    assert_eq!(times.len(), 2);
    let evs = g.feed(raw(EVENT_STATE, 40001, T0 + 4 * S, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    assert_eq!(names(&evs), ["half_open_ended"]);
    assert_eq!(evs[0].field("outcome").unwrap(), "established");
}

#[test]
fn completed_handshake_is_never_half_open() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40002, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    g.feed(raw(EVENT_STATE, 40002, T0 + 1, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    g.set_record(&syn, STATE_ESTABLISHED, |_| {});
    assert!(g.on_time(T0 + 10 * S).is_empty());
}

#[test]
fn time_wait_entry_and_expiry() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40003, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    g.feed(raw(EVENT_STATE, 40003, T0 + 1, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    let mut tw = raw(EVENT_STATE, 40003, T0 + S, true, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
    tw.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
    let evs = g.feed(tw);
    assert_eq!(names(&evs), ["time_wait"]);
    assert_eq!(evs[0].field("closer").unwrap(), "client");
    g.set_record(&syn, STATE_TIME_WAIT, |r| r.info = INFO_CLOSER_LO);
    let evs = g.on_time(T0 + 3 * S);
    assert_eq!(names(&evs), ["time_wait_expired"]);
    assert_eq!(g.r.lookup_mut().removed.len(), 1, "the kernel record goes with it");
}

#[test]
fn reused_time_wait_does_not_expire() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40004, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    let mut tw = raw(EVENT_STATE, 40004, T0 + S, false, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
    tw.detail = tcp_track_common::event::DETAIL_CLOSER_HI;
    assert_eq!(g.feed(tw)[0].field("closer").unwrap(), "server");
    let mut reuse = raw(EVENT_REUSE, 40004, T0 + S + 10, true, SYN, STATE_TIME_WAIT, STATE_SYN_SENT);
    reuse.detail = tcp_track_common::event::DETAIL_ISN_ADVANCED;
    let evs = g.feed(reuse);
    assert_eq!(names(&evs), ["time_wait_reuse"]);
    assert_eq!(evs[0].field("isn_advanced").unwrap(), true);
    g.set_record(&syn, STATE_SYN_SENT, |_| {});
    assert!(!names(&g.on_time(T0 + 3 * S + 20)).contains(&"time_wait_expired"));
}

#[test]
fn a_syn_flood_is_one_event_and_one_end() {
    let mut g = Rig::new(cfg());
    let mut all = Vec::new();
    for i in 0..500u16 {
        let syn = raw(EVENT_FLOW_NEW, 10000 + i, T0 + i as u64 * 1_000_000, true, SYN, 0, STATE_SYN_SENT);
        all.extend(g.feed(syn));
        g.set_record(&syn, STATE_SYN_RECV, |r| r.last_seen = coarse_time(T0));
    }
    assert_eq!(names(&all), ["syn_flood"]);
    assert_eq!(all[0].client, None);
    assert_eq!(all[0].server.to_string(), "198.18.0.2:80");
    assert_eq!(all[0].field("half_open").unwrap(), 11);
    // Every half-open entry times out; the flood ends once, and none of the
    // 500 prints a line of its own.
    let mut later = Vec::new();
    for t in 1..=20 {
        later.extend(g.on_time(T0 + t * S));
    }
    assert_eq!(names(&later), ["syn_flood_ended"]);
    assert_eq!(later[0].field("peak_half_open").unwrap(), 500);
}

#[test]
fn a_long_flood_keeps_the_daemon_memory_bounded() {
    let mut g = Rig::new(ReportConfig { max_half_open_tracked: 100, ..cfg() });
    let mut all = Vec::new();
    // 50,000 spoofed SYNs over 5 s (ports wrap: several incarnations of a
    // 4-tuple, as a real flood produces).
    for i in 0..50_000u64 {
        all.extend(g.feed(raw(EVENT_FLOW_NEW, 1024 + (i % 60_000) as u16, T0 + i * 100_000, true, SYN, 0, STATE_SYN_SENT)));
        assert!(g.r.tracked_flows() <= 100, "at most the kernel's half-open capacity is remembered");
        assert!(g.r.pending_deadlines() <= 4 * 101 + 4096 + 1, "stale deadlines are swept");
    }
    assert_eq!(names(&all), ["syn_flood"], "one line for the whole flood");
    assert_eq!(g.r.vanished, 50_000 - 100, "the forgotten ones are counted as evicted");
    let mut later = Vec::new();
    for t in 1..=20 {
        later.extend(g.r.on_time(T0 + 5 * S + t * S));
    }
    assert_eq!(names(&later), ["syn_flood_ended"]);
    assert_eq!(g.r.tracked_flows(), 0);
    assert!(g.r.floods.is_empty(), "nothing is kept of a server once its flood is over");
}

#[test]
fn every_tracked_flow_stays_in_the_audit_round_robin() {
    // Flows shed in a flood leave stale entries behind, which are swept out
    // now and then: the sweep must never take a flow still tracked.
    let mut g = Rig::new(ReportConfig { max_half_open_tracked: 10, ..cfg() });
    for i in 0..3000u64 {
        g.feed(raw(EVENT_FLOW_NEW, 1024 + i as u16, T0 + i * 1000, true, SYN, 0, STATE_SYN_SENT));
        for (r, ..) in g.r.flows.iter() {
            assert!(g.r.audit.order.contains(&r), "flow {i} left out of the audit");
        }
    }
}

/// Connections ending faster than TIME_WAIT expires, in a table that
/// holds 5 flows (each new one evicts the oldest): the reporter follows no
/// more than the tables hold. Those evicted are forgotten as they are found
/// gone, before their deadline (counted as vanished, no `time_wait_expired`);
/// those the table still holds expire as usual.
#[test]
fn flows_the_tables_no_longer_hold_are_not_followed_past_their_capacity() {
    let mut g = Rig::new(ReportConfig { max_tracked: 5, time_wait_pressure: 1000, ..cfg() });
    let mut ids = Vec::new();
    for i in 0..20u16 {
        let at = T0 + u64::from(i) * 1000;
        let syn = raw(EVENT_FLOW_NEW, 43000 + i, at, true, SYN, 0, STATE_SYN_SENT);
        if let Some(oldest) = i.checked_sub(5).map(|o| ids[usize::from(o)]) {
            g.r.lookup_mut().records.remove(&oldest);
        }
        g.set_record(&syn, STATE_TIME_WAIT, |r| r.info = INFO_CLOSER_LO);
        ids.push(FlowId::of(&syn));
        assert!(g.feed(syn).is_empty());
        let mut tw = raw(EVENT_FIN, 43000 + i, at + 1, true, FIN | ACK, STATE_ESTABLISHED, STATE_TIME_WAIT);
        tw.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
        assert_eq!(names(&g.feed(tw)), ["time_wait"]);
        assert!(g.r.tracked_flows() <= 5, "{} flows followed after {i}", g.r.tracked_flows());
    }
    assert_eq!((g.r.vanished, g.r.tracked_flows()), (15, 5));
    let evs = g.on_time(T0 + 3 * S);
    assert_eq!(names(&evs), ["time_wait_expired"; 5], "only those the table held");
    assert_eq!(g.r.tracked_flows(), 0);
}

#[test]
fn a_refused_connection_is_forgotten_and_not_counted_as_evicted() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 41000, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    let mut rst = raw(EVENT_RST, 41000, T0 + 1000, false, RST | ACK, STATE_SYN_SENT, STATE_CLOSE);
    rst.reset = tcp_track_common::state::RESET_REFUSED;
    assert_eq!(names(&g.feed(rst)), ["reset"]);
    // The kernel cleared the half-open slot when the attempt was reset.
    let mut later = Vec::new();
    for t in 1..=10 {
        later.extend(g.r.on_time(T0 + t * S));
    }
    assert!(later.is_empty(), "{later:?}");
    assert_eq!(g.r.vanished, 0, "a reset is a close, not an eviction");
    assert_eq!(g.r.tracked_flows(), 0, "forgotten after a timeout");
}

#[test]
fn the_audit_finds_open_connections_evicted_without_a_close() {
    let mut g = Rig::new(cfg());
    let mut ids = Vec::new();
    for port in [42000u16, 42001, 42002] {
        let syn = raw(EVENT_FLOW_NEW, port, T0, true, SYN, 0, STATE_SYN_SENT);
        g.feed(syn);
        g.feed(raw(EVENT_STATE, port, T0 + 1000, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
        g.set_record(&syn, STATE_ESTABLISHED, |_| {});
        ids.push(FlowId::of(&syn));
    }
    // Deadlines still pending (the handshake's): the audit leaves them to those.
    g.r.lookup_mut().records.remove(&ids[0]);
    assert!(g.r.audit(T0 + 2000, 10).is_empty());
    assert_eq!(g.r.vanished, 0);
    for t in 1..=4 {
        g.r.on_time(T0 + t * S);
    }
    // Now open connections wait for nothing: the one the kernel lost is found.
    assert!(g.r.audit(T0 + 5 * S, 10).is_empty());
    assert_eq!((g.r.vanished, g.r.tracked_flows()), (1, 2));
    // Round robin: repeated audits do not count it again, and keep the others.
    g.r.audit(T0 + 6 * S, 10);
    assert_eq!((g.r.vanished, g.r.tracked_flows()), (1, 2));
    g.r.lookup_mut().records.remove(&ids[2]);
    g.r.audit(T0 + 7 * S, 1);
    g.r.audit(T0 + 7 * S, 1);
    assert_eq!((g.r.vanished, g.r.tracked_flows()), (2, 1), "a budget of one checks one flow per call");
}

#[test]
fn time_wait_pressure_is_reported_once() {
    let mut g = Rig::new(cfg());
    let mut all = Vec::new();
    for i in 0..6u16 {
        g.feed(raw(EVENT_FLOW_NEW, 20000 + i, T0, true, SYN, 0, STATE_SYN_SENT));
        g.feed(raw(EVENT_STATE, 20000 + i, T0 + 1, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
        let mut tw = raw(EVENT_STATE, 20000 + i, T0 + 2, true, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
        tw.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
        all.extend(g.feed(tw));
    }
    let pressure: Vec<&Event> = all.iter().filter(|e| e.event == EventKind::TimeWaitPressure).collect();
    assert_eq!(pressure.len(), 1);
    assert_eq!(pressure[0].client.unwrap().to_string(), "198.18.0.1");
    assert_eq!(pressure[0].field("time_wait").unwrap(), 3);
}

#[test]
fn close_wait_that_lingers() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40005, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    g.feed(raw(EVENT_STATE, 40005, T0 + 1, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    g.feed(raw(EVENT_FIN, 40005, T0 + S, true, FIN | ACK, STATE_ESTABLISHED, STATE_FIN_WAIT));
    g.set_record(&syn, STATE_CLOSE_WAIT, |r| r.info = INFO_CLOSER_LO);
    let evs = g.on_time(T0 + 6 * S);
    assert_eq!(names(&evs), ["close_wait"]);
    assert_eq!(evs[0].field("waiting").unwrap(), "server");
}

#[test]
fn stateless_peer_reset_proves_a_half_open_connection() {
    let mut g = Rig::new(cfg());
    g.feed(raw(EVENT_FLOW_NEW, 40006, T0, true, SYN, 0, STATE_SYN_SENT));
    let mut rst = raw(EVENT_RST, 40006, T0 + S, true, RST, STATE_ESTABLISHED, STATE_CLOSE);
    rst.reset = RESET_STATELESS_PEER;
    let evs = g.feed(rst);
    assert_eq!(names(&evs), ["reset", "half_open"]);
    assert_eq!(evs[0].field("reason").unwrap(), "stateless_peer");
    assert_eq!(evs[1].field("kind").unwrap(), "peer_lost");
    assert_eq!(evs[1].field("lost").unwrap(), "client");
}

#[test]
fn unacknowledged_retransmissions_mean_a_lost_peer() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40007, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    g.feed(raw(EVENT_STATE, 40007, T0 + 1, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
    let mut rt = raw(EVENT_DATA_RETRANS, 40007, T0 + S, false, ACK, STATE_ESTABLISHED, STATE_ESTABLISHED);
    rt.retrans = 1;
    assert!(g.feed(rt).is_empty());
    g.set_record(&syn, STATE_ESTABLISHED, |r| {
        r.peer[1].retrans = 4;
        r.last_seen = coarse_time(T0 + 4 * S);
    });
    let evs = g.on_time(T0 + 4 * S);
    assert_eq!(names(&evs), ["half_open"]);
    assert_eq!(evs[0].field("lost").unwrap(), "client");
    assert_eq!(evs[0].field("retransmits").unwrap(), 4);
}

#[test]
fn a_misbehaving_flow_is_rate_limited() {
    let mut g = Rig::new(cfg());
    g.feed(raw(EVENT_FLOW_NEW, 40008, T0, true, SYN, 0, STATE_SYN_SENT));
    let mut printed = 0;
    for i in 0..1000u64 {
        let mut rst = raw(EVENT_RST, 40008, T0 + S + i * 1000, false, RST, STATE_ESTABLISHED, STATE_ESTABLISHED);
        rst.reset = RESET_IN_WINDOW;
        printed += g.feed(rst).len();
    }
    assert_eq!(printed, 20, "a burst of twice the per-second rate, then silence");
    assert_eq!(g.r.suppressed, 980);
    let mut rst = raw(EVENT_RST, 40008, T0 + 3 * S, false, RST | ACK, STATE_ESTABLISHED, STATE_CLOSE);
    rst.reset = RESET_EXACT;
    let evs = g.feed(rst);
    assert_eq!(evs[0].field("suppressed_before").unwrap(), 980, "the next line says how many were not printed");
}

#[test]
fn all_events_mode_prints_transitions_too() {
    let mut g = Rig::new(ReportConfig { events: EventSet::All.into(), ..cfg() });
    let evs = g.feed(raw(EVENT_FLOW_NEW, 40009, T0, true, SYN, 0, STATE_SYN_SENT));
    assert_eq!(names(&evs), ["flow_new"]);
}

#[test]
fn deadlines_of_an_older_incarnation_are_stale() {
    let mut g = Rig::new(cfg());
    let syn = raw(EVENT_FLOW_NEW, 40010, T0, true, SYN, 0, STATE_SYN_SENT);
    g.feed(syn);
    let mut tw = raw(EVENT_STATE, 40010, T0 + S, false, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
    tw.detail = tcp_track_common::event::DETAIL_CLOSER_HI;
    g.feed(tw);
    g.feed(raw(EVENT_REUSE, 40010, T0 + S + 10, true, SYN, STATE_TIME_WAIT, STATE_SYN_SENT));
    let mut tw2 = raw(EVENT_STATE, 40010, T0 + 2 * S, true, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
    tw2.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
    g.feed(tw2);
    g.set_record(&syn, STATE_TIME_WAIT, |_| {});
    assert!(g.on_time(T0 + 3 * S + 500).is_empty(), "the first TIME_WAIT's deadline belongs to the old incarnation");
    assert_eq!(names(&g.on_time(T0 + 4 * S)), ["time_wait_expired"]);
}

#[test]
fn time_wait_pressure_is_reported_again_after_the_time_waits_expire() {
    let mut g = Rig::new(cfg());
    let wave = |g: &mut Rig, base: u16, at: u64| -> usize {
        let mut evs = Vec::new();
        for i in 0..3u16 {
            let syn = raw(EVENT_FLOW_NEW, base + i, at, true, SYN, 0, STATE_SYN_SENT);
            g.feed(syn);
            let mut tw = raw(EVENT_STATE, base + i, at + 1, true, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
            tw.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
            evs.extend(g.feed(tw));
            g.set_record(&syn, STATE_TIME_WAIT, |r| r.info = INFO_CLOSER_LO);
        }
        evs.iter().filter(|e| e.event == EventKind::TimeWaitPressure).count()
    };
    assert_eq!(wave(&mut g, 30000, T0), 1);
    // All three expire (2 s): the pressure is gone and the report re-armed.
    assert_eq!(names(&g.on_time(T0 + 3 * S)), ["time_wait_expired"; 3]);
    assert_eq!(wave(&mut g, 31000, T0 + 4 * S), 1, "reported again once it builds up again");
}

#[test]
fn the_snapshot_counts_what_the_reporter_follows() {
    let mut g = Rig::new(cfg());
    for i in 0..12u16 {
        g.feed(raw(EVENT_FLOW_NEW, 10000 + i, T0 + i as u64, true, SYN, 0, STATE_SYN_SENT));
    }
    for i in 0..3u16 {
        g.feed(raw(EVENT_FLOW_NEW, 20000 + i, T0 + 100, true, SYN, 0, STATE_SYN_SENT));
        let mut tw = raw(EVENT_STATE, 20000 + i, T0 + 200, true, ACK, STATE_LAST_ACK, STATE_TIME_WAIT);
        tw.detail = tcp_track_common::event::DETAIL_CLOSER_LO;
        g.feed(tw);
    }
    let s = g.r.snapshot();
    let by_state: Vec<(ConnState, usize)> = s.flows_by_state.iter().copied().filter(|(_, n)| *n > 0).collect();
    assert_eq!(by_state, [(ConnState::SynSent, 12), (ConnState::TimeWait, 3)]);
    assert_eq!(s.flows_by_state.len(), ConnState::ALL.len(), "every state is listed");
    assert_eq!((s.tracked_flows, s.half_open), (15, 12));
    assert_eq!(s.floods.len(), 1);
    let f = &s.floods[0];
    assert_eq!((f.server.to_string(), f.since_ns, f.syns, f.peak_half_open, f.half_open), ("198.18.0.2:80".into(), T0 + 10, 5, 13, 12));
    assert_eq!(
        s.pressure_alerts,
        [PressureAlert { client: "198.18.0.1".parse().unwrap(), server: "198.18.0.2:80".parse().unwrap(), time_wait: 3 }]
    );
    assert_eq!((s.vanished, s.suppressed), (0, 0));
    assert_eq!(s.pending_deadlines, g.r.pending_deadlines());
}

/// Connection records (`conn`): the reporter's side, on a fake table.
mod conn_records {
    use tcp_track_common::{
        event::{CONN_END_EVICTED, CONN_END_FIN, CONN_END_RESET, EVENT_CONN_END},
        flow::{INFO_CLOSER_HI, PEER_SEEN},
        state::RESET_REFUSED,
    };

    use super::*;
    use crate::vocab::EndReason;

    fn conn_cfg() -> ReportConfig {
        ReportConfig { events: EventSets::of(&[EventSet::Notable, EventSet::Conn]), ..cfg() }
    }

    /// A flow record with these figures: the client (`lo`) sent `c`
    /// segments, the server `s`; first segment at `first`, last at `last`.
    fn rec(state: u8, c: u32, s: u32, first: u64, last: u64) -> FlowRecord {
        let mut r = FlowRecord { state, initiator: DIR_LO_TO_HI, packets: [c, s], first_ns: first, last_seen: coarse_time(last), ..FlowRecord::default() };
        r.peer[0].flags = PEER_SEEN;
        r.peer[1].flags = PEER_SEEN;
        r
    }

    /// The kernel's `EVENT_CONN_END` for flow `port` at `ts`.
    fn end_raw(port: u16, ts: u64, end: u8, from_client: bool, old: u8, new: u8) -> FlowEvent {
        FlowEvent { end, ..raw(EVENT_CONN_END, port, ts, from_client, ACK, old, new) }
    }

    impl Rig {
        fn conn_end(&mut self, raw: &FlowEvent, rec: &FlowRecord) -> Vec<Event> {
            let evs = self.r.on_conn_end(raw, rec, "veth0".into());
            self.check(evs)
        }

        fn audit(&mut self, now: u64) -> Vec<Event> {
            let evs = self.r.audit(now, 100);
            self.check(evs)
        }

        fn stop(&mut self, now: u64) -> Vec<Event> {
            let evs = self.r.stop(now, "veth0".into());
            self.check(evs)
        }

        /// A connection on `port` opened and established at `at`.
        fn open(&mut self, port: u16, at: u64) -> FlowEvent {
            let new = raw(EVENT_FLOW_NEW, port, at, true, SYN, 0, STATE_SYN_SENT);
            self.feed(new);
            self.feed(raw(EVENT_STATE, port, at, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
            new
        }
    }

    fn conns(evs: &[Event]) -> Vec<&Event> {
        evs.iter().filter(|e| e.event == EventKind::Conn).collect()
    }

    fn json(ev: &Event) -> serde_json::Value {
        ev.to_json().unwrap()
    }

    #[test]
    fn an_orderly_close_gives_one_record_with_the_schemas_fields_in_order() {
        let mut g = Rig::new(conn_cfg());
        let new = g.open(40000, T0);
        let mut r = rec(STATE_TIME_WAIT, 6, 4, T0, T0 + S / 2);
        r.info |= INFO_CLOSER_HI;
        r.retransmits = [1, 0];
        r.rst_dropped = 2;
        let evs = g.conn_end(&end_raw(40000, T0 + S / 2, CONN_END_FIN, true, STATE_LAST_ACK, STATE_TIME_WAIT), &r);
        let keys: Vec<&str> = evs[0].extra.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "duration_s", "conn_state", "end", "closer", "client_bytes", "server_bytes", "client_packets", "server_packets",
                "client_retransmits", "server_retransmits", "rst_dropped", "state"
            ],
            "the schema's order (CONN_SCHEMA.md); handshake timing absent when not measured"
        );
        let j = json(&evs[0]);
        assert_eq!(j["event"], "conn");
        assert_eq!((j["client"].as_str(), j["server"].as_str()), (Some("198.18.0.1:40000"), Some("198.18.0.2:80")));
        assert_eq!(j["ts"], g.dec.timestamp(T0).to_string(), "ts is the first segment's time");
        assert_eq!(j["duration_s"], 0.5);
        assert_eq!((j["end"].as_str(), j["closer"].as_str(), j["state"].as_str()), (Some("fin"), Some("server"), Some("TIME_WAIT")));
        assert_eq!((j["client_packets"].as_u64(), j["server_packets"].as_u64()), (Some(6), Some(4)));
        assert_eq!((j["client_retransmits"].as_u64(), j["rst_dropped"].as_u64()), (Some(1), Some(2)));
        // The same end again (it cannot come twice from the kernel, but the
        // daemon may have ended the flow itself a moment before): nothing.
        assert!(g.conn_end(&end_raw(40000, T0 + S, CONN_END_FIN, true, STATE_LAST_ACK, STATE_TIME_WAIT), &r).is_empty());
        assert_eq!(g.r.snapshot().conn.ended.iter().find(|(e, _)| *e == EndReason::Fin), Some(&(EndReason::Fin, 1)));
        // A SYN reusing the 4-tuple after a reset is a new flow: its own record.
        g.feed(FlowEvent { ..raw(EVENT_STATE, 40000, T0 + 2 * S, true, SYN, STATE_CLOSE, STATE_SYN_SENT) });
        let r2 = rec(STATE_CLOSE, 1, 1, T0 + 2 * S, T0 + 2 * S);
        let reset = FlowEvent { reset: RESET_REFUSED, ..end_raw(40000, T0 + 2 * S, CONN_END_RESET, false, STATE_SYN_SENT, STATE_CLOSE) };
        assert_eq!(conns(&g.conn_end(&reset, &r2)).len(), 1);
        let _ = new;
    }

    #[test]
    fn a_reset_says_its_reason_and_sender() {
        let mut g = Rig::new(conn_cfg());
        g.feed(raw(EVENT_FLOW_NEW, 40001, T0, true, SYN, 0, STATE_SYN_SENT));
        g.feed(FlowEvent { reset: RESET_REFUSED, ..raw(EVENT_RST, 40001, T0 + 1000, false, RST | ACK, STATE_SYN_SENT, STATE_CLOSE) });
        let r = rec(STATE_CLOSE, 1, 1, T0, T0 + 1000);
        let reset = FlowEvent { reset: RESET_REFUSED, ..end_raw(40001, T0 + 1000, CONN_END_RESET, false, STATE_SYN_SENT, STATE_CLOSE) };
        let j = json(&g.conn_end(&reset, &r)[0]);
        assert_eq!((j["end"].as_str(), j["reset_reason"].as_str(), j["reset_from"].as_str()), (Some("reset"), Some("refused"), Some("server")));
        assert!(j.get("closer").is_none() && j.get("interim").is_none());
        assert_eq!(j["duration_s"], 0.000001);
    }

    #[test]
    fn only_the_conn_set_prints_them_and_they_are_counted_either_way() {
        let mut g = Rig::new(cfg());
        g.open(40002, T0);
        let r = rec(STATE_TIME_WAIT, 3, 3, T0, T0);
        assert!(g.conn_end(&end_raw(40002, T0, CONN_END_FIN, true, STATE_LAST_ACK, STATE_TIME_WAIT), &r).is_empty());
        assert_eq!(g.r.snapshot().conn.ended[EndReason::Fin as usize], (EndReason::Fin, 1));
        assert!(g.stop(T0 + S).is_empty(), "no records at stop either");
    }

    #[test]
    fn a_handshake_given_up_ends_with_its_record_and_leaves_the_table() {
        let mut g = Rig::new(conn_cfg());
        let new = raw(EVENT_FLOW_NEW, 40003, T0, true, SYN, 0, STATE_SYN_SENT);
        g.feed(new);
        g.set_record(&new, STATE_SYN_SENT, |r| {
            r.packets = [3, 0];
            r.first_ns = T0;
            r.last_seen = coarse_time(T0 + 2 * S);
        });
        assert_eq!(names(&g.on_time(T0 + 3 * S)), ["half_open"]);
        let evs = g.on_time(T0 + 6 * S);
        assert_eq!(names(&evs), ["half_open_ended", "conn"]);
        let j = json(&evs[1]);
        assert_eq!((j["end"].as_str(), j["client_packets"].as_u64(), j["state"].as_str()), (Some("half_open_timeout"), Some(3), Some("SYN_SENT")));
        assert!((j["duration_s"].as_f64().unwrap() - 2.0).abs() < 0.002, "to its last segment: {j}");
        assert!(g.r.lookup().records.is_empty(), "removed from the table");
        assert!(g.stop(T0 + 7 * S).is_empty());
    }

    #[test]
    fn the_audit_ends_idle_connections_and_writes_evicted_ones_from_its_last_look() {
        let mut g = Rig::new(ReportConfig { idle_timeout: Duration::from_secs(100), ..conn_cfg() });
        let quiet = g.open(40004, T0);
        let busy = g.open(40005, T0);
        g.set_record(&quiet, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 5, 5, T0, T0 + S));
        g.set_record(&busy, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 7, 8, T0, T0 + 49 * S));
        // The half-open deadlines pass first (the audit skips flows waiting for one).
        g.on_time(T0 + 4 * S);
        let early = g.audit(T0 + 50 * S);
        assert!(early.is_empty(), "neither is idle yet: {early:?}");
        let evs = g.audit(T0 + 102 * S);
        assert_eq!(conns(&evs).len(), 1);
        let j = json(&evs[0]);
        assert_eq!((j["client"].as_str(), j["end"].as_str(), j["client_packets"].as_u64()), (Some("198.18.0.1:40004"), Some("idle_timeout"), Some(5)));
        assert!((j["duration_s"].as_f64().unwrap() - 1.0).abs() < 0.002, "first to last segment: {j}");
        assert_eq!(g.r.lookup().removed, [FlowId::of(&quiet)], "removed, so that a later segment starts a new flow");
        // The busy one is evicted silently: its record from the audit's last look.
        g.r.lookup_mut().records.clear();
        let evs = g.audit(T0 + 103 * S);
        let j = json(&evs[0]);
        assert_eq!((j["client"].as_str(), j["end"].as_str(), j["server_packets"].as_u64()), (Some("198.18.0.1:40005"), Some("evicted"), Some(8)));
        assert_eq!(g.r.vanished, 1);
        assert!(g.stop(T0 + 104 * S).is_empty(), "both had their record");
    }

    /// The audit reads its clock once, then the records: a segment that
    /// came in between is stamped after `now`. Such a flow was just seen,
    /// not quiet for the 52 days an unsigned difference makes of it (the
    /// soak once saw a SYN_SENT flow ended `idle_timeout` so).
    #[test]
    fn a_segment_stamped_after_the_audits_clock_is_not_idleness() {
        let mut g = Rig::new(ReportConfig { idle_timeout: Duration::from_secs(100), ..conn_cfg() });
        let f = g.open(40012, T0);
        g.on_time(T0 + 4 * S);
        let now = T0 + 10 * S;
        g.set_record(&f, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 5, 5, T0, now + 3_000_000));
        assert!(g.audit(now).is_empty(), "not idle");
        assert!(g.r.lookup().removed.is_empty(), "still in the table");
        assert_eq!(g.r.tracked_flows(), 1);
    }

    /// The table evicted an open flow and a new flow took its 4-tuple
    /// before the audit looked: the old one's record comes with the new
    /// flow's first event.
    #[test]
    fn a_new_flow_on_a_silently_evicted_ones_4_tuple_ends_the_old_one() {
        let mut g = Rig::new(conn_cfg());
        g.open(40011, T0);
        let evs = g.feed(raw(EVENT_FLOW_NEW, 40011, T0 + 5 * S, true, SYN, 0, STATE_SYN_SENT));
        let c = conns(&evs);
        assert_eq!(c.len(), 1);
        let j = json(c[0]);
        assert_eq!((j["end"].as_str(), j["conn_state"].as_str(), j["duration_s"].as_f64()), (Some("evicted"), Some("OTH"), Some(0.0)), "nothing read of it: {j}");
        assert_eq!(g.r.vanished, 1);
        // The new flow is followed afresh: its own record at its end.
        let r = rec(STATE_CLOSE, 1, 1, T0 + 5 * S, T0 + 5 * S);
        let reset = FlowEvent { reset: RESET_REFUSED, ..end_raw(40011, T0 + 5 * S, CONN_END_RESET, false, STATE_SYN_SENT, STATE_CLOSE) };
        assert_eq!(conns(&g.conn_end(&reset, &r)).len(), 1);
    }

    #[test]
    fn interim_records_come_once_per_interval_until_the_end() {
        let mut g = Rig::new(ReportConfig { conn_interval: Some(Duration::from_secs(10)), ..conn_cfg() });
        let new = g.open(40006, T0);
        g.set_record(&new, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 2, 2, T0, T0 + S));
        let first = g.on_time(T0 + 10 * S);
        let c = conns(&first);
        assert_eq!(c.len(), 1);
        let j = json(c[0]);
        assert_eq!((j["interim"].as_bool(), j.get("end")), (Some(true), None));
        assert_eq!(conns(&g.on_time(T0 + 15 * S)).len(), 0);
        assert_eq!(conns(&g.on_time(T0 + 20 * S)).len(), 1);
        let end = g.conn_end(&end_raw(40006, T0 + 25 * S, CONN_END_FIN, true, STATE_LAST_ACK, STATE_TIME_WAIT), &rec(STATE_TIME_WAIT, 4, 4, T0, T0 + 25 * S));
        assert_eq!(json(&end[0])["end"], "fin");
        assert_eq!(conns(&g.on_time(T0 + 40 * S)).len(), 0, "no interim record after the final one");
        assert_eq!(g.r.snapshot().conn.interim, 2);
    }

    /// A new incarnation on a reset flow's entry keeps one chain of interim
    /// records, not two.
    #[test]
    fn a_reborn_flow_has_one_interim_chain() {
        let mut g = Rig::new(ReportConfig { conn_interval: Some(Duration::from_secs(10)), ..conn_cfg() });
        let new = g.open(40012, T0);
        let reset = FlowEvent { reset: RESET_EXACT, ..end_raw(40012, T0 + 2 * S, CONN_END_RESET, true, STATE_ESTABLISHED, STATE_CLOSE) };
        g.feed(FlowEvent { reset: RESET_EXACT, ..raw(EVENT_RST, 40012, T0 + 2 * S, true, RST, STATE_ESTABLISHED, STATE_CLOSE) });
        assert_eq!(conns(&g.conn_end(&reset, &rec(STATE_CLOSE, 3, 2, T0, T0 + 2 * S))).len(), 1);
        g.feed(raw(EVENT_STATE, 40012, T0 + 3 * S, true, SYN, STATE_CLOSE, STATE_SYN_SENT));
        g.feed(raw(EVENT_STATE, 40012, T0 + 3 * S, true, ACK, STATE_SYN_RECV, STATE_ESTABLISHED));
        g.set_record(&new, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 2, 1, T0 + 3 * S, T0 + 3 * S));
        let mut interim = 0;
        for t in 4..=25 {
            interim += conns(&g.on_time(T0 + t * S)).len();
        }
        assert_eq!(interim, 2, "at 10 s and 20 s, once each");
    }

    #[test]
    fn at_stop_every_open_connection_gets_exactly_one_final_record() {
        let mut g = Rig::new(conn_cfg());
        let a = g.open(40007, T0);
        let b = g.open(40008, T0);
        let c = g.open(40009, T0);
        g.set_record(&a, STATE_ESTABLISHED, |r| *r = rec(STATE_ESTABLISHED, 3, 2, T0, T0 + S));
        g.set_record(&b, STATE_TIME_WAIT, |r| *r = rec(STATE_TIME_WAIT, 5, 5, T0, T0 + S));
        g.conn_end(&end_raw(40008, T0 + S, CONN_END_FIN, true, STATE_LAST_ACK, STATE_TIME_WAIT), &rec(STATE_TIME_WAIT, 5, 5, T0, T0 + S));
        // c vanished from the table before any audit: a record all the same.
        let _ = c;
        // A flow the daemon never heard of (its events were lost) is in the table.
        let lost = raw(EVENT_FLOW_NEW, 40010, T0, true, SYN, 0, STATE_SYN_SENT);
        g.set_record(&lost, STATE_SYN_SENT, |r| *r = rec(STATE_SYN_SENT, 1, 0, T0, T0));
        let evs = g.stop(T0 + 2 * S);
        let mut got: Vec<(String, String)> =
            evs.iter().map(json).map(|j| (j["client"].as_str().unwrap().to_string(), j["end"].as_str().unwrap().to_string())).collect();
        got.sort();
        assert_eq!(
            got,
            [("198.18.0.1:40007".into(), "stopped".into()), ("198.18.0.1:40009".into(), "evicted".into()), ("198.18.0.1:40010".into(), "stopped".into())]
        );
        assert!(g.stop(T0 + 3 * S).is_empty(), "once");
        let evicted = g.conn_end(&FlowEvent { end: CONN_END_EVICTED, ..end_raw(40009, T0, 0, true, 1, 1) }, &rec(STATE_SYN_SENT, 1, 0, T0, T0));
        assert!(evicted.is_empty(), "the kernel's word after the daemon's: still one record");
    }

    /// After events were lost, the tables' walk: each flow in the table at
    /// `now`, through `catch_up` as the daemon calls it.
    impl Rig {
        fn walk(&mut self, now: u64) -> (Vec<Event>, CatchUp) {
            let mut out = Vec::new();
            let mut did = CatchUp::default();
            for (id, rec) in self.r.lookup().open_flows() {
                let raw = adopted_event(id.family, (&id.lo_addr, id.lo_port), (&id.hi_addr, id.hi_port), &rec, 3, now);
                let ev = self.dec.event(&raw).unwrap();
                let (evs, one) = self.r.catch_up(&raw, &ev, &rec, now);
                out.extend(self.check(evs));
                did.add(one);
            }
            (out, did)
        }
    }

    /// Every event of a handshake that was never answered was lost: the
    /// walk follows it, and it is still reported half-open and given up,
    /// with its record.
    #[test]
    fn a_handshake_whose_events_were_lost_is_still_given_up() {
        let mut g = Rig::new(conn_cfg());
        let lost = raw(EVENT_FLOW_NEW, 40020, T0, true, SYN, 0, STATE_SYN_SENT);
        g.set_record(&lost, STATE_SYN_SENT, |r| {
            *r = rec(STATE_SYN_SENT, 1, 0, T0, T0);
            r.origin = tcp_track_common::flow::ORIGIN_SYN;
        });
        let (evs, did) = g.walk(T0 + 2 * S);
        assert!(evs.is_empty(), "{evs:?}");
        assert_eq!(did, CatchUp { adopted: 1, moved: 0, ended: 0 });
        assert_eq!(names(&g.on_time(T0 + 3 * S)), ["half_open"], "half-open from its first segment");
        let evs = g.on_time(T0 + 6 * S);
        assert_eq!(names(&evs), ["half_open_ended", "conn"]);
        assert_eq!(json(&evs[1])["end"], "half_open_timeout");
        assert_eq!(g.walk(T0 + 7 * S).1, CatchUp::default(), "gone from the table: nothing more");
    }

    /// An orderly close whose every event was lost, end record included:
    /// the walk writes its record and its TIME_WAIT still expires; a second
    /// walk writes nothing.
    #[test]
    fn a_close_whose_events_were_lost_gets_its_record_and_its_expiry() {
        let mut g = Rig::new(conn_cfg());
        let lost = raw(EVENT_FLOW_NEW, 40021, T0, true, SYN, 0, STATE_SYN_SENT);
        g.set_record(&lost, STATE_TIME_WAIT, |r| {
            *r = rec(STATE_TIME_WAIT, 5, 4, T0, T0 + S / 2);
            r.info |= INFO_CLOSER_LO;
        });
        let (evs, did) = g.walk(T0 + S);
        assert_eq!(did, CatchUp { adopted: 1, moved: 0, ended: 1 });
        let j = json(&evs[0]);
        assert_eq!((j["end"].as_str(), j["client_packets"].as_u64(), j["state"].as_str()), (Some("fin"), Some(5), Some("TIME_WAIT")));
        assert_eq!(g.walk(T0 + S + 1).1, CatchUp::default(), "one record");
        // TIME_WAIT (2 s here) from its last segment.
        assert!(g.on_time(T0 + 2 * S).is_empty());
        assert_eq!(names(&g.on_time(T0 + 3 * S)), ["time_wait_expired"]);
        assert!(g.stop(T0 + 4 * S).is_empty(), "no second record at stop");
    }

    /// A connection followed from its handshake whose close was lost: the
    /// walk moves it to TIME_WAIT, writes its record, and it expires.
    #[test]
    fn a_followed_connection_whose_close_was_lost_moves_on() {
        let mut g = Rig::new(conn_cfg());
        let f = g.open(40022, T0);
        g.on_time(T0 + 4 * S);
        g.set_record(&f, STATE_TIME_WAIT, |r| *r = rec(STATE_TIME_WAIT, 6, 5, T0, T0 + 5 * S));
        let (evs, did) = g.walk(T0 + 6 * S);
        assert_eq!(did, CatchUp { adopted: 0, moved: 1, ended: 1 });
        assert_eq!(json(&evs[0])["end"], "fin");
        assert_eq!(names(&g.on_time(T0 + 8 * S)), ["time_wait_expired"]);
    }

    /// The end record of a flow whose earlier events were lost did reach
    /// the daemon: written once, the flow then followed as ended, so the
    /// walk writes nothing more and its removal still comes.
    #[test]
    fn an_end_record_that_came_is_not_written_again_by_the_walk() {
        let mut g = Rig::new(conn_cfg());
        let r = rec(STATE_CLOSE, 2, 1, T0, T0 + S);
        let reset = FlowEvent { reset: RESET_REFUSED, ..end_raw(40023, T0 + S, CONN_END_RESET, false, STATE_ESTABLISHED, STATE_CLOSE) };
        g.set_record(&reset, STATE_CLOSE, |x| *x = r);
        assert_eq!(conns(&g.conn_end(&reset, &r)).len(), 1);
        assert_eq!(g.walk(T0 + 2 * S).1, CatchUp::default());
        // The reset flow's removal, a half-open timeout (3 s) after it.
        g.on_time(T0 + 5 * S);
        assert!(g.r.lookup().records.is_empty(), "removed from the table");
        assert_eq!(g.r.tracked_flows(), 0);
    }
}
