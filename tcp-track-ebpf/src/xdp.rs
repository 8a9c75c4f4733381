//! Ingress hook: the fast paths inline, then a tail call into the full
//! path (`tcp_track_xdp_full`, through `maps::FULL_XDP`).

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::{debug, warn};
use tcp_track_common::{
    event::HOOK_XDP,
    fast::{common_flags, reset_flags},
    parse::{frame_family, FAMILY_IPV4, FAMILY_IPV6},
    track::Observed,
};

use crate::{
    fast,
    maps::{FULL_V4, FULL_V6, FULL_XDP},
    packet::DirectPacket,
    track,
};

#[xdp]
pub fn tcp_track_xdp(ctx: XdpContext) -> u32 {
    let pkt = DirectPacket::xdp(&ctx);
    if let Some(h) = fast::headers(&pkt) {
        // An ACK or data of an established flow: accounted, passed.
        if common_flags(h.flags) && fast::segment(&h) != 0 {
            return xdp_action::XDP_PASS;
        }
        // A RST the policy drops: judged, counted, reported, dropped.
        if reset_flags(h.flags) && fast::reset(&h, ctx.ctx) != 0 {
            return xdp_action::XDP_DROP;
        }
    }
    // Always the IPv4 slot, which hands IPv6 on (`full`): a tail call
    // whose slot is a constant is a direct jump once JIT-compiled, one
    // whose slot varies an indirect one, about 12 ns dearer here
    // (retpolines).
    // SAFETY: the hook's own context, and a slot the daemon fills with a
    // program of this type. On success this does not return.
    unsafe { FULL_XDP.tail_call(&ctx, FULL_V4) };
    // Only if the slot is empty (a daemon that never filled it): the frame
    // goes on untracked, as any frame the tracker cannot account.
    xdp_action::XDP_PASS
}

/// The full path of ingress for IPv4 (and for whatever is neither IPv4
/// nor IPv6, which it counts): every frame `tcp_track_xdp`'s fast paths
/// leave, parsed again and accounted by the shared logic; an IPv6 frame
/// it hands to `tcp_track_xdp_full_v6` by a tail call. Reached only by
/// the tail call; never attached.
#[xdp]
pub fn tcp_track_xdp_full(ctx: XdpContext) -> u32 {
    full::<FAMILY_IPV4>(&ctx)
}

/// The full path of ingress for IPv6 (as `tcp_track_xdp_full`).
#[xdp]
pub fn tcp_track_xdp_full_v6(ctx: XdpContext) -> u32 {
    full::<FAMILY_IPV6>(&ctx)
}

#[inline(always)]
fn full<const FAMILY: u8>(ctx: &XdpContext) -> u32 {
    let pkt = DirectPacket::xdp(ctx);
    if FAMILY == FAMILY_IPV4 && frame_family(&pkt) == FAMILY_IPV6 {
        // SAFETY: as in the hook; this slot too is a constant.
        unsafe { FULL_XDP.tail_call(ctx, FULL_V6) };
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the hook's context, valid for this program run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    match track::observe::<_, HOOK_XDP, FAMILY>(&pkt, ifindex) {
        // The only drop: a RST the configured policy judges forged.
        Observed::Dropped => return xdp_action::XDP_DROP,
        // Logged only when the daemon runs with --bpf-log (aya-log's level is 0 otherwise).
        Observed::Malformed(m) => debug!(ctx, "ingress: malformed frame ({})", m),
        Observed::Untracked => warn!(ctx, "ingress: flow map refused an entry"),
        Observed::BadChecksum => debug!(ctx, "ingress: RST with a bad checksum left to the stack"),
        Observed::NotTcp | Observed::Tracked => {}
    }
    // Everything else goes on to the stack, whatever happened above.
    xdp_action::XDP_PASS
}

/// The benchmark's baseline: the cost of running any XDP program at all,
/// subtracted from the tracker's figures. Never attached by the daemon.
#[xdp]
pub fn tcp_track_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
