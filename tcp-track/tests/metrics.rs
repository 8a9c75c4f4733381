//! `--metrics-addr`: the daemon in a namespace serves `/metrics` on the
//! namespace's loopback; scenarios play (refused, abort, TIME_WAIT, a
//! small SYN flood, forged RSTs dropped); a real Prometheus server in the
//! same namespace scrapes it, and its HTTP API must give back what the
//! scenarios produced. `promtool check metrics` must pass on the text.

mod support;

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    daemon::{Daemon, BIN},
    netns::{close_orderly, send_frames, set_linger_zero, tcp_frame, Netns, Pair},
};

const WAIT: Duration = Duration::from_secs(10);
const METRICS: &str = "127.0.0.1:9464";
const PROMETHEUS: &str = "127.0.0.1:9090";
const FLOOD_SYNS: u32 = 40;
const FORGED_RSTS: u32 = 5;

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// `GET path` on `addr` from inside `ns`: the status line and the body.
fn http_get(ns: &Netns, addr: &str, path: &str) -> std::io::Result<(String, String)> {
    let (addr, path) = (addr.to_string(), path.to_string());
    ns.enter(move || {
        let mut s = TcpStream::connect(&addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        Ok((head.lines().next().unwrap_or("").to_string(), body.to_string()))
    })?
}

/// A Prometheus server running inside a namespace; stopped by its pid and
/// its directory removed when dropped (also when the test fails).
struct Prometheus {
    child: Child,
    dir: PathBuf,
}

impl Prometheus {
    fn start(ns: &Netns, target: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("tcp-track-prometheus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tcp-track\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // `ip netns exec` execs Prometheus: the child's pid is Prometheus's.
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .expect("starting prometheus (Debian package `prometheus`)");
        Prometheus { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// An instant query's samples: labels (without `__name__`, `job`,
    /// `instance`) to value.
    fn query(&self, ns: &Netns, q: &str) -> Option<BTreeMap<String, f64>> {
        let (status, body) = http_get(ns, PROMETHEUS, &format!("/api/v1/query?query={q}")).ok()?;
        if !status.contains(" 200") {
            return None;
        }
        let v: Value = serde_json::from_str(&body).ok()?;
        let mut out = BTreeMap::new();
        for r in v["data"]["result"].as_array()? {
            let labels: Vec<String> = r["metric"]
                .as_object()?
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance"))
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            out.insert(labels.join(","), r["value"][1].as_str()?.parse().ok()?);
        }
        Some(out)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Refused, abort, TIME_WAIT, forged RSTs (dropped), a SYN flood; returns
/// the connections kept open (the established one, the TIME_WAIT client).
fn play_scenarios(net: &Pair, d: &mut Daemon) -> Vec<TcpStream> {
    let about = |v: &Value, ca: &SocketAddr, sa: &SocketAddr| v["client"] == ca.to_string().as_str() && v["server"] == sa.to_string().as_str();
    let server_ip = net.b_end.v4;

    // Refused: nobody listens on the port.
    let port = net.b.listen(server_ip).unwrap().local_addr().unwrap().port();
    let refused_to = SocketAddr::new(server_ip.into(), port);
    assert_eq!(net.a.connect(refused_to).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    d.wait_for(WAIT, "refused", |v| v["event"] == "reset" && v["reason"] == "refused");

    // Abort: SO_LINGER 0.
    let l = net.b.listen(server_ip).unwrap();
    let c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    set_linger_zero(c.as_raw_fd()).unwrap();
    drop(c);
    assert_eq!(s.read(&mut [0u8; 1]).unwrap_err().kind(), ErrorKind::ConnectionReset);
    d.wait_for(WAIT, "abort", |v| v["event"] == "reset" && v["reason"] == "abort");

    // TIME_WAIT: the client closes first.
    let mut c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    close_orderly(&mut c, &mut s).unwrap();
    drop(s);
    let tw = d.wait_for(WAIT, "time_wait", |v| v["event"] == "time_wait" && about(v, &ca, &sa));
    assert_eq!(tw["closer"], "client");

    // Forged out-of-window RSTs towards an established client: dropped.
    let c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let synack = d.wait_for(WAIT, "the SYN-ACK", |v| v["event"] == "state" && v["state"] == "SYN_RECV" && about(v, &ca, &sa));
    let rcv_nxt = (synack["seq"].as_u64().unwrap() as u32).wrapping_add(1);
    // Past the flow's rate limit of events, none of them would be printed.
    thread::sleep(Duration::from_millis(1100));
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    let frames = (1..=FORGED_RSTS).map(|i| tcp_frame(v4(sa), v4(ca), mac, "R", rcv_nxt.wrapping_add(0x4000_0000 + i * 7919), 0).unwrap()).collect();
    send_frames(&net.b, &net.b_end.ifname, frames).unwrap();
    for _ in 0..FORGED_RSTS {
        let r = d.wait_for(WAIT, "a dropped reset", |v| v["event"] == "reset" && v["action"] == "dropped");
        assert_eq!(r["window"], "outside", "{r}");
    }

    // A small SYN flood from spoofed sources towards a server in a.
    let flooded = net.a.listen(net.a_end.v4).unwrap();
    let fa = flooded.local_addr().unwrap();
    let frames = (0..FLOOD_SYNS)
        .map(|i| tcp_frame(SocketAddrV4::new([198, 19, 0, i as u8].into(), 2000 + i as u16), v4(fa), mac, "S", i.wrapping_mul(2654435761), 0).unwrap())
        .collect();
    send_frames(&net.b, &net.b_end.ifname, frames).unwrap();
    d.wait_for(WAIT, "syn_flood", |v| v["event"] == "syn_flood");
    // Lines still coming (the SYN-ACKs, ...) are read before counting.
    d.drain(Duration::from_secs(2));
    std::mem::forget(flooded); // closed with the namespace
    vec![c, s]
}

#[test]
fn prometheus_scrapes_what_the_scenarios_produced() {
    require_root!();
    let net = Pair::new("metr").unwrap();
    let args = [
        "run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all", "--metrics-addr", METRICS,
        "--syn-flood-threshold", "20", "--half-open-timeout", "120s", "--time-wait-timeout", "120s", "--drop-invalid-rst",
        "--max-flows", "4096",
    ];
    let mut d = Daemon::start(&net.a, &args);
    let _open = play_scenarios(&net, &mut d);
    let printed_lines = d.drain(Duration::from_millis(500));

    // The text a scrape gets, checked by Prometheus's own linter.
    let (status, text) = http_get(&net.a, METRICS, "/metrics").unwrap();
    assert!(status.contains(" 200"), "{status}");
    let mut promtool = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("promtool");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics: {}{}\n{text}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(http_get(&net.a, METRICS, "/other").unwrap().0.split_whitespace().nth(1), Some("404"));

    let prom = Prometheus::start(&net.a, METRICS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = |q: &str| -> BTreeMap<String, f64> {
        loop {
            match prom.query(&net.a, q) {
                Some(v) if !v.is_empty() => return v,
                _ if Instant::now() > deadline => panic!("Prometheus has no {q} after 60 s:\n{}", prom.log()),
                _ => thread::sleep(Duration::from_millis(250)),
            }
        }
    };
    assert_eq!(query("up")[""], 1.0, "Prometheus scraped the daemon");
    let one = |q: &str| query(q)[""];
    let labelled = |q: &str, labels: &str| *query(q).get(labels).unwrap_or_else(|| panic!("no {q}{{{labels}}}"));

    // Gauges: what is tracked now.
    assert_eq!(labelled("tcp_track_connections", "state=TIME_WAIT"), 1.0);
    assert_eq!(labelled("tcp_track_connections", "state=ESTABLISHED"), 1.0);
    assert_eq!(labelled("tcp_track_time_wait_connections", "closer=client"), 1.0);
    assert_eq!(labelled("tcp_track_time_wait_connections", "closer=server"), 0.0);
    assert_eq!(one("tcp_track_half_open_connections"), FLOOD_SYNS as f64);
    assert_eq!(one("tcp_track_syn_floods"), 1.0);
    assert_eq!(one("tcp_track_time_wait_pressure_alerts"), 0.0);
    // The sets' 4096 ways and the stash's twelfth.
    assert_eq!(labelled("tcp_track_table_capacity", "table=established_v4"), (4096 + tcp_track_common::estab::stash_capacity(4096)) as f64);
    assert_eq!(labelled("tcp_track_table_entries", "table=half_open_v4"), FLOOD_SYNS as f64);
    assert!(labelled("tcp_track_table_entries", "table=established_v4") >= 2.0, "the open and the TIME_WAIT connections");

    // Counters: resets by class and action, events printed by kind.
    let resets = query("tcp_track_resets_total");
    assert_eq!(resets["action=passed,class=refused"], 1.0, "{resets:?}");
    assert_eq!(resets["action=dropped,class=out_of_window"], FORGED_RSTS as f64, "{resets:?}");
    let aborts = resets["action=passed,class=exact"] + resets["action=passed,class=unjudged"];
    assert_eq!(aborts, 1.0, "{resets:?}");
    assert_eq!(resets.values().sum::<f64>(), (1 + 1 + FORGED_RSTS) as f64, "no other RST: {resets:?}");
    let printed = query("tcp_track_events_printed_total");
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    for l in &printed_lines {
        let v: Value = serde_json::from_str(l).unwrap();
        *by_kind.entry(format!("kind={}", v["event"].as_str().unwrap())).or_default() += 1.0;
    }
    for (kind, n) in &by_kind {
        assert_eq!(printed.get(kind), Some(n), "{kind}: {printed:?}");
    }
    assert_eq!(printed.values().sum::<f64>(), printed_lines.len() as f64, "{printed:?}");

    // The kernel's counters and the daemon's: the same as the stderr line.
    let kernel: Vec<(&str, f64)> = [
        "segments", "flows_created", "flows_promoted", "flows_closed", "half_open_evicted", "rst_dropped", "rst_bad_checksum",
        "map_update_failures", "events_lost", "flows_vanished", "events_rate_limited",
    ]
    .iter()
    .map(|n| (*n, one(&format!("tcp_track_{n}_total"))))
    .collect();
    drop(prom);
    assert!(d.terminate().success());
    let lines = d.stderr_lines();
    let exit = d.exit_counters();
    fn stderr_name(n: &str) -> &str {
        match n {
            "segments" => "tcp_segments",
            "map_update_failures" => "map_update_failed",
            other => other,
        }
    }
    for (name, v) in kernel {
        if name == "events_rate_limited" {
            let held = lines.iter().any(|l| l.contains("events not printed"));
            assert_eq!(v, 0.0, "no flow exceeded its rate limit");
            assert!(!held);
            continue;
        }
        assert_eq!(Some(v as u64), exit.get(stderr_name(name)).copied(), "{name}: {exit:?}");
    }
    assert_eq!(exit["rst_dropped"], u64::from(FORGED_RSTS));
}

/// A metrics address in use is a start-up error: one line, non-zero exit,
/// nothing attached.
#[test]
fn a_metrics_address_in_use_is_a_start_up_error() {
    require_root!();
    let net = Pair::new("metbusy").unwrap();
    let _taken = net.a.enter(|| std::net::TcpListener::bind(METRICS)).unwrap().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.a.name, BIN, "run", "--iface", &net.a_end.ifname, "--metrics-addr", METRICS]);
    let mut d = Daemon::spawn(cmd);
    let status = d.wait(Duration::from_secs(30));
    assert!(!status.success());
    let lines = d.stderr_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("--metrics-addr 127.0.0.1:9464: cannot listen there") && lines[0].contains("in use"), "{lines:?}");
    let links = net.a.ip(&["link", "show", &net.a_end.ifname]).unwrap();
    assert!(!links.contains("xdp"), "nothing attached: {links}");
}

/// A malformed address is refused by the argument parser.
#[test]
fn a_malformed_metrics_address_is_refused() {
    let out = Command::new(BIN).args(["run", "--iface", "lo", "--metrics-addr", "localhost"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: invalid value 'localhost' for '--metrics-addr <ADDR:PORT>'"), "{err}");
}
