//! `tcp-track detach`: remove a kept state on purpose: unpin the links
//! (which detaches the programs) and the maps (which frees them).

use std::path::PathBuf;

use anyhow::{bail, Result};
use log::info;

use crate::{
    config::DEFAULT_STATE_DIR,
    flows,
    pins::{self, STATE_INFO},
};

#[derive(clap::Args)]
pub struct DetachArgs {
    /// Where the daemons pin their state (as given to `tcp-track run`).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The instance to remove (a subdirectory of --state-dir; default: all).
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
}

pub fn execute(args: DetachArgs) -> Result<()> {
    let dirs = flows::select(&args.state_dir, args.instance.as_deref())?;
    // A running daemon owns its state: stopping it removes it (or keeps
    // it, as it was asked to); removing it under its feet would not.
    for dir in &dirs {
        let info = dir.read_info()?;
        if info.owner_pid != 0 && pins::daemon_alive(info.owner_pid) {
            bail!("{dir}: in use by a running tcp-track (pid {}); stop it first (SIGTERM), then detach", info.owner_pid);
        }
    }
    for dir in dirs {
        let links = std::fs::read_dir(&dir.path).map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().contains('@')).count()).unwrap_or(0);
        let n = dir.remove()?;
        info!("{dir}: removed {n} pins ({links} links: their programs are detached; {} maps, freed)", n - links);
        debug_assert!(!dir.map_path(STATE_INFO).exists());
    }
    Ok(())
}
