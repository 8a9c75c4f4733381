//! Sending hand-made frames out of an interface (AF_PACKET), for segments no
//! socket API produces: malformed headers, forged resets, spoofed SYNs.

use std::{ffi::CString, io};

use super::netns::Netns;

/// Send `frame` (starting at its Ethernet header) out of `ifname` in `ns`.
pub fn send_frame(ns: &Netns, ifname: &str, frame: Vec<u8>) {
    let ifname = ifname.to_string();
    ns.enter(move || send_here(&ifname, &frame)).unwrap_or_else(|e| panic!("sending a raw frame: {e}"));
}

fn send_here(ifname: &str, frame: &[u8]) -> io::Result<()> {
    let name = CString::new(ifname).expect("interface name");
    // SAFETY: plain libc calls with valid pointers and lengths.
    unsafe {
        let index = libc::if_nametoindex(name.as_ptr());
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = index as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        let sent = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if sent < 0 {
            return Err(err);
        }
    }
    Ok(())
}
