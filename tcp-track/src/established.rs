//! One established table as user space reads and changes it: its sets
//! (`tcp_track_common::estab`), mapped into this process (the array is
//! `BPF_F_MMAPABLE`), and its stash (an LRU hash).
//!
//! Through the mapping the daemon reads a set as the programs do, and
//! frees a way with the same compare-and-swap on the way masks: a `bpf()`
//! update would write the whole set back, undoing what CPUs wrote into its
//! other ways meanwhile (a flow placed, a sequence number that must only
//! move forward). Reading a set copies it; a way the kernel is writing at
//! that instant may be copied half old, half new, as a map lookup's copy
//! may.

use std::{
    borrow::{Borrow, BorrowMut},
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
};

use aya::maps::{HashMap, IterableMap, MapData, MapError};
use bytemuck::Pod;
use tcp_track_common::{
    estab::{self, EstSet, Placed, Where},
    flow::FlowRecord,
};

/// `BPF_F_MMAPABLE` (uapi `linux/bpf.h`).
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_NOEXIST`.
const BPF_NOEXIST: u64 = 1;

/// The sets of one established table, mapped read-write.
struct Mapping<S> {
    base: NonNull<S>,
    sets: u32,
}

// SAFETY: the mapping is shared memory, valid until dropped; every
// access goes through `set`/`set_mut`, whose callers follow `estab`'s
// rules for memory other CPUs write.
unsafe impl<S> Send for Mapping<S> {}
unsafe impl<S> Sync for Mapping<S> {}

impl<S: Pod> Mapping<S> {
    /// Map every set of `map` (an array of `S` created `BPF_F_MMAPABLE`).
    fn new(map: &MapData) -> Result<Self, MapError> {
        let info = map.info()?;
        let sets = info.max_entries();
        if info.value_size() as usize != std::mem::size_of::<S>() {
            return Err(MapError::InvalidValueSize { size: std::mem::size_of::<S>(), expected: info.value_size() as usize });
        }
        if info.map_flags() & BPF_F_MMAPABLE == 0 {
            return Err(MapError::UnsupportedMapFlags { flags: info.map_flags(), reason: "established sets must be created BPF_F_MMAPABLE" });
        }
        if !sets.is_power_of_two() {
            let why = format!("{sets} established sets: not a power of two, so no mask picks one");
            return Err(MapError::IoError(std::io::Error::new(std::io::ErrorKind::InvalidData, why)));
        }
        let len = sets as usize * std::mem::size_of::<S>();
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a new shared mapping of the map's values; the kernel
        // checks the length against the array.
        let base = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0) };
        if base == libc::MAP_FAILED {
            let io_error = std::io::Error::last_os_error();
            return Err(MapError::SyscallError(aya::sys::SyscallError { call: "mmap", io_error }));
        }
        let base = NonNull::new(base.cast::<S>()).expect("mmap never maps at NULL");
        Ok(Mapping { base, sets })
    }

    /// A copy of set `index` (< `sets`).
    fn set(&self, index: u32) -> S {
        debug_assert!(index < self.sets);
        // SAFETY: inside the mapping; a volatile copy of memory the kernel
        // may be writing (see the module's notes).
        unsafe { self.base.as_ptr().add(index as usize).read_volatile() }
    }

    /// Set `index` in place.
    ///
    /// # Safety
    /// Only `estab`'s functions may change it (atomically where other
    /// writers may race), and no other reference to that set may be live.
    #[allow(clippy::mut_from_ref)]
    unsafe fn set_mut(&self, index: u32) -> &mut S {
        // SAFETY: inside the mapping; the caller's.
        unsafe { &mut *self.base.as_ptr().add(index as usize) }
    }
}

impl<S> Drop for Mapping<S> {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.sets as usize * std::mem::size_of::<S>()) };
    }
}

/// An established table: sets of `S`, a stash keyed by `S::Key`, and the
/// hash seed that places a key (`estab::candidates`). `M` is
/// `MapData` or `&MapData`, as for aya's maps.
pub struct Established<M: Borrow<MapData>, S: EstSet> {
    sets_map: M,
    mapping: Mapping<S>,
    stash: HashMap<M, S::Key, FlowRecord>,
    seed: u32,
}

impl<M: Borrow<MapData>, S> Established<M, S>
where
    S: EstSet + Pod,
    S::Key: Pod + aya::Pod,
{
    /// The table of the sets array `sets` and the stash `stash`, placed by
    /// `seed` (`HALF_OPEN_SEED`: the flow tables share it).
    pub fn new(sets: M, stash: HashMap<M, S::Key, FlowRecord>, seed: u32) -> Result<Self, MapError> {
        let mapping = Mapping::new(sets.borrow())?;
        Ok(Established { sets_map: sets, mapping, stash, seed })
    }

    /// The sets' map and the stash's, to open them again elsewhere.
    pub fn maps(&self) -> (&MapData, &MapData) {
        (self.sets_map.borrow(), self.stash.map())
    }

    /// Flows the sets hold when every way is taken (the stash not counted).
    pub fn set_capacity(&self) -> u64 {
        self.mapping.sets as u64 * estab::WAYS as u64
    }

    /// Flows the stash holds at most.
    pub fn stash_capacity(&self) -> u64 {
        self.stash.map().info().map_or(0, |i| i.max_entries().into())
    }

    /// `key`'s candidate sets (the mask is the number of sets less one: a
    /// power of two, `Mapping::new` checked).
    fn candidates(&self, key: &S::Key) -> (u32, u32) {
        estab::candidates(key, self.seed, self.mapping.sets - 1)
    }

    /// Where a lookup of `key` goes (`estab::locate`), with `key`'s
    /// candidate sets, their indexes and copies (the second `None` when
    /// both are one set).
    fn locate(&self, key: &S::Key) -> (Where, (u32, u32), (S, Option<S>)) {
        let (a, b) = self.candidates(key);
        let (first, second) = (self.mapping.set(a), (a != b).then(|| self.mapping.set(b)));
        (estab::locate(&first, || second.as_ref(), key), (a, b), (first, second))
    }

    /// `key`'s record, where the kernel would find it.
    pub fn get(&self, key: &S::Key) -> Option<FlowRecord> {
        match self.locate(key) {
            (Where::Set(0, way), _, (first, _)) => Some(*first.record(way)),
            (Where::Set(_, way), _, (_, second)) => second.map(|s| *s.record(way)),
            (Where::Stash, _, _) => self.stash.get(key, 0).ok(),
            (Where::Absent, _, _) => None,
        }
    }

    /// Where a lookup of `key` finds it (`Where::Stash` only if the stash
    /// holds it).
    pub fn place_of(&self, key: &S::Key) -> Where {
        match self.locate(key).0 {
            Where::Stash if self.stash.get(key, 0).is_err() => Where::Absent,
            found => found,
        }
    }

    /// The sets' counts summed: flows placed in their second set, and sent
    /// to the stash (`estab::EstSet::spilled`, `stashed`).
    pub fn spill_counts(&self) -> (u64, u64) {
        (0..self.mapping.sets).map(|i| self.mapping.set(i)).fold((0, 0), |(sp, st), s| (sp + s.spilled() as u64, st + s.stashed() as u64))
    }

    /// Whether a lookup of `key`, if absent, reads more than its first set
    /// (its second, or the stash): what a new flow's miss costs.
    pub fn miss_reads_past_first(&self, key: &S::Key) -> bool {
        let first = self.mapping.set(self.candidates(key).0);
        estab::reads_second(&first) || estab::reads_stash(&first)
    }

    /// Every flow, sets then stash: `each(key, record)`.
    pub fn each(&self, mut each: impl FnMut(&S::Key, &FlowRecord)) {
        for index in 0..self.mapping.sets {
            let set = self.mapping.set(index);
            let live = set.live();
            for way in (0..estab::WAYS).filter(|w| live & (1 << w) != 0) {
                each(set.key(way), set.record(way));
            }
        }
        for (k, r) in self.stash.iter().filter_map(Result::ok) {
            each(&k, &r);
        }
    }

    /// Flows the sets and the stash hold at most.
    pub fn capacity(&self) -> u64 {
        self.set_capacity() + self.stash_capacity()
    }

    /// Flows in the sets and in the stash.
    pub fn len(&self) -> (u64, u64) {
        let sets = (0..self.mapping.sets).map(|i| self.mapping.set(i).live().count_ones() as u64).sum();
        (sets, self.stash.keys().filter(|k| k.is_ok()).count() as u64)
    }
}

impl<M: BorrowMut<MapData>, S> Established<M, S>
where
    S: EstSet + Pod,
    S::Key: Pod + aya::Pod,
{
    /// Forget `key`'s flow (gone already is fine); true if it was there.
    pub fn remove(&mut self, key: &S::Key) -> bool {
        let (found, (a, b), _) = self.locate(key);
        // SAFETY: only `estab` changes the sets, and these references
        // live for this call alone (the daemon frees from one thread).
        let (first, second) = unsafe { (self.mapping.set_mut(a), (a != b).then(|| self.mapping.set_mut(b))) };
        match found {
            Where::Set(which, way) => {
                estab::remove(first, second, which, way);
                true
            }
            Where::Stash if self.stash.remove(key).is_ok() => {
                estab::unstash(first);
                true
            }
            Where::Stash => false,
            Where::Absent => false,
        }
    }

    /// Place a new flow as the kernel does (`estab::place`); false when it
    /// is there already or the stash refused it. For tests and the
    /// benchmark, which fill tables from user space.
    pub fn insert(&mut self, key: &S::Key, rec: &FlowRecord) -> bool {
        let (a, b) = self.candidates(key);
        // SAFETY: as in `remove`.
        let (first, second) = unsafe { (self.mapping.set_mut(a), (a != b).then(|| self.mapping.set_mut(b))) };
        match estab::place(first, second, key, rec) {
            Placed::Set(..) => true,
            Placed::Duplicate => false,
            Placed::Stash => {
                let ok = self.stash.insert(key, rec, BPF_NOEXIST).is_ok();
                if !ok {
                    estab::unstash(first);
                }
                ok
            }
        }
    }
}
