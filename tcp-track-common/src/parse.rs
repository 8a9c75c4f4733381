//! Frame bytes → [`Segment`], the small summary of a TCP segment that the
//! tracker works on.
//!
//! One implementation for both sides: the parser is generic over [`Packet`],
//! which the host implements for byte slices and the BPF programs implement
//! over the packet both hooks see (direct access with a bounds check on
//! every read; the egress hook first pulls the headers into the linear
//! area). Every offset it computes is bounded by construction (IHL ≤ 60, at
//! most [`MAX_IPV6_EXT_HEADERS`] extension headers, data offset ≤ 60), which
//! keeps the verifier able to follow it, and every read goes through
//! `Packet`'s reads, which fail instead of reading past the frame. Nothing
//! here panics on any input.
//!
//! The TCP checksum, which only wire bytes can prove, is [`checksum`].

use crate::tcp;

pub mod checksum;

/// Read access to a frame. Offsets are from the start of the Ethernet header.
pub trait Packet {
    /// Length of the whole frame in bytes (for a socket buffer, `skb->len`,
    /// which includes non-linear data).
    fn frame_len(&self) -> usize;
    /// The `N` bytes at `offset`, or `None` if the frame is shorter.
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]>;

    /// One byte, and big-endian 16- and 32-bit fields, at `offset`. The
    /// parser reads headers field by field through these; the BPF packet
    /// overrides the wide ones with single loads (without that, LLVM reads a
    /// field at an unaligned packet offset one byte at a time).
    #[inline(always)]
    fn read_u8(&self, offset: usize) -> Option<u8> {
        self.load::<1>(offset).map(|b| b[0])
    }

    #[inline(always)]
    fn read_be16(&self, offset: usize) -> Option<u16> {
        self.load::<2>(offset).map(u16::from_be_bytes)
    }

    #[inline(always)]
    fn read_be32(&self, offset: usize) -> Option<u32> {
        self.load::<4>(offset).map(u32::from_be_bytes)
    }

    /// Sum of the big-endian 16-bit words of the `len` bytes at `offset`
    /// (`len` a multiple of 4, at most [`MAX_SUM16_LEN`]), not yet folded;
    /// `None` when the frame is shorter. For the checksum
    /// ([`checksum::tcp_checksum`], the rule the programs' own
    /// `checksum::control_checksum` is tested against).
    #[inline(always)]
    fn sum16(&self, offset: usize, len: usize) -> Option<u64> {
        sum16_words(self, offset, len)
    }

    /// Drive `walk` over a SYN's option area: call `walk.step(self)` until it
    /// returns false, at most [`MAX_TCP_OPTIONS`] times (each step consumes
    /// at least one byte). The BPF programs override this with `bpf_loop`,
    /// whose callback the verifier checks once instead of once per path.
    #[inline(always)]
    fn walk_options(&self, walk: &mut OptionWalk) {
        for _ in 0..MAX_TCP_OPTIONS {
            if !walk.step(self) {
                break;
            }
        }
    }
}

/// Longest span `Packet::sum16` adds up: a TCP header with options.
pub const MAX_SUM16_LEN: usize = 60;

/// `Packet::sum16` as a bounded loop of 4-byte loads.
#[inline(always)]
pub fn sum16_words<P: Packet + ?Sized>(pkt: &P, offset: usize, len: usize) -> Option<u64> {
    let mut sum = 0u64;
    let mut i = 0;
    while i < MAX_SUM16_LEN / 4 {
        if i * 4 >= len {
            break;
        }
        let w = pkt.read_be32(offset + i * 4)?;
        sum += (w >> 16) as u64 + (w & 0xffff) as u64;
        i += 1;
    }
    Some(sum)
}

impl Packet for [u8] {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.len()
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let end = offset.checked_add(N)?;
        let bytes = self.get(offset..end)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
}

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const IPPROTO_TCP: u8 = 6;

/// VLAN tags skipped before giving up: one for 802.1Q, two for QinQ.
pub const MAX_VLAN_TAGS: usize = 2;
/// IPv6 extension headers walked before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// Longest TCP option area (data offset 15 → 60 − 20 bytes).
pub const MAX_TCP_OPTIONS: usize = 40;

/// Address family of a segment, as stored in keys and events.
pub const FAMILY_IPV4: u8 = 4;
pub const FAMILY_IPV6: u8 = 6;

/// `Segment::wscale` when the SYN carried no window-scale option.
pub const NO_WSCALE: u8 = 0xff;

/// A window-scale shift as TCP uses it: RFC 7323 §2.3 treats a shift
/// above 14 as 14.
#[inline(always)]
pub const fn clamp_wscale(shift: u8) -> u8 {
    if shift > 14 {
        14
    } else {
        shift
    }
}

/// Bits of `Segment::opt_flags`.
pub const OPT_MSS: u8 = 0x01;
pub const OPT_WSCALE: u8 = 0x02;
pub const OPT_SACK_PERM: u8 = 0x04;
pub const OPT_TIMESTAMP: u8 = 0x08;
/// The option area was malformed (bad length); options after it were ignored.
pub const OPT_MALFORMED: u8 = 0x80;

/// Bits of `Segment::seg_flags`.
/// The segment is the first fragment of a fragmented datagram: the TCP header
/// is whole, but `payload_len` only counts the bytes of this fragment.
pub const SEG_FIRST_FRAGMENT: u8 = 0x01;
/// The IP length field was 0 (IPv4 BIG TCP / IPv6 jumbogram on a GSO packet)
/// and the frame length was used instead.
pub const SEG_LENGTH_FROM_FRAME: u8 = 0x02;

/// What the tracker needs to know about one TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// TCP flags byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub flags: u8,
    /// `SEG_*` bits.
    pub seg_flags: u8,
    /// `OPT_*` bits: which options a SYN carried.
    pub opt_flags: u8,
    /// Source and destination address, network byte order; IPv4 uses the first 4 bytes.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// Window field as sent (not scaled).
    pub window: u16,
    /// MSS option (SYN only), 0 when absent.
    pub mss: u16,
    /// Window-scale shift (SYN only, clamped to 14 as RFC 7323 §2.3 says), or [`NO_WSCALE`].
    pub wscale: u8,
    /// TCP payload bytes, from the IP length (never the frame length, which
    /// may include Ethernet padding).
    pub payload_len: u32,
    /// IP datagram length (header + payload), for byte counters.
    pub ip_len: u32,
    /// Offset of the TCP header in the frame.
    pub l4_offset: u16,
    /// TCP header and payload length (from the IP length).
    pub l4_len: u16,
    /// Timestamp option values (SYN only), valid when `OPT_TIMESTAMP` is set.
    pub ts_val: u32,
    pub ts_ecr: u32,
}

impl Segment {
    #[inline(always)]
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Sequence space the segment occupies: payload plus one for SYN and one
    /// for FIN (RFC 9293 §3.4).
    #[inline(always)]
    pub const fn seq_len(&self) -> u32 {
        self.payload_len
            .wrapping_add((self.flags & tcp::SYN != 0) as u32)
            .wrapping_add((self.flags & tcp::FIN != 0) as u32)
    }
}

/// What judging a RST (`state::classify_reset`) and writing an event
/// (`event::FlowEvent::of`) read of a segment: a `Segment` on the full
/// path, the fast paths' `fast::Lean` on theirs. Each read where it is
/// used: in BPF a value carried in a register through the judgement's
/// branches multiplies the states the verifier walks.
pub trait SegmentFields {
    fn seq(&self) -> u32;
    fn ack(&self) -> u32;
    /// TCP flags byte.
    fn flags(&self) -> u8;
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    fn family(&self) -> u8;
    #[inline(always)]
    fn has_ack(&self) -> bool {
        self.flags() & tcp::ACK != 0
    }
}

impl SegmentFields for Segment {
    #[inline(always)]
    fn seq(&self) -> u32 {
        self.seq
    }
    #[inline(always)]
    fn ack(&self) -> u32 {
        self.ack
    }
    #[inline(always)]
    fn flags(&self) -> u8 {
        self.flags
    }
    #[inline(always)]
    fn family(&self) -> u8 {
        self.family
    }
}

/// Why a frame was not handed to the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not TCP: another ethertype or protocol, a non-first fragment, an IPv6
    /// header chain we do not walk (ESP, no-next-header, unknown).
    NotTcp,
    /// Claimed to be IP/TCP but cannot be.
    Malformed(Malformed),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Malformed {
    /// The frame ends inside a header.
    Truncated = 1,
    /// IPv4 version nibble is not 4 / IPv6 version nibble is not 6.
    BadIpVersion = 2,
    /// IPv4 IHL < 5.
    BadIpv4HeaderLength = 3,
    /// IP length shorter than its own headers, or longer than the frame.
    BadIpLength = 4,
    /// More IPv6 extension headers than [`MAX_IPV6_EXT_HEADERS`].
    TooManyExtensionHeaders = 5,
    /// TCP data offset < 5, or beyond the end of the IP payload.
    BadTcpDataOffset = 6,
}

/// Parse one frame, starting at its Ethernet header.
#[inline(always)]
pub fn parse<P: Packet + ?Sized>(pkt: &P) -> Result<Segment, Skip> {
    let mut seg = Segment::default();
    parse_into(pkt, &mut seg).map(|()| seg)
}

/// `parse`, writing the segment in place (in BPF: straight into a map
/// value, with no copy through the stack). On error `seg` holds a partial
/// summary that means nothing.
#[inline(always)]
pub fn parse_into<P: Packet + ?Sized>(pkt: &P, seg: &mut Segment) -> Result<(), Skip> {
    let (ethertype, l3) = parse_ethernet(pkt)?;
    *seg = Segment { wscale: NO_WSCALE, ..Segment::default() };
    let (l4, l4_len) = match ethertype {
        ETH_P_IPV4 => parse_ipv4(pkt, l3, seg)?,
        ETH_P_IPV6 => parse_ipv6(pkt, l3, seg)?,
        _ => return Err(Skip::NotTcp),
    };
    parse_tcp(pkt, l4, l4_len, seg)
}

/// Whether the frame holds `len` bytes at `offset` (`len` > 0).
#[inline(always)]
fn holds<P: Packet + ?Sized>(pkt: &P, offset: usize, len: usize) -> bool {
    pkt.read_u8(offset + len - 1).is_some()
}

#[inline(always)]
fn truncated() -> Skip {
    Skip::Malformed(Malformed::Truncated)
}

/// The address family (`FAMILY_*`) a frame's parse will find, from its
/// Ethernet header alone: IPv6 if the ethertype past any VLAN tags says so,
/// else IPv4 (also for what is neither: its parse says what it is). The
/// kernel hooks pick each family's full path by it.
#[inline(always)]
pub fn frame_family<P: Packet + ?Sized>(pkt: &P) -> u8 {
    match parse_ethernet(pkt) {
        Ok((ETH_P_IPV6, _)) => FAMILY_IPV6,
        _ => FAMILY_IPV4,
    }
}

/// Ethernet, skipping up to two VLAN tags (802.1Q, 802.1ad QinQ).
/// Returns the inner ethertype and the offset of the L3 header.
#[inline(always)]
fn parse_ethernet<P: Packet + ?Sized>(pkt: &P) -> Result<(u16, usize), Skip> {
    if !holds(pkt, 0, ETH_HLEN) {
        return Err(Skip::NotTcp);
    }
    let mut ethertype = pkt.read_be16(12).ok_or(Skip::NotTcp)?;
    let mut off = ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // A tag is TCI (2 bytes) then the next ethertype (2 bytes).
        ethertype = pkt.read_be16(off + 2).ok_or_else(truncated)?;
        off += 4;
    }
    Ok((ethertype, off))
}

/// IPv4 with options (RFC 791). Returns (offset of TCP header, TCP length).
#[inline(always)]
fn parse_ipv4<P: Packet + ?Sized>(pkt: &P, l3: usize, seg: &mut Segment) -> Result<(usize, usize), Skip> {
    if !holds(pkt, l3, 20) {
        return Err(truncated());
    }
    let vihl = pkt.read_u8(l3).ok_or_else(truncated)?;
    if vihl >> 4 != 4 {
        return Err(Skip::Malformed(Malformed::BadIpVersion));
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Skip::Malformed(Malformed::BadIpv4HeaderLength));
    }
    let frame_l3 = pkt.frame_len().saturating_sub(l3);
    let mut total = pkt.read_be16(l3 + 2).ok_or_else(truncated)? as usize;
    if total == 0 {
        // IPv4 BIG TCP: GSO packets over 64 KiB carry tot_len 0 and the
        // length lives in the skb (Linux 6.3+). Only trust it on a frame
        // large enough to be one.
        if frame_l3 <= 0xffff {
            return Err(Skip::Malformed(Malformed::BadIpLength));
        }
        total = frame_l3;
        seg.seg_flags |= SEG_LENGTH_FROM_FRAME;
    }
    if total < ihl || total > frame_l3 {
        return Err(Skip::Malformed(Malformed::BadIpLength));
    }
    let frag = pkt.read_be16(l3 + 6).ok_or_else(truncated)?;
    if frag & 0x1fff != 0 {
        // A non-first fragment carries no TCP header, only payload bytes.
        return Err(Skip::NotTcp);
    }
    if frag & 0x2000 != 0 {
        seg.seg_flags |= SEG_FIRST_FRAGMENT;
    }
    if pkt.read_u8(l3 + 9) != Some(IPPROTO_TCP) {
        return Err(Skip::NotTcp);
    }
    seg.family = FAMILY_IPV4;
    seg.saddr[..4].copy_from_slice(&pkt.read_be32(l3 + 12).ok_or_else(truncated)?.to_be_bytes());
    seg.daddr[..4].copy_from_slice(&pkt.read_be32(l3 + 16).ok_or_else(truncated)?.to_be_bytes());
    seg.ip_len = total as u32;
    Ok((l3 + ihl, total - ihl))
}

/// IPv6 (RFC 8200) with an allow-listed, bounded walk over extension headers.
#[inline(always)]
fn parse_ipv6<P: Packet + ?Sized>(pkt: &P, l3: usize, seg: &mut Segment) -> Result<(usize, usize), Skip> {
    // Fixed header in pieces: version..hop limit, then the two addresses
    // straight into the segment (keeps the BPF stack small).
    if !holds(pkt, l3, 40) {
        return Err(truncated());
    }
    if pkt.read_u8(l3).ok_or_else(truncated)? >> 4 != 6 {
        return Err(Skip::Malformed(Malformed::BadIpVersion));
    }
    read_addr(pkt, l3 + 8, &mut seg.saddr)?;
    read_addr(pkt, l3 + 24, &mut seg.daddr)?;
    let frame_l3 = pkt.frame_len().saturating_sub(l3);
    let mut payload = pkt.read_be16(l3 + 4).ok_or_else(truncated)? as usize;
    if payload == 0 {
        // Jumbogram / IPv6 BIG TCP: the real length is in a hop-by-hop
        // option on the wire and in the skb in the kernel; use the frame.
        if frame_l3 <= 40 + 0xffff {
            return Err(Skip::Malformed(Malformed::BadIpLength));
        }
        payload = frame_l3 - 40;
        seg.seg_flags |= SEG_LENGTH_FROM_FRAME;
    }
    if 40 + payload > frame_l3 {
        return Err(Skip::Malformed(Malformed::BadIpLength));
    }
    seg.family = FAMILY_IPV6;
    seg.ip_len = (40 + payload) as u32;

    let mut next = pkt.read_u8(l3 + 6).ok_or_else(truncated)?;
    let mut off = l3 + 40;
    let mut ext_len = 0usize;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            IPPROTO_TCP => break,
            // Hop-by-hop, routing, destination options: length in 8-octet units, not counting the first 8.
            0 | 43 | 60 => {
                let e = pkt.read_be16(off).ok_or_else(truncated)?;
                next = (e >> 8) as u8;
                ((e & 0xff) as usize + 1) * 8
            }
            // Fragment header: fixed 8 bytes. Only the first fragment has a TCP header.
            44 => {
                let e = pkt.read_be32(off).ok_or_else(truncated)?;
                if e & 0xfff8 != 0 {
                    return Err(Skip::NotTcp);
                }
                if e & 1 != 0 {
                    seg.seg_flags |= SEG_FIRST_FRAGMENT;
                }
                next = (e >> 24) as u8;
                8
            }
            // Authentication header (RFC 4302): length in 4-octet units, minus 2.
            51 => {
                let e = pkt.read_be16(off).ok_or_else(truncated)?;
                next = (e >> 8) as u8;
                ((e & 0xff) as usize + 2) * 4
            }
            // ESP, no next header, mobility, unknown: not something we look into.
            _ => return Err(Skip::NotTcp),
        };
        off += len;
        ext_len += len;
        if ext_len > payload {
            return Err(Skip::Malformed(Malformed::BadIpLength));
        }
    }
    if next != IPPROTO_TCP {
        return Err(Skip::Malformed(Malformed::TooManyExtensionHeaders));
    }
    Ok((off, payload - ext_len))
}

/// An IPv6 address, four 32-bit loads.
#[inline(always)]
fn read_addr<P: Packet + ?Sized>(pkt: &P, off: usize, out: &mut [u8; 16]) -> Result<(), Skip> {
    let mut i = 0;
    while i < 4 {
        let w = pkt.read_be32(off + 4 * i).ok_or_else(truncated)?.to_be_bytes();
        out[4 * i..4 * i + 4].copy_from_slice(&w);
        i += 1;
    }
    Ok(())
}

/// The TCP header (RFC 9293 §3.1); options only on SYN segments.
#[inline(always)]
fn parse_tcp<P: Packet + ?Sized>(pkt: &P, l4: usize, l4_len: usize, seg: &mut Segment) -> Result<(), Skip> {
    if l4_len < 20 {
        return Err(Skip::Malformed(Malformed::BadTcpDataOffset));
    }
    if !holds(pkt, l4, 20) {
        return Err(truncated());
    }
    // Data offset and flags in one 16-bit word.
    let off_flags = pkt.read_be16(l4 + 12).ok_or_else(truncated)?;
    let doff = ((off_flags >> 12) as usize) * 4;
    if doff < 20 || doff > l4_len {
        return Err(Skip::Malformed(Malformed::BadTcpDataOffset));
    }
    let ports = pkt.read_be32(l4).ok_or_else(truncated)?;
    seg.sport = (ports >> 16) as u16;
    seg.dport = ports as u16;
    seg.seq = pkt.read_be32(l4 + 4).ok_or_else(truncated)?;
    seg.ack = pkt.read_be32(l4 + 8).ok_or_else(truncated)?;
    seg.flags = off_flags as u8;
    seg.window = pkt.read_be16(l4 + 14).ok_or_else(truncated)?;
    seg.payload_len = (l4_len - doff) as u32;
    seg.l4_offset = l4 as u16;
    seg.l4_len = if l4_len > 0xffff { 0xffff } else { l4_len as u16 };
    if seg.flags & tcp::SYN != 0 && doff > 20 {
        parse_syn_options(pkt, l4 + 20, doff - 20, seg);
    }
    Ok(())
}

/// TCP options of a SYN or SYN-ACK (RFC 9293 §3.2, RFC 7323, RFC 2018).
///
/// Inlined into the parser (in BPF, `track::parse_frame`'s subprogram,
/// whose frame is not on the deepest call chain): a subprogram of its own
/// cost every SYN and SYN-ACK a call, about 9 ns on a CPU whose returns go
/// through a return thunk.
#[inline(always)]
fn parse_syn_options<P: Packet + ?Sized>(pkt: &P, off: usize, len: usize, seg: &mut Segment) {
    let mut walk = OptionWalk::new(off, len);
    // The layout of nearly every SYN and SYN-ACK read at fixed offsets; any
    // other walked option by option (in BPF a `bpf_loop` callback call each,
    // about 9 ns apiece on a CPU whose returns go through a return thunk).
    if !walk.linux_layout(pkt) {
        pkt.walk_options(&mut walk);
    }
    seg.opt_flags = walk.opt_flags;
    seg.mss = walk.mss;
    seg.wscale = walk.wscale;
    seg.ts_val = walk.ts_val;
    seg.ts_ecr = walk.ts_ecr;
}

/// A walk over the option area of a SYN, one option per [`OptionWalk::step`].
///
/// Kept as explicit state rather than a plain loop because the BPF verifier
/// cannot follow a data-dependent walk: every sequence of option lengths
/// becomes a distinct state and a 40-byte area exhausts its 1M-instruction
/// budget. In BPF the steps run under `bpf_loop`, as the kernel's own
/// xdp_synproxy does for the same reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct OptionWalk {
    /// Offset of the option area in the frame, and its length.
    pub off: usize,
    pub len: usize,
    /// Bytes of the area consumed so far.
    pub cursor: usize,
    pub mss: u16,
    pub wscale: u8,
    pub opt_flags: u8,
    pub ts_val: u32,
    pub ts_ecr: u32,
}

impl OptionWalk {
    #[inline(always)]
    pub fn new(off: usize, len: usize) -> Self {
        let len = if len > MAX_TCP_OPTIONS { MAX_TCP_OPTIONS } else { len };
        OptionWalk { off, len, wscale: NO_WSCALE, ..Default::default() }
    }

    /// The option area Linux writes on a SYN or SYN-ACK with SACK,
    /// timestamps and window scaling on, its defaults (`tcp_options_write`:
    /// MSS; SACK-permitted and timestamps as one word; NOP; window scale;
    /// 20 bytes), read at fixed offsets with five loads: true, and the walk
    /// is where [`OptionWalk::step`] would have left it over the same bytes
    /// (a property test holds it to that). False, and the walk untouched,
    /// for any other area: it is walked option by option.
    #[inline(always)]
    pub fn linux_layout<P: Packet + ?Sized>(&mut self, pkt: &P) -> bool {
        if self.len != 20 || self.cursor != 0 {
            return false;
        }
        let at = self.off;
        let (Some(mss), Some(sack_ts), Some(ts_val), Some(ts_ecr), Some(nop_ws)) =
            (pkt.read_be32(at), pkt.read_be32(at + 4), pkt.read_be32(at + 8), pkt.read_be32(at + 12), pkt.read_be32(at + 16))
        else {
            return false;
        };
        // 02 04 m m | 04 02 08 0a | tsval | tsecr | 01 03 03 s
        if mss >> 16 != 0x0204 || sack_ts != 0x0402_080a || nop_ws >> 8 != 0x01_0303 {
            return false;
        }
        let shift = nop_ws as u8;
        self.mss = mss as u16;
        self.wscale = clamp_wscale(shift);
        self.ts_val = ts_val;
        self.ts_ecr = ts_ecr;
        self.opt_flags |= OPT_MSS | OPT_SACK_PERM | OPT_TIMESTAMP | OPT_WSCALE;
        self.cursor = 20;
        true
    }

    /// Read one option. Returns false when the walk is over (end of list,
    /// end of area, or a malformed option, which is flagged and ends the
    /// walk as it does in Linux rather than rejecting the segment).
    #[inline(always)]
    pub fn step<P: Packet + ?Sized>(&mut self, pkt: &P) -> bool {
        let i = self.cursor;
        if i >= self.len || i >= MAX_TCP_OPTIONS {
            return false;
        }
        let at = self.off + i;
        let Some(kind) = pkt.read_u8(at) else {
            self.opt_flags |= OPT_MALFORMED;
            return false;
        };
        match kind {
            0 => return false, // end of option list
            1 => {
                self.cursor = i + 1; // no-operation
                return true;
            }
            _ => {}
        }
        let Some(olen) = pkt.read_u8(at + 1) else {
            self.opt_flags |= OPT_MALFORMED;
            return false;
        };
        let olen = olen as usize;
        if olen < 2 || i + olen > self.len {
            self.opt_flags |= OPT_MALFORMED;
            return false;
        }
        match (kind, olen) {
            (2, 4) => {
                if let Some(v) = pkt.read_be16(at + 2) {
                    self.mss = v;
                    self.opt_flags |= OPT_MSS;
                }
            }
            (3, 3) => {
                if let Some(shift) = pkt.read_u8(at + 2) {
                    self.wscale = clamp_wscale(shift);
                    self.opt_flags |= OPT_WSCALE;
                }
            }
            (4, 2) => self.opt_flags |= OPT_SACK_PERM,
            (8, 10) => {
                if let (Some(v), Some(e)) = (pkt.read_be32(at + 2), pkt.read_be32(at + 6)) {
                    self.ts_val = v;
                    self.ts_ecr = e;
                    self.opt_flags |= OPT_TIMESTAMP;
                }
            }
            _ => {}
        }
        self.cursor = i + olen;
        true
    }
}

#[cfg(test)]
mod tests;
