//! A connection's story in Zeek's conn.log vocabulary, from its flow
//! record: `conn_state`, payload bytes from sequence space, packets,
//! retransmissions and handshake timing.
//!
//! Pure derivations (the daemon calls them on a record it read from the
//! maps), plus the two pieces the state machine runs on every segment to
//! keep the record's figures: Zeek's endpoint state machine (`zeek_step`)
//! and the sequence span behind the byte counts (`seq_span`).
//!
//! The originator is our client (the side that sent the first SYN, or the
//! receiver of a SYN-ACK seen first, or for a flow picked up mid-stream the
//! side with the higher port).
//!
//! Where our figures can differ from Zeek's, and why:
//! - Zeek runs its endpoint state machine on every segment it sees; ours
//!   runs on the segments the state machine accepted (valid flags, inside
//!   the window, a RST that closed the connection). A forged RST that the
//!   receiver would have ignored (or that XDP dropped) does not make a
//!   connection `RSTO`/`RSTR`, and a SYN-ACK that does not acknowledge the
//!   SYN does not make it `S1`. Segments our state machine rejects in
//!   SYN_SENT (an ACK or FIN before any SYN-ACK) leave it `S0` where Zeek
//!   would say `SH`; on a liberal interface (`state::step`'s `liberal`)
//!   such a segment proves the unseen SYN-ACK and is accepted, and a
//!   client's SYN, ACK, data and FIN make it `SH`, as in Zeek.
//! - A client's RST answering an unacceptable ACK in SYN_SENT (RFC 9293
//!   §3.10.7.3: the client stays in SYN-SENT and goes on trying) ends
//!   nothing, so it changes no endpoint state: the attempt stays `S0`
//!   (or becomes what its later segments make it). Zeek counts the RST,
//!   says `RSTOS0`, and starts a new connection at the next SYN.
//! - A connection whose first segment is a SYN-ACK has the SYN-ACK's
//!   receiver as originator, always; Zeek keeps the SYN-ACK's sender as
//!   originator unless its port looks like a server's or later traffic
//!   flips it. Our `RSTRH` and `SHR` are then what Zeek's documentation
//!   says they are ("responder sent a SYN-ACK followed by a RST / FIN").
//! - Zeek's `RSTOS0` tests its `history` string (the originator's first
//!   letters S, then no H, A, F, G, I or Q before its R). We have no
//!   content-gap (G) detection and never accept FIN+RST (I) or SYN+FIN /
//!   SYN+RST (Q), so ours is: the flow started with the client's SYN, and
//!   the client sent no SYN-ACK, pure ACK or FIN before its RST.
//! - Bytes: a RST's sequence number never counts (Zeek lets a RST advance
//!   its last sequence number), and acknowledgments count only when the
//!   state machine accepted the segment carrying them.
//! - A flow picked up mid-stream has no ISN: a side's bytes count from
//!   the first sequence number it was seen sending (Zeek does the same,
//!   as though a SYN preceded it); a side never seen counts what the other
//!   side acknowledged of it.
//! - We see what crosses the interface: a hook sees each segment once
//!   (a GSO/TSO send at TC egress is one packet), and a segment lost
//!   before the interface is not seen at all.

use crate::flow::{
    pair, pair_mut, FlowRecord, ORIGIN_SYN, PEER_FIN, PEER_MAXACK_SET, PEER_SEEN, PEER_SYN, SIDE_ANSWERED,
    SIDE_HAF_BEFORE_RST, SIDE_RESET_FROM_CLOSED, SIDE_RESET_FROM_SYN_SENT, SIDE_ZEEK_STATE, ZEEK_CLOSED,
    ZEEK_ESTABLISHED, ZEEK_INACTIVE, ZEEK_PARTIAL, ZEEK_RESET, ZEEK_SYN_ACK_SENT, ZEEK_SYN_SENT,
};
use crate::seq::after;

/// `conn_state` codes, with Zeek's meanings (`scripts/base/protocols/conn/
/// main.zeek`, function `conn_state`, computed from the two endpoint states
/// exactly as there). 0 is no code.
/// Connection attempt seen, no reply.
pub const CONN_S0: u8 = 1;
/// Connection established, not terminated.
pub const CONN_S1: u8 = 2;
/// Normal establishment and termination (both sides sent a FIN; also a
/// flow picked up mid-stream that both sides closed).
pub const CONN_SF: u8 = 3;
/// Connection attempt rejected.
pub const CONN_REJ: u8 = 4;
/// Established, close attempt by the originator seen (no reply from the
/// responder).
pub const CONN_S2: u8 = 5;
/// Established, close attempt by the responder seen (no reply from the
/// originator).
pub const CONN_S3: u8 = 6;
/// Established, the originator aborted (sent a RST).
pub const CONN_RSTO: u8 = 7;
/// The responder sent a RST.
pub const CONN_RSTR: u8 = 8;
/// The originator sent a SYN followed by a RST; no SYN-ACK from the
/// responder.
pub const CONN_RSTOS0: u8 = 9;
/// The responder sent a SYN-ACK followed by a RST; no SYN from the
/// originator (or: the originator was never seen with a SYN).
pub const CONN_RSTRH: u8 = 10;
/// The originator sent a SYN (or data) followed by a FIN; no SYN-ACK from
/// the responder.
pub const CONN_SH: u8 = 11;
/// The responder sent a SYN-ACK (or data) followed by a FIN; no SYN from
/// the originator.
pub const CONN_SHR: u8 = 12;
/// No SYN seen, just mid-stream traffic (and whatever else the states
/// above do not cover).
pub const CONN_OTH: u8 = 13;

/// Zeek's name of a `CONN_*` code ("" for anything else).
pub const fn conn_state_name(code: u8) -> &'static str {
    match code {
        CONN_S0 => "S0",
        CONN_S1 => "S1",
        CONN_SF => "SF",
        CONN_REJ => "REJ",
        CONN_S2 => "S2",
        CONN_S3 => "S3",
        CONN_RSTO => "RSTO",
        CONN_RSTR => "RSTR",
        CONN_RSTOS0 => "RSTOS0",
        CONN_RSTRH => "RSTRH",
        CONN_SH => "SH",
        CONN_SHR => "SHR",
        CONN_OTH => "OTH",
        _ => "",
    }
}

/// Zeek's name of a `ZEEK_*` endpoint state.
pub const fn zeek_state_name(state: u8) -> &'static str {
    match state {
        ZEEK_INACTIVE => "INACTIVE",
        ZEEK_SYN_SENT => "SYN_SENT",
        ZEEK_SYN_ACK_SENT => "SYN_ACK_SENT",
        ZEEK_PARTIAL => "PARTIAL",
        ZEEK_ESTABLISHED => "ESTABLISHED",
        ZEEK_CLOSED => "CLOSED",
        ZEEK_RESET => "RESET",
        _ => "",
    }
}

/// Side byte `b` moved to Zeek endpoint state `new` (Zeek's `SetState`),
/// remembering what it was before a RST.
const fn set_zeek(b: u8, new: u8) -> u8 {
    let cur = b & SIDE_ZEEK_STATE;
    if new == cur {
        return b;
    }
    let mut out = (b & !(SIDE_ZEEK_STATE | SIDE_RESET_FROM_CLOSED | SIDE_RESET_FROM_SYN_SENT)) | new;
    if new == ZEEK_RESET {
        if cur == ZEEK_CLOSED {
            out |= SIDE_RESET_FROM_CLOSED;
        } else if cur == ZEEK_SYN_SENT {
            out |= SIDE_RESET_FROM_SYN_SENT;
        }
    }
    out
}

/// What an accepted segment is to Zeek's endpoint state machine: its
/// control flags, and for a plain ACK whether it carries data.
pub const EV_SYN: u8 = 0;
pub const EV_SYN_ACK: u8 = 1;
/// RST, with or without ACK.
pub const EV_RST: u8 = 2;
/// FIN (with ACK, with or without data).
pub const EV_FIN: u8 = 3;
/// ACK without data.
pub const EV_ACK: u8 = 4;
/// ACK with data.
pub const EV_DATA: u8 = 5;
/// A flag combination the state machine never accepts: no change.
pub const EV_NONE: u8 = 6;

/// `EV_*` of a segment by its FIN, SYN, RST and ACK flags (bits 0-3 of the
/// index: FIN, SYN, RST, ACK) and whether it carries data (bit 4).
const EVENTS: [u8; 32] = {
    let mut t = [EV_NONE; 32];
    let mut i = 0;
    while i < 32 {
        let (fin, syn, rst, ack, data) = (i & 1 != 0, i & 2 != 0, i & 4 != 0, i & 8 != 0, i & 16 != 0);
        t[i] = match (syn, fin, rst, ack) {
            (true, false, false, false) => EV_SYN,
            (true, false, false, true) => EV_SYN_ACK,
            (false, false, true, _) => EV_RST,
            (false, true, false, true) => EV_FIN,
            (false, false, false, true) => {
                if data { EV_DATA } else { EV_ACK }
            }
            _ => EV_NONE,
        };
        i += 1;
    }
    t
};

/// The `EV_*` of a segment with TCP `flags` and `payload_len` bytes.
/// Branch-free.
#[inline(always)]
pub fn zeek_event(flags: u8, payload_len: u32) -> u8 {
    let data = (payload_len | payload_len.wrapping_neg()) >> 31;
    let i = (flags & 0x07) | ((flags >> 1) & 0x08) | ((data as u8) << 4);
    EVENTS[(i & 31) as usize]
}

/// Zeek's endpoint state machine (`TCPSessionAdapter::UpdateStateMachine`
/// and its `Update*State` functions) for one accepted segment of kind `ev`
/// (`EV_*`), on the side bytes of its sender (`e`) and of the other side
/// (`p`); `is_orig`: the sender is the client. Returns the new `e | p << 8`.
///
/// The reference: `zeek_step` applies it through a table built from it.
/// Zeek's role flip for a SYN answering the originator's SYN-ACK is left
/// out: our client never sends the first SYN-ACK.
pub const fn zeek_transition(e: u8, p: u8, is_orig: bool, ev: u8) -> u16 {
    let (syn, ack, fin, rst) = match ev {
        EV_SYN => (true, false, false, false),
        EV_SYN_ACK => (true, true, false, false),
        EV_RST => (false, false, false, true),
        EV_FIN => (false, true, true, false),
        EV_ACK | EV_DATA => (false, true, false, false),
        _ => return e as u16 | (p as u16) << 8,
    };
    let no_data = ev != EV_DATA;
    let (mut e, mut p) = (e, p);
    let before = e & SIDE_ZEEK_STATE;
    // History letters H (SYN-ACK), A (pure ACK), F before the first R. A
    // side that sent a RST before any of them is in RESET for good (only a
    // RST after a FIN can turn back into CLOSED), so "before" is "not in
    // RESET now".
    if (ev == EV_SYN_ACK || ev == EV_FIN || ev == EV_ACK) && before != ZEEK_RESET {
        e |= SIDE_HAF_BEFORE_RST;
    }
    match before {
        ZEEK_INACTIVE => {
            // UpdateInactiveState.
            if syn {
                if is_orig {
                    e = set_zeek(e, if ack { ZEEK_SYN_ACK_SENT } else { ZEEK_SYN_SENT });
                } else {
                    if p & SIDE_ZEEK_STATE == ZEEK_SYN_SENT {
                        p = set_zeek(p, ZEEK_ESTABLISHED);
                    }
                    e = set_zeek(e, ZEEK_ESTABLISHED);
                }
            }
            if fin {
                e = set_zeek(e, ZEEK_CLOSED);
            }
            if rst {
                e = set_zeek(e, ZEEK_RESET);
            }
            if e & SIDE_ZEEK_STATE == ZEEK_INACTIVE {
                if !is_orig && no_data && p & SIDE_ZEEK_STATE == ZEEK_SYN_SENT {
                    // An ACK of the SYN before the SYN-ACK: not a partial connection.
                } else if ack && p & SIDE_ZEEK_STATE == ZEEK_ESTABLISHED {
                    // The SYN-ACK was seen, the SYN missed: established.
                    e = set_zeek(e, ZEEK_ESTABLISHED);
                } else {
                    e = set_zeek(e, ZEEK_PARTIAL);
                }
            }
        }
        // UpdateSYN_SentState.
        ZEEK_SYN_SENT | ZEEK_SYN_ACK_SENT => {
            if fin {
                e = set_zeek(e, ZEEK_CLOSED);
            }
            if rst {
                e = set_zeek(e, ZEEK_RESET);
            }
        }
        // UpdateEstablishedState.
        ZEEK_ESTABLISHED | ZEEK_PARTIAL => {
            if syn && before == ZEEK_PARTIAL && p & SIDE_ZEEK_STATE == ZEEK_INACTIVE && !ack {
                e = set_zeek(e, ZEEK_SYN_SENT);
            }
            if fin {
                e = set_zeek(e, ZEEK_CLOSED);
                if p & SIDE_ZEEK_STATE == ZEEK_RESET && p & SIDE_RESET_FROM_CLOSED != 0 {
                    // The peer sent a FIN then a RST: a normal termination after all.
                    p = set_zeek(p, ZEEK_CLOSED);
                }
            }
            if rst {
                e = set_zeek(e, ZEEK_RESET);
            }
        }
        // UpdateClosedState: a RST after both FINs changes nothing.
        ZEEK_CLOSED if rst && p & SIDE_ZEEK_STATE != ZEEK_CLOSED => e = set_zeek(e, ZEEK_RESET),
        // RESET stays (and so does anything a corrupted record holds).
        _ => {}
    }
    e as u16 | (p as u16) << 8
}

/// Bits of a side byte that Zeek's state machine owns.
const ZEEK_BITS: u8 = SIDE_ZEEK_STATE | SIDE_RESET_FROM_CLOSED | SIDE_RESET_FROM_SYN_SENT;

/// `zeek_transition` for every (sender state, other side's state, event,
/// is_orig), as (keep mask, set bits) for the sender (bytes 0, 1) and the
/// other side (bytes 2, 3): new = (old & keep) | set. Index: sender state
/// (bits 0-2), other side's state (3-5; 7: RESET after a FIN, the one
/// case where its `prev_state` matters), event (6-8), is_orig (9).
static ZEEK_TABLE: [u32; 1024] = {
    let mut t = [0u32; 1024];
    let mut i = 0;
    while i < 1024 {
        let (e, pc, ev, is_orig) = ((i & 7) as u8, ((i >> 3) & 7) as u8, ((i >> 6) & 7) as u8, (i >> 9) & 1 != 0);
        let p = if pc == 7 { ZEEK_RESET | SIDE_RESET_FROM_CLOSED } else { pc };
        let out = zeek_transition(e, p, is_orig, ev);
        let (e2, p2) = (out as u8, (out >> 8) as u8);
        let (ek, es) = if e2 & SIDE_ZEEK_STATE == e { (0xff, e2 & SIDE_HAF_BEFORE_RST) } else { (!ZEEK_BITS, e2) };
        let (pk, ps) = if p2 & SIDE_ZEEK_STATE == p & SIDE_ZEEK_STATE { (0xff, 0) } else { (!ZEEK_BITS, p2 & ZEEK_BITS) };
        t[i] = ek as u32 | (es as u32) << 8 | (pk as u32) << 16 | (ps as u32) << 24;
        i += 1;
    }
    t
};

/// `zeek_transition` for a segment with TCP `flags` and `payload_len`
/// bytes sent by side `s` of `side` (the record's `side` bytes), through a
/// table built from it at compile time: two loads instead of a dozen
/// branches per segment (a test compares the two on every input).
#[inline(always)]
pub fn zeek_step(side: &mut [u8; 2], s: u8, is_orig: bool, flags: u8, payload_len: u32) {
    let (e, p) = (pair(side, s), pair(side, s ^ 1));
    let pc = (p & SIDE_ZEEK_STATE) | ((p & SIDE_RESET_FROM_CLOSED) >> 3);
    let i = (e & SIDE_ZEEK_STATE) as usize
        | (pc as usize & 7) << 3
        | (zeek_event(flags, payload_len) as usize & 7) << 6
        | (is_orig as usize) << 9;
    let t = ZEEK_TABLE[i & 1023];
    *pair_mut(side, s) = (e & t as u8) | (t >> 8) as u8;
    *pair_mut(side, s ^ 1) = (p & (t >> 16) as u8) | (t >> 24) as u8;
}

/// The sequence-space span behind direction `d`'s byte count, modulo 2^32:
/// from its ISN (or first sequence number seen) to the furthest of what it
/// sent and what the other side acknowledged of it. A side never seen
/// counts from where the other side's first acknowledgment put it.
/// `seq_wraps` counts how often this wrapped.
#[inline(always)]
pub fn seq_span(rec: &FlowRecord, d: u8) -> u32 {
    let (p, o) = (rec.peer(d), rec.peer(d ^ 1));
    let acked = o.flags & PEER_MAXACK_SET != 0;
    if p.flags & PEER_SEEN == 0 {
        // Its `end` is the first acknowledgment the other side sent, and
        // only the other side's acknowledgments move on from there.
        return if acked { o.maxack.wrapping_sub(p.end) } else { 0 };
    }
    let hi = if acked && after(o.maxack, p.end) { o.maxack } else { p.end };
    hi.wrapping_sub(p.isn)
}

/// Zeek's endpoint state (`ZEEK_*`) of the side sending in direction `d`.
#[inline(always)]
pub fn zeek_state(rec: &FlowRecord, d: u8) -> u8 {
    pair(&rec.side, d) & SIDE_ZEEK_STATE
}

/// Payload bytes the side sending in direction `d` sent, counted in
/// sequence space as Zeek's `TCP_Endpoint::Size` does: the furthest of the
/// highest sequence number it sent and the highest acknowledgment of it,
/// minus its ISN, minus the SYN and the FIN. Exact past 4 GiB (to 2^48
/// bytes) through `seq_wraps`; data retransmitted or acknowledged twice
/// counts once, data never sent past the interface not at all.
pub fn payload_bytes(rec: &FlowRecord, d: u8) -> u64 {
    let (p, o) = (rec.peer(d), rec.peer(d ^ 1));
    if zeek_state(rec, d) == ZEEK_RESET
        && pair(&rec.side, d) & SIDE_RESET_FROM_SYN_SENT != 0
        && zeek_state(rec, d ^ 1) == ZEEK_INACTIVE
        && o.flags & PEER_MAXACK_SET != 0
        && o.maxack.wrapping_sub(p.isn) > 1
    {
        // Zeek: "a half-open connection was discovered and aborted": its
        // sequence numbers say nothing about data it never could send.
        return 0;
    }
    let mut size = ((pair(&rec.seq_wraps, d) as u64) << 32) | seq_span(rec, d) as u64;
    if p.flags & PEER_SYN != 0 && size != 0 {
        size -= 1;
    }
    if p.flags & PEER_FIN != 0 && size != 0 {
        size -= 1;
    }
    size
}

/// Zeek's `conn_state` of the connection (`CONN_*`).
pub fn conn_state(rec: &FlowRecord) -> u8 {
    let c = rec.initiator & 1;
    let (os, rs) = (zeek_state(rec, c), zeek_state(rec, c ^ 1));
    let o_inactive = os == ZEEK_INACTIVE || os == ZEEK_PARTIAL;
    let r_inactive = rs == ZEEK_INACTIVE || rs == ZEEK_PARTIAL;
    if rs == ZEEK_RESET {
        if os == ZEEK_SYN_SENT
            || os == ZEEK_SYN_ACK_SENT
            || (os == ZEEK_RESET && payload_bytes(rec, c) == 0 && payload_bytes(rec, c ^ 1) == 0)
        {
            CONN_REJ
        } else if o_inactive {
            CONN_RSTRH
        } else {
            CONN_RSTR
        }
    } else if os == ZEEK_RESET {
        if r_inactive {
            // Zeek: history matches /^\^?S[^HAFGIQ]*R.*/.
            if rec.origin == ORIGIN_SYN && pair(&rec.side, c) & SIDE_HAF_BEFORE_RST == 0 { CONN_RSTOS0 } else { CONN_OTH }
        } else {
            CONN_RSTO
        }
    } else if rs == ZEEK_CLOSED && os == ZEEK_CLOSED {
        CONN_SF
    } else if os == ZEEK_CLOSED {
        if r_inactive { CONN_SH } else { CONN_S2 }
    } else if rs == ZEEK_CLOSED {
        if o_inactive { CONN_SHR } else { CONN_S3 }
    } else if os == ZEEK_SYN_SENT && rs == ZEEK_INACTIVE {
        CONN_S0
    } else if os == ZEEK_ESTABLISHED && rs == ZEEK_ESTABLISHED {
        CONN_S1
    } else {
        CONN_OTH
    }
}

/// Microseconds from the client's latest SYN to the server's SYN-ACK
/// answering it, if both were seen.
///
/// "Latest": a retransmitted SYN restarts the clock, since the SYN-ACK most
/// likely answers the last copy (as in Karn's algorithm, when an earlier
/// copy was only delayed the figure is shorter than the true delay; the
/// client's `retransmits` says whether there were copies).
pub fn syn_to_synack_us(rec: &FlowRecord) -> Option<u32> {
    answered(rec, rec.initiator & 1)
}

/// Microseconds from the server's latest SYN-ACK to the client's segment
/// completing the handshake, if both were seen. With `syn_to_synack_us`,
/// the round-trip time between the two hosts, split where the interface
/// sits. Neither is measured for a simultaneous open.
pub fn synack_to_ack_us(rec: &FlowRecord) -> Option<u32> {
    answered(rec, (rec.initiator & 1) ^ 1)
}

fn answered(rec: &FlowRecord, d: u8) -> Option<u32> {
    (pair(&rec.side, d) & SIDE_ANSWERED != 0).then(|| pair(&rec.handshake_us, d))
}

/// A connection's figures for its record, oriented client first: arrays are
/// `[client, server]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnSummary {
    /// `CONN_*`.
    pub conn_state: u8,
    /// Payload bytes (Zeek's `orig_bytes`, `resp_bytes`).
    pub bytes: [u64; 2],
    /// Segments seen (Zeek's `orig_pkts`, `resp_pkts`); wrap at 2^32.
    pub packets: [u32; 2],
    /// Retransmissions (saturating at 65,535).
    pub retransmits: [u16; 2],
    pub syn_to_synack_us: Option<u32>,
    pub synack_to_ack_us: Option<u32>,
    /// RSTs dropped in XDP (saturating at 65,535).
    pub rst_dropped: u16,
    /// Time of the first segment (Zeek's `ts`), on the clock given to `step`.
    pub first_ns: u64,
}

impl ConnSummary {
    pub fn of(rec: &FlowRecord) -> Self {
        let c = rec.initiator & 1;
        let s = c ^ 1;
        ConnSummary {
            conn_state: conn_state(rec),
            bytes: [payload_bytes(rec, c), payload_bytes(rec, s)],
            packets: [pair(&rec.packets, c), pair(&rec.packets, s)],
            retransmits: [pair(&rec.retransmits, c), pair(&rec.retransmits, s)],
            syn_to_synack_us: syn_to_synack_us(rec),
            synack_to_ack_us: synack_to_ack_us(rec),
            rst_dropped: rec.rst_dropped,
            first_ns: rec.first_ns,
        }
    }
}

/// The time of the record's last segment on the clock of `now_ns` (to
/// within 2^20 ns, `last_seen`'s unit), assuming it was less than 26 days
/// before `now_ns`. `now_ns - last_seen_ns` is how long the flow has been
/// quiet; `last_seen_ns - first_ns` its duration so far.
pub fn last_seen_ns(rec: &FlowRecord, now_ns: u64) -> u64 {
    (now_ns & !((1 << 20) - 1)).saturating_sub(quiet_units(rec, now_ns) << 20)
}

/// Whole units of `last_seen` (2^20 ns) from the record's last segment to
/// `now_ns`. A segment the kernel stamped after the reader took `now_ns`
/// (the daemon reads its clock once, then reads records while segments
/// keep coming) is later than `now_ns`: the difference is taken as signed,
/// so such a flow is quiet for 0 units rather than for the 52 days an
/// unsigned wrap would make it (which once ended a SYN_SENT flow as idle
/// during a soak).
pub fn quiet_units(rec: &FlowRecord, now_ns: u64) -> u64 {
    (crate::flow::coarse_time(now_ns).wrapping_sub(rec.last_seen) as i32).max(0) as u64
}

/// `quiet_units` in nanoseconds (rounded down to a whole unit).
pub fn quiet_ns(rec: &FlowRecord, now_ns: u64) -> u64 {
    quiet_units(rec, now_ns) << crate::flow::COARSE_SHIFT
}

#[cfg(test)]
pub(crate) mod tests;
