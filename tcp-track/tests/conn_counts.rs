//! Connection records (issue 11), their figures end to end: exact byte
//! counts under retransmission and packet counts against tcpdump on the
//! daemon's interface, handshake timing from crafted segments with known
//! gaps, interim records (`--conn-interval`), and exactly one final record
//! per flow at SIGTERM and over a run of 1,000 short connections.
//! Namespaces as in `conn_records.rs` (client in `a`, server in `b`, the
//! daemon on a's interface).

mod support;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, ErrorKind, Read, Write},
    net::{IpAddr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;
use support::{
    conn::{
        about, assert_only_its_fields, connected, conns_about, daemon, is_conn, is_final, one_final, parse, state_end, stop, wait_final,
        Crafted, CISN, SISN,
    },
    netns::{close_orderly, send_paced, set_linger_zero, set_offloads, Netns, Pair, Tcp},
};

const WAIT: Duration = Duration::from_secs(10);

/// tcpdump writing a capture of one interface to its stdout, read by a
/// thread; stopped by its pid (also when the test fails).
struct Capture {
    child: Option<Child>,
    out: Option<JoinHandle<Vec<u8>>>,
}

impl Capture {
    /// Start capturing `filter` on `ifname` in `ns`; returns once tcpdump
    /// says it is listening.
    fn start(ns: &Netns, ifname: &str, filter: &str) -> Capture {
        // `ip netns exec` execs tcpdump: the child's pid is tcpdump's.
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tcpdump", "-i", ifname, "-nn", "--immediate-mode", "-U", "-w", "-", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump (Debian package tcpdump; `cargo xtask test` installs it)");
        let mut stdout = child.stdout.take().expect("piped");
        let out = thread::spawn(move || {
            let mut pcap = Vec::new();
            let _ = stdout.read_to_end(&mut pcap);
            pcap
        });
        let mut capture = Capture { child: Some(child), out: Some(out) };
        let mut stderr = BufReader::new(capture.child.as_mut().and_then(|c| c.stderr.take()).expect("piped"));
        let mut line = String::new();
        stderr.read_line(&mut line).expect("tcpdump's first line");
        assert!(line.contains("listening on"), "tcpdump did not start: {line}");
        // Its last words (packets captured, dropped by the kernel) go to the test's log.
        thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| eprintln!("[tcpdump] {l}")));
        capture
    }

    /// Stop tcpdump (SIGTERM: it flushes and exits) and return the capture
    /// (pcap) it wrote.
    fn stop(mut self) -> Vec<u8> {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM to tcpdump");
        let status = child.wait().expect("waiting for tcpdump");
        assert!(status.success() || status.code().is_none(), "tcpdump exited with {status}");
        self.out.take().expect("reader").join().expect("reading tcpdump's output")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Packets in a pcap capture (Ethernet, IPv4 or IPv6, TCP), counted by
/// their source address and port.
fn packets_by_source(pcap: &[u8]) -> HashMap<SocketAddr, u64> {
    assert!(pcap.len() >= 24, "a pcap file has a 24-byte header; got {} bytes", pcap.len());
    let magic = u32::from_le_bytes(pcap[..4].try_into().unwrap());
    assert!(magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d, "a little-endian pcap file: magic {magic:#x}");
    let u32_at = |i: usize| u32::from_le_bytes(pcap[i..i + 4].try_into().unwrap()) as usize;
    let mut out = HashMap::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32_at(at + 8);
        let frame = &pcap[at + 16..(at + 16 + len).min(pcap.len())];
        at += 16 + len;
        let Ok(p) = etherparse::SlicedPacket::from_ethernet(frame) else { continue };
        let ip = match &p.net {
            Some(etherparse::NetSlice::Ipv4(ip)) => IpAddr::V4(ip.header().source_addr()),
            Some(etherparse::NetSlice::Ipv6(ip)) => IpAddr::V6(ip.header().source_addr()),
            _ => continue,
        };
        if let Some(etherparse::TransportSlice::Tcp(t)) = &p.transport {
            *out.entry(SocketAddr::new(ip, t.source_port())).or_default() += 1;
        }
    }
    out
}

/// The packets counted by the `counter` of the rules in table `inet tt` of `ns`.
fn nft_dropped(ns: &Netns) -> u64 {
    let out = ns.exec("nft", &["list table inet tt"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words.windows(2).filter(|w| w[0] == "packets").map(|w| w[1].parse::<u64>().unwrap()).sum()
}

/// Drop the data segments numbered `nth` (from 0, segments of more than
/// 500 bytes matching `select`) in `ns`'s input hook: after the daemon's
/// hooks and tcpdump saw them, so that they cross the interface again as
/// retransmissions. The rule dies with the table, deleted by the caller or
/// with the namespace.
fn drop_nth_data_segments(ns: &Netns, select: &str, nth: &str) {
    ns.nft(&format!(
        "add table inet tt; add chain inet tt in {{ type filter hook input priority 0; }}; add rule inet tt in {select} ip length > 500 numgen inc mod 1000000 {{ {nth} }} counter drop"
    ))
    .unwrap();
}

/// The client writes 10,000 bytes and the server 123,456, in several
/// segments, a few of them dropped once in each direction: the record has
/// exactly those byte counts, and as many packets each way as tcpdump
/// counted on the same interface.
///
/// Packet for packet only where both see the same packets: offloads are off
/// on both ends (no GRO merging frames before tcpdump's tap on ingress),
/// and the client sends its data 1,000 bytes at a time, each chunk read by
/// the server before the next is written. Linux's TCP builds GSO packets
/// whatever the device's features, and a send of several segments at once
/// is segmented after the TC egress hook but before tcpdump's tap: tcp-track
/// counts it as one packet (what its hook sees, `conn.rs`), tcpdump as many.
#[test]
fn bytes_are_exact_and_packets_agree_with_tcpdump() {
    require_root!();
    const FROM_CLIENT: usize = 10_000;
    const CHUNK: usize = 1_000;
    const FROM_SERVER: usize = 123_456;
    let net = Pair::new("cbytes").unwrap();
    set_offloads(&net.a, &net.a_end.ifname, false).unwrap();
    set_offloads(&net.b, &net.b_end.ifname, false).unwrap();
    let mut d = daemon(&net, "conn", &[]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let port = l.local_addr().unwrap().port();
    let capture = Capture::start(&net.a, &net.a_end.ifname, &format!("tcp port {port}"));
    drop_nth_data_segments(&net.b, &format!("tcp dport {port}"), "2, 6");
    drop_nth_data_segments(&net.a, &format!("tcp sport {port}"), "3, 20, 41");

    let mut c = net.a.connect(l.local_addr().unwrap()).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let (ca, sa) = (c.local_addr().unwrap(), s.local_addr().unwrap());
    let (chunk_read, each_read) = std::sync::mpsc::channel();
    let server = thread::spawn(move || {
        s.set_read_timeout(Some(WAIT)).unwrap();
        for _ in 0..FROM_CLIENT / CHUNK {
            s.read_exact(&mut [0u8; CHUNK]).unwrap();
            chunk_read.send(()).unwrap();
        }
        s.write_all(&vec![b's'; FROM_SERVER]).unwrap();
        s
    });
    c.set_nodelay(true).unwrap();
    for _ in 0..FROM_CLIENT / CHUNK {
        c.write_all(&[b'c'; CHUNK]).unwrap();
        each_read.recv_timeout(WAIT).expect("the server read the chunk");
    }
    let mut got = vec![0u8; FROM_SERVER];
    c.read_exact(&mut got).unwrap();
    let mut s = server.join().unwrap();
    close_orderly(&mut c, &mut s).unwrap();
    let f = wait_final(&mut d, &ca, &sa);
    let dropped = (nft_dropped(&net.b), nft_dropped(&net.a));
    net.a.nft("delete table inet tt").unwrap();
    net.b.nft("delete table inet tt").unwrap();
    let counted = packets_by_source(&capture.stop());

    assert_eq!(dropped, (2, 3), "the rules dropped what they say");
    assert_eq!(state_end(&f), (Some("SF"), Some("fin")), "{f}");
    assert_eq!((f["client_bytes"].as_u64(), f["server_bytes"].as_u64()), (Some(FROM_CLIENT as u64), Some(FROM_SERVER as u64)), "{f}");
    let tcpdump = (counted.get(&ca).copied().unwrap_or(0), counted.get(&sa).copied().unwrap_or(0));
    assert_eq!((f["client_packets"].as_u64(), f["server_packets"].as_u64()), (Some(tcpdump.0), Some(tcpdump.1)), "tcpdump counted {tcpdump:?}: {f}");
    // Each dropped segment crossed again; RACK or a tail-loss probe may add more.
    assert!(f["client_retransmits"].as_u64() >= Some(dropped.0), "{dropped:?}: {f}");
    assert!(f["server_retransmits"].as_u64() >= Some(dropped.1), "{dropped:?}: {f}");
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    one_final(&lines, &ca, &sa);
}

/// Crafted SYN, SYN-ACK 30 ms later, ACK 10 ms later: the handshake
/// figures are those gaps, within 2 ms. On a loaded machine the sender may
/// miss its schedule: then the handshake is played again on another
/// 4-tuple (up to 5 times), and the figures are checked on one that kept it.
#[test]
fn handshake_timing_from_known_gaps() {
    require_root!();
    const NOMINAL: [Duration; 2] = [Duration::from_millis(30), Duration::from_millis(10)];
    let net = Pair::new("chstime").unwrap();
    let mut d = daemon(&net, "conn", &[]);
    let base = Crafted::new(&net);
    let mut kept = None;
    let mut missed = Vec::new();
    for attempt in 0..5u16 {
        let x = Crafted { client: SocketAddrV4::new(*base.client.ip(), base.client.port() + attempt), ..base };
        let segs = vec![
            (Duration::ZERO, x.seg(true, Tcp { flags: "S", seq: CISN, ..Tcp::default() })),
            (NOMINAL[0], x.seg(false, Tcp { flags: "SA", seq: SISN, ack: CISN.wrapping_add(1), ..Tcp::default() })),
            (NOMINAL[1], x.seg(true, Tcp { flags: "A", seq: CISN.wrapping_add(1), ack: SISN.wrapping_add(1), ..Tcp::default() })),
        ];
        let sent = send_paced(&net.b, &net.b_end.ifname, segs).unwrap();
        let gaps = [sent[1] - sent[0], sent[2] - sent[1]];
        if gaps.iter().zip(NOMINAL).all(|(g, n)| g.abs_diff(n) < Duration::from_micros(500)) {
            kept = Some((x.addrs(), gaps));
            break;
        }
        missed.push(gaps);
    }
    thread::sleep(Duration::from_millis(100));
    let lines = stop(&mut d);
    let Some(((ca, sa), gaps)) = kept else { panic!("the sender missed its schedule 5 times: {missed:?}") };
    let f = one_final(&lines, &ca, &sa);
    assert_eq!(state_end(&f), (Some("S1"), Some("stopped")), "{f}");
    let figures = [f["syn_to_synack_us"].as_u64(), f["synack_to_ack_us"].as_u64()];
    for ((figure, nominal), gap) in figures.into_iter().zip(NOMINAL).zip(gaps) {
        let figure = figure.unwrap_or_else(|| panic!("handshake figures present: {f}"));
        assert!(figure.abs_diff(nominal.as_micros() as u64) <= 2_000, "{figure} µs for a gap of {nominal:?} (sent {gap:?} apart): {f}");
    }
}

/// `--conn-interval 1s`: a connection kept open across two intervals gets
/// two interim records (the counts so far, no `end`), then its final one.
#[test]
fn interim_records_once_per_interval_then_the_final() {
    require_root!();
    let net = Pair::new("cinterim").unwrap();
    let mut d = daemon(&net, "conn", &["--conn-interval", "1s"]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let opened = Instant::now();
    let (mut c, mut s, ca, sa) = connected(&l, &net);
    let interim = |v: &Value| is_conn(v) && about(v, &ca, &sa);
    let first = d.wait_for(Duration::from_secs(5), "the first interim record", interim);
    let first_at = opened.elapsed();
    c.write_all(&[7u8; 100]).unwrap();
    s.read_exact(&mut [0u8; 100]).unwrap();
    let second = d.wait_for(Duration::from_secs(5), "the second interim record", interim);
    let between = opened.elapsed() - first_at;
    close_orderly(&mut c, &mut s).unwrap();
    let f = wait_final(&mut d, &ca, &sa);
    for (i, r) in [&first, &second].into_iter().enumerate() {
        assert_eq!((r["interim"].as_bool(), r.get("end")), (Some(true), None), "interim record {i}: {r}");
        assert_eq!(r["conn_state"], "S1", "interim record {i}: {r}");
    }
    assert!(first_at >= Duration::from_millis(900), "the first interim record after one interval, not {first_at:?}: {first}");
    assert!(between >= Duration::from_millis(500), "one interval between interim records, not {between:?}: {second}");
    assert_eq!((first["client_bytes"].as_u64(), second["client_bytes"].as_u64(), f["client_bytes"].as_u64()), (Some(7), Some(107), Some(107)));
    assert!(first["duration_s"].as_f64() < second["duration_s"].as_f64(), "{first} then {second}");
    assert_eq!(state_end(&f), (Some("SF"), Some("fin")), "{f}");
    assert_only_its_fields(&f);
    let lines = stop(&mut d);
    let records = conns_about(&lines, &ca, &sa);
    assert_eq!(records, [first, second, f], "two interim records, then the final one, nothing else");
}

/// SIGTERM: every connection still open gets exactly one final record
/// (`end: stopped`), one closed before gets none more; the final records
/// number `flows_created`.
#[test]
fn sigterm_gives_every_open_connection_one_final_record() {
    require_root!();
    let net = Pair::new("cterm").unwrap();
    let mut d = daemon(&net, "conn", &["--half-open-timeout", "60s", "--time-wait-timeout", "60s"]);
    let l4 = net.b.listen(net.b_end.v4).unwrap();
    let l6 = net.b.listen(net.b_end.v6).unwrap();
    let mut open = Vec::new();
    let (c1, s1, ca1, sa1) = connected(&l4, &net);
    let (c2, s2, ca2, sa2) = connected(&l6, &net);
    let (c3, mut s3, ca3, sa3) = connected(&l4, &net);
    c3.shutdown(Shutdown::Write).unwrap();
    assert_eq!(s3.read(&mut [0u8; 1]).unwrap(), 0);
    let x = Crafted::new(&net);
    x.send(&net, vec![x.seg(true, Tcp { flags: "S", seq: CISN, ..Tcp::default() })]);
    let (cx, sx) = x.addrs();
    open.extend([(ca1, sa1, "S1"), (ca2, sa2, "S1"), (ca3, sa3, "S2"), (cx, sx, "S0")]);
    let (mut c4, mut s4, ca4, sa4) = connected(&l4, &net);
    close_orderly(&mut c4, &mut s4).unwrap();
    let closed = wait_final(&mut d, &ca4, &sa4);
    thread::sleep(Duration::from_millis(100));
    let lines = stop(&mut d);
    for (ca, sa, code) in &open {
        let f = one_final(&lines, ca, sa);
        assert_eq!(state_end(&f), (Some(*code), Some("stopped")), "{f}");
        assert_only_its_fields(&f);
    }
    assert_eq!(one_final(&lines, &ca4, &sa4), closed, "nothing more at stop for a closed connection");
    let finals = parse(&lines).iter().filter(|v| is_final(v)).count() as u64;
    let counters = d.exit_counters();
    assert_eq!(Some(finals), counters.get("flows_created").copied(), "one final record per flow: {counters:?}\n{}", lines.join("\n"));
    assert_eq!(finals, 5);
    drop((c1, s1, c2, s2, c3, s3));
}

/// How one of the short connections ends.
#[derive(Clone, Copy, Debug)]
enum Ending {
    ClientCloses,
    ServerCloses,
    ClientAborts,
    Refused,
}

const ENDINGS: [Ending; 4] = [Ending::ClientCloses, Ending::ServerCloses, Ending::ClientAborts, Ending::Refused];

/// The server side of the short connections: each connection's first byte
/// says how it ends (`Ending` as index). Accepts `n`, for at most 60 s.
fn serve(l: TcpListener, n: usize) -> JoinHandle<()> {
    thread::spawn(move || {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < n {
            let mut s = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(e) => panic!("accepting connection {served} of {n}: {e}"),
            };
            served += 1;
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut kind = [0u8; 1];
            if s.read_exact(&mut kind).is_err() {
                continue; // aborted before its byte arrived
            }
            match ENDINGS[kind[0] as usize] {
                // Read to the client's FIN, then close.
                Ending::ClientCloses => {
                    let _ = s.read_to_end(&mut Vec::new());
                }
                // Close first (nothing unread: a FIN).
                Ending::ServerCloses => {}
                // Wait for the RST.
                _ => {
                    let _ = s.read(&mut [0u8; 1]);
                }
            }
        }
    })
}

/// 1,000 short connections ended every way (orderly by either side,
/// aborted, refused): as many final records as the kernel created flows.
#[test]
fn a_thousand_short_connections_one_final_record_per_flow() {
    require_root!();
    const N: usize = 1000;
    let net = Pair::new("cthousand").unwrap();
    let mut d = daemon(&net, "conn", &[]);
    let l = net.b.listen(net.b_end.v4).unwrap();
    let to = l.local_addr().unwrap();
    let refused = SocketAddr::new(to.ip(), net.b.listen(net.b_end.v4).unwrap().local_addr().unwrap().port());
    let accepted = (0..N).filter(|i| !matches!(ENDINGS[i % 4], Ending::Refused)).count();
    let server = serve(l, accepted);
    let started = Instant::now();
    net.a
        .enter(move || {
            for i in 0..N {
                let ending = ENDINGS[i % 4];
                if let Ending::Refused = ending {
                    let e = TcpStream::connect_timeout(&refused, WAIT).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "connection {i}");
                    continue;
                }
                let mut c = TcpStream::connect_timeout(&to, WAIT).unwrap_or_else(|e| panic!("connection {i}: {e}"));
                c.set_read_timeout(Some(WAIT)).unwrap();
                c.write_all(&[(i % 4) as u8]).unwrap();
                match ending {
                    Ending::ClientCloses => close_half_then_read(&mut c),
                    Ending::ServerCloses => {
                        c.read_to_end(&mut Vec::new()).unwrap();
                    }
                    _ => set_linger_zero(c.as_raw_fd()).unwrap(),
                }
            }
        })
        .unwrap();
    server.join().unwrap();
    eprintln!("{N} connections in {:?}", started.elapsed());
    thread::sleep(Duration::from_millis(500));
    let lines = stop(&mut d);
    let records = parse(&lines);
    let finals = records.iter().filter(|v| is_final(v)).count() as u64;
    let counters = d.exit_counters();
    assert_eq!(counters.get("events_lost"), Some(&0), "{counters:?}");
    assert_eq!(Some(finals), counters.get("flows_created").copied(), "one final record per flow: {counters:?}");
    assert!(finals >= N as u64, "at least one flow per connection: {finals}");
    let mut by_end: HashMap<String, u64> = HashMap::new();
    for v in records.iter().filter(|v| is_final(v)) {
        *by_end.entry(format!("{}/{}", v["conn_state"].as_str().unwrap_or("?"), v["end"].as_str().unwrap_or("?"))).or_default() += 1;
    }
    let quarter = (N / 4) as u64;
    assert_eq!(by_end.get("SF/fin"), Some(&(2 * quarter)), "{by_end:?}");
    assert_eq!(by_end.get("RSTO/reset"), Some(&quarter), "{by_end:?}");
    assert_eq!(by_end.get("REJ/reset"), Some(&quarter), "{by_end:?}");
}

/// The client's FIN, then read to the server's.
fn close_half_then_read(c: &mut TcpStream) {
    c.shutdown(Shutdown::Write).unwrap();
    c.read_to_end(&mut Vec::new()).unwrap();
}
