//! Parser test vectors. Well-formed frames are built with etherparse (an
//! independent implementation); malformed ones are made by editing bytes.

use super::*;
use etherparse::{PacketBuilder, TcpOptionElement};
use proptest::prelude::*;

const C4: [u8; 4] = [198, 18, 0, 1];
const S4: [u8; 4] = [198, 18, 0, 2];
const C6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const S6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn v4_syn_with_options() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(C4, S4, 64)
        .tcp(43210, 80, 1_000, 64240)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(111, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

fn v4_data(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(C4, S4, 64).tcp(43210, 80, 5_000, 502).ack(9_000).psh();
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn v6_data(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(C6, S6, 64).tcp(43210, 443, 7, 100).ack(8);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// Insert IPv6 extension headers after the fixed header, fixing next-header
/// chaining and the payload length. Each entry is (header type, body bytes
/// after the 2-byte next/len prefix, total length a multiple of 8).
fn with_v6_ext(frame: &[u8], exts: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let l3 = ETH_HLEN;
    let mut out = frame[..l3 + 40].to_vec();
    let first_next = out[l3 + 6];
    let mut chain = Vec::new();
    for (i, (_, body)) in exts.iter().enumerate() {
        let next = exts.get(i + 1).map(|e| e.0).unwrap_or(first_next);
        chain.push(next);
        chain.extend_from_slice(body);
    }
    // Patch each header's second byte (length) where it is a generic ext header.
    let mut at = 0;
    for (ty, body) in exts {
        let total = 1 + body.len();
        if *ty != 44 && *ty != 51 {
            chain[at + 1] = (total / 8 - 1) as u8;
        }
        at += total;
    }
    out[l3 + 6] = exts[0].0;
    let payload = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) as usize + chain.len();
    out[l3 + 4..l3 + 6].copy_from_slice(&(payload as u16).to_be_bytes());
    out.extend_from_slice(&chain);
    out.extend_from_slice(&frame[l3 + 40..]);
    out
}

/// A generic 8-byte extension header body (length byte patched later).
fn ext8() -> Vec<u8> {
    vec![0, 1, 4, 0, 0, 0, 0] // len placeholder, PadN option
}

fn frag_ext(offset_units: u16, more: bool) -> Vec<u8> {
    let v = (offset_units << 3) | more as u16;
    let b = v.to_be_bytes();
    vec![0, b[0], b[1], 0, 0, 0, 1]
}

#[test]
fn ipv4_syn_with_all_options() {
    let f = v4_syn_with_options();
    let s = parse(f.as_slice()).unwrap();
    assert_eq!(s.family, FAMILY_IPV4);
    assert_eq!(&s.saddr[..4], &C4);
    assert_eq!(&s.daddr[..4], &S4);
    assert_eq!((s.sport, s.dport, s.seq, s.window), (43210, 80, 1000, 64240));
    assert_eq!(s.flags, tcp::SYN);
    assert_eq!(s.payload_len, 0);
    assert_eq!(s.seq_len(), 1);
    assert_eq!(s.mss, 1460);
    assert_eq!(s.wscale, 7);
    assert_eq!((s.ts_val, s.ts_ecr), (111, 0));
    assert_eq!(s.opt_flags, OPT_MSS | OPT_WSCALE | OPT_SACK_PERM | OPT_TIMESTAMP);
    assert_eq!(s.l4_offset as usize, ETH_HLEN + 20);
}

#[test]
fn options_are_ignored_without_syn() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(C4, S4, 64)
        .tcp(1, 2, 3, 4)
        .ack(1)
        .options(&[TcpOptionElement::Timestamp(5, 6)])
        .unwrap();
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    let s = parse(f.as_slice()).unwrap();
    assert_eq!((s.opt_flags, s.wscale), (0, NO_WSCALE));
}

#[test]
fn window_scale_is_clamped_to_14() {
    let mut f = v4_syn_with_options();
    let opts = ETH_HLEN + 20 + 20;
    let ws = (opts..f.len()).find(|&i| f[i] == 3 && f[i + 1] == 3).unwrap();
    f[ws + 2] = 200;
    assert_eq!(parse(f.as_slice()).unwrap().wscale, 14);
}

#[test]
fn malformed_option_length_is_flagged_not_fatal() {
    let mut f = v4_syn_with_options();
    let opts = ETH_HLEN + 20 + 20;
    f[opts + 1] = 0; // MSS option with length 0
    let s = parse(f.as_slice()).unwrap();
    assert_ne!(s.opt_flags & OPT_MALFORMED, 0);
    assert_eq!(s.opt_flags & OPT_MSS, 0);
}

#[test]
fn payload_comes_from_ip_length_not_frame_padding() {
    let mut f = v4_data(b"hi");
    f.extend_from_slice(&[0u8; 20]); // Ethernet padding / trailer
    let s = parse(f.as_slice()).unwrap();
    assert_eq!(s.payload_len, 2);
    assert_eq!(s.ip_len, 20 + 20 + 2);
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let f = v4_data(b"abc");
    // Rebuild with 8 bytes of IP options (NOPs then EOL): IHL 7.
    let mut g = f[..ETH_HLEN + 20].to_vec();
    g.extend_from_slice(&[1, 1, 1, 1, 1, 1, 1, 0]);
    g.extend_from_slice(&f[ETH_HLEN + 20..]);
    g[ETH_HLEN] = 0x47;
    let total = u16::from_be_bytes([g[ETH_HLEN + 2], g[ETH_HLEN + 3]]) + 8;
    g[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&total.to_be_bytes());
    let s = parse(g.as_slice()).unwrap();
    assert_eq!((s.sport, s.dport, s.payload_len), (43210, 80, 3));
    assert_eq!(s.l4_offset as usize, ETH_HLEN + 28);
}

#[test]
fn ipv4_header_length_below_five_is_malformed() {
    let mut f = v4_data(b"");
    f[ETH_HLEN] = 0x44;
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpv4HeaderLength)));
}

#[test]
fn ipv4_total_length_inconsistent_with_frame() {
    let mut f = v4_data(b"xyz");
    f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&1500u16.to_be_bytes());
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpLength)));
    f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpLength)));
    f[ETH_HLEN + 2..ETH_HLEN + 4].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpLength)), "tot_len 0 on a small frame is not BIG TCP");
}

#[test]
fn ipv4_fragments() {
    let mut f = v4_data(b"0123456789");
    f[ETH_HLEN + 6] = 0x00;
    f[ETH_HLEN + 7] = 0x10; // offset 16 units: a non-first fragment
    assert_eq!(parse(f.as_slice()), Err(Skip::NotTcp));
    f[ETH_HLEN + 6] = 0x20; // MF, offset 0: the first fragment
    f[ETH_HLEN + 7] = 0x00;
    let s = parse(f.as_slice()).unwrap();
    assert_ne!(s.seg_flags & SEG_FIRST_FRAGMENT, 0);
}

#[test]
fn other_protocols_are_not_tcp() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(C4, S4, 64).udp(1, 2);
    let mut f = Vec::new();
    b.write(&mut f, b"x").unwrap();
    assert_eq!(parse(f.as_slice()), Err(Skip::NotTcp));
    let mut arp = vec![0u8; 42];
    arp[12] = 0x08;
    arp[13] = 0x06;
    assert_eq!(parse(arp.as_slice()), Err(Skip::NotTcp));
    assert_eq!(parse(&[0u8; 5][..]), Err(Skip::NotTcp), "shorter than Ethernet");
}

#[test]
fn vlan_and_qinq() {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .single_vlan(etherparse::VlanId::try_new(42).unwrap())
        .ipv4(C4, S4, 64)
        .tcp(1000, 2000, 1, 1)
        .ack(1);
    let mut f = Vec::new();
    b.write(&mut f, b"q").unwrap();
    let s = parse(f.as_slice()).unwrap();
    assert_eq!((s.sport, s.payload_len, s.l4_offset as usize), (1000, 1, ETH_HLEN + 4 + 20));

    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .double_vlan(etherparse::VlanId::try_new(1).unwrap(), etherparse::VlanId::try_new(2).unwrap())
        .ipv6(C6, S6, 64)
        .tcp(1000, 2000, 1, 1)
        .ack(1);
    let mut f = Vec::new();
    b.write(&mut f, b"qq").unwrap();
    let s = parse(f.as_slice()).unwrap();
    assert_eq!((s.family, s.payload_len, s.l4_offset as usize), (FAMILY_IPV6, 2, ETH_HLEN + 8 + 40));
}

#[test]
fn ipv6_plain() {
    let f = v6_data(b"hello");
    let s = parse(f.as_slice()).unwrap();
    assert_eq!(s.family, FAMILY_IPV6);
    assert_eq!((s.saddr, s.daddr), (C6, S6));
    assert_eq!((s.sport, s.dport, s.seq, s.ack, s.payload_len), (43210, 443, 7, 8, 5));
    assert_eq!(s.ip_len, 40 + 20 + 5);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let f = v6_data(b"abcd");
    let g = with_v6_ext(&f, &[(0, ext8()), (60, ext8()), (43, ext8())]);
    let s = parse(g.as_slice()).unwrap();
    assert_eq!((s.sport, s.payload_len), (43210, 4));
    assert_eq!(s.l4_offset as usize, ETH_HLEN + 40 + 24);
}

#[test]
fn ipv6_authentication_header() {
    let f = v6_data(b"abcd");
    // AH: payload len field 4 → (4 + 2) * 4 = 24 bytes.
    let mut ah = vec![4u8];
    ah.extend_from_slice(&[0u8; 22]);
    let g = with_v6_ext(&f, &[(51, ah)]);
    let s = parse(g.as_slice()).unwrap();
    assert_eq!(s.l4_offset as usize, ETH_HLEN + 40 + 24);
    assert_eq!(s.payload_len, 4);
}

#[test]
fn ipv6_fragments() {
    let f = v6_data(b"abcd");
    let first = with_v6_ext(&f, &[(44, frag_ext(0, true))]);
    let s = parse(first.as_slice()).unwrap();
    assert_ne!(s.seg_flags & SEG_FIRST_FRAGMENT, 0);
    let later = with_v6_ext(&f, &[(44, frag_ext(3, false))]);
    assert_eq!(parse(later.as_slice()), Err(Skip::NotTcp));
}

#[test]
fn ipv6_unwalked_or_too_many_headers() {
    let f = v6_data(b"");
    let esp = with_v6_ext(&f, &[(50, ext8())]);
    assert_eq!(parse(esp.as_slice()), Err(Skip::NotTcp));
    let many: Vec<(u8, Vec<u8>)> = (0..MAX_IPV6_EXT_HEADERS + 1).map(|_| (60, ext8())).collect();
    let g = with_v6_ext(&f, &many);
    assert_eq!(parse(g.as_slice()), Err(Skip::Malformed(Malformed::TooManyExtensionHeaders)));
}

#[test]
fn ipv6_length_inconsistent_with_frame() {
    let mut f = v6_data(b"abc");
    f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&400u16.to_be_bytes());
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpLength)));
    f[ETH_HLEN + 4..ETH_HLEN + 6].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadTcpDataOffset)), "10 bytes cannot hold a TCP header");
}

#[test]
fn tcp_data_offset_checked() {
    let mut f = v4_data(b"abc");
    let doff = ETH_HLEN + 20 + 12;
    f[doff] = 0x40; // 4 words < 5
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadTcpDataOffset)));
    f[doff] = 0xf0; // 60 bytes > 23 available
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadTcpDataOffset)));
}

#[test]
fn wrong_ip_version_nibble() {
    let mut f = v4_data(b"");
    f[ETH_HLEN] = 0x65;
    assert_eq!(parse(f.as_slice()), Err(Skip::Malformed(Malformed::BadIpVersion)));
}

#[test]
fn every_truncation_is_rejected_without_panic() {
    for f in [v4_syn_with_options(), v4_data(b"payload"), v6_data(b"payload")] {
        for cut in 0..f.len() {
            let r = parse(&f[..cut]);
            assert!(r.is_err(), "a frame cut at {cut} of {} parsed as {r:?}", f.len());
        }
    }
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(bytes.as_slice());
    }

    #[test]
    fn mutated_frames_never_panic(idx in 0usize..120, val in any::<u8>(), which in 0usize..3) {
        let mut f = [v4_syn_with_options(), v4_data(b"xyz"), v6_data(b"xyz")][which].clone();
        let i = idx % f.len();
        f[i] = val;
        if let Ok(s) = parse(f.as_slice()) {
            prop_assert!(s.l4_offset as usize + 20 <= f.len());
            prop_assert!(s.payload_len as usize <= f.len());
        }
    }
}

/// The option area Linux writes on a SYN with its defaults.
fn linux_area(mss: u16, ts_val: u32, ts_ecr: u32, shift: u8) -> Vec<u8> {
    let mut a = vec![2, 4];
    a.extend_from_slice(&mss.to_be_bytes());
    a.extend_from_slice(&[4, 2, 8, 10]);
    a.extend_from_slice(&ts_val.to_be_bytes());
    a.extend_from_slice(&ts_ecr.to_be_bytes());
    a.extend_from_slice(&[1, 3, 3, shift]);
    a
}

/// The walk option by option, as `Packet::walk_options` runs it.
fn walked(area: &[u8], off: usize) -> OptionWalk {
    let mut w = OptionWalk::new(off, area.len() - off);
    area.walk_options(&mut w);
    w
}

#[test]
fn linux_layout_reads_what_the_walk_reads() {
    let area = linux_area(1460, 111, 0, 7);
    let mut w = OptionWalk::new(0, area.len());
    assert!(w.linux_layout(area.as_slice()));
    assert_eq!(w, walked(&area, 0));
    assert_eq!((w.mss, w.wscale, w.ts_val, w.opt_flags), (1460, 7, 111, OPT_MSS | OPT_SACK_PERM | OPT_TIMESTAMP | OPT_WSCALE));
    // The parser takes it for a real SYN built by someone else.
    let seg = parse(v4_syn_with_options().as_slice()).unwrap();
    assert_eq!((seg.mss, seg.wscale, seg.ts_val), (1460, 7, 111));
}

proptest! {
    /// Whenever the fixed-offset read takes an area (Linux's layout, any
    /// values; or any 20 bytes, or Linux's with one byte changed, which it
    /// mostly refuses), it leaves the walk as the walk option by option
    /// does; it always takes Linux's layout; and it never takes an area
    /// of another length.
    #[test]
    fn linux_layout_is_the_walk(
        mss in any::<u16>(), ts_val in any::<u32>(), ts_ecr in any::<u32>(), shift in any::<u8>(),
        junk in proptest::collection::vec(any::<u8>(), 20), at in 0usize..20, byte in any::<u8>(),
        pad in 0usize..4, len in 0usize..41,
    ) {
        let canonical = linux_area(mss, ts_val, ts_ecr, shift);
        let mut changed = canonical.clone();
        changed[at] = byte;
        for area in [canonical.clone(), changed, junk] {
            let mut framed = vec![0u8; pad];
            framed.extend_from_slice(&area);
            let mut w = OptionWalk::new(pad, 20);
            if w.linux_layout(framed.as_slice()) {
                prop_assert_eq!(w, walked(&framed, pad));
            } else {
                prop_assert_eq!(w, OptionWalk::new(pad, 20), "untouched when refused");
            }
        }
        let mut w = OptionWalk::new(0, 20);
        prop_assert!(w.linux_layout(canonical.as_slice()));
        if len != 20 {
            let mut longer = canonical.clone();
            longer.resize(40, 1);
            let mut w = OptionWalk::new(0, len);
            prop_assert!(!w.linux_layout(longer.as_slice()));
        }
    }
}
