//! Each way of not being able to run gets a clear one-line message on stderr
//! and a non-zero exit status, before anything is attached.

mod support;

use std::{
    fs::File,
    os::{fd::AsRawFd, unix::process::CommandExt},
    process::Command,
    time::Duration,
};

use support::{
    daemon::{Daemon, BIN},
    netns::{Netns, Pair},
};

/// Run the daemon to completion; returns (exit code, last stderr line).
fn run_to_exit(cmd: Command) -> (Option<i32>, String) {
    let mut d = Daemon::spawn(cmd);
    let status = d.wait(Duration::from_secs(60));
    let lines = d.stderr_lines();
    let last = lines.last().cloned().unwrap_or_default();
    (status.code(), last)
}

/// `tcp-track ARGS` in `ns`, with `pre` run in the child after it entered
/// the namespace and before exec (for dropping privileges and the like).
fn in_netns(ns: &Netns, args: &[&str], pre: impl Fn() -> std::io::Result<()> + Send + Sync + 'static) -> Command {
    let file = File::open(ns.path()).expect("netns file");
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // SAFETY: only async-signal-safe syscalls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            pre()
        });
    }
    cmd
}

fn assert_one_line_error(code: Option<i32>, last: &str, expected: &str) {
    assert_eq!(code, Some(1), "exit status; stderr: {last}");
    assert!(last.starts_with("tcp-track: error: "), "{last}");
    assert!(last.contains(expected), "expected {expected:?} in: {last}");
}

#[test]
fn unknown_interface() {
    require_root!();
    let ns = Netns::new("badif").unwrap();
    let (code, last) = run_to_exit(in_netns(&ns, &["run", "--iface", "nosuch0"], || Ok(())));
    assert_one_line_error(code, &last, "unknown interface \"nosuch0\"");
    assert!(last.contains("ip link"), "tells how to list interfaces: {last}");
}

#[test]
fn not_root() {
    require_root!();
    let net = Pair::new("noroot").unwrap();
    let args = ["run", "--iface", &net.a_end.ifname];
    let (code, last) = run_to_exit(in_netns(&net.a, &args, || {
        // Become `nobody`, with no capabilities left.
        // SAFETY: plain syscalls in the forked child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }));
    assert_one_line_error(code, &last, "not enough privileges: missing CAP_BPF and CAP_NET_ADMIN");
    assert!(last.contains("run it as root"), "{last}");
}

#[test]
fn native_xdp_on_a_driver_without_it() {
    require_root!();
    // The loopback driver has no native XDP support (the test namespace's own lo).
    let ns = Netns::new("noxdp").unwrap();
    let (code, last) = run_to_exit(in_netns(&ns, &["run", "--iface", "lo", "--xdp-mode", "native"], || Ok(())));
    assert_one_line_error(code, &last, "interface lo: its driver does not support native (driver-mode) XDP");
    assert!(last.contains("--xdp-mode skb"), "tells which mode to try: {last}");
}

#[test]
fn auto_mode_falls_back_to_skb_with_a_warning() {
    require_root!();
    let ns = Netns::new("auto").unwrap();
    let d = Daemon::start(&ns, &["run", "--iface", "lo"]);
    let lines = d.stderr_lines();
    assert!(lines.iter().any(|l| l.contains("warn") && l.contains("falling back to generic (skb) mode")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("lo: XDP attached in generic (skb) mode")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("lo: loopback") && l.contains("no TC egress")), "{lines:?}");
    assert!(d.stop().success());
}

#[test]
fn kernel_without_btf() {
    require_root!();
    let net = Pair::new("nobtf").unwrap();
    let args = ["run", "--iface", &net.a_end.ifname];
    let (code, last) = run_to_exit(in_netns(&net.a, &args, || {
        // A private mount namespace where /sys/kernel/btf is an empty tmpfs:
        // what a kernel built without CONFIG_DEBUG_INFO_BTF looks like.
        // SAFETY: plain syscalls in the forked child, with static C strings.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0
                || libc::mount(c"none".as_ptr(), c"/sys/kernel/btf".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }));
    assert_one_line_error(code, &last, "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing)");
    assert!(last.contains("CONFIG_DEBUG_INFO_BTF"), "{last}");
}

/// A seccomp filter that makes every BPF_MAP_CREATE fail with EINVAL, which
/// is how a kernel answers for a map type it does not know: the ring-buffer
/// probe then sees a kernel without ring buffers (Linux < 5.8).
#[cfg(target_arch = "x86_64")]
fn deny_map_create() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const NR_BPF: u32 = 321;
    const BPF_MAP_CREATE: u32 = 0;
    const RET_ALLOW: u32 = 0x7fff_0000;
    const RET_EINVAL: u32 = 0x0005_0000 | libc::EINVAL as u32;
    let ld = |k: u32| libc::sock_filter { code: 0x20, jt: 0, jf: 0, k }; // BPF_LD|BPF_W|BPF_ABS
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter { code: 0x15, jt, jf, k }; // BPF_JMP|BPF_JEQ|BPF_K
    let ret = |k: u32| libc::sock_filter { code: 0x06, jt: 0, jf: 0, k }; // BPF_RET|BPF_K
    let filter = [
        ld(4),                        // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 0, 5), // other arch: allow
        ld(0),                        // seccomp_data.nr
        jeq(NR_BPF, 0, 3),            // not bpf(2): allow
        ld(16),                       // seccomp_data.args[0], low half: the command
        jeq(BPF_MAP_CREATE, 0, 1),
        ret(RET_EINVAL),
        ret(RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: a valid, fully initialised filter program that outlives the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[test]
fn kernel_without_ring_buffers() {
    require_root!();
    let net = Pair::new("noring").unwrap();
    let args = ["run", "--iface", &net.a_end.ifname];
    let (code, last) = run_to_exit(in_netns(&net.a, &args, deny_map_create));
    assert_one_line_error(code, &last, "this kernel has no BPF ring buffer");
    assert!(last.contains("Linux 5.8"), "{last}");
}

#[test]
fn missing_iface_argument_is_a_usage_error() {
    let out = Command::new(BIN).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage-error status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--iface <IF>"), "{err}");
}
