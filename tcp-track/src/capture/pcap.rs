//! Classic pcap files (libpcap's format): a 24-byte file header, then
//! records of a 16-byte header and the captured bytes. The magic number
//! gives the byte order and the timestamp unit (a1b2c3d4 microseconds,
//! a1b23c4d nanoseconds). The formats themselves are `pcap-file`'s; this
//! module frames records and turns their fields into [`Record`]s.

use pcap_file::{pcap::PcapParser, Endianness, TsResolution};

use super::record::{Damage, Record};

pub const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// The file header's facts that records need.
#[derive(Debug)]
pub struct Pcap {
    parser: PcapParser,
}

impl Pcap {
    /// Decode the file header (all [`FILE_HEADER_LEN`] bytes). Returns the
    /// decoder, the link-type code and the snap length.
    pub fn from_header(bytes: &[u8]) -> Result<(Pcap, u32, u32), Damage> {
        let (_, parser) = PcapParser::new(bytes).map_err(|e| Damage(format!("pcap file header: {e}")))?;
        let header = parser.header();
        Ok((Pcap { parser }, u32::from(header.datalink), header.snaplen))
    }

    /// How long the record at the start of `bytes` is (header included),
    /// once its header is there.
    pub fn record_len(&self, bytes: &[u8]) -> Option<usize> {
        let field: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
        let incl_len = match self.parser.header().endianness {
            Endianness::Big => u32::from_be_bytes(field),
            Endianness::Little => u32::from_le_bytes(field),
        };
        Some(RECORD_HEADER_LEN + incl_len as usize)
    }

    pub const fn record_header_len(&self) -> usize {
        RECORD_HEADER_LEN
    }

    /// Decode one whole record (`bytes` is exactly [`Pcap::record_len`] long).
    pub fn record(&self, bytes: &[u8]) -> Result<Record, Damage> {
        let (_, raw) = self.parser.next_raw_packet(bytes).map_err(|e| Damage(format!("pcap record header: {e}")))?;
        // The original length may exceed the snap length (that is what a snap
        // length is for) and, from some writers, be below the captured length;
        // neither is damage. `RawPcapPacket`, unlike `PcapPacket`, does not
        // reject them.
        let frac_ns = match self.parser.header().ts_resolution {
            TsResolution::MicroSecond => raw.ts_frac as u64 * 1_000,
            TsResolution::NanoSecond => raw.ts_frac as u64,
        };
        Ok(Record {
            timestamp_ns: raw.ts_sec as u64 * 1_000_000_000 + frac_ns,
            interface: 0,
            data_at: RECORD_HEADER_LEN,
            data_len: raw.data.len(),
            orig_len: raw.orig_len,
        })
    }
}
