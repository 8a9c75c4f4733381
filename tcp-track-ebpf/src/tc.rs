//! Egress hook (TCX / clsact egress).

use aya_ebpf::{macros::classifier, programs::TcContext};
use tcp_track_common::event::HOOK_TC_EGRESS;

use crate::{packet::DirectPacket, track};

/// TC_ACT_UNSPEC: with TCX it means "next" (let later programs decide), with
/// a classic direct-action filter "continue with the default": either way we
/// neither drop nor short-circuit anyone else's program.
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn tcp_track_tc_egress(ctx: TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    track::observe(&DirectPacket::tc(&ctx), ifindex, HOOK_TC_EGRESS);
    TC_ACT_UNSPEC
}
