//! Judging like the endpoints (issue 17), in the real XDP and TC programs
//! run with BPF_PROG_TEST_RUN under the strictest RST policy
//! (`drop-invalid`): after every frame the kernel's record must equal the
//! host state machine's, and the events the programs put in the ring buffer
//! must carry the class and states the endpoints would agree with.
//!
//! Each test loads its own copy of the object, so its maps are its own.

mod support;

use std::net::SocketAddrV4;

use aya::{
    maps::{MapData, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::Tracker,
    test_support::frames::{tcp_segment, Tcp},
    tables::{FlowTables, Table},
};
use tcp_track_common::{
    event::{FlowEvent, DETAIL_DROP_JUSTIFIED, EVENT_FLOW_NEW, EVENT_HANDSHAKE_RETRANS, EVENT_RST},
    flow::{direction, initiator_of, key_v4, note_dropped_rst, FlowRecord},
    parse::parse,
    state::{
        step, RESET_DATA_AFTER_CLOSE, RESET_IN_WINDOW, RESET_STATELESS_PEER, RESET_UNACCEPTABLE_ACK, STATE_CLOSE,
        STATE_CLOSE_WAIT, STATE_ESTABLISHED, STATE_NONE, STATE_SYN_SENT,
    },
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const C: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 1), 40000);
const S: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 0, 2), 80);
const CISN: u32 = 1000;
const SISN: u32 = 5000;

/// Which program a frame goes through: XDP (arriving) or TC (leaving).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Hook {
    Xdp,
    Tc,
}

/// A segment from `from` to the other endpoint, with correct checksums.
fn seg(from: SocketAddrV4, flags: &str, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
    let to = if from == C { S } else { C };
    tcp_segment(from, to, [2, 0, 0, 0, 0, 2], Tcp { flags, seq, ack, window: 502, wscale: None, payload }).unwrap()
}

struct Judge {
    tracker: Tracker,
    events: RingBuf<MapData>,
    /// The host state machine fed the same frames.
    host: Option<FlowRecord>,
}

impl Judge {
    fn new() -> Judge {
        let mut tracker = Tracker::load_with_policy(BpfLog::Off, RstPolicy::DropInvalid).expect("loading the kernel programs");
        let events = RingBuf::try_from(tracker.ebpf.take_map("EVENTS").expect("the EVENTS ring buffer")).unwrap();
        Judge { tracker, events, host: None }
    }

    /// Run one frame through `hook`; return the verdict after checking that
    /// the kernel's record is the host's (a dropped frame changes neither).
    fn run(&mut self, hook: Hook, frame: &[u8]) -> u32 {
        let opts = TestRunOptions { data_in: Some(frame), ..Default::default() };
        let verdict = match hook {
            Hook::Xdp => {
                let p: &Xdp = self.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
                p.test_run(opts).expect("BPF_PROG_TEST_RUN xdp").return_value
            }
            Hook::Tc => {
                let p: &SchedClassifier = self.tracker.ebpf.program("tcp_track_tc_egress").unwrap().try_into().unwrap();
                p.test_run(opts).expect("BPF_PROG_TEST_RUN tc").return_value
            }
        };
        // A frame XDP dropped was not stepped, only counted on its flow:
        // the same for the host's copy.
        if hook == Hook::Xdp && verdict == XDP_DROP {
            if let Some(rec) = self.host.as_mut() {
                note_dropped_rst(rec);
            }
        } else {
            let s = parse(frame).expect("test frames are well formed");
            let dir = direction(&s);
            let mut rec = self.host.unwrap_or_else(|| FlowRecord { initiator: initiator_of(&s, dir).0, ..FlowRecord::default() });
            let out = step(&mut rec, &s, dir, 0, false);
            if out.new_state != STATE_NONE || self.host.is_some() {
                self.host = Some(rec);
            }
        }
        assert_eq!(self.record().map(|r| r.without_clock()), self.host.map(|r| r.without_clock()), "the kernel's record differs from the host's");
        verdict
    }

    /// Run a frame that must pass.
    fn pass(&mut self, hook: Hook, frame: &[u8]) {
        let v = self.run(hook, frame);
        assert!(v == XDP_PASS || (hook == Hook::Tc && v == u32::MAX), "verdict {v} for {hook:?}");
    }

    fn find(&self) -> Option<(Table, FlowRecord)> {
        let f = seg(C, "A", 0, 0, 0);
        let s = parse(f.as_slice()).unwrap();
        FlowTables::borrow(&self.tracker.ebpf, self.tracker.layout).unwrap().get_v4(&key_v4(&s, direction(&s)))
    }

    fn record(&self) -> Option<FlowRecord> {
        self.find().map(|(_, r)| r)
    }

    /// Every event emitted since the last call, but connection records
    /// (`EVENT_CONN_END`, whose parity `prog_test_run` checks): read from
    /// each record's first 72 bytes, as the daemon reads them.
    fn events(&mut self) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        while let Some(item) = self.events.next() {
            let ev: FlowEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]);
            if ev.kind != tcp_track_common::event::EVENT_CONN_END {
                out.push(ev);
            }
        }
        out
    }

    fn handshake(&mut self) {
        self.pass(Hook::Tc, &seg(C, "S", CISN, 0, 0));
        self.pass(Hook::Xdp, &seg(S, "SA", SISN, CISN + 1, 0));
        self.pass(Hook::Tc, &seg(C, "A", CISN + 1, SISN + 1, 0));
        assert_eq!(self.record().unwrap().state, STATE_ESTABLISHED);
        self.events();
    }
}

fn kinds(evs: &[FlowEvent]) -> Vec<u16> {
    evs.iter().map(|e| e.kind).collect()
}

/// Item 1: client SYN, the SYN-ACK unseen, then the client's ACK, data,
/// FIN and FIN again (as seen on the client host: TC egress). Nothing after
/// the SYN is an event, and the record's retransmission count stays 0.
#[test]
fn segments_rejected_in_syn_sent_are_not_syn_retransmissions() {
    require_root!();
    let mut j = Judge::new();
    j.pass(Hook::Tc, &seg(C, "S", CISN, 0, 0));
    for f in [
        seg(C, "A", CISN + 1, SISN + 1, 0),
        seg(C, "A", CISN + 1, SISN + 1, 100),
        seg(C, "FA", CISN + 101, SISN + 1, 0),
        seg(C, "FA", CISN + 101, SISN + 1, 0),
    ] {
        j.pass(Hook::Tc, &f);
    }
    let rec = j.record().unwrap();
    assert_eq!((rec.state, rec.peer[0].retrans, rec.peer[1].retrans), (STATE_SYN_SENT, 0, 0));
    assert_eq!(kinds(&j.events()), [EVENT_FLOW_NEW], "no handshake_retransmit for the repeated FIN");
    // A real retransmission of the SYN is still one.
    j.pass(Hook::Tc, &seg(C, "S", CISN, 0, 0));
    let evs = j.events();
    assert_eq!(kinds(&evs), [EVENT_HANDSHAKE_RETRANS]);
    assert_eq!(evs[0].retrans, 1);
}

/// Item 2: a bare ACK from the server side that does not acknowledge the
/// client's SYN; the client answers <SEQ=SEG.ACK><CTL=RST>. Passed by the
/// guard (seen arriving at XDP, as on the server side), classed
/// unacceptable_ack, and the flow stays in SYN_SENT, in the half-open table.
#[test]
fn reset_answering_an_unacceptable_ack_passes_and_keeps_syn_sent() {
    require_root!();
    let mut j = Judge::new();
    j.pass(Hook::Xdp, &seg(C, "S", CISN, 0, 0));
    j.pass(Hook::Tc, &seg(S, "A", 300, 7777, 0));
    j.events();
    j.pass(Hook::Xdp, &seg(C, "R", 7777, 0, 0));
    let evs = j.events();
    assert_eq!(kinds(&evs), [EVENT_RST]);
    let e = evs[0];
    assert_eq!((e.reset, e.old_state, e.new_state), (RESET_UNACCEPTABLE_ACK, STATE_SYN_SENT, STATE_SYN_SENT));
    assert_eq!(e.detail & DETAIL_DROP_JUSTIFIED, 0);
    assert_eq!(j.find().map(|(t, r)| (t, r.state)), Some((Table::HalfOpen, STATE_SYN_SENT)));
    // The client retransmits its SYN; the handshake completes.
    j.pass(Hook::Xdp, &seg(C, "S", CISN, 0, 0));
    j.pass(Hook::Tc, &seg(S, "SA", SISN, CISN + 1, 0));
    j.pass(Hook::Xdp, &seg(C, "A", CISN + 1, SISN + 1, 0));
    assert_eq!(j.find().map(|(t, r)| (t, r.state)), Some((Table::Established, STATE_ESTABLISHED)));
}

/// Item 3: the server closed (FIN acknowledged), the client sends data,
/// and the server's stack answers RST seq = that data's ACK, no ACK flag.
/// Passed, classed data_after_close (not stateless_peer), flow closed.
#[test]
fn reset_answering_data_after_close_passes_and_is_no_stateless_peer() {
    require_root!();
    let mut j = Judge::new();
    j.handshake();
    j.pass(Hook::Xdp, &seg(S, "FA", SISN + 1, CISN + 1, 0));
    j.pass(Hook::Tc, &seg(C, "A", CISN + 1, SISN + 2, 0));
    assert_eq!(j.record().unwrap().state, STATE_CLOSE_WAIT);
    j.pass(Hook::Tc, &seg(C, "A", CISN + 1, SISN + 2, 100));
    j.events();
    j.pass(Hook::Xdp, &seg(S, "R", SISN + 2, 0, 0));
    let evs = j.events();
    assert_eq!(kinds(&evs), [EVENT_RST]);
    assert_eq!((evs[0].reset, evs[0].new_state), (RESET_DATA_AFTER_CLOSE, STATE_CLOSE));
    assert_ne!(evs[0].reset, RESET_STATELESS_PEER);
}

/// The control: the same RST from a server that never sent its FIN is a
/// stateless peer's.
#[test]
fn the_same_reset_without_a_fin_is_a_stateless_peer() {
    require_root!();
    let mut j = Judge::new();
    j.handshake();
    j.pass(Hook::Tc, &seg(C, "A", CISN + 1, SISN + 1, 100));
    j.events();
    j.pass(Hook::Xdp, &seg(S, "R", SISN + 1, 0, 0));
    let evs = j.events();
    assert_eq!((evs[0].reset, evs[0].new_state), (RESET_STATELESS_PEER, STATE_CLOSE));
}

/// A rejected segment cannot start an RST train: a blind attacker's ACK
/// (wrong acknowledgment) followed by his RST at its sequence number is
/// dropped, and the connection stays established.
#[test]
fn a_forged_ack_cannot_make_a_forged_reset_exact() {
    require_root!();
    let mut j = Judge::new();
    j.handshake();
    // Inside the client's window (502 bytes, unscaled) but not exact.
    let forged = SISN + 1 + 300;
    j.pass(Hook::Xdp, &seg(S, "A", forged, 0xdead_0000, 0));
    assert_eq!(j.run(Hook::Xdp, &seg(S, "R", forged, 0, 0)), XDP_DROP);
    let evs = j.events();
    assert_eq!((evs.last().unwrap().kind, evs.last().unwrap().reset), (EVENT_RST, RESET_IN_WINDOW));
    assert_eq!(j.record().unwrap().state, STATE_ESTABLISHED);
}
