//! Two CPUs stepping one flow at the same instant (issue 16, item 3): the
//! real XDP program, run with BPF_PROG_TEST_RUN from two threads pinned to
//! two different CPUs (an XDP test run executes on the caller's CPU), on
//! frames of one connection.
//!
//! - Case A, the same direction on both CPUs: the client's data and ACKs,
//!   each round one CPU's segment further in sequence and the other's
//!   further in acknowledgment, as a socket's data sent from the
//!   application's CPU and its ACKs sent from a softirq interleave.
//! - Case B, opposite directions: one CPU sends the client's data and ACKs,
//!   the other the server's, each acknowledging what the other has sent.
//!
//! The two threads step in lockstep rounds: thread 0 starts a round, both
//! step one segment at once, and once both are done thread 0 copies the
//! record: nothing is in flight then, so what each side has sent is known
//! exactly, and an update lost in the round is still lost when looked at.
//! Checked every round, in both cases:
//! - no field that only moves forward (`end`, `maxend`, `maxack`,
//!   `maxwin` of either side: see `FlowRecord`) went backwards: neither
//!   behind the previous round's copy, nor (`end`, `maxack`) behind what
//!   the steps done had put there;
//! - the RSTs Linux could send then are not judged droppable by the shared
//!   guard logic (`guard::drops` under `--drop-invalid-rst` of
//!   `state::classify_reset` on the copy): from each side, a RST at the end
//!   of everything it sent (its SND.NXT), and a RST|ACK towards it at the
//!   highest acknowledgment it sent (its RCV.NXT as the wire shows).
//!
//! Bounded: `CASE_TIME` and `MAX_STEPS` per case.

mod support;

use std::{
    net::SocketAddrV4,
    sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst},
    time::{Duration, Instant},
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use nix::{
    sched::{sched_getaffinity, sched_setaffinity, CpuSet},
    unistd::Pid,
};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::Tracker,
    tables::{FlowTables, Table},
    test_support::frames::{tcp_segment, Tcp},
};
use tcp_track_common::{
    flow::{direction, key_v4, FlowKeyV4, FlowRecord, Peer},
    guard::{drops, RST_POLICY_INVALID},
    parse::parse,
    seq::before,
    state::{classify_reset, STATE_ESTABLISHED},
};

const XDP_PASS: u32 = 2;
const SERVER: ([u8; 4], u16) = ([198, 18, 0, 2], 80);
/// ISNs low enough that nothing wraps: the test's own bookkeeping of what
/// was sent is then plain integer order.
const C_ISN: u32 = 1000;
const S_ISN: u32 = 5000;
/// Both SYNs offer the largest window scale and the largest window: a
/// window of about 1 GB each way, so neither side's data runs out of window.
const WSCALE: u8 = 14;
const WINDOW: u16 = 65535;
/// Payload per data segment.
const LEN: u32 = 100;
/// Per case: at most this long, at most this many segments in all.
const CASE_TIME: Duration = Duration::from_secs(3);
const MAX_STEPS: u64 = 2_000_000;
/// Offset of the TCP sequence number in the test's frames (Ethernet, IPv4
/// without options); the acknowledgment number follows it.
const SEQ_AT: usize = 14 + 20 + 4;

fn addr((ip, port): ([u8; 4], u16)) -> SocketAddrV4 {
    SocketAddrV4::new(ip.into(), port)
}

fn frame(from: ([u8; 4], u16), to: ([u8; 4], u16), flags: &str, seq: u32, ack: u32, wscale: Option<u8>, payload: u32) -> Vec<u8> {
    tcp_segment(addr(from), addr(to), [2, 0, 0, 0, 0, 2], Tcp { flags, seq, ack, window: WINDOW, wscale, payload: payload as usize }).unwrap()
}

/// The CPUs this process may run on.
fn cpus() -> Vec<usize> {
    let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
    (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect()
}

fn pin(cpu: usize) {
    let mut set = CpuSet::new();
    set.set(cpu).unwrap();
    sched_setaffinity(Pid::from_raw(0), &set).expect("sched_setaffinity");
}

struct Fixture {
    tracker: Tracker,
}

impl Fixture {
    fn xdp(&self, f: &[u8]) {
        let xdp: &Xdp = self.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
        let r = xdp.test_run(TestRunOptions { data_in: Some(f), ..Default::default() }).expect("BPF_PROG_TEST_RUN xdp");
        assert_eq!(r.return_value, XDP_PASS);
    }

    fn record(&self, key: &FlowKeyV4) -> FlowRecord {
        let tables = FlowTables::borrow(&self.tracker.ebpf, self.tracker.layout).unwrap();
        let (table, rec) = tables.get_v4(key).expect("the flow is tracked");
        assert_eq!(table, Table::Established);
        rec
    }
}

/// What the two sides have sent so far, as offsets from their ISNs (plain
/// integers: nothing wraps in this test), published by a thread once the
/// program has run on the segment.
#[derive(Default)]
struct Sent {
    /// Highest sequence number + length, per direction (index: 0 client, 1 server).
    end: [AtomicU64; 2],
    /// Highest acknowledgment, per direction.
    ack: [AtomicU64; 2],
}

/// The fields that only move forward, by name, of one side.
fn forward_fields(p: &Peer) -> [(&'static str, u32, bool); 4] {
    [("end", p.end, true), ("maxend", p.maxend, true), ("maxack", p.maxack, true), ("maxwin", p.maxwin, false)]
}

/// Per direction: the `end` and `maxack` the record has held at the
/// latest once every step published in `sent` was done (a step publishes
/// after the program ran on it).
fn held_at_least(sent: &Sent, isn: [u32; 2]) -> [(u32, u32); 2] {
    [0, 1].map(|d| (isn[d].wrapping_add(sent.end[d].load(SeqCst) as u32), isn[d ^ 1].wrapping_add(sent.ack[d].load(SeqCst) as u32)))
}

/// The fields of `rec` behind a value they held before (`held_at_least`),
/// as text.
fn behind(held: &[(u32, u32); 2], rec: &FlowRecord) -> Vec<String> {
    let mut out = Vec::new();
    for (d, &(end, maxack)) in held.iter().enumerate() {
        let p = &rec.peer[d];
        if before(p.end, end) {
            out.push(format!("peer[{d}].end {} behind {end}, which it held", p.end));
        }
        if before(p.maxack, maxack) {
            out.push(format!("peer[{d}].maxack {} behind {maxack}, which it held", p.maxack));
        }
    }
    out
}

/// The fields of `now` that are behind those of `then`, as text.
fn backwards(then: &FlowRecord, now: &FlowRecord) -> Vec<String> {
    let mut out = Vec::new();
    for d in 0..2 {
        for ((name, a, is_seq), (_, b, _)) in forward_fields(&then.peer[d]).into_iter().zip(forward_fields(&now.peer[d])) {
            let back = if is_seq { before(b, a) } else { b < a };
            if back {
                out.push(format!("peer[{d}].{name} {a} -> {b}"));
            }
        }
    }
    out
}

#[derive(Default, Debug)]
struct Figures {
    steps: u64,
    rounds: u64,
    exact_rsts: u64,
    droppable: u64,
    copies: u64,
    backwards: u64,
    examples: Vec<String>,
}

/// Wait until `cond`, spinning a little, then yielding (the machine may
/// have other work on these CPUs).
fn wait_until(cond: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !cond() {
        if spins < 1000 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// One case on the flow from `client`: `same_direction` picks case A.
///
/// Rounds in lockstep: thread 0 starts a round, both threads step one
/// segment each at once (on their two CPUs), thread 0 waits for thread 1's,
/// then copies the record and judges it: with nothing in flight, what each
/// side has sent is known exactly, and an update lost in the round stays
/// lost (nothing after it repairs it) until it is looked at.
fn run_case(fx: &Fixture, cpus: [usize; 2], client: ([u8; 4], u16), same_direction: bool) -> Figures {
    // The handshake, then (case A) one server segment far ahead, which the
    // client's ACKs then acknowledge bit by bit.
    let (c, s) = (C_ISN, S_ISN);
    fx.xdp(&frame(client, SERVER, "S", c, 0, Some(WSCALE), 0));
    fx.xdp(&frame(SERVER, client, "SA", s, c + 1, Some(WSCALE), 0));
    fx.xdp(&frame(client, SERVER, "A", c + 1, s + 1, None, 0));
    let sent = Sent::default();
    for d in 0..2 {
        sent.end[d].store(1, SeqCst);
        sent.ack[d].store(1, SeqCst);
    }
    let ahead = 500_000_000u64;
    if same_direction {
        fx.xdp(&frame(SERVER, client, "A", s + 1 + ahead as u32, c + 1, None, LEN));
        sent.end[1].store(1 + ahead + LEN as u64, SeqCst);
    }
    let key = {
        let seg = parse(frame(client, SERVER, "A", 0, 0, None, 0).as_slice()).unwrap();
        key_v4(&seg, direction(&seg))
    };
    assert_eq!(fx.record(&key).state, STATE_ESTABLISHED);

    let isn = [c, s];
    let ends = [client, SERVER];
    // The RSTs judged each round, from side d (their numbers set then).
    let rst = [0, 1].map(|d| parse(frame(ends[d], ends[d ^ 1], "R", 0, 0, None, 0).as_slice()).unwrap());
    let rst_ack = [0, 1].map(|d| parse(frame(ends[d], ends[d ^ 1], "RA", 0, 0, None, 0).as_slice()).unwrap());
    let (round, done, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let started = Instant::now();

    let step = |t: usize, r: u64, templates: &mut [Vec<u8>; 2]| {
        // Sender direction d (0 client, 1 server), and its segment's
        // sequence and acknowledgment offsets. Case A: thread t's segment is
        // the further one in sequence in every other round, and in
        // acknowledgment in the rounds between.
        let (d, seq, ack) = if same_direction {
            let k = (t as u64) ^ (r & 1);
            let seq = 1 + (2 * r + k) * LEN as u64;
            let ack = (1 + (2 * r + (k ^ 1)) * LEN as u64).min(sent.end[1].load(SeqCst));
            (0, seq, ack)
        } else {
            (t, 1 + r * LEN as u64, sent.end[t ^ 1].load(SeqCst))
        };
        let f = &mut templates[d];
        f[SEQ_AT..SEQ_AT + 4].copy_from_slice(&isn[d].wrapping_add(seq as u32).to_be_bytes());
        f[SEQ_AT + 4..SEQ_AT + 8].copy_from_slice(&isn[d ^ 1].wrapping_add(ack as u32).to_be_bytes());
        let xdp: &Xdp = fx.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
        let out = xdp.test_run(TestRunOptions { data_in: Some(f), ..Default::default() }).expect("BPF_PROG_TEST_RUN xdp");
        assert_eq!(out.return_value, XDP_PASS);
        (d, seq + LEN as u64, ack)
    };
    // Each direction's data segment, its sequence and acknowledgment
    // numbers patched in place (XDP verifies no checksum of data or ACKs:
    // `track::verified`).
    let templates = || [0, 1].map(|d| frame(ends[d], ends[d ^ 1], "A", 0, 0, None, LEN));

    std::thread::scope(|scope| {
        let (round, done, stop, step, sent) = (&round, &done, &stop, &step, &sent);
        scope.spawn(move || {
            pin(cpus[1]);
            let mut templates = templates();
            let mut r = 0;
            loop {
                wait_until(|| round.load(SeqCst) > r || stop.load(SeqCst));
                if stop.load(SeqCst) {
                    break;
                }
                r += 1;
                let result = step(1, r, &mut templates);
                let (d, end, ack) = result;
                sent.end[d].fetch_max(end, SeqCst);
                sent.ack[d].fetch_max(ack, SeqCst);
                done.store(r, SeqCst);
            }
        });

        pin(cpus[0]);
        let mut templates = templates();
        let mut fig = Figures::default();
        let mut last: Option<FlowRecord> = None;
        let mut r = 0;
        while started.elapsed() < CASE_TIME && fig.steps < MAX_STEPS {
            r += 1;
            round.store(r, SeqCst);
            let (d, end, ack) = step(0, r, &mut templates);
            sent.end[d].fetch_max(end, SeqCst);
            sent.ack[d].fetch_max(ack, SeqCst);
            wait_until(|| done.load(SeqCst) == r);
            fig.steps += 2;

            // Both steps done: the record must hold at least what they put
            // there, and be behind nothing it held before.
            let held = held_at_least(sent, isn);
            let rec = fx.record(&key);
            fig.copies += 1;
            let mut back = behind(&held, &rec);
            if let Some(then) = last {
                back.extend(backwards(&then, &rec));
            }
            if !back.is_empty() {
                fig.backwards += 1;
                if fig.examples.len() < 3 {
                    fig.examples.push(format!("round {r}: {}", back.join(", ")));
                }
            }
            last = Some(rec);
            // From each side d, a RST at its SND.NXT (all it sent), and
            // towards it a RST|ACK at its RCV.NXT (the highest
            // acknowledgment it sent): what Linux sends on abort.
            for d in 0..2usize {
                let (snd_nxt, rcv_nxt) = held[d];
                let mut from = rst[d];
                from.seq = snd_nxt;
                let mut to = rst_ack[d ^ 1];
                to.seq = rcv_nxt;
                to.ack = snd_nxt;
                for (what, seg, dir) in [("RST from", from, direction(&from)), ("RST|ACK to", to, direction(&to))] {
                    let class = classify_reset(&rec, &seg, dir);
                    fig.exact_rsts += 1;
                    if drops(RST_POLICY_INVALID, class) {
                        fig.droppable += 1;
                        if fig.examples.len() < 6 {
                            fig.examples.push(format!("round {r}: {what} side {d} at {} judged class {class}; record {:?}", seg.seq, rec.peer));
                        }
                    }
                }
            }
        }
        stop.store(true, SeqCst);
        fig.rounds = r;
        fig
    })
}

#[test]
fn one_flow_stepped_on_two_cpus_never_goes_backwards() {
    require_root!();
    let cpus = cpus();
    if cpus.len() < 2 {
        eprintln!("\n*** SKIPPED {}: needs 2 CPUs to run on, this process may use {} ***\n", module_path!(), cpus.len());
        return;
    }
    let fx = Fixture { tracker: Tracker::load_with_policy(BpfLog::Off, RstPolicy::Observe).expect("loading the kernel programs") };
    let pair = [cpus[0], cpus[1]];
    let a = run_case(&fx, pair, ([198, 18, 0, 1], 40001), true);
    let b = run_case(&fx, pair, ([198, 18, 0, 1], 40002), false);
    for (name, f) in [("A, same direction", &a), ("B, opposite directions", &b)] {
        eprintln!(
            "case {name} (CPUs {pair:?}): {} steps in {} rounds: {} of {} exact RSTs judged droppable; {} of {} record copies had a field behind a value it held before",
            f.steps, f.rounds, f.droppable, f.exact_rsts, f.backwards, f.copies
        );
        for e in &f.examples {
            eprintln!("  {e}");
        }
    }
    for (name, f) in [("A, same direction", &a), ("B, opposite directions", &b)] {
        assert!(f.rounds >= 1_000, "case {name}: too little ran to judge ({f:?})");
        assert_eq!(f.droppable, 0, "case {name}: exact RSTs judged droppable");
        assert_eq!(f.backwards, 0, "case {name}: fields went backwards");
    }
}
