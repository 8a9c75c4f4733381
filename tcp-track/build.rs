//! Builds the kernel programs (`tcp-track-ebpf`) for `bpfel-unknown-none` and
//! hands the object's path to the crate, which embeds it. The toolchain route
//! is detected by the module shared with xtask; `cargo xtask build` installs
//! what is missing on Debian-like systems.

#[path = "../xtask/src/bpf_toolchain.rs"]
#[allow(dead_code)]
mod bpf_toolchain;

use std::{env, path::PathBuf, process};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("tcp-track lives inside the workspace").to_path_buf();
    for path in [
        "tcp-track-ebpf/src",
        "tcp-track-ebpf/Cargo.toml",
        "tcp-track-ebpf/Cargo.lock",
        "tcp-track-common/src",
        "tcp-track-common/Cargo.toml",
        "xtask/src/bpf_toolchain.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    let route = match bpf_toolchain::detect() {
        Ok(route) => route,
        Err(missing) => {
            eprintln!("{missing}");
            process::exit(1);
        }
    };
    let target_dir = root.join("target").join("bpf");
    let cargo = PathBuf::from(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let manifest = root.join("tcp-track-ebpf").join("Cargo.toml");
    let status = bpf_toolchain::build_command(&route, &cargo, &manifest, &target_dir).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            eprintln!("building tcp-track-ebpf with {route} failed ({s}); the compiler output is above");
            process::exit(1);
        }
        Err(e) => {
            eprintln!("could not run cargo to build tcp-track-ebpf with {route}: {e}");
            process::exit(1);
        }
    }
    let object = bpf_toolchain::object_path(&target_dir);
    println!("cargo:rustc-env=TCP_TRACK_EBPF_OBJECT={}", object.display());
}
