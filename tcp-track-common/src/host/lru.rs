//! The host's established table: a map of bounded capacity that, when
//! full, makes room by evicting its least recently used entry, as the
//! kernel's LRU hash does (`BPF_MAP_TYPE_LRU_HASH`; exact LRU here, where
//! the kernel's is approximate).
//!
//! Every segment of a capture looks its flow up here, so the layout is
//! built for that: the entries live in one slab (a `Vec`, freed slots
//! reused: no allocation per flow, as a linked map of boxed nodes makes),
//! linked in recency order by slot number, and found through a hash table
//! of 8-byte buckets (`host::index`).

use core::hash::{BuildHasher, Hash};
use std::vec::Vec;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use super::index::{fold, spread, Bucket};

/// No slot: the end of the recency list.
const NIL: u32 = u32::MAX;

/// An entry and its neighbours in recency order (`prev` more recent).
#[derive(Clone, Debug)]
struct Slot<K, V> {
    key: K,
    value: V,
    prev: u32,
    next: u32,
}

/// An LRU map of at most `capacity` entries.
#[derive(Clone, Debug)]
pub struct LruMap<K, V> {
    index: HashTable<Bucket>,
    hasher: RandomState,
    slots: Vec<Slot<K, V>>,
    /// Slots of entries removed, for the next insert.
    free: Vec<u32>,
    /// The most and the least recently used entry.
    head: u32,
    tail: u32,
    capacity: usize,
}

impl<K: Hash + Eq + Copy, V> LruMap<K, V> {
    /// An empty map of at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        LruMap { index: HashTable::new(), hasher: RandomState::default(), slots: Vec::new(), free: Vec::new(), head: NIL, tail: NIL, capacity: capacity.max(1) }
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

    /// The entry of `key`, without making it more recent.
    pub fn peek(&self, key: &K) -> Option<&V> {
        let slot = self.slot_hashed(key, self.hash(key))?;
        Some(&self.slots[slot as usize].value)
    }

    pub fn contains(&self, key: &K) -> bool {
        self.slot_hashed(key, self.hash(key)).is_some()
    }

    /// The entry of `key`, made the most recent.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.slot_hashed(key, self.hash(key))?;
        self.make_recent(slot);
        Some(&mut self.slots[slot as usize].value)
    }

    /// Insert or replace `key`'s entry, made the most recent. Returns what
    /// made room: `key`'s own old entry, or, when the map was full, the
    /// least recently used entry, evicted.
    pub fn push(&mut self, key: K, value: V) -> Option<(K, V)> {
        let hash = self.hash(&key);
        if let Some(slot) = self.slot_hashed(&key, hash) {
            self.make_recent(slot);
            let old = core::mem::replace(&mut self.slots[slot as usize].value, value);
            return Some((key, old));
        }
        if self.len() >= self.capacity {
            // Full: the least recently used entry's slot takes the new one.
            let slot = self.tail;
            let old_hash = self.hash(&self.slots[slot as usize].key);
            self.unindex(slot, old_hash);
            self.unlink(slot);
            let s = &mut self.slots[slot as usize];
            let old_key = core::mem::replace(&mut s.key, key);
            let old_value = core::mem::replace(&mut s.value, value);
            self.link_front(slot);
            self.index_slot(slot, hash);
            return Some((old_key, old_value));
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.key = key;
                s.value = value;
                slot
            }
            None => {
                self.slots.push(Slot { key, value, prev: NIL, next: NIL });
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(slot);
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
        self.unlink(slot);
        self.free.push(slot);
        Some(self.slots[slot as usize].value)
    }

    /// Every entry, the most recent first.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        let mut at = self.head;
        core::iter::from_fn(move || {
            let s = self.slots.get(at as usize)?;
            at = s.next;
            Some((&s.key, &s.value))
        })
    }

    fn index_slot(&mut self, slot: u32, hash: u32) {
        self.index.insert_unique(spread(hash), Bucket { slot, hash }, |b| spread(b.hash));
    }

    fn unindex(&mut self, slot: u32, hash: u32) {
        if let Ok(entry) = self.index.find_entry(spread(hash), |b| b.slot == slot) {
            entry.remove();
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn link_front(&mut self, slot: u32) {
        let head = self.head;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = NIL;
            s.next = head;
        }
        match head {
            NIL => self.tail = slot,
            h => self.slots[h as usize].prev = slot,
        }
        self.head = slot;
    }

    fn make_recent(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_full_map_evicts_the_least_recently_used() {
        let mut m = LruMap::new(2);
        assert_eq!(m.push(1u32, "a"), None);
        assert_eq!(m.push(2, "b"), None);
        // 1 used: 2 is now the least recent.
        assert_eq!(m.get_mut(&1).copied(), Some("a"));
        assert_eq!(m.push(3, "c"), Some((2, "b")));
        assert_eq!(m.peek(&2), None);
        // A peek does not make 1 more recent than 3.
        assert_eq!(m.peek(&1), Some(&"a"));
        assert_eq!(m.push(4, "d"), Some((1, "a")));
        assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), [(4, "d"), (3, "c")]);
        // Replacing an entry returns the old one and evicts nothing.
        assert_eq!(m.push(3, "C"), Some((3, "c")));
        assert_eq!(m.len(), 2);
        assert_eq!(m.pop(&4), Some("d"));
        assert_eq!(m.pop(&4), None);
        assert_eq!(m.push(5, "e"), None, "a removed entry's slot is free again");
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [5, 3]);
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

    proptest! {
        /// Against a model: a list of (key, value), the most recent first.
        #[test]
        fn behaves_as_an_lru_list(capacity in 1usize..12, ops in proptest::collection::vec(op(), 0..400)) {
            let mut m = LruMap::new(capacity);
            let mut model: VecDeque<(u8, u16)> = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(k, v) => {
                        let expect = match model.iter().position(|e| e.0 == k) {
                            Some(i) => {
                                let old = model.remove(i).unwrap();
                                Some(old)
                            }
                            None if model.len() == capacity => model.pop_back(),
                            None => None,
                        };
                        model.push_front((k, v));
                        prop_assert_eq!(m.push(k, v), expect);
                    }
                    Op::Get(k) => {
                        let expect = model.iter().position(|e| e.0 == k).map(|i| {
                            let e = model.remove(i).unwrap();
                            model.push_front(e);
                            e.1
                        });
                        prop_assert_eq!(m.get_mut(&k).copied(), expect);
                    }
                    Op::Peek(k) => prop_assert_eq!(m.peek(&k).copied(), model.iter().find(|e| e.0 == k).map(|e| e.1)),
                    Op::Pop(k) => {
                        let expect = model.iter().position(|e| e.0 == k).map(|i| model.remove(i).unwrap().1);
                        prop_assert_eq!(m.pop(&k), expect);
                    }
                }
                prop_assert_eq!(m.len(), model.len());
                prop_assert_eq!(m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
