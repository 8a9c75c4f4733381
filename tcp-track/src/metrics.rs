//! `--metrics-addr`: the daemon's snapshot served as Prometheus metrics on
//! `/metrics`.
//!
//! The event loop owns the daemon; nothing else touches it. A scrape asks
//! the loop for a snapshot through a channel (`Requests`): the loop takes
//! it between two of its steps, so every value comes from the same
//! instant, and hands it back; the encoding (`encode`, with the
//! `prometheus` crate's text encoder) and the HTTP exchange (`hyper`) happen in the
//! scrape's own task, outside the loop's steps. Asking rather than
//! publishing a snapshot every second means a scrape sees the counters of
//! the moment it asks, and the loop does no work when nobody scrapes. The
//! stderr counters line is written from the same `Snapshot`.
//!
//! Names follow Prometheus's rules: prefix `tcp_track_`, `_total` on
//! counters, labels with a bounded set of values
//! (states, tables, classes, kinds), never addresses or ports.

use std::{convert::Infallible, io, net::SocketAddr, time::Duration};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use log::warn;
use prometheus::{
    core::Collector,
    proto::{self, Bucket, Metric, MetricFamily, MetricType},
    Counter, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tcp_track_common::counters;
use tokio::sync::{mpsc, oneshot};

use crate::{daemon::Snapshot, report::Histogram};

/// What the HTTP side sends the loop: where to put a snapshot.
pub type SnapshotRequest = oneshot::Sender<Snapshot>;

/// Scrapes waiting for the loop at most: more wait for room.
const QUEUE: usize = 16;

/// How long a scrape waits for the loop before answering 503.
const LOOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The Prometheus text format's media type.
const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The kernel's counters as metrics: (index, name, help).
/// Every counter of `tcp_track_common::counters` is here once.
const KERNEL_COUNTERS: [(u32, &str, &str); counters::COUNT as usize] = [
    (counters::TCP_SEGMENTS, "segments_total", "TCP segments seen, both hooks together (the kernel does not count them per hook)"),
    (counters::NOT_TCP, "non_tcp_packets_total", "Packets that were not TCP, passed untouched"),
    (counters::MALFORMED, "malformed_packets_total", "TCP packets too short or malformed to parse, passed"),
    (counters::FLOWS_CREATED, "flows_created_total", "Flows the kernel started tracking"),
    (counters::MAP_UPDATE_FAILED, "map_update_failures_total", "Flow-table updates the kernel could not make"),
    (counters::EVENTS_LOST, "events_lost_total", "Events lost because the ring buffer was full"),
    (counters::INVALID_FLAGS, "invalid_flag_segments_total", "Segments with an impossible flag combination"),
    (counters::RST_DROPPED, "rst_dropped_total", "RSTs dropped in XDP by the RST policy, as the kernel counts them"),
    (counters::RST_BAD_CHECKSUM, "rst_bad_checksum_total", "RSTs with a bad TCP checksum (never judged, never dropped)"),
    (counters::FLOWS_PROMOTED, "flows_promoted_total", "Flows moved from the half-open table to the established one"),
    (counters::FLOWS_CLOSED, "flows_closed_total", "Flows the kernel removed after a close"),
    (counters::HALF_OPEN_EVICTED, "half_open_evicted_total", "Half-open entries evicted from a full set of the half-open table"),
    (counters::BAD_CHECKSUM, "bad_checksum_total", "SYNs, SYN-ACKs and FINs with a bad TCP checksum at XDP (never tracked)"),
    (counters::OUT_OF_WINDOW, "out_of_window_total", "Segments rejected for lying outside the window (none on a liberal interface)"),
];

/// Bind the metrics address now (before anything is attached), so that a
/// port in use is a start-up error.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve `/metrics` on `listener` from the current tokio runtime; each
/// scrape asks for a snapshot on the returned channel, whose receiver the
/// event loop answers.
pub fn serve(listener: std::net::TcpListener) -> io::Result<mpsc::Receiver<SnapshotRequest>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!("metrics: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| respond(req, tx.clone()));
                // A scraper that goes away mid-answer is its business.
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(rx)
}

/// `GET /metrics`: a snapshot from the loop, encoded.
async fn respond<B>(req: Request<B>, loop_tx: mpsc::Sender<SnapshotRequest>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, content_type.parse().expect("a valid header value"));
        Ok(r)
    };
    if req.uri().path() != "/metrics" {
        return reply(StatusCode::NOT_FOUND, "text/plain", "tcp-track serves /metrics\n".into());
    }
    let snapshot = async {
        let (tx, rx) = oneshot::channel();
        loop_tx.send(tx).await.ok()?;
        rx.await.ok()
    };
    match tokio::time::timeout(LOOP_TIMEOUT, snapshot).await {
        Ok(Some(snap)) => match encode(&snap) {
            Ok(text) => reply(StatusCode::OK, CONTENT_TYPE, text),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", format!("encoding the metrics: {e}\n")),
        },
        _ => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the daemon is stopping\n".into()),
    }
}

/// A snapshot in the Prometheus text format. Fails only on a metric
/// defined twice or badly (the tests encode every metric).
pub fn encode(snap: &Snapshot) -> prometheus::Result<String> {
    let reg = Metrics(Registry::new_custom(Some("tcp_track".into()), None)?);
    let r = &snap.report;
    let n = |v: usize| v as i64;

    reg.gauges("connections", "Connections the daemon follows, by state as of their last event", &["state"], {
        r.flows_by_state.iter().map(|(st, v)| ([st.as_str()], n(*v)))
    })?;
    reg.gauges("table_entries", "Entries in use in each kernel flow table (counted each second)", &["table"], {
        snap.tables.iter().map(|t| ([t.table], t.entries as i64))
    })?;
    reg.gauges("table_capacity", "Flows each kernel flow table can hold", &["table"], {
        snap.tables.iter().map(|t| ([t.table], t.capacity as i64))
    })?;
    reg.gauge("half_open_connections", "Connections whose handshake began with a SYN and has not ended", n(r.half_open))?;
    reg.gauges("time_wait_connections", "Connections in TIME_WAIT, by who closed first", &["closer"], {
        r.time_wait_by_closer.iter().map(|(c, v)| ([c.as_str()], n(*v)))
    })?;
    reg.gauge("syn_floods", "SYN floods in progress (servers over --syn-flood-threshold)", n(r.floods.len()))?;
    reg.gauge("time_wait_pressure_alerts", "TIME_WAIT pressure alerts reported and not relieved", n(r.pressure_alerts.len()))?;

    for (index, name, help) in KERNEL_COUNTERS {
        reg.counter(name, help, snap.counters[index as usize])?;
    }
    reg.counter("flows_vanished_total", "Followed flows found gone from the kernel tables without a close (evicted)", r.vanished)?;
    reg.counters("resets_total", "RSTs reported by the kernel, by class and action (passed or dropped)", &["class", "action"], {
        r.resets.iter().flat_map(|&(class, passed, dropped)| [([class.as_str(), "passed"], passed), ([class.as_str(), "dropped"], dropped)])
    })?;
    reg.counters("events_printed_total", "Event lines printed, by event kind", &["kind"], {
        snap.printed.iter().map(|(kind, v)| ([kind.as_str()], *v))
    })?;
    reg.counter("events_rate_limited_total", "Events not printed because a flow exceeded its rate limit", r.suppressed)?;
    reg.counters("connections_ended_total", "Connections that ended, by why (each one's final conn record, printed or not)", &["end"], {
        r.conn.ended.iter().map(|(end, v)| ([end.as_str()], *v))
    })?;
    reg.gauge("interfaces_attached", "Interfaces the programs are attached to now", snap.interfaces.attached as i64)?;
    reg.counters("interface_events_total", "Interfaces attached (at start or when they appeared), detached (deleted, moved out, renamed) and not attachable, by kind", &["kind"], {
        snap.interfaces.by_kind().map(|(kind, v)| ([kind.as_str()], v))
    })?;
    let w = &snap.walks;
    reg.counter("resync_walks_total", "Walks of the kernel tables after lost events, to catch up with the flows whose events were lost", w.walks)?;
    reg.counter("resync_flows_walked_total", "Flows read by those walks", w.flows_walked)?;
    reg.add(Counter::new("resync_walk_seconds_total", "Time those walks took")?)?.inc_by(w.seconds);
    reg.counters("resync_flows_total", "Flows the walks caught up with: not followed before (adopted), followed but moved on (moved), ended with their conn record lost (ended)", &["outcome"], {
        [(["adopted"], w.caught_up.adopted), (["moved"], w.caught_up.moved), (["ended"], w.caught_up.ended)]
    })?;
    reg.counter("conn_interim_records_total", "Interim conn records of connections still open (--conn-interval)", r.conn.interim)?;

    let mut families = reg.0.gather();
    families.push(histogram("connection_duration_seconds", "Durations of the connections that ended (first to last segment)", &r.conn.duration));
    families.push(histogram(
        "connection_handshake_seconds",
        "Handshakes of the connections that ended, SYN to SYN-ACK plus SYN-ACK to ACK at the interface (the round-trip time between the hosts)",
        &r.conn.handshake,
    ));
    let mut out = String::new();
    TextEncoder::new().encode_utf8(&families, &mut out)?;
    Ok(out)
}

/// A histogram kept by the reporter (its own buckets: each scrape encodes a
/// snapshot, so there is no `prometheus::Histogram` to observe into).
fn histogram(name: &str, help: &str, h: &Histogram) -> MetricFamily {
    let mut cumulative = 0;
    let buckets = h
        .bounds
        .iter()
        .zip(&h.counts)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut hist = proto::Histogram::default();
    hist.set_sample_count(h.count());
    hist.set_sample_sum(h.sum);
    hist.set_bucket(buckets);
    let mut m = Metric::default();
    m.set_histogram(hist);
    let mut f = MetricFamily::default();
    f.set_name(format!("tcp_track_{name}"));
    f.set_help(help.into());
    f.set_field_type(MetricType::HISTOGRAM);
    f.set_metric(vec![m]);
    f
}

/// A registry filled from one snapshot: each metric set once.
struct Metrics(Registry);

impl Metrics {
    fn add<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, v: i64) -> prometheus::Result<()> {
        self.add(IntGauge::new(name, help)?)?.set(v);
        Ok(())
    }

    fn counter(&self, name: &str, help: &str, v: u64) -> prometheus::Result<()> {
        self.add(IntCounter::new(name, help)?)?.inc_by(v);
        Ok(())
    }

    fn gauges<const L: usize>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str; L],
        samples: impl IntoIterator<Item = ([&'static str; L], i64)>,
    ) -> prometheus::Result<()> {
        let vec = self.add(IntGaugeVec::new(Opts::new(name, help), labels)?)?;
        for (values, v) in samples {
            vec.get_metric_with_label_values(&values)?.set(v);
        }
        Ok(())
    }

    fn counters<const L: usize>(
        &self,
        name: &str,
        help: &str,
        labels: &[&str; L],
        samples: impl IntoIterator<Item = ([&'static str; L], u64)>,
    ) -> prometheus::Result<()> {
        let vec = self.add(IntCounterVec::new(Opts::new(name, help), labels)?)?;
        for (values, v) in samples {
            vec.get_metric_with_label_values(&values)?.inc_by(v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{
        follow::InterfaceCounts,
        report::{CatchUp, ConnCounts, ReportSnapshot, Walks, DURATION_BOUNDS, HANDSHAKE_BOUNDS},
        tables::TableFill,
        vocab::{Closer, ConnState, EndReason, EventKind, ResetClass},
    };

    fn snapshot() -> Snapshot {
        let mut counters = [0u64; counters::COUNT as usize];
        for (i, c) in counters.iter_mut().enumerate() {
            *c = 100 + i as u64;
        }
        Snapshot {
            counters,
            report: ReportSnapshot {
                flows_by_state: ConnState::ALL.iter().map(|&s| (s, if s == ConnState::Established { 3 } else { 0 })).collect(),
                tracked_flows: 3,
                half_open: 2,
                floods: Vec::new(),
                pressure_alerts: Vec::new(),
                time_wait_by_closer: Closer::ALL.iter().map(|&c| (c, if c == Closer::Server { 4 } else { 0 })).collect(),
                resets: ResetClass::ALL.iter().map(|&c| (c, u64::from(c == ResetClass::Refused) * 5, u64::from(c == ResetClass::OutOfWindow))).collect(),
                vanished: 6,
                suppressed: 7,
                pending_deadlines: 0,
                conn: ConnCounts {
                    ended: EndReason::ALL.iter().map(|&e| (e, u64::from(e == EndReason::Fin) * 11)).collect(),
                    interim: 12,
                    duration: {
                        let mut h = Histogram::new(DURATION_BOUNDS);
                        h.observe(0.5);
                        h.observe(30.0);
                        h
                    },
                    handshake: Histogram::new(HANDSHAKE_BOUNDS),
                },
            },
            printed: EventKind::ALL.iter().map(|&k| (k, u64::from(k == EventKind::Reset) * 8)).collect(),
            tables: vec![TableFill { table: "established_v4", entries: 9, capacity: 65536 }],
            interfaces: InterfaceCounts { attached: 2, events: [3, 1, 0] },
            walks: Walks { walks: 2, flows_walked: 300, seconds: 0.25, caught_up: CatchUp { adopted: 13, moved: 14, ended: 15 } },
        }
    }

    #[test]
    fn every_kernel_counter_is_a_metric_once() {
        let indexes: HashSet<u32> = KERNEL_COUNTERS.iter().map(|c| c.0).collect();
        assert_eq!(indexes, (0..counters::COUNT).collect());
        let names: HashSet<&str> = KERNEL_COUNTERS.iter().map(|c| c.1).collect();
        assert_eq!(names.len(), KERNEL_COUNTERS.len());
        assert!(names.iter().all(|n| n.ends_with("_total")));
    }

    #[test]
    fn the_snapshot_encodes_with_names_types_and_labels() {
        let text = encode(&snapshot()).unwrap();
        let has = |line: &str| assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        has("# TYPE tcp_track_connections gauge");
        has(r#"tcp_track_connections{state="ESTABLISHED"} 3"#);
        has(r#"tcp_track_connections{state="SYN_SENT"} 0"#);
        has("# TYPE tcp_track_table_entries gauge");
        has(r#"tcp_track_table_entries{table="established_v4"} 9"#);
        has(r#"tcp_track_table_capacity{table="established_v4"} 65536"#);
        has("tcp_track_half_open_connections 2");
        has(r#"tcp_track_time_wait_connections{closer="server"} 4"#);
        has("tcp_track_syn_floods 0");
        has("tcp_track_time_wait_pressure_alerts 0");
        has("# TYPE tcp_track_segments_total counter");
        has(&format!("tcp_track_segments_total {}", 100 + counters::TCP_SEGMENTS));
        has(&format!("tcp_track_rst_bad_checksum_total {}", 100 + counters::RST_BAD_CHECKSUM));
        has(&format!("tcp_track_half_open_evicted_total {}", 100 + counters::HALF_OPEN_EVICTED));
        has(&format!("tcp_track_bad_checksum_total {}", 100 + counters::BAD_CHECKSUM));
        has(&format!("tcp_track_out_of_window_total {}", 100 + counters::OUT_OF_WINDOW));
        has("tcp_track_flows_vanished_total 6");
        has("# TYPE tcp_track_resets_total counter");
        has(r#"tcp_track_resets_total{action="passed",class="refused"} 5"#);
        has(r#"tcp_track_resets_total{action="dropped",class="out_of_window"} 1"#);
        has(r#"tcp_track_events_printed_total{kind="reset"} 8"#);
        has("tcp_track_events_rate_limited_total 7");
        has(r#"tcp_track_connections_ended_total{end="fin"} 11"#);
        has(r#"tcp_track_connections_ended_total{end="stopped"} 0"#);
        has("tcp_track_conn_interim_records_total 12");
        has("# TYPE tcp_track_interfaces_attached gauge");
        has("tcp_track_interfaces_attached 2");
        has("# TYPE tcp_track_interface_events_total counter");
        has(r#"tcp_track_interface_events_total{kind="attached"} 3"#);
        has(r#"tcp_track_interface_events_total{kind="detached"} 1"#);
        has(r#"tcp_track_interface_events_total{kind="attach_failed"} 0"#);
        has("# TYPE tcp_track_resync_walks_total counter");
        has("tcp_track_resync_walks_total 2");
        has("tcp_track_resync_flows_walked_total 300");
        has("# TYPE tcp_track_resync_walk_seconds_total counter");
        has("tcp_track_resync_walk_seconds_total 0.25");
        has(r#"tcp_track_resync_flows_total{outcome="adopted"} 13"#);
        has(r#"tcp_track_resync_flows_total{outcome="moved"} 14"#);
        has(r#"tcp_track_resync_flows_total{outcome="ended"} 15"#);
        has("# TYPE tcp_track_connection_duration_seconds histogram");
        has(r#"tcp_track_connection_duration_seconds_bucket{le="0.1"} 0"#);
        has(r#"tcp_track_connection_duration_seconds_bucket{le="1"} 1"#);
        has(r#"tcp_track_connection_duration_seconds_bucket{le="60"} 2"#);
        has(r#"tcp_track_connection_duration_seconds_bucket{le="+Inf"} 2"#);
        has("tcp_track_connection_duration_seconds_sum 30.5");
        has("tcp_track_connection_duration_seconds_count 2");
        has("tcp_track_connection_handshake_seconds_count 0");
        assert!(!text.contains("198.18") && !text.contains("port=\""), "no addresses or ports as labels");
    }
}
