//! Helpers shared by the integration tests (each test file uses a part).
#![allow(dead_code)]

pub mod bpffs;
pub mod conn;
pub mod capture;
pub mod daemon;
pub mod hooks;
pub mod netns;
pub mod scenarios;
