//! The established table of sets and stash (`tcp_track_common::estab`)
//! as the kernel programs fill it and the daemon reads and frees it
//! through its mapping (`tcp_track::established`), with BPF_PROG_TEST_RUN:
//! a table of two sets (sixteen ways) and a stash of 64, so that flows
//! land in first sets, second sets and the stash.

mod support;

use std::{
    sync::atomic::{AtomicBool, AtomicU16, Ordering::SeqCst},
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use nix::{
    sched::{sched_getaffinity, sched_setaffinity, CpuSet},
    unistd::Pid,
};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::{Tracker, XDP_PROGRAM},
    report::{FlowId, FlowLookup},
    tables::{FlowTables, KernelFlows},
    test_support::frames::{tcp_segment, Tcp},
};
use tcp_track_common::{
    estab::{candidates, Where, STASH_MIN},
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

/// `FLOWS` flows in the order the tests send them: sixteen whose first
/// set is set 0 and second set 1 (the table's hash seed is the loader's
/// random one, read back), which fill set 0 and spill into set 1, then
/// any: both sets full, the stash's.
fn flows(seed: u32) -> Vec<u16> {
    let spill: Vec<u16> = (0..1000).filter(|&i| candidates(&segment(i, 0).1, seed, 1) == (0, 1)).take(16).collect();
    assert_eq!(spill.len(), 16, "1000 keys with sixteen of them placed (0, 1)");
    let rest = (1000..).take(FLOWS as usize - 16);
    spill.into_iter().chain(rest).collect()
}

/// Three segments of each of `FLOWS` flows picked up mid-stream: the first
/// places each (eight ways of its first set, then of its second, then the
/// stash), the next two find it wherever it went, and no flow is ever
/// placed twice.
#[test]
fn the_kernel_finds_its_flows_in_first_sets_second_sets_and_the_stash() {
    require_root!();
    let (tracker, mut tables) = load();
    let order = flows(tracker.layout.seed);
    for round in 0..3u32 {
        for &i in &order {
            run(&tracker, &segment(i, 1000 + 10 * round).0);
        }
    }
    let (mut first, mut second, mut stash) = (0, 0, 0);
    for &i in &order {
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
    assert_eq!((first, second, stash), (8, 8, FLOWS - 16), "set 0, then set 1 for what set 0 spilled, then the stash");
    assert!(u32::from(FLOWS) <= STASH_MIN + 16, "the test stays within the stash");
    assert_eq!(tables.established_v4(), (16, u64::from(FLOWS) - 16), "no flow placed twice");
    assert_eq!(tables.established_table_v4().spill_counts().0, 8, "set 0 counts what it spilled");
}

/// Flows the daemon frees through the mapping are gone for the kernel;
/// the counts that steer lookups go back to zero; a freed way takes the
/// next new flow.
#[test]
fn flows_the_daemon_frees_are_gone_and_their_ways_reused() {
    require_root!();
    let (tracker, mut tables) = load();
    let order = flows(tracker.layout.seed);
    for &i in &order {
        run(&tracker, &segment(i, 1000).0);
    }
    assert_eq!(tables.established_table_v4().spill_counts(), (8, u64::from(FLOWS) - 16));
    for &i in &order {
        let (_, key) = segment(i, 0);
        tables.remove(&id(&key));
        assert!(tables.get_v4(&key).is_none(), "flow {i} still found after its removal");
    }
    assert_eq!(tables.established_v4(), (0, 0));
    assert_eq!(tables.established_table_v4().spill_counts(), (0, 0), "no count left steering lookups past a first set");
    // A freed flow's next segment starts it anew, in a set.
    let (f, key) = segment(order[3], 2000);
    run(&tracker, &f);
    let rec = tables.get_v4(&key).map(|(_, r)| r).expect("picked up again");
    assert_eq!(rec.packets[DIR_LO_TO_HI as usize], 1, "a new record, not the freed one");
    assert!(matches!(tables.established_table_v4().place_of(&key), Where::Set(0, _)), "in its first set, now empty");
}

/// Two CPUs meeting a new flow at the same instant, a segment each way
/// (the client's on one, the server's answer on the other), as an
/// ingress and an egress hook can: each may place the flow, and the
/// duplicate check leaves at most one (`estab`'s notes). Rounds in
/// lockstep, a new flow each, bounded by `ROUNDS` and 20 seconds.
#[test]
fn two_cpus_placing_one_flow_leave_it_once() {
    require_root!();
    let cpus: Vec<usize> = {
        let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect()
    };
    if cpus.len() < 2 {
        eprintln!("\n*** SKIPPED two_cpus_placing_one_flow_leave_it_once: needs two CPUs, this process may run on {} ***\n", cpus.len());
        return;
    }
    const ROUNDS: u16 = 3000;
    let (tracker, tables) = {
        let mut tracker = Tracker::load_sized(BpfLog::Off, RstPolicy::Observe, 8192, 64).expect("loading the kernel programs");
        let tables = FlowTables::take(&mut tracker.ebpf, tracker.layout).expect("the tables map");
        (tracker, tables)
    };
    let answer = |i: u16| {
        tcp_segment(
            "198.18.0.2:80".parse().unwrap(),
            format!("198.18.0.1:{}", 40_000 + i).parse().unwrap(),
            [2, 0, 0, 0, 0, 1],
            Tcp { flags: "A", seq: 5000, ack: 1010, window: 502, payload: 10, ..Tcp::default() },
        )
        .unwrap()
    };
    let barrier = std::sync::Barrier::new(2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let (rounds, stop) = (AtomicU16::new(0), AtomicBool::new(false));
    std::thread::scope(|s| {
        for (t, &cpu) in cpus.iter().take(2).enumerate() {
            let (tracker, barrier, rounds, stop, answer) = (&tracker, &barrier, &rounds, &stop, &answer);
            s.spawn(move || {
                let mut set = CpuSet::new();
                set.set(cpu).unwrap();
                sched_setaffinity(Pid::from_raw(0), &set).expect("pinning the thread");
                for i in 0..ROUNDS {
                    let f = if t == 0 { segment(i, 1000).0 } else { answer(i) };
                    barrier.wait();
                    run(tracker, &f);
                    // Thread 0 decides whether this round is the last
                    // before both pass the barrier: both stop together.
                    if t == 0 {
                        rounds.store(i + 1, SeqCst);
                        stop.store(Instant::now() > deadline, SeqCst);
                    }
                    barrier.wait();
                    if stop.load(SeqCst) {
                        break;
                    }
                }
            });
        }
    });
    let done = rounds.load(SeqCst);
    let mut seen = std::collections::HashMap::new();
    tables.open_flows().into_iter().for_each(|(id, _)| *seen.entry(id).or_insert(0) += 1);
    let twice: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "{} of {done} flows placed twice: {:?}", twice.len(), twice.iter().take(3).collect::<Vec<_>>());
    assert!(seen.len() as u16 <= done && seen.len() as u16 + done / 10 >= done, "{} flows held after {done} rounds", seen.len());
    for i in 0..done {
        let (_, key) = segment(i, 0);
        if let Some((_, rec)) = tables.get_v4(&key) {
            assert!(rec.packets[0] + rec.packets[1] <= 2, "flow {i}: {:?} segments counted of 2", rec.packets);
        }
    }
}
