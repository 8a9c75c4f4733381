//! The kernel programs' per-CPU counters, summed over CPUs.

use aya::maps::{MapData, PerCpuArray};
use tcp_track_common::counters;

pub struct Counters {
    map: PerCpuArray<MapData, u64>,
}

impl Counters {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Counters { map }
    }

    /// Current totals, indexed like `tcp_track_common::counters`.
    pub fn read(&self) -> [u64; counters::COUNT as usize] {
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
pub fn format(values: &[u64; counters::COUNT as usize]) -> String {
    counters::NAMES.iter().zip(values).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
}
