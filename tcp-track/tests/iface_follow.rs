//! Interfaces that come and go (issue 16 item 2), end to end: the daemon
//! runs in a namespace with `--iface 'vt*'` before any such interface
//! exists; veth pairs are created, deleted and re-created while it runs,
//! and its stderr lines, its events for connections over the re-created
//! interface, and its metrics are checked. The namespaces are deleted when
//! the test ends, also on failure, and every veth end with them.

mod support;

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    daemon::Daemon,
    hooks::{tcx_egress, xdp_attached},
    netns::{link, Netns},
};

/// Where the daemon serves its metrics: the loopback of its own namespace.
const METRICS: &str = "127.0.0.1:9464";

/// The first stderr line of the daemon containing every one of `parts`,
/// within 10 s.
fn stderr_line(d: &Daemon, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = d.stderr_lines().into_iter().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line;
        }
        assert!(Instant::now() < deadline, "no stderr line with {parts:?} in 10 s:\n{}", d.stderr_lines().join("\n"));
        thread::sleep(Duration::from_millis(50));
    }
}

/// The ifindex a line `NAME (ifindex N) ...` names.
fn ifindex(line: &str) -> u32 {
    let n = line.split("(ifindex ").nth(1).and_then(|r| r.split(')').next()).unwrap_or_else(|| panic!("no ifindex in {line:?}"));
    n.parse().unwrap_or_else(|_| panic!("no ifindex in {line:?}"))
}

/// A connection from `a` to `server` in `b` that carries a few bytes and
/// closes with FINs: (client, server).
fn exchange(a: &Netns, b: &Netns, server: IpAddr) -> (SocketAddr, SocketAddr) {
    let listener = b.listen(server).expect("listening in b");
    let server = listener.local_addr().unwrap();
    let peer = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("read ping");
        s.write_all(b"pong").expect("write pong");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("read to the client's FIN");
    });
    let mut c = a.connect(server).expect("connecting over the veth");
    let client = c.local_addr().unwrap();
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    peer.join().unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    (client, server)
}

/// A connection from `a` to port 9 of `server` (no one listens in b): refused.
fn refused(a: &Netns, server: Ipv4Addr) -> SocketAddr {
    let to = SocketAddr::new(server.into(), 9);
    let e = a.connect(to).expect_err("nothing listens on port 9 in b");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    to
}

/// `GET /metrics` from inside `ns`: the body.
fn scrape(ns: &Netns) -> String {
    ns.enter(|| {
        let mut s = TcpStream::connect(METRICS).expect("connecting to the metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
    .unwrap()
}

/// The ifindex of `name` in `ns` (`ip -o link show`: `N: name@peer: ...`).
fn index_of(ns: &Netns, name: &str) -> u32 {
    let out = ns.ip(&["-o", "link", "show", "dev", name]).unwrap();
    out.split(':').next().and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("no ifindex in {out:?}"))
}

fn metric(text: &str, name: &str) -> u64 {
    let line = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn interfaces_matching_the_pattern_are_followed_as_they_come_and_go() {
    require_root!();
    let a = Netns::new("ifa").unwrap();
    let b = Netns::new("ifb").unwrap();
    let mut d = Daemon::start(&a, &["run", "--iface", "vt*", "--liberal-iface", "vt0", "--format", "json", "--events", "all", "--metrics-addr", METRICS]);
    stderr_line(&d, &["--iface vt*: no interface matches it yet: waiting for interfaces matching it"]);
    stderr_line(&d, &["watching no interface yet"]);

    // vt0 appears: attached; a connection over it is seen on it.
    let (_, vtb0) = link(&a, "vt0", &b, "vtb0", 0).unwrap();
    let first = stderr_line(&d, &["vt0 (ifindex", ") appeared: XDP attached in", "+ TC egress"]);
    let (client, server) = exchange(&a, &b, vtb0.v4.into());
    let (c, s) = (client.to_string(), server.to_string());
    let new = d.wait_for(Duration::from_secs(5), "flow_new on vt0", |v| v["event"] == "flow_new" && v["server"] == s.as_str());
    assert_eq!((new["client"].as_str(), new["iface"].as_str()), (Some(c.as_str()), Some("vt0")), "{new}");
    d.wait_for(Duration::from_secs(5), "the server's fin", |v| v["event"] == "fin" && v["server"] == s.as_str() && v["from"] == "server");

    // vt0 is deleted: said, with its ifindex, and that none is left.
    a.ip(&["link", "del", "vt0"]).unwrap();
    let gone = stderr_line(&d, &["vt0 (ifindex", "is gone (deleted or moved to another namespace): no longer watched, attached again if it comes back"]);
    assert_eq!(ifindex(&gone), ifindex(&first), "{gone}");
    stderr_line(&d, &["no watched interface is left: waiting for interfaces named or matching vt*"]);

    // Re-created with the same name: attached again, and a refused
    // connection over it is reported (its RST seen at XDP).
    link(&a, "vt0", &b, "vtb0", 0).unwrap();
    let back = stderr_line(&d, &["vt0 (ifindex", ") is back: attached again: XDP attached in", "+ TC egress"]);
    assert_ne!(ifindex(&back), ifindex(&first), "a new interface: {back}");
    let to = refused(&a, vtb0.v4).to_string();
    let is_refusal = |v: &Value, iface: &str| v["event"] == "reset" && v["server"] == to.as_str() && v["iface"] == iface;
    let reset = d.wait_for(Duration::from_secs(5), "the refusal's reset on the re-created vt0", |v| is_refusal(v, "vt0"));
    assert_eq!((reset["from"].as_str(), reset["seen"].as_str()), (Some("server"), Some("ingress")), "{reset}");
    let conn = d.wait_for(Duration::from_secs(5), "its conn record", |v| v["event"] == "conn" && v["server"] == to.as_str());
    assert_eq!((conn["conn_state"].as_str(), conn["iface"].as_str()), (Some("REJ"), Some("vt0")), "{conn}");

    // A second interface matching the pattern: attached too, alongside.
    let (_, vtb1) = link(&a, "vt1", &b, "vtb1", 1).unwrap();
    stderr_line(&d, &["vt1 (ifindex", ") appeared: XDP attached in"]);
    let to = refused(&a, vtb1.v4).to_string();
    d.wait_for(Duration::from_secs(5), "the refusal's reset on vt1", |v| v["event"] == "reset" && v["server"] == to.as_str() && v["iface"] == "vt1");

    // vt0 was marked liberal each time it was attached (its new ifindex
    // put in the kernel's liberal set), vt1 never.
    let liberal = |name: &str| d.stderr_lines().iter().filter(|l| l.contains(&format!("{name}: liberal: only one direction is visible"))).count();
    assert_eq!((liberal("vt0"), liberal("vt1")), (2, 0), "{:?}", d.stderr_lines());

    // A link that the pattern does not select is left alone.
    a.ip(&["link", "add", "other0", "type", "bridge"]).unwrap();
    let text = scrape(&a);
    assert_eq!(metric(&text, "tcp_track_interfaces_attached"), 2, "{text}");
    assert_eq!(metric(&text, r#"tcp_track_interface_events_total{kind="attached"}"#), 3, "{text}");
    assert_eq!(metric(&text, r#"tcp_track_interface_events_total{kind="detached"}"#), 1, "{text}");
    assert_eq!(metric(&text, r#"tcp_track_interface_events_total{kind="attach_failed"}"#), 0, "{text}");
    assert!(!d.stderr_lines().iter().any(|l| l.contains("other0")), "{:?}", d.stderr_lines());

    for ifname in ["vt0", "vt1"] {
        assert!(xdp_attached(&a, ifname), "{ifname}");
        assert_eq!(tcx_egress(&a, ifname).len(), 1, "{ifname}");
    }
    assert!(d.terminate().success());
    stderr_line(&d, &["detached from vt0, vt1"]);
    for ifname in ["vt0", "vt1"] {
        assert!(!xdp_attached(&a, ifname), "{ifname}: nothing of ours left after exit");
        assert_eq!(tcx_egress(&a, ifname), Vec::<String>::new(), "{ifname}");
    }
}

#[test]
fn interfaces_that_cannot_be_attached_are_reported_and_skipped() {
    require_root!();
    let a = Netns::new("ifbusy").unwrap();
    let b = Netns::new("ifbusyb").unwrap();
    let (_, vtb0) = link(&a, "vt0", &b, "vtb0", 0).unwrap();
    // Another program holds vt0's XDP hook (another tcp-track, watching it
    // by name).
    let mut other = Daemon::start(&a, &["run", "--iface", "vt0", "--format", "json"]);
    // Native mode only: a bridge (no native XDP) matching the pattern
    // cannot be attached to when it appears.
    let mut d = Daemon::start(&a, &["run", "--iface", "vt*", "--iface", "dm*", "--xdp-mode", "native", "--format", "json", "--events", "all", "--metrics-addr", METRICS]);
    let busy = stderr_line(&d, &["vt0 (ifindex", "matches --iface but cannot be watched", "already has an XDP program attached", "skipped"]);
    assert_eq!(ifindex(&busy), index_of(&a, "vt0"), "{busy}");
    stderr_line(&d, &["watching no interface yet"]);

    a.ip(&["link", "add", "dm0", "type", "bridge"]).unwrap();
    let line = stderr_line(&d, &["dm0 (ifindex", "appeared but cannot be watched", "does not support native (driver-mode) XDP", "skipped"]);
    // Its next change (up) is retried quietly, not reported again.
    a.ip(&["link", "set", "dm0", "up"]).unwrap();

    // The daemon goes on: a later interface is attached and watched.
    let (_, vtb1) = link(&a, "vt1", &b, "vtb1", 1).unwrap();
    stderr_line(&d, &["vt1 (ifindex", ") appeared: XDP attached in native (driver) mode + TC egress"]);
    let to = refused(&a, vtb1.v4).to_string();
    d.wait_for(Duration::from_secs(5), "the refusal's reset on vt1", |v| v["event"] == "reset" && v["server"] == to.as_str() && v["iface"] == "vt1");
    let text = scrape(&a);
    assert_eq!(metric(&text, "tcp_track_interfaces_attached"), 1, "{text}");
    assert_eq!(metric(&text, r#"tcp_track_interface_events_total{kind="attach_failed"}"#), 2, "{text}");
    assert_eq!(d.stderr_lines().iter().filter(|l| l.contains("dm0")).count(), 1, "reported once: {line}");

    // The other daemon's vt0 was left alone.
    let to = refused(&a, vtb0.v4).to_string();
    other.wait_for(Duration::from_secs(5), "the other daemon's reset on vt0", |v| v["event"] == "reset" && v["server"] == to.as_str());
    assert!(d.stop().success());
    assert!(other.stop().success());
}
