//! After SIGTERM nothing of ours stays attached: no XDP program, no TCX or
//! clsact egress program, and the exit status is 0.

mod support;

use std::{
    io::{Read, Write},
    thread,
    time::Duration,
};

use support::{
    daemon::Daemon,
    hooks::{tcx_egress, xdp_attached},
    netns::{Netns, Pair, Routed},
};

/// Classic tc state: filters on egress and any clsact qdisc.
fn tc_egress_state(ns: &Netns, ifname: &str) -> (String, String) {
    let filters = ns.exec("tc", &["filter", "show", "dev", ifname, "egress"]).unwrap();
    let q = ns.exec("tc", &["qdisc", "show", "dev", ifname]).unwrap();
    (String::from_utf8_lossy(&filters.stdout).into_owned(), String::from_utf8_lossy(&q.stdout).into_owned())
}

#[test]
fn sigterm_detaches_xdp_and_egress() {
    require_root!();
    let net = Pair::new("detach").unwrap();
    let ifname = net.a_end.ifname.clone();
    let d = Daemon::start(&net.a, &["run", "--iface", &ifname, "--xdp-mode", "native"]);
    assert!(xdp_attached(&net.a, &ifname), "XDP should be attached while running");
    let progs = tcx_egress(&net.a, &ifname);
    assert_eq!(progs.len(), 1, "one egress program while running: {progs:?}");
    assert!(progs[0].starts_with("tcp_track"), "{progs:?}");
    assert!(d.stderr_lines().iter().any(|l| l.contains("XDP attached in native (driver) mode + TC egress")));

    let status = d.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(!xdp_attached(&net.a, &ifname), "{}", net.a.ip(&["-d", "link", "show", "dev", &ifname]).unwrap());
    assert_eq!(tcx_egress(&net.a, &ifname), Vec::<String>::new());
    let (filters, qdiscs) = tc_egress_state(&net.a, &ifname);
    assert_eq!(filters.trim(), "", "no egress filter may remain");
    assert!(!qdiscs.contains("clsact"), "no clsact qdisc may remain: {qdiscs}");
}

#[test]
fn sigint_detaches_too() {
    require_root!();
    let net = Pair::new("sigint").unwrap();
    let ifname = net.a_end.ifname.clone();
    let d = Daemon::start(&net.a, &["run", "--iface", &ifname, "--xdp-mode", "skb"]);
    assert!(xdp_attached(&net.a, &ifname));
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGINT).unwrap();
    let mut d = d;
    let status = d.wait(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(!xdp_attached(&net.a, &ifname));
    assert!(tcx_egress(&net.a, &ifname).is_empty());
}

/// A router watching both of its interfaces with XDP alone (`--no-egress`)
/// sees both directions of a forwarded connection in one flow entry.
#[test]
fn router_sees_both_directions_on_two_interfaces() {
    require_root!();
    let net = Routed::new("route").unwrap();
    let mut d = Daemon::start(
        &net.r,
        &["run", "--iface", &net.ra_end.ifname, "--iface", &net.rb_end.ifname, "--no-egress", "--format", "json", "--events", "all"],
    );
    assert!(tcx_egress(&net.r, &net.ra_end.ifname).is_empty(), "--no-egress attaches no TC program");
    let listener = net.b.listen(net.b_end.v4).unwrap();
    let server_addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).unwrap();
        buf
    });
    let mut c = net.a.connect(server_addr).unwrap();
    let client_addr = c.local_addr().unwrap();
    c.write_all(b"through the router").unwrap();
    drop(c);
    assert_eq!(server.join().unwrap(), b"through the router");

    let s = server_addr.to_string();
    let new = d.wait_for(Duration::from_secs(5), "flow_new", |v| v["event"] == "flow_new" && v["server"] == s.as_str());
    assert_eq!(new["client"], client_addr.to_string().as_str());
    assert_eq!(new["iface"], net.ra_end.ifname.as_str(), "the SYN enters the router on the a side: {new}");
    let fin = d.wait_for(Duration::from_secs(5), "fin from the server", |v| v["event"] == "fin" && v["from"] == "server");
    assert_eq!(fin["iface"], net.rb_end.ifname.as_str(), "the server's FIN enters on the b side: {fin}");
    let lines = d.drain(Duration::from_millis(300));
    let news = lines.iter().filter(|l| l.contains("\"flow_new\"")).count();
    assert_eq!(news, 1, "one flow entry for both directions and both interfaces:\n{}", lines.join("\n"));
    assert!(d.stop().success());
}
