//! `tcp_track::run`: load, attach, drive the daemon until shutdown, detach.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, BufWriter},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::{error, info, warn};
use tcp_track_common::{counters, pinned::StateInfo};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    clock::{self, WallClock},
    config::{Config, RstPolicy},
    daemon::{Daemon, MAX_BATCH},
    events::Decoder,
    flows::PinnedTables,
    report::adopted_event,
    loader::{AttachedMode, Pinning, Tracker},
    metrics, output,
    pins::{self, Found, StateDir},
    preflight, stats,
    stats::Counters,
    tables::{self, FillCounter, KernelFlows},
};

/// How often the ring buffer is drained when the kernel has not woken us:
/// the longest an event waits before it is printed.
const BACKSTOP: Duration = Duration::from_millis(10);

/// Load, attach, stream events to stdout until `shutdown` resolves, detach.
/// Options are checked first (`Config::validate`: its `ConfigError` says
/// whether the command line or the host is at fault), then the metrics
/// address and the host (`preflight`), before anything is loaded.
pub async fn run<F: Future<Output = ()>>(mut config: Config, shutdown: F) -> Result<()> {
    config.validate()?;
    // Bound before anything is attached: a port in use stops us here.
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(
            metrics::bind(addr)
                .with_context(|| format!("--metrics-addr {addr}: cannot listen there (choose a free address and port)"))?,
        ),
        None => None,
    };
    let interfaces = preflight::check_all(&config.interfaces)?;
    let (pinning, adopted) = prepare_state(&config)?;
    // A state made here and not adopted is removed if the start fails
    // below: no half-made state for the next daemon to puzzle over.
    let mut start_guard = StartGuard(pinning.as_ref().filter(|_| adopted.is_none()).map(|p| p.dir.clone()));
    let mut tracker = Tracker::load_pinned(config.bpf_log, config.rst_policy, config.capacity, pinning)?;
    if let Some(p) = &tracker.pinning {
        let info = pins::owner_info(tracker.half_open.seed, tracker.half_open.set_mask, config.capacity.max_flows(), config.keep_state);
        p.dir.write_info(&info).context("recording the pinned state's layout")?;
        let kept = if config.keep_state { "; kept at exit (--keep-state)" } else { "; removed at exit" };
        info!("state pinned in {}{kept}", p.dir);
    }
    info!(
        "flow tables: {} established + {} half-open flows per address family, {} in kernel memory",
        config.capacity.max_flows(),
        config.capacity.half_open_slots(),
        stats::mib(stats::table_memory(&tracker.ebpf, &tables::NAMES))
    );
    for iface in interfaces.iter().filter(|i| config.liberal_interfaces.contains(&i.name)) {
        tracker.set_liberal(iface).with_context(|| format!("marking {} liberal", iface.name))?;
        info!("{}: liberal: only one direction is visible here, so no RST is dropped on it", iface.name);
    }
    if config.rst_policy != RstPolicy::Observe {
        info!("RST policy: {:?}: forged resets are dropped in XDP and reported with action \"dropped\"", config.rst_policy);
    }
    for iface in &interfaces {
        let a = tracker.attach(iface, config.xdp_mode, config.egress)?;
        let mode = match a.mode {
            AttachedMode::Native => "native (driver) mode",
            AttachedMode::Skb => "generic (skb) mode",
            AttachedMode::Kept => "kept mode",
        };
        let egress = if a.has_egress() { " + TC egress" } else { "" };
        let ids = a.link_ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        match a.mode {
            AttachedMode::Kept => info!("{}: XDP{egress} kept from the previous daemon: programs replaced in place (links {ids})", a.iface.name),
            _ if !ids.is_empty() => info!("{}: XDP attached in {mode}{egress} (links {ids}, pinned)", a.iface.name),
            _ => info!("{}: XDP attached in {mode}{egress}", a.iface.name),
        }
    }

    let events: RingBuf<MapData> = take_map(&mut tracker, "EVENTS")?;
    let counters = Counters::new(take_map::<PerCpuArray<MapData, u64>>(&mut tracker, "COUNTERS")?);
    let mut logger = match tracker.logger.take() {
        Some(l) => Some(watch(l).context("watching the kernel log ring buffer")?),
        None => None,
    };
    let ifnames: HashMap<u32, String> = interfaces.iter().map(|i| (i.index, i.name.clone())).collect();
    let decoder = Decoder::new(WallClock::now(), ifnames);
    let layout = tracker.half_open;
    let flows = KernelFlows::take(&mut tracker.ebpf, layout).context("taking the flow tables out of the eBPF object")?;
    let out = BufWriter::with_capacity(output::BUFFER, io::stdout().lock());
    let fill = match metrics_listener {
        Some(_) => Some(flows.reopen().context("opening the flow tables again to count their entries")?),
        None => None,
    };
    let mut daemon = Daemon::new(&config, decoder, flows, counters, out);
    if let (Some(info), Some(p)) = (adopted, &tracker.pinning) {
        let ifindex = interfaces.first().map_or(0, |i| i.index);
        report_adopted(&mut daemon, &info, &p.dir, ifindex)?;
    }
    if let Some(tables) = fill {
        daemon.count_tables(FillCounter::start(tables, Duration::from_secs(1)));
    }
    let mut ring = watch(events).context("watching the event ring buffer")?;
    let mut scrapes = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr().context("the metrics listener's address")?;
            let rx = metrics::serve(listener).context("serving metrics")?;
            info!("metrics: http://{addr}/metrics");
            Some(rx)
        }
        None => None,
    };

    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    info!("watching {}: press Ctrl-C to stop", names.join(", "));

    start_guard.0 = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel submits events without waking us (it wakes us only when the
    // ring fills up): drain on this short backstop timer.
    let mut backstop = tokio::time::interval(BACKSTOP);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_tick = config.stats_interval.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    tokio::pin!(shutdown);
    let result = loop {
        // Each step writes what it printed and flushes; the first that
        // cannot ends the loop.
        let step = tokio::select! {
            _ = &mut shutdown => break Ok(()),
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the event ring buffer")?;
                let drained = daemon.drain(guard.get_inner_mut());
                match drained {
                    Ok(n) if n < MAX_BATCH => guard.clear_ready(),
                    Ok(_) => tokio::task::yield_now().await,
                    Err(_) => {}
                }
                drained.map(drop)
            }
            guard = async { logger.as_mut().expect("guarded by if").readable_mut().await }, if logger.is_some() => {
                let mut guard = guard.context("waiting on the kernel log ring buffer")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
                Ok(())
            }
            _ = backstop.tick() => daemon.drain(ring.get_mut()).map(drop),
            _ = sleep_until_deadline(daemon.next_deadline()) => daemon.on_deadlines(clock::monotonic_ns()),
            _ = async { stats_tick.as_mut().expect("guarded by if").tick().await }, if stats_tick.is_some() => {
                info!("counters: {}", daemon.counters_line());
                Ok(())
            }
            _ = tick.tick() => daemon.on_tick(clock::monotonic_ns()),
            // A scrape: the snapshot is taken here, between two steps; the
            // scrape's task encodes it.
            Some(reply) = async { scrapes.as_mut().expect("guarded by if").recv().await }, if scrapes.is_some() => {
                let _ = reply.send(daemon.snapshot());
                Ok(())
            }
        };
        if let Err(e) = step {
            break Err(e);
        }
    };
    let kept = match tracker.pinning.clone() {
        Some(p) if config.keep_state => {
            let lost = daemon.snapshot().counters[counters::EVENTS_LOST as usize];
            let info = StateInfo { owner_pid: 0, events_lost_at_exit: lost, ..pins::owner_info(tracker.half_open.seed, tracker.half_open.set_mask, config.capacity.max_flows(), true) };
            if let Err(e) = p.dir.write_info(&info) {
                error!("recording the kept state: {e}");
            }
            Some(p.dir)
        }
        _ => None,
    };
    let failures = if kept.is_some() { tracker.keep_all() } else { tracker.detach_all() };
    for (iface, e) in failures {
        error!("{iface}: detaching failed: {e} (the link is closed when this process exits)");
    }
    match (&kept, &tracker.pinning) {
        (Some(dir), _) => info!("state kept in {dir}: the programs stay attached to {}; the next `tcp-track run` adopts it, `tcp-track detach` removes it", names.join(", ")),
        (None, Some(p)) => {
            info!("detached from {}", names.join(", "));
            // Our map handles are still open: the maps are freed when we exit.
            if let Err(e) = p.dir.remove() {
                error!("{e}");
            }
        }
        (None, None) => info!("detached from {}", names.join(", ")),
    }
    // Whatever is already in the ring buffer still gets printed, then,
    // unless the state is kept for the next daemon (which adopts these
    // connections and ends them in its turn), every connection still open
    // gets its final record, from the tables as the programs left them.
    let flushed = drain_all(&mut daemon, ring.get_mut()).and_then(|()| if kept.is_some() { Ok(()) } else { daemon.stop(clock::monotonic_ns()) });
    daemon.log_summary();

    match result.and(flushed) {
        Ok(()) => Ok(()),
        // A reader that went away (`tcp-track run | head`) is a normal end.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing events to stdout"),
    }
}

/// Drain the ring buffer until it is empty.
fn drain_all<L, C, W>(daemon: &mut Daemon<L, C, W>, ring: &mut RingBuf<MapData>) -> io::Result<()>
where
    L: crate::report::FlowLookup,
    C: stats::CounterSource,
    W: io::Write,
{
    while daemon.drain(ring)? == MAX_BATCH {}
    Ok(())
}

/// The instance's state directory, and what to do with what is pinned
/// there: adopt it (its layout record returned), or replace it, saying why.
/// Without bpffs a daemon that does not keep its state runs unpinned.
fn prepare_state(config: &Config) -> Result<(Option<Pinning>, Option<StateInfo>)> {
    let name = config.instance.clone().unwrap_or_else(|| pins::instance_name(&config.interfaces));
    let dir = StateDir::new(&config.state_dir, &name);
    if let Err(e) = dir.create() {
        if config.keep_state {
            return Err(e).context("--keep-state needs the state pinned");
        }
        warn!("state not pinned, so `tcp-track flows` cannot list this daemon's tables: {e}");
        return Ok((None, None));
    }
    let (max_flows, set_mask) = (config.capacity.max_flows(), config.capacity.half_open_set_mask());
    let keep = config.keep_state;
    match dir.inspect(max_flows, set_mask)? {
        Found::Nothing => Ok((Some(Pinning { dir, seed: None, keep }), None)),
        Found::Adoptable(info) => Ok((Some(Pinning { dir, seed: Some(info.half_open_seed), keep }), Some(info))),
        Found::Incompatible(why) => {
            warn!("{dir}: {why}; starting empty");
            dir.remove()?;
            dir.create()?;
            Ok((Some(Pinning { dir, seed: None, keep }), None))
        }
        Found::InUse(pid) => {
            bail!("{dir}: in use by a running tcp-track (pid {pid}); stop it first, or give this daemon another --instance or --state-dir")
        }
    }
}

/// Removes the state directory it holds when dropped (see `run`).
struct StartGuard(Option<StateDir>);

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = dir.remove();
        }
    }
}

/// What the daemon took over from the previous one, on stderr.
/// Its flows are followed from here on, their deadlines rebuilt from the
/// records (reported on the first interface: the tables do not say which
/// one a flow crossed).
fn report_adopted<L: crate::report::FlowLookup, W: io::Write>(daemon: &mut Daemon<L, Counters, W>, info: &StateInfo, dir: &StateDir, ifindex: u32) -> Result<()> {
    let tables = PinnedTables::open(dir.clone()).context("reading the adopted tables")?;
    let now = clock::monotonic_ns();
    let mut records = Vec::new();
    tables.scan_records(|family, lo, hi, rec, _| records.push(adopted_event(family, lo, hi, rec, ifindex, now)));
    let flows = daemon.adopt(records);
    let lost = daemon.snapshot().counters[counters::EVENTS_LOST as usize];
    let missed = if info.keep == tcp_track_common::pinned::KEEP_YES {
        format!("{} events lost while no daemon ran", lost.saturating_sub(info.events_lost_at_exit))
    } else {
        "the previous daemon did not stop cleanly (killed?): events it had not read are lost".to_string()
    };
    info!("adopted the pinned state: {flows} flows (their deadlines rebuilt), counters and unread events; {missed}");
    daemon.events_lost_seen(lost);
    Ok(())
}

/// Register a ring buffer's fd with the runtime.
fn watch<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: both ring buffers (aya's RingBuf, aya-log's EbpfLogger) own
    // their map fd for their whole lifetime and always return that same fd.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(|e| io::Error::other(e.to_string()))
}

fn take_map<T>(tracker: &mut Tracker, name: &str) -> Result<T>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = tracker.ebpf.take_map(name).with_context(|| format!("the eBPF object has no map {name}"))?;
    T::try_from(map).with_context(|| format!("map {name} has an unexpected type"))
}

/// Resolves at the daemon's next deadline (never, when there is none).
async fn sleep_until_deadline(deadline_ns: Option<u64>) {
    match deadline_ns {
        Some(at) => {
            let wait = Duration::from_nanos(at.saturating_sub(clock::monotonic_ns()));
            tokio::time::sleep(wait).await
        }
        None => std::future::pending().await,
    }
}
