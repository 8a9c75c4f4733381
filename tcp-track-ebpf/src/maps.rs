//! The maps shared by the XDP and TC programs (one object, one set of
//! maps), and the flow store the shared table logic runs over
//! (`tcp_track_common::table::FlowStore` on the flow maps).

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    Global,
};
use tcp_track_common::{
    counters,
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    guard::RST_POLICY_OBSERVE,
    halfopen::{Set, SetV4, SetV6},
    pinned::StateInfo,
    table::{FlowStore, Insert, Scratch},
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

/// The full path of each hook (`tcp_track_xdp_full`, `tcp_track_tc_full`),
/// slot 0, set by the daemon when it loads them: each hook tail-calls it
/// for every frame its fast paths leave. A tail call, not a subprogram
/// call: the fast path then runs inline in the hook (no subprogram return,
/// which costs about 9 ns on a CPU with return-thunk mitigations), and the
/// full path keeps the whole 512-byte stack for its own calls. Pinned with
/// the tables: a prog array is emptied when the last file or pin referring
/// to it goes, and kept hooks must find their full path while no daemon
/// runs.
#[map]
pub static FULL_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static FULL_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `tcp_track_common::counters`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counters::COUNT, 0);

/// Per-CPU working memory of one program run (`table::Scratch`).
#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// The last precise clock read on this CPU and the scheduler tick
/// (`jiffies`) it was made in: `Kernel::now_cheap` reuses it for the rest
/// of the tick.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TickClock {
    pub jiffies: u64,
    pub ns: u64,
}

#[map]
pub static CLOCK: PerCpuArray<TickClock> = PerCpuArray::with_max_entries(1, 0);

/// Which RSTs XDP drops (`guard::RST_POLICY_*`), set by the daemon at load
/// time; observe-only unless asked.
#[unsafe(no_mangle)]
pub static RST_POLICY: Global<u8> = Global::new(RST_POLICY_OBSERVE);

/// Interfaces where only part of each conversation is visible (a tap, a
/// mirror port, asymmetric routing: `--liberal-iface`): the state machine
/// is liberal there and no RST is dropped (key: ifindex).
#[map]
pub static LIBERAL_IFACES: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

/// Slot 0: non-zero once the daemon has marked any interface liberal. Read
/// first, on every segment: an array lookup the verifier inlines costs a
/// few ns where the hash lookup costs tens, and most hosts have no liberal
/// interface.
#[map]
pub static LIBERAL_ANY: Array<u32> = Array::with_max_entries(1, 0);

/// Whether no interface is liberal (`LIBERAL_ANY`): then no segment needs
/// the per-interface lookup.
#[inline(always)]
pub fn all_strict() -> bool {
    matches!(LIBERAL_ANY.get(0), Some(&0))
}

/// What the daemon pins with the maps (`tcp_track_common::pinned`): the
/// layout and the half-open hash, for the next daemon. Never read here.
#[map]
pub static STATE_INFO: Array<StateInfo> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *c = (*c).wrapping_add(1) };
    }
}

/// The flow tables of one address family, as the shared table logic sees
/// them. Zero-sized: the maps are statics (the verifier wants map pointers
/// as constants, not values passed around).
pub struct V4;
pub struct V6;

macro_rules! flow_store {
    ($store:ty, $key:ty, $set:ty, $flows:ident, $half:ident) => {
        impl FlowStore for $store {
            type Key = $key;
            type Set = $set;

            #[inline(always)]
            fn established(&mut self, key: &$key) -> Option<&mut FlowRecord> {
                // SAFETY: the pointer is into a map value that stays valid
                // for the rest of this program run (RCU). Other CPUs may step
                // the same record meanwhile: see FlowRecord for what that may
                // and may not do (the fields judging a RST only move forward).
                $flows.get_ptr_mut(key).map(|rec| unsafe { &mut *rec })
            }

            #[inline(always)]
            fn insert(&mut self, key: &$key, rec: &FlowRecord, mode: Insert) -> bool {
                let flags = match mode {
                    Insert::New => BPF_NOEXIST,
                    Insert::Any => BPF_ANY,
                };
                $flows.insert(key, rec, flags as u64).is_ok()
            }

            #[inline(always)]
            fn promote(&mut self, key: &$key, index: u32, way: u32) -> bool {
                match $half.get(index) {
                    Some(set) => $flows.insert(key, set.record(way), BPF_ANY as u64).is_ok(),
                    None => false,
                }
            }

            #[inline(always)]
            fn remove(&mut self, key: &$key) -> bool {
                $flows.remove(key).is_ok()
            }

            #[inline(always)]
            fn half_open_layout(&self) -> (u32, u32) {
                (HALF_OPEN_SEED.load(), HALF_OPEN_SET_MASK.load())
            }

            #[inline(always)]
            fn half_open_set(&mut self, index: u32) -> Option<&mut $set> {
                // SAFETY: array values live as long as the map; see
                // `halfopen` for the unlocked writes.
                $half.get_ptr_mut(index).map(|set| unsafe { &mut *set })
            }
        }
    };
}
flow_store!(V4, FlowKeyV4, SetV4, FLOWS_V4, HALF_OPEN_V4);
flow_store!(V6, FlowKeyV6, SetV6, FLOWS_V6, HALF_OPEN_V6);
