//! Writing events to stdout: readable text or JSON lines.
//!
//! The daemon prints every event it keeps, so this is on its hot path: a
//! line is assembled in a reused buffer (the timestamp's date and time of
//! day formatted once per second, integers and IPv4 addresses without the
//! formatting machinery, strings escaped only when they hold a byte JSON
//! escapes) and handed over in one write. The fields after the fixed ones
//! are not listed here: `Event::visit_fields` lists them once, for a sink
//! per format (`JsonFields`, `TextFields`), with each key spelled for both
//! formats at compile time. The JSON must stay what serde_json makes of an
//! `Event` (its `Serialize` impl, which reads the same list): the tests hold
//! the two together.

use std::{
    io::{self, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, SystemTime},
};

use crate::{
    config::Format,
    events::{Endpoint, Event, FieldSink, FieldValue, Key, Timestamp},
    vocab::EventKind,
};

/// Bytes of output to buffer in front of stdout. The daemon flushes after
/// every batch it drains, so this only sets how many write(2)s a batch
/// takes: each costs microseconds (into a file: the inode's lock, its
/// times), worth it for ~800 lines rather than the ~25 of the default 8 KiB.
pub const BUFFER: usize = 256 * 1024;

/// Writes events as lines, keeping its buffers from one line to the next,
/// and counts the lines it wrote by event kind.
pub struct Writer {
    format: Format,
    line: Line,
    printed: [u64; EventKind::COUNT],
}

impl Writer {
    pub fn new(format: Format) -> Self {
        Writer { format, line: Line { buf: Vec::with_capacity(512), second: None }, printed: [0; EventKind::COUNT] }
    }

    /// Write one event as one line.
    pub fn write<W: Write>(&mut self, out: &mut W, ev: &Event) -> io::Result<()> {
        self.line.buf.clear();
        match self.format {
            Format::Json => self.line.json(ev)?,
            Format::Text => self.line.text(ev)?,
        }
        self.line.buf.push(b'\n');
        out.write_all(&self.line.buf)?;
        self.printed[ev.event as usize] += 1;
        Ok(())
    }

    /// Lines written so far, by event kind (every kind, in
    /// `EventKind::ALL` order).
    pub fn printed(&self) -> Vec<(EventKind, u64)> {
        EventKind::ALL.iter().copied().zip(self.printed).collect()
    }
}

/// Whether serde_json would escape something in `s`.
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

const LAST_SECOND_OF_9999: u64 = 253_402_300_799;

struct Line {
    buf: Vec<u8>,
    /// The whole second last printed and its text up to the decimal point
    /// (`2026-11-21T05:30:00.`): events come in time order, so most lines
    /// reuse it.
    second: Option<(u64, [u8; 20])>,
}

impl Line {
    fn json(&mut self, ev: &Event) -> io::Result<()> {
        self.buf.extend_from_slice(b"{\"ts\":\"");
        self.ts(ev.ts)?;
        self.buf.extend_from_slice(b"\",\"event\":");
        self.json_static(ev.event.as_str());
        self.buf.extend_from_slice(b",\"iface\":");
        self.json_str(&ev.iface)?;
        if let Some(c) = &ev.client {
            self.buf.extend_from_slice(b",\"client\":\"");
            self.endpoint(c);
            self.buf.push(b'"');
        }
        self.buf.extend_from_slice(b",\"server\":\"");
        self.socket(&ev.server);
        self.buf.push(b'"');
        if ev.picked_up {
            self.buf.extend_from_slice(b",\"picked_up\":true");
        }
        let mut fields = JsonFields { line: self, res: Ok(()) };
        ev.visit_fields(&mut fields);
        fields.res?;
        self.buf.push(b'}');
        Ok(())
    }

    fn text(&mut self, ev: &Event) -> io::Result<()> {
        self.ts(ev.ts)?;
        self.buf.push(b' ');
        self.buf.extend_from_slice(ev.iface.as_bytes());
        self.buf.push(b' ');
        let name = ev.event.as_str();
        self.buf.extend_from_slice(name.as_bytes());
        // `{:<21}`: padded to 21 characters.
        let width = name.chars().count();
        self.buf.resize(self.buf.len() + 21usize.saturating_sub(width), b' ');
        match &ev.client {
            Some(c) => {
                self.buf.push(b' ');
                self.endpoint(c);
                self.buf.extend_from_slice(b" -> ");
            }
            None => self.buf.extend_from_slice(b" server "),
        }
        self.socket(&ev.server);
        if ev.picked_up {
            self.buf.extend_from_slice(b" (picked up mid-stream)");
        }
        let mut fields = TextFields { line: self, res: Ok(()) };
        ev.visit_fields(&mut fields);
        fields.res
    }

    /// RFC 3339, UTC, microseconds: `2026-11-21T05:30:00.123456Z`.
    fn ts(&mut self, t: Timestamp) -> io::Result<()> {
        let (secs, micros) = t.unix_micros();
        let prefix = match self.second {
            Some((s, prefix)) if s == secs => prefix,
            _ => {
                // RFC 3339 has four-digit years, and humantime refuses more:
                // a clock that far off prints as the last second of 9999
                // rather than stopping the tracker.
                let whole = humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.min(LAST_SECOND_OF_9999)));
                let mut prefix = [0u8; 20];
                write!(&mut prefix[..], "{whole}")?;
                // `...:00Z` becomes `...:00.`, the fraction to follow.
                prefix[19] = b'.';
                self.second = Some((secs, prefix));
                prefix
            }
        };
        self.buf.extend_from_slice(&prefix);
        let mut digits = [b'0'; 7];
        let mut m = micros;
        for d in digits[..6].iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        digits[6] = b'Z';
        self.buf.extend_from_slice(&digits);
        Ok(())
    }

    fn endpoint(&mut self, e: &Endpoint) {
        match e {
            Endpoint::Socket(a) => self.socket(a),
            Endpoint::Host(IpAddr::V4(ip)) => self.ipv4(ip, None),
            Endpoint::Host(ip) => write!(self.buf, "{ip}").expect("writing to a Vec"),
        }
    }

    /// As `SocketAddr`'s `Display`; IPv6 (rarer, with its zero compression
    /// and embedded IPv4 forms) through it.
    fn socket(&mut self, a: &SocketAddr) {
        match a {
            SocketAddr::V4(a) => self.ipv4(a.ip(), Some(a.port())),
            SocketAddr::V6(_) => write!(self.buf, "{a}").expect("writing to a Vec"),
        }
    }

    /// `a.b.c.d`, and `:port` if given, assembled on the stack: one copy
    /// into the line rather than a capacity check per character.
    fn ipv4(&mut self, ip: &Ipv4Addr, port: Option<u16>) {
        let mut text = [0u8; 21];
        let mut n = 0;
        for (i, &o) in ip.octets().iter().enumerate() {
            if i > 0 {
                text[n] = b'.';
                n += 1;
            }
            if o >= 100 {
                text[n] = b'0' + o / 100;
                n += 1;
            }
            if o >= 10 {
                text[n] = b'0' + o / 10 % 10;
                n += 1;
            }
            text[n] = b'0' + o % 10;
            n += 1;
        }
        if let Some(port) = port {
            text[n] = b':';
            n += 1;
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(port).as_bytes();
            text[n..n + digits.len()].copy_from_slice(digits);
            n += digits.len();
        }
        self.buf.extend_from_slice(&text[..n]);
    }

    fn uint(&mut self, n: u64) {
        self.buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A JSON string as serde_json writes it; only strings holding a byte it
    /// escapes (a control character, `"` or `\\`: possible in an interface
    /// name) go through serde_json.
    fn json_str(&mut self, s: &str) -> io::Result<()> {
        if !needs_escape(s) {
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut self.buf, s).map_err(io::Error::other)
        }
    }

    /// One of our own names or values (event names, field names, their
    /// fixed values): nothing in them to escape.
    fn json_static(&mut self, s: &'static str) {
        debug_assert!(!needs_escape(s), "{s:?}");
        self.buf.push(b'"');
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(b'"');
    }

    fn json_value(&mut self, v: &FieldValue) -> io::Result<()> {
        match v {
            FieldValue::Str(s) => self.json_static(s),
            FieldValue::UInt(n) => self.uint(*n),
            FieldValue::Float(x) => serde_json::to_writer(&mut self.buf, x).map_err(io::Error::other)?,
            FieldValue::Bool(b) => self.buf.extend_from_slice(if *b { b"true" } else { b"false" }),
            FieldValue::Times(ts) => {
                self.buf.push(b'[');
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.buf.push(b'"');
                    self.ts(*t)?;
                    self.buf.push(b'"');
                }
                self.buf.push(b']');
            }
        }
        Ok(())
    }

    /// A value without quotes: `abort`, `3`, `60.0`, `t1,t2`.
    fn plain_value(&mut self, v: &FieldValue) -> io::Result<()> {
        match v {
            FieldValue::Str(s) => self.buf.extend_from_slice(s.as_bytes()),
            FieldValue::Times(ts) => {
                for (i, t) in ts.iter().enumerate() {
                    if i > 0 {
                        self.buf.push(b',');
                    }
                    self.ts(*t)?;
                }
            }
            // Numbers and booleans read the same in both formats.
            other => self.json_value(other)?,
        }
        Ok(())
    }
}

/// Fields as JSON members: `,"key":value`.
struct JsonFields<'a> {
    line: &'a mut Line,
    res: io::Result<()>,
}

impl FieldSink for JsonFields<'_> {
    fn value(&mut self, name: &'static str, value: &FieldValue) {
        if self.res.is_ok() {
            self.line.buf.push(b',');
            self.line.json_static(name);
            self.line.buf.push(b':');
            self.res = self.line.json_value(value);
        }
    }

    #[inline(always)]
    fn str(&mut self, key: Key, value: &'static str) {
        let b = &mut self.line.buf;
        b.extend_from_slice(key.json_str.as_bytes());
        b.extend_from_slice(value.as_bytes());
        b.push(b'"');
    }

    #[inline(always)]
    fn uint(&mut self, key: Key, value: u64) {
        self.line.buf.extend_from_slice(key.json.as_bytes());
        self.line.uint(value);
    }

    #[inline(always)]
    fn bool(&mut self, key: Key, value: bool) {
        self.line.buf.extend_from_slice(key.json.as_bytes());
        self.line.buf.extend_from_slice(if value { b"true" } else { b"false" });
    }
}

/// Fields as text: ` key=value`.
struct TextFields<'a> {
    line: &'a mut Line,
    res: io::Result<()>,
}

impl FieldSink for TextFields<'_> {
    fn value(&mut self, name: &'static str, value: &FieldValue) {
        if self.res.is_ok() {
            self.line.buf.push(b' ');
            self.line.buf.extend_from_slice(name.as_bytes());
            self.line.buf.push(b'=');
            self.res = self.line.plain_value(value);
        }
    }

    #[inline(always)]
    fn str(&mut self, key: Key, value: &'static str) {
        self.line.buf.extend_from_slice(key.text.as_bytes());
        self.line.buf.extend_from_slice(value.as_bytes());
    }

    #[inline(always)]
    fn uint(&mut self, key: Key, value: u64) {
        self.line.buf.extend_from_slice(key.text.as_bytes());
        self.line.uint(value);
    }

    #[inline(always)]
    fn bool(&mut self, key: Key, value: bool) {
        self.line.buf.extend_from_slice(key.text.as_bytes());
        self.line.buf.extend_from_slice(if value { b"true" } else { b"false" });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::{collections::HashMap, net::Ipv6Addr};

    use serde_json::{Map, Value};
    use tcp_track_common::{
        event::{
            FlowEvent, DETAIL_DROPPED, DETAIL_DROP_JUSTIFIED, DETAIL_ISN_ADVANCED, EVENT_DATA_RETRANS, EVENT_HANDSHAKE_RETRANS,
            EVENT_REUSE, EVENT_RST, HOOK_CAPTURE, HOOK_TC_EGRESS, HOOK_XDP,
        },
        flow::{picked_up, ORIGIN_MIDSTREAM, ORIGIN_SYN},
        parse::{FAMILY_IPV4, FAMILY_IPV6},
        state::RESET_UNJUDGED,
    };

    use crate::{
        clock::WallClock,
        events::Decoder,
        vocab::{ConnState, EndpointState, Hook},
    };

    fn ts(text: &str) -> Timestamp {
        Timestamp(humantime::parse_rfc3339(text).unwrap())
    }

    /// One event as one line, with a writer of its own.
    fn write_event<W: Write>(out: &mut W, format: Format, ev: &Event) -> io::Result<()> {
        Writer::new(format).write(out, ev)
    }

    /// `2026-11-21T05:30:00.123456Z veth0 time_wait  198.18.0.1:43210 -> 198.18.0.2:80 closer=client ...`
    fn text_line(ev: &Event) -> io::Result<String> {
        let mut line = Vec::new();
        write_event(&mut line, Format::Text, ev)?;
        line.pop();
        Ok(String::from_utf8(line).unwrap())
    }

    fn ev() -> Event {
        let mut e = Event::new(
            ts("2026-11-21T05:30:00.000001Z"),
            EventKind::Fin,
            "veth0".into(),
            Some(Endpoint::Socket("198.18.0.1:43210".parse().unwrap())),
            "198.18.0.2:80".parse().unwrap(),
        );
        e.set("from", "client");
        e.set("flags", "FIN|ACK");
        e.set("times", vec![ts("2026-11-21T05:29:58.5Z"), ts("2026-11-21T05:29:59.25Z")]);
        e
    }

    #[test]
    fn lines_are_counted_by_kind() {
        let mut w = Writer::new(Format::Text);
        let mut flood = ev();
        flood.event = EventKind::SynFlood;
        for e in [ev(), flood, ev()] {
            w.write(&mut io::sink(), &e).unwrap();
        }
        let printed: Vec<_> = w.printed().into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(printed, [(EventKind::Fin, 2), (EventKind::SynFlood, 1)]);
        assert_eq!(w.printed().len(), EventKind::COUNT, "every kind is listed");
    }

    #[test]
    fn json_is_one_object_per_line() {
        let mut buf = Vec::new();
        write_event(&mut buf, Format::Json, &ev()).unwrap();
        write_event(&mut buf, Format::Json, &ev()).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "fin");
        assert_eq!(v["client"], "198.18.0.1:43210");
        assert_eq!(v["from"], "client", "fields are flattened into the object");
        assert_eq!(v["times"][1], "2026-11-21T05:29:59.250000Z");
    }

    #[test]
    fn text_is_one_readable_line() {
        let mut buf = Vec::new();
        write_event(&mut buf, Format::Text, &ev()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-11-21T05:30:00.000001Z veth0 fin                   198.18.0.1:43210 -> 198.18.0.2:80 from=client flags=FIN|ACK times=2026-11-21T05:29:58.500000Z,2026-11-21T05:29:59.250000Z\n"
        );
        let mut flood = ev();
        flood.client = None;
        flood.event = EventKind::SynFlood;
        assert!(text_line(&flood).unwrap().contains("syn_flood             server 198.18.0.2:80"));
    }

    /// Today's text line, rebuilt from the event's JSON object the way it
    /// was first written: `format!` and a map of JSON values.
    fn reference_text(v: &Value) -> String {
        fn plain(v: &Value) -> String {
            match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
                other => other.to_string(),
            }
        }
        let o = v.as_object().unwrap();
        let s = |k: &str| o[k].as_str().unwrap().to_string();
        let mut line = format!("{} {} {:<21}", s("ts"), s("iface"), s("event"));
        match o.get("client") {
            Some(c) => line.push_str(&format!(" {} -> {}", c.as_str().unwrap(), s("server"))),
            None => line.push_str(&format!(" server {}", s("server"))),
        }
        if o.contains_key("picked_up") {
            line.push_str(" (picked up mid-stream)");
        }
        for (k, v) in o.iter().skip_while(|(k, _)| *k != "server").skip(1).filter(|(k, _)| *k != "picked_up") {
            line.push_str(&format!(" {k}={}", plain(v)));
        }
        line
    }

    /// Hold the fast writer to serde_json's output of the same event (JSON)
    /// and to the reference text line. Used on every event the reporter's
    /// tests see, too.
    pub(crate) fn assert_like_reference(w: &mut (Writer, Writer), ev: &Event) {
        let mut json = Vec::new();
        w.0.write(&mut json, ev).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), serde_json::to_string(ev).unwrap() + "\n");
        let mut text = Vec::new();
        w.1.write(&mut text, ev).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), reference_text(&ev.to_json().unwrap()) + "\n");
    }

    pub(crate) fn writers() -> (Writer, Writer) {
        (Writer::new(Format::Json), Writer::new(Format::Text))
    }

    /// The decoder as it was before events had a typed representation:
    /// every field an owned string in a serde_json map. Kept as the
    /// reference for what a decoded record prints as: which fields, in
    /// which order, how they are spelled; the names of the vocabulary are
    /// the enums' (held to their documented spelling in `vocab`'s tests).
    fn reference_decode(clock: &WallClock, ifnames: &HashMap<u32, String>, raw: &FlowEvent) -> Value {
        let event = EventKind::try_from(raw.kind).unwrap().as_str();
        let endpoint = |addr: &[u8; 16], port: u16| {
            let ip = if raw.family == FAMILY_IPV4 {
                IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(*addr))
            };
            SocketAddr::new(ip, port)
        };
        let lo = endpoint(&raw.lo_addr, raw.lo_port);
        let hi = endpoint(&raw.hi_addr, raw.hi_port);
        let client_is_lo = raw.initiator & 1 == 0;
        let (client, server) = if client_is_lo { (lo, hi) } else { (hi, lo) };
        let (client_state, server_state) = if client_is_lo { (raw.lo_state, raw.hi_state) } else { (raw.hi_state, raw.lo_state) };
        let from = if raw.dir & 1 == raw.initiator & 1 { "client" } else { "server" };
        let (reason, window) = crate::vocab::ResetClass::from_raw(raw.reset).reason();
        let flags = {
            use tcp_track_common::tcp::*;
            let names: Vec<&str> = [(SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"), (ECE, "ECE"), (CWR, "CWR")]
                .iter()
                .filter(|(b, _)| raw.tcp_flags & b != 0)
                .map(|(_, n)| *n)
                .collect();
            if names.is_empty() { "none".to_string() } else { names.join("|") }
        };
        let mut f = Map::new();
        f.insert("ts".into(), clock.rfc3339(raw.ts_ns).into());
        f.insert("event".into(), event.into());
        f.insert("iface".into(), ifnames.get(&raw.ifindex).cloned().unwrap_or_else(|| format!("if{}", raw.ifindex)).into());
        f.insert("client".into(), client.to_string().into());
        f.insert("server".into(), server.to_string().into());
        if picked_up(raw.origin) {
            f.insert("picked_up".into(), true.into());
        }
        f.insert("from".into(), from.into());
        f.insert("flags".into(), flags.into());
        f.insert("seen".into(), Hook::from_raw(raw.hook).as_str().into());
        f.insert("seq".into(), raw.seq.into());
        f.insert("ack".into(), raw.ack.into());
        f.insert("state".into(), ConnState::from_raw(raw.new_state).as_str().into());
        f.insert("client_state".into(), EndpointState::from_raw(client_state).as_str().into());
        f.insert("server_state".into(), EndpointState::from_raw(server_state).as_str().into());
        if raw.kind == EVENT_RST {
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
        if raw.detail & tcp_track_common::event::DETAIL_SYNACK_INFERRED != 0 {
            f.insert("synack".into(), "inferred".into());
        }
        Value::Object(f)
    }

    /// The `FlowEvent::kind` of every kind the kernel makes.
    fn kernel_kinds() -> Vec<u16> {
        EventKind::ALL.iter().filter_map(|k| k.kernel_code()).collect()
    }

    /// xorshift64*: varied records without a dependency, the same every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.next() as usize % from.len()]
        }
    }

    /// Records of every kind, reset judgement and detail bit, over IPv4 and
    /// IPv6 (compressed, IPv4-mapped, unspecified), both directions and
    /// initiators, both hooks, picked up or not, every flag combination,
    /// extreme sequence numbers and ports, interface names that need JSON
    /// escaping, and timestamps that cross seconds in both directions.
    fn records(n: usize) -> Vec<FlowEvent> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let v6: Vec<[u8; 16]> = ["2001:db8::1", "2001:db8:0:1:2:3:4:5", "::ffff:198.18.0.7", "::", "fe80::1:2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
            .iter()
            .map(|a| a.parse::<Ipv6Addr>().unwrap().octets())
            .collect();
        let v4: [[u8; 4]; 5] = [[198, 18, 0, 1], [10, 0, 0, 255], [0, 0, 0, 0], [255, 255, 255, 255], [1, 20, 100, 9]];
        let kinds = kernel_kinds();
        (0..n)
            .map(|i| {
                let (any32, any16) = (rng.next() as u32, rng.next() as u16);
                let mut r = FlowEvent {
                    // Mostly forward in small steps, sometimes back or far.
                    ts_ns: match i % 7 {
                        0 => rng.next() % 4_000_000_000_000,
                        _ => 1_000_000_000 + i as u64 * 333_333_333 + rng.next() % 1000,
                    },
                    ifindex: rng.pick(&[1, 2, 3, 4, 99]),
                    seq: rng.pick(&[0, 1, u32::MAX, any32]),
                    ack: rng.pick(&[0, 1, u32::MAX, any32]),
                    lo_port: rng.pick(&[0, 1, 80, 65535, any16]),
                    hi_port: rng.pick(&[0, 443, 65535, any16.rotate_left(7)]),
                    kind: kinds[i % kinds.len()],
                    family: rng.pick(&[FAMILY_IPV4, FAMILY_IPV6]),
                    dir: rng.pick(&[0, 1]),
                    hook: rng.pick(&[HOOK_XDP, HOOK_TC_EGRESS, HOOK_CAPTURE]),
                    tcp_flags: (i / kinds.len()) as u8,
                    initiator: rng.pick(&[0, 1]),
                    origin: rng.pick(&[ORIGIN_SYN, ORIGIN_MIDSTREAM]),
                    old_state: rng.next() as u8 % 11,
                    new_state: rng.next() as u8 % 11,
                    reset: (i / kinds.len()) as u8 % 10,
                    detail: rng.next() as u8,
                    retrans: rng.next() as u8,
                    lo_state: rng.next() as u8 % 12,
                    hi_state: rng.next() as u8 % 12,
                    ..FlowEvent::default()
                };
                if r.family == FAMILY_IPV4 {
                    r.lo_addr[..4].copy_from_slice(&rng.pick(&v4));
                    r.hi_addr[..4].copy_from_slice(&rng.pick(&v4));
                } else {
                    r.lo_addr = rng.pick(&v6);
                    r.hi_addr = rng.pick(&v6);
                }
                r
            })
            .collect()
    }

    #[test]
    fn decoded_records_print_as_they_did_before() {
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_700_000), 0);
        let ifnames: HashMap<u32, String> =
            [(1, "eth0".to_string()), (2, "we\"ird\\name".to_string()), (3, "tab\there\u{1}".to_string()), (4, "vé-ü".to_string())].into();
        let decoder = Decoder::new(clock, ifnames.clone());
        let (mut json, mut text) = writers();
        let mut seen_kinds = std::collections::BTreeSet::new();
        for raw in records(20_000) {
            let ev = decoder.event(&raw).unwrap();
            seen_kinds.insert(ev.event);
            let reference = reference_decode(&clock, &ifnames, &raw);
            let mut line = Vec::new();
            json.write(&mut line, &ev).unwrap();
            assert_eq!(String::from_utf8(line).unwrap(), serde_json::to_string(&reference).unwrap() + "\n", "{raw:?}");
            let mut line = Vec::new();
            text.write(&mut line, &ev).unwrap();
            assert_eq!(String::from_utf8(line).unwrap(), reference_text(&reference) + "\n", "{raw:?}");
            assert_eq!(ev.to_json().unwrap(), reference, "serde_json's view of the event agrees too");
        }
        assert_eq!(seen_kinds.len(), kernel_kinds().len(), "every kind the kernel makes");
    }

    #[test]
    fn reporter_fields_print_like_serde_json() {
        let mut w = writers();
        let mut e = Event::new(ts("2026-11-21T05:30:00.5Z"), EventKind::SynFloodEnded, "x\"y".into(), None, "[2001:db8::1]:80".parse().unwrap());
        e.set("duration_s", 6.004);
        e.set("nan", f64::NAN);
        e.set("big", 1e300);
        e.set("tiny", 0.1 + 0.2);
        e.set("syns", u64::MAX);
        e.set("times", Vec::<Timestamp>::new());
        assert_like_reference(&mut w, &e);
        e.client = Some(Endpoint::Host("2001:db8::2".parse().unwrap()));
        e.picked_up = true;
        e.set("times", vec![ts("2026-11-21T05:29:58Z")]);
        assert_like_reference(&mut w, &e);
        e.client = Some(Endpoint::Host("198.18.0.9".parse().unwrap()));
        assert_like_reference(&mut w, &e);
    }

    #[test]
    fn a_time_past_year_9999_is_clamped_not_an_error() {
        let e = Event::new(Timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_800)), EventKind::State, "i".into(), None, "1.2.3.4:5".parse().unwrap());
        let mut out = Vec::new();
        write_event(&mut out, Format::Json, &e).unwrap();
        assert!(String::from_utf8(out).unwrap().starts_with(r#"{"ts":"9999-12-31T23:59:59.000000Z""#));
    }
}
