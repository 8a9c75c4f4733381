//! What the daemon was asked to do, the defaults, and the limits that
//! follow from them (computed here, once). Every other module reads its
//! settings from here; this one imports none of them.

use std::{fmt, time::Duration};

use tcp_track_common::halfopen;

/// Flow-table capacity per address family when not told otherwise.
pub const DEFAULT_MAX_FLOWS: u32 = 65536;
/// Half-open table capacity per address family when not told otherwise.
pub const DEFAULT_MAX_HALF_OPEN: u32 = 16384;

/// Output format of the event stream on stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, nothing else on stdout.
    Json,
}

/// How to attach the XDP program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpModeChoice {
    /// Native (driver) mode, falling back to generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only: fail if the driver has no XDP support.
    Native,
    /// Generic (skb) mode: works on any interface, after the stack has built an skb.
    Skb,
}

impl fmt::Display for XdpModeChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpModeChoice::Auto => "auto",
            XdpModeChoice::Native => "native",
            XdpModeChoice::Skb => "skb",
        })
    }
}

/// Kernel-side log level for aya-log (off unless asked for).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BpfLog {
    #[default]
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

/// Which RSTs XDP drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RstPolicy {
    /// Drop nothing; classify and report every RST.
    #[default]
    Observe,
    /// Drop RSTs outside the receiver's window.
    DropOutOfWindow,
    /// Drop every invalid RST: outside the window, inside it but inexact
    /// (RFC 5961), and towards TIME-WAIT (RFC 1337).
    DropInvalid,
}

impl RstPolicy {
    /// The kernel programs' `RST_POLICY` value.
    pub fn kernel_value(self) -> u8 {
        use tcp_track_common::guard::{RST_POLICY_INVALID, RST_POLICY_OBSERVE, RST_POLICY_OUT_OF_WINDOW};
        match self {
            RstPolicy::Observe => RST_POLICY_OBSERVE,
            RstPolicy::DropOutOfWindow => RST_POLICY_OUT_OF_WINDOW,
            RstPolicy::DropInvalid => RST_POLICY_INVALID,
        }
    }
}

/// Which events go to stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EventSet {
    /// What matters: resets, half-open connections, TIME_WAIT, SYN floods,
    /// lingering CLOSE_WAIT, TIME_WAIT pressure.
    #[default]
    Notable,
    /// Also every new flow, FIN, state change and retransmission.
    All,
}

/// The sizes of the kernel's flow tables, per address family (IPv4 and
/// IPv6 each), and what follows from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    max_flows: u32,
    half_open_sets: u32,
}

impl Capacity {
    /// `max_flows` established flows; at least `max_half_open` half-open
    /// ones, rounded up to a power of two of sets (see `half_open_slots`).
    pub fn new(max_flows: u32, max_half_open: u32) -> Self {
        Capacity { max_flows, half_open_sets: halfopen::geometry(max_half_open).0 }
    }

    /// Established flows each table holds.
    pub fn max_flows(&self) -> u32 {
        self.max_flows
    }

    /// Sets of `halfopen::WAYS` slots in each half-open table.
    pub fn half_open_sets(&self) -> u32 {
        self.half_open_sets
    }

    /// The mask that picks a set from a hash.
    pub fn half_open_set_mask(&self) -> u32 {
        self.half_open_sets - 1
    }

    /// Half-open flows each table holds: whole sets of four, a power of
    /// two of them.
    pub fn half_open_slots(&self) -> u32 {
        self.half_open_sets * halfopen::WAYS
    }

    /// Half-open connections the reporter remembers at most: as many as
    /// both address families' tables hold.
    pub fn max_half_open_tracked(&self) -> usize {
        2 * self.half_open_slots() as usize
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::new(DEFAULT_MAX_FLOWS, DEFAULT_MAX_HALF_OPEN)
    }
}

/// What the reporter reports, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportConfig {
    pub half_open_timeout: Duration,
    pub time_wait_timeout: Duration,
    pub close_wait_timeout: Duration,
    /// Half-open connections to one server endpoint that make a SYN flood.
    pub syn_flood_threshold: u32,
    /// TIME_WAIT connections from one client address to one server endpoint
    /// that make TIME_WAIT pressure.
    pub time_wait_pressure: u32,
    pub events: EventSet,
    /// Events one flow may print per second (burst of twice that).
    pub per_flow_rate: u32,
    /// Half-open connections remembered at most: the kernel's half-open
    /// tables cannot hold more either, so past this the oldest are forgotten
    /// as the kernel has evicted them. Keeps the daemon's memory bounded
    /// under a SYN flood. `Capacity::max_half_open_tracked` of the tables.
    pub max_half_open_tracked: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            half_open_timeout: Duration::from_secs(10),
            time_wait_timeout: Duration::from_secs(60),
            close_wait_timeout: Duration::from_secs(60),
            syn_flood_threshold: 200,
            time_wait_pressure: 1000,
            events: EventSet::Notable,
            per_flow_rate: 10,
            max_half_open_tracked: Capacity::default().max_half_open_tracked(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to attach to (at least one).
    pub interfaces: Vec<String>,
    pub format: Format,
    pub xdp_mode: XdpModeChoice,
    /// Attach the TC egress program too. Needed on a host, where outgoing
    /// segments never pass XDP; a box that forwards between several watched
    /// interfaces already sees both directions at XDP.
    pub egress: bool,
    pub bpf_log: BpfLog,
    /// Timeouts, thresholds and which events to print.
    pub report: ReportConfig,
    pub rst_policy: RstPolicy,
    /// Interfaces where only one direction is visible: nothing is dropped there.
    pub liberal_interfaces: Vec<String>,
    /// Flow-table sizes: set with `with_capacity`, which keeps
    /// `report.max_half_open_tracked` in step.
    pub capacity: Capacity,
    /// How often to print the kernel counters on stderr (also at exit).
    pub stats_interval: Option<std::time::Duration>,
    /// Where to serve `/metrics` (Prometheus text format); off when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Config {
    pub fn new(interfaces: Vec<String>) -> Self {
        Config {
            interfaces,
            format: Format::default(),
            xdp_mode: XdpModeChoice::default(),
            egress: true,
            bpf_log: BpfLog::default(),
            report: ReportConfig::default(),
            rst_policy: RstPolicy::default(),
            liberal_interfaces: Vec::new(),
            capacity: Capacity::default(),
            stats_interval: None,
            metrics_addr: None,
        }
    }

    /// Size the flow tables, and the reporter's memory with them.
    pub fn with_capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self.report.max_half_open_tracked = capacity.max_half_open_tracked();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_open_capacity_is_whole_sets_a_power_of_two_of_them() {
        let c = Capacity::new(1000, 16384);
        assert_eq!((c.max_flows(), c.half_open_sets(), c.half_open_set_mask(), c.half_open_slots()), (1000, 4096, 4095, 16384));
        assert_eq!(Capacity::new(1, 17).half_open_slots(), 32, "17 flows need 5 sets, rounded up to 8");
        assert_eq!(Capacity::new(1, 0).half_open_slots(), 4, "at least one set");
    }

    #[test]
    fn the_reporter_remembers_what_both_half_open_tables_hold() {
        assert_eq!(ReportConfig::default().max_half_open_tracked, 2 * 16384);
        let c = Config::new(vec!["lo".into()]).with_capacity(Capacity::new(10, 100));
        assert_eq!(c.report.max_half_open_tracked, 2 * 128);
    }
}
