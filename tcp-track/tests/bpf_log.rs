//! Kernel-side logging goes through aya-log and is off unless asked for.

mod support;

use std::{thread, time::Duration};

use etherparse::PacketBuilder;
use support::{
    daemon::Daemon,
    netns::{send_frame, Pair},
};

/// An IPv4/TCP frame whose TCP data offset (4 words) is below the minimum.
fn malformed_frame(pair: &Pair) -> Vec<u8> {
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [0xff; 6])
        .ipv4(pair.b_end.v4.octets(), pair.a_end.v4.octets(), 64)
        .tcp(40000, 9, 1, 1000)
        .syn()
        .write(&mut f, &[])
        .unwrap();
    f[14 + 20 + 12] = 0x40;
    f
}

fn malformed_logged(bpf_log: Option<&str>) -> bool {
    let net = Pair::new(if bpf_log.is_some() { "logon" } else { "logoff" }).unwrap();
    let mut args = vec!["run", "--iface", &net.a_end.ifname];
    if let Some(level) = bpf_log {
        args.extend(["--bpf-log", level]);
    }
    let d = Daemon::start(&net.a, &args);
    send_frame(&net.b, &net.b_end.ifname, malformed_frame(&net)).unwrap();
    thread::sleep(Duration::from_millis(500));
    let logged = d.stderr_lines().iter().any(|l| l.contains("malformed frame"));
    assert!(d.stop().success());
    logged
}

#[test]
fn kernel_debug_log_only_with_bpf_log() {
    require_root!();
    assert!(malformed_logged(Some("debug")), "--bpf-log debug shows the kernel's debug records");
    assert!(!malformed_logged(None), "without --bpf-log the kernel logs nothing");
}
