//! Network namespaces joined by veth pairs: the test hosts of tcp-track's
//! tests and of `tcp-track demo`, with real TCP stacks.
//!
//! Every namespace is deleted when its guard drops, also when the test
//! panics; deleting a namespace destroys its veth ends and anything attached
//! to them. Nothing is ever created in, or attached to, the root namespace.
//! Addresses come from the benchmarking ranges 198.18.0.0/15 and
//! 2001:db8::/32 and exist only inside these namespaces.

use std::{
    fs::File,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// True when this process may create namespaces and load BPF programs.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
            enter_netns(&path).unwrap_or_else(|e| panic!("entering {path}: {e}"));
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

/// Move the calling thread into the network namespace at `path`.
pub fn enter_netns(path: &str) -> std::io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: a valid namespace descriptor; affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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

    /// A socket listening on `ip` (any free port) in this namespace.
    pub fn listen(&self, ip: impl Into<IpAddr>) -> std::io::Result<std::net::TcpListener> {
        let ip = ip.into();
        self.enter(move || std::net::TcpListener::bind((ip, 0)))
    }

    /// A connection to `to` made from this namespace: five seconds to
    /// connect; reads give up after ten.
    pub fn connect(&self, to: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
        let s = self.enter(move || std::net::TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5)))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
        Ok(s)
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

// ---- hand-made frames (AF_PACKET): malformed headers, forged resets, spoofed SYNs ----

/// Send `frame` (starting at its Ethernet header) out of `ifname` in `ns`.
pub fn send_frame(ns: &Netns, ifname: &str, frame: Vec<u8>) {
    send_frames(ns, ifname, vec![frame]);
}

/// Send every frame out of `ifname` in `ns`, through one socket (closing an
/// AF_PACKET socket waits for an RCU grace period: one per frame would make
/// a burst of thousands take half a minute).
pub fn send_frames(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) {
    let ifname = ifname.to_string();
    ns.enter(move || {
        let sender = RawSender::open(&ifname)?;
        frames.iter().try_for_each(|f| sender.send(f))
    })
    .unwrap_or_else(|e| panic!("sending raw frames: {e}"));
}

/// One AF_PACKET socket bound to nothing, sending out of one interface.
pub struct RawSender {
    fd: i32,
    index: i32,
}

impl RawSender {
    pub fn open(ifname: &str) -> std::io::Result<RawSender> {
        use std::io;
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            let index = libc::if_nametoindex(name.as_ptr());
            if index == 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(RawSender { fd, index: index as i32 })
        }
    }

    pub fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        use std::io;
        // SAFETY: a zeroed sockaddr_ll filled in, and a valid buffer.
        unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = self.index;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(&frame[..6]);
            let sent = libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if sent < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

impl Drop for RawSender {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// An IPv4 TCP segment with correct checksums, from `src` to `dst`, for
/// `send_frames`. `flags`: `S` SYN, `A` ACK (with `ack`), `R` RST, `F` FIN.
pub fn tcp_frame(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4, dst_mac: [u8; 6], flags: &str, seq: u32, ack: u32) -> Vec<u8> {
    tcp_segment(src, dst, dst_mac, Tcp { flags, seq, ack, ..Tcp::default() })
}

/// The TCP side of a crafted segment (see `tcp_segment`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp<'a> {
    /// `S` SYN, `A` ACK (with `ack`), `R` RST, `F` FIN.
    pub flags: &'a str,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent (unscaled).
    pub window: u16,
    /// A window-scale option (for SYNs).
    pub wscale: Option<u8>,
    /// Bytes of (zero) payload.
    pub payload: usize,
}

/// An IPv4 TCP segment with correct checksums, with window, window scale
/// and payload as given.
pub fn tcp_segment(src: std::net::SocketAddrV4, dst: std::net::SocketAddrV4, dst_mac: [u8; 6], tcp: Tcp) -> Vec<u8> {
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], dst_mac)
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .tcp(src.port(), dst.port(), tcp.seq, tcp.window);
    for f in tcp.flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(tcp.ack),
            'R' => b.rst(),
            'F' => b.fin(),
            _ => b,
        };
    }
    if let Some(ws) = tcp.wscale {
        b = b.options(&[etherparse::TcpOptionElement::WindowScale(ws)]).expect("one option fits");
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; tcp.payload]).expect("writing to a Vec cannot fail");
    out
}
