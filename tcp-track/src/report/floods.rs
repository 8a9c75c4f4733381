//! Half-open connections, counted per server endpoint: more than
//! `syn_flood_threshold` of them to one server is a SYN flood (one
//! `syn_flood`, then nothing per SYN, until they fall below half of it: one
//! `syn_flood_ended`). They are also remembered in the order they opened,
//! so that the daemon can forget the oldest past the kernel's own capacity
//! and keep its memory bounded under a flood.

use std::{
    collections::{hash_map::Entry, VecDeque},
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
};

use foldhash::HashMap;

use super::followed::FlowRef;
use crate::{
    events::{Event, Timestamp},
    vocab::EventKind,
};

const NS: u64 = 1_000_000_000;

/// What is kept of one server endpoint while it has half-open connections
/// or is flooded.
#[derive(Debug, Default)]
struct Server {
    half_open: u32,
    /// SYN arrival times within the last second, for the rate.
    recent_syns: VecDeque<u64>,
    flooded_since: Option<u64>,
    flood_syns: u64,
    flood_peak: u32,
    iface: Arc<str>,
}

/// A server endpoint as the map's key, hashed as one word (IPv4) or two:
/// every connection opened with a SYN is counted in and out of the map,
/// and the derived `SocketAddr` hash feeds the hasher the variant, the
/// address and the port apart. Equal keys hash the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ServerKey(SocketAddr);

impl Hash for ServerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self.0 {
            SocketAddr::V4(a) => state.write_u64(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port())),
            SocketAddr::V6(a) => {
                state.write_u128(a.ip().to_bits());
                state.write_u16(a.port());
            }
        }
    }
}

/// The half-open accounting.
#[derive(Debug, Default)]
pub(super) struct Floods {
    servers: HashMap<ServerKey, Server>,
    /// Half-open connections in the order they opened; entries of flows no
    /// longer half-open are skipped, and compacted away.
    order: VecDeque<FlowRef>,
    /// Connections currently counted as half-open.
    live: usize,
}

/// A SYN flood in progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Flood {
    pub server: SocketAddr,
    /// Where the SYN that started it was seen.
    pub iface: Arc<str>,
    /// When it started (monotonic ns).
    pub since_ns: u64,
    /// SYNs since it started.
    pub syns: u64,
    pub peak_half_open: u32,
    pub half_open: u32,
}

impl Floods {
    /// Flow `r` opened with a SYN: it counts as half-open, after those
    /// that opened before it.
    pub(super) fn opened(&mut self, r: FlowRef) {
        self.order.push_back(r);
        self.live += 1;
    }

    /// A SYN opening a connection to `server` at `now` (`ts`), seen on
    /// `iface`: `syn_flood` when this one starts a flood, and whether the
    /// server is flooded.
    pub(super) fn syn(&mut self, server: SocketAddr, iface: &Arc<str>, now: u64, ts: Timestamp, threshold: u32) -> (Option<Event>, bool) {
        let s = self.servers.entry(ServerKey(server)).or_default();
        s.half_open += 1;
        s.recent_syns.push_back(now);
        while s.recent_syns.front().is_some_and(|&t| now.saturating_sub(t) > NS) {
            s.recent_syns.pop_front();
        }
        if s.flooded_since.is_some() {
            s.flood_syns += 1;
            s.flood_peak = s.flood_peak.max(s.half_open);
            return (None, true);
        }
        if s.half_open <= threshold {
            return (None, false);
        }
        s.flooded_since = Some(now);
        s.flood_syns = 1;
        s.flood_peak = s.half_open;
        s.iface = iface.clone();
        let mut e = Event::new(ts, EventKind::SynFlood, iface.clone(), None, server);
        e.set("half_open", s.half_open);
        e.set("syn_rate", s.recent_syns.len());
        e.set("threshold", threshold);
        (Some(e), true)
    }

    /// One fewer half-open connection to `server` at `now` (`ts`):
    /// `syn_flood_ended` when that ends a flood.
    pub(super) fn closed(&mut self, server: SocketAddr, now: u64, ts: Timestamp, threshold: u32) -> Option<Event> {
        self.live = self.live.saturating_sub(1);
        // One look at the map, whether the server stays or goes.
        let Entry::Occupied(mut entry) = self.servers.entry(ServerKey(server)) else { return None };
        let s = entry.get_mut();
        s.half_open = s.half_open.saturating_sub(1);
        if s.half_open == 0 && s.flooded_since.is_none() {
            // Nothing left to remember of this server (spoofed SYNs to many
            // ports must not grow this map without bound).
            entry.remove();
            return None;
        }
        let since = s.flooded_since?;
        if s.half_open >= threshold / 2 {
            return None;
        }
        s.flooded_since = None;
        let mut e = Event::new(ts, EventKind::SynFloodEnded, s.iface.clone(), None, server);
        e.set("duration_s", ((now.saturating_sub(since)) as f64 / NS as f64 * 1000.0).round() / 1000.0);
        e.set("syns", s.flood_syns);
        e.set("peak_half_open", s.flood_peak);
        e.set("half_open", s.half_open);
        Some(e)
    }

    /// Connections counted as half-open.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// While more than `cap` are counted: the oldest entry of the opening
    /// order (possibly stale: the caller checks).
    pub(super) fn oldest_over(&mut self, cap: usize) -> Option<FlowRef> {
        if self.live > cap {
            self.order.pop_front()
        } else {
            None
        }
    }

    /// Sweep stale entries (`half_open` says which are not) out of the
    /// opening order once they far outnumber `cap`.
    pub(super) fn compact(&mut self, cap: usize, half_open: impl Fn(FlowRef) -> bool) {
        if self.order.len() > 2 * cap + 1024 {
            self.order.retain(|&r| half_open(r));
        }
    }

    /// No server is remembered (nothing half-open, no flood).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The floods in progress, by server.
    pub(super) fn in_progress(&self) -> Vec<Flood> {
        let mut out: Vec<Flood> = self
            .servers
            .iter()
            .filter_map(|(server, s)| {
                Some(Flood {
                    server: server.0,
                    iface: s.iface.clone(),
                    since_ns: s.flooded_since?,
                    syns: s.flood_syns,
                    peak_half_open: s.flood_peak,
                    half_open: s.half_open,
                })
            })
            .collect();
        out.sort_by_key(|f| f.server);
        out
    }
}
