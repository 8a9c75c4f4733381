//! The maps shared by the XDP and TC programs (one object, one set of maps).

use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray, RingBuf},
};
use tcp_track_common::{
    counters,
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
};

/// Capacity of each flow map. The daemon may override it at load time.
pub const MAX_FLOWS: u32 = 65536;

#[map]
pub static FLOWS_V4: LruHashMap<FlowKeyV4, FlowRecord> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static FLOWS_V6: LruHashMap<FlowKeyV6, FlowRecord> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// Capacity of each half-open table. The daemon may override it at load time.
pub const MAX_HALF_OPEN: u32 = 16384;

/// Flows that have only seen a SYN (or SYN and SYN-ACK) live apart, in their
/// own bounded LRU tables, until the handshake completes: a flood of spoofed
/// SYNs churns these and can never evict an established connection.
#[map]
pub static HALF_OPEN_V4: LruHashMap<FlowKeyV4, FlowRecord> = LruHashMap::with_max_entries(MAX_HALF_OPEN, 0);

#[map]
pub static HALF_OPEN_V6: LruHashMap<FlowKeyV6, FlowRecord> = LruHashMap::with_max_entries(MAX_HALF_OPEN, 0);

/// Events for the daemon (`tcp_track_common::event::FlowEvent` records).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters, indexed by `tcp_track_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *c = (*c).wrapping_add(1) };
    }
}
