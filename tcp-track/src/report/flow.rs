//! A flow's identity as the kernel keys it, and how the reporter reads the
//! kernel's record of it: through `FlowLookup`, so that the reporter runs
//! on a test's table as well as on the kernel's maps (`tables` adapts
//! those).

use tcp_track_common::{event::FlowEvent, flow::FlowRecord};

/// A flow, as the kernel keys it: family and the canonical endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowId {
    pub family: u8,
    pub lo_addr: [u8; 16],
    pub hi_addr: [u8; 16],
    pub lo_port: u16,
    pub hi_port: u16,
}

/// Hashed as one run of bytes: the reporter looks flows up for every
/// event, and the derived impl feeds the (keyed, flood-resistant) hasher
/// seven pieces, which costs several times more.
impl std::hash::Hash for FlowId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
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
