//! `tcp-track read FILE`: the tracker on a pcap or pcapng capture (or
//! standard input), with the capture's timestamps as the clock. No root, no
//! BPF: `offline` runs the shared tracker in memory and drives the same
//! daemon `run` does.

use std::{
    io::{self, BufWriter, Write},
    path::PathBuf,
};

use anyhow::{Context, Result};
use log::info;

use super::run::TrackArgs;
use crate::{
    capture,
    config::{self, Config},
    offline::{self, Deferred, Progress, ReadOutcome},
    output,
};

#[derive(clap::Args)]
pub struct ReadArgs {
    /// The capture: a pcap or pcapng file, or `-` for standard input
    /// (`tcpdump -U -w - ... | tcp-track read -`).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub tracking: TrackArgs,
}

impl ReadArgs {
    /// What the options ask for (no interface: the capture's are used).
    pub fn config(self) -> (PathBuf, Config) {
        (self.file, self.tracking.apply(Config::new(Vec::new())))
    }
}

/// Read the capture to its end and report as `run` would have. Damage in
/// the capture ends the read after everything before it was reported, with
/// one line and exit status 1.
pub fn execute(args: ReadArgs) -> Result<()> {
    let (path, config) = args.config();
    config.validate_tracking(config::available_memory())?;
    let stdin = path.as_os_str() == "-";
    let shown = if stdin { "standard input".to_string() } else { path.display().to_string() };
    let reader = capture::open(&path).with_context(|| format!("reading {shown}"))?;
    let size = if stdin { None } else { std::fs::metadata(&path).ok().map(|m| m.len()) };
    let progress = Progress::on_terminal(size);
    let mut out = BufWriter::with_capacity(output::BUFFER, io::stdout().lock());
    // From a pipe, every packet's lines are written as they come (a live
    // `tcpdump -U -w -`); from a file, when the buffer fills.
    let read = if stdin {
        offline::read_capture(&config, reader, &mut out, progress)
    } else {
        offline::read_capture(&config, reader, Deferred(&mut out), progress)
    };
    let outcome = match read.and_then(|o| out.flush().map(|()| o)) {
        Ok(o) => o,
        // A reader that went away (`tcp-track read f.pcap | head`) is a normal end.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(e) => return Err(e).context("writing events to stdout"),
    };
    summarize(&shown, outcome)
}

/// The capture's figures on stderr; its damage, if any, as the error.
fn summarize(shown: &str, outcome: ReadOutcome) -> Result<()> {
    let s = outcome.stats;
    info!("{shown}: {} packets, {} bytes", s.packets, s.bytes);
    if s.truncated_packets > 0 {
        info!(
            "{} packets were cut by the snap length: each was parsed as far as its captured bytes go (a TCP header cut short counts as malformed)",
            s.truncated_packets
        );
    }
    info!("{} flows still followed at the end of the capture", outcome.open_flows);
    match outcome.error {
        None => Ok(()),
        Some(e) => Err(e).with_context(|| format!("reading {shown} (the events before the damage were printed)")),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::{
        config::{ConfigError, ErrorClass},
        test_support::edges::{assert_edge, RUN_EDGES},
    };

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        read: ReadArgs,
    }

    /// `read trace.pcap ARGS`, parsed and checked as `execute` checks it
    /// (with 1 GiB available, like `run`'s rows).
    fn check(args: &[&str]) -> Result<Config, (String, ErrorClass)> {
        let argv = ["read", "trace.pcap"].into_iter().chain(args.iter().copied());
        let (_, config) = Cli::try_parse_from(argv).map_err(|e| (e.to_string(), ErrorClass::Usage))?.read.config();
        config.validate_tracking(Some(1 << 30)).map_err(|e: ConfigError| (e.to_string(), e.class))?;
        Ok(config)
    }

    fn read_options() -> Vec<String> {
        Cli::command().get_arguments().filter_map(|a| a.get_long()).map(|l| format!("--{l}")).collect()
    }

    /// `read`'s options are `run`'s (`TrackArgs`), so `run`'s edge table
    /// covers them: every option of `read` has rows, and each row made only
    /// of `read`'s options gives its verdict here.
    #[test]
    fn every_option_at_its_edges_as_run_has_them() {
        let options = read_options();
        let edges = || RUN_EDGES.iter();
        for option in &options {
            assert!(edges().any(|(args, ..)| args.contains(&option.as_str())), "no edge rows for {option}");
        }
        let mut rows = 0;
        for edge in edges() {
            if !edge.0.iter().filter(|a| a.starts_with("--")).all(|a| options.iter().any(|o| o == a)) {
                continue;
            }
            rows += 1;
            assert_edge(edge, check(edge.0));
        }
        assert!(rows > 35, "{rows} rows apply to read");
    }

    #[test]
    fn the_file_is_required_and_options_reach_the_config() {
        assert!(Cli::try_parse_from(["read"]).is_err());
        let c = check(&["--format", "json", "--max-flows", "1000", "--drop-invalid-rst", "--time-wait-timeout", "2s"]).unwrap();
        assert_eq!((c.format, c.capacity.max_flows(), c.rst_policy), (crate::Format::Json, 1000, crate::config::RstPolicy::DropInvalid));
        assert_eq!(c.report.time_wait_timeout, std::time::Duration::from_secs(2));
        assert!(c.interfaces.is_empty(), "a capture watches no interface");
    }
}
