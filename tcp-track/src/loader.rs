//! Loading the embedded kernel object and attaching its programs.
//!
//! Attachments are BPF links (XDP links, TCX links on Linux 6.6+): they are
//! owned by this process and go away when it exits, even if it is killed, so
//! a crashed tracker never leaves a program behind on an interface, unless
//! the daemon keeps its state (`Pinning::keep`): its links are then pinned
//! in bpffs and stay attached until `tcp-track detach` or a daemon that does
//! not keep its state removes them. A link found pinned is adopted: its
//! program is replaced atomically (`bpf_link_update`), so the interface is
//! never without one.

use std::{fmt, io};

use aya::{
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachType},
        xdp::{XdpLink, XdpLinkId},
        ProgramError, SchedClassifier, Xdp, XdpMode,
    },
    maps::{MapError, ProgramArray},
    Ebpf, EbpfError, EbpfLoader,
};
use log::{debug, info, warn};
use thiserror::Error;

use crate::{
    config::{BpfLog, Capacity, RstPolicy, XdpModeChoice},
    pins::{Hook, StateDir, FULL_TC, FULL_XDP, PINNED_MAPS},
    preflight::Interface,
    tables::TableLayout,
};

/// A fresh key for the half-open tables' hash, so that no one outside can
/// predict which SYNs share a set.
fn random_seed() -> u32 {
    let mut seed = [0u8; 4];
    // SAFETY: writes at most 4 bytes into `seed`. Should the call fail, a
    // time-derived seed still differs per start.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), seed.len(), 0) };
    if n == 4 {
        u32::from_ne_bytes(seed)
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos() ^ std::process::id())
    }
}

/// The kernel programs, built by build.rs for bpfel-unknown-none.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("TCP_TRACK_EBPF_OBJECT"));

pub const XDP_PROGRAM: &str = "tcp_track_xdp";
/// An XDP program that only returns XDP_PASS: the benchmark's baseline.
pub const EMPTY_PROGRAM: &str = "tcp_track_empty";
pub const TC_PROGRAM: &str = "tcp_track_tc_egress";
/// The full paths, which the hooks reach by a tail call through the prog
/// arrays `pins::FULL_XDP` and `pins::FULL_TC` (IPv4 in slot 0). Loaded, never
/// attached.
pub const XDP_FULL_PROGRAM: &str = "tcp_track_xdp_full";
pub const TC_FULL_PROGRAM: &str = "tcp_track_tc_full";
/// Their IPv6 twins (slot 1 of the prog arrays; the IPv4 programs are
/// slot 0): one program per family, for the verifier's million
/// instructions.
pub const XDP_FULL_V6_PROGRAM: &str = "tcp_track_xdp_full_v6";
pub const TC_FULL_V6_PROGRAM: &str = "tcp_track_tc_full_v6";
/// The benchmark's reference: parse, one lookup and update in an LRU hash
/// (`REFERENCE_MAP`, one entry unless the benchmark sizes it). Never attached.
pub const REFERENCE_PROGRAM: &str = "tcp_track_reference";
pub const REFERENCE_MAP: &str = "REFERENCE_FLOWS";
/// The benchmark's second reference: the same with a set-associative table
/// of its own (`tcp_track_common::refsets`; `REFERENCE_SETS`, masked by
/// the global `REFERENCE_SET_MASK`). Never attached.
pub const REFERENCE_SETS_PROGRAM: &str = "tcp_track_reference_sets";
pub const REFERENCE_SETS_MAP: &str = "REFERENCE_SETS";
pub const REFERENCE_SET_MASK: &str = "REFERENCE_SET_MASK";

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {0}")]
    Object(#[source] EbpfError),
    #[error("the kernel rejected program {program}: {source} (run with RUST_LOG=debug to see the verifier log)")]
    Program { program: &'static str, source: ProgramError },
    #[error("handing the hooks their full path {program} failed: {source}")]
    FullPath { program: &'static str, source: MapError },
    #[error("handing the hooks their full path {program} failed: duplicating its descriptor: {source} (raise the open-files limit)")]
    FullPathFd { program: &'static str, source: io::Error },
    #[error("starting the kernel-side log reader failed: {0}")]
    Logger(#[source] aya_log::Error),
}

#[derive(Debug, Error)]
pub enum AttachError {
    #[error("interface {iface}: its driver does not support native (driver-mode) XDP; use --xdp-mode skb (generic XDP, works on any interface) or --xdp-mode auto")]
    NativeXdpUnsupported { iface: String },
    #[error("interface {iface} already has an XDP program attached; remove it first (`ip link set dev {iface} xdp off`) or watch another interface")]
    XdpBusy { iface: String },
    #[error("interface {iface}: attaching XDP in {mode} mode failed: {source}")]
    Xdp { iface: String, mode: &'static str, source: ProgramError },
    #[error("interface {iface}: attaching the TC egress program failed: {source} (tcp-track needs TCX, Linux 6.6+, or clsact, CONFIG_NET_SCH_INGRESS; use --no-egress to watch ingress only)")]
    Tc { iface: String, source: ProgramError },
    #[error("interface {iface}: {what} (keeping state needs BPF links: XDP links, and TCX for egress, Linux 6.6+; run without --keep-state, or with --no-egress)")]
    Pin { iface: String, what: String },
}

/// Where the maps (and, when the state is kept, the links) are pinned.
#[derive(Clone, Debug)]
pub struct Pinning {
    pub dir: StateDir,
    /// The half-open tables' hash key of the state being adopted: the
    /// programs must find its flows in the sets it put them in.
    pub seed: Option<u32>,
    /// Pin the links too, so that the programs stay attached after exit.
    pub keep: bool,
}

/// The XDP mode an interface actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Skb,
    /// A link the previous daemon pinned, adopted as it was attached.
    Kept,
}

impl fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Skb => "skb",
            AttachedMode::Kept => "kept",
        })
    }
}

#[derive(Debug)]
pub struct Attached {
    pub iface: Interface,
    pub mode: AttachedMode,
    xdp_link: Option<XdpLinkId>,
    tc_link: Option<SchedClassifierLinkId>,
    /// Links pinned in the state directory (kept or adopted): dropping one
    /// closes this process's handle and leaves the program attached;
    /// unpinning it and then dropping it detaches.
    pinned: Vec<PinnedLink>,
    /// The kernel's ids of the links (XDP, then TC egress), which an
    /// adopting daemon keeps: the same link, its program replaced.
    pub link_ids: Vec<u32>,
    pub egress: bool,
}

impl Attached {
    pub fn has_egress(&self) -> bool {
        self.egress
    }
}

/// The loaded object, its attachments, and (when asked for) the reader of
/// kernel-side logs, which must stay alive as long as the programs.
pub struct Tracker {
    pub ebpf: Ebpf,
    /// Where the flow tables keep a flow (their hash seed and set masks).
    pub layout: TableLayout,
    pub attached: Vec<Attached>,
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    pub pinning: Option<Pinning>,
}

impl Tracker {
    pub fn load(bpf_log: BpfLog) -> Result<Self, LoadError> {
        Self::load_with_policy(bpf_log, RstPolicy::Observe)
    }

    /// Load with an RST policy (a load-time constant of the XDP program).
    pub fn load_with_policy(bpf_log: BpfLog, rst_policy: RstPolicy) -> Result<Self, LoadError> {
        Self::load_with_capacity(bpf_log, rst_policy, Capacity::default())
    }

    /// Load with an RST policy and table capacities (per address family):
    /// established flows and half-open ones (rounded up to whole sets, see
    /// `Capacity::half_open_slots`).
    pub fn load_sized(bpf_log: BpfLog, rst_policy: RstPolicy, max_flows: u32, max_half_open: u32) -> Result<Self, LoadError> {
        Self::load_with_capacity(bpf_log, rst_policy, Capacity::new(max_flows, max_half_open))
    }

    /// Load with an RST policy and the tables sized as `capacity` says.
    pub fn load_with_capacity(bpf_log: BpfLog, rst_policy: RstPolicy, capacity: Capacity) -> Result<Self, LoadError> {
        Self::load_pinned(bpf_log, rst_policy, capacity, None)
    }

    /// Load as `load_with_capacity`, with the maps of `PINNED_MAPS` pinned
    /// under `pinning.dir`: those already pinned there are reused as they
    /// are (the caller has checked them, `pins::StateDir::inspect`), the
    /// others are created and pinned.
    pub fn load_pinned(bpf_log: BpfLog, rst_policy: RstPolicy, capacity: Capacity, pinning: Option<Pinning>) -> Result<Self, LoadError> {
        let policy = rst_policy.kernel_value();
        let (established_sets, stash, half_open_sets) = (capacity.established_sets(), capacity.stash(), capacity.half_open_sets());
        let seed = pinning.as_ref().and_then(|p| p.seed).unwrap_or_else(random_seed);
        let layout = TableLayout { seed, set_mask: capacity.half_open_set_mask(), established_mask: capacity.established_set_mask() };
        let level: u8 = match bpf_log {
            BpfLog::Off => 0,
            BpfLog::Error => 1,
            BpfLog::Warn => 2,
            BpfLog::Info => 3,
            BpfLog::Debug => 4,
            BpfLog::Trace => 5,
        };
        let mut loader = EbpfLoader::new();
        if let Some(p) = &pinning {
            for name in PINNED_MAPS {
                loader.map_pin_path(name, p.dir.map_path(name));
            }
        }
        let mut ebpf = loader
            .override_global(aya_log::LEVEL, &level, false)
            .override_global("RST_POLICY", &policy, true)
            .map_max_entries("ESTABLISHED_V4", established_sets)
            .map_max_entries("ESTABLISHED_V6", established_sets)
            .override_global("ESTABLISHED_SET_MASK", &layout.established_mask, true)
            .map_max_entries("STASH_V4", stash)
            .map_max_entries("STASH_V6", stash)
            .override_global("HALF_OPEN_SEED", &layout.seed, true)
            .override_global("HALF_OPEN_SET_MASK", &layout.set_mask, true)
            .map_max_entries("HALF_OPEN_V4", half_open_sets)
            .map_max_entries("HALF_OPEN_V6", half_open_sets)
            .load(EBPF_OBJECT)
            .map_err(LoadError::Object)?;
        let logger = if bpf_log == BpfLog::Off {
            None
        } else {
            Some(aya_log::EbpfLogger::init(&mut ebpf).map_err(LoadError::Logger)?)
        };
        // The full paths first: a hook that runs (a pinned link adopted,
        // or a test run) must find its slot filled.
        for (slot, name) in [XDP_FULL_PROGRAM, XDP_FULL_V6_PROGRAM].into_iter().enumerate() {
            let full: &mut Xdp = program(&mut ebpf, name)?;
            full.load().map_err(|e| rejected(name, e))?;
            fill_full_path(&mut ebpf, FULL_XDP, slot as u32, name)?;
        }
        for (slot, name) in [TC_FULL_PROGRAM, TC_FULL_V6_PROGRAM].into_iter().enumerate() {
            let full: &mut SchedClassifier = program(&mut ebpf, name)?;
            full.load().map_err(|e| rejected(name, e))?;
            fill_full_path(&mut ebpf, FULL_TC, slot as u32, name)?;
        }
        let xdp: &mut Xdp = program(&mut ebpf, XDP_PROGRAM)?;
        xdp.load().map_err(|e| rejected(XDP_PROGRAM, e))?;
        let tc: &mut SchedClassifier = program(&mut ebpf, TC_PROGRAM)?;
        tc.load().map_err(|e| rejected(TC_PROGRAM, e))?;
        Ok(Tracker { ebpf, layout, attached: Vec::new(), logger, pinning })
    }

    /// Attach XDP (and TC egress unless `egress` is false or the interface
    /// is a loopback) to one interface. With pinning, a link pinned there
    /// by the previous daemon is adopted (its program replaced in place);
    /// a new link is pinned when the state is kept.
    pub fn attach(&mut self, iface: &Interface, choice: XdpModeChoice, egress: bool) -> Result<&Attached, AttachError> {
        let pins = self.pinning.clone();
        let pin_err = |what: String| AttachError::Pin { iface: iface.name.clone(), what };
        let xdp: &mut Xdp = self.ebpf.program_mut(XDP_PROGRAM).and_then(|p| p.try_into().ok()).expect("loaded in Tracker::load");
        let xdp_pin = pins.as_ref().map(|p| p.dir.link_path(Hook::Xdp, &iface.name));
        let mut a = Attached { iface: iface.clone(), mode: AttachedMode::Kept, xdp_link: None, tc_link: None, pinned: Vec::new(), link_ids: Vec::new(), egress: false };
        let adopted = match xdp_pin.as_deref().filter(|p| p.exists()) {
            Some(path) => {
                let (link, id) = open_pinned(path).map_err(pin_err)?;
                let link = XdpLink::try_from(link).map_err(|e| pin_err(format!("{}: not an XDP link: {e}", path.display())))?;
                match xdp.attach_to_link(link) {
                    Ok(lid) => {
                        drop(xdp.take_link(lid));
                        a.pinned.push(PinnedLink::from_pin(path).map_err(|e| pin_err(format!("{}: {e}", path.display())))?);
                        a.link_ids.push(id);
                        true
                    }
                    Err(e) if severed(&e) => {
                        unpin_severed(path, &iface.name, "XDP", id).map_err(pin_err)?;
                        false
                    }
                    Err(source) => return Err(AttachError::Xdp { iface: iface.name.clone(), mode: "kept", source }),
                }
            }
            None => false,
        };
        if !adopted {
            let (lid, mode) = attach_xdp(xdp, iface, choice)?;
            a.mode = mode;
            match (&pins, &xdp_pin) {
                (Some(p), Some(path)) if p.keep => {
                    let link = xdp.take_link(lid).map_err(|e| pin_err(e.to_string()))?;
                    let link = FdLink::try_from(link).map_err(|e| pin_err(format!("the XDP attachment is no BPF link: {e}")))?;
                    a.link_ids.push(link.info().map(|i| i.id()).unwrap_or(0));
                    a.pinned.push(link.pin(path).map_err(|e| pin_err(format!("pinning {}: {e}", path.display())))?);
                }
                _ => a.xdp_link = Some(lid),
            }
        }
        // From here on, record what is attached so that a failure below still
        // detaches it (Tracker::detach_all / drop).
        self.attached.push(a);
        if egress && iface.loopback {
            info!("{}: loopback: every segment sent on it is also received on it, so XDP alone sees both directions (no TC egress)", iface.name);
        } else if egress {
            let tc: &mut SchedClassifier =
                self.ebpf.program_mut(TC_PROGRAM).and_then(|p| p.try_into().ok()).expect("loaded in Tracker::load");
            let a = self.attached.last_mut().expect("pushed above");
            a.egress = true;
            let tc_pin = pins.as_ref().map(|p| p.dir.link_path(Hook::TcEgress, &iface.name));
            let adopted = match tc_pin.as_deref().filter(|p| p.exists()) {
                Some(path) => {
                    let (link, id) = open_pinned(path).map_err(pin_err)?;
                    let link = SchedClassifierLink::try_from(link).map_err(|e| pin_err(format!("{}: not a TCX link: {e}", path.display())))?;
                    match tc.attach_to_link(link) {
                        Ok(lid) => {
                            drop(tc.take_link(lid));
                            a.pinned.push(PinnedLink::from_pin(path).map_err(|e| pin_err(format!("{}: {e}", path.display())))?);
                            a.link_ids.push(id);
                            true
                        }
                        Err(e) if severed(&e) => {
                            unpin_severed(path, &iface.name, "TC egress", id).map_err(pin_err)?;
                            false
                        }
                        Err(source) => return Err(AttachError::Tc { iface: iface.name.clone(), source }),
                    }
                }
                None => false,
            };
            if !adopted {
                let lid = tc
                    .attach(&iface.name, TcAttachType::Egress)
                    .map_err(|source| AttachError::Tc { iface: iface.name.clone(), source })?;
                match (&pins, &tc_pin) {
                    (Some(p), Some(path)) if p.keep => {
                        let link = tc.take_link(lid).map_err(|e| pin_err(e.to_string()))?;
                        let link = FdLink::try_from(link).map_err(|e| pin_err(format!("the TC egress attachment is no TCX link: {e}")))?;
                        a.link_ids.push(link.info().map(|i| i.id()).unwrap_or(0));
                        a.pinned.push(link.pin(path).map_err(|e| pin_err(format!("pinning {}: {e}", path.display())))?);
                    }
                    _ => a.tc_link = Some(lid),
                }
            }
        }
        Ok(self.attached.last().expect("pushed above"))
    }

    /// Let go of every attachment without detaching what is pinned: the
    /// programs stay attached for the next daemon (`--keep-state`).
    /// Links that are not pinned are detached as usual.
    pub fn keep_all(&mut self) -> Vec<(String, ProgramError)> {
        for a in &mut self.attached {
            a.pinned.clear();
        }
        self.detach_all()
    }

    /// Mark `iface` liberal (`--liberal-iface`: it sees only part of each
    /// conversation): the state machine is liberal there and no RST is
    /// dropped.
    pub fn set_liberal(&mut self, iface: &Interface) -> Result<(), aya::maps::MapError> {
        let mut map: aya::maps::HashMap<_, u32, u8> =
            aya::maps::HashMap::try_from(self.ebpf.map_mut("LIBERAL_IFACES").expect("LIBERAL_IFACES is in the object"))?;
        map.insert(iface.index, 1, 0)?;
        // The kernel programs skip the lookup above while this is 0.
        let mut any: aya::maps::Array<_, u32> =
            aya::maps::Array::try_from(self.ebpf.map_mut("LIBERAL_ANY").expect("LIBERAL_ANY is in the object"))?;
        any.set(0, 1, 0)
    }

    /// Let go of the interface with this index, which is gone (deleted,
    /// moved to another namespace) or no longer watched (renamed): its
    /// links are unpinned and closed, which detaches the programs if the
    /// kernel has not already; it is no longer liberal. Returns what could
    /// not be done (for a deleted interface, expected and harmless).
    pub fn forget(&mut self, index: u32) -> Vec<(String, ProgramError)> {
        let mut failures = Vec::new();
        if let Some(at) = self.attached.iter().position(|a| a.iface.index == index) {
            let a = self.attached.remove(at);
            self.release(a, &mut failures);
        }
        if let Ok(mut map) = aya::maps::HashMap::<_, u32, u8>::try_from(self.ebpf.map_mut("LIBERAL_IFACES").expect("LIBERAL_IFACES is in the object")) {
            // Absent unless it was liberal: nothing to report.
            let _ = map.remove(&index);
        }
        failures
    }

    /// Detach every program from every interface; report what could not be.
    pub fn detach_all(&mut self) -> Vec<(String, ProgramError)> {
        let mut failures = Vec::new();
        for a in std::mem::take(&mut self.attached) {
            self.release(a, &mut failures);
        }
        failures
    }

    /// Detach one attachment: unpin and close its pinned links, detach the
    /// others; what fails is added to `failures`.
    fn release(&mut self, a: Attached, failures: &mut Vec<(String, ProgramError)>) {
        for link in a.pinned {
            // Unpinned, then closed: the kernel detaches the program.
            if let Err(e) = link.unpin() {
                failures.push((a.iface.name.clone(), ProgramError::SyscallError(aya::sys::SyscallError { call: "unlink", io_error: e })));
            }
        }
        if let Some(link) = a.xdp_link {
            if let Some(xdp) = self.ebpf.program_mut(XDP_PROGRAM).and_then(|p| <&mut Xdp>::try_from(p).ok()) {
                if let Err(e) = xdp.detach(link) {
                    failures.push((a.iface.name.clone(), e));
                }
            }
        }
        if let Some(link) = a.tc_link {
            if let Some(tc) = self.ebpf.program_mut(TC_PROGRAM).and_then(|p| <&mut SchedClassifier>::try_from(p).ok()) {
                if let Err(e) = tc.detach(link) {
                    failures.push((a.iface.name.clone(), e));
                }
            }
        }
        debug!("{}: detached", a.iface.name);
    }
}

/// Whether adopting a pinned link failed because the kernel let go of it:
/// its interface was deleted (or moved away) while no daemon ran, and the
/// link, kept alive by its pin, is attached to nothing (ENOLINK, "Link has
/// been severed", from `bpf_link_update` on a defunct XDP or TCX link).
fn severed(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(aya::sys::SyscallError { io_error, .. }) if io_error.raw_os_error() == Some(libc::ENOLINK))
}

/// Remove the pin of a severed link (`severed`), so that a link on the
/// interface of that name now can take its place, and say so.
fn unpin_severed(path: &std::path::Path, iface: &str, hook: &str, id: u32) -> Result<(), String> {
    std::fs::remove_file(path).map_err(|e| format!("removing the pin of a severed link {}: {e}", path.display()))?;
    warn!("{iface}: the pinned {hook} link (link {id}) belonged to an interface of that name that is gone (deleted or moved while no daemon ran): replaced by a link on the one there now");
    Ok(())
}

/// A pinned link, opened, and its kernel id.
fn open_pinned(path: &std::path::Path) -> Result<(FdLink, u32), String> {
    let link = FdLink::from(PinnedLink::from_pin(path).map_err(|e| format!("opening {}: {e}", path.display()))?);
    let id = link.info().map_err(|e| format!("{}: {e}", path.display()))?.id();
    Ok((link, id))
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(LoadError::Program { program: name, source: ProgramError::NotLoaded })?;
    prog.try_into().map_err(|source| LoadError::Program { program: name, source })
}

/// Put the loaded full path `program` in slot `slot` of the prog array `map`,
/// where its hook's tail call finds it. A pinned array of the previous
/// daemon gets this daemon's program: its kept hooks run this full path
/// from now on too (the tables' layout matched, or they were replaced).
fn fill_full_path(ebpf: &mut Ebpf, map: &'static str, slot: u32, program: &'static str) -> Result<(), LoadError> {
    let fd = ebpf
        .program(program)
        .ok_or(LoadError::Program { program, source: ProgramError::NotLoaded })?
        .fd()
        .map_err(|source| LoadError::Program { program, source })?
        // A second descriptor of the program: the map is borrowed from
        // the same object below.
        .try_clone()
        .map_err(|source| LoadError::FullPathFd { program, source })?;
    let full = ebpf.map_mut(map).ok_or(LoadError::FullPath { program, source: MapError::InvalidName { name: map.to_string() } })?;
    let mut array = ProgramArray::try_from(full).map_err(|source| LoadError::FullPath { program, source })?;
    array.set(slot, &fd, 0).map_err(|source| LoadError::FullPath { program, source })
}

fn rejected(program: &'static str, e: ProgramError) -> LoadError {
    if let ProgramError::LoadError { verifier_log, .. } = &e {
        debug!("verifier log for {program}:\n{verifier_log}");
    }
    LoadError::Program { program, source: e }
}

fn attach_xdp(xdp: &mut Xdp, iface: &Interface, choice: XdpModeChoice) -> Result<(XdpLinkId, AttachedMode), AttachError> {
    match choice {
        XdpModeChoice::Native => xdp_attach(xdp, iface, XdpMode::Driver, "native").map(|l| (l, AttachedMode::Native)),
        XdpModeChoice::Skb => xdp_attach(xdp, iface, XdpMode::Skb, "skb").map(|l| (l, AttachedMode::Skb)),
        XdpModeChoice::Auto => match xdp_attach(xdp, iface, XdpMode::Driver, "native") {
            Ok(l) => Ok((l, AttachedMode::Native)),
            Err(AttachError::XdpBusy { iface }) => Err(AttachError::XdpBusy { iface }),
            Err(e) => {
                let why = match e {
                    AttachError::NativeXdpUnsupported { .. } => "its driver has no native XDP support".to_string(),
                    other => other.to_string(),
                };
                warn!("{}: {why}; falling back to generic (skb) mode, which runs later in the stack and costs more per packet", iface.name);
                xdp_attach(xdp, iface, XdpMode::Skb, "skb").map(|l| (l, AttachedMode::Skb))
            }
        },
    }
}

fn xdp_attach(xdp: &mut Xdp, iface: &Interface, mode: XdpMode, mode_name: &'static str) -> Result<XdpLinkId, AttachError> {
    xdp.attach_to_if_index(iface.index, mode).map_err(|source| {
        let errno = program_errno(&source);
        match errno {
            Some(libc::EOPNOTSUPP) if mode == XdpMode::Driver => {
                AttachError::NativeXdpUnsupported { iface: iface.name.clone() }
            }
            Some(libc::EBUSY) | Some(libc::EEXIST) => AttachError::XdpBusy { iface: iface.name.clone() },
            _ => AttachError::Xdp { iface: iface.name.clone(), mode: mode_name, source },
        }
    })
}

/// The errno underneath an aya program error, when there is one.
fn program_errno(e: &ProgramError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if let Some(code) = io.raw_os_error() {
                return Some(code);
            }
        }
        if let Some(sys) = err.downcast_ref::<aya::sys::SyscallError>() {
            if let Some(code) = sys.io_error.raw_os_error() {
                return Some(code);
            }
        }
        source = err.source();
    }
    None
}
