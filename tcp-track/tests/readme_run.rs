//! The README's run command, exactly as a new user types it: `cargo xtask
//! run`, which builds everything and watches `lo`. Here it runs inside a
//! namespace of its own, so the `lo` it watches is that namespace's.

mod support;

use std::{
    os::unix::process::CommandExt,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use support::{daemon::Daemon, netns::Netns};

/// Kills the whole process group (cargo, xtask's exec of the daemon) on drop.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

#[test]
fn cargo_xtask_run_starts_the_daemon_on_lo() {
    require_root!();
    let ns = Netns::new("readme").unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, env!("CARGO"), "xtask", "run"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .process_group(0);
    let mut d = Daemon::spawn(cmd);
    let group = Group(d.pid().as_raw());
    // A release build on a fresh machine takes a few minutes.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !d.stderr_lines().iter().any(|l| l.contains("watching lo")) {
        assert!(Instant::now() < deadline, "no `watching lo` from `cargo xtask run`:\n{}", d.stderr_lines().join("\n"));
        thread::sleep(Duration::from_millis(200));
    }
    assert!(ns.ip(&["-d", "link", "show", "dev", "lo"]).unwrap().contains("prog/xdp"), "XDP is attached to the namespace's lo");
    // Ctrl-C reaches the whole foreground group.
    killpg(Pid::from_raw(group.0), Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !d.stderr_lines().iter().any(|l| l.contains("detached from lo")) {
        assert!(Instant::now() < deadline, "the daemon did not detach:\n{}", d.stderr_lines().join("\n"));
        thread::sleep(Duration::from_millis(100));
    }
    d.wait(Duration::from_secs(30));
    assert!(!ns.ip(&["-d", "link", "show", "dev", "lo"]).unwrap().contains("prog/xdp"), "nothing left on lo");
}
