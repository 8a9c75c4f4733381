//! Test hosts and crafted traffic: network namespaces joined by veth pairs
//! (`netns`) and hand-made frames sent into them (`frames`).
//!
//! Not part of tcp-track's API (hidden from its documentation): these are
//! the tools of `tcp-track demo`, of the integration tests and of the
//! benchmark, public only so that those can reach them, and they change
//! with them. Everything here returns errors rather than panicking; tests
//! unwrap at their call sites.

pub mod edges;
pub mod frames;
pub mod netns;

use std::io;

/// An error saying what failed, for a command or step with no errno.
fn failed(what: impl Into<String>) -> io::Error {
    io::Error::other(what.into())
}
