//! The record the kernel programs write to the `EVENTS` ring buffer.

use bytemuck::{Pod, Zeroable};

use crate::flow::{Canonical, FlowRecord};
use crate::parse::Segment;

/// `FlowEvent::kind`.
/// First segment of a flow the tracker had no entry for.
pub const EVENT_FLOW_NEW: u16 = 1;
/// First FIN seen from one side.
pub const EVENT_FIN: u16 = 2;
/// First RST seen from one side.
pub const EVENT_RST: u16 = 3;

/// `FlowEvent::hook`: which program saw the segment.
pub const HOOK_XDP: u8 = 0;
pub const HOOK_TC_EGRESS: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct FlowEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the segment was seen.
    pub ts_ns: u64,
    /// `EVENT_*`.
    pub kind: u16,
    /// 4 or 6.
    pub family: u8,
    /// Direction of the segment (`flow::DIR_*`).
    pub dir: u8,
    /// Interface the segment was seen on.
    pub ifindex: u32,
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
    /// TCP flags of the segment.
    pub tcp_flags: u8,
    /// `FlowRecord::initiator` and `FlowRecord::origin` at the time of the event.
    pub initiator: u8,
    pub origin: u8,
    /// `HOOK_*`.
    pub hook: u8,
    pub seq: u32,
    pub ack: u32,
}
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 64);

impl FlowEvent {
    #[inline(always)]
    pub fn new(kind: u16, seg: &Segment, canon: &Canonical, rec: &FlowRecord, now_ns: u64, ifindex: u32, hook: u8) -> Self {
        FlowEvent {
            ts_ns: now_ns,
            kind,
            family: seg.family,
            dir: canon.dir,
            ifindex,
            lo_addr: canon.lo_addr,
            hi_addr: canon.hi_addr,
            lo_port: canon.lo_port,
            hi_port: canon.hi_port,
            tcp_flags: seg.flags,
            initiator: rec.initiator,
            origin: rec.origin,
            hook,
            seq: seg.seq,
            ack: seg.ack,
        }
    }
}
