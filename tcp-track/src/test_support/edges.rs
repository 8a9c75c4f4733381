//! Every option at its edges, as a table shared by the unit test of
//! `Config::validate` (through the argument parser) and the integration
//! test that runs the binary for each row (`tests/option_edges.rs`).
//! Each row: arguments after `run --iface lo`, the message expected (None:
//! accepted) and its class, which sets the exit status. The memory rows
//! assume 1 GiB available (the unit test says so; the binary sees the host).

use crate::config::ErrorClass;

/// One option's value at an edge: `None` for the message when the
/// configuration is fine.
pub type Edge = (&'static [&'static str], Option<&'static str>, ErrorClass);

/// Assert that `got`, what the configuration made of `edge`'s arguments,
/// is what the edge expects: accepted, or refused with its message and
/// class.
pub fn assert_edge<T: std::fmt::Debug>(edge: &Edge, got: Result<T, (String, ErrorClass)>) {
    let (args, message, class) = edge;
    match (got, message) {
        (Ok(_), None) => {}
        (Err((got, got_class)), Some(expected)) => {
            assert!(got.contains(expected), "{args:?}: expected {expected:?} in {got:?}");
            assert_eq!(got_class, *class, "{args:?}: {got}");
        }
        (got, _) => panic!("{args:?}: expected {message:?}, got {got:?}"),
    }
}

/// Every option of `run` at its edges: zero, negative, huge, repeated.
/// Rows rejected by clap (parse errors) are usage errors too (clap
/// exits 2).
pub const RUN_EDGES: &[Edge] = &[
    (&["--iface", ""], Some("--iface \"\": an interface name is 1 to 15 bytes"), ErrorClass::Usage),
    (&["--iface", "a-name-of-16-byt"], Some("an interface name is 1 to 15 bytes"), ErrorClass::Usage),
    (&["--iface", "a/b"], Some("without '/'"), ErrorClass::Usage),
    (&["--iface", "lo"], None, ErrorClass::Usage),
    // Glob patterns: matched as interfaces appear, so none need exist.
    (&["--iface", "vt*"], None, ErrorClass::Usage),
    (&["--iface", "eth[0-3]", "--iface", "tap?"], None, ErrorClass::Usage),
    (&["--iface", "eth["], Some("--iface \"eth[\": not a valid pattern"), ErrorClass::Usage),
    (&["--iface", "vt*/x"], Some("--iface \"vt*/x\": a pattern is 1 to 64 bytes, without '/'"), ErrorClass::Usage),
    (&["--iface", "vt* x"], Some("without '/', ':' or spaces"), ErrorClass::Usage),
    (&["--format", "xml"], Some("invalid value 'xml' for '--format <FORMAT>'"), ErrorClass::Usage),
    (&["--format", "json", "--format", "json"], Some("'--format <FORMAT>' cannot be used multiple times"), ErrorClass::Usage),
    (&["--xdp-mode", "hw"], Some("invalid value 'hw' for '--xdp-mode <XDP_MODE>'"), ErrorClass::Usage),
    (&["--no-egress", "--no-egress"], Some("'--no-egress' cannot be used multiple times"), ErrorClass::Usage),
    (&["--bpf-log", "loud"], Some("invalid value 'loud' for '--bpf-log <BPF_LOG>'"), ErrorClass::Usage),
    (&["--events", "none"], Some("invalid value 'none' for '--events <EVENTS>'"), ErrorClass::Usage),
    (&["--events", "notable,"], Some("a value is required for '--events <EVENTS>'"), ErrorClass::Usage),
    (&["--events", "notable,conn,all"], None, ErrorClass::Usage),
    (&["--events", "conn", "--events", "all"], None, ErrorClass::Usage),
    (&["--idle-timeout", "0s"], Some("--idle-timeout 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--idle-timeout", "-1h"], Some("a duration cannot be negative"), ErrorClass::Usage),
    (&["--idle-timeout", "8d"], Some("--idle-timeout 8days: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--idle-timeout", "7d"], None, ErrorClass::Usage),
    (&["--conn-interval", "0s"], Some("--conn-interval 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--conn-interval", "later"], Some("use forms like 500ms, 2s, 1m"), ErrorClass::Usage),
    (&["--conn-interval", "1ms", "--events", "conn"], None, ErrorClass::Usage),
    (&["--half-open-timeout", "0s"], Some("--half-open-timeout 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--half-open-timeout", "-1s"], Some("a duration cannot be negative"), ErrorClass::Usage),
    (&["--half-open-timeout", "8d"], Some("--half-open-timeout 8days: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--half-open-timeout", "1ms"], None, ErrorClass::Usage),
    (&["--time-wait-timeout", "0ms"], Some("--time-wait-timeout 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--time-wait-timeout", "1000y"], Some("--time-wait-timeout 1000years: must be between"), ErrorClass::Usage),
    (&["--time-wait-timeout", "7d"], None, ErrorClass::Usage),
    (&["--close-wait-timeout", "0s"], Some("--close-wait-timeout 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--close-wait-timeout", "soon"], Some("use forms like 500ms, 2s, 1m"), ErrorClass::Usage),
    (&["--syn-flood-threshold", "0"], Some("--syn-flood-threshold 0: must be between 1 and 16777216 (2^24, the largest table)"), ErrorClass::Usage),
    (&["--syn-flood-threshold", "-5"], Some("cannot be negative"), ErrorClass::Usage),
    (&["--syn-flood-threshold", "16777217"], Some("must be between 1 and 16777216"), ErrorClass::Usage),
    (&["--syn-flood-threshold", "1"], None, ErrorClass::Usage),
    (&["--time-wait-pressure", "0"], Some("--time-wait-pressure 0: must be between 1 and 16777216"), ErrorClass::Usage),
    (&["--time-wait-pressure", "4294967296"], Some("at most 4294967295"), ErrorClass::Usage),
    (&["--time-wait-pressure", "16777217"], Some("must be between 1 and 16777216"), ErrorClass::Usage),
    (&["--time-wait-pressure", "16777216", "--max-flows", "10"], None, ErrorClass::Usage),
    (&["--rst-policy", "drop-all"], Some("invalid value 'drop-all' for '--rst-policy <RST_POLICY>'"), ErrorClass::Usage),
    (&["--rst-policy", "observe", "--drop-invalid-rst"], Some("cannot be used with"), ErrorClass::Usage),
    (&["--drop-invalid-rst", "--drop-invalid-rst"], Some("cannot be used multiple times"), ErrorClass::Usage),
    (&["--liberal-iface", "eth9"], Some("--liberal-iface eth9: not one of the watched interfaces (add --iface eth9)"), ErrorClass::Usage),
    (&["--liberal-iface", "lo", "--liberal-iface", "lo"], None, ErrorClass::Usage),
    (&["--iface", "vt*", "--liberal-iface", "vt0"], None, ErrorClass::Usage),
    (&["--iface", "vt*", "--liberal-iface", "vt*"], None, ErrorClass::Usage),
    (&["--liberal-iface", "l?"], None, ErrorClass::Usage),
    (&["--liberal-iface", "eth[0"], Some("--liberal-iface \"eth[0\": not a valid pattern"), ErrorClass::Usage),
    (&["--max-flows", "0"], Some("--max-flows 0: must be between 1 and 16777216 (2^24) flows per address family"), ErrorClass::Usage),
    (&["--max-flows", "-1"], Some("cannot be negative"), ErrorClass::Usage),
    (&["--max-flows", "1000000000"], Some("--max-flows 1000000000: must be between 1 and 16777216"), ErrorClass::Usage),
    (&["--max-flows", "99999999999"], Some("at most 4294967295"), ErrorClass::Usage),
    (&["--max-flows", "16777216"], Some("--max-flows 16777216: the flow tables would take 4430.5 MiB of kernel memory and 1024.0 MiB is available (MemAvailable); the largest --max-flows that fits is"), ErrorClass::Environment),
    (&["--max-half-open", "0"], Some("--max-half-open 0: must be between 1 and 16777216 (2^24) half-open connections"), ErrorClass::Usage),
    (&["--max-half-open", "16777217"], Some("must be between 1 and 16777216"), ErrorClass::Usage),
    (&["--max-half-open", "16777216"], Some("--max-half-open 16777216: the flow tables would take"), ErrorClass::Environment),
    (&["--stats-interval", "0s"], Some("--stats-interval 0s: must be between 1ms and 7days"), ErrorClass::Usage),
    (&["--stats-interval", "-2s"], Some("a duration cannot be negative"), ErrorClass::Usage),
    (&["--stats-interval", "1ms"], None, ErrorClass::Usage),
    (&["--metrics-addr", "nonsense"], Some("invalid value 'nonsense' for '--metrics-addr <ADDR:PORT>'"), ErrorClass::Usage),
    (&["--metrics-addr", "127.0.0.1"], Some("invalid value '127.0.0.1' for '--metrics-addr <ADDR:PORT>'"), ErrorClass::Usage),
    (&["--metrics-addr", "127.0.0.1:9464", "--metrics-addr", "127.0.0.1:9465"], Some("cannot be used multiple times"), ErrorClass::Usage),
    (&["--metrics-addr", "127.0.0.1:9464"], None, ErrorClass::Usage),
    (&["--state-dir", "relative/dir"], Some("--state-dir relative/dir: must be an absolute path"), ErrorClass::Usage),
    (&["--state-dir", "/sys/fs/bpf/tt"], None, ErrorClass::Usage),
    (&["--instance", "a/b"], Some("without '/'"), ErrorClass::Usage),
    (&["--instance", ".."], Some("not '.' or '..'"), ErrorClass::Usage),
    (&["--instance", ""], Some("an instance name is 1 to 200 bytes"), ErrorClass::Usage),
    (&["--instance", "web"], None, ErrorClass::Usage),
    (&["--keep-state", "--keep-state"], Some("cannot be used multiple times"), ErrorClass::Usage),
    (&["--keep-state"], None, ErrorClass::Usage),
    (&["--addr", "198.18.0.0/33"], Some("a prefix length is 0 to 32"), ErrorClass::Usage),
    (&["--addr", "example.com"], Some("not an address or network"), ErrorClass::Usage),
    (&["--addr", "2001:db8::/32", "--addr", "198.18.0.1", "--addr", "0.0.0.0/0"], None, ErrorClass::Usage),
    (&["--port", "65536"], Some("invalid value '65536' for '--port <PORT>'"), ErrorClass::Usage),
    (&["--port", "-1"], Some("unexpected argument '-1'"), ErrorClass::Usage),
    (&["--port", "0", "--port", "443", "--port", "443"], None, ErrorClass::Usage),
    (&["--client", ":99999"], Some("a port is 0 to 65535"), ErrorClass::Usage),
    (&["--client", ""], Some("not an endpoint"), ErrorClass::Usage),
    (&["--client", "198.18.0.0/24", "--client", "[2001:db8::1]:443", "--client", ":40000"], None, ErrorClass::Usage),
    (&["--server", "198.18.0.2:http"], Some("not an endpoint"), ErrorClass::Usage),
    (&["--server", "[2001:db8::2]:443"], None, ErrorClass::Usage),
];

/// `tcp-track demo`'s only option (clap's usage errors).
pub const DEMO_EDGES: &[Edge] = &[
    (&["--format", "xml"], Some("invalid value 'xml' for '--format <FORMAT>'"), ErrorClass::Usage),
    (&["--format", "json", "--format", "text"], Some("'--format <FORMAT>' cannot be used multiple times"), ErrorClass::Usage),
];

/// `tcp-track flows` and `tcp-track detach` at their edges (the endpoint
/// filter's options are `run`'s rows too): every row is
/// rejected (accepted rows would need pinned state), clap's usage errors
/// (exit 2) or, for a place where nothing can be pinned, the host's (1).
pub const FLOWS_EDGES: &[Edge] = &[
    (&["--state", "bogus"], Some("invalid value 'bogus' for '--state <STATE>'"), ErrorClass::Usage),
    (&["--state", "ESTABLISHED,nope"], Some("invalid value 'nope' for '--state <STATE>'"), ErrorClass::Usage),
    (&["--addr", "198.18.0.0/33"], Some("a prefix length is 0 to 32"), ErrorClass::Usage),
    (&["--addr", "2001:db8::/129"], Some("a prefix length is 0 to 128"), ErrorClass::Usage),
    (&["--addr", "example.com"], Some("not an address or network"), ErrorClass::Usage),
    (&["--port", "65536"], Some("invalid value '65536' for '--port <PORT>'"), ErrorClass::Usage),
    (&["--port", "-1"], Some("unexpected argument '-1'"), ErrorClass::Usage),
    (&["--client", ":99999"], Some("a port is 0 to 65535"), ErrorClass::Usage),
    (&["--server", "198.18.0.2:http"], Some("not an endpoint"), ErrorClass::Usage),
    (&["--format", "xml"], Some("invalid value 'xml' for '--format <FORMAT>'"), ErrorClass::Usage),
    (&["--count", "--count"], Some("cannot be used multiple times"), ErrorClass::Usage),
    (&["--state-dir", "/proc/tt-nothing-here"], Some("/proc: not on a BPF file system"), ErrorClass::Environment),
];
