//! `--drop-invalid-rst` with real Linux TCP stacks and crafted RSTs: forged
//! resets are dropped in XDP and reported, legitimate ones still reach the
//! applications, and a corrupt RST is never taken for an attack.

mod support;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream},
    os::fd::AsRawFd,
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{
    daemon::{exit_counter, Daemon},
    netns::{send_frames, set_linger_zero, tcp_frame, Netns, Pair},
};

const WAIT: Duration = Duration::from_secs(10);

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// A connection from a to b, with what the daemon saw of its handshake.
struct Conn {
    c: TcpStream,
    s: TcpStream,
    ca: SocketAddr,
    sa: SocketAddr,
    /// Initial sequence numbers, from the daemon's events.
    c_isn: u32,
    s_isn: u32,
}

fn open(net: &Pair, d: &mut Daemon) -> Conn {
    let l = net.b.listen(net.b_end.v4).unwrap();
    let c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    for x in [&c, &s] {
        x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let about = |v: &Value| v["client"] == ca.to_string().as_str() && v["server"] == sa.to_string().as_str();
    let syn = d.wait_for(WAIT, "the SYN", |v| v["event"] == "flow_new" && about(v));
    let synack = d.wait_for(WAIT, "the SYN-ACK", |v| v["event"] == "state" && v["state"] == "SYN_RECV" && about(v));
    Conn { c, s, ca, sa, c_isn: syn["seq"].as_u64().unwrap() as u32, s_isn: synack["seq"].as_u64().unwrap() as u32 }
}

/// Both directions still carry data.
fn still_works(conn: &mut Conn) {
    conn.c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.s.read_exact(&mut buf).unwrap();
    conn.s.write_all(b"pong").unwrap();
    conn.c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

/// `TcpExtTCPChallengeACK` in `ns` (absolute, history untouched).
fn challenge_acks(ns: &Netns) -> u64 {
    let out = ns.exec("nstat", &["-asz", "TcpExtTCPChallengeACK"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("TcpExtTCPChallengeACK").map(|v| v.split_whitespace().next().unwrap_or("0").parse().unwrap()))
        .unwrap_or(0)
}

fn daemon_on_client_side(net: &Pair, drop: bool) -> Daemon {
    let mut args = vec!["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all"];
    if drop {
        args.push("--drop-invalid-rst");
    }
    Daemon::start(&net.a, &args)
}

/// 1: forged RSTs with random out-of-window sequence numbers and the right
/// 4-tuple, towards the client: all dropped and reported; data keeps flowing.
#[test]
fn out_of_window_burst_is_dropped() {
    require_root!();
    let net = Pair::new("rstoow").unwrap();
    let mut d = daemon_on_client_side(&net, true);
    let mut conn = open(&net, &mut d);
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    let rcv_nxt = conn.s_isn.wrapping_add(1);
    let frames: Vec<Vec<u8>> = (1..=50u32)
        .map(|i| tcp_frame(v4(conn.sa), v4(conn.ca), mac, "R", rcv_nxt.wrapping_add(0x1000_0000u32.wrapping_mul(i % 15 + 1)).wrapping_add(i * 7919), 0).unwrap())
        .collect();
    send_frames(&net.b, &net.b_end.ifname, frames).unwrap();
    let r = d.wait_for(WAIT, "a dropped reset", |v| v["event"] == "reset" && v["action"] == "dropped");
    assert_eq!((r["reason"].as_str(), r["window"].as_str()), (Some("invalid"), Some("outside")), "{r}");
    still_works(&mut conn);
    let printed = d.drain(Duration::from_millis(300)).iter().filter(|l| l.contains(r#""action":"dropped""#)).count() as u64;
    let lines = stop(d);
    assert_eq!(exit_counter(&lines, "rst_dropped"), 50, "every forged RST dropped: {lines:?}");
    // Every drop is reported: printed, or, past the flow's rate limit,
    // counted among the events not printed.
    let held_back = lines
        .iter()
        .find_map(|l| l.split(" events not printed").next().filter(|_| l.contains(" events not printed")))
        .and_then(|l| l.split_whitespace().last())
        .map_or(0, |n| n.parse::<u64>().unwrap());
    assert_eq!(printed + held_back, 50, "{printed} printed, {held_back} held back: {lines:?}");
}

/// SIGTERM, wait, and return the daemon's stderr (its counters are there).
fn stop(mut d: Daemon) -> Vec<String> {
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(d.wait(Duration::from_secs(10)).success());
    d.stderr_lines()
}

/// 2: in-window inexact RSTs towards the server: with the flag, the server's
/// stack never sees them (its challenge-ACK counter does not move);
/// without it, it answers them with challenge ACKs (RFC 5961 §3.2).
fn in_window(drop: bool) -> u64 {
    let net = Pair::new(if drop { "rstinw1" } else { "rstinw0" }).unwrap();
    // The daemon guards the server's side this time.
    let mut args = vec!["run", "--iface", &net.b_end.ifname, "--format", "json", "--events", "all"];
    if drop {
        args.push("--drop-invalid-rst");
    }
    let mut d = Daemon::start(&net.b, &args);
    let mut conn = open(&net, &mut d);
    let before = challenge_acks(&net.b);
    let mac = net.b.mac(&net.b_end.ifname).unwrap();
    // The server expects c_isn + 1 next; 1000 to 10000 bytes further is in
    // its window but not exact.
    let frames = (1..=10u32).map(|i| tcp_frame(v4(conn.ca), v4(conn.sa), mac, "R", conn.c_isn.wrapping_add(1 + 1000 * i), 0).unwrap()).collect();
    send_frames(&net.a, &net.a_end.ifname, frames).unwrap();
    thread::sleep(Duration::from_millis(300));
    let moved = challenge_acks(&net.b) - before;
    still_works(&mut conn);
    if drop {
        let r = d.wait_for(WAIT, "a dropped reset", |v| v["event"] == "reset" && v["action"] == "dropped");
        assert_eq!((r["reason"].as_str(), r["window"].as_str()), (Some("invalid"), Some("inside")), "{r}");
    }
    assert!(d.stop().success());
    moved
}

#[test]
fn in_window_rsts_never_reach_the_stack_with_the_flag() {
    require_root!();
    assert_eq!(in_window(true), 0, "with --drop-invalid-rst the server sends no challenge ACK");
    assert!(in_window(false) > 0, "without it the server answers with challenge ACKs");
}

/// 3: an exact RST towards a client in TIME_WAIT: with the flag its
/// TIME_WAIT socket survives; without it (tcp_rfc1337=0) it is gone.
fn assassinate(guard: bool) -> bool {
    let net = Pair::new(if guard { "rsttw1" } else { "rsttw0" }).unwrap();
    net.a.sysctl("net.ipv4.tcp_rfc1337=0").unwrap();
    let mut d = daemon_on_client_side(&net, guard);
    let mut conn = open(&net, &mut d);
    conn.c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    conn.s.read_to_end(&mut rest).unwrap();
    let (ca, sa) = (conn.ca, conn.sa);
    let s_isn = conn.s_isn;
    drop(conn.s);
    conn.c.read_to_end(&mut rest).unwrap();
    d.wait_for(WAIT, "time_wait", |v| v["event"] == "time_wait" && v["client"] == ca.to_string().as_str());
    let in_tw = |ns: &Netns| {
        let out = ns.exec("ss", &["-tanH", "state", "time-wait"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&ca.to_string())
    };
    assert!(in_tw(&net.a), "the client is in TIME-WAIT before the RST");
    // The client expects the server's ISN + 1 (its SYN) + 1 (its FIN).
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    send_frames(&net.b, &net.b_end.ifname, vec![tcp_frame(v4(sa), v4(ca), mac, "R", s_isn.wrapping_add(2), 0).unwrap()]).unwrap();
    let r = d.wait_for(WAIT, "the reset", |v| v["event"] == "reset" && v["client"] == ca.to_string().as_str());
    assert_eq!(r["reason"], "time_wait_assassination", "{r}");
    assert_eq!(r["action"], if guard { "dropped" } else { "passed" }, "{r}");
    thread::sleep(Duration::from_millis(200));
    let survived = in_tw(&net.a);
    drop(conn.c);
    assert!(d.stop().success());
    survived
}

#[test]
fn time_wait_survives_assassination_with_the_flag() {
    require_root!();
    assert!(assassinate(true), "with --drop-invalid-rst the client's TIME_WAIT survives");
    assert!(!assassinate(false), "without it (and tcp_rfc1337=0) the RST kills the TIME_WAIT");
}

/// 4: legitimate resets still work with the flag, in both directions.
#[test]
fn legitimate_resets_pass_with_the_flag() {
    require_root!();
    let net = Pair::new("rstok").unwrap();
    let mut d = daemon_on_client_side(&net, true);
    let expect = |d: &mut Daemon, conn_c: SocketAddr, reason: &str, from: &str| {
        let r = d.wait_for(WAIT, reason, |v| v["event"] == "reset" && v["client"] == conn_c.to_string().as_str());
        assert_eq!((r["reason"].as_str(), r["from"].as_str(), r["action"].as_str()), (Some(reason), Some(from), Some("passed")), "{r}");
    };

    // The server aborts (SO_LINGER 0): its RST arrives through XDP.
    let mut conn = open(&net, &mut d);
    set_linger_zero(conn.s.as_raw_fd()).unwrap();
    drop(conn.s);
    let mut buf = [0u8; 1];
    assert_eq!(conn.c.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset);
    expect(&mut d, conn.ca, "abort", "server");

    // The client aborts: the server's application sees the reset.
    let conn = open(&net, &mut d);
    let (c, mut s, ca) = (conn.c, conn.s, conn.ca);
    set_linger_zero(c.as_raw_fd()).unwrap();
    drop(c);
    assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset);
    expect(&mut d, ca, "abort", "client");

    // Close with unread data on the server.
    let mut conn = open(&net, &mut d);
    conn.c.write_all(b"unread").unwrap();
    thread::sleep(Duration::from_millis(100));
    drop(conn.s);
    thread::sleep(Duration::from_millis(100));
    let err = conn.c.write_all(b"more").and_then(|_| conn.c.read(&mut buf).map(|_| ()));
    assert_eq!(err.unwrap_err().kind(), ErrorKind::ConnectionReset);
    expect(&mut d, conn.ca, "abort", "server");

    // Refused.
    let ip = net.b_end.v4;
    let port = net.b.listen(ip).unwrap().local_addr().unwrap().port();
    let to = SocketAddr::from((ip, port));
    let err = net.a.connect(to).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let r = d.wait_for(WAIT, "refused", |v| v["event"] == "reset" && v["server"] == to.to_string().as_str());
    assert_eq!((r["reason"].as_str(), r["action"].as_str()), (Some("refused"), Some("passed")), "{r}");

    // A stateless peer: the server's socket vanishes silently (its RST
    // dropped in its namespace); the client's next data is answered by the
    // server's stack with a RST carrying the ACK it got, through XDP.
    let mut conn = open(&net, &mut d);
    net.b.nft("add table inet tt; add chain inet tt out { type filter hook output priority 0; }; add rule inet tt out tcp flags & rst == rst drop").unwrap();
    set_linger_zero(conn.s.as_raw_fd()).unwrap();
    drop(conn.s);
    net.b.nft("delete table inet tt").unwrap();
    conn.c.write_all(b"anyone?").unwrap();
    assert_eq!(conn.c.read(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionReset);
    expect(&mut d, conn.ca, "stateless_peer", "server");

    assert!(d.stop().success());
}

/// 5: a RST with a bad checksum is never counted as an attack, nor applied.
#[test]
fn corrupt_rst_is_not_an_attack() {
    require_root!();
    let net = Pair::new("rstcsum").unwrap();
    let mut d = daemon_on_client_side(&net, true);
    let mut conn = open(&net, &mut d);
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    let mut frames = Vec::new();
    for seq in [conn.s_isn.wrapping_add(1), conn.s_isn.wrapping_add(0x4000_0000)] {
        let mut f = tcp_frame(v4(conn.sa), v4(conn.ca), mac, "R", seq, 0).unwrap();
        f[14 + 20 + 16] ^= 0x5a;
        frames.push(f);
    }
    send_frames(&net.b, &net.b_end.ifname, frames).unwrap();
    thread::sleep(Duration::from_millis(300));
    still_works(&mut conn);
    let lines = d.drain(Duration::from_millis(300));
    assert!(!lines.iter().any(|l| l.contains("\"reset\"")), "no reset event for corrupt RSTs:\n{}", lines.join("\n"));
    let lines = stop(d);
    assert_eq!(exit_counter(&lines, "rst_bad_checksum"), 2, "{lines:?}");
    assert_eq!(exit_counter(&lines, "rst_dropped"), 0, "{lines:?}");
}

/// Asymmetric routing: on a `--liberal-iface` nothing is judged enough to
/// be dropped, even with the flag; an interface not watched is refused.
#[test]
fn liberal_interface_drops_nothing() {
    require_root!();
    let net = Pair::new("rstlib").unwrap();
    let ifname = net.a_end.ifname.clone();
    let mut d = Daemon::start(
        &net.a,
        &["run", "--iface", &ifname, "--format", "json", "--events", "all", "--drop-invalid-rst", "--liberal-iface", &ifname],
    );
    assert!(d.stderr_lines().iter().any(|l| l.contains("liberal")), "{:?}", d.stderr_lines());
    let mut conn = open(&net, &mut d);
    let mac = net.a.mac(&ifname).unwrap();
    let far = conn.s_isn.wrapping_add(0x4000_0000);
    send_frames(&net.b, &net.b_end.ifname, vec![tcp_frame(v4(conn.sa), v4(conn.ca), mac, "R", far, 0).unwrap()]).unwrap();
    let r = d.wait_for(WAIT, "the reset", |v| v["event"] == "reset");
    assert_eq!((r["reason"].as_str(), r["action"].as_str()), (Some("invalid"), Some("passed")), "{r}");
    still_works(&mut conn);
    let lines = stop(d);
    assert_eq!(exit_counter(&lines, "rst_dropped"), 0);

    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &net.a.name, support::daemon::BIN, "run", "--iface", &ifname, "--liberal-iface", "eth9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--liberal-iface eth9: not one of the watched interfaces"), "{err}");
}
