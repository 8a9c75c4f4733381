//! `tcp_track::run`: load, attach, drive the daemon until shutdown, detach.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, BufWriter},
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::{error, info};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    clock::{self, WallClock},
    config::{Config, RstPolicy},
    daemon::{Daemon, MAX_BATCH},
    events::Decoder,
    loader::{AttachedMode, Tracker},
    metrics, output, preflight, stats,
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
    let mut tracker = Tracker::load_with_capacity(config.bpf_log, config.rst_policy, config.capacity)?;
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
        };
        let egress = if a.has_egress() { " + TC egress" } else { "" };
        info!("{}: XDP attached in {mode}{egress}", a.iface.name);
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
    for (iface, e) in tracker.detach_all() {
        error!("{iface}: detaching failed: {e} (the link is closed when this process exits)");
    }
    info!("detached from {}", names.join(", "));
    // Whatever is already in the ring buffer still gets printed (nothing
    // more comes once detached), then every connection still open gets its
    // final record, from the tables as the programs left them.
    let flushed = drain_all(&mut daemon, ring.get_mut()).and_then(|()| daemon.stop(clock::monotonic_ns()));
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
