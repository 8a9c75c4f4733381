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

use crate::parse::Segment;
#[cfg(test)]
use crate::parse::FAMILY_IPV4;
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

/// Whether a flow of origin `origin` (`ORIGIN_*`, as a record or an event
/// carries it) was picked up mid-stream: its client is a guess, and its
/// windows were learnt from the segments seen.
#[inline(always)]
pub const fn picked_up(origin: u8) -> bool {
    origin == ORIGIN_MIDSTREAM
}

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

/// Direction of a segment in canonical order: `DIR_LO_TO_HI` when its
/// source (address bytes, then port) sorts first.
#[inline(always)]
pub fn direction(seg: &Segment) -> u8 {
    if endpoint_le(&seg.saddr, seg.sport, &seg.daddr, seg.dport) { DIR_LO_TO_HI } else { DIR_HI_TO_LO }
}

/// The `lo` and `hi` endpoints of a segment sent in `dir`: (addr, port) each.
#[inline(always)]
pub fn endpoints(seg: &Segment, dir: u8) -> (&[u8; 16], u16, &[u8; 16], u16) {
    if dir & 1 == DIR_LO_TO_HI {
        (&seg.saddr, seg.sport, &seg.daddr, seg.dport)
    } else {
        (&seg.daddr, seg.dport, &seg.saddr, seg.sport)
    }
}

#[inline(always)]
pub fn key_v4(seg: &Segment, dir: u8) -> FlowKeyV4 {
    let (lo, lo_port, hi, hi_port) = endpoints(seg, dir);
    FlowKeyV4 { lo_addr: [lo[0], lo[1], lo[2], lo[3]], hi_addr: [hi[0], hi[1], hi[2], hi[3]], lo_port, hi_port }
}

#[inline(always)]
pub fn key_v6(seg: &Segment, dir: u8) -> FlowKeyV6 {
    let (lo, lo_port, hi, hi_port) = endpoints(seg, dir);
    FlowKeyV6 { lo_addr: *lo, hi_addr: *hi, lo_port, hi_port }
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

/// What the tracker knows about one direction's sender: nf_conntrack's
/// `ip_ct_tcp_state` (`td_end`, `td_maxend`, `td_maxwin`, `td_maxack`,
/// `td_scale`), plus the initial sequence number and a retransmission count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Peer {
    /// Highest sequence number + length this side has sent (`td_end`).
    pub end: u32,
    /// Right edge of the window the other side offered it: highest
    /// ack + window the other side advertised (`td_maxend`).
    pub maxend: u32,
    /// Largest window this side advertised, scaled (`td_maxwin`); 0 until
    /// this side has been seen.
    pub maxwin: u32,
    /// Highest acknowledgment this side sent (`td_maxack`): what it expects
    /// next, RCV.NXT as far as the wire shows.
    pub maxack: u32,
    /// Initial sequence number (from its SYN), or the first sequence number
    /// seen for a flow picked up mid-stream.
    pub isn: u32,
    /// Window-scale shift applied to this side's windows (0 unless both SYNs
    /// offered the option, RFC 7323 §2.2).
    pub scale: u8,
    /// `PEER_*` bits.
    pub flags: u8,
    /// Retransmissions of its latest SYN, SYN-ACK or data, in a row (saturates at 255).
    pub retrans: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<Peer>() == 24);

/// `Peer::flags`.
/// This side has sent a segment (its window is known).
pub const PEER_SEEN: u8 = 0x01;
/// It sent a SYN (or SYN-ACK).
pub const PEER_SYN: u8 = 0x02;
/// It sent a FIN; `end` is then one past the FIN.
pub const PEER_FIN: u8 = 0x04;
/// It sent a RST.
pub const PEER_RST: u8 = 0x08;
/// Its SYN offered window scaling.
pub const PEER_WSCALE: u8 = 0x10;
/// Its SYN offered SACK.
pub const PEER_SACK_PERM: u8 = 0x20;
/// `maxack` holds an acknowledgment it sent.
pub const PEER_MAXACK_SET: u8 = 0x40;
/// Sequence numbers of this side are not checked: the flow was picked up
/// mid-stream and its window is not known yet (nf_conntrack's be_liberal).
pub const PEER_LIBERAL: u8 = 0x80;

/// Per-flow record (the value of the flow maps): 96 bytes.
///
/// Written by the shared state machine (`state::step`) from both hooks, in
/// place in the map value, with no lock (BPF spin locks are not available
/// in LRU hash maps, the stash, nor in memory-mapped arrays, the sets): two
/// CPUs can step one flow at the same instant. On a
/// host this is ordinary: TC egress sends a socket's data from the
/// application's CPU while its pure ACKs leave from the softirq of the CPU
/// that received the data; bonding, RSS and ECMP can split one direction's
/// ingress over CPUs.
///
/// What judges a RST (`state::classify_reset`) is, of the receiver, `maxack`
/// (what it expects next) and its flags, and of the sender `end` (all it
/// sent) and `maxend` (how far it may go); `track_window` judges segments
/// against `end`, `maxend` and `maxwin`, so a lost advance there can also
/// make later segments look out of window and stop the others advancing.
/// Who writes them, once a flow is past its handshake (`track_window`):
/// - a direction's own segments write its `Peer`'s `end`, `maxack`,
///   `maxwin` (its largest window) and `flags`, and the other `Peer`'s
///   `maxend` (this segment's ack + window) and `maxwin` (grown when the
///   sender goes past its `maxend`);
/// - so each of `end`, `maxack` and `maxend` is written by one direction
///   only, and segments of opposite directions on two CPUs never write the
///   same one of them: each CPU's check-then-write sees only its own
///   writes, and neither can undo the other's;
/// - the same direction on two CPUs can, and did before these updates
///   used a compare-and-swap: both CPUs read `end`, the CPU with the
///   further segment wrote first, the other overwrote it with its nearer
///   `end`; likewise `maxack` and `maxend`. The field then stayed behind
///   what the sender had sent until its next segment, and an exact RST
///   sent in that moment (at the real SND.NXT or RCV.NXT) was judged in
///   window but inexact: with `--drop-invalid-rst` it was dropped, leaving
///   a connection the host believed open. `tcp-track/tests/cpu_race.rs`
///   (two CPUs, the same direction) measured it on that code: 577 of
///   26,640 exact RSTs judged droppable, and in 613 of 6,660 rounds a
///   field behind a value it had held.
///
/// Now `end`, `maxack`, `maxend` and `maxwin` only move forward
/// (`advance`): each write is a compare-and-swap from the value it was
/// judged against, so a field only ever takes a value further than the one
/// it replaces, whatever runs on other CPUs; `maxwin`'s growth from the
/// other direction is an atomic add, so the two directions' writes of it
/// both count. The same test now finds none, in either case.
///
/// Still unlocked, and why that is harmless:
/// - counters (`packets`, `retransmits`, `rst_dropped`, `seq_wraps`,
///   `Peer::retrans`) and timestamps (`last_seen`, `handshake_us`): an
///   update lost between CPUs is lost (the counts are exact for segments
///   that do not reach two CPUs at the same instant); they judge no RST;
/// - `last_end` and the `INFO_LAST_*` bits (nf_conntrack's RST train):
///   "the last segment" has no order across CPUs; a wrong one only loses
///   the extra tolerance of the train, and an exact RST is still exact by
///   `end` and `maxack`;
/// - byte fields (`flags`, `state`, `info`, `side`): BPF has no atomic
///   operation narrower than 32 bits. A read-modify-write of `info` or
///   `flags` from the other direction can, in a window of a few
///   instructions, undo a bit set at the same instant: a closer bit lost
///   makes a later RST towards TIME-WAIT judged as any other (accepted,
///   not dropped), a lost `PEER_MAXACK_SET` or `PEER_SEEN` is set again by
///   that side's next segment, and a `PEER_LIBERAL` kept makes RSTs
///   unjudged (accepted). None makes an exact RST droppable. A lost
///   `PEER_FIN` is worse: the close's last ACK then never counts and the
///   flow stays in LAST_ACK (the 30-minute soak found 45 and then 39 in
///   1.8M closes, while the per-segment path stored `flags` and `info` on
///   every segment, even unchanged). So the state machine stores these
///   bytes only when they change, which leaves the window to the instant
///   of a transition; a lock-free fix of that needs the bits in 32-bit
///   words of their own. Transitions
///   of `state` from both directions at the same instant (a simultaneous
///   close) are not serialized either; the segments that follow repair
///   what the endpoints' own state machines settle;
/// - handshake fields (set while the flow is half-open, `init_syn_sender`,
///   `learn_synack`, and a new incarnation's whole record) are written
///   whole, by the segment that starts that stage.
///
/// Layout (offset: field): 0 `peer` (2 x 24), 48 `last_seen`, 52
/// `last_end`, 56 `packets`, 64 `first_ns`, 72 `handshake_us`, 80
/// `seq_wraps`, 84 `side`, 86 `retransmits`, 90 `rst_dropped`, 92 `state`,
/// 93 `initiator`, 94 `origin`, 95 `info`. With a 12-byte IPv4 key and a
/// few bytes of slot metadata it fits the 128 bytes per flow of a
/// set-associative table.
///
/// Everything from `packets` on is for connection records (`conn`, which
/// derives Zeek's conn.log figures from it). Per-direction arrays are
/// indexed by direction like `peer`; read them with `pair`/`pair_mut`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowRecord {
    /// Indexed by direction: `peer[DIR_LO_TO_HI]` describes the `lo` endpoint as a sender.
    pub peer: [Peer; 2],
    /// Time of the last segment, in units of 2^20 ns (about 1 ms), wrapping
    /// every 52 days: compare with wrapping arithmetic.
    pub last_seen: u32,
    /// End (seq + length) of the last segment, and, in `info`, its direction
    /// and whether it was a plain ACK: for nf_conntrack's "RST train".
    pub last_end: u32,
    /// Segments each direction sent, as the hooks saw them (wrapping at
    /// 2^32): every segment that reached the state machine, including the
    /// ones it rejected (out of window, invalid flags), not the RSTs a drop
    /// rule dropped before (those are in `rst_dropped`). At TC egress a
    /// GSO/TSO send is one segment, as `tcpdump` on that host shows it.
    pub packets: [u32; 2],
    /// Time of the first segment of this incarnation, in ns of the clock the
    /// caller passes to `step` (the kernel: CLOCK_MONOTONIC, never 0 on a
    /// running system). 0 until a segment started the flow.
    pub first_ns: u64,
    /// Handshake timing, per direction: the time from that side's latest
    /// SYN (client) or SYN-ACK (server) before the answer to the answer (the
    /// server's SYN-ACK, the client's ACK completing the handshake), in
    /// microseconds, once `SIDE_ANSWERED` is set in `side`; before that,
    /// the time of that latest SYN or SYN-ACK in microseconds, wrapping (a
    /// 32-bit microsecond clock: intervals up to 71 minutes).
    pub handshake_us: [u32; 2],
    /// How many times the sequence-space span behind a direction's byte count
    /// (`conn::payload_bytes`) wrapped past 2^32, wrapping at 2^16: exact
    /// byte counts to 256 TiB a direction.
    pub seq_wraps: [u16; 2],
    /// `SIDE_*` bits of each direction's sender: its endpoint state as Zeek
    /// would have it, and the bookkeeping of the byte and handshake figures.
    pub side: [u8; 2],
    /// Retransmissions each direction sent (SYN, SYN-ACK, data or FIN sent
    /// again), in all; saturates at 65,535. `Peer::retrans` counts in a row.
    pub retransmits: [u16; 2],
    /// RSTs on this flow that a drop rule dropped in XDP, before the state
    /// machine saw them (`note_dropped_rst`); saturates at 65,535.
    pub rst_dropped: u16,
    /// `state::STATE_*`. These four bytes come last: a new record is built
    /// from them and zeroes, which is then one zeroing of what precedes them.
    pub state: u8,
    /// Direction (`DIR_*`) whose sender is the initiator (client).
    pub initiator: u8,
    /// `ORIGIN_*`.
    pub origin: u8,
    /// `INFO_*` bits.
    pub info: u8,
}
const _: () = assert!(core::mem::size_of::<FlowRecord>() == 96);
const _: () = assert!(core::mem::offset_of!(FlowRecord, packets) == 56);
const _: () = assert!(core::mem::offset_of!(FlowRecord, first_ns) == 64);
const _: () = assert!(core::mem::offset_of!(FlowRecord, state) == 92);

impl FlowRecord {
    /// `*self = *other`, as 4-byte moves, whatever the linker does with
    /// `memcpy`: a byte-by-byte `memcpy` loop would be walked by the
    /// verifier 96 times on every path that copies a record.
    #[inline(always)]
    pub fn copy_from(&mut self, other: &FlowRecord) {
        let to: &mut [u32; 24] = bytemuck::cast_mut(self);
        let from: &[u32; 24] = bytemuck::cast_ref(other);
        macro_rules! words { ($($i:literal)*) => { $( to[$i] = from[$i]; )* } }
        words!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23);
    }

    /// The record without what the stepping clock wrote into it
    /// (`last_seen`, `first_ns`, the handshake times): what two trackers
    /// with different clocks (the kernel's, a test's) must agree on.
    /// Whether a handshake interval was measured (in `side`) stays.
    pub fn without_clock(&self) -> FlowRecord {
        FlowRecord { last_seen: 0, first_ns: 0, handshake_us: [0; 2], ..*self }
    }

    /// The sender state of direction `d`. Branches instead of indexing: in
    /// BPF, LLVM may drop the `& 1` of an index it believes is 0 or 1, and the
    /// verifier then sees an access up to 255 entries past the array.
    #[inline(always)]
    pub fn peer(&self, d: u8) -> &Peer {
        if d & 1 == 0 { &self.peer[0] } else { &self.peer[1] }
    }

    #[inline(always)]
    pub fn peer_mut(&mut self, d: u8) -> &mut Peer {
        if d & 1 == 0 { &mut self.peer[0] } else { &mut self.peer[1] }
    }
}

/// Element `d` of a per-direction array of the record, by branch rather
/// than index (see `FlowRecord::peer`).
#[inline(always)]
pub fn pair<T: Copy>(a: &[T; 2], d: u8) -> T {
    if d & 1 == 0 { a[0] } else { a[1] }
}

#[inline(always)]
pub fn pair_mut<T>(a: &mut [T; 2], d: u8) -> &mut T {
    if d & 1 == 0 { &mut a[0] } else { &mut a[1] }
}

/// A drop rule dropped a RST of this flow before the state machine saw it:
/// count it for the flow's connection record. Nothing else changes (the
/// RST never reached the endpoint, so it is no packet of the connection:
/// `tcpdump` behind XDP does not see it either).
#[inline(always)]
pub fn note_dropped_rst(rec: &mut FlowRecord) {
    rec.rst_dropped = rec.rst_dropped.saturating_add(1);
}

/// `FlowRecord::side` bits, per direction.
/// Bits 0-2: the sender's endpoint state as Zeek's TCP analyzer would have
/// it (`ZEEK_*`), from the segments the state machine accepted.
pub const SIDE_ZEEK_STATE: u8 = 0x07;
/// Its Zeek state is `ZEEK_RESET` and was `ZEEK_CLOSED` before the RST
/// (Zeek's `prev_state`: a FIN then a RST).
pub const SIDE_RESET_FROM_CLOSED: u8 = 0x08;
/// Its Zeek state is `ZEEK_RESET` and was `ZEEK_SYN_SENT` before the RST.
pub const SIDE_RESET_FROM_SYN_SENT: u8 = 0x10;
/// It sent a SYN-ACK, a pure ACK or a FIN before any RST: one of Zeek's
/// history letters H, A, F before its first R (what `RSTOS0` rules out).
pub const SIDE_HAF_BEFORE_RST: u8 = 0x20;
/// The byte count's sequence-space span was at or past 2^31 when last
/// looked at: the next time it is below, it wrapped (`seq_wraps`).
pub const SIDE_SPAN_UPPER: u8 = 0x40;
/// `handshake_us` of this direction holds the measured interval.
pub const SIDE_ANSWERED: u8 = 0x80;

/// Zeek's TCP endpoint states (`TCP_Endpoint.h`: `TCP_ENDPOINT_*`), the
/// values of the `SIDE_ZEEK_STATE` bits.
/// No SYN (or other segment) seen from this side.
pub const ZEEK_INACTIVE: u8 = 0;
/// SYN seen, no reply yet.
pub const ZEEK_SYN_SENT: u8 = 1;
/// SYN-ACK seen from the originator without its SYN.
pub const ZEEK_SYN_ACK_SENT: u8 = 2;
/// Data (or ACKs) seen, but no SYN: picked up mid-stream.
pub const ZEEK_PARTIAL: u8 = 3;
pub const ZEEK_ESTABLISHED: u8 = 4;
/// FIN seen.
pub const ZEEK_CLOSED: u8 = 5;
/// RST seen.
pub const ZEEK_RESET: u8 = 6;

/// `FlowRecord::info`.
/// The last segment was sent by the `hi` endpoint.
pub const INFO_LAST_DIR_HI: u8 = 0x01;
/// The last segment was a plain ACK (no SYN, FIN or RST).
pub const INFO_LAST_ACK: u8 = 0x02;
/// The `lo` / `hi` endpoint closed first (sent the first FIN); both set for
/// a simultaneous close, where both ends go through CLOSING to TIME_WAIT.
pub const INFO_CLOSER_LO: u8 = 0x04;
pub const INFO_CLOSER_HI: u8 = 0x08;
/// This incarnation started with a SYN on a 4-tuple in TIME_WAIT.
pub const INFO_REUSED: u8 = 0x10;
/// Both sides sent a SYN without ACK (simultaneous open).
pub const INFO_SIMULTANEOUS_OPEN: u8 = 0x20;
/// No SYN-ACK was seen: on a liberal interface (`state::step`'s
/// `liberal`), a segment after the client's SYN proved that one was sent
/// on a path the tracker does not see, and the flow was established from
/// that evidence.
pub const INFO_SYNACK_INFERRED: u8 = 0x40;
/// The last segment was seen on a liberal interface (`state::step`'s
/// `liberal`): windows are not enforced. The same bit as `PEER_LIBERAL`,
/// so that one mask tests both.
pub const INFO_LIBERAL: u8 = 0x80;
const _: () = assert!(INFO_LIBERAL == PEER_LIBERAL);

/// The `INFO_CLOSER_*` bit of a direction.
#[inline(always)]
pub const fn closer_bit(dir: u8) -> u8 {
    if dir & 1 == DIR_LO_TO_HI { INFO_CLOSER_LO } else { INFO_CLOSER_HI }
}

/// log2 of the unit of coarse time (2^20 ns, about a millisecond).
pub const COARSE_SHIFT: u32 = 20;

/// Coarse time stored in `FlowRecord::last_seen`.
#[inline(always)]
pub const fn coarse_time(now_ns: u64) -> u32 {
    (now_ns >> COARSE_SHIFT) as u32
}

/// Who started the connection, judged from the first segment seen (sent
/// in `dir`): (initiator direction, `ORIGIN_*`).
#[inline(always)]
pub fn initiator_of(seg: &Segment, dir: u8) -> (u8, u8) {
    let dir = dir & 1;
    if seg.has(tcp::SYN) && !seg.has(tcp::ACK) {
        (dir, ORIGIN_SYN)
    } else if seg.has(tcp::SYN) {
        (dir ^ 1, ORIGIN_SYN_ACK)
    } else {
        // Mid-stream: servers listen on the lower port far more often than not.
        let (_, lo_port, _, hi_port) = endpoints(seg, dir);
        (if lo_port > hi_port { DIR_LO_TO_HI } else { DIR_HI_TO_LO }, ORIGIN_MIDSTREAM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (da, db) = (direction(&a), direction(&b));
        assert_eq!(key_v4(&a, da), key_v4(&b, db));
        assert_ne!(da, db);
        assert_eq!(key_v4(&a, da).lo_addr, [198, 18, 0, 1]);
        let mut a6 = a;
        a6.saddr = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut b6 = b;
        b6.daddr = a6.saddr;
        assert_eq!(key_v6(&a6, direction(&a6)), key_v6(&b6, direction(&b6)));
    }

    #[test]
    fn same_address_orders_by_port() {
        let a = seg([198, 18, 0, 1], 9000, [198, 18, 0, 1], 80, tcp::SYN);
        let d = direction(&a);
        let k = key_v4(&a, d);
        assert_eq!((k.lo_port, k.hi_port, d), (80, 9000, DIR_HI_TO_LO));
    }

    #[test]
    fn initiator_from_syn_synack_and_midstream() {
        let syn = seg([198, 18, 0, 2], 40000, [198, 18, 0, 1], 80, tcp::SYN);
        let d = direction(&syn);
        assert_eq!(initiator_of(&syn, d), (d, ORIGIN_SYN));

        let synack = seg([198, 18, 0, 1], 80, [198, 18, 0, 2], 40000, tcp::SYN | tcp::ACK);
        assert_eq!(initiator_of(&synack, direction(&synack)), (d, ORIGIN_SYN_ACK), "the SYN-ACK's receiver is the client");

        let data = seg([198, 18, 0, 1], 80, [198, 18, 0, 2], 40000, tcp::ACK);
        assert_eq!(initiator_of(&data, direction(&data)), (d, ORIGIN_MIDSTREAM), "guess: the high port is the client");
    }

    #[test]
    fn copy_from_copies_every_byte() {
        let mut from = FlowRecord::default();
        for (i, b) in bytemuck::bytes_of_mut(&mut from).iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let mut to = FlowRecord::default();
        to.copy_from(&from);
        assert_eq!(to, from);
    }

    #[test]
    fn closer_bits_and_coarse_time() {
        assert_eq!(closer_bit(DIR_LO_TO_HI), INFO_CLOSER_LO);
        assert_eq!(closer_bit(DIR_HI_TO_LO), INFO_CLOSER_HI);
        assert_eq!(coarse_time(3 << 20), 3);
        assert_eq!(coarse_time(u64::MAX), u32::MAX, "wraps instead of overflowing");
    }
}
