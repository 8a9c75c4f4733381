//! Frames → `parse` → `step` on one flow record, checking invariants the
//! parser and the state machine promise for every input (the crate claims
//! "no panics on any input"; the BPF programs rely on it).
//!
//! Input layout: a sequence of frames, each a little-endian u16 length then
//! that many bytes. A length past the end of the input takes the rest, so
//! the last frame can be longer than 64 KiB and reach the BIG TCP /
//! jumbogram paths (those need `-max_len` above 65 550 to be generated).
//!
//! All frames drive the same record whatever their addresses: the state
//! machine does not see the flow key, and mixing unrelated segments reaches
//! more transitions than a fuzzer could by matching 4-tuples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcp_track_common::{
    conn::{conn_state, conn_state_name, ConnSummary},
    flow::{coarse_time, direction, initiator_of, pair, pair_mut, FlowRecord, INFO_REUSED, ORIGIN_MIDSTREAM, SIDE_ANSWERED},
    parse::{
        parse, Segment, FAMILY_IPV4, FAMILY_IPV6, NO_WSCALE, OPT_WSCALE, SEG_FIRST_FRAGMENT, SEG_LENGTH_FROM_FRAME,
    },
    state::{
        classify_reset, endpoint_state, step, Outcome, EP_CLOSED, EP_NONE, RESET_DATA_AFTER_CLOSE, RESET_NONE,
        RESET_UNKNOWN_FLOW, STATE_CLOSE, STATE_NONE, STATE_SYN_SENT,
    },
    tcp,
};

/// Largest window-scale shift (RFC 7323 §2.3). Anything above 31 would make
/// the state machine's `window << scale` overflow.
const MAX_WSCALE: u8 = 14;

/// The highest `state::RESET_*` class.
const LAST_RESET_CLASS: u8 = RESET_DATA_AFTER_CLOSE;

/// Fake clock step per frame: a bit over one `last_seen` unit (2^20 ns), so
/// consecutive segments get distinct coarse times.
const TICK_NS: u64 = 1_100_000;

fuzz_target!(|data: &[u8]| {
    let mut rec = FlowRecord::default();
    // Not zero, so a `last_seen` of 0 after a step would be a real mistake.
    let mut now_ns: u64 = 1 << 30;
    let mut rest = data;
    while rest.len() >= 2 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        rest = &rest[2..];
        let (frame, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        now_ns += TICK_NS;
        if let Ok(seg) = parse(frame) {
            check_segment(&seg, frame.len());
            feed(&mut rec, &seg, now_ns);
        }
        check_record(&rec);
    }
});

fn check_segment(seg: &Segment, frame_len: usize) {
    assert!(seg.family == FAMILY_IPV4 || seg.family == FAMILY_IPV6, "family {}", seg.family);
    // The TCP header was read at l4_offset and the payload is counted from
    // the IP length, which the parser checked against the frame.
    let l4 = seg.l4_offset as usize;
    assert!(l4 + 20 <= frame_len, "l4_offset {l4} + 20 > frame {frame_len}");
    assert!(seg.payload_len as usize <= frame_len, "payload {} > frame {frame_len}", seg.payload_len);
    assert!(l4 + 20 + seg.payload_len as usize <= frame_len, "TCP header + payload past the frame: {seg:?}");
    assert!(seg.ip_len as usize <= frame_len, "ip_len {} > frame {frame_len}", seg.ip_len);
    // At least a 20-byte IP header and a 20-byte TCP header precede the payload.
    assert!(seg.payload_len as u64 + 40 <= seg.ip_len as u64, "payload {} vs ip_len {}", seg.payload_len, seg.ip_len);
    assert_eq!(seg.seg_flags & !(SEG_FIRST_FRAGMENT | SEG_LENGTH_FROM_FRAME), 0, "seg_flags {:#x}", seg.seg_flags);
    if seg.opt_flags & OPT_WSCALE != 0 {
        assert!(seg.wscale <= MAX_WSCALE, "wscale {} not clamped", seg.wscale);
    } else {
        assert_eq!(seg.wscale, NO_WSCALE, "wscale without OPT_WSCALE");
    }
    if !seg.has(tcp::SYN) {
        // Options are only read from SYNs.
        assert_eq!((seg.opt_flags, seg.mss, seg.ts_val, seg.ts_ecr), (0, 0, 0, 0), "options on a non-SYN: {seg:?}");
    }
}

fn feed(rec: &mut FlowRecord, seg: &Segment, now_ns: u64) {
    let dir = direction(seg);
    assert!(dir <= 1, "direction {dir}");
    if rec.state == STATE_NONE {
        // step's contract: the caller presets the initiator guess for a new flow.
        rec.initiator = initiator_of(seg, dir).0;
    }
    let before = *rec;
    let expected_reset = classify_reset(&before, seg, dir);
    let out = step(rec, seg, dir, now_ns, false);

    assert_eq!(out.old_state, before.state);
    assert_eq!(out.new_state, rec.state);
    assert!(rec.state <= STATE_CLOSE, "state {}", rec.state);
    if before.state != STATE_NONE {
        assert_ne!(rec.state, STATE_NONE, "a known flow went back to NONE: {before:?} + {seg:?}");
    }
    if rec.state == STATE_NONE {
        // Nothing was started, so the caller must not store anything new.
        assert_eq!(*rec, before, "record changed but stayed NONE");
    }
    if !tcp::flags_valid(seg.flags) {
        // Rejected before anything is looked at, including the clock; a
        // known flow counts it as seen.
        assert!(!out.valid);
        let mut counted = before;
        if before.state != STATE_NONE {
            let n = pair_mut(&mut counted.packets, dir);
            *n = n.wrapping_add(1);
        }
        assert_eq!(*rec, counted, "invalid flags changed the record");
    } else if rec.state != STATE_NONE {
        assert_eq!(rec.last_seen, coarse_time(now_ns));
    }
    check_conn(&before, rec, dir, &out);
    assert!(out.reset <= LAST_RESET_CLASS, "reset class {}", out.reset);
    if seg.has(tcp::RST) && tcp::flags_valid(seg.flags) {
        // classify_reset is what step applies; a caller deciding to drop
        // before stepping must get the same verdict.
        assert_eq!(out.reset, expected_reset, "classify_reset disagrees with step: {before:?} + {seg:?}");
    } else {
        assert_eq!(out.reset, RESET_NONE);
        assert!(!out.drop_justified, "drop_justified for a non-RST");
    }
    if out.first_fin {
        assert!(seg.has(tcp::FIN));
    }
    if out.reused {
        assert_eq!(rec.state, STATE_SYN_SENT);
        assert_ne!(rec.info & INFO_REUSED, 0);
    }
}

/// The connection record's figures: counters only grow (a reused 4-tuple
/// starts a new record), a rejected segment changes nothing derived from
/// sequence numbers, and every record has a conn_state.
fn check_conn(before: &FlowRecord, rec: &FlowRecord, dir: u8, out: &Outcome) {
    if rec.state == STATE_NONE || out.reused || before.state == STATE_NONE || rec.first_ns != before.first_ns {
        return;
    }
    assert_eq!(pair(&rec.packets, dir), pair(&before.packets, dir).wrapping_add(1), "one segment, one packet");
    assert_eq!(pair(&rec.packets, dir ^ 1), pair(&before.packets, dir ^ 1));
    for d in 0..2u8 {
        assert!(pair(&rec.retransmits, d) >= pair(&before.retransmits, d));
    }
    if !out.valid {
        // The figures kept for a rejected segment: none but its packet.
        // (Its window state it can still move today, when it is the first
        // segment seen from its side or arrives in SYN_SENT: issue 17.)
        let figures = |r: &FlowRecord| (r.side, r.seq_wraps, r.retransmits, r.handshake_us, r.rst_dropped);
        assert_eq!(figures(rec), figures(before), "a rejected segment moved the connection figures");
    }
    assert_eq!(rec.rst_dropped, before.rst_dropped);
    assert!(!conn_state_name(conn_state(rec)).is_empty());
    let s = ConnSummary::of(rec);
    if before.side[0] & SIDE_ANSWERED != 0 || before.side[1] & SIDE_ANSWERED != 0 {
        let b = ConnSummary::of(before);
        assert_eq!((s.syn_to_synack_us.or(b.syn_to_synack_us), s.synack_to_ack_us.or(b.synack_to_ack_us)), (s.syn_to_synack_us, s.synack_to_ack_us), "a measured handshake was forgotten");
    }
}

fn check_record(rec: &FlowRecord) {
    assert!(rec.state <= STATE_CLOSE, "state {}", rec.state);
    for d in 0..2u8 {
        let ep = endpoint_state(rec, d);
        assert!(ep <= EP_CLOSED, "endpoint state {ep}");
        if rec.state == STATE_NONE {
            assert_eq!(ep, EP_NONE);
        }
        if rec.state == STATE_CLOSE {
            assert_eq!(ep, EP_CLOSED);
        }
        assert!(rec.peer(d).scale <= MAX_WSCALE, "scale {} for dir {d}", rec.peer(d).scale);
        let probe = Segment { flags: tcp::RST | tcp::ACK, ..Segment::default() };
        let class = classify_reset(rec, &probe, d);
        assert!(class <= LAST_RESET_CLASS, "reset class {class}");
        if rec.state == STATE_NONE {
            assert_eq!(class, RESET_UNKNOWN_FLOW);
        }
    }
    if rec.state != STATE_NONE {
        assert!(rec.initiator <= 1, "initiator {}", rec.initiator);
        assert!(rec.origin <= ORIGIN_MIDSTREAM, "origin {}", rec.origin);
        // Every state past NONE has a client that knows about the connection.
        assert_ne!(endpoint_state(rec, rec.initiator), EP_NONE, "client in NONE: {rec:?}");
    }
}
