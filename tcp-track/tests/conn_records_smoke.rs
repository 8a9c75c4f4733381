//! Connection records (`--events conn`) with real Linux TCP stacks: a
//! connection the client closes after data both ways, one refused, and one
//! still open when the daemon stops; each gets exactly one final `conn`
//! line, and their number is the kernel's `flows_created`. (The full suite
//! of `conn_state`s, exact bytes under loss, timing and interim records is
//! `conn_records.rs`.)

mod support;

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr},
    time::Duration,
};

use nix::sys::signal::{kill, Signal};
use serde_json::Value;
use support::{daemon::Daemon, netns::Pair};

const WAIT: Duration = Duration::from_secs(10);

fn about(v: &Value, client: &SocketAddr, server: &SocketAddr) -> bool {
    v["event"] == "conn" && v["client"] == client.to_string().as_str() && v["server"] == server.to_string().as_str()
}

#[test]
fn a_close_a_refusal_and_a_stop_give_one_conn_line_each() {
    require_root!();
    let net = Pair::new("connsm").unwrap();
    let mut d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--format", "json", "--events", "conn"]);

    // Data both ways, then the client closes first and the server after it.
    let l = net.b.listen(net.b_end.addr(false)).unwrap();
    let mut c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    c.write_all(&[1; 1000]).unwrap();
    let mut got = vec![0; 1000];
    s.read_exact(&mut got).unwrap();
    s.write_all(&[2; 2000]).unwrap();
    let mut back = vec![0; 2000];
    c.read_exact(&mut back).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s.read(&mut got).unwrap(), 0, "the server sees the client's FIN");
    drop(s);
    assert_eq!(c.read(&mut back).unwrap(), 0, "and the client the server's");
    drop(c);
    let r = d.wait_for(WAIT, "conn of the close", |v| about(v, &ca, &sa));
    let fields = ["conn_state", "end", "closer", "client_bytes", "server_bytes", "state"];
    let got: Vec<String> = fields.iter().map(|k| r[*k].to_string()).collect();
    assert_eq!(got, [r#""SF""#, r#""fin""#, r#""client""#, "1000", "2000", r#""TIME_WAIT""#], "{r}");
    assert!(r["client_packets"].as_u64().unwrap() >= 4 && r["server_packets"].as_u64().unwrap() >= 3, "{r}");
    assert!(r["syn_to_synack_us"].is_u64() && r["synack_to_ack_us"].is_u64(), "the handshake was seen: {r}");
    assert!(r.get("interim").is_none() && r.get("reset_reason").is_none(), "{r}");

    // A port nobody listens on.
    let port = net.b.listen(net.b_end.addr(false)).unwrap().local_addr().unwrap().port();
    let refused_at = SocketAddr::new(net.b_end.addr(false), port);
    assert_eq!(net.a.connect(refused_at).unwrap_err().kind(), ErrorKind::ConnectionRefused);
    let r = d.wait_for(WAIT, "conn of the refusal", |v| v["event"] == "conn" && v["server"] == refused_at.to_string().as_str());
    let fields = ["conn_state", "end", "reset_reason", "reset_from", "client_packets", "server_packets", "client_bytes", "state"];
    let got: Vec<String> = fields.iter().map(|k| r[*k].to_string()).collect();
    assert_eq!(got, [r#""REJ""#, r#""reset""#, r#""refused""#, r#""server""#, "1", "1", "0", r#""CLOSE""#], "{r}");

    // One left open: its record comes at SIGTERM.
    let l2 = net.b.listen(net.b_end.addr(false)).unwrap();
    let open = net.a.connect(l2.local_addr().unwrap()).unwrap();
    let (_s2, _) = l2.accept().unwrap();
    let (oa, osa) = (open.local_addr().unwrap(), l2.local_addr().unwrap());
    std::thread::sleep(Duration::from_millis(300));
    kill(d.pid(), Signal::SIGTERM).unwrap();
    assert!(d.wait(WAIT).success());
    let lines: Vec<Value> = d.drain(Duration::from_millis(300)).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let stopped: Vec<&Value> = lines.iter().filter(|v| about(v, &oa, &osa)).collect();
    assert_eq!(stopped.len(), 1, "{lines:?}");
    assert_eq!((stopped[0]["conn_state"].as_str(), stopped[0]["end"].as_str()), (Some("S1"), Some("stopped")), "{}", stopped[0]);

    // Exactly one final record per flow the kernel created.
    let finals = lines.iter().filter(|v| v["event"] == "conn" && v.get("end").is_some()).count();
    let counters = d.stderr_lines().into_iter().rev().find(|l| l.contains("flows_created=")).expect("the counters line at exit");
    let created: usize = counters.split("flows_created=").nth(1).and_then(|t| t.split_whitespace().next()).unwrap().parse().unwrap();
    assert_eq!(finals, created, "{counters}\n{lines:?}");
    assert!(lines.iter().all(|v| v["event"] == "conn"), "--events conn prints conn records only");
    drop(open);
}
