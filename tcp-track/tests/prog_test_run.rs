//! The real kernel programs, loaded and run with BPF_PROG_TEST_RUN on
//! crafted frames, next to the host's tracker (`tcp_track_common::host`:
//! the same table logic and state machine over tables in memory) fed the
//! same frames: after every frame the kernel must hold the flow in the same
//! table with the same record, and have the same counters and events; and
//! the kernel parser must agree with the host parser on every test vector.
//!
//! Each test loads its own copy of the object, so its maps are its own.

mod support;

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use etherparse::{PacketBuilder, TcpOptionElement};
use tcp_track::{
    config::{BpfLog, RstPolicy},
    loader::Tracker,
    tables::{FlowTables, Table},
    test_support::frames::linux_syn_options,
};
use tcp_track_common::{
    counters,
    event::{ConnEnd, FlowEvent, CONN_END_EVICTED, CONN_END_FIN, CONN_END_RESET, EVENT_CONN_END, HOOK_TC_EGRESS, HOOK_XDP},
    flow::{direction, key_v4, key_v6, FlowRecord},
    host::{self, HostTracker},
    parse::{parse, Segment, Skip},
    state,
    tcp::{ACK, FIN, PSH, RST, SYN},
    track::Observed,
};

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX; // -1

const CLIENT4: [u8; 4] = [198, 18, 0, 1];
const SERVER4: [u8; 4] = [198, 18, 0, 2];
const CLIENT6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const SERVER6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const CPORT: u16 = 40000;
const SPORT: u16 = 80;

#[derive(Clone, Copy, PartialEq)]
enum Family {
    V4,
    V6,
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Client,
    Server,
}

/// One TCP segment of the conversation, as the sender puts it on the wire.
fn frame(fam: Family, from: Side, flags: u8, seq: u32, ack: u32, payload: &[u8], wscale: Option<u8>) -> Vec<u8> {
    let (sp, dp) = if from == Side::Client { (CPORT, SPORT) } else { (SPORT, CPORT) };
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let ip = match (fam, from) {
        (Family::V4, Side::Client) => eth.ipv4(CLIENT4, SERVER4, 64),
        (Family::V4, Side::Server) => eth.ipv4(SERVER4, CLIENT4, 64),
        (Family::V6, Side::Client) => eth.ipv6(CLIENT6, SERVER6, 64),
        (Family::V6, Side::Server) => eth.ipv6(SERVER6, CLIENT6, 64),
    };
    let mut b = ip.tcp(sp, dp, seq, 1024);
    if flags & SYN != 0 {
        b = b.syn();
        let mut opts = vec![TcpOptionElement::MaximumSegmentSize(1460), TcpOptionElement::SelectiveAcknowledgementPermitted];
        if let Some(ws) = wscale {
            opts.push(TcpOptionElement::Noop);
            opts.push(TcpOptionElement::WindowScale(ws));
        }
        b = b.options(&opts).expect("options fit");
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).expect("frame");
    out
}

/// A whole connection: handshake, data both ways, FIN/ACK teardown with the
/// client closing first, then a RST towards the client in TIME_WAIT. ISNs
/// just below 2^32 so the sequence numbers wrap during the conversation.
fn conversation(fam: Family) -> Vec<(Side, Vec<u8>)> {
    let (c, s) = (u32::MAX - 2, u32::MAX - 1000);
    let w = Some(7);
    vec![
        (Side::Client, frame(fam, Side::Client, SYN, c, 0, &[], w)),
        (Side::Server, frame(fam, Side::Server, SYN | ACK, s, c.wrapping_add(1), &[], w)),
        (Side::Client, frame(fam, Side::Client, ACK, c.wrapping_add(1), s.wrapping_add(1), &[], None)),
        (Side::Client, frame(fam, Side::Client, ACK | PSH, c.wrapping_add(1), s.wrapping_add(1), &[7; 100], None)),
        (Side::Server, frame(fam, Side::Server, ACK | PSH, s.wrapping_add(1), c.wrapping_add(101), &[9; 1400], None)),
        (Side::Client, frame(fam, Side::Client, ACK, c.wrapping_add(101), s.wrapping_add(1401), &[], None)),
        (Side::Client, frame(fam, Side::Client, FIN | ACK, c.wrapping_add(101), s.wrapping_add(1401), &[], None)),
        (Side::Server, frame(fam, Side::Server, ACK, s.wrapping_add(1401), c.wrapping_add(102), &[], None)),
        (Side::Server, frame(fam, Side::Server, FIN | ACK, s.wrapping_add(1401), c.wrapping_add(102), &[], None)),
        (Side::Client, frame(fam, Side::Client, ACK, c.wrapping_add(102), s.wrapping_add(1402), &[], None)),
        // A RST towards the client, which is in TIME-WAIT, at an acceptable sequence number.
        (Side::Server, frame(fam, Side::Server, RST, s.wrapping_add(1402), 0, &[], None)),
    ]
}

/// Table sizes of the kernel's and the host's trackers (per family), unless a
/// test sizes them itself.
const MAX_FLOWS: u32 = 65536;
const MAX_HALF_OPEN: u32 = 16384;

struct Loaded {
    tracker: Tracker,
}

impl Loaded {
    fn new() -> Loaded {
        Loaded::sized(MAX_FLOWS, MAX_HALF_OPEN)
    }

    fn sized(max_flows: u32, max_half_open: u32) -> Loaded {
        Loaded { tracker: Tracker::load_sized(BpfLog::Off, RstPolicy::Observe, max_flows, max_half_open).expect("loading the kernel programs") }
    }

    /// A host tracker of the same sizes, hashing half-open flows into the
    /// same sets.
    fn host(&self, max_flows: u32, max_half_open: u32) -> Host {
        Host { t: HostTracker::new(max_flows, max_half_open, self.tracker.layout.seed), now: 1 << 30, events: Vec::new() }
    }

    fn xdp(&self, frame: &[u8]) {
        let xdp: &Xdp = self.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
        let r = xdp.test_run(TestRunOptions { data_in: Some(frame), ..Default::default() }).expect("BPF_PROG_TEST_RUN xdp");
        assert_eq!(r.return_value, XDP_PASS, "the tracker never drops");
    }

    fn tc(&self, frame: &[u8]) {
        let tc: &SchedClassifier = self.tracker.ebpf.program("tcp_track_tc_egress").unwrap().try_into().unwrap();
        let r = tc.test_run(TestRunOptions { data_in: Some(frame), ..Default::default() }).expect("BPF_PROG_TEST_RUN tc");
        assert_eq!(r.return_value, TC_ACT_UNSPEC, "the egress hook lets every packet through to the next program");
    }

    fn tables(&self) -> FlowTables<&MapData> {
        FlowTables::borrow(&self.tracker.ebpf, self.tracker.layout).unwrap()
    }

    /// The flow's record, from the established table or the half-open one.
    fn record(&self, seg: &Segment) -> Option<FlowRecord> {
        self.find(seg).map(|(_, rec)| rec)
    }

    /// Which table holds the flow, and its record.
    fn find(&self, seg: &Segment) -> Option<(Table, FlowRecord)> {
        let dir = direction(seg);
        if seg.family == 4 {
            self.tables().get_v4(&key_v4(seg, dir))
        } else {
            self.tables().get_v6(&key_v6(seg, dir))
        }
    }

    fn table_of(&self, seg: &Segment) -> Option<Table> {
        self.find(seg).map(|(t, _)| t)
    }

    fn counters(&self) -> [u64; counters::COUNT as usize] {
        let map: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(self.tracker.ebpf.map("COUNTERS").unwrap()).unwrap();
        let mut out = [0; counters::COUNT as usize];
        for (i, v) in out.iter_mut().enumerate() {
            *v = map.get(&(i as u32), 0).unwrap().iter().sum();
        }
        out
    }

    /// The records emitted since the last call: every record's event (a
    /// connection record's head among them, in order), and the connection
    /// records whole.
    fn ring(&mut self) -> (Vec<FlowEvent>, Vec<ConnEnd>) {
        let mut ring = RingBuf::try_from(self.tracker.ebpf.map_mut("EVENTS").unwrap()).unwrap();
        let (mut out, mut conns) = (Vec::new(), Vec::new());
        while let Some(item) = ring.next() {
            let ev: FlowEvent = bytemuck::pod_read_unaligned(&item[..size_of::<FlowEvent>()]);
            if ev.kind == EVENT_CONN_END {
                assert_eq!(item.len(), size_of::<ConnEnd>(), "a connection record is a ConnEnd");
                conns.push(bytemuck::pod_read_unaligned(&item[..]));
            } else {
                assert_eq!(item.len(), size_of::<FlowEvent>());
            }
            out.push(ev);
        }
        (out, conns)
    }
}

/// The host's tracker fed the same frames, with a clock of its own.
struct Host {
    t: HostTracker,
    now: u64,
    events: Vec<FlowEvent>,
}

impl Host {
    fn feed(&mut self, frame: &[u8], hook: u8) -> Segment {
        self.now += 1 << 21;
        self.t.segment(frame, 1, hook, self.now, &mut self.events);
        parse(frame).expect("test frames are well formed")
    }

    fn find(&self, seg: &Segment) -> Option<(host::Table, FlowRecord)> {
        let dir = direction(seg);
        if seg.family == 4 {
            self.t.get_v4(&key_v4(seg, dir))
        } else {
            self.t.get_v6(&key_v6(seg, dir))
        }
    }

    fn record(&self, seg: &Segment) -> Option<FlowRecord> {
        self.find(seg).map(|(_, rec)| rec)
    }
}

/// Events without what only the kernel knows (its clock, the interface
/// BPF_PROG_TEST_RUN made up).
fn comparable(events: &[FlowEvent]) -> Vec<FlowEvent> {
    events.iter().map(|e| FlowEvent { ts_ns: 0, ifindex: 0, ..*e }).collect()
}

/// Connection records the same way, their flow records without the clock.
fn comparable_conns(conns: &[ConnEnd]) -> Vec<ConnEnd> {
    conns.iter().map(|c| ConnEnd { event: comparable(&[c.event])[0], rec: c.rec.without_clock() }).collect()
}

fn same_table(kernel: Option<Table>, host: Option<host::Table>) -> bool {
    matches!(
        (kernel, host),
        (None, None) | (Some(Table::Established), Some(host::Table::Established)) | (Some(Table::HalfOpen), Some(host::Table::HalfOpen))
    )
}

/// Frame `i` through the kernel (TC egress if `via_tc`, else XDP) and the
/// host's tracker: the same record in the same table, the same counters,
/// events and connection records. The host's record (without the clock),
/// and what the kernel reported.
fn feed_both(k: &mut Loaded, host: &mut Host, i: usize, f: &[u8], via_tc: bool) -> (Option<FlowRecord>, Vec<FlowEvent>, Vec<ConnEnd>) {
    let hook = if via_tc {
        k.tc(f);
        HOOK_TC_EGRESS
    } else {
        k.xdp(f);
        HOOK_XDP
    };
    let seg = host.feed(f, hook);
    let kernel = k.record(&seg).map(|r| r.without_clock());
    let expected = host.record(&seg).map(|r| r.without_clock());
    assert_eq!(kernel, expected, "frame {i}: the kernel's record differs from the host tracker's");
    assert!(same_table(k.table_of(&seg), host.find(&seg).map(|(t, _)| t)), "frame {i}: held in another table");
    assert_eq!(k.counters(), *host.t.counters(), "frame {i}: counters differ");
    let (kernel_events, kernel_conns) = k.ring();
    assert_eq!(comparable(&kernel_events), comparable(&std::mem::take(&mut host.events)), "frame {i}: events differ");
    assert_eq!(comparable_conns(&kernel_conns), comparable_conns(&host.t.take_conn_ends()), "frame {i}: connection records differ");
    (expected, kernel_events, kernel_conns)
}

/// The established traffic the kernel's fast path takes (`fast.rs`), and
/// the segments next to it that it must leave to the full path, both ways
/// and through both hooks: after every frame the kernel must hold what
/// the host's tracker (the full path only) holds.
#[test]
fn established_traffic_matches_the_host_tracker() {
    require_root!();
    let mut k = Loaded::new();
    let mut host = k.host(MAX_FLOWS, MAX_HALF_OPEN);
    let (c, s) = (u32::MAX - 50_000, 7000u32);
    let (mut cn, mut sn) = (c.wrapping_add(1), s.wrapping_add(1));
    let mut frames = vec![
        (Side::Client, frame(Family::V4, Side::Client, SYN, c, 0, &[], Some(7))),
        (Side::Server, frame(Family::V4, Side::Server, SYN | ACK, s, cn, &[], Some(7))),
        (Side::Client, frame(Family::V4, Side::Client, ACK, cn, sn, &[], None)),
    ];
    for i in 0..40u32 {
        let (a, b) = (1 + i * 97 % 1400, 1 + i * 31 % 900);
        frames.push((Side::Client, frame(Family::V4, Side::Client, ACK | PSH, cn, sn, &vec![1; a as usize], None)));
        cn = cn.wrapping_add(a);
        frames.push((Side::Server, frame(Family::V4, Side::Server, ACK, sn, cn, &[], None)));
        frames.push((Side::Server, frame(Family::V4, Side::Server, ACK | PSH, sn, cn, &vec![2; b as usize], None)));
        sn = sn.wrapping_add(b);
        frames.push((Side::Client, frame(Family::V4, Side::Client, ACK, cn, sn, &[], None)));
        if i % 10 == 9 {
            // The last data sent again, three times: the first of the run
            // is an event (full path), the next ones are not (fast path).
            for _ in 0..3 {
                frames.push((Side::Server, frame(Family::V4, Side::Server, ACK | PSH, sn.wrapping_sub(b), cn, &vec![2; b as usize], None)));
            }
            // An ACK far outside the window: counted, changes nothing.
            frames.push((Side::Client, frame(Family::V4, Side::Client, ACK, cn.wrapping_add(0x4000_0000), sn, &[], None)));
            // Data with the URG flag: the full path.
            let mut urgent = frame(Family::V4, Side::Client, ACK | PSH, cn, sn, &[3; 10], None);
            urgent[14 + 20 + 13] |= 0x20;
            frames.push((Side::Client, urgent));
            cn = cn.wrapping_add(10);
        }
    }
    for (i, (side, f)) in frames.iter().enumerate() {
        // The client's segments through TC egress on every other round.
        let via_tc = *side == Side::Client && (i / 4) % 2 == 1;
        feed_both(&mut k, &mut host, i, f, via_tc);
    }
    let c = k.counters();
    assert_eq!(c[counters::TCP_SEGMENTS as usize], frames.len() as u64);
    assert_eq!(c[counters::OUT_OF_WINDOW as usize], 4);
}

/// A frame's TCP checksum field made what a local stack leaves in a
/// CHECKSUM_PARTIAL segment (IPv4, no IP options): the folded
/// pseudo-header sum alone.
fn partial_checksum(mut f: Vec<u8>) -> Vec<u8> {
    let word = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]) as u64;
    let tcp_len = u16::from_be_bytes([f[16], f[17]]) as u64 - 20;
    let pseudo = word(&f[26..]) + word(&f[28..]) + word(&f[30..]) + word(&f[32..]) + 6 + tcp_len;
    let folded = tcp_track_common::parse::checksum::fold(pseudo);
    f[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&folded.to_be_bytes());
    f
}

/// RSTs next to an established flow under each RST policy, through XDP,
/// where a bare RST the policy drops takes the kernel's RST fast path
/// (`fast::reset`) and every other one the full path: the kernel's verdict
/// must be the host tracker's (which has only the full path), and the
/// record, counters and events the same after every frame.
#[test]
fn resets_match_the_host_tracker_under_every_policy() {
    require_root!();
    const XDP_DROP: u32 = 1;
    for policy in [RstPolicy::DropInvalid, RstPolicy::DropOutOfWindow, RstPolicy::Observe] {
        let mut k = Loaded { tracker: Tracker::load_sized(BpfLog::Off, policy, MAX_FLOWS, MAX_HALF_OPEN).expect("loading the kernel programs") };
        let mut host = k.host(MAX_FLOWS, MAX_HALF_OPEN);
        host.t.set_rst_policy(policy.kernel_value());
        // The client's sequence numbers wrap during the conversation.
        let (c, s) = (u32::MAX - 50, 7000u32);
        let (cn, sn) = (c.wrapping_add(101), s.wrapping_add(1));
        let far = 0x4000_0000u32;
        let corrupt = |mut f: Vec<u8>| {
            f[14 + 20 + 4] ^= 0x01;
            f
        };
        let padded = |mut f: Vec<u8>| {
            f.resize(60, 0);
            f
        };
        let to_client = |flags: u8, seq: u32| frame(Family::V4, Side::Server, flags, seq, cn, &[], None);
        let frames: Vec<(&str, Vec<u8>)> = vec![
            ("SYN", frame(Family::V4, Side::Client, SYN, c, 0, &[], Some(7))),
            ("SYN-ACK", frame(Family::V4, Side::Server, SYN | ACK, s, c.wrapping_add(1), &[], Some(7))),
            ("ACK", frame(Family::V4, Side::Client, ACK, c.wrapping_add(1), sn, &[], None)),
            ("data", frame(Family::V4, Side::Client, ACK | PSH, c.wrapping_add(1), sn, &[1; 100], None)),
            ("its ACK", frame(Family::V4, Side::Server, ACK, sn, cn, &[], None)),
            ("RST out of window", to_client(RST, sn.wrapping_add(far))),
            ("RST|ACK out of window", to_client(RST | ACK, sn.wrapping_add(far))),
            ("RST behind the acknowledgment", to_client(RST, sn.wrapping_sub(10))),
            ("RST in window, inexact", to_client(RST, sn.wrapping_add(1000))),
            ("RST|ACK in window, inexact", to_client(RST | ACK, sn.wrapping_add(1000))),
            ("RST out of window, Ethernet padding", padded(to_client(RST, sn.wrapping_add(far)))),
            ("RST out of window, bad checksum", corrupt(to_client(RST, sn.wrapping_add(far)))),
            ("RST out of window, partial checksum", partial_checksum(to_client(RST, sn.wrapping_add(far)))),
            ("RST in window, partial checksum", partial_checksum(to_client(RST, sn.wrapping_add(1000)))),
            ("RST out of window, with payload", frame(Family::V4, Side::Server, RST, sn.wrapping_add(far), cn, &[9; 8], None)),
            ("RST|PSH out of window", to_client(RST | PSH, sn.wrapping_add(far))),
            ("RST from the client, out of window", frame(Family::V4, Side::Client, RST, cn.wrapping_add(far), 0, &[], None)),
            ("RST of a flow never seen", frame(Family::V6, Side::Server, RST, 1, 0, &[], None)),
            ("RST exact", to_client(RST, sn)),
            ("RST out of window, after the close", to_client(RST, sn.wrapping_add(far))),
        ];
        let mut dropped = 0;
        for (i, (name, f)) in frames.iter().enumerate() {
            let xdp: &Xdp = k.tracker.ebpf.program("tcp_track_xdp").unwrap().try_into().unwrap();
            let verdict = xdp.test_run(TestRunOptions { data_in: Some(f), ..Default::default() }).expect("BPF_PROG_TEST_RUN xdp").return_value;
            host.now += 1 << 21;
            let observed = host.t.segment(f.as_slice(), 1, HOOK_XDP, host.now, &mut host.events);
            assert_eq!(verdict == XDP_DROP, observed == Observed::Dropped, "{policy:?}, frame {i} ({name}): verdict {verdict}, host {observed:?}");
            dropped += (verdict == XDP_DROP) as u32;
            let seg = parse(f.as_slice()).expect("test frames are well formed");
            let kernel = k.record(&seg).map(|r| r.without_clock());
            assert_eq!(kernel, host.record(&seg).map(|r| r.without_clock()), "{policy:?}, frame {i} ({name}): records differ");
            assert_eq!(k.counters(), *host.t.counters(), "{policy:?}, frame {i} ({name}): counters differ");
            let (kernel_events, kernel_conns) = k.ring();
            assert_eq!(comparable(&kernel_events), comparable(&std::mem::take(&mut host.events)), "{policy:?}, frame {i} ({name}): events differ");
            assert_eq!(comparable_conns(&kernel_conns), comparable_conns(&host.t.take_conn_ends()), "{policy:?}, frame {i} ({name}): connection records differ");
        }
        let expected = match policy {
            RstPolicy::DropInvalid => 11,
            RstPolicy::DropOutOfWindow => 8,
            _ => 0,
        };
        assert_eq!(dropped, expected, "{policy:?}: RSTs dropped");
    }
}

fn run_conversation(fam: Family, client_via_tc: bool) {
    require_root!();
    let mut k = Loaded::new();
    let mut host = k.host(MAX_FLOWS, MAX_HALF_OPEN);
    let (mut states, mut events, mut conns) = (Vec::new(), 0, Vec::new());
    for (i, (side, f)) in conversation(fam).iter().enumerate() {
        let (expected, kernel_events, kernel_conns) = feed_both(&mut k, &mut host, i, f, client_via_tc && *side == Side::Client);
        events += kernel_events.len();
        conns.extend(kernel_conns.into_iter().map(|c| (i, c)));
        states.push(state::state_name(expected.unwrap().state));
    }
    assert_eq!(
        states,
        [
            "SYN_SENT", "SYN_RECV", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
            "LAST_ACK", "TIME_WAIT", "CLOSE"
        ],
        "the conversation goes through every state of an orderly release, then the RST in TIME_WAIT"
    );
    assert!(events >= 8, "a new flow, state changes, FINs and the RST were all compared ({events} events)");
    // One connection record, written by the client's last ACK (entering
    // TIME_WAIT), with the figures of the whole conversation; the RST in
    // TIME_WAIT ends nothing new.
    assert_eq!(conns.len(), 1, "exactly one connection record");
    let (at, c) = conns[0];
    assert_eq!((at, c.event.end, c.rec.state), (9, CONN_END_FIN, state::STATE_TIME_WAIT));
    let sum = tcp_track_common::conn::ConnSummary::of(&c.rec);
    assert_eq!((sum.bytes, sum.packets), ([100, 1400], [6, 4]));
    assert_eq!(tcp_track_common::conn::conn_state_name(sum.conn_state), "SF");
    let c = k.counters();
    assert_eq!(c[counters::TCP_SEGMENTS as usize], 11);
    assert_eq!(c[counters::FLOWS_CREATED as usize], 1, "both directions share one entry");
    assert_eq!(c[counters::FLOWS_PROMOTED as usize], 1, "from the half-open table when the handshake completed");
    assert_eq!(c[counters::FLOWS_CLOSED as usize], 1, "closed once, entering TIME_WAIT (the RST after that is not a second close)");
}

#[test]
fn ipv4_conversation_matches_the_host_tracker() {
    run_conversation(Family::V4, false);
}

#[test]
fn ipv6_conversation_matches_the_host_tracker() {
    run_conversation(Family::V6, false);
}

#[test]
fn ingress_and_egress_hooks_update_one_record() {
    // The client's frames through the TC egress program, the server's
    // through XDP: as on the client host itself.
    run_conversation(Family::V4, true);
}

/// Frames the parser must classify the same way in the kernel and on the host.
fn parser_vectors() -> Vec<(&'static str, Vec<u8>)> {
    let syn4 = frame(Family::V4, Side::Client, SYN, 1, 0, &[], Some(7));
    let syn6 = frame(Family::V6, Side::Client, SYN, 1, 0, &[], Some(7));
    let mut v = vec![("ipv4 syn", syn4.clone()), ("ipv6 syn", syn6.clone())];

    // Linux's SYN options (read at fixed offsets), and the same area with
    // SACK-permitted replaced by two NOPs (walked option by option).
    let linux = linux_syn_options(1400, 7, 9);
    let mut nops = linux.to_vec();
    nops.splice(1..2, [TcpOptionElement::Noop, TcpOptionElement::Noop]);
    for (name, options, port) in [("ipv4 syn, Linux's options", &linux[..], 20), ("ipv4 syn, other options", &nops[..], 21)] {
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(CLIENT4, SERVER4, 64)
            .tcp(CPORT + port, SPORT, 1, 1000)
            .syn()
            .options(options)
            .unwrap()
            .write(&mut f, &[])
            .unwrap();
        v.push((name, f));
    }
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(CLIENT6, SERVER6, 64)
        .tcp(CPORT + 22, SPORT, 1, 1000)
        .syn()
        .options(&linux)
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    v.push(("ipv6 syn, Linux's options", f));

    // 802.1Q and QinQ.
    let mut vlan = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(etherparse::VlanId::try_new(5).unwrap())
        .ipv4(CLIENT4, SERVER4, 64)
        .tcp(CPORT + 1, SPORT, 1, 1000)
        .syn()
        .write(&mut vlan, &[])
        .unwrap();
    v.push(("802.1Q", vlan));
    let mut qinq = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .double_vlan(etherparse::VlanId::try_new(5).unwrap(), etherparse::VlanId::try_new(6).unwrap())
        .ipv6(CLIENT6, SERVER6, 64)
        .tcp(CPORT + 2, SPORT, 1, 1000)
        .syn()
        .write(&mut qinq, &[])
        .unwrap();
    v.push(("QinQ", qinq));

    // IPv4 with 8 bytes of options (IHL 7).
    let mut opt = syn4[..34].to_vec();
    opt.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
    opt.extend_from_slice(&syn4[34..]);
    opt[14] = 0x47;
    let total = u16::from_be_bytes([opt[16], opt[17]]) + 8;
    opt[16..18].copy_from_slice(&total.to_be_bytes());
    opt[24..26].copy_from_slice(&[0, 0]); // checksum is not the parser's business
    opt[34 + 8..34 + 10].copy_from_slice(&(CPORT + 3).to_be_bytes());
    v.push(("ipv4 options", opt));

    // IPv6 with a hop-by-hop and a destination-options header.
    let mut ext = syn6[..54].to_vec();
    ext[20] = 0; // next header: hop-by-hop
    ext.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]); // hop-by-hop → dest opts, PadN
    ext.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // dest opts → TCP
    ext.extend_from_slice(&syn6[54..]);
    let plen = u16::from_be_bytes([ext[18], ext[19]]) + 16;
    ext[18..20].copy_from_slice(&plen.to_be_bytes());
    ext[54 + 16..54 + 18].copy_from_slice(&(CPORT + 4).to_be_bytes());
    v.push(("ipv6 extension headers", ext));

    // Malformed and not-TCP.
    let mut ihl = syn4.clone();
    ihl[14] = 0x44;
    v.push(("ipv4 ihl 4", ihl));
    let mut long = syn4.clone();
    long[16..18].copy_from_slice(&2000u16.to_be_bytes());
    v.push(("ipv4 length beyond the frame", long));
    let mut doff = syn4.clone();
    doff[14 + 20 + 12] = 0x40;
    v.push(("tcp data offset 4", doff));
    let mut frag = syn4.clone();
    frag[20] = 0x00;
    frag[21] = 0x10;
    v.push(("ipv4 non-first fragment", frag));
    let mut udp = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(CLIENT4, SERVER4, 64).udp(1, 2).write(&mut udp, b"x").unwrap();
    v.push(("udp", udp));
    v.push(("truncated ipv6", syn6[..40].to_vec()));
    let mut flags = syn4.clone();
    flags[14 + 20 + 13] = SYN | FIN;
    flags[14 + 20..14 + 22].copy_from_slice(&(CPORT + 5).to_be_bytes());
    v.push(("syn+fin", flags));
    v
}

#[test]
fn kernel_and_host_parsers_agree() {
    require_root!();
    let k = Loaded::new();
    for (name, f) in parser_vectors() {
        let before = k.counters();
        k.xdp(&f);
        let after = k.counters();
        let delta = |i: u32| after[i as usize] - before[i as usize];
        match parse(f.as_slice()) {
            Ok(seg) => {
                assert_eq!(delta(counters::TCP_SEGMENTS), 1, "{name}: the kernel parsed it as TCP too");
                let mut host = k.host(MAX_FLOWS, MAX_HALF_OPEN);
                host.feed(&f, HOOK_XDP);
                assert_eq!(
                    k.record(&seg).map(|r| r.without_clock()),
                    host.record(&seg).map(|r| r.without_clock()),
                    "{name}: same segment summary, hence the same record"
                );
            }
            Err(Skip::NotTcp) => assert_eq!(delta(counters::NOT_TCP), 1, "{name}: not TCP in the kernel either"),
            Err(Skip::Malformed(m)) => assert_eq!(delta(counters::MALFORMED), 1, "{name}: malformed ({m:?}) in the kernel too"),
        }
    }
}

/// A flood of SYNs overflows the half-open table and never touches the
/// established one: the established flow survives.
#[test]
fn established_flow_survives_a_half_open_overflow() {
    require_root!();
    let mut k = Loaded::sized(1024, 64);
    let mut host = k.host(1024, 64);
    let conv = conversation(Family::V4);
    for (_, f) in &conv[..4] {
        k.xdp(f);
        host.feed(f, HOOK_XDP);
    }
    let est = parse(conv[3].1.as_slice()).unwrap();
    assert_eq!(k.table_of(&est), Some(Table::Established), "promoted when the handshake completed");
    // 10,000 SYNs from distinct spoofed sources into a 64-entry half-open
    // table, the ring drained as we go (each eviction writes the evicted
    // connection's record). Which entry of a set goes first depends on the
    // clock (ties of birth time), so the kernel's and the host's evictions
    // are compared by number, and each record with its own key.
    let (mut evicted, mut host_evicted) = (Vec::new(), 0);
    for i in 0..10_000u32 {
        k.xdp(&spoofed(i, false));
        host.feed(&spoofed(i, false), HOOK_XDP);
        if i % 500 == 499 {
            evicted.extend(k.ring().1);
            host_evicted += host.t.take_conn_ends().len();
        }
    }
    assert_eq!((evicted.len(), host_evicted), (10_000 - 64, 10_000 - 64), "one record per evicted half-open flow");
    for c in &evicted {
        let e = &c.event;
        assert_eq!((e.end, e.family, c.rec.state, c.rec.packets.iter().sum::<u32>()), (CONN_END_EVICTED, 4, state::STATE_SYN_SENT, 1));
        // spoofed(i): port 1024 + i, ISN i: the record is the key's own.
        let client = c.rec.peer(c.rec.initiator);
        assert_eq!(u32::from(e.lo_port.max(e.hi_port)), 1024 + client.isn, "{e:?}");
    }
    let rec = k.record(&est).expect("the established flow is still tracked");
    assert_eq!(rec.without_clock(), host.record(&est).unwrap().without_clock(), "and its record is intact");
    let (used, slots) = k.tables().half_open_v4();
    assert_eq!((used, slots), (64, 64), "the flood filled the half-open table, and only it");
    assert_eq!(k.tables().established_v4(), (1, 0), "no spoofed SYN reached the established table");
    assert_eq!(k.counters()[counters::HALF_OPEN_EVICTED as usize], 10_000 - 64);
    assert_eq!(k.counters(), *host.t.counters(), "the host tracker counted the same");
    assert_eq!((host.t.v4().half_open_len(), host.t.v4().established_len()), ((64, 64), 1));
}

/// A connection refused (SYN, then RST|ACK from the server) ends in its
/// half-open entry: its record, written as the entry is freed, is the same
/// in the kernel and on the host, says `reset` and the reset's class, and
/// the counters say one flow created, one closed.
#[test]
fn a_refused_connection_writes_one_record() {
    require_root!();
    let mut k = Loaded::new();
    let mut host = k.host(MAX_FLOWS, MAX_HALF_OPEN);
    let frames = [frame(Family::V4, Side::Client, SYN, 1000, 0, &[], None), frame(Family::V4, Side::Server, RST | ACK, 0, 1001, &[], None)];
    let mut conns = Vec::new();
    for f in &frames {
        k.xdp(f);
        let seg = host.feed(f, HOOK_XDP);
        assert_eq!(k.record(&seg).map(|r| r.without_clock()), host.record(&seg).map(|r| r.without_clock()));
        let (_, kc) = k.ring();
        assert_eq!(comparable_conns(&kc), comparable_conns(&host.t.take_conn_ends()));
        conns.extend(kc);
    }
    assert_eq!(conns.len(), 1);
    let c = conns[0];
    assert_eq!((c.event.end, c.event.reset, c.rec.state), (CONN_END_RESET, state::RESET_REFUSED, state::STATE_CLOSE));
    assert_eq!(c.event.dir, c.event.initiator ^ 1, "sent by the server");
    assert_eq!(tcp_track_common::conn::conn_state_name(tcp_track_common::conn::conn_state(&c.rec)), "REJ");
    assert_eq!(k.table_of(&parse(frames[0].as_slice()).unwrap()), None, "the half-open entry is freed");
    let n = k.counters();
    assert_eq!((n[counters::FLOWS_CREATED as usize], n[counters::FLOWS_CLOSED as usize]), (1, 1));
    assert_eq!(n, *host.t.counters());
}

/// A SYN from spoofed source `i` (198.19.x.y) to the server, or the
/// server's SYN-ACK to it.
fn spoofed(i: u32, synack: bool) -> Vec<u8> {
    let (client, cport) = ([198, 19, (i >> 8) as u8, i as u8], 1024 + (i % 50_000) as u16);
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let b = if synack { eth.ipv4(SERVER4, client, 64).tcp(SPORT, cport, 9000, 1024).syn().ack(i + 1) } else { eth.ipv4(client, SERVER4, 64).tcp(cport, SPORT, i, 1024).syn() };
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

#[test]
fn retransmissions_do_not_make_a_half_open_entry_younger() {
    require_root!();
    // Four slots: one set, so every flow competes with every other.
    let k = Loaded::sized(1024, 4);
    let present = |i: u32| k.table_of(&parse(spoofed(i, false).as_slice()).unwrap()) == Some(Table::HalfOpen);
    // Entry ages are kept in units of about a millisecond: space the births.
    let tick = || std::thread::sleep(std::time::Duration::from_millis(3));
    for i in 1..=4 {
        k.xdp(&spoofed(i, false));
        tick();
    }
    // Flow 1 retransmits its SYN; flow 2 gets a SYN-ACK, retransmitted.
    k.xdp(&spoofed(1, false));
    k.xdp(&spoofed(2, true));
    k.xdp(&spoofed(2, true));
    assert_eq!(k.record(&parse(spoofed(2, false).as_slice()).unwrap()).unwrap().peer.iter().map(|p| p.retrans).max(), Some(1));
    tick();
    // A fifth flow evicts the oldest by birth, flow 1, as if it had not
    // retransmitted (an LRU would have evicted flow 3, the least recently
    // used).
    k.xdp(&spoofed(5, false));
    assert_eq!((1..=5).map(present).collect::<Vec<_>>(), [false, true, true, true, true]);
    tick();
    k.xdp(&spoofed(6, false));
    assert_eq!((2..=6).map(present).collect::<Vec<_>>(), [false, true, true, true, true], "then flow 2, SYN-ACKs and all");
    assert_eq!(k.counters()[counters::HALF_OPEN_EVICTED as usize], 2);
    assert_eq!(k.counters()[counters::FLOWS_CREATED as usize], 6);
}
