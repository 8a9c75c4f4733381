//! Ring-buffer records → events people and programs can read.

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime},
};

use serde::{ser::SerializeMap, Serialize, Serializer};
use tcp_track_common::{
    event::{
        ConnEnd, FlowEvent, DETAIL_DROPPED, DETAIL_DROP_JUSTIFIED, DETAIL_ISN_ADVANCED, DETAIL_SYNACK_INFERRED, EVENT_CONN_END,
    },
    flow::{picked_up, FlowRecord},
    parse::FAMILY_IPV4,
    tcp,
};
use thiserror::Error;

use crate::{
    clock::WallClock,
    vocab::{ConnState, EndpointState, EventKind, Hook, ResetClass},
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring-buffer record of {0} bytes, expected {expected}", expected = std::mem::size_of::<FlowEvent>())]
    BadSize(usize),
    #[error("connection record of {0} bytes, expected {expected}", expected = std::mem::size_of::<ConnEnd>())]
    BadConnSize(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
}

/// One line of output. The JSON schema is in the README; `output` writes it.
///
/// Built once per kernel event, so nothing in it is allocated on the common
/// path: the segment's fields are a plain struct, names are `&'static str`,
/// addresses stay addresses, vocabulary stays typed (`vocab`) and the
/// interface name is shared.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub ts: Timestamp,
    /// What the line is about; printed by its name.
    pub event: EventKind,
    pub iface: Arc<str>,
    /// The side that sent the first SYN (for a flow picked up mid-stream, a
    /// guess). Absent on events about a server rather than one connection
    /// (`syn_flood`, `syn_flood_ended`).
    pub client: Option<Endpoint>,
    pub server: SocketAddr,
    /// Present and true when the flow was first seen after its handshake.
    pub picked_up: bool,
    /// The fields of the segment that caused the event, if one did: first
    /// in the output.
    pub segment: Option<Segment>,
    /// The reporter's fields, in the order they were set: after the
    /// segment's.
    pub extra: Vec<(&'static str, FieldValue)>,
}

impl Event {
    /// An event with no fields yet.
    pub fn new(ts: Timestamp, event: EventKind, iface: Arc<str>, client: Option<Endpoint>, server: SocketAddr) -> Self {
        Event { ts, event, iface, client, server, picked_up: false, segment: None, extra: Vec::new() }
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        let mut found = None;
        self.visit_fields(&mut |k: &'static str, v: &FieldValue| {
            if found.is_none() && k == name {
                found = Some(v.clone());
            }
        });
        found
    }

    /// Set a reporter field: replaced in place if already set, else appended.
    pub fn set(&mut self, name: &'static str, value: impl Into<FieldValue>) {
        debug_assert!(
            self.segment.is_none_or(|s| !s.has_field(name)),
            "{name} is a segment field: setting it again would print the key twice"
        );
        let value = value.into();
        match self.extra.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v = value,
            None => self.extra.push((name, value)),
        }
    }

    /// Every field after the fixed ones, in output order: the segment's,
    /// then the reporter's.
    #[inline(always)]
    pub fn visit_fields(&self, sink: &mut impl FieldSink) {
        if let Some(s) = &self.segment {
            s.visit(sink);
        }
        for (k, v) in &self.extra {
            sink.value(k, v);
        }
    }

    /// The event as a JSON value, built the generic way with serde_json: the
    /// reference the fast writer in `output` is tested against. Fails only
    /// for a time past year 9999.
    pub fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("ts", &self.ts.to_string())?;
        map.serialize_entry("event", self.event.as_str())?;
        map.serialize_entry("iface", &*self.iface)?;
        if let Some(c) = &self.client {
            map.serialize_entry("client", &c.to_string())?;
        }
        map.serialize_entry("server", &self.server.to_string())?;
        if self.picked_up {
            map.serialize_entry("picked_up", &true)?;
        }
        let mut res = Ok(());
        self.visit_fields(&mut |k: &'static str, v: &FieldValue| {
            if res.is_ok() {
                res = map.serialize_entry(k, v);
            }
        });
        res?;
        map.end()
    }
}

/// A field's name, with its spelling in each output format made at
/// compile time (`key!`), so that a writer copies it in one piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// `,"name":`
    pub json: &'static str,
    /// `,"name":"`: the start of a string member.
    pub json_str: &'static str,
    /// ` name=`
    pub text: &'static str,
}

/// `key!("seq")`: the `Key` of a field named `seq`.
macro_rules! key {
    ($name:literal) => {
        $crate::events::Key {
            name: $name,
            json: concat!(",\"", $name, "\":"),
            json_str: concat!(",\"", $name, "\":\""),
            text: concat!(" ", $name, "="),
        }
    };
}

/// Where an event's fields go, one at a time and in output order: the
/// JSON and text writers, serde, a lookup by name. `Segment::visit` is the
/// one description of a segment's fields that they all read.
///
/// The writers take the typed methods, so that a segment's fields are
/// written without going through `FieldValue`; a sink that does not care
/// implements `value` alone, which any closure taking a name and a value
/// does.
pub trait FieldSink {
    /// Any field; the reporter's fields come this way.
    fn value(&mut self, name: &'static str, value: &FieldValue);

    /// A string of tcp-track's own vocabulary (nothing in it to escape).
    #[inline(always)]
    fn str(&mut self, key: Key, value: &'static str) {
        self.value(key.name, &FieldValue::Str(value));
    }

    #[inline(always)]
    fn uint(&mut self, key: Key, value: u64) {
        self.value(key.name, &FieldValue::UInt(value));
    }

    #[inline(always)]
    fn bool(&mut self, key: Key, value: bool) {
        self.value(key.name, &FieldValue::Bool(value));
    }
}

impl<F: FnMut(&'static str, &FieldValue)> FieldSink for F {
    fn value(&mut self, name: &'static str, value: &FieldValue) {
        self(name, value)
    }
}

/// A field's value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Str(&'static str),
    UInt(u64),
    /// Printed as serde_json prints an f64 (`60.0`; `null` if not finite).
    Float(f64),
    Bool(bool),
    /// Printed as a list of RFC 3339 strings.
    Times(Vec<Timestamp>),
}

impl FieldValue {
    pub fn as_str(&self) -> Option<&'static str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Str(s) => serializer.serialize_str(s),
            FieldValue::UInt(n) => serializer.serialize_u64(*n),
            FieldValue::Float(x) => serializer.serialize_f64(*x),
            FieldValue::Bool(b) => serializer.serialize_bool(*b),
            FieldValue::Times(ts) => serializer.collect_seq(ts.iter().map(|t| t.to_string())),
        }
    }
}

impl From<&'static str> for FieldValue {
    fn from(s: &'static str) -> Self {
        FieldValue::Str(s)
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> Self {
        FieldValue::Bool(b)
    }
}

impl From<f64> for FieldValue {
    fn from(x: f64) -> Self {
        FieldValue::Float(x)
    }
}

impl From<Vec<Timestamp>> for FieldValue {
    fn from(ts: Vec<Timestamp>) -> Self {
        FieldValue::Times(ts)
    }
}

macro_rules! uint_field {
    ($($t:ty),*) => {$(
        impl From<$t> for FieldValue {
            fn from(n: $t) -> Self {
                FieldValue::UInt(n as u64)
            }
        }
    )*};
}
uint_field!(u8, u16, u32, u64, usize);

// Comparisons with plain values, for tests and for callers that look at a
// field: `ev.field("reason").unwrap() == "abort"`.
impl PartialEq<str> for FieldValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == Some(other)
    }
}

impl PartialEq<&str> for FieldValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == Some(*other)
    }
}

impl PartialEq<bool> for FieldValue {
    fn eq(&self, other: &bool) -> bool {
        *self == FieldValue::Bool(*other)
    }
}

impl PartialEq<f64> for FieldValue {
    fn eq(&self, other: &f64) -> bool {
        *self == FieldValue::Float(*other)
    }
}

macro_rules! int_eq {
    ($($t:ty),*) => {$(
        impl PartialEq<$t> for FieldValue {
            fn eq(&self, other: &$t) -> bool {
                u64::try_from(*other).is_ok_and(|n| *self == FieldValue::UInt(n))
            }
        }
    )*};
}
int_eq!(i32, u32, u64, usize);

/// When an event happened, wall-clock. Printed as RFC 3339, UTC, with
/// microseconds (truncated): `2026-11-21T05:30:00.123456Z`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// Whole seconds and microseconds since the Unix epoch. Times before it
    /// (only a clock anchored in the past could make one) read as the epoch.
    pub fn unix_micros(&self) -> (u64, u32) {
        let d = self.0.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        (d.as_secs(), d.subsec_micros())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (secs, micros) = self.unix_micros();
        let t = SystemTime::UNIX_EPOCH + Duration::new(secs, micros * 1000);
        fmt::Display::fmt(&humantime::format_rfc3339_micros(t), f)
    }
}

/// A client as events name it: an endpoint, or for `time_wait_pressure`
/// only its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Socket(SocketAddr),
    Host(IpAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Socket(a) => a.fmt(f),
            Endpoint::Host(ip) => ip.fmt(f),
        }
    }
}

/// The fields of the segment that caused an event, kept as the kernel's
/// codes (an event is moved several times on its way out, so it is kept
/// small) and named when printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sent by the client (else by the server).
    pub from_client: bool,
    /// TCP flags.
    pub flags: u8,
    /// Where it was seen: XDP (`ingress`), TC (`egress`), a capture.
    pub hook: Hook,
    pub seq: u32,
    pub ack: u32,
    /// The connection's state after the segment.
    pub state: ConnState,
    /// Each endpoint's own state.
    pub client_state: EndpointState,
    pub server_state: EndpointState,
    /// `reset` events only.
    pub reset: Option<ResetFields>,
    /// `time_wait_reuse` only.
    pub isn_advanced: Option<bool>,
    /// Retransmission events only.
    pub retransmits: Option<u8>,
    /// The connection's SYN-ACK was never seen, only inferred (a liberal
    /// interface): printed as `synack: "inferred"`, only when true.
    pub synack_inferred: bool,
}

/// What a `reset` event adds to its segment's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetFields {
    /// The judgement, printed as `reason` (and `window`, `judged`).
    pub judgement: ResetClass,
    pub dropped: bool,
    pub drop_justified: bool,
}

impl Segment {
    pub fn from(&self) -> &'static str {
        if self.from_client { "client" } else { "server" }
    }

    /// Its fields in output order: the one list of them, for every sink.
    #[inline(always)]
    pub fn visit(&self, sink: &mut impl FieldSink) {
        sink.str(key!("from"), self.from());
        sink.str(key!("flags"), flag_names(self.flags));
        sink.str(key!("seen"), self.hook.as_str());
        sink.uint(key!("seq"), self.seq.into());
        sink.uint(key!("ack"), self.ack.into());
        sink.str(key!("state"), self.state.as_str());
        sink.str(key!("client_state"), self.client_state.as_str());
        sink.str(key!("server_state"), self.server_state.as_str());
        if let Some(r) = &self.reset {
            let (reason, window) = r.judgement.reason();
            if let Some(reason) = reason {
                sink.str(key!("reason"), reason);
            }
            if let Some(window) = window {
                sink.str(key!("window"), window);
            }
            sink.str(key!("action"), if r.dropped { "dropped" } else { "passed" });
            sink.bool(key!("drop_justified"), r.drop_justified);
            if r.judgement == ResetClass::Unjudged {
                sink.bool(key!("judged"), false);
            }
        }
        if let Some(adv) = self.isn_advanced {
            sink.bool(key!("isn_advanced"), adv);
        }
        if let Some(n) = self.retransmits {
            sink.uint(key!("retransmits"), n.into());
        }
        if self.synack_inferred {
            sink.str(key!("synack"), "inferred");
        }
    }

    fn has_field(&self, name: &str) -> bool {
        let mut found = false;
        self.visit(&mut |k: &'static str, _: &FieldValue| found |= k == name);
        found
    }
}

/// Decodes records, naming interfaces by the indexes we attached to.
pub struct Decoder {
    clock: WallClock,
    /// A few entries: a scan beats hashing.
    ifnames: Vec<(u32, Arc<str>)>,
}

impl Decoder {
    pub fn new(clock: WallClock, ifnames: HashMap<u32, String>) -> Self {
        Decoder { clock, ifnames: ifnames.into_iter().map(|(i, n)| (i, Arc::from(n))).collect() }
    }

    pub fn ifname(&self, ifindex: u32) -> Arc<str> {
        match self.ifnames.iter().find(|(i, _)| *i == ifindex) {
            Some((_, name)) => name.clone(),
            None => Arc::from(format!("if{ifindex}")),
        }
    }

    /// Name records of `ifindex` `name` from now on (an interface attached
    /// after the start).
    pub fn name_interface(&mut self, ifindex: u32, name: &str) {
        match self.ifnames.iter_mut().find(|(i, _)| *i == ifindex) {
            Some((_, n)) => *n = Arc::from(name),
            None => self.ifnames.push((ifindex, Arc::from(name))),
        }
    }

    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    /// The first interface's name (`?` if none): for records of flows the
    /// daemon has no interface of.
    pub fn first_ifname(&self) -> Arc<str> {
        self.ifnames.first().map_or_else(|| Arc::from("?"), |(_, n)| n.clone())
    }

    /// The first interface's index (0 if none): the interface a flow found
    /// in the tables is reported on (they do not say which one it crossed).
    pub fn first_ifindex(&self) -> u32 {
        self.ifnames.first().map_or(0, |(i, _)| *i)
    }

    pub fn timestamp(&self, mono_ns: u64) -> Timestamp {
        Timestamp(self.clock.wall_time(mono_ns))
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        let raw: FlowEvent = bytemuck::try_pod_read_unaligned(bytes).map_err(|_| DecodeError::BadSize(bytes.len()))?;
        self.event(&raw)
    }

    pub fn event(&self, raw: &FlowEvent) -> Result<Event, DecodeError> {
        Ok(self.event_of(raw, Self::kind(raw)?))
    }

    /// What `raw` is about, or why it cannot be decoded: the one check
    /// `event` makes, for a reader that decodes the rest only when it needs
    /// it (the reporter: `Reporter::on_event`).
    pub fn kind(raw: &FlowEvent) -> Result<EventKind, DecodeError> {
        EventKind::try_from(raw.kind).map_err(|e| DecodeError::UnknownKind(e.0))
    }

    /// `raw` decoded, its kind `event` (from `kind`).
    pub fn event_of(&self, raw: &FlowEvent, event: EventKind) -> Event {
        let (client, server) = client_server(raw);
        let client_is_lo = raw.initiator & 1 == 0;
        let (client_state, server_state) = if client_is_lo { (raw.lo_state, raw.hi_state) } else { (raw.hi_state, raw.lo_state) };
        let segment = Segment {
            from_client: raw.dir & 1 == raw.initiator & 1,
            flags: raw.tcp_flags,
            hook: Hook::from_raw(raw.hook),
            seq: raw.seq,
            ack: raw.ack,
            state: ConnState::from_raw(raw.new_state),
            client_state: EndpointState::from_raw(client_state),
            server_state: EndpointState::from_raw(server_state),
            reset: (event == EventKind::Reset).then_some(ResetFields {
                judgement: ResetClass::from_raw(raw.reset),
                dropped: raw.detail & DETAIL_DROPPED != 0,
                drop_justified: raw.detail & DETAIL_DROP_JUSTIFIED != 0,
            }),
            isn_advanced: (event == EventKind::TimeWaitReuse).then_some(raw.detail & DETAIL_ISN_ADVANCED != 0),
            retransmits: matches!(event, EventKind::HandshakeRetransmit | EventKind::Retransmit).then_some(raw.retrans),
            synack_inferred: raw.detail & DETAIL_SYNACK_INFERRED != 0,
        };
        Event {
            ts: self.timestamp(raw.ts_ns),
            event,
            iface: self.ifname(raw.ifindex),
            client: Some(Endpoint::Socket(client)),
            server,
            picked_up: picked_up(raw.origin),
            segment: Some(segment),
            extra: Vec::new(),
        }
    }
}

/// A ring-buffer record split in two: its event (the first 72 bytes; a
/// longer record, from a newer kernel side appending fields, is read from
/// them), and for an `EVENT_CONN_END` the flow record that follows.
pub fn split_record(bytes: &[u8]) -> Result<(FlowEvent, Option<FlowRecord>), DecodeError> {
    const HEAD: usize = std::mem::size_of::<FlowEvent>();
    let head = bytes.get(..HEAD).ok_or(DecodeError::BadSize(bytes.len()))?;
    let raw: FlowEvent = bytemuck::pod_read_unaligned(head);
    if raw.kind != EVENT_CONN_END {
        return Ok((raw, None));
    }
    let rec = bytes.get(HEAD..std::mem::size_of::<ConnEnd>()).ok_or(DecodeError::BadConnSize(bytes.len()))?;
    Ok((raw, Some(bytemuck::pod_read_unaligned(rec))))
}

/// A record's (client, server) endpoints. `initiator` is the direction
/// whose sender is the client; direction 0 is sent by the `lo` endpoint.
pub fn client_server(raw: &FlowEvent) -> (SocketAddr, SocketAddr) {
    oriented(raw.family, (&raw.lo_addr, raw.lo_port), (&raw.hi_addr, raw.hi_port), raw.initiator)
}

/// A flow key's (client, server): `initiator` is the direction whose
/// sender (`lo` for direction 0) is the client.
pub fn oriented(family: u8, lo: (&[u8; 16], u16), hi: (&[u8; 16], u16), initiator: u8) -> (SocketAddr, SocketAddr) {
    let lo = endpoint(family, lo.0, lo.1);
    let hi = endpoint(family, hi.0, hi.1);
    if initiator & 1 == 0 {
        (lo, hi)
    } else {
        (hi, lo)
    }
}

pub(crate) fn endpoint(family: u8, addr: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    };
    SocketAddr::new(ip, port)
}

/// `SYN|ACK`-style names, in tcpdump's order of importance; `none` for no
/// flag. All 256 are built once, so that naming a segment's flags costs an
/// index.
pub fn flag_names(flags: u8) -> &'static str {
    static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| (0..=255u8).map(build_flag_names).collect());
    &NAMES[flags as usize]
}

fn build_flag_names(flags: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (tcp::SYN, "SYN"),
        (tcp::FIN, "FIN"),
        (tcp::RST, "RST"),
        (tcp::PSH, "PSH"),
        (tcp::ACK, "ACK"),
        (tcp::URG, "URG"),
        (tcp::ECE, "ECE"),
        (tcp::CWR, "CWR"),
    ];
    let names: Vec<&str> = NAMES.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| *n).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};
    use tcp_track_common::{
        event::{EVENT_FIN, EVENT_FLOW_NEW, EVENT_RST, HOOK_CAPTURE, HOOK_TC_EGRESS, HOOK_XDP},
        flow::{DIR_HI_TO_LO, DIR_LO_TO_HI, ORIGIN_MIDSTREAM, ORIGIN_SYN},
        parse::FAMILY_IPV6,
        state::{
            EP_CLOSED, EP_SYN_SENT, EP_TIME_WAIT, RESET_IN_WINDOW, RESET_TIME_WAIT, RESET_UNJUDGED, STATE_CLOSE,
            STATE_SYN_SENT,
        },
    };

    fn decoder() -> Decoder {
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000), 0);
        Decoder::new(clock, HashMap::from([(7, "veth-a".to_string())]))
    }

    fn raw_v4() -> FlowEvent {
        let mut e = FlowEvent {
            ts_ns: 1_500_000,
            kind: EVENT_FLOW_NEW,
            family: FAMILY_IPV4,
            dir: DIR_HI_TO_LO,
            ifindex: 7,
            lo_port: 8080,
            hi_port: 43210,
            tcp_flags: tcp::SYN,
            initiator: DIR_HI_TO_LO,
            origin: ORIGIN_SYN,
            hook: HOOK_TC_EGRESS,
            seq: 1,
            ack: 0,
            new_state: STATE_SYN_SENT,
            hi_state: EP_SYN_SENT,
            ..Default::default()
        };
        e.lo_addr[..4].copy_from_slice(&[198, 18, 0, 1]);
        e.hi_addr[..4].copy_from_slice(&[198, 18, 0, 2]);
        e
    }

    #[test]
    fn new_flow_names_client_and_server() {
        let ev = decoder().decode(bytemuck::bytes_of(&raw_v4())).unwrap();
        assert_eq!(ev.event.as_str(), "flow_new");
        assert_eq!(ev.client, Some(Endpoint::Socket("198.18.0.2:43210".parse().unwrap())));
        assert_eq!(ev.server.to_string(), "198.18.0.1:8080");
        assert_eq!(ev.field("from").unwrap(), "client");
        assert_eq!(&*ev.iface, "veth-a");
        assert_eq!(ev.field("seen").unwrap(), "egress");
        assert_eq!(ev.ts.to_string(), "2023-11-14T22:13:20.001500Z");
        assert_eq!(ev.field("state").unwrap(), "SYN_SENT");
        assert_eq!(ev.field("client_state").unwrap(), "SYN-SENT");
        assert_eq!(ev.field("server_state").unwrap(), "NONE");
        let json = serde_json::to_string(&ev).unwrap();
        assert!(!json.contains("picked_up"), "only present when true: {json}");
        assert!(!json.contains("reason"), "reset fields only on resets: {json}");
        assert!(json.starts_with(r#"{"ts":"2023-11-14T22:13:20.001500Z","event":"flow_new","iface":"veth-a","client":"#), "{json}");
    }

    #[test]
    fn resets_carry_reason_and_action() {
        let mut raw = raw_v4();
        raw.kind = EVENT_RST;
        raw.reset = RESET_TIME_WAIT;
        raw.detail = DETAIL_DROP_JUSTIFIED;
        raw.new_state = STATE_CLOSE;
        raw.lo_state = EP_CLOSED;
        raw.hi_state = EP_TIME_WAIT;
        let ev = decoder().event(&raw).unwrap();
        assert_eq!(ev.field("reason").unwrap(), "time_wait_assassination");
        assert_eq!(ev.field("action").unwrap(), "passed");
        assert_eq!(ev.field("drop_justified").unwrap(), true);
        assert_eq!(ev.field("client_state").unwrap(), "TIME-WAIT");
        raw.reset = RESET_IN_WINDOW;
        raw.detail |= DETAIL_DROPPED;
        let ev = decoder().event(&raw).unwrap();
        assert_eq!(ev.field("reason").unwrap(), "invalid");
        assert_eq!(ev.field("window").unwrap(), "inside");
        assert_eq!(ev.field("action").unwrap(), "dropped");
        raw.reset = RESET_UNJUDGED;
        let ev = decoder().event(&raw).unwrap();
        assert_eq!(ev.field("reason").unwrap(), "abort");
        assert_eq!(ev.field("judged").unwrap(), false);
    }

    #[test]
    fn fin_from_server_over_ipv6() {
        let mut raw = raw_v4();
        raw.family = FAMILY_IPV6;
        raw.lo_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        raw.hi_addr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        raw.kind = EVENT_FIN;
        raw.dir = DIR_LO_TO_HI;
        raw.tcp_flags = tcp::FIN | tcp::ACK;
        raw.origin = ORIGIN_MIDSTREAM;
        raw.hook = HOOK_XDP;
        let ev = decoder().event(&raw).unwrap();
        assert_eq!((ev.event.as_str(), ev.field("from").unwrap(), ev.field("flags").unwrap()), ("fin", FieldValue::Str("server"), FieldValue::Str("FIN|ACK")));
        assert_eq!(ev.server.to_string(), "[2001:db8::1]:8080");
        assert!(ev.picked_up);
        assert_eq!(ev.field("seen").unwrap(), "ingress");
        raw.hook = HOOK_CAPTURE;
        assert_eq!(decoder().event(&raw).unwrap().field("seen").unwrap(), "capture", "read from a capture file");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decoder().decode(&[0u8; 3]), Err(DecodeError::BadSize(3)));
        let mut raw = raw_v4();
        raw.kind = 99;
        assert_eq!(decoder().event(&raw), Err(DecodeError::UnknownKind(99)));
        raw.ifindex = 12;
        raw.kind = EVENT_RST;
        assert_eq!(&*decoder().event(&raw).unwrap().iface, "if12");
    }

    #[test]
    fn flag_names_follow_tcpdump_order() {
        assert_eq!(flag_names(tcp::SYN | tcp::ACK), "SYN|ACK");
        assert_eq!(flag_names(tcp::RST | tcp::ACK), "RST|ACK");
        assert_eq!(flag_names(0), "none");
        assert_eq!(flag_names(0xff), "SYN|FIN|RST|PSH|ACK|URG|ECE|CWR");
    }

    #[test]
    fn timestamps_print_like_humantime_truncated_to_microseconds() {
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for nanos in [0u64, 999, 1_000, 1_999, 999_999_999, 86_400_000_000_123, 40 * 365 * 86_400_000_000_000 + 7] {
            let t = base + Duration::from_nanos(nanos);
            assert_eq!(Timestamp(t).to_string(), humantime::format_rfc3339_micros(t).to_string());
        }
        assert_eq!(Timestamp(SystemTime::UNIX_EPOCH - Duration::from_secs(5)).to_string(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn set_replaces_in_place_and_appends_after_the_segment() {
        let mut ev = decoder().event(&raw_v4()).unwrap();
        ev.set("kind", "a");
        ev.set("n", 3u32);
        ev.set("kind", "b");
        let mut keys = Vec::new();
        ev.visit_fields(&mut |k: &'static str, _: &FieldValue| keys.push(k));
        assert_eq!(keys[..8], ["from", "flags", "seen", "seq", "ack", "state", "client_state", "server_state"]);
        assert_eq!(keys[8..], ["kind", "n"]);
        assert_eq!(ev.field("kind").unwrap(), "b");
        assert_eq!(ev.field("n").unwrap(), 3);
    }
}
