//! The benchmark's second reference: what a set-associative established
//! table would do per segment, measured next to the LRU hash's reference
//! (issue 15 asks whether a table of our own pays). Never used by the
//! tracker: `tcp-track-ebpf`'s `tcp_track_reference_sets` runs it, and
//! the benchmark fills its sets on the host with the same code.
//!
//! The design is the one `tcp-track-bench loss` finds lossless to 100%
//! with a stash of 1/12 and cheapest on a miss: `WAYS` ways per set, two
//! candidate sets per key (the half-open table's keyed hash, two seeds), a
//! new flow placed in its first set while that has room, else in its
//! second, the first counting it (`spilled`): a lookup reads the second
//! set only when the first has spilled, which stays rare until sets fill.
//! A set keeps its keys together (the lookup reads 96 bytes of keys, not
//! the records), and fills its ways in order: `used` ways are taken. The
//! stash (an LRU hash for what both sets cannot hold) is not here: a
//! lookup of a flow in a set never reads it.

use bytemuck::{Pod, Zeroable};

use crate::{
    flow::{FlowKeyV4, FlowRecord},
    halfopen::{hash, same_key},
};

pub const WAYS: usize = 8;

/// The two seeds of a key's candidate sets.
pub const SEEDS: [u32; 2] = [0x5eed_0001, 0x5eed_0002];

/// One set, one array element.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SetV4 {
    pub keys: [FlowKeyV4; WAYS],
    /// Ways taken, from way 0.
    pub used: u32,
    /// Flows whose first set this is, placed elsewhere because it was
    /// full: while 0, a key not found here is in neither set.
    pub spilled: u32,
    pub records: [FlowRecord; WAYS],
}
const _: () = assert!(core::mem::size_of::<SetV4>() == 872);

/// The key's candidate set `choice` (0 or 1) in sets masked by `set_mask`.
#[inline(always)]
pub fn set_of(key: &FlowKeyV4, choice: usize, set_mask: u32) -> u32 {
    hash(key, if choice == 0 { SEEDS[0] } else { SEEDS[1] }) & set_mask
}

/// The record of `key` in `set`, if it is there. The loop unrolls into
/// constant offsets: a way index the verifier must bound never appears.
#[inline(always)]
pub fn find_mut<'a>(set: &'a mut SetV4, key: &FlowKeyV4) -> Option<&'a mut FlowRecord> {
    let used = set.used as usize;
    let mut w = 0;
    while w < WAYS {
        if w < used && same_key(&set.keys[w], key) {
            return Some(&mut set.records[w]);
        }
        w += 1;
    }
    None
}

/// Way `w` of `set`, key and record; `None` past the last way.
#[inline(always)]
fn way_mut(set: &mut SetV4, w: u32) -> Option<(&mut FlowKeyV4, &mut FlowRecord)> {
    macro_rules! way {
        ($($i:literal)*) => {
            match w {
                $($i => Some((&mut set.keys[$i], &mut set.records[$i])),)*
                _ => None,
            }
        };
    }
    way!(0 1 2 3 4 5 6 7)
}

/// Whether a key not found in its first set `first` may still be in its
/// second.
#[inline(always)]
pub fn reads_second(first: &SetV4) -> bool {
    first.spilled != 0
}

/// Put a new flow in its first set if that has room, else in its second
/// (`None` when both candidates are the same set), the first counting the
/// spill; false when neither has room (the design's stash would take it).
#[inline(always)]
pub fn place(first: &mut SetV4, second: Option<&mut SetV4>, key: &FlowKeyV4, rec: &FlowRecord) -> bool {
    if push(first, key, rec) {
        return true;
    }
    first.spilled = first.spilled.saturating_add(1);
    match second {
        Some(second) => push(second, key, rec),
        None => false,
    }
}

/// Put a new flow in the next free way of `set`; false when it is full.
#[inline(always)]
fn push(set: &mut SetV4, key: &FlowKeyV4, rec: &FlowRecord) -> bool {
    let Some((k, r)) = way_mut(set, set.used) else { return false };
    *k = *key;
    *r = *rec;
    set.used += 1;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u16) -> FlowKeyV4 {
        FlowKeyV4 { lo_addr: [198, 18, 0, 1], hi_addr: [198, 18, 0, 2], lo_port: i, hi_port: 80 }
    }

    #[test]
    fn a_placed_flow_is_found_in_its_set_and_only_there() {
        let (mut a, mut b) = (SetV4::default(), SetV4::default());
        let rec = FlowRecord { state: 3, ..FlowRecord::default() };
        for i in 0..8 {
            assert!(place(&mut a, Some(&mut b), &key(i), &rec), "way {i} of the first set");
        }
        assert!(!reads_second(&a), "nothing spilled while the first set had room");
        for i in 8..16 {
            assert!(place(&mut a, Some(&mut b), &key(i), &rec), "way {} of the second set", i - 8);
        }
        assert!(!place(&mut a, Some(&mut b), &key(16), &rec), "both sets full");
        assert_eq!((a.used, b.used, a.spilled, b.spilled), (8, 8, 9, 0));
        assert!(reads_second(&a));
        for i in 0..16 {
            let found = find_mut(&mut a, &key(i)).is_some() as u8 + find_mut(&mut b, &key(i)).is_some() as u8;
            assert_eq!(found, 1, "flow {i} is in exactly one set");
        }
        assert!(find_mut(&mut a, &key(16)).is_none() && find_mut(&mut b, &key(16)).is_none());
        // Both candidates one set: no second place to go.
        let mut c = SetV4 { used: 8, ..SetV4::default() };
        assert!(!place(&mut c, None, &key(17), &rec));
        assert_eq!(c.spilled, 1);
        // A way past `used` is not a flow, whatever its bytes.
        let mut d = SetV4::default();
        assert!(find_mut(&mut d, &FlowKeyV4::default()).is_none());
    }

    #[test]
    fn the_candidate_sets_differ_by_seed() {
        let differ = (0..1000).filter(|&i| set_of(&key(i), 0, 0xffff) != set_of(&key(i), 1, 0xffff)).count();
        assert!(differ > 990, "{differ}");
    }
}
