//! The fast paths' kernel half. The common frame (Ethernet without VLAN
//! tags, IPv4 without options and not fragmented, TCP flags ACK or
//! ACK|PSH) parsed with one bounds check for all three headers, its
//! established record looked up, and the shared fast path
//! (`tcp_track_common::fast::step`) applied to it (`segment`); a bare RST
//! of the same shape, at XDP, its checksum proven, its established record
//! looked up and judged by the shared logic
//! (`tcp_track_common::fast::reset`), and dropped with its count and event
//! if the RST policy drops it (`reset`). Anything else, or a segment the
//! shared logic refuses, goes on to the full path (`track::observe`, in
//! the program the hook tail-calls), which parses the frame again and
//! changes nothing that this one did not. No scratch slot, no segment
//! summary, and both inline in the hook: no subprogram call (but
//! `advance`'s when a field moves), each of which costs about 9 ns on a
//! CPU whose returns go through a return thunk (BENCHMARKS.md).
//!
//! Where the full path would accept the frame the same way, the values
//! taken here are the ones its parser takes (`parse::parse_into`): the
//! checks below are its checks for this shape of frame, and any frame that
//! fails one is left to it, to be counted as it counts it. IPv6, VLAN
//! tags and IPv4 options take the full path.

use aya_ebpf::{bindings::xdp_md, helpers::bpf_ktime_get_ns};
use tcp_track_common::{
    counters,
    event::FlowEvent,
    fast::{self, Lean},
    flow::{FlowKeyV4, DIR_HI_TO_LO, DIR_LO_TO_HI},
    guard::RST_POLICY_OBSERVE,
    parse::{Packet, ETH_HLEN, ETH_P_IPV4, IPPROTO_TCP},
};

use crate::{
    maps::{all_strict, count, established_v4, EVENTS, RST_POLICY},
    packet::{be16_at, be32_at, DirectPacket},
    track::{now_cheap, submit},
};

/// Ethernet, a 20-byte IPv4 header and the fixed TCP header: the one
/// bounds check of the fast path.
const HEADERS: usize = ETH_HLEN + 20 + 20;
const TCP: usize = ETH_HLEN + 20;

/// Where the headers of a frame the fast paths may take are, and what of
/// them decides which (`common_flags`: `segment`; `reset_flags`: `reset`).
pub struct Headers {
    ip: usize,
    tcp: usize,
    /// The IPv4 total length.
    total: usize,
    /// The TCP header's length.
    doff: usize,
    pub flags: u8,
}

/// The checks of `parse_ipv4` and `parse_tcp` for this shape of frame,
/// with one bounds check for all three headers: IPv4 without options (IHL
/// 5) right after an Ethernet header, a length within the frame (0, BIG
/// TCP's, is left to the full path), not a fragment (the first one's flag
/// is left to it too), TCP, a data offset within the segment. `None`: the
/// full path parses it, and counts it as it counts it. Made once per frame
/// by the hook, inline: the fast path it picks by the flags takes the
/// headers as found here, and every other frame (a SYN or FIN above all)
/// pays these few instructions and no call.
#[inline(always)]
pub fn headers(pkt: &DirectPacket) -> Option<Headers> {
    let eth = pkt.at(0, HEADERS)?;
    let (ip, tcp) = (eth + ETH_HLEN, eth + TCP);
    // SAFETY (each read of this function): inside the headers `at` proved.
    let (ethertype, vihl, total, frag, proto) =
        unsafe { (be16_at(eth + 12), *(ip as *const u8), be16_at(ip + 2) as usize, be16_at(ip + 6), *((ip + 9) as *const u8)) };
    let off_flags = unsafe { be16_at(tcp + 12) };
    let (doff, flags) = (((off_flags >> 12) as usize) * 4, off_flags as u8);
    if ethertype != ETH_P_IPV4
        || vihl != 0x45
        || total < 40
        || total > pkt.frame_len().saturating_sub(ETH_HLEN)
        || frag & 0x3fff != 0
        || proto != IPPROTO_TCP
        || doff < 20
        || doff > total - 20
    {
        return None;
    }
    Some(Headers { ip, tcp, total, doff, flags })
}

/// The canonical key (`flow::direction`, `flow::key_v4`) of a segment from
/// `saddr`:`sport` to `daddr`:`dport` (as read, big-endian): the endpoint
/// whose address bytes, then port, sort first is `lo`. And its direction.
#[inline(always)]
fn key_of(saddr: u32, daddr: u32, sport: u16, dport: u16) -> (FlowKeyV4, u8) {
    if saddr < daddr || (saddr == daddr && sport <= dport) {
        (FlowKeyV4 { lo_addr: saddr.to_be_bytes(), hi_addr: daddr.to_be_bytes(), lo_port: sport, hi_port: dport }, DIR_LO_TO_HI)
    } else {
        (FlowKeyV4 { lo_addr: daddr.to_be_bytes(), hi_addr: saddr.to_be_bytes(), lo_port: dport, hi_port: sport }, DIR_HI_TO_LO)
    }
}

/// The common frame (`headers`, with flags ACK or ACK|PSH) of an
/// established flow, accounted: 1. Anything else: 0, nothing changed, and
/// the caller runs the full path.
///
/// Inline in the hook. It used to be a subprogram, because the full path
/// was inlined after it: inlined too, it took the XDP program past the
/// verifier's million instructions and its 512-byte stack. The full path
/// is now another program, reached by a tail call (`maps::FULL_XDP`), so
/// neither its verifier walk nor its stack grows with this one.
#[inline(always)]
pub fn segment(h: &Headers) -> u32 {
    let &Headers { ip, tcp, total, doff, flags } = h;
    if !all_strict() {
        return 0;
    }
    // SAFETY (each read): inside the headers `headers` proved.
    let (saddr, daddr) = unsafe { (be32_at(ip + 12), be32_at(ip + 16)) };
    let (ports, seq, ack, window) = unsafe { (be32_at(tcp), be32_at(tcp + 4), be32_at(tcp + 8), be16_at(tcp + 14)) };
    let (key, dir) = key_of(saddr, daddr, (ports >> 16) as u16, ports as u16);
    let Some(rec) = established_v4(&key) else { return 0 };
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

/// A bare RST (`headers`, with flags RST or RST|ACK) seen by XDP on `ctx`'s interface, of
/// a flow in the established table, that the RST policy drops
/// (`tcp_track_common::fast::reset`): judged, counted and reported as the
/// full path would, and 1: the caller drops it. Anything else (a RST with
/// options or payload, a bad checksum, a liberal interface anywhere, a
/// flow not in the established table, a RST the policy lets through, the
/// observe policy): 0, nothing changed, and the caller runs the full path.
///
/// Inline in the hook, as `segment` is: a subprogram call would cost the
/// RST about 9 ns more than the common frame.
#[inline(always)]
pub fn reset(h: &Headers, ctx: *const xdp_md) -> u32 {
    let &Headers { ip, tcp, total, doff, flags } = h;
    // No payload and no options: the 20 bytes the checksum below covers
    // are the whole segment.
    if total != 40 || doff != 20 {
        return 0;
    }
    let policy = RST_POLICY.load();
    if policy == RST_POLICY_OBSERVE || !all_strict() {
        return 0;
    }
    // SAFETY (each read): inside the headers `headers` proved.
    let (saddr, daddr) = unsafe { (be32_at(ip + 12), be32_at(ip + 16)) };
    let header = unsafe { [be32_at(tcp), be32_at(tcp + 4), be32_at(tcp + 8), be32_at(tcp + 12), be32_at(tcp + 16)] };
    // XDP sees the frame before the stack checked anything: a RST is
    // called forged only once its checksum holds (a bad one is the full
    // path's to count).
    if !fast::reset_checksum_ok(saddr, daddr, &header) {
        return 0;
    }
    let (key, dir) = key_of(saddr, daddr, (header[0] >> 16) as u16, header[0] as u16);
    let Some(rec) = established_v4(&key) else { return 0 };
    // SAFETY: as in `segment`.
    let rec = unsafe { &mut *rec };
    let seg = Lean { seq: header[1], ack: header[2], payload_len: 0, window: header[3] as u16, flags };
    let Some(out) = fast::reset(rec, &seg, dir, policy) else { return 0 };
    count(counters::TCP_SEGMENTS);
    count(counters::RST_DROPPED);
    // Reserved and filled in place, as `Kernel::event` does. The precise
    // clock, as for every event, read once there is room for one.
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            // SAFETY: no preconditions.
            let now = unsafe { bpf_ktime_get_ns() };
            // SAFETY: the hook's context, valid for this program run.
            let ifindex = unsafe { (*ctx).ingress_ifindex };
            entry.write(fast::reset_event(&seg, &key, dir, rec, &out, now, ifindex));
            submit(entry);
        }
        None => count(counters::EVENTS_LOST),
    }
    1
}
