//! End to end: the daemon on one end of a veth pair sees a real TCP
//! connection between two namespaces and prints its new-flow and FIN events.

mod support;

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr},
    thread,
    time::Duration,
};

use nix::sys::signal::{kill, Signal};
use support::{daemon::Daemon, netns::Pair};

/// Open, use and close one connection from `a` to `b`; returns (client, server).
fn one_connection(net: &Pair, v6: bool) -> (SocketAddr, SocketAddr) {
    let listener = net.b.listen(net.b_end.addr(v6)).expect("bind in b");
    let server_addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("read ping");
        s.write_all(b"pong").expect("write pong");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read to EOF"); // the client's FIN
    });
    let client = net.a.connect(server_addr).expect("connect");
    let client_addr = client.local_addr().unwrap();
    let mut c = client;
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    c.shutdown(Shutdown::Write).unwrap();
    server.join().unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap(); // the server's FIN
    (client_addr, server_addr)
}

fn flow_events(v6: bool) {
    require_root!();
    let net = Pair::new(if v6 { "flow6" } else { "flow4" }).unwrap();
    let mut d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all"]);
    let (client, server) = one_connection(&net, v6);
    let (c, s) = (client.to_string(), server.to_string());

    let new = d.wait_for(Duration::from_secs(5), "flow_new", |v| v["event"] == "flow_new" && v["server"] == s.as_str());
    assert_eq!(new["client"], c.as_str(), "{new}");
    assert_eq!(new["from"], "client", "{new}");
    assert_eq!(new["flags"], "SYN", "{new}");
    assert_eq!(new["iface"], net.a_end.ifname.as_str(), "{new}");
    assert_eq!(new["seen"], "egress", "the SYN leaves a's interface: {new}");
    assert!(new.get("picked_up").is_none(), "a flow seen from its SYN is not picked up: {new}");
    assert!(new["ts"].as_str().unwrap().ends_with('Z'), "{new}");

    let fin = d.wait_for(Duration::from_secs(5), "fin from the client", |v| v["event"] == "fin" && v["from"] == "client");
    assert_eq!((fin["client"].as_str(), fin["server"].as_str()), (Some(c.as_str()), Some(s.as_str())), "{fin}");
    let fin = d.wait_for(Duration::from_secs(5), "fin from the server", |v| v["event"] == "fin" && v["from"] == "server");
    assert_eq!(fin["seen"], "ingress", "{fin}");

    assert!(d.stop().success());
}

#[test]
fn ipv4_connection_is_reported_from_syn_to_fin() {
    flow_events(false);
}

#[test]
fn ipv6_connection_is_reported_from_syn_to_fin() {
    flow_events(true);
}

/// `counters: tcp_segments=10 not_tcp=2 ...` lines of the daemon's stderr,
/// as name → value maps.
fn counter_lines(d: &Daemon) -> Vec<std::collections::HashMap<String, u64>> {
    d.stderr_lines()
        .iter()
        .filter_map(|l| l.split_once("counters: "))
        .map(|(_, rest)| rest.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.parse().expect("a number"))).collect())
        .collect()
}

#[test]
fn counters_are_printed_every_stats_interval_and_at_exit() {
    require_root!();
    let net = Pair::new("stats").unwrap();
    let mut d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all", "--stats-interval", "300ms"]);
    let (_, s) = one_connection(&net, false);
    let s = s.to_string();
    d.wait_for(Duration::from_secs(5), "the server's fin", |v| v["event"] == "fin" && v["server"] == s.as_str() && v["from"] == "server");
    // Several periodic lines while the daemon runs, the latest showing the
    // connection: created in the half-open table, promoted, closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let periodic = loop {
        let lines = counter_lines(&d);
        if lines.len() >= 3 && lines.last().unwrap()["flows_closed"] >= 1 {
            break lines;
        }
        assert!(std::time::Instant::now() < deadline, "fewer than 3 counter lines in 5 s:\n{}", d.stderr_lines().join("\n"));
        thread::sleep(Duration::from_millis(100));
    };
    let last = periodic.last().unwrap();
    assert_eq!(last.len(), tcp_track_common::counters::NAMES.len() + 1, "every kernel counter is printed, and flows_vanished: {last:?}");
    assert_eq!(last["flows_vanished"], 0, "{last:?}");
    assert_eq!((last["flows_created"], last["flows_promoted"], last["flows_closed"]), (1, 1, 1), "{last:?}");
    // SYN, SYN-ACK, ACK, ping, its ACK, pong, its ACK, FIN, ACK, FIN, ACK (at least).
    assert!(last["tcp_segments"] >= 10, "{last:?}");
    assert!(periodic.windows(2).all(|w| w[0]["tcp_segments"] <= w[1]["tcp_segments"]), "counters only grow");
    let before_exit = periodic.len();
    kill(d.pid(), Signal::SIGTERM).expect("sending SIGTERM");
    assert!(d.wait(Duration::from_secs(10)).success());
    let lines = counter_lines(&d);
    assert!(lines.len() > before_exit, "a final line at exit");
    assert_eq!(lines.last().unwrap()["flows_closed"], 1);
}
