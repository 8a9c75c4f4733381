//! From the kernel's transitions to what users run tcp-track for:
//! half-open connections, TIME_WAIT and what happens to it, resets, SYN
//! floods, CLOSE_WAIT that lingers, TIME_WAIT pressure.
//!
//! The kernel reports transitions; the `Reporter` (here) remembers what it
//! needs of each flow between them (`Tracked`), and turns them into events
//! with the help of one module per concern, each owning its state and its
//! rules and knowing nothing of the reporter:
//!
//! - `flow`: a flow's identity, and `FlowLookup`, the reporter's only view
//!   of the kernel's tables (the aya adapter is in `tables`);
//! - `followed`: the flows followed, in a slab found by 4-tuple, and
//!   `FlowRef`, how the others name a flow for later (slot and incarnation:
//!   a stale one is told without hashing);
//! - `deadlines`: what happens when no segment comes, kept in a heap keyed
//!   by time;
//! - `floods`: half-open connections per server, SYN floods, and the order
//!   they opened in (the daemon remembers no more of them than the kernel);
//! - `pressure`: TIME_WAIT pressure per (client address, server);
//! - `audit`: the round robin that finds flows evicted without a close;
//! - `rate`: the per-flow rate limit;
//! - `conn`: connection records, when connections end (and interim ones).
//!
//! `adopt` follows the flows of an adopted (pinned) state, deadlines
//! included; `resync` catches up with flows whose events were lost to a
//! full ring buffer, from a walk of the tables. `expiry` adds to the reporter what each deadline means when it comes:
//! the flow's current record is read through `FlowLookup` then, rather
//! than scanning the table.
//!
//! Time is the kernel's monotonic clock in nanoseconds, passed in, so tests
//! drive it.

use std::{net::SocketAddr, sync::Arc};

use tcp_track_common::{
    event::{FlowEvent, DETAIL_CLOSER_HI, DETAIL_CLOSER_LO},
    flow::{picked_up, FlowRecord, ORIGIN_SYN},
};

use crate::{
    clock::WallClock,
    config::ReportConfig,
    events::{client_server, DecodeError, Decoder, Endpoint, Event, Timestamp},
    vocab::{Closer, ConnState, EndReason, EventKind, ResetClass},
};

mod adopt;
mod audit;
mod conn;
mod deadlines;
mod expiry;
mod flow;
mod floods;
mod followed;
mod pressure;
mod rate;
mod resync;

pub use adopt::adopted_event;
use audit::AuditQueue;
use deadlines::{dur_ns, Deadline, Deadlines};
pub use conn::{ConnCounts, Histogram, DURATION_BOUNDS, HANDSHAKE_BOUNDS};
pub use flow::{FlowId, FlowLookup};
use followed::{FlowRef, Followed};
pub use floods::Flood;
use floods::Floods;
pub use pressure::PressureAlert;
pub use resync::{CatchUp, Walks};
use pressure::TimeWaitPressure;
use rate::TokenBucket;

/// What the daemon remembers of a flow between kernel events.
///
/// Kept small (with its slot's 4-tuple and incarnation, 128 bytes: one
/// pair of cache lines), since every event reads it: the endpoints are
/// derived from the 4-tuple (`Tracked::endpoints`), what few flows need is
/// boxed.
#[derive(Debug)]
struct Tracked {
    iface: Arc<str>,
    /// The client's direction as the first event of this incarnation said
    /// (`initiator` may be corrected later; the endpoints printed stay).
    orient: u8,
    /// The connection's state after its last event.
    state: ConnState,
    /// Handshake retransmission times, if the handshake was retransmitted.
    retransmits: Option<Box<HandshakeTimes>>,
    /// Counted among its server's half-open connections.
    half_open_counted: bool,
    /// A `half_open` event was printed; a later event must close the story.
    half_open_reported: bool,
    /// Created while its server was flooded: individual events suppressed.
    flood_member: bool,
    /// Counted in TIME_WAIT pressure for (client ip, server).
    tw_counted: bool,
    /// Who closed first, once in TIME_WAIT (`Closer`).
    closer: Closer,
    close_wait_armed: bool,
    peer_lost_reported: bool,
    /// Deadlines armed and not yet fired: a flow with none is checked by
    /// the audit instead.
    deadlines_pending: u32,
    bucket: TokenBucket,
    /// This incarnation's final `conn` record was written (by the kernel's
    /// `EVENT_CONN_END` or the daemon's own decision).
    ended: bool,
    /// The flow record as the audit last read it: the figures of a `conn`
    /// record for a flow evicted without a word.
    /// Boxed: most flows never get one, and every flow's `Tracked` counts
    /// towards the daemon's memory.
    last_rec: Option<Box<FlowRecord>>,
    /// When this incarnation's first event came (monotonic ns), and the
    /// client's direction: all a `conn` record has of a flow never read.
    first_ns: u64,
    initiator: u8,
    /// An interim record's deadline is pending.
    interim_armed: bool,
}

const _: () = assert!(followed::slot_size::<Tracked>() <= 128);

impl Tracked {
    /// The flow's (client, server), its 4-tuple being `id`.
    fn endpoints(&self, id: &FlowId) -> (SocketAddr, SocketAddr) {
        id.endpoints(self.orient)
    }
}

/// When a handshake's segments were retransmitted: SYN-ACKs and SYNs, 16
/// of each at most.
#[derive(Debug, Default)]
struct HandshakeTimes {
    synack: Vec<Timestamp>,
    syn: Vec<Timestamp>,
}

pub struct Reporter<L: FlowLookup> {
    cfg: ReportConfig,
    lookup: L,
    clock: WallClock,
    /// The flows followed: a slab, its slots reused, found by 4-tuple
    /// once per event (`followed`).
    flows: Followed<Tracked>,
    deadlines: Deadlines,
    floods: Floods,
    pressure: TimeWaitPressure,
    audit: AuditQueue,
    /// Events not printed because of a flow's rate limit.
    pub suppressed: u64,
    /// RST events by class (`ResetClass::raw`): [passed, dropped].
    resets: Vec<[u64; 2]>,
    /// Flows whose record was gone when a deadline came, without a close
    /// having been seen: LRU evictions, which the kernel does not report.
    pub vanished: u64,
    /// What the last kernel event produced, kept so that its allocation
    /// serves the next one.
    pending: Vec<Event>,
    /// Final `conn` records by end (`EndReason` as index), interim ones.
    conn_ended: Vec<u64>,
    conn_interim: u64,
    conn_duration: Histogram,
    conn_handshake: Histogram,
    /// `stop` wrote its records.
    stopped: bool,
}

/// What the reporter holds at one instant, for readers (metrics, a flow
/// listing): see `Reporter::snapshot`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportSnapshot {
    /// Flows followed, by connection state as of their last event; every
    /// state is listed, in `ConnState::ALL` order.
    pub flows_by_state: Vec<(ConnState, usize)>,
    /// Flows followed (the sum of `flows_by_state`).
    pub tracked_flows: usize,
    /// Connections counted as half-open (handshake begun with a SYN, not
    /// completed, reset or given up).
    pub half_open: usize,
    /// SYN floods in progress, by server.
    pub floods: Vec<Flood>,
    /// TIME_WAIT pressure reported and not relieved since.
    pub pressure_alerts: Vec<PressureAlert>,
    /// Flows in TIME_WAIT by who closed first, in `Closer::ALL` order.
    pub time_wait_by_closer: Vec<(Closer, usize)>,
    /// RSTs received from the kernel, by class: (class, passed, dropped),
    /// every class in `ResetClass::ALL` order.
    pub resets: Vec<(ResetClass, u64, u64)>,
    /// Flows found gone from the kernel tables without a close.
    pub vanished: u64,
    /// Events held back by the per-flow rate limit.
    pub suppressed: u64,
    /// Deadlines waiting, stale ones included.
    pub pending_deadlines: usize,
    /// `conn` records written (counted whether printed or not).
    pub conn: ConnCounts,
}

impl<L: FlowLookup> Reporter<L> {
    pub fn new(cfg: ReportConfig, lookup: L, clock: WallClock) -> Self {
        Reporter {
            flows: Followed::default(),
            cfg,
            lookup,
            clock,
            deadlines: Deadlines::default(),
            floods: Floods::default(),
            pressure: TimeWaitPressure::default(),
            audit: AuditQueue::default(),
            suppressed: 0,
            resets: vec![[0; 2]; ResetClass::ALL.len()],
            vanished: 0,
            pending: Vec::new(),
            conn_ended: vec![0; EndReason::ALL.len()],
            conn_interim: 0,
            conn_duration: Histogram::new(DURATION_BOUNDS),
            conn_handshake: Histogram::new(HANDSHAKE_BOUNDS),
            stopped: false,
        }
    }

    pub fn config(&self) -> &ReportConfig {
        &self.cfg
    }

    pub fn lookup(&self) -> &L {
        &self.lookup
    }

    pub fn lookup_mut(&mut self) -> &mut L {
        &mut self.lookup
    }

    fn ts(&self, mono_ns: u64) -> Timestamp {
        Timestamp(self.clock.wall_time(mono_ns))
    }

    /// Flows the daemon currently keeps state for.
    pub fn tracked_flows(&self) -> usize {
        self.flows.len()
    }

    /// Everything the reporter counts, at this instant.
    pub fn snapshot(&self) -> ReportSnapshot {
        let mut by_state = vec![0usize; ConnState::ALL.len()];
        let mut by_closer = vec![0usize; Closer::ALL.len()];
        for t in self.flows.values() {
            by_state[t.state as usize] += 1;
            if t.state == ConnState::TimeWait {
                by_closer[t.closer as usize] += 1;
            }
        }
        ReportSnapshot {
            flows_by_state: ConnState::ALL.iter().copied().zip(by_state).collect(),
            tracked_flows: self.flows.len(),
            half_open: self.floods.live(),
            floods: self.floods.in_progress(),
            pressure_alerts: self.pressure.alerts(),
            time_wait_by_closer: Closer::ALL.iter().copied().zip(by_closer).collect(),
            resets: ResetClass::ALL.iter().zip(&self.resets).map(|(&c, &[p, d])| (c, p, d)).collect(),
            vanished: self.vanished,
            suppressed: self.suppressed,
            pending_deadlines: self.pending_deadlines(),
            conn: self.conn_counts(),
        }
    }

    /// One kernel event, `raw`, decoded by `decoder` if it is printed or
    /// something printed is built from it (most are not: decoding every
    /// one cost 6% of `tcp-track read`); returns what to print, drained
    /// from a buffer the reporter keeps for the next event, or why `raw`
    /// cannot be decoded. A connection's end (`EVENT_CONN_END`) carries a
    /// flow record and goes to `on_conn_end` instead: here it is ignored.
    pub fn on_event(&mut self, raw: &FlowEvent, decoder: &Decoder) -> Result<std::vec::Drain<'_, Event>, DecodeError> {
        let kind = Decoder::kind(raw)?;
        let mut out = std::mem::take(&mut self.pending);
        out.clear();
        if kind != EventKind::Conn {
            self.handle(raw, Decoding::new(raw, kind, decoder), &mut out);
        }
        self.pending = out;
        Ok(self.pending.drain(..))
    }

    fn handle(&mut self, raw: &FlowEvent, mut ev: Decoding<'_>, out: &mut Vec<Event>) {
        let id = FlowId::of(raw);
        let now = raw.ts_ns;
        let kind = ev.kind;
        let (old_state, new_state) = (ConnState::from_raw(raw.old_state), ConnState::from_raw(raw.new_state));
        let opening = matches!(kind, EventKind::FlowNew | EventKind::TimeWaitReuse);
        // One look at the flow for the common case, an event on a flow
        // already tracked: server, flood membership and whether it is
        // half-open only change in the branches below that update them here.
        // A SYN on a closed 4-tuple's entry: a new incarnation, which will
        // have a record of its own.
        let reborn = old_state >= ConnState::TimeWait && new_state != ConnState::None && new_state < ConnState::TimeWait;
        let found = if opening { None } else { self.flows.find(&id) };
        let known = found.and_then(|r| {
            let t = self.flows.get_mut(r)?;
            t.state = new_state;
            if reborn {
                (t.ended, t.last_rec, t.first_ns, t.initiator) = (false, None, now, raw.initiator);
            }
            Some((r, t.endpoints(&id).1, t.flood_member, t.half_open_counted || t.half_open_reported))
        });
        if let (true, Some((r, ..))) = (reborn, known) {
            self.arm_interim(r, now);
        }
        // From here on the flow is named by its `FlowRef`: no more lookups
        // by 4-tuple.
        let (r, server, mut member, mut half_open) = match known {
            Some(k) => k,
            None => {
                let (r, ended) = self.start_tracking(&id, raw, ev.iface());
                out.extend(ended);
                self.shed_gone(now, out);
                (r, client_server(raw).1, false, false)
            }
        };
        let verbose = self.cfg.events.all;

        // A connection opening: count it among its server's half-open ones.
        if opening && raw.origin == ORIGIN_SYN {
            self.arm(now.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::HalfOpen);
            member = self.count_half_open(r, server, &ev.iface(), now, out);
            half_open = true;
        }
        if kind == EventKind::HandshakeRetransmit {
            let ev = ev.get();
            if let Some(t) = self.flows.get_mut(r) {
                let from_server = ev.segment.is_some_and(|s| !s.from_client);
                let times = t.retransmits.get_or_insert_default();
                let list = if from_server { &mut times.synack } else { &mut times.syn };
                if list.len() < 16 {
                    list.push(ev.ts);
                }
            }
        }
        // The handshake done, or the connection gone: no longer half-open.
        if new_state >= ConnState::Established && half_open {
            out.extend(self.leave_half_open(r, new_state, &mut ev, now));
        }

        // The event itself goes here, ahead of what it causes below; it is
        // moved in at the end because those are built from it.
        let at = out.len();
        let print = match kind {
            EventKind::Reset => {
                if let Some(r) = ev.get().segment.as_ref().and_then(|s| s.reset) {
                    if let Some(n) = self.resets.get_mut(r.judgement.raw() as usize) {
                        n[usize::from(r.dropped)] += 1;
                    }
                }
                if ResetClass::from_raw(raw.reset) == ResetClass::StatelessPeer {
                    // RFC 9293 §3.10.7.1: only a TCP without the connection
                    // answers this way; the receiver was half-open.
                    let mut e = self.flow_event(r, &mut ev, EventKind::HalfOpen);
                    e.set("kind", "peer_lost");
                    e.set("evidence", "stateless_peer_reset");
                    if let Some(s) = &ev.get().segment {
                        e.set("lost", s.from());
                    }
                    if let Some(t) = self.flows.get_mut(r) {
                        t.peer_lost_reported = true;
                    }
                    out.push(e);
                }
                !member || verbose
            }
            EventKind::TimeWaitReuse => true,
            EventKind::Retransmit => {
                self.arm(now.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::PeerLost);
                verbose
            }
            _ => verbose && !member,
        };
        if old_state != new_state {
            self.on_transition(r, raw, (old_state, new_state), &mut ev, out);
        }
        if print {
            out.insert(at, ev.into_event());
        }
        self.rate_limit(r, now, out);
    }

    /// Start remembering a flow; returns how it is named from now on, and
    /// what ending an older incarnation's accounting produced (a
    /// `syn_flood_ended`; the `conn` record of one the table evicted
    /// without a word, which a new flow on its 4-tuple shows before the
    /// audit could).
    fn start_tracking(&mut self, id: &FlowId, raw: &FlowEvent, iface: Arc<str>) -> (FlowRef, Vec<Event>) {
        let t = Tracked {
            iface,
            orient: raw.initiator,
            state: ConnState::from_raw(raw.new_state),
            retransmits: None,
            half_open_counted: false,
            half_open_reported: false,
            flood_member: false,
            tw_counted: false,
            closer: Closer::Client,
            close_wait_armed: false,
            peer_lost_reported: false,
            deadlines_pending: 0,
            bucket: TokenBucket::full(self.cfg.per_flow_rate, raw.ts_ns),
            ended: false,
            last_rec: None,
            first_ns: raw.ts_ns,
            initiator: raw.initiator,
            interim_armed: false,
        };
        let (r, old) = self.flows.insert(*id, t);
        // Into the audit's round robin once tracked: its sweep keeps only
        // flows tracked in the same incarnation.
        let flows = &self.flows;
        self.audit.push(r, flows.len(), |r| flows.get(r).is_some());
        self.arm_interim(r, raw.ts_ns);
        // A new incarnation of the 4-tuple: the old one's accounting ends.
        let Some(old) = old else { return (r, Vec::new()) };
        let mut out = Vec::new();
        if !old.ended {
            self.vanished += 1;
            let (rec, last_ns) = conn::vanished_record(&old, raw.ts_ns);
            out.extend(self.conn_record(id, old.iface.clone(), &rec, conn::Ending { end: Some(EndReason::Evicted), reset: None, last_ns }));
        }
        out.extend(self.release(id, &old, raw.ts_ns));
        (r, out)
    }

    /// Undo the counts a flow held: its place among its server's half-open
    /// connections (which may end a SYN flood: returned) and in TIME_WAIT
    /// pressure.
    fn release(&mut self, id: &FlowId, t: &Tracked, at: u64) -> Option<Event> {
        let (client, server) = t.endpoints(id);
        if t.tw_counted {
            self.pressure.remove(client.ip(), server, self.cfg.time_wait_pressure);
        }
        if t.half_open_counted {
            return self.floods.closed(server, at, self.ts(at), self.cfg.syn_flood_threshold);
        }
        None
    }

    /// Drop the daemon's memory of a flow.
    fn forget(&mut self, r: FlowRef, at: u64) -> Vec<Event> {
        let Some(id) = self.flows.id(r) else { return Vec::new() };
        self.flows.remove(r).and_then(|t| self.release(&id, &t, at)).into_iter().collect()
    }

    /// With `--conn-interval` (and `conn` records printed), the first
    /// interim record of flow `r`, opened at `at`, unless one is pending
    /// (a new incarnation on the same entry keeps the chain it finds).
    fn arm_interim(&mut self, r: FlowRef, at: u64) {
        let Some(every) = self.cfg.conn_interval.filter(|_| self.cfg.events.conn) else { return };
        match self.flows.get_mut(r) {
            Some(t) if !t.interim_armed => t.interim_armed = true,
            _ => return,
        }
        self.arm(at.saturating_add(dur_ns(every)), r, Deadline::Interim);
    }

    /// `what` for flow `r` at `at`; nothing if `r` is stale (it would
    /// never fire).
    fn arm(&mut self, at: u64, r: FlowRef, what: Deadline) {
        let Some(t) = self.flows.get_mut(r) else { return };
        if what.pending() {
            t.deadlines_pending += 1;
        }
        let flows = &self.flows;
        self.deadlines.push(at, r, what, flows.len(), |r| flows.get(r).is_some());
    }

    /// When the next deadline falls (monotonic ns), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.next()
    }

    /// Deadlines waiting, stale ones included.
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// A connection opening with a SYN: count it among its server's
    /// half-open ones. Whether it is part of a flood comes back; what that
    /// printed (`syn_flood`, or the end of a flood whose oldest connections
    /// it made the daemon forget) goes to `out`.
    fn count_half_open(&mut self, r: FlowRef, server: SocketAddr, iface: &Arc<str>, now: u64, out: &mut Vec<Event>) -> bool {
        let (flood_started, member) = self.floods.syn(server, iface, now, self.ts(now), self.cfg.syn_flood_threshold);
        if flood_started.is_some() {
            // Every half-open connection of this server is part of the flood now.
            for (id, t) in self.flows.iter_mut() {
                if t.half_open_counted && t.endpoints(id).1 == server {
                    t.flood_member = true;
                }
            }
        }
        if let Some(t) = self.flows.get_mut(r) {
            t.half_open_counted = true;
            t.flood_member = member;
            self.floods.opened(r);
        }
        out.extend(flood_started);
        self.shed_half_open(now, out);
        member
    }

    /// Past `max_half_open_tracked` half-open connections, forget the oldest
    /// (the kernel evicted them already: its tables are no larger); what
    /// forgetting them printed (a `syn_flood_ended`) goes to `out`.
    fn shed_half_open(&mut self, now: u64, out: &mut Vec<Event>) {
        let cap = self.cfg.max_half_open_tracked.max(1);
        while let Some(r) = self.floods.oldest_over(cap) {
            if self.flows.get(r).is_some_and(|t| t.half_open_counted) {
                self.vanished += 1;
                out.extend(self.forget(r, now));
            }
        }
        let flows = &self.flows;
        self.floods.compact(cap, |r| flows.get(r).is_some_and(|t| t.half_open_counted));
    }

    /// Past `max_tracked` flows followed, the reporter follows more than
    /// one family's tables hold: some are likely gone from them (a full LRU table evicted
    /// them, mostly TIME_WAIT flows waiting for their deadline). Look for
    /// them in the audit's order, oldest first, `SHED_CHECKS` flows per
    /// new one, and forget those gone as the audit does, but deadline
    /// pending or not: a TIME_WAIT evicted so gets no `time_wait_expired`
    /// (it is counted in `vanished`). Keeps the daemon's memory bounded by
    /// the tables when connections end faster than TIME_WAIT expires.
    fn shed_gone(&mut self, now: u64, out: &mut Vec<Event>) {
        let mut checks = SHED_CHECKS;
        while self.flows.len() > self.cfg.max_tracked.max(1) && checks > 0 {
            let Some(r) = self.audit.next() else { return };
            let Some(id) = self.flows.id(r) else { continue };
            checks -= 1;
            if self.lookup.lookup(&id).is_some() {
                self.audit.requeue(r);
                continue;
            }
            self.vanished += 1;
            out.extend(self.end_vanished(r, now));
            out.extend(self.forget(r, now));
        }
    }

    /// A half-open connection completed or closed.
    fn leave_half_open(&mut self, r: FlowRef, new_state: ConnState, ev: &mut Decoding<'_>, now: u64) -> Option<Event> {
        let id = self.flows.id(r)?;
        let (counted, reported, server) = {
            let t = self.flows.get_mut(r)?;
            let r = (t.half_open_counted, t.half_open_reported, t.endpoints(&id).1);
            t.half_open_counted = false;
            t.half_open_reported = false;
            r
        };
        let mut out = None;
        if reported {
            let mut e = self.flow_event(r, ev, EventKind::HalfOpenEnded);
            e.set("outcome", if new_state == ConnState::Close { "reset" } else { "established" });
            out = Some(e);
        }
        if counted {
            return self.floods.closed(server, now, self.ts(now), self.cfg.syn_flood_threshold).or(out);
        }
        out
    }

    /// A flow's client entered TIME_WAIT: count it towards TIME_WAIT
    /// pressure, which this one may make reportable.
    fn count_time_wait(&mut self, r: FlowRef, ev: &Decoding<'_>, now: u64) -> Option<Event> {
        let id = self.flows.id(r)?;
        let t = self.flows.get_mut(r)?;
        if std::mem::replace(&mut t.tw_counted, true) {
            return None;
        }
        let (client, server) = t.endpoints(&id);
        let ip = client.ip();
        self.pressure.add(ip, server, self.cfg.time_wait_pressure, self.ts(now), ev.iface())
    }

    /// A flow left TIME_WAIT (reuse, assassination): no longer pressure.
    fn uncount_time_wait(&mut self, r: FlowRef) {
        let Some(id) = self.flows.id(r) else { return };
        let Some(t) = self.flows.get_mut(r) else { return };
        if !std::mem::take(&mut t.tw_counted) {
            return;
        }
        let (client, server) = t.endpoints(&id);
        let ip = client.ip();
        self.pressure.remove(ip, server, self.cfg.time_wait_pressure);
    }

    /// Check up to `budget` tracked flows that wait for no deadline (open
    /// connections, mostly) against the kernel tables, round robin: one
    /// that is gone was evicted without a close. Counted in `vanished` and
    /// forgotten, so evictions are not silent and the daemon's memory does
    /// not keep flows the kernel dropped. Returns what forgetting printed.
    ///
    /// The audit also keeps each open flow's latest record (for the `conn`
    /// record of a flow evicted later) and ends flows quiet for longer than
    /// the idle timeout: it sees every flow once per round, so an idle
    /// connection is ended at most a round late (tracked flows /
    /// `budget` seconds).
    pub fn audit(&mut self, now: u64, budget: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for _ in 0..budget.min(self.audit.len()) {
            let Some(r) = self.audit.next() else { break };
            let (Some(t), Some(id)) = (self.flows.get(r), self.flows.id(r)) else { continue };
            let pending = t.deadlines_pending > 0;
            if let Some(rec) = self.lookup.lookup(&id) {
                // Idle whatever else is pending: a connection established
                // long before its handshake deadline (`--half-open-timeout`)
                // came may fall idle first.
                if conn::open(rec.state) && expiry::idle_for(&rec, now) >= dur_ns(self.cfg.idle_timeout) {
                    out.extend(self.end_flow(r, &rec, EndReason::IdleTimeout, now));
                    self.lookup.remove(&id);
                    out.extend(self.forget(r, now));
                    continue;
                }
                if pending {
                    self.audit.requeue(r);
                    continue;
                }
                if let Some(t) = self.flows.get_mut(r) {
                    match &mut t.last_rec {
                        Some(last) => **last = rec,
                        None => t.last_rec = Some(Box::new(rec)),
                    }
                }
                self.audit.requeue(r);
                continue;
            }
            if pending {
                // Its deadline reads the table when it comes.
                self.audit.requeue(r);
                continue;
            }
            self.vanished += 1;
            out.extend(self.end_vanished(r, now));
            out.extend(self.forget(r, now));
        }
        out
    }

    /// The per-flow rate limit, on what one kernel event of flow `id` made.
    fn rate_limit(&mut self, r: FlowRef, now: u64, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let Some(t) = self.flows.get_mut(r) else { return };
        self.suppressed += t.bucket.limit(self.cfg.per_flow_rate, now, events);
    }

    /// An event of the reporter's about flow `r`, which `like` is about, at
    /// the same time. What it takes of `like` needs no decoding, unless
    /// `r` is stale.
    fn flow_event(&self, r: FlowRef, like: &mut Decoding<'_>, kind: EventKind) -> Event {
        let mut e = match self.flows.get(r).zip(self.flows.id(r)) {
            Some((t, id)) => {
                let (client, server) = t.endpoints(&id);
                Event::new(like.ts(), kind, t.iface.clone(), Some(Endpoint::Socket(client)), server)
            }
            None => {
                let like = like.get();
                Event::new(like.ts, kind, like.iface.clone(), like.client, like.server)
            }
        };
        e.picked_up = like.picked_up();
        e
    }

    fn on_transition(&mut self, r: FlowRef, raw: &FlowEvent, (old, new): (ConnState, ConnState), ev: &mut Decoding<'_>, out: &mut Vec<Event>) {
        let now = raw.ts_ns;
        match new {
            ConnState::TimeWait => {
                // RFC 9293 §3.6: the active closer waits 2 MSL.
                let closer = conn::closer_of(raw.detail & DETAIL_CLOSER_LO != 0, raw.detail & DETAIL_CLOSER_HI != 0, raw.initiator);
                if let Some(t) = self.flows.get_mut(r) {
                    t.closer = closer;
                }
                let mut e = self.flow_event(r, ev, EventKind::TimeWait);
                e.set("closer", closer.as_str());
                e.set("timeout_s", self.cfg.time_wait_timeout.as_secs_f64());
                out.push(e);
                self.arm(now.saturating_add(dur_ns(self.cfg.time_wait_timeout)), r, Deadline::TimeWait);
                if closer != Closer::Server {
                    out.extend(self.count_time_wait(r, ev, now));
                }
            }
            // Reset (RFC 9293 §3.10.7): nothing more to follow than
            // segments still in flight.
            ConnState::Close if old != ConnState::Close => {
                self.arm(now.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::Closed);
            }
            ConnState::FinWait | ConnState::CloseWait => {
                let armed = self.flows.get(r).is_some_and(|t| t.close_wait_armed);
                if !armed {
                    self.arm(now.saturating_add(dur_ns(self.cfg.close_wait_timeout)), r, Deadline::CloseWait);
                    if let Some(t) = self.flows.get_mut(r) {
                        t.close_wait_armed = true;
                    }
                }
            }
            _ => {}
        }
        // Leaving TIME_WAIT (reuse, assassination): no longer pressure.
        if old == ConnState::TimeWait {
            self.uncount_time_wait(r);
        }
    }
}

/// The kernel event being handled, decoded when something needs more of
/// it than its raw record says: for most events nothing does (they are not
/// printed, and what the reporter makes of them needs the record's states
/// and the flow's endpoints only).
pub(crate) struct Decoding<'a> {
    raw: &'a FlowEvent,
    kind: EventKind,
    source: Source<'a>,
}

enum Source<'a> {
    Raw(&'a Decoder),
    Decoded(Event),
}

impl<'a> Decoding<'a> {
    fn new(raw: &'a FlowEvent, kind: EventKind, decoder: &'a Decoder) -> Self {
        Decoding { raw, kind, source: Source::Raw(decoder) }
    }

    /// `raw` already decoded as `ev` (catching up, adopting).
    pub(crate) fn decoded(raw: &'a FlowEvent, ev: Event) -> Self {
        Decoding { raw, kind: ev.event, source: Source::Decoded(ev) }
    }

    fn get(&mut self) -> &Event {
        if let Source::Raw(decoder) = self.source {
            self.source = Source::Decoded(decoder.event_of(self.raw, self.kind));
        }
        match &self.source {
            Source::Decoded(ev) => ev,
            Source::Raw(_) => unreachable!("decoded above"),
        }
    }

    fn into_event(self) -> Event {
        match self.source {
            Source::Decoded(ev) => ev,
            Source::Raw(decoder) => decoder.event_of(self.raw, self.kind),
        }
    }

    /// The decoding's `ts`, `iface` and `picked_up`, without the rest.
    fn ts(&self) -> Timestamp {
        match &self.source {
            Source::Raw(decoder) => decoder.timestamp(self.raw.ts_ns),
            Source::Decoded(ev) => ev.ts,
        }
    }

    fn iface(&self) -> Arc<str> {
        match &self.source {
            Source::Raw(decoder) => decoder.ifname(self.raw.ifindex),
            Source::Decoded(ev) => ev.iface.clone(),
        }
    }

    fn picked_up(&self) -> bool {
        match &self.source {
            Source::Raw(_) => picked_up(self.raw.origin),
            Source::Decoded(ev) => ev.picked_up,
        }
    }
}

/// Flows `shed_gone` checks at most per new flow: more than one, so that
/// it catches up when the oldest it finds are still in the tables.
const SHED_CHECKS: usize = 4;

#[cfg(test)]
pub(crate) mod tests;
