//! `tcp-track`: parse the command line, set up logging, run the command,
//! turn its outcome into an exit status. The commands are in
//! `tcp_track::cmd`.

use std::{io::Write, process::ExitCode};

use clap::Parser;
use tcp_track::{
    cmd::Command,
    config::{BpfLog, ConfigError},
};

#[derive(Parser)]
#[command(name = "tcp-track", version, about = "Tracks TCP connections with eBPF/XDP and tells you what they are doing.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.command.bpf_log());
    match cli.command.execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, causes joined with ": ".
            eprintln!("tcp-track: error: {e:#}");
            // A value no host allows is a usage error (2, like clap's own);
            // everything else is this host's (1).
            match e.downcast_ref::<ConfigError>() {
                Some(c) => ExitCode::from(c.class.exit_status()),
                None => ExitCode::FAILURE,
            }
        }
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
