//! The kernel's flow tables as user space reads them: the established
//! tables (sets and stash, `established`) and the half-open tables
//! (set-associative arrays, `tcp_track_common::halfopen`), for IPv4 and
//! IPv6; and the reporter's view of them (`FlowLookup`), so that the
//! reporter itself never sees aya.

use std::{
    borrow::{Borrow, BorrowMut},
    os::fd::AsFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use aya::maps::{Array, HashMap, IterableMap, Map, MapData, MapError};
use tcp_track_common::{
    estab::{EstSetV4, EstSetV6},
    flow::{FlowKeyV4, FlowKeyV6, FlowRecord},
    halfopen::{find, set_of, Set, SetV4, SetV6, Words, WAYS},
    parse::FAMILY_IPV4,
    table::FlowKey,
};

use crate::{
    established::Established,
    report::{FlowId, FlowLookup},
};

/// Where the tables put a key: their hash seed, the half-open set mask and
/// the established one, chosen by the loader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLayout {
    pub seed: u32,
    pub set_mask: u32,
    pub established_mask: u32,
}

/// Which table holds a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Established,
    HalfOpen,
}

/// The four flow tables. `M` is `MapData` when the tables were taken out
/// of the loaded object (the daemon), `&MapData` when borrowed (tests,
/// benchmark).
pub struct FlowTables<M: Borrow<MapData>> {
    v4: Established<M, EstSetV4>,
    v6: Established<M, EstSetV6>,
    half_v4: Array<M, SetV4>,
    half_v6: Array<M, SetV6>,
    layout: TableLayout,
}

/// One kernel table's entries in use and capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFill {
    /// `established_v4`, `established_v6`, `half_open_v4`, `half_open_v6`.
    pub table: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// The tables' fill, counted once a second on a thread of its own: the
/// count walks the tables (a syscall per established entry and per
/// half-open set, tens of milliseconds for full tables), which the event
/// loop must not wait for. Stops when dropped.
pub struct FillCounter {
    latest: Arc<Mutex<Vec<TableFill>>>,
    stop: Arc<AtomicBool>,
}

impl FillCounter {
    /// Count `tables` now and then every `every`.
    pub fn start(tables: FlowTables<MapData>, every: Duration) -> FillCounter {
        let latest = Arc::new(Mutex::new(tables.fill()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (latest.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                thread::sleep(every);
                let fill = tables.fill();
                if let Ok(mut slot) = l.lock() {
                    *slot = fill;
                }
            }
        });
        FillCounter { latest, stop }
    }

    /// The last count.
    pub fn latest(&self) -> Vec<TableFill> {
        self.latest.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for FillCounter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The names of the six maps: established sets (v4, v6), stashes (v4,
/// v6), half-open sets (v4, v6).
pub const NAMES: [&str; 6] = ["ESTABLISHED_V4", "ESTABLISHED_V6", "STASH_V4", "STASH_V6", "HALF_OPEN_V4", "HALF_OPEN_V6"];

/// An established table's sets: an array (`Established` maps it; aya's
/// typed `Array` would read it a set per system call).
fn data(map: Map) -> Result<MapData, MapError> {
    match map {
        Map::Array(d) => Ok(d),
        _ => Err(not_an_array()),
    }
}

/// The same, borrowed.
fn data_ref(map: &Map) -> Result<&MapData, MapError> {
    match map {
        Map::Array(d) => Ok(d),
        _ => Err(not_an_array()),
    }
}

fn not_an_array() -> MapError {
    MapError::IoError(std::io::Error::new(std::io::ErrorKind::InvalidData, "an established table's sets are not an array map"))
}

impl FlowTables<MapData> {
    /// Take the tables out of a loaded object (for good).
    pub fn take(ebpf: &mut aya::Ebpf, layout: TableLayout) -> Result<Self, MapError> {
        let take = |name: &str| ebpf.take_map(name).ok_or_else(|| MapError::InvalidName { name: name.to_string() });
        let [e4, e6, s4, s6, h4, h6] = NAMES.map(take);
        FlowTables::of([data(e4?)?, data(e6?)?], (HashMap::try_from(s4?)?, HashMap::try_from(s6?)?), (Array::try_from(h4?)?, Array::try_from(h6?)?), layout)
    }

    /// The tables of six pinned maps (in `NAMES` order), their layout
    /// checked by the caller.
    pub fn from_pins(maps: [MapData; 6], layout: TableLayout) -> Result<Self, MapError> {
        let [e4, e6, s4, s6, h4, h6] = maps;
        let stashes = (HashMap::try_from(Map::LruHashMap(s4))?, HashMap::try_from(Map::LruHashMap(s6))?);
        FlowTables::of([e4, e6], stashes, (Array::try_from(Map::Array(h4))?, Array::try_from(Map::Array(h6))?), layout)
    }
}

impl<'a> FlowTables<&'a MapData> {
    /// Read the tables of a loaded object without taking them.
    pub fn borrow(ebpf: &'a aya::Ebpf, layout: TableLayout) -> Result<Self, MapError> {
        let map = |name: &str| ebpf.map(name).ok_or_else(|| MapError::InvalidName { name: name.to_string() });
        let [e4, e6, s4, s6, h4, h6] = NAMES.map(map);
        FlowTables::of([data_ref(e4?)?, data_ref(e6?)?], (HashMap::try_from(s4?)?, HashMap::try_from(s6?)?), (Array::try_from(h4?)?, Array::try_from(h6?)?), layout)
    }
}

impl<M: Borrow<MapData>> FlowTables<M> {
    fn of(sets: [M; 2], stashes: (HashMap<M, FlowKeyV4, FlowRecord>, HashMap<M, FlowKeyV6, FlowRecord>), half: (Array<M, SetV4>, Array<M, SetV6>), layout: TableLayout) -> Result<Self, MapError> {
        let ([e4, e6], (s4, s6), (half_v4, half_v6)) = (sets, stashes, half);
        Ok(FlowTables { v4: Established::new(e4, s4, layout.seed)?, v6: Established::new(e6, s6, layout.seed)?, half_v4, half_v6, layout })
    }
}

impl<M: Borrow<MapData>> FlowTables<M> {
    pub fn get_v4(&self, key: &FlowKeyV4) -> Option<(Table, FlowRecord)> {
        match self.v4.get(key) {
            Some(r) => Some((Table::Established, r)),
            None => find_in(&self.half_v4, key, self.layout).map(|(_, mut set, way)| (Table::HalfOpen, *set.record_mut(way))),
        }
    }

    pub fn get_v6(&self, key: &FlowKeyV6) -> Option<(Table, FlowRecord)> {
        match self.v6.get(key) {
            Some(r) => Some((Table::Established, r)),
            None => find_in(&self.half_v6, key, self.layout).map(|(_, mut set, way)| (Table::HalfOpen, *set.record_mut(way))),
        }
    }

    /// Half-open IPv4 entries in use, and the flows the table can hold.
    pub fn half_open_v4(&self) -> (usize, u32) {
        half_open_fill(&self.half_v4)
    }

    /// Half-open IPv6 entries in use, and the flows the table can hold.
    pub fn half_open_v6(&self) -> (usize, u32) {
        half_open_fill(&self.half_v6)
    }

    /// Established IPv4 flows, in the sets and in the stash (reads every
    /// set and walks the stash).
    pub fn established_v4(&self) -> (u64, u64) {
        self.v4.len()
    }

    /// Established IPv6 flows, in the sets and in the stash.
    pub fn established_v6(&self) -> (u64, u64) {
        self.v6.len()
    }

    /// The IPv4 established table itself (tests and the benchmark fill it).
    pub fn established_table_v4(&mut self) -> &mut Established<M, EstSetV4> {
        &mut self.v4
    }

    /// The same tables through handles of their own (duplicated fds), for
    /// another thread to read.
    pub fn reopen(&self) -> Result<FlowTables<MapData>, MapError> {
        fn dup(m: &MapData) -> Result<MapData, MapError> {
            let fd = m.fd().as_fd().try_clone_to_owned().map_err(|io_error| MapError::SyscallError(aya::sys::SyscallError { call: "dup", io_error }))?;
            MapData::from_fd(fd)
        }
        let ((e4, s4), (e6, s6)) = (self.v4.maps(), self.v6.maps());
        let maps = [dup(e4)?, dup(e6)?, dup(s4)?, dup(s6)?, dup(self.half_v4.map())?, dup(self.half_v6.map())?];
        FlowTables::from_pins(maps, self.layout)
    }

    /// Every table's entries and capacity (the established tables' sets
    /// and stash together).
    pub fn fill(&self) -> Vec<TableFill> {
        let (h4, c4) = self.half_open_v4();
        let (h6, c6) = self.half_open_v6();
        let ((s4, t4), (s6, t6)) = (self.established_v4(), self.established_v6());
        vec![
            TableFill { table: "established_v4", entries: s4 + t4, capacity: self.v4.capacity() },
            TableFill { table: "established_v6", entries: s6 + t6, capacity: self.v6.capacity() },
            TableFill { table: "half_open_v4", entries: h4 as u64, capacity: c4.into() },
            TableFill { table: "half_open_v6", entries: h6 as u64, capacity: c6.into() },
        ]
    }
}

impl<M: BorrowMut<MapData>> FlowTables<M> {
    /// Forget a flow in whichever table holds it (gone already is fine).
    ///
    /// A half-open entry is freed by writing its whole set back, which can
    /// undo an entry the kernel wrote into another way of that set in the
    /// same microseconds; that flow's next handshake segment then starts it
    /// again (as picked up from its SYN-ACK). The daemon only frees entries
    /// it gave up on, so this is rare and never touches an established flow.
    pub fn remove_v4(&mut self, key: &FlowKeyV4) {
        self.v4.remove(key);
        if let Some((i, mut set, way)) = find_in(&self.half_v4, key, self.layout) {
            set.clear(way);
            let _ = self.half_v4.set(i, set, 0);
        }
    }

    pub fn remove_v6(&mut self, key: &FlowKeyV6) {
        self.v6.remove(key);
        if let Some((i, mut set, way)) = find_in(&self.half_v6, key, self.layout) {
            set.clear(way);
            let _ = self.half_v6.set(i, set, 0);
        }
    }
}

/// A half-open table's entries in use (ways with a birth time), and the
/// flows it can hold.
fn half_open_fill<M: Borrow<MapData>, S: Set + aya::Pod>(table: &Array<M, S>) -> (usize, u32) {
    let sets = table.len();
    let used = (0..sets).filter_map(|i| table.get(&i, 0).ok()).map(|s| s.born().iter().filter(|&&b| b != 0).count()).sum();
    (used, sets * WAYS)
}

/// The set holding `key`, if any: (its index, a copy of it, the way).
fn find_in<M, S, K>(table: &Array<M, S>, key: &K, layout: TableLayout) -> Option<(u32, S, u32)>
where
    M: Borrow<MapData>,
    S: Set<Key = K> + aya::Pod,
    K: Words,
{
    let index = set_of(key, layout.seed, layout.set_mask);
    let set = table.get(&index, 0).ok()?;
    find(&set, key).map(|way| (index, set, way))
}

/// The kernel's flow tables, taken out of the loaded object: what the
/// running daemon's reporter reads.
pub type KernelFlows = FlowTables<MapData>;

impl<M: BorrowMut<MapData>> FlowLookup for FlowTables<M> {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord> {
        let found = if id.family == FAMILY_IPV4 { self.get_v4(&key_v4(id)) } else { self.get_v6(&key_v6(id)) };
        found.map(|(_, rec)| rec)
    }

    fn remove(&mut self, id: &FlowId) {
        if id.family == FAMILY_IPV4 {
            self.remove_v4(&key_v4(id));
        } else {
            self.remove_v6(&key_v6(id));
        }
    }

    fn open_flows(&self) -> Vec<(FlowId, FlowRecord)> {
        let mut out = Vec::new();
        self.v4.each(|k, r| out.push((id_of(k), *r)));
        self.v6.each(|k, r| out.push((id_of(k), *r)));
        half_open_flows(&self.half_v4, &mut out);
        half_open_flows(&self.half_v6, &mut out);
        out
    }
}

/// A key's `FlowId`.
pub(crate) fn id_of<K: FlowKey>(key: &K) -> FlowId {
    let (family, lo_addr, lo_port, hi_addr, hi_port) = key.endpoints();
    FlowId { family, lo_addr, hi_addr, lo_port, hi_port }
}

/// Every flow in a half-open table, appended to `out`.
fn half_open_flows<M: Borrow<MapData>, S: Set + aya::Pod>(table: &Array<M, S>, out: &mut Vec<(FlowId, FlowRecord)>)
where
    S::Key: FlowKey,
{
    for set in (0..table.len()).filter_map(|i| table.get(&i, 0).ok()) {
        for way in 0..WAYS {
            if set.born()[way as usize] != 0 {
                out.push((id_of(set.key(way)), *set.record(way)));
            }
        }
    }
}

pub(crate) fn key_v4(id: &FlowId) -> FlowKeyV4 {
    let (l, h) = (&id.lo_addr, &id.hi_addr);
    FlowKeyV4 { lo_addr: [l[0], l[1], l[2], l[3]], hi_addr: [h[0], h[1], h[2], h[3]], lo_port: id.lo_port, hi_port: id.hi_port }
}

pub(crate) fn key_v6(id: &FlowId) -> FlowKeyV6 {
    FlowKeyV6 { lo_addr: id.lo_addr, hi_addr: id.hi_addr, lo_port: id.lo_port, hi_port: id.hi_port }
}
