//! Host-only glue: lets the daemon read these types out of aya maps.

use crate::event::FlowEvent;
use crate::flow::{FlowKeyV4, FlowKeyV6, FlowRecord};

// SAFETY: all three are #[repr(C)], bytemuck::Pod (no padding, any bit pattern valid).
unsafe impl aya::Pod for FlowKeyV4 {}
unsafe impl aya::Pod for FlowKeyV6 {}
unsafe impl aya::Pod for FlowRecord {}
unsafe impl aya::Pod for FlowEvent {}
// SAFETY: as above: #[repr(C)] bytemuck::Pod sets of the half-open tables.
unsafe impl aya::Pod for crate::halfopen::SetV4 {}
unsafe impl aya::Pod for crate::refsets::SetV4 {}
unsafe impl aya::Pod for crate::halfopen::SetV6 {}
// SAFETY: #[repr(C)] bytemuck::Pod, the entry of the pinned state's STATE_INFO map.
unsafe impl aya::Pod for crate::pinned::StateInfo {}
