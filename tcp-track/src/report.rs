//! From the kernel's transitions to what users run tcp-track for:
//! half-open connections, TIME_WAIT and what happens to it, resets, SYN
//! floods, CLOSE_WAIT that lingers, TIME_WAIT pressure.
//!
//! The kernel reports transitions; deadlines live here, in a heap keyed by
//! flow, and when one fires the flow's current record is read from the map
//! (through `FlowLookup`) rather than scanning the whole table. Time is the
//! kernel's monotonic clock in nanoseconds, passed in, so tests drive it.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use tcp_track_common::{
    event::{FlowEvent, DETAIL_CLOSER_HI, DETAIL_CLOSER_LO},
    flow::{coarse_time, FlowRecord, ORIGIN_SYN},
};

use crate::{
    config::{EventSet, ReportConfig},
    events::{client_server, Endpoint, Event, Timestamp},
    vocab::{ConnState, EventKind, ResetClass},
};

/// A flow, as the kernel keys it: family and the canonical endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowId {
    pub family: u8,
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
}

/// Hashed as one run of bytes: the reporter looks flows up for every
/// event, and the derived impl feeds the (keyed, flood-resistant) hasher
/// seven pieces, which costs several times more.
impl std::hash::Hash for FlowId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut bytes = [0u8; 37];
        bytes[0] = self.family;
        bytes[1..17].copy_from_slice(&self.lo_addr);
        bytes[17..33].copy_from_slice(&self.hi_addr);
        bytes[33..35].copy_from_slice(&self.lo_port.to_ne_bytes());
        bytes[35..37].copy_from_slice(&self.hi_port.to_ne_bytes());
        state.write(&bytes);
    }
}

impl FlowId {
    pub fn of(raw: &FlowEvent) -> FlowId {
        FlowId { family: raw.family, lo_addr: raw.lo_addr, hi_addr: raw.hi_addr, lo_port: raw.lo_port, hi_port: raw.hi_port }
    }
}

/// Reads a flow's current record from the kernel's maps (or a test's fake),
/// and removes records the daemon is done with.
pub trait FlowLookup {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord>;
    fn remove(&mut self, id: &FlowId);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    HalfOpen,
    HalfOpenExpiry,
    PeerLost,
    TimeWait,
    CloseWait,
    /// A reset connection's record is kept as long as a half-open timeout
    /// (segments still in flight), then dropped.
    Closed,
}

/// What the daemon remembers of a flow between kernel events.
#[derive(Debug)]
struct Tracked {
    iface: Arc<str>,
    client: SocketAddr,
    server: SocketAddr,
    /// Handshake retransmission times, SYN-ACKs and SYNs.
    synack_times: Vec<Timestamp>,
    syn_times: Vec<Timestamp>,
    /// Counted among its server's half-open connections.
    half_open_counted: bool,
    /// A `half_open` event was printed; a later event must close the story.
    half_open_reported: bool,
    /// Created while its server was flooded: individual events suppressed.
    flood_member: bool,
    /// Counted in TIME_WAIT pressure for (client ip, server).
    tw_counted: bool,
    close_wait_armed: bool,
    peer_lost_reported: bool,
    /// Which incarnation of the 4-tuple this is (unique per reporter).
    incarnation: u64,
    /// Deadlines armed and not yet fired: a flow with none is checked by
    /// the audit instead.
    deadlines_pending: u32,
    /// Rate limit: tokens and the time they were last refilled.
    tokens: f64,
    refilled_ns: u64,
    suppressed: u64,
}

#[derive(Debug, Default)]
struct ServerStats {
    half_open: u32,
    /// SYN arrival times within the last second, for the rate.
    recent_syns: std::collections::VecDeque<u64>,
    flooded_since: Option<u64>,
    flood_syns: u64,
    flood_peak: u32,
    iface: Arc<str>,
}

#[derive(Debug, Default)]
struct Pressure {
    count: u32,
    reported: bool,
}

pub struct Reporter<L: FlowLookup> {
    cfg: ReportConfig,
    lookup: L,
    flows: HashMap<FlowId, Tracked>,
    /// (when, flow, incarnation, what): a deadline of an older incarnation
    /// of a reused 4-tuple is stale when it fires.
    deadlines: BinaryHeap<Reverse<(u64, FlowId, u64, Deadline)>>,
    incarnations: u64,
    servers: HashMap<SocketAddr, ServerStats>,
    pressure: HashMap<(IpAddr, SocketAddr), Pressure>,
    /// Half-open connections in the order they opened (flow, incarnation);
    /// entries of flows no longer half-open are skipped, and compacted away.
    half_open_order: std::collections::VecDeque<(FlowId, u64)>,
    /// Flows currently counted as half-open.
    half_open_live: usize,
    /// Every tracked flow, for the audit's round robin (stale entries skipped).
    audit_order: std::collections::VecDeque<(FlowId, u64)>,
    clock: crate::clock::WallClock,
    /// Events not printed because of a flow's rate limit.
    pub suppressed: u64,
    /// Flows whose record was gone when a deadline came, without a close
    /// having been seen: LRU evictions, which the kernel does not report.
    pub vanished: u64,
    /// What the last kernel event produced, kept so that its allocation
    /// serves the next one.
    pending: Vec<Event>,
}

const NS: u64 = 1_000_000_000;

impl<L: FlowLookup> Reporter<L> {
    pub fn new(cfg: ReportConfig, lookup: L, clock: crate::clock::WallClock) -> Self {
        Reporter {
            cfg,
            lookup,
            flows: HashMap::new(),
            deadlines: BinaryHeap::new(),
            incarnations: 0,
            servers: HashMap::new(),
            pressure: HashMap::new(),
            half_open_order: std::collections::VecDeque::new(),
            half_open_live: 0,
            audit_order: std::collections::VecDeque::new(),
            clock,
            suppressed: 0,
            vanished: 0,
            pending: Vec::new(),
        }
    }

    pub fn lookup(&self) -> &L {
        &self.lookup
    }

    fn ts(&self, mono_ns: u64) -> Timestamp {
        Timestamp(self.clock.wall_time(mono_ns))
    }

    pub fn lookup_mut(&mut self) -> &mut L {
        &mut self.lookup
    }

    /// Flows the daemon currently keeps state for.
    pub fn tracked_flows(&self) -> usize {
        self.flows.len()
    }

    /// When the next deadline falls (monotonic ns), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((t, _, _, _))| *t)
    }

    /// Deadlines waiting, stale ones included (for tests).
    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    fn arm(&mut self, at: u64, id: FlowId, what: Deadline) {
        let incarnation = match self.flows.get_mut(&id) {
            Some(t) => {
                t.deadlines_pending += 1;
                t.incarnation
            }
            None => 0,
        };
        self.deadlines.push(Reverse((at, id, incarnation, what)));
        // Deadlines of forgotten flows wait in the heap until they come due;
        // under a flood that is a timeout's worth of SYNs. Sweep them out
        // once they outnumber the live ones (amortised O(1) per deadline).
        if self.deadlines.len() > 4 * self.flows.len() + 4096 {
            let flows = &self.flows;
            self.deadlines.retain(|Reverse((_, id, inc, _))| current(flows, id, *inc).is_some());
        }
    }

    /// Past `max_half_open_tracked` half-open connections, forget the oldest
    /// (the kernel evicted them already: its tables are no larger). Returns
    /// what forgetting them printed (a `syn_flood_ended`).
    fn shed_half_open(&mut self, now: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let cap = self.cfg.max_half_open_tracked.max(1);
        while self.half_open_live > cap {
            let Some((id, inc)) = self.half_open_order.pop_front() else { break };
            if current(&self.flows, &id, inc).is_some_and(|t| t.half_open_counted) {
                self.vanished += 1;
                out.extend(self.forget(&id, now));
            }
        }
        if self.half_open_order.len() > 2 * cap + 1024 {
            let flows = &self.flows;
            self.half_open_order.retain(|(id, inc)| current(flows, id, *inc).is_some_and(|t| t.half_open_counted));
        }
        out
    }

    /// One kernel event, already decoded into `ev`; returns what to print,
    /// drained from a buffer the reporter keeps for the next event.
    pub fn on_event(&mut self, raw: &FlowEvent, ev: Event) -> std::vec::Drain<'_, Event> {
        let mut out = std::mem::take(&mut self.pending);
        out.clear();
        self.handle(raw, ev, &mut out);
        self.pending = out;
        self.pending.drain(..)
    }

    fn handle(&mut self, raw: &FlowEvent, ev: Event, out: &mut Vec<Event>) {
        let id = FlowId::of(raw);
        let now = raw.ts_ns;
        let kind = ev.event;
        let (old_state, new_state) = (ConnState::from_raw(raw.old_state), ConnState::from_raw(raw.new_state));
        let opening = matches!(kind, EventKind::FlowNew | EventKind::TimeWaitReuse);
        // One look at the flow for the common case, an event on a flow
        // already tracked: server, flood membership and whether it is
        // half-open only change in the branches below that update them here.
        let known = if opening { None } else { self.flows.get(&id).map(|t| (t.server, t.flood_member, t.half_open_counted || t.half_open_reported)) };
        let (server, mut member, mut half_open) = match known {
            Some(k) => k,
            None => {
                out.extend(self.start_tracking(&id, raw, &ev));
                (client_server(raw).1, false, false)
            }
        };
        let verbose = self.cfg.events == EventSet::All;

        // A connection opening: count it among its server's half-open ones.
        if opening && raw.origin == ORIGIN_SYN {
            self.arm(now + dur_ns(self.cfg.half_open_timeout), id, Deadline::HalfOpen);
            let flood_started = self.count_syn(server, &ev.iface, now);
            member = self.servers.get(&server).is_some_and(|s| s.flooded_since.is_some());
            half_open = true;
            if let Some(t) = self.flows.get_mut(&id) {
                t.half_open_counted = true;
                t.flood_member = member;
                self.half_open_order.push_back((id, t.incarnation));
                self.half_open_live += 1;
            }
            out.extend(flood_started);
            out.extend(self.shed_half_open(now));
        }
        if kind == EventKind::HandshakeRetransmit {
            if let Some(t) = self.flows.get_mut(&id) {
                let from_server = ev.segment.is_some_and(|s| !s.from_client);
                let list = if from_server { &mut t.synack_times } else { &mut t.syn_times };
                if list.len() < 16 {
                    list.push(ev.ts);
                }
            }
        }
        // The handshake done, or the connection gone: no longer half-open.
        if new_state >= ConnState::Established && half_open {
            out.extend(self.leave_half_open(&id, new_state, &ev, now));
        }

        // The event itself goes here, ahead of what it causes below; it is
        // moved in at the end because those are built from it.
        let at = out.len();
        let print = match kind {
            EventKind::Reset => {
                if ResetClass::from_raw(raw.reset) == ResetClass::StatelessPeer {
                    // RFC 9293 §3.10.7.1: only a TCP without the connection
                    // answers this way; the receiver was half-open.
                    let mut e = self.flow_event(&id, &ev, EventKind::HalfOpen);
                    e.set("kind", "peer_lost");
                    e.set("evidence", "stateless_peer_reset");
                    if let Some(s) = &ev.segment {
                        e.set("lost", s.from());
                    }
                    if let Some(t) = self.flows.get_mut(&id) {
                        t.peer_lost_reported = true;
                    }
                    out.push(e);
                }
                !member || verbose
            }
            EventKind::TimeWaitReuse => true,
            EventKind::Retransmit => {
                self.arm(now + dur_ns(self.cfg.half_open_timeout), id, Deadline::PeerLost);
                verbose
            }
            _ => verbose && !member,
        };
        if old_state != new_state {
            self.on_transition(&id, raw, (old_state, new_state), &ev, out);
        }
        if print {
            out.insert(at, ev);
        }
        self.rate_limit(&id, now, out);
    }

    /// Start remembering a flow; returns what ending an older incarnation's
    /// accounting produced (a `syn_flood_ended`).
    fn start_tracking(&mut self, id: &FlowId, raw: &FlowEvent, ev: &Event) -> Option<Event> {
        let (client, server) = client_server(raw);
        self.incarnations += 1;
        let t = Tracked {
            incarnation: self.incarnations,
            iface: ev.iface.clone(),
            client,
            server,
            synack_times: Vec::new(),
            syn_times: Vec::new(),
            half_open_counted: false,
            half_open_reported: false,
            flood_member: false,
            tw_counted: false,
            close_wait_armed: false,
            peer_lost_reported: false,
            deadlines_pending: 0,
            tokens: 2.0 * self.cfg.per_flow_rate as f64,
            refilled_ns: raw.ts_ns,
            suppressed: 0,
        };
        let incarnation = t.incarnation;
        let old = self.flows.insert(*id, t);
        // Into the audit's round robin once tracked: the sweep below keeps
        // only flows tracked in the same incarnation.
        self.audit_order.push_back((*id, incarnation));
        if self.audit_order.len() > 2 * self.flows.len() + 1024 {
            let flows = &self.flows;
            self.audit_order.retain(|(id, inc)| current(flows, id, *inc).is_some());
        }
        // A new incarnation of the 4-tuple: the old one's accounting ends.
        self.release(&old?, raw.ts_ns)
    }

    /// Undo the counts a flow held: its place among its server's half-open
    /// connections (which may end a SYN flood: returned) and in TIME_WAIT
    /// pressure.
    fn release(&mut self, t: &Tracked, at: u64) -> Option<Event> {
        if t.tw_counted {
            self.drop_pressure(t.client.ip(), t.server);
        }
        if t.half_open_counted {
            return self.uncount(t.server, at);
        }
        None
    }

    /// One fewer TIME_WAIT from `ip` towards `server`; the report is
    /// re-armed once the count is well below the threshold.
    fn drop_pressure(&mut self, ip: IpAddr, server: SocketAddr) {
        let threshold = self.cfg.time_wait_pressure;
        if let Some(p) = self.pressure.get_mut(&(ip, server)) {
            p.count = p.count.saturating_sub(1);
            if p.count == 0 {
                self.pressure.remove(&(ip, server));
            } else if p.count < threshold / 2 {
                p.reported = false;
            }
        }
    }

    /// A SYN towards `server`; returns `syn_flood` when this one starts a flood.
    fn count_syn(&mut self, server: SocketAddr, iface: &Arc<str>, now: u64) -> Option<Event> {
        let threshold = self.cfg.syn_flood_threshold;
        let s = self.servers.entry(server).or_default();
        s.half_open += 1;
        s.recent_syns.push_back(now);
        while s.recent_syns.front().is_some_and(|&t| now.saturating_sub(t) > NS) {
            s.recent_syns.pop_front();
        }
        if s.flooded_since.is_some() {
            s.flood_syns += 1;
            s.flood_peak = s.flood_peak.max(s.half_open);
            return None;
        }
        if s.half_open <= threshold {
            return None;
        }
        s.flooded_since = Some(now);
        s.flood_syns = 1;
        s.flood_peak = s.half_open;
        s.iface = iface.clone();
        let (half_open, rate) = (s.half_open, s.recent_syns.len());
        // Every half-open connection of this server is part of the flood now.
        for t in self.flows.values_mut() {
            if t.server == server && t.half_open_counted {
                t.flood_member = true;
            }
        }
        let mut e = self.server_event(server, iface.clone(), now, EventKind::SynFlood);
        e.set("half_open", half_open);
        e.set("syn_rate", rate);
        e.set("threshold", threshold);
        Some(e)
    }

    fn server_event(&self, server: SocketAddr, iface: Arc<str>, now: u64, kind: EventKind) -> Event {
        Event::new(self.ts(now), kind, iface, None, server)
    }

    /// An event of the reporter's about the flow `like` is about, at the
    /// same time.
    fn flow_event(&self, id: &FlowId, like: &Event, kind: EventKind) -> Event {
        let mut e = match self.flows.get(id) {
            Some(t) => Event::new(like.ts, kind, t.iface.clone(), Some(Endpoint::Socket(t.client)), t.server),
            None => Event::new(like.ts, kind, like.iface.clone(), like.client, like.server),
        };
        e.picked_up = like.picked_up;
        e
    }

    /// A half-open connection completed or closed.
    fn leave_half_open(&mut self, id: &FlowId, new_state: ConnState, ev: &Event, now: u64) -> Option<Event> {
        let (counted, reported, server) = {
            let t = self.flows.get_mut(id)?;
            let r = (t.half_open_counted, t.half_open_reported, t.server);
            t.half_open_counted = false;
            t.half_open_reported = false;
            r
        };
        let mut out = None;
        if reported {
            let mut e = self.flow_event(id, ev, EventKind::HalfOpenEnded);
            e.set("outcome", if new_state == ConnState::Close { "reset" } else { "established" });
            out = Some(e);
        }
        if counted {
            return self.uncount(server, now).or(out);
        }
        out
    }

    /// One fewer half-open connection to `server`; `syn_flood_ended` when
    /// that ends a flood.
    fn uncount(&mut self, server: SocketAddr, now: u64) -> Option<Event> {
        self.half_open_live = self.half_open_live.saturating_sub(1);
        let threshold = self.cfg.syn_flood_threshold;
        let s = self.servers.get_mut(&server)?;
        s.half_open = s.half_open.saturating_sub(1);
        if s.half_open == 0 && s.flooded_since.is_none() {
            // Nothing left to remember of this server (spoofed SYNs to many
            // ports must not grow this map without bound).
            self.servers.remove(&server);
            return None;
        }
        let since = s.flooded_since?;
        if s.half_open >= threshold / 2 {
            return None;
        }
        s.flooded_since = None;
        let (syns, peak, iface) = (s.flood_syns, s.flood_peak, s.iface.clone());
        let mut e = self.server_event(server, iface, now, EventKind::SynFloodEnded);
        e.set("duration_s", ((now.saturating_sub(since)) as f64 / NS as f64 * 1000.0).round() / 1000.0);
        e.set("syns", syns);
        e.set("peak_half_open", peak);
        e.set("half_open", self.servers.get(&server).map(|s| s.half_open).unwrap_or(0));
        Some(e)
    }

    fn on_transition(&mut self, id: &FlowId, raw: &FlowEvent, (old, new): (ConnState, ConnState), ev: &Event, out: &mut Vec<Event>) {
        let now = raw.ts_ns;
        match new {
            ConnState::TimeWait => {
                // RFC 9293 §3.6: the active closer waits 2 MSL.
                let closer = match raw.detail & (DETAIL_CLOSER_LO | DETAIL_CLOSER_HI) {
                    x if x == DETAIL_CLOSER_LO | DETAIL_CLOSER_HI => "both",
                    DETAIL_CLOSER_LO => side_of(raw, 0),
                    _ => side_of(raw, 1),
                };
                let mut e = self.flow_event(id, ev, EventKind::TimeWait);
                e.set("closer", closer);
                e.set("timeout_s", self.cfg.time_wait_timeout.as_secs_f64());
                out.push(e);
                self.arm(now + dur_ns(self.cfg.time_wait_timeout), *id, Deadline::TimeWait);
                if closer != "server" {
                    out.extend(self.count_time_wait(id, ev, now));
                }
            }
            // Reset (RFC 9293 §3.10.7): nothing more to follow than
            // segments still in flight.
            ConnState::Close if old != ConnState::Close => {
                self.arm(now + dur_ns(self.cfg.half_open_timeout), *id, Deadline::Closed);
            }
            ConnState::FinWait | ConnState::CloseWait => {
                let armed = self.flows.get(id).is_some_and(|t| t.close_wait_armed);
                if !armed {
                    self.arm(now + dur_ns(self.cfg.close_wait_timeout), *id, Deadline::CloseWait);
                    if let Some(t) = self.flows.get_mut(id) {
                        t.close_wait_armed = true;
                    }
                }
            }
            _ => {}
        }
        // Leaving TIME_WAIT (reuse, assassination): no longer pressure.
        if old == ConnState::TimeWait {
            self.uncount_time_wait(id);
        }
    }

    fn count_time_wait(&mut self, id: &FlowId, ev: &Event, now: u64) -> Option<Event> {
        let threshold = self.cfg.time_wait_pressure;
        let t = self.flows.get_mut(id)?;
        if t.tw_counted {
            return None;
        }
        t.tw_counted = true;
        let key = (t.client.ip(), t.server);
        let p = self.pressure.entry(key).or_default();
        p.count += 1;
        if p.count < threshold || p.reported {
            return None;
        }
        p.reported = true;
        let count = p.count;
        let mut e = self.server_event(key.1, ev.iface.clone(), now, EventKind::TimeWaitPressure);
        e.client = Some(Endpoint::Host(key.0));
        e.set("time_wait", count);
        e.set("threshold", threshold);
        e.set("meaning", "each TIME_WAIT holds a client port for this server: the client may run out of ephemeral ports");
        Some(e)
    }

    fn uncount_time_wait(&mut self, id: &FlowId) {
        let Some(t) = self.flows.get_mut(id) else { return };
        if !std::mem::take(&mut t.tw_counted) {
            return;
        }
        let (ip, server) = (t.client.ip(), t.server);
        self.drop_pressure(ip, server);
    }

    /// Deadlines due at `now` (monotonic ns).
    pub fn on_time(&mut self, now: u64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(Reverse((at, id, incarnation, what))) = self.deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(t) = self.flows.get_mut(&id).filter(|t| t.incarnation == incarnation) {
                t.deadlines_pending = t.deadlines_pending.saturating_sub(1);
                out.extend(self.fire(&id, what, at));
            }
        }
        out
    }

    fn fire(&mut self, id: &FlowId, what: Deadline, at: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let Some(t) = self.flows.get(id) else { return out };
        let rec = self.lookup.lookup(id);
        let state = rec.map(|r| ConnState::from_raw(r.state));
        // Its kind is set by each deadline below.
        let base = Event::new(self.ts(at), EventKind::HalfOpen, t.iface.clone(), Some(Endpoint::Socket(t.client)), t.server);
        let client_dir = rec.map(|r| r.initiator & 1).unwrap_or(0);
        match what {
            Deadline::HalfOpen => {
                let Some(r) = rec else {
                    // Gone while still half-open: evicted. A connection
                    // that completed or was reset since is left to the
                    // audit or its own deadline.
                    if t.half_open_counted {
                        self.vanished += 1;
                        return self.forget(id, at);
                    }
                    return out;
                };
                let member = t.flood_member;
                let kind = match ConnState::from_raw(r.state) {
                    ConnState::SynSent | ConnState::SynSent2 => "syn_sent",
                    ConnState::SynRecv => "syn_recv",
                    _ => return out,
                };
                let mut e = Event { event: EventKind::HalfOpen, ..base };
                e.set("kind", kind);
                e.set("age_s", self.cfg.half_open_timeout.as_secs_f64());
                if kind == "syn_sent" {
                    e.set("syn_retransmits", r.peer(client_dir).retrans);
                    e.set("retransmit_times", t.syn_times.clone());
                } else {
                    e.set("synack_retransmits", r.peer(client_dir ^ 1).retrans);
                    e.set("retransmit_times", t.synack_times.clone());
                }
                if let Some(t) = self.flows.get_mut(id) {
                    t.half_open_reported = true;
                }
                self.arm(at + dur_ns(self.cfg.half_open_timeout), *id, Deadline::HalfOpenExpiry);
                if !member {
                    out.push(e);
                }
            }
            Deadline::HalfOpenExpiry => {
                let still = state.is_some_and(|s| s <= ConnState::SynRecv);
                let quiet = rec.is_none_or(|r| idle_for(&r, at) >= dur_ns(self.cfg.half_open_timeout));
                if still && !quiet {
                    // Still retransmitting: not given up yet.
                    self.arm(at + dur_ns(self.cfg.half_open_timeout), *id, Deadline::HalfOpenExpiry);
                    return out;
                }
                if still || rec.is_none() {
                    let member = t.flood_member;
                    let mut e = Event { event: EventKind::HalfOpenEnded, ..base };
                    e.set("outcome", "expired");
                    self.lookup.remove(id);
                    out.extend(self.forget(id, at));
                    if !member {
                        out.insert(0, e);
                    }
                }
            }
            Deadline::PeerLost => {
                let Some(r) = rec else { return out };
                if !(ConnState::Established..=ConnState::LastAck).contains(&ConnState::from_raw(r.state)) || t.peer_lost_reported {
                    return out;
                }
                // Which side is still retransmitting into silence?
                let stalled = [0u8, 1].into_iter().find(|&d| r.peer(d).retrans > 0);
                let Some(d) = stalled else { return out };
                if idle_for(&r, at) > dur_ns(self.cfg.half_open_timeout) {
                    return out;
                }
                let mut e = Event { event: EventKind::HalfOpen, ..base };
                e.set("kind", "peer_lost");
                e.set("evidence", "unacknowledged_retransmissions");
                e.set("retransmitting", if d == client_dir { "client" } else { "server" });
                e.set("lost", if d == client_dir { "server" } else { "client" });
                e.set("retransmits", r.peer(d).retrans);
                if let Some(t) = self.flows.get_mut(id) {
                    t.peer_lost_reported = true;
                }
                out.push(e);
            }
            Deadline::TimeWait => {
                match rec {
                    Some(_) if state == Some(ConnState::TimeWait) => {
                        let mut e = Event { event: EventKind::TimeWaitExpired, ..base };
                        e.set("after_s", self.cfg.time_wait_timeout.as_secs_f64());
                        out.push(e);
                        // The endpoints have forgotten it: so do we.
                        self.lookup.remove(id);
                        out.extend(self.forget(id, at));
                    }
                    // Evicted from the table: it expired all the same.
                    None => {
                        self.vanished += 1;
                        let mut e = Event { event: EventKind::TimeWaitExpired, ..base };
                        e.set("after_s", self.cfg.time_wait_timeout.as_secs_f64());
                        out.push(e);
                        out.extend(self.forget(id, at));
                    }
                    // Reused or assassinated: that was reported when it happened.
                    Some(_) => {}
                }
            }
            Deadline::Closed => {
                if state.is_none_or(|s| s == ConnState::Close) {
                    self.lookup.remove(id);
                    out.extend(self.forget(id, at));
                }
            }
            Deadline::CloseWait => {
                let Some(r) = rec else { return out };
                if !matches!(ConnState::from_raw(r.state), ConnState::FinWait | ConnState::CloseWait) {
                    return out;
                }
                let closer_lo = r.info & tcp_track_common::flow::INFO_CLOSER_LO != 0;
                let waiting_dir = if closer_lo { 1 } else { 0 };
                let mut e = Event { event: EventKind::CloseWait, ..base };
                e.set("waiting", if waiting_dir == client_dir { "client" } else { "server" });
                e.set("for_s", self.cfg.close_wait_timeout.as_secs_f64());
                e.set("meaning", "the other side closed long ago; the application on this side has not closed its socket");
                out.push(e);
            }
        }
        out
    }

    /// Check up to `budget` tracked flows that wait for no deadline (open
    /// connections, mostly) against the kernel tables, round robin: one
    /// that is gone was evicted without a close. Counted in `vanished` and
    /// forgotten, so evictions are not silent and the daemon's memory does
    /// not keep flows the kernel dropped. Returns what forgetting printed.
    pub fn audit(&mut self, now: u64, budget: usize) -> Vec<Event> {
        let mut out = Vec::new();
        for _ in 0..budget.min(self.audit_order.len()) {
            let Some((id, inc)) = self.audit_order.pop_front() else { break };
            let Some(t) = current(&self.flows, &id, inc) else { continue };
            if t.deadlines_pending > 0 || self.lookup.lookup(&id).is_some() {
                self.audit_order.push_back((id, inc));
                continue;
            }
            self.vanished += 1;
            out.extend(self.forget(&id, now));
        }
        out
    }

    /// Drop the daemon's memory of a flow.
    fn forget(&mut self, id: &FlowId, at: u64) -> Vec<Event> {
        self.flows.remove(id).and_then(|t| self.release(&t, at)).into_iter().collect()
    }

    /// At most `per_flow_rate` events a second per flow (burst of twice
    /// that); SYN-flood events are about a server and pass.
    fn rate_limit(&mut self, id: &FlowId, now: u64, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let rate = self.cfg.per_flow_rate as f64;
        let Some(t) = self.flows.get_mut(id) else { return };
        let total = &mut self.suppressed;
        events.retain_mut(|e| {
            if e.client.is_none() {
                return true;
            }
            let elapsed = now.saturating_sub(t.refilled_ns) as f64 / NS as f64;
            t.tokens = (t.tokens + elapsed * rate).min(2.0 * rate);
            t.refilled_ns = now;
            if t.tokens >= 1.0 {
                t.tokens -= 1.0;
                if t.suppressed > 0 {
                    e.set("suppressed_before", t.suppressed);
                    t.suppressed = 0;
                }
                true
            } else {
                t.suppressed += 1;
                *total += 1;
                false
            }
        });
    }
}

fn dur_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The tracked flow `id` if it is still incarnation `incarnation`: queue
/// and heap entries of a flow since forgotten or reincarnated are stale.
fn current<'a>(flows: &'a HashMap<FlowId, Tracked>, id: &FlowId, incarnation: u64) -> Option<&'a Tracked> {
    flows.get(id).filter(|t| t.incarnation == incarnation)
}

/// How long since the flow's last segment, from its coarse timestamp
/// (2^20 ns units), rounded up so that truncation never makes a flow look
/// more recent than it is.
fn idle_for(r: &FlowRecord, now: u64) -> u64 {
    ((coarse_time(now).wrapping_sub(r.last_seen) as u64) + 1) << 20
}

/// `client` or `server`: the side sending in direction `dir`.
fn side_of(raw: &FlowEvent, dir: u8) -> &'static str {
    if dir == raw.initiator & 1 { "client" } else { "server" }
}

#[cfg(test)]
mod tests;
