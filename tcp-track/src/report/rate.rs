//! Per-flow rate limiting: a misbehaving flow (a RST storm) cannot flood
//! stdout. Each flow has a token bucket; what it holds back is counted, and
//! the next line the flow prints says how many (`suppressed_before`).

use crate::events::Event;

const NS: f64 = 1_000_000_000.0;

/// `rate` tokens a second, at most twice that saved up.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: f64,
    refilled_ns: u64,
    /// Events held back since the last one let through.
    suppressed: u64,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(super) fn full(rate: u32, now: u64) -> Self {
        TokenBucket { tokens: 2.0 * rate as f64, refilled_ns: now, suppressed: 0 }
    }

    /// Take a token at `now`: `Some(events held back before this one)` if
    /// there was one, `None` if this event is to be held back too.
    fn take(&mut self, rate: u32, now: u64) -> Option<u64> {
        let rate = rate as f64;
        let elapsed = now.saturating_sub(self.refilled_ns) as f64 / NS;
        self.tokens = (self.tokens + elapsed * rate).min(2.0 * rate);
        self.refilled_ns = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Let through what the bucket allows of one flow's `events` at `now`;
    /// events about a server (SYN floods) always pass. Returns how many
    /// were held back.
    pub(super) fn limit(&mut self, rate: u32, now: u64, events: &mut Vec<Event>) -> u64 {
        let mut held = 0;
        events.retain_mut(|e| {
            if e.client.is_none() {
                return true;
            }
            match self.take(rate, now) {
                Some(before) => {
                    if before > 0 {
                        e.set("suppressed_before", before);
                    }
                    true
                }
                None => {
                    held += 1;
                    false
                }
            }
        });
        held
    }
}
