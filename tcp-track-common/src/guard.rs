//! Guarding connections against forged resets: which RSTs a policy drops.
//! The judgement itself is the state machine's (`state::classify_reset`,
//! and `state::reset_fate` for what the receiver does with each class);
//! a RST must first pass its checksum (`parse::checksum`), since XDP sees
//! frames before the stack has validated anything.

use crate::state::{reset_fate, ResetFate};

/// `RST_POLICY` values (a load-time global of the kernel programs).
/// Never drop; classify and report every RST.
pub const RST_POLICY_OBSERVE: u8 = 0;
/// Drop RSTs outside the receiver's window (RFC 9293 §3.10.7.4).
pub const RST_POLICY_OUT_OF_WINDOW: u8 = 1;
/// Drop every invalid RST: outside the window, inside it but inexact
/// (RFC 5961 §3.2), and towards an endpoint in TIME-WAIT (RFC 1337).
pub const RST_POLICY_INVALID: u8 = 2;

/// Whether `policy` drops a RST of class `class` (`state::RESET_*`): what
/// its receiver would ignore (out of window), or, for the strict policy,
/// everything whose dropping is justified. Refusals, exact resets,
/// stateless peers' resets, answers to data after close or to an
/// unacceptable ACK in SYN-SENT, and unjudged ones (windows unknown) are
/// never dropped.
#[inline(always)]
pub const fn drops(policy: u8, class: u8) -> bool {
    let fate = reset_fate(class);
    match policy {
        RST_POLICY_OUT_OF_WINDOW => matches!(fate, ResetFate::Ignored),
        RST_POLICY_INVALID => fate.drop_justified(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{
        RESET_DATA_AFTER_CLOSE, RESET_EXACT, RESET_IN_WINDOW, RESET_NONE, RESET_OUT_OF_WINDOW, RESET_REFUSED, RESET_STATELESS_PEER, RESET_TIME_WAIT,
        RESET_UNACCEPTABLE_ACK, RESET_UNJUDGED, RESET_UNKNOWN_FLOW,
    };

    #[test]
    fn policies() {
        let legitimate =
            [RESET_REFUSED, RESET_EXACT, RESET_STATELESS_PEER, RESET_UNJUDGED, RESET_UNACCEPTABLE_ACK, RESET_DATA_AFTER_CLOSE];
        for class in legitimate {
            for p in [RST_POLICY_OBSERVE, RST_POLICY_OUT_OF_WINDOW, RST_POLICY_INVALID] {
                assert!(!drops(p, class), "policy {p} must never drop class {class}");
            }
        }
        assert!(!drops(RST_POLICY_OBSERVE, RESET_OUT_OF_WINDOW));
        assert!(drops(RST_POLICY_OUT_OF_WINDOW, RESET_OUT_OF_WINDOW));
        assert!(!drops(RST_POLICY_OUT_OF_WINDOW, RESET_IN_WINDOW));
        assert!(!drops(RST_POLICY_OUT_OF_WINDOW, RESET_TIME_WAIT));
        for class in [RESET_OUT_OF_WINDOW, RESET_IN_WINDOW, RESET_TIME_WAIT] {
            assert!(drops(RST_POLICY_INVALID, class));
        }
    }

    #[test]
    fn what_is_dropped_is_what_the_receiver_would_not_accept_or_may_be_denied() {
        // Every class the state machine knows, and a value it never returns.
        for class in RESET_NONE..=RESET_DATA_AFTER_CLOSE + 1 {
            let fate = reset_fate(class);
            if drops(RST_POLICY_OUT_OF_WINDOW, class) || drops(RST_POLICY_INVALID, class) {
                assert!(fate.drop_justified(), "class {class}: dropped but its drop is not justified");
            }
            if fate.accepted() && fate != ResetFate::TimeWait {
                assert!(!drops(RST_POLICY_INVALID, class), "class {class}: accepted by the receiver, never dropped");
            }
        }
        assert!(!drops(RST_POLICY_INVALID, RESET_NONE));
        assert!(!drops(RST_POLICY_INVALID, RESET_UNKNOWN_FLOW));
    }
}
