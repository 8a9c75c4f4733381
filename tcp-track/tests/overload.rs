//! Overload: the daemon's consumer stopped (SIGSTOP) for two seconds while
//! about 200,000 events a second are produced into its ring buffer, then
//! let go (SIGCONT).
//!
//! The events come from the test itself: it loads the same eBPF object
//! with the daemon's pinned maps (`Tracker::load_pinned` on the daemon's
//! `--state-dir`, on a bpffs the test mounts), so its copy of the XDP
//! program writes into the daemon's ring buffer, tables and counters, and
//! runs it with BPF_PROG_TEST_RUN on crafted frames: out-of-window RSTs on
//! one established flow (one `reset` event each), paced to 200,000 a
//! second. While the daemon is stopped and its ring buffer full, it also
//! plays whole connections whose every event is lost: handshakes never
//! answered, orderly closes, resets.
//!
//! Asserted: the daemon reports the events lost with their number (the
//! stderr warnings add up to the kernel's counter, as do the counters line
//! at exit and `tcp_track_events_lost_total`); it recovers by itself (every
//! connection refused after SIGCONT gets its `reset` event and its `conn`
//! record); and nothing else is lost: the walk of the tables after the
//! losses (`report/resync.rs`) gives each connection whose events were lost
//! what its events would have: the handshakes are reported half-open and
//! given up, the closes get their `conn` record and their TIME_WAIT
//! expires, the resets get their `conn` record.

mod support;

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddrV4, TcpStream},
    thread,
    time::{Duration, Instant},
};

use aya::{
    maps::PerCpuArray,
    programs::{TestRun, TestRunOptions, Xdp},
};
use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{
    bpffs::Bpffs,
    daemon::Daemon,
    netns::{tcp_segment, Pair, Tcp},
};
use tcp_track::{
    config::{BpfLog, Capacity, RstPolicy},
    loader::{Pinning, Tracker, XDP_PROGRAM},
    pins::StateDir,
};
use tcp_track_common::counters;

/// Events produced per second while the flood runs.
const RATE: u64 = 200_000;
/// Test runs per pacing step (each run of the RST makes one event): a
/// tenth of a second's worth, as each BPF_PROG_TEST_RUN with a repeat
/// waits for an RCU grace period (BENCHMARKS.md, "How each figure is
/// taken"), which caps small batches near 100,000 a second.
const BATCH: u32 = 20_000;
const METRICS: &str = "127.0.0.1:9464";
const INSTANCE: &str = "overload";

/// Connections whose events are all lost, of each kind.
const VICTIMS: u16 = 20;
/// Connections refused after the daemon was let go.
const AFTER: u16 = 50;

/// The endpoints of the test's crafted flows: they exist only in these
/// frames, handed to the program directly.
fn client(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new([198, 18, 9, 1].into(), port)
}
const SERVER: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::new(198, 18, 9, 2), 80);

fn frame(from: SocketAddrV4, to: SocketAddrV4, flags: &str, seq: u32, ack: u32) -> Vec<u8> {
    tcp_segment(from, to, [2, 0, 0, 0, 0, 2], Tcp { flags, seq, ack, window: 502, ..Tcp::default() }).unwrap()
}

/// The test's copy of the programs, on the daemon's pinned maps.
struct Producer {
    tracker: Tracker,
}

impl Producer {
    fn attach_to(state: &str) -> Producer {
        let dir = StateDir::new(std::path::Path::new(state), INSTANCE);
        let info = dir.read_info().expect("the daemon's state record");
        // The daemon's default table sizes: the same layout, so that the
        // program finds the half-open flows in the sets the daemon reads.
        let capacity = Capacity::new(65_536, 16_384);
        assert_eq!(capacity.half_open_set_mask(), info.half_open_set_mask, "the daemon's half-open layout");
        let pinning = Pinning { dir, seed: Some(info.half_open_seed), keep: false };
        let tracker = Tracker::load_pinned(BpfLog::Off, RstPolicy::Observe, capacity, Some(pinning)).expect("loading the programs on the daemon's pinned maps");
        Producer { tracker }
    }

    fn xdp(&self) -> &Xdp {
        self.tracker.ebpf.program(XDP_PROGRAM).and_then(|p| p.try_into().ok()).expect("the XDP program")
    }

    /// Run the XDP program on `frame`, `repeat` times.
    fn run(&self, frame: &[u8], repeat: u32) {
        self.xdp().test_run(TestRunOptions { data_in: Some(frame), repeat, ..Default::default() }).expect("BPF_PROG_TEST_RUN");
    }

    fn play(&self, frames: &[Vec<u8>]) {
        for f in frames {
            self.run(f, 1);
        }
    }

    /// The kernel's count of events lost, summed over CPUs.
    fn lost(&self) -> u64 {
        let map: PerCpuArray<_, u64> = PerCpuArray::try_from(self.tracker.ebpf.map("COUNTERS").expect("COUNTERS")).unwrap();
        map.get(&counters::EVENTS_LOST, 0).unwrap().iter().sum()
    }

    /// `frame` at `RATE` a second until `until`; how many runs.
    fn flood(&self, frame: &[u8], until: Instant) -> u64 {
        let start = Instant::now();
        let mut sent = 0u64;
        while Instant::now() < until {
            let due = (start.elapsed().as_secs_f64() * RATE as f64) as u64;
            if sent < due {
                self.run(frame, BATCH);
                sent += u64::from(BATCH);
            } else {
                thread::sleep(Duration::from_micros(500));
            }
        }
        sent
    }
}

/// An established flow on `port` (client ISN 1000, server ISN 5000), and
/// the frames that take it there.
fn handshake(port: u16) -> Vec<Vec<u8>> {
    let c = client(port);
    vec![frame(c, SERVER, "S", 1000, 0), frame(SERVER, c, "SA", 5000, 1001), frame(c, SERVER, "A", 1001, 5001)]
}

/// An orderly close after the handshake, the client first: it ends in
/// TIME_WAIT.
fn closed(port: u16) -> Vec<Vec<u8>> {
    let c = client(port);
    let mut f = handshake(port);
    f.extend([
        frame(c, SERVER, "FA", 1001, 5001),
        frame(SERVER, c, "A", 5001, 1002),
        frame(SERVER, c, "FA", 5001, 1002),
        frame(c, SERVER, "A", 1002, 5002),
    ]);
    f
}

/// The server resets the connection after the handshake (an exact RST).
fn reset(port: u16) -> Vec<Vec<u8>> {
    let mut f = handshake(port);
    f.push(frame(SERVER, client(port), "RA", 5001, 1001));
    f
}

/// A SYN answered by RST|ACK: refused.
fn refused(port: u16) -> Vec<Vec<u8>> {
    let c = client(port);
    vec![frame(c, SERVER, "S", 1000, 0), frame(SERVER, c, "RA", 0, 1001)]
}

/// `name value` of a metric in the Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn http_get(net: &Pair, path: &str) -> String {
    let path = path.to_string();
    net.b
        .enter(move || -> std::io::Result<String> {
            let mut s = TcpStream::connect(METRICS)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(s, "GET {path} HTTP/1.0\r\nHost: {METRICS}\r\n\r\n")?;
            let mut raw = String::new();
            s.read_to_string(&mut raw)?;
            Ok(raw)
        })
        .unwrap()
        .unwrap()
}

/// The events printed for the connections on `ports`, by (client port,
/// event, end or kind).
fn outcomes(lines: &[String]) -> BTreeMap<(u16, String, String), usize> {
    let mut out = BTreeMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let Some(port) = v["client"].as_str().and_then(|c| c.parse::<SocketAddrV4>().ok()).map(|c| c.port()) else { continue };
        let what = v["end"].as_str().or(v["kind"].as_str()).or(v["reason"].as_str()).unwrap_or("").to_string();
        *out.entry((port, v["event"].as_str().unwrap().to_string(), what)).or_default() += 1;
    }
    out
}

#[test]
fn events_lost_to_a_stopped_consumer_are_counted_and_caught_up_with() {
    require_root!();
    let bpf = Bpffs::new("overload");
    let net = Pair::new("ov").unwrap();
    let state = bpf.state();
    let mut daemon = Daemon::start(
        &net.b,
        &[
            "run", "--iface", &net.b_end.ifname, "--format", "json", "--events", "notable,conn", "--half-open-timeout", "1s",
            "--time-wait-timeout", "2s", "--state-dir", &state, "--instance", INSTANCE, "--metrics-addr", METRICS,
        ],
    );
    let producer = Producer::attach_to(&state);
    // The flood's flow, and its RST far outside the window: one `reset`
    // event per run, the flow unchanged.
    let flood_port = 40000;
    producer.play(&handshake(flood_port));
    let rst = frame(SERVER, client(flood_port), "R", 5001u32.wrapping_add(0x4000_0000), 0);
    thread::sleep(Duration::from_millis(500));
    assert_eq!(producer.lost(), 0, "nothing lost before the flood");

    kill(daemon.pid(), Signal::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let mut produced = producer.flood(&rst, stopped + Duration::from_millis(500));
    // The ring buffer is full: one more event is one more lost.
    let before = producer.lost();
    assert!(before > 0, "a 1 MiB ring buffer is full after {produced} events");
    producer.run(&rst, 1);
    assert_eq!(producer.lost(), before + 1, "the ring buffer is full");
    // Connections whose every event is lost: ports 42000.. half-open,
    // 43000.. closed, 44000.. reset.
    let (half, close, rset) = (42000u16, 43000u16, 44000u16);
    for i in 0..VICTIMS {
        producer.play(&[frame(client(half + i), SERVER, "S", 1000, 0)]);
        producer.play(&closed(close + i));
        producer.play(&reset(rset + i));
    }
    let victims_lost = producer.lost() - before - 1;
    // The ring buffer stays full (nothing reads it): at least the first
    // event of each victim, and every other one, was lost.
    assert!(victims_lost >= 3 * u64::from(VICTIMS), "every event of the victims lost: {victims_lost}");
    produced += producer.flood(&rst, stopped + Duration::from_secs(2));
    kill(daemon.pid(), Signal::SIGCONT).unwrap();
    // Production goes on for a second while the daemon catches up.
    produced += producer.flood(&rst, Instant::now() + Duration::from_secs(1));
    let secs = stopped.elapsed().as_secs_f64();
    let lost = producer.lost();
    eprintln!("{produced} events produced in {secs:.2} s ({:.0}/s; target {RATE}/s), {lost} lost", produced as f64 / secs);

    // Recovered: connections refused now are all reported.
    thread::sleep(Duration::from_millis(500));
    let after = 45000u16;
    for i in 0..AFTER {
        producer.play(&refused(after + i));
    }
    assert_eq!(producer.lost(), lost, "nothing lost once the flood stopped");
    // The walk of the tables comes a tick after the last loss; the
    // victims' deadlines (all past by then) fire at once; the last reset
    // given up, a TIME_WAIT expired, the walk's line on stderr.
    let last = (rset + VICTIMS - 1, "conn".to_string(), "reset".to_string());
    daemon.wait_for(Duration::from_secs(15), "the walk's conn record of the last reset", |v| {
        v["client"] == client(last.0).to_string() && v["event"] == "conn"
    });
    daemon.wait_for(Duration::from_secs(15), "the last half-open handshake given up", |v| {
        v["client"] == client(half + VICTIMS - 1).to_string() && v["event"] == "conn"
    });
    let lines = daemon.drain(Duration::from_secs(3));
    let metrics = http_get(&net, "/metrics");
    daemon.terminate();
    let stderr = daemon.stderr_lines();

    // Counted and reported with their number.
    let warned: u64 = stderr
        .iter()
        .filter_map(|l| l.split_once(" events lost: the ring buffer was full")?.0.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(warned, lost, "the warnings add up to the kernel's count:\n{}", stderr.join("\n"));
    assert_eq!(support::daemon::exit_counter(&stderr, "events_lost"), lost, "the counters line at exit");
    assert_eq!(metric(&metrics, "tcp_track_events_lost_total"), Some(lost as f64), "the metric");
    // The walks in the metrics: at least one, over at least the victims,
    // which it adopted (a walk while the losses went on may add more).
    let m = |name: &str| metric(&metrics, name).unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
    assert!(m("tcp_track_resync_walks_total") >= 1.0, "{metrics}");
    assert!(m(r#"tcp_track_resync_flows_total{outcome="adopted"}"#) >= f64::from(3 * VICTIMS), "{metrics}");
    assert!(m("tcp_track_resync_flows_walked_total") >= m(r#"tcp_track_resync_flows_total{outcome="adopted"}"#), "{metrics}");
    assert!(m("tcp_track_resync_walk_seconds_total") > 0.0, "{metrics}");
    assert!(
        stderr.iter().any(|l| l.contains("a walk of the tables") && l.contains(&format!("caught up with {}", 3 * VICTIMS))),
        "the walk after the losses followed the {} victims:\n{}",
        3 * VICTIMS,
        stderr.join("\n")
    );

    let got = outcomes(&lines);
    let count = |port: u16, event: &str, what: &str| got.get(&(port, event.to_string(), what.to_string())).copied().unwrap_or(0);
    let mut missing = Vec::new();
    for i in 0..VICTIMS {
        let expect = [
            (half + i, "half_open", "syn_sent"),
            (half + i, "conn", "half_open_timeout"),
            (close + i, "conn", "fin"),
            (close + i, "time_wait_expired", ""),
            (rset + i, "conn", "reset"),
        ];
        missing.extend(expect.iter().filter(|(p, e, w)| count(*p, e, w) != 1));
    }
    for i in 0..AFTER {
        missing.extend([(after + i, "reset", "refused"), (after + i, "conn", "reset")].iter().filter(|(p, e, w)| count(*p, e, w) != 1).copied());
    }
    assert!(missing.is_empty(), "not printed exactly once: {missing:?}\nall: {got:?}");
    // One record per connection: nothing but the above for the victims.
    let records = |from: u16| got.iter().filter(|((p, e, _), _)| (from..from + VICTIMS).contains(p) && e == "conn").map(|(_, n)| n).sum::<usize>();
    let n = usize::from(VICTIMS);
    assert_eq!((records(half), records(close), records(rset)), (n, n, n), "{got:?}");
}
