//! `tcp-track demo` shows every kind of event within half a minute, and
//! leaves no namespace behind.

mod support;

use std::{
    collections::BTreeSet,
    process::Command,
    time::{Duration, Instant},
};

use support::daemon::BIN;

#[test]
fn demo_shows_every_kind_of_event_and_cleans_up() {
    require_root!();
    let started = Instant::now();
    let out = Command::new(BIN).args(["demo", "--format", "json"]).env_remove("RUST_LOG").output().expect("running the demo");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    assert!(took < Duration::from_secs(30), "the demo took {took:?}");
    let mut seen = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let kind = match (v["event"].as_str().unwrap(), v["reason"].as_str(), v["kind"].as_str()) {
            ("reset", Some(r), _) => format!("reset/{r}"),
            ("half_open", _, Some(k)) => format!("half_open/{k}"),
            (e, _, _) => e.to_string(),
        };
        seen.insert(kind);
    }
    let expected = [
        "reset/refused",
        "reset/abort",
        "reset/stateless_peer",
        "reset/time_wait_assassination",
        "half_open/syn_recv",
        "half_open/syn_sent",
        "half_open/peer_lost",
        "time_wait",
        "time_wait_expired",
        "time_wait_reuse",
        "time_wait_pressure",
        "close_wait",
        "syn_flood",
        "syn_flood_ended",
    ];
    let missing: Vec<_> = expected.iter().filter(|e| !seen.contains(**e)).collect();
    assert!(missing.is_empty(), "missing {missing:?}; seen {seen:?}\n{stderr}");
    let left = String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    let ours: Vec<&str> = left.lines().filter(|l| l.contains(&format!("-{}-", out_pid_hint(&stderr)))).collect();
    assert!(ours.is_empty(), "namespaces left behind: {ours:?}");
}

/// The demo names its namespaces `tt-demoa-<pid>-N`; its first stderr line says which.
fn out_pid_hint(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .find(|w| w.starts_with("tt-demoa-"))
        .and_then(|w| w.split('-').nth(2))
        .unwrap_or("no-such-pid")
        .to_string()
}
