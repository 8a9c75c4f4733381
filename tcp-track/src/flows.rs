//! `tcp-track flows`: every connection in the pinned tables of a running
//! daemon (or of a state kept for the next one), like `conntrack -L` and
//! `ss -tan`, with filters by state, address, port, side and interface.
//!
//! The tables are read, never written: the established sets through a
//! read of their mapping and the stash key by key, the half-open tables
//! set by set (scans: the keyed hash that places a flow is not needed to
//! list it).

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use tcp_track_common::{
    conn::{self, ConnSummary},
    estab::{EstSetV4, EstSetV6},
    flow::{picked_up, FlowKeyV4, FlowKeyV6, FlowRecord, ORIGIN_MIDSTREAM, ORIGIN_SYN, ORIGIN_SYN_ACK},
    halfopen::{Set, SetV4, SetV6, WAYS},
    parse::{FAMILY_IPV4, FAMILY_IPV6},
    state::endpoint_state,
};
use thiserror::Error;

use crate::{
    config::Format,
    established::Established,
    events::oriented,
    filter::{any, Filter},
    pins::{self, StateDir},
    tables::{Table, NAMES},
    vocab::{ConnState, EndpointState},
};

#[derive(Debug, Error)]
pub enum FlowsError {
    #[error("no pinned state in {dir}: no tcp-track daemon pins its tables there (is one running? `tcp-track run` pins under --state-dir, default /sys/fs/bpf/tcp-track)")]
    NothingPinned { dir: PathBuf },
    #[error("{dir}: not on a BPF file system, so nothing can be pinned there (`mount -t bpf bpf {dir}`, then start the daemon)")]
    NotBpffs { dir: PathBuf },
    #[error("no instance {name:?} in {dir} (instances there: {found})")]
    NoInstance { name: String, dir: PathBuf, found: String },
    #[error("{path}: permission denied (reading pinned maps needs root, or CAP_BPF and read access to the pins)")]
    Permission { path: PathBuf },
    #[error("{dir}: {why}; list it with the tcp-track that pinned it")]
    Incompatible { dir: PathBuf, why: String },
    #[error("{path}: {source}")]
    Map { path: PathBuf, source: MapError },
    #[error("{0}")]
    Pin(#[from] pins::PinError),
}

/// A state to select: a connection state as conntrack names it
/// (`ESTABLISHED`, `TIME_WAIT`), or an endpoint's as `ss` does (`ESTAB`,
/// `TIME-WAIT`: either endpoint in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateFilter {
    Conn(ConnState),
    Endpoint(EndpointState),
}

impl FromStr for StateFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let up = s.to_ascii_uppercase();
        if let Some(c) = ConnState::ALL.iter().find(|c| c.as_str() == up) {
            return Ok(StateFilter::Conn(*c));
        }
        if let Some(e) = EndpointState::ALL.iter().find(|e| e.as_str() == up) {
            return Ok(StateFilter::Endpoint(*e));
        }
        let conn: Vec<&str> = ConnState::ALL.iter().map(|c| c.as_str()).collect();
        let ep: Vec<&str> = EndpointState::ALL.iter().map(|e| e.as_str()).collect();
        Err(format!("{s:?}: a connection state ({}) or an endpoint state as ss names it ({})", conn.join(", "), ep.join(", ")))
    }
}

/// What to list: the endpoint filter shared with `run` and `read`, and
/// the listing's own, by state and interface. Filters of one kind are
/// alternatives (any may match); filters of different kinds must all match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub states: Vec<StateFilter>,
    pub endpoints: Filter,
    /// Flows of the daemon watching one of these interfaces.
    pub ifaces: Vec<String>,
}

impl Selection {
    pub fn matches(&self, f: &Flow) -> bool {
        any(&self.states, |s| match s {
            StateFilter::Conn(c) => *c == f.state,
            StateFilter::Endpoint(e) => *e == f.client_state || *e == f.server_state,
        }) && self.endpoints.matches(f.client, f.server)
    }
}

/// One tracked connection, as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub table: Table,
    pub state: ConnState,
    pub client_state: EndpointState,
    pub server_state: EndpointState,
    pub origin: u8,
    /// Seconds since its first segment, and since its last one.
    pub age_s: f64,
    pub idle_s: f64,
    pub summary: ConnSummary,
}

impl Flow {
    /// The flow a table entry holds, at `now_ns` (the kernel's monotonic clock).
    pub fn of(family: u8, lo: (&[u8; 16], u16), hi: (&[u8; 16], u16), rec: &FlowRecord, table: Table, now_ns: u64) -> Flow {
        let (client, server) = oriented(family, lo, hi, rec.initiator);
        let c = rec.initiator & 1;
        let secs = |ns: u64| ns as f64 / 1e9;
        let age_s = if rec.first_ns == 0 { 0.0 } else { secs(now_ns.saturating_sub(rec.first_ns)) };
        Flow {
            client,
            server,
            table,
            state: ConnState::from_raw(rec.state),
            client_state: EndpointState::from_raw(endpoint_state(rec, c)),
            server_state: EndpointState::from_raw(endpoint_state(rec, c ^ 1)),
            origin: rec.origin,
            age_s,
            // `last_seen` is kept to 2^20 ns: never idle longer than old.
            idle_s: secs(now_ns.saturating_sub(conn::last_seen_ns(rec, now_ns))).min(if rec.first_ns == 0 { f64::MAX } else { age_s }),
            summary: ConnSummary::of(rec),
        }
    }

    fn origin_name(&self) -> &'static str {
        match self.origin {
            ORIGIN_SYN => "syn",
            ORIGIN_SYN_ACK => "syn_ack",
            ORIGIN_MIDSTREAM => "midstream",
            _ => "unknown",
        }
    }

    fn table_name(&self) -> &'static str {
        match self.table {
            Table::Established => "established",
            Table::HalfOpen => "half_open",
        }
    }
}

/// One instance's pinned tables, opened for reading.
pub struct PinnedTables {
    pub dir: StateDir,
    /// The interfaces its daemon watches (from the directory's name).
    pub ifaces: Vec<String>,
    v4: Established<MapData, EstSetV4>,
    v6: Established<MapData, EstSetV6>,
    half_v4: Array<MapData, SetV4>,
    half_v6: Array<MapData, SetV6>,
}

impl PinnedTables {
    /// Open an instance's tables, after checking their layout.
    pub fn open(dir: StateDir) -> Result<PinnedTables, FlowsError> {
        let info_path = dir.map_path(pins::STATE_INFO);
        let info = dir.read_info().map_err(|e| permission(&info_path, e))?;
        if let Some(why) = pins::compatibility(&info, info.max_flows, info.half_open_set_mask) {
            return Err(FlowsError::Incompatible { dir: dir.path.clone(), why });
        }
        let open = |name: &str| -> Result<MapData, FlowsError> {
            let path = dir.map_path(name);
            MapData::from_pin(&path).map_err(|source| match &source {
                MapError::SyscallError(e) if e.io_error.kind() == io::ErrorKind::PermissionDenied => FlowsError::Permission { path },
                _ => FlowsError::Map { path, source },
            })
        };
        let map_err = |name: &str| {
            let path = dir.map_path(name);
            move |source| FlowsError::Map { path, source }
        };
        let seed = info.half_open_seed;
        let (stash_v4, stash_v6) = (open(NAMES[2])?, open(NAMES[3])?);
        Ok(PinnedTables {
            v4: Established::new(open(NAMES[0])?, HashMap::try_from(Map::LruHashMap(stash_v4)).map_err(map_err(NAMES[2]))?, seed).map_err(map_err(NAMES[0]))?,
            v6: Established::new(open(NAMES[1])?, HashMap::try_from(Map::LruHashMap(stash_v6)).map_err(map_err(NAMES[3]))?, seed).map_err(map_err(NAMES[1]))?,
            half_v4: Array::try_from(Map::Array(open(NAMES[4])?)).map_err(map_err(NAMES[4]))?,
            half_v6: Array::try_from(Map::Array(open(NAMES[5])?)).map_err(map_err(NAMES[5]))?,
            ifaces: pins::interfaces_of(&dir),
            dir,
        })
    }

    /// Every flow in the four tables, at `now_ns`. An entry that goes
    /// away while it is read is skipped.
    pub fn scan(&self, now_ns: u64, mut each: impl FnMut(Flow)) {
        self.scan_records(|family, lo, hi, rec, table| each(Flow::of(family, lo, hi, rec, table, now_ns)));
    }

    /// Every entry of the four tables as stored: family, the key's `lo`
    /// and `hi` endpoints (addresses padded to 16 bytes), the record, and
    /// its table.
    pub fn scan_records(&self, mut each: impl FnMut(u8, (&[u8; 16], u16), (&[u8; 16], u16), &FlowRecord, Table)) {
        let pad4 = |a: [u8; 4]| {
            let mut x = [0u8; 16];
            x[..4].copy_from_slice(&a);
            x
        };
        self.v4.each(|k: &FlowKeyV4, rec| each(FAMILY_IPV4, (&pad4(k.lo_addr), k.lo_port), (&pad4(k.hi_addr), k.hi_port), rec, Table::Established));
        self.v6.each(|k: &FlowKeyV6, rec| each(FAMILY_IPV6, (&k.lo_addr, k.lo_port), (&k.hi_addr, k.hi_port), rec, Table::Established));
        for set in (0..self.half_v4.len()).filter_map(|i| self.half_v4.get(&i, 0).ok()) {
            for way in (0..WAYS).filter(|&w| set.born()[w as usize] != 0) {
                let k = set.key(way);
                each(FAMILY_IPV4, (&pad4(k.lo_addr), k.lo_port), (&pad4(k.hi_addr), k.hi_port), set.record(way), Table::HalfOpen);
            }
        }
        for set in (0..self.half_v6.len()).filter_map(|i| self.half_v6.get(&i, 0).ok()) {
            for way in (0..WAYS).filter(|&w| set.born()[w as usize] != 0) {
                let k = set.key(way);
                each(FAMILY_IPV6, (&k.lo_addr, k.lo_port), (&k.hi_addr, k.hi_port), set.record(way), Table::HalfOpen);
            }
        }
    }
}

fn permission(path: &Path, e: pins::PinError) -> FlowsError {
    match &e {
        pins::PinError::Map { source: MapError::SyscallError(s), .. } if s.io_error.kind() == io::ErrorKind::PermissionDenied => {
            FlowsError::Permission { path: path.to_path_buf() }
        }
        _ => FlowsError::Pin(e),
    }
}

/// The instances to list: the one named, or every one under `base`.
pub fn select(base: &Path, instance: Option<&str>) -> Result<Vec<StateDir>, FlowsError> {
    let nothing = || FlowsError::NothingPinned { dir: base.to_path_buf() };
    let all = match pins::instances(base) {
        Ok(all) => all,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Err(FlowsError::Permission { path: base.to_path_buf() }),
        Err(_) => {
            // Say why nothing can be there, when that is the reason.
            let mut existing = base;
            while !existing.exists() {
                existing = existing.parent().unwrap_or(Path::new("/"));
            }
            return Err(if pins::is_bpffs(existing) { nothing() } else { FlowsError::NotBpffs { dir: existing.to_path_buf() } });
        }
    };
    let all: Vec<StateDir> = all.into_iter().filter(StateDir::exists).collect();
    match instance {
        None if all.is_empty() => Err(nothing()),
        None => Ok(all),
        Some(name) => match all.iter().find(|d| d.path.file_name().is_some_and(|n| n == name)) {
            Some(d) => Ok(vec![d.clone()]),
            None if all.is_empty() => Err(nothing()),
            None => {
                let found: Vec<String> = all.iter().filter_map(|d| d.path.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
                Err(FlowsError::NoInstance { name: name.into(), dir: base.to_path_buf(), found: found.join(", ") })
            }
        },
    }
}

/// Whether the instance's tables are being kept up to date right now, in
/// a phrase for stderr when they are not.
pub fn staleness(dir: &StateDir) -> Option<String> {
    let info = dir.read_info().ok()?;
    match (info.owner_pid, info.keep == tcp_track_common::pinned::KEEP_YES) {
        (0, true) => Some(format!("{dir}: kept by a stopped daemon: its programs still track, no daemon reports")),
        (pid, _) if pid != 0 && !pins::daemon_alive(pid) => {
            Some(format!("{dir}: the daemon that pinned it (pid {pid}) is gone; these are the tables it left (`tcp-track detach` removes them)"))
        }
        _ => None,
    }
}

/// The flows `filter` selects in the instances under `base` (the one
/// named, or all), each with its instance's interfaces, sorted by server
/// then client: what `tcp-track flows` prints. Tables whose daemon is not
/// running are listed with a warning on stderr.
pub fn list(base: &Path, instance: Option<&str>, filter: &Selection, now_ns: u64) -> Result<Vec<(Flow, Arc<str>)>, FlowsError> {
    let mut listed = Vec::new();
    for dir in select(base, instance)? {
        let tables = PinnedTables::open(dir)?;
        if !filter.ifaces.is_empty() && !tables.ifaces.iter().any(|i| filter.ifaces.contains(i)) {
            continue;
        }
        if let Some(why) = staleness(&tables.dir) {
            log::warn!("{why}");
        }
        let iface: Arc<str> = tables.ifaces.join(",").into();
        tables.scan(now_ns, |f| {
            if filter.matches(&f) {
                listed.push((f, iface.clone()));
            }
        });
    }
    listed.sort_unstable_by_key(|(f, _)| (f.server, f.client));
    Ok(listed)
}

/// Print `flows` (already filtered), aligned text or JSON lines.
pub fn write_list<W: Write>(out: &mut W, format: Format, flows: &[(Flow, Arc<str>)]) -> io::Result<()> {
    match format {
        Format::Json => {
            for (f, iface) in flows {
                serde_json::to_writer(&mut *out, &json(f, iface))?;
                out.write_all(b"\n")?;
            }
        }
        Format::Text => {
            let header = [
                "STATE", "CLIENT", "SERVER", "CLIENT-STATE", "SERVER-STATE", "AGE", "IDLE", "PKTS>", "BYTES>", "PKTS<", "BYTES<",
                "RETRANS", "RST-DROP", "ORIGIN", "IFACE",
            ];
            let rows: Vec<[String; 15]> = flows.iter().map(|(f, iface)| text_row(f, iface)).collect();
            let mut width = header.map(str::len);
            for row in &rows {
                for (w, cell) in width.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            let line = |out: &mut W, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
                let mut s = String::new();
                for (i, cell) in cells.enumerate() {
                    if i > 0 {
                        s.push_str("  ");
                    }
                    s.push_str(&format!("{cell:<w$}", w = width[i]));
                }
                writeln!(out, "{}", s.trim_end())
            };
            line(out, &mut header.iter().copied())?;
            for row in &rows {
                line(out, &mut row.iter().map(String::as_str))?;
            }
        }
    }
    Ok(())
}

/// Flows per connection state (every state that has some), then the total.
pub fn write_counts<W: Write>(out: &mut W, format: Format, flows: &[(Flow, Arc<str>)]) -> io::Result<()> {
    let mut by_state: BTreeMap<u8, usize> = BTreeMap::new();
    for (f, _) in flows {
        *by_state.entry(f.state.raw()).or_default() += 1;
    }
    let rows = by_state.iter().map(|(s, n)| (ConnState::from_raw(*s).as_str(), *n)).chain(std::iter::once(("total", flows.len())));
    for (state, n) in rows {
        match format {
            Format::Json => writeln!(out, "{}", serde_json::json!({ "state": state, "flows": n }))?,
            Format::Text => writeln!(out, "{state:<12} {n}")?,
        }
    }
    Ok(())
}

/// A flow as a JSON object, the event stream's field names, in order.
#[derive(serde::Serialize)]
struct JsonFlow<'a> {
    iface: &'a str,
    client: SocketAddr,
    server: SocketAddr,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    picked_up: bool,
    origin: &'static str,
    table: &'static str,
    state: &'static str,
    client_state: &'static str,
    server_state: &'static str,
    age_s: f64,
    idle_s: f64,
    conn_state: &'static str,
    client_bytes: u64,
    server_bytes: u64,
    client_packets: u32,
    server_packets: u32,
    client_retransmits: u16,
    server_retransmits: u16,
    rst_dropped: u16,
}

fn json<'a>(f: &Flow, iface: &'a str) -> JsonFlow<'a> {
    let s = &f.summary;
    JsonFlow {
        iface,
        client: f.client,
        server: f.server,
        picked_up: picked_up(f.origin),
        origin: f.origin_name(),
        table: f.table_name(),
        state: f.state.as_str(),
        client_state: f.client_state.as_str(),
        server_state: f.server_state.as_str(),
        age_s: round3(f.age_s),
        idle_s: round3(f.idle_s),
        conn_state: conn::conn_state_name(s.conn_state),
        client_bytes: s.bytes[0],
        server_bytes: s.bytes[1],
        client_packets: s.packets[0],
        server_packets: s.packets[1],
        client_retransmits: s.retransmits[0],
        server_retransmits: s.retransmits[1],
        rst_dropped: s.rst_dropped,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn text_row(f: &Flow, iface: &str) -> [String; 15] {
    let s = &f.summary;
    [
        f.state.as_str().into(),
        f.client.to_string(),
        f.server.to_string(),
        f.client_state.as_str().into(),
        f.server_state.as_str().into(),
        Seconds(f.age_s).to_string(),
        Seconds(f.idle_s).to_string(),
        s.packets[0].to_string(),
        s.bytes[0].to_string(),
        s.packets[1].to_string(),
        s.bytes[1].to_string(),
        format!("{}/{}", s.retransmits[0], s.retransmits[1]),
        s.rst_dropped.to_string(),
        f.origin_name().into(),
        iface.into(),
    ]
}

/// `3.2s`, `12m05s`, `2h03m`: an age, readable.
struct Seconds(f64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.max(0.0);
        let whole = s as u64;
        match whole {
            0..60 => write!(f, "{s:.1}s"),
            60..3600 => write!(f, "{}m{:02}s", whole / 60, whole % 60),
            _ => write!(f, "{}h{:02}m", whole / 3600, whole % 3600 / 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn states_are_named_as_conntrack_or_as_ss() {
        assert_eq!("established".parse::<StateFilter>().unwrap(), StateFilter::Conn(ConnState::Established));
        assert_eq!("TIME-WAIT".parse::<StateFilter>().unwrap(), StateFilter::Endpoint(EndpointState::TimeWait));
        assert_eq!("time_wait".parse::<StateFilter>().unwrap(), StateFilter::Conn(ConnState::TimeWait));
        let err = "bogus".parse::<StateFilter>().unwrap_err();
        assert!(err.contains("ESTABLISHED") && err.contains("ESTAB"), "{err}");
    }

    fn flow(client: &str, server: &str, state: ConnState, cs: EndpointState, ss: EndpointState) -> Flow {
        Flow {
            client: ep(client),
            server: ep(server),
            table: Table::Established,
            state,
            client_state: cs,
            server_state: ss,
            origin: ORIGIN_SYN,
            age_s: 1.0,
            idle_s: 0.5,
            summary: ConnSummary::default(),
        }
    }

    #[test]
    fn states_and_endpoints_must_both_match() {
        let f = flow("198.18.0.1:40000", "198.18.0.2:443", ConnState::TimeWait, EndpointState::TimeWait, EndpointState::Closed);
        let mut sel = Selection { endpoints: Filter { ports: vec![80, 443], ..Filter::default() }, ..Selection::default() };
        assert!(sel.matches(&f));
        sel.states = vec![StateFilter::Conn(ConnState::Established)];
        assert!(!sel.matches(&f));
        sel.states.push(StateFilter::Endpoint(EndpointState::TimeWait));
        assert!(sel.matches(&f), "either endpoint in TIME-WAIT");
        sel.endpoints.servers = vec![":80".parse().unwrap()];
        assert!(!sel.matches(&f), "the server is on 443");
    }

    #[test]
    fn text_is_aligned_and_json_uses_the_event_fields() {
        let f = flow("198.18.0.1:40000", "198.18.0.2:443", ConnState::Established, EndpointState::Established, EndpointState::Established);
        let g = flow("[2001:db8::1]:40000", "[2001:db8::2]:80", ConnState::Established, EndpointState::Established, EndpointState::Established);
        let mut out = Vec::new();
        write_list(&mut out, Format::Text, &[(f.clone(), "veth0".into()), (g, "veth0".into())]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("STATE        CLIENT"), "{text}");
        let col = lines[0].find("SERVER ").unwrap();
        assert_eq!(&lines[1][col..col + 14], "198.18.0.2:443", "{text}");
        assert_eq!(&lines[2][col..col + 16], "[2001:db8::2]:80", "{text}");
        let mut out = Vec::new();
        write_list(&mut out, Format::Json, &[(f, "veth0".into())]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client"], "198.18.0.1:40000");
        assert_eq!(v["client_state"], "ESTAB");
        assert_eq!(v["state"], "ESTABLISHED");
        assert_eq!(v["iface"], "veth0");
        assert!(v.get("picked_up").is_none());
    }

    #[test]
    fn counts_per_state_then_the_total() {
        let e = flow("198.18.0.1:1", "198.18.0.2:2", ConnState::Established, EndpointState::Established, EndpointState::Established);
        let t = flow("198.18.0.1:3", "198.18.0.2:2", ConnState::TimeWait, EndpointState::TimeWait, EndpointState::Closed);
        let mut out = Vec::new();
        write_counts(&mut out, Format::Text, &[(e.clone(), "a".into()), (e, "a".into()), (t, "a".into())]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ESTABLISHED  2\nTIME_WAIT    1\ntotal        3\n");
    }

    #[test]
    fn ages_read_like_durations() {
        assert_eq!(Seconds(3.24).to_string(), "3.2s");
        assert_eq!(Seconds(725.0).to_string(), "12m05s");
        assert_eq!(Seconds(7380.0).to_string(), "2h03m");
    }
}
