//! `tcp-track read` against the live path: every namespace scenario is run
//! again with tcpdump capturing the watched interface while the daemon
//! runs; `tcp-track read` of the capture must print the same events (kinds,
//! classes, states, endpoints, in the same order, times within 1 ms) as
//! the daemon printed. The comparison is in `support::capture`.

mod support;

use support::{capture::while_capturing, scenarios};

#[test]
fn read_prints_what_the_daemon_printed_for_every_scenario() {
    require_root!();
    for (name, scenario) in scenarios::ALL {
        eprintln!("=== {name}");
        while_capturing(scenario);
    }
}
