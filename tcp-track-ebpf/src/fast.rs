//! The fast path's kernel half: the common frame (Ethernet without VLAN
//! tags, IPv4 without options and not fragmented, TCP flags ACK or
//! ACK|PSH) parsed with one bounds check for all three headers, its
//! established record looked up, and the
//! shared fast path (`tcp_track_common::fast`) applied to it; anything
//! else, or a segment the shared fast path refuses, goes on to the full
//! path (`track::observe`), which parses the frame again and changes
//! nothing that this one did not. No scratch slot, no segment summary, no
//! subprogram but this one (and `advance`'s when a field moves).
//!
//! Where the full path would accept the frame the same way, the values
//! taken here are the ones its parser takes (`parse::parse_into`): the
//! checks below are its checks for this shape of frame, and any frame that
//! fails one is left to it, to be counted as it counts it. IPv6, VLAN
//! tags and IPv4 options take the full path.

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

/// Ethernet, a 20-byte IPv4 header and the fixed TCP header: the one
/// bounds check of the fast path.
const HEADERS: usize = ETH_HLEN + 20 + 20;
const TCP: usize = ETH_HLEN + 20;

/// Whether the frame may be the common one: IPv4 without options (IHL 5)
/// right after an Ethernet header, TCP flags ACK or ACK|PSH. Inline in the
/// hook, without branches but the bounds check, so that every other frame
/// (a SYN, FIN or RST above all, which take the full path) pays a few
/// instructions for the fast path and no call.
#[inline(always)]
pub fn may_be_common(pkt: &DirectPacket) -> bool {
    let Some(eth) = pkt.at(0, HEADERS) else { return false };
    // SAFETY (each read): inside the headers `at` proved.
    let (ethertype, vihl, flags) = unsafe { (be16_at(eth + 12), *((eth + ETH_HLEN) as *const u8), *((eth + TCP + 13) as *const u8)) };
    (ethertype == ETH_P_IPV4) & (vihl == 0x45) & common_flags(flags)
}

/// The common frame of an established flow (`may_be_common`), accounted:
/// 1. Anything else: 0, nothing changed, and the caller runs the full path.
///
/// A subprogram of its own (static, so the verifier sees its result as
/// the constant of each exit): the full path after it is walked once for
/// all the ways this one gives up, not once per way (inlined, the XDP
/// program took the verifier past its million instructions).
#[inline(never)]
pub fn segment(pkt: &DirectPacket) -> u32 {
    // All three headers: one check (IHL 5: `may_be_common`).
    let Some(eth) = pkt.at(0, HEADERS) else { return 0 };
    let (ip, tcp) = (eth + ETH_HLEN, eth + TCP);
    // SAFETY (each read of this function): inside the headers `at` proved.
    let (ethertype, vihl, total, frag, proto) =
        unsafe { (be16_at(eth + 12), *(ip as *const u8), be16_at(ip + 2) as usize, be16_at(ip + 6), *((ip + 9) as *const u8)) };
    let off_flags = unsafe { be16_at(tcp + 12) };
    let (doff, flags) = (((off_flags >> 12) as usize) * 4, off_flags as u8);
    // As `parse_ipv4` and `parse_tcp`: IPv4 (here without options), a
    // length within the frame (0, BIG TCP's, is left to it), not a
    // fragment (the first one's flag is left to it too), TCP, a data
    // offset within the segment.
    if ethertype != ETH_P_IPV4
        || vihl != 0x45
        || total < 40
        || total > pkt.frame_len().saturating_sub(ETH_HLEN)
        || frag & 0x3fff != 0
        || proto != IPPROTO_TCP
        || doff < 20
        || doff > total - 20
        || !common_flags(flags)
    {
        return 0;
    }
    // A liberal interface anywhere: the full path asks which (it is rare).
    match LIBERAL_ANY.get(0) {
        Some(&0) => {}
        _ => return 0,
    }
    let (saddr, daddr) = unsafe { (be32_at(ip + 12), be32_at(ip + 16)) };
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
    let seg = Lean { seq, ack, payload_len: (total - 20 - doff) as u32, window, flags };
    if !fast::step(rec, &seg, dir, now_cheap()) {
        return 0;
    }
    count(counters::TCP_SEGMENTS);
    1
}
