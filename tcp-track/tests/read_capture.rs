//! `tcp-track read` on captures the test writes: events on stdout, and for
//! each kind of bad input one clear line on stderr and the exit status.
//! No root needed.

use std::{
    io::Write,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink, TsResolution,
};
use tcp_track::test_support::frames::tcp_frame;

const BIN: &str = env!("CARGO_BIN_EXE_tcp-track");
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000_000_000;

fn client() -> SocketAddrV4 {
    "198.18.0.1:40000".parse().unwrap()
}

fn server() -> SocketAddrV4 {
    "198.18.0.2:80".parse().unwrap()
}

/// A SYN to a closed port and its refusal, 1 ms apart, then a second SYN.
fn refused() -> Vec<Vec<u8>> {
    vec![
        tcp_frame(client(), server(), MAC, "S", 1000, 0).unwrap(),
        tcp_frame(server(), client(), MAC, "RA", 0, 1001).unwrap(),
        tcp_frame("198.18.0.1:40001".parse().unwrap(), server(), MAC, "S", 5000, 0).unwrap(),
    ]
}

/// A pcap (nanoseconds) of `frames`, 1 ms apart, each cut to `snaplen`
/// bytes (its original length kept).
fn pcap(link: u32, frames: &[Vec<u8>], snaplen: usize) -> Vec<u8> {
    let header = PcapHeader { datalink: DataLink::from(link), ts_resolution: TsResolution::NanoSecond, snaplen: snaplen as u32, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let cut = &f[..f.len().min(snaplen)];
        w.write_packet(&PcapPacket::new(Duration::from_nanos(T0 + i as u64 * 1_000_000), f.len() as u32, cut)).unwrap();
    }
    w.into_writer()
}

/// A file of its own for `bytes`, removed when the test ends.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("tcp-track-read-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read(path: &Path, args: &[&str]) -> Output {
    Command::new(BIN).arg("read").arg(path).args(args).env("RUST_LOG", "info").output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The refusal, as `run` would have printed it, with the capture's time.
const REFUSED_LINE: &str = "2026-01-01T00:00:00.001000Z if0 reset                 198.18.0.1:40000 -> 198.18.0.2:80 from=server flags=RST|ACK seen=capture seq=0 ack=1001 state=CLOSE client_state=CLOSED server_state=CLOSED reason=refused action=passed drop_justified=false";

#[test]
fn a_capture_from_a_file_and_from_standard_input() {
    let bytes = pcap(1, &refused(), 65535);
    let file = TempFile::new("refused.pcap", &bytes);
    let o = read(&file.0, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{REFUSED_LINE}\n"));
    // The README's example: these lines, the file named refused.pcap.
    let err = stderr(&o);
    assert!(err.contains("counters: tcp_segments=3 not_tcp=0 malformed=0 flows_created=2 map_update_failed=0 events_lost=0 invalid_flags=0 rst_dropped=0 rst_bad_checksum=0 flows_promoted=0 flows_closed=1 half_open_evicted=0 bad_checksum=0 out_of_window=0 flows_vanished=0\n"), "{err}");
    assert!(err.contains(": 3 packets, 234 bytes\n") && err.contains("2 flows still followed at the end of the capture"), "{err}");

    let mut child = Command::new(BIN).args(["read", "-", "--format", "json"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let line: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((line["event"].as_str(), line["reason"].as_str(), line["seen"].as_str()), (Some("reset"), Some("refused"), Some("capture")));
    assert_eq!(line["ts"], "2026-01-01T00:00:00.001000Z");
}

/// The last line of stderr: the one error line, and the exit status 1.
fn assert_error(o: &Output, expected: &str) {
    let err = stderr(o);
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(o.status.code(), Some(1), "exit status; stderr: {err}");
    assert!(last.starts_with("tcp-track: error: "), "{last}");
    assert!(last.contains(expected), "expected {expected:?} in: {last}");
}

#[test]
fn not_a_capture() {
    let file = TempFile::new("notes.txt", b"hello, this is text\n");
    let o = read(&file.0, &[]);
    assert_error(&o, "not a capture file: it starts with 68 65 6c 6c (\"hell\")");
    assert!(o.stdout.is_empty());
    let o = read(Path::new("/nonexistent/trace.pcap"), &[]);
    assert_error(&o, "cannot open /nonexistent/trace.pcap: No such file or directory");
}

#[test]
fn a_truncated_capture_reports_what_came_before_then_the_damage() {
    let mut bytes = pcap(1, &refused(), 65535);
    bytes.truncate(bytes.len() - 10);
    let file = TempFile::new("cut.pcap", &bytes);
    let o = read(&file.0, &[]);
    assert_eq!(stdout(&o), format!("{REFUSED_LINE}\n"), "the packets before the damage are reported");
    assert_error(&o, "capture truncated at byte");
    assert_error(&o, "packet 3 needs");
    assert_error(&o, "(2 packets read before it)");
}

#[test]
fn an_unsupported_link_type_is_named() {
    let file = TempFile::new("wifi.pcap", &pcap(105, &refused(), 65535));
    let o = read(&file.0, &[]);
    assert_error(&o, "link type 105 (IEEE 802.11) is not supported");
    assert!(o.stdout.is_empty());
}

/// Packets longer than the snap length are parsed as far as their bytes
/// go and counted; that is not an error. Cut inside the TCP header, a
/// segment is malformed; cut after it, it is tracked.
#[test]
fn packets_cut_by_the_snap_length_are_counted() {
    let file = TempFile::new("snap.pcap", &pcap(1, &refused(), 40));
    let o = read(&file.0, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "no segment could be tracked: {}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("3 packets were cut by the snap length"), "{err}");
    assert!(err.contains("malformed=3"), "{err}");

    let file = TempFile::new("snap54.pcap", &pcap(1, &refused(), 54));
    let o = read(&file.0, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{REFUSED_LINE}\n"), "a whole TCP header is enough");
}

#[test]
fn options_are_checked_as_run_checks_them() {
    let file = TempFile::new("opts.pcap", &pcap(1, &refused(), 65535));
    let o = read(&file.0, &["--max-flows", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--max-flows 0: must be between 1 and 16777216"), "{}", stderr(&o));
}

/// The endpoint filter (`run`'s and `flows`'s options) chooses which
/// events are printed; every segment is still tracked.
#[test]
fn the_filter_prints_matching_connections_only() {
    let file = TempFile::new("filter.pcap", &pcap(1, &refused(), 65535));
    let keep: [&[&str]; 5] = [
        &["--port", "80"],
        &["--addr", "198.18.0.1"],
        &["--client", "198.18.0.1:40000"],
        &["--server", ":80", "--addr", "198.18.0.0/15"],
        &["--port", "443", "--port", "40000"],
    ];
    for args in keep {
        let o = read(&file.0, args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{REFUSED_LINE}\n"), "{args:?}");
    }
    for args in [&["--port", "443"][..], &["--client", "198.18.0.1:40001"], &["--server", ":80", "--addr", "198.18.0.9"]] {
        let o = read(&file.0, args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
        assert!(stderr(&o).contains("tcp_segments=3"), "every segment is tracked: {}", stderr(&o));
    }
    let o = read(&file.0, &["--filter", ":80"]);
    assert_eq!(o.status.code(), Some(2), "--filter is gone: {}", stderr(&o));
}
