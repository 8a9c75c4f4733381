//! `tcp-track read`: the tracker run on a capture instead of the wire.
//!
//! The same code as the live path from the frame on: the shared parser,
//! table logic and state machine (`tcp_track_common::host::HostTracker`,
//! whose tables behave as the kernel's, with their sizes and eviction
//! rules), and the same `Daemon` (reporter, writer) that `run` drives. Only
//! the source of time differs: the capture's timestamps are the clock.
//! Before each packet, whatever falls due up to its timestamp happens first
//! (deadlines at their own instant, the audit's tick once per second of
//! capture time), so timeouts fire in capture time and in order with the
//! packets; event timestamps are the capture's.
//!
//! A frame's direction through the host is not in a capture, so its hook is
//! `capture` (`event::HOOK_CAPTURE`): judged as XDP judges what arrives
//! (a RST must prove its checksum; the RST policy applies), printed as
//! `seen: capture`.
//!
//! Memory is bounded by the table sizes, not by the file: the reader keeps
//! one buffer, the tracker its tables, the reporter what it follows.

use std::{
    cell::RefCell,
    collections::HashMap,
    io::{self, IsTerminal, Read, Write},
    rc::Rc,
    time::{Duration, Instant, SystemTime},
};

use tcp_track_common::{
    event::{ConnEnd, FlowEvent, EVENT_CONN_END, HOOK_CAPTURE},
    flow::FlowRecord,
    host::HostTracker,
    parse::FAMILY_IPV4,
};

use crate::{
    capture::{CaptureError, CaptureReader, CaptureStats, Frame},
    clock::WallClock,
    config::Config,
    daemon::{Daemon, Records, MAX_BATCH},
    events::{split_record, DecodeError, Decoder},
    report::{FlowId, FlowLookup},
    stats::{CounterSource, Totals},
    tables::{id_of, key_v4, key_v6},
    vocab::EndReason,
};

/// The half-open tables' hash seed. The kernel's is random per start
/// (against hash flooding on the wire); a capture is read with a fixed one,
/// so that reading a file twice gives the same output.
pub const SEED: u32 = 0x7463_7072;

/// How often the audit looks for flows evicted without a close, in capture
/// time: once a second, as the live daemon does.
const TICK_NS: u64 = 1_000_000_000;

/// The progress line is printed after this long, then this often.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Packets between two looks at the wall clock for the progress line.
const PROGRESS_PACKETS: u64 = 1 << 16;

/// The host tracker as the daemon's flow tables and counters: the reporter
/// reads flows from it when deadlines come and removes those it is done
/// with, as it does in the kernel's maps.
#[derive(Clone)]
pub struct CaptureFlows(Rc<RefCell<HostTracker>>);

impl CaptureFlows {
    /// Tables of `max_flows` established and `max_half_open` half-open flows
    /// per address family, RSTs judged with `rst_policy` (`guard::RST_POLICY_*`).
    pub fn new(max_flows: u32, max_half_open: u32, rst_policy: u8) -> Self {
        let mut tracker = HostTracker::new(max_flows, max_half_open, SEED);
        tracker.set_rst_policy(rst_policy);
        CaptureFlows(Rc::new(RefCell::new(tracker)))
    }

    /// One captured frame at `now_ns`: its events go to `batch`, with the
    /// whole record of each connection it ended.
    fn segment(&self, frame: &Frame, ifindex: u32, now_ns: u64, batch: &mut Batch) {
        let mut t = self.0.borrow_mut();
        t.segment(frame, ifindex, HOOK_CAPTURE, now_ns, &mut batch.events);
        t.move_conn_ends(&mut batch.conns);
    }
}

impl FlowLookup for CaptureFlows {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord> {
        let t = self.0.borrow();
        let found = if id.family == FAMILY_IPV4 { t.get_v4(&key_v4(id)) } else { t.get_v6(&key_v6(id)) };
        found.map(|(_, rec)| rec)
    }

    fn remove(&mut self, id: &FlowId) {
        let mut t = self.0.borrow_mut();
        if id.family == FAMILY_IPV4 {
            t.remove_v4(&key_v4(id));
        } else {
            t.remove_v6(&key_v6(id));
        }
    }

    fn open_flows(&self) -> Vec<(FlowId, FlowRecord)> {
        let t = self.0.borrow();
        let v4 = t.v4().flows().map(|(k, r)| (id_of(&k), r));
        v4.chain(t.v6().flows().map(|(k, r)| (id_of(&k), r))).collect()
    }
}

impl CounterSource for CaptureFlows {
    fn read(&self) -> Totals {
        *self.0.borrow().counters()
    }
}

/// One packet's events, handed to `Daemon::drain` as the ring buffer's
/// records are: a connection's end (`EVENT_CONN_END`) as its whole
/// `ConnEnd` record, in order with the others. Given typed
/// (`Records::next_split`), as the tracker made them; as bytes only to
/// a reader that asks for bytes.
#[derive(Default)]
struct Batch {
    events: Vec<FlowEvent>,
    conns: Vec<ConnEnd>,
    next: usize,
    next_conn: usize,
}

impl Batch {
    fn clear(&mut self) {
        self.events.clear();
        self.conns.clear();
        self.next = 0;
        self.next_conn = 0;
    }
}

impl Records for Batch {
    type Record<'a> = &'a [u8];

    fn next_record(&mut self) -> Option<&[u8]> {
        let ev = self.events.get(self.next)?;
        self.next += 1;
        if ev.kind == EVENT_CONN_END {
            if let Some(conn) = self.conns.get(self.next_conn) {
                self.next_conn += 1;
                return Some(bytemuck::bytes_of(conn));
            }
        }
        Some(bytemuck::bytes_of(ev))
    }

    fn next_split(&mut self) -> Option<Result<(FlowEvent, Option<FlowRecord>), DecodeError>> {
        let ev = *self.events.get(self.next)?;
        self.next += 1;
        if ev.kind == EVENT_CONN_END {
            if let Some(conn) = self.conns.get(self.next_conn) {
                self.next_conn += 1;
                return Some(Ok((conn.event, Some(conn.rec))));
            }
            // An end without its record: damage, as the bytes would say.
            return Some(split_record(bytemuck::bytes_of(&ev)));
        }
        Some(Ok((ev, None)))
    }
}

/// Output whose `flush` waits: the daemon flushes after every step, which
/// suits a live stream; reading a file, lines are written when the buffer
/// fills and at the end (`Deferred::finish`).
pub struct Deferred<W: Write>(pub W);

impl<W: Write> Write for Deferred<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a capture held and what reading it found.
#[derive(Debug)]
pub struct ReadOutcome {
    pub stats: CaptureStats,
    /// The tracker's counters at the end, indexed by `counters::*`.
    pub counters: Totals,
    /// Flows the reporter still followed at the end of the capture.
    pub open_flows: usize,
    /// The damage that ended the capture early, after everything before it
    /// was processed and reported.
    pub error: Option<CaptureError>,
}

/// The progress line on stderr (`\r`, rewritten in place), for captures
/// that take a while; only when stderr is a terminal.
pub struct Progress {
    started: Instant,
    last: Option<Instant>,
    /// The input's size, when it is a file.
    total: Option<u64>,
}

impl Progress {
    /// A progress line for an input of `total` bytes, if stderr is a terminal.
    pub fn on_terminal(total: Option<u64>) -> Option<Progress> {
        io::stderr().is_terminal().then(|| Progress { started: Instant::now(), last: None, total })
    }

    fn update(&mut self, stats: &CaptureStats) {
        let now = Instant::now();
        let elapsed = now - self.started;
        if elapsed < PROGRESS_AFTER || self.last.is_some_and(|l| now - l < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(now);
        let share = match self.total {
            Some(total) if total > 0 => format!("{:.0}% of ", stats.bytes as f64 * 100.0 / total as f64),
            _ => String::new(),
        };
        let rate = stats.packets as f64 / elapsed.as_secs_f64();
        eprint!(
            "\rtcp-track read: {share}{:.1} MB, {} packets, {:.2}M packets/s ",
            stats.bytes as f64 / 1e6,
            stats.packets,
            rate / 1e6
        );
    }

    fn done(&self) {
        if self.last.is_some() {
            eprintln!();
        }
    }
}

/// Read `reader` to its end (or to the damage that ends it), tracking every
/// frame as the kernel would and writing the events to `out` as `config`
/// says (its `filter` chooses which are printed, as `run`'s does). Fails only when writing fails; damage in the capture is in
/// `ReadOutcome::error`.
pub fn read_capture<R: Read, W: Write>(
    config: &Config,
    mut reader: CaptureReader<R>,
    out: W,
    mut progress: Option<Progress>,
) -> io::Result<ReadOutcome> {
    let flows = CaptureFlows::new(config.capacity.max_flows(), config.capacity.half_open_slots(), config.rst_policy.kernel_value());
    // The first packet, copied out, so that the interfaces declared before
    // it can be named (those declared later print as `if<index>`).
    let first = match reader.next_packet() {
        Ok(Some(p)) => Some((p.timestamp_ns, p.interface.index, p.frame.bytes().to_vec(), p.frame.wire_len())),
        Ok(None) => None,
        Err(e) => return Ok(ReadOutcome { stats: reader.stats(), counters: flows.read(), open_flows: 0, error: Some(e) }),
    };
    let Some((ts, ifindex, bytes, wire_len)) = first else {
        return Ok(ReadOutcome { stats: reader.stats(), counters: flows.read(), open_flows: 0, error: None });
    };
    // Those without a name too, as the decoder would name them
    // (`if<index>`): once here rather than a new string per event.
    let names: HashMap<u32, String> =
        reader.interfaces().iter().map(|i| (i.index, i.name.clone().unwrap_or_else(|| format!("if{}", i.index)))).collect();
    // Capture timestamps are nanoseconds since the epoch: they are the
    // daemon's "monotonic" time, anchored at the epoch.
    let decoder = Decoder::new(WallClock::anchored(SystemTime::UNIX_EPOCH, 0), names);
    let mut run = Run {
        daemon: Daemon::new(config, decoder, flows.clone(), flows.clone(), out),
        flows,
        batch: Batch::default(),
        now: 1,
        next_tick: ts.max(1).next_multiple_of(TICK_NS),
    };
    run.packet(&Frame::new(&bytes, wire_len), ifindex, ts)?;
    let error = loop {
        match reader.next_packet() {
            Ok(Some(p)) => run.packet(&p.frame, p.interface.index, p.timestamp_ns)?,
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
        if let Some(p) = progress.as_mut() {
            let stats = reader.stats();
            if stats.packets.is_multiple_of(PROGRESS_PACKETS) {
                p.update(&stats);
            }
        }
    };
    if let Some(p) = &progress {
        p.done();
    }
    // Every connection still open gets its final record, at the capture's
    // last instant (with `--events conn` or `all`).
    let end = run.now;
    run.daemon.end_all(end, EndReason::CaptureEnd)?;
    run.daemon.log_summary();
    let open_flows = run.daemon.snapshot().report.tracked_flows;
    Ok(ReadOutcome { stats: reader.stats(), counters: run.flows.read(), open_flows, error })
}

/// The daemon driven by a capture.
struct Run<W: Write> {
    daemon: Daemon<CaptureFlows, CaptureFlows, W>,
    flows: CaptureFlows,
    batch: Batch,
    /// Capture time: the latest packet's timestamp. Time never goes back: a
    /// packet older than the last (captures merged from several CPUs or
    /// files) is taken at the last one's time, so deadlines keep their
    /// order. At least 1: 0 marks a free half-open slot.
    now: u64,
    /// When the audit's next tick falls.
    next_tick: u64,
}

impl<W: Write> Run<W> {
    /// What fell due before the packet, then the packet and its events.
    fn packet(&mut self, frame: &Frame, ifindex: u32, ts: u64) -> io::Result<()> {
        self.now = self.now.max(ts);
        self.catch_up()?;
        self.batch.clear();
        self.flows.segment(frame, ifindex, self.now, &mut self.batch);
        while self.daemon.drain(&mut self.batch)? == MAX_BATCH {}
        Ok(())
    }

    /// Everything due up to now, in time order: each deadline at its own
    /// instant, and the audit's tick once per second of capture time
    /// crossed (once per crossing: a capture idle for an hour does not run
    /// 3,600 audits).
    fn catch_up(&mut self) -> io::Result<()> {
        let now = self.now;
        loop {
            match self.daemon.next_deadline().filter(|&at| at <= now) {
                Some(at) if at <= self.next_tick || self.next_tick > now => self.daemon.on_deadlines(at)?,
                _ if self.next_tick <= now => {
                    self.daemon.on_tick(self.next_tick)?;
                    self.next_tick = (now + 1).next_multiple_of(TICK_NS);
                }
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;
    use tcp_track_common::counters;

    use super::*;
    use crate::{
        capture::synth::{self, SynthConfig, PACKETS_PER_CONNECTION},
        config::{EventSet, Format},
    };

    /// `config` over `file`: the JSON lines and the outcome.
    fn read(config: &Config, file: &[u8]) -> (Vec<Value>, ReadOutcome) {
        let mut out = Vec::new();
        let reader = CaptureReader::new(file).unwrap();
        let outcome = read_capture(config, reader, &mut out, None).unwrap();
        let lines = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        (lines, outcome)
    }

    fn ts_ns(v: &Value) -> u64 {
        let t = humantime::parse_rfc3339(v["ts"].as_str().unwrap()).unwrap();
        t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64
    }

    fn json(events: EventSet) -> Config {
        let mut config = Config::new(Vec::new());
        config.format = Format::Json;
        config.report.events = crate::config::EventSets::of(&[events]);
        config.report.time_wait_timeout = Duration::from_millis(1);
        config
    }

    /// Many short connections: every one enters TIME_WAIT (its client
    /// closed first), and each TIME_WAIT expires exactly the timeout later
    /// in capture time, printed among the packets' events in time order;
    /// those whose timeout falls after the last packet do not expire.
    #[test]
    fn deadlines_fire_in_capture_time_in_order_with_the_packets() {
        let synth = SynthConfig { connections: 600, concurrent: 100, ..SynthConfig::default() };
        let mut file = Vec::new();
        let summary = synth::write_many_connections(&mut file, &synth).unwrap();
        let last_packet = synth.start_ns + (summary.packets - 1) * synth.gap_ns;
        let (lines, outcome) = read(&json(EventSet::Notable), &file);
        assert!(outcome.error.is_none());
        assert_eq!(outcome.stats.packets, 600 * PACKETS_PER_CONNECTION);
        assert_eq!(outcome.counters[counters::FLOWS_CREATED as usize], 600);
        assert_eq!(outcome.counters[counters::TCP_SEGMENTS as usize], outcome.stats.packets);

        let times: Vec<u64> = lines.iter().map(ts_ns).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "events in capture-time order");
        let mut entered = HashMap::new();
        let mut expired = 0;
        for l in &lines {
            match l["event"].as_str().unwrap() {
                "time_wait" => {
                    assert_eq!((l["closer"].as_str(), l["seen"].as_str()), (Some("client"), None), "{l}");
                    entered.insert(l["client"].as_str().unwrap().to_string(), ts_ns(l));
                }
                "time_wait_expired" => {
                    let at = entered[l["client"].as_str().unwrap()];
                    assert_eq!(ts_ns(l), at + 1_000_000, "exactly the timeout later: {l}");
                    assert!(ts_ns(l) <= last_packet, "capture time never runs past the last packet");
                    expired += 1;
                }
                other => panic!("unexpected {other}: {l}"),
            }
        }
        assert_eq!(entered.len(), 600);
        let due = entered.values().filter(|&&at| at + 1_000_000 <= last_packet).count();
        assert!(due >= 500, "most TIME_WAITs fall due within the capture ({due})");
        assert_eq!(expired, due, "every TIME_WAIT due within the capture expired, no other");
    }

    /// `--events all` shows the hook as `capture`, and the same capture read
    /// twice gives the same lines (the seed is fixed).
    #[test]
    fn every_event_is_seen_in_the_capture_and_reading_is_deterministic() {
        let synth = SynthConfig { connections: 50, concurrent: 10, ..SynthConfig::default() };
        let mut file = Vec::new();
        synth::write_many_connections(&mut file, &synth).unwrap();
        let config = json(EventSet::All);
        let (lines, _) = read(&config, &file);
        assert!(lines.iter().filter(|l| l["event"] == "flow_new").count() == 50);
        assert!(lines.iter().filter_map(|l| l["seen"].as_str()).all(|s| s == "capture"));
        assert_eq!(read(&config, &file).0, lines);
    }

    /// The endpoint filter chooses what is printed, on the packets' path
    /// and on the deadlines' (`time_wait_expired`), and nothing else: the
    /// tracker and the reporter still see every flow.
    #[test]
    fn the_filter_prints_one_connections_events_and_tracks_them_all() {
        let synth = SynthConfig { connections: 50, concurrent: 10, ..SynthConfig::default() };
        let mut file = Vec::new();
        synth::write_many_connections(&mut file, &synth).unwrap();
        let (all, unfiltered) = read(&json(EventSet::Notable), &file);
        let one = all[7]["client"].as_str().unwrap().to_string();
        let mut config = json(EventSet::Notable);
        config.filter.clients = vec![one.parse().unwrap()];
        let (lines, outcome) = read(&config, &file);
        let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["time_wait", "time_wait_expired"], "{lines:?}");
        assert!(lines.iter().all(|l| l["client"] == one.as_str()));
        assert_eq!(outcome.counters, unfiltered.counters, "the tracker sees every segment");
        assert_eq!(outcome.open_flows, unfiltered.open_flows, "the reporter follows every flow");
        config.filter.clients.clear();
        config.filter.ports = vec![443];
        assert!(read(&config, &file).0.is_empty(), "no connection on 443");
    }

    /// Tables smaller than the capture's concurrency apply their eviction
    /// rules as the kernel's do: handshakes are evicted from full half-open
    /// sets, and their flows picked up again from their next segments.
    #[test]
    fn small_tables_evict_as_the_kernels_do() {
        let synth = SynthConfig { connections: 400, concurrent: 200, ..SynthConfig::default() };
        let mut file = Vec::new();
        synth::write_many_connections(&mut file, &synth).unwrap();
        let config = json(EventSet::Notable).with_capacity(crate::config::Capacity::new(16, 16));
        let (_, outcome) = read(&config, &file);
        assert!(outcome.counters[counters::HALF_OPEN_EVICTED as usize] > 0, "200 handshakes at once in 16 half-open slots");
        assert!(outcome.counters[counters::FLOWS_CREATED as usize] > 400, "evicted flows are picked up again");
        assert_eq!(outcome.stats.packets, 400 * PACKETS_PER_CONNECTION);
    }

    /// With `conn` records: exactly one final record per flow created,
    /// those closed in the capture with `end: fin`, those still open when
    /// it ends (here cut mid-way: the damage ends it) with `end:
    /// capture_end` at the last packet's time.
    #[test]
    fn every_flow_gets_one_final_conn_record_open_ones_at_the_capture_end() {
        let synth = SynthConfig { connections: 300, concurrent: 64, ..SynthConfig::default() };
        let mut file = Vec::new();
        synth::write_many_connections(&mut file, &synth).unwrap();
        file.truncate(file.len() * 2 / 3);
        let mut config = json(EventSet::Notable);
        config.report.events = crate::config::EventSets::of(&[EventSet::Conn]);
        let (lines, outcome) = read(&config, &file);
        assert!(matches!(outcome.error, Some(CaptureError::Truncated { .. })), "{:?}", outcome.error);
        let created = outcome.counters[counters::FLOWS_CREATED as usize];
        assert!(lines.iter().all(|l| l["event"] == "conn" && l.get("interim").is_none()));
        assert_eq!(lines.len() as u64, created, "one final record per flow created");
        let ends = |end: &str| lines.iter().filter(|l| l["end"] == end).count();
        assert!(ends("fin") > 100 && ends("capture_end") > 10, "fin {} capture_end {}", ends("fin"), ends("capture_end"));
        assert_eq!(ends("fin") + ends("capture_end"), lines.len());
        let last_packet = synth.start_ns + (outcome.stats.packets - 1) * synth.gap_ns;
        for l in lines.iter().filter(|l| l["end"] == "capture_end") {
            let end = ts_ns(l) as f64 + l["duration_s"].as_f64().unwrap() * 1e9;
            assert!((end - last_packet as f64).abs() < 2e3 + 1e3 * 1e3, "ends at the last packet: {l}");
        }
    }
}
