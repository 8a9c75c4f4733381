//! The short soak: `tcp-track-soak` (the driver of `cargo xtask soak`) for
//! 20 seconds at 500 connections a second against this build's daemon, so
//! that a regression in the tracker's accounting of real connections
//! (closed, refused, aborted, half-open: each must get exactly one `conn`
//! record with its end) fails the suite, not only the 30-minute run.
//! Memory flatness is judged by the long run only (it needs more than a
//! minute); the accounting itself is unit-tested in the driver.

mod support;

use std::{
    io::Read,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The whole run: 20 s of connections, the last handshakes given up
/// (7 s), the daemon's start and stop; generous for a loaded machine.
const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn every_connection_of_a_short_soak_is_accounted_for() {
    require_root!();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcp-track-soak"))
        .args(["--seconds", "20", "--rate", "500", "--daemon", env!("CARGO_BIN_EXE_tcp-track")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tcp-track-soak");
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tcp-track-soak") {
            break status;
        }
        if started.elapsed() > LIMIT {
            // SIGINT by its pid: the driver removes its namespaces and stops its daemon.
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let status = child.wait().expect("waiting for tcp-track-soak");
            panic!("the short soak took longer than {LIMIT:?} ({status}):\n{}", err_reader.join().unwrap());
        }
        thread::sleep(Duration::from_millis(200));
    };
    let (out, err) = (reader.join().unwrap(), err_reader.join().unwrap());
    eprintln!("{err}\n{out}");
    assert!(status.success(), "the short soak failed ({status}):\n{out}\n{err}");
    assert!(out.contains("every connection accounted for: yes"), "{out}");
    // Every kind was driven and matched: a row per kind, each `ok`, none empty.
    for kind in ["closed", "refused", "abort", "half_open"] {
        let row = out.lines().find(|l| l.split_whitespace().next() == Some(kind)).unwrap_or_else(|| panic!("no row for {kind}:\n{out}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        let opened: u64 = cells[1].parse().unwrap_or_else(|_| panic!("no opened count in {row:?}"));
        assert!(opened > 0, "no {kind} connection was opened: {row}");
        assert_eq!(cells.last(), Some(&"ok"), "{row}");
    }
}
