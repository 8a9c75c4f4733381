//! The kernel programs' per-CPU counters, summed over CPUs.

use aya::maps::{MapData, PerCpuArray};
use tcp_track_common::counters;

/// The kernel's counters, indexed like `tcp_track_common::counters`.
pub type Totals = [u64; counters::COUNT as usize];

/// Where the daemon reads the kernel's counters: the `COUNTERS` map, or a
/// test's numbers.
pub trait CounterSource {
    /// Current totals.
    fn read(&self) -> Totals;
}

/// The `COUNTERS` map.
pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

impl Counters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Counters { map }
    }
}

impl CounterSource for Counters {
    /// Summed over CPUs; a counter that cannot be read reads as 0.
    fn read(&self) -> Totals {
        let mut out = [0u64; counters::COUNT as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.map.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }
}

/// `tcp_segments=10 not_tcp=2 ...`
pub fn format(values: &Totals) -> String {
    counters::NAMES.iter().zip(values).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
}

/// Kernel memory charged to the named maps, in bytes: the `memlock` line of
/// each map's fdinfo (the kernel's own accounting, keys, values, buckets
/// and per-element overhead included).
pub fn table_memory(ebpf: &aya::Ebpf, names: &[&str]) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    names
        .iter()
        .filter_map(|n| ebpf.map(n))
        .filter_map(|m| {
            let data = match m {
                aya::maps::Map::LruHashMap(d) | aya::maps::Map::HashMap(d) | aya::maps::Map::Array(d) => d,
                _ => return None,
            };
            let fd = data.fd().as_fd().as_raw_fd();
            memlock_of(&std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?)
        })
        .sum()
}

/// The `memlock:` value of a map's fdinfo.
pub fn memlock_of(fdinfo: &str) -> Option<u64> {
    fdinfo.lines().find_map(|l| l.strip_prefix("memlock:")).and_then(|v| v.trim().parse().ok())
}

pub use crate::config::mib;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmap_type:\t9\nmemlock:\t9437184\nmap_id:\t12\n";
        assert_eq!(memlock_of(info), Some(9437184));
        assert_eq!(memlock_of("nothing"), None);
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
