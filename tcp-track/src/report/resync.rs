//! Catching up after events were lost to a full ring buffer. The kernel's
//! tables still hold every flow whose events were lost, so a walk of them
//! (the daemon's, `Daemon::on_tick`, once the losses stop) finds what those
//! events would have said, flow by flow (`Reporter::catch_up`):
//!
//! - a flow the reporter does not follow (its `flow_new` was lost) is
//!   followed as a flow of an adopted state is (`follow`): the deadline its state
//!   calls for is armed from its record, so a handshake is still reported
//!   half-open and given up, a TIME_WAIT still expires;
//! - a flow followed whose record is in another state than its last event
//!   said (its transitions were lost) moves to that state, with the
//!   deadline the state calls for, and leaves the half-open count if its
//!   handshake completed or was reset;
//! - a flow that ended (TIME_WAIT: an orderly close; CLOSE: a reset)
//!   without its end record having reached the daemon gets its `conn`
//!   record from the table's record now (`reset_reason` unknown: that was
//!   in the lost event). An end record that did reach the daemon for a
//!   flow it did not follow made it follow the flow, ended
//!   (`follow_ended`), so the walk never writes a second record.
//!
//! Flows whose last segment is very recent are left out of the walk: the
//! events of that segment may still be on their way through the ring
//! buffer, and the reporter handles them when they come.
//!
//! An `impl Reporter` of its own, like `adopt` and `expiry`.

use std::sync::Arc;

use tcp_track_common::{event::FlowEvent, flow::FlowRecord};

use super::{adopted_event, flow::FlowLookup, Decoding, FlowId, Reporter};
use crate::{
    events::{client_server, Endpoint, Event},
    vocab::{ConnState, EndReason, EventKind},
};

/// What catching up did with one flow of the walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Flows not followed, now followed.
    pub adopted: u64,
    /// Flows followed whose state had moved on.
    pub moved: u64,
    /// `conn` records written for flows whose end record was lost.
    pub ended: u64,
}

impl CatchUp {
    pub fn add(&mut self, other: CatchUp) {
        self.adopted += other.adopted;
        self.moved += other.moved;
        self.ended += other.ended;
    }
}

/// The tables' walks after losses, in total: how many, over how many
/// flows, how long they took, and what they caught up with (the metrics'
/// `resync_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Walks {
    pub walks: u64,
    pub flows_walked: u64,
    pub seconds: f64,
    pub caught_up: CatchUp,
}

impl<L: FlowLookup> Reporter<L> {
    /// One flow of the tables' walk after a loss: `raw` is its
    /// `adopted_event` at `now`, `ev` that decoded, `rec` its record.
    /// Returns what catching up printed (`half_open_ended`, `conn`
    /// records) and what it did.
    pub fn catch_up(&mut self, raw: &FlowEvent, ev: &Event, rec: &FlowRecord, now: u64) -> (Vec<Event>, CatchUp) {
        let id = FlowId::of(raw);
        let state = ConnState::from_raw(rec.state);
        let mut out = Vec::new();
        let mut did = CatchUp::default();
        let found = self.flows.find(&id);
        match found.and_then(|r| self.flows.get(r).map(|t| (r, t.state, t.close_wait_armed))) {
            None => {
                self.follow(raw, ev);
                did.adopted = 1;
            }
            Some((_, was, _)) if was == state => {}
            Some((r, _, close_wait_armed)) => {
                if state >= ConnState::Established {
                    out.extend(self.leave_half_open(r, state, &mut Decoding::decoded(raw, ev.clone()), now));
                }
                if let Some(t) = self.flows.get_mut(r) {
                    t.state = state;
                }
                // CLOSE_WAIT is reported once per connection, from the
                // first FIN: armed already if that was seen.
                let again = matches!(state, ConnState::FinWait | ConnState::CloseWait) && close_wait_armed;
                if !again {
                    self.arm_for_state(r, raw);
                }
                did.moved = 1;
            }
        }
        let end = match state {
            ConnState::TimeWait => Some(EndReason::Fin),
            ConnState::Close => Some(EndReason::Reset),
            _ => None,
        };
        // Followed now, whether it was before or not.
        if let (Some(end), Some(r)) = (end, self.flows.find(&id)) {
            let record = self.end_flow(r, rec, end, now);
            did.ended = u64::from(record.is_some());
            out.extend(record);
        }
        (out, did)
    }

    /// The kernel's end record of a flow the reporter does not follow (its
    /// earlier events were lost) reached it and was written: follow the
    /// flow, ended, so that its deadline (TIME_WAIT's expiry, a reset
    /// flow's removal) still comes and a walk after the loss does not
    /// write its record again. Only flows the end leaves in the table
    /// (closed or reset), not evicted ones.
    pub(super) fn follow_ended(&mut self, raw: &FlowEvent, rec: &FlowRecord, iface: Arc<str>) {
        let (lo, hi) = ((&raw.lo_addr, raw.lo_port), (&raw.hi_addr, raw.hi_port));
        let adopted = adopted_event(raw.family, lo, hi, rec, raw.ifindex, raw.ts_ns);
        let (client, server) = client_server(&adopted);
        let ev = Event::new(self.ts(adopted.ts_ns), EventKind::State, iface, Some(Endpoint::Socket(client)), server);
        self.adopt(&adopted, &ev);
        if let Some(t) = self.flows.find_mut(&FlowId::of(raw)) {
            t.ended = true;
        }
    }
}
