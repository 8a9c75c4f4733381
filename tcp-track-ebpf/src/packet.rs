//! `Packet` over the bytes between `data` and `data_end`, for both hooks.

use core::{arch::asm, ffi::c_void};

use aya_ebpf::{
    helpers::generated::bpf_loop,
    programs::{TcContext, XdpContext},
};
use tcp_track_common::parse::{OptionWalk, Packet, MAX_TCP_OPTIONS};

/// Largest offset we ever read at: VLAN tags + IPv6 + extension headers +
/// TCP header. Clamping to it gives the verifier a bounded offset.
const MAX_OFFSET: usize = 1024;

/// Headers the parser may need, made linear on egress before parsing.
const PULL_LEN: u32 = 256;

/// Direct packet access with a bounds check on every read.
pub struct DirectPacket {
    start: usize,
    end: usize,
    /// Length of the whole frame: `data_end - data` for XDP; `skb->len` for
    /// TC, which counts the non-linear part of GSO packets, so that IP length
    /// checks compare against the real datagram.
    frame_len: usize,
}

impl DirectPacket {
    #[inline(always)]
    pub fn xdp(ctx: &XdpContext) -> Self {
        let (start, end) = (ctx.data(), ctx.data_end());
        DirectPacket { start, end, frame_len: end - start }
    }

    /// Egress packets from the local stack may keep part of their headers in
    /// paged fragments; pull up to `PULL_LEN` bytes into the linear area
    /// first. If the pull fails we parse what is linear, and a truncated
    /// header is counted as malformed rather than read out of bounds.
    #[inline(always)]
    pub fn tc(ctx: &TcContext) -> Self {
        let len = ctx.len();
        let want = if len < PULL_LEN { len } else { PULL_LEN };
        if ((ctx.data_end() - ctx.data()) as u32) < want {
            let _ = ctx.pull_data(want);
        }
        // data/data_end must be re-read after a pull.
        DirectPacket { start: ctx.data(), end: ctx.data_end(), frame_len: len as usize }
    }
}

impl DirectPacket {
    /// The address of `len` bytes at `offset`, if they lie inside the packet:
    /// one bounds check for a whole header, read with `be16_at`/`be32_at`.
    #[inline(always)]
    pub fn at(&self, offset: usize, len: usize) -> Option<usize> {
        if offset > MAX_OFFSET {
            return None;
        }
        let p = self.start + offset;
        if p + len > self.end {
            return None;
        }
        Some(p)
    }
}

impl Packet for DirectPacket {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.frame_len
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let p = self.at(offset, N)?;
        // SAFETY: [p, p + N) lies inside the packet (`at`).
        Some(unsafe { core::ptr::read_unaligned(p as *const [u8; N]) })
    }

    #[inline(always)]
    fn read_be16(&self, offset: usize) -> Option<u16> {
        let p = self.at(offset, 2)?;
        // SAFETY: [p, p + 2) lies inside the packet (`at`).
        Some(unsafe { be16_at(p) })
    }

    #[inline(always)]
    fn read_be32(&self, offset: usize) -> Option<u32> {
        let p = self.at(offset, 4)?;
        // SAFETY: [p, p + 4) lies inside the packet (`at`).
        Some(unsafe { be32_at(p) })
    }

    /// The option walk under `bpf_loop` (Linux 5.17+): the verifier checks
    /// the callback on its own instead of unrolling a data-dependent loop.
    #[inline(always)]
    fn walk_options(&self, walk: &mut OptionWalk) {
        let mut ctx = WalkCtx { pkt: self, walk };
        // SAFETY: the callback only dereferences `ctx`, which outlives the call.
        unsafe {
            bpf_loop(
                MAX_TCP_OPTIONS as u32,
                walk_step as *mut c_void,
                &mut ctx as *mut WalkCtx as *mut c_void,
                0,
            );
        }
    }
}

/// The big-endian 16-bit field at packet address `p`, in one 2-byte load
/// wherever it sits: the verifier allows misaligned packet access on CPUs
/// that do it efficiently (x86-64, arm64), which LLVM cannot know, so plain
/// Rust would read the bytes one by one.
///
/// # Safety
/// `[p, p + 2)` lies inside the packet, as `DirectPacket::at` proved.
#[inline(always)]
pub unsafe fn be16_at(p: usize) -> u16 {
    let v: u64;
    // SAFETY: the caller's.
    unsafe { asm!("{v} = *(u16 *)({p} + 0)", v = out(reg) v, p = in(reg) p, options(readonly, nostack, preserves_flags)) };
    u16::from_be(v as u16)
}

/// The big-endian 32-bit field at packet address `p` (as `be16_at`).
///
/// # Safety
/// `[p, p + 4)` lies inside the packet, as `DirectPacket::at` proved.
#[inline(always)]
pub unsafe fn be32_at(p: usize) -> u32 {
    let v: u64;
    // SAFETY: the caller's.
    unsafe { asm!("{v} = *(u32 *)({p} + 0)", v = out(reg) v, p = in(reg) p, options(readonly, nostack, preserves_flags)) };
    u32::from_be(v as u32)
}

struct WalkCtx {
    pkt: *const DirectPacket,
    walk: *mut OptionWalk,
}

/// `bpf_loop` callback: 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the WalkCtx passed to bpf_loop above, whose pointers
    // point into the caller's live stack frame.
    let ctx = unsafe { &mut *(ctx as *mut WalkCtx) };
    let (pkt, walk) = unsafe { (&*ctx.pkt, &mut *ctx.walk) };
    if walk.step(pkt) { 0 } else { 1 }
}
