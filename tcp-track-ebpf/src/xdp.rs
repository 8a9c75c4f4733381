//! Ingress hook.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use tcp_track_common::event::HOOK_XDP;

use crate::{packet::DirectPacket, track};

#[xdp]
pub fn tcp_track_xdp(ctx: XdpContext) -> u32 {
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    track::observe(&DirectPacket::xdp(&ctx), ifindex, HOOK_XDP);
    // Observe only: nothing is dropped until a drop rule exists.
    xdp_action::XDP_PASS
}
