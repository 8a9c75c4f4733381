//! pcapng files: blocks, each with its type and total length first. Section
//! header blocks set the byte order (and start a new list of interfaces);
//! interface description blocks declare a link type, a snap length, a name
//! and a timestamp unit (`if_tsresol`, microseconds by default); packets
//! (enhanced, simple, and the obsolete packet block) name their interface.
//! Other blocks (name resolution, statistics, custom) are skipped. The
//! blocks themselves are decoded by `pcap-file`.

use pcap_file::{
    pcapng::{
        blocks::{
            interface_description::InterfaceDescriptionOption, ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK,
            PACKET_BLOCK, SECTION_HEADER_BLOCK, SIMPLE_PACKET_BLOCK,
        },
        Block, PcapNgParser,
    },
    Endianness,
};

use super::{
    input::MAX_RECORD,
    interface::{Interface, Timestamps},
    link::LinkType,
    record::{Damage, Record},
};

/// Type, total length, and the section header's byte-order magic: what is
/// read before the length of a block is known.
pub const BLOCK_PEEK_LEN: usize = 12;
const SHB_TYPE: [u8; 4] = SECTION_HEADER_BLOCK.to_be_bytes();
/// Interfaces a section may declare. Each costs a few dozen bytes; the bound
/// keeps a damaged file from growing the list without end.
const MAX_INTERFACES: usize = 1 << 16;

pub struct PcapNg {
    parser: PcapNgParser,
    interfaces: Vec<Interface>,
    /// Simple packet blocks carry no timestamp: they get the last one seen.
    last_timestamp_ns: u64,
}

impl PcapNg {
    /// Whether `bytes` (at least 4) start a pcapng file.
    pub fn is_pcapng(bytes: &[u8]) -> bool {
        bytes.starts_with(&SHB_TYPE)
    }

    /// Decode the first block, which must be a section header.
    pub fn from_first_block(bytes: &[u8]) -> Result<PcapNg, Damage> {
        let (_, parser) = PcapNgParser::new(bytes).map_err(|e| Damage(format!("pcapng section header: {e}")))?;
        Ok(PcapNg { parser, interfaces: Vec::new(), last_timestamp_ns: 0 })
    }

    /// The total length of the block starting `bytes` (at least
    /// [`BLOCK_PEEK_LEN`] bytes), in the byte order of the current section
    /// (`None` before the first), or what is wrong with it.
    pub fn block_len(bytes: &[u8], section: Option<&PcapNg>) -> Result<usize, Damage> {
        let word = |at: usize| -> [u8; 4] { bytes.get(at..at + 4).and_then(|w| w.try_into().ok()).unwrap_or([0; 4]) };
        let endianness = if word(0) == SHB_TYPE {
            // A section header declares its own byte order.
            match u32::from_be_bytes(word(8)) {
                0x1a2b_3c4d => Endianness::Big,
                0x4d3c_2b1a => Endianness::Little,
                magic => {
                    return Err(Damage(format!(
                        "pcapng section header with byte-order magic {magic:08x}, neither 1a2b3c4d nor 4d3c2b1a"
                    )))
                }
            }
        } else {
            match section {
                Some(s) => s.parser.section().endianness,
                None => return Err(Damage("pcapng file without a section header first".into())),
            }
        };
        let len = match endianness {
            Endianness::Big => u32::from_be_bytes(word(4)),
            Endianness::Little => u32::from_le_bytes(word(4)),
        } as usize;
        if len < BLOCK_PEEK_LEN || !len.is_multiple_of(4) || len > MAX_RECORD {
            return Err(Damage(format!(
                "pcapng block length {len} (a block is a multiple of 4 bytes, from 12 to {MAX_RECORD})"
            )));
        }
        Ok(len)
    }

    /// Decode one whole block (`bytes` is exactly [`PcapNg::block_len`]
    /// long): a packet gives a [`Record`], other blocks update the section
    /// and its interfaces or are skipped.
    pub fn block(&mut self, bytes: &[u8]) -> Result<Option<Record>, Damage> {
        let malformed = |what: &str, e: pcap_file::PcapError| Damage(format!("pcapng {what}: {e}"));
        let first: [u8; 4] = bytes.get(..4).and_then(|w| w.try_into().ok()).unwrap_or_default();
        let type_ = match self.parser.section().endianness {
            Endianness::Big => u32::from_be_bytes(first),
            Endianness::Little => u32::from_le_bytes(first),
        };
        let packet = match type_ {
            ENHANCED_PACKET_BLOCK | PACKET_BLOCK | SIMPLE_PACKET_BLOCK => {
                self.parser.next_block(bytes).map_err(|e| malformed("packet block", e))?.1
            }
            _ => {
                // Section and interface blocks update the parser's state; the
                // rest are framed and skipped without decoding their contents.
                self.parser.next_raw_block(bytes).map_err(|e| malformed("block", e))?;
                if bytes.starts_with(&SHB_TYPE) {
                    self.interfaces.clear();
                } else if type_ == INTERFACE_DESCRIPTION_BLOCK {
                    self.add_interface()?;
                }
                return Ok(None);
            }
        };
        let offset_in = |data: &[u8]| (data.as_ptr() as usize).saturating_sub(bytes.as_ptr() as usize);
        let record = match packet {
            Block::EnhancedPacket(p) => Record {
                // `pcap-file` reads the 64-bit timestamp as nanoseconds whatever
                // the interface's unit; `as_nanos` gives the raw count back.
                timestamp_ns: self.timestamp(p.interface_id, p.timestamp.as_nanos() as u64),
                interface: p.interface_id,
                data_at: offset_in(&p.data),
                data_len: p.data.len(),
                orig_len: p.original_len,
            },
            Block::Packet(p) => Record {
                timestamp_ns: self.timestamp(p.interface_id as u32, p.timestamp),
                interface: p.interface_id as u32,
                data_at: offset_in(&p.data),
                data_len: p.data.len(),
                orig_len: p.original_len,
            },
            Block::SimplePacket(p) => {
                // The block holds the packet and its padding; what was captured
                // is the original length cut to the snap length (0: none).
                let snaplen = match self.interfaces.first() {
                    Some(i) if i.snaplen != 0 => i.snaplen,
                    _ => u32::MAX,
                };
                let captured = p.data.len().min(p.original_len.min(snaplen) as usize);
                Record {
                    timestamp_ns: self.last_timestamp_ns,
                    interface: 0,
                    data_at: offset_in(&p.data),
                    data_len: captured,
                    orig_len: p.original_len,
                }
            }
            _ => return Ok(None),
        };
        self.last_timestamp_ns = record.timestamp_ns;
        Ok(Some(record))
    }

    /// The interfaces of the current section.
    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    fn timestamp(&self, interface: u32, ticks: u64) -> u64 {
        match self.interfaces.get(interface as usize) {
            Some(i) => i.timestamps.to_ns(ticks),
            None => ticks,
        }
    }

    fn add_interface(&mut self) -> Result<(), Damage> {
        let Some(idb) = self.parser.interfaces().last() else {
            return Ok(());
        };
        if self.interfaces.len() >= MAX_INTERFACES {
            return Err(Damage(format!("more than {MAX_INTERFACES} interfaces in one pcapng section")));
        }
        let code = u32::from(idb.linktype);
        let mut interface = Interface {
            index: self.interfaces.len() as u32,
            name: None,
            link_code: code,
            link: LinkType::from_code(code),
            snaplen: idb.snaplen,
            timestamps: Timestamps::default(),
        };
        for option in &idb.options {
            match option {
                InterfaceDescriptionOption::IfName(name) => interface.name = Some(name.to_string()),
                InterfaceDescriptionOption::IfTsResol(r) => interface.timestamps.resolution = *r,
                InterfaceDescriptionOption::IfTsOffset(s) => interface.timestamps.offset_s = *s,
                _ => {}
            }
        }
        self.interfaces.push(interface);
        Ok(())
    }
}
