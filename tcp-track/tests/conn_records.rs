//! Connection records (issue 11): one test per Zeek `conn_state`, end to
//! end. Real Linux TCP stacks in two namespaces (client in `a`, server in
//! `b`, the daemon on a's interface), and crafted segments where no stack
//! makes the case (a SYN nobody answers, a SYN-ACK nobody asked for, one
//! side of a connection picked up mid-stream). Crafted segments go between
//! two addresses no stack owns (198.18.0.50 and .60), sent out of b's
//! interface into the daemon's XDP hook, so nothing answers them.
//!
//! Each test asserts the connection's final `conn` record: `conn_state`,
//! `end`, and `closer` / `reset_reason` / `reset_from` where they apply;
//! and, after the daemon stopped, that it was the only final record of
//! that connection.

mod support;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener},
    os::fd::AsRawFd,
    time::Duration,
};

use serde_json::Value;
use support::{
    conn::{
        about, assert_only_its_fields, connected, is_final, one_final, parse, reset_fields, state_end, stop, wait_final, Crafted, CISN,
        SISN,
    },
    daemon::Daemon,
    netns::{close_orderly, set_linger_zero, Pair, Tcp},
};

const WAIT: Duration = Duration::from_secs(10);

/// The daemon on a's interface, printing every event (conn records among them).
fn daemon(net: &Pair, extra: &[&str]) -> Daemon {
    support::conn::daemon(net, "all", extra)
}

/// The figures every record of a connection set up by `connected` has.
fn assert_exchange(f: &Value) {
    assert_eq!((f["client_bytes"].as_u64(), f["server_bytes"].as_u64()), (Some(7), Some(8)), "{f}");
    assert_eq!(f.get("picked_up"), None, "present only when true: {f}");
    assert!(f["syn_to_synack_us"].is_u64() && f["synack_to_ack_us"].is_u64(), "handshake seen: {f}");
    // SYN, ACK, data; SYN-ACK, data (each side's data acknowledged or not).
    assert!(f["client_packets"].as_u64() >= Some(3) && f["server_packets"].as_u64() >= Some(2), "{f}");
    // First to last segment: well under a second here. The last segment's
    // time is kept to 2^20 ns (`conn::last_seen_ns`), so a connection that
    // lasted under a millisecond may say 0.
    assert!(f["duration_s"].as_f64().is_some_and(|d| (0.0..1.0).contains(&d)), "{f}");
}

/// SF, orderly release with `client_first` closing first: the record comes
/// when the last ACK is seen, not when TIME-WAIT expires.
fn orderly(v6: bool, client_first: bool) {
    require_root!();
    let net = Pair::new(&format!("csf{}{}", if v6 { 6 } else { 4 }, if client_first { "c" } else { "s" })).unwrap();
    let mut d = daemon(&net, &["--time-wait-timeout", "60s"]);
    let l = net.b.listen(net.b_end.addr(v6)).unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let (first, second) = if client_first { (&mut c, &mut s) } else { (&mut s, &mut c) };
    close_orderly(first, second).unwrap();
    let f = wait_final(&mut d, &ca, &sa);
    assert_eq!(state_end(&f), (Some("SF"), Some("fin")), "{f}");
    assert_eq!(f["closer"], if client_first { "client" } else { "server" }, "{f}");
    assert_eq!(f["state"], "TIME_WAIT", "the closer is in TIME-WAIT: {f}");
    assert_exchange(&f);
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    assert_eq!(one_final(&lines, &ca, &sa), f, "no second record at stop for a closed connection");
}

#[test]
fn sf_client_closes_first() {
    orderly(false, true);
}

#[test]
fn sf_server_closes_first() {
    orderly(false, false);
}

#[test]
fn sf_client_closes_first_ipv6() {
    orderly(true, true);
}

/// REJ: a SYN to a port nobody listens on, answered with RST.
#[test]
fn rej_connection_refused() {
    require_root!();
    let net = Pair::new("crej").unwrap();
    let mut d = daemon(&net, &[]);
    // Bind to learn a free port, then close it: nobody listens there.
    let port = net.b.listen(net.b_end.v4).unwrap().local_addr().unwrap().port();
    let sa = SocketAddr::new(net.b_end.v4.into(), port);
    assert_eq!(net.a.connect(sa).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    let f = d.wait_for(WAIT, "final conn of the refused SYN", |v| is_final(v) && v["server"] == sa.to_string().as_str());
    let ca: SocketAddr = f["client"].as_str().unwrap().parse().unwrap();
    assert_eq!(state_end(&f), (Some("REJ"), Some("reset")), "{f}");
    assert_eq!(reset_fields(&f), (Some("refused"), Some("server")), "{f}");
    assert_eq!((f["client_bytes"].as_u64(), f["server_bytes"].as_u64()), (Some(0), Some(0)), "{f}");
    assert_eq!((f["client_packets"].as_u64(), f["server_packets"].as_u64()), (Some(1), Some(1)), "one SYN, one RST: {f}");
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    one_final(&lines, &ca, &sa);
}

/// RSTO / RSTR: an established connection aborted (SO_LINGER 0) by the
/// client / by the server.
fn aborted(client_aborts: bool) {
    require_root!();
    let net = Pair::new(if client_aborts { "crsto" } else { "crstr" }).unwrap();
    let mut d = daemon(&net, &[]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (c, s, ca, sa) = connected(&l, &net);
    let (aborter, mut other) = if client_aborts { (c, s) } else { (s, c) };
    set_linger_zero(aborter.as_raw_fd()).unwrap();
    drop(aborter);
    assert_eq!(other.read(&mut [0u8; 1]).unwrap_err().kind(), ErrorKind::ConnectionReset);
    let f = wait_final(&mut d, &ca, &sa);
    let (code, from) = if client_aborts { ("RSTO", "client") } else { ("RSTR", "server") };
    assert_eq!(state_end(&f), (Some(code), Some("reset")), "{f}");
    assert_eq!(reset_fields(&f), (Some("abort"), Some(from)), "{f}");
    assert_exchange(&f);
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    one_final(&lines, &ca, &sa);
}

#[test]
fn rsto_client_aborts() {
    aborted(true);
}

#[test]
fn rstr_server_aborts() {
    aborted(false);
}

/// S1: established and still open when the daemon stops.
#[test]
fn s1_open_at_daemon_stop() {
    require_root!();
    let net = Pair::new("cs1").unwrap();
    let mut d = daemon(&net, &[]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (_c, _s, ca, sa) = connected(&l, &net);
    let lines = stop(&mut d);
    let f = one_final(&lines, &ca, &sa);
    assert_eq!(state_end(&f), (Some("S1"), Some("stopped")), "{f}");
    assert_eq!(f["state"], "ESTABLISHED", "{f}");
    assert_exchange(&f);
    assert_only_its_fields(&f);
}

/// S2 / S3: established, then one side's FIN (acknowledged by the other
/// side's stack, which does not close): still so when the daemon stops.
fn half_closed(client_closes: bool) {
    require_root!();
    let net = Pair::new(if client_closes { "cs2" } else { "cs3" }).unwrap();
    let mut d = daemon(&net, &[]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let (closer, other) = if client_closes { (&mut c, &mut s) } else { (&mut s, &mut c) };
    closer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(other.read(&mut [0u8; 1]).unwrap(), 0, "the FIN arrived");
    // The daemon has seen the FIN before it stops.
    d.wait_for(WAIT, "the FIN", |v| v["event"] == "fin" && about(v, &ca, &sa));
    let lines = stop(&mut d);
    let f = one_final(&lines, &ca, &sa);
    let code = if client_closes { "S2" } else { "S3" };
    assert_eq!(state_end(&f), (Some(code), Some("stopped")), "{f}");
    assert_exchange(&f);
    assert_only_its_fields(&f);
}

#[test]
fn s2_client_closed_server_did_not() {
    half_closed(true);
}

#[test]
fn s3_server_closed_client_did_not() {
    half_closed(false);
}

/// OTH: a connection established before the daemon started, picked up
/// mid-stream (both sides send data, no SYN seen). The server listens on
/// port 80, so that the client's port is the higher one (the daemon's
/// guess of who is the client for a flow picked up mid-stream).
#[test]
fn oth_picked_up_mid_stream() {
    require_root!();
    let net = Pair::new("coth").unwrap();
    let ip = net.b_end.v4;
    let l = net.b.enter(move || TcpListener::bind((ip, 80))).unwrap().unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let mut d = daemon(&net, &[]);
    c.write_all(&[1u8; 300]).unwrap();
    s.read_exact(&mut [0u8; 300]).unwrap();
    s.write_all(&[2u8; 500]).unwrap();
    c.read_exact(&mut [0u8; 500]).unwrap();
    // Both data segments and their ACKs crossed before the daemon stops.
    d.wait_for(WAIT, "the flow picked up", |v| about(v, &ca, &sa));
    std::thread::sleep(Duration::from_millis(200));
    let lines = stop(&mut d);
    let f = one_final(&lines, &ca, &sa);
    assert_eq!(state_end(&f), (Some("OTH"), Some("stopped")), "{f}");
    assert_eq!(f["picked_up"], true, "{f}");
    // Counted from the first sequence number seen each way.
    assert_eq!((f["client_bytes"].as_u64(), f["server_bytes"].as_u64()), (Some(300), Some(500)), "{f}");
    assert!(f.get("syn_to_synack_us").is_none() && f.get("synack_to_ack_us").is_none(), "no handshake seen: {f}");
    assert_only_its_fields(&f);
}

// ---- crafted: cases no pair of stacks makes ----

/// S0: a SYN nobody answers, ended by `--half-open-timeout`.
#[test]
fn s0_syn_unanswered() {
    require_root!();
    let net = Pair::new("cs0").unwrap();
    let mut d = daemon(&net, &["--half-open-timeout", "1s"]);
    let x = Crafted::new(&net);
    let (ca, sa) = x.addrs();
    x.send(&net, vec![x.seg(true, Tcp { flags: "S", seq: CISN, ..Tcp::default() })]);
    let f = wait_final(&mut d, &ca, &sa);
    assert_eq!(state_end(&f), (Some("S0"), Some("half_open_timeout")), "{f}");
    assert_eq!((f["client_packets"].as_u64(), f["server_packets"].as_u64()), (Some(1), Some(0)), "{f}");
    assert!(f.get("syn_to_synack_us").is_none(), "no SYN-ACK: {f}");
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    one_final(&lines, &ca, &sa);
}

/// The final record of a crafted flow that ended with a RST, checked
/// against the `reset` event the daemon printed for the same RST.
fn crafted_reset(d: &mut Daemon, x: &Crafted, code: &str, from: &str) {
    let (ca, sa) = x.addrs();
    let f = wait_final(d, &ca, &sa);
    assert_eq!(state_end(&f), (Some(code), Some("reset")), "{f}");
    assert_eq!(f["reset_from"], from, "{f}");
    assert_only_its_fields(&f);
    let lines = stop(d);
    let r = parse(&lines).into_iter().find(|v| v["event"] == "reset" && about(v, &ca, &sa)).expect("a reset event for the RST");
    assert_eq!(reset_fields(&f), (r["reason"].as_str(), r["from"].as_str()), "the record's reset fields are the reset event's: {f} vs {r}");
    assert_eq!(one_final(&lines, &ca, &sa), f);
}

/// RSTOS0: the client's SYN, then the client's RST; no SYN-ACK.
#[test]
fn rstos0_syn_then_the_clients_rst() {
    require_root!();
    let net = Pair::new("crstos0").unwrap();
    let mut d = daemon(&net, &[]);
    let x = Crafted::new(&net);
    x.send(&net, vec![
        x.seg(true, Tcp { flags: "S", seq: CISN, ..Tcp::default() }),
        x.seg(true, Tcp { flags: "R", seq: CISN.wrapping_add(1), ..Tcp::default() }),
    ]);
    crafted_reset(&mut d, &x, "RSTOS0", "client");
}

/// RSTRH: the server's SYN-ACK (no SYN seen), then the server's RST.
#[test]
fn rstrh_synack_then_the_servers_rst() {
    require_root!();
    let net = Pair::new("crstrh").unwrap();
    let mut d = daemon(&net, &[]);
    let x = Crafted::new(&net);
    x.send(&net, vec![
        x.seg(false, Tcp { flags: "SA", seq: SISN, ack: CISN.wrapping_add(1), ..Tcp::default() }),
        x.seg(false, Tcp { flags: "R", seq: SISN.wrapping_add(1), ..Tcp::default() }),
    ]);
    crafted_reset(&mut d, &x, "RSTRH", "server");
}

/// The final record of a crafted flow still open when the daemon stops.
fn crafted_stopped(d: &mut Daemon, x: &Crafted, code: &str) -> Value {
    let (ca, sa) = x.addrs();
    d.wait_for(WAIT, "the crafted flow", |v| about(v, &ca, &sa));
    let lines = stop(d);
    let f = one_final(&lines, &ca, &sa);
    assert_eq!(state_end(&f), (Some(code), Some("stopped")), "{f}");
    assert_only_its_fields(&f);
    f
}

/// SH: the client (higher port) sends data and its FIN, picked up
/// mid-stream; the server is never seen.
#[test]
fn sh_client_data_then_fin_server_silent() {
    require_root!();
    let net = Pair::new("csh").unwrap();
    let mut d = daemon(&net, &[]);
    let x = Crafted::new(&net);
    x.send(&net, vec![
        x.seg(true, Tcp { flags: "A", seq: CISN, ack: SISN, payload: 100, ..Tcp::default() }),
        x.seg(true, Tcp { flags: "FA", seq: CISN.wrapping_add(100), ack: SISN, ..Tcp::default() }),
    ]);
    let f = crafted_stopped(&mut d, &x, "SH");
    assert_eq!(f["picked_up"], true, "{f}");
    assert_eq!((f["client_bytes"].as_u64(), f["server_bytes"].as_u64()), (Some(100), Some(0)), "{f}");
    assert_eq!((f["client_packets"].as_u64(), f["server_packets"].as_u64()), (Some(2), Some(0)), "{f}");
}

/// SHR: the server's SYN-ACK (no SYN seen), then the server's FIN.
#[test]
fn shr_synack_then_the_servers_fin() {
    require_root!();
    let net = Pair::new("cshr").unwrap();
    let mut d = daemon(&net, &["--half-open-timeout", "60s"]);
    let x = Crafted::new(&net);
    x.send(&net, vec![
        x.seg(false, Tcp { flags: "SA", seq: SISN, ack: CISN.wrapping_add(1), ..Tcp::default() }),
        x.seg(false, Tcp { flags: "FA", seq: SISN.wrapping_add(1), ack: CISN.wrapping_add(1), ..Tcp::default() }),
    ]);
    let f = crafted_stopped(&mut d, &x, "SHR");
    assert_eq!((f["client_packets"].as_u64(), f["server_packets"].as_u64()), (Some(0), Some(2)), "{f}");
}

// ---- the record's other fields, and which records are printed ----

/// Forged RSTs outside the client's window, dropped by `--drop-invalid-rst`,
/// are counted on the connection's record. There are more of them than the
/// flow's rate limit lets events through (20 at once): the record, which
/// no rate limit may hold back, still comes, once.
#[test]
fn dropped_rsts_are_counted_on_the_record() {
    require_root!();
    const FORGED: u32 = 30;
    let net = Pair::new("crstdrop").unwrap();
    let mut d = daemon(&net, &["--drop-invalid-rst"]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let synack = d.wait_for(WAIT, "the SYN-ACK", |v| v["event"] == "state" && v["state"] == "SYN_RECV" && about(v, &ca, &sa));
    // Half the sequence space away from the client's RCV.NXT: outside any window.
    let far = (synack["seq"].as_u64().unwrap() as u32).wrapping_add(0x8000_0000);
    let x = Crafted { client: v4(ca), server: v4(sa), mac: net.a.mac(&net.a_end.ifname).unwrap() };
    x.send(&net, (0..FORGED).map(|i| x.seg(false, Tcp { flags: "R", seq: far.wrapping_add(i * 7919), ..Tcp::default() })).collect());
    d.wait_for(WAIT, "a dropped reset", |v| v["event"] == "reset" && v["action"] == "dropped" && about(v, &ca, &sa));
    std::thread::sleep(Duration::from_millis(200));
    close_orderly(&mut c, &mut s).unwrap();
    let f = wait_final(&mut d, &ca, &sa);
    assert_eq!(state_end(&f), (Some("SF"), Some("fin")), "the dropped RSTs changed nothing: {f}");
    assert_eq!(f["rst_dropped"].as_u64(), Some(FORGED.into()), "{f}");
    assert_exchange(&f);
    let lines = stop(&mut d);
    one_final(&lines, &ca, &sa);
}

fn v4(a: SocketAddr) -> std::net::SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// A refused connection and an orderly one, with the daemon printing the
/// sets `events` (None: the default): which lines came about each.
fn printed_with(net: &Pair, l: &TcpListener, events: Option<&str>) -> Vec<Value> {
    let mut args = vec!["run", "--iface", &net.a_end.ifname, "--format", "json"];
    if let Some(e) = events {
        args.extend(["--events", e]);
    }
    let mut d = Daemon::start(&net.a, &args);
    let closed_port = net.b.listen(net.b_end.v4).unwrap().local_addr().unwrap().port();
    assert!(net.a.connect(SocketAddr::new(net.b_end.v4.into(), closed_port)).is_err());
    let (mut c, mut s, ..) = connected(l, net);
    close_orderly(&mut c, &mut s).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    parse(&stop(&mut d))
}

/// `--events`: conn records only when the list holds `conn` or `all`;
/// the default set (`notable`) prints the reset and no conn record.
#[test]
fn conn_records_are_printed_when_the_event_sets_say_so() {
    require_root!();
    let net = Pair::new("cevsets").unwrap();
    let l = net.b.listen(net.b_end.v4).unwrap();
    let kinds = |lines: &[Value]| {
        let mut k: Vec<String> = lines.iter().map(|v| v["event"].as_str().unwrap_or("?").to_string()).collect();
        k.sort();
        k.dedup();
        k
    };
    let default = printed_with(&net, &l, None);
    assert!(kinds(&default).contains(&"reset".to_string()) && !kinds(&default).contains(&"conn".to_string()), "{default:?}");
    let both = printed_with(&net, &l, Some("notable,conn"));
    let conns: Vec<&str> = both.iter().filter(|v| is_final(v)).filter_map(|v| v["conn_state"].as_str()).collect();
    assert_eq!(conns, ["REJ", "SF"], "{both:?}");
    assert!(kinds(&both).contains(&"reset".to_string()), "{both:?}");
    let only = printed_with(&net, &l, Some("conn"));
    assert_eq!(kinds(&only), ["conn"], "{only:?}");
}

/// The text format prints a record's fields as `key=value` in the
/// schema's order.
#[test]
fn text_line_has_the_fields_in_order() {
    require_root!();
    const ORDER: &[&str] = &[
        "interim", "duration_s", "conn_state", "end", "closer", "reset_reason", "reset_from", "client_bytes", "server_bytes", "client_packets",
        "server_packets", "client_retransmits", "server_retransmits", "rst_dropped", "syn_to_synack_us", "synack_to_ack_us", "state",
    ];
    let net = Pair::new("ctext").unwrap();
    let mut d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--format", "text", "--events", "conn"]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    close_orderly(&mut c, &mut s).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.terminate().success());
    let lines = d.drain(Duration::from_millis(200));
    assert_eq!(lines.len(), 1, "one conn record: {lines:?}");
    let line = &lines[0];
    assert!(line.contains(" conn ") && line.contains(&format!("{ca} -> {sa}")), "{line}");
    let pairs: Vec<(&str, &str)> = line.split_whitespace().filter_map(|w| w.split_once('=')).collect();
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    let expected: Vec<&str> = ORDER.iter().copied().filter(|k| !matches!(*k, "interim" | "reset_reason" | "reset_from")).collect();
    assert_eq!(keys, expected, "{line}");
    let value = |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    assert_eq!((value("conn_state"), value("end"), value("closer")), (Some("SF"), Some("fin"), Some("client")), "{line}");
    assert_eq!((value("client_bytes"), value("server_bytes")), (Some("7"), Some("8")), "{line}");
}

// ---- the other endings ----

/// `--idle-timeout`: an established connection quiet that long is ended
/// (`end: idle_timeout`) and forgotten; its next segment starts a new
/// flow, picked up mid-stream, which gets its own final record.
#[test]
fn idle_connection_ends_then_is_picked_up_again() {
    require_root!();
    let net = Pair::new("cidle").unwrap();
    let mut d = daemon(&net, &["--idle-timeout", "1s"]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let quiet = std::time::Instant::now();
    let f = wait_final(&mut d, &ca, &sa);
    assert!(quiet.elapsed() >= Duration::from_millis(900), "ended after {:?} of quiet: {f}", quiet.elapsed());
    assert_eq!(state_end(&f), (Some("S1"), Some("idle_timeout")), "{f}");
    assert_exchange(&f);
    assert_only_its_fields(&f);
    c.write_all(b"still here").unwrap();
    s.read_exact(&mut [0u8; 10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let lines = stop(&mut d);
    // Picked up mid-stream, the client is a guess: the endpoint with the
    // higher port (`flow::initiator_of`). Both ports here are ephemeral, so
    // the guess may name either side.
    let (guessed_client, guessed_server) = if ca.port() > sa.port() { (ca, sa) } else { (sa, ca) };
    let finals: Vec<Value> = support::conn::parse(&lines)
        .into_iter()
        .filter(|v| is_final(v) && (support::conn::about(v, &ca, &sa) || support::conn::about(v, &sa, &ca)))
        .collect();
    assert_eq!(finals.len(), 2, "the idle one and the one picked up after it: {finals:#?}");
    assert_eq!(finals[0], f);
    let again = &finals[1];
    assert!(support::conn::about(again, &guessed_client, &guessed_server), "the higher port is the guessed client: {again}");
    assert_eq!((state_end(again), again["picked_up"].as_bool()), ((Some("OTH"), Some("stopped")), Some(true)), "{again}");
}

/// A SYN evicted from a full half-open table gets its final record then
/// (`end: evicted`, S0); the evicted records are as many as the kernel's
/// `half_open_evicted`, and all final records as many as `flows_created`.
#[test]
fn evicted_half_open_flows_get_their_record() {
    require_root!();
    const SYNS: u16 = 64;
    let net = Pair::new("cevict").unwrap();
    let mut d = daemon(&net, &["--max-half-open", "1", "--half-open-timeout", "60s"]);
    let x = Crafted::new(&net);
    let syns = (0..SYNS)
        .map(|i| {
            let client = std::net::SocketAddrV4::new(*x.client.ip(), 40000 + i);
            Crafted { client, server: x.server, mac: x.mac }.seg(true, Tcp { flags: "S", seq: CISN, ..Tcp::default() })
        })
        .collect();
    x.send(&net, syns);
    let first = d.wait_for(WAIT, "an evicted flow's record", |v| is_final(v) && v["end"] == "evicted");
    assert_eq!(first["conn_state"], "S0", "{first}");
    assert_only_its_fields(&first);
    let lines = stop(&mut d);
    let finals: Vec<Value> = parse(&lines).into_iter().filter(is_final).collect();
    let counters = d.exit_counters();
    let evicted = finals.iter().filter(|v| v["end"] == "evicted").count() as u64;
    assert_eq!(Some(evicted), counters.get("half_open_evicted").copied(), "{counters:?}");
    assert_eq!(Some(finals.len() as u64), counters.get("flows_created").copied(), "{counters:?}");
    assert_eq!(finals.len(), usize::from(SYNS), "one flow per SYN");
    assert!(finals.iter().all(|v| v["conn_state"] == "S0" && matches!(v["end"].as_str(), Some("evicted" | "stopped"))), "{finals:#?}");
}
