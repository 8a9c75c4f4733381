//! A captured frame as the shared parser sees it: the bytes the capture
//! holds, and the length the frame had on the wire.

use tcp_track_common::parse::{parse, Packet, Segment, Skip};

/// An Ethernet frame (possibly with a synthetic Ethernet header, see
/// [`super::link`]) cut to what the capture holds.
///
/// `frame_len` is the length on the wire, so a packet cut by the snap length
/// is judged by its IP length as the kernel would judge the whole frame,
/// while every `load` past the captured bytes fails: the parser goes as far
/// as the captured bytes go and never further (a TCP header cut short is
/// `Malformed::Truncated`; a RST whose bytes are missing gets no checksum
/// verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    wire_len: usize,
}

impl<'a> Frame<'a> {
    /// `wire_len` below `bytes.len()` is raised to it (a capture whose
    /// original length is smaller than what it holds).
    pub fn new(bytes: &'a [u8], wire_len: usize) -> Frame<'a> {
        Frame { bytes, wire_len: wire_len.max(bytes.len()) }
    }

    /// The captured bytes, from the (possibly synthetic) Ethernet header on.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The frame's length on the wire.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// Whether the capture holds less than the whole frame.
    pub fn is_truncated(&self) -> bool {
        self.bytes.len() < self.wire_len
    }

    /// The shared parser's summary of this frame.
    pub fn parse(&self) -> Result<Segment, Skip> {
        parse(self)
    }
}

impl Packet for Frame<'_> {
    #[inline(always)]
    fn frame_len(&self) -> usize {
        self.wire_len
    }

    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        self.bytes.load(offset)
    }
}
