//! Indices of the counters the tracker keeps: per CPU in the kernel
//! programs (`COUNTERS` map), which the daemon sums over CPUs and prints on
//! stderr; in memory on the host (`host::HostTracker::counters`).

/// TCP segments parsed and handed to the tracker.
pub const TCP_SEGMENTS: u32 = 0;
/// Frames that were not TCP (other protocols, non-first fragments).
pub const NOT_TCP: u32 = 1;
/// Frames that claimed to be IP/TCP but were malformed (see `parse::Malformed`).
pub const MALFORMED: u32 = 2;
/// Flow entries created (half-open or, for flows picked up mid-stream, established).
pub const FLOWS_CREATED: u32 = 3;
/// Flow-map updates that failed (-ENOMEM, -EBUSY, ...): that segment was not tracked.
pub const MAP_UPDATE_FAILED: u32 = 4;
/// Events that could not be written because the ring buffer was full.
pub const EVENTS_LOST: u32 = 5;
/// Segments with a flag combination no conforming TCP sends (SYN+FIN, none, ...).
pub const INVALID_FLAGS: u32 = 6;

/// RSTs dropped by the RST policy.
pub const RST_DROPPED: u32 = 7;
/// RSTs with a bad TCP checksum: left to the stack, never judged.
pub const RST_BAD_CHECKSUM: u32 = 8;

/// Flows moved from the half-open table to the established one.
pub const FLOWS_PROMOTED: u32 = 9;

/// Flows that reached TIME_WAIT or were reset.
pub const FLOWS_CLOSED: u32 = 10;

/// Half-open flows evicted from a full set of the half-open table by a
/// newer SYN (a SYN flood, or a table too small: raise --max-half-open).
pub const HALF_OPEN_EVICTED: u32 = 11;

/// SYNs, SYN-ACKs and FINs without payload whose TCP checksum is wrong,
/// seen at XDP: the receiving stack discards them, so they are not tracked
/// (no half-open entry, no part in a SYN flood).
pub const BAD_CHECKSUM: u32 = 12;

/// Segments of known flows rejected for lying outside the window the
/// tracker knows (RFC 9293 §3.10.7.4), RSTs aside: on a strict interface,
/// what a capture point that misses segments (a tap, a mirror port) makes
/// of a long gap. None on a `--liberal-iface`.
pub const OUT_OF_WINDOW: u32 = 13;

/// Number of counters; the size of the `COUNTERS` array.
pub const COUNT: u32 = 14;

/// Human names, indexed like the constants above.
pub const NAMES: [&str; COUNT as usize] = [
    "tcp_segments",
    "not_tcp",
    "malformed",
    "flows_created",
    "map_update_failed",
    "events_lost",
    "invalid_flags",
    "rst_dropped",
    "rst_bad_checksum",
    "flows_promoted",
    "flows_closed",
    "half_open_evicted",
    "bad_checksum",
    "out_of_window",
];
