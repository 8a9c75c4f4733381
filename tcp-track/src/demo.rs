//! `tcp-track demo`: two network namespaces, the real daemon on one end of
//! their veth pair, and every kind of event played out with real sockets and
//! crafted segments, in about half a minute. Events go to stdout as the
//! daemon prints them; the narration goes to stderr. Everything it created
//! is removed at the end, also after Ctrl-C.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use socket2::{Domain, Socket, Type};

use crate::{
    config::Format,
    test_support::{
        frames::{send_frames, tcp_frame},
        netns::{enter_netns, is_root, set_linger_zero, Pair},
    },
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Programs the demo runs, and where they come from.
const TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("nft", "nftables")];

pub fn run(format: Format) -> Result<()> {
    if !is_root() {
        bail!("the demo creates network namespaces and loads eBPF programs: run it as root (e.g. `sudo tcp-track demo`)");
    }
    for (tool, package) in TOOLS {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|d| std::path::Path::new(d).join(tool).exists());
        if !found {
            bail!("the demo needs `{tool}` (Debian/Ubuntu: apt-get install {package})");
        }
    }
    // SAFETY: installing a handler that only stores to an atomic.
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t) };

    let net = Pair::new("demo").context("creating the demo's network namespaces (needs iproute2)")?;
    say(&format!(
        "namespaces {} (client, {}) and {} (server, {}) joined by a veth pair; tcp-track watches {} on the client's side",
        net.a.name, net.a_end.v4, net.b.name, net.b_end.v4, net.a_end.ifname
    ));
    let mut daemon = start_daemon(&net, format)?;
    let result = play(&net);
    // Let the last deadlines fire before stopping: 3 s timeouts, and a
    // flood ends once its half-open entries have been quiet for two.
    if result.is_ok() && !interrupted() {
        say("waiting for the timeouts");
        pause(Duration::from_secs(8));
    }
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let _ = daemon.wait();
    say("done; namespaces removed");
    drop(net);
    result
}

fn say(what: &str) {
    eprintln!("demo: {what}");
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleep in small steps so that Ctrl-C ends the demo promptly.
fn pause(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !interrupted() {
        thread::sleep(Duration::from_millis(50));
    }
}

fn start_daemon(net: &Pair, format: Format) -> Result<Child> {
    let exe = std::env::current_exe().context("finding tcp-track's own executable")?;
    let fmt = match format {
        Format::Json => "json",
        Format::Text => "text",
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.a.name])
        .arg(exe)
        .args(["run", "--iface", &net.a_end.ifname, "--format", fmt])
        .args(["--half-open-timeout", "3s", "--time-wait-timeout", "3s", "--close-wait-timeout", "3s"])
        .args(["--syn-flood-threshold", "50", "--time-wait-pressure", "5"])
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting `tcp-track run` in the demo namespace")?;
    let stderr = child.stderr.take().context("daemon stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("watching") {
                let _ = tx.send(());
            }
            if line.contains(" warn") || line.contains(" error") {
                eprintln!("{line}");
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).context("the daemon did not start within 60 s")?;
    Ok(child)
}

/// The demo's endpoints are IPv4.
fn v4(a: SocketAddr) -> Result<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Ok(a),
        SocketAddr::V6(a) => bail!("{a}: the demo's hosts are IPv4"),
    }
}

/// Client connects, both exchange a few bytes.
fn pair(net: &Pair, l: &TcpListener) -> Result<(TcpStream, TcpStream)> {
    let mut c = net.a.connect(l.local_addr()?)?;
    let (mut s, _) = l.accept()?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(b"hello")?;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf)?;
    Ok((c, s))
}

/// An orderly release, `first` closing first.
fn release(first: &mut TcpStream, second: &mut TcpStream) -> Result<()> {
    first.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    second.read_to_end(&mut rest)?;
    second.shutdown(Shutdown::Write)?;
    first.read_to_end(&mut rest)?;
    Ok(())
}

fn play(net: &Pair) -> Result<()> {
    let (client_ip, server_ip) = (net.a_end.v4, net.b_end.v4);
    #[allow(clippy::type_complexity)]
    let steps: [(&str, &dyn Fn() -> Result<()>); 11] = [
        ("a connection to a port nobody listens on (reset: refused)", &|| {
            let port = net.b.listen(server_ip)?.local_addr()?.port();
            let to = SocketAddr::from((server_ip, port));
            // Refused, as it should be: only entering the namespace may fail here.
            let _refused = net.a.enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(3)))?;
            Ok(())
        }),
        ("the client aborts with SO_LINGER 0 (reset: abort)", &|| {
            let l = net.b.listen(server_ip)?;
            let (c, _s) = pair(net, &l)?;
            set_linger_zero(c.as_raw_fd())?;
            drop(c);
            pause(Duration::from_millis(200));
            Ok(())
        }),
        ("the server closes with unread data (reset: abort)", &|| {
            let l = net.b.listen(server_ip)?;
            let (mut c, s) = pair(net, &l)?;
            c.write_all(b"unread")?;
            pause(Duration::from_millis(100));
            drop(s);
            pause(Duration::from_millis(200));
            Ok(())
        }),
        ("a normal close, client first (time_wait, time_wait_expired after 3 s)", &|| {
            let l = net.b.listen(server_ip)?;
            let (mut c, mut s) = pair(net, &l)?;
            release(&mut c, &mut s)
        }),
        ("the server closes first, then the client reconnects from the same port (time_wait_reuse)", &|| {
            let l = net.b.listen(server_ip)?;
            let (mut c, mut s) = pair(net, &l)?;
            let (ca, sa) = (c.local_addr()?, s.local_addr()?);
            release(&mut s, &mut c)?;
            drop((c, s));
            pause(Duration::from_millis(100));
            let again = net.a.enter(move || -> std::io::Result<Socket> {
                let sock = Socket::new(Domain::IPV4, Type::STREAM, None)?;
                sock.set_reuse_address(true)?;
                sock.bind(&ca.into())?;
                sock.connect_timeout(&sa.into(), Duration::from_secs(3))?;
                Ok(sock)
            })??;
            let (s2, _) = l.accept()?;
            drop((again, s2));
            Ok(())
        }),
        ("a blind forged RST hits the client while it is in TIME_WAIT (reset: time_wait_assassination)", &|| {
            let l = net.b.listen(server_ip)?;
            let (mut c, mut s) = pair(net, &l)?;
            let (ca, sa) = (c.local_addr()?, s.local_addr()?);
            release(&mut c, &mut s)?;
            pause(Duration::from_millis(100));
            // Blind: the attacker does not know the sequence numbers.
            let mac = net.a.mac(&net.a_end.ifname)?;
            send_frames(&net.b, &net.b_end.ifname, vec![tcp_frame(v4(sa)?, v4(ca)?, mac, "R", 0x1234_5678, 0)?])?;
            Ok(())
        }),
        ("the client's final ACK is dropped: the server stays in SYN_RECV (half_open syn_recv after 3 s)", &|| {
            let l = net.b.listen(server_ip)?;
            let port = l.local_addr()?.port();
            net.a.nft(&format!(
                "add table inet demo; add chain inet demo out {{ type filter hook output priority 0; }}; add rule inet demo out tcp dport {port} tcp flags & (syn | ack | fin | rst) == ack drop"
            ))?;
            let c = net.a.connect(l.local_addr()?)?;
            std::mem::forget(l);
            std::mem::forget(c);
            Ok(())
        }),
        ("a SYN into a server that drops it (half_open syn_sent after 3 s)", &|| {
            let l = net.b.listen(server_ip)?;
            let to = l.local_addr()?;
            net.b.nft(&format!(
                "add table inet demo; add chain inet demo in {{ type filter hook input priority 0; }}; add rule inet demo in tcp dport {} drop",
                to.port()
            ))?;
            std::mem::forget(l);
            let ns = net.a.path();
            thread::spawn(move || {
                if enter_netns(&ns).is_ok() {
                    let _ = TcpStream::connect_timeout(&to, Duration::from_secs(10));
                }
            });
            Ok(())
        }),
        ("the client's socket vanishes silently, then the server sends (reset: stateless_peer, half_open peer_lost)", &|| {
            let l = net.b.listen(server_ip)?;
            let (c, mut s) = pair(net, &l)?;
            net.a.nft("add table inet demo2; add chain inet demo2 out { type filter hook output priority 0; }; add rule inet demo2 out tcp flags & rst == rst drop")?;
            set_linger_zero(c.as_raw_fd())?;
            drop(c);
            net.a.nft("delete table inet demo2")?;
            s.write_all(b"anyone there?")?;
            pause(Duration::from_millis(200));
            Ok(())
        }),
        ("the server application never closes after the client did (close_wait after 3 s), and six quick connections leave TIME_WAITs (time_wait_pressure)", &|| {
            let l = net.b.listen(server_ip)?;
            let (c, s) = pair(net, &l)?;
            c.shutdown(Shutdown::Write)?;
            std::mem::forget((c, s));
            for _ in 0..6 {
                let (mut c, mut s) = pair(net, &l)?;
                release(&mut c, &mut s)?;
            }
            Ok(())
        }),
        ("a SYN flood: 1000 SYNs from spoofed sources in well under a second, towards a service on the watched host (syn_flood, then syn_flood_ended)", &|| {
            let l = net.a.listen(client_ip)?;
            let target = v4(l.local_addr()?)?;
            std::mem::forget(l);
            let mac = net.a.mac(&net.a_end.ifname)?;
            let frames = (0..1000u32)
                .map(|i| {
                    let src = SocketAddrV4::new([198, 19, (i >> 8) as u8, i as u8].into(), 1024 + i as u16);
                    tcp_frame(src, target, mac, "S", i.wrapping_mul(2654435761), 0)
                })
                .collect::<std::io::Result<_>>()?;
            send_frames(&net.b, &net.b_end.ifname, frames)?;
            Ok(())
        }),
    ];
    for (what, step) in steps {
        if interrupted() {
            say("interrupted");
            break;
        }
        say(what);
        step().with_context(|| format!("demo step: {what}"))?;
        pause(Duration::from_millis(300));
    }
    Ok(())
}
