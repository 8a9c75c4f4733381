//! The daemon's main loop.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, BufWriter, Write},
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::{error, info, warn};
use tcp_track_common::counters;
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    clock::{self, WallClock},
    config::Config,
    events::Decoder,
    loader::{AttachedMode, Tracker},
    output, preflight,
    report::{FlowLookup, Reporter},
    stats,
    stats::Counters,
    tables::{self, KernelFlows},
};
use tcp_track_common::event::FlowEvent;

/// Records handled per wake-up before yielding to the runtime, so a busy
/// ring buffer cannot starve signal handling.
const MAX_BATCH: usize = 4096;

/// Tracked flows checked against the kernel tables each second (a map
/// lookup each: a few milliseconds of CPU at most).
const AUDIT_PER_SECOND: usize = 2000;

/// How often the ring buffer is drained when the kernel has not woken us:
/// the longest an event waits before it is printed.
const BACKSTOP: Duration = Duration::from_millis(10);

/// Load, attach, stream events to stdout until `shutdown` resolves, detach.
pub async fn run<F: Future<Output = ()>>(config: Config, shutdown: F) -> Result<()> {
    let interfaces = preflight::check_all(&config.interfaces)?;
    for name in &config.liberal_interfaces {
        if !config.interfaces.contains(name) {
            anyhow::bail!("--liberal-iface {name}: not one of the watched interfaces (add --iface {name})");
        }
    }
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
    if config.rst_policy != crate::config::RstPolicy::Observe {
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
    let clock = WallClock::now();
    let decoder = Decoder::new(clock, ifnames);
    let layout = tracker.half_open;
    let flows = KernelFlows::take(&mut tracker.ebpf, layout).context("taking the flow tables out of the eBPF object")?;
    let mut reporter = Reporter::new(config.report.clone(), flows, clock);
    let mut ring = watch(events).context("watching the event ring buffer")?;

    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    info!("watching {}: press Ctrl-C to stop", names.join(", "));

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(output::BUFFER, stdout.lock());
    let mut writer = output::Writer::new(config.format);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // The kernel submits events without waking us (it wakes us only when the
    // ring fills up): drain on this short backstop timer.
    let mut backstop = tokio::time::interval(BACKSTOP);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_tick = config.stats_interval.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    let mut lost_reported = 0u64;
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the event ring buffer")?;
                let (n, res) = drain(guard.get_inner_mut(), &decoder, &mut reporter, &mut writer, &mut out);
                if let Err(e) = res.and_then(|_| out.flush()) {
                    break Err(e);
                }
                if n < MAX_BATCH {
                    guard.clear_ready();
                } else {
                    tokio::task::yield_now().await;
                }
            }
            guard = async { logger.as_mut().expect("guarded by if").readable_mut().await }, if logger.is_some() => {
                let mut guard = guard.context("waiting on the kernel log ring buffer")?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = backstop.tick() => {
                let (_, res) = drain(ring.get_mut(), &decoder, &mut reporter, &mut writer, &mut out);
                if let Err(e) = res.and_then(|_| out.flush()) {
                    break Err(e);
                }
            }
            _ = sleep_until_deadline(reporter.next_deadline()) => {
                let now = clock::monotonic_ns();
                let res = reporter.on_time(now).iter().try_for_each(|ev| writer.write(&mut out, ev));
                if let Err(e) = res.and_then(|_| out.flush()) {
                    break Err(e);
                }
            }
            _ = async { stats_tick.as_mut().expect("guarded by if").tick().await }, if stats_tick.is_some() => {
                info!("counters: {} flows_vanished={}", stats::format(&counters.read()), reporter.vanished);
            }
            _ = tick.tick() => {
                // Flows evicted from the kernel tables without a close are
                // found (and forgotten) by this audit, a slice a second.
                let res = reporter.audit(clock::monotonic_ns(), AUDIT_PER_SECOND).iter().try_for_each(|ev| output::write_event(&mut out, config.format, ev));
                if let Err(e) = res.and_then(|_| out.flush()) {
                    break Err(e);
                }
                let lost = counters.read()[counters::EVENTS_LOST as usize];
                if lost > lost_reported {
                    warn!("{} events lost: the ring buffer was full (total {lost})", lost - lost_reported);
                    lost_reported = lost;
                }
            }
        }
    };
    // Whatever is already in the ring buffer still gets printed.
    let (_, res) = drain(ring.get_mut(), &decoder, &mut reporter, &mut writer, &mut out);
    let flushed = res.and_then(|_| out.flush());

    for (iface, e) in tracker.detach_all() {
        error!("{iface}: detaching failed: {e} (the link is closed when this process exits)");
    }
    info!("detached from {}", names.join(", "));
    // `flows_vanished`: found gone from the kernel tables without a close
    // by the daemon (evictions of followed flows; half-open evictions are
    // also counted by the kernel, in `half_open_evicted`).
    info!("counters: {} flows_vanished={}", stats::format(&counters.read()), reporter.vanished);
    if reporter.vanished > 0 {
        info!("{} flows vanished from the kernel tables without a close (evicted: raise --max-flows or --max-half-open)", reporter.vanished);
    }
    if reporter.suppressed > 0 {
        info!("{} events not printed: a flow exceeded its rate limit ({} per second)", reporter.suppressed, config.report.per_flow_rate);
    }

    match result.and(flushed) {
        Ok(()) => Ok(()),
        // A reader that went away (`tcp-track run | head`) is a normal end.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing events to stdout"),
    }
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

/// Resolves at the reporter's next deadline (never, when there is none).
async fn sleep_until_deadline(deadline_ns: Option<u64>) {
    match deadline_ns {
        Some(at) => {
            let wait = Duration::from_nanos(at.saturating_sub(clock::monotonic_ns()));
            tokio::time::sleep(wait).await
        }
        None => std::future::pending().await,
    }
}

/// Handle up to MAX_BATCH records: decode, report, write. Returns how many
/// were read. Public so that the benchmark measures this very path.
pub fn drain<W: Write, L: FlowLookup>(
    ring: &mut RingBuf<MapData>,
    decoder: &Decoder,
    reporter: &mut Reporter<L>,
    writer: &mut output::Writer,
    out: &mut W,
) -> (usize, io::Result<()>) {
    let mut n = 0;
    while n < MAX_BATCH {
        let Some(item) = ring.next() else { break };
        n += 1;
        let raw: FlowEvent = match bytemuck::try_pod_read_unaligned(&item) {
            Ok(raw) => raw,
            Err(_) => {
                warn!("skipping a ring-buffer record of {} bytes", item.len());
                continue;
            }
        };
        drop(item);
        match decoder.event(&raw) {
            Ok(ev) => {
                for ev in reporter.on_event(&raw, ev) {
                    if let Err(e) = writer.write(out, &ev) {
                        return (n, Err(e));
                    }
                }
            }
            Err(e) => warn!("skipping a ring-buffer record: {e}"),
        }
    }
    (n, Ok(()))
}
