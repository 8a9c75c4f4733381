//! The commands of the `tcp-track` binary, one module each: each turns its
//! command-line arguments into a configuration and calls the library.
//! Another command (`flows`, `read`, ...) is another module and another
//! variant of `Command`.

use anyhow::Result;

use crate::config::BpfLog;

pub mod demo;
pub mod detach;
pub mod flows;
pub mod read;
pub mod run;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Attach to interfaces and stream connection events to stdout.
    // Boxed: its many options make it much larger than the other variants.
    Run(Box<run::RunArgs>),
    /// Run the same tracker on a pcap or pcapng capture (no root needed):
    /// the capture's timestamps are the clock.
    Read(read::ReadArgs),
    /// Play every kind of event in throw-away network namespaces (root; about 20 s).
    Demo(demo::DemoArgs),
    /// List the connections in a running daemon's pinned tables (like
    /// `conntrack -L` and `ss -tan`).
    Flows(flows::FlowsArgs),
    /// Remove a state kept with `run --keep-state`: detach its programs and
    /// free its tables.
    Detach(detach::DetachArgs),
}

impl Command {
    /// The kernel-side log level the command asks for (the binary sets up
    /// logging before running it).
    pub fn bpf_log(&self) -> BpfLog {
        match self {
            Command::Run(args) => args.bpf_log,
            Command::Demo(_) | Command::Flows(_) | Command::Detach(_) | Command::Read(_) => BpfLog::Off,
        }
    }

    /// Run the command to its end.
    pub fn execute(self) -> Result<()> {
        match self {
            Command::Run(args) => run::execute(*args),
            Command::Demo(args) => demo::execute(args),
            Command::Flows(args) => flows::execute(args),
            Command::Detach(args) => detach::execute(args),
            Command::Read(args) => read::execute(args),
        }
    }
}
