//! Every option of `tcp-track run` and `tcp-track demo` at its edges (the
//! table in `test_support::edges`, which the unit test of
//! `Config::validate` also runs), through the real binary: the exit status
//! of the error's class (2 for usage, 1 for the host), the message, and no
//! panic. Validation happens before anything is loaded, so these need no
//! root; only the repeated-interface run does.

mod support;

use std::process::Command;

use support::{daemon::Daemon, netns::Netns};
use tcp_track::{
    config::ErrorClass,
    test_support::edges::{Edge, DEMO_EDGES, FLOWS_EDGES, RUN_EDGES},
};

/// Run `tcp-track CMD [--iface lo] ARGS` to its end; check status and stderr.
fn check(cmd: &str, (args, message, class): &Edge) {
    let mut argv = vec![cmd];
    if cmd == "run" {
        argv.extend(["--iface", "lo"]);
    }
    argv.extend(args.iter().copied());
    let out = Command::new(support::daemon::BIN).args(&argv).env("RUST_BACKTRACE", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let message = message.expect("only rejected rows are run");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{argv:?}: {err}");
    assert_eq!(out.status.code(), Some(i32::from(class.exit_status())), "{argv:?}: {err}");
    assert!(out.stdout.is_empty(), "{argv:?}: nothing on stdout");
    let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
    if err.starts_with("error: ") {
        // clap's own: its line, then its hint (and usage) lines.
        assert!(lines[0].contains(message), "{argv:?}: expected {message:?} in {:?}", lines[0]);
        assert!(lines.iter().any(|l| l.contains("--help")), "{argv:?}: {err}");
    } else {
        assert_eq!(lines.len(), 1, "{argv:?}: exactly one line: {err}");
        assert!(lines[0].starts_with("tcp-track: error: "), "{argv:?}: {err}");
        assert!(lines[0].contains(message), "{argv:?}: expected {message:?} in {:?}", lines[0]);
    }
}

#[test]
fn run_options_at_their_edges() {
    // Accepted rows would start the daemon; rows about the host's memory
    // depend on the host (the unit test fixes its memory).
    let rows = RUN_EDGES.iter().filter(|(_, m, class)| m.is_some() && *class == ErrorClass::Usage);
    let mut n = 0;
    for row in rows {
        check("run", row);
        n += 1;
    }
    assert!(n >= 30, "{n} rows");
}

#[test]
fn flows_and_detach_options_at_their_edges() {
    for row in FLOWS_EDGES {
        check("flows", row);
    }
    // detach shares --state-dir and --instance with flows.
    check("detach", &(&["--state-dir", "/proc/tt-nothing-here"], Some("/proc: not on a BPF file system"), ErrorClass::Environment));
    check("detach", &(&["--bogus"], Some("unexpected argument '--bogus'"), ErrorClass::Usage));
}

#[test]
fn demo_options_at_their_edges() {
    for row in DEMO_EDGES {
        check("demo", row);
    }
}

#[test]
fn tables_too_large_for_this_host_exit_1_naming_what_fits() {
    // 2^24 flows and 2^24 half-open slots take ~7.9 GiB: an environment
    // error on a host with less available, else the daemon would start.
    let Some(avail) = tcp_track::config::available_memory() else { return };
    let cap = tcp_track::config::Capacity::new(1 << 24, 1 << 24);
    if cap.kernel_memory() <= avail {
        eprintln!("SKIPPED: this host has {} available, the largest tables fit", tcp_track::config::mib(avail));
        return;
    }
    let row: Edge = (&["--max-flows", "16777216", "--max-half-open", "16777216"], Some("the largest"), ErrorClass::Environment);
    check("run", &row);
}

#[test]
fn a_repeated_interface_is_watched_once_with_a_warning() {
    require_root!();
    let ns = Netns::new("dupif").unwrap();
    let d = Daemon::start(&ns, &["run", "--iface", "lo", "--iface", "lo"]);
    let lines = d.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("warn") && l.contains("--iface lo given more than once: it is watched once")), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains("lo: XDP attached")).count(), 1, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("watching lo:")), "{lines:?}");
    assert!(d.stop().success(), "{lines:?}");
}
