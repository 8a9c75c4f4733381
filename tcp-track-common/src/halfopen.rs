//! The half-open table: flows that have seen only a SYN (or a SYN and a
//! SYN-ACK) wait here, apart from established flows, until their handshake
//! completes.
//!
//! It is a set-associative cache in a BPF array (on the host, a `Vec` of
//! the same sets: `host::HostStore`), like FreeBSD's syncache: a keyed hash
//! of the 4-tuple picks a set of `WAYS` slots (one array element); a new
//! flow takes a free slot of its set or evicts the one that was *created*
//! longest ago. This module is the sets; when a flow enters, leaves or is
//! evicted is the table logic's (`table`).
//! Age is the slot's creation time, which no later segment changes, so a
//! retransmitted SYN or SYN-ACK does not make an entry younger (an LRU hash
//! map would: every lookup marks its entry as recently used). A flood of
//! spoofed SYNs churns these sets; it never touches the established table.
//!
//! The hash is keyed with a random seed chosen by the daemon at load time, so
//! that a remote sender cannot aim its SYNs at the set of one victim flow.
//! The daemon computes the same hash to read an entry (`set_of`).
//!
//! Slots are written without a lock, as established records are: two CPUs writing
//! one slot at the same instant can leave a mixed entry, which the state
//! machine tolerates like any odd input and the next handshake segment
//! repairs or the eviction order replaces.

use bytemuck::{Pod, Zeroable};

use crate::flow::{coarse_time, FlowKeyV4, FlowKeyV6, FlowRecord};
use crate::state::STATE_NONE;

/// Slots per set. Four keeps the eviction choice close to a table-wide
/// oldest-first while the lookup stays four compares.
pub const WAYS: u32 = 4;

/// One set of the IPv4 table, one array element. The keys and birth times
/// come first and fill one 64-byte cache line: a lookup reads that line,
/// and the record of the way that matches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetV4 {
    pub keys: [FlowKeyV4; WAYS as usize],
    /// `born(now)` of the segment that created each way's entry; 0: free.
    pub born: [u32; WAYS as usize],
    pub records: [FlowRecord; WAYS as usize],
}
const _: () = assert!(core::mem::size_of::<SetV4>() == 448);
const _: () = assert!(core::mem::offset_of!(SetV4, records) == 64);

/// One set of the IPv6 table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetV6 {
    pub keys: [FlowKeyV6; WAYS as usize],
    pub born: [u32; WAYS as usize],
    pub records: [FlowRecord; WAYS as usize],
}
const _: () = assert!(core::mem::size_of::<SetV6>() == 544);

/// A set of either family. Way indexes go through branches, not
/// arithmetic: in BPF, LLVM may drop the bound of an index it believes is
/// small, and the verifier then refuses the access.
pub trait Set {
    type Key: Copy;
    fn key(&self, way: u32) -> &Self::Key;
    fn born(&self) -> &[u32; WAYS as usize];
    fn record(&self, way: u32) -> &FlowRecord;
    fn record_mut(&mut self, way: u32) -> &mut FlowRecord;
    /// Take way `way` for a new flow.
    fn fill(&mut self, way: u32, key: &Self::Key, born: u32, record: &FlowRecord);
    /// Free way `way` (after promotion, or when the attempt was reset).
    fn clear(&mut self, way: u32);
}

macro_rules! set_impl {
    ($set:ty, $key:ty) => {
        impl Set for $set {
            type Key = $key;
            #[inline(always)]
            fn key(&self, way: u32) -> &$key {
                match way {
                    0 => &self.keys[0],
                    1 => &self.keys[1],
                    2 => &self.keys[2],
                    _ => &self.keys[3],
                }
            }
            #[inline(always)]
            fn born(&self) -> &[u32; WAYS as usize] {
                &self.born
            }
            #[inline(always)]
            fn record(&self, way: u32) -> &FlowRecord {
                match way {
                    0 => &self.records[0],
                    1 => &self.records[1],
                    2 => &self.records[2],
                    _ => &self.records[3],
                }
            }
            #[inline(always)]
            fn record_mut(&mut self, way: u32) -> &mut FlowRecord {
                match way {
                    0 => &mut self.records[0],
                    1 => &mut self.records[1],
                    2 => &mut self.records[2],
                    _ => &mut self.records[3],
                }
            }
            #[inline(always)]
            fn fill(&mut self, way: u32, key: &$key, born: u32, record: &FlowRecord) {
                match way {
                    0 => (self.keys[0], self.born[0]) = (*key, born),
                    1 => (self.keys[1], self.born[1]) = (*key, born),
                    2 => (self.keys[2], self.born[2]) = (*key, born),
                    _ => (self.keys[3], self.born[3]) = (*key, born),
                }
                self.record_mut(way).copy_from(record);
            }
            #[inline(always)]
            fn clear(&mut self, way: u32) {
                match way {
                    0 => self.born[0] = 0,
                    1 => self.born[1] = 0,
                    2 => self.born[2] = 0,
                    _ => self.born[3] = 0,
                }
                self.record_mut(way).state = STATE_NONE;
            }
        }
    };
}
set_impl!(SetV4, FlowKeyV4);
set_impl!(SetV6, FlowKeyV6);

/// A way's birth time: the coarse clock with its lowest bit set, so that
/// no entry is ever born at 0, which marks a free way.
#[inline(always)]
pub const fn born(now_ns: u64) -> u32 {
    coarse_time(now_ns) | 1
}

/// The way holding `key`, if any.
#[inline(always)]
pub fn find<S: Set>(set: &S, key: &S::Key) -> Option<u32>
where
    S::Key: Words,
{
    let mut w = 0;
    while w < WAYS {
        if set.born()[w as usize] != 0 && same_key(set.key(w), key) {
            return Some(w);
        }
        w += 1;
    }
    None
}

/// Keys as 32-bit words, for hashing and for comparing without `memcmp`
/// (which BPF does not have).
pub trait Words {
    const N: usize;
    fn word(&self, i: usize) -> u32;
}

impl Words for FlowKeyV4 {
    const N: usize = 3;
    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        match i {
            0 => u32::from_ne_bytes(self.lo_addr),
            1 => u32::from_ne_bytes(self.hi_addr),
            _ => (self.lo_port as u32) << 16 | self.hi_port as u32,
        }
    }
}

impl Words for FlowKeyV6 {
    const N: usize = 9;
    #[inline(always)]
    fn word(&self, i: usize) -> u32 {
        let addr = if i < 4 { &self.lo_addr } else { &self.hi_addr };
        let j = (i & 3) * 4;
        if i < 8 {
            u32::from_ne_bytes([addr[j], addr[j + 1], addr[j + 2], addr[j + 3]])
        } else {
            (self.lo_port as u32) << 16 | self.hi_port as u32
        }
    }
}

#[inline(always)]
pub fn same_key<K: Words>(a: &K, b: &K) -> bool {
    let mut i = 0;
    while i < K::N {
        if a.word(i) != b.word(i) {
            return false;
        }
        i += 1;
    }
    true
}

/// MurmurHash3 (x86, 32-bit) of the key's words, keyed with `seed`.
#[inline(always)]
pub fn hash<K: Words>(key: &K, seed: u32) -> u32 {
    let mut h = seed;
    let mut i = 0;
    while i < K::N {
        let k = key.word(i).wrapping_mul(0xcc9e_2d51).rotate_left(15).wrapping_mul(0x1b87_3593);
        h = (h ^ k).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
        i += 1;
    }
    h ^= (K::N as u32) * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// The key's set: an index into the table's array.
#[inline(always)]
pub fn set_of<K: Words>(key: &K, seed: u32, set_mask: u32) -> u32 {
    hash(key, seed) & set_mask
}

/// The table for a requested capacity in flows: (sets, set mask). The
/// number of sets is rounded up to a power of two so that a mask picks one;
/// at least one set.
pub fn geometry(capacity: u32) -> (u32, u32) {
    let sets = capacity.div_ceil(WAYS).max(1).checked_next_power_of_two().unwrap_or(1 << 29);
    let sets = sets.min(1 << 29);
    (sets, sets - 1)
}

/// Which way of a set a new entry takes: the first free one, else the one
/// created longest ago (ages compared with wrapping arithmetic, so the
/// coarse clock's wrap does not matter). `(way, evicts)`.
#[inline(always)]
pub fn victim(born: &[u32; WAYS as usize], now_ns: u64) -> (u32, bool) {
    let now = self::born(now_ns);
    let mut best = 0u32;
    let mut best_age = 0u32;
    let mut w = 0usize;
    while w < WAYS as usize {
        if born[w] == 0 {
            return (w as u32, false);
        }
        let age = now.wrapping_sub(born[w]);
        if w == 0 || age > best_age {
            best = w as u32;
            best_age = age;
        }
        w += 1;
    }
    (best, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k4(i: u32) -> FlowKeyV4 {
        FlowKeyV4 { lo_addr: [198, 18, 0, 1], hi_addr: [198, 19 + (i >> 16) as u8, (i >> 8) as u8, i as u8], lo_port: 80, hi_port: 1024u16.wrapping_add(i as u16) }
    }

    #[test]
    fn geometry_rounds_to_whole_power_of_two_sets() {
        assert_eq!(geometry(16384), (4096, 4095));
        assert_eq!(geometry(4), (1, 0));
        assert_eq!(geometry(1), (1, 0));
        assert_eq!(geometry(0), (1, 0));
        assert_eq!(geometry(100), (32, 31));
        assert_eq!(geometry(u32::MAX).1, (1 << 29) - 1, "no overflow");
    }

    #[test]
    fn free_way_first_then_the_oldest() {
        let ms = |m: u64| m << 20;
        assert_eq!(victim(&[5, 0, 7, 0], ms(10)), (1, false));
        assert_eq!(victim(&[7, 3, 9, 5], ms(10)), (1, true), "way 1 was created first");
        // Across the coarse clock's wrap: born just before it is older.
        assert_eq!(victim(&[3, u32::MAX - 1, 1, 3], ms(3)), (1, true));
        assert_eq!(born(0), 1, "never 0, which means free");
    }

    #[test]
    fn ways_are_found_filled_and_cleared() {
        let mut set = SetV4::default();
        let rec = FlowRecord { state: crate::state::STATE_SYN_SENT, ..FlowRecord::default() };
        for w in 0..WAYS {
            assert_eq!(find(&set, &k4(w)), None);
            set.fill(w, &k4(w), born(1 << 20), &rec);
        }
        for w in 0..WAYS {
            assert_eq!(find(&set, &k4(w)), Some(w));
        }
        set.record_mut(2).last_end = 9;
        assert_eq!((set.records[2].last_end, set.record(2).last_end), (9, 9));
        set.clear(2);
        assert_eq!(find(&set, &k4(2)), None);
        assert_eq!((set.born[2], set.records[2].state), (0, STATE_NONE));
        assert_eq!(find(&set, &k4(3)), Some(3));
    }

    #[test]
    fn words_cover_every_key_byte() {
        let a = k4(1);
        for byte in 0..12 {
            let mut b = a;
            bytemuck::bytes_of_mut(&mut b)[byte] ^= 0x40;
            assert!(!same_key(&a, &b), "byte {byte} is compared");
            assert_ne!(hash(&a, 7), hash(&b, 7), "byte {byte} is hashed");
        }
        let a6 = FlowKeyV6 { lo_addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], hi_addr: [0x20; 16], lo_port: 80, hi_port: 4000 };
        for byte in 0..36 {
            let mut b = a6;
            bytemuck::bytes_of_mut(&mut b)[byte] ^= 0x40;
            assert!(!same_key(&a6, &b), "byte {byte} is compared");
            assert_ne!(hash(&a6, 7), hash(&b, 7), "byte {byte} is hashed");
        }
        assert!(same_key(&a6, &{ a6 }));
    }

    #[test]
    fn sets_are_spread_and_depend_on_the_seed() {
        let (_, mask) = geometry(4096);
        let mut per_set = [0u32; 1024];
        for i in 0..65536 {
            per_set[set_of(&k4(i), 0x1234_5678, mask) as usize] += 1;
        }
        // 64 keys per set on average; a usable hash keeps every set near it.
        assert!(per_set.iter().all(|&n| (24..=112).contains(&n)), "min {:?} max {:?}", per_set.iter().min(), per_set.iter().max());
        let moved = (0..1000).filter(|&i| set_of(&k4(i), 1, mask) != set_of(&k4(i), 2, mask)).count();
        assert!(moved > 950, "another seed, another layout ({moved} of 1000 moved)");
    }
}
