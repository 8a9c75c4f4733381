//! The fast path's kernel half: the common frame (Ethernet without VLAN
//! tags, IPv4 not fragmented, TCP flags ACK or ACK|PSH) parsed with one
//! bounds check per header, its established record looked up, and the
//! shared fast path (`tcp_track_common::fast`) applied to it; anything
//! else, or a segment the shared fast path refuses, goes on to the full
//! path (`track::observe`), which parses the frame again and changes
//! nothing that this one did not. No scratch slot, no segment summary, no
//! subprogram but this one (and `advance`'s when a field moves).
//!
//! Where the full path would accept the frame the same way, the values
//! taken here are the ones its parser takes (`parse::parse_into`): the
//! checks below are its checks for this shape of frame, and any frame that
//! fails one is left to it, to be counted as it counts it. IPv6 and VLAN
//! tags take the full path.

use tcp_track_common::{
    counters,
    fast::{self, common_flags, Lean},
    flow::{FlowKeyV4, DIR_HI_TO_LO, DIR_LO_TO_HI},
    parse::{Packet, ETH_HLEN, ETH_P_IPV4, IPPROTO_TCP},
};

use crate::{
    maps::{count, FLOWS_V4, LIBERAL_ANY},
    packet::{be16_at, be32_at, DirectPacket},
    track::now_cheap,
};

/// The common frame of an established flow, accounted: 1. Anything else:
/// 0, nothing changed, and the caller runs the full path.
///
/// A subprogram of its own (static, so the verifier sees its result as
/// the constant of each exit): the full path after it is walked once for
/// all the ways this one gives up, not once per way.
#[inline(never)]
pub fn segment(pkt: &DirectPacket) -> u32 {
    // A liberal interface anywhere: the full path asks which (it is rare).
    match LIBERAL_ANY.get(0) {
        Some(&0) => {}
        _ => return 0,
    }
    // Ethernet and the fixed IPv4 header: one check.
    let Some(eth) = pkt.at(0, ETH_HLEN + 20) else { return 0 };
    let ip = eth + ETH_HLEN;
    // SAFETY (each read of this block): inside the 34 bytes `at` proved.
    let (ethertype, vihl, total, frag, proto) =
        unsafe { (be16_at(eth + 12), *(ip as *const u8), be16_at(ip + 2) as usize, be16_at(ip + 6), *((ip + 9) as *const u8)) };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    // As `parse_ipv4`: version 4, IHL at least 5 words, a length within
    // the frame (0, BIG TCP's, is left to it), not a fragment (the first
    // one's flag is left to it too), TCP.
    if ethertype != ETH_P_IPV4 || vihl >> 4 != 4 || ihl < 20 || total < ihl || total > pkt.frame_len().saturating_sub(ETH_HLEN) || frag & 0x3fff != 0 || proto != IPPROTO_TCP {
        return 0;
    }
    // SAFETY: inside the 34 bytes, as above.
    let (saddr, daddr) = unsafe { (be32_at(ip + 12), be32_at(ip + 16)) };
    let l4_len = total - ihl;
    // The fixed TCP header: one check.
    let Some(tcp) = pkt.at(ETH_HLEN + ihl, 20) else { return 0 };
    // SAFETY (each read): inside the 20 bytes `at` proved.
    let off_flags = unsafe { be16_at(tcp + 12) };
    let doff = ((off_flags >> 12) as usize) * 4;
    let flags = off_flags as u8;
    // As `parse_tcp`: a data offset within the segment.
    if l4_len < 20 || doff < 20 || doff > l4_len || !common_flags(flags) {
        return 0;
    }
    let (ports, seq, ack, window) = unsafe { (be32_at(tcp), be32_at(tcp + 4), be32_at(tcp + 8), be16_at(tcp + 14)) };
    let (sport, dport) = ((ports >> 16) as u16, ports as u16);
    // The canonical key (`flow::direction`, `flow::key_v4`): the endpoint
    // whose address bytes, then port, sort first is `lo`.
    let (key, dir) = if saddr < daddr || (saddr == daddr && sport <= dport) {
        (FlowKeyV4 { lo_addr: saddr.to_be_bytes(), hi_addr: daddr.to_be_bytes(), lo_port: sport, hi_port: dport }, DIR_LO_TO_HI)
    } else {
        (FlowKeyV4 { lo_addr: daddr.to_be_bytes(), hi_addr: saddr.to_be_bytes(), lo_port: dport, hi_port: sport }, DIR_HI_TO_LO)
    };
    let Some(rec) = FLOWS_V4.get_ptr_mut(&key) else { return 0 };
    // SAFETY: a map value, valid for this program run (RCU); other CPUs
    // may step it meanwhile (see `FlowRecord`).
    let rec = unsafe { &mut *rec };
    let seg = Lean { seq, ack, payload_len: (l4_len - doff) as u32, window, flags };
    if !fast::step(rec, &seg, dir, now_cheap()) {
        return 0;
    }
    count(counters::TCP_SEGMENTS);
    1
}
