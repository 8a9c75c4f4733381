//! Ingress hook.

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::{debug, warn};
use tcp_track_common::{event::HOOK_XDP, track::Observed};

use crate::{fast, packet::DirectPacket, track};

#[xdp]
pub fn tcp_track_xdp(ctx: XdpContext) -> u32 {
    let pkt = DirectPacket::xdp(&ctx);
    match fast::kind(&pkt) {
        // An ACK or data of an established flow: accounted, passed.
        fast::COMMON if fast::segment(&pkt) != 0 => return xdp_action::XDP_PASS,
        // A RST the policy drops: judged, counted, reported, dropped.
        fast::RESET if fast::reset(&pkt, ctx.ctx) != 0 => return xdp_action::XDP_DROP,
        _ => {}
    }
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    match track::observe::<_, HOOK_XDP>(&pkt, ifindex) {
        // The only drop: a RST the configured policy judges forged.
        Observed::Dropped => return xdp_action::XDP_DROP,
        // Logged only when the daemon runs with --bpf-log (aya-log's level is 0 otherwise).
        Observed::Malformed(m) => debug!(&ctx, "ingress: malformed frame ({})", m),
        Observed::Untracked => warn!(&ctx, "ingress: flow map refused an entry"),
        Observed::BadChecksum => debug!(&ctx, "ingress: RST with a bad checksum left to the stack"),
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
