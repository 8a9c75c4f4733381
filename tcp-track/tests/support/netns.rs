//! Network namespaces joined by veth pairs, for tests with real TCP stacks.
//!
//! Every namespace is deleted when its guard drops, also when the test
//! panics; deleting a namespace destroys its veth ends and anything attached
//! to them. Nothing is ever created in, or attached to, the root namespace.
//! Addresses come from the benchmarking ranges 198.18.0.0/15 and
//! 2001:db8::/32 and exist only inside these namespaces.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsFd,
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

use nix::sched::{setns, CloneFlags};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// True when this process may create namespaces and load BPF programs.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skip a test that needs root, loudly: the skip is printed, not silent.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::netns::is_root() {
            eprintln!(
                "\n*** SKIPPED {}: needs root (network namespaces and BPF); run `cargo xtask test` as root ***\n",
                module_path!()
            );
            return;
        }
    };
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tt-{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME args...`, panicking with ip's stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Run a program inside the namespace (`ip netns exec`), returning its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program} in {}: {e}", self.name))
    }

    /// Run `f` on a thread that has entered this namespace. Sockets created
    /// there belong to the namespace for good and may be used from any thread.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            setns(file.as_fd(), CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("entering {path}: {e}"));
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip").args(["netns", "del", &self.name]).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!("warning: deleting netns {}: {}", self.name, String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

/// Run a command, panic with its stderr if it fails, return its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    if !out.status.success() {
        panic!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One end of a veth link.
pub struct End {
    pub ifname: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl End {
    pub fn addr(&self, v6: bool) -> IpAddr {
        if v6 { IpAddr::V6(self.v6) } else { IpAddr::V4(self.v4) }
    }
}

/// Join `x` and `y` with a veth pair on subnet `net` (198.18.<net>.0/24,
/// 2001:db8:<net>::/64); `x` gets host .1 / ::1, `y` gets .2 / ::2.
pub fn link(x: &Netns, x_if: &str, y: &Netns, y_if: &str, net: u8) -> (End, End) {
    x.ip(&["link", "add", x_if, "type", "veth", "peer", "name", y_if, "netns", &y.name]);
    let ends = [(x, x_if, 1u8), (y, y_if, 2u8)].map(|(ns, ifname, host)| {
        let v4 = Ipv4Addr::new(198, 18, net, host);
        let v6: Ipv6Addr = format!("2001:db8:{net}::{host}").parse().expect("valid IPv6 literal");
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
        // nodad: the address is usable at once instead of after duplicate detection.
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"]);
        ns.ip(&["link", "set", ifname, "up"]);
        End { ifname: ifname.to_string(), v4, v6 }
    });
    let [a, b] = ends;
    (a, b)
}

/// Two hosts on one link: `a` (198.18.0.1, 2001:db8:0::1) and `b` (.2, ::2).
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_end: End,
    pub b_end: End,
}

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        let (a_end, b_end) = link(&a, "veth-a", &b, "veth-b", 0);
        Pair { a, b, a_end, b_end }
    }
}

/// Three namespaces: `a` — `r` — `b`, with `r` routing between 198.18.1.0/24
/// (a side) and 198.18.2.0/24 (b side), and the IPv6 equivalents.
pub struct Routed {
    pub a: Netns,
    pub r: Netns,
    pub b: Netns,
    pub a_end: End,
    pub ra_end: End,
    pub rb_end: End,
    pub b_end: End,
}

impl Routed {
    pub fn new(tag: &str) -> Routed {
        let a = Netns::new(&format!("{tag}a"));
        let r = Netns::new(&format!("{tag}r"));
        let b = Netns::new(&format!("{tag}b"));
        let (a_end, ra_end) = link(&a, "veth-a", &r, "veth-ra", 1);
        let (b_end, rb_end) = link(&b, "veth-b", &r, "veth-rb", 2);
        r.exec("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        r.exec("sysctl", &["-qw", "net.ipv6.conf.all.forwarding=1"]);
        for (ns, via) in [(&a, &ra_end), (&b, &rb_end)] {
            ns.ip(&["route", "add", "default", "via", &via.v4.to_string()]);
            ns.ip(&["-6", "route", "add", "default", "via", &via.v6.to_string()]);
        }
        Routed { a, r, b, a_end, ra_end, rb_end, b_end }
    }
}

impl Netns {
    /// Load nftables rules (one `nft` command line, `;`-separated) in this namespace.
    pub fn nft(&self, rules: &str) {
        let out = self.exec("nft", &[rules]);
        assert!(out.status.success(), "nft {rules}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let text = self.ip(&["link", "show", "dev", ifname]);
        let hex = text
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap_or_else(|| panic!("no link/ether for {ifname}: {text}"));
        let mut mac = [0u8; 6];
        for (m, part) in mac.iter_mut().zip(hex.split(':')) {
            *m = u8::from_str_radix(part, 16).expect("hex byte");
        }
        mac
    }

    /// A sysctl inside this namespace.
    pub fn sysctl(&self, setting: &str) {
        let out = self.exec("sysctl", &["-qw", setting]);
        assert!(out.status.success(), "sysctl {setting}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// SO_LINGER with a zero timeout: close() then sends a RST and frees the socket.
pub fn set_linger_zero(fd: std::os::fd::RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER): {}", std::io::Error::last_os_error());
}
