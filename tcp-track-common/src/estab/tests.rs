use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn key(i: u32) -> FlowKeyV4 {
    let [a, b, c, d] = i.to_be_bytes();
    FlowKeyV4 { lo_addr: [198, 18, a, b], hi_addr: [198, 19, 0, 1], lo_port: u16::from_be_bytes([c, d]), hi_port: 80 }
}

fn rec(tag: u32) -> FlowRecord {
    FlowRecord { last_end: tag, state: 3, ..FlowRecord::default() }
}

/// The record `locate` finds for `key` in the pair (`None`: absent or stash).
fn found(first: &EstSetV4, second: &EstSetV4, key: &FlowKeyV4) -> Option<FlowRecord> {
    match locate(first, || Some(second), key) {
        Where::Set(0, w) => Some(*first.record(w)),
        Where::Set(_, w) => Some(*second.record(w)),
        Where::Stash | Where::Absent => None,
    }
}

#[test]
fn the_first_set_fills_first_then_the_second_then_the_stash() {
    let (mut a, mut b) = (EstSetV4::default(), EstSetV4::default());
    for i in 0..8 {
        assert_eq!(place(&mut a, Some(&mut b), &key(i), &rec(i)), Placed::Set(0, i));
        assert!(!reads_second(&a), "nothing spilled while the first set had room");
    }
    for i in 8..16 {
        assert_eq!(place(&mut a, Some(&mut b), &key(i), &rec(i)), Placed::Set(1, i - 8));
    }
    assert_eq!(place(&mut a, Some(&mut b), &key(16), &rec(16)), Placed::Stash);
    assert_eq!((a.live, a.taken, b.live, a.spilled, a.stashed, b.spilled), (0xff, 0xff, 0xff, 8, 1, 0));
    for i in 0..16 {
        assert_eq!(found(&a, &b, &key(i)), Some(rec(i)), "flow {i}");
    }
    assert_eq!(locate(&a, || Some(&b), &key(16)), Where::Stash);
    // One candidate set: no second place to go.
    let mut c = EstSetV4 { live: 0xff, taken: 0xff, ..EstSetV4::default() };
    assert_eq!(place(&mut c, None, &key(17), &rec(17)), Placed::Stash);
    assert_eq!((c.spilled, c.stashed), (0, 1));
    unstash(&mut c);
    assert_eq!(c.stashed, 0);
}

#[test]
fn a_lookup_reads_only_what_its_first_set_points_to() {
    let (mut a, b) = (EstSetV4::default(), EstSetV4::default());
    let mut second_read = false;
    assert_eq!(locate(&a, || { second_read = true; Some(&b) }, &key(1)), Where::Absent);
    assert!(!second_read, "an unspilled first set is the whole answer");
    place(&mut a, None, &key(1), &rec(1));
    // A way past the live mask is not a flow, whatever its bytes.
    a.keys[3] = key(2);
    assert_eq!(locate(&a, || Some(&b), &key(2)), Where::Absent);
}

#[test]
fn a_removed_flow_is_gone_and_its_way_reused() {
    let (mut a, mut b) = (EstSetV4::default(), EstSetV4::default());
    for i in 0..9 {
        place(&mut a, Some(&mut b), &key(i), &rec(i));
    }
    assert_eq!(locate(&a, || Some(&b), &key(8)), Where::Set(1, 0));
    remove(&mut a, Some(&mut b), 1, 0);
    assert_eq!((a.spilled, b.live, b.taken), (0, 0, 0), "the spill is no longer counted");
    assert_eq!(locate(&a, || Some(&b), &key(8)), Where::Absent);
    remove(&mut a, Some(&mut b), 0, 3);
    assert_eq!(found(&a, &b, &key(3)), None);
    assert_eq!(place(&mut a, Some(&mut b), &key(20), &rec(20)), Placed::Set(0, 3), "the freed way is taken first");
    assert_eq!(found(&a, &b, &key(20)), Some(rec(20)));
}

#[test]
fn a_flow_placed_twice_is_placed_once() {
    let (mut a, mut b) = (EstSetV4::default(), EstSetV4::default());
    assert_eq!(place(&mut a, Some(&mut b), &key(1), &rec(1)), Placed::Set(0, 0));
    assert_eq!(place(&mut a, Some(&mut b), &key(1), &rec(2)), Placed::Duplicate);
    assert_eq!((a.live, a.taken), (1, 1), "the duplicate's way is free again");
    assert_eq!(found(&a, &b, &key(1)), Some(rec(1)));
    // Also when the copy would land in the second set.
    for i in 2..9 {
        place(&mut a, Some(&mut b), &key(i), &rec(i));
    }
    assert_eq!(place(&mut a, Some(&mut b), &key(5), &rec(0)), Placed::Duplicate);
    assert_eq!((a.spilled, b.live, b.taken), (0, 0, 0));
}

#[test]
fn the_geometry_is_a_power_of_two_of_sets() {
    assert_eq!(geometry(65536), (8192, 8191));
    assert_eq!(geometry(1000), (128, 127));
    assert_eq!(geometry(0), (1, 0));
    assert_eq!(stash_capacity(65536), 5461);
    assert_eq!(stash_capacity(100), STASH_MIN);
    let k = key(7);
    let (x, y) = candidates(&k, 1, 0xffff);
    assert_ne!(x, y);
    assert_ne!((x, y), candidates(&k, 2, 0xffff), "the seed moves the sets");
}

/// Shared sets for threads (every access to `live` and `taken` is atomic;
/// a way's key and record are written only by the thread that claimed it,
/// before it goes live).
struct Shared(*mut EstSetV4);
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// Two threads placing the same keys at the same moments, as two CPUs
/// picking up one flow from a segment each way: no key ever ends up live
/// twice, and each key placed is found.
#[test]
fn concurrent_writers_never_leave_a_flow_twice() {
    for round in 0..200u32 {
        let mut sets = [EstSetV4::default(), EstSetV4::default()];
        let shared = Shared(sets.as_mut_ptr());
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            for t in 0..2u32 {
                let (shared, barrier) = (&shared, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..6 {
                        // SAFETY: see `Shared`.
                        let (a, b) = unsafe { (&mut *shared.0, &mut *shared.0.add(1)) };
                        let _ = place(a, Some(b), &key(round * 8 + i), &rec(t));
                    }
                });
            }
        });
        let [a, b] = &sets;
        for i in 0..6 {
            let k = key(round * 8 + i);
            let copies = [a, b].iter().map(|s| (0..WAYS).filter(|&w| s.live & (1 << w) != 0 && *s.key(w) == k).count()).sum::<usize>();
            assert!(copies <= 1, "round {round}: flow {i} live {copies} times");
        }
        assert_eq!(a.taken, a.live, "no way is left claimed but not live");
        assert_eq!(b.taken, b.live);
    }
}

proptest! {
    /// Any sequence of placements and removals over a pair of sets: a
    /// lookup finds exactly the flows placed in a set and not removed, with
    /// their records; the counts stay what the ways hold.
    #[test]
    fn lookups_find_exactly_the_flows_the_sets_hold(ops in proptest::collection::vec((0u32..24, any::<bool>()), 1..200)) {
        let (mut a, mut b) = (EstSetV4::default(), EstSetV4::default());
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut stash: HashMap<u32, u32> = HashMap::new();
        for (n, (k, add)) in ops.into_iter().enumerate() {
            let present = model.contains_key(&k) || stash.contains_key(&k);
            if add && !present {
                match place(&mut a, Some(&mut b), &key(k), &rec(n as u32)) {
                    Placed::Set(..) => { model.insert(k, n as u32); }
                    Placed::Stash => { stash.insert(k, n as u32); }
                    Placed::Duplicate => prop_assert!(false, "flow {} is not placed yet", k),
                }
            } else if !add && present {
                match locate(&a, || Some(&b), &key(k)) {
                    Where::Set(which, way) => remove(&mut a, Some(&mut b), which, way),
                    Where::Stash => unstash(&mut a),
                    Where::Absent => prop_assert!(false, "flow {} lost", k),
                }
                model.remove(&k);
                stash.remove(&k);
            }
            for k in 0..24 {
                let want = model.get(&k).map(|&n| rec(n));
                prop_assert_eq!(found(&a, &b, &key(k)), want, "flow {}", k);
                if stash.contains_key(&k) {
                    prop_assert_eq!(locate(&a, || Some(&b), &key(k)), Where::Stash);
                }
            }
            prop_assert_eq!(a.spilled as usize, (b.live.count_ones()) as usize);
            prop_assert_eq!(a.stashed as usize, stash.len());
            prop_assert_eq!(a.live.count_ones() as usize + b.live.count_ones() as usize, model.len());
        }
    }
}
