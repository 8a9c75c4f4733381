//! The audit's round robin. Open connections wait for no deadline, so one
//! the kernel evicted without a close (an LRU table under pressure) would
//! otherwise stay in the daemon's memory for good and go uncounted: every
//! tracked flow is queued here, and the reporter checks a slice of the
//! queue against the kernel tables every second (`Reporter::audit`).

use std::collections::VecDeque;

use super::followed::FlowRef;

/// Every tracked flow, in round-robin order; entries of flows since
/// forgotten or reincarnated are stale (told by their `FlowRef`), skipped
/// and swept.
#[derive(Debug, Default)]
pub(super) struct AuditQueue {
    pub(super) order: VecDeque<FlowRef>,
}

impl AuditQueue {
    /// A flow just tracked joins the round robin. Stale entries are swept
    /// (`live` says which are not) once they outnumber the `tracked` flows
    /// (amortised O(1) per flow).
    pub(super) fn push(&mut self, r: FlowRef, tracked: usize, live: impl Fn(FlowRef) -> bool) {
        self.order.push_back(r);
        if self.order.len() > 2 * tracked + 1024 {
            self.order.retain(|&r| live(r));
        }
    }

    /// The next flow to check.
    pub(super) fn next(&mut self) -> Option<FlowRef> {
        self.order.pop_front()
    }

    /// A flow checked and still there: back to the end of the queue.
    pub(super) fn requeue(&mut self, r: FlowRef) {
        self.order.push_back(r);
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }
}
