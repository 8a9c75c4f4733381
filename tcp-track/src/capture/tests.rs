//! Captures written by the tests (with `pcap-file`'s writers, and some by
//! hand as an independent check of the formats), read back.

use std::{
    borrow::Cow,
    io::{self, Read},
    net::SocketAddrV4,
    sync::mpsc,
    time::Duration,
};

use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        blocks::{
            enhanced_packet::EnhancedPacketBlock,
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            simple_packet::SimplePacketBlock,
        },
        PcapNgWriter,
    },
    DataLink, Endianness, TsResolution,
};
use tcp_track_common::parse::{parse, Malformed, Segment, Skip, ETH_P_IPV4};

use super::*;
use crate::test_support::frames::{tcp_segment, Tcp};

const SECOND: u64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z plus a fraction with every digit used.
const T0: u64 = 1_767_225_600 * SECOND + 123_456_789;

fn v4(ip: [u8; 4], port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip.into(), port)
}

/// An IPv4 Ethernet frame with `payload` bytes of TCP payload.
fn eth_v4(flags: &str, seq: u32, payload: usize) -> Vec<u8> {
    tcp_segment(
        v4([198, 18, 0, 1], 40000),
        v4([198, 18, 0, 2], 80),
        [2, 0, 0, 0, 0, 2],
        Tcp { flags, seq, ack: 77, window: 512, wscale: flags.contains('S').then_some(7), payload },
    )
    .unwrap()
}

/// An IPv6 Ethernet frame.
fn eth_v6(seq: u32) -> Vec<u8> {
    let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let b = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut out = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6(a, b, 64)
        .tcp(443, 50000, seq, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

/// A VLAN-tagged (802.1Q, VID 42) copy of an Ethernet frame.
fn vlan(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00, 0x00, 42]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// The IP packet inside an untagged Ethernet frame.
fn ip_of(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

/// What a Linux cooked v1 capture holds for an Ethernet frame.
fn sll(frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    out.extend_from_slice(&frame[12..]); // protocol, then the network layer
    out
}

/// What a Linux cooked v2 capture holds for an Ethernet frame.
fn sll2(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[12..14].to_vec(); // protocol
    out.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
    out.extend_from_slice(&frame[14..]);
    out
}

/// What a BSD loopback capture holds for an Ethernet frame (AF_INET 2 or
/// AF_INET6 30, host byte order).
fn null(frame: &[u8]) -> Vec<u8> {
    let family: u32 = if frame[12] == 0x08 { 2 } else { 30 };
    let mut out = family.to_le_bytes().to_vec();
    out.extend_from_slice(ip_of(frame));
    out
}

struct Pkt {
    ts_ns: u64,
    data: Vec<u8>,
    orig_len: u32,
}

fn pkt(ts_ns: u64, data: Vec<u8>) -> Pkt {
    let orig_len = data.len() as u32;
    Pkt { ts_ns, data, orig_len }
}

fn pcap(link: u32, endianness: Endianness, ts_resolution: TsResolution, packets: &[Pkt]) -> Vec<u8> {
    let header = PcapHeader { datalink: DataLink::from(link), endianness, ts_resolution, ..PcapHeader::default() };
    let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
    for p in packets {
        w.write_packet(&PcapPacket::new(Duration::from_nanos(p.ts_ns), p.orig_len, &p.data)).unwrap();
    }
    w.into_writer()
}

struct Iface {
    link: u32,
    name: Option<&'static str>,
    tsresol: Option<u8>,
    snaplen: u32,
}

fn iface(link: u32, name: &'static str, tsresol: Option<u8>) -> Iface {
    Iface { link, name: Some(name), tsresol, snaplen: 0 }
}

/// A pcapng section: the interfaces, then (interface, timestamp in that
/// interface's ticks, packet) enhanced packet blocks.
fn pcapng(endianness: Endianness, ifaces: &[Iface], packets: &[(u32, u64, Pkt)]) -> Vec<u8> {
    let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
    for i in ifaces {
        let mut options = Vec::new();
        if let Some(n) = i.name {
            options.push(InterfaceDescriptionOption::IfName(n.into()));
        }
        if let Some(r) = i.tsresol {
            options.push(InterfaceDescriptionOption::IfTsResol(r));
        }
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::from(i.link),
            snaplen: i.snaplen,
            options,
        })
        .unwrap();
    }
    for (interface_id, ticks, p) in packets {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: *interface_id,
            // pcap-file writes the nanoseconds of the Duration as the raw tick count.
            timestamp: Duration::from_nanos(*ticks),
            original_len: p.orig_len,
            data: Cow::Borrowed(&p.data),
            options: vec![],
        })
        .unwrap();
    }
    w.into_inner()
}

/// Every packet of a capture (timestamp, interface index, link type, captured
/// bytes, original length, frame bytes, frame wire length, parse result),
/// then the error that ended it, if any.
#[allow(clippy::type_complexity)]
fn read_all(
    bytes: &[u8],
) -> (Vec<(u64, u32, LinkType, Vec<u8>, u32, Vec<u8>, usize, Result<Segment, Skip>)>, Option<CaptureError>, CaptureStats)
{
    let mut reader = match CaptureReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e), CaptureStats::default()),
    };
    let mut out = Vec::new();
    let err = loop {
        match reader.next_packet() {
            Ok(Some(p)) => out.push((
                p.timestamp_ns,
                p.interface.index,
                p.link_type,
                p.data.to_vec(),
                p.orig_len,
                p.frame.bytes().to_vec(),
                p.frame.wire_len(),
                p.frame.parse(),
            )),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    // Fused: nothing after the end or an error.
    assert!(matches!(reader.next_packet(), Ok(None)));
    (out, err, reader.stats())
}

fn segment(frame: &[u8]) -> Segment {
    parse(frame).expect("the test frame is a TCP segment")
}

#[test]
fn capture_pcap_both_byte_orders_both_resolutions() {
    let frames = [eth_v4("S", 1000, 0), eth_v4("A", 1001, 300), eth_v6(5)];
    for endianness in [Endianness::Big, Endianness::Little] {
        for resolution in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
            let packets: Vec<Pkt> =
                frames.iter().enumerate().map(|(i, f)| pkt(T0 + i as u64 * SECOND, f.clone())).collect();
            let file = pcap(1, endianness, resolution, &packets);
            let (read, err, stats) = read_all(&file);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(read.len(), 3);
            for (i, (ts, iface, link, data, orig, frame, wire, seg)) in read.into_iter().enumerate() {
                let want_ts = T0 + i as u64 * SECOND;
                let want_ts = if resolution == TsResolution::MicroSecond { want_ts / 1000 * 1000 } else { want_ts };
                assert_eq!(ts, want_ts, "{endianness:?} {resolution:?}");
                assert_eq!((iface, link), (0, LinkType::Ethernet));
                assert_eq!(data, frames[i]);
                assert_eq!(frame, frames[i]);
                assert_eq!((orig as usize, wire), (frames[i].len(), frames[i].len()));
                assert_eq!(seg, Ok(segment(&frames[i])));
            }
            assert_eq!(stats, CaptureStats { packets: 3, truncated_packets: 0, bytes: file.len() as u64 });
        }
    }
}

/// A pcap file assembled byte by byte (big-endian, microseconds), so the
/// reader is not only checked against the writer of the same crate.
#[test]
fn capture_pcap_written_by_hand() {
    let frame = eth_v4("S", 9, 0);
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_c3d4u32.to_be_bytes());
    file.extend_from_slice(&[0, 2, 0, 4]); // version 2.4
    file.extend_from_slice(&[0; 8]); // thiszone, sigfigs
    file.extend_from_slice(&262_144u32.to_be_bytes()); // snaplen
    file.extend_from_slice(&113u32.to_be_bytes()); // Linux cooked v1
    let data = sll(&frame);
    for word in [1_700_000_000u32, 999_999, data.len() as u32, data.len() as u32] {
        file.extend_from_slice(&word.to_be_bytes());
    }
    file.extend_from_slice(&data);
    let (read, err, _) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, 1_700_000_000 * SECOND + 999_999_000);
    assert_eq!(read[0].2, LinkType::LinuxSll);
    assert_eq!(read[0].7, Ok(segment(&frame)));
}

#[test]
fn capture_pcapng_both_byte_orders_named_interfaces_and_resolutions() {
    let frames = [eth_v4("S", 1, 0), eth_v6(2)];
    for endianness in [Endianness::Big, Endianness::Little] {
        let file = pcapng(
            endianness,
            &[iface(1, "eth7", None), iface(1, "eth8", Some(9)), iface(1, "eth9", Some(0x80 | 20))],
            &[
                (0, T0 / 1000, pkt(0, frames[0].clone())), // default: microseconds
                (1, T0, pkt(0, frames[1].clone())),
                (2, (T0 as u128 * (1 << 20) / SECOND as u128) as u64, pkt(0, frames[0].clone())),
            ],
        );
        let mut reader = CaptureReader::new(&file[..]).unwrap();
        let names: Vec<(u32, Option<String>, u8)> = {
            let mut seen = Vec::new();
            while let Some(p) = reader.next_packet().unwrap() {
                assert_eq!(p.frame.parse(), Ok(segment(&frames[p.interface.index as usize % 2])));
                let want = match p.interface.index {
                    0 => T0 / 1000 * 1000,
                    1 => T0,
                    // 2^-20 s ticks: within one tick of the true time.
                    _ => p.timestamp_ns.clamp(T0 - 954, T0),
                };
                assert_eq!(p.timestamp_ns, want, "{endianness:?} interface {}", p.interface.index);
                seen.push((p.interface.index, p.interface.name.clone(), p.interface.timestamps.resolution));
            }
            seen
        };
        assert_eq!(
            names,
            [(0, Some("eth7".into()), 6), (1, Some("eth8".into()), 9), (2, Some("eth9".into()), 0x80 | 20)],
            "{endianness:?}"
        );
        assert_eq!(reader.interfaces().len(), 3);
    }
}

#[test]
fn capture_timestamp_units() {
    let ts = |resolution, offset_s, ticks| Timestamps { resolution, offset_s }.to_ns(ticks);
    assert_eq!(ts(6, 0, 1_500_000), 1_500_000_000);
    assert_eq!(ts(9, 0, 7), 7);
    assert_eq!(ts(3, 10, 1), 10 * SECOND + 1_000_000);
    assert_eq!(ts(12, 0, 5_000), 5);
    assert_eq!(ts(0x80 | 1, 0, 3), 1_500_000_000);
    assert_eq!(ts(0x80 | 30, 0, 1 << 30), SECOND);
    // Absurd units and offsets saturate, never overflow.
    assert_eq!(ts(0, 0, u64::MAX), u64::MAX);
    assert_eq!(ts(127, 0, u64::MAX), 0);
    assert_eq!(ts(0xff, u64::MAX, u64::MAX), u64::MAX);
}

/// Every link type turns a packet into a frame that parses to the segment of
/// the equivalent Ethernet frame, in a pcap file and in a pcapng section
/// whose interfaces mix them.
#[test]
fn capture_every_link_type_parses_like_ethernet() {
    let v4f = eth_v4("SA", 4242, 0);
    let v6f = eth_v6(77);
    let tagged = vlan(&v4f);
    type Make = fn(&[u8]) -> Vec<u8>;
    let cases: [(u32, LinkType, Make, &[u8]); 12] = [
        (1, LinkType::Ethernet, |f| f.to_vec(), &tagged),
        (113, LinkType::LinuxSll, sll, &v4f),
        (113, LinkType::LinuxSll, sll, &tagged), // protocol 0x8100, the tag in the payload
        (276, LinkType::LinuxSll2, sll2, &v6f),
        (276, LinkType::LinuxSll2, sll2, &tagged),
        (101, LinkType::RawIp, |f| ip_of(f).to_vec(), &v4f),
        (12, LinkType::RawIp, |f| ip_of(f).to_vec(), &v6f),
        (14, LinkType::RawIp, |f| ip_of(f).to_vec(), &v4f),
        (228, LinkType::Ipv4, |f| ip_of(f).to_vec(), &v4f),
        (229, LinkType::Ipv6, |f| ip_of(f).to_vec(), &v6f),
        (0, LinkType::BsdLoopback, null, &v6f),
        (108, LinkType::BsdLoopback, null, &v4f),
    ];
    let mut ifaces = Vec::new();
    let mut ng_packets = Vec::new();
    for (i, (code, link, make, frame)) in cases.iter().enumerate() {
        let data = make(frame);
        let file = pcap(*code, Endianness::Little, TsResolution::NanoSecond, &[pkt(T0, data.clone())]);
        let (read, err, _) = read_all(&file);
        assert!(err.is_none(), "link type {code}: {err:?}");
        assert_eq!(read[0].2, *link, "link type {code}");
        assert_eq!(read[0].7, Ok(segment(frame)), "link type {code}");
        assert_eq!(read[0].6, read[0].5.len(), "link type {code}: whole frame, wire length = captured");
        ifaces.push(Iface { link: *code, name: None, tsresol: Some(9), snaplen: 0 });
        ng_packets.push((i as u32, T0, pkt(0, data)));
    }
    let (read, err, _) = read_all(&pcapng(Endianness::Big, &ifaces, &ng_packets));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read.len(), cases.len());
    for (p, (code, link, _, frame)) in read.iter().zip(&cases) {
        assert_eq!((p.2, &p.7), (*link, &Ok(segment(frame))), "pcapng, link type {code}");
    }
}

/// Link-layer headers cut short, unknown IP versions: not TCP, no panic.
#[test]
fn capture_short_and_odd_link_headers() {
    let mut scratch = Vec::new();
    for link in [LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::BsdLoopback] {
        for len in 0..4 {
            let frame = link.frame(&[0x45; 3][..len], 1500, &mut scratch);
            assert_eq!(frame.parse(), Err(Skip::NotTcp), "{link:?} {len}");
        }
    }
    // Raw IP: nothing is not TCP; one byte of IPv4 is a truncated IPv4 header.
    assert_eq!(LinkType::RawIp.frame(&[], 0, &mut scratch).parse(), Err(Skip::NotTcp));
    assert_eq!(LinkType::RawIp.frame(&[0x45], 40, &mut scratch).parse(), Err(Skip::Malformed(Malformed::Truncated)));
    // Raw IP with version 5: ethertype 0, not TCP.
    assert_eq!(LinkType::RawIp.frame(&[0x50; 40], 40, &mut scratch).parse(), Err(Skip::NotTcp));
    // LINKTYPE_IPV4 insists: a version-6 header is malformed IPv4.
    let v6f = eth_v6(1);
    assert_eq!(
        LinkType::Ipv4.frame(ip_of(&v6f), 60, &mut scratch).parse(),
        Err(Skip::Malformed(Malformed::BadIpVersion))
    );
    // The FCS bits of a pcap link-type field are not part of the type.
    assert_eq!(LinkType::from_code(0x1000_0001), Some(LinkType::Ethernet));
}

/// A packet cut by the snap length: yielded, counted, parsed as far as its
/// bytes go with the wire length for the IP length check, never read past.
#[test]
fn capture_snaplen_truncated_packets() {
    let whole = eth_v4("A", 5000, 1200);
    let v6 = eth_v6(9);
    let headers = 14 + 20 + 20;
    let cut = |frame: &[u8], n: usize| Pkt { ts_ns: T0, data: frame[..n].to_vec(), orig_len: frame.len() as u32 };
    let packets = [
        cut(&whole, headers),       // headers whole: the full segment
        cut(&whole, headers - 1),   // inside the TCP header
        cut(&whole, 30),            // inside the IP header
        cut(&v6, 14 + 40 + 20 - 6), // IPv6, inside the TCP header
        pkt(T0, eth_v4("S", 1, 0)), // whole
    ];
    for (name, file) in [
        ("pcap", {
            let header = PcapHeader { snaplen: headers as u32, ..PcapHeader::default() };
            let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
            for p in &packets {
                // PcapWriter refuses orig_len > snaplen, which is what snap lengths
                // produce; write the record raw.
                w.write_raw_packet(&pcap_file::pcap::RawPcapPacket {
                    ts_sec: (p.ts_ns / SECOND) as u32,
                    ts_frac: (p.ts_ns % SECOND / 1000) as u32,
                    incl_len: p.data.len() as u32,
                    orig_len: p.orig_len,
                    data: Cow::Borrowed(&p.data),
                })
                .unwrap();
            }
            w.into_writer()
        }),
        (
            "pcapng",
            pcapng(
                Endianness::Little,
                &[Iface { link: 1, name: None, tsresol: None, snaplen: headers as u32 }],
                &packets
                    .iter()
                    .map(|p| (0, T0 / 1000, Pkt { ts_ns: 0, data: p.data.clone(), orig_len: p.orig_len }))
                    .collect::<Vec<_>>(),
            ),
        ),
    ] {
        let (read, err, stats) = read_all(&file);
        assert!(err.is_none(), "{name}: {err:?}");
        assert_eq!(stats.packets, 5, "{name}");
        assert_eq!(stats.truncated_packets, 4, "{name}");
        assert_eq!(read[0].7, Ok(segment(&whole)), "{name}: payload_len from the IP length");
        assert_eq!(read[0].7.unwrap().payload_len, 1200);
        assert_eq!(read[0].6, whole.len(), "{name}: wire length");
        assert_eq!(read[1].7, Err(Skip::Malformed(Malformed::Truncated)), "{name}");
        assert_eq!(read[2].7, Err(Skip::Malformed(Malformed::Truncated)), "{name}");
        assert_eq!(read[3].7, Err(Skip::Malformed(Malformed::Truncated)), "{name}");
        assert_eq!(read[4].7, Ok(segment(&eth_v4("S", 1, 0))), "{name}");
    }
    // A RST cut anywhere in its header is not judged at all (its checksum
    // could not be verified), rather than judged on bytes that are not there.
    let rst = eth_v4("R", 3, 0);
    for cut in 14..rst.len() {
        let frame = Frame::new(&rst[..cut], rst.len());
        assert_eq!(frame.parse(), Err(Skip::Malformed(Malformed::Truncated)), "cut at {cut}");
    }
    let whole = Frame::new(&rst, rst.len());
    let seg = whole.parse().unwrap();
    assert_eq!(tcp_track_common::parse::checksum::tcp_checksum(&whole, &seg), tcp_track_common::parse::checksum::CSUM_OK);
}

/// A file cut anywhere: the packets before the cut, then an error naming
/// the byte offset of the damaged record and how many packets came before.
#[test]
fn capture_truncated_file() {
    let frames: Vec<Vec<u8>> = (0..3).map(|i| eth_v4("A", i, 10)).collect();
    let packets: Vec<Pkt> = frames.iter().map(|f| pkt(T0, f.clone())).collect();
    let file = pcap(1, Endianness::Little, TsResolution::NanoSecond, &packets);
    let record = 16 + frames[0].len();
    let third = 24 + 2 * record;
    // Inside the third record's data, and inside its header.
    for cut in [file.len() - 1, third + 10] {
        let (read, err, _) = read_all(&file[..cut]);
        assert_eq!(read.len(), 2, "cut at {cut}");
        let err = err.expect("an error after the good packets");
        match &err {
            CaptureError::Truncated { what, offset, packets, .. } => {
                assert_eq!((what.as_str(), *offset, *packets), ("packet 3", third as u64, 2));
            }
            other => panic!("{other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("capture truncated at byte {third}: packet 3 needs ")), "{msg}");
        assert!(msg.ends_with("(2 packets read before it)"), "{msg}");
    }
    // Inside the file header.
    let (_, err, _) = read_all(&file[..10]);
    assert_eq!(
        err.unwrap().to_string(),
        "capture truncated at byte 0: the pcap file header needs 24 bytes, the input ends after 10 (0 packets read before it)"
    );

    // A block claiming 8 MiB in a short file: the error, without waiting on
    // or allocating for bytes that are not there.
    let mut ng = pcapng(Endianness::Big, &[iface(1, "eth0", None)], &[]);
    ng.extend_from_slice(&[0, 0, 0, 6, 0, 0x80, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    let (_, err, _) = read_all(&ng);
    let msg = err.unwrap().to_string();
    assert!(msg.contains("block 3 needs 8388608 bytes, the input ends after 16"), "{msg}");

    let ng = pcapng(
        Endianness::Big,
        &[iface(1, "eth0", None)],
        &packets.iter().map(|p| (0, 1, pkt(0, p.data.clone()))).collect::<Vec<_>>(),
    );
    let (read, err, _) = read_all(&ng[..ng.len() - 3]);
    assert_eq!(read.len(), 2);
    let msg = err.unwrap().to_string();
    assert!(msg.contains("block 5 needs"), "{msg}");
    assert!(msg.ends_with("(2 packets read before it)"), "{msg}");
}

#[test]
fn capture_not_a_capture() {
    let (_, err, _) = read_all(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        err.unwrap().to_string(),
        "not a capture file: it starts with 47 45 54 20 (\"GET \"), not a pcap magic number (a1b2c3d4 or a1b23c4d, in either \
         byte order) nor a pcapng section header (0a0d0d0a)"
    );
    let (_, err, _) = read_all(&[0x1f, 0x8b]);
    assert!(err.unwrap().to_string().starts_with("not a capture file: it starts with 1f 8b, not"));
    let (_, err, _) = read_all(&[]);
    assert!(matches!(err, Some(CaptureError::Empty)));
    assert_eq!(
        CaptureError::Empty.to_string(),
        "empty input: not a capture file (a pcap or pcapng file starts with a 4-byte magic number)"
    );
}

#[test]
fn capture_empty_captures() {
    for file in [
        pcap(1, Endianness::Big, TsResolution::MicroSecond, &[]),
        pcapng(Endianness::Little, &[], &[]),
        pcapng(Endianness::Little, &[iface(1, "eth0", None)], &[]),
    ] {
        let (read, err, stats) = read_all(&file);
        assert!(read.is_empty() && err.is_none(), "{err:?}");
        assert_eq!(stats, CaptureStats { packets: 0, truncated_packets: 0, bytes: file.len() as u64 });
    }
}

#[test]
fn capture_unsupported_link_type() {
    let frame = eth_v4("S", 1, 0);
    let file = pcap(105, Endianness::Little, TsResolution::MicroSecond, &[pkt(T0, frame.clone())]);
    let (read, err, _) = read_all(&file);
    assert!(read.is_empty());
    assert_eq!(
        err.unwrap().to_string(),
        "link type 105 (IEEE 802.11) is not supported; supported: Ethernet, Linux cooked v1/v2, raw IP, BSD loopback"
    );
    // In pcapng, the packets of supported interfaces before it are read.
    let file = pcapng(
        Endianness::Big,
        &[iface(1, "eth0", None), iface(127, "wlan0mon", None), iface(4242, "odd", None)],
        &[(0, 1, pkt(0, frame.clone())), (1, 2, pkt(0, frame.clone()))],
    );
    let (read, err, _) = read_all(&file);
    assert_eq!(read.len(), 1);
    assert_eq!(
        err.unwrap().to_string(),
        "link type 127 (IEEE 802.11 with radiotap header) is not supported (interface 1); supported: Ethernet, Linux \
         cooked v1/v2, raw IP, BSD loopback"
    );
    // An idle unsupported interface is no error.
    let file = pcapng(Endianness::Big, &[iface(4242, "odd", None), iface(1, "eth0", None)], &[(1, 1, pkt(0, frame))]);
    let (read, err, _) = read_all(&file);
    assert!(err.is_none() && read.len() == 1);
}

/// Damage that is not a cut: absurd lengths, packets of undeclared
/// interfaces, a pcapng block that does not start with a section header.
#[test]
fn capture_malformed_records() {
    let frame = eth_v4("S", 1, 0);
    let mut file =
        pcap(1, Endianness::Little, TsResolution::NanoSecond, &[pkt(T0, frame.clone()), pkt(T0, frame.clone())]);
    let second = 24 + 16 + frame.len();
    file[second + 8..second + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let (read, err, _) = read_all(&file);
    assert_eq!(read.len(), 1);
    let msg = err.unwrap().to_string();
    assert!(
        msg.starts_with(&format!(
            "malformed capture at byte {second} (1 packets read before it): packet 2 claims 4294967295"
        )),
        "{msg}"
    );

    let mut file = pcapng(
        Endianness::Little,
        &[iface(1, "eth0", None)],
        &[(0, 1, pkt(0, frame.clone())), (0, 1, pkt(0, frame.clone()))],
    );
    // The second packet block (the fourth block) names interface 3.
    let mut at = 0;
    for _ in 0..3 {
        at += u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    file[at + 8..at + 12].copy_from_slice(&3u32.to_le_bytes());
    let (read, err, _) = read_all(&file);
    assert_eq!(read.len(), 1);
    assert!(err.unwrap().to_string().ends_with("a packet of interface 3, but its section declares 1"));

    let mut file = pcapng(Endianness::Little, &[iface(1, "eth0", None)], &[(0, 1, pkt(0, frame))]);
    let len = u32::from_le_bytes(file[4..8].try_into().unwrap()) as usize;
    file[len + 4..len + 8].copy_from_slice(&13u32.to_le_bytes());
    let (_, err, _) = read_all(&file);
    assert!(err.unwrap().to_string().contains("pcapng block length 13"));
}

/// Sections of both byte orders one after the other (`cat a.pcapng
/// b.pcapng`), and a simple packet block cut to the snap length.
#[test]
fn capture_pcapng_sections_and_simple_packets() {
    let (a, b) = (eth_v4("S", 1, 0), eth_v6(2));
    let mut file = pcapng(Endianness::Little, &[iface(1, "eth0", Some(9))], &[(0, T0, pkt(0, a.clone()))]);
    let mut w = PcapNgWriter::with_endianness(Vec::new(), Endianness::Big).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock { linktype: DataLink::from(101), snaplen: 50, options: vec![] })
        .unwrap();
    let ip = ip_of(&b).to_vec();
    // The writer stores all 60 bytes; the interface's snap length says 50 were captured.
    w.write_pcapng_block(SimplePacketBlock { original_len: ip.len() as u32, data: Cow::Borrowed(&ip) }).unwrap();
    file.extend_from_slice(&w.into_inner());
    let (read, err, stats) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read.len(), 2);
    assert_eq!((read[0].0, read[0].7), (T0, Ok(segment(&a))));
    // No timestamp in a simple packet block: the last one seen.
    assert_eq!((read[1].0, read[1].2, read[1].3.len(), read[1].4), (T0, LinkType::RawIp, 50, ip.len() as u32));
    assert_eq!(read[1].7, Err(Skip::Malformed(Malformed::Truncated)));
    assert_eq!(stats.truncated_packets, 1);
}

/// A byte stream that arrives in pieces, as from a pipe. A read when
/// nothing was sent yet would block on a real pipe: here it fails the test.
struct Pipe(mpsc::Receiver<Vec<u8>>, Vec<u8>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1.is_empty() {
            match self.0.try_recv() {
                Ok(chunk) => self.1 = chunk,
                Err(mpsc::TryRecvError::Empty) => {
                    panic!("the reader waited for bytes beyond the packet it had")
                }
                Err(mpsc::TryRecvError::Disconnected) => return Ok(0),
            }
        }
        let n = buf.len().min(self.1.len());
        buf[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

/// Each packet is yielded as soon as its bytes are there, before the writer
/// is done; records longer than the read buffer make it grow.
#[test]
fn capture_streams_from_a_pipe() {
    let frames: Vec<Vec<u8>> = (0..4).map(|i| eth_v4("A", i, 100 * i as usize)).collect();
    let le_block_len = |file: &[u8], at: usize| u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
    for file in [
        pcap(
            1,
            Endianness::Big,
            TsResolution::NanoSecond,
            &frames.iter().map(|f| pkt(T0, f.clone())).collect::<Vec<_>>(),
        ),
        pcapng(
            Endianness::Little,
            &[iface(1, "eth0", None)],
            &frames.iter().map(|f| (0, 1, pkt(0, f.clone()))).collect::<Vec<_>>(),
        ),
    ] {
        // The end of the first packet's record.
        let first_end = if file[0] == 0x0a {
            let idb = le_block_len(&file, 0);
            let epb = idb + le_block_len(&file, idb);
            epb + le_block_len(&file, epb)
        } else {
            24 + 16 + frames[0].len()
        };
        let (tx, rx) = mpsc::channel();
        for chunk in file[..first_end].chunks(7) {
            tx.send(chunk.to_vec()).unwrap();
        }
        let mut reader = CaptureReader::with_buffer_size(Pipe(rx, Vec::new()), 64).unwrap();
        assert_eq!(reader.next_packet().unwrap().unwrap().frame.parse(), Ok(segment(&frames[0])));
        tx.send(file[first_end..].to_vec()).unwrap();
        drop(tx);
        let mut n = 1;
        while let Some(p) = reader.next_packet().unwrap() {
            assert_eq!(p.frame.bytes(), &frames[p.frame.parse().unwrap().seq as usize][..]);
            n += 1;
        }
        assert_eq!(n, 4);
    }
}

/// Every byte of a valid pcap and pcapng file replaced in turn by a few
/// values, and every prefix: an error or packets, never a panic, and never
/// a frame past the captured bytes.
#[test]
fn capture_damaged_files_never_panic() {
    let frames = [eth_v4("S", 1, 0), vlan(&eth_v6(3))];
    let files = [
        pcap(
            113,
            Endianness::Little,
            TsResolution::MicroSecond,
            &frames.iter().map(|f| pkt(T0, sll(f))).collect::<Vec<_>>(),
        ),
        pcapng(
            Endianness::Big,
            &[iface(276, "any", Some(9)), iface(1, "eth0", None)],
            &[(0, 1, pkt(0, sll2(&frames[0]))), (1, 2, pkt(0, frames[1].clone()))],
        ),
    ];
    for file in &files {
        for at in 0..file.len() {
            for value in [0x00, 0xff, 0x80, file[at] ^ 0x01] {
                let mut damaged = file.clone();
                damaged[at] = value;
                let (read, _, _) = read_all(&damaged);
                for p in read {
                    assert!(p.5.len() <= p.6);
                }
            }
            read_all(&file[..at]);
        }
    }
}

#[test]
fn capture_synthetic_connections() {
    let config = synth::SynthConfig { connections: 30, concurrent: 8, ..synth::SynthConfig::default() };
    let mut file = Vec::new();
    let summary = synth::write_many_connections(&mut file, &config).unwrap();
    assert_eq!(summary, synth::SynthSummary { packets: 30 * synth::PACKETS_PER_CONNECTION, bytes: file.len() as u64 });
    let (read, err, _) = read_all(&file);
    assert!(err.is_none());
    assert_eq!(read.len() as u64, summary.packets);
    let mut last = 0;
    let mut flows = std::collections::HashMap::<(u16, [u8; 16]), Vec<u8>>::new();
    for p in &read {
        assert!(p.0 > last, "timestamps increase");
        last = p.0;
        let seg = p.7.expect("every packet is TCP");
        assert_eq!(seg.family, 4);
        assert_eq!(p.5[12..14], ETH_P_IPV4.to_be_bytes());
        let client = if seg.dport == 80 { (seg.sport, seg.saddr) } else { (seg.dport, seg.daddr) };
        flows.entry(client).or_default().push(seg.flags);
    }
    assert_eq!(flows.len(), 30, "one 4-tuple per connection");
    use tcp_track_common::tcp::{ACK, FIN, PSH, SYN};
    for flags in flows.values() {
        assert_eq!(flags, &[SYN, SYN | ACK, ACK, PSH | ACK, PSH | ACK, ACK, FIN | ACK, FIN | ACK, ACK]);
    }
}
