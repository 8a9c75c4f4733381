//! The host's established table: a map of bounded capacity that, when
//! full, makes room by evicting an entry not used lately, as the kernel's
//! LRU hash does (`BPF_MAP_TYPE_LRU_HASH`).
//!
//! Recency is kept as the kernel keeps it, approximately: each entry has a
//! reference bit, set when the entry is used, and eviction is a second
//! chance (CLOCK): a hand sweeps the slots in order, clearing the bits it
//! finds set, and evicts the first entry whose bit is clear, one not used
//! since the hand last passed it. The kernel's LRU (kernel/bpf/bpf_lru_list.c)
//! is the same idea on two lists: lookups only set a node's `ref` bit, new
//! nodes start without it, and its shrink moves referenced nodes back to
//! the active list, clearing the bit, where this hand passes them over. An
//! exact LRU list (what this was) costs two more cache misses per packet
//! (unlinking an entry touches both neighbours); the hand walks the slab
//! in memory order, and a use writes one byte in the slot it already holds.
//!
//! What it guarantees (property-tested, with the policy written out as a
//! model): at most `capacity` entries; only a push into a full map evicts,
//! exactly one entry, never the one pushed; an entry used since the last
//! eviction is not evicted while the map holds one never used. What it
//! does not: among entries all used, the victim is the hand's next, not
//! the least recently used (the kernel's is approximate too: it evicts in
//! batches, from lists kept per CPU).
//!
//! Every segment of a capture looks its flow up here, so the layout is
//! built for that: the entries live in one slab (a `Vec`, freed slots
//! reused: no allocation per flow, as a linked map of boxed nodes makes),
//! found through a hash table of 8-byte buckets (`host::index`).

use core::hash::{BuildHasher, Hash};
use std::vec::Vec;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::index::{fold, spread, Bucket};

/// An entry, its reference bit, and whether the slot holds one (a removed
/// entry's slot waits in the free list until the next insert).
#[derive(Clone, Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    referenced: bool,
    live: bool,
}

/// A second-chance (CLOCK) map of at most `capacity` entries.
#[derive(Clone, Debug)]
pub struct LruMap<K, V> {
    index: HashTable<Bucket>,
    hasher: RandomState,
    slots: Vec<Slot<K, V>>,
    /// Slots of entries removed, for the next insert.
    free: Vec<u32>,
    /// The slot the next eviction looks at first.
    hand: u32,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> LruMap<K, V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        LruMap { index: HashTable::new(), hasher: RandomState::default(), slots: Vec::new(), free: Vec::new(), hand: 0, capacity: capacity.max(1) }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    fn hash(&self, key: &K) -> u32 {
        fold(self.hasher.hash_one(key))
    }

    fn slot_hashed(&self, key: &K, hash: u32) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(spread(hash), |b| b.hash == hash && slots[b.slot as usize].key == *key).map(|b| b.slot)
    }

    /// The entry of `key`, without marking it used.
    pub fn peek(&self, key: &K) -> Option<&V> {
        let slot = self.slot_hashed(key, self.hash(key))?;
        Some(&self.slots[slot as usize].value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.slot_hashed(key, self.hash(key)).is_some()
    }

    /// The entry of `key`, marked used.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.slot_hashed(key, self.hash(key))?;
        let s = &mut self.slots[slot as usize];
        s.referenced = true;
        Some(&mut s.value)
    }

    /// Insert or replace `key`'s entry. Returns what made room: `key`'s own
    /// old entry (the new one marked used), or, when the map was full, the
    /// entry the hand evicted.
    pub fn push(&mut self, key: K, value: V) -> Option<(K, V)> {
        let hash = self.hash(&key);
        if let Some(slot) = self.slot_hashed(&key, hash) {
            let s = &mut self.slots[slot as usize];
            s.referenced = true;
            let old = core::mem::replace(&mut s.value, value);
            return Some((key, old));
        }
        if self.len() >= self.capacity {
            // Full, so every slot is live (the slab grows only while there
            // is room and no free slot): the victim's slot takes the new
            // entry, unmarked, as the kernel's new nodes are. It sits just
            // behind the hand, the last the next sweep reaches.
            let slot = self.victim();
            let old_hash = self.hash(&self.slots[slot as usize].key);
            self.unindex(slot, old_hash);
            let s = &mut self.slots[slot as usize];
            let old_key = core::mem::replace(&mut s.key, key);
            let old_value = core::mem::replace(&mut s.value, value);
            self.index_slot(slot, hash);
            return Some((old_key, old_value));
        }
        let slot = match self.free.pop() {
            // A freed slot is anywhere relative to the hand, possibly the
            // next it looks at: marked, the new entry is passed over once
            // rather than evicted by the next push.
            Some(slot) => {
                self.slots[slot as usize] = Slot { key, value, referenced: true, live: true };
                slot
            }
            // A new slot is at the end of the slab, behind the hand (which
            // stays at 0 while the slab grows): unmarked, as above.
            None => {
                self.slots.push(Slot { key, value, referenced: false, live: true });
                (self.slots.len() - 1) as u32
            }
        };
        self.index_slot(slot, hash);
        None
    }

    /// Remove `key`'s entry; returns it.
    pub fn pop(&mut self, key: &K) -> Option<V>
    where
        V: Copy,
    {
        let hash = self.hash(key);
        let slot = self.slot_hashed(key, hash)?;
        self.unindex(slot, hash);
        self.free.push(slot);
        let s = &mut self.slots[slot as usize];
        s.live = false;
        Some(s.value)
    }

    /// Every entry, in the order the hand would reach them.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        let (behind, ahead) = self.slots.split_at(self.hand as usize);
        ahead.iter().chain(behind).filter(|s| s.live).map(|s| (&s.key, &s.value))
    }

    /// The slot to evict from a full map: the first at or after the hand
    /// not used since the hand last passed it, clearing the marks of those
    /// passed over. At most one turn plus one slot: the turn clears every
    /// mark. The hand moves past the victim.
    fn victim(&mut self) -> u32 {
        let n = self.slots.len() as u32;
        loop {
            let at = self.hand;
            self.hand = if at + 1 >= n { 0 } else { at + 1 };
            let s = &mut self.slots[at as usize];
            if !s.referenced {
                return at;
            }
            s.referenced = false;
        }
    }

    fn index_slot(&mut self, slot: u32, hash: u32) {
        self.index.insert_unique(spread(hash), Bucket { slot, hash }, |b| spread(b.hash));
    }

    fn unindex(&mut self, slot: u32, hash: u32) {
        if let Ok(entry) = self.index.find_entry(spread(hash), |b| b.slot == slot) {
            entry.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_full_map_evicts_an_entry_not_used_since_the_hand_passed() {
        let mut m = LruMap::new(2);
        assert_eq!(m.push(1u32, "a"), None);
        assert_eq!(m.push(2, "b"), None);
        // 1 used: the hand passes it over, and takes 2.
        assert_eq!(m.get_mut(&1).copied(), Some("a"));
        assert_eq!(m.push(3, "c"), Some((2, "b")));
        assert_eq!(m.peek(&2), None);
        // A peek is not a use: 1's mark was cleared by the last sweep.
        assert_eq!(m.peek(&1), Some(&"a"));
        assert_eq!(m.push(4, "d"), Some((1, "a")));
        // In the hand's order: 3 is the next it reaches, 4 the last.
        assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), [(3, "c"), (4, "d")]);
        // Replacing an entry returns the old one and evicts nothing.
        assert_eq!(m.push(3, "C"), Some((3, "c")));
        assert_eq!(m.len(), 2);
        assert_eq!(m.pop(&4), Some("d"));
        assert_eq!(m.pop(&4), None);
        assert_eq!(m.push(5, "e"), None, "a removed entry's slot is free again");
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [3, 5]);
        // 3 was used (replaced) and 5 went into a freed slot: both passed
        // over once, then the hand comes back to 3.
        assert_eq!(m.push(6, "f"), Some((3, "C")));
    }

    #[test]
    fn entries_never_used_go_in_the_order_they_came() {
        let mut m = LruMap::new(3);
        for k in 0..3u32 {
            m.push(k, k);
        }
        for k in 3..20u32 {
            assert_eq!(m.push(k, k), Some((k - 3, k - 3)));
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8, u16),
        Get(u8),
        Peek(u8),
        Pop(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), any::<u16>()).prop_map(|(k, v)| Op::Push(k % 24, v)),
            any::<u8>().prop_map(|k| Op::Get(k % 24)),
            any::<u8>().prop_map(|k| Op::Peek(k % 24)),
            any::<u8>().prop_map(|k| Op::Pop(k % 24)),
        ]
    }

    /// The second-chance policy written out plainly, with no index: slots
    /// found by a linear search, each `(key, value, referenced)` or empty.
    #[derive(Default)]
    struct Model {
        slots: Vec<Option<(u8, u16, bool)>>,
        free: Vec<usize>,
        hand: usize,
    }

    impl Model {
        fn find(&self, k: u8) -> Option<usize> {
            self.slots.iter().position(|s| s.is_some_and(|e| e.0 == k))
        }

        fn len(&self) -> usize {
            self.slots.iter().flatten().count()
        }

        fn push(&mut self, k: u8, v: u16, capacity: usize) -> Option<(u8, u16)> {
            if let Some(i) = self.find(k) {
                let e = self.slots[i].as_mut().unwrap();
                let old = e.1;
                (e.1, e.2) = (v, true);
                return Some((k, old));
            }
            if self.len() == capacity {
                loop {
                    let at = self.hand;
                    self.hand = (at + 1) % self.slots.len();
                    let e = self.slots[at].as_mut().unwrap();
                    if !e.2 {
                        let old = (e.0, e.1);
                        *e = (k, v, false);
                        return Some(old);
                    }
                    e.2 = false;
                }
            }
            match self.free.pop() {
                Some(i) => self.slots[i] = Some((k, v, true)),
                None => self.slots.push(Some((k, v, false))),
            }
            None
        }

        fn in_hand_order(&self) -> Vec<(u8, u16)> {
            let n = self.slots.len();
            (0..n).filter_map(|i| self.slots[(self.hand + i) % n].map(|e| (e.0, e.1))).collect()
        }
    }

    proptest! {
        /// Against the model: the same answers, the same victims, the same
        /// entries; and what holds whatever the policy: never more than
        /// `capacity` entries, an eviction only from a full map, of an
        /// entry it held, never the one pushed.
        #[test]
        fn behaves_as_a_second_chance_clock(capacity in 1usize..12, ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = LruMap::new(capacity);
            let mut model = Model::default();
            for op in ops {
                match op {
                    Op::Push(k, v) => {
                        let (held, full) = (model.find(k).is_some(), model.len() == capacity);
                        let expect = model.push(k, v, capacity);
                        let got = m.push(k, v);
                        match got {
                            Some((old, _)) if old != k => prop_assert!(full && !held, "evicted {old} for {k}"),
                            Some(_) => prop_assert!(held),
                            None => prop_assert!(!held && !full),
                        }
                        prop_assert_eq!(got, expect);
                    }
                    Op::Get(k) => {
                        let expect = model.find(k).map(|i| {
                            let e = model.slots[i].as_mut().unwrap();
                            e.2 = true;
                            e.1
                        });
                        prop_assert_eq!(m.get_mut(&k).copied(), expect);
                    }
                    Op::Peek(k) => prop_assert_eq!(m.peek(&k).copied(), model.find(k).map(|i| model.slots[i].unwrap().1)),
                    Op::Pop(k) => {
                        let expect = model.find(k).map(|i| {
                            model.free.push(i);
                            model.slots[i].take().unwrap().1
                        });
                        prop_assert_eq!(m.pop(&k), expect);
                    }
                }
                prop_assert!(m.len() <= capacity);
                prop_assert_eq!(m.len(), model.len());
                prop_assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), model.in_hand_order());
            }
        }

        /// What is left of LRU order: an entry used since the last eviction
        /// is not the next victim while the map holds an entry never used
        /// at all (inserted into the slab's end or a victim's slot, and
        /// neither got nor replaced since).
        #[test]
        fn a_used_entry_outlives_one_never_used(capacity in 2usize..12, ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = LruMap::new(capacity);
            // Keys never used since they came (and did not take a freed slot),
            // and keys used since the last eviction.
            let mut unused: Vec<u8> = Vec::new();
            let mut used_since: Vec<u8> = Vec::new();
            let mut freed = 0usize;
            for op in ops {
                match op {
                    Op::Push(k, v) => {
                        let held = m.contains(&k);
                        let fresh = !held && (m.len() == capacity || freed == 0);
                        match m.push(k, v) {
                            Some((old, _)) if old != k => {
                                if !unused.is_empty() && !unused.contains(&old) {
                                    prop_assert!(!used_since.contains(&old), "{old} was used since the last eviction, {unused:?} never");
                                }
                                unused.retain(|&u| u != old);
                                used_since.clear();
                            }
                            Some(_) => {
                                unused.retain(|&u| u != k);
                                used_since.push(k);
                            }
                            None => {
                                if !fresh {
                                    freed -= 1;
                                }
                            }
                        }
                        if fresh {
                            unused.push(k);
                        }
                    }
                    Op::Get(k) => {
                        if m.get_mut(&k).is_some() {
                            unused.retain(|&u| u != k);
                            used_since.push(k);
                        }
                    }
                    Op::Peek(k) => {
                        m.peek(&k);
                    }
                    Op::Pop(k) => {
                        if m.pop(&k).is_some() {
                            freed += 1;
                            unused.retain(|&u| u != k);
                            used_since.retain(|&u| u != k);
                        }
                    }
                }
            }
        }
    }
}
