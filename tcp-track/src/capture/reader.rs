//! [`CaptureReader`]: a pcap or pcapng capture, one packet at a time, each
//! with the Ethernet frame the shared parser reads.

use std::{
    fs::File,
    io::{self, Read},
    path::Path,
};

use super::{
    error::CaptureError,
    frame::Frame,
    input::{Input, DEFAULT_BUFFER, MAX_RECORD},
    interface::{Interface, Timestamps},
    link::{self, LinkType},
    pcap::{self, Pcap},
    pcapng::{PcapNg, BLOCK_PEEK_LEN},
    record::{Damage, Record},
};

/// The pcap magic numbers, as the file's first 4 bytes (both byte orders,
/// micro- and nanosecond timestamps).
const PCAP_MAGICS: [[u8; 4]; 4] =
    [[0xa1, 0xb2, 0xc3, 0xd4], [0xd4, 0xc3, 0xb2, 0xa1], [0xa1, 0xb2, 0x3c, 0x4d], [0x4d, 0x3c, 0xb2, 0xa1]];

/// One packet of a capture. It borrows the reader: take what you need
/// before asking for the next one.
#[derive(Clone, Copy, Debug)]
pub struct CapturedPacket<'a> {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// The interface it was captured on (its link type, its name in pcapng).
    pub interface: &'a Interface,
    pub link_type: LinkType,
    /// The bytes the capture holds, from the link-layer header on.
    pub data: &'a [u8],
    /// The packet's length on the wire (more than `data` when the snap
    /// length cut it).
    pub orig_len: u32,
    /// The packet as an Ethernet frame for `tcp_track_common::parse`.
    pub frame: Frame<'a>,
}

impl CapturedPacket<'_> {
    /// Whether the snap length cut this packet.
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < self.orig_len as u64
    }
}

/// Counts over the packets read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets yielded.
    pub packets: u64,
    /// Of those, packets the snap length cut (captured < original length).
    pub truncated_packets: u64,
    /// Bytes of input consumed (file offset of the next record).
    pub bytes: u64,
}

enum Format {
    Pcap { decoder: Pcap, interface: Interface },
    PcapNg(PcapNg),
}

/// Reads a pcap or pcapng capture from any byte stream, keeping in memory
/// one buffer of at most the largest record (16 MiB) plus one read's worth,
/// never the whole input: a live pipe (`tcpdump -U -w - | ...`) yields each
/// packet as soon as its bytes arrive.
///
/// After an error, [`CaptureReader::next_packet`] returns `Ok(None)`: the
/// packets before the damage have been yielded. Nothing panics on any input.
pub struct CaptureReader<R> {
    input: Input<R>,
    format: Format,
    /// Synthetic frames of link types that do not carry an Ethernet header.
    scratch: Vec<u8>,
    /// Length of the record last yielded, still in the buffer.
    pending: usize,
    /// Records decoded (packets, or pcapng blocks of any kind).
    records: u64,
    stats: CaptureStats,
    finished: bool,
}

/// Open a capture file, or standard input for `-`.
pub fn open(path: &Path) -> Result<CaptureReader<Box<dyn Read + Send>>, CaptureError> {
    let src: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?)
    };
    CaptureReader::new(src)
}

impl<R: Read> CaptureReader<R> {
    /// Read the file header (pcap) or first section header (pcapng).
    pub fn new(src: R) -> Result<CaptureReader<R>, CaptureError> {
        Self::with_buffer_size(src, DEFAULT_BUFFER)
    }

    /// [`CaptureReader::new`] with `buffer` bytes per read instead of 1 MiB.
    pub fn with_buffer_size(src: R, buffer: usize) -> Result<CaptureReader<R>, CaptureError> {
        let mut input = Input::new(src, buffer);
        let io_error = |source| CaptureError::Io { offset: 0, source };
        let have = input.fill(4).map_err(io_error)?.min(4);
        let magic = &input.available()[..have];
        if have == 0 {
            return Err(CaptureError::Empty);
        }
        let truncated = |what: &str, needed: usize, available: usize| CaptureError::Truncated {
            what: what.into(),
            offset: 0,
            needed: needed as u64,
            available: available as u64,
            packets: 0,
        };
        let malformed = |Damage(reason)| CaptureError::Malformed { offset: 0, packets: 0, reason };
        let format = if have == 4 && PcapNg::is_pcapng(magic) {
            let have = input.fill(BLOCK_PEEK_LEN).map_err(io_error)?;
            if have < BLOCK_PEEK_LEN {
                return Err(truncated("the pcapng section header", BLOCK_PEEK_LEN, have));
            }
            let len = PcapNg::block_len(input.available(), None).map_err(malformed)?;
            let have = input.fill(len).map_err(io_error)?;
            if have < len {
                return Err(truncated("the pcapng section header", len, have));
            }
            let format = Format::PcapNg(PcapNg::from_first_block(&input.available()[..len]).map_err(malformed)?);
            input.consume(len);
            format
        } else if have == 4 && PCAP_MAGICS.iter().any(|m| m == magic) {
            let have = input.fill(pcap::FILE_HEADER_LEN).map_err(io_error)?;
            if have < pcap::FILE_HEADER_LEN {
                return Err(truncated("the pcap file header", pcap::FILE_HEADER_LEN, have));
            }
            let (decoder, code, snaplen) =
                Pcap::from_header(&input.available()[..pcap::FILE_HEADER_LEN]).map_err(malformed)?;
            let link = LinkType::from_code(code).ok_or(CaptureError::UnsupportedLinkType {
                code,
                name: link::name(code),
                interface: None,
            })?;
            input.consume(pcap::FILE_HEADER_LEN);
            let interface = Interface {
                index: 0,
                name: None,
                link_code: code,
                link: Some(link),
                snaplen,
                timestamps: Timestamps::default(),
            };
            Format::Pcap { decoder, interface }
        } else {
            return Err(CaptureError::NotCapture { first_bytes: magic.to_vec() });
        };
        let stats = CaptureStats { bytes: input.offset(), ..CaptureStats::default() };
        Ok(CaptureReader { input, format, scratch: Vec::new(), pending: 0, records: 0, stats, finished: false })
    }

    /// The next packet, `Ok(None)` at the end of the input (or after an
    /// error).
    pub fn next_packet(&mut self) -> Result<Option<CapturedPacket<'_>>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        let record = match self.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.finished = true;
                return Ok(None);
            }
            Err(e) => {
                self.finished = true;
                return Err(e);
            }
        };
        // The record is still in the buffer (consumed on the next call).
        let offset = self.input.offset();
        let packets = self.stats.packets;
        let interface = match &self.format {
            Format::Pcap { interface, .. } => Some(interface),
            Format::PcapNg(ng) => ng.interfaces().get(record.interface as usize),
        };
        let Some(interface) = interface else {
            let declared = match &self.format {
                Format::PcapNg(ng) => ng.interfaces().len(),
                Format::Pcap { .. } => 1,
            };
            self.finished = true;
            return Err(CaptureError::Malformed {
                offset,
                packets,
                reason: format!("a packet of interface {}, but its section declares {declared}", record.interface),
            });
        };
        let Some(link) = interface.link else {
            self.finished = true;
            return Err(CaptureError::UnsupportedLinkType {
                code: interface.link_code,
                name: link::name(interface.link_code),
                interface: Some(interface.index),
            });
        };
        let Some(data) = self.input.available().get(record.data_at..record.data_at + record.data_len) else {
            self.finished = true;
            return Err(CaptureError::Malformed { offset, packets, reason: "packet data outside its record".into() });
        };
        self.stats.packets += 1;
        if (data.len() as u64) < record.orig_len as u64 {
            self.stats.truncated_packets += 1;
        }
        let frame = link.frame(data, record.orig_len, &mut self.scratch);
        Ok(Some(CapturedPacket {
            timestamp_ns: record.timestamp_ns,
            interface,
            link_type: link,
            data,
            orig_len: record.orig_len,
            frame,
        }))
    }

    /// The interfaces declared so far (for pcapng, in the current section).
    pub fn interfaces(&self) -> &[Interface] {
        match &self.format {
            Format::Pcap { interface, .. } => std::slice::from_ref(interface),
            Format::PcapNg(ng) => ng.interfaces(),
        }
    }

    pub fn stats(&self) -> CaptureStats {
        CaptureStats { bytes: self.input.offset() + self.pending as u64, ..self.stats }
    }

    /// Frame, then decode, the next record that holds a packet; leave it in
    /// the buffer and remember its length in `pending`.
    fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        self.input.consume(std::mem::take(&mut self.pending));
        loop {
            let offset = self.input.offset();
            let packets = self.stats.packets;
            let records = self.records;
            let (header_len, is_pcap) = match &self.format {
                Format::Pcap { decoder, .. } => (decoder.record_header_len(), true),
                Format::PcapNg(_) => (BLOCK_PEEK_LEN, false),
            };
            // Named only when something is wrong: no allocation per packet.
            // pcapng blocks count from the first section header.
            let what = || if is_pcap { format!("packet {}", records + 1) } else { format!("block {}", records + 2) };
            let truncated = |needed: usize, available: usize| CaptureError::Truncated {
                what: what(),
                offset,
                needed: needed as u64,
                available: available as u64,
                packets,
            };
            let malformed = |Damage(reason)| CaptureError::Malformed { offset, packets, reason };
            let io_error = |source| CaptureError::Io { offset, source };

            let have = self.input.fill(header_len).map_err(io_error)?;
            if have == 0 {
                return Ok(None);
            }
            if have < header_len {
                return Err(truncated(header_len, have));
            }
            let len = match &self.format {
                Format::Pcap { decoder, .. } => match decoder.record_len(self.input.available()) {
                    Some(len) if len <= MAX_RECORD => len,
                    Some(len) => {
                        return Err(malformed(Damage(format!(
                            "{} claims {} captured bytes, more than the {MAX_RECORD} a packet can have",
                            what(),
                            len - header_len
                        ))))
                    }
                    None => return Err(truncated(header_len, have)),
                },
                Format::PcapNg(ng) => PcapNg::block_len(self.input.available(), Some(ng)).map_err(malformed)?,
            };
            let have = self.input.fill(len).map_err(io_error)?;
            if have < len {
                return Err(truncated(len, have));
            }
            let bytes = &self.input.available()[..len];
            let record = match &mut self.format {
                Format::Pcap { decoder, .. } => Some(decoder.record(bytes).map_err(malformed)?),
                Format::PcapNg(ng) => ng.block(bytes).map_err(malformed)?,
            };
            self.records += 1;
            match record {
                Some(record) => {
                    self.pending = len;
                    return Ok(Some(record));
                }
                None => self.input.consume(len),
            }
        }
    }
}
