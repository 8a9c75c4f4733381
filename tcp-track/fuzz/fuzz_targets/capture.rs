//! Arbitrary bytes → the capture reader → the shared parser, for every
//! packet the reader yields. The reader promises no panic on any input, a
//! frame never longer than the captured bytes, and to stop for good after
//! an error; the parser and the checksum check must then hold on the
//! frames it builds (synthetic headers, snap-length cuts).
//!
//! A small read buffer makes records larger than it (the buffer grows) and
//! records straddling refills common.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_track::capture::CaptureReader;
use tcp_track_common::parse::checksum::tcp_checksum;

fuzz_target!(|data: &[u8]| {
    let mut reader = match CaptureReader::with_buffer_size(data, 256) {
        Ok(reader) => reader,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut packets = 0u64;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                packets += 1;
                let frame = p.frame;
                assert!(frame.bytes().len() <= frame.wire_len());
                assert_eq!(p.is_truncated(), (p.data.len() as u64) < p.orig_len as u64);
                if let Ok(seg) = frame.parse() {
                    assert!((seg.l4_offset as usize) < frame.wire_len());
                    tcp_checksum(&frame, &seg);
                }
            }
            Ok(None) => break,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                // Fused after an error.
                assert!(matches!(reader.next_packet(), Ok(None)));
                break;
            }
        }
    }
    let stats = reader.stats();
    assert_eq!(stats.packets, packets);
    assert!(stats.truncated_packets <= stats.packets);
    assert!(stats.bytes <= data.len() as u64);
});
