//! The audit's round robin. Open connections wait for no deadline, so one
//! the kernel evicted without a close (an LRU table under pressure) would
//! otherwise stay in the daemon's memory for good and go uncounted: every
//! tracked flow is queued here, and the reporter checks a slice of the
//! queue against the kernel tables every second (`Reporter::audit`).

use std::collections::VecDeque;

use super::flow::FlowId;

/// Every tracked flow as (flow, incarnation), in round-robin order; entries
/// of flows since forgotten or reincarnated are stale, skipped and swept.
#[derive(Debug, Default)]
pub(super) struct AuditQueue {
    pub(super) order: VecDeque<(FlowId, u64)>,
}

impl AuditQueue {
    /// A flow just tracked joins the round robin. Stale entries are swept
    /// (`live` says which are not) once they outnumber the `tracked` flows
    /// (amortised O(1) per flow).
    pub(super) fn push(&mut self, id: FlowId, incarnation: u64, tracked: usize, live: impl Fn(&FlowId, u64) -> bool) {
        self.order.push_back((id, incarnation));
        if self.order.len() > 2 * tracked + 1024 {
            self.order.retain(|(id, inc)| live(id, *inc));
        }
    }

    /// The next flow to check.
    pub(super) fn next(&mut self) -> Option<(FlowId, u64)> {
        self.order.pop_front()
    }

    /// A flow checked and still there: back to the end of the queue.
    pub(super) fn requeue(&mut self, id: FlowId, incarnation: u64) {
        self.order.push_back((id, incarnation));
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}
