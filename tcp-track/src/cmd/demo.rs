//! `tcp-track demo`: every kind of event, in throw-away network namespaces
//! (the demo itself is `crate::demo`).

use anyhow::Result;

use crate::config::Format;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Output format of the events.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn execute(args: DemoArgs) -> Result<()> {
    crate::demo::run(args.format)
}
