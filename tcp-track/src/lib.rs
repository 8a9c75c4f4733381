//! tcp-track's daemon as a library: `run(config, shutdown)` loads the kernel
//! programs, attaches them to the configured interfaces, streams events until
//! `shutdown` resolves, and detaches everything it attached.
//!
//! Its layout, each module importing only those listed before it:
//!
//! - `vocab`: the typed vocabulary (connection and endpoint states, reset
//!   classes, event kinds), one name each;
//! - `filter`: the endpoint filter of `flows`, `run` and `read` (`--addr`,
//!   `--port`, `--client`, `--server`);
//! - `config`: what the daemon was asked to do, the defaults and the
//!   limits that follow from them;
//! - `clock`, `preflight`, `stats`: kernel time to wall time, the checks
//!   made before loading anything, the kernel's counters;
//! - `test_support`: network namespaces and crafted frames for the demo,
//!   the tests and the benchmark; not part of the library's API;
//! - `events`: ring-buffer records decoded into events, and the one list of
//!   a segment's fields;
//! - `output`: events written as text or JSON lines;
//! - `report`: the reporter, which turns the kernel's transitions into what
//!   users run tcp-track for, split by concern (deadlines, floods, TIME_WAIT
//!   pressure, the audit, the rate limit, connection records); it sees the kernel's tables only
//!   through `report::FlowLookup`;
//! - `pins`: the pinned state in bpffs (where, what, whether a new daemon
//!   may adopt it);
//! - `established`: one established table (sets and stash) as user space
//!   reads and frees it, through a mapping of its sets;
//! - `tables`: the kernel's flow tables as user space reads them, with the
//!   aya adapter of `FlowLookup`;
//! - `flows`: `tcp-track flows`, the pinned tables listed and filtered;
//! - `loader`: loading the kernel object and attaching its programs;
//! - `follow`, `links`: interfaces that come and go: which to attach to as
//!   links appear and disappear (pure), and the kernel's link events read
//!   over netlink;
//! - `daemon`: the running daemon's state in one struct, one method per
//!   step of its loop, and a snapshot for readers;
//! - `metrics`: `--metrics-addr`, the daemon's snapshot served as
//!   Prometheus metrics;
//! - `runner`: `run`, the event loop driving the daemon;
//! - `demo`: `tcp-track demo`'s scenarios;
//! - `cmd`: the binary's commands, one module each (`run`, `demo`), each
//!   turning its arguments into a `Config` and calling the library.

pub mod capture;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod established;
pub mod events;
pub mod filter;
pub mod flows;
pub mod follow;
pub mod links;
pub mod loader;
pub mod metrics;
pub mod offline;
pub mod output;
pub mod pins;
pub mod preflight;
pub mod report;
mod runner;
pub mod stats;
pub mod tables;
#[doc(hidden)]
pub mod test_support;
pub mod vocab;

pub use config::{Config, Format, XdpModeChoice};
pub use daemon::drain;
pub use runner::run;
