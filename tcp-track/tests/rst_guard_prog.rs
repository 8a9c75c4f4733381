//! The RST drop rules, one by one, in the real XDP program run with
//! BPF_PROG_TEST_RUN: the verdict (XDP_DROP or XDP_PASS) and what the
//! flow record looks like afterwards. The host's tracker
//! (`tcp_track_common::host`), fed the same frames under the same policy,
//! must reach the same verdict and record every time.

mod support;

use std::net::SocketAddrV4;

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun, TestRunOptions, Xdp},
};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::Tracker,
    test_support::frames::{tcp_segment, Tcp},
    tables::FlowTables,
};
use std::cell::RefCell;

use tcp_track_common::{
    counters,
    event::HOOK_XDP,
    flow::{direction, key_v4, FlowRecord},
    host::HostTracker,
    parse::parse,
    state::{STATE_CLOSE, STATE_ESTABLISHED, STATE_SYN_SENT, STATE_TIME_WAIT},
    track::Observed,
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const C: ([u8; 4], u16) = ([198, 18, 0, 1], 40000);
const S: ([u8; 4], u16) = ([198, 18, 0, 2], 80);

/// A segment from `from` to `to`; `window` as sent, `wscale` on SYNs.
#[allow(clippy::too_many_arguments)]
fn seg(from: ([u8; 4], u16), to: ([u8; 4], u16), flags: &str, seq: u32, ack: u32, window: u16, wscale: Option<u8>, len: usize) -> Vec<u8> {
    let addr = |(ip, port): ([u8; 4], u16)| SocketAddrV4::new(ip.into(), port);
    tcp_segment(addr(from), addr(to), [2, 0, 0, 0, 0, 2], Tcp { flags, seq, ack, window, wscale, payload: len }).unwrap()
}

struct Guard {
    tracker: Tracker,
    /// The host's tracker under the same policy, and its clock.
    host: RefCell<(HostTracker, u64)>,
}

impl Guard {
    fn new(policy: RstPolicy) -> Guard {
        let tracker = Tracker::load_with_policy(BpfLog::Off, policy).expect("loading the kernel programs");
        let mut host = HostTracker::new(1024, 1024, tracker.layout.seed);
        host.set_rst_policy(policy.kernel_value());
        Guard { tracker, host: RefCell::new((host, 1 << 30)) }
    }

    fn run(&self, frame: &[u8]) -> u32 {
        let xdp: &Xdp = self.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
        let verdict = xdp.test_run(TestRunOptions { data_in: Some(frame), ..Default::default() }).unwrap().return_value;
        let host = {
            let (host, now) = &mut *self.host.borrow_mut();
            *now += 1 << 21;
            host.segment(frame, 1, HOOK_XDP, *now, &mut Vec::new())
        };
        assert_eq!(verdict == XDP_DROP, host == Observed::Dropped, "the host tracker judged otherwise ({host:?})");
        assert_eq!(self.try_record().map(|r| r.without_clock()), self.host_record().map(|r| r.without_clock()), "the host tracker's record differs");
        verdict
    }

    /// The flow's record, from the established or the half-open table.
    fn try_record(&self) -> Option<FlowRecord> {
        let tables = FlowTables::borrow(&self.tracker.ebpf, self.tracker.layout).unwrap();
        tables.get_v4(&flow_key()).map(|(_, rec)| rec)
    }

    fn host_record(&self) -> Option<FlowRecord> {
        self.host.borrow().0.get_v4(&flow_key()).map(|(_, rec)| rec)
    }

    fn record(&self) -> FlowRecord {
        self.try_record().expect("the flow is tracked")
    }

    fn counter(&self, i: u32) -> u64 {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.tracker.ebpf.map("COUNTERS").unwrap()).unwrap();
        let kernel = map.get(&i, 0).unwrap().iter().sum();
        assert_eq!(kernel, self.host.borrow().0.counters()[i as usize], "counter {i}: the host tracker counted otherwise");
        kernel
    }

    /// Mark the interface BPF_PROG_TEST_RUN runs on (the namespace's
    /// loopback, ifindex 1) liberal, in the kernel and on the host.
    fn liberal(&mut self) {
        let lo = tcp_track::preflight::Interface { name: "lo".into(), index: 1, loopback: true };
        self.tracker.set_liberal(&lo).expect("marking lo liberal");
        self.host.borrow_mut().0.set_liberal(1, true);
    }

    /// Handshake with ISNs `c`/`s`, both offering window scale `ws`; the
    /// client then advertises `cwin` (scaled by `ws`).
    fn established(&self, c: u32, s: u32, ws: Option<u8>, cwin: u16) {
        for f in [
            seg(C, S, "S", c, 0, 64240, ws, 0),
            seg(S, C, "SA", s, c.wrapping_add(1), 65160, ws, 0),
            seg(C, S, "A", c.wrapping_add(1), s.wrapping_add(1), cwin, None, 0),
        ] {
            assert_eq!(self.run(&f), XDP_PASS);
        }
        assert_eq!(self.record().state, STATE_ESTABLISHED);
    }
}

/// The key of the client's connection to the server.
fn flow_key() -> tcp_track_common::flow::FlowKeyV4 {
    let f = seg(C, S, "A", 0, 0, 0, None, 0);
    let s = parse(f.as_slice()).unwrap();
    key_v4(&s, direction(&s))
}

/// RSTs from the server to the client; the client expects `s + 1` next.
fn rst_to_client(seq: u32) -> Vec<u8> {
    seg(S, C, "R", seq, 0, 0, None, 0)
}

#[test]
fn out_of_window_rst_is_dropped_and_changes_nothing() {
    require_root!();
    for policy in [RstPolicy::DropOutOfWindow, RstPolicy::DropInvalid] {
        let g = Guard::new(policy);
        g.established(1000, 5000, Some(7), 502);
        let before = g.record();
        assert_eq!(g.run(&rst_to_client(5001u32.wrapping_add(0x4000_0000))), XDP_DROP, "{policy:?}");
        let after = g.record();
        assert_eq!((after.state, after.peer), (before.state, before.peer), "a dropped RST leaves the record alone");
        assert_eq!((after.packets, after.rst_dropped), (before.packets, before.rst_dropped + 1), "and is counted as dropped, not as a packet");
        assert_eq!(g.counter(counters::RST_DROPPED), 1);
    }
}

#[test]
fn in_window_inexact_rst_is_dropped_only_by_drop_invalid() {
    require_root!();
    // The client's window is 502 << 7 = 64256: 60000 bytes in is inside it.
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(1000, 5000, Some(7), 502);
    assert_eq!(g.run(&rst_to_client(5001 + 60000)), XDP_DROP);
    assert_eq!(g.record().state, STATE_ESTABLISHED);
    let g = Guard::new(RstPolicy::DropOutOfWindow);
    g.established(1000, 5000, Some(7), 502);
    assert_eq!(g.run(&rst_to_client(5001 + 60000)), XDP_PASS, "inside the window is not out of it");
    assert_eq!(g.record().state, STATE_ESTABLISHED, "the receiver answers with a challenge ACK and keeps the connection");
    assert_eq!(g.run(&rst_to_client(5001 + 70000)), XDP_DROP, "beyond 64256 is out of the window");
}

#[test]
fn window_scaling_decides_what_is_inside() {
    require_root!();
    // Without scaling the same window field is 502 bytes: 60000 in is outside.
    let g = Guard::new(RstPolicy::DropOutOfWindow);
    g.established(1000, 5000, None, 502);
    assert_eq!(g.run(&rst_to_client(5001 + 60000)), XDP_DROP);
}

#[test]
fn exact_rst_passes_and_closes() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(1000, 5000, Some(7), 502);
    assert_eq!(g.run(&rst_to_client(5001)), XDP_PASS);
    assert_eq!(g.record().state, STATE_CLOSE);
}

#[test]
fn sequence_numbers_wrap() {
    require_root!();
    let (c, s) = (u32::MAX - 5, u32::MAX - 3);
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(c, s, Some(7), 502);
    // Two bytes past 2^32 on the server's side: 2^32 - 3 + 1 = -2 ... +100 wraps.
    assert_eq!(g.run(&rst_to_client(s.wrapping_add(1).wrapping_add(100))), XDP_DROP, "in window across the wrap, inexact");
    assert_eq!(g.run(&rst_to_client(s.wrapping_add(1).wrapping_add(0x4000_0000))), XDP_DROP, "out of window across the wrap");
    assert_eq!(g.record().state, STATE_ESTABLISHED);
    assert_eq!(g.run(&rst_to_client(s.wrapping_add(1))), XDP_PASS, "exact across the wrap");
    assert_eq!(g.record().state, STATE_CLOSE);
}

#[test]
fn refusal_passes() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    assert_eq!(g.run(&seg(C, S, "S", 1000, 0, 64240, None, 0)), XDP_PASS);
    assert_eq!(g.record().state, STATE_SYN_SENT);
    assert_eq!(g.run(&seg(S, C, "RA", 0, 1001, 0, None, 0)), XDP_PASS, "RST|ACK seq 0 ack ISN+1: connection refused");
    assert!(g.try_record().is_none(), "a refused attempt leaves the half-open table and is forgotten");
}

#[test]
fn stateless_peer_rst_passes() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(1000, 5000, Some(7), 502);
    // The client sends data; the server, which lost the connection, answers
    // RST with seq = the ACK it received and no ACK flag.
    assert_eq!(g.run(&seg(C, S, "A", 1001, 5001, 502, None, 10)), XDP_PASS);
    assert_eq!(g.run(&rst_to_client(5001)), XDP_PASS);
    assert_eq!(g.record().state, STATE_CLOSE);
}

#[test]
fn time_wait_assassination_is_dropped_and_time_wait_stays() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(1000, 5000, Some(7), 502);
    for f in [
        seg(C, S, "FA", 1001, 5001, 502, None, 0),
        seg(S, C, "FA", 5001, 1002, 510, None, 0),
        seg(C, S, "A", 1002, 5002, 502, None, 0),
    ] {
        assert_eq!(g.run(&f), XDP_PASS);
    }
    assert_eq!(g.record().state, STATE_TIME_WAIT);
    assert_eq!(g.run(&rst_to_client(5002)), XDP_DROP, "RFC 1337: even an exact RST must not end TIME-WAIT");
    assert_eq!(g.record().state, STATE_TIME_WAIT);
    let g = Guard::new(RstPolicy::DropOutOfWindow);
    g.established(1000, 5000, Some(7), 502);
    for f in [seg(C, S, "FA", 1001, 5001, 502, None, 0), seg(S, C, "FA", 5001, 1002, 510, None, 0), seg(C, S, "A", 1002, 5002, 502, None, 0)] {
        g.run(&f);
    }
    assert_eq!(g.run(&rst_to_client(5002)), XDP_PASS, "drop-out-of-window leaves TIME-WAIT to the endpoint");
}

#[test]
fn bad_checksum_rst_is_neither_dropped_nor_applied() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    g.established(1000, 5000, Some(7), 502);
    for seq in [5001u32, 5001 + 0x4000_0000] {
        let mut f = rst_to_client(seq);
        let at = 14 + 20 + 16;
        f[at] ^= 0x5a;
        assert_eq!(g.run(&f), XDP_PASS, "a corrupt RST is the stack's business");
        assert_eq!(g.record().state, STATE_ESTABLISHED, "and changes nothing");
    }
    assert_eq!(g.counter(counters::RST_BAD_CHECKSUM), 2);
    assert_eq!(g.counter(counters::RST_DROPPED), 0);
    // A header with options (24 bytes) is summed by the other path than a
    // bare 20-byte one: corrupt, it passes; intact and forged, it is dropped.
    let mut f = seg(S, C, "R", 5001 + 0x4000_0000, 0, 0, Some(0), 0);
    f[14 + 20 + 16] ^= 0x5a;
    assert_eq!(g.run(&f), XDP_PASS);
    assert_eq!(g.counter(counters::RST_BAD_CHECKSUM), 3);
    f[14 + 20 + 16] ^= 0x5a;
    assert_eq!(g.run(&f), XDP_DROP);
    assert_eq!(g.counter(counters::RST_DROPPED), 1);
}

#[test]
fn flows_with_unknown_windows_are_never_judged() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    // Picked up mid-stream: only the server has been seen.
    assert_eq!(g.run(&seg(S, C, "A", 5001, 1001, 510, None, 100)), XDP_PASS);
    assert_eq!(g.run(&rst_to_client(5001u32.wrapping_add(0x4000_0000))), XDP_PASS, "unjudged, like be_liberal");
    assert_eq!(g.record().state, STATE_CLOSE);
}

#[test]
fn observe_drops_nothing() {
    require_root!();
    let g = Guard::new(RstPolicy::Observe);
    g.established(1000, 5000, Some(7), 502);
    assert_eq!(g.run(&rst_to_client(5001u32.wrapping_add(0x4000_0000))), XDP_PASS);
    assert_eq!(g.run(&rst_to_client(5001 + 100)), XDP_PASS);
    assert_eq!(g.record().state, STATE_ESTABLISHED, "invalid RSTs change nothing, dropped or not");
}

// ---- issue 17 items 4-5, in the same harness ----

/// `f` with its TCP window field damaged: the checksum no longer matches.
fn corrupt(mut f: Vec<u8>) -> Vec<u8> {
    f[14 + 20 + 14] ^= 0x10;
    f
}

/// Corrupt SYNs, SYN-ACKs and FINs pass untouched, start and change
/// nothing, and are counted (`bad_checksum`), apart from corrupt RSTs.
#[test]
fn corrupt_control_segments_are_passed_and_not_tracked() {
    require_root!();
    let g = Guard::new(RstPolicy::DropInvalid);
    for i in 0..3 {
        assert_eq!(g.run(&corrupt(seg(C, S, "S", 1000 + i, 0, 64240, Some(7), 0))), XDP_PASS);
        assert_eq!(g.try_record(), None, "a corrupt SYN starts no flow");
    }
    assert_eq!((g.counter(counters::BAD_CHECKSUM), g.counter(counters::FLOWS_CREATED)), (3, 0));
    assert_eq!(g.run(&seg(C, S, "S", 1000, 0, 64240, Some(7), 0)), XDP_PASS);
    assert_eq!(g.record().state, STATE_SYN_SENT);
    let before = g.record();
    assert_eq!(g.run(&corrupt(seg(S, C, "SA", 5000, 1001, 65160, Some(7), 0))), XDP_PASS);
    assert_eq!(g.record(), before, "a corrupt SYN-ACK moves no handshake");
    assert_eq!(g.run(&seg(S, C, "SA", 5000, 1001, 65160, Some(7), 0)), XDP_PASS);
    assert_eq!(g.run(&seg(C, S, "A", 1001, 5001, 502, None, 0)), XDP_PASS);
    let est = g.record();
    assert_eq!(g.run(&corrupt(seg(S, C, "FA", 5001, 1001, 509, None, 0))), XDP_PASS);
    assert_eq!(g.record(), est, "a corrupt FIN closes nothing");
    assert_eq!((g.counter(counters::BAD_CHECKSUM), g.counter(counters::RST_BAD_CHECKSUM)), (5, 0));
}

/// Sequence A on a liberal interface: the client's SYN, then its ACK, data
/// and FIN, whose ACK field proves the SYN-ACK it never saw; on a strict
/// one the flow stays in SYN_SENT.
#[test]
fn liberal_interface_infers_the_unseen_synack() {
    require_root!();
    for liberal in [false, true] {
        let mut g = Guard::new(RstPolicy::DropInvalid);
        if liberal {
            g.liberal();
        }
        for f in [
            seg(C, S, "S", 1000, 0, 64240, Some(7), 0),
            seg(C, S, "A", 1001, 5001, 502, None, 0),
            seg(C, S, "PA", 1001, 5001, 502, None, 100),
            seg(C, S, "FA", 1101, 5001, 502, None, 0),
        ] {
            assert_eq!(g.run(&f), XDP_PASS);
        }
        let rec = g.record();
        let inferred = rec.info & tcp_track_common::flow::INFO_SYNACK_INFERRED != 0;
        let want = if liberal { (tcp_track_common::state::STATE_FIN_WAIT, true, "SH") } else { (STATE_SYN_SENT, false, "S0") };
        let conn = tcp_track_common::conn::conn_state_name(tcp_track_common::conn::conn_state(&rec));
        assert_eq!((rec.state, inferred, conn), want, "liberal={liberal}");
        assert_eq!(g.counter(counters::FLOWS_PROMOTED), liberal as u64);
    }
}

/// Sequence B: the capture point missed 300 MB of the client's data, then
/// both FINs. Liberal: closed (TIME_WAIT); strict: the segments past the
/// window are rejected and counted, the flow stays ESTABLISHED.
#[test]
fn fins_after_a_huge_gap_close_only_on_a_liberal_interface() {
    require_root!();
    for liberal in [false, true] {
        let mut g = Guard::new(RstPolicy::DropInvalid);
        if liberal {
            g.liberal();
        }
        g.established(1000, 5000, Some(7), 502);
        let gap = 1001u32 + (300 << 20);
        for f in [seg(C, S, "FA", gap, 5001, 502, None, 0), seg(S, C, "FA", 5001, gap + 1, 509, None, 0), seg(C, S, "A", gap + 1, 5002, 502, None, 0)] {
            assert_eq!(g.run(&f), XDP_PASS);
        }
        let want = if liberal { (STATE_TIME_WAIT, 0) } else { (STATE_ESTABLISHED, 3) };
        assert_eq!((g.record().state, g.counter(counters::OUT_OF_WINDOW)), want, "liberal={liberal}");
    }
}
