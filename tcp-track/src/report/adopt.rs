//! Following the flows of an adopted state (`tcp-track run` taking over
//! the pinned tables of the daemon before it): each flow found in the
//! tables is remembered as if its events had been seen, and the deadlines
//! its state calls for are armed from the times its record holds, so that
//! TIME_WAIT expiries, half-open reports and lingering CLOSE_WAITs that
//! fall due after the restart are still printed. Nothing is printed for
//! the adoption itself.
//!
//! An `impl Reporter` of its own, like `expiry`.

use tcp_track_common::{
    conn::last_seen_ns,
    event::{FlowEvent, DETAIL_CLOSER_HI, DETAIL_CLOSER_LO, EVENT_STATE},
    flow::{FlowRecord, INFO_CLOSER_HI, INFO_CLOSER_LO, ORIGIN_SYN},
    state::endpoint_state,
};

use super::{
    deadlines::{dur_ns, Deadline},
    flow::FlowLookup,
    FlowId, Reporter,
};
use crate::{events::Event, vocab::ConnState};

/// The record of a table entry as an event record, as if its last
/// transition had just been reported: what `Reporter::adopt` takes.
/// `ts_ns` is when the flow's current deadline counts from: its first
/// segment while the handshake is under way, else its last segment (a
/// connection enters TIME_WAIT, CLOSE_WAIT or CLOSE on the last segment
/// it sent, or just before).
pub fn adopted_event(family: u8, lo: (&[u8; 16], u16), hi: (&[u8; 16], u16), rec: &FlowRecord, ifindex: u32, now_ns: u64) -> FlowEvent {
    let state = ConnState::from_raw(rec.state);
    let ts_ns = if state <= ConnState::SynRecv && rec.first_ns != 0 { rec.first_ns } else { last_seen_ns(rec, now_ns) };
    let mut detail = 0;
    if rec.info & INFO_CLOSER_LO != 0 {
        detail |= DETAIL_CLOSER_LO;
    }
    if rec.info & INFO_CLOSER_HI != 0 {
        detail |= DETAIL_CLOSER_HI;
    }
    FlowEvent {
        ts_ns,
        ifindex,
        lo_addr: *lo.0,
        lo_port: lo.1,
        hi_addr: *hi.0,
        hi_port: hi.1,
        kind: EVENT_STATE,
        family,
        initiator: rec.initiator,
        origin: rec.origin,
        old_state: rec.state,
        new_state: rec.state,
        detail,
        lo_state: endpoint_state(rec, 0),
        hi_state: endpoint_state(rec, 1),
        ..FlowEvent::default()
    }
}

impl<L: FlowLookup> Reporter<L> {
    /// Follow a flow found in an adopted table (`raw` from
    /// `adopted_event`, `ev` its decoding). A flow already followed is
    /// left as it is.
    pub fn adopt(&mut self, raw: &FlowEvent, ev: &Event) {
        let id = FlowId::of(raw);
        if self.flows.contains_key(&id) {
            return;
        }
        // A new flow: no older incarnation whose accounting could end.
        let _ = self.start_tracking(&id, raw, ev);
        let at = raw.ts_ns;
        match ConnState::from_raw(raw.new_state) {
            // Only a handshake begun with a SYN is reported half-open, as
            // when its SYN is seen (`Reporter::handle`). It is not counted
            // among its server's half-open connections: SYN floods are
            // judged on the SYNs this daemon sees.
            ConnState::SynSent | ConnState::SynSent2 | ConnState::SynRecv if raw.origin == ORIGIN_SYN => {
                self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), id, Deadline::HalfOpen);
            }
            ConnState::TimeWait => {
                let closer = super::closer_of(raw);
                if let Some(t) = self.flows.get_mut(&id) {
                    t.closer = closer;
                }
                self.arm(at.saturating_add(dur_ns(self.cfg.time_wait_timeout)), id, Deadline::TimeWait);
            }
            ConnState::Close => self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), id, Deadline::Closed),
            ConnState::FinWait | ConnState::CloseWait => {
                self.arm(at.saturating_add(dur_ns(self.cfg.close_wait_timeout)), id, Deadline::CloseWait);
                if let Some(t) = self.flows.get_mut(&id) {
                    t.close_wait_armed = true;
                }
            }
            _ => {}
        }
    }
}
