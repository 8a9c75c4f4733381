//! What users run tcp-track for, scenario by scenario, with real Linux TCP
//! stacks in network namespaces: the scenarios are in
//! `support/scenarios.rs` (shared with `read_equivalence.rs`); one test each.

mod support;

use support::scenarios;

#[test]
fn s01_connection_refused() {
    scenarios::refused(false);
}

#[test]
fn s11_connection_refused_ipv6() {
    scenarios::refused(true);
}

#[test]
fn s02_abortive_release() {
    scenarios::abort(false);
}

#[test]
fn s11_abortive_release_ipv6() {
    scenarios::abort(true);
}

#[test]
fn s03_close_with_unread_data() {
    scenarios::s03_close_with_unread_data();
}

#[test]
fn s04_time_wait_client_closes_first() {
    scenarios::time_wait(false, true);
}

#[test]
fn s04_time_wait_server_closes_first() {
    scenarios::time_wait(false, false);
}

#[test]
fn s11_time_wait_ipv6() {
    scenarios::time_wait(true, true);
}

#[test]
fn s05_syn_recv_stuck() {
    scenarios::s05_syn_recv_stuck();
}

#[test]
fn s06_syn_sent_unanswered() {
    scenarios::s06_syn_sent_unanswered();
}

#[test]
fn s07_peer_lost_its_state() {
    scenarios::s07_peer_lost_its_state();
}

#[test]
fn s08_time_wait_assassination() {
    scenarios::s08_time_wait_assassination();
}

#[test]
fn s09_time_wait_reuse() {
    scenarios::s09_time_wait_reuse();
}

#[test]
fn s10_syn_flood() {
    scenarios::s10_syn_flood();
}

/// Every scenario of `support::scenarios::ALL` has its test above.
#[test]
fn every_scenario_is_a_test() {
    let source = include_str!("scenarios.rs");
    for (name, _) in scenarios::ALL {
        assert!(source.contains(&format!("fn {name}()")), "no test for {name}");
    }
}
