//! What the daemon was asked to do, the defaults, and the limits that
//! follow from them (computed here, once). Every other module reads its
//! settings from here; this one imports none of them.

use std::{fmt, time::Duration};

use tcp_track_common::{
    estab::{self, EstSetV4, EstSetV6},
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    halfopen::{self, SetV4, SetV6},
};
use thiserror::Error;

/// Flow-table capacity per address family when not told otherwise.
pub const DEFAULT_MAX_FLOWS: u32 = 65536;
/// Half-open table capacity per address family when not told otherwise.
pub const DEFAULT_MAX_HALF_OPEN: u32 = 16384;
/// Where daemons pin their state when not told otherwise (`pins`): one
/// directory per instance under it.
pub const DEFAULT_STATE_DIR: &str = "/sys/fs/bpf/tcp-track";

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

/// A set of events to print; `--events` takes a list of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EventSet {
    /// What matters: resets, half-open connections, TIME_WAIT, SYN floods,
    /// lingering CLOSE_WAIT, TIME_WAIT pressure.
    #[default]
    Notable,
    /// One `conn` record per connection when it ends (and interim ones
    /// with `--conn-interval`).
    Conn,
    /// Everything: the notable events, every new flow, FIN, state change
    /// and retransmission, and the `conn` records.
    All,
}

/// Which events go to stdout: the union of the sets `--events` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSets {
    /// The notable events (`EventSet::Notable`, or `All`).
    pub notable: bool,
    /// `conn` records (`EventSet::Conn`, or `All`).
    pub conn: bool,
    /// Every kernel event too (`EventSet::All`).
    pub all: bool,
}

impl EventSets {
    /// The union of `sets` (the default, `notable`, when empty).
    pub fn of(sets: &[EventSet]) -> EventSets {
        let has = |s| sets.contains(&s);
        let all = has(EventSet::All);
        EventSets { notable: all || has(EventSet::Notable) || sets.is_empty(), conn: all || has(EventSet::Conn), all }
    }

    /// Whether an event of `kind` that the reporter decided to print goes
    /// out: `conn` records with the `conn` set; the others with `notable`
    /// (the reporter prints the kernel's own kinds only under `all`).
    pub fn shows(&self, kind: crate::vocab::EventKind) -> bool {
        if kind == crate::vocab::EventKind::Conn { self.conn } else { self.notable }
    }
}

impl Default for EventSets {
    fn default() -> Self {
        EventSets::of(&[EventSet::Notable])
    }
}

impl From<EventSet> for EventSets {
    fn from(set: EventSet) -> Self {
        EventSets::of(&[set])
    }
}

/// The sizes of the kernel's flow tables, per address family (IPv4 and
/// IPv6 each), and what follows from them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    max_flows: u32,
    /// As asked for (validated against `MAX_TABLE`); the tables hold
    /// `half_open_slots`.
    max_half_open: u32,
    half_open_sets: u32,
}

impl Capacity {
    /// `max_flows` established flows; at least `max_half_open` half-open
    /// ones, rounded up to a power of two of sets (see `half_open_slots`).
    pub fn new(max_flows: u32, max_half_open: u32) -> Self {
        Capacity { max_flows, max_half_open, half_open_sets: halfopen::geometry(max_half_open).0 }
    }

    /// Established flows each table holds, as asked for: the sets hold
    /// that many rounded up to a power of two of whole sets
    /// (`established_sets`), and a stash a twelfth more (`stash`).
    pub fn max_flows(&self) -> u32 {
        self.max_flows
    }

    /// Sets of `estab::WAYS` ways in each established table.
    pub fn established_sets(&self) -> u32 {
        estab::geometry(self.max_flows).0
    }

    /// The mask that picks an established set from a hash.
    pub fn established_set_mask(&self) -> u32 {
        estab::geometry(self.max_flows).1
    }

    /// Flows each established table's stash holds (`estab::stash_capacity`).
    pub fn stash(&self) -> u32 {
        estab::stash_capacity(self.max_flows)
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

    /// Flows the reporter follows before it looks for flows the tables no
    /// longer hold: as many as one address family's tables hold
    /// (established and half-open). Only flows found gone are forgotten, so
    /// with both families in use it may follow up to twice that.
    pub fn max_tracked(&self) -> usize {
        self.max_flows as usize + self.half_open_slots() as usize
    }
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity::new(DEFAULT_MAX_FLOWS, DEFAULT_MAX_HALF_OPEN)
    }
}

/// `--idle-timeout`'s default: 3 hours. Longer than a connection kept
/// alive by Linux's default TCP keepalives is ever quiet (7200 s, then 9
/// probes 75 s apart: 2 h 11 min 15 s), so such a connection is never
/// ended for idleness; far shorter than nf_conntrack's 5 days, so a
/// connection whose peers vanished without a FIN or RST gets its record
/// the same day. The LRU table evicts quiet flows under pressure anyway.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

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
    pub events: EventSets,
    /// An open connection quiet this long is ended (`conn` with `end:
    /// idle_timeout`) and forgotten, in the kernel's table too.
    pub idle_timeout: Duration,
    /// Interim `conn` records of every connection open this long, once per
    /// interval; none when `None`.
    pub conn_interval: Option<Duration>,
    /// Events one flow may print per second (burst of twice that).
    pub per_flow_rate: u32,
    /// Half-open connections remembered at most: the kernel's half-open
    /// tables cannot hold more either, so past this the oldest are forgotten
    /// as the kernel has evicted them. Keeps the daemon's memory bounded
    /// under a SYN flood. `Capacity::max_half_open_tracked` of the tables.
    pub max_half_open_tracked: usize,
    /// Flows followed before those the tables no longer hold are looked
    /// for and forgotten, even those waiting for a deadline
    /// (`Capacity::max_tracked` of the tables). Keeps the daemon's
    /// memory bounded by the tables when flows end faster than their
    /// TIME_WAIT expires.
    pub max_tracked: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            half_open_timeout: Duration::from_secs(10),
            time_wait_timeout: Duration::from_secs(60),
            close_wait_timeout: Duration::from_secs(60),
            syn_flood_threshold: 200,
            time_wait_pressure: 1000,
            events: EventSets::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            conn_interval: None,
            per_flow_rate: 10,
            max_half_open_tracked: Capacity::default().max_half_open_tracked(),
            max_tracked: Capacity::default().max_tracked(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to attach to (at least one): names, or glob patterns
    /// (`IfaceSelector`) matched as interfaces appear.
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
    /// Interfaces where only one direction is visible: nothing is dropped
    /// there. Names (each one watched) or patterns (marking the watched
    /// interfaces they match).
    pub liberal_interfaces: Vec<String>,
    /// Flow-table sizes: set with `with_capacity`, which keeps
    /// `report.max_half_open_tracked` in step.
    pub capacity: Capacity,
    /// How often to print the kernel counters on stderr (also at exit).
    pub stats_interval: Option<std::time::Duration>,
    /// Where to serve `/metrics` (Prometheus text format); off when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the pinned state lives (one directory per instance under it).
    pub state_dir: std::path::PathBuf,
    /// The instance directory's name; derived from the interfaces when `None`.
    pub instance: Option<String>,
    /// Leave the programs attached and the state pinned at exit, for the
    /// next daemon to adopt.
    pub keep_state: bool,
    /// Which events to print, by their endpoints (`--addr`, `--port`,
    /// `--client`, `--server`); empty: all. The reporter still follows
    /// every flow: it filters nothing.
    pub filter: crate::filter::Filter,
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
            state_dir: DEFAULT_STATE_DIR.into(),
            instance: None,
            keep_state: false,
            filter: crate::filter::Filter::default(),
        }
    }

    /// `--iface`'s values as selectors (those that do not parse, which
    /// `validate` refuses, left out).
    pub fn iface_selectors(&self) -> Vec<IfaceSelector> {
        self.interfaces.iter().filter_map(|v| IfaceSelector::parse(v).ok()).collect()
    }

    /// `--liberal-iface`'s values as selectors (as `iface_selectors`).
    pub fn liberal_selectors(&self) -> Vec<IfaceSelector> {
        self.liberal_interfaces.iter().filter_map(|v| IfaceSelector::parse(v).ok()).collect()
    }

    /// Size the flow tables, and the reporter's memory with them.
    pub fn with_capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self.report.max_half_open_tracked = capacity.max_half_open_tracked();
        self.report.max_tracked = capacity.max_tracked();
        self
    }
}

/// The largest table `--max-flows` and `--max-half-open` may ask for, per
/// address family: 2^24 flows. The kernel's own limit is memory (the
/// tables must be allocatable); this bound keeps a typo from asking for
/// gigabytes (2^24 flows of both families already take 4.3 GiB).
pub const MAX_TABLE: u32 = 1 << 24;

/// The shortest and longest duration an option accepts.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest interface name (`IFNAMSIZ` less the terminating NUL).
const MAX_IFNAME: usize = 15;

/// What a kernel hash map element costs beyond its key and value
/// (`struct htab_elem` on 64-bit), and what each bucket costs (`struct
/// bucket`, a list head and a lock): the kernel's `htab_map_mem_usage`,
/// which is what the start-up log reports (`stats::table_memory`).
const HTAB_ELEM_OVERHEAD: u64 = 48;
const HTAB_BUCKET: u64 = 16;

/// Bytes one element of a kernel hash map with these key and value types
/// takes, its bucket not included (`htab_elem` + key and value, each
/// rounded up to 8 bytes).
const fn hash_elem<K, V>() -> u64 {
    HTAB_ELEM_OVERHEAD + (std::mem::size_of::<K>() as u64).next_multiple_of(8) + (std::mem::size_of::<V>() as u64).next_multiple_of(8)
}

/// Kernel memory per established flow: its way of a set (110 bytes for
/// IPv4, 134 for IPv6 with the 96-byte record) and its share of the stash
/// (a twelfth of an LRU hash element and its bucket): 124 and 150 bytes.
/// Estimates before loading; `stats::table_memory` measures the real maps
/// after.
pub const FLOW_BYTES_V4: u64 = way_bytes::<EstSetV4>() + (hash_elem::<FlowKeyV4, FlowRecord>() + HTAB_BUCKET) / estab::STASH_DIVISOR as u64;
pub const FLOW_BYTES_V6: u64 = way_bytes::<EstSetV6>() + (hash_elem::<FlowKeyV6, FlowRecord>() + HTAB_BUCKET) / estab::STASH_DIVISOR as u64;

/// Bytes one way of an established set takes.
const fn way_bytes<S>() -> u64 {
    std::mem::size_of::<S>() as u64 / estab::WAYS as u64
}
/// Kernel memory per half-open slot (an array of 4-way sets): 112 and 136 bytes.
pub const HALF_OPEN_BYTES_V4: u64 = std::mem::size_of::<SetV4>() as u64 / halfopen::WAYS as u64;
pub const HALF_OPEN_BYTES_V6: u64 = std::mem::size_of::<SetV6>() as u64 / halfopen::WAYS as u64;

impl Capacity {
    /// Kernel memory the four tables take, both families: an estimate
    /// from the per-flow figures above (hash buckets are a power of two).
    pub fn kernel_memory(&self) -> u64 {
        let sets = self.established_sets() as u64 * (std::mem::size_of::<EstSetV4>() + std::mem::size_of::<EstSetV6>()) as u64;
        let stash = self.stash() as u64;
        let elems = stash * (hash_elem::<FlowKeyV4, FlowRecord>() + hash_elem::<FlowKeyV6, FlowRecord>());
        sets + elems + 2 * stash.next_power_of_two() * HTAB_BUCKET + self.half_open_slots() as u64 * (HALF_OPEN_BYTES_V4 + HALF_OPEN_BYTES_V6)
    }
}

/// Whose fault a configuration error is, which sets the exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The command line asks for something no host allows: exit status 2,
    /// as for clap's own usage errors.
    Usage,
    /// This host cannot do what was asked (not enough memory): exit status 1.
    Environment,
}

impl ErrorClass {
    /// The process exit status for errors of this class.
    pub fn exit_status(self) -> u8 {
        match self {
            ErrorClass::Usage => 2,
            ErrorClass::Environment => 1,
        }
    }
}

/// An option's value that cannot be used, said as one line: the option,
/// the value, and what is allowed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{option} {value}: {allowed}")]
pub struct ConfigError {
    pub class: ErrorClass,
    pub option: &'static str,
    pub value: String,
    pub allowed: String,
}

impl ConfigError {
    fn usage(option: &'static str, value: impl fmt::Display, allowed: impl Into<String>) -> Self {
        ConfigError { class: ErrorClass::Usage, option, value: value.to_string(), allowed: allowed.into() }
    }
}

/// A name usable as one directory of the state directory.
pub fn valid_instance(name: &str) -> bool {
    (1..=200).contains(&name.len()) && !name.contains('/') && !name.contains('\0') && name != "." && name != ".."
}

/// `1.5 MiB`: how memory figures are written (as the start-up log does).
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `500ms`, `60s`: a duration as the options take it.
fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The kernel's own rule for an interface name (`dev_valid_name`).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Whether an `--iface` or `--liberal-iface` value is a glob pattern
/// (`veth*`, `tap?`, `eth[0-3]`) rather than an interface's name: it has
/// one of `*`, `?` or `[`, which no name has in practice.
pub fn is_pattern(value: &str) -> bool {
    value.contains(['*', '?', '['])
}

/// The longest pattern `--iface` takes: a pattern may be longer than the
/// names it matches (`[abc]`), not without bound.
const MAX_IFACE_PATTERN: usize = 64;

/// An `--iface` (or `--liberal-iface`) value: an interface's name, or a
/// glob pattern (`glob::Pattern`: `*`, `?`, `[...]`, `[!...]`) matched
/// against the names of interfaces present at start and appearing later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceSelector {
    Name(String),
    Pattern(glob::Pattern),
}

impl IfaceSelector {
    /// The value as given on the command line, or what is allowed.
    pub fn parse(value: &str) -> Result<IfaceSelector, String> {
        const IFNAME: &str = "1 to 15 bytes, without '/', ':' or spaces (see `ip -brief link`)";
        if !is_pattern(value) {
            return match valid_ifname(value) {
                true => Ok(IfaceSelector::Name(value.to_string())),
                false => Err(format!("an interface name is {IFNAME}")),
            };
        }
        if value.len() > MAX_IFACE_PATTERN || value.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()) {
            return Err(format!("a pattern is 1 to {MAX_IFACE_PATTERN} bytes, without '/', ':' or spaces"));
        }
        glob::Pattern::new(value)
            .map(IfaceSelector::Pattern)
            .map_err(|e| format!("not a valid pattern: {} (patterns use *, ? and [...], as in 'veth*')", e.msg))
    }

    /// Whether the interface called `name` is one this selects.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            IfaceSelector::Name(n) => n == name,
            IfaceSelector::Pattern(p) => p.matches(name),
        }
    }

    pub fn is_pattern(&self) -> bool {
        matches!(self, IfaceSelector::Pattern(_))
    }
}

impl fmt::Display for IfaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IfaceSelector::Name(n) => f.write_str(n),
            IfaceSelector::Pattern(p) => f.write_str(p.as_str()),
        }
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
pub fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

impl Config {
    /// Check every option before anything is loaded, and drop repeated
    /// interfaces (a warning each: watching one twice is harmless to ask
    /// for, and attaching twice would fail on our own program). The tables
    /// must fit in the host's available memory.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        self.validate_with(available_memory())
    }

    /// `validate`, with the host's available memory given (None: unknown,
    /// not checked).
    pub fn validate_with(&mut self, available: Option<u64>) -> Result<(), ConfigError> {
        if self.interfaces.is_empty() {
            return Err(ConfigError::usage("--iface", "(none)", "at least one interface to watch is needed"));
        }
        for (option, names) in [("--iface", &self.interfaces), ("--liberal-iface", &self.liberal_interfaces)] {
            for name in names {
                IfaceSelector::parse(name).map_err(|allowed| ConfigError::usage(option, format!("{name:?}"), allowed))?;
            }
        }
        let watched = self.iface_selectors();
        for name in self.liberal_interfaces.iter().filter(|n| !is_pattern(n)) {
            if !watched.iter().any(|w| w.matches(name)) {
                return Err(ConfigError::usage(
                    "--liberal-iface",
                    name,
                    format!("not one of the watched interfaces (add --iface {name})"),
                ));
            }
        }
        if !self.state_dir.is_absolute() {
            return Err(ConfigError::usage("--state-dir", self.state_dir.display(), "must be an absolute path on a BPF file system (bpffs)"));
        }
        if let Some(name) = self.instance.as_deref().filter(|n| !valid_instance(n)) {
            return Err(ConfigError::usage("--instance", format!("{name:?}"), "an instance name is 1 to 200 bytes, without '/', and not '.' or '..'"));
        }
        self.validate_tracking(available)?;
        self.warn_and_drop_repeats();
        Ok(())
    }

    /// The checks of everything but the interfaces: timeouts, table sizes,
    /// thresholds, and (when `available` is known) that the tables fit in
    /// memory. What `tcp-track read`, which watches no interface, checks.
    pub fn validate_tracking(&self, available: Option<u64>) -> Result<(), ConfigError> {
        let timeouts = [
            ("--half-open-timeout", Some(self.report.half_open_timeout)),
            ("--time-wait-timeout", Some(self.report.time_wait_timeout)),
            ("--close-wait-timeout", Some(self.report.close_wait_timeout)),
            ("--idle-timeout", Some(self.report.idle_timeout)),
            ("--conn-interval", self.report.conn_interval),
            ("--stats-interval", self.stats_interval),
        ];
        for (option, d) in timeouts {
            if let Some(d) = d.filter(|d| !(MIN_DURATION..=MAX_DURATION).contains(d)) {
                let allowed = format!("must be between {} and {}", human(MIN_DURATION), human(MAX_DURATION));
                return Err(ConfigError::usage(option, human(d), allowed));
            }
        }
        let tables = [
            ("--max-flows", self.capacity.max_flows, "flows"),
            ("--max-half-open", self.capacity.max_half_open, "half-open connections"),
        ];
        for (option, value, what) in tables {
            if !(1..=MAX_TABLE).contains(&value) {
                let allowed = format!("must be between 1 and {MAX_TABLE} (2^24) {what} per address family");
                return Err(ConfigError::usage(option, value, allowed));
            }
        }
        // Counts of connections: past the largest table, never reached.
        let counts = [
            ("--syn-flood-threshold", self.report.syn_flood_threshold, "half-open connections to one server endpoint"),
            ("--time-wait-pressure", self.report.time_wait_pressure, "TIME_WAIT connections from one client to one server endpoint"),
        ];
        for (option, value, what) in counts {
            if !(1..=MAX_TABLE).contains(&value) {
                let allowed = format!("must be between 1 and {MAX_TABLE} (2^24, the largest table) {what}");
                return Err(ConfigError::usage(option, value, allowed));
            }
        }
        if let Some(available) = available {
            self.capacity.check_fits(available)?;
        }
        Ok(())
    }

    /// Watch each interface once; a repeat gets a warning.
    fn warn_and_drop_repeats(&mut self) {
        for (option, names) in [("--iface", &mut self.interfaces), ("--liberal-iface", &mut self.liberal_interfaces)] {
            let mut seen: Vec<String> = Vec::with_capacity(names.len());
            for name in names.drain(..) {
                if seen.contains(&name) {
                    log::warn!("{option} {name} given more than once: it is watched once");
                } else {
                    seen.push(name);
                }
            }
            *names = seen;
        }
    }
}

impl Capacity {
    /// An environment error when the tables would not fit in `available`
    /// bytes, naming the largest value that fits.
    fn check_fits(&self, available: u64) -> Result<(), ConfigError> {
        let needed = self.kernel_memory();
        if needed <= available {
            return Ok(());
        }
        // The half-open tables alone (with one flow) do not fit: that is
        // the option to lower; otherwise --max-flows, with this half-open size.
        let (option, value, largest) = if Capacity::new(1, self.max_half_open).kernel_memory() > available {
            ("--max-half-open", self.max_half_open, largest_fitting(|n| Capacity::new(1, n), available))
        } else {
            ("--max-flows", self.max_flows, largest_fitting(|n| Capacity::new(n, self.max_half_open), available))
        };
        Err(ConfigError {
            class: ErrorClass::Environment,
            option,
            value: value.to_string(),
            allowed: format!(
                "the flow tables would take {} of kernel memory and {} is available (MemAvailable); the largest {option} that fits is {largest}",
                mib(needed),
                mib(available)
            ),
        })
    }
}

/// The largest `n` in 1..=MAX_TABLE whose capacity fits in `available`
/// (0 if none): memory grows with `n`, so a binary search.
fn largest_fitting(capacity: impl Fn(u32) -> Capacity, available: u64) -> u32 {
    let (mut lo, mut hi) = (0u32, MAX_TABLE);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if capacity(mid).kernel_memory() <= available {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
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
    fn per_flow_memory_is_a_way_and_a_share_of_the_stash() {
        // The 96-byte record in 8-way sets, a stash of a twelfth (issue
        // 15's budget: at most 128 and 152 bytes per flow).
        assert_eq!((FLOW_BYTES_V4, FLOW_BYTES_V6, HALF_OPEN_BYTES_V4, HALF_OPEN_BYTES_V6), (124, 150, 112, 136));
        // 2^24 flows, 16384 half-open.
        assert_eq!(mib(Capacity::new(MAX_TABLE, 16384).kernel_memory()), "4430.5 MiB");
    }

    #[test]
    fn tables_that_do_not_fit_name_the_largest_that_does() {
        let mut c = Config::new(vec!["lo".into()]).with_capacity(Capacity::new(1_000_000, 16384));
        let needed = c.capacity.kernel_memory();
        assert!(c.clone().validate_with(Some(needed)).is_ok(), "exactly enough fits");
        let e = c.validate_with(Some(needed / 2)).unwrap_err();
        assert_eq!(e.class, ErrorClass::Environment);
        let largest: u32 = e.allowed.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(Capacity::new(largest, 16384).kernel_memory() <= needed / 2, "{e}");
        assert!(Capacity::new(largest + 1, 16384).kernel_memory() > needed / 2, "{e}");
        // Half-open tables alone too big: that option is named.
        let mut c = Config::new(vec!["lo".into()]).with_capacity(Capacity::new(10, 1 << 20));
        let e = c.validate_with(Some(1 << 20)).unwrap_err();
        assert_eq!(e.option, "--max-half-open", "{e}");
        assert_eq!(ErrorClass::Usage.exit_status(), 2);
        assert_eq!(ErrorClass::Environment.exit_status(), 1);
    }

    #[test]
    fn the_reporter_remembers_what_both_half_open_tables_hold() {
        assert_eq!(ReportConfig::default().max_half_open_tracked, 2 * 16384);
        let c = Config::new(vec!["lo".into()]).with_capacity(Capacity::new(10, 100));
        assert_eq!(c.report.max_tracked, 10 + 128, "one family's tables");
        assert_eq!(ReportConfig::default().max_tracked, 65536 + 16384);
        assert_eq!(c.report.max_half_open_tracked, 2 * 128);
    }
}
