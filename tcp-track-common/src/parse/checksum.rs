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
/// The statement of the rule: the tracker computes it as
/// [`control_checksum`], which is tested against this.
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

/// `tcp_checksum`'s answer for every segment the parser produces, as the
/// full path computes it for the control segments it verifies
/// (`track::verified`): the pseudo-header summed from whole 32-bit words,
/// the header (options included) summed as it is read, one 32-bit load per
/// word, its checksum field taken from the word that holds it instead of
/// read again, and no helper call. In BPF this is inline code the JIT
/// turns into a few loads and adds; `tcp_checksum` stays the plain
/// statement of the rule it is tested against (`control_is_tcp_checksum`).
#[inline(always)]
pub fn control_checksum<P: Packet + ?Sized>(pkt: &P, seg: &Segment) -> u8 {
    let len = seg.l4_len as usize;
    // Under 20 bytes is no TCP header (the parser never yields one): left
    // unverified, so that the checksum field is always among the words read.
    if seg.payload_len != 0 || !(20..=MAX_VERIFIED).contains(&len) || !len.is_multiple_of(4) {
        return CSUM_UNVERIFIED;
    }
    let pseudo = pseudo_header_words(seg, len as u32);
    let base = seg.l4_offset as usize;
    let mut sum = 0u64;
    let mut field = 0u16;
    let mut i = 0;
    // Unrolled: a constant bound, one bounds-checked load per word.
    while i < MAX_VERIFIED / 4 {
        if i * 4 >= len {
            break;
        }
        let Some(w) = pkt.read_be32(base + i * 4) else {
            return CSUM_UNVERIFIED;
        };
        if i == 4 {
            // Bytes 16-17: the checksum field.
            field = (w >> 16) as u16;
        }
        sum += halves(w);
        i += 1;
    }
    if holds(pseudo, sum, field) {
        CSUM_OK
    } else {
        CSUM_BAD
    }
}

/// `tcp_checksum`'s rule for a segment whose pseudo-header sums to `pseudo`
/// and whose bytes (its checksum field `field` included) sum to `sum`
/// (unfolded sums of 16-bit words): a correct checksum, or a local stack's
/// CHECKSUM_PARTIAL one (the folded pseudo-header sum alone in the field).
/// For the checksums computed as words are read: `control_checksum`, and
/// the RST fast path's (`fast::reset_checksum_ok`).
#[inline(always)]
pub fn holds(pseudo: u64, sum: u64, field: u16) -> bool {
    fold(pseudo + sum) == 0xffff || field == fold(pseudo)
}

/// A 32-bit word as the sum of its two big-endian 16-bit halves.
#[inline(always)]
pub fn halves(w: u32) -> u64 {
    (w >> 16) as u64 + (w & 0xffff) as u64
}

/// `pseudo_header_sum` from 32-bit words: no loop, a branch on the family.
#[inline(always)]
fn pseudo_header_words(seg: &Segment, tcp_len: u32) -> u64 {
    let word = |a: &[u8; 16], i: usize| halves(u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]));
    let mut sum = word(&seg.saddr, 0) + word(&seg.daddr, 0) + IPPROTO_TCP as u64 + tcp_len as u64;
    if seg.family != FAMILY_IPV4 {
        sum += word(&seg.saddr, 1) + word(&seg.saddr, 2) + word(&seg.saddr, 3);
        sum += word(&seg.daddr, 1) + word(&seg.daddr, 2) + word(&seg.daddr, 3);
    }
    sum
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

    /// A frame with a TCP header of `opts` option bytes (a multiple of 4),
    /// `flags` (`tcp::*`), `payload` bytes, its checksum field then set by
    /// `mode`: 0 correct, 1 a local stack's partial sum, else `value`.
    #[allow(clippy::too_many_arguments)] // the property's inputs, one each
    fn segment(v6: bool, src: [u8; 16], dst: [u8; 16], flags: u8, opts: &[u8], payload: &[u8], mode: u8, value: u16) -> Option<Vec<u8>> {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]);
        let b = if v6 { b.ipv6(src, dst, 64) } else { b.ipv4([src[0], src[1], src[2], src[3]], [dst[0], dst[1], dst[2], dst[3]], 64) };
        let mut b = b.tcp(40000, 80, 0xdead_beef, 502);
        if flags & crate::tcp::SYN != 0 {
            b = b.syn();
        }
        if flags & crate::tcp::FIN != 0 {
            b = b.fin();
        }
        if flags & crate::tcp::RST != 0 {
            b = b.rst();
        }
        if flags & crate::tcp::ACK != 0 {
            b = b.ack(42);
        }
        let b = b.options_raw(opts).ok()?;
        let mut out = Vec::new();
        b.write(&mut out, payload).ok()?;
        let seg = parse(out.as_slice()).ok()?;
        let at = seg.l4_offset as usize + 16;
        match mode {
            0 => {}
            1 => out[at..at + 2].copy_from_slice(&fold(pseudo_header_sum(&seg, seg.l4_len as u32)).to_be_bytes()),
            _ => out[at..at + 2].copy_from_slice(&value.to_be_bytes()),
        }
        Some(out)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, failure_persistence: None, ..Default::default() })]

        /// `control_checksum` answers what `tcp_checksum` answers, for
        /// IPv4 and IPv6 segments with random flags, addresses, options
        /// (0 to 40 bytes), payloads (0 to 3 bytes: never verified), and a
        /// checksum field right, partial, or anything.
        #[test]
        fn control_is_tcp_checksum(
            v6 in proptest::prelude::any::<bool>(),
            src in proptest::prelude::any::<[u8; 16]>(),
            dst in proptest::prelude::any::<[u8; 16]>(),
            flags in proptest::sample::select(vec![crate::tcp::SYN, crate::tcp::SYN | crate::tcp::ACK, crate::tcp::FIN | crate::tcp::ACK, crate::tcp::RST, crate::tcp::RST | crate::tcp::ACK, crate::tcp::ACK]),
            words in 0..=10usize,
            nops in proptest::prelude::any::<bool>(),
            opt_bytes in proptest::prelude::any::<[u8; 40]>(),
            payload in 0..4usize,
            mode in 0..3u8,
            value in proptest::prelude::any::<u16>(),
        ) {
            let opts: Vec<u8> = if nops { vec![1; words * 4] } else { opt_bytes[..words * 4].to_vec() };
            let Some(f) = segment(v6, src, dst, flags, &opts, &b"abc"[..payload], mode, value) else {
                return Ok(());
            };
            let seg = parse(f.as_slice()).unwrap();
            let want = tcp_checksum(f.as_slice(), &seg);
            proptest::prop_assert_eq!(control_checksum(f.as_slice(), &seg), want);
            if payload == 0 && mode < 2 {
                proptest::prop_assert_eq!(want, CSUM_OK);
            }
            // A truncated frame: neither may read past it.
            let cut = &f[..f.len() - 1];
            proptest::prop_assert_eq!(control_checksum(cut, &seg), tcp_checksum(cut, &seg));
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
