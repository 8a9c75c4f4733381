//! TIME_WAIT pressure: many connections from one client address to one
//! server endpoint with the client in TIME_WAIT, each holding one of the
//! client's ephemeral ports. Reported once when the count reaches the
//! threshold, and again only after it fell below half of it.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use foldhash::HashMap;

use crate::{
    events::{Endpoint, Event, Timestamp},
    vocab::EventKind,
};

#[derive(Debug, Default)]
struct Count {
    time_wait: u32,
    reported: bool,
}

/// TIME_WAITs counted per (client address, server endpoint).
#[derive(Debug, Default)]
pub(super) struct TimeWaitPressure {
    counts: HashMap<(IpAddr, SocketAddr), Count>,
}

/// A (client address, server) pair whose TIME_WAIT pressure was reported
/// and has not fallen well below the threshold since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PressureAlert {
    pub client: IpAddr,
    pub server: SocketAddr,
    pub time_wait: u32,
}

impl TimeWaitPressure {
    /// One more TIME_WAIT from `ip` to `server`, at `ts` on `iface`:
    /// `time_wait_pressure` when this one reaches the threshold.
    pub(super) fn add(&mut self, ip: IpAddr, server: SocketAddr, threshold: u32, ts: Timestamp, iface: Arc<str>) -> Option<Event> {
        let c = self.counts.entry((ip, server)).or_default();
        c.time_wait += 1;
        if c.time_wait < threshold || c.reported {
            return None;
        }
        c.reported = true;
        let mut e = Event::new(ts, EventKind::TimeWaitPressure, iface, Some(Endpoint::Host(ip)), server);
        e.set("time_wait", c.time_wait);
        e.set("threshold", threshold);
        e.set("meaning", "each TIME_WAIT holds a client port for this server: the client may run out of ephemeral ports");
        Some(e)
    }

    /// One fewer TIME_WAIT from `ip` towards `server`; the report is
    /// re-armed once the count is well below the threshold.
    pub(super) fn remove(&mut self, ip: IpAddr, server: SocketAddr, threshold: u32) {
        if let Some(c) = self.counts.get_mut(&(ip, server)) {
            c.time_wait = c.time_wait.saturating_sub(1);
            if c.time_wait == 0 {
                self.counts.remove(&(ip, server));
            } else if c.time_wait < threshold / 2 {
                c.reported = false;
            }
        }
    }

    /// The pairs reported and not re-armed yet, by server.
    pub(super) fn alerts(&self) -> Vec<PressureAlert> {
        let mut out: Vec<PressureAlert> = self
            .counts
            .iter()
            .filter(|(_, c)| c.reported)
            .map(|(&(client, server), c)| PressureAlert { client, server, time_wait: c.time_wait })
            .collect();
        out.sort_by_key(|a| (a.server, a.client));
        out
    }
}
