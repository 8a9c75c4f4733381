//! `tcp-track run`: attach to interfaces and stream connection events to
//! stdout until SIGINT or SIGTERM.

use std::{fmt, time::Duration};

use anyhow::{Context, Result};

use crate::{
    config::{
        BpfLog, Capacity, Config, EventSet, EventSets, Format, ReportConfig, RstPolicy, XdpModeChoice, DEFAULT_MAX_FLOWS,
        DEFAULT_MAX_HALF_OPEN, DEFAULT_STATE_DIR,
    },
    filter::{Cidr, EndpointFilter, Filter},
};

// The defaults shown by `--help` are the configuration's own (`config`).

#[derive(clap::Args)]
pub struct RunArgs {
    /// Interface to watch (repeat for several; they share one flow table).
    #[arg(long = "iface", value_name = "IF", required = true)]
    pub interfaces: Vec<String>,
    /// XDP attach mode. `auto` tries native (driver) mode and falls back to skb.
    #[arg(long, value_enum, default_value_t)]
    pub xdp_mode: XdpModeChoice,
    /// Do not attach the TC egress program: on a box that forwards between
    /// the watched interfaces, XDP alone sees both directions.
    #[arg(long)]
    pub no_egress: bool,
    /// Kernel-side log level (aya-log), printed on stderr; off by default.
    #[arg(long, value_enum, default_value_t)]
    pub bpf_log: BpfLog,
    #[command(flatten)]
    pub tracking: TrackArgs,
    /// An interface where only one direction is visible (asymmetric
    /// routing): nothing is judged, so nothing is dropped there. Repeatable.
    #[arg(long = "liberal-iface", value_name = "IF")]
    pub liberal_interfaces: Vec<String>,
    /// Print the kernel counters on stderr this often (they are always
    /// printed at exit).
    #[arg(long, value_parser = duration, allow_hyphen_values = true)]
    pub stats_interval: Option<Timeout>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g.
    /// 127.0.0.1:9464); off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where to pin the tables (for `tcp-track flows` and the next
    /// daemon): a directory on bpffs, one subdirectory per instance.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: std::path::PathBuf,
    /// The instance's subdirectory of --state-dir (default: the
    /// interfaces, joined by '+').
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// On SIGTERM or Ctrl-C, leave the programs attached and the state
    /// pinned, for the next daemon to adopt (`tcp-track detach` removes it).
    #[arg(long)]
    pub keep_state: bool,
}

/// What the tracker and the reporter are asked to do, live (`run`) or on a
/// capture (`read`): the output, the timeouts and thresholds, the RST
/// policy and the table sizes.
#[derive(clap::Args)]
pub struct TrackArgs {
    /// Output format: readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Which events to print, a comma-separated list of sets: `notable`
    /// (resets, half-open, TIME_WAIT, SYN floods, CLOSE_WAIT, TIME_WAIT
    /// pressure), `conn` (one record per connection when it ends), `all`
    /// (both, and every new flow, FIN, state change and retransmission).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "notable")]
    pub events: Vec<EventSet>,
    /// A handshake not completed after this long is reported as half-open;
    /// an established connection whose data goes unacknowledged this long
    /// has lost its peer. Forms: 500ms, 2s, 1m.
    #[arg(long, value_parser = duration, allow_hyphen_values = true, default_value_t = ReportConfig::default().half_open_timeout.into())]
    pub half_open_timeout: Timeout,
    /// How long TIME_WAIT lasts before `time_wait_expired` (Linux: 60s).
    #[arg(long, value_parser = duration, allow_hyphen_values = true, default_value_t = ReportConfig::default().time_wait_timeout.into())]
    pub time_wait_timeout: Timeout,
    /// CLOSE_WAIT (the other side closed, this side's application has not)
    /// lasting this long is reported.
    #[arg(long, value_parser = duration, allow_hyphen_values = true, default_value_t = ReportConfig::default().close_wait_timeout.into())]
    pub close_wait_timeout: Timeout,
    /// An open connection quiet this long is ended (its `conn` record says
    /// `end: idle_timeout`) and forgotten. The default outlasts Linux's
    /// default keepalive (2 h 11 min 15 s).
    #[arg(long, value_parser = duration, allow_hyphen_values = true, default_value_t = ReportConfig::default().idle_timeout.into())]
    pub idle_timeout: Timeout,
    /// Also print an interim `conn` record (`interim: true`, counts so far)
    /// for every connection open this long, once per interval; off unless
    /// given.
    #[arg(long, value_parser = duration, allow_hyphen_values = true)]
    pub conn_interval: Option<Timeout>,
    /// More half-open connections than this to one server endpoint is a SYN
    /// flood; it ends when they fall below half of it.
    #[arg(long, value_parser = count, allow_hyphen_values = true, default_value_t = ReportConfig::default().syn_flood_threshold)]
    pub syn_flood_threshold: u32,
    /// This many TIME_WAIT connections from one client address to one
    /// server endpoint is reported as TIME_WAIT pressure.
    #[arg(long, value_parser = count, allow_hyphen_values = true, default_value_t = ReportConfig::default().time_wait_pressure)]
    pub time_wait_pressure: u32,
    /// Which RSTs to drop in XDP. Every RST is classified and reported
    /// either way; refusals, exact resets and stateless peers' resets are
    /// never dropped, nor any RST of a flow whose windows are unknown.
    #[arg(long, value_enum, default_value_t, conflicts_with = "drop_invalid_rst")]
    pub rst_policy: RstPolicy,
    /// Shorthand for --rst-policy drop-invalid (RFC 5961 blind resets and
    /// RFC 1337 TIME-WAIT assassination).
    #[arg(long)]
    pub drop_invalid_rst: bool,
    /// Flow-table capacity, per address family (the start-up log says what
    /// it costs in kernel memory).
    #[arg(long, value_parser = count, allow_hyphen_values = true, default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: u32,
    /// Half-open table capacity, per address family: connections whose
    /// handshake has not completed live there, apart, so that a SYN flood
    /// cannot evict established ones. Rounded up to a power of two of
    /// 4-slot sets.
    #[arg(long, value_parser = count, allow_hyphen_values = true, default_value_t = DEFAULT_MAX_HALF_OPEN)]
    pub max_half_open: u32,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// The endpoint filter of `run`, `read` and `flows`: which connections to
/// show. Rules of one option are alternatives; different options must all
/// match.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Show only connections (in run and read, their events) with an
    /// endpoint in this network (198.18.0.0/15, 2001:db8::/32, or one
    /// address). Repeatable.
    #[arg(long, value_name = "CIDR")]
    pub addr: Vec<Cidr>,
    /// Show only connections with an endpoint on this port. Repeatable.
    #[arg(long)]
    pub port: Vec<u16>,
    /// Show only connections whose client matches: a network, :PORT, or
    /// ADDR:PORT. Repeatable.
    #[arg(long, value_name = "ENDPOINT")]
    pub client: Vec<EndpointFilter>,
    /// Show only connections whose server matches: a network, :PORT, or
    /// ADDR:PORT. Repeatable.
    #[arg(long, value_name = "ENDPOINT")]
    pub server: Vec<EndpointFilter>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Filter {
        Filter { addrs: a.addr, ports: a.port, clients: a.client, servers: a.server }
    }
}

impl TrackArgs {
    /// `config` with what these arguments ask for.
    pub fn apply(self, config: Config) -> Config {
        let config = Config {
            format: self.format,
            report: ReportConfig {
                half_open_timeout: self.half_open_timeout.into(),
                time_wait_timeout: self.time_wait_timeout.into(),
                close_wait_timeout: self.close_wait_timeout.into(),
                syn_flood_threshold: self.syn_flood_threshold,
                time_wait_pressure: self.time_wait_pressure,
                events: EventSets::of(&self.events),
                idle_timeout: self.idle_timeout.into(),
                conn_interval: self.conn_interval.map(Into::into),
                ..config.report
            },
            rst_policy: if self.drop_invalid_rst { RstPolicy::DropInvalid } else { self.rst_policy },
            filter: self.filter.into(),
            ..config
        };
        config.with_capacity(Capacity::new(self.max_flows, self.max_half_open))
    }
}

impl RunArgs {
    /// What the arguments ask for.
    pub fn config(self) -> Config {
        let config = Config {
            xdp_mode: self.xdp_mode,
            egress: !self.no_egress,
            bpf_log: self.bpf_log,
            liberal_interfaces: self.liberal_interfaces,
            stats_interval: self.stats_interval.map(Into::into),
            metrics_addr: self.metrics_addr,
            state_dir: self.state_dir,
            instance: self.instance,
            keep_state: self.keep_state,
            ..Config::new(self.interfaces)
        };
        self.tracking.apply(config)
    }
}

/// Run the daemon on a single-threaded runtime until SIGINT or SIGTERM.
pub fn execute(args: RunArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(crate::run(args.config(), shutdown_signal()))
}

/// A duration on the command line: humantime's forms in (`500ms`, `2s`,
/// `1m`, `1h 30m`), and out as whole seconds (`60s`) when it has no
/// fraction (`--help` shows the defaults this way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl From<Duration> for Timeout {
    fn from(d: Duration) -> Self {
        Timeout(d)
    }
}

impl From<Timeout> for Duration {
    fn from(t: Timeout) -> Self {
        t.0
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}s", self.0.as_secs())
        } else {
            humantime::format_duration(self.0).fmt(f)
        }
    }
}

/// `500ms`, `2s`, `1m`, `1h 30m`: humantime's forms. The range is
/// `Config::validate`'s to check.
fn duration(s: &str) -> Result<Timeout, String> {
    if s.starts_with('-') {
        return Err("a duration cannot be negative (use forms like 500ms, 2s, 1m)".into());
    }
    humantime::parse_duration(s).map(Timeout).map_err(|e| format!("{e} (use forms like 500ms, 2s, 1m)"))
}

/// A count: a whole number (`Config::validate` checks its range, which
/// depends on other options).
fn count(s: &str) -> Result<u32, String> {
    match s.parse::<i128>() {
        Ok(n) if n < 0 => Err("cannot be negative".into()),
        Ok(_) => s.parse().map_err(|_| format!("at most {}", u32::MAX)),
        Err(_) => Err("not a whole number".into()),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        _ => {
            log::error!("cannot install signal handlers; stop tcp-track with SIGKILL (its links close on exit)");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = int.recv() => log::info!("SIGINT received, stopping"),
        _ = term.recv() => log::info!("SIGTERM received, stopping"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn config(args: &[&str]) -> Config {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap().run.config()
    }

    use crate::{
        config::{ConfigError, ErrorClass},
        test_support::edges::{assert_edge, RUN_EDGES as EDGES},
    };

    /// A host with 1 GiB available, so that the memory rows do not depend
    /// on the machine running the tests.
    const AVAILABLE: u64 = 1 << 30;

    /// `run --iface lo ARGS`, parsed and validated: the message and its class.
    pub(crate) fn check(args: &[&str]) -> Result<Config, (String, ErrorClass)> {
        let argv = std::iter::once("run").chain(["--iface", "lo"]).chain(args.iter().copied());
        let mut config = Cli::try_parse_from(argv).map_err(|e| (e.to_string(), ErrorClass::Usage))?.run.config();
        config.validate_with(Some(AVAILABLE)).map_err(|e: ConfigError| (e.to_string(), e.class))?;
        Ok(config)
    }

    #[test]
    fn every_option_at_its_edges() {
        for edge in EDGES {
            assert_edge(edge, check(edge.0));
        }
    }

    #[test]
    fn every_option_has_edge_rows() {
        use clap::CommandFactory;
        for arg in Cli::command().get_arguments() {
            let long = format!("--{}", arg.get_long().expect("every option is long"));
            assert!(EDGES.iter().any(|(args, ..)| args.contains(&long.as_str())), "no edge rows for {long}");
        }
    }

    #[test]
    fn repeated_interfaces_are_watched_once() {
        let c = check(&["--iface", "lo", "--iface", "eth1", "--liberal-iface", "lo", "--liberal-iface", "lo"]).unwrap();
        assert_eq!(c.interfaces, ["lo", "eth1"]);
        assert_eq!(c.liberal_interfaces, ["lo"]);
    }

    #[test]
    fn event_sets_are_a_list() {
        let sets = |arg: &str| config(&["--iface", "lo", "--events", arg]).report.events;
        let (n, c, a) = (EventSet::Notable, EventSet::Conn, EventSet::All);
        assert_eq!(sets("notable,conn"), EventSets { notable: true, conn: true, all: false });
        assert_eq!(sets("conn"), EventSets { notable: false, conn: true, all: false });
        assert_eq!(sets("all"), EventSets { notable: true, conn: true, all: true });
        assert_eq!(sets("notable"), EventSets::of(&[n]));
        assert_eq!(sets("conn,all,conn"), EventSets::of(&[c, a]));
        let c = config(&["--iface", "lo", "--events", "conn", "--conn-interval", "30s", "--idle-timeout", "1h"]);
        assert_eq!((c.report.conn_interval, c.report.idle_timeout), (Some(Duration::from_secs(30)), Duration::from_secs(3600)));
    }

    #[test]
    fn defaults_are_the_configs() {
        let c = config(&["--iface", "lo"]);
        assert_eq!(c, Config::new(vec!["lo".into()]));
    }

    #[test]
    fn arguments_reach_the_config_and_derived_limits_follow() {
        let c = config(&[
            "--iface", "a", "--iface", "b", "--format", "json", "--events", "all", "--half-open-timeout", "500ms",
            "--drop-invalid-rst", "--max-flows", "1000", "--max-half-open", "100", "--no-egress", "--metrics-addr", "127.0.0.1:9464",
        ]);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.interfaces, ["a", "b"]);
        assert_eq!((c.format, c.report.events, c.egress), (Format::Json, EventSet::All.into(), false));
        assert_eq!(c.report.half_open_timeout, Duration::from_millis(500));
        assert_eq!(c.rst_policy, RstPolicy::DropInvalid);
        assert_eq!((c.capacity.max_flows(), c.capacity.half_open_slots()), (1000, 128));
        assert_eq!(c.report.max_half_open_tracked, 256, "both families' half-open tables");
    }
}
