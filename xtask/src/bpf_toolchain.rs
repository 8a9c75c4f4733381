//! How to compile `tcp-track-ebpf` for `bpfel-unknown-none` on this machine.
//!
//! Shared (via `#[path]`) by `xtask`, which installs what is missing, and by
//! `tcp-track/build.rs`, which builds the object and embeds it. Std only.
//!
//! Two routes are known to work:
//! 1. Debian's packaged Rust (`rustc-web`), which ships a prebuilt `core` for
//!    the BPF targets (`libstd-rust-web-dev-bpf`), with `bpf-linker` built
//!    against the same LLVM major as that rustc. No `-Z build-std` needed.
//! 2. rustup nightly with the `rust-src` component: `-Z build-std=core`.
//!
//! Both need `bpf-linker`.

use std::{
    env, fmt,
    path::{Path, PathBuf},
    process::Command,
};

pub const TARGET: &str = "bpfel-unknown-none";
/// The Debian compiler that ships a prebuilt BPF core.
pub const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
pub const DEBIAN_BPF_SYSROOT: &str = "/usr/lib/rustlib/bpfel-unknown-none/lib";
/// Debian packages of route 1 (the LLVM dev package is added once the
/// compiler's LLVM major is known).
pub const DEBIAN_PACKAGES: &[&str] = &["rustc-web", "libstd-rust-web-dev-bpf"];
pub const BPF_LINKER_VERSION: &str = "0.13.0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Debian's rustc with a prebuilt BPF `core`.
    DebianPrebuiltCore { rustc: PathBuf, linker: PathBuf },
    /// rustup nightly + rust-src, building `core` with `-Z build-std=core`.
    NightlyBuildStd { linker: PathBuf },
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::DebianPrebuiltCore { rustc, linker } => write!(
                f,
                "Debian's prebuilt BPF core ({} + {})",
                rustc.display(),
                linker.display()
            ),
            Route::NightlyBuildStd { linker } => {
                write!(f, "rustup nightly + rust-src, -Z build-std=core ({})", linker.display())
            }
        }
    }
}

/// What is missing when no route can work, with the commands that fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub debian_core: bool,
    pub nightly_src: bool,
    pub bpf_linker: bool,
    /// LLVM major of Debian's rustc, when it is installed.
    pub llvm_major: Option<u32>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let llvm = self.llvm_major.unwrap_or(22);
        writeln!(f, "cannot build the eBPF programs: no BPF-capable Rust toolchain found.")?;
        writeln!(f, "Install one of:")?;
        writeln!(
            f,
            "  Debian/Ubuntu (what `cargo xtask build` does for you):\n    apt-get install rustc-web libstd-rust-web-dev-bpf llvm-{llvm}-dev"
        )?;
        writeln!(f, "  or rustup:\n    rustup toolchain install nightly --component rust-src")?;
        if self.bpf_linker {
            writeln!(
                f,
                "and bpf-linker, built against the LLVM of that rustc:\n    LLVM_PREFIX=/usr/lib/llvm-{llvm} cargo install bpf-linker --version {BPF_LINKER_VERSION} --locked --no-default-features --features llvm-{llvm}\n    (with rustup nightly: cargo install bpf-linker)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Missing {}

/// Find a working route, preferring Debian's prebuilt core (no build-std).
pub fn detect() -> Result<Route, Missing> {
    let debian_core = debian_core_present();
    let nightly_src = nightly_rust_src_present();
    let linker = find_bpf_linker();
    match (&linker, debian_core, nightly_src) {
        (Some(linker), true, _) => {
            Ok(Route::DebianPrebuiltCore { rustc: PathBuf::from(DEBIAN_RUSTC), linker: linker.clone() })
        }
        (Some(linker), false, true) => Ok(Route::NightlyBuildStd { linker: linker.clone() }),
        _ => Err(Missing {
            debian_core: !debian_core,
            nightly_src: !nightly_src,
            bpf_linker: linker.is_none(),
            llvm_major: debian_llvm_major(),
        }),
    }
}

pub fn debian_core_present() -> bool {
    Path::new(DEBIAN_RUSTC).exists()
        && std::fs::read_dir(DEBIAN_BPF_SYSROOT)
            .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("libcore-")))
            .unwrap_or(false)
}

/// LLVM major version Debian's rustc was built with (`rustc -vV`).
pub fn debian_llvm_major() -> Option<u32> {
    let out = Command::new(DEBIAN_RUSTC).arg("-vV").output().ok()?;
    llvm_major_of(&String::from_utf8_lossy(&out.stdout))
}

pub fn llvm_major_of(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse().ok())
}

pub fn nightly_rust_src_present() -> bool {
    let Ok(out) = Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]).output() else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml").exists()
}

/// `bpf-linker` on PATH or in cargo's bin directory.
pub fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join("bpf-linker")).find(|p| p.is_file())
}

/// Where the object lands for a given `--target-dir`.
pub fn object_path(target_dir: &Path) -> PathBuf {
    target_dir.join(TARGET).join("release").join("tcp-track")
}

/// The `cargo build` that compiles `tcp-track-ebpf`, with an environment
/// cleaned of everything an enclosing cargo (build script) set, so that the
/// nested build uses its own compiler, flags and target directory.
pub fn build_command(route: &Route, cargo: &Path, manifest: &Path, target_dir: &Path) -> Command {
    let mut cmd = match route {
        Route::DebianPrebuiltCore { .. } => Command::new(cargo),
        Route::NightlyBuildStd { .. } => {
            let mut c = Command::new("rustup");
            c.args(["run", "nightly", "cargo"]);
            c
        }
    };
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        let keep = k == "CARGO_HOME"
            || k.starts_with("CARGO_NET_")
            || k.starts_with("CARGO_HTTP_")
            || k.starts_with("CARGO_REGISTR");
        let drop = (k.starts_with("CARGO_") && !keep)
            || k.starts_with("RUSTC")
            || k.starts_with("RUSTDOC")
            || k == "RUSTFLAGS"
            || k == "RUSTUP_TOOLCHAIN";
        if drop {
            cmd.env_remove(&key);
        }
    }
    // bpf-linker passes LLVM --bpf-expand-memcpy-in-order unless told not
    // to; LLVM then calls memset and memmove (byte loops) for every record
    // zeroed or copied, which costs time per packet and, walked byte by
    // byte by the verifier on every path, nearly half of the programs'
    // million verified instructions. Inlined, they are a dozen stores.
    // `tcp_track_tally` (tcp-track-common, state/tally.rs),
    // `tcp_track_advance` (tcp-track-common, advance.rs),
    // `tcp_track_claim_way` (tcp-track-common, estab.rs),
    // `tcp_track_find_v4`/`_v6`, `tcp_track_place_v4`/`_v6` (tcp-track-ebpf,
    // maps.rs) and
    // `tcp_track_liberal` (tcp-track-ebpf, track.rs) stay global functions,
    // which the verifier checks once rather than once per caller path.
    let mut flags = vec![
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
        "-Clink-arg=--disable-expand-memcpy-in-order",
        "-Clink-arg=--export=tcp_track_tally",
        "-Clink-arg=--export=tcp_track_liberal",
        "-Clink-arg=--export=tcp_track_advance",
        "-Clink-arg=--export=tcp_track_claim_way",
        "-Clink-arg=--export=tcp_track_find_v4",
        "-Clink-arg=--export=tcp_track_find_v6",
        "-Clink-arg=--export=tcp_track_place_v4",
        "-Clink-arg=--export=tcp_track_place_v6",
        "-Ctarget-cpu=v3",
    ];
    cmd.args(["build", "--release", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir)
        // Keep cargo from choosing dependency versions newer than these compilers.
        .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "fallback");
    match route {
        Route::DebianPrebuiltCore { rustc, linker } => {
            cmd.env("RUSTC", rustc)
                // aya-ebpf uses `asm_experimental_arch`, and so do we.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker);
        }
        Route::NightlyBuildStd { linker } => {
            cmd.args(["-Z", "build-std=core"]).env("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER", linker);
            flags.push("-Cpanic=abort");
        }
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_verbose_version() {
        let vv = "rustc 1.96.0 (ac68faa20 2026-05-25)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu\nrelease: 1.96.0\nLLVM version: 22.1.8\n";
        assert_eq!(llvm_major_of(vv), Some(22));
        assert_eq!(llvm_major_of("rustc 1.0"), None);
    }

    #[test]
    fn missing_message_names_every_install_command() {
        let m = Missing { debian_core: true, nightly_src: true, bpf_linker: true, llvm_major: Some(22) };
        let text = m.to_string();
        assert!(text.contains("apt-get install rustc-web libstd-rust-web-dev-bpf llvm-22-dev"), "{text}");
        assert!(text.contains("rustup toolchain install nightly --component rust-src"), "{text}");
        assert!(text.contains("cargo install bpf-linker --version 0.13.0"), "{text}");
    }

    #[test]
    fn nested_build_drops_the_enclosing_cargo_environment() {
        let route = Route::DebianPrebuiltCore { rustc: DEBIAN_RUSTC.into(), linker: "/x/bpf-linker".into() };
        let cmd = build_command(&route, Path::new("cargo"), Path::new("m/Cargo.toml"), Path::new("t"));
        let envs: Vec<(String, Option<String>)> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned())))
            .collect();
        let get = |name: &str| envs.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone());
        assert_eq!(get("RUSTC").as_deref(), Some(DEBIAN_RUSTC));
        assert_eq!(get("CARGO_TARGET_BPFEL_UNKNOWN_NONE_LINKER").as_deref(), Some("/x/bpf-linker"));
        assert!(get("CARGO_ENCODED_RUSTFLAGS").unwrap().contains("-Clink-arg=--btf"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(!args.iter().any(|a| a == "build-std=core"), "Debian's core is prebuilt: {args:?}");
    }
}
