//! Egress hook (TCX / clsact egress): the fast path inline, then a tail
//! call into the full path (`tcp_track_tc_full`, through `maps::FULL_TC`).

use aya_ebpf::{macros::classifier, programs::TcContext};
use aya_log_ebpf::{debug, warn};
use tcp_track_common::{
    event::HOOK_TC_EGRESS,
    fast::common_flags,
    parse::{frame_family, FAMILY_IPV4, FAMILY_IPV6},
    track::Observed,
};

use crate::{
    fast,
    maps::{FULL_TC, FULL_V4, FULL_V6},
    packet::DirectPacket,
    track,
};

/// TC_ACT_UNSPEC: with TCX it means "next" (let later programs decide), with
/// a classic direct-action filter "continue with the default": either way we
/// neither drop nor short-circuit anyone else's program.
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn tcp_track_tc_egress(ctx: TcContext) -> i32 {
    let pkt = DirectPacket::tc(&ctx);
    // An ACK or data of an established flow: accounted, on its way.
    if let Some(h) = fast::headers(&pkt) {
        if common_flags(h.flags) && fast::segment(&h) != 0 {
            return TC_ACT_UNSPEC;
        }
    }
    // SAFETY: as at XDP (`tcp_track_xdp`), the IPv4 slot, a constant. On
    // success this does not return.
    unsafe { FULL_TC.tail_call(&ctx, FULL_V4) };
    // Only if the slot is empty: the packet goes on untracked.
    TC_ACT_UNSPEC
}

/// The full path of egress for IPv4 (as `tcp_track_xdp_full`). Never attached.
#[classifier]
pub fn tcp_track_tc_full(ctx: TcContext) -> i32 {
    full::<FAMILY_IPV4>(&ctx)
}

/// The full path of egress for IPv6. Never attached.
#[classifier]
pub fn tcp_track_tc_full_v6(ctx: TcContext) -> i32 {
    full::<FAMILY_IPV6>(&ctx)
}

#[inline(always)]
fn full<const FAMILY: u8>(ctx: &TcContext) -> i32 {
    let pkt = DirectPacket::tc(ctx);
    if FAMILY == FAMILY_IPV4 && frame_family(&pkt) == FAMILY_IPV6 {
        // SAFETY: as at XDP.
        unsafe { FULL_TC.tail_call(ctx, FULL_V6) };
        return TC_ACT_UNSPEC;
    }
    // SAFETY: the hook's context, valid for this program run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match track::observe::<_, HOOK_TC_EGRESS, FAMILY>(&pkt, ifindex) {
        // Logged only when the daemon runs with --bpf-log (aya-log's level is 0 otherwise).
        Observed::Malformed(m) => debug!(ctx, "egress: malformed frame ({})", m),
        Observed::Untracked => warn!(ctx, "egress: flow map refused an entry"),
        // Egress never drops: the policy applies at XDP only.
        Observed::NotTcp | Observed::Tracked | Observed::Dropped | Observed::BadChecksum => {}
    }
    TC_ACT_UNSPEC
}
