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
