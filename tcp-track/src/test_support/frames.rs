//! Hand-made frames sent out of an interface (AF_PACKET): malformed
//! headers, forged resets, spoofed SYNs.

use std::{
    ffi::CString,
    io,
    net::SocketAddrV4,
    thread,
    time::{Duration, Instant},
};

use super::netns::Netns;

/// Send `frame` (starting at its Ethernet header) out of `ifname` in `ns`.
pub fn send_frame(ns: &Netns, ifname: &str, frame: Vec<u8>) -> io::Result<()> {
    send_frames(ns, ifname, vec![frame])
}

/// Send every frame out of `ifname` in `ns`, through one socket (closing an
/// AF_PACKET socket waits for an RCU grace period: one per frame would make
/// a burst of thousands take half a minute).
pub fn send_frames(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) -> io::Result<()> {
    let ifname = ifname.to_string();
    ns.enter(move || {
        let sender = RawSender::open(&ifname)?;
        frames.iter().try_for_each(|f| sender.send(f))
    })?
}

/// Send each frame out of `ifname` in `ns` `gap` after the previous one (the
/// first at once), through one socket; returns when each left. The last
/// 2 ms of a gap are spun rather than slept, so that gaps are exact to a
/// few microseconds unless the scheduler takes the thread away (callers
/// check the times returned).
pub fn send_paced(ns: &Netns, ifname: &str, frames: Vec<(Duration, Vec<u8>)>) -> io::Result<Vec<Instant>> {
    let ifname = ifname.to_string();
    ns.enter(move || {
        let sender = RawSender::open(&ifname)?;
        let mut sent: Vec<Instant> = Vec::with_capacity(frames.len());
        for (gap, f) in &frames {
            if let Some(prev) = sent.last().copied() {
                let due = prev + *gap;
                let spin = Duration::from_millis(2);
                if let Some(left) = due.checked_duration_since(Instant::now()).and_then(|l| l.checked_sub(spin)) {
                    thread::sleep(left);
                }
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            }
            sender.send(f)?;
            sent.push(Instant::now());
        }
        Ok(sent)
    })?
}

/// One AF_PACKET socket bound to nothing, sending out of one interface.
pub struct RawSender {
    fd: i32,
    index: i32,
}

impl RawSender {
    pub fn open(ifname: &str) -> io::Result<RawSender> {
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

    /// Send one frame; it must hold at least an Ethernet header.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let Some(dst_mac) = frame.get(..6) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {} bytes has no Ethernet header", frame.len())));
        };
        // SAFETY: a zeroed sockaddr_ll filled in, and a valid buffer.
        unsafe {
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = self.index;
            addr.sll_halen = 6;
            addr.sll_addr[..6].copy_from_slice(dst_mac);
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
pub fn tcp_frame(src: SocketAddrV4, dst: SocketAddrV4, dst_mac: [u8; 6], flags: &str, seq: u32, ack: u32) -> io::Result<Vec<u8>> {
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

/// The options of a SYN as Linux sends them with its defaults, in its
/// order: MSS, SACK-permitted, timestamps (`ts_val`, no echo), NOP,
/// window scale (20 bytes; `parse::OptionWalk::linux_layout` reads them).
pub fn linux_syn_options(mss: u16, ts_val: u32, wscale: u8) -> [etherparse::TcpOptionElement; 5] {
    use etherparse::TcpOptionElement::*;
    [MaximumSegmentSize(mss), SelectiveAcknowledgementPermitted, Timestamp(ts_val, 0), Noop, WindowScale(wscale)]
}

/// An IPv4 TCP segment with correct checksums, with window, window scale
/// and payload as given. Fails for a payload too large for one IPv4 packet.
pub fn tcp_segment(src: SocketAddrV4, dst: SocketAddrV4, dst_mac: [u8; 6], tcp: Tcp) -> io::Result<Vec<u8>> {
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
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
        b = b.options(&[etherparse::TcpOptionElement::WindowScale(ws)]).map_err(|e| invalid(format!("TCP options: {e}")))?;
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0u8; tcp.payload]).map_err(|e| invalid(format!("building a TCP segment: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_parse_back_as_built() {
        let (c, s) = ("198.18.0.1:40000".parse().unwrap(), "198.18.0.2:80".parse().unwrap());
        let f = tcp_segment(c, s, [2, 0, 0, 0, 0, 2], Tcp { flags: "SA", seq: 7, ack: 9, window: 512, wscale: Some(7), payload: 3 }).unwrap();
        let p = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("TCP") };
        assert!(t.syn() && t.ack() && !t.rst());
        assert_eq!((t.sequence_number(), t.acknowledgment_number(), t.window_size(), t.payload().len()), (7, 9, 512, 3));
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn an_impossible_segment_is_an_error() {
        let (c, s) = ("198.18.0.1:40000".parse().unwrap(), "198.18.0.2:80".parse().unwrap());
        let err = tcp_segment(c, s, [0; 6], Tcp { flags: "A", payload: 70_000, ..Tcp::default() }).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(RawSender { fd: -1, index: 0 }.send(&[1, 2]).is_err(), "a frame without an Ethernet header");
    }
}
