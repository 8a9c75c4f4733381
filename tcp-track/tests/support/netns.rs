//! The namespace helper and the frame builder live in the library
//! (`tcp_track::test_support`, also used by `tcp-track demo`); tests add
//! the loud skip for non-root runs, and unwrap what they call.

// Each test file uses a part.
#[allow(unused_imports)]
pub use tcp_track::test_support::{frames::*, netns::*};

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
