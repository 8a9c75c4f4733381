//! What the daemon was asked to do.

use std::fmt;

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
    pub report: crate::report::ReportConfig,
    pub rst_policy: RstPolicy,
    /// Interfaces where only one direction is visible: nothing is dropped there.
    pub liberal_interfaces: Vec<String>,
    /// Flow-table capacity per address family (IPv4 and IPv6 tables each).
    pub max_flows: u32,
    /// Half-open table capacity per address family.
    pub max_half_open: u32,
    /// How often to print the kernel counters on stderr (also at exit).
    pub stats_interval: Option<std::time::Duration>,
}

impl Config {
    pub fn new(interfaces: Vec<String>) -> Self {
        Config {
            interfaces,
            format: Format::Text,
            xdp_mode: XdpModeChoice::Auto,
            egress: true,
            bpf_log: BpfLog::Off,
            report: crate::report::ReportConfig::default(),
            rst_policy: RstPolicy::Observe,
            liberal_interfaces: Vec::new(),
            max_flows: crate::loader::DEFAULT_MAX_FLOWS,
            max_half_open: crate::loader::DEFAULT_MAX_HALF_OPEN,
            stats_interval: None,
        }
    }
}
