//! The benchmark's two reference programs (`tcp-track-bench packets`
//! states every cost as a ratio to the first and prints the second next to
//! it): each must pass the verifier and do the work it is measured for,
//! or the ratios measure nothing. Run with BPF_PROG_TEST_RUN: the first
//! run on a frame inserts its flow, every later one finds it and counts.

mod support;

use aya::{
    maps::{Array, HashMap, MapData},
    programs::{TestRun, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use tcp_track::{
    loader::{EBPF_OBJECT, REFERENCE_MAP, REFERENCE_PROGRAM, REFERENCE_SETS_MAP, REFERENCE_SETS_PROGRAM, REFERENCE_SET_MASK},
    test_support::frames::{tcp_segment, Tcp},
};
use tcp_track_common::{
    flow::{direction, key_v4, FlowKeyV4, FlowRecord},
    parse::parse,
    refsets::{self, SetV4},
};

const XDP_PASS: u32 = 2;
const SETS: u32 = 64;

fn load() -> Ebpf {
    let mask = SETS - 1;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(REFERENCE_MAP, SETS * refsets::WAYS as u32)
        .map_max_entries(REFERENCE_SETS_MAP, SETS)
        .override_global(REFERENCE_SET_MASK, &mask, true)
        .load(EBPF_OBJECT)
        .expect("the object loads");
    for name in [REFERENCE_PROGRAM, REFERENCE_SETS_PROGRAM] {
        let p: &mut Xdp = ebpf.program_mut(name).and_then(|p| p.try_into().ok()).expect("an XDP program");
        p.load().unwrap_or_else(|e| panic!("{name} passes the verifier: {e:?}"));
    }
    ebpf
}

fn run(ebpf: &Ebpf, name: &str, frame: &[u8]) {
    let p: &Xdp = ebpf.program(name).and_then(|p| p.try_into().ok()).expect("loaded");
    let out = p.test_run(TestRunOptions { data_in: Some(frame), repeat: 1, ..Default::default() }).expect("BPF_PROG_TEST_RUN");
    assert_eq!(out.return_value, XDP_PASS, "{name} lets every frame through");
}

fn segment(port: u16, seq: u32) -> (Vec<u8>, FlowKeyV4) {
    let f = tcp_segment(
        format!("198.18.0.1:{port}").parse().unwrap(),
        "198.18.0.2:80".parse().unwrap(),
        [2, 0, 0, 0, 0, 2],
        Tcp { flags: "A", seq, ack: 1, window: 502, ..Tcp::default() },
    )
    .unwrap();
    let seg = parse(f.as_slice()).unwrap();
    let key = key_v4(&seg, direction(&seg));
    (f, key)
}

/// The record of `key` in whichever of its two sets holds it, and which.
fn in_sets(ebpf: &Ebpf, key: &FlowKeyV4) -> Option<(FlowRecord, usize)> {
    let sets: Array<&MapData, SetV4> = Array::try_from(ebpf.map(REFERENCE_SETS_MAP).unwrap()).unwrap();
    (0..2).find_map(|choice| {
        let mut set = sets.get(&refsets::set_of(key, choice, SETS - 1), 0).unwrap();
        refsets::find_mut(&mut set, key).copied().map(|rec| (rec, choice))
    })
}

#[test]
fn both_references_find_and_count_the_flow_they_hold() {
    require_root!();
    let ebpf = load();
    // 200 flows in 64 sets of 8: few first sets fill. Three segments
    // each, the last one's sequence number kept.
    run_flows(&ebpf, 200);
    let lru: HashMap<&MapData, FlowKeyV4, FlowRecord> = HashMap::try_from(ebpf.map(REFERENCE_MAP).unwrap()).unwrap();
    for i in 0..200u16 {
        let (_, key) = &segment(40_000 + i, 0);
        let rec = lru.get(key, 0).expect("the LRU reference holds every flow");
        assert_eq!((rec.packets[0], rec.last_end), (2, 1002), "inserted, then found and counted twice");
        let (rec, _) = in_sets(&ebpf, key).expect("the sets reference holds every flow");
        assert_eq!((rec.packets[0], rec.last_end), (2, 1002), "inserted, then found and counted twice");
    }
    // Each flow once, in a set of its own two.
    let sets: Array<&MapData, SetV4> = Array::try_from(ebpf.map(REFERENCE_SETS_MAP).unwrap()).unwrap();
    let used: u32 = (0..SETS).map(|i| sets.get(&i, 0).unwrap().used).sum();
    assert_eq!(used, 200);
}

/// Past a full first set, flows go to their second, and lookups find them
/// there: the first set counts them.
#[test]
fn the_sets_reference_finds_a_flow_its_first_set_spilled() {
    require_root!();
    let ebpf = load();
    // 440 flows in 512 ways: many first sets fill.
    run_flows(&ebpf, 440);
    let sets: Array<&MapData, SetV4> = Array::try_from(ebpf.map(REFERENCE_SETS_MAP).unwrap()).unwrap();
    let mut in_second = 0;
    for i in 0..440u16 {
        let (_, key) = &segment(40_000 + i, 0);
        let [first, second] = [0, 1].map(|c| sets.get(&refsets::set_of(key, c, SETS - 1), 0).unwrap());
        match in_sets(&ebpf, key) {
            Some((rec, choice)) => {
                assert_eq!((rec.packets[0], rec.last_end), (2, 1002), "flow {i}: inserted, then found and counted twice");
                if choice == 1 {
                    in_second += 1;
                    assert!(first.used == 8 && first.spilled > 0, "flow {i} in its second set: its first full and counting it");
                }
            }
            // What neither set can hold is the stash's.
            None => assert!(first.used == 8 && second.used == 8, "flow {i} not held while a set had room"),
        }
    }
    assert!(in_second > 10, "only {in_second} flows in their second set: the test does not reach the spill");
}

/// Three segments of each of `n` flows through both references.
fn run_flows(ebpf: &Ebpf, n: u16) {
    for round in 0..3u32 {
        for i in 0..n {
            let (f, _) = segment(40_000 + i, 1000 + round);
            run(ebpf, REFERENCE_PROGRAM, &f);
            run(ebpf, REFERENCE_SETS_PROGRAM, &f);
        }
    }
}
