//! The daemon's pinned state in bpffs: where it lives, what is in it, and
//! whether a new daemon may adopt it.
//!
//! One directory per daemon instance under the state directory (default
//! `/sys/fs/bpf/tcp-track`), named after its interfaces (`eth1`,
//! `eth1+eth2`), with `@net<inode>` added when the daemon runs in a network
//! namespace other than the first one (two namespaces may both have a
//! `veth0`). It holds the maps the kernel programs keep their state in
//! (`PINNED_MAPS`: the four flow tables, the counters, the event ring
//! buffer, `STATE_INFO`, the layout record of
//! `tcp_track_common::pinned`, and the hooks' prog arrays `FULL_XDP` and
//! `FULL_TC`) and, when the daemon keeps its state
//! (`--keep-state`), its links (`xdp@IF`, `tc@IF`), which keep the programs
//! attached while no daemon runs.
//!
//! As Cilium does with its conntrack maps, a daemon checks what it finds
//! before it uses it (Cilium compares each pinned map's type, key and value
//! sizes and capacity, and removes a map that differs): here the layout
//! record and the tables' capacities must match this build and this
//! configuration exactly, or the state is reported and replaced.

use std::{
    ffi::CString,
    fmt, fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use aya::maps::{Array, MapData, MapError};
use tcp_track_common::pinned::{Layout, StateInfo, KEEP_YES};
use thiserror::Error;

/// bpffs's `f_type` (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The maps pinned in an instance's directory, by their names in the
/// object. The others (per-CPU scratch, the liberal interfaces, aya-log's
/// buffer) belong to one load and are made afresh.
pub const PINNED_MAPS: [&str; 11] = ["ESTABLISHED_V4", "ESTABLISHED_V6", "STASH_V4", "STASH_V6", "HALF_OPEN_V4", "HALF_OPEN_V6", "COUNTERS", "EVENTS", STATE_INFO, FULL_XDP, FULL_TC];

/// The prog arrays through which each hook tail-calls its full path
/// (`loader::XDP_FULL_PROGRAM`, `loader::TC_FULL_PROGRAM`, slot 0). Pinned
/// because the kernel empties a prog array when no file or pin refers to it
/// any more: the hooks a stopped daemon kept attached would lose their full
/// path (every SYN, FIN and RST, all of IPv6) with the daemon's files.
pub const FULL_XDP: &str = "FULL_XDP";
pub const FULL_TC: &str = "FULL_TC";

/// The map holding the layout record.
pub const STATE_INFO: &str = "STATE_INFO";

#[derive(Debug, Error)]
pub enum PinError {
    #[error("{dir}: not on a BPF file system (bpffs): mount one with `mkdir -p {mount} && mount -t bpf bpf {mount}` (as root), or choose another --state-dir")]
    NotBpffs { dir: PathBuf, mount: PathBuf },
    #[error("{dir}: {source} (creating the state directory needs root or write access to the bpffs mount)")]
    Create { dir: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Map { path: PathBuf, source: MapError },
    #[error("{dir}: removing the pinned state failed: {source}")]
    Remove { dir: PathBuf, source: io::Error },
}

/// One instance's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    pub path: PathBuf,
}

/// What an instance's directory holds, as a starting daemon sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Nothing pinned.
    Nothing,
    /// A state of this layout and these capacities, not in use.
    Adoptable(StateInfo),
    /// A state that must not be read: why, in one phrase.
    Incompatible(String),
    /// A state in use by a running daemon (its pid).
    InUse(u32),
}

/// Which hook a link attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    TcEgress,
}

impl StateDir {
    pub fn new(base: &Path, instance: &str) -> StateDir {
        StateDir { path: base.join(instance) }
    }

    pub fn map_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn link_path(&self, hook: Hook, iface: &str) -> PathBuf {
        let prefix = match hook {
            Hook::Xdp => "xdp",
            Hook::TcEgress => "tc",
        };
        self.path.join(format!("{prefix}@{iface}"))
    }

    /// Make the directory (and the state directory above it), on bpffs.
    pub fn create(&self) -> Result<(), PinError> {
        let base = self.path.parent().unwrap_or(&self.path);
        // The nearest ancestor that exists must be bpffs (or be where one
        // is mounted): a directory made on another file system could not
        // hold pins.
        let mut existing = base;
        while !existing.exists() {
            existing = existing.parent().unwrap_or(Path::new("/"));
        }
        if !is_bpffs(existing) {
            // Where systemd mounts it at boot, if the state lives there.
            let standard = Path::new("/sys/fs/bpf");
            let mount = if base.starts_with(standard) { standard } else { base };
            return Err(PinError::NotBpffs { dir: base.to_path_buf(), mount: mount.to_path_buf() });
        }
        fs::create_dir_all(&self.path).map_err(|source| PinError::Create { dir: self.path.clone(), source })
    }

    /// Whether a layout record is pinned here.
    pub fn exists(&self) -> bool {
        self.map_path(STATE_INFO).exists()
    }

    /// The pinned layout record.
    pub fn read_info(&self) -> Result<StateInfo, PinError> {
        let path = self.map_path(STATE_INFO);
        let map = MapData::from_pin(&path).map_err(|source| PinError::Map { path: path.clone(), source })?;
        // A record of another size is another layout: read what fits.
        let mut info = StateInfo::default();
        let size = map.info().map(|i| i.value_size() as usize).unwrap_or(0);
        if size != std::mem::size_of::<StateInfo>() {
            info.layout.version = u32::MAX;
            info.layout.record_size = size as u32;
            return Ok(info);
        }
        let array: Array<MapData, StateInfo> = Array::try_from(aya::maps::Map::Array(map)).map_err(|source| PinError::Map { path: path.clone(), source })?;
        array.get(&0, 0).map_err(|source| PinError::Map { path, source })
    }

    /// Write the layout record (the map must be pinned already: the
    /// loader pins it with the others).
    pub fn write_info(&self, info: &StateInfo) -> Result<(), PinError> {
        let path = self.map_path(STATE_INFO);
        let map = MapData::from_pin(&path).map_err(|source| PinError::Map { path: path.clone(), source })?;
        let mut array: Array<MapData, StateInfo> = Array::try_from(aya::maps::Map::Array(map)).map_err(|source| PinError::Map { path: path.clone(), source })?;
        array.set(0, info, 0).map_err(|source| PinError::Map { path, source })
    }

    /// What a daemon starting with tables of `max_flows` flows and
    /// `half_open_set_mask` finds here.
    pub fn inspect(&self, max_flows: u32, half_open_set_mask: u32) -> Result<Found, PinError> {
        if !self.exists() {
            return Ok(if self.has_pins() { Found::Incompatible("pins without a layout record".into()) } else { Found::Nothing });
        }
        let info = self.read_info()?;
        if info.owner_pid != 0 && daemon_alive(info.owner_pid) {
            return Ok(Found::InUse(info.owner_pid));
        }
        Ok(match compatibility(&info, max_flows, half_open_set_mask) {
            Some(why) => Found::Incompatible(why),
            None => Found::Adoptable(info),
        })
    }

    /// Whether anything is pinned here.
    fn has_pins(&self) -> bool {
        fs::read_dir(&self.path).map(|mut d| d.next().is_some()).unwrap_or(false)
    }

    /// Unpin everything (maps are freed once no program or process holds
    /// them; links detach their programs) and remove the directory, and
    /// the state directory above it if it is left empty. Returns how many
    /// pins were removed; a directory already gone is 0.
    pub fn remove(&self) -> Result<usize, PinError> {
        let err = |source| PinError::Remove { dir: self.path.clone(), source };
        let entries = match fs::read_dir(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(err(e)),
        };
        let mut n = 0;
        for entry in entries {
            fs::remove_file(entry.map_err(err)?.path()).map_err(err)?;
            n += 1;
        }
        fs::remove_dir(&self.path).map_err(err)?;
        if let Some(base) = self.path.parent() {
            // Another instance's directory keeps it: fine.
            let _ = fs::remove_dir(base);
        }
        Ok(n)
    }
}

impl fmt::Display for StateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

/// Why pinned state of `info` cannot be read by this build with these
/// table sizes, if it cannot.
pub fn compatibility(info: &StateInfo, max_flows: u32, half_open_set_mask: u32) -> Option<String> {
    let (found, ours) = (info.layout, Layout::current());
    if found.magic != ours.magic {
        return Some("state of an unknown format found".into());
    }
    if found != ours {
        return Some(format!(
            "state of layout {} found (flow record {} bytes, event {} bytes); this tcp-track reads layout {} ({} and {} bytes)",
            found.version, found.record_size, found.event_size, ours.version, ours.record_size, ours.event_size
        ));
    }
    if info.max_flows != max_flows || info.half_open_set_mask != half_open_set_mask {
        return Some(format!(
            "state of tables sized for {} established and {} half-open flows found; this daemon asks for {} and {} (--max-flows, --max-half-open)",
            info.max_flows,
            (u64::from(info.half_open_set_mask) + 1) * u64::from(tcp_track_common::halfopen::WAYS),
            max_flows,
            (u64::from(half_open_set_mask) + 1) * u64::from(tcp_track_common::halfopen::WAYS),
        ));
    }
    None
}

/// A fresh record for a daemon that owns the state now.
pub fn owner_info(seed: u32, set_mask: u32, max_flows: u32, keep: bool) -> StateInfo {
    StateInfo {
        layout: Layout::current(),
        half_open_seed: seed,
        half_open_set_mask: set_mask,
        max_flows,
        keep: u32::from(keep) * KEEP_YES,
        owner_pid: std::process::id(),
        events_lost_at_exit: 0,
    }
}

/// The instance directory's name for a daemon watching `interfaces`.
pub fn instance_name(interfaces: &[String]) -> String {
    let mut name = interfaces.join("+");
    if let Some(ns) = foreign_netns() {
        name.push_str(&format!("@net{ns}"));
    }
    name
}

/// The inode of this process's network namespace, when it is not the
/// first process's (`None` in the initial namespace, or when unknown).
fn foreign_netns() -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let ours = fs::metadata("/proc/self/ns/net").ok()?.ino();
    let first = fs::metadata("/proc/1/ns/net").ok()?.ino();
    (ours != first).then_some(ours)
}

/// Every instance directory under `base` (sorted by name).
pub fn instances(base: &Path) -> io::Result<Vec<StateDir>> {
    let mut dirs: Vec<StateDir> = fs::read_dir(base)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| StateDir { path: e.path() })
        .collect();
    dirs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(dirs)
}

/// The interfaces an instance's directory name says it watches.
pub fn interfaces_of(dir: &StateDir) -> Vec<String> {
    let name = dir.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let ifaces = name.split('@').next().unwrap_or_default();
    ifaces.split('+').filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Whether `path` is on bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return false };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a statfs buffer.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Whether `pid` is a running tcp-track (not this process): a pid left by
/// a killed daemon may have been reused by another program.
pub fn daemon_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end().starts_with("tcp-track"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> StateInfo {
        owner_info(7, 4095, 65536, true)
    }

    #[test]
    fn the_same_layout_and_sizes_are_compatible() {
        assert_eq!(compatibility(&info(), 65536, 4095), None);
    }

    #[test]
    fn another_layout_version_is_named() {
        let mut i = info();
        i.layout.version = 99;
        let why = compatibility(&i, 65536, 4095).unwrap();
        assert!(why.starts_with("state of layout 99 found"), "{why}");
    }

    #[test]
    fn another_record_size_is_incompatible_even_with_the_same_version() {
        let mut i = info();
        i.layout.record_size += 8;
        assert!(compatibility(&i, 65536, 4095).unwrap().contains("flow record 104 bytes"));
    }

    #[test]
    fn other_table_sizes_are_incompatible() {
        let why = compatibility(&info(), 1000, 4095).unwrap();
        assert!(why.contains("65536 established and 16384 half-open") && why.contains("asks for 1000 and 16384"), "{why}");
        assert!(compatibility(&info(), 65536, 1023).is_some());
    }

    #[test]
    fn garbage_is_an_unknown_format() {
        assert_eq!(compatibility(&StateInfo::default(), 65536, 4095).unwrap(), "state of an unknown format found");
    }

    #[test]
    fn instance_names_and_their_interfaces() {
        let dir = StateDir::new(Path::new("/sys/fs/bpf/tcp-track"), "eth1+eth2@net4026532");
        assert_eq!(interfaces_of(&dir), ["eth1", "eth2"]);
        assert_eq!(dir.link_path(Hook::Xdp, "eth1"), Path::new("/sys/fs/bpf/tcp-track/eth1+eth2@net4026532/xdp@eth1"));
    }

    #[test]
    fn this_process_is_no_other_daemon() {
        assert!(!daemon_alive(std::process::id()));
    }
}
