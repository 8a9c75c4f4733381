//! Pinned state and `tcp-track flows` with real Linux TCP stacks: a daemon
//! restarted with `--keep-state` keeps its programs attached (the same
//! links), its table (listed the same before and after), its deadlines (the
//! TIME_WAIT expiries and the half-open report fall due in the new daemon)
//! and its RST guard (a forged RST after the restart is dropped); a killed
//! daemon's state is adopted; an interface re-created between two daemons
//! gets new links in place of the severed pinned ones; the listing agrees with `ss -tan` in both
//! namespaces, also for 10,000 connections; and the bad inputs (nothing
//! pinned, no bpffs, no permission, a layout of another version, a state in
//! use) each give one clear line.
//!
//! Each test pins under a bpffs of its own, mounted on a fresh directory
//! and removed (unpinned, unmounted) when the test ends, also on failure.

mod support;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    bpffs::Bpffs,
    daemon::{Daemon, BIN},
    netns::{send_frames, tcp_frame, Netns, Pair},
};
use tcp_track::pins::StateDir;

const WAIT: Duration = Duration::from_secs(15);

/// `tcp-track ARGS` run to its end in the root namespace.
fn tcp_track(args: &[&str]) -> Output {
    Command::new(BIN).env_remove("RUST_LOG").args(args).output().unwrap()
}

/// `tcp-track flows --state-dir DIR --format json ARGS`: one object per flow.
fn flows(bpf: &Bpffs, args: &[&str]) -> Vec<Value> {
    let state = bpf.state();
    let out = tcp_track(&[&["flows", "--state-dir", &state, "--format", "json"], args].concat());
    assert!(out.status.success(), "flows failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// (client, server, state) of every flow listed.
fn listing(bpf: &Bpffs) -> BTreeSet<(String, String, String)> {
    flows(bpf, &[]).iter().map(|f| (f["client"].to_string(), f["server"].to_string(), f["state"].to_string())).collect()
}

/// The one error line of a failed command, checked: exit status 1, one
/// line, nothing on stdout.
fn one_line_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "exactly one line: {err}");
    assert!(out.stdout.is_empty());
    err
}

/// Whether an XDP program is attached to the end `ifname` of `ns`.
fn xdp_attached(ns: &Netns, ifname: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", ifname]).unwrap().contains("prog/xdp")
}

/// The link ids a daemon logged (`links N, M`).
fn link_ids(d: &Daemon) -> String {
    let lines = d.stderr_lines();
    let line = lines.iter().find(|l| l.contains("(links ")).unwrap_or_else(|| panic!("no link ids: {lines:?}"));
    line.split("(links ").nth(1).unwrap().split([',', ')']).take(2).collect::<Vec<_>>().join(",")
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("IPv4 only"),
    }
}

/// A connected pair: (client in a, server in b).
fn connect(net: &Pair, l: &TcpListener) -> (TcpStream, TcpStream) {
    let c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (c, s)
}

/// A connection the client closes first: its side ends in TIME_WAIT.
fn time_wait(net: &Pair, l: &TcpListener) -> (SocketAddr, SocketAddr) {
    let (c, mut s) = connect(net, l);
    let ends = (c.local_addr().unwrap(), s.local_addr().unwrap());
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    drop(s);
    thread::sleep(Duration::from_millis(100));
    drop(c);
    ends
}

/// A SYN the server's namespace drops: the client stays in SYN-SENT while
/// it retries (for `secs`). Returns the server's address.
fn half_open(net: &Pair, secs: u64) -> (SocketAddr, thread::JoinHandle<()>) {
    let l = net.b.listen(net.b_end.v4).unwrap();
    let server = l.local_addr().unwrap();
    net.b
        .nft(&format!(
            "add table inet tt; add chain inet tt in {{ type filter hook input priority 0; }}; add rule inet tt in tcp dport {} drop",
            server.port()
        ))
        .unwrap();
    let ns = net.a.path();
    let attempt = thread::spawn(move || {
        let f = std::fs::File::open(ns).unwrap();
        nix::sched::setns(std::os::fd::AsFd::as_fd(&f), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let _ = TcpStream::connect_timeout(&server, Duration::from_secs(secs));
        drop(l);
    });
    (server, attempt)
}

fn is(v: &Value, event: &str, client: SocketAddr, server: SocketAddr) -> bool {
    v["event"] == event && v["client"] == client.to_string().as_str() && v["server"] == server.to_string().as_str()
}

/// Established connections, TIME_WAITs and a half-open handshake survive a
/// restart of a `--keep-state` daemon: same links throughout, same listing,
/// deadlines kept, the RST guard on; and a connection opened while no
/// daemon runs is tracked from its handshake.
#[test]
fn a_kept_state_survives_a_restart() {
    require_root!();
    let net = Pair::new("pinrs").unwrap();
    let bpf = Bpffs::new("restart");
    let state = bpf.state();
    let args = [
        "run", "--iface", &net.a_end.ifname, "--format", "json", "--state-dir", &state, "--keep-state", "--drop-invalid-rst",
        "--time-wait-timeout", "30s", "--half-open-timeout", "20s",
    ];
    let first = Daemon::start(&net.a, &args);
    let ids = link_ids(&first);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let mut open: Vec<(TcpStream, TcpStream)> = (0..3).map(|_| connect(&net, &l)).collect();
    for (c, s) in &mut open {
        c.write_all(b"before").unwrap();
        let mut buf = [0u8; 6];
        s.read_exact(&mut buf).unwrap();
    }
    let tw: Vec<_> = (0..2).map(|_| time_wait(&net, &l)).collect();
    let (ho_server, attempt) = half_open(&net, 40);
    thread::sleep(Duration::from_millis(300));
    let before = listing(&bpf);
    assert_eq!(before.iter().filter(|(.., s)| s == "\"ESTABLISHED\"").count(), 3, "{before:?}");
    assert_eq!(before.iter().filter(|(.., s)| s == "\"TIME_WAIT\"").count(), 2, "{before:?}");
    assert_eq!(before.iter().filter(|(.., s)| s == "\"SYN_SENT\"").count(), 1, "{before:?}");

    assert!(first.stop().success());
    // Nobody runs: the programs stay attached and the table is listed as it was.
    assert!(xdp_attached(&net.a, &net.a_end.ifname), "the programs stay attached while no daemon runs");
    let state_dir = StateDir::new(Path::new(&state), &net.a_end.ifname);
    assert!(state_dir.link_path(tcp_track::pins::Hook::Xdp, &net.a_end.ifname).exists());
    let between = tcp_track(&["flows", "--state-dir", &state, "--format", "json"]);
    assert!(String::from_utf8_lossy(&between.stderr).contains("kept by a stopped daemon"));
    assert_eq!(listing(&bpf), before, "the same connections while no daemon runs");
    // A connection opened while no daemon runs is tracked from its SYN:
    // the kept hooks reach their full path through the pinned prog arrays
    // (an array that no file or pin refers to is emptied).
    let (mut late_c, mut late_s) = connect(&net, &l);
    late_c.write_all(b"late").unwrap();
    late_s.read_exact(&mut [0u8; 4]).unwrap();
    thread::sleep(Duration::from_millis(300));
    let during = listing(&bpf);
    assert!(before.is_subset(&during), "{during:?} / {before:?}");
    assert_eq!(during.iter().filter(|(.., s)| s == "\"ESTABLISHED\"").count(), 4, "the connection opened meanwhile: {during:?}");
    let before = during;

    let mut second = Daemon::start(&net.a, &args);
    let lines = second.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("kept from the previous daemon") && l.contains(&format!("(links {ids})"))), "the same links ({ids}): {lines:?}");
    assert!(lines.iter().any(|l| l.contains("adopted the pinned state: 7 flows")), "{lines:?}");
    // The same connections after the restart, but for those whose deadline
    // came while the new daemon started (a slow start on a busy machine):
    // their events are checked below.
    let after = listing(&bpf);
    assert!(after.is_subset(&before), "{after:?} / {before:?}");
    let established = |l: &BTreeSet<(String, String, String)>| l.iter().filter(|(.., s)| s == "\"ESTABLISHED\"").count();
    assert_eq!(established(&after), 4, "{after:?}");

    // The deadlines of the flows of before fall due in the new daemon, in
    // whatever order.
    let mut due: Vec<(&str, Option<SocketAddr>, SocketAddr)> = tw.iter().map(|(c, s)| ("time_wait_expired", Some(*c), *s)).collect();
    due.push(("half_open", None, ho_server));
    let matches = |v: &Value, (event, c, s): &(&str, Option<SocketAddr>, SocketAddr)| {
        v["event"] == *event && c.is_none_or(|c| v["client"] == c.to_string().as_str()) && v["server"] == s.to_string().as_str()
    };
    while !due.is_empty() {
        let v = second.wait_for(Duration::from_secs(40), "the deadlines of before", |v| due.iter().any(|d| matches(v, d)));
        if v["event"] == "half_open" {
            assert_eq!(v["kind"], "syn_sent", "{v}");
        }
        due.retain(|d| !matches(&v, d));
    }

    // A forged out-of-window RST towards a client of before is dropped.
    let (c, s) = &mut open[0];
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let mac = net.a.mac(&net.a_end.ifname).unwrap();
    let forged = tcp_frame(v4(sa), v4(ca), mac, "R", 0x4000_0000u32.wrapping_add(0x1234_5678), 0).unwrap();
    send_frames(&net.b, &net.b_end.ifname, vec![forged]).unwrap();
    let r = second.wait_for(WAIT, "the forged reset", |v| is(v, "reset", ca, sa));
    assert_eq!(r["action"], "dropped", "{r}");
    s.write_all(b"after").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after", "the connection survived");
    attempt.join().unwrap();

    assert!(second.stop().success());
    assert!(xdp_attached(&net.a, &net.a_end.ifname), "kept again");
    let out = tcp_track(&["detach", "--state-dir", &state]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!xdp_attached(&net.a, &net.a_end.ifname), "`tcp-track detach` detaches");
    assert!(!state_dir.path.exists(), "and unpins");
}

/// SIGKILL: a keep-state daemon's programs keep tracking and the next
/// daemon adopts them; a normal daemon's are gone with it.
#[test]
fn a_killed_daemon() {
    require_root!();
    let net = Pair::new("pinkill").unwrap();
    let bpf = Bpffs::new("kill");
    let state = bpf.state();
    let base = ["run", "--iface", &net.a_end.ifname, "--format", "json", "--state-dir", &state];
    let mut kept = Daemon::start(&net.a, &[&base[..], &["--keep-state"]].concat());
    let l = net.b.listen(net.b_end.v4).unwrap();
    let (mut c, mut s) = connect(&net, &l);
    nix::sys::signal::kill(kept.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    kept.wait(Duration::from_secs(10));
    assert!(xdp_attached(&net.a, &net.a_end.ifname), "still attached after SIGKILL of a keep-state daemon");
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
    let out = tcp_track(&["flows", "--state-dir", &state]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is gone"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(flows(&bpf, &["--state", "ESTABLISHED"]).len(), 1);

    // A normal daemon adopts it, and removes everything when it stops.
    let normal = Daemon::start(&net.a, &base);
    let lines = normal.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("kept from the previous daemon")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("adopted the pinned state: 1 flows")), "{lines:?}");
    assert!(normal.stop().success());
    assert!(!xdp_attached(&net.a, &net.a_end.ifname));
    assert!(!Path::new(&state).exists(), "nothing left pinned");

    // SIGKILL of a normal daemon: nothing stays attached; its maps stay
    // pinned (they are files) and the next daemon says what it finds.
    let mut normal = Daemon::start(&net.a, &base);
    nix::sys::signal::kill(normal.pid(), nix::sys::signal::Signal::SIGKILL).unwrap();
    normal.wait(Duration::from_secs(10));
    assert!(!xdp_attached(&net.a, &net.a_end.ifname), "a killed normal daemon leaves nothing attached");
    let next = Daemon::start(&net.a, &base);
    assert!(next.stderr_lines().iter().any(|l| l.contains("did not stop cleanly")), "{:?}", next.stderr_lines());
    assert!(next.stop().success());
    assert!(!Path::new(&state).exists());
}

/// An interface deleted and created again while no daemon runs: the links
/// a `--keep-state` daemon pinned for it are defunct (the kernel let go of
/// them with the old interface), and the next daemon says so, replaces
/// them with links on the new interface, and tracks its connections.
#[test]
fn an_interface_recreated_between_two_daemons() {
    require_root!();
    let net = Pair::new("pinnew").unwrap();
    let bpf = Bpffs::new("recreate");
    let state = bpf.state();
    let ifname = net.a_end.ifname.clone();
    let args = ["run", "--iface", &ifname, "--format", "json", "--state-dir", &state, "--keep-state"];
    let first = Daemon::start(&net.a, &args);
    assert!(first.stop().success());
    assert!(xdp_attached(&net.a, &ifname), "kept after the first daemon");

    // The pair goes (deleting one end deletes both) and comes back under
    // the same names and addresses.
    net.a.ip(&["link", "del", &ifname]).unwrap();
    support::netns::link(&net.a, &ifname, &net.b, &net.b_end.ifname, 0).unwrap();
    assert!(!xdp_attached(&net.a, &ifname), "a new interface has nothing attached");

    let mut second = Daemon::start(&net.a, &args);
    let lines = second.stderr_lines();
    assert!(
        lines.iter().any(|l| l.contains(&format!("{ifname}: the pinned XDP link")) && l.contains("replaced")),
        "the stale XDP link is reported: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!("{ifname}: the pinned TC egress link")) && l.contains("replaced")),
        "the stale TC link is reported: {lines:?}"
    );
    assert!(xdp_attached(&net.a, &ifname), "attached to the new interface");
    // Tracked: a refused connection on it (the SYN leaves by TC egress,
    // the RST arrives at XDP).
    let closed = SocketAddr::from((net.b_end.v4, 9));
    assert!(net.a.connect(closed).is_err(), "nobody listens on port 9");
    let r = second.wait_for(WAIT, "the refused connection's reset", |v| v["event"] == "reset" && v["server"] == closed.to_string().as_str());
    assert_eq!(r["reason"], "refused", "{r}");
    assert!(second.stop().success());
    assert!(xdp_attached(&net.a, &ifname), "kept again, on the new interface");
    let out = tcp_track(&["detach", "--state-dir", &state]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!xdp_attached(&net.a, &ifname), "`tcp-track detach` detaches");
}

/// `ss -tan` state of `local` → `remote` in `ns` (CLOSED when none).
fn ss_state(ns: &Netns, local: &str, remote: &str) -> String {
    let out = ns.exec("ss", &["-tanH", "state", "all"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() >= 5 && c[3] == local && c[4] == remote)
        .map_or("CLOSED".to_string(), |c| c[0].to_string())
}

/// Connections in several states on two ports: each listed endpoint state
/// is what `ss` shows in that endpoint's namespace; `--port` lists exactly
/// the connections on that port; `--count` counts them.
#[test]
fn the_listing_agrees_with_ss() {
    require_root!();
    let net = Pair::new("pinss").unwrap();
    let bpf = Bpffs::new("ss");
    let state = bpf.state();
    let d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--state-dir", &state]);
    let (l1, l2) = (net.b.listen(net.b_end.v4).unwrap(), net.b.listen(net.b_end.v4).unwrap());
    let est: Vec<_> = (0..3).map(|_| connect(&net, &l1)).collect();
    let _tw = time_wait(&net, &l1);
    // Half-closed: the client sent its FIN, the server has not closed.
    let (hc, hs) = connect(&net, &l2);
    hc.shutdown(Shutdown::Write).unwrap();
    // The server closed first: it waits in TIME_WAIT.
    let (mut sc, ss) = connect(&net, &l2);
    ss.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    sc.read_to_end(&mut rest).unwrap();
    drop(sc);
    drop(ss);
    thread::sleep(Duration::from_millis(300));

    let all = flows(&bpf, &[]);
    assert_eq!(all.len(), 6, "{all:?}");
    for f in &all {
        let (c, s) = (f["client"].as_str().unwrap(), f["server"].as_str().unwrap());
        assert_eq!(f["client_state"], ss_state(&net.a, c, s).as_str(), "client side of {f}");
        assert_eq!(f["server_state"], ss_state(&net.b, s, c).as_str(), "server side of {f}");
        assert_eq!(f["iface"], net.a_end.ifname.as_str());
    }
    let p1 = l1.local_addr().unwrap().port().to_string();
    let on_p1 = flows(&bpf, &["--port", &p1]);
    assert_eq!(on_p1.len(), 4, "{on_p1:?}");
    assert!(on_p1.iter().all(|f| f["server"].as_str().unwrap().ends_with(&format!(":{p1}"))));
    let estab = flows(&bpf, &["--port", &p1, "--state", "ESTABLISHED", "--client", &net.a_end.v4.to_string()]);
    assert_eq!(estab.len(), est.len());
    let tw = flows(&bpf, &["--state", "TIME-WAIT"]);
    assert_eq!(tw.len(), 2, "either endpoint in TIME-WAIT: {tw:?}");
    let none = flows(&bpf, &["--addr", "2001:db8::/32"]);
    assert!(none.is_empty());
    let count = tcp_track(&["flows", "--state-dir", &state, "--count"]);
    let text = String::from_utf8(count.stdout).unwrap();
    assert!(text.contains("ESTABLISHED  3\n") && text.ends_with("total        6\n"), "{text}");
    drop((hc, hs));
    assert!(d.stop().success());
}

/// 10,000 connections between the namespaces: `--count` shows 10,000
/// ESTABLISHED, and `--port` lists exactly those on that port.
#[test]
fn ten_thousand_connections() {
    require_root!();
    const N: usize = 10_000;
    let net = Pair::new("pin10k").unwrap();
    let bpf = Bpffs::new("10k");
    let state = bpf.state();
    let d = Daemon::start(&net.a, &["run", "--iface", &net.a_end.ifname, "--state-dir", &state]);
    let server = SocketAddr::new(net.b_end.v4.into(), 9000);
    // The servers' sockets in a process of their own (this one holds the
    // clients': the open-file limit is per process), until its stdin closes.
    let script = format!(
        "import socket,sys\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', 9000)); s.listen(4096); print('ready', flush=True)\nk=[s.accept()[0] for _ in range({N})]\n\
         print('accepted', flush=True); sys.stdin.read()",
        net.b_end.v4
    );
    let mut servers = Command::new("ip")
        .args(["netns", "exec", &net.b.name, "python3", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = std::io::BufReader::new(servers.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    let clients = net.a.enter(move || (0..N).map(|_| TcpStream::connect(server).unwrap()).collect::<Vec<_>>()).unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert_eq!(line, "accepted\n");
    // The last ACKs are on the wire; give XDP a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let out = tcp_track(&["flows", "--state-dir", &state, "--count"]);
        let text = String::from_utf8(out.stdout).unwrap();
        if text.contains(&format!("ESTABLISHED  {N}\n")) || Instant::now() > deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(text, format!("ESTABLISHED  {N}\ntotal        {N}\n"));
    let listed = flows(&bpf, &["--port", "9000"]);
    assert_eq!(listed.len(), N);
    let ours: BTreeSet<String> = clients.iter().map(|c| c.local_addr().unwrap().to_string()).collect();
    let theirs: BTreeSet<String> = listed.iter().map(|f| f["client"].as_str().unwrap().to_string()).collect();
    assert_eq!(ours, theirs);
    assert!(listed.iter().all(|f| f["client_state"] == "ESTAB" && f["server_state"] == "ESTAB"));
    drop(clients);
    drop(servers.stdin.take());
    servers.wait().unwrap();
    assert!(d.stop().success());
}

/// Each way of not being able to list or adopt: one clear line.
#[test]
fn bad_input() {
    require_root!();
    // Nothing pinned.
    let bpf = Bpffs::new("bad");
    let state = bpf.state();
    let err = one_line_error(&tcp_track(&["flows", "--state-dir", &state]));
    assert!(err.contains("no pinned state in") && err.contains("is one running?"), "{err}");
    // Not a bpffs.
    let err = one_line_error(&tcp_track(&["flows", "--state-dir", "/tmp/tt-not-bpffs/state"]));
    assert!(err.contains("/tmp: not on a BPF file system") && err.contains("mount -t bpf bpf"), "{err}");
    let net = Pair::new("pinbad").unwrap();
    let err = {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &net.a.name, BIN, "run", "--iface", &net.a_end.ifname, "--keep-state", "--state-dir", "/tmp/tt-not-bpffs"]);
        one_line_error(&cmd.env_remove("RUST_LOG").output().unwrap())
    };
    assert!(err.contains("--keep-state needs the state pinned") && err.contains("not on a BPF file system"), "{err}");

    let args = ["run", "--iface", &net.a_end.ifname, "--state-dir", &state, "--keep-state"];
    let d = Daemon::start(&net.a, &args);
    // In use: a second daemon on the same state is refused before it attaches.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &net.a.name, BIN]).args(args);
    let err = one_line_error(&cmd.env_remove("RUST_LOG").output().unwrap());
    assert!(err.contains("in use by a running tcp-track (pid"), "{err}");
    let err = one_line_error(&tcp_track(&["detach", "--state-dir", &state]));
    assert!(err.contains("stop it first"), "{err}");
    // Wrong permissions: an unprivileged user cannot open the pins.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", BIN, "flows", "--state-dir", &state])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = one_line_error(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(d.stop().success());

    // Another layout version (as a newer tcp-track would write): never read.
    let dir = StateDir::new(Path::new(&state), &net.a_end.ifname);
    let mut info = dir.read_info().unwrap();
    info.layout.version = 99;
    dir.write_info(&info).unwrap();
    let err = one_line_error(&tcp_track(&["flows", "--state-dir", &state]));
    assert!(err.contains("state of layout 99 found") && err.contains("list it with the tcp-track that pinned it"), "{err}");
    let d = Daemon::start(&net.a, &args);
    let lines = d.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("warn") && l.contains("state of layout 99 found") && l.ends_with("; starting empty")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains("adopted")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("XDP attached in")), "fresh links: {lines:?}");
    assert_eq!(dir.read_info().unwrap().layout.version, tcp_track_common::pinned::LAYOUT_VERSION);
    assert!(d.stop().success());
    let out = tcp_track(&["detach", "--state-dir", &state]);
    assert!(out.status.success());
    assert!(!xdp_attached(&net.a, &net.a_end.ifname));
}
