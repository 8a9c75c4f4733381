//! The maps shared by the XDP and TC programs (one object, one set of maps).

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
    Global,
};
use tcp_track_common::{
    counters,
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    halfopen::{SetV4, SetV6},
};

/// Capacity of each flow map. The daemon may override it at load time.
pub const MAX_FLOWS: u32 = 65536;

#[map]
pub static FLOWS_V4: LruHashMap<FlowKeyV4, FlowRecord> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub static FLOWS_V6: LruHashMap<FlowKeyV6, FlowRecord> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

/// Sets of each half-open table (`halfopen::geometry`: a power of two; four
/// flows each). The daemon may override it at load time, with the set mask.
pub const HALF_OPEN_SETS: u32 = 4096;

/// Flows that have only seen a SYN (or SYN and SYN-ACK) live apart, in their
/// own bounded set-associative tables (`tcp_track_common::halfopen`), until
/// the handshake completes: a flood of spoofed SYNs churns these and can
/// never evict an established connection.
#[map]
pub static HALF_OPEN_V4: Array<SetV4> = Array::with_max_entries(HALF_OPEN_SETS, 0);

#[map]
pub static HALF_OPEN_V6: Array<SetV6> = Array::with_max_entries(HALF_OPEN_SETS, 0);

/// Number of half-open sets minus one, set by the daemon with the tables' size.
#[unsafe(no_mangle)]
pub static HALF_OPEN_SET_MASK: Global<u32> = Global::new(HALF_OPEN_SETS - 1);

/// Key of the half-open tables' hash, random per daemon start.
#[unsafe(no_mangle)]
pub static HALF_OPEN_SEED: Global<u32> = Global::new(0);

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
