//! The TCP checksum of a payload-less segment (RFC 9293 §3.1): what XDP,
//! which sees frames before the stack has validated anything, checks before
//! a SYN, SYN-ACK or FIN may start or change a flow, or a RST change one or
//! be dropped as forged (`track::verified`).

use super::{Packet, Segment, FAMILY_IPV4, IPPROTO_TCP, MAX_SUM16_LEN};

/// `tcp_checksum` results.
pub const CSUM_UNVERIFIED: u8 = 0;
pub const CSUM_OK: u8 = 1;
pub const CSUM_BAD: u8 = 2;

/// Longest TCP segment verified: a header with options and no payload.
/// Resets with payload (rare) are not verified, hence never dropped; nor are
/// SYNs with payload (TCP Fast Open) or FINs carrying data, which are tracked.
const MAX_VERIFIED: usize = MAX_SUM16_LEN;

/// Verify the TCP checksum of a payload-less segment (RFC 9293 §3.1: ones'
/// complement sum over the pseudo-header and the segment). Bounded loop,
/// verifier friendly; `CSUM_UNVERIFIED` when the segment is too long.
#[inline(always)]
pub fn tcp_checksum<P: Packet + ?Sized>(pkt: &P, seg: &Segment) -> u8 {
    let len = seg.l4_len as usize;
    if seg.payload_len != 0 || len > MAX_VERIFIED || !len.is_multiple_of(4) {
        return CSUM_UNVERIFIED;
    }
    let pseudo = pseudo_header_sum(seg, len as u32);
    let base = seg.l4_offset as usize;
    let Some(segment) = pkt.sum16(base, len) else {
        return CSUM_UNVERIFIED;
    };
    if fold(pseudo + segment) == 0xffff {
        return CSUM_OK;
    }
    // A segment from a stack on this machine crossing a virtual device
    // (veth, tun) may still be CHECKSUM_PARTIAL: its checksum field holds
    // only the folded pseudo-header sum, for hardware that never comes.
    // Accepting that form costs nothing against forgers, who can always
    // compute a correct checksum; a frame corrupted on a wire matches it
    // with probability 2^-16.
    match pkt.read_be16(base + 16) {
        Some(c) if c == fold(pseudo) => CSUM_OK,
        _ => CSUM_BAD,
    }
}

#[inline(always)]
fn pseudo_header_sum(seg: &Segment, tcp_len: u32) -> u64 {
    let words = |a: &[u8; 16], n: usize| {
        let mut s = 0u64;
        let mut i = 0;
        while i < n {
            s += u16::from_be_bytes([a[2 * i], a[2 * i + 1]]) as u64;
            i += 1;
        }
        s
    };
    let n = if seg.family == FAMILY_IPV4 { 2 } else { 8 };
    words(&seg.saddr, n) + words(&seg.daddr, n) + IPPROTO_TCP as u64 + tcp_len as u64
}

/// Ones'-complement fold of a sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    // Three folds reduce any sum of up to 2^48 to 16 bits.
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;
    use etherparse::PacketBuilder;

    fn rst(v6: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]);
        let b = if v6 {
            b.ipv6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 64)
        } else {
            b.ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
        };
        let mut out = Vec::new();
        b.tcp(40000, 80, 0xdead_beef, 0).rst().ack(42).write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn correct_checksums_verify_and_damage_is_seen() {
        for v6 in [false, true] {
            let f = rst(v6);
            let seg = parse(f.as_slice()).unwrap();
            assert_eq!(tcp_checksum(f.as_slice(), &seg), CSUM_OK, "v6={v6}");
            let mut g = f.clone();
            let last = g.len() - 1;
            g[last] ^= 0x40; // the urgent pointer
            let seg = parse(g.as_slice()).unwrap();
            assert_eq!(tcp_checksum(g.as_slice(), &seg), CSUM_BAD, "v6={v6}");
        }
    }

    #[test]
    fn partial_checksums_of_local_stacks_are_accepted() {
        for v6 in [false, true] {
            let mut f = rst(v6);
            let seg = parse(f.as_slice()).unwrap();
            let at = seg.l4_offset as usize + 16;
            let partial = fold(pseudo_header_sum(&seg, seg.l4_len as u32));
            f[at..at + 2].copy_from_slice(&partial.to_be_bytes());
            assert_eq!(tcp_checksum(f.as_slice(), &seg), CSUM_OK, "v6={v6}");
            f[at] ^= 1;
            assert_eq!(tcp_checksum(f.as_slice(), &seg), CSUM_BAD, "v6={v6}");
        }
    }

    #[test]
    fn segments_with_payload_are_not_verified() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([1, 2, 3, 4], [5, 6, 7, 8], 64).tcp(1, 2, 3, 4).rst().write(&mut out, b"why").unwrap();
        let seg = parse(out.as_slice()).unwrap();
        assert_eq!(tcp_checksum(out.as_slice(), &seg), CSUM_UNVERIFIED);
    }
}
