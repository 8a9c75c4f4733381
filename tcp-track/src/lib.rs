//! tcp-track's daemon as a library: `run(config, shutdown)` loads the kernel
//! programs, attaches them to the configured interfaces, streams events until
//! `shutdown` resolves, and detaches everything it attached.

pub mod clock;
pub mod config;
pub mod demo;
pub mod events;
pub mod loader;
pub mod netns;
pub mod output;
pub mod preflight;
pub mod report;
mod runner;
pub mod stats;
pub mod tables;
pub mod vocab;

pub use config::{Config, Format, XdpModeChoice};
pub use runner::{drain, run};
