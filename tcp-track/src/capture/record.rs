//! What a file format hands the reader for one packet, and what it says
//! when a record is damaged; the reader adds where and after how many
//! packets.

/// One packet record, located in the bytes of the record that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Index of the interface (pcapng) in its section; 0 in a pcap file.
    pub interface: u32,
    /// Where the captured bytes start in the record, and how many.
    pub data_at: usize,
    pub data_len: usize,
    /// The packet's length on the wire.
    pub orig_len: u32,
}

/// A record that cannot be read as what it claims to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage(pub String);
