//! What a daemon writes next to the maps it pins, so that the next one can
//! tell whether it may adopt them: the layout version and the sizes of
//! everything the tables and the ring buffer hold, where the half-open
//! tables put a flow (their hash seed and set mask), and how the last owner
//! left them. One entry of the `STATE_INFO` map; the kernel programs never
//! read it.
//!
//! A daemon adopts pinned maps only when every field of `Layout::current`
//! equals the pinned one; anything else (another version, another record
//! size) is a different layout, which it reports and replaces, never
//! misreads.

use bytemuck::{Pod, Zeroable};

use crate::{
    counters,
    estab::{EstSetV4, EstSetV6},
    event::FlowEvent,
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    halfopen::{SetV4, SetV6},
};

/// `StateInfo::magic`: "tcpT".
pub const MAGIC: u32 = 0x5470_6374;

/// Raised whenever the meaning of a pinned map's bytes changes without its
/// size changing (a field reinterpreted, a counter moved, a new event kind
/// the old programs cannot emit is fine). The sizes are checked as well.
/// 2: the established tables became sets and a stash (`estab`).
pub const LAYOUT_VERSION: u32 = 2;

/// `StateInfo::keep`: the owner stops without unpinning (`--keep-state`).
pub const KEEP_NO: u32 = 0;
pub const KEEP_YES: u32 = 1;

/// The facts that decide whether pinned maps can be read by this build.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Layout {
    pub magic: u32,
    pub version: u32,
    pub record_size: u32,
    pub key_v4_size: u32,
    pub key_v6_size: u32,
    pub set_v4_size: u32,
    pub set_v6_size: u32,
    pub event_size: u32,
    pub counters: u32,
    /// The established tables' sets (`estab::EstSetV4`, `EstSetV6`).
    pub est_set_v4_size: u32,
    pub est_set_v6_size: u32,
}
const _: () = assert!(core::mem::size_of::<Layout>() == 44);

impl Layout {
    /// This build's layout.
    pub const fn current() -> Layout {
        Layout {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            record_size: core::mem::size_of::<FlowRecord>() as u32,
            key_v4_size: core::mem::size_of::<FlowKeyV4>() as u32,
            key_v6_size: core::mem::size_of::<FlowKeyV6>() as u32,
            set_v4_size: core::mem::size_of::<SetV4>() as u32,
            set_v6_size: core::mem::size_of::<SetV6>() as u32,
            event_size: core::mem::size_of::<FlowEvent>() as u32,
            counters: counters::COUNT,
            est_set_v4_size: core::mem::size_of::<EstSetV4>() as u32,
            est_set_v6_size: core::mem::size_of::<EstSetV6>() as u32,
        }
    }
}

/// The one entry of `STATE_INFO`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct StateInfo {
    pub layout: Layout,
    /// The flow tables' hash key (`halfopen::set_of`, `estab::candidates`)
    /// and the half-open set mask: the next daemon must load its programs
    /// with the same ones, or it would look for every flow in the wrong
    /// set.
    pub half_open_seed: u32,
    pub half_open_set_mask: u32,
    /// The established tables' capacity as asked for (`--max-flows`),
    /// which sizes their sets and stash.
    pub max_flows: u32,
    /// `KEEP_*` of the daemon that owns (or last owned) the state.
    pub keep: u32,
    /// Its process id (0 once it stopped).
    pub owner_pid: u32,
    /// The `events_lost` counter when the last owner stopped: what was
    /// lost after that, no daemon was there to read.
    pub events_lost_at_exit: u64,
}
const _: () = assert!(core::mem::size_of::<StateInfo>() == 72);
