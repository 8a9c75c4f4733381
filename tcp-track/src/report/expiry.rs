//! What a deadline means when it comes (`deadlines` keeps them): the
//! flow's current record is read from the kernel (through `FlowLookup`,
//! one lookup, never a scan of the table) and decides what to report: a
//! handshake still half-open, or given up; a peer gone silent; TIME_WAIT
//! over; CLOSE_WAIT lingering; a reset flow to forget.
//!
//! An `impl Reporter` of its own, on top of the core: it uses the core and
//! `deadlines`, and nothing uses it but through the reporter's methods.

use tcp_track_common::{
    conn::quiet_ns,
    flow::{FlowRecord, COARSE_SHIFT, INFO_CLOSER_LO},
};

use super::{
    deadlines::{dur_ns, Deadline},
    flow::FlowLookup,
    followed::FlowRef,
    Reporter,
};
use crate::{
    events::{Endpoint, Event},
    vocab::{ConnState, EndReason, EventKind},
};

impl<L: FlowLookup> Reporter<L> {
    /// Deadlines due at `now` (monotonic ns).
    pub fn on_time(&mut self, now: u64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some((at, r, what)) = self.deadlines.pop_due(now) {
            if let Some(t) = self.flows.get_mut(r) {
                if what.pending() {
                    t.deadlines_pending = t.deadlines_pending.saturating_sub(1);
                }
                out.extend(self.fire(r, what, at));
            }
        }
        out
    }

    fn fire(&mut self, r: FlowRef, what: Deadline, at: u64) -> Vec<Event> {
        let mut out = Vec::new();
        let (Some(t), Some(id)) = (self.flows.get(r), self.flows.id(r)) else { return out };
        let id = &id;
        let rec = self.lookup.lookup(id);
        let state = rec.map(|r| ConnState::from_raw(r.state));
        // Its kind is set by each deadline below.
        let (client, server) = t.endpoints(id);
        let base = Event::new(self.ts(at), EventKind::HalfOpen, t.iface.clone(), Some(Endpoint::Socket(client)), server);
        let client_dir = rec.map(|r| r.initiator & 1).unwrap_or(0);
        match what {
            Deadline::HalfOpen => {
                let Some(rec) = rec else {
                    // Gone while still half-open: evicted. A connection
                    // that completed or was reset since is left to the
                    // audit or its own deadline.
                    if t.half_open_counted {
                        self.vanished += 1;
                        return self.forget(r, at);
                    }
                    return out;
                };
                let member = t.flood_member;
                let kind = match ConnState::from_raw(rec.state) {
                    ConnState::SynSent | ConnState::SynSent2 => "syn_sent",
                    ConnState::SynRecv => "syn_recv",
                    _ => return out,
                };
                let mut e = Event { event: EventKind::HalfOpen, ..base };
                e.set("kind", kind);
                e.set("age_s", self.cfg.half_open_timeout.as_secs_f64());
                if kind == "syn_sent" {
                    e.set("syn_retransmits", rec.peer(client_dir).retrans);
                    e.set("retransmit_times", t.retransmits.as_ref().map(|h| h.syn.clone()).unwrap_or_default());
                } else {
                    e.set("synack_retransmits", rec.peer(client_dir ^ 1).retrans);
                    e.set("retransmit_times", t.retransmits.as_ref().map(|h| h.synack.clone()).unwrap_or_default());
                }
                if let Some(t) = self.flows.get_mut(r) {
                    t.half_open_reported = true;
                }
                self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::HalfOpenExpiry);
                if !member {
                    out.push(e);
                }
            }
            Deadline::HalfOpenExpiry => {
                let still = state.is_some_and(|s| s <= ConnState::SynRecv);
                let quiet = rec.is_none_or(|r| idle_for(&r, at) >= dur_ns(self.cfg.half_open_timeout));
                if still && !quiet {
                    // Still retransmitting: not given up yet.
                    self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::HalfOpenExpiry);
                    return out;
                }
                if still || rec.is_none() {
                    let member = t.flood_member;
                    let mut e = Event { event: EventKind::HalfOpenEnded, ..base };
                    e.set("outcome", "expired");
                    // Given up: its record. (Gone from the table, it was
                    // evicted, and the kernel wrote that record.)
                    let record = rec.and_then(|rec| self.end_flow(r, &rec, EndReason::HalfOpenTimeout, at));
                    self.lookup.remove(id);
                    out.extend(self.forget(r, at));
                    if !member {
                        out.insert(0, e);
                    }
                    out.extend(record);
                }
            }
            Deadline::PeerLost => {
                let Some(rec) = rec else { return out };
                if !(ConnState::Established..=ConnState::LastAck).contains(&ConnState::from_raw(rec.state)) || t.peer_lost_reported {
                    return out;
                }
                // Which side is still retransmitting into silence?
                let stalled = [0u8, 1].into_iter().find(|&d| rec.peer(d).retrans > 0);
                let Some(d) = stalled else { return out };
                if idle_for(&rec, at) > dur_ns(self.cfg.half_open_timeout) {
                    return out;
                }
                let mut e = Event { event: EventKind::HalfOpen, ..base };
                e.set("kind", "peer_lost");
                e.set("evidence", "unacknowledged_retransmissions");
                e.set("retransmitting", if d == client_dir { "client" } else { "server" });
                e.set("lost", if d == client_dir { "server" } else { "client" });
                e.set("retransmits", rec.peer(d).retrans);
                if let Some(t) = self.flows.get_mut(r) {
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
                        out.extend(self.forget(r, at));
                    }
                    // Evicted from the table: it expired all the same.
                    None => {
                        self.vanished += 1;
                        let mut e = Event { event: EventKind::TimeWaitExpired, ..base };
                        e.set("after_s", self.cfg.time_wait_timeout.as_secs_f64());
                        out.push(e);
                        out.extend(self.forget(r, at));
                    }
                    // Reused or assassinated: that was reported when it happened.
                    Some(_) => {}
                }
            }
            Deadline::Closed => {
                if state.is_none_or(|s| s == ConnState::Close) {
                    self.lookup.remove(id);
                    out.extend(self.forget(r, at));
                }
            }
            Deadline::Interim => out.extend(self.interim(r, rec, at)),
            Deadline::CloseWait => {
                let Some(rec) = rec else { return out };
                if !matches!(ConnState::from_raw(rec.state), ConnState::FinWait | ConnState::CloseWait) {
                    return out;
                }
                let closer_lo = rec.info & INFO_CLOSER_LO != 0;
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
}

/// How long since the flow's last segment, from its coarse timestamp
/// (2^20 ns units), rounded up so that truncation never makes a flow look
/// more recent than it is. A segment stamped after `now` (it came while
/// the audit ran) counts as just seen (`conn::quiet_units`).
pub(super) fn idle_for(r: &FlowRecord, now: u64) -> u64 {
    quiet_ns(r, now) + (1 << COARSE_SHIFT)
}
