//! The established table's sets: where a connection lives once its
//! handshake is over (or once it was picked up mid-stream), for every
//! driver of the tracker. The kernel keeps them in a memory-mappable BPF
//! array, one set per element; the daemon reads and frees flows through
//! that mapping with the same functions.
//!
//! Why not the LRU hash map it replaces (issue 15): the map's helper call,
//! hash and bucket walk were half the cost of an established segment, and
//! its per-entry overhead put a flow at 176 bytes (IPv4) where a set way
//! costs 110. The design is the one `tcp-track-bench loss` measured
//! lossless to a full table:
//! - `WAYS` ways per set, two candidate sets per key (a keyed hash with two
//!   seeds derived from the daemon's random one);
//! - a new flow takes a way of its first set while that has room, else of
//!   its second, the first counting it in `spilled`: a lookup reads the
//!   second set only while its first has spilled, which stays rare until
//!   the table is three quarters full;
//! - what neither set can hold goes to a stash (an LRU hash of a twelfth
//!   of the capacity, `STASH_DIVISOR`), the first set counting it in
//!   `stashed`, so that a lookup reads the stash only where it may help.
//!
//! Ways are claimed and freed with compare-and-swap on two bit masks
//! (`taken`: claimed by a writer, `live`: holding a flow a lookup may
//! find), never by writing a whole set, so that CPUs (and the daemon,
//! through the mapping) can fill and free ways of one set at once. Two CPUs
//! starting the same flow at the same instant (a segment each way, both
//! missing it) could each place it: after publishing its way, a writer
//! looks for another live way with its key in both sets and, if it finds
//! one, frees its own and steps that one (`place` says `Duplicate`); of
//! two such writers at least one sees the other (each publishes before it
//! looks, and a compare-and-swap is a full barrier). If both see each
//! other, both give way and that segment goes untracked; the next one
//! starts the flow again. A flow in the stash is not checked for: it got
//! there because both sets were full at that instant.
//!
//! Freed ways are reused at once, as the LRU hash reuses its entries: a
//! CPU still stepping a record the daemon has just freed may write into
//! the next flow that claims the way. The daemon frees only flows it found
//! over (expired, closed), which no segment should be stepping.

use bytemuck::{Pod, Zeroable};

use crate::{
    advance::{self, cas},
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    halfopen::{hash, same_key, Words},
};

/// Ways per set.
pub const WAYS: u32 = 8;

/// The stash holds a `STASH_DIVISOR`th of the capacity (at least
/// `STASH_MIN` flows): the smallest `tcp-track-bench loss` found lossless
/// with a full table.
pub const STASH_DIVISOR: u32 = 12;
pub const STASH_MIN: u32 = 64;

/// Mixed into the daemon's seed for a key's first and second set, so that
/// neither is the set the half-open table picks with the seed itself.
const SEED_FIRST: u32 = 0x9e37_79b9;
const SEED_SECOND: u32 = 0x7f4a_7c15;

/// Attempts at claiming a way before a writer gives up (each failure is
/// another CPU claiming or freeing a way of the same set meanwhile).
const CLAIM_TRIES: u32 = 4;

/// The bits of `taken` and `live` that stand for ways.
const ALL_WAYS: u32 = (1 << WAYS) - 1;

macro_rules! est_set {
    ($(#[$doc:meta])* $set:ident, $key:ty, $size:literal) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
        pub struct $set {
            /// Bit `w`: way `w` holds a flow lookups may find.
            pub live: u32,
            /// Bit `w`: way `w` is claimed (being written, or live).
            pub taken: u32,
            /// Flows whose first set this is, held in their second set.
            pub spilled: u32,
            /// Flows whose first set this is, sent to the stash.
            pub stashed: u32,
            pub keys: [$key; WAYS as usize],
            pub records: [FlowRecord; WAYS as usize],
        }
        const _: () = assert!(core::mem::size_of::<$set>() == $size);
        const _: () = assert!(core::mem::size_of::<$set>() % 8 == 0);

        impl EstSet for $set {
            type Key = $key;
            #[inline(always)]
            fn live(&self) -> u32 {
                // SAFETY: an aligned field of a live reference; other CPUs
                // change it only by compare-and-swap.
                unsafe { core::ptr::read_volatile(&self.live) }
            }
            #[inline(always)]
            fn spilled(&self) -> u32 {
                // SAFETY: as in `live`.
                unsafe { core::ptr::read_volatile(&self.spilled) }
            }
            #[inline(always)]
            fn stashed(&self) -> u32 {
                // SAFETY: as in `live`.
                unsafe { core::ptr::read_volatile(&self.stashed) }
            }
            #[inline(always)]
            fn counts(&mut self) -> (&mut u32, &mut u32, &mut u32, &mut u32) {
                (&mut self.live, &mut self.taken, &mut self.spilled, &mut self.stashed)
            }
            #[inline(always)]
            fn key(&self, way: u32) -> &$key {
                match way {
                    0 => &self.keys[0],
                    1 => &self.keys[1],
                    2 => &self.keys[2],
                    3 => &self.keys[3],
                    4 => &self.keys[4],
                    5 => &self.keys[5],
                    6 => &self.keys[6],
                    _ => &self.keys[7],
                }
            }
            #[inline(always)]
            fn record(&self, way: u32) -> &FlowRecord {
                match way {
                    0 => &self.records[0],
                    1 => &self.records[1],
                    2 => &self.records[2],
                    3 => &self.records[3],
                    4 => &self.records[4],
                    5 => &self.records[5],
                    6 => &self.records[6],
                    _ => &self.records[7],
                }
            }
            #[inline(always)]
            fn way_mut(&mut self, way: u32) -> (&mut $key, &mut FlowRecord) {
                match way {
                    0 => (&mut self.keys[0], &mut self.records[0]),
                    1 => (&mut self.keys[1], &mut self.records[1]),
                    2 => (&mut self.keys[2], &mut self.records[2]),
                    3 => (&mut self.keys[3], &mut self.records[3]),
                    4 => (&mut self.keys[4], &mut self.records[4]),
                    5 => (&mut self.keys[5], &mut self.records[5]),
                    6 => (&mut self.keys[6], &mut self.records[6]),
                    _ => (&mut self.keys[7], &mut self.records[7]),
                }
            }
        }
    };
}

est_set!(
    /// One set of the IPv4 established table, one array element: 110 bytes
    /// a flow.
    EstSetV4,
    FlowKeyV4,
    880
);
est_set!(
    /// One set of the IPv6 established table: 134 bytes a flow.
    EstSetV6,
    FlowKeyV6,
    1072
);

/// A set of either family. Way indexes go through branches, not
/// arithmetic (see `halfopen::Set`).
pub trait EstSet {
    type Key: Words + Copy;
    /// `live`, read once from memory other CPUs write.
    fn live(&self) -> u32;
    /// `spilled` and `stashed`, read once likewise.
    fn spilled(&self) -> u32;
    fn stashed(&self) -> u32;
    /// `live`, `taken`, `spilled`, `stashed`, for atomic updates.
    fn counts(&mut self) -> (&mut u32, &mut u32, &mut u32, &mut u32);
    fn key(&self, way: u32) -> &Self::Key;
    fn record(&self, way: u32) -> &FlowRecord;
    fn way_mut(&mut self, way: u32) -> (&mut Self::Key, &mut FlowRecord);
    fn record_mut(&mut self, way: u32) -> &mut FlowRecord {
        self.way_mut(way).1
    }
}

/// The number of sets for a requested capacity in flows, and the mask that
/// picks one: a power of two of sets of `WAYS`, at least one.
pub fn geometry(capacity: u32) -> (u32, u32) {
    let sets = capacity.div_ceil(WAYS).max(1).checked_next_power_of_two().unwrap_or(1 << 28).min(1 << 28);
    (sets, sets - 1)
}

/// The stash's capacity for a table of `capacity` flows.
pub fn stash_capacity(capacity: u32) -> u32 {
    (capacity / STASH_DIVISOR).max(STASH_MIN)
}

/// A key's two candidate sets, first and second (equal now and then: then
/// the first is its only set).
#[inline(always)]
pub fn candidates<K: Words>(key: &K, seed: u32, set_mask: u32) -> (u32, u32) {
    (hash(key, seed ^ SEED_FIRST) & set_mask, hash(key, seed ^ SEED_SECOND) & set_mask)
}

/// The way of `set` holding `key`, if any. The loop unrolls into constant
/// offsets.
#[inline(always)]
pub fn find<S: EstSet>(set: &S, key: &S::Key) -> Option<u32> {
    let live = set.live();
    if live == 0 {
        return None;
    }
    let mut w = 0;
    while w < WAYS {
        if live & (1 << w) != 0 && same_key(set.key(w), key) {
            return Some(w);
        }
        w += 1;
    }
    None
}

/// Whether a key not in its first set `first` may be in its second.
#[inline(always)]
pub fn reads_second<S: EstSet>(first: &S) -> bool {
    first.spilled() != 0
}

/// Whether a key in neither set may be in the stash.
#[inline(always)]
pub fn reads_stash<S: EstSet>(first: &S) -> bool {
    first.stashed() != 0
}

/// Where a key's flow is (`locate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// In way `.1` of candidate set `.0` (0: first, 1: second).
    Set(u32, u32),
    /// In neither set; the stash may hold it.
    Stash,
    /// Nowhere.
    Absent,
}

/// Where `key`'s flow is, reading its first set, its second (`second()`,
/// `None` when both candidates are one set) only if the first has spilled,
/// and naming the stash only if the first sent a flow there. Every
/// reader's lookup (the kernel's, the daemon's through the mapping).
#[inline(always)]
pub fn locate<'a, S: EstSet + 'a>(first: &S, second: impl FnOnce() -> Option<&'a S>, key: &S::Key) -> Where {
    if let Some(way) = find(first, key) {
        return Where::Set(0, way);
    }
    if reads_second(first) {
        if let Some(way) = second().and_then(|second| find(second, key)) {
            return Where::Set(1, way);
        }
    }
    if reads_stash(first) {
        Where::Stash
    } else {
        Where::Absent
    }
}

/// Where `place` put a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    /// In way `.1` of candidate set `.0` (0: first, 1: second).
    Set(u32, u32),
    /// Both sets were full: the caller puts it in the stash (`stashed` of
    /// the first set counts it already; `unstash` if the stash refuses).
    Stash,
    /// Another writer placed the same key meanwhile: nothing was placed;
    /// the caller steps that one (found by a new lookup).
    Duplicate,
}

/// Put a new flow `key` with record `rec` in its first set if it has a
/// free way, else in its second (`None` when both candidates are one set),
/// else tell the caller to stash it. See the module's notes on writers
/// placing one key at once.
#[inline(always)]
pub fn place<S: EstSet>(first: &mut S, second: Option<&mut S>, key: &S::Key, rec: &FlowRecord) -> Placed {
    if let Some(way) = claim(first) {
        fill(first, way, key, rec);
        if duplicate(first, second.as_deref(), key, 0, way) {
            release(first, way);
            return Placed::Duplicate;
        }
        return Placed::Set(0, way);
    }
    advance::add(first.counts().2, 1);
    if let Some(second) = second {
        if let Some(way) = claim(second) {
            fill(second, way, key, rec);
            if duplicate(first, Some(second), key, 1, way) {
                release(second, way);
                advance::add(first.counts().2, u32::MAX);
                return Placed::Duplicate;
            }
            return Placed::Set(1, way);
        }
    }
    advance::add(first.counts().2, u32::MAX);
    advance::add(first.counts().3, 1);
    Placed::Stash
}

/// A flow sent to the stash is not there (the stash refused it: it was
/// there already) or no longer (forgotten): its first set stops counting
/// it.
#[inline(always)]
pub fn unstash<S: EstSet>(first: &mut S) {
    advance::add(first.counts().3, u32::MAX);
}

/// Forget the flow in way `way` of candidate set `which` (0: first, 1:
/// second, whose first set `first` then stops counting it).
#[inline(always)]
pub fn remove<S: EstSet>(first: &mut S, second: Option<&mut S>, which: u32, way: u32) {
    match second {
        Some(second) if which == 1 => {
            release(second, way);
            advance::add(first.counts().2, u32::MAX);
        }
        _ => release(first, way),
    }
}

/// Write `key` and `rec` into claimed way `way`, then make it live.
#[inline(always)]
fn fill<S: EstSet>(set: &mut S, way: u32, key: &S::Key, rec: &FlowRecord) {
    let (k, r) = set.way_mut(way);
    *k = *key;
    r.copy_from(rec);
    advance::set_bits(set.counts().0, 1 << way);
}

/// Free way `way`: no longer found, then claimable.
#[inline(always)]
fn release<S: EstSet>(set: &mut S, way: u32) {
    let (live, taken, _, _) = set.counts();
    advance::clear_bits(live, 1 << way);
    advance::clear_bits(taken, 1 << way);
}

/// Whether `key`, just made live in way `way` of candidate set `which`, is
/// live in another way of either set too.
#[inline(always)]
fn duplicate<S: EstSet>(first: &S, second: Option<&S>, key: &S::Key, which: u32, way: u32) -> bool {
    if find_other(first, key, if which == 0 { way } else { WAYS }).is_some() {
        return true;
    }
    match second {
        Some(second) => find_other(second, key, if which == 1 { way } else { WAYS }).is_some(),
        None => false,
    }
}

/// A live way of `set` other than `skip` holding `key`.
#[inline(always)]
fn find_other<S: EstSet>(set: &S, key: &S::Key, skip: u32) -> Option<u32> {
    // `skip` is at most `WAYS`: the shift never overflows.
    let live = set.live() & !(1u32 << skip);
    let mut w = 0;
    while w < WAYS {
        if live & (1 << w) != 0 && same_key(set.key(w), key) {
            return Some(w);
        }
        w += 1;
    }
    None
}

/// Claim a free way of `set`: its index, or `None` when all are taken.
#[inline(always)]
fn claim<S: EstSet>(set: &mut S) -> Option<u32> {
    let way = tcp_track_claim_way(set.counts().1);
    if way == 0 {
        None
    } else {
        // The mask changes nothing (the way is below `WAYS`) but tells the
        // verifier so: the global function's result is any scalar to it,
        // and LLVM turns the way's `match` into an offset computed from it.
        Some((way - 1) & (WAYS - 1))
    }
}

/// Set the lowest clear bit of the way mask `*taken` by compare-and-swap;
/// that way plus one, or 0 when every way is taken (or `CLAIM_TRIES`
/// attempts in a row lost to other CPUs). A global function in BPF, as
/// `advance`'s is: the verifier checks its loops once.
#[cfg_attr(target_arch = "bpf", no_mangle)]
#[inline(never)]
extern "C" fn tcp_track_claim_way(taken: *mut u32) -> u32 {
    if taken.is_null() {
        return 0;
    }
    // SAFETY: not NULL; the caller passes a `&mut u32`. Other writers change
    // it only by compare-and-swap.
    let mut current = unsafe { taken.read_volatile() };
    let mut i = 0;
    while i < CLAIM_TRIES {
        if current & ALL_WAYS == ALL_WAYS {
            return 0;
        }
        let mut way = 0;
        while way < WAYS - 1 && current & (1 << way) != 0 {
            way += 1;
        }
        // SAFETY: as above.
        let old = unsafe { cas(taken, current, current | (1 << way)) };
        if old == current {
            return way + 1;
        }
        current = old;
        i += 1;
    }
    0
}

#[cfg(test)]
mod tests;
