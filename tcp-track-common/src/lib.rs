//! Types and pure logic shared by tcp-track's kernel programs and its daemon.
//!
//! Everything here compiles for `bpfel-unknown-none` as well as for the host:
//! no allocation, no panics on any input, no helper calls, and time is always
//! passed in by the caller. Map values and ring-buffer records are `#[repr(C)]`
//! plain old data with explicit padding and a compile-time size assertion; they
//! hold raw integers only (no `bool`, `Option` or enums), which the daemon
//! decodes.
#![cfg_attr(not(test), no_std)]

pub mod counters;
pub mod event;
pub mod flow;
pub mod guard;
pub mod halfopen;
pub mod parse;
pub mod seq;
pub mod state;
pub mod tcp;

#[cfg(feature = "user")]
mod user;
