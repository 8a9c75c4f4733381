//! Connection records (`conn`): one per connection when it ends, whichever
//! way, in Zeek's conn.log vocabulary (`tcp_track_common::conn` derives
//! the figures from the flow record), and interim ones with
//! `--conn-interval`.
//!
//! Who decides that a connection ended:
//! - the kernel, for what a segment does (the active closer entering
//!   TIME_WAIT, a RST) and for a half-open entry evicted to make room: it
//!   writes an `EVENT_CONN_END` record with a snapshot of the flow record
//!   (`on_conn_end`), since a TIME_WAIT reuse or an eviction can overwrite
//!   or remove the record before the daemon could read it;
//! - the daemon, for what happens when no segment comes: a handshake given
//!   up after the half-open timeout (`expiry`), a connection idle past
//!   `--idle-timeout` (found by the audit), and its own stop (`stop`): it
//!   reads the record from the table then, and removes it, so that a later
//!   segment starts a new flow (with its own record) rather than ending
//!   this one twice.
//! - An established flow the LRU table evicted is gone without a word
//!   from the kernel: the audit finds it missing and writes its record
//!   from the last snapshot it read (`Tracked::last_rec`, taken at each of
//!   its passes over the flow, so its figures can be up to one audit round
//!   old; all zero and `OTH` if it never saw the record).
//!
//! Exactly one final record per flow: `Tracked::ended` says this
//! incarnation has had its record, and a new incarnation (a SYN reusing a
//! closed 4-tuple) starts with a new `Tracked` or clears it.

use std::sync::Arc;

use tcp_track_common::{
    conn::{conn_state_name, last_seen_ns, ConnSummary},
    event::FlowEvent,
    flow::{picked_up, FlowRecord, INFO_CLOSER_HI, INFO_CLOSER_LO},
    state::{STATE_NONE, STATE_TIME_WAIT},
};

use super::{deadlines::dur_ns, flow::FlowId, followed::FlowRef, Deadline, FlowLookup, Reporter, Tracked};
use crate::{
    events::{Endpoint, Event},
    vocab::{Closer, ConnState, EndReason, EventKind, ResetClass},
};

/// How a record ended, beyond its flow record: `None` for an interim one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ending {
    pub end: Option<EndReason>,
    /// `end: reset` only: the reset's class and whether the client sent it.
    pub reset: Option<(ResetClass, bool)>,
    /// When the connection's last segment was seen (monotonic ns).
    pub last_ns: u64,
}

/// Counts of conn records, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct ConnCounts {
    /// Final records by `end`, in `EndReason::ALL` order.
    pub ended: Vec<(EndReason, u64)>,
    /// Interim records.
    pub interim: u64,
    /// Durations of the connections that ended, in seconds.
    pub duration: Histogram,
    /// Their handshakes (SYN to SYN-ACK plus SYN-ACK to ACK: the round-trip
    /// time between the hosts), in seconds, when both were seen.
    pub handshake: Histogram,
}

/// Bounds of `ConnCounts::duration`, in seconds: a millisecond to a day.
pub const DURATION_BOUNDS: &[f64] = &[0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0];
/// Bounds of `ConnCounts::handshake`, in seconds: 100 µs to 5 s.
pub const HANDSHAKE_BOUNDS: &[f64] = &[0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// A histogram's observations: a count per bucket (values at most its
/// bound and above the previous one; the last counts those above every
/// bound) and their sum.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0 }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What a `conn` record of flow `t`, evicted without a word, can say at
/// `now`: the audit's last snapshot of it, or if it never took one a record
/// with nothing but the client and the first time; and its last segment's
/// time.
pub(super) fn vanished_record(t: &Tracked, now: u64) -> (FlowRecord, u64) {
    match t.last_rec.as_deref() {
        Some(&rec) => (rec, last_seen_ns(&rec, now).min(now)),
        None => (FlowRecord { initiator: t.initiator, first_ns: t.first_ns, ..FlowRecord::default() }, t.first_ns),
    }
}

/// Whether a flow in `state` is still open: its final record is not
/// written yet (the kernel writes it on the way into TIME_WAIT or CLOSE).
pub(super) fn open(state: u8) -> bool {
    state != STATE_NONE && state < STATE_TIME_WAIT
}

/// Who sent the first FIN, from the record's closer bits.
pub(super) fn closer_of(lo: bool, hi: bool, initiator: u8) -> Closer {
    let side = |dir: u8| if dir == initiator & 1 { Closer::Client } else { Closer::Server };
    match (lo, hi) {
        (true, true) => Closer::Both,
        (true, false) => side(0),
        _ => side(1),
    }
}

impl<L: FlowLookup> Reporter<L> {
    /// The kernel's record of a connection's end (`EVENT_CONN_END`), with
    /// the flow record as it was then; `iface`: where its last segment was
    /// seen. Returns the `conn` record to print, if it is one to print.
    pub fn on_conn_end(&mut self, raw: &FlowEvent, rec: &FlowRecord, iface: Arc<str>) -> Vec<Event> {
        let id = FlowId::of(raw);
        let end = EndReason::from_raw(raw.end);
        let (iface, followed) = match self.flows.find_mut(&id) {
            // Ended already (the daemon removed it a moment before a
            // segment closed it): one record is enough.
            Some(t) if t.ended => return Vec::new(),
            Some(t) => {
                t.ended = true;
                (t.iface.clone(), true)
            }
            None => (iface, false),
        };
        let last_ns = if end == EndReason::Evicted { last_seen_ns(rec, raw.ts_ns) } else { raw.ts_ns };
        let reset = (end == EndReason::Reset).then(|| (ResetClass::from_raw(raw.reset), raw.dir & 1 == rec.initiator & 1));
        let out = self.conn_record(&id, iface.clone(), rec, Ending { end: Some(end), reset, last_ns }).into_iter().collect();
        // Its earlier events were lost: follow it from here (`resync`).
        if !followed && matches!(end, EndReason::Fin | EndReason::Reset) {
            self.follow_ended(raw, rec, iface);
        }
        out
    }

    /// Count a record and build it, if `conn` records are printed.
    pub(super) fn conn_record(&mut self, id: &FlowId, iface: Arc<str>, rec: &FlowRecord, how: Ending) -> Option<Event> {
        let first_ns = if rec.first_ns == 0 { how.last_ns } else { rec.first_ns };
        let duration_s = (how.last_ns.saturating_sub(first_ns) / 1000) as f64 / 1e6;
        let sum = ConnSummary::of(rec);
        match how.end {
            Some(end) => {
                self.conn_ended[end as usize] += 1;
                self.conn_duration.observe(duration_s);
                if let (Some(a), Some(b)) = (sum.syn_to_synack_us, sum.synack_to_ack_us) {
                    self.conn_handshake.observe((u64::from(a) + u64::from(b)) as f64 / 1e6);
                }
            }
            None => self.conn_interim += 1,
        }
        if !self.cfg.events.conn {
            return None;
        }
        let (client, server) = id.endpoints(rec.initiator);
        let mut e = Event::new(self.ts(first_ns), EventKind::Conn, iface, Some(Endpoint::Socket(client)), server);
        e.picked_up = picked_up(rec.origin);
        if how.end.is_none() {
            e.set("interim", true);
        }
        // Microseconds, as the timestamps.
        e.set("duration_s", duration_s);
        e.set("conn_state", conn_state_name(sum.conn_state));
        if let Some(end) = how.end {
            e.set("end", end.as_str());
        }
        if how.end == Some(EndReason::Fin) {
            let closer = closer_of(rec.info & INFO_CLOSER_LO != 0, rec.info & INFO_CLOSER_HI != 0, rec.initiator);
            e.set("closer", closer.as_str());
        }
        if let Some((class, from_client)) = how.reset {
            if let Some(reason) = class.reason().0 {
                e.set("reset_reason", reason);
            }
            e.set("reset_from", if from_client { "client" } else { "server" });
        }
        e.set("client_bytes", sum.bytes[0]);
        e.set("server_bytes", sum.bytes[1]);
        e.set("client_packets", sum.packets[0]);
        e.set("server_packets", sum.packets[1]);
        e.set("client_retransmits", sum.retransmits[0]);
        e.set("server_retransmits", sum.retransmits[1]);
        e.set("rst_dropped", sum.rst_dropped);
        if let Some(us) = sum.syn_to_synack_us {
            e.set("syn_to_synack_us", us);
        }
        if let Some(us) = sum.synack_to_ack_us {
            e.set("synack_to_ack_us", us);
        }
        e.set("state", ConnState::from_raw(rec.state).as_str());
        Some(e)
    }

    /// The daemon ends tracked flow `r` itself (`end`), with its record
    /// `rec` read from the table at `now`: marked ended, so that nothing
    /// writes a second record.
    pub(super) fn end_flow(&mut self, r: FlowRef, rec: &FlowRecord, end: EndReason, now: u64) -> Option<Event> {
        let id = self.flows.id(r)?;
        let t = self.flows.get_mut(r)?;
        if std::mem::replace(&mut t.ended, true) {
            return None;
        }
        let iface = t.iface.clone();
        let last_ns = last_seen_ns(rec, now).min(now);
        self.conn_record(&id, iface, rec, Ending { end: Some(end), reset: None, last_ns })
    }

    /// An interim deadline: the record so far (`rec`, as read now) of a
    /// connection still open, and the next deadline.
    pub(super) fn interim(&mut self, r: FlowRef, rec: Option<FlowRecord>, at: u64) -> Option<Event> {
        let every = self.cfg.conn_interval?;
        let id = self.flows.id(r)?;
        let t = self.flows.get_mut(r)?;
        // Re-armed below only for a connection still open.
        t.interim_armed = false;
        if t.ended {
            return None;
        }
        let rec = rec.filter(|r| open(r.state))?;
        t.interim_armed = true;
        let iface = t.iface.clone();
        self.arm(at.saturating_add(dur_ns(every)), r, Deadline::Interim);
        self.conn_record(&id, iface, &rec, Ending { end: None, reset: None, last_ns: last_seen_ns(&rec, at).min(at) })
    }

    /// The daemon stops at `now`: the final record of every connection
    /// still open in the kernel's tables (`end: stopped`), and of every
    /// tracked one gone from them without a record (`end: evicted`).
    /// Once: a second call returns nothing. `iface` names the interface of
    /// flows the daemon did not follow (their first events were lost).
    /// Nothing is removed: the tables go with the programs.
    pub fn stop(&mut self, now: u64, iface: Arc<str>) -> Vec<Event> {
        self.end_all(now, iface, EndReason::Stopped)
    }

    /// `stop` with another reason for the open connections' end (a
    /// capture's reader: `EndReason::CaptureEnd`).
    pub fn end_all(&mut self, now: u64, iface: Arc<str>, end: EndReason) -> Vec<Event> {
        let mut out = Vec::new();
        if std::mem::replace(&mut self.stopped, true) {
            return out;
        }
        let mut seen = std::collections::HashSet::new();
        for (id, rec) in self.lookup.open_flows() {
            seen.insert(id);
            if !open(rec.state) {
                continue;
            }
            let ev = match self.flows.find(&id) {
                Some(r) => self.end_flow(r, &rec, end, now),
                None => {
                    let last_ns = last_seen_ns(&rec, now).min(now);
                    self.conn_record(&id, iface.clone(), &rec, Ending { end: Some(end), reset: None, last_ns })
                }
            };
            out.extend(ev);
        }
        let gone: Vec<FlowRef> = self.flows.iter().filter(|(_, id, t)| !t.ended && !seen.contains(*id)).map(|(r, ..)| r).collect();
        for r in gone {
            out.extend(self.end_vanished(r, now));
        }
        out
    }

    /// A tracked flow found gone from the tables without a record: its
    /// record from the last snapshot (`end: evicted`).
    pub(super) fn end_vanished(&mut self, r: FlowRef, now: u64) -> Option<Event> {
        let id = self.flows.id(r)?;
        let t = self.flows.get_mut(r)?;
        if std::mem::replace(&mut t.ended, true) {
            return None;
        }
        let (rec, last_ns) = vanished_record(t, now);
        let iface = t.iface.clone();
        self.conn_record(&id, iface, &rec, Ending { end: Some(EndReason::Evicted), reset: None, last_ns })
    }

    /// Conn records written so far.
    pub fn conn_counts(&self) -> ConnCounts {
        ConnCounts {
            ended: EndReason::ALL.iter().copied().zip(self.conn_ended.iter().copied()).collect(),
            interim: self.conn_interim,
            duration: self.conn_duration.clone(),
            handshake: self.conn_handshake.clone(),
        }
    }
}
