//! The event record: what the kernel programs write to the `EVENTS` ring
//! buffer, and the host tracker hands its caller (`host`).

use bytemuck::{Pod, Zeroable};

use crate::flow::{endpoints, FlowRecord, INFO_CLOSER_HI, INFO_CLOSER_LO, INFO_REUSED, INFO_SYNACK_INFERRED};
use crate::parse::{Segment, SegmentFields};
use crate::state::{endpoint_state, Outcome, RESET_NONE, STATE_CLOSE, STATE_TIME_WAIT};

/// `FlowEvent::kind`.
/// First segment of a flow the tracker had no record of.
pub const EVENT_FLOW_NEW: u16 = 1;
/// A side's first FIN.
pub const EVENT_FIN: u16 = 2;
/// A RST (classified in `reset`).
pub const EVENT_RST: u16 = 3;
/// Any other change of connection state.
pub const EVENT_STATE: u16 = 4;
/// A SYN on a 4-tuple in TIME_WAIT started a new incarnation.
pub const EVENT_REUSE: u16 = 5;
/// A retransmitted SYN or SYN-ACK (the handshake is not completing).
pub const EVENT_HANDSHAKE_RETRANS: u16 = 6;
/// A side started retransmitting data in a synchronized connection (its
/// first retransmission in a row): the other side may have lost its state.
pub const EVENT_DATA_RETRANS: u16 = 7;
/// A connection ended: the record is a [`ConnEnd`], this event followed by
/// a snapshot of the flow record (`FlowEvent::end` says how it ended). One
/// per connection, written where the shared table logic sees the end (the
/// segment that closed or reset it, a half-open entry evicted), because a
/// TIME_WAIT reuse or an eviction can overwrite or remove the record
/// before the daemon could read it.
pub const EVENT_CONN_END: u16 = 8;

/// `FlowEvent::end`: why a connection's record was written (0 on other
/// events). The kernel writes the first three; the daemon decides the
/// others (timeouts, its own stop) and the capture reader the last.
/// No end: any event but `EVENT_CONN_END`.
pub const CONN_END_NONE: u8 = 0;
/// The active closer entered TIME_WAIT (the last ACK of an orderly close).
pub const CONN_END_FIN: u8 = 1;
/// A RST closed it (`FlowEvent::reset` is its class, `dir` its sender).
pub const CONN_END_RESET: u8 = 2;
/// Its entry was evicted from the flow table to make room.
pub const CONN_END_EVICTED: u8 = 3;
/// A handshake given up after `--half-open-timeout`.
pub const CONN_END_HALF_OPEN_TIMEOUT: u8 = 4;
/// Quiet for longer than `--idle-timeout`.
pub const CONN_END_IDLE_TIMEOUT: u8 = 5;
/// Still open when the daemon stopped.
pub const CONN_END_STOPPED: u8 = 6;
/// Still open at the end of a capture.
pub const CONN_END_CAPTURE_END: u8 = 7;

/// `FlowEvent::hook`: which program saw the segment.
pub const HOOK_XDP: u8 = 0;
pub const HOOK_TC_EGRESS: u8 = 1;
/// A frame read from a capture file (`tcp-track read`): which direction it
/// took through the host is unknown, so it is judged as XDP judges what it
/// sees (RST checksum, RST policy).
pub const HOOK_CAPTURE: u8 = 2;

/// Whether a segment seen by `hook` is judged as XDP judges ingress: its
/// RST must prove its checksum and the RST policy applies. Segments seen
/// at TC egress come from this host's own stack.
#[inline(always)]
pub const fn judged_as_ingress(hook: u8) -> bool {
    hook != HOOK_TC_EGRESS
}

/// `FlowEvent::detail` bits.
pub const DETAIL_DROP_JUSTIFIED: u8 = 0x01;
pub const DETAIL_ISN_ADVANCED: u8 = 0x02;
pub const DETAIL_CLOSER_LO: u8 = 0x04;
pub const DETAIL_CLOSER_HI: u8 = 0x08;
pub const DETAIL_REUSED: u8 = 0x10;
/// The segment was acceptable to the state machine (in window, valid flags).
pub const DETAIL_VALID: u8 = 0x20;
/// The segment was dropped by a drop rule.
pub const DETAIL_DROPPED: u8 = 0x40;
/// The flow's SYN-ACK was never seen, only inferred (`flow::INFO_SYNACK_INFERRED`).
pub const DETAIL_SYNACK_INFERRED: u8 = 0x80;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    /// When the segment was seen (`table::Driver::now`): in the kernel
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Interface the segment was seen on.
    pub ifindex: u32,
    pub seq: u32,
    pub ack: u32,
    pub lo_port: u16,
    pub hi_port: u16,
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    /// `EVENT_*`.
    pub kind: u16,
    /// 4 or 6.
    pub family: u8,
    /// Direction of the segment (`flow::DIR_*`).
    pub dir: u8,
    /// `HOOK_*`.
    pub hook: u8,
    /// TCP flags of the segment.
    pub tcp_flags: u8,
    /// `FlowRecord::initiator` and `origin` after the segment.
    pub initiator: u8,
    pub origin: u8,
    /// Connection state before and after (`state::STATE_*`).
    pub old_state: u8,
    pub new_state: u8,
    /// `state::RESET_*`.
    pub reset: u8,
    /// `DETAIL_*` bits.
    pub detail: u8,
    /// The sender's retransmission count.
    pub retrans: u8,
    /// Endpoint states (`state::EP_*`) of the lo and hi endpoints.
    pub lo_state: u8,
    pub hi_state: u8,
    /// `CONN_END_*` of an `EVENT_CONN_END`, 0 otherwise.
    pub end: u8,
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 72);

/// The ring record of an `EVENT_CONN_END`: the event (about the segment
/// that ended the connection, or for an eviction about none: `seq`, `ack`
/// and `tcp_flags` are 0) and the flow record as it was then. A reader
/// that knows only `FlowEvent` reads the first 72 bytes, as of any record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ConnEnd {
    pub event: FlowEvent,
    pub rec: FlowRecord,
}
const _: () = assert!(core::mem::size_of::<ConnEnd>() == 168);

/// The `CONN_END_*` a segment's outcome makes (0: the connection goes on).
/// Once per connection: on the way into TIME_WAIT or CLOSE, not from one to
/// the other (a RST assassinating a TIME_WAIT ends nothing new).
#[inline(always)]
pub fn conn_end_of(out: &Outcome) -> u8 {
    if out.old_state >= STATE_TIME_WAIT {
        CONN_END_NONE
    } else if out.new_state == STATE_TIME_WAIT {
        CONN_END_FIN
    } else if out.new_state == STATE_CLOSE && out.reset != RESET_NONE {
        CONN_END_RESET
    } else {
        CONN_END_NONE
    }
}

impl FlowEvent {
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // one record built from everything the hook knows
    pub fn new(kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, now_ns: u64, ifindex: u32, hook: u8) -> Self {
        FlowEvent::of(kind, seg, endpoints(seg, dir), dir, rec, out, now_ns, ifindex, hook)
    }

    /// `new` from what an event carries of the segment (`wire`: a
    /// `Segment`, or the fast path's `fast::Lean`, which parses none) and
    /// its flow's endpoints as `flow::endpoints` orders them (`lo`, then
    /// `hi`). The segment's fields are read where the record is built, as
    /// `new` always did: in BPF, values loaded before the branches below
    /// and carried through them multiplied the states the verifier walks
    /// (the XDP program went past its million instructions).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // as `new`
    pub fn of<W: SegmentFields>(
        kind: u16,
        wire: &W,
        (lo_addr, lo_port, hi_addr, hi_port): (&[u8; 16], u16, &[u8; 16], u16),
        dir: u8,
        rec: &FlowRecord,
        out: &Outcome,
        now_ns: u64,
        ifindex: u32,
        hook: u8,
    ) -> Self {
        let mut detail = 0;
        if out.drop_justified {
            detail |= DETAIL_DROP_JUSTIFIED;
        }
        if out.isn_advanced {
            detail |= DETAIL_ISN_ADVANCED;
        }
        if out.valid {
            detail |= DETAIL_VALID;
        }
        if out.dropped {
            detail |= DETAIL_DROPPED;
        }
        if rec.info & INFO_CLOSER_LO != 0 {
            detail |= DETAIL_CLOSER_LO;
        }
        if rec.info & INFO_CLOSER_HI != 0 {
            detail |= DETAIL_CLOSER_HI;
        }
        if rec.info & INFO_REUSED != 0 {
            detail |= DETAIL_REUSED;
        }
        if rec.info & INFO_SYNACK_INFERRED != 0 {
            detail |= DETAIL_SYNACK_INFERRED;
        }
        FlowEvent {
            ts_ns: now_ns,
            ifindex,
            seq: wire.seq(),
            ack: wire.ack(),
            lo_port,
            hi_port,
            lo_addr: *lo_addr,
            hi_addr: *hi_addr,
            kind,
            family: wire.family(),
            dir: dir & 1,
            hook,
            tcp_flags: wire.flags(),
            initiator: rec.initiator,
            origin: rec.origin,
            old_state: out.old_state,
            new_state: out.new_state,
            reset: out.reset,
            detail,
            retrans: rec.peer(dir).retrans,
            lo_state: endpoint_state(rec, 0),
            hi_state: endpoint_state(rec, 1),
            end: if kind == EVENT_CONN_END { conn_end_of(out) } else { CONN_END_NONE },
        }
    }

    /// The `EVENT_CONN_END` of a flow evicted from a table (its key's
    /// endpoints: family 4 or 6, `lo` address and port, `hi` address and
    /// port) while a segment of another flow was seen (`now_ns`, `ifindex`,
    /// `hook`).
    #[inline(always)]
    pub fn evicted(family: u8, lo: (&[u8; 16], u16), hi: (&[u8; 16], u16), rec: &FlowRecord, now_ns: u64, ifindex: u32, hook: u8) -> Self {
        FlowEvent {
            ts_ns: now_ns,
            ifindex,
            lo_port: lo.1,
            hi_port: hi.1,
            lo_addr: *lo.0,
            hi_addr: *hi.0,
            kind: EVENT_CONN_END,
            family,
            hook,
            initiator: rec.initiator,
            origin: rec.origin,
            old_state: rec.state,
            new_state: rec.state,
            lo_state: endpoint_state(rec, 0),
            hi_state: endpoint_state(rec, 1),
            end: CONN_END_EVICTED,
            ..FlowEvent::default()
        }
    }
}

/// Which event, if any, an outcome is worth. One per segment at most: the
/// most telling one.
#[inline(always)]
pub fn event_kind(out: &Outcome) -> Option<u16> {
    use crate::state::{RESET_NONE, STATE_CLOSE, STATE_NONE};
    if out.reset != RESET_NONE {
        // Duplicates of an accepted reset after the flow closed are noise.
        if out.old_state == STATE_CLOSE && !out.drop_justified {
            return None;
        }
        return Some(EVENT_RST);
    }
    if out.reused {
        return Some(EVENT_REUSE);
    }
    if out.old_state == STATE_NONE && out.new_state != STATE_NONE {
        return Some(EVENT_FLOW_NEW);
    }
    if out.first_fin {
        return Some(EVENT_FIN);
    }
    if out.old_state != out.new_state {
        return Some(EVENT_STATE);
    }
    if out.retransmission && out.new_state <= crate::state::STATE_SYN_RECV {
        return Some(EVENT_HANDSHAKE_RETRANS);
    }
    if out.retransmission && out.retrans == 1 {
        // Only the first of a run: a stalled peer shows once, not per segment.
        return Some(EVENT_DATA_RETRANS);
    }
    None
}
