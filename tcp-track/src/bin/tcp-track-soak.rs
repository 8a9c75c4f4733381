//! `cargo xtask soak [--minutes N]`: the daemon (release build) watching
//! the server's end of a veth pair between two namespaces while this
//! driver opens about 1,000 real connections a second through it, for N
//! minutes, of four kinds told apart by the server port they go to:
//!
//! - `closed` (85 %): a request, the client's FIN, the server's reply and
//!   FIN: an orderly close, the client in TIME_WAIT (`conn` record
//!   `end: fin`);
//! - `refused` (5 %): a SYN to a port nobody listens on, answered by a RST
//!   (`end: reset`, `reset_reason: refused`);
//! - `abort` (5 %): connected, then closed with SO_LINGER 0, a RST
//!   (`end: reset`, `reset_reason: abort`);
//! - `half_open` (5 %): a SYN to a port whose SYNs nftables drops in the
//!   server's namespace (after XDP saw them); the client gives up after
//!   2.5 s, before its second retransmission, so the tracker gives the
//!   handshake up (`end: half_open_timeout`) twice `--half-open-timeout`
//!   after it began.
//!
//! Every 10 s it prints a progress line with the daemon's resident memory
//! (VmRSS). At the end it waits for the last handshakes to be given up,
//! stops the daemon (SIGTERM, its pid) and prints the daemon's peak and
//! final memory, its memory at one minute against the final one
//! (flatness), events lost, the daemon's counters line, the driver's own
//! failures, and the accounting: every connection opened must have exactly
//! one `conn` record with the end its kind calls for. The driver completes
//! (or, for a half-open one, abandons) every connection before the daemon
//! stops, so none is still open then: a `stopped` record (the daemon's
//! record of a connection open at its stop) is a close the tracker missed,
//! shown in its own column and counted as a failure. A record `end:
//! evicted` (a half-open set full: 4 ways) accounts for its connection
//! too, as long as the kernel or the audit counted as many evictions; the
//! connection may then get a second record, when a retransmitted segment
//! of it (a SYN, 1 s later) is tracked anew, as the tracker is built to do
//! after it lost a flow: a record from the same client that begins within
//! `RETRACK_WINDOW` of the evicted one is that second record (`retracked`),
//! not another connection.
//!
//! The soak judges the tracker, not the machine: a connection of the
//! driver's that misbehaved (a timeout under load, an unexpected error) is
//! reported with its client address, and its record may end otherwise
//! (`excused`: a client that timed out and closed with unread data ends in
//! a RST, which is what the tracker must say); it must still have exactly
//! one record. An attempt that failed before its SYN left is not counted
//! as opened. Exits non-zero when the accounting fails or when the final
//! memory exceeds the memory at one minute by more than `MEMORY_TOLERANCE`
//! (when the run lasts longer than one minute), and when the run cannot
//! judge the tracker (the driver failed more than `MAX_FAILURES` times,
//! the daemon died or printed no counters). `--seconds` makes the short
//! run of the test suite (`tests/soak.rs`). Namespaces, the daemon and its
//! pins are
//! removed on every exit, Ctrl-C included.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::Value;
use socket2::{Domain, Socket, Type};
use tcp_track::test_support::netns::{enter_netns, is_root, set_linger_zero, Pair};

/// The driver's command line (`cargo xtask soak` passes it on).
#[derive(Parser)]
#[command(name = "tcp-track-soak", about = "Real connections through the daemon for N minutes; memory and accounting at the end")]
struct Args {
    /// How long to drive connections.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// How long to drive connections, in seconds (instead of `--minutes`:
    /// the short soak of the test suite).
    #[arg(long, conflicts_with = "minutes")]
    seconds: Option<u64>,
    /// Connections opened per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// The tcp-track binary (release build).
    #[arg(long)]
    daemon: PathBuf,
}

impl Args {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds.unwrap_or(self.minutes * 60))
    }
}

/// How much the daemon's final resident memory may exceed its memory at
/// one minute: 10 %, and at least 4 MiB (allocator noise on a small heap).
const MEMORY_TOLERANCE: f64 = 0.10;
const MEMORY_SLACK_KIB: u64 = 4096;

/// The daemon's timeouts: short, so that the flows it follows (TIME_WAIT
/// for 10 s, handshakes given up after 4 s) stay a few seconds' worth and
/// the last handshakes are given up soon after the driver stops.
const HALF_OPEN_TIMEOUT_S: u64 = 2;
const TIME_WAIT_TIMEOUT_S: u64 = 10;
/// When the driver closes a half-open socket: after the SYN's first
/// retransmission (1 s, Linux's initial RTO) and before its second (3 s).
const HALF_OPEN_HOLD: Duration = Duration::from_millis(2500);
/// How long after an evicted record's first segment a record from the
/// same client is the same connection tracked anew: longer than any of the
/// driver's connections lasts (`HALF_OPEN_HOLD`, 5 s timeouts), far
/// shorter than the time before a client port comes back (800 s for a
/// half-open one, tens of seconds for a port the kernel picks).
const RETRACK_WINDOW_S: f64 = 12.0;

/// The kinds of connection, by the server port they go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Closed,
    Refused,
    Abort,
    HalfOpen,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Closed, Kind::Refused, Kind::Abort, Kind::HalfOpen];

    /// The kind of the `n`th connection: 85 closed, 5 of each other in
    /// every 100, interleaved.
    fn of(n: u64) -> Kind {
        match n % 20 {
            5 => Kind::Refused,
            10 => Kind::Abort,
            15 => Kind::HalfOpen,
            _ => Kind::Closed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Closed => "closed",
            Kind::Refused => "refused",
            Kind::Abort => "abort",
            Kind::HalfOpen => "half_open",
        }
    }

    /// The `end` (and `reset_reason`) of its `conn` record.
    fn expected_end(self) -> &'static str {
        match self {
            Kind::Closed => "fin",
            Kind::Refused => "reset/refused",
            Kind::Abort => "reset/abort",
            Kind::HalfOpen => "half_open_timeout",
        }
    }
}

/// Server ports: closed connections spread over four listeners, so that
/// the client's TIME_WAITs (60 s in Linux) never exhaust its ports.
const CLOSED_PORTS: [u16; 4] = [8080, 8081, 8082, 8083];
const ABORT_PORT: u16 = 8090;
const REFUSED_PORT: u16 = 8091;
const DROPPED_PORT: u16 = 8092;

/// The client's address and ports for half-open connections (`Kind::HalfOpen`).
const HALF_OPEN_CLIENT: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 3);
const HALF_OPEN_PORTS: std::ops::Range<u16> = 20000..60000;

fn kind_of_port(port: u16) -> Option<Kind> {
    match port {
        p if CLOSED_PORTS.contains(&p) => Some(Kind::Closed),
        ABORT_PORT => Some(Kind::Abort),
        REFUSED_PORT => Some(Kind::Refused),
        DROPPED_PORT => Some(Kind::HalfOpen),
        _ => None,
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn main() {
    let args = Args::parse();
    match soak(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::exit(1);
        }
    }
}

fn say(what: &str) {
    eprintln!("soak: {what}");
}

/// The soak; `Ok(false)` when a check failed (said on stderr).
fn soak(args: &Args) -> Result<bool> {
    if !is_root() {
        bail!("the soak creates network namespaces and loads eBPF programs: run it as root (`cargo xtask soak` uses sudo)");
    }
    if args.duration().is_zero() || args.rate == 0 {
        bail!("--minutes (or --seconds) and --rate must be at least 1");
    }
    // SAFETY: handlers that only store to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    // Dropped last: the namespaces go after the daemon and the threads.
    let net = Pair::new("soak").context("creating the soak's network namespaces (needs iproute2)")?;
    setup(&net)?;
    say(&format!(
        "namespaces {} (client, {}) and {} (server, {}); tcp-track watches {} in the server's",
        net.a.name, net.a_end.v4, net.b.name, net.b_end.v4, net.b_end.ifname
    ));
    let state_dir = PathBuf::from(format!("/sys/fs/bpf/tcp-track-soak-{}", std::process::id()));
    let mut daemon = DaemonProc::start(&args.daemon, &net, &state_dir)?;
    say(&format!("daemon pid {} started; driving {} connections a second for {} s", daemon.pid, args.rate, args.duration().as_secs()));

    let stop = Arc::new(AtomicBool::new(false));
    let servers = start_servers(&net, &stop)?;
    let driver = Driver::start(&net, args.rate, stop.clone())?;

    let started = Instant::now();
    let run_for = args.duration();
    let mut rss = RssLog::default();
    let mut next_sample = started + Duration::from_secs(10);
    let mut daemon_died = false;
    while started.elapsed() < run_for && !interrupted() {
        thread::sleep(Duration::from_millis(100));
        if daemon.exited() {
            daemon_died = true;
            break;
        }
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            let at = started.elapsed();
            let kib = vm_rss_kib(daemon.pid).unwrap_or(0);
            rss.sample(at, kib);
            let opened = driver.opened();
            let total: u64 = opened.values().sum();
            say(&format!(
                "{:>5.0} s: {total} connections ({:.0}/s; {}), daemon RSS {:.1} MiB, conn records {}, events lost {}",
                at.as_secs_f64(),
                total as f64 / at.as_secs_f64(),
                Kind::ALL.iter().map(|k| format!("{} {}", k.name(), opened.get(k).unwrap_or(&0))).collect::<Vec<_>>().join(", "),
                kib as f64 / 1024.0,
                daemon.records.lock().expect("records").total,
                daemon.last_counter("events_lost").map_or("?".into(), |v| v.to_string()),
            ));
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (opened, failures) = driver.finish();
    if !daemon_died && !interrupted() {
        // The last half-open connections are given up twice the timeout
        // after their SYN; a little more for the daemon's next tick.
        say("driver stopped; waiting for the last handshakes to be given up");
        let until = Instant::now() + Duration::from_secs(2 * HALF_OPEN_TIMEOUT_S + 3);
        while Instant::now() < until && !interrupted() {
            thread::sleep(Duration::from_millis(100));
        }
    }
    let final_kib = vm_rss_kib(daemon.pid).unwrap_or(0);
    rss.sample(elapsed, final_kib);
    let status = daemon.stop();
    drop(servers);
    let _ = std::fs::remove_dir_all(&state_dir);
    drop(net);
    if interrupted() {
        say("interrupted; everything removed");
        return Ok(false);
    }
    if daemon_died {
        say(&format!("the daemon exited on its own ({status:?}):\n{}", daemon.stderr_tail()));
        return Ok(false);
    }
    Ok(report(args, elapsed, &opened, &failures, &rss, final_kib, &daemon))
}

/// The summary, and whether every check passed.
fn report(args: &Args, elapsed: Duration, opened: &BTreeMap<Kind, u64>, failures: &Failures, rss: &RssLog, final_kib: u64, daemon: &DaemonProc) -> bool {
    let mut ok = true;
    let total: u64 = opened.values().sum();
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    println!("soak: {} s at a target of {}/s", args.duration().as_secs(), args.rate);
    println!("connections opened: {total} in {:.0} s ({:.0}/s)", elapsed.as_secs_f64(), total as f64 / elapsed.as_secs_f64());
    println!("daemon RSS: at 1 min {}, peak {}, final {}", rss.at_one_minute().map_or("n/a (shorter run)".into(), mib), mib(rss.peak()), mib(final_kib));
    match rss.at_one_minute() {
        Some(one) if elapsed > Duration::from_secs(75) => {
            let limit = one + ((one as f64 * MEMORY_TOLERANCE) as u64).max(MEMORY_SLACK_KIB);
            let flat = final_kib <= limit;
            println!(
                "memory after the first minute: final {} vs {} at 1 min ({:+.1} %; tolerance +10 %, at least 4 MiB): {}",
                mib(final_kib),
                mib(one),
                (final_kib as f64 / one as f64 - 1.0) * 100.0,
                if flat { "flat" } else { "GROWING" }
            );
            ok &= flat;
        }
        _ => println!("memory after the first minute: not judged (the run was too short: it needs more than 75 s)"),
    }
    let counters = daemon.exit_counters();
    match counters.get("events_lost") {
        Some(lost) => println!("events lost: {lost}"),
        None => {
            println!("events lost: unknown (no counters line at exit)");
            ok = false;
        }
    }
    println!("daemon counters: {}", daemon.last_counters_line().unwrap_or_default());
    failures.summarize(total);
    let records = daemon.records.lock().expect("records");
    let evictions = ["half_open_evicted", "flows_vanished"].iter().filter_map(|c| counters.get(*c)).sum::<u64>();
    let accounting = account(opened, &records, failures, evictions);
    accounting.print();
    ok &= accounting.ok();
    println!("every connection accounted for: {}", if accounting.ok() { "yes" } else { "NO" });
    ok
}

/// A connection of the driver's own that did not behave as its kind
/// should (a timeout, an unexpected error): what the endpoints did then is
/// not what the kind says, so its `conn` record may end otherwise. The
/// tracker is still judged on it: the connection must have exactly one
/// record, found by its client address and port.
#[derive(Clone, Debug)]
struct Failure {
    kind: Kind,
    client: SocketAddr,
    error: String,
}

/// The driver's failures. Bounded: past `MAX_FAILURES` the run shows too
/// little of the tracker to be judged, and fails as such.
#[derive(Default)]
struct Failures {
    list: Vec<Failure>,
    /// Failures past `MAX_FAILURES`, and attempts that failed before any
    /// segment left (no socket, no port): neither can be matched to a
    /// record, and the latter need none.
    overflow: u64,
    not_sent: u64,
    /// The first of those, as said.
    first_not_sent: Option<String>,
}

const MAX_FAILURES: usize = 100_000;

impl Failures {
    fn push(&mut self, failure: Failure) {
        if self.list.len() < 10 {
            eprintln!("soak: a {} connection from {} failed: {}", failure.kind.name(), failure.client, failure.error);
        }
        if self.list.len() < MAX_FAILURES {
            self.list.push(failure);
        } else {
            self.overflow += 1;
        }
    }

    fn not_sent(&mut self, kind: Kind, error: &std::io::Error) {
        if self.not_sent == 0 {
            eprintln!("soak: a {} connection could not be started: {error}", kind.name());
            self.first_not_sent = Some(format!("{}: {error}", kind.name()));
        }
        self.not_sent += 1;
    }

    fn summarize(&self, opened: u64) {
        let n = self.list.len() as u64 + self.overflow;
        println!(
            "driver: {n} of its connections failed ({:.3} %), {} attempts failed before sending anything (not counted as opened)",
            n as f64 * 100.0 / opened.max(1) as f64,
            self.not_sent
        );
        let mut by_error: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for f in &self.list {
            *by_error.entry((f.kind.name(), f.error.as_str())).or_default() += 1;
        }
        for ((kind, error), count) in by_error.iter().take(10) {
            println!("  {count} {kind}: {error}");
        }
        if let Some(first) = &self.first_not_sent {
            println!("  the first attempt that sent nothing: {first}");
        }
    }
}

/// The accounting of one kind of connection: every connection opened has
/// one `conn` record, which ends as its kind calls for (`matched`), says
/// the tables had no room for it (`evicted`), or ends otherwise on a
/// connection the driver saw fail (`excused`); anything else is the
/// tracker's miss. A connection whose record said `evicted` may have a
/// second record (`retracked`), which accounts for nothing more.
#[derive(Debug, Default, PartialEq, Eq)]
struct Row {
    opened: u64,
    matched: u64,
    evicted: u64,
    excused: u64,
    retracked: u64,
    /// `end: stopped`: open at the daemon's stop although the driver had
    /// ended every connection (a close the tracker missed).
    open_at_stop: u64,
    /// Other ends, not explained by a driver failure.
    other: u64,
}

impl Row {
    fn ok(&self) -> bool {
        self.matched + self.evicted + self.excused == self.opened && self.open_at_stop == 0 && self.other == 0
    }
}

#[derive(Debug)]
struct Accounting {
    rows: BTreeMap<Kind, Row>,
    /// Records with `end: evicted`, and the evictions the kernel and the
    /// audit counted (`half_open_evicted + flows_vanished`): an evicted
    /// record accounts for its connection only if it was counted.
    evicted: u64,
    evictions_counted: u64,
    /// Records of connections the driver did not open (unknown server port).
    unknown: u64,
    /// The driver failed past `MAX_FAILURES`: too few connections judged.
    too_many_failures: bool,
    /// Unexplained records, as printed (the first few).
    odd: Vec<String>,
}

/// Match the daemon's records against the connections opened and the
/// driver's failures.
fn account(opened: &BTreeMap<Kind, u64>, records: &Records, failures: &Failures, evictions_counted: u64) -> Accounting {
    // A record that ends unlike its kind is excused by a failure of the
    // same kind from the same client address and port, once each.
    let mut failed: HashMap<(Kind, SocketAddr), u64> = HashMap::new();
    for f in &failures.list {
        *failed.entry((f.kind, f.client)).or_default() += 1;
    }
    let mut rows: BTreeMap<Kind, Row> = Kind::ALL.iter().map(|&k| (k, Row { opened: opened.get(&k).copied().unwrap_or(0), ..Row::default() })).collect();
    for (kind, ends) in &records.by_kind {
        let row = rows.entry(*kind).or_default();
        row.matched += ends.get(kind.expected_end()).copied().unwrap_or(0);
        row.evicted += ends.get("evicted").copied().unwrap_or(0);
        row.other += records.odd_overflow.get(kind).copied().unwrap_or(0);
    }
    for (kind, n) in &records.retracked {
        rows.entry(*kind).or_default().retracked += n;
    }
    let mut odd = Vec::new();
    for r in &records.odd {
        let row = rows.entry(r.kind).or_default();
        let excuse = r.client.and_then(|c| failed.get_mut(&(r.kind, c))).filter(|n| **n > 0);
        match excuse {
            Some(n) => {
                *n -= 1;
                row.excused += 1;
            }
            None => {
                if r.end == "stopped" {
                    row.open_at_stop += 1;
                } else {
                    row.other += 1;
                }
                if odd.len() < 12 {
                    odd.push(r.line.clone());
                }
            }
        }
    }
    let evicted = records.evicted;
    Accounting { rows, evicted, evictions_counted, unknown: records.unknown, too_many_failures: failures.overflow > 0, odd }
}

impl Accounting {
    fn ok(&self) -> bool {
        self.rows.values().all(Row::ok) && self.evicted <= self.evictions_counted && self.unknown == 0 && !self.too_many_failures
    }

    fn print(&self) {
        println!("accounting (conn records by server port kind and end; every connection was over before the daemon stopped, so none may be open at its stop; a record of a connection the driver saw fail may end otherwise: excused):");
        println!(
            "  {:<10} {:>9} {:>18} {:>9} {:>8} {:>8} {:>9} {:>12} {:>7}",
            "kind", "opened", "expected end", "matched", "evicted", "excused", "retracked", "open at stop", "other"
        );
        for (kind, r) in &self.rows {
            println!(
                "  {:<10} {:>9} {:>18} {:>9} {:>8} {:>8} {:>9} {:>12} {:>7} {}",
                kind.name(),
                r.opened,
                kind.expected_end(),
                r.matched,
                r.evicted,
                r.excused,
                r.retracked,
                r.open_at_stop,
                r.other,
                if r.ok() { "ok" } else { "MISMATCH" }
            );
        }
        if self.evicted > self.evictions_counted {
            println!(
                "  {} evicted records, but the kernel and the audit counted {} evictions (half_open_evicted + flows_vanished)",
                self.evicted, self.evictions_counted
            );
        }
        for line in &self.odd {
            println!("    {line}");
        }
        if self.unknown > 0 {
            println!("  {} conn records of connections the driver did not open", self.unknown);
        }
        if self.too_many_failures {
            println!("  the driver failed more than {MAX_FAILURES} times: too few connections behaved for the tracker to be judged");
        }
    }
}

/// The namespaces' settings: the client's ports, its second address, the
/// server's nftables rule dropping SYNs to `DROPPED_PORT`.
fn setup(net: &Pair) -> Result<()> {
    // 60 s of TIME_WAITs at ~900 closes a second: the whole port range,
    // and four server ports to spread them over.
    net.a.sysctl("net.ipv4.ip_local_port_range=1024 65535").context("widening the client's port range")?;
    net.a.ip(&["addr", "add", &format!("{HALF_OPEN_CLIENT}/24"), "dev", &net.a_end.ifname]).context("adding the half-open client's address")?;
    net.b.sysctl("net.core.somaxconn=4096").context("raising the server's listen backlog")?;
    net.b
        .nft(&format!(
            "add table inet soak; add chain inet soak input {{ type filter hook input priority 0; policy accept; }}; add rule inet soak input tcp dport {DROPPED_PORT} drop"
        ))
        .context("adding the nftables rule that drops SYNs to the half-open port (needs nftables)")?;
    Ok(())
}

/// The daemon, started in the server's namespace, its stdout (JSON `conn`
/// records) counted and its stderr kept.
struct DaemonProc {
    child: Option<Child>,
    pid: i32,
    records: Arc<Mutex<Records>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    counters: Arc<Mutex<Option<String>>>,
}

/// `conn` records counted by the kind of their server port and their end.
#[derive(Default)]
struct Records {
    total: u64,
    by_kind: BTreeMap<Kind, BTreeMap<String, u64>>,
    unknown: u64,
    /// Every record whose end is not its kind's (`stopped` ones too), to be
    /// matched against the driver's failures; past `MAX_ODD`, only counted
    /// (as unexplained).
    odd: Vec<OddRecord>,
    odd_overflow: BTreeMap<Kind, u64>,
    /// Records that ended `evicted`, second records included.
    evicted: u64,
    /// The first segment's time (seconds since the epoch) of each client's
    /// last evicted record, until a second record of it comes.
    evicted_at: HashMap<(Kind, SocketAddr), f64>,
    /// Second records of evicted connections (`RETRACK_WINDOW_S`).
    retracked: BTreeMap<Kind, u64>,
}

/// A record that ended unlike its kind.
struct OddRecord {
    kind: Kind,
    client: Option<SocketAddr>,
    end: String,
    line: String,
}

const MAX_ODD: usize = 2 * MAX_FAILURES;

impl Records {
    fn count(&mut self, line: &str) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { return };
        if v["event"] != "conn" || v.get("interim").is_some() {
            return;
        }
        self.total += 1;
        let addr = |field: &str| v[field].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
        let Some(kind) = addr("server").and_then(|s| kind_of_port(s.port())) else {
            self.unknown += 1;
            return;
        };
        let end = v["end"].as_str().unwrap_or("none");
        let end = match v["reset_reason"].as_str() {
            Some(reason) if end == "reset" => format!("reset/{reason}"),
            _ => end.to_string(),
        };
        let client = addr("client");
        let evicted = end == "evicted";
        if evicted {
            self.evicted += 1;
        }
        // The first segment's time, read only where an eviction makes it
        // matter (a million records go through here).
        let began = || v["ts"].as_str().and_then(|ts| humantime::parse_rfc3339_weak(ts).ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs_f64());
        let involved = client.filter(|c| evicted || self.evicted_at.contains_key(&(kind, *c)));
        if let Some((c, began)) = involved.and_then(|c| began().map(|b| (c, b))) {
            // A second record of an evicted connection: its own end must
            // still be its kind's (or another eviction).
            let second = self.evicted_at.get(&(kind, c)).is_some_and(|&at| began >= at && began - at <= RETRACK_WINDOW_S);
            if second {
                self.evicted_at.remove(&(kind, c));
            }
            if evicted {
                self.evicted_at.insert((kind, c), began);
            }
            if second && (evicted || end == kind.expected_end()) {
                *self.retracked.entry(kind).or_default() += 1;
                return;
            }
        }
        if end != kind.expected_end() && end != "evicted" {
            if self.odd.len() < MAX_ODD {
                self.odd.push(OddRecord { kind, client, end: end.clone(), line: line.to_string() });
            } else {
                *self.odd_overflow.entry(kind).or_default() += 1;
            }
        }
        *self.by_kind.entry(kind).or_default().entry(end).or_default() += 1;
    }
}

impl DaemonProc {
    fn start(binary: &Path, net: &Pair, state_dir: &Path) -> Result<DaemonProc> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.b.name])
            .arg(binary)
            .args(["run", "--iface", &net.b_end.ifname, "--format", "json", "--events", "conn"])
            .args(["--half-open-timeout", &format!("{HALF_OPEN_TIMEOUT_S}s"), "--time-wait-timeout", &format!("{TIME_WAIT_TIMEOUT_S}s")])
            // One server, hundreds of half-open connections by design: not a flood.
            .args(["--syn-flood-threshold", "1000000", "--time-wait-pressure", "1000000", "--max-flows", "262144"])
            .args(["--stats-interval", "10s", "--state-dir"])
            .arg(state_dir)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        // `ip netns exec` execs the program in its own process: this pid
        // is the daemon's.
        let pid = child.id() as i32;
        let records = Arc::new(Mutex::new(Records::default()));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let counters = Arc::new(Mutex::new(None));
        let out = child.stdout.take().expect("piped");
        let sink = records.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().expect("records").count(&line);
            }
        });
        let err = child.stderr.take().expect("piped");
        let (lines, last) = (stderr.clone(), counters.clone());
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("watching ") {
                    let _ = ready_tx.send(());
                }
                if let Some((_, c)) = line.split_once("counters: ") {
                    *last.lock().expect("counters") = Some(c.to_string());
                } else if !line.contains(" info: ") || line.contains("lost") {
                    eprintln!("[daemon] {line}");
                }
                let mut l = lines.lock().expect("stderr");
                if l.len() == 200 {
                    l.pop_front();
                }
                l.push_back(line);
            }
        });
        let mut d = DaemonProc { child: Some(child), pid, records, stderr, counters };
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(()) => Ok(d),
            Err(_) => {
                d.stop();
                bail!("the daemon did not start watching:\n{}", d.stderr_tail())
            }
        }
    }

    fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// SIGTERM by its pid, then wait (30 s, then SIGKILL) for it to exit.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                // Let the reader threads take the last lines.
                thread::sleep(Duration::from_millis(300));
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr.lock().expect("stderr").iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn last_counters_line(&self) -> Option<String> {
        self.counters.lock().expect("counters").clone()
    }

    fn last_counter(&self, name: &str) -> Option<u64> {
        parse_counters(&self.last_counters_line()?).get(name).copied()
    }

    /// The counters of the line it printed at exit (the last one).
    fn exit_counters(&self) -> BTreeMap<String, u64> {
        self.last_counters_line().map(|l| parse_counters(&l)).unwrap_or_default()
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `name=value ...` of a counters line.
fn parse_counters(line: &str) -> BTreeMap<String, u64> {
    line.split_whitespace().filter_map(|w| w.split_once('=')).filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?))).collect()
}

/// VmRSS of `pid`, in KiB.
fn vm_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The daemon's memory, sampled every 10 s.
#[derive(Default)]
struct RssLog {
    samples: Vec<(Duration, u64)>,
}

impl RssLog {
    fn sample(&mut self, at: Duration, kib: u64) {
        if kib > 0 {
            self.samples.push((at, kib));
        }
    }

    fn peak(&self) -> u64 {
        self.samples.iter().map(|s| s.1).max().unwrap_or(0)
    }

    /// The first sample at or after one minute.
    fn at_one_minute(&self) -> Option<u64> {
        self.samples.iter().find(|(at, _)| *at >= Duration::from_secs(60)).map(|s| s.1)
    }
}

/// The server's listeners (threads accepting in the server's namespace).
struct Servers {
    threads: Vec<thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Listeners on the closed ports (read the request to its end, reply,
/// close) and on the abort port (read until the client's RST).
fn start_servers(net: &Pair, stop: &Arc<AtomicBool>) -> Result<Servers> {
    let ip = net.b_end.v4;
    let mut threads = Vec::new();
    for port in CLOSED_PORTS.iter().chain([&ABORT_PORT]) {
        let port = *port;
        let listener = net.b.enter(move || TcpListener::bind(SocketAddrV4::new(ip, port)))??;
        // Non-blocking accept, so that the threads see `stop`.
        listener.set_nonblocking(true)?;
        let listener = Arc::new(listener);
        for _ in 0..2 {
            let (l, stop) = (listener.clone(), stop.clone());
            threads.push(thread::spawn(move || serve(&l, &stop)));
        }
    }
    Ok(Servers { threads, stop: stop.clone() })
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut n = 0;
                // Read to the client's FIN (or its RST), then reply and close.
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                if n > 0 {
                    let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nsoak\n");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(Duration::from_micros(200)),
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// The client side: a pacer handing out connection numbers at the rate,
/// workers making them in the client's namespace, a reaper closing
/// half-open sockets after `HALF_OPEN_HOLD`.
struct Driver {
    opened: Arc<[AtomicU64; 4]>,
    failures: Arc<Mutex<Failures>>,
    threads: Vec<thread::JoinHandle<()>>,
}

const WORKERS: usize = 12;

impl Driver {
    fn start(net: &Pair, rate: u64, stop: Arc<AtomicBool>) -> Result<Driver> {
        let opened: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let failures: Arc<Mutex<Failures>> = Arc::default();
        let (tx, rx) = mpsc::sync_channel::<u64>(4096);
        let rx = Arc::new(Mutex::new(rx));
        let half_open: Arc<Mutex<VecDeque<(Instant, Socket)>>> = Arc::default();
        let server = net.b_end.v4;
        let ns = net.a.path();
        let (entered_tx, entered_rx) = mpsc::channel();
        let mut threads = Vec::new();
        for _ in 0..WORKERS {
            let (rx, opened, failures, half_open, ns, entered) = (rx.clone(), opened.clone(), failures.clone(), half_open.clone(), ns.clone(), entered_tx.clone());
            threads.push(thread::spawn(move || {
                let _ = entered.send(enter_netns(&ns).map_err(|e| format!("a worker could not enter {ns}: {e}")));
                loop {
                    let next = rx.lock().expect("tickets").recv();
                    let Ok(n) = next else { break };
                    let kind = Kind::of(n);
                    match connection(kind, n, server, &half_open) {
                        Ok(()) => {
                            opened[kind as usize].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Attempt::NotSent(e)) => failures.lock().expect("failures").not_sent(kind, &e),
                        Err(Attempt::Failed(client, e)) => {
                            opened[kind as usize].fetch_add(1, Ordering::Relaxed);
                            failures.lock().expect("failures").push(Failure { kind, client, error: e.to_string() });
                        }
                    }
                }
            }));
        }
        // A worker outside the client's namespace would connect from the
        // soak's own: that is the soak's failure, not a connection's.
        for _ in 0..WORKERS {
            if let Err(e) = entered_rx.recv().context("a worker ended before entering the client's namespace")? {
                stop.store(true, Ordering::SeqCst);
                drop(tx);
                bail!(e);
            }
        }
        let reaper_stop = stop.clone();
        threads.push(thread::spawn(move || loop {
            let done = reaper_stop.load(Ordering::Relaxed);
            {
                let mut q = half_open.lock().expect("half-open");
                while q.front().is_some_and(|(at, _)| done || at.elapsed() >= HALF_OPEN_HOLD) {
                    q.pop_front();
                }
                if done && q.is_empty() {
                    break;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }));
        threads.push(thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    if tx.send(n).is_err() {
                        return;
                    }
                    n += 1;
                }
                thread::sleep(Duration::from_millis(1));
            }
        }));
        Ok(Driver { opened, failures, threads })
    }

    fn opened(&self) -> BTreeMap<Kind, u64> {
        Kind::ALL.iter().map(|&k| (k, self.opened[k as usize].load(Ordering::Relaxed))).collect()
    }

    /// Wait for the pacer, workers and reaper to end (the caller set
    /// `stop`); the connections opened by kind, and the failures.
    fn finish(mut self) -> (BTreeMap<Kind, u64>, Failures) {
        // The pacer ends first; its channel closing ends the workers.
        for t in self.threads.drain(..).rev() {
            let _ = t.join();
        }
        let failures = std::mem::take(&mut *self.failures.lock().expect("failures"));
        (self.opened(), failures)
    }
}

/// How a connection attempt went wrong.
enum Attempt {
    /// Before any segment left: no socket, no address (no record due).
    NotSent(std::io::Error),
    /// After its SYN left from `client`: its record may end otherwise.
    Failed(SocketAddr, std::io::Error),
}

/// Start a connection to `to` from a port the kernel picks (or from
/// `from`), without waiting for the handshake (`established`). The client
/// address is known as soon as the SYN leaves, so a failure after that
/// names it.
fn connect(from: Option<SocketAddr>, to: SocketAddr) -> Result<(SocketAddr, Socket), Attempt> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(Attempt::NotSent)?;
    if let Some(from) = from {
        s.bind(&from.into()).map_err(Attempt::NotSent)?;
    }
    s.set_nonblocking(true).map_err(Attempt::NotSent)?;
    match s.connect(&to.into()) {
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(Attempt::NotSent(e)),
        Ok(()) => {}
    }
    let client = s.local_addr().ok().and_then(|a| a.as_socket()).ok_or_else(|| Attempt::NotSent(std::io::Error::other("no local address after connect")))?;
    Ok((client, s))
}

/// Wait up to `timeout` for `s`'s handshake to end; its error if it failed.
fn established(s: &Socket, timeout: Duration) -> std::io::Result<()> {
    let mut fd = libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
    // SAFETY: one pollfd, owned here.
    let n = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no SYN-ACK within the timeout"));
    }
    match s.take_error()? {
        Some(e) => Err(e),
        None => s.set_nonblocking(false),
    }
}

/// Make connection `n`, of kind `kind`, to `server`. Half-open sockets
/// go to `half_open`, which the reaper closes.
fn connection(kind: Kind, n: u64, server: std::net::Ipv4Addr, half_open: &Mutex<VecDeque<(Instant, Socket)>>) -> Result<(), Attempt> {
    let timeout = Duration::from_secs(5);
    let port = match kind {
        Kind::Closed => CLOSED_PORTS[(n / 20) as usize % CLOSED_PORTS.len()],
        Kind::Refused => REFUSED_PORT,
        Kind::Abort => ABORT_PORT,
        Kind::HalfOpen => DROPPED_PORT,
    };
    let to = SocketAddr::from((server, port));
    // Half-open connections come from an address of their own, each from
    // the next port: a port the kernel chose could come back for another
    // handshake to the same port while the tracker still follows the last
    // one (no TIME_WAIT after SYN_SENT), and two connections would be one
    // flow. This way a port comes back after 800 s.
    let from = (kind == Kind::HalfOpen).then(|| {
        let span = u64::from(HALF_OPEN_PORTS.end - HALF_OPEN_PORTS.start);
        SocketAddr::from((HALF_OPEN_CLIENT, HALF_OPEN_PORTS.start + ((n / 20) % span) as u16))
    });
    let (client, s) = connect(from, to)?;
    let failed = |e: std::io::Error| Attempt::Failed(client, e);
    match kind {
        Kind::Closed => {
            established(&s, timeout).map_err(failed)?;
            let mut s = TcpStream::from(s);
            s.set_read_timeout(Some(timeout)).map_err(failed)?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(failed)?;
            // The client closes first (RFC 9293 §3.6): it ends in TIME_WAIT.
            s.shutdown(Shutdown::Write).map_err(failed)?;
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).map_err(failed)?;
            if reply.is_empty() {
                return Err(failed(std::io::Error::other("no reply before the server's FIN")));
            }
            Ok(())
        }
        Kind::Refused => match established(&s, timeout) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(failed(e)),
            Ok(()) => Err(failed(std::io::Error::other("the refused port accepted a connection"))),
        },
        Kind::Abort => {
            established(&s, timeout).map_err(failed)?;
            set_linger_zero(s.as_raw_fd()).map_err(failed)?;
            drop(s);
            Ok(())
        }
        Kind::HalfOpen => {
            half_open.lock().expect("half-open").push_back((Instant::now(), s));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `conn` record as the daemon prints it (the fields the soak reads).
    fn record(client: &str, server_port: u16, end: &str, reason: Option<&str>) -> String {
        let reason = reason.map_or(String::new(), |r| format!(r#","reset_reason":"{r}""#));
        format!(r#"{{"event":"conn","client":"{client}","server":"198.18.0.2:{server_port}","end":"{end}"{reason}}}"#)
    }

    fn opened(closed: u64, refused: u64, abort: u64, half_open: u64) -> BTreeMap<Kind, u64> {
        [(Kind::Closed, closed), (Kind::Refused, refused), (Kind::Abort, abort), (Kind::HalfOpen, half_open)].into()
    }

    fn failure(kind: Kind, client: &str) -> Failure {
        Failure { kind, client: client.parse().unwrap(), error: "timed out".into() }
    }

    fn records(lines: &[String]) -> Records {
        let mut r = Records::default();
        for l in lines {
            r.count(l);
        }
        r
    }

    #[test]
    fn every_kind_ending_as_it_should_is_accounted_for() {
        let r = records(&[
            record("198.18.0.1:40000", 8080, "fin", None),
            record("198.18.0.1:40001", 8091, "reset", Some("refused")),
            record("198.18.0.1:40002", 8090, "reset", Some("abort")),
            record("198.18.0.3:20000", 8092, "half_open_timeout", None),
            // Interim records are not ends.
            r#"{"event":"conn","interim":true,"client":"198.18.0.1:40003","server":"198.18.0.2:8080","end":"fin"}"#.into(),
        ]);
        let a = account(&opened(1, 1, 1, 1), &r, &Failures::default(), 0);
        assert!(a.ok(), "{a:?}");
        assert_eq!(a.rows[&Kind::Closed], Row { opened: 1, matched: 1, ..Row::default() });
    }

    #[test]
    fn a_missing_record_or_a_wrong_end_is_the_trackers_miss() {
        let r = records(&[record("198.18.0.1:40000", 8080, "fin", None)]);
        assert!(!account(&opened(2, 0, 0, 0), &r, &Failures::default(), 0).ok(), "a connection without a record");
        let r = records(&[record("198.18.0.1:40000", 8080, "reset", Some("abort"))]);
        let a = account(&opened(1, 0, 0, 0), &r, &Failures::default(), 0);
        assert!(!a.ok());
        assert_eq!(a.rows[&Kind::Closed].other, 1);
        assert_eq!(a.odd.len(), 1, "the unexplained record is shown");
        let r = records(&[record("198.18.0.1:40000", 8080, "stopped", None)]);
        let a = account(&opened(1, 0, 0, 0), &r, &Failures::default(), 0);
        assert_eq!(a.rows[&Kind::Closed].open_at_stop, 1);
        assert!(!a.ok(), "a close the tracker missed");
        let r = records(&[record("198.18.0.1:40000", 8080, "fin", None), record("198.18.0.1:40000", 8080, "fin", None)]);
        assert!(!account(&opened(1, 0, 0, 0), &r, &Failures::default(), 0).ok(), "two records for one connection");
        let r = records(&[record("198.18.0.1:40000", 9999, "fin", None)]);
        assert!(!account(&opened(0, 0, 0, 0), &r, &Failures::default(), 0).ok(), "a record of a connection nobody opened");
    }

    #[test]
    fn a_driver_failure_excuses_one_odd_end_of_its_own_connection_only() {
        let mut failures = Failures::default();
        failures.push(failure(Kind::Closed, "198.18.0.1:40000"));
        // The client timed out and closed with unread data: a RST.
        let r = records(&[record("198.18.0.1:40000", 8080, "reset", Some("abort")), record("198.18.0.1:40001", 8080, "fin", None)]);
        let a = account(&opened(2, 0, 0, 0), &r, &failures, 0);
        assert!(a.ok(), "{a:?}");
        assert_eq!(a.rows[&Kind::Closed].excused, 1);
        // Another connection's odd end is not excused by it...
        let r = records(&[record("198.18.0.1:40000", 8080, "fin", None), record("198.18.0.1:40001", 8080, "reset", Some("abort"))]);
        assert!(!account(&opened(2, 0, 0, 0), &r, &failures, 0).ok());
        // ...nor a second odd record from the same port, nor one of another kind.
        let r = records(&[record("198.18.0.1:40000", 8080, "reset", Some("abort")), record("198.18.0.1:40000", 8080, "reset", Some("abort"))]);
        assert!(!account(&opened(2, 0, 0, 0), &r, &failures, 0).ok());
        let r = records(&[record("198.18.0.1:40000", 8090, "fin", None)]);
        assert!(!account(&opened(0, 0, 1, 0), &r, &failures, 0).ok());
        // A failed connection still needs its record.
        let r = records(&[record("198.18.0.1:40001", 8080, "fin", None)]);
        assert!(!account(&opened(2, 0, 0, 0), &r, &failures, 0).ok());
    }

    #[test]
    fn evicted_records_count_only_as_far_as_evictions_were_counted() {
        let r = records(&[record("198.18.0.3:20000", 8092, "evicted", None), record("198.18.0.3:20001", 8092, "half_open_timeout", None)]);
        assert!(account(&opened(0, 0, 0, 2), &r, &Failures::default(), 1).ok());
        assert!(!account(&opened(0, 0, 0, 2), &r, &Failures::default(), 0).ok());
    }

    /// A record with its first segment's time (`ts`).
    fn record_at(client: &str, server_port: u16, end: &str, ts: &str) -> String {
        record(client, server_port, end, None).replace(r#""event":"conn","#, &format!(r#""event":"conn","ts":"{ts}","#))
    }

    #[test]
    fn an_evicted_connection_tracked_anew_is_one_connection() {
        // The half-open set was full: the first SYN's flow evicted, the
        // retransmitted SYN (1 s later) tracked anew until given up.
        let first = record_at("198.18.0.3:20000", 8092, "evicted", "2026-12-01T10:00:00.000000Z");
        let second = record_at("198.18.0.3:20000", 8092, "half_open_timeout", "2026-12-01T10:00:01.000000Z");
        let other = record_at("198.18.0.3:20001", 8092, "half_open_timeout", "2026-12-01T10:00:01.000000Z");
        let a = account(&opened(0, 0, 0, 2), &records(&[first.clone(), second.clone(), other.clone()]), &Failures::default(), 1);
        assert!(a.ok(), "{a:?}");
        assert_eq!(a.rows[&Kind::HalfOpen], Row { opened: 2, matched: 1, evicted: 1, retracked: 1, ..Row::default() });
        // Evicted twice: one connection, two evictions to be counted.
        let again = record_at("198.18.0.3:20000", 8092, "evicted", "2026-12-01T10:00:01.000000Z");
        let third = record_at("198.18.0.3:20000", 8092, "half_open_timeout", "2026-12-01T10:00:03.000000Z");
        let r = records(&[first.clone(), again, third, other.clone()]);
        assert!(account(&opened(0, 0, 0, 2), &r, &Failures::default(), 2).ok());
        assert!(!account(&opened(0, 0, 0, 2), &r, &Failures::default(), 1).ok(), "an eviction nobody counted");
        // Without the eviction, two records of one client are two connections.
        let r = records(&[second.clone(), record_at("198.18.0.3:20000", 8092, "half_open_timeout", "2026-12-01T10:00:02.000000Z"), other.clone()]);
        assert!(!account(&opened(0, 0, 0, 2), &r, &Failures::default(), 0).ok());
        // A record from the same client long after is another connection
        // (the port came back): the evicted one accounts for its own.
        let later = record_at("198.18.0.3:20000", 8092, "half_open_timeout", "2026-12-01T10:13:20.000000Z");
        let a = account(&opened(0, 0, 0, 3), &records(&[first.clone(), later, other.clone()]), &Failures::default(), 1);
        assert!(a.ok(), "{a:?}");
        assert_eq!(a.rows[&Kind::HalfOpen].retracked, 0);
        // A second record with a wrong end is still the tracker's miss,
        // and so is a third one.
        let wrong = record_at("198.18.0.3:20000", 8092, "stopped", "2026-12-01T10:00:01.000000Z");
        assert!(!account(&opened(0, 0, 0, 2), &records(&[first.clone(), wrong, other.clone()]), &Failures::default(), 1).ok());
        let r = records(&[first, second.clone(), second, other]);
        assert!(!account(&opened(0, 0, 0, 2), &r, &Failures::default(), 1).ok());
    }

    #[test]
    fn too_many_driver_failures_make_the_run_unjudgeable() {
        let mut failures = Failures::default();
        for i in 0..=MAX_FAILURES {
            failures.push(failure(Kind::Closed, &format!("198.18.0.1:{}", 1024 + i % 60000)));
        }
        assert!(!account(&opened(0, 0, 0, 0), &Records::default(), &failures, 0).ok());
    }
}
