//! Kernel timestamps (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) to wall-clock time.

use std::time::{Duration, SystemTime};

/// Reads CLOCK_MONOTONIC, the clock `bpf_ktime_get_ns` uses.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Maps monotonic nanoseconds to wall-clock time, anchored once at start-up
/// (so a wall-clock step while running does not reorder events).
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    wall: SystemTime,
    mono_ns: u64,
}

impl WallClock {
    pub fn now() -> Self {
        WallClock { wall: SystemTime::now(), mono_ns: monotonic_ns() }
    }

    pub fn anchored(wall: SystemTime, mono_ns: u64) -> Self {
        WallClock { wall, mono_ns }
    }

    pub fn wall_time(&self, mono_ns: u64) -> SystemTime {
        if mono_ns >= self.mono_ns {
            self.wall + Duration::from_nanos(mono_ns - self.mono_ns)
        } else {
            self.wall - Duration::from_nanos(self.mono_ns - mono_ns)
        }
    }

    /// RFC 3339, UTC, microseconds: `2026-11-21T05:30:00.123456Z`.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        humantime::format_rfc3339_micros(self.wall_time(mono_ns)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_sides_of_the_anchor() {
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = WallClock::anchored(epoch, 10_000_000_000);
        assert_eq!(c.rfc3339(10_000_000_000), "2023-11-14T22:13:20.000000Z");
        assert_eq!(c.rfc3339(10_500_000_000), "2023-11-14T22:13:20.500000Z");
        assert_eq!(c.rfc3339(9_000_000_000), "2023-11-14T22:13:19.000000Z");
    }
}
