//! One frame through the tracker, as every driver runs it: parse, count,
//! prove the checksum of a control segment (as XDP sees it, and in
//! captures: `verified`), then account the segment to its flow (`table`,
//! which applies the RST policy).

use crate::{
    counters,
    event::judged_as_ingress,
    flow::{FlowKeyV4, FlowKeyV6},
    parse::{
        checksum::{control_checksum, CSUM_BAD},
        parse_into, Packet, Segment, Skip, FAMILY_IPV4,
    },
    table::{account, Cx, Driver, FlowStore, Scratch, Seen, Verdict},
    tcp,
};

/// What became of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    NotTcp,
    /// `parse::Malformed` as its number.
    Malformed(u8),
    Tracked,
    /// The flow table refused an entry.
    Untracked,
    /// A forged RST the policy drops: XDP returns XDP_DROP.
    Dropped,
    /// A SYN, FIN or RST with a bad TCP checksum (`verified`): the
    /// receiving stack discards it, so it is no part of any connection.
    BadChecksum,
}

/// Parse one frame, seen on `ifindex` by `hook` (`event::HOOK_*`), and
/// account it to its flow, in `v4` or `v6`. Never fails: a frame that is
/// not TCP, or that cannot be accounted, is counted and left alone. The
/// segment is parsed into `scratch`, which the caller may read afterwards.
#[inline(always)]
pub fn observe<P, S4, S6, D>(pkt: &P, scratch: &mut Scratch, v4: &mut S4, v6: &mut S6, driver: D, ifindex: u32, hook: u8) -> Observed
where
    P: Packet + ?Sized,
    S4: FlowStore<Key = FlowKeyV4>,
    S6: FlowStore<Key = FlowKeyV6>,
    D: Driver,
{
    let mut cx = match prepare(pkt, scratch, driver, ifindex, hook) {
        Ok(cx) => cx,
        Err(observed) => return observed,
    };
    let verdict = if scratch.seg.family == FAMILY_IPV4 { account(v4, scratch, &mut cx) } else { account(v6, scratch, &mut cx) };
    verdict.into()
}

/// `observe` up to the flow tables: parse the frame into `scratch.seg`,
/// count it, prove the checksum of what XDP may judge; then what `account`
/// needs (`Err`: the frame's fate is decided already). The kernel programs
/// call `account` themselves, through global functions (see
/// `tcp-track-ebpf`'s `track.rs`).
#[inline(always)]
pub fn prepare<P, D>(pkt: &P, scratch: &mut Scratch, mut driver: D, ifindex: u32, hook: u8) -> Result<Cx<D>, Observed>
where
    P: Packet + ?Sized,
    D: Driver,
{
    match parse_frame(pkt, &mut scratch.seg) {
        PARSED => {}
        NOT_TCP => {
            driver.count(counters::NOT_TCP);
            return Err(Observed::NotTcp);
        }
        malformed => {
            driver.count(counters::MALFORMED);
            return Err(Observed::Malformed(malformed - MALFORMED_BASE));
        }
    }
    driver.count(counters::TCP_SEGMENTS);
    if !tcp::flags_valid(scratch.seg.flags) {
        driver.count(counters::INVALID_FLAGS);
    }
    let mut seen = Seen::new(0, ifindex, hook);
    if judged_as_ingress(hook) && verified(scratch.seg.flags) {
        // XDP runs before the stack has checked anything: a control segment
        // must prove its checksum before it may start a flow, count toward
        // a SYN flood, move a handshake or a close, or be called an attack.
        // (Egress segments come from this host's own stack; a capture is
        // judged as what arrives.)
        let csum = segment_checksum(pkt, &scratch.seg);
        if csum == CSUM_BAD {
            let counter = if scratch.seg.has(tcp::RST) { counters::RST_BAD_CHECKSUM } else { counters::BAD_CHECKSUM };
            driver.count(counter);
            return Err(Observed::BadChecksum);
        }
        // Only a RST's drop rule asks how its checksum was proven (a RST too
        // long to verify is never dropped). Kept from other segments'
        // paths: in BPF every value carried on them multiplies the paths
        // the verifier walks.
        if scratch.seg.has(tcp::RST) {
            seen.csum = csum;
        }
    }
    seen.liberal = driver.liberal(ifindex);
    Ok(Cx { driver, seen })
}

impl From<Verdict> for Observed {
    fn from(verdict: Verdict) -> Observed {
        match verdict {
            Verdict::Accounted => Observed::Tracked,
            Verdict::Drop => Observed::Dropped,
            Verdict::Untracked => Observed::Untracked,
        }
    }
}

const PARSED: u8 = 0;
const NOT_TCP: u8 = 1;
const MALFORMED_BASE: u8 = 2;

/// The parser as a BPF subprogram: its temporaries live in its own frame,
/// gone by the time the flow is accounted. Writes the segment to `out`
/// (in the kernel, the per-CPU scratch slot).
#[inline(never)]
fn parse_frame<P: Packet + ?Sized>(pkt: &P, out: &mut Segment) -> u8 {
    match parse_into(pkt, out) {
        Ok(()) => PARSED,
        Err(Skip::NotTcp) => NOT_TCP,
        Err(Skip::Malformed(m)) => MALFORMED_BASE + m as u8,
    }
}

/// Whether XDP verifies the checksum of a segment with TCP `flags` (when it
/// has no payload: `tcp_checksum`): SYN, SYN-ACK, FIN and RST. These alone
/// create a flow (a SYN or SYN-ACK; a half-open entry, a part in a SYN
/// flood), move a handshake along, start a close that is reported (FIN),
/// or end a connection (RST); each is short, so the check costs one pass
/// over at most 60 bytes of header. Plain ACKs and data are not verified:
/// they are nearly all the traffic, data would need its whole payload
/// summed, and a corrupt one does little harm: it is rejected outside the
/// window, and at worst one picks up a flow mid-stream or completes a
/// handshake whose SYN and SYN-ACK were genuine.
#[inline(always)]
pub const fn verified(flags: u8) -> bool {
    flags & (tcp::SYN | tcp::FIN | tcp::RST) != 0
}

/// The checksum check as a BPF subprogram: its temporaries in its own
/// frame (inlined, they took the XDP program's call chain past the 512
/// bytes of stack BPF allows), its branches walked by the verifier once per
/// call site state rather than through the rest of `observe`.
/// `control_checksum` inside it: word loads and adds, no helper call.
#[inline(never)]
fn segment_checksum<P: Packet + ?Sized>(pkt: &P, seg: &Segment) -> u8 {
    control_checksum(pkt, seg)
}
