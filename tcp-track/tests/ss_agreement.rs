//! Real connections between two Linux TCP stacks, closed in every way a
//! connection closes; at the end the tracker's view of each endpoint (the
//! last event of each flow) must be what `ss -tan` shows inside each
//! namespace: TIME-WAIT on the active closer, FIN-WAIT-2 / CLOSE-WAIT for a
//! half-closed connection, nothing at all for a closed one.

mod support;

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    thread,
    time::Duration,
};

use serde_json::Value;
use support::{
    daemon::Daemon,
    netns::{close_orderly, set_linger_zero, Netns, Pair},
};

/// `ss` state of the socket `local` → `remote` in `ns`, or CLOSED when there is none.
fn ss_state(ns: &Netns, local: SocketAddr, remote: SocketAddr) -> String {
    let out = ns.exec("ss", &["-tanH", "state", "all"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5 && cols[3] == local.to_string() && cols[4] == remote.to_string() {
            return cols[0].to_string();
        }
    }
    "CLOSED".to_string()
}

/// A connected pair: (client stream in a, server stream in b).
fn connect(net: &Pair, v6: bool) -> (TcpStream, TcpStream) {
    let listener = net.b.listen(net.b_end.addr(v6)).expect("bind");
    let client = net.a.connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    (client, server)
}

fn exchange(c: &mut TcpStream, s: &mut TcpStream) {
    c.write_all(b"request").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    s.write_all(b"response").unwrap();
    let mut buf = [0u8; 8];
    c.read_exact(&mut buf).unwrap();
}

fn read_eof(s: &mut TcpStream) {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
}

/// Orderly release, `first` closing first; both sockets closed at the end.
fn orderly(net: &Pair, v6: bool, client_first: bool) -> (SocketAddr, SocketAddr) {
    let (mut c, mut s) = connect(net, v6);
    let ends = (c.local_addr().unwrap(), s.local_addr().unwrap());
    exchange(&mut c, &mut s);
    let (first, second) = if client_first { (&mut c, &mut s) } else { (&mut s, &mut c) };
    close_orderly(first, second).unwrap();
    ends
}

/// Both FINs on the wire before either arrives: each namespace's netfilter
/// input hook drops incoming FINs (the tracker's XDP program, before
/// netfilter, still sees them cross), both sides close, then the rules go
/// and the retransmitted FINs complete the close. Both ends end in TIME-WAIT.
fn simultaneous(net: &Pair) -> (SocketAddr, SocketAddr) {
    let (mut c, mut s) = connect(net, false);
    let ends = (c.local_addr().unwrap(), s.local_addr().unwrap());
    exchange(&mut c, &mut s);
    for ns in [&net.a, &net.b] {
        let rules = "add table inet tt; add chain inet tt input { type filter hook input priority 0; }; add rule inet tt input tcp flags & fin == fin drop";
        let out = ns.exec("nft", &[rules]).unwrap();
        assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    }
    c.shutdown(Shutdown::Write).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    thread::sleep(Duration::from_millis(100));
    for ns in [&net.a, &net.b] {
        assert!(ns.exec("nft", &["delete", "table", "inet", "tt"]).unwrap().status.success());
    }
    read_eof(&mut c);
    read_eof(&mut s);
    ends
}

/// The client closes its sending side; the server keeps sending. Returns the
/// sockets, still half-closed.
fn half_closed(net: &Pair) -> (TcpStream, TcpStream) {
    let (mut c, mut s) = connect(net, false);
    exchange(&mut c, &mut s);
    c.shutdown(Shutdown::Write).unwrap();
    read_eof(&mut s);
    for _ in 0..5 {
        s.write_all(&[42u8; 3000]).unwrap();
        let mut buf = [0u8; 3000];
        c.read_exact(&mut buf).unwrap();
    }
    (c, s)
}

/// SO_LINGER 0: close sends a RST and frees the socket at once.
fn abortive(net: &Pair) -> (SocketAddr, SocketAddr) {
    let (mut c, mut s) = connect(net, false);
    let ends = (c.local_addr().unwrap(), s.local_addr().unwrap());
    exchange(&mut c, &mut s);
    set_linger_zero(c.as_raw_fd()).unwrap();
    drop(c);
    let mut buf = [0u8; 1];
    let err = s.read(&mut buf).expect_err("the server sees the reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    drop(s);
    ends
}

/// The last kernel transition the daemon printed for each (client,
/// server): the events that carry both endpoint states.
fn last_events(lines: &[String]) -> HashMap<(String, String), Value> {
    let mut last = HashMap::new();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap();
        if v.get("client_state").is_none() {
            continue;
        }
        last.insert((v["client"].as_str().unwrap().to_string(), v["server"].as_str().unwrap().to_string()), v);
    }
    last
}

#[test]
fn tracker_agrees_with_ss_in_both_namespaces() {
    require_root!();
    let net = Pair::new("ss").unwrap();
    let mut d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all"]);

    let mut cases: Vec<(&str, SocketAddr, SocketAddr, &str, &str)> = Vec::new();
    let (c, s) = orderly(&net, false, true);
    cases.push(("client closes first", c, s, "TIME-WAIT", "CLOSED"));
    let (c, s) = orderly(&net, true, true);
    cases.push(("client closes first, IPv6", c, s, "TIME-WAIT", "CLOSED"));
    let (c, s) = orderly(&net, false, false);
    cases.push(("server closes first", c, s, "CLOSED", "TIME-WAIT"));
    let (c, s) = simultaneous(&net);
    cases.push(("simultaneous close", c, s, "TIME-WAIT", "TIME-WAIT"));
    let (hc, hs) = half_closed(&net);
    let (c, s) = (hc.local_addr().unwrap(), hs.local_addr().unwrap());
    cases.push(("half-close, data still flowing", c, s, "FIN-WAIT-2", "CLOSE-WAIT"));
    let (c, s) = abortive(&net);
    cases.push(("abortive close (SO_LINGER 0)", c, s, "CLOSED", "CLOSED"));

    let lines = d.drain(Duration::from_millis(500));
    let last = last_events(&lines);
    let mut failures = Vec::new();
    for (name, c, s, want_c, want_s) in &cases {
        let ss_c = ss_state(&net.a, *c, *s);
        let ss_s = ss_state(&net.b, *s, *c);
        let ev = last.get(&(c.to_string(), s.to_string()));
        let (tr_c, tr_s) = match ev {
            Some(v) => (v["client_state"].as_str().unwrap().to_string(), v["server_state"].as_str().unwrap().to_string()),
            None => ("(no event)".into(), "(no event)".into()),
        };
        // The scenario did what it meant to (checked against the kernel's own sockets)...
        if (ss_c.as_str(), ss_s.as_str()) != (*want_c, *want_s) {
            failures.push(format!("{name}: ss shows client {ss_c}, server {ss_s}; the scenario expected {want_c}/{want_s}"));
        }
        // ...and the tracker agrees with the kernel's own sockets.
        if (tr_c.as_str(), tr_s.as_str()) != (ss_c.as_str(), ss_s.as_str()) {
            failures.push(format!("{name}: tracker says client {tr_c}, server {tr_s}; ss says {ss_c}/{ss_s}; last event: {ev:?}"));
        }
    }
    drop((hc, hs));
    assert!(failures.is_empty(), "{}\nall events:\n{}", failures.join("\n"), lines.join("\n"));
    assert!(d.stop().success());
}
