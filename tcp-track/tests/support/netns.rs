//! The namespace helper lives in the library (`tcp_track::netns`, also used
//! by `tcp-track demo`); tests add the loud skip for non-root runs.

pub use tcp_track::netns::*;

/// Skip a test that needs root, loudly: the skip is printed, not silent.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::support::netns::is_root() {
            eprintln!(
                "\n*** SKIPPED {}: needs root (network namespaces and BPF); run `cargo xtask test` as root ***\n",
                module_path!()
            );
            return;
        }
    };
}
