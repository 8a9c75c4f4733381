//! What users run tcp-track for, scenario by scenario, with real Linux TCP
//! stacks in two namespaces (client in `a`, server in `b`, the daemon on
//! a's interface) and crafted segments where no socket API makes them.
//! Each scenario asserts the JSON lines the daemon prints (default event
//! set: only what matters). `tests/scenarios.rs` runs each as a test;
//! `tests/read_equivalence.rs` runs them all again with tcpdump capturing
//! the watched interface, and checks that `tcp-track read` of the capture
//! prints what the daemon printed.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use socket2::{Domain, Socket, Type};
use super::{
    daemon::Daemon,
    netns::{close_orderly, send_frame, send_frames, set_linger_zero, tcp_frame, Pair},
};

const WAIT: Duration = Duration::from_secs(10);

fn daemon(net: &Pair, extra: &[&str]) -> Daemon {
    let mut args = vec!["run", "--iface", &net.a_end.ifname, "--format", "json"];
    args.extend_from_slice(extra);
    Daemon::start(&net.a, &args)
}

fn listener(net: &Pair, v6: bool) -> TcpListener {
    net.b.listen(net.b_end.addr(v6)).expect("bind")
}

fn connect(net: &Pair, to: SocketAddr) -> TcpStream {
    net.a.connect(to).expect("connect")
}

fn is(v: &Value, event: &str) -> bool {
    v["event"] == event
}

fn about(v: &Value, client: &SocketAddr, server: &SocketAddr) -> bool {
    v["client"] == client.to_string().as_str() && v["server"] == server.to_string().as_str()
}

/// 1: a SYN to a port nobody listens on is answered with RST: refused.
pub fn refused(v6: bool) {
    crate::require_root!();
    let net = Pair::new(if v6 { "ref6" } else { "ref4" }).unwrap();
    let mut d = daemon(&net, &[]);
    // Bind to learn a free port, then close it: nobody listens there.
    let port = listener(&net, v6).local_addr().unwrap().port();
    let server = SocketAddr::new(net.b_end.addr(v6), port);
    let err = net.a.connect(server).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let r = d.wait_for(WAIT, "reset", |v| is(v, "reset") && v["server"] == server.to_string().as_str());
    assert_eq!((r["reason"].as_str(), r["from"].as_str(), r["action"].as_str()), (Some("refused"), Some("server"), Some("passed")), "{r}");
    assert!(d.stop().success());
}

/// 2: SO_LINGER 0 and close: an abortive release; the server sees ECONNRESET.
pub fn abort(v6: bool) {
    crate::require_root!();
    let net = Pair::new(if v6 { "abt6" } else { "abt4" }).unwrap();
    let mut d = daemon(&net, &[]);
    let l = listener(&net, v6);
    let c = connect(&net, l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    set_linger_zero(c.as_raw_fd()).unwrap();
    drop(c);
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset, "the server application sees ECONNRESET");
    let r = d.wait_for(WAIT, "reset", |v| is(v, "reset") && about(v, &ca, &sa));
    assert_eq!((r["reason"].as_str(), r["from"].as_str()), (Some("abort"), Some("client")), "{r}");
    assert_eq!(r["drop_justified"], false);
    assert!(d.stop().success());
}

/// 3: the server closes a socket with unread data: Linux sends RST (RFC 9293 §3.10.4).
pub fn s03_close_with_unread_data() {
    crate::require_root!();
    let net = Pair::new("unread").unwrap();
    let mut d = daemon(&net, &[]);
    let l = listener(&net, false);
    let mut c = connect(&net, l.local_addr().unwrap());
    let (s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    c.write_all(b"never read by the server").unwrap();
    thread::sleep(Duration::from_millis(100));
    drop(s);
    let r = d.wait_for(WAIT, "reset", |v| is(v, "reset") && about(v, &ca, &sa));
    assert_eq!((r["reason"].as_str(), r["from"].as_str()), (Some("abort"), Some("server")), "{r}");
    assert!(d.stop().success());
}

/// 4: orderly release; TIME_WAIT on the closer, expiry after --time-wait-timeout.
pub fn time_wait(v6: bool, client_first: bool) {
    crate::require_root!();
    let net = Pair::new(&format!("tw{}{}", if v6 { 6 } else { 4 }, if client_first { "c" } else { "s" })).unwrap();
    let mut d = daemon(&net, &["--time-wait-timeout", "2s"]);
    let l = listener(&net, v6);
    let mut c = connect(&net, l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (first, second) = if client_first { (&mut c, &mut s) } else { (&mut s, &mut c) };
    close_orderly(first, second).unwrap();
    let closer = if client_first { "client" } else { "server" };
    let tw = d.wait_for(WAIT, "time_wait", |v| is(v, "time_wait") && about(v, &ca, &sa));
    assert_eq!(tw["closer"], closer, "{tw}");
    let entered = Instant::now();
    let exp = d.wait_for(WAIT, "time_wait_expired", |v| is(v, "time_wait_expired") && about(v, &ca, &sa));
    let after = entered.elapsed();
    assert!(after >= Duration::from_millis(1500) && after < Duration::from_secs(5), "expired after {after:?}: {exp}");
    assert!(d.stop().success());
}

/// 5: the client's final ACK never arrives (dropped in its namespace): the
/// server retransmits its SYN-ACK (Linux: after 1 s, then 2 s more).
pub fn s05_syn_recv_stuck() {
    crate::require_root!();
    let net = Pair::new("synrcv").unwrap();
    let mut d = daemon(&net, &["--half-open-timeout", "4s"]);
    let l = listener(&net, false);
    let server = l.local_addr().unwrap();
    // Drop the client's pure ACKs to the server before they leave (and
    // before the TC egress hook sees them).
    net.a.nft(&format!(
        "add table inet tt; add chain inet tt out {{ type filter hook output priority 0; }}; add rule inet tt out tcp dport {} tcp flags & (syn | ack | fin | rst) == ack drop",
        server.port()
    )).unwrap();
    let c = connect(&net, server);
    let ca = c.local_addr().unwrap();
    let h = d.wait_for(Duration::from_secs(15), "half_open", |v| is(v, "half_open") && about(v, &ca, &server));
    assert_eq!(h["kind"], "syn_recv", "{h}");
    let n = h["synack_retransmits"].as_u64().unwrap();
    assert!(n >= 2, "Linux retransmits its SYN-ACK after 1 s and 3 s: {h}");
    assert_eq!(h["retransmit_times"].as_array().unwrap().len() as u64, n, "{h}");
    drop(c);
    assert!(d.stop().success());
}

/// 6: the server's namespace drops the SYN: the client retransmits it.
pub fn s06_syn_sent_unanswered() {
    crate::require_root!();
    let net = Pair::new("synsnt").unwrap();
    let mut d = daemon(&net, &["--half-open-timeout", "3s"]);
    let l = listener(&net, false);
    let server = l.local_addr().unwrap();
    net.b.nft(&format!(
        "add table inet tt; add chain inet tt in {{ type filter hook input priority 0; }}; add rule inet tt in tcp dport {} drop",
        server.port()
    )).unwrap();
    let attempt = {
        let ns = net.a.path();
        thread::spawn(move || {
            let f = std::fs::File::open(ns).unwrap();
            nix::sched::setns(std::os::fd::AsFd::as_fd(&f), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            TcpStream::connect_timeout(&server, Duration::from_secs(6)).map(|_| ())
        })
    };
    let h = d.wait_for(Duration::from_secs(15), "half_open", |v| is(v, "half_open") && v["server"] == server.to_string().as_str());
    assert_eq!(h["kind"], "syn_sent", "{h}");
    assert!(h["syn_retransmits"].as_u64().unwrap() >= 1, "{h}");
    assert!(attempt.join().unwrap().is_err(), "the connection never completes");
    assert!(d.stop().success());
}

/// 7: the client's socket dies without telling the server (its RST is
/// dropped in its namespace); the server's next data is answered by the
/// client's stack with a RST carrying the ACK it got: a stateless peer.
pub fn s07_peer_lost_its_state() {
    crate::require_root!();
    let net = Pair::new("lost").unwrap();
    let mut d = daemon(&net, &[]);
    let l = listener(&net, false);
    let c = connect(&net, l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    net.a.nft("add table inet tt; add chain inet tt out { type filter hook output priority 0; }; add rule inet tt out tcp flags & rst == rst drop").unwrap();
    set_linger_zero(c.as_raw_fd()).unwrap();
    drop(c);
    net.a.nft("delete table inet tt").unwrap();
    s.write_all(b"are you there?").unwrap();
    let r = d.wait_for(WAIT, "reset", |v| is(v, "reset") && about(v, &ca, &sa));
    assert_eq!((r["reason"].as_str(), r["from"].as_str()), (Some("stateless_peer"), Some("client")), "{r}");
    let h = d.wait_for(WAIT, "half_open", |v| is(v, "half_open") && about(v, &ca, &sa));
    assert_eq!((h["kind"].as_str(), h["lost"].as_str()), (Some("peer_lost"), Some("client")), "{h}");
    assert!(d.stop().success());
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// 8: a RST with an acceptable sequence number towards a client in TIME_WAIT.
pub fn s08_time_wait_assassination() {
    crate::require_root!();
    let net = Pair::new("assn").unwrap();
    let mut d = daemon(&net, &["--events", "all"]);
    let l = listener(&net, false);
    let mut c = connect(&net, l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    close_orderly(&mut c, &mut s).unwrap();
    drop(s);
    let fin = d.wait_for(WAIT, "the server's FIN", |v| is(v, "fin") && v["from"] == "server" && about(v, &ca, &sa));
    d.wait_for(WAIT, "time_wait", |v| is(v, "time_wait") && about(v, &ca, &sa));
    // RCV.NXT of the client is one past the server's FIN.
    let seq = (fin["seq"].as_u64().unwrap() as u32).wrapping_add(1);
    send_frame(&net.b, &net.b_end.ifname, tcp_frame(v4(sa), v4(ca), net.a.mac(&net.a_end.ifname).unwrap(), "R", seq, 0).unwrap()).unwrap();
    let r = d.wait_for(WAIT, "reset", |v| is(v, "reset") && about(v, &ca, &sa));
    assert_eq!((r["reason"].as_str(), r["from"].as_str()), (Some("time_wait_assassination"), Some("server")), "{r}");
    assert_eq!(r["drop_justified"], true, "{r}");
    assert!(d.stop().success());
}

/// 9: the server closed first and holds the 4-tuple in TIME_WAIT; the client
/// connects again from the same port (SO_REUSEADDR).
pub fn s09_time_wait_reuse() {
    crate::require_root!();
    let net = Pair::new("reuse").unwrap();
    let mut d = daemon(&net, &[]);
    let l = listener(&net, false);
    let sa = l.local_addr().unwrap();
    let mut c = connect(&net, sa);
    let (mut s, _) = l.accept().unwrap();
    let ca = c.local_addr().unwrap();
    close_orderly(&mut s, &mut c).unwrap();
    drop(c);
    drop(s);
    let tw = d.wait_for(WAIT, "time_wait", |v| is(v, "time_wait") && about(v, &ca, &sa));
    assert_eq!(tw["closer"], "server");
    let again = net.a.enter(move || {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.set_reuse_address(true).unwrap();
        sock.bind(&ca.into()).unwrap();
        sock.connect_timeout(&sa.into(), Duration::from_secs(5)).map(|_| sock)
    }).unwrap();
    let _second = again.expect("the server's TIME_WAIT accepts a SYN with an advanced ISN (RFC 6191)");
    let r = d.wait_for(WAIT, "time_wait_reuse", |v| is(v, "time_wait_reuse") && about(v, &ca, &sa));
    assert_eq!(r["isn_advanced"], true, "Linux's ISNs advance with time: {r}");
    assert!(d.stop().success());
}

/// 10: a few thousand SYNs from spoofed sources within a second: one
/// `syn_flood`, one `syn_flood_ended`, and not a line per SYN.
pub fn s10_syn_flood() {
    crate::require_root!();
    let net = Pair::new("flood").unwrap();
    let mut d = daemon(&net, &["--syn-flood-threshold", "100", "--half-open-timeout", "2s"]);
    // The server is in a this time, so the daemon sees the flood arrive at XDP.
    let server = net.a.listen(net.a_end.v4).unwrap();
    let sa = server.local_addr().unwrap();
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    let frames: Vec<Vec<u8>> = (0..3000u32)
        .map(|i| {
            // Spoofed sources across 198.19.0.0/16 (inside 198.18.0.0/15).
            let src = SocketAddrV4::new([198, 19, (i >> 8) as u8, i as u8].into(), 1024 + (i % 60000) as u16);
            tcp_frame(src, v4(sa), mac, "S", i.wrapping_mul(2654435761), 0).unwrap()
        })
        .collect();
    let started = Instant::now();
    send_frames(&net.b, &net.b_end.ifname, frames).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "the flood took {:?}", started.elapsed());
    let f = d.wait_for(WAIT, "syn_flood", |v| is(v, "syn_flood"));
    assert_eq!(f["server"], sa.to_string().as_str(), "{f}");
    assert!(f["half_open"].as_u64().unwrap() > 100, "{f}");
    let e = d.wait_for(Duration::from_secs(20), "syn_flood_ended", |v| is(v, "syn_flood_ended"));
    assert!(e["syns"].as_u64().unwrap() >= 2000, "{e}");
    let lines = d.drain(Duration::from_secs(1));
    let floods = lines.iter().filter(|l| l.contains("\"syn_flood\"")).count();
    let ends = lines.iter().filter(|l| l.contains("\"syn_flood_ended\"")).count();
    assert_eq!((floods, ends), (1, 1), "{}", lines.join("\n"));
    assert!(lines.len() < 20, "{} lines for one flood:\n{}", lines.len(), lines.iter().take(30).cloned().collect::<Vec<_>>().join("\n"));
    drop(server);
    assert!(d.stop().success());
}

/// Every scenario, by the name of its test in `tests/scenarios.rs`.
pub const ALL: &[(&str, fn())] = &[
    ("s01_connection_refused", || refused(false)),
    ("s02_abortive_release", || abort(false)),
    ("s03_close_with_unread_data", s03_close_with_unread_data),
    ("s04_time_wait_client_closes_first", || time_wait(false, true)),
    ("s04_time_wait_server_closes_first", || time_wait(false, false)),
    ("s05_syn_recv_stuck", s05_syn_recv_stuck),
    ("s06_syn_sent_unanswered", s06_syn_sent_unanswered),
    ("s07_peer_lost_its_state", s07_peer_lost_its_state),
    ("s08_time_wait_assassination", s08_time_wait_assassination),
    ("s09_time_wait_reuse", s09_time_wait_reuse),
    ("s10_syn_flood", s10_syn_flood),
    ("s11_connection_refused_ipv6", || refused(true)),
    ("s11_abortive_release_ipv6", || abort(true)),
    ("s11_time_wait_ipv6", || time_wait(true, true)),
];
