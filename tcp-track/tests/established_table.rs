//! The established table of sets and stash (`tcp_track_common::estab`)
//! as the kernel programs fill it and the daemon reads and frees it
//! through its mapping (`tcp_track::established`), with BPF_PROG_TEST_RUN:
//! a table of two sets (sixteen ways) and a stash of 64, so that flows
//! land in first sets, second sets and the stash.

mod support;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::{Tracker, XDP_PROGRAM},
    report::{FlowId, FlowLookup},
    tables::{FlowTables, KernelFlows},
    test_support::frames::{tcp_segment, Tcp},
};
use tcp_track_common::{
    estab::{Where, STASH_MIN},
    flow::{direction, key_v4, FlowKeyV4, DIR_LO_TO_HI},
    parse::{parse, FAMILY_IPV4},
};

const XDP_PASS: u32 = 2;
const FLOWS: u16 = 60;

/// The programs with two established sets, and their tables (taken out of
/// the object: the programs keep theirs).
fn load() -> (Tracker, KernelFlows) {
    let mut tracker = Tracker::load_sized(BpfLog::Off, RstPolicy::Observe, 16, 64).expect("loading the kernel programs");
    let tables = FlowTables::take(&mut tracker.ebpf, tracker.layout).expect("the tables map");
    (tracker, tables)
}

/// A data segment of flow `i`, client to server (the `lo` endpoint sends).
fn segment(i: u16, seq: u32) -> (Vec<u8>, FlowKeyV4) {
    let f = tcp_segment(
        format!("198.18.0.1:{}", 40_000 + i).parse().unwrap(),
        "198.18.0.2:80".parse().unwrap(),
        [2, 0, 0, 0, 0, 2],
        Tcp { flags: "A", seq, ack: 1, window: 502, payload: 10, ..Tcp::default() },
    )
    .unwrap();
    let seg = parse(f.as_slice()).unwrap();
    let key = key_v4(&seg, direction(&seg));
    (f, key)
}

fn run(tracker: &Tracker, frame: &[u8]) {
    let p: &Xdp = tracker.ebpf.program(XDP_PROGRAM).and_then(|p| p.try_into().ok()).expect("loaded");
    let out = p.test_run(TestRunOptions { data_in: Some(frame), repeat: 1, ..Default::default() }).expect("BPF_PROG_TEST_RUN");
    assert_eq!(out.return_value, XDP_PASS);
}

fn id(key: &FlowKeyV4) -> FlowId {
    let pad = |a: [u8; 4]| {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&a);
        x
    };
    FlowId { family: FAMILY_IPV4, lo_addr: pad(key.lo_addr), hi_addr: pad(key.hi_addr), lo_port: key.lo_port, hi_port: key.hi_port }
}

/// Three segments of each of `FLOWS` flows picked up mid-stream: the first
/// places each (eight ways of each set, then the stash), the next two find
/// it wherever it went, and no flow is ever placed twice.
#[test]
fn the_kernel_finds_its_flows_in_first_sets_second_sets_and_the_stash() {
    require_root!();
    let (tracker, mut tables) = load();
    for round in 0..3u32 {
        for i in 0..FLOWS {
            run(&tracker, &segment(i, 1000 + 10 * round).0);
        }
    }
    let (mut first, mut second, mut stash) = (0, 0, 0);
    for i in 0..FLOWS {
        let (_, key) = segment(i, 0);
        let rec = tables.get_v4(&key).map(|(_, r)| r).unwrap_or_else(|| panic!("flow {i} lost"));
        assert_eq!(rec.packets[DIR_LO_TO_HI as usize], 3, "flow {i}: placed once, then found twice");
        match tables.established_table_v4().place_of(&key) {
            Where::Set(0, _) => first += 1,
            Where::Set(_, _) => second += 1,
            Where::Stash => stash += 1,
            Where::Absent => panic!("flow {i} found but in no place"),
        }
    }
    assert_eq!(first + second, 16, "every way of both sets taken before the stash");
    assert!(second > 0 && stash == FLOWS as u32 - 16, "first {first}, second {second}, stash {stash}");
    assert!(u32::from(FLOWS) <= STASH_MIN + 16, "the test stays within the stash");
    assert_eq!(tables.established_v4(), (16, u64::from(FLOWS) - 16), "no flow placed twice");
    assert_eq!(tables.established_table_v4().spill_counts(), (second as u64, stash as u64));
}

/// Flows the daemon frees through the mapping are gone for the kernel;
/// the counts that steer lookups go back to zero; a freed way takes the
/// next new flow.
#[test]
fn flows_the_daemon_frees_are_gone_and_their_ways_reused() {
    require_root!();
    let (tracker, mut tables) = load();
    for i in 0..FLOWS {
        run(&tracker, &segment(i, 1000).0);
    }
    for i in 0..FLOWS {
        let (_, key) = segment(i, 0);
        tables.remove(&id(&key));
        assert!(tables.get_v4(&key).is_none(), "flow {i} still found after its removal");
    }
    assert_eq!(tables.established_v4(), (0, 0));
    assert_eq!(tables.established_table_v4().spill_counts(), (0, 0), "no count left steering lookups past a first set");
    // A freed flow's next segment starts it anew, in a set.
    let (f, key) = segment(7, 2000);
    run(&tracker, &f);
    let rec = tables.get_v4(&key).map(|(_, r)| r).expect("picked up again");
    assert_eq!(rec.packets[DIR_LO_TO_HI as usize], 1, "a new record, not the freed one");
    assert!(matches!(tables.established_table_v4().place_of(&key), Where::Set(0, _)), "in its first set, now empty");
}
