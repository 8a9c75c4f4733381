//! `tcp-track run --port P` with real Linux TCP stacks: of two connections
//! on two ports, only P's events and `conn` record are printed (those of
//! its segments, of its TIME_WAIT deadline, and its final record), while
//! the kernel counters still count both.

mod support;

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{daemon::Daemon, netns::Pair};

const WAIT: Duration = Duration::from_secs(10);

/// A connection with data both ways, closed by the client first (so it
/// waits in TIME_WAIT): its client and server.
fn exchange(l: &TcpListener, connect: impl FnOnce(SocketAddr) -> TcpStream) -> (SocketAddr, SocketAddr) {
    let mut c = connect(l.local_addr().unwrap());
    let (mut s, _) = l.accept().unwrap();
    let ends = (c.local_addr().unwrap(), s.local_addr().unwrap());
    c.write_all(&[1; 100]).unwrap();
    let mut buf = vec![0; 100];
    s.read_exact(&mut buf).unwrap();
    s.write_all(&[2; 100]).unwrap();
    c.read_exact(&mut buf).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    drop(s);
    assert_eq!(c.read(&mut buf).unwrap(), 0);
    ends
}

#[test]
fn run_with_a_port_prints_that_ports_events_and_records_only() {
    require_root!();
    let net = Pair::new("runflt").unwrap();
    let (lp, lq) = (net.b.listen(net.b_end.addr(false)).unwrap(), net.b.listen(net.b_end.addr(false)).unwrap());
    let (p, q) = (lp.local_addr().unwrap().port(), lq.local_addr().unwrap().port());
    let port = p.to_string();
    let args = ["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "all", "--time-wait-timeout", "1s", "--port", &port];
    let mut d = Daemon::start(&net.a, &args);

    let (qc, _) = exchange(&lq, |to| net.a.connect(to).unwrap());
    let (pc, ps) = exchange(&lp, |to| net.a.connect(to).unwrap());
    let about_p = |v: &Value| v["client"] == pc.to_string().as_str() && v["server"] == ps.to_string().as_str();
    d.wait_for(WAIT, "P's TIME_WAIT expiry", |v| v["event"] == "time_wait_expired" && about_p(v));
    kill(d.pid(), Signal::SIGTERM).unwrap();
    assert!(d.wait(WAIT).success());
    // Every line printed, from the first.
    let lines: Vec<Value> = d.drain(Duration::from_millis(300)).iter().map(|l| serde_json::from_str(l).unwrap()).collect();

    for kind in ["flow_new", "state", "fin", "time_wait", "time_wait_expired", "conn"] {
        assert!(lines.iter().any(|v| v["event"] == kind && about_p(v)), "no {kind} of P: {lines:?}");
    }
    let others: Vec<&Value> = lines.iter().filter(|v| !about_p(v)).collect();
    assert!(others.is_empty(), "only P's lines (Q is {q}, its client {qc}): {others:?}");
    // Both connections were tracked all the same.
    let counters = d.stderr_lines().into_iter().rev().find(|l| l.contains("flows_created=")).expect("the counters line at exit");
    assert!(counters.contains("flows_created=2 "), "{counters}");
}
