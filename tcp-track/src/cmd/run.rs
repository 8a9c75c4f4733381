//! `tcp-track run`: attach to interfaces and stream connection events to
//! stdout until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{
    BpfLog, Capacity, Config, EventSet, Format, ReportConfig, RstPolicy, XdpModeChoice, DEFAULT_MAX_FLOWS,
    DEFAULT_MAX_HALF_OPEN,
};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Interface to watch (repeat for several; they share one flow table).
    #[arg(long = "iface", value_name = "IF", required = true)]
    pub interfaces: Vec<String>,
    /// Output format: readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// XDP attach mode. `auto` tries native (driver) mode and falls back to skb.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    /// Do not attach the TC egress program: on a box that forwards between
    /// the watched interfaces, XDP alone sees both directions.
    #[arg(long)]
    pub no_egress: bool,
    /// Kernel-side log level (aya-log), printed on stderr; off by default.
    #[arg(long, value_enum, default_value_t = BpfLog::Off)]
    pub bpf_log: BpfLog,
    /// Which events to print: what matters (resets, half-open, TIME_WAIT,
    /// SYN floods, CLOSE_WAIT, TIME_WAIT pressure), or also every new flow,
    /// FIN, state change and retransmission.
    #[arg(long, value_enum, default_value_t = EventSet::Notable)]
    pub events: EventSet,
    /// A handshake not completed after this long is reported as half-open;
    /// an established connection whose data goes unacknowledged this long
    /// has lost its peer. Forms: 500ms, 2s, 1m.
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub half_open_timeout: Duration,
    /// How long TIME_WAIT lasts before `time_wait_expired` (Linux: 60s).
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub time_wait_timeout: Duration,
    /// CLOSE_WAIT (the other side closed, this side's application has not)
    /// lasting this long is reported.
    #[arg(long, value_parser = duration, default_value = "60s")]
    pub close_wait_timeout: Duration,
    /// More half-open connections than this to one server endpoint is a SYN
    /// flood; it ends when they fall below half of it.
    #[arg(long, default_value_t = 200)]
    pub syn_flood_threshold: u32,
    /// This many TIME_WAIT connections from one client address to one
    /// server endpoint is reported as TIME_WAIT pressure.
    #[arg(long, default_value_t = 1000)]
    pub time_wait_pressure: u32,
    /// Which RSTs to drop in XDP. Every RST is classified and reported
    /// either way; refusals, exact resets and stateless peers' resets are
    /// never dropped, nor any RST of a flow whose windows are unknown.
    #[arg(long, value_enum, default_value_t = RstPolicy::Observe, conflicts_with = "drop_invalid_rst")]
    pub rst_policy: RstPolicy,
    /// Shorthand for --rst-policy drop-invalid (RFC 5961 blind resets and
    /// RFC 1337 TIME-WAIT assassination).
    #[arg(long)]
    pub drop_invalid_rst: bool,
    /// An interface where only one direction is visible (asymmetric
    /// routing): nothing is judged, so nothing is dropped there. Repeatable.
    #[arg(long = "liberal-iface", value_name = "IF")]
    pub liberal_interfaces: Vec<String>,
    /// Flow-table capacity, per address family (the start-up log says what
    /// it costs in kernel memory).
    #[arg(long, default_value_t = DEFAULT_MAX_FLOWS)]
    pub max_flows: u32,
    /// Half-open table capacity, per address family: connections whose
    /// handshake has not completed live there, apart, so that a SYN flood
    /// cannot evict established ones. Rounded up to a power of two of
    /// 4-slot sets.
    #[arg(long, default_value_t = DEFAULT_MAX_HALF_OPEN)]
    pub max_half_open: u32,
    /// Print the kernel counters on stderr this often (they are always
    /// printed at exit).
    #[arg(long, value_parser = duration)]
    pub stats_interval: Option<Duration>,
}

impl RunArgs {
    /// What the arguments ask for.
    pub fn config(self) -> Config {
        let config = Config {
            format: self.format,
            xdp_mode: self.xdp_mode,
            egress: !self.no_egress,
            bpf_log: self.bpf_log,
            report: ReportConfig {
                half_open_timeout: self.half_open_timeout,
                time_wait_timeout: self.time_wait_timeout,
                close_wait_timeout: self.close_wait_timeout,
                syn_flood_threshold: self.syn_flood_threshold,
                time_wait_pressure: self.time_wait_pressure,
                events: self.events,
                ..ReportConfig::default()
            },
            rst_policy: if self.drop_invalid_rst { RstPolicy::DropInvalid } else { self.rst_policy },
            liberal_interfaces: self.liberal_interfaces,
            stats_interval: self.stats_interval,
            ..Config::new(self.interfaces)
        };
        config.with_capacity(Capacity::new(self.max_flows, self.max_half_open))
    }
}

/// Run the daemon on a single-threaded runtime until SIGINT or SIGTERM.
pub fn execute(args: RunArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(crate::run(args.config(), shutdown_signal()))
}

/// `500ms`, `2s`, `1m`, `1h 30m`: humantime's forms.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use forms like 500ms, 2s, 1m)"))
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

    #[test]
    fn defaults_are_the_configs() {
        let c = config(&["--iface", "lo"]);
        assert_eq!(c, Config::new(vec!["lo".into()]));
    }

    #[test]
    fn arguments_reach_the_config_and_derived_limits_follow() {
        let c = config(&[
            "--iface", "a", "--iface", "b", "--format", "json", "--events", "all", "--half-open-timeout", "500ms",
            "--drop-invalid-rst", "--max-flows", "1000", "--max-half-open", "100", "--no-egress",
        ]);
        assert_eq!(c.interfaces, ["a", "b"]);
        assert_eq!((c.format, c.report.events, c.egress), (Format::Json, EventSet::All, false));
        assert_eq!(c.report.half_open_timeout, Duration::from_millis(500));
        assert_eq!(c.rst_policy, RstPolicy::DropInvalid);
        assert_eq!((c.capacity.max_flows(), c.capacity.half_open_slots()), (1000, 128));
        assert_eq!(c.report.max_half_open_tracked, 256, "both families' half-open tables");
    }
}
