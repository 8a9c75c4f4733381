//! Flow keys and the per-flow record stored in the flow maps.
//!
//! One entry per connection: the key is canonical (the lower (address, port)
//! endpoint first), so the XDP ingress program and the TC egress program, which
//! see opposite directions of the same connection, update the same entry. The
//! record remembers which endpoint initiated the connection.
//!
//! IPv4 and IPv6 flows live in separate maps so that an IPv4 entry does not pay
//! for a 36-byte key.

use bytemuck::{Pod, Zeroable};

use crate::parse::{Segment, FAMILY_IPV4};
use crate::tcp;

/// Direction of a segment relative to the canonical key.
/// `DIR_LO_TO_HI`: sent by the `lo` endpoint of the key.
pub const DIR_LO_TO_HI: u8 = 0;
pub const DIR_HI_TO_LO: u8 = 1;

/// `FlowRecord::origin`: how the tracker came to know the flow.
/// The first segment seen was a SYN: the initiator is certain.
pub const ORIGIN_SYN: u8 = 0;
/// The first segment seen was a SYN-ACK: its receiver is the initiator.
pub const ORIGIN_SYN_ACK: u8 = 1;
/// Picked up mid-stream (the tracker started after the handshake): the
/// initiator is a guess (the endpoint with the higher port is the client).
pub const ORIGIN_MIDSTREAM: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKeyV4 {
    pub lo_addr: [u8; 4],
    pub hi_addr: [u8; 4],
    pub lo_port: u16,
    pub hi_port: u16,
}
const _: () = assert!(core::mem::size_of::<FlowKeyV4>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowKeyV6 {
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
}
const _: () = assert!(core::mem::size_of::<FlowKeyV6>() == 36);

/// The two endpoints of a segment in canonical order, and the segment's
/// direction in that order. Addresses are 16 bytes; IPv4 uses the first 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canonical {
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
    pub dir: u8,
}

impl Canonical {
    /// Order the endpoints by (address bytes, port).
    #[inline(always)]
    pub fn of(seg: &Segment) -> Self {
        let src_first = endpoint_le(&seg.saddr, seg.sport, &seg.daddr, seg.dport);
        if src_first {
            Canonical { lo_addr: seg.saddr, hi_addr: seg.daddr, lo_port: seg.sport, hi_port: seg.dport, dir: DIR_LO_TO_HI }
        } else {
            Canonical { lo_addr: seg.daddr, hi_addr: seg.saddr, lo_port: seg.dport, hi_port: seg.sport, dir: DIR_HI_TO_LO }
        }
    }

    #[inline(always)]
    pub fn key_v4(&self) -> FlowKeyV4 {
        FlowKeyV4 {
            lo_addr: [self.lo_addr[0], self.lo_addr[1], self.lo_addr[2], self.lo_addr[3]],
            hi_addr: [self.hi_addr[0], self.hi_addr[1], self.hi_addr[2], self.hi_addr[3]],
            lo_port: self.lo_port,
            hi_port: self.hi_port,
        }
    }

    #[inline(always)]
    pub fn key_v6(&self) -> FlowKeyV6 {
        FlowKeyV6 { lo_addr: self.lo_addr, hi_addr: self.hi_addr, lo_port: self.lo_port, hi_port: self.hi_port }
    }
}

/// `(a, ap) <= (b, bp)` comparing address bytes in network order, then ports.
/// A loop over bytes rather than slice comparison: it must compile to plain
/// BPF without memcmp.
#[inline(always)]
fn endpoint_le(a: &[u8; 16], ap: u16, b: &[u8; 16], bp: u16) -> bool {
    let mut i = 0;
    while i < 16 {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    ap <= bp
}

/// Per-flow record (the value of the flow maps).
///
/// Counters are indexed by direction (`DIR_LO_TO_HI`, `DIR_HI_TO_LO`) and are
/// updated with atomic adds, because ingress and egress run on different CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowRecord {
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// TCP flags seen, OR-ed over the flow, per direction. Each byte is only
    /// written by segments of its own direction.
    pub flags_seen: [u8; 2],
    /// Direction (`DIR_*`) whose sender is the initiator (client).
    pub initiator: u8,
    /// `ORIGIN_*`.
    pub origin: u8,
    /// Address family: 4 or 6.
    pub family: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowRecord>() == 56);

impl FlowRecord {
    /// A record for a flow whose first seen segment is `seg`, sent in `dir`.
    #[inline(always)]
    pub fn first(seg: &Segment, canon: &Canonical, now_ns: u64) -> Self {
        let (initiator, origin) = initiator_of(seg, canon);
        FlowRecord {
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            packets: [0; 2],
            bytes: [0; 2],
            flags_seen: [0; 2],
            initiator,
            origin,
            family: seg.family,
            _pad: [0; 3],
        }
    }

    /// Flags seen in one direction.
    #[inline(always)]
    pub const fn flags_in(&self, dir: u8) -> u8 {
        self.flags_seen[(dir & 1) as usize]
    }
}

/// Who started the connection, judged from the first segment seen.
#[inline(always)]
fn initiator_of(seg: &Segment, canon: &Canonical) -> (u8, u8) {
    let other = canon.dir ^ 1;
    if seg.has(tcp::SYN) && !seg.has(tcp::ACK) {
        (canon.dir, ORIGIN_SYN)
    } else if seg.has(tcp::SYN) {
        (other, ORIGIN_SYN_ACK)
    } else {
        // Mid-stream: servers listen on the lower port far more often than not.
        let lo_is_client = canon.lo_port > canon.hi_port;
        (if lo_is_client { DIR_LO_TO_HI } else { DIR_HI_TO_LO }, ORIGIN_MIDSTREAM)
    }
}

/// Whether `family` is IPv4 (else IPv6).
#[inline(always)]
pub const fn is_v4(family: u8) -> bool {
    family == FAMILY_IPV4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::FAMILY_IPV6;

    fn seg(saddr: [u8; 4], sport: u16, daddr: [u8; 4], dport: u16, flags: u8) -> Segment {
        let mut s = Segment { family: FAMILY_IPV4, sport, dport, flags, ..Default::default() };
        s.saddr[..4].copy_from_slice(&saddr);
        s.daddr[..4].copy_from_slice(&daddr);
        s
    }

    #[test]
    fn both_directions_share_one_key() {
        let a = seg([198, 18, 0, 2], 40000, [198, 18, 0, 1], 80, tcp::SYN);
        let b = seg([198, 18, 0, 1], 80, [198, 18, 0, 2], 40000, tcp::SYN | tcp::ACK);
        let (ca, cb) = (Canonical::of(&a), Canonical::of(&b));
        assert_eq!(ca.key_v4(), cb.key_v4());
        assert_ne!(ca.dir, cb.dir);
        assert_eq!(ca.key_v4().lo_addr, [198, 18, 0, 1]);
    }

    #[test]
    fn same_address_orders_by_port() {
        let a = seg([198, 18, 0, 1], 9000, [198, 18, 0, 1], 80, tcp::SYN);
        let c = Canonical::of(&a);
        assert_eq!((c.lo_port, c.hi_port, c.dir), (80, 9000, DIR_HI_TO_LO));
    }

    #[test]
    fn initiator_from_syn_synack_and_midstream() {
        let syn = seg([198, 18, 0, 2], 40000, [198, 18, 0, 1], 80, tcp::SYN);
        let c = Canonical::of(&syn);
        let r = FlowRecord::first(&syn, &c, 5);
        assert_eq!((r.initiator, r.origin), (c.dir, ORIGIN_SYN));

        let synack = seg([198, 18, 0, 1], 80, [198, 18, 0, 2], 40000, tcp::SYN | tcp::ACK);
        let c2 = Canonical::of(&synack);
        let r2 = FlowRecord::first(&synack, &c2, 5);
        assert_eq!((r2.initiator, r2.origin), (c.dir, ORIGIN_SYN_ACK), "the SYN-ACK's receiver is the client");

        let data = seg([198, 18, 0, 1], 80, [198, 18, 0, 2], 40000, tcp::ACK);
        let c3 = Canonical::of(&data);
        let r3 = FlowRecord::first(&data, &c3, 5);
        assert_eq!((r3.initiator, r3.origin), (c.dir, ORIGIN_MIDSTREAM), "guess: the high port is the client");
    }

    #[test]
    fn flags_seen_per_direction() {
        let mut r = FlowRecord { family: FAMILY_IPV6, ..Default::default() };
        r.flags_seen[DIR_HI_TO_LO as usize] |= tcp::FIN | tcp::ACK;
        assert_eq!(r.flags_in(DIR_HI_TO_LO), tcp::FIN | tcp::ACK);
        assert_eq!(r.flags_in(DIR_LO_TO_HI), 0);
    }
}
