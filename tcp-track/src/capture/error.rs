//! What can go wrong reading a capture, each case with the facts a user
//! needs to act on it (where in the file, how many packets were read).

use std::io;

/// An error reading a capture. After one, the reader yields nothing more:
/// the packets before the damage have been yielded already.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The capture file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },

    /// The input had no bytes at all.
    #[error("empty input: not a capture file (a pcap or pcapng file starts with a 4-byte magic number)")]
    Empty,

    /// The first bytes are not a pcap magic number nor a pcapng section header.
    #[error(
        "not a capture file: it starts with {}, not a pcap magic number (a1b2c3d4 or a1b23c4d, in either byte order) \
         nor a pcapng section header (0a0d0d0a)",
        hex(.first_bytes)
    )]
    NotCapture {
        /// Up to the first 4 bytes of the input.
        first_bytes: Vec<u8>,
    },

    /// The input ends inside a header or a record: what came before it was
    /// yielded.
    #[error(
        "capture truncated at byte {offset}: {what} needs {needed} bytes, the input ends after {available} \
         ({packets} packets read before it)"
    )]
    Truncated {
        /// What was cut: "the file header", "packet 12", "block 4 (enhanced packet)".
        what: String,
        /// Byte offset of that header or record in the input.
        offset: u64,
        needed: u64,
        available: u64,
        /// Packets yielded before the damage.
        packets: u64,
    },

    /// A header or record that cannot be read as what it claims to be.
    #[error("malformed capture at byte {offset} ({packets} packets read before it): {reason}")]
    Malformed { offset: u64, packets: u64, reason: String },

    /// A link type whose frames cannot be turned into what the parser reads.
    #[error(
        "link type {code} ({name}) is not supported{}; supported: {}",
        interface.map(|i| format!(" (interface {i})")).unwrap_or_default(),
        super::link::SUPPORTED
    )]
    UnsupportedLinkType {
        code: u32,
        /// The link type's name in the tcpdump registry, or "unknown".
        name: &'static str,
        /// The pcapng interface it was declared by (None in a pcap file).
        interface: Option<u32>,
    },

    /// Reading the input failed (not its format: the file or pipe itself).
    #[error("reading the capture failed at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            s.push_str(&format!(" (\"{text}\")"));
        }
    }
    s
}
