//! Link-layer types a capture can declare, and how each becomes an Ethernet
//! frame for the shared parser (which starts at an Ethernet header, skipping
//! 802.1Q/QinQ tags).
//!
//! Codes are the tcpdump link-type registry's (LINKTYPE_*), as pcap and
//! pcapng files carry them.

use tcp_track_common::parse::{ETH_HLEN, ETH_P_IPV4, ETH_P_IPV6};

use super::frame::Frame;

/// A link type this reader turns into Ethernet frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1): the frame as it is.
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113), Linux cooked capture v1 (`tcpdump -i any`
    /// before libpcap 1.10): a 16-byte header ending with the ethertype.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276), Linux cooked capture v2: a 20-byte header
    /// starting with the ethertype.
    LinuxSll2,
    /// LINKTYPE_RAW (101; also 12 and 14, which some systems wrote for raw
    /// IP): an IPv4 or IPv6 packet, told apart by its version nibble.
    RawIp,
    /// LINKTYPE_IPV4 (228): always IPv4.
    Ipv4,
    /// LINKTYPE_IPV6 (229): always IPv6.
    Ipv6,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108), BSD loopback (macOS
    /// `lo0`): a 4-byte address family whose values differ between systems,
    /// so the IP version nibble decides.
    BsdLoopback,
}

/// What the error message lists as supported.
pub const SUPPORTED: &str = "Ethernet, Linux cooked v1/v2, raw IP, BSD loopback";

/// Linux cooked v1 header length; its protocol field is its last 2 bytes.
const SLL_HLEN: usize = 16;
/// Linux cooked v2 header length; its protocol field is its first 2 bytes.
const SLL2_HLEN: usize = 20;
/// BSD loopback header: the address family, 4 bytes.
const NULL_HLEN: usize = 4;

impl LinkType {
    /// The link type for a registry code (the pcap header's upper bits,
    /// which carry FCS information, are ignored), or `None` when frames of
    /// this type cannot be tracked.
    pub fn from_code(code: u32) -> Option<LinkType> {
        match code & 0x03ff_ffff {
            1 => Some(LinkType::Ethernet),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            101 | 12 | 14 => Some(LinkType::RawIp),
            228 => Some(LinkType::Ipv4),
            229 => Some(LinkType::Ipv6),
            0 | 108 => Some(LinkType::BsdLoopback),
            _ => None,
        }
    }

    /// The Ethernet frame the parser reads for the captured `data` of a
    /// packet `orig_len` bytes long on the wire.
    ///
    /// Ethernet and Linux cooked v1 are handed over in place (the v1 header
    /// ends with the ethertype, so from its third byte on it reads as an
    /// Ethernet header whose addresses nobody looks at); the others are
    /// copied after a synthetic Ethernet header into `scratch`, which is
    /// reused and so stops allocating once it has held the largest packet.
    /// Captured bytes shorter than the link header give an empty frame,
    /// which the parser calls not TCP.
    pub fn frame<'a>(self, data: &'a [u8], orig_len: u32, scratch: &'a mut Vec<u8>) -> Frame<'a> {
        let orig_len = orig_len as usize;
        match self {
            LinkType::Ethernet => Frame::new(data, orig_len),
            LinkType::LinuxSll => match data.get(SLL_HLEN - ETH_HLEN..) {
                Some(frame) if data.len() >= SLL_HLEN => {
                    Frame::new(frame, orig_len.saturating_sub(SLL_HLEN - ETH_HLEN))
                }
                _ => Frame::new(&[], 0),
            },
            LinkType::LinuxSll2 => match data {
                [p0, p1, ..] if data.len() >= SLL2_HLEN => synthetic(
                    u16::from_be_bytes([*p0, *p1]),
                    &data[SLL2_HLEN..],
                    orig_len.saturating_sub(SLL2_HLEN),
                    scratch,
                ),
                _ => Frame::new(&[], 0),
            },
            LinkType::RawIp => synthetic(ip_ethertype(data), data, orig_len, scratch),
            LinkType::Ipv4 => synthetic(ETH_P_IPV4, data, orig_len, scratch),
            LinkType::Ipv6 => synthetic(ETH_P_IPV6, data, orig_len, scratch),
            LinkType::BsdLoopback => match data.get(NULL_HLEN..) {
                Some(ip) => synthetic(ip_ethertype(ip), ip, orig_len.saturating_sub(NULL_HLEN), scratch),
                None => Frame::new(&[], 0),
            },
        }
    }
}

/// The ethertype for an IP packet of unknown version: from its version
/// nibble; 0 (which the parser calls not TCP) when it is neither 4 nor 6.
fn ip_ethertype(ip: &[u8]) -> u16 {
    match ip.first().map(|b| b >> 4) {
        Some(4) => ETH_P_IPV4,
        Some(6) => ETH_P_IPV6,
        _ => 0,
    }
}

/// `payload` after a 14-byte Ethernet header with zero addresses.
fn synthetic<'a>(ethertype: u16, payload: &[u8], payload_wire_len: usize, scratch: &'a mut Vec<u8>) -> Frame<'a> {
    scratch.clear();
    scratch.extend_from_slice(&[0; ETH_HLEN - 2]);
    scratch.extend_from_slice(&ethertype.to_be_bytes());
    scratch.extend_from_slice(payload);
    Frame::new(scratch, payload_wire_len.saturating_add(ETH_HLEN))
}

/// The registry name of a link-type code, for error messages.
pub fn name(code: u32) -> &'static str {
    match code & 0x03ff_ffff {
        0 => "BSD loopback",
        1 => "Ethernet",
        6 => "IEEE 802.5 Token Ring",
        8 => "SLIP",
        9 => "PPP",
        10 => "FDDI",
        12 | 14 | 101 => "raw IP",
        50 => "PPP in HDLC-like framing",
        51 => "PPPoE",
        104 => "Cisco HDLC",
        105 => "IEEE 802.11",
        107 => "Frame Relay",
        108 => "OpenBSD loopback",
        113 => "Linux cooked v1",
        114 => "LocalTalk",
        117 => "OpenBSD pflog",
        119 => "IEEE 802.11 with Prism header",
        122 => "IP over Fibre Channel",
        127 => "IEEE 802.11 with radiotap header",
        138 => "IP over FireWire",
        139 => "MTP2 with pseudo-header",
        143 => "DOCSIS",
        147..=162 => "user-defined",
        163 => "IEEE 802.11 with AVS header",
        187 => "Bluetooth HCI H4",
        189 => "Linux USB",
        192 => "PPI",
        195 => "IEEE 802.15.4 with FCS",
        201 => "Bluetooth HCI H4 with pseudo-header",
        215 => "IEEE 802.15.4 without FCS",
        220 => "Linux USB, memory-mapped",
        227 => "SocketCAN",
        228 => "IPv4",
        229 => "IPv6",
        239 => "Netfilter log",
        249 => "IEEE 802.15.4 TAP",
        253 => "Linux netlink",
        263 => "Bluetooth LE link layer",
        276 => "Linux cooked v2",
        _ => "unknown",
    }
}
