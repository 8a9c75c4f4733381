//! `tcp-track`: the command line.

use std::{io::Write, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tcp_track::{
    config::{BpfLog, Capacity, EventSet, ReportConfig, RstPolicy, DEFAULT_MAX_FLOWS, DEFAULT_MAX_HALF_OPEN},
    Config, Format, XdpModeChoice,
};

#[derive(Parser)]
#[command(name = "tcp-track", version, about = "Tracks TCP connections with eBPF/XDP and tells you what they are doing.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to interfaces and stream connection events to stdout.
    Run(RunArgs),
    /// Play every kind of event in throw-away network namespaces (root; about 20 s).
    Demo {
        /// Output format of the events.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Interface to watch (repeat for several; they share one flow table).
    #[arg(long = "iface", value_name = "IF", required = true)]
    interfaces: Vec<String>,
    /// Output format: readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// XDP attach mode. `auto` tries native (driver) mode and falls back to skb.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    xdp_mode: XdpModeChoice,
    /// Do not attach the TC egress program: on a box that forwards between
    /// the watched interfaces, XDP alone sees both directions.
    #[arg(long)]
    no_egress: bool,
    /// Kernel-side log level (aya-log), printed on stderr; off by default.
    #[arg(long, value_enum, default_value_t = BpfLog::Off)]
    bpf_log: BpfLog,
    /// Which events to print: what matters (resets, half-open, TIME_WAIT,
    /// SYN floods, CLOSE_WAIT, TIME_WAIT pressure), or also every new flow,
    /// FIN, state change and retransmission.
    #[arg(long, value_enum, default_value_t = EventSet::Notable)]
    events: EventSet,
    /// A handshake not completed after this long is reported as half-open;
    /// an established connection whose data goes unacknowledged this long
    /// has lost its peer. Forms: 500ms, 2s, 1m.
    #[arg(long, value_parser = duration, default_value = "10s")]
    half_open_timeout: Duration,
    /// How long TIME_WAIT lasts before `time_wait_expired` (Linux: 60s).
    #[arg(long, value_parser = duration, default_value = "60s")]
    time_wait_timeout: Duration,
    /// CLOSE_WAIT (the other side closed, this side's application has not)
    /// lasting this long is reported.
    #[arg(long, value_parser = duration, default_value = "60s")]
    close_wait_timeout: Duration,
    /// More half-open connections than this to one server endpoint is a SYN
    /// flood; it ends when they fall below half of it.
    #[arg(long, default_value_t = 200)]
    syn_flood_threshold: u32,
    /// This many TIME_WAIT connections from one client address to one
    /// server endpoint is reported as TIME_WAIT pressure.
    #[arg(long, default_value_t = 1000)]
    time_wait_pressure: u32,
    /// Which RSTs to drop in XDP. Every RST is classified and reported
    /// either way; refusals, exact resets and stateless peers' resets are
    /// never dropped, nor any RST of a flow whose windows are unknown.
    #[arg(long, value_enum, default_value_t = RstPolicy::Observe, conflicts_with = "drop_invalid_rst")]
    rst_policy: RstPolicy,
    /// Shorthand for --rst-policy drop-invalid (RFC 5961 blind resets and
    /// RFC 1337 TIME-WAIT assassination).
    #[arg(long)]
    drop_invalid_rst: bool,
    /// An interface where only one direction is visible (asymmetric
    /// routing): nothing is judged, so nothing is dropped there. Repeatable.
    #[arg(long = "liberal-iface", value_name = "IF")]
    liberal_interfaces: Vec<String>,
    /// Flow-table capacity, per address family (the start-up log says what
    /// it costs in kernel memory).
    #[arg(long, default_value_t = DEFAULT_MAX_FLOWS)]
    max_flows: u32,
    /// Half-open table capacity, per address family: connections whose
    /// handshake has not completed live there, apart, so that a SYN flood
    /// cannot evict established ones. Rounded up to a power of two of
    /// 4-slot sets.
    #[arg(long, default_value_t = DEFAULT_MAX_HALF_OPEN)]
    max_half_open: u32,
    /// Print the kernel counters on stderr this often (they are always
    /// printed at exit).
    #[arg(long, value_parser = duration)]
    stats_interval: Option<Duration>,
}

/// `500ms`, `2s`, `1m`, `1h 30m`: humantime's forms.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use forms like 500ms, 2s, 1m)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { format } => {
            init_logging(BpfLog::Off);
            match tcp_track::demo::run(format) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Run(args) => {
            init_logging(args.bpf_log);
            let capacity = Capacity::new(args.max_flows, args.max_half_open);
            let config = Config {
                interfaces: args.interfaces,
                format: args.format,
                xdp_mode: args.xdp_mode,
                egress: !args.no_egress,
                bpf_log: args.bpf_log,
                report: ReportConfig {
                    half_open_timeout: args.half_open_timeout,
                    time_wait_timeout: args.time_wait_timeout,
                    close_wait_timeout: args.close_wait_timeout,
                    syn_flood_threshold: args.syn_flood_threshold,
                    time_wait_pressure: args.time_wait_pressure,
                    events: args.events,
                    max_half_open_tracked: capacity.max_half_open_tracked(),
                    ..ReportConfig::default()
                },
                rst_policy: if args.drop_invalid_rst { RstPolicy::DropInvalid } else { args.rst_policy },
                liberal_interfaces: args.liberal_interfaces,
                capacity,
                stats_interval: args.stats_interval,
            };
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return fail(anyhow::Error::new(e).context("starting the async runtime")),
            };
            match runtime.block_on(tcp_track::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

/// One line on stderr, causes joined with ": ", and exit status 1.
fn fail(e: anyhow::Error) -> ExitCode {
    eprintln!("tcp-track: error: {e:#}");
    ExitCode::FAILURE
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

/// Logs on stderr, `RUST_LOG` filtering (default: info). `--bpf-log LEVEL`
/// also lets the kernel programs' records (targets `tcp_track::xdp` and
/// `tcp_track::tc`, their module paths) through at that level.
fn init_logging(bpf_log: BpfLog) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    let level = match bpf_log {
        BpfLog::Off => None,
        BpfLog::Error => Some(log::LevelFilter::Error),
        BpfLog::Warn => Some(log::LevelFilter::Warn),
        BpfLog::Info => Some(log::LevelFilter::Info),
        BpfLog::Debug => Some(log::LevelFilter::Debug),
        BpfLog::Trace => Some(log::LevelFilter::Trace),
    };
    if let Some(level) = level {
        builder.filter_module("tcp_track::xdp", level).filter_module("tcp_track::tc", level);
    }
    builder
        .format(|buf, record| {
            let level = record.level().to_string().to_lowercase();
            writeln!(buf, "tcp-track {level}: {}", record.args())
        })
        .init();
}
