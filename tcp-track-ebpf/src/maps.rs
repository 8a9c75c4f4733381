//! The maps shared by the XDP and TC programs (one object, one set of
//! maps), and the flow store the shared table logic runs over
//! (`tcp_track_common::table::FlowStore` on the flow maps).

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    Global,
};
use tcp_track_common::{
    counters,
    estab::{self, EstSet, EstSetV4, EstSetV6, Placed, Where},
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    guard::RST_POLICY_OBSERVE,
    halfopen::{Set, SetV4, SetV6},
    pinned::StateInfo,
    table::{FlowStore, Insert, Scratch},
};

/// Sets of each established table (`estab::geometry`: a power of two of
/// eight ways each, 65,536 flows). The daemon sizes them at load time, with
/// the set mask and the stash.
pub const ESTABLISHED_SETS: u32 = 8192;

/// Established connections (`tcp_track_common::estab`): two candidate sets
/// per key, ways claimed by compare-and-swap. Memory-mappable, so that the
/// daemon reads and frees ways in place, word by word, as the programs do:
/// a `bpf()` update writes a whole element, which would undo what CPUs
/// wrote meanwhile into the set's other ways.
#[map]
pub static ESTABLISHED_V4: Array<EstSetV4> = Array::with_max_entries(ESTABLISHED_SETS, BPF_F_MMAPABLE);

#[map]
pub static ESTABLISHED_V6: Array<EstSetV6> = Array::with_max_entries(ESTABLISHED_SETS, BPF_F_MMAPABLE);

/// Number of established sets minus one, set by the daemon with the tables' size.
#[unsafe(no_mangle)]
pub static ESTABLISHED_SET_MASK: Global<u32> = Global::new(ESTABLISHED_SETS - 1);

/// What neither of a flow's sets could hold (`estab::STASH_DIVISOR` of
/// the capacity): an LRU hash, whose evictions are the table's only losses.
#[map]
pub static STASH_V4: LruHashMap<FlowKeyV4, FlowRecord> = LruHashMap::with_max_entries(ESTABLISHED_SETS * estab::WAYS / estab::STASH_DIVISOR, 0);

#[map]
pub static STASH_V6: LruHashMap<FlowKeyV6, FlowRecord> = LruHashMap::with_max_entries(ESTABLISHED_SETS * estab::WAYS / estab::STASH_DIVISOR, 0);

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

/// Key of the flow tables' hashes (half-open and established), random
/// per daemon start.
#[unsafe(no_mangle)]
pub static HALF_OPEN_SEED: Global<u32> = Global::new(0);

/// Events for the daemon (`tcp_track_common::event::FlowEvent` records).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// The full paths of each hook, one per address family (`FULL_V4`:
/// `tcp_track_xdp_full`, `tcp_track_tc_full`; `FULL_V6`: their `_v6`
/// twins), set by the daemon when it loads them: each hook tail-calls the
/// IPv4 one for every frame its fast paths leave, which tail-calls the
/// IPv6 one for an IPv6 frame. A tail call, not a subprogram
/// call: the fast path then runs inline in the hook (no subprogram return,
/// which costs about 9 ns on a CPU with return-thunk mitigations), and the
/// full path keeps the whole 512-byte stack for its own calls. Pinned with
/// the tables: a prog array is emptied when the last file or pin referring
/// to it goes, and kept hooks must find their full path while no daemon
/// runs.
#[map]
pub static FULL_XDP: ProgramArray = ProgramArray::with_max_entries(2, 0);

#[map]
pub static FULL_TC: ProgramArray = ProgramArray::with_max_entries(2, 0);

/// The full paths' slots: IPv4 (and anything that is not IPv6), which
/// the hooks call and which hands IPv6 frames on (`parse::frame_family`);
/// IPv6.
pub const FULL_V4: u32 = 0;
pub const FULL_V6: u32 = 1;

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

/// The established record of `key` in one family's sets and stash
/// (`estab::locate`); the fast paths' lookup too.
macro_rules! established {
    ($name:ident, $key:ty, $sets:ident, $stash:ident) => {
        #[inline(always)]
        pub fn $name(key: &$key) -> Option<*mut FlowRecord> {
            let (a, b) = estab::candidates(key, HALF_OPEN_SEED.load(), ESTABLISHED_SET_MASK.load());
            let first = $sets.get_ptr_mut(a)?;
            // SAFETY (every set): an array value, valid as long as the map;
            // other CPUs write its ways as `estab` says.
            let found = estab::locate(unsafe { &*first }, || if a == b { None } else { $sets.get(b) }, key);
            match found {
                Where::Set(0, way) => Some(unsafe { (*first).record_mut(way) } as *mut FlowRecord),
                Where::Set(_, way) => $sets.get_ptr_mut(b).map(|s| unsafe { (*s).record_mut(way) } as *mut FlowRecord),
                Where::Stash => $stash.get_ptr_mut(key),
                Where::Absent => None,
            }
        }
    };
}
established!(established_v4, FlowKeyV4, ESTABLISHED_V4, STASH_V4);
established!(established_v6, FlowKeyV6, ESTABLISHED_V6, STASH_V6);

/// What `tcp_track_find_v4`/`_v6` answer: no flow, the stash, or a way
/// of a set (`FOUND_SET`: `(set index + 1) << 3 | way`; sets are at most
/// 2^28, so this fits).
const FOUND_NONE: u32 = 0;
const FOUND_STASH: u32 = 1;
const FOUND_SET: u32 = 8;

/// Where `key`'s established flow is, as a number (`FOUND_*`), for the
/// full path. A global function, for the verifier again: inline, the
/// lookup gives the rest of `account` a record pointer at one of sixteen
/// constant offsets (eight ways of two sets) and the verifier walks the
/// state machine once for each, past its million instructions. From a
/// global function's number, the record's address is one variable offset
/// into one set, and one walk covers every way. (The fast paths, which
/// step a record without the state machine, look up inline: `established_v4`.)
macro_rules! find_fn {
    ($name:ident, $key:ty, $sets:ident) => {
        #[no_mangle]
        #[inline(never)]
        pub extern "C" fn $name(key: *const $key) -> u32 {
            if key.is_null() {
                return FOUND_NONE;
            }
            // SAFETY: not NULL; the callers pass a reference.
            let key = unsafe { &*key };
            let (a, b) = estab::candidates(key, HALF_OPEN_SEED.load(), ESTABLISHED_SET_MASK.load());
            let Some(first) = $sets.get(a) else { return FOUND_NONE };
            match estab::locate(first, || if a == b { None } else { $sets.get(b) }, key) {
                Where::Set(0, way) => ((a + 1) << 3) | way,
                Where::Set(_, way) => ((b + 1) << 3) | way,
                Where::Stash => FOUND_STASH,
                Where::Absent => FOUND_NONE,
            }
        }
    };
}
find_fn!(tcp_track_find_v4, FlowKeyV4, ESTABLISHED_V4);
find_fn!(tcp_track_find_v6, FlowKeyV6, ESTABLISHED_V6);

/// Place a new established flow (`estab::place`), the stash taking it
/// when both its sets are full; with `replace` non-zero, a record another
/// CPU placed for the key meanwhile is overwritten with `rec`, else left
/// alone. 1 if `rec` is now the key's record, 0 if not.
///
/// A *global* function per family (exported by name, as `advance`'s is):
/// the verifier checks its claim, copy and duplicate scan once, on their
/// own, instead of on every path of `account` that starts or promotes a
/// flow (inlined there, they took the full path past the verifier's
/// million instructions). A global function's pointers may be NULL as far
/// as the verifier knows, hence the checks.
macro_rules! place_fn {
    ($name:ident, $key:ty, $lookup:ident, $sets:ident, $stash:ident) => {
        #[no_mangle]
        #[inline(never)]
        pub extern "C" fn $name(key: *const $key, rec: *const FlowRecord, replace: u32) -> u32 {
            if key.is_null() || rec.is_null() {
                return 0;
            }
            // SAFETY: not NULL; the callers pass references.
            let (key, rec) = unsafe { (&*key, &*rec) };
            let (a, b) = estab::candidates(key, HALF_OPEN_SEED.load(), ESTABLISHED_SET_MASK.load());
            let Some(first) = $sets.get_ptr_mut(a) else { return 0 };
            // SAFETY: array values, valid as long as the map; other CPUs
            // write their ways as `estab` says.
            let first = unsafe { &mut *first };
            let second = if a == b { None } else { $sets.get_ptr_mut(b).map(|s| unsafe { &mut *s }) };
            match estab::place(first, second, key, rec) {
                Placed::Set(..) => 1,
                Placed::Stash => {
                    if $stash.insert(key, rec, BPF_NOEXIST as u64).is_ok() {
                        return 1;
                    }
                    estab::unstash(first);
                    0
                }
                Placed::Duplicate => match $lookup(key) {
                    Some(theirs) if replace != 0 => {
                        // SAFETY: as above.
                        unsafe { (*theirs).copy_from(rec) };
                        1
                    }
                    _ => 0,
                },
            }
        }
    };
}
place_fn!(tcp_track_place_v4, FlowKeyV4, established_v4, ESTABLISHED_V4, STASH_V4);
place_fn!(tcp_track_place_v6, FlowKeyV6, established_v6, ESTABLISHED_V6, STASH_V6);

macro_rules! flow_store {
    ($store:ty, $key:ty, $set:ty, $find:ident, $place:ident, $sets:ident, $stash:ident, $half:ident) => {
        impl FlowStore for $store {
            type Key = $key;
            type Set = $set;

            #[inline(always)]
            fn established(&mut self, key: &$key) -> Option<&mut FlowRecord> {
                let found = $find(key);
                // SAFETY (both): the pointer is into a map value that stays
                // valid for the rest of this program run. Other CPUs may
                // step the same record meanwhile: see FlowRecord for what
                // that may and may not do (the fields judging a RST only
                // move forward).
                if found < FOUND_SET {
                    return if found == FOUND_STASH { $stash.get_ptr_mut(key).map(|rec| unsafe { &mut *rec }) } else { None };
                }
                let set = $sets.get_ptr_mut((found >> 3) - 1)?;
                Some(unsafe { &mut (*set).records[(found & 7) as usize] })
            }

            #[inline(always)]
            fn insert(&mut self, key: &$key, rec: &FlowRecord, mode: Insert) -> bool {
                $place(key, rec, (mode == Insert::Any) as u32) != 0
            }

            #[inline(always)]
            fn promote(&mut self, key: &$key, index: u32, way: u32) -> bool {
                match $half.get(index) {
                    Some(set) => $place(key, set.record(way), 1) != 0,
                    None => false,
                }
            }

            #[inline(always)]
            fn remove(&mut self, key: &$key) -> bool {
                let (a, b) = estab::candidates(key, HALF_OPEN_SEED.load(), ESTABLISHED_SET_MASK.load());
                let Some(first) = $sets.get_ptr_mut(a) else { return false };
                // SAFETY: as in the lookup.
                let first = unsafe { &mut *first };
                let second = if a == b { None } else { $sets.get_ptr_mut(b).map(|s| unsafe { &mut *s }) };
                match estab::locate(first, || second.as_deref(), key) {
                    Where::Set(which, way) => {
                        estab::remove(first, second, which, way);
                        true
                    }
                    Where::Stash if $stash.remove(key).is_ok() => {
                        estab::unstash(first);
                        true
                    }
                    Where::Stash | Where::Absent => false,
                }
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
flow_store!(V4, FlowKeyV4, SetV4, tcp_track_find_v4, tcp_track_place_v4, ESTABLISHED_V4, STASH_V4, HALF_OPEN_V4);
flow_store!(V6, FlowKeyV6, SetV6, tcp_track_find_v6, tcp_track_place_v6, ESTABLISHED_V6, STASH_V6, HALF_OPEN_V6);
