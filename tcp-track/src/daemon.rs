//! The running daemon's state in one place: the decoder, the reporter (and
//! through it the flow tables), the writer and its output, and the kernel's
//! counters. `runner` drives it from its event loop, one method per step;
//! `snapshot` gives readers that will come (a metrics endpoint, a flow
//! listing) a consistent picture of it, taken between two steps.
//!
//! Nothing here needs BPF: the records come from anything that is
//! `Records` and the counters from anything that is `CounterSource`, so the
//! daemon runs in tests on a queue of records and a fake table.

use std::{
    collections::VecDeque,
    io::{self, Write},
    ops::Deref,
};

use aya::maps::{ring_buf::RingBufItem, MapData, RingBuf};
use log::{info, warn};
use tcp_track_common::{conn::quiet_ns, counters, event::FlowEvent, flow::FlowRecord};

use crate::{
    config::Config,
    events::{split_record, DecodeError, Decoder, Endpoint, Event},
    filter::Filter,
    follow::InterfaceCounts,
    output::Writer,
    report::{adopted_event, CatchUp, FlowLookup, ReportSnapshot, Reporter, Walks},
    stats::{self, CounterSource, Totals},
    tables::{FillCounter, TableFill},
    vocab::{EndReason, EventKind},
};

/// Records handled per wake-up before yielding to the runtime, so a busy
/// ring buffer cannot starve signal handling.
pub const MAX_BATCH: usize = 4096;

/// Tracked flows checked against the kernel tables each second (a map
/// lookup each: a few milliseconds of CPU at most).
pub const AUDIT_PER_SECOND: usize = 2000;

/// After events were lost, the tables' walk (`Daemon::on_tick`) waits for
/// a tick without new losses, so that it runs once the storm has passed
/// and the ring buffer is drained; under losses that do not stop, it runs
/// every this many ticks all the same.
pub const RESYNC_MAX_WAIT: u32 = 10;

/// Flows whose last segment is more recent than this are left out of the
/// tables' walk: that segment's events may still be in the ring buffer.
pub const RESYNC_RECENT_NS: u64 = 1_000_000_000;

/// Where raw event records come from: the kernel's ring buffer, or a
/// test's queue.
pub trait Records {
    type Record<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// The next record, if one is there. The ring buffer's slot is given
    /// back when the record is dropped.
    fn next_record(&mut self) -> Option<Self::Record<'_>>;

    /// The next record split into its event and, for a connection's end,
    /// its flow record (`events::split_record`). A source that holds them
    /// typed (a capture's tracker) gives them as they are, not through
    /// bytes.
    fn next_split(&mut self) -> Option<Result<(FlowEvent, Option<FlowRecord>), DecodeError>> {
        let item = self.next_record()?;
        Some(split_record(&item))
    }
}

impl Records for RingBuf<MapData> {
    type Record<'a> = RingBufItem<'a>;

    fn next_record(&mut self) -> Option<RingBufItem<'_>> {
        self.next()
    }
}

impl Records for VecDeque<Vec<u8>> {
    type Record<'a> = Vec<u8>;

    fn next_record(&mut self) -> Option<Vec<u8>> {
        self.pop_front()
    }
}

/// The daemon at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The kernel's counters, summed over CPUs, indexed like
    /// `tcp_track_common::counters` (names: `counters::NAMES`).
    pub counters: Totals,
    /// What the reporter follows: flows by state, half-open connections,
    /// floods in progress, TIME_WAIT pressure alerts, flows vanished,
    /// events held back by the rate limit.
    pub report: ReportSnapshot,
    /// Lines printed, by event kind (every kind, in `EventKind::ALL` order).
    pub printed: Vec<(EventKind, u64)>,
    /// The kernel tables' entries and capacity, as last counted (empty
    /// unless `Daemon::count_tables` was given a counter).
    pub tables: Vec<TableFill>,
    /// Interfaces attached now, and attach and detach events so far (as
    /// the runner last said, `Daemon::interfaces_changed`).
    pub interfaces: InterfaceCounts,
    /// The tables' walks after lost events (`Daemon::resync`).
    pub walks: Walks,
}

impl Snapshot {
    /// `tcp_segments=... flows_vanished=N`: the kernel's counters, and
    /// the flows the daemon found gone from the tables without a close
    /// (evictions of followed flows; half-open evictions are also counted
    /// by the kernel, in `half_open_evicted`). The stderr line; the metrics
    /// endpoint encodes the same snapshot.
    pub fn counters_line(&self) -> String {
        format!("{} flows_vanished={}", stats::format(&self.counters), self.report.vanished)
    }
}

/// The running daemon: everything its loop's steps read and change.
pub struct Daemon<L: FlowLookup, C: CounterSource, W: Write> {
    decoder: Decoder,
    reporter: Reporter<L>,
    writer: Writer,
    out: W,
    counters: C,
    /// `events_lost` when it was last warned about.
    lost_reported: u64,
    /// Counts the kernel tables' entries (for the metrics endpoint only).
    tables: Option<FillCounter>,
    /// Which events are printed, by their endpoints (`Config::filter`).
    filter: Filter,
    /// The interfaces side of the snapshot.
    interfaces: InterfaceCounts,
    /// Events were lost and the tables' walk has not run since: for how
    /// many ticks (`RESYNC_MAX_WAIT`).
    resync_due: Option<u32>,
    /// What the tables' walks after losses caught up with, in total.
    walks: Walks,
}

impl<L: FlowLookup, C: CounterSource, W: Write> Daemon<L, C, W> {
    /// A daemon reporting as `config` says on `flows`, decoding records
    /// with `decoder` (whose clock the reporter shares), writing to `out`.
    pub fn new(config: &Config, decoder: Decoder, flows: L, counters: C, out: W) -> Self {
        let reporter = Reporter::new(config.report.clone(), flows, *decoder.clock());
        let filter = config.filter.clone();
        Daemon { decoder, reporter, writer: Writer::new(config.format), out, counters, lost_reported: 0, tables: None, filter, resync_due: None, walks: Walks::default(), interfaces: InterfaceCounts::default() }
    }

    /// Up to `MAX_BATCH` records: decoded, reported, written, flushed.
    /// Returns how many were read.
    pub fn drain<R: Records>(&mut self, ring: &mut R) -> io::Result<usize> {
        let (n, res) = drain_filtered(ring, &self.decoder, &mut self.reporter, &self.filter, &mut self.writer, &mut self.out);
        self.flushed(res)?;
        Ok(n)
    }

    /// When the reporter's next deadline falls (monotonic ns), if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.reporter.next_deadline()
    }

    /// The deadlines due at `now` (monotonic ns), and what they print.
    pub fn on_deadlines(&mut self, now: u64) -> io::Result<()> {
        let events = self.reporter.on_time(now);
        self.write_all(&events)
    }

    /// Once a second: the audit's slice of the tracked flows (flows
    /// evicted from the kernel tables without a close are found and
    /// forgotten), and a warning if the ring buffer lost events. After
    /// losses, once a tick passes without new ones (or every
    /// `RESYNC_MAX_WAIT` ticks while they go on), a walk of the tables
    /// catches up with the flows whose events were lost (`resync`).
    pub fn on_tick(&mut self, now: u64) -> io::Result<()> {
        let events = self.reporter.audit(now, AUDIT_PER_SECOND);
        self.write_all(&events)?;
        let lost = self.counters.read()[counters::EVENTS_LOST as usize];
        let losing = lost > self.lost_reported;
        if losing {
            warn!("{} events lost: the ring buffer was full (total {lost})", lost - self.lost_reported);
            self.lost_reported = lost;
        }
        match self.resync_due {
            Some(waited) if losing && waited + 1 < RESYNC_MAX_WAIT => self.resync_due = Some(waited + 1),
            Some(_) => {
                self.resync_due = None;
                self.resync(now)?;
            }
            None if losing => self.resync_due = Some(0),
            None => {}
        }
        Ok(())
    }

    /// Walk the kernel tables and catch up with every flow whose events
    /// were lost (`Reporter::catch_up`), leaving out those seen in the last
    /// `RESYNC_RECENT_NS`; says on stderr what it found.
    pub fn resync(&mut self, now: u64) -> io::Result<()> {
        // The walk's own cost, in wall time (the daemon's, not the flows').
        let started = std::time::Instant::now();
        let flows = self.reporter.lookup().open_flows();
        let ifindex = self.decoder.first_ifindex();
        let mut did = CatchUp::default();
        let mut out = Vec::new();
        for (id, rec) in &flows {
            if quiet_ns(rec, now) < RESYNC_RECENT_NS {
                continue;
            }
            let raw = adopted_event(id.family, (&id.lo_addr, id.lo_port), (&id.hi_addr, id.hi_port), rec, ifindex, now);
            let Ok(ev) = self.decoder.event(&raw) else { continue };
            let (events, one) = self.reporter.catch_up(&raw, &ev, rec, now);
            out.extend(events);
            did.add(one);
        }
        let took = started.elapsed();
        info!(
            "after the events lost, a walk of the tables ({} flows, {:.1} ms) caught up with {} flows not followed and {} whose state had moved on, and wrote {} conn records of connections whose end was lost",
            flows.len(),
            took.as_secs_f64() * 1e3,
            did.adopted,
            did.moved,
            did.ended
        );
        self.walks.walks += 1;
        self.walks.flows_walked += flows.len() as u64;
        self.walks.seconds += took.as_secs_f64();
        self.walks.caught_up.add(did);
        self.write_all(&out)
    }

    /// What the tables' walks after losses caught up with, in total.
    pub fn caught_up(&self) -> CatchUp {
        self.walks.caught_up
    }

    /// Follow the flows of an adopted table (`report::adopted_event`
    /// records), their deadlines armed; returns how many.
    pub fn adopt(&mut self, records: impl IntoIterator<Item = FlowEvent>) -> usize {
        let mut n = 0;
        for raw in records {
            if let Ok(ev) = self.decoder.event(&raw) {
                self.reporter.adopt(&raw, &ev);
                n += 1;
            }
        }
        n
    }

    /// `events_lost` already accounted for (a total inherited with an
    /// adopted state): only losses after it are warned about.
    pub fn events_lost_seen(&mut self, total: u64) {
        self.lost_reported = total;
    }

    /// The counters line of stderr, from a snapshot (`Snapshot::counters_line`).
    pub fn counters_line(&self) -> String {
        self.snapshot().counters_line()
    }

    /// Report the kernel tables' fill, as `counter` counts it, in
    /// `Snapshot::tables`.
    pub fn count_tables(&mut self, counter: FillCounter) {
        self.tables = Some(counter);
    }

    /// An interface was attached (`index` is `name` in events from now
    /// on) or let go: `counts` are the new figures.
    pub fn interfaces_changed(&mut self, counts: InterfaceCounts, attached: Option<(u32, &str)>) {
        if let Some((index, name)) = attached {
            self.decoder.name_interface(index, name);
        }
        self.interfaces = counts;
    }

    /// Everything the daemon counts, at this instant.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            counters: self.counters.read(),
            report: self.reporter.snapshot(),
            printed: self.writer.printed(),
            tables: self.tables.as_ref().map(FillCounter::latest).unwrap_or_default(),
            interfaces: self.interfaces.clone(),
            walks: self.walks,
        }
    }

    /// The last words on stderr: the counters, and what the user may want
    /// to change if flows vanished or events were held back.
    pub fn log_summary(&self) {
        let snap = self.snapshot();
        info!("counters: {}", snap.counters_line());
        let r = &snap.report;
        if r.vanished > 0 {
            info!("{} flows vanished from the kernel tables without a close (evicted: raise --max-flows or --max-half-open)", r.vanished);
        }
        if r.suppressed > 0 {
            info!("{} events not printed: a flow exceeded its rate limit ({} per second)", r.suppressed, self.reporter.config().per_flow_rate);
        }
    }

    pub fn reporter(&self) -> &Reporter<L> {
        &self.reporter
    }

    /// The daemon stops at `now` (after its last drain): the final `conn`
    /// record of every connection still open (`Reporter::stop`), if
    /// `conn` records are printed.
    pub fn stop(&mut self, now: u64) -> io::Result<()> {
        self.end_all(now, EndReason::Stopped)
    }

    /// `stop` with another reason for the open connections' end: a
    /// capture's reader ends them with `EndReason::CaptureEnd` at the last
    /// packet's time.
    pub fn end_all(&mut self, now: u64, end: EndReason) -> io::Result<()> {
        if !self.reporter.config().events.conn {
            return Ok(());
        }
        let events = self.reporter.end_all(now, self.decoder.first_ifname(), end);
        self.write_all(&events)
    }

    /// Write `events` and flush: every step's output reaches the reader
    /// when the step ends.
    fn write_all(&mut self, events: &[Event]) -> io::Result<()> {
        let shown = self.reporter.config().events;
        let res = events
            .iter()
            .filter(|ev| shown.shows(ev.event) && passes(&self.filter, ev))
            .try_for_each(|ev| self.writer.write(&mut self.out, ev));
        self.flushed(res)
    }

    fn flushed(&mut self, written: io::Result<()>) -> io::Result<()> {
        written.and_then(|()| self.out.flush())
    }
}

/// Handle up to `MAX_BATCH` records: decode, report, write (not flushed).
/// Returns how many were read. Public so that the benchmark measures this
/// very path.
pub fn drain<R: Records, W: Write, L: FlowLookup>(
    ring: &mut R,
    decoder: &Decoder,
    reporter: &mut Reporter<L>,
    writer: &mut Writer,
    out: &mut W,
) -> (usize, io::Result<()>) {
    drain_filtered(ring, decoder, reporter, &Filter::default(), writer, out)
}

/// `drain`, printing only the events `filter` passes. Every record still
/// goes through the reporter: what it follows and counts (the metrics,
/// SYN floods and TIME_WAIT pressure, deadlines) is the same whatever the
/// filter; only the lines written are fewer.
pub fn drain_filtered<R: Records, W: Write, L: FlowLookup>(
    ring: &mut R,
    decoder: &Decoder,
    reporter: &mut Reporter<L>,
    filter: &Filter,
    writer: &mut Writer,
    out: &mut W,
) -> (usize, io::Result<()>) {
    let mut n = 0;
    let shown = reporter.config().events;
    let printed = |ev: &Event| shown.shows(ev.event) && passes(filter, ev);
    while n < MAX_BATCH {
        let Some(split) = ring.next_split() else { break };
        n += 1;
        let (raw, conn) = match split {
            Ok(parts) => parts,
            Err(e) => {
                warn!("skipping a ring-buffer record: {e}");
                continue;
            }
        };
        let written = match conn {
            // One per connection: the reporter's own path.
            Some(rec) => {
                let events = reporter.on_conn_end(&raw, &rec, decoder.ifname(raw.ifindex));
                events.iter().filter(|ev| printed(ev)).try_for_each(|ev| writer.write(out, ev))
            }
            None => match reporter.on_event(&raw, decoder) {
                Ok(events) => events.filter(printed).try_for_each(|ev| writer.write(out, &ev)),
                Err(e) => {
                    warn!("skipping a ring-buffer record: {e}");
                    Ok(())
                }
            },
        };
        if let Err(e) = written {
            return (n, Err(e));
        }
    }
    (n, Ok(()))
}

/// Whether `filter` passes `ev`, judged on the endpoints it names: a
/// connection's client and server, a client address and a server
/// (`time_wait_pressure`), a server alone (`syn_flood`).
fn passes(filter: &Filter, ev: &Event) -> bool {
    if filter.is_empty() {
        return true;
    }
    let (ip, port) = match ev.client {
        Some(Endpoint::Socket(c)) => (Some(c.ip()), Some(c.port())),
        Some(Endpoint::Host(ip)) => (Some(ip), None),
        None => (None, None),
    };
    filter.matches_parts(ip, port, ev.server)
}

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        collections::HashMap,
        rc::Rc,
        time::{Duration, SystemTime},
    };

    use tcp_track_common::{
        event::{EVENT_FLOW_NEW, EVENT_RST, EVENT_STATE},
        state::{RESET_REFUSED, STATE_CLOSE, STATE_ESTABLISHED, STATE_SYN_SENT},
        tcp,
    };

    use super::*;
    use crate::{
        clock::WallClock,
        config::Format,
        report::{self, tests::FakeTable},
        vocab::ConnState,
    };

    /// Counters a test sets.
    #[derive(Clone, Default)]
    struct Fixed(Rc<Cell<Totals>>);

    impl CounterSource for Fixed {
        fn read(&self) -> Totals {
            self.0.get()
        }
    }

    /// A record of the flow 198.18.0.1:`port` -> 198.18.0.2:80, as the
    /// ring buffer holds it.
    fn raw(kind: u16, port: u16, old: u8, new: u8) -> Vec<u8> {
        let mut e = report::tests::raw(kind, port, 5_000_000_000, true, tcp::SYN, old, new);
        if kind == EVENT_RST {
            e.reset = RESET_REFUSED;
        }
        bytemuck::bytes_of(&e).to_vec()
    }

    fn daemon(counters: Fixed) -> Daemon<FakeTable, Fixed, Vec<u8>> {
        daemon_showing(counters, crate::config::EventSets::default())
    }

    fn daemon_showing(counters: Fixed, events: crate::config::EventSets) -> Daemon<FakeTable, Fixed, Vec<u8>> {
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), 0);
        let decoder = Decoder::new(clock, HashMap::from([(3, "veth0".to_string())]));
        let mut config = Config::new(vec!["veth0".into()]);
        config.format = Format::Json;
        config.report.events = events;
        Daemon::new(&config, decoder, FakeTable::default(), counters, Vec::new())
    }

    #[test]
    fn records_become_lines_and_the_snapshot_counts_them() {
        let counters = Fixed::default();
        let mut d = daemon(counters.clone());
        let mut ring: VecDeque<Vec<u8>> = VecDeque::from([
            raw(EVENT_FLOW_NEW, 40000, 0, STATE_SYN_SENT),
            raw(EVENT_RST, 40000, STATE_SYN_SENT, STATE_CLOSE),
            raw(EVENT_FLOW_NEW, 40001, 0, STATE_SYN_SENT),
            raw(EVENT_STATE, 40001, STATE_SYN_SENT, STATE_ESTABLISHED),
            vec![0u8; 3],
        ]);
        assert_eq!(d.drain(&mut ring).unwrap(), 5, "the short record is read and skipped");
        let out = String::from_utf8(d.out.clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "only the reset is notable: {out}");
        assert!(lines[0].contains(r#""event":"reset""#) && lines[0].contains(r#""reason":"refused""#), "{out}");

        let mut totals = [0u64; counters::COUNT as usize];
        totals[counters::TCP_SEGMENTS as usize] = 4;
        counters.0.set(totals);
        let snap = d.snapshot();
        assert_eq!(snap.counters[counters::TCP_SEGMENTS as usize], 4);
        let printed: Vec<_> = snap.printed.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(printed, [&(EventKind::Reset, 1)]);
        let by_state: Vec<_> = snap.report.flows_by_state.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(by_state, [&(ConnState::Established, 1), &(ConnState::Close, 1)]);
        assert_eq!(snap.report.tracked_flows, 2);
        assert_eq!(snap.report.half_open, 0, "both handshakes ended");
        assert!(snap.report.floods.is_empty() && snap.report.pressure_alerts.is_empty());
    }

    /// `--port 40001`: only that flow's lines are printed, while the
    /// snapshot (what `/metrics` serves) still counts both flows.
    #[test]
    fn the_filter_leaves_out_lines_not_what_the_daemon_counts() {
        let mut d = daemon(Fixed::default());
        d.filter.ports = vec![40001];
        let mut ring: VecDeque<Vec<u8>> = VecDeque::from([
            raw(EVENT_FLOW_NEW, 40000, 0, STATE_SYN_SENT),
            raw(EVENT_RST, 40000, STATE_SYN_SENT, STATE_CLOSE),
            raw(EVENT_FLOW_NEW, 40001, 0, STATE_SYN_SENT),
            raw(EVENT_RST, 40001, STATE_SYN_SENT, STATE_CLOSE),
        ]);
        d.drain(&mut ring).unwrap();
        let out = String::from_utf8(d.out.clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(r#""client":"198.18.0.1:40001""#), "{out}");
        let snap = d.snapshot();
        assert_eq!(snap.report.tracked_flows, 2);
        let refused = snap.report.resets.iter().find(|(c, ..)| *c == crate::vocab::ResetClass::Refused).unwrap();
        assert_eq!(refused.1, 2, "both resets counted");
        assert_eq!(snap.printed.iter().map(|(_, n)| n).sum::<u64>(), 1, "one line printed");
    }

    #[test]
    fn lost_events_are_warned_about_once_per_increase_and_counted_in_the_line() {
        let counters = Fixed::default();
        let mut d = daemon(counters.clone());
        let mut totals = [0u64; counters::COUNT as usize];
        totals[counters::EVENTS_LOST as usize] = 7;
        counters.0.set(totals);
        d.on_tick(1).unwrap();
        assert_eq!(d.lost_reported, 7);
        assert!(d.counters_line().contains("events_lost=7"));
        assert!(d.counters_line().ends_with(" flows_vanished=0"));
    }

    /// Events lost: the tables' walk waits for a tick without new losses,
    /// then writes the record of a connection whose every event was lost
    /// (here one ended in TIME_WAIT), once.
    #[test]
    fn after_losses_the_tables_are_walked_once_a_tick_passes_without_new_ones() {
        use tcp_track_common::{
            flow::{coarse_time, FlowRecord},
            state::STATE_TIME_WAIT,
        };

        use crate::config::EventSet;

        let counters = Fixed::default();
        let mut d = daemon_showing(counters.clone(), crate::config::EventSets::of(&[EventSet::Notable, EventSet::Conn]));
        let s = 1_000_000_000u64;
        let raw = report::tests::raw(EVENT_FLOW_NEW, 40000, s, true, tcp::SYN, 0, STATE_SYN_SENT);
        let rec = FlowRecord { state: STATE_TIME_WAIT, initiator: raw.initiator, first_ns: s, last_seen: coarse_time(2 * s), ..FlowRecord::default() };
        d.reporter.lookup_mut().insert(report::FlowId::of(&raw), rec);
        let mut totals = [0u64; counters::COUNT as usize];
        totals[counters::EVENTS_LOST as usize] = 5;
        counters.0.set(totals);
        d.on_tick(10 * s).unwrap();
        assert!(d.out.is_empty(), "no walk while losing");
        d.on_tick(11 * s).unwrap();
        let out = String::from_utf8(d.out.clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(r#""event":"conn""#) && out.contains(r#""end":"fin""#), "{out}");
        assert_eq!(d.caught_up(), CatchUp { adopted: 1, moved: 0, ended: 1 });
        d.on_tick(12 * s).unwrap();
        assert_eq!(String::from_utf8(d.out.clone()).unwrap(), out, "once");
    }

    /// The kernel's records as the shared table logic writes them (the host
    /// tracker, fed crafted frames), through the daemon's drain: a
    /// connection closed by the client and one refused give one `conn`
    /// line each, as many as flows were created; with `--events conn`
    /// nothing else is printed.
    #[test]
    fn the_shared_logics_records_become_one_conn_line_per_connection() {
        use tcp_track_common::{event::EVENT_CONN_END, host::HostTracker};

        use crate::{config::EventSet, test_support::frames::{tcp_segment, Tcp}};

        let (c, c2, s) = ("198.18.0.1:40000".parse().unwrap(), "198.18.0.1:40001".parse().unwrap(), "198.18.0.2:80".parse().unwrap());
        let seg = |from, to, flags, seq, ack, payload| tcp_segment(from, to, [2; 6], Tcp { flags, seq, ack, window: 1000, payload, ..Tcp::default() }).unwrap();
        let frames = [
            seg(c, s, "S", 100, 0, 0),
            seg(s, c, "SA", 500, 101, 0),
            seg(c, s, "A", 101, 501, 0),
            seg(c, s, "A", 101, 501, 10),
            seg(s, c, "A", 501, 111, 20),
            seg(c, s, "FA", 111, 521, 0),
            seg(s, c, "FA", 521, 112, 0),
            seg(c, s, "A", 112, 522, 0),
            seg(c2, s, "S", 7000, 0, 0),
            seg(s, c2, "RA", 0, 7001, 0),
        ];
        let mut tracker = HostTracker::new(1024, 64, 1);
        let mut ring = VecDeque::new();
        for (i, f) in frames.iter().enumerate() {
            let mut events = Vec::new();
            tracker.segment(&f[..], 3, tcp_track_common::event::HOOK_XDP, 5_000_000_000 + i as u64 * 1_000_000, &mut events);
            let mut conns = tracker.take_conn_ends().into_iter();
            for e in events {
                ring.push_back(if e.kind == EVENT_CONN_END { bytemuck::bytes_of(&conns.next().unwrap()).to_vec() } else { bytemuck::bytes_of(&e).to_vec() });
            }
        }
        let counters = Fixed::default();
        let mut d = daemon_showing(counters, EventSet::Conn.into());
        d.drain(&mut ring).unwrap();
        d.stop(6_000_000_000).unwrap();
        let out = String::from_utf8(d.out.clone()).unwrap();
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len() as u64, tracker.counters()[counters::FLOWS_CREATED as usize], "one per flow created: {out}");
        let fields = |j: &serde_json::Value, k: &[&str]| k.iter().map(|k| j[*k].to_string()).collect::<Vec<_>>().join(" ");
        let keys = ["event", "client", "conn_state", "end", "closer", "client_bytes", "server_bytes", "client_packets", "server_packets", "state"];
        assert_eq!(fields(&lines[0], &keys), r#""conn" "198.18.0.1:40000" "SF" "fin" "client" 10 20 5 3 "TIME_WAIT""#);
        assert_eq!(lines[0]["duration_s"], 0.007, "first to last segment");
        assert_eq!((lines[0]["syn_to_synack_us"].as_u64(), lines[0]["synack_to_ack_us"].as_u64()), (Some(1000), Some(1000)));
        let keys = ["client", "conn_state", "end", "reset_reason", "reset_from", "client_packets", "server_packets", "state"];
        assert_eq!(fields(&lines[1], &keys), r#""198.18.0.1:40001" "REJ" "reset" "refused" "server" 1 1 "CLOSE""#);
    }

    /// A reader that went away: the step fails with its error, for the
    /// runner to tell a broken pipe from a real failure.
    #[test]
    fn a_write_error_ends_the_step() {
        struct Gone;
        impl Write for Gone {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH, 0);
        let mut d = Daemon::new(&Config::new(vec![]), Decoder::new(clock, HashMap::new()), FakeTable::default(), Fixed::default(), Gone);
        let mut ring = VecDeque::from([raw(EVENT_RST, 1, STATE_ESTABLISHED, STATE_CLOSE)]);
        assert_eq!(d.drain(&mut ring).unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }
}
