//! Writing events to stdout: readable text or JSON lines.

use std::io::{self, Write};

use serde_json::Value;

use crate::{config::Format, events::Event};

/// Write one event as one line.
pub fn write_event<W: Write>(out: &mut W, format: Format, ev: &Event) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, ev).map_err(io::Error::other)?;
            out.write_all(b"\n")
        }
        Format::Text => writeln!(out, "{}", text_line(ev)),
    }
}

/// `2026-11-21T05:30:00.123456Z veth0 time_wait  198.18.0.1:43210 -> 198.18.0.2:80 closer=client ...`
pub fn text_line(ev: &Event) -> String {
    let mut line = format!("{} {} {:<21}", ev.ts, ev.iface, ev.event);
    match &ev.client {
        Some(c) => line.push_str(&format!(" {c} -> {}", ev.server)),
        None => line.push_str(&format!(" server {}", ev.server)),
    }
    if ev.picked_up {
        line.push_str(" (picked up mid-stream)");
    }
    for (k, v) in &ev.fields {
        line.push_str(&format!(" {k}={}", plain(v)));
    }
    line
}

/// A JSON value without quotes: `abort`, `3`, `a,b`.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn ev() -> Event {
        let mut fields = Map::new();
        fields.insert("from".into(), "client".into());
        fields.insert("flags".into(), "FIN|ACK".into());
        fields.insert("times".into(), Value::from(vec!["t1", "t2"]));
        Event {
            ts: "2026-11-21T05:30:00.000001Z".into(),
            event: "fin",
            iface: "veth0".into(),
            client: Some("198.18.0.1:43210".into()),
            server: "198.18.0.2:80".into(),
            picked_up: false,
            fields,
        }
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
    }

    #[test]
    fn text_is_one_readable_line() {
        let mut buf = Vec::new();
        write_event(&mut buf, Format::Text, &ev()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-11-21T05:30:00.000001Z veth0 fin                   198.18.0.1:43210 -> 198.18.0.2:80 from=client flags=FIN|ACK times=t1,t2\n"
        );
        let mut flood = ev();
        flood.client = None;
        flood.event = "syn_flood";
        assert!(text_line(&flood).contains("syn_flood             server 198.18.0.2:80"));
    }
}
