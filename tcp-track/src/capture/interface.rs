//! The interfaces a capture declares: one for a pcap file, any number per
//! section for pcapng, each with its link type and timestamp unit.

use super::link::LinkType;

/// An interface packets were captured on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its index in the pcapng section (packets name it); 0 in a pcap file.
    pub index: u32,
    /// The pcapng `if_name` option (`tcpdump -i eth0` writes "eth0"); pcap
    /// files name no interface.
    pub name: Option<String>,
    /// The link-type code as the file declares it.
    pub link_code: u32,
    /// What the code means here, `None` when its frames cannot be tracked.
    pub link: Option<LinkType>,
    /// Longest capture per packet the writer promised (0: no limit).
    pub snaplen: u32,
    /// How the pcapng timestamps of this interface count time.
    pub timestamps: Timestamps,
}

/// The pcapng `if_tsresol` and `if_tsoffset` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamps {
    /// High bit clear: a tick is 10^-n seconds; set: 2^-n seconds. The
    /// default, 6, is microseconds.
    pub resolution: u8,
    /// Seconds added to every timestamp.
    pub offset_s: u64,
}

impl Default for Timestamps {
    fn default() -> Self {
        Timestamps { resolution: 6, offset_s: 0 }
    }
}

impl Timestamps {
    /// `ticks` in nanoseconds since the epoch, saturating (a timestamp past
    /// the year 2554 is damage, not a reason to panic).
    pub fn to_ns(self, ticks: u64) -> u64 {
        const NS: u128 = 1_000_000_000;
        let ticks = ticks as u128;
        let exp = (self.resolution & 0x7f) as u32;
        let ns = if self.resolution & 0x80 != 0 {
            // ticks < 2^64 and NS < 2^30: the product fits, and exp ≤ 127.
            (ticks * NS) >> exp
        } else if exp <= 9 {
            ticks * 10u128.pow(9 - exp)
        } else if exp - 9 <= 38 {
            ticks / 10u128.pow(exp - 9)
        } else {
            0
        };
        let ns = ns + self.offset_s as u128 * NS;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}
