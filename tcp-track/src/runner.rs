//! `tcp_track::run`: load, attach, drive the daemon until shutdown, detach.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, BufWriter},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::{debug, error, info, warn};
use tcp_track_common::{counters, pinned::StateInfo};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    clock::{self, WallClock},
    config::{Config, IfaceSelector, RstPolicy},
    daemon::{Daemon, MAX_BATCH},
    events::Decoder,
    flows::PinnedTables,
    follow::{Action, Follower, Gone},
    links::{self, Changes, LinkEvents},
    report::adopted_event,
    loader::{AttachedMode, Pinning, Tracker},
    metrics, output,
    pins::{self, Found, StateDir},
    preflight::{self, Interface},
    stats,
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
    // Names must exist now (patterns may match nothing yet). Subscribe to
    // link changes before listing the links, so that none is missed.
    let selected = config.iface_selectors();
    let named: Vec<String> = selected.iter().filter(|w| !w.is_pattern()).map(ToString::to_string).collect();
    preflight::check_all(&named)?;
    let link_events = LinkEvents::open().context("subscribing to the kernel's link changes (netlink)")?;
    let mut link_events = watch(link_events).context("watching the kernel's link changes")?;
    let present = links::present().context("listing the network interfaces")?;
    let (pinning, adopted) = prepare_state(&config)?;
    // A state made here and not adopted is removed if the start fails
    // below: no half-made state for the next daemon to puzzle over.
    let mut start_guard = StartGuard(pinning.as_ref().filter(|_| adopted.is_none()).map(|p| p.dir.clone()));
    let mut tracker = Tracker::load_pinned(config.bpf_log, config.rst_policy, config.capacity, pinning)?;
    if let Some(p) = &tracker.pinning {
        let info = pins::owner_info(tracker.layout.seed, tracker.layout.set_mask, config.capacity.max_flows(), config.keep_state);
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
    if config.rst_policy != RstPolicy::Observe {
        info!("RST policy: {:?}: forged resets are dropped in XDP and reported with action \"dropped\"", config.rst_policy);
    }
    let liberal = config.liberal_selectors();
    let mut follower = Follower::new(selected.clone());
    // In the order of the command line (the first interface names the
    // records of flows adopted from a previous daemon).
    let attach = |a| match a {
        Action::Attach { iface, .. } => Some(iface),
        _ => None,
    };
    let mut start: Vec<Interface> = follower.resync(&present).into_iter().filter_map(attach).collect();
    start.sort_by_key(|i| selected.iter().position(|w| w.matches(&i.name)));
    for iface in start {
        match attach_one(&mut tracker, &iface, &config, &liberal) {
            Ok(how) => {
                info!("{}: {how}", iface.name);
                follower.attached(iface);
            }
            // A name asked for by name must be watched; one a pattern
            // found is skipped, as when it appears later.
            Err(e) if named.contains(&iface.name) => return Err(e),
            Err(e) => {
                follower.attach_failed(&iface);
                warn!("{} (ifindex {}) matches --iface but cannot be watched: {e:#}; skipped", iface.name, iface.index);
            }
        }
    }
    for pattern in selected.iter().filter(|w| w.is_pattern()) {
        if follower.interfaces().iter().any(|i| pattern.matches(&i.name)) {
            continue;
        }
        match present.iter().any(|i| pattern.matches(&i.name)) {
            true => info!("--iface {pattern}: none of the interfaces it matches could be attached: waiting for more matching it"),
            false => info!("--iface {pattern}: no interface matches it yet: waiting for interfaces matching it"),
        }
    }

    let events: RingBuf<MapData> = take_map(&mut tracker, "EVENTS")?;
    let counters = Counters::new(take_map::<PerCpuArray<MapData, u64>>(&mut tracker, "COUNTERS")?);
    let mut logger = match tracker.logger.take() {
        Some(l) => Some(watch(l).context("watching the kernel log ring buffer")?),
        None => None,
    };
    let ifnames: HashMap<u32, String> = follower.interfaces().iter().map(|i| (i.index, i.name.clone())).collect();
    let decoder = Decoder::new(WallClock::now(), ifnames);
    let layout = tracker.layout;
    let flows = KernelFlows::take(&mut tracker.ebpf, layout).context("taking the flow tables out of the eBPF object")?;
    let out = BufWriter::with_capacity(output::BUFFER, io::stdout().lock());
    let fill = match metrics_listener {
        Some(_) => Some(flows.reopen().context("opening the flow tables again to count their entries")?),
        None => None,
    };
    let mut daemon = Daemon::new(&config, decoder, flows, counters, out);
    daemon.interfaces_changed(follower.counts(), None);
    if let (Some(info), Some(p)) = (adopted, &tracker.pinning) {
        let ifindex = follower.interfaces().first().map_or(0, |i| i.index);
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

    info!("watching {}: press Ctrl-C to stop", watching(&follower, &selected));

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
            guard = link_events.readable_mut() => {
                let mut guard = guard.context("waiting on the kernel's link changes")?;
                let actions = match guard.get_inner_mut().read() {
                    Changes::Links(changes) => {
                        guard.clear_ready();
                        changes.into_iter().flat_map(|l| follower.on_link(l)).collect()
                    }
                    // Readiness kept: what is left is read on the next turn.
                    Changes::Lost => match links::present() {
                        Ok(present) => follower.resync(&present),
                        Err(e) => {
                            warn!("listing the network interfaces after lost link changes: {e}");
                            Vec::new()
                        }
                    },
                };
                for action in actions {
                    follow_up(action, &mut follower, &mut tracker, &mut daemon, &config, &liberal, &selected);
                }
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
            let info = StateInfo { owner_pid: 0, events_lost_at_exit: lost, ..pins::owner_info(tracker.layout.seed, tracker.layout.set_mask, config.capacity.max_flows(), true) };
            if let Err(e) = p.dir.write_info(&info) {
                error!("recording the kept state: {e}");
            }
            Some(p.dir)
        }
        _ => None,
    };
    let names: Vec<String> = follower.interfaces().iter().map(|i| i.name.clone()).collect();
    let failures = if kept.is_some() { tracker.keep_all() } else { tracker.detach_all() };
    for (iface, e) in failures {
        error!("{iface}: detaching failed: {e} (the link is closed when this process exits)");
    }
    let detached = if names.is_empty() { "nothing was attached at exit".to_string() } else { format!("detached from {}", names.join(", ")) };
    match (&kept, &tracker.pinning) {
        (Some(dir), _) if names.is_empty() => info!("state kept in {dir} (no interface attached); the next `tcp-track run` adopts it, `tcp-track detach` removes it"),
        (Some(dir), _) => info!("state kept in {dir}: the programs stay attached to {}; the next `tcp-track run` adopts it, `tcp-track detach` removes it", names.join(", ")),
        (None, Some(p)) => {
            info!("{detached}");
            // Our map handles are still open: the maps are freed when we exit.
            if let Err(e) = p.dir.remove() {
                error!("{e}");
            }
        }
        (None, None) => info!("{detached}"),
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

/// Attach to `iface` as the start-up options say (XDP mode, TC egress,
/// liberal when a `--liberal-iface` selects it): how it went, for the
/// log. What a failure left attached is let go.
fn attach_one(tracker: &mut Tracker, iface: &Interface, config: &Config, liberal: &[IfaceSelector]) -> Result<String> {
    if liberal.iter().any(|l| l.matches(&iface.name)) {
        tracker.set_liberal(iface).with_context(|| format!("marking {} liberal", iface.name))?;
        info!("{}: liberal: only one direction is visible here, so no RST is dropped on it", iface.name);
    }
    let a = match tracker.attach(iface, config.xdp_mode, config.egress) {
        Ok(a) => a,
        Err(e) => {
            for (name, e) in tracker.forget(iface.index) {
                error!("{name}: detaching after a failed attach: {e}");
            }
            return Err(e.into());
        }
    };
    let mode = match a.mode {
        AttachedMode::Native => "native (driver) mode",
        AttachedMode::Skb => "generic (skb) mode",
        AttachedMode::Kept => "kept mode",
    };
    let egress = if a.has_egress() { " + TC egress" } else { "" };
    let ids = a.link_ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    Ok(match a.mode {
        AttachedMode::Kept => format!("XDP{egress} kept from the previous daemon: programs replaced in place (links {ids})"),
        _ if !ids.is_empty() => format!("XDP attached in {mode}{egress} (links {ids}, pinned)"),
        _ => format!("XDP attached in {mode}{egress}"),
    })
}

/// Carry out one of the follower's actions, and say what happened on
/// stderr, one line each.
fn follow_up<L, W>(
    action: Action,
    follower: &mut Follower,
    tracker: &mut Tracker,
    daemon: &mut Daemon<L, Counters, W>,
    config: &Config,
    liberal: &[IfaceSelector],
    watch: &[IfaceSelector],
) where
    L: crate::report::FlowLookup,
    W: io::Write,
{
    match action {
        Action::Attach { iface, again } => {
            let (name, index) = (iface.name.clone(), iface.index);
            match attach_one(tracker, &iface, config, liberal) {
                Ok(how) if again => info!("{name} (ifindex {index}) is back: attached again: {how}"),
                Ok(how) => info!("{name} (ifindex {index}) appeared: {how}"),
                Err(e) => {
                    if follower.attach_failed(&iface) {
                        warn!("{name} (ifindex {index}) appeared but cannot be watched: {e:#}; skipped (retried when it changes)");
                    }
                    daemon.interfaces_changed(follower.counts(), None);
                    return;
                }
            }
            follower.attached(iface);
            daemon.interfaces_changed(follower.counts(), Some((index, &name)));
        }
        Action::Detach { iface, why } => {
            let failures = tracker.forget(iface.index);
            let others = follower.interfaces().iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ");
            let still = if others.is_empty() { String::new() } else { format!("; still watching {others}") };
            match why {
                Gone::Deleted => {
                    for (name, e) in failures {
                        debug!("{name}: closing its links: {e}");
                    }
                    warn!("{} (ifindex {}) is gone (deleted or moved to another namespace): no longer watched, attached again if it comes back{still}", iface.name, iface.index);
                }
                Gone::Renamed(new) => {
                    for (name, e) in failures {
                        error!("{name}: detaching failed: {e} (the link is closed when this process exits)");
                    }
                    warn!("{} (ifindex {}) was renamed {new}, which --iface does not select: detached{still}", iface.name, iface.index);
                }
            }
            daemon.interfaces_changed(follower.counts(), None);
        }
        Action::NoneLeft => {
            let list = watch.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            warn!("no watched interface is left: waiting for interfaces named or matching {list}");
        }
    }
}

/// The start-up line's list: what is attached, and what the patterns
/// will add.
fn watching(follower: &Follower, watch: &[IfaceSelector]) -> String {
    let names: Vec<&str> = follower.interfaces().iter().map(|i| i.name.as_str()).collect();
    let patterns: Vec<String> = watch.iter().filter(|w| w.is_pattern()).map(ToString::to_string).collect();
    match (names.is_empty(), patterns.is_empty()) {
        (_, true) => names.join(", "),
        (true, false) => format!("no interface yet (interfaces matching {} are attached as they appear)", patterns.join(", ")),
        (false, false) => format!("{} (and interfaces matching {} as they appear)", names.join(", "), patterns.join(", ")),
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

/// Register a ring buffer's (or the link events') fd with the runtime.
fn watch<T: std::os::fd::AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: both ring buffers (aya's RingBuf, aya-log's EbpfLogger) own
    // their map fd for their whole lifetime and always return that same fd;
    // so does `LinkEvents` its netlink socket.
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
