//! The daemon's vocabulary: typed views of the raw integers the kernel
//! writes into its records (connection state, endpoint state, reset class,
//! event kind), each with one conversion from the raw value and one name.
//!
//! Map values and ring-buffer records stay raw integers (`#[repr(C)]`, Pod,
//! shared with the BPF programs); these enums decode them on the host. Every
//! name tcp-track prints for one of these is here and nowhere else.

use tcp_track_common::{event, state};
use thiserror::Error;

/// Declares an enum decoding a raw integer: its variants with their raw
/// value and name, `ALL`, `as_str`, `raw`, and `from_raw`, which reads a
/// value the kernel never writes as `$unknown` (the names always did).
macro_rules! raw_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $raw:ident, unknown = $unknown:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:path => $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr($raw)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )*
        }

        impl $name {
            /// Every value, in raw order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The value a raw integer stands for.
            pub const fn from_raw(raw: $raw) -> $name {
                match raw {
                    $( $code => $name::$variant, )*
                    _ => $name::$unknown,
                }
            }

            /// The raw integer the kernel writes for it.
            pub const fn raw(self) -> $raw {
                self as $raw
            }

            /// Its name in tcp-track's output.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

raw_enum! {
    /// Where a segment was seen (`FlowEvent::hook`), printed as `seen`.
    pub enum Hook: u8, unknown = Egress {
        /// The XDP program: frames arriving on the interface.
        Ingress = event::HOOK_XDP => "ingress",
        /// The TC egress program: this host's own outgoing segments.
        Egress = event::HOOK_TC_EGRESS => "egress",
        /// A capture file (`tcp-track read`): the direction is not known.
        Capture = event::HOOK_CAPTURE => "capture",
    }
}

raw_enum! {
    /// A connection's state as the observer sees it from the wire
    /// (`FlowRecord::state`, `FlowEvent::old_state`/`new_state`), named as
    /// nf_conntrack names its states.
    pub enum ConnState: u8, unknown = None {
        /// No segment accepted yet.
        None = state::STATE_NONE => "NONE",
        SynSent = state::STATE_SYN_SENT => "SYN_SENT",
        /// Simultaneous open.
        SynSent2 = state::STATE_SYN_SENT2 => "SYN_SENT2",
        SynRecv = state::STATE_SYN_RECV => "SYN_RECV",
        Established = state::STATE_ESTABLISHED => "ESTABLISHED",
        FinWait = state::STATE_FIN_WAIT => "FIN_WAIT",
        CloseWait = state::STATE_CLOSE_WAIT => "CLOSE_WAIT",
        LastAck = state::STATE_LAST_ACK => "LAST_ACK",
        TimeWait = state::STATE_TIME_WAIT => "TIME_WAIT",
        /// Reset.
        Close = state::STATE_CLOSE => "CLOSE",
    }
}

raw_enum! {
    /// One endpoint's own state (RFC 9293 §3.3.2), derived by the observer
    /// (`FlowEvent::lo_state`/`hi_state`), named as `ss` names it.
    pub enum EndpointState: u8, unknown = None {
        /// No connection there yet.
        None = state::EP_NONE => "NONE",
        SynSent = state::EP_SYN_SENT => "SYN-SENT",
        SynRecv = state::EP_SYN_RECV => "SYN-RECV",
        Established = state::EP_ESTABLISHED => "ESTAB",
        FinWait1 = state::EP_FIN_WAIT_1 => "FIN-WAIT-1",
        FinWait2 = state::EP_FIN_WAIT_2 => "FIN-WAIT-2",
        CloseWait = state::EP_CLOSE_WAIT => "CLOSE-WAIT",
        Closing = state::EP_CLOSING => "CLOSING",
        LastAck = state::EP_LAST_ACK => "LAST-ACK",
        TimeWait = state::EP_TIME_WAIT => "TIME-WAIT",
        Closed = state::EP_CLOSED => "CLOSED",
    }
}

raw_enum! {
    /// How the observer judged a RST, as its receiver would
    /// (`FlowEvent::reset`; see `tcp_track_common::state::RESET_*`).
    pub enum ResetClass: u8, unknown = None {
        /// Not a RST, or not classified.
        None = state::RESET_NONE => "none",
        /// Answers a SYN: connection refused (RFC 9293 §3.10.7.3).
        Refused = state::RESET_REFUSED => "refused",
        /// Exactly the expected sequence number: the sender aborted.
        Exact = state::RESET_EXACT => "exact",
        /// The reply of an endpoint without the connection (RFC 9293 §3.10.7.1).
        StatelessPeer = state::RESET_STATELESS_PEER => "stateless_peer",
        /// Towards an endpoint in TIME-WAIT (RFC 1337).
        TimeWait = state::RESET_TIME_WAIT => "time_wait",
        /// Inside the window but inexact: a challenge ACK (RFC 5961 §3.2).
        InWindow = state::RESET_IN_WINDOW => "in_window",
        /// Outside the window: ignored by the receiver.
        OutOfWindow = state::RESET_OUT_OF_WINDOW => "out_of_window",
        /// The receiver's window is not known: accepted unjudged.
        Unjudged = state::RESET_UNJUDGED => "unjudged",
        /// No record of the flow.
        UnknownFlow = state::RESET_UNKNOWN_FLOW => "unknown_flow",
        /// The client in SYN-SENT answering an unacceptable ACK (RFC 9293 §3.10.7.3).
        UnacceptableAck = state::RESET_UNACCEPTABLE_ACK => "unacceptable_ack",
        /// A stateless reply from a side that had sent its FIN: data after its close.
        DataAfterClose = state::RESET_DATA_AFTER_CLOSE => "data_after_close",
    }
}

impl ResetClass {
    /// What a `reset` event says of it: `reason`, and `window` for an
    /// invalid one; no reason for a RST the kernel did not classify.
    pub const fn reason(self) -> (Option<&'static str>, Option<&'static str>) {
        match self {
            ResetClass::Refused => (Some("refused"), None),
            ResetClass::Exact | ResetClass::Unjudged => (Some("abort"), None),
            ResetClass::StatelessPeer => (Some("stateless_peer"), None),
            ResetClass::TimeWait => (Some("time_wait_assassination"), None),
            ResetClass::InWindow => (Some("invalid"), Some("inside")),
            ResetClass::OutOfWindow => (Some("invalid"), Some("outside")),
            ResetClass::UnknownFlow => (Some("unknown_flow"), None),
            ResetClass::UnacceptableAck => (Some("unacceptable_ack"), None),
            ResetClass::DataAfterClose => (Some("data_after_close"), None),
            ResetClass::None => (None, None),
        }
    }
}

raw_enum! {
    /// Why a connection's record was written (`FlowEvent::end`, or the
    /// daemon's own decision), as its `end` field says.
    pub enum EndReason: u8, unknown = Unknown {
        /// Not an end the kernel writes (a corrupt record).
        Unknown = event::CONN_END_NONE => "unknown",
        /// The active closer entered TIME_WAIT.
        Fin = event::CONN_END_FIN => "fin",
        Reset = event::CONN_END_RESET => "reset",
        Evicted = event::CONN_END_EVICTED => "evicted",
        HalfOpenTimeout = event::CONN_END_HALF_OPEN_TIMEOUT => "half_open_timeout",
        IdleTimeout = event::CONN_END_IDLE_TIMEOUT => "idle_timeout",
        Stopped = event::CONN_END_STOPPED => "stopped",
        CaptureEnd = event::CONN_END_CAPTURE_END => "capture_end",
    }
}

/// A kernel record's `kind` that no version of the kernel programs writes.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("unknown event kind {0}")]
pub struct UnknownKind(pub u16);

/// What an output line is about: the `event` of every line. The kernel
/// makes the first eight (`FlowEvent::kind`); the daemon's reporter makes
/// the others from them and from its deadlines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The first segment of a flow the tracker had no record of.
    FlowNew,
    /// A side's first FIN.
    Fin,
    /// A RST, with how its receiver would judge it.
    Reset,
    /// Any other change of connection state.
    State,
    /// A SYN on a 4-tuple in TIME_WAIT started a new incarnation.
    TimeWaitReuse,
    /// A retransmitted SYN or SYN-ACK.
    HandshakeRetransmit,
    /// A side's first data retransmission in a row.
    Retransmit,
    /// A connection's record: when it ended (the kernel's `EVENT_CONN_END`,
    /// or the daemon's timeouts and stop), or interim.
    Conn,
    /// A handshake not completed in time, or a peer that lost its state.
    HalfOpen,
    /// The end of a `half_open` story.
    HalfOpenEnded,
    /// The active closer entered TIME-WAIT.
    TimeWait,
    /// TIME_WAIT lasted its timeout.
    TimeWaitExpired,
    /// One side closed and the other's application has not, for long.
    CloseWait,
    /// Many TIME_WAITs from one client address to one server endpoint.
    TimeWaitPressure,
    /// A server endpoint crossed the SYN-flood threshold.
    SynFlood,
    /// Its half-open connections fell below half the threshold.
    SynFloodEnded,
}

impl EventKind {
    /// Every kind, the kernel's first (in `kind` order).
    pub const ALL: [EventKind; 16] = [
        EventKind::FlowNew,
        EventKind::Fin,
        EventKind::Reset,
        EventKind::State,
        EventKind::TimeWaitReuse,
        EventKind::HandshakeRetransmit,
        EventKind::Retransmit,
        EventKind::Conn,
        EventKind::HalfOpen,
        EventKind::HalfOpenEnded,
        EventKind::TimeWait,
        EventKind::TimeWaitExpired,
        EventKind::CloseWait,
        EventKind::TimeWaitPressure,
        EventKind::SynFlood,
        EventKind::SynFloodEnded,
    ];

    /// How many kinds there are (`self as usize` is below it).
    pub const COUNT: usize = Self::ALL.len();

    /// The `FlowEvent::kind` the kernel writes for it; `None` for the
    /// daemon's own kinds.
    pub const fn kernel_code(self) -> Option<u16> {
        Some(match self {
            EventKind::FlowNew => event::EVENT_FLOW_NEW,
            EventKind::Fin => event::EVENT_FIN,
            EventKind::Reset => event::EVENT_RST,
            EventKind::State => event::EVENT_STATE,
            EventKind::TimeWaitReuse => event::EVENT_REUSE,
            EventKind::HandshakeRetransmit => event::EVENT_HANDSHAKE_RETRANS,
            EventKind::Retransmit => event::EVENT_DATA_RETRANS,
            EventKind::Conn => event::EVENT_CONN_END,
            _ => return None,
        })
    }

    /// Its name: the `event` field of JSON lines, the third column of text.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::FlowNew => "flow_new",
            EventKind::Fin => "fin",
            EventKind::Reset => "reset",
            EventKind::State => "state",
            EventKind::TimeWaitReuse => "time_wait_reuse",
            EventKind::HandshakeRetransmit => "handshake_retransmit",
            EventKind::Retransmit => "retransmit",
            EventKind::Conn => "conn",
            EventKind::HalfOpen => "half_open",
            EventKind::HalfOpenEnded => "half_open_ended",
            EventKind::TimeWait => "time_wait",
            EventKind::TimeWaitExpired => "time_wait_expired",
            EventKind::CloseWait => "close_wait",
            EventKind::TimeWaitPressure => "time_wait_pressure",
            EventKind::SynFlood => "syn_flood",
            EventKind::SynFloodEnded => "syn_flood_ended",
        }
    }
}

/// The kernel's `FlowEvent::kind`, decoded: only the kernel's kinds have a
/// code.
impl TryFrom<u16> for EventKind {
    type Error = UnknownKind;

    fn try_from(kind: u16) -> Result<Self, UnknownKind> {
        EventKind::ALL.iter().copied().find(|k| k.kernel_code() == Some(kind)).ok_or(UnknownKind(kind))
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names as documented in the README: an expected-output fixture,
    /// written out independently of the enums.
    #[test]
    fn names_are_the_documented_ones() {
        let events: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            events,
            [
                "flow_new",
                "fin",
                "reset",
                "state",
                "time_wait_reuse",
                "handshake_retransmit",
                "retransmit",
                "conn",
                "half_open",
                "half_open_ended",
                "time_wait",
                "time_wait_expired",
                "close_wait",
                "time_wait_pressure",
                "syn_flood",
                "syn_flood_ended"
            ]
        );
        let states: Vec<&str> = ConnState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            states,
            ["NONE", "SYN_SENT", "SYN_SENT2", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE"]
        );
        let endpoints: Vec<&str> = EndpointState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            endpoints,
            ["NONE", "SYN-SENT", "SYN-RECV", "ESTAB", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT", "CLOSED"]
        );
        let ends: Vec<&str> = EndReason::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(ends, ["unknown", "fin", "reset", "evicted", "half_open_timeout", "idle_timeout", "stopped", "capture_end"]);
        let reasons: Vec<_> = ResetClass::ALL.iter().map(|c| c.reason()).collect();
        assert_eq!(
            reasons,
            [
                (None, None),
                (Some("refused"), None),
                (Some("abort"), None),
                (Some("stateless_peer"), None),
                (Some("time_wait_assassination"), None),
                (Some("invalid"), Some("inside")),
                (Some("invalid"), Some("outside")),
                (Some("abort"), None),
                (Some("unknown_flow"), None),
                (Some("unacceptable_ack"), None),
                (Some("data_after_close"), None)
            ]
        );
    }

    #[test]
    fn raw_values_round_trip() {
        for &s in ConnState::ALL {
            assert_eq!(ConnState::from_raw(s.raw()), s);
        }
        for &s in EndpointState::ALL {
            assert_eq!(EndpointState::from_raw(s.raw()), s);
        }
        for &c in ResetClass::ALL {
            assert_eq!(ResetClass::from_raw(c.raw()), c);
        }
        for (i, k) in EventKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
            match k.kernel_code() {
                Some(code) => assert_eq!(EventKind::try_from(code), Ok(*k)),
                None => assert!(i >= 8, "the kernel's kinds come first"),
            }
        }
    }

    #[test]
    fn values_no_kernel_writes_are_decoded_without_panicking() {
        assert_eq!(ConnState::from_raw(200), ConnState::None);
        assert_eq!(EndpointState::from_raw(11), EndpointState::None);
        assert_eq!(ResetClass::from_raw(200).reason(), (None, None));
        assert_eq!(EventKind::try_from(0), Err(UnknownKind(0)));
        assert_eq!(EventKind::try_from(99), Err(UnknownKind(99)));
    }
}

/// Who closed a connection first (the side that enters TIME_WAIT, RFC
/// 9293 §3.6), as a `time_wait` event's `closer` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closer {
    Client,
    Server,
    /// A simultaneous close: both sides wait.
    Both,
}

impl Closer {
    pub const ALL: [Closer; 3] = [Closer::Client, Closer::Server, Closer::Both];

    pub const fn as_str(self) -> &'static str {
        match self {
            Closer::Client => "client",
            Closer::Server => "server",
            Closer::Both => "both",
        }
    }
}
