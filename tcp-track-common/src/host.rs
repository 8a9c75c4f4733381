//! The tracker on the host: the kernel programs' logic (`track`, `table`,
//! `state`), run over flow tables in memory, for captures read offline and
//! for tests that need no root.
//!
//! The tables are the kernel's, in memory: the established table is the
//! same `estab` sets with the same geometry and seed, placed and looked up
//! by the same functions, and a stash that is an LRU map of the same
//! capacity (a full stash evicts a flow not used lately to make room, by
//! second chance, as the kernel's LRU hash approximates LRU order:
//! `host::lru`; the kernel's evicts silently, this one counts them,
//! [`HostStore::lru_evicted`]); the half-open table is the same array of
//! `halfopen` sets, with the same geometry, seed and set mask.
//!
//! # Examples
//!
//! ```
//! use tcp_track_common::{counters, event::HOOK_XDP, host::HostTracker, track::Observed};
//!
//! let mut tracker = HostTracker::new(65536, 16384, 0x1234_5678);
//! let mut events = Vec::new();
//! let frame = [0u8; 60]; // not even Ethernet II with an IP ethertype
//! assert_eq!(tracker.segment(&frame[..], 1, HOOK_XDP, 1_000_000, &mut events), Observed::NotTcp);
//! assert_eq!(tracker.counters()[counters::NOT_TCP as usize], 1);
//! assert!(events.is_empty());
//! ```

use std::{collections::BTreeSet, hash::Hash, vec::Vec};

use self::lru::LruMap;

use crate::{
    counters,
    estab::{self, EstSet, EstSetV4, EstSetV6, Placed, Where},
    event::{judged_as_ingress, ConnEnd, FlowEvent, EVENT_CONN_END},
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    guard::RST_POLICY_OBSERVE,
    halfopen::{find, geometry, set_of, Set, SetV4, SetV6},
    parse::{Packet, Segment},
    state::Outcome,
    table::{Driver, FlowKey, FlowStore, Insert, Scratch, Seen},
    track::{observe, Observed},
};

/// Which table holds a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Established,
    HalfOpen,
}

/// The two tables of one address family, in memory: `K` its key, `S` a
/// half-open set, `E` an established set.
#[derive(Clone, Debug)]
pub struct HostStore<K: Hash + Eq, S, E> {
    sets: Vec<E>,
    established_mask: u32,
    stash: LruMap<K, FlowRecord>,
    half_open: Vec<S>,
    seed: u32,
    set_mask: u32,
    lru_evicted: u64,
}

/// The IPv4 and IPv6 tables.
pub type HostStoreV4 = HostStore<FlowKeyV4, SetV4, EstSetV4>;
pub type HostStoreV6 = HostStore<FlowKeyV6, SetV6, EstSetV6>;

/// Sets `a` and `b` (`None` when they are one set) of `sets`, both mutable.
fn pair<E>(sets: &mut [E], a: u32, b: u32) -> (&mut E, Option<&mut E>) {
    let (a, b) = (a as usize, b as usize);
    if a == b {
        (&mut sets[a], None)
    } else if a < b {
        let (low, high) = sets.split_at_mut(b);
        (&mut low[a], Some(&mut high[0]))
    } else {
        let (low, high) = sets.split_at_mut(a);
        (&mut high[0], Some(&mut low[b]))
    }
}

impl<K, S, E> HostStore<K, S, E>
where
    K: FlowKey + Hash + Eq,
    S: Set<Key = K> + Default + Clone,
    E: EstSet<Key = K> + Default + Clone,
{
    /// Room for `max_flows` established flows (sets and stash sized as the
    /// daemon sizes the kernel's: `estab::geometry`,
    /// `estab::stash_capacity`) and `max_half_open` half-open ones
    /// (rounded up to whole sets, a power of two of them, as the daemon
    /// sizes the kernel's table: `halfopen::geometry`), hashed into sets
    /// with `seed`.
    pub fn new(max_flows: u32, max_half_open: u32, seed: u32) -> Self {
        let (sets, set_mask) = geometry(max_half_open);
        let (established_sets, established_mask) = estab::geometry(max_flows);
        HostStore {
            sets: vec![E::default(); established_sets as usize],
            established_mask,
            stash: LruMap::new(estab::stash_capacity(max_flows) as usize),
            half_open: vec![S::default(); sets as usize],
            seed,
            set_mask,
            lru_evicted: 0,
        }
    }

    /// Where the established table holds `key` (`Where::Stash` only if the
    /// stash has it), and its candidate sets.
    fn place_of(&self, key: &K) -> (Where, u32, u32) {
        let (a, b) = estab::candidates(key, self.seed, self.established_mask);
        let found = estab::locate(&self.sets[a as usize], || (a != b).then(|| &self.sets[b as usize]), key);
        match found {
            Where::Stash if !self.stash.contains(key) => (Where::Absent, a, b),
            found => (found, a, b),
        }
    }

    /// The established record at `place`; a stash entry so reached counts
    /// as used.
    fn record_at(&mut self, key: &K, (place, a, b): (Where, u32, u32)) -> Option<&mut FlowRecord> {
        match place {
            Where::Set(0, way) => Some(self.sets[a as usize].record_mut(way)),
            Where::Set(_, way) => Some(self.sets[b as usize].record_mut(way)),
            Where::Stash => self.stash.get_mut(key),
            Where::Absent => None,
        }
    }

    /// The flow's record and the table that holds it. A look, not a use:
    /// the flow is not marked used (as for the daemon's reads of the kernel's maps).
    pub fn get(&self, key: &K) -> Option<(Table, FlowRecord)> {
        match self.place_of(key) {
            (Where::Set(0, way), a, _) => return Some((Table::Established, *self.sets[a as usize].record(way))),
            (Where::Set(_, way), _, b) => return Some((Table::Established, *self.sets[b as usize].record(way))),
            (Where::Stash, _, _) => return self.stash.peek(key).map(|r| (Table::Established, *r)),
            (Where::Absent, _, _) => {}
        }
        let set = self.half_open.get(set_of(key, self.seed, self.set_mask) as usize)?;
        find(set, key).map(|way| (Table::HalfOpen, *set.record(way)))
    }

    /// Forget the flow in whichever table holds it; false if neither did.
    pub fn forget(&mut self, key: &K) -> bool {
        if self.remove(key) {
            return true;
        }
        let index = set_of(key, self.seed, self.set_mask);
        match self.half_open.get_mut(index as usize) {
            Some(set) => match find(set, key) {
                Some(way) => {
                    set.clear(way);
                    true
                }
                None => false,
            },
            None => false,
        }
    }

    /// Established flows held (sets and stash).
    pub fn established_len(&self) -> usize {
        self.sets.iter().map(|s| s.live().count_ones() as usize).sum::<usize>() + self.stash.len()
    }

    /// Half-open flows held, and how many the table can hold.
    pub fn half_open_len(&self) -> (usize, usize) {
        let used = self.half_open.iter().map(|s| s.born().iter().filter(|&&b| b != 0).count()).sum();
        (used, self.half_open.len() * crate::halfopen::WAYS as usize)
    }

    /// Established flows the full stash evicted to make room for another
    /// (the kernel's LRU hash evicts without telling).
    pub fn lru_evicted(&self) -> u64 {
        self.lru_evicted
    }

    /// Every flow held, in either table, with its record (a walk of both:
    /// for the end of a capture, not per packet).
    pub fn flows(&self) -> impl Iterator<Item = (K, FlowRecord)> + '_ {
        let sets = self.sets.iter().flat_map(|set| {
            let live = set.live();
            (0..estab::WAYS).filter(move |&w| live & (1 << w) != 0).map(move |w| (*set.key(w), *set.record(w)))
        });
        let stash = self.stash.iter().map(|(k, r)| (*k, *r));
        let half_open = self.half_open.iter().flat_map(|set| {
            (0..crate::halfopen::WAYS).filter(|&w| set.born()[w as usize] != 0).map(move |w| (*set.key(w), *set.record(w)))
        });
        sets.chain(stash).chain(half_open)
    }
}

impl<K, S, E> FlowStore for HostStore<K, S, E>
where
    K: FlowKey + Hash + Eq,
    S: Set<Key = K> + Default + Clone,
    E: EstSet<Key = K> + Default + Clone,
{
    type Key = K;
    type Set = S;

    fn established(&mut self, key: &K) -> Option<&mut FlowRecord> {
        let place = self.place_of(key);
        self.record_at(key, place)
    }

    fn insert(&mut self, key: &K, rec: &FlowRecord, mode: Insert) -> bool {
        let place = self.place_of(key);
        if place.0 != Where::Absent {
            if mode == Insert::New {
                return false;
            }
            if let Some(old) = self.record_at(key, place) {
                *old = *rec;
            }
            return true;
        }
        let (first, second) = pair(&mut self.sets, place.1, place.2);
        match estab::place(first, second, key, rec) {
            Placed::Set(..) => true,
            // One thread: no other writer placed it meanwhile.
            Placed::Duplicate => false,
            Placed::Stash => {
                // `push` hands back what made room: another key's entry
                // when the stash was full.
                if let Some((old, _)) = self.stash.push(*key, *rec) {
                    if old != *key {
                        self.lru_evicted += 1;
                    }
                }
                true
            }
        }
    }

    fn promote(&mut self, key: &K, index: u32, way: u32) -> bool {
        match self.half_open.get(index as usize) {
            Some(set) => {
                let rec = *set.record(way);
                self.insert(key, &rec, Insert::Any)
            }
            None => false,
        }
    }

    fn remove(&mut self, key: &K) -> bool {
        let (place, a, b) = self.place_of(key);
        let (first, second) = pair(&mut self.sets, a, b);
        match place {
            Where::Set(which, way) => {
                estab::remove(first, second, which, way);
                true
            }
            Where::Stash => {
                self.stash.pop(key);
                estab::unstash(first);
                true
            }
            Where::Absent => false,
        }
    }

    fn half_open_layout(&self) -> (u32, u32) {
        (self.seed, self.set_mask)
    }

    fn half_open_set(&mut self, index: u32) -> Option<&mut S> {
        self.half_open.get_mut(index as usize)
    }
}

/// A driver in memory, for one frame or a run of them: the clock and the
/// RST policy the caller says, counters (indexed by `counters::*`) and
/// events kept here. `HostTracker` makes one per frame; a test that runs
/// `table::account` on a store of its own makes its own.
///
/// A connection's end is both an event in `events` (its `EVENT_CONN_END`
/// head, in order with the other events, as the ring buffer's reader sees
/// it) and a whole record in `conns`.
pub struct HostDriver<'a> {
    pub counters: &'a mut [u64; counters::COUNT as usize],
    pub events: &'a mut Vec<FlowEvent>,
    pub conns: &'a mut Vec<ConnEnd>,
    pub now: u64,
    /// The RST policy (`guard::RST_POLICY_*`), whatever the interface.
    pub rst_policy: u8,
    /// Whether the interface is liberal (`Driver::liberal`), whatever it is.
    pub liberal: bool,
}

impl Driver for HostDriver<'_> {
    fn now(&mut self) -> u64 {
        self.now
    }

    fn rst_policy(&mut self, _ifindex: u32) -> u8 {
        self.rst_policy
    }

    fn liberal(&mut self, _ifindex: u32) -> bool {
        self.liberal
    }

    fn count(&mut self, counter: u32) {
        if let Some(c) = self.counters.get_mut(counter as usize) {
            *c += 1;
        }
    }

    fn event(&mut self, kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.events.push(FlowEvent::new(kind, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook));
    }

    fn conn_end(&mut self, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen) {
        self.push_conn(ConnEnd { event: FlowEvent::new(EVENT_CONN_END, seg, dir, rec, out, seen.now, seen.ifindex, seen.hook), rec: *rec });
    }

    fn conn_evicted<K: FlowKey>(&mut self, key: &K, rec: &FlowRecord, seen: &Seen) {
        let (family, lo, lo_port, hi, hi_port) = key.endpoints();
        let event = FlowEvent::evicted(family, (&lo, lo_port), (&hi, hi_port), rec, seen.now, seen.ifindex, seen.hook);
        self.push_conn(ConnEnd { event, rec: *rec });
    }
}

impl HostDriver<'_> {
    fn push_conn(&mut self, c: ConnEnd) {
        self.events.push(c.event);
        self.conns.push(c);
    }
}

/// The tracker of both address families, as the kernel programs keep it,
/// driven by frames and a clock the caller passes in.
#[derive(Clone, Debug)]
pub struct HostTracker {
    v4: HostStoreV4,
    v6: HostStoreV6,
    counters: [u64; counters::COUNT as usize],
    rst_policy: u8,
    liberal: BTreeSet<u32>,
    scratch: Scratch,
    conns: Vec<ConnEnd>,
}

impl HostTracker {
    /// Tables as the daemon sizes the kernel's (per address family:
    /// `max_flows` established, `max_half_open` half-open), the half-open
    /// hash keyed with `seed`. RSTs are observed, never dropped, until
    /// [`set_rst_policy`](Self::set_rst_policy) says otherwise.
    pub fn new(max_flows: u32, max_half_open: u32, seed: u32) -> Self {
        HostTracker {
            v4: HostStore::new(max_flows, max_half_open, seed),
            v6: HostStore::new(max_flows, max_half_open, seed),
            counters: [0; counters::COUNT as usize],
            rst_policy: RST_POLICY_OBSERVE,
            liberal: BTreeSet::new(),
            scratch: Scratch::default(),
            conns: Vec::new(),
        }
    }

    /// The RST policy (`guard::RST_POLICY_*`) applied to RSTs seen at XDP
    /// or read from a capture (`event::judged_as_ingress`)
    /// (egress RSTs come from the host's own stack: never dropped).
    pub fn set_rst_policy(&mut self, policy: u8) {
        self.rst_policy = policy;
    }

    /// Mark an interface as seeing only part of each conversation (a tap, a
    /// mirror port, asymmetric routing): the state machine is liberal there
    /// (`state::step`), and nothing is dropped.
    pub fn set_liberal(&mut self, ifindex: u32, liberal: bool) {
        if liberal {
            self.liberal.insert(ifindex);
        } else {
            self.liberal.remove(&ifindex);
        }
    }

    /// One frame (from its Ethernet header: a byte slice, or any `Packet`,
    /// such as a capture's frame cut by its snap length), seen at `now_ns` on `ifindex`
    /// by `hook` (`event::HOOK_*`): what became of it; its events, if any,
    /// are appended to `events`. `Observed::Dropped` is where XDP would
    /// drop it.
    pub fn segment<P: Packet + ?Sized>(&mut self, frame: &P, ifindex: u32, hook: u8, now_ns: u64, events: &mut Vec<FlowEvent>) -> Observed {
        let liberal = self.liberal.contains(&ifindex);
        let rst_policy = if judged_as_ingress(hook) { self.rst_policy } else { RST_POLICY_OBSERVE };
        let driver = HostDriver { counters: &mut self.counters, events, conns: &mut self.conns, now: now_ns, rst_policy, liberal };
        observe(frame, &mut self.scratch, &mut self.v4, &mut self.v6, driver, ifindex, hook)
    }

    /// The connection records (`EVENT_CONN_END`) written since the last
    /// call, in order; their heads are also among `segment`'s events.
    pub fn take_conn_ends(&mut self) -> Vec<ConnEnd> {
        std::mem::take(&mut self.conns)
    }

    /// As `take_conn_ends`, appended to `into`: both keep their
    /// allocations (the reader calls this once per packet).
    pub fn move_conn_ends(&mut self, into: &mut Vec<ConnEnd>) {
        into.append(&mut self.conns);
    }

    /// An IPv4 flow's record and the table holding it.
    pub fn get_v4(&self, key: &FlowKeyV4) -> Option<(Table, FlowRecord)> {
        self.v4.get(key)
    }

    pub fn get_v6(&self, key: &FlowKeyV6) -> Option<(Table, FlowRecord)> {
        self.v6.get(key)
    }

    /// Forget an IPv4 flow (as the daemon does when TIME_WAIT expires or a
    /// half-open entry is given up); false if it was not tracked.
    pub fn remove_v4(&mut self, key: &FlowKeyV4) -> bool {
        self.v4.forget(key)
    }

    pub fn remove_v6(&mut self, key: &FlowKeyV6) -> bool {
        self.v6.forget(key)
    }

    /// The IPv4 tables (sizes, LRU evictions).
    pub fn v4(&self) -> &HostStoreV4 {
        &self.v4
    }

    pub fn v6(&self) -> &HostStoreV6 {
        &self.v6
    }

    /// The counters, indexed by `counters::*` (the kernel's per-CPU
    /// counters, summed).
    pub fn counters(&self) -> &[u64; counters::COUNT as usize] {
        &self.counters
    }
}

pub mod index;
mod lru;
#[cfg(test)]
mod tests;
