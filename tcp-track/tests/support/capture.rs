//! tcpdump on the watched interface while the daemon runs, and the check
//! that `tcp-track read` of that capture prints what the daemon printed.
//!
//! A test turns it on for the scenarios it runs (`while_capturing`); then
//! `Daemon::start` starts tcpdump first, and `Daemon::stop` ends the
//! capture with a marker frame (not TCP: it only carries capture time up
//! to that instant, so the deadlines due by then fire in the capture too),
//! stops both, reads the capture with the daemon's own options and
//! compares the two outputs event by event, `conn` records included
//! (the daemon's `end: stopped` is the capture's `end: capture_end`).

use std::{
    cell::Cell,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    sync::mpsc,
    thread,
    time::{Duration, SystemTime},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;
use tcp_track::test_support::{frames::RawSender, netns::enter_netns};

use super::{daemon::BIN, netns::Netns};

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Run `f` with every daemon it starts (on this thread) captured and
/// compared with `tcp-track read` of its capture when it stops.
pub fn while_capturing<T>(f: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ON.set(false);
        }
    }
    ON.set(true);
    let _off = Off;
    f()
}

/// The daemon's arguments when this thread is capturing: `conn` records
/// added to what is printed (and compared), except where the scenario
/// counts its lines (the SYN flood's thousands of half-open connections).
pub fn with_conn_records<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if ON.get() && !args.contains(&"--syn-flood-threshold") {
        // A list given replaces the default (`notable`); a repeated option adds.
        args.extend(["--events", if args.contains(&"--events") { "conn" } else { "notable,conn" }]);
    }
    args
}

/// Events printed within this much of each other's time are the same.
const TOLERANCE_NS: i128 = 1_000_000;

pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
    ns_path: String,
    ifname: String,
    /// The daemon's options that `read` shares (everything but `run
    /// --iface IF`).
    read_args: Vec<String>,
}

impl Capture {
    /// tcpdump on the interface of `run --iface IF ...` in `ns`, if this
    /// thread is capturing; once it is listening.
    pub fn start(ns: &Netns, args: &[&str]) -> Option<Capture> {
        if !ON.get() {
            return None;
        }
        let at = args.iter().position(|a| *a == "--iface").expect("run --iface IF");
        let ifname = args[at + 1].to_string();
        let read_args = args.iter().enumerate().filter(|(i, _)| *i != 0 && *i != at && *i != at + 1).map(|(_, a)| a.to_string()).collect();
        let path = std::env::temp_dir().join(format!("tcp-track-eq-{}-{}.pcap", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "tcpdump", "-i", &ifname, "-n", "-U", "--immediate-mode", "-B", "65536", "-s", "0", "-Z", "root", "-w"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning tcpdump (cargo xtask test installs it)");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[tcpdump] {line}");
                let _ = tx.send(line);
            }
        });
        let capture = Capture { child: Some(child), path, ns_path: ns.path(), ifname, read_args };
        loop {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains("listening on") => return Some(capture),
                Ok(_) => {}
                Err(e) => panic!("tcpdump did not start listening: {e}"),
            }
        }
    }

    /// Send the marker frame out of the interface; the wall time just
    /// before it is the end of what is compared.
    pub fn mark(&self) -> SystemTime {
        let cutoff = SystemTime::now();
        let (path, ifname) = (self.ns_path.clone(), self.ifname.clone());
        // Ethernet, ethertype 0x88b5 (local experimental): not TCP.
        let mut frame = vec![0u8; 60];
        frame[..6].fill(0xff);
        frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x99]);
        frame[12..14].copy_from_slice(&[0x88, 0xb5]);
        thread::spawn(move || {
            enter_netns(&path).unwrap();
            RawSender::open(&ifname).unwrap().send(&frame).unwrap();
        })
        .join()
        .unwrap();
        // tcpdump writes it out (-U) before it is stopped.
        thread::sleep(Duration::from_millis(300));
        cutoff
    }

    /// Stop tcpdump, read its capture with the daemon's options, and
    /// assert that both printed the same events before `cutoff`.
    pub fn compare(mut self, daemon_lines: &[String], cutoff: SystemTime) {
        self.stop();
        let out = Command::new(BIN).arg("read").arg(&self.path).args(&self.read_args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tcp-track read failed: {stderr}");
        let read: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        let live = before(daemon_lines, cutoff);
        let offline = before(&read, cutoff);
        let show = || format!("daemon:\n{}\nread:\n{}\nread's stderr:\n{stderr}", daemon_lines.join("\n"), read.join("\n"));
        assert!(!live.is_empty(), "the daemon printed nothing to compare: {}", show());
        assert_eq!(live.len(), offline.len(), "as many events: {}", show());
        for (a, b) in live.iter().zip(&offline) {
            if let Err(why) = same(a, b) {
                panic!("{why}\n  daemon: {a}\n  read:   {b}\n{}", show());
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let _ = child.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The JSON events of `lines` timed before `cutoff`, without what a capture
/// cannot know: the hook (`seen`) and the interface's name.
fn before(lines: &[String], cutoff: SystemTime) -> Vec<Value> {
    let mut events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v| time(&v["ts"]).is_some_and(|t| t < cutoff))
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            o.remove("seen");
            o.remove("iface");
            // A connection open at the end: the daemon stopped, the capture
            // ended.
            if o.get("end").is_some_and(|e| e == "stopped") {
                o.insert("end".into(), "capture_end".into());
            }
            v
        })
        .collect();
    // The records written at the end come in the order of a walk of the
    // tables (the kernel's hash map, the host's LRU): sorted by connection.
    let key = |v: &Value| (v["end"] == "capture_end", v["client"].to_string(), v["server"].to_string());
    let at_end = events.iter().rposition(|v| v["end"] != "capture_end").map_or(0, |i| i + 1);
    events[at_end..].sort_by_key(key);
    events
}

fn time(v: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(v.as_str()?).ok()
}

/// The same event: the same fields, equal but for times and intervals in
/// microseconds (within 1 ms) and durations in seconds (within 2 ms).
fn same(a: &Value, b: &Value) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let (kx, ky): (Vec<_>, Vec<_>) = (x.keys().collect(), y.keys().collect());
            if kx != ky {
                return Err(format!("fields differ: {kx:?} / {ky:?}"));
            }
            x.iter().try_for_each(|(k, v)| {
                // Intervals in microseconds (handshake timing) are times too.
                if let (true, Some(p), Some(q)) = (k.ends_with("_us"), v.as_i64(), y[k].as_i64()) {
                    return if (p - q).abs() <= 1000 { Ok(()) } else { Err(format!("{k}: {p} / {q} µs")) };
                }
                same(v, &y[k]).map_err(|e| format!("{k}: {e}"))
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x.iter().zip(y).try_for_each(|(p, q)| same(p, q)),
        (Value::String(x), Value::String(y)) => match (time(a), time(b)) {
            (Some(p), Some(q)) => {
                let ns = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as i128;
                let d = (ns(p) - ns(q)).abs();
                if d <= TOLERANCE_NS { Ok(()) } else { Err(format!("{x} and {y} are {d} ns apart")) }
            }
            _ if x == y => Ok(()),
            _ => Err(format!("{x:?} / {y:?}")),
        },
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let d = (x.as_f64().unwrap() - y.as_f64().unwrap()).abs();
            if d <= 0.002 { Ok(()) } else { Err(format!("{x} / {y}")) }
        }
        _ if a == b => Ok(()),
        _ => Err(format!("{a} / {b}")),
    }
}
