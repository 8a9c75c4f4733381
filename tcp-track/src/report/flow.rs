//! A flow's identity as the kernel keys it, and how the reporter reads the
//! kernel's record of it: through `FlowLookup`, so that the reporter runs
//! on a test's table as well as on the kernel's maps (`tables` adapts
//! those).

use std::net::SocketAddr;

use tcp_track_common::{event::FlowEvent, flow::FlowRecord, parse::FAMILY_IPV4};

use crate::events::oriented;

/// A flow, as the kernel keys it: family and the canonical endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowId {
    pub family: u8,
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
}

/// Hashed as few words: the reporter looks flows up for every event, and
/// the derived impl feeds the (keyed, flood-resistant) hasher seven pieces,
/// which costs several times more. An IPv4 flow's addresses are their
/// first 4 bytes (the rest are zero), so it is hashed as two words; an IPv6
/// flow as one run of its 37 bytes. Equal flows hash the same either way.
impl std::hash::Hash for FlowId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if self.family == FAMILY_IPV4 {
            let addr = |a: &[u8; 16]| u64::from(u32::from_ne_bytes([a[0], a[1], a[2], a[3]]));
            state.write_u64(addr(&self.lo_addr) << 32 | addr(&self.hi_addr));
            state.write_u64(u64::from(self.lo_port) << 16 | u64::from(self.hi_port));
            return;
        }
        let mut bytes = [0u8; 37];
        bytes[0] = self.family;
        bytes[1..17].copy_from_slice(&self.lo_addr);
        bytes[17..33].copy_from_slice(&self.hi_addr);
        bytes[33..35].copy_from_slice(&self.lo_port.to_ne_bytes());
        bytes[35..37].copy_from_slice(&self.hi_port.to_ne_bytes());
        state.write(&bytes);
    }
}

impl FlowId {
    pub fn of(raw: &FlowEvent) -> FlowId {
        FlowId { family: raw.family, lo_addr: raw.lo_addr, hi_addr: raw.hi_addr, lo_port: raw.lo_port, hi_port: raw.hi_port }
    }

    /// The flow's (client, server) when `initiator` is the client's
    /// direction.
    pub fn endpoints(&self, initiator: u8) -> (SocketAddr, SocketAddr) {
        oriented(self.family, (&self.lo_addr, self.lo_port), (&self.hi_addr, self.hi_port), initiator)
    }
}

/// Reads a flow's current record from the kernel's maps (or a test's fake),
/// and removes records the daemon is done with.
pub trait FlowLookup {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord>;
    fn remove(&mut self, id: &FlowId);
    /// Every flow in the tables, with its record (a walk of the tables:
    /// for the daemon's stop, not for its loop).
    fn open_flows(&self) -> Vec<(FlowId, FlowRecord)>;
}
