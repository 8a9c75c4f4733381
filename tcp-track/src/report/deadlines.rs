//! Deadlines: what the kernel cannot report, because it happens when no
//! segment comes (a handshake that never completes, TIME_WAIT running out,
//! a CLOSE_WAIT that lingers). A heap of (time, `FlowRef`, what) holds
//! them; what each one means when it comes is `expiry`'s.

use std::{cmp::Reverse, collections::BinaryHeap, time::Duration};

use super::followed::FlowRef;

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Deadline {
    /// A handshake not completed in time is reported.
    HalfOpen,
    /// A reported half-open connection quiet for another timeout is given up.
    HalfOpenExpiry,
    /// Data retransmitted into silence: the peer may have lost its state.
    PeerLost,
    TimeWait,
    CloseWait,
    /// A reset connection's record is kept as long as a half-open timeout
    /// (segments still in flight), then dropped.
    Closed,
    /// An interim `conn` record is due (`--conn-interval`).
    Interim,
}

impl Deadline {
    /// Whether the flow counts it among its pending deadlines, which keep
    /// the audit away: interim records recur for as long as the connection
    /// is open, and must not keep the audit from finding it evicted.
    pub(super) fn pending(self) -> bool {
        self != Deadline::Interim
    }
}

/// One deadline: when, for which flow (a `FlowRef`: stale once that
/// incarnation is forgotten or replaced), what. 24 bytes. Ordered by time,
/// then by the order the flows were followed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: u64,
    incarnation: u64,
    slot: u32,
    what: Deadline,
}

const _: () = assert!(std::mem::size_of::<Due>() == 24);

/// The deadlines, earliest first; those of an older incarnation of a
/// reused 4-tuple, or of a forgotten flow, are stale when they come.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    heap: BinaryHeap<Reverse<Due>>,
}

impl Deadlines {
    /// `what` for flow `r` at `at` (monotonic ns). Stale deadlines (`live`
    /// says which are not) wait in the heap until they come due; under a
    /// flood that is a timeout's worth of SYNs, so they are swept once they
    /// far outnumber the `tracked` flows (amortised O(1) per deadline; a
    /// look at a slot each, no hashing).
    pub(super) fn push(&mut self, at: u64, r: FlowRef, what: Deadline, tracked: usize, live: impl Fn(FlowRef) -> bool) {
        self.heap.push(Reverse(Due { at, incarnation: r.incarnation, slot: r.slot, what }));
        if self.heap.len() > 4 * tracked + 4096 {
            self.heap.retain(|Reverse(d)| live(FlowRef { incarnation: d.incarnation, slot: d.slot }));
        }
    }

    /// When the next one falls.
    pub(super) fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// The earliest deadline if it is due at `now`: (when, flow, what).
    pub(super) fn pop_due(&mut self, now: u64) -> Option<(u64, FlowRef, Deadline)> {
        let Reverse(first) = *self.heap.peek()?;
        if first.at > now {
            return None;
        }
        self.heap.pop();
        Some((first.at, FlowRef { incarnation: first.incarnation, slot: first.slot }, first.what))
    }

    /// Deadlines waiting, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }
}

/// A timeout in nanoseconds (saturating: a timeout of centuries is never).
pub(super) fn dur_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}
