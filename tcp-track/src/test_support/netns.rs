//! Network namespaces joined by veth pairs: the test hosts of tcp-track's
//! tests and of `tcp-track demo`, with real TCP stacks.
//!
//! Every namespace is deleted when its guard drops, also when a test
//! panics or a setup step fails half-way; deleting a namespace destroys its
//! veth ends and anything attached to them. Nothing is ever created in, or
//! attached to, the root namespace. Addresses come from the benchmarking
//! ranges 198.18.0.0/15 and 2001:db8::/32 and exist only inside these
//! namespaces.

use std::{
    fs::File,
    io::{self, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, RawFd},
    process::{Command, Output},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::Duration,
};

use super::failed;

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
    /// A fresh namespace named after `tag`, with its `lo` up.
    pub fn new(tag: &str) -> io::Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tt-{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        // From here on, dropping it deletes it.
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME args...`: its stdout, or an error with ip's stderr.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Run a program inside the namespace (`ip netns exec`), returning its
    /// output whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .map_err(|e| failed(format!("running {program} in {}: {e}", self.name)))
    }

    /// Run `f` on a thread that has entered this namespace. Sockets created
    /// there belong to the namespace for good and may be used from any
    /// thread. A panic in `f` is the caller's, and goes on in the caller.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = self.path();
        thread::spawn(move || {
            enter_netns(&path).map_err(|e| failed(format!("entering {path}: {e}")))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Load nftables rules (one `nft` command line, `;`-separated) in this namespace.
    pub fn nft(&self, rules: &str) -> io::Result<()> {
        succeeded(&format!("nft {rules}"), self.exec("nft", &[rules])?)
    }

    /// A sysctl inside this namespace.
    pub fn sysctl(&self, setting: &str) -> io::Result<()> {
        succeeded(&format!("sysctl {setting}"), self.exec("sysctl", &["-qw", setting])?)
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, ifname: &str) -> io::Result<[u8; 6]> {
        let text = self.ip(&["link", "show", "dev", ifname])?;
        let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("no link/ether address for {ifname} in: {text}"));
        let hex = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).ok_or_else(bad)?;
        let mut mac = [0u8; 6];
        let mut parts = hex.split(':');
        for m in mac.iter_mut() {
            *m = parts.next().and_then(|p| u8::from_str_radix(p, 16).ok()).ok_or_else(bad)?;
        }
        Ok(mac)
    }

    /// A socket listening on `ip` (any free port) in this namespace.
    pub fn listen(&self, ip: impl Into<IpAddr>) -> io::Result<TcpListener> {
        let ip = ip.into();
        self.enter(move || TcpListener::bind((ip, 0)))?
    }

    /// A connection to `to` made from this namespace: five seconds to
    /// connect; reads give up after ten.
    pub fn connect(&self, to: SocketAddr) -> io::Result<TcpStream> {
        let s = self.enter(move || TcpStream::connect_timeout(&to, Duration::from_secs(5)))??;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
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
pub fn enter_netns(path: &str) -> io::Result<()> {
    let file = File::open(path)?;
    // SAFETY: a valid namespace descriptor; affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run a command: its stdout, or an error with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> io::Result<String> {
    let out = Command::new(program).args(args).output().map_err(|e| failed(format!("running {program}: {e}")))?;
    let what = format!("{program} {}", args.join(" "));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    succeeded(&what, out).map(|()| stdout)
}

/// An error with `what` and its stderr unless the command succeeded.
fn succeeded(what: &str, out: Output) -> io::Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim_end())))
    }
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
pub fn link(x: &Netns, x_if: &str, y: &Netns, y_if: &str, net: u8) -> io::Result<(End, End)> {
    x.ip(&["link", "add", x_if, "type", "veth", "peer", "name", y_if, "netns", &y.name])?;
    let end = |ns: &Netns, ifname: &str, host: u8| -> io::Result<End> {
        let v4 = Ipv4Addr::new(198, 18, net, host);
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, net.into(), 0, 0, 0, 0, host.into());
        ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname])?;
        // nodad: the address is usable at once instead of after duplicate detection.
        ns.ip(&["addr", "add", &format!("{v6}/64"), "dev", ifname, "nodad"])?;
        ns.ip(&["link", "set", ifname, "up"])?;
        Ok(End { ifname: ifname.to_string(), v4, v6 })
    };
    Ok((end(x, x_if, 1)?, end(y, y_if, 2)?))
}

/// Two hosts on one link: `a` (198.18.0.1, 2001:db8:0::1) and `b` (.2, ::2).
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub a_end: End,
    pub b_end: End,
}

impl Pair {
    pub fn new(tag: &str) -> io::Result<Pair> {
        let a = Netns::new(&format!("{tag}a"))?;
        let b = Netns::new(&format!("{tag}b"))?;
        let (a_end, b_end) = link(&a, "veth-a", &b, "veth-b", 0)?;
        Ok(Pair { a, b, a_end, b_end })
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
    pub fn new(tag: &str) -> io::Result<Routed> {
        let a = Netns::new(&format!("{tag}a"))?;
        let r = Netns::new(&format!("{tag}r"))?;
        let b = Netns::new(&format!("{tag}b"))?;
        let (a_end, ra_end) = link(&a, "veth-a", &r, "veth-ra", 1)?;
        let (b_end, rb_end) = link(&b, "veth-b", &r, "veth-rb", 2)?;
        r.sysctl("net.ipv4.ip_forward=1")?;
        r.sysctl("net.ipv6.conf.all.forwarding=1")?;
        for (ns, via) in [(&a, &ra_end), (&b, &rb_end)] {
            ns.ip(&["route", "add", "default", "via", &via.v4.to_string()])?;
            ns.ip(&["-6", "route", "add", "default", "via", &via.v6.to_string()])?;
        }
        Ok(Routed { a, r, b, a_end, ra_end, rb_end, b_end })
    }
}

/// SO_LINGER with a zero timeout: close() then sends a RST and frees the socket.
pub fn set_linger_zero(fd: RawFd) -> io::Result<()> {
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
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Orderly release (RFC 9293 §3.6), `first` closing first: its FIN; the
/// other side reads to the end of the stream and sends its own FIN; `first`
/// reads to the end. Both sockets are left open, fully closed on the wire
/// (the active closer in TIME-WAIT); whatever was still unread is dropped.
pub fn close_orderly(first: &mut TcpStream, second: &mut TcpStream) -> io::Result<()> {
    let mut rest = Vec::new();
    first.shutdown(Shutdown::Write)?;
    second.read_to_end(&mut rest)?;
    second.shutdown(Shutdown::Write)?;
    first.read_to_end(&mut rest)?;
    Ok(())
}

/// Turn TCP segmentation offload, generic segmentation offload and generic
/// receive offload of `ifname` in `ns` on or off (what `ethtool -K IFNAME tso
/// off gso off gro off` does, through the same ioctl). Off, every segment
/// crosses the interface as one frame in both directions, and a capture
/// there sees the frames the tracker's hooks see.
pub fn set_offloads(ns: &Netns, ifname: &str, on: bool) -> io::Result<()> {
    // ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO (linux/ethtool.h).
    const SET: [u32; 3] = [0x1f, 0x24, 0x2c];
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    let name = ifname.as_bytes().to_vec();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("interface name {ifname:?}")));
    }
    ns.enter(move || {
        // SAFETY: a datagram socket closed below; an ifreq whose name is
        // NUL-terminated and whose data points at a live ethtool_value.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut result = Ok(());
            for cmd in SET {
                let mut value = [cmd, u32::from(on)];
                let mut req: libc::ifreq = std::mem::zeroed();
                for (d, s) in req.ifr_name.iter_mut().zip(&name) {
                    *d = *s as libc::c_char;
                }
                req.ifr_ifru.ifru_data = value.as_mut_ptr().cast();
                if libc::ioctl(fd, SIOCETHTOOL as _, &mut req) != 0 {
                    result = Err(io::Error::last_os_error());
                    break;
                }
            }
            libc::close(fd);
            result
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_commands_are_errors_with_their_stderr() {
        let err = run("sh", &["-c", "echo oops >&2; exit 3"]).unwrap_err();
        assert!(err.to_string().contains("sh -c") && err.to_string().contains("oops"), "{err}");
        assert!(run("/nonexistent/program", &[]).is_err());
        assert_eq!(run("sh", &["-c", "echo fine"]).unwrap(), "fine\n");
    }

    #[test]
    fn a_namespace_that_does_not_exist_cannot_be_entered() {
        let ghost = Netns { name: format!("tt-never-made-{}", std::process::id()) };
        assert!(ghost.enter(|| ()).is_err());
        assert!(set_linger_zero(-1).is_err());
        // Dropping it would try `ip netns del` on a name nobody made.
        std::mem::forget(ghost);
    }
}
