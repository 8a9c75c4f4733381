//! The bytes of a capture, read from a file or a pipe into one buffer that
//! holds at most the record being decoded (and what one `read` brought
//! after it), never the whole input.

use std::io::{self, Read};

/// How much one `read` asks for. Large enough that a file is read in few
/// system calls; a pipe gives what it has, which is used at once.
pub const DEFAULT_BUFFER: usize = 1 << 20;

/// The largest record (pcap packet, pcapng block) accepted. libpcap writes
/// at most 256 KiB per packet; a larger length is damage, and bounding it
/// bounds the buffer.
pub const MAX_RECORD: usize = 16 << 20;

pub struct Input<R> {
    src: R,
    buf: Vec<u8>,
    /// `buf[start..end]` holds the bytes not consumed yet.
    start: usize,
    end: usize,
    /// Position in the input of `buf[start]`.
    offset: u64,
}

impl<R: Read> Input<R> {
    pub fn new(src: R, buffer: usize) -> Input<R> {
        Input { src, buf: vec![0; buffer.max(64)], start: 0, end: 0, offset: 0 }
    }

    /// Read until at least `n` bytes (at most [`MAX_RECORD`]) are
    /// available, or the input ends. Returns how many are available (fewer
    /// than `n` only at the end of the input). Waits only for the bytes it
    /// needs, so a live pipe's packets come out as they arrive.
    pub fn fill(&mut self, n: usize) -> io::Result<usize> {
        let n = n.min(MAX_RECORD);
        while self.end - self.start < n {
            if self.end == self.buf.len() {
                if self.start > 0 {
                    // Move what is left to the front.
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    // A record larger than the buffer. Doubling (rather than
                    // growing to the length the record claims) keeps a damaged
                    // length from costing more than twice the bytes there are.
                    self.buf.resize((self.buf.len() * 2).min(n), 0);
                }
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.start)
    }

    /// The bytes available (see [`Input::fill`]).
    pub fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Mark `n` available bytes as decoded.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.end - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Position in the input of the first byte not consumed.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}
