//! Reading captures: pcap and pcapng files (or pipes), one packet at a
//! time, each turned into the Ethernet frame that the shared parser
//! (`tcp_track_common::parse`) reads, whatever the capture's link type.
//!
//! ```no_run
//! # fn main() -> Result<(), tcp_track::capture::CaptureError> {
//! let mut reader = tcp_track::capture::open("trace.pcapng".as_ref())?;
//! while let Some(packet) = reader.next_packet()? {
//!     if let Ok(segment) = packet.frame.parse() {
//!         println!("{} {:?} {}", packet.timestamp_ns, packet.interface.name, segment.sport);
//!     }
//! }
//! println!("{} packets cut by the snap length", reader.stats().truncated_packets);
//! # Ok(()) }
//! ```
//!
//! Layout, each module importing only those listed before it:
//! - `frame`: [`Frame`], captured bytes plus the length on the wire, as a
//!   `parse::Packet` that never reads past what was captured.
//! - `link`: [`LinkType`]s and their conversion into Ethernet frames.
//! - `error`: [`CaptureError`], what the user is told.
//! - `interface`: [`Interface`], a link type, a name and a timestamp unit.
//! - `record`, `input`: what a format decoder yields; the bounded read buffer.
//! - `pcap`, `pcapng`: the two file formats (decoded by `pcap-file`).
//! - `reader`: [`CaptureReader`], format detection, counters.
//! - `synth`: a generator of large synthetic captures, for benchmarks.

mod error;
mod frame;
mod input;
mod interface;
mod link;
mod pcap;
mod pcapng;
mod reader;
mod record;
pub mod synth;

pub use error::CaptureError;
pub use frame::Frame;
pub use interface::{Interface, Timestamps};
pub use link::{name as link_type_name, LinkType, SUPPORTED as SUPPORTED_LINK_TYPES};
pub use reader::{open, CaptureReader, CaptureStats, CapturedPacket};

#[cfg(test)]
mod tests;
