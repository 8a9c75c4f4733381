//! Reading `conn` records (issue 11, /work/wt/CONN_SCHEMA.md) out of the
//! daemon's JSON lines.

use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::Value;

use super::{
    daemon::Daemon,
    netns::{send_frames, tcp_segment, Pair, Tcp},
};

/// The daemon on a's interface, JSON, printing the event sets `events`
/// (`--events`), with `extra` options.
pub fn daemon(net: &Pair, events: &str, extra: &[&str]) -> Daemon {
    let mut args = vec!["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", events];
    args.extend_from_slice(extra);
    Daemon::start(&net.a, &args)
}

/// A connection from a to `l` in b after a small exchange (7 bytes from
/// the client, 8 from the server): (client, server, client address,
/// server address).
pub fn connected(l: &TcpListener, net: &Pair) -> (TcpStream, TcpStream, SocketAddr, SocketAddr) {
    let mut c = net.a.connect(l.local_addr().unwrap()).expect("connect");
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"request").unwrap();
    s.read_exact(&mut [0u8; 7]).unwrap();
    s.write_all(b"response").unwrap();
    c.read_exact(&mut [0u8; 8]).unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    (c, s, ca, sa)
}

/// Client ISN and server ISN of crafted flows.
pub const CISN: u32 = 1_000_000;
pub const SISN: u32 = 5_000_000;

/// A crafted flow between two addresses no stack owns (198.18.0.50:40000
/// and 198.18.0.60:80), its segments sent out of b's interface into the
/// daemon's XDP hook on a's: nothing answers them, a's stack drops them.
pub struct Crafted {
    pub client: SocketAddrV4,
    pub server: SocketAddrV4,
    pub mac: [u8; 6],
}

impl Crafted {
    pub fn new(net: &Pair) -> Crafted {
        Crafted {
            client: "198.18.0.50:40000".parse().expect("address"),
            server: "198.18.0.60:80".parse().expect("address"),
            mac: net.a.mac(&net.a_end.ifname).unwrap(),
        }
    }

    pub fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.client.into(), self.server.into())
    }

    /// A segment from the client (`from_client`) or from the server.
    pub fn seg(&self, from_client: bool, tcp: Tcp) -> Vec<u8> {
        let (src, dst) = if from_client { (self.client, self.server) } else { (self.server, self.client) };
        tcp_segment(src, dst, self.mac, Tcp { window: 64240, ..tcp }).unwrap()
    }

    /// Send segments back to back.
    pub fn send(&self, net: &Pair, segs: Vec<Vec<u8>>) {
        send_frames(&net.b, &net.b_end.ifname, segs).unwrap();
    }
}

/// A `conn` record, interim or final.
pub fn is_conn(v: &Value) -> bool {
    v["event"] == "conn"
}

/// A connection's final record: the one that says why it ended.
pub fn is_final(v: &Value) -> bool {
    is_conn(v) && v.get("end").is_some()
}

/// Any line about the connection from `client` to `server`.
pub fn about(v: &Value, client: &SocketAddr, server: &SocketAddr) -> bool {
    v["client"] == client.to_string().as_str() && v["server"] == server.to_string().as_str()
}

/// Every line of `lines`, parsed.
pub fn parse(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))).collect()
}

/// The `conn` records (interim and final) about one connection, in order.
pub fn conns_about(lines: &[String], client: &SocketAddr, server: &SocketAddr) -> Vec<Value> {
    parse(lines).into_iter().filter(|v| is_conn(v) && about(v, client, server)).collect()
}

/// Wait for the final record of one connection while the daemon runs.
pub fn wait_final(d: &mut Daemon, client: &SocketAddr, server: &SocketAddr) -> Value {
    d.wait_for(std::time::Duration::from_secs(10), &format!("final conn {client} -> {server}"), |v| is_final(v) && about(v, client, server))
}

/// Stop the daemon (SIGTERM; it must exit cleanly) and return every stdout
/// line it printed.
pub fn stop(d: &mut Daemon) -> Vec<String> {
    let status = d.terminate();
    assert!(status.success(), "tcp-track exited with {status}:\n{}", d.stderr_lines().join("\n"));
    d.drain(std::time::Duration::from_millis(200))
}

/// The one final record of a connection among `lines` (panics when there
/// is none or more than one: exactly one per flow, whatever way it ended).
pub fn one_final(lines: &[String], client: &SocketAddr, server: &SocketAddr) -> Value {
    let finals: Vec<Value> = conns_about(lines, client, server).into_iter().filter(is_final).collect();
    assert_eq!(finals.len(), 1, "exactly one final conn record for {client} -> {server}; got {finals:#?}\nall lines:\n{}", lines.join("\n"));
    finals.into_iter().next().expect("one")
}

/// `conn_state` and `end` of a record, for one assertion.
pub fn state_end(v: &Value) -> (Option<&str>, Option<&str>) {
    (v["conn_state"].as_str(), v["end"].as_str())
}

/// The reset fields (`reset_reason`, `reset_from`) of a record.
pub fn reset_fields(v: &Value) -> (Option<&str>, Option<&str>) {
    (v["reset_reason"].as_str(), v["reset_from"].as_str())
}

/// Fields that belong to other endings are absent: `closer` only with
/// `end: fin`, the reset fields only with `end: reset`, `interim` never on
/// a final record.
pub fn assert_only_its_fields(v: &Value) {
    let end = v["end"].as_str();
    assert_eq!(v.get("closer").is_some(), end == Some("fin"), "closer with end: fin only: {v}");
    for f in ["reset_reason", "reset_from"] {
        assert_eq!(v.get(f).is_some(), end == Some("reset"), "{f} with end: reset only: {v}");
    }
    if end.is_some() {
        assert!(v.get("interim").is_none(), "a final record is not interim: {v}");
    }
}
