//! Checks made before loading anything, so that each way of not being able to
//! run gets its own clear message instead of a raw errno from deep inside aya.

use std::{ffi::CString, path::Path};

use aya::maps::MapType;
use thiserror::Error;

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PreflightError {
    #[error("unknown interface {name:?}: there is no such network interface in this network namespace (list them with `ip link`)")]
    UnknownInterface { name: String },
    #[error("interface name {name:?} is not valid (names are 1 to 15 bytes, without '/', ':' or whitespace)")]
    BadInterfaceName { name: String },
    #[error("not enough privileges: missing {missing}. tcp-track loads and attaches eBPF programs, which needs CAP_BPF and CAP_NET_ADMIN (or CAP_SYS_ADMIN): run it as root, e.g. `sudo tcp-track run ...`")]
    NotPrivileged { missing: String },
    #[error("this kernel has no BTF ({path} is missing): tcp-track needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf { path: String },
    #[error("this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8 or newer): tcp-track needs it to deliver events; upgrade the kernel")]
    NoRingBuf,
}

/// An interface to attach to, resolved in the current network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    /// IFF_LOOPBACK: every segment sent on it is also received on it.
    pub loopback: bool,
}

/// Resolve every interface name, in order, failing on the first unknown one.
pub fn resolve_interfaces(names: &[String]) -> Result<Vec<Interface>, PreflightError> {
    names.iter().map(|n| resolve_interface(n)).collect()
}

pub fn resolve_interface(name: &str) -> Result<Interface, PreflightError> {
    let bad = || PreflightError::BadInterfaceName { name: name.to_string() };
    if name.is_empty() || name.len() > 15 || name.contains(['/', ':']) || name.contains(char::is_whitespace) {
        return Err(bad());
    }
    let c = CString::new(name).map_err(|_| bad())?;
    // SAFETY: c is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(PreflightError::UnknownInterface { name: name.to_string() });
    }
    let loopback = interface_flags(name).map(|f| f & libc::IFF_LOOPBACK != 0).unwrap_or(false);
    Ok(Interface { name: name.to_string(), index, loopback })
}

/// SIOCGIFFLAGS on a throw-away socket: answers for this process's network
/// namespace (sysfs may show another one's).
fn interface_flags(name: &str) -> Option<i32> {
    // SAFETY: plain socket/ioctl/close on a zeroed ifreq whose name fits (≤ 15 bytes checked above).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        let rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        libc::close(fd);
        (rc == 0).then_some(req.ifr_ifru.ifru_flags as i32)
    }
}

/// Effective capabilities of this process, from /proc/self/status.
pub fn effective_capabilities() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_cap_eff(&s))
        .unwrap_or(0)
}

pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// CAP_BPF (or CAP_SYS_ADMIN, which implies it) and CAP_NET_ADMIN.
pub fn check_capabilities(cap_eff: u64) -> Result<(), PreflightError> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PreflightError::NotPrivileged { missing: missing.join(" and ") })
    }
}

pub fn check_btf(path: &Path) -> Result<(), PreflightError> {
    if path.exists() {
        Ok(())
    } else {
        Err(PreflightError::NoBtf { path: path.display().to_string() })
    }
}

/// Creates (and closes) a tiny ring buffer map. A kernel that does not know
/// the map type answers EINVAL.
pub fn check_ring_buffer() -> Result<(), PreflightError> {
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(PreflightError::NoRingBuf),
    }
}

/// All checks, in the order a user would fix them.
pub fn check_all(names: &[String]) -> Result<Vec<Interface>, PreflightError> {
    let interfaces = resolve_interfaces(names)?;
    check_capabilities(effective_capabilities())?;
    check_btf(Path::new(VMLINUX_BTF))?;
    check_ring_buffer()?;
    Ok(interfaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_eff_is_read_from_proc_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }

    #[test]
    fn capability_rules() {
        assert!(check_capabilities(0x1ff_ffff_ffff).is_ok(), "root");
        assert!(check_capabilities(1 << CAP_SYS_ADMIN).is_ok(), "CAP_SYS_ADMIN covers both");
        assert!(check_capabilities((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)).is_ok());
        assert_eq!(
            check_capabilities(1 << CAP_NET_ADMIN),
            Err(PreflightError::NotPrivileged { missing: "CAP_BPF".into() })
        );
        assert_eq!(
            check_capabilities(0),
            Err(PreflightError::NotPrivileged { missing: "CAP_BPF and CAP_NET_ADMIN".into() })
        );
    }

    #[test]
    fn interface_names_are_validated_before_lookup() {
        for bad in ["", "a/b", "x:1", "has space", "sixteen-chars-xx"] {
            assert!(matches!(resolve_interface(bad), Err(PreflightError::BadInterfaceName { .. })), "{bad:?}");
        }
        assert_eq!(
            resolve_interface("nosuchif0"),
            Err(PreflightError::UnknownInterface { name: "nosuchif0".into() })
        );
    }

    #[test]
    fn loopback_is_recognised() {
        let lo = resolve_interface("lo").expect("every network namespace has lo");
        assert!(lo.loopback);
    }

    #[test]
    fn missing_btf_is_reported_with_its_path() {
        let err = check_btf(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
