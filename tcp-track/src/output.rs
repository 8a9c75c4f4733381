//! Writing events to stdout: readable text or JSON lines.

use std::io::{self, Write};

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

/// `2026-11-21T05:30:00.123456Z veth0 flow_new 198.18.0.1:43210 -> 198.18.0.2:80 SYN from client (egress)`
pub fn text_line(ev: &Event) -> String {
    let what = match ev.event {
        "flow_new" if ev.picked_up => "new flow (picked up mid-stream)".to_string(),
        "flow_new" => "new flow".to_string(),
        "fin" => "FIN".to_string(),
        "state" => format!("now {}", ev.state),
        "reset" => {
            let mut s = format!("RESET {}", ev.reason.unwrap_or("?"));
            if let Some(w) = ev.window {
                s.push_str(&format!(" ({w} the window)"));
            }
            if let Some(a) = ev.action {
                s.push_str(&format!(", {a}"));
            }
            s
        }
        "time_wait_reuse" => format!("TIME_WAIT reused (ISN {})", if ev.isn_advanced == Some(true) { "advanced" } else { "NOT advanced" }),
        "handshake_retransmit" => format!("retransmission #{}", ev.retransmits.unwrap_or(0)),
        other => other.to_string(),
    };
    format!(
        "{} {} {:<8} {} -> {} {} from {} [client {}, server {}] ({}, seq {} ack {})",
        ev.ts, ev.iface, what, ev.client, ev.server, ev.flags, ev.from, ev.client_state, ev.server_state, ev.seen, ev.seq, ev.ack
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        Event {
            ts: "2026-11-21T05:30:00.000001Z".into(),
            event: "fin",
            iface: "veth0".into(),
            client: "198.18.0.1:43210".into(),
            server: "198.18.0.2:80".into(),
            picked_up: false,
            from: "client",
            flags: "FIN|ACK".into(),
            seen: "egress",
            seq: 10,
            ack: 20,
            state: "FIN_WAIT",
            client_state: "FIN-WAIT-1",
            server_state: "CLOSE-WAIT",
            reason: None,
            window: None,
            action: None,
            drop_justified: None,
            judged: None,
            isn_advanced: None,
            retransmits: None,
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
        assert_eq!(v["from"], "client");
    }

    #[test]
    fn text_is_one_readable_line() {
        let mut buf = Vec::new();
        write_event(&mut buf, Format::Text, &ev()).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "2026-11-21T05:30:00.000001Z veth0 FIN      198.18.0.1:43210 -> 198.18.0.2:80 FIN|ACK from client [client FIN-WAIT-1, server CLOSE-WAIT] (egress, seq 10 ack 20)\n"
        );
    }
}
