//! Arbitrary bytes as ring-buffer records → the daemon's decode path: the
//! size check and bytemuck read (`Decoder::decode`), `Decoder::event`, the
//! reporter's `on_event` and audit against a fake flow table, and the
//! writer in both formats. A record from a newer or corrupt kernel side
//! must be skipped (an error, or "unknown" values), never crash the daemon.
//!
//! Input layout: a sequence of records, each a length byte then that many
//! bytes (a length past the end takes the rest). A record of the right
//! size (72 bytes) decodes as it is; a longer one is also decoded from its
//! first 72 bytes, as a newer kernel appending fields would send, and its
//! next 96 bytes, when present, become the flow's record in the fake table
//! that the reporter reads. A connection record (`EVENT_CONN_END`) goes
//! the daemon's way for it (`split_record`, `Reporter::on_conn_end`), and
//! the run ends with the daemon's stop (`Reporter::stop`).
#![no_main]

use std::{collections::HashMap, io, time::SystemTime};

use libfuzzer_sys::fuzz_target;
use tcp_track::{
    clock::WallClock,
    config::{EventSet, Format, ReportConfig},
    events::{split_record, DecodeError, Decoder},
    output::Writer,
    report::{FlowId, FlowLookup, Reporter},
};
use tcp_track_common::{event::FlowEvent, flow::FlowRecord};

const EVENT: usize = std::mem::size_of::<FlowEvent>();
const RECORD: usize = std::mem::size_of::<FlowRecord>();

#[derive(Default)]
struct FakeTable(HashMap<FlowId, FlowRecord>);

impl FlowLookup for FakeTable {
    fn lookup(&self, id: &FlowId) -> Option<FlowRecord> {
        self.0.get(id).copied()
    }
    fn remove(&mut self, id: &FlowId) {
        self.0.remove(id);
    }
    fn open_flows(&self) -> Vec<(FlowId, FlowRecord)> {
        self.0.iter().map(|(id, r)| (*id, *r)).collect()
    }
}

fuzz_target!(|data: &[u8]| {
    let clock = WallClock::anchored(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000), 0);
    let decoder = Decoder::new(clock.clone(), HashMap::from([(1, "eth-test".to_string())]));
    let cfg = ReportConfig {
        syn_flood_threshold: 2,
        time_wait_pressure: 2,
        max_half_open_tracked: 8,
        events: EventSet::All.into(),
        conn_interval: Some(std::time::Duration::from_secs(1)),
        ..ReportConfig::default()
    };
    let mut reporter = Reporter::new(cfg, FakeTable::default(), clock);
    let mut writers = [Writer::new(Format::Text), Writer::new(Format::Json)];
    let mut now = 0u64;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (bytes, tail) = tail.split_at((len as usize).min(tail.len()));
        rest = tail;
        let decoded = decoder.decode(bytes);
        if bytes.len() != EVENT {
            assert_eq!(decoded, Err(DecodeError::BadSize(bytes.len())));
        }
        if bytes.len() < EVENT {
            continue;
        }
        let raw: FlowEvent = bytemuck::pod_read_unaligned(&bytes[..EVENT]);
        if let Some(rec) = bytes.get(EVENT..EVENT + RECORD) {
            reporter.lookup_mut().0.insert(FlowId::of(&raw), bytemuck::pod_read_unaligned(rec));
        }
        now = now.max(raw.ts_ns);
        let out: Vec<_> = match split_record(bytes) {
            Ok((raw, Some(rec))) => reporter.on_conn_end(&raw, &rec, decoder.ifname(raw.ifindex)),
            Ok((raw, None)) => match reporter.on_event(&raw, &decoder) {
                Ok(events) => events.collect(),
                Err(_) => continue,
            },
            Err(_) => continue,
        };
        let later = [reporter.audit(now, 4), reporter.on_time(now)].concat();
        for ev in out.iter().chain(&later) {
            for w in &mut writers {
                w.write(&mut io::sink(), ev).expect("writing to a sink");
            }
        }
    }
    for ev in &reporter.stop(now, decoder.first_ifname()) {
        for w in &mut writers {
            w.write(&mut io::sink(), ev).expect("writing to a sink");
        }
    }
});
