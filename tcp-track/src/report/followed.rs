//! The flows the reporter follows, in a slab: each one's state in a slot of
//! a `Vec` (freed slots reused, so the slots never outnumber the most flows
//! followed at once), found by its 4-tuple through a hash table of slot
//! numbers and hashes (`tcp_track_common::host::index`: 8 bytes a bucket,
//! not a 44-byte one with the 4-tuple in it).
//!
//! Everything that names a flow for later (a deadline, the audit's round
//! robin, the half-open order) holds a `FlowRef`: its slot and its
//! incarnation. An incarnation is never given twice, so an entry about a
//! flow since forgotten, or since replaced by a new incarnation of its
//! 4-tuple, is told stale by one comparison, without hashing its 4-tuple;
//! and an event's handling looks its flow up by 4-tuple once, then follows
//! its `FlowRef`.

use std::hash::BuildHasher;

// The index is on every event's path: foldhash (seeded per process)
// rather than SipHash.
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use tcp_track_common::host::index::{fold, spread, Bucket};

use super::flow::FlowId;

/// A followed flow, as later work names it: its slot and incarnation. Stale
/// (`Followed::get` says `None`) once that incarnation is forgotten or
/// replaced. Ordered by incarnation first: the order flows were followed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct FlowRef {
    pub incarnation: u64,
    pub slot: u32,
}

/// Aligned to a cache line: an entry of 128 bytes is read as two lines,
/// never three.
#[derive(Debug)]
#[repr(align(64))]
struct Entry<T> {
    id: FlowId,
    incarnation: u64,
    value: T,
}

/// The bytes one slot of `Followed<T>` takes.
pub(super) const fn slot_size<T>() -> usize {
    std::mem::size_of::<Option<Entry<T>>>()
}

/// The slab of followed flows and its index by 4-tuple.
#[derive(Debug)]
pub(super) struct Followed<T> {
    /// Slot numbers, hashed by their flow's 4-tuple. Kept at least twice as
    /// large as the flows followed: flows come and go all the time, and a
    /// hashbrown table more than half full whose deleted slots run out
    /// doubles instead of rehashing in place, so a table left to grow by
    /// itself would double once more, late (`reserve_room`).
    index: HashTable<Bucket>,
    hasher: RandomState,
    /// The capacity last reserved for `index`.
    room: usize,
    slots: Vec<Option<Entry<T>>>,
    /// Slots free for the next flow, the last freed first (its memory is
    /// the most likely to be in cache).
    free: Vec<u32>,
    /// The last incarnation given (the first is 1).
    incarnations: u64,
}

impl<T> Default for Followed<T> {
    fn default() -> Self {
        Followed { index: HashTable::new(), hasher: RandomState::default(), room: 0, slots: Vec::new(), free: Vec::new(), incarnations: 0 }
    }
}

impl<T> Followed<T> {
    /// Flows followed.
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// The 32 bits of `id`'s hash the index is keyed by.
    fn hash(&self, id: &FlowId) -> u32 {
        fold(self.hasher.hash_one(id))
    }

    /// The slot holding `id`'s 4-tuple (whose `hash` is `hash`), if one does.
    fn slot_hashed(&self, id: &FlowId, hash: u32) -> Option<u32> {
        let slots = &self.slots;
        let holds = |b: &Bucket| b.hash == hash && slots.get(b.slot as usize).and_then(Option::as_ref).is_some_and(|e| e.id == *id);
        self.index.find(spread(hash), holds).map(|b| b.slot)
    }

    fn slot_of(&self, id: &FlowId) -> Option<u32> {
        self.slot_hashed(id, self.hash(id))
    }

    /// The flow followed on `id`'s 4-tuple, if any.
    pub(super) fn find(&self, id: &FlowId) -> Option<FlowRef> {
        let slot = self.slot_of(id)?;
        let e = self.slots.get(slot as usize)?.as_ref()?;
        Some(FlowRef { incarnation: e.incarnation, slot })
    }

    /// The flow followed on `id`'s 4-tuple, to change.
    pub(super) fn find_mut(&mut self, id: &FlowId) -> Option<&mut T> {
        let slot = self.slot_of(id)?;
        self.slots.get_mut(slot as usize)?.as_mut().map(|e| &mut e.value)
    }

    /// Follow `value` on `id`'s 4-tuple as a new incarnation; returns its
    /// `FlowRef` and the incarnation it replaced on that 4-tuple, if one
    /// was followed (its `FlowRef`s are stale from now on).
    pub(super) fn insert(&mut self, id: FlowId, value: T) -> (FlowRef, Option<T>) {
        self.incarnations += 1;
        let entry = Entry { id, incarnation: self.incarnations, value };
        // The index names only occupied slots.
        let hash = self.hash(&id);
        if let Some(slot) = self.slot_hashed(&id, hash) {
            let old = self.slots[slot as usize].replace(entry);
            return (FlowRef { incarnation: self.incarnations, slot }, old.map(|e| e.value));
        }
        self.reserve_room();
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                // More flows than u32 slots cannot be followed: the tables
                // hold far fewer.
                let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 flows followed");
                self.slots.push(Some(entry));
                slot
            }
        };
        self.index.insert_unique(spread(hash), Bucket { slot, hash }, |b| spread(b.hash));
        (FlowRef { incarnation: self.incarnations, slot }, None)
    }

    /// Keep room for twice the flows followed: hashbrown cleans a table
    /// whose deleted slots ran out by rehashing it in place when it is at
    /// most half full, and doubles it otherwise, so a table kept at most
    /// half full follows the flows followed (bounded by `max_tracked`)
    /// whatever the churn: memory grows with the flows, not with the hours.
    /// Asks only when the flows outgrow the last room asked for (a
    /// doubling), so the calls are few.
    fn reserve_room(&mut self) {
        let len = self.index.len() + 1;
        if len > self.room / 2 {
            self.room = 2 * len.max(512);
            self.index.reserve(self.room - self.index.len(), |b| spread(b.hash));
        }
    }

    fn entry(&self, r: FlowRef) -> Option<&Entry<T>> {
        self.slots.get(r.slot as usize)?.as_ref().filter(|e| e.incarnation == r.incarnation)
    }

    /// The flow `r` names, unless it is stale.
    pub(super) fn get(&self, r: FlowRef) -> Option<&T> {
        self.entry(r).map(|e| &e.value)
    }

    pub(super) fn get_mut(&mut self, r: FlowRef) -> Option<&mut T> {
        self.slots.get_mut(r.slot as usize)?.as_mut().filter(|e| e.incarnation == r.incarnation).map(|e| &mut e.value)
    }

    /// The 4-tuple of the flow `r` names, unless it is stale.
    pub(super) fn id(&self, r: FlowRef) -> Option<FlowId> {
        self.entry(r).map(|e| e.id)
    }

    /// Forget the flow `r` names (nothing if it is stale): its slot is
    /// free for the next one.
    pub(super) fn remove(&mut self, r: FlowRef) -> Option<T> {
        let slot = self.slots.get_mut(r.slot as usize)?;
        if slot.as_ref()?.incarnation != r.incarnation {
            return None;
        }
        let e = slot.take()?;
        if let Ok(found) = self.index.find_entry(spread(self.hash(&e.id)), |b| b.slot == r.slot) {
            found.remove();
        }
        self.free.push(r.slot);
        Some(e.value)
    }

    /// Every flow followed.
    pub(super) fn iter(&self) -> impl Iterator<Item = (FlowRef, &FlowId, &T)> {
        self.slots.iter().enumerate().filter_map(|(slot, e)| {
            let e = e.as_ref()?;
            Some((FlowRef { incarnation: e.incarnation, slot: slot as u32 }, &e.id, &e.value))
        })
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|e| e.as_ref().map(|e| &e.value))
    }

    /// Every flow followed, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&FlowId, &mut T)> {
        self.slots.iter_mut().filter_map(|e| e.as_mut().map(|e| (&e.id, &mut e.value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16) -> FlowId {
        FlowId { family: 2, lo_addr: [1; 16], hi_addr: [2; 16], lo_port: port, hi_port: 80 }
    }

    /// Freed slots are reused, so the slab holds no more slots than the
    /// most flows followed at once; references to a forgotten flow, or to
    /// an older incarnation of a 4-tuple, are stale even when their slot
    /// holds another flow.
    #[test]
    fn slots_are_reused_and_old_references_are_stale() {
        let mut f = Followed::default();
        let (a, _) = f.insert(id(1), "a");
        let (b, _) = f.insert(id(2), "b");
        assert_eq!((f.get(a), f.get(b), f.len()), (Some(&"a"), Some(&"b"), 2));
        assert_eq!(f.remove(a), Some("a"));
        assert_eq!((f.get(a), f.find(&id(1))), (None, None));
        assert_eq!(f.remove(a), None);
        let (c, old) = f.insert(id(3), "c");
        assert_eq!((c.slot, old), (a.slot, None), "the freed slot serves the next flow");
        assert_eq!((f.get(a), f.id(a), f.get(c), f.id(c)), (None, None, Some(&"c"), Some(id(3))));
        let (b2, old) = f.insert(id(2), "b2");
        assert_eq!((b2.slot, old), (b.slot, Some("b")), "a new incarnation replaces the old in place");
        assert_eq!((f.get(b), f.get(b2), f.find(&id(2)), f.len()), (None, Some(&"b2"), Some(b2), 2));
        assert_eq!(f.remove(b), None, "a stale reference removes nothing");
        assert_eq!(f.slots.len(), 2);
        let mut seen: Vec<_> = f.iter().map(|(r, i, v)| (r, *i, *v)).collect();
        seen.sort();
        assert_eq!(seen, [(c, id(3), "c"), (b2, id(2), "b2")]);
    }
}
