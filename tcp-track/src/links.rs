//! The kernel's link events (RTM_NEWLINK, RTM_DELLINK) of this process's
//! network namespace, read from a netlink socket subscribed to
//! RTNLGRP_LINK, and the links present now. `follow` decides what to do
//! about them.

use std::{ffi::CStr, io, os::fd::AsRawFd};

use log::debug;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    link::{LinkAttribute, LinkFlags, LinkMessage},
    RouteNetlinkMessage,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{
    follow::Link,
    preflight::{self, Interface},
};

/// RTMGRP_LINK: the multicast group of link changes (`rtnetlink.h`).
const RTMGRP_LINK: u32 = 1;

/// A datagram larger than any link message (a few KiB with every
/// attribute).
const BUFFER: usize = 64 * 1024;

/// What one read of the socket brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Changes {
    /// These changes, in the order the kernel made them (none when the
    /// socket had nothing more).
    Links(Vec<Link>),
    /// Messages were lost (the socket's buffer overran) or could not be
    /// read: list the links again (`present`) and resynchronise.
    Lost,
}

/// A non-blocking netlink socket receiving the link changes of this
/// network namespace.
pub struct LinkEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl LinkEvents {
    /// Subscribe. Do it before listing what is present, so that nothing
    /// that appears in between is missed.
    pub fn open() -> io::Result<LinkEvents> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        socket.set_non_blocking(true)?;
        Ok(LinkEvents { socket, buf: vec![0; BUFFER] })
    }

    /// Every change waiting on the socket (an empty list when there is
    /// none: `WouldBlock` has been seen).
    pub fn read(&mut self) -> Changes {
        let mut links = Vec::new();
        loop {
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => match parse(&self.buf[..n], &mut links) {
                    Ok(()) => {}
                    Err(e) => {
                        debug!("a link message could not be parsed ({e}): listing the links again");
                        return Changes::Lost;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Changes::Links(links),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // ENOBUFS: the kernel dropped messages for us.
                    debug!("reading link changes: {e}: listing the links again");
                    return Changes::Lost;
                }
            }
        }
    }
}

impl AsRawFd for LinkEvents {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}

/// The link messages of one datagram, appended to `links`.
fn parse(mut buf: &[u8], links: &mut Vec<Link>) -> Result<(), String> {
    while !buf.is_empty() {
        let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(buf).map_err(|e| e.to_string())?;
        let len = msg.header.length as usize;
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => links.extend(interface(&m).map(Link::Present)),
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                links.extend(interface(&m).map(|i| Link::Deleted { index: i.index, name: i.name }))
            }
            _ => {}
        }
        // Messages are 4-byte aligned (NLMSG_ALIGN).
        let next = len.next_multiple_of(4);
        if len == 0 || next > buf.len() {
            break;
        }
        buf = &buf[next..];
    }
    Ok(())
}

/// The interface a link message is about (none without a name).
fn interface(m: &LinkMessage) -> Option<Interface> {
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })?;
    Some(Interface { name, index: m.header.index, loopback: m.header.flags.contains(LinkFlags::Loopback) })
}

/// Every link of this network namespace now (`if_nameindex`), with its
/// flags; one that vanishes while being listed is left out.
pub fn present() -> io::Result<Vec<Interface>> {
    // SAFETY: if_nameindex returns a NULL-terminated array (or NULL on
    // error), freed below with if_freenameindex; each name is a NUL-
    // terminated string inside it.
    let names: Vec<String> = unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut names = Vec::new();
        let mut p = list;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            names.push(CStr::from_ptr((*p).if_name).to_string_lossy().into_owned());
            p = p.add(1);
        }
        libc::if_freenameindex(list);
        names
    };
    Ok(names.iter().filter_map(|n| preflight::resolve_interface(n).ok()).collect())
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkHeader, NLM_F_DUMP, NLM_F_REQUEST};

    use super::*;

    fn message(payload: RouteNetlinkMessage) -> Vec<u8> {
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(payload));
        packet.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        buf
    }

    fn link_message(index: u32, name: &str, loopback: bool) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if loopback {
            m.header.flags = LinkFlags::Loopback | LinkFlags::Up;
        }
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m
    }

    #[test]
    fn new_and_deleted_links_are_read_in_order_from_one_datagram() {
        let mut datagram = message(RouteNetlinkMessage::NewLink(link_message(7, "vt0", false)));
        datagram.extend(message(RouteNetlinkMessage::DelLink(link_message(3, "vt1", false))));
        datagram.extend(message(RouteNetlinkMessage::NewLink(link_message(1, "lo", true))));
        // A link message without a name says nothing we can use.
        datagram.extend(message(RouteNetlinkMessage::NewLink(LinkMessage::default())));
        let mut links = Vec::new();
        parse(&datagram, &mut links).unwrap();
        assert_eq!(
            links,
            [
                Link::Present(Interface { name: "vt0".into(), index: 7, loopback: false }),
                Link::Deleted { index: 3, name: "vt1".into() },
                Link::Present(Interface { name: "lo".into(), index: 1, loopback: true }),
            ]
        );
    }

    #[test]
    fn a_truncated_message_is_an_error() {
        let datagram = message(RouteNetlinkMessage::NewLink(link_message(7, "vt0", false)));
        let mut links = Vec::new();
        assert!(parse(&datagram[..datagram.len() - 9], &mut links).is_err());
    }

    #[test]
    fn loopback_is_present() {
        assert!(present().unwrap().iter().any(|i| i.name == "lo" && i.loopback), "every namespace has lo");
    }
}
