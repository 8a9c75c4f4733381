//! Types and pure logic shared by tcp-track's kernel programs and its daemon.
//!
//! Everything here but `host` compiles for `bpfel-unknown-none` as well as
//! for the host: no allocation, no panics on any input, no helper calls, and
//! time is always passed in by the caller. Map values and ring-buffer records
//! are `#[repr(C)]` plain old data with explicit padding and a compile-time
//! size assertion; they hold raw integers only (no `bool`, `Option` or
//! enums), which the daemon decodes.
//!
//! Layout, each module importing only those listed before it:
//! - `tcp`, `seq`: TCP flags, sequence arithmetic; `advance`: record
//!   fields that only move forward, updated from several CPUs without a lock;
//! - `parse` (with `parse::checksum`): frame bytes to a `Segment`;
//! - `flow`: flow keys and the flow record; `state`: the observer state
//!   machine on that record, which judges resets (`state::reset_fate`);
//! - `event`: the event record and which outcome is worth one; `counters`;
//! - `fast`: the common segment (ACK or data of an ESTABLISHED flow) on
//!   its record without the state machine, exactly as `state` would;
//! - `halfopen`: the half-open table's sets; `estab`: the established
//!   table's sets (ways claimed by compare-and-swap); `guard`: which RSTs a policy drops;
//! - `pinned`: the layout record kept with pinned maps (`STATE_INFO`);
//! - `table`: the flow tables' logic over a `FlowStore`, reporting to a `Sink`;
//! - `track`: one frame through parse, checksum, policy and `table`;
//! - `host` (feature `host`): `track` over tables in memory (`HostTracker`).
//!
//! The kernel programs (`tcp-track-ebpf`) implement `FlowStore` over BPF
//! maps and `track::Driver` over the ring buffer and per-CPU counters.
#![cfg_attr(not(any(test, feature = "host")), no_std)]
// The compare-and-swap instruction of `advance` (the BPF build runs with
// RUSTC_BOOTSTRAP, as `aya-ebpf` needs the same feature).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod advance;
pub mod conn;
pub mod estab;
pub mod counters;
pub mod event;
pub mod fast;
pub mod flow;
pub mod guard;
pub mod halfopen;
pub mod parse;
pub mod pinned;
pub mod refsets;
pub mod seq;
pub mod state;
pub mod table;
pub mod tcp;
pub mod track;

#[cfg(any(test, feature = "host"))]
pub mod host;
#[cfg(feature = "user")]
mod user;
