//! Sending hand-made frames out of an interface (AF_PACKET), for segments no
//! socket API produces: malformed headers, forged resets, spoofed SYNs.

use std::{ffi::CString, io};

use super::netns::Netns;

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

struct RawSender {
    fd: i32,
    index: i32,
}

impl RawSender {
    fn open(ifname: &str) -> io::Result<RawSender> {
        let name = CString::new(ifname).map_err(io::Error::other)?;
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

    fn send(&self, frame: &[u8]) -> io::Result<()> {
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
