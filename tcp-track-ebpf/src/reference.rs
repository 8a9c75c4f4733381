//! The benchmark's reference: the least any XDP flow tracker must do per
//! segment, so that `cargo xtask bench` can state the tracker's cost as a
//! ratio to it, measured in the same run (noise cancels). Never attached
//! by the daemon; its map has one entry unless the benchmark sizes it.
//!
//! It parses Ethernet (no VLAN), IPv4 (any IHL) and TCP with one bounds
//! check per header, builds the same canonical 4-tuple key as the tracker
//! (`FlowKeyV4`: lower endpoint first), does one lookup in an LRU hash of
//! the same value size as the tracker's flow table, and updates the record
//! it finds in place (or inserts one on a miss): a floor, not a tracker.
//!
//! `tcp_track_reference_sets` does the same with a set-associative table
//! of our own instead of the LRU hash (`tcp_track_common::refsets`: two
//! candidate sets of eight ways in an array, the second read only when the
//! first has spilled into it), so that the benchmark shows what such a
//! table would cost per segment next to the LRU hash.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, LruHashMap},
    programs::XdpContext,
    Global,
};
use tcp_track_common::{
    flow::{FlowKeyV4, FlowRecord},
    refsets::{self, SetV4},
};

/// Sized by the benchmark like the tracker's `FLOWS_V4`.
#[map]
pub static REFERENCE_FLOWS: LruHashMap<FlowKeyV4, FlowRecord> = LruHashMap::with_max_entries(1, 0);

/// Sized by the benchmark: as many ways as `REFERENCE_FLOWS` has entries.
#[map]
pub static REFERENCE_SETS: Array<SetV4> = Array::with_max_entries(1, 0);

/// Number of `REFERENCE_SETS` minus one (a power of two), set by the benchmark.
#[unsafe(no_mangle)]
pub static REFERENCE_SET_MASK: Global<u32> = Global::new(0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPPROTO_TCP: u8 = 6;

#[xdp]
pub fn tcp_track_reference(ctx: XdpContext) -> u32 {
    // Whatever happens, the frame goes on: the verdict is not the point.
    let _ = reference(&ctx);
    xdp_action::XDP_PASS
}

#[xdp]
pub fn tcp_track_reference_sets(ctx: XdpContext) -> u32 {
    let _ = reference_sets(&ctx);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn reference(ctx: &XdpContext) -> Option<()> {
    let (key, seq) = key_of(ctx)?;
    match REFERENCE_FLOWS.get_ptr_mut(&key) {
        Some(rec) => {
            // SAFETY: a map value, valid for this program run (RCU).
            touch(unsafe { &mut *rec }, seq);
        }
        None => {
            let _ = REFERENCE_FLOWS.insert(&key, &FlowRecord::default(), 0);
        }
    }
    Some(())
}

#[inline(always)]
fn reference_sets(ctx: &XdpContext) -> Option<()> {
    let (key, seq) = key_of(ctx)?;
    let mask = REFERENCE_SET_MASK.load();
    let (a, b) = (refsets::set_of(&key, 0, mask), refsets::set_of(&key, 1, mask));
    // SAFETY (both sets): map values, valid for this program run (RCU);
    // one reference to each at a time.
    let first = unsafe { &mut *REFERENCE_SETS.get_ptr_mut(a)? };
    if let Some(rec) = refsets::find_mut(first, &key) {
        touch(rec, seq);
        return Some(());
    }
    // The second set only if the first ever sent a flow there.
    if a != b && refsets::reads_second(first) {
        let second = unsafe { &mut *REFERENCE_SETS.get_ptr_mut(b)? };
        if let Some(rec) = refsets::find_mut(second, &key) {
            touch(rec, seq);
            return Some(());
        }
    }
    let second = if a == b { None } else { Some(unsafe { &mut *REFERENCE_SETS.get_ptr_mut(b)? }) };
    refsets::place(first, second, &key, &FlowRecord::default());
    Some(())
}

/// What both references do to the record they find.
#[inline(always)]
fn touch(rec: &mut FlowRecord, seq: u32) {
    rec.packets[0] = rec.packets[0].wrapping_add(1);
    rec.last_end = seq;
}

/// The segment's canonical key and sequence number, for an IPv4 TCP frame.
#[inline(always)]
fn key_of(ctx: &XdpContext) -> Option<(FlowKeyV4, u32)> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETH_HLEN + 20 > end {
        return None;
    }
    // SAFETY (every read below): inside [start, end), checked just before.
    let ethertype = u16::from_be(unsafe { core::ptr::read_unaligned((start + 12) as *const u16) });
    let ip = start + ETH_HLEN;
    let (vihl, proto) = unsafe { (*(ip as *const u8), *((ip + 9) as *const u8)) };
    if ethertype != ETH_P_IP || proto != IPPROTO_TCP {
        return None;
    }
    let tcp = ip + ((vihl & 0x0f) as usize) * 4;
    if tcp + 20 > end {
        return None;
    }
    let saddr = unsafe { core::ptr::read_unaligned((ip + 12) as *const [u8; 4]) };
    let daddr = unsafe { core::ptr::read_unaligned((ip + 16) as *const [u8; 4]) };
    let sport = u16::from_be(unsafe { core::ptr::read_unaligned(tcp as *const u16) });
    let dport = u16::from_be(unsafe { core::ptr::read_unaligned((tcp + 2) as *const u16) });
    let seq = u32::from_be(unsafe { core::ptr::read_unaligned((tcp + 4) as *const u32) });
    // Address bytes, then port, as `flow::direction` orders endpoints.
    let (s, d) = (u32::from_be_bytes(saddr), u32::from_be_bytes(daddr));
    let key = if s < d || (s == d && sport <= dport) {
        FlowKeyV4 { lo_addr: saddr, hi_addr: daddr, lo_port: sport, hi_port: dport }
    } else {
        FlowKeyV4 { lo_addr: daddr, hi_addr: saddr, lo_port: dport, hi_port: sport }
    };
    Some((key, seq))
}
