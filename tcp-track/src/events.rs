//! Ring-buffer records → events people and programs can read.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use serde::Serialize;
use serde_json::{Map, Value};
use tcp_track_common::{
    event::{
        FlowEvent, DETAIL_DROPPED, DETAIL_DROP_JUSTIFIED, DETAIL_ISN_ADVANCED, EVENT_FIN, EVENT_FLOW_NEW,
        EVENT_DATA_RETRANS, EVENT_HANDSHAKE_RETRANS, EVENT_REUSE, EVENT_RST, EVENT_STATE, HOOK_XDP,
    },
    flow::ORIGIN_MIDSTREAM,
    parse::FAMILY_IPV4,
    state::{
        endpoint_state_name, state_name, RESET_EXACT, RESET_IN_WINDOW, RESET_OUT_OF_WINDOW, RESET_REFUSED,
        RESET_STATELESS_PEER, RESET_TIME_WAIT, RESET_UNJUDGED, RESET_UNKNOWN_FLOW,
    },
    tcp,
};
use thiserror::Error;

use crate::clock::WallClock;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring-buffer record of {0} bytes, expected {expected}", expected = std::mem::size_of::<FlowEvent>())]
    BadSize(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u16),
}

/// One line of output. The JSON schema is in the README.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// RFC 3339, UTC.
    pub ts: String,
    pub event: &'static str,
    pub iface: String,
    /// The side that sent the first SYN (for a flow picked up mid-stream, a
    /// guess). Absent on events about a server rather than one connection
    /// (`syn_flood`, `syn_flood_ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub server: String,
    /// Present and true when the flow was first seen after its handshake.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub picked_up: bool,
    /// The event's own fields, in a stable order.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Event {
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.to_string(), value.into());
    }
}

/// Decodes records, naming interfaces by the indexes we attached to.
pub struct Decoder {
    clock: WallClock,
    ifnames: HashMap<u32, String>,
}

impl Decoder {
    pub fn new(clock: WallClock, ifnames: HashMap<u32, String>) -> Self {
        Decoder { clock, ifnames }
    }

    pub fn ifname(&self, ifindex: u32) -> String {
        self.ifnames.get(&ifindex).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }

    pub fn clock(&self) -> &WallClock {
        &self.clock
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        let raw: FlowEvent = bytemuck::try_pod_read_unaligned(bytes).map_err(|_| DecodeError::BadSize(bytes.len()))?;
        self.event(&raw)
    }

    pub fn event(&self, raw: &FlowEvent) -> Result<Event, DecodeError> {
        let event = match raw.kind {
            EVENT_FLOW_NEW => "flow_new",
            EVENT_FIN => "fin",
            EVENT_RST => "reset",
            EVENT_STATE => "state",
            EVENT_REUSE => "time_wait_reuse",
            EVENT_HANDSHAKE_RETRANS => "handshake_retransmit",
            EVENT_DATA_RETRANS => "retransmit",
            k => return Err(DecodeError::UnknownKind(k)),
        };
        let lo = endpoint(raw.family, &raw.lo_addr, raw.lo_port);
        let hi = endpoint(raw.family, &raw.hi_addr, raw.hi_port);
        // `initiator` is the direction whose sender is the client; direction
        // 0 is sent by the `lo` endpoint.
        let client_is_lo = raw.initiator & 1 == 0;
        let (client, server) = if client_is_lo { (lo, hi) } else { (hi, lo) };
        let (client_state, server_state) = if client_is_lo { (raw.lo_state, raw.hi_state) } else { (raw.hi_state, raw.lo_state) };
        let from = if raw.dir & 1 == raw.initiator & 1 { "client" } else { "server" };
        let is_reset = raw.kind == EVENT_RST;
        let (reason, window) = match raw.reset {
            RESET_REFUSED => (Some("refused"), None),
            RESET_EXACT | RESET_UNJUDGED => (Some("abort"), None),
            RESET_STATELESS_PEER => (Some("stateless_peer"), None),
            RESET_TIME_WAIT => (Some("time_wait_assassination"), None),
            RESET_IN_WINDOW => (Some("invalid"), Some("inside")),
            RESET_OUT_OF_WINDOW => (Some("invalid"), Some("outside")),
            RESET_UNKNOWN_FLOW => (Some("unknown_flow"), None),
            _ => (None, None),
        };
        let mut f = Map::new();
        f.insert("from".into(), from.into());
        f.insert("flags".into(), flag_names(raw.tcp_flags).into());
        f.insert("seen".into(), (if raw.hook == HOOK_XDP { "ingress" } else { "egress" }).into());
        f.insert("seq".into(), raw.seq.into());
        f.insert("ack".into(), raw.ack.into());
        f.insert("state".into(), state_name(raw.new_state).into());
        f.insert("client_state".into(), endpoint_state_name(client_state).into());
        f.insert("server_state".into(), endpoint_state_name(server_state).into());
        if is_reset {
            if let Some(r) = reason {
                f.insert("reason".into(), r.into());
            }
            if let Some(w) = window {
                f.insert("window".into(), w.into());
            }
            f.insert("action".into(), (if raw.detail & DETAIL_DROPPED != 0 { "dropped" } else { "passed" }).into());
            f.insert("drop_justified".into(), (raw.detail & DETAIL_DROP_JUSTIFIED != 0).into());
            if raw.reset == RESET_UNJUDGED {
                f.insert("judged".into(), false.into());
            }
        }
        if raw.kind == EVENT_REUSE {
            f.insert("isn_advanced".into(), (raw.detail & DETAIL_ISN_ADVANCED != 0).into());
        }
        if raw.kind == EVENT_HANDSHAKE_RETRANS || raw.kind == EVENT_DATA_RETRANS {
            f.insert("retransmits".into(), raw.retrans.into());
        }
        Ok(Event {
            ts: self.clock.rfc3339(raw.ts_ns),
            event,
            iface: self.ifname(raw.ifindex),
            client: Some(client.to_string()),
            server: server.to_string(),
            picked_up: raw.origin == ORIGIN_MIDSTREAM,
            fields: f,
        })
    }
}

fn endpoint(family: u8, addr: &[u8; 16], port: u16) -> SocketAddr {
    let ip = if family == FAMILY_IPV4 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(*addr))
    };
    SocketAddr::new(ip, port)
}

/// `SYN|ACK`-style names, in tcpdump's order of importance.
pub fn flag_names(flags: u8) -> String {
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
        event::HOOK_TC_EGRESS,
        flow::{DIR_HI_TO_LO, DIR_LO_TO_HI, ORIGIN_SYN},
        parse::FAMILY_IPV6,
        state::{EP_CLOSED, EP_SYN_SENT, EP_TIME_WAIT, STATE_CLOSE, STATE_SYN_SENT},
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
        assert_eq!(ev.event, "flow_new");
        assert_eq!(ev.client.as_deref(), Some("198.18.0.2:43210"));
        assert_eq!(ev.server, "198.18.0.1:8080");
        assert_eq!(ev.field("from").unwrap(), "client");
        assert_eq!(ev.iface, "veth-a");
        assert_eq!(ev.field("seen").unwrap(), "egress");
        assert_eq!(ev.ts, "2023-11-14T22:13:20.001500Z");
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
        assert_eq!((ev.event, ev.field("from").unwrap(), ev.field("flags").unwrap()), ("fin", &Value::from("server"), &Value::from("FIN|ACK")));
        assert_eq!(ev.server, "[2001:db8::1]:8080");
        assert!(ev.picked_up);
        assert_eq!(ev.field("seen").unwrap(), "ingress");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decoder().decode(&[0u8; 3]), Err(DecodeError::BadSize(3)));
        let mut raw = raw_v4();
        raw.kind = 99;
        assert_eq!(decoder().event(&raw), Err(DecodeError::UnknownKind(99)));
        raw.ifindex = 12;
        raw.kind = EVENT_RST;
        assert_eq!(decoder().event(&raw).unwrap().iface, "if12");
    }

    #[test]
    fn flag_names_follow_tcpdump_order() {
        assert_eq!(flag_names(tcp::SYN | tcp::ACK), "SYN|ACK");
        assert_eq!(flag_names(tcp::RST | tcp::ACK), "RST|ACK");
        assert_eq!(flag_names(0), "none");
    }
}
