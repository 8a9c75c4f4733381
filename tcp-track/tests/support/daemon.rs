//! The real `tcp-track` binary, started inside a test namespace, with its
//! stdout (events) and stderr (logs) read line by line.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        mpsc::{self, Receiver, RecvTimeoutError},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

use super::{
    capture::{self, Capture},
    netns::Netns,
};

pub const BIN: &str = env!("CARGO_BIN_EXE_tcp-track");

/// How long the daemon may take to load and attach (the verifier runs here).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Daemon {
    child: Option<Child>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Every stdout line read so far, for failure messages.
    seen: Vec<String>,
    /// tcpdump on the watched interface, when the test compares `read`.
    capture: Option<Capture>,
}

impl Daemon {
    /// Start `tcp-track ARGS` inside `ns` and wait until it is watching.
    pub fn start(ns: &Netns, args: &[&str]) -> Daemon {
        let args = capture::with_conn_records(args);
        let args = &args[..];
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns.name, BIN]).args(args);
        let capture = Capture::start(ns, args);
        let mut d = Daemon::spawn(cmd);
        d.capture = capture;
        d.wait_ready();
        d
    }

    /// Spawn without waiting (for tests of start-up failures).
    pub fn spawn(mut cmd: Command) -> Daemon {
        cmd.env_remove("RUST_LOG").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning tcp-track");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err = child.stderr.take().expect("piped");
        let sink = stderr.clone();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                sink.lock().expect("stderr lock").push(line);
            }
        });
        Daemon { child: Some(child), stdout, stderr, seen: Vec::new(), capture: None }
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().expect("stderr lock").clone()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.stderr_lines().iter().any(|l| l.contains("watching")) {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("tcp-track exited before it was ready ({status}):\n{}", self.stderr_lines().join("\n"));
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!("tcp-track was not ready after {START_TIMEOUT:?}:\n{}", self.stderr_lines().join("\n"));
    }

    /// The next JSON event that satisfies `pred`, within `timeout`; events
    /// that do not match are kept in `seen` (and returned by `events`).
    pub fn wait_for(&mut self, timeout: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "no event {what} within {timeout:?}; stdout so far:\n{}\nstderr:\n{}",
                    self.seen.join("\n"),
                    self.stderr_lines().join("\n")
                ),
            }
        }
    }

    /// Every stdout line received within `quiet` of the previous one.
    pub fn drain(&mut self, quiet: Duration) -> Vec<String> {
        while let Ok(line) = self.stdout.recv_timeout(quiet) {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// SIGTERM, then wait (10 s) for the exit status (`terminate`).
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    /// SIGTERM, then wait (10 s) for the exit status; what it printed on
    /// its way out stays readable (`drain`, `stderr_lines`). When capturing
    /// (`capture::while_capturing`), also checks that `tcp-track read` of
    /// the capture prints the same events.
    pub fn terminate(&mut self) -> ExitStatus {
        let cutoff = self.capture.as_ref().map(Capture::mark);
        kill(self.pid(), Signal::SIGTERM).expect("sending SIGTERM");
        let status = self.wait(Duration::from_secs(10));
        if let (Some(capture), Some(cutoff)) = (self.capture.take(), cutoff) {
            let lines = self.drain(Duration::from_millis(200));
            capture.compare(&lines, cutoff);
        }
        status
    }

    /// The counters the daemon printed at exit (its `counters:` line on
    /// stderr), by name.
    pub fn exit_counters(&self) -> BTreeMap<String, u64> {
        exit_counters(&self.stderr_lines())
    }

    /// Wait for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("waiting for tcp-track") {
                self.child = None;
                // Let the reader threads catch the last lines.
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                panic!("tcp-track did not exit within {timeout:?}:\n{}", self.stderr_lines().join("\n"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A test that failed half-way still must not leave a daemon behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The counters in the last `counters:` line of `lines` (the daemon's
/// stderr, printed when it stops), by name.
pub fn exit_counters(lines: &[String]) -> BTreeMap<String, u64> {
    let line = lines.iter().rev().find(|l| l.contains("counters:")).expect("the daemon prints its counters at exit");
    let words = line.split("counters:").nth(1).unwrap_or_default().split_whitespace();
    words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.parse().expect("a counter is an integer"))).collect()
}

/// The daemon's exit counter `name` in its stderr `lines`.
pub fn exit_counter(lines: &[String], name: &str) -> u64 {
    exit_counters(lines).get(name).copied().unwrap_or_else(|| panic!("no counter {name} in {lines:?}"))
}
