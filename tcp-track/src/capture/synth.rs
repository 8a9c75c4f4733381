//! Synthetic captures of many short connections (handshake, a request and a
//! response, FIN close), for benchmarks and tests of the offline reader.
//!
//! Connections run `concurrent` at a time, their segments interleaved as
//! they would be on a busy link, each with its own 4-tuple (clients in
//! 198.18.0.0/16, servers in 198.19.0.0/24 port 80), so a tracker sees
//! distinct flows opening and closing, never a reused port.

use std::{io::Write, time::Duration};

use etherparse::{PacketBuilder, TcpOptionElement};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink, Endianness, PcapError, TsResolution,
};

/// Segments of one connection: SYN, SYN-ACK, ACK, request, response, ACK,
/// FIN, FIN, ACK.
pub const PACKETS_PER_CONNECTION: u64 = 9;

/// Client ports used per client address; past them the next address.
const PORTS_PER_CLIENT: u64 = 50_000;
const FIRST_PORT: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
pub struct SynthConfig {
    /// Connections written.
    pub connections: u64,
    /// Connections in progress at once (their segments interleave).
    pub concurrent: u64,
    /// Bytes of the request and of the response.
    pub payload: usize,
    /// Timestamp of the first packet, nanoseconds since the epoch.
    pub start_ns: u64,
    /// Time between consecutive packets.
    pub gap_ns: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            connections: 1000,
            concurrent: 256,
            payload: 100,
            start_ns: 1_767_225_600_000_000_000,
            gap_ns: 10_000,
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    pub packets: u64,
    /// Bytes of the pcap file, headers included.
    pub bytes: u64,
}

/// Write a nanosecond pcap (Ethernet, little-endian) of
/// `config.connections` connections to `out`.
pub fn write_many_connections<W: Write>(out: W, config: &SynthConfig) -> Result<SynthSummary, PcapError> {
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(out, header)?;
    let mut summary = SynthSummary { packets: 0, bytes: 24 };
    let payload = vec![0x61u8; config.payload];
    let mut frame = Vec::with_capacity(128 + config.payload);
    let mut ts = config.start_ns;
    let concurrent = config.concurrent.max(1);
    let mut first = 0;
    while first < config.connections {
        let batch = first..config.connections.min(first + concurrent);
        for step in 0..PACKETS_PER_CONNECTION {
            for i in batch.clone() {
                frame.clear();
                Connection::new(i, config.payload as u32).segment(step, &payload, &mut frame);
                let packet = PcapPacket::new(Duration::from_nanos(ts), frame.len() as u32, &frame);
                summary.bytes += writer.write_packet(&packet)? as u64;
                summary.packets += 1;
                ts += config.gap_ns;
            }
        }
        first = batch.end;
    }
    Ok(summary)
}

/// The addresses and initial sequence numbers of connection `i`.
struct Connection {
    client: ([u8; 4], u16),
    server: ([u8; 4], u16),
    client_isn: u32,
    server_isn: u32,
    payload: u32,
}

impl Connection {
    fn new(i: u64, payload: u32) -> Connection {
        let host = i / PORTS_PER_CLIENT;
        Connection {
            client: ([198, 18, (host >> 8) as u8, host as u8], (FIRST_PORT + i % PORTS_PER_CLIENT) as u16),
            server: ([198, 19, 0, 1 + (i % 250) as u8], 80),
            client_isn: mix(i) as u32,
            server_isn: (mix(i) >> 32) as u32,
            payload,
        }
    }

    /// Segment `step` (0..PACKETS_PER_CONNECTION) as an Ethernet frame.
    fn segment(&self, step: u64, payload: &[u8], out: &mut Vec<u8>) {
        let (c, s, p) = (self.client_isn, self.server_isn, self.payload);
        let to_server =
            |seq: u32| {
                PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4(self.client.0, self.server.0, 64)
                    .tcp(self.client.1, self.server.1, seq, 64240)
            };
        let to_client =
            |seq: u32| {
                PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
                    .ipv4(self.server.0, self.client.0, 64)
                    .tcp(self.server.1, self.client.1, seq, 65160)
            };
        let syn_options = [
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::WindowScale(7),
        ];
        let (builder, body): (_, &[u8]) = match step {
            0 => (to_server(c).syn().options(&syn_options).expect("three options fit"), &[]),
            1 => (to_client(s).syn().ack(c.wrapping_add(1)).options(&syn_options).expect("three options fit"), &[]),
            2 => (to_server(c.wrapping_add(1)).ack(s.wrapping_add(1)), &[]),
            3 => (to_server(c.wrapping_add(1)).psh().ack(s.wrapping_add(1)), payload),
            4 => (to_client(s.wrapping_add(1)).psh().ack(c.wrapping_add(1 + p)), payload),
            5 => (to_server(c.wrapping_add(1 + p)).ack(s.wrapping_add(1 + p)), &[]),
            6 => (to_server(c.wrapping_add(1 + p)).fin().ack(s.wrapping_add(1 + p)), &[]),
            7 => (to_client(s.wrapping_add(1 + p)).fin().ack(c.wrapping_add(2 + p)), &[]),
            _ => (to_server(c.wrapping_add(2 + p)).ack(s.wrapping_add(2 + p)), &[]),
        };
        builder.write(out, body).expect("writing to a Vec cannot fail");
    }
}

/// SplitMix64: well-spread initial sequence numbers from a counter.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
