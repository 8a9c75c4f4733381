//! `tcp-track flows`: list the connections in a daemon's pinned tables.

use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use crate::{
    clock,
    config::{Format, DEFAULT_STATE_DIR},
    flows::{self, Selection, StateFilter},
};

use super::run::FilterArgs;

#[derive(clap::Args)]
pub struct FlowsArgs {
    /// Output format: aligned columns, or one JSON object per line (the
    /// event stream's field names).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Only connections in this state: a connection state (ESTABLISHED,
    /// TIME_WAIT...) or an endpoint state as `ss` names it (ESTAB,
    /// TIME-WAIT..., either endpoint). Repeatable, or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub state: Vec<StateFilter>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the tables of the daemon watching this interface. Repeatable.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    /// Print the number of connections per state, not the connections.
    #[arg(long)]
    pub count: bool,
    /// Where the daemons pin their state (as given to `tcp-track run`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: std::path::PathBuf,
    /// Only this instance (a subdirectory of --state-dir; default: all).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

pub fn execute(args: FlowsArgs) -> Result<()> {
    let filter = Selection { states: args.state, endpoints: args.filter.into(), ifaces: args.ifaces };
    let listed = flows::list(&args.state_dir, args.instance.as_deref(), &filter, clock::monotonic_ns())?;
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.count { flows::write_counts(&mut out, args.format, &listed) } else { flows::write_list(&mut out, args.format, &listed) };
    match written.and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}
