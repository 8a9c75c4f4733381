//! What is attached to an interface's hooks, as the kernel says.

use aya::programs::{tc::TcAttachType, SchedClassifier};

use super::netns::Netns;

/// `ip -d link show` mentions an XDP program (`prog/xdp id N`).
pub fn xdp_attached(ns: &Netns, ifname: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", ifname]).unwrap().contains("prog/xdp")
}

/// Names of the programs attached to the TCX egress hook of `ifname`.
pub fn tcx_egress(ns: &Netns, ifname: &str) -> Vec<String> {
    let ifname = ifname.to_string();
    ns.enter(move || {
        let (_, progs) = SchedClassifier::query_tcx(&ifname, TcAttachType::Egress).expect("BPF_PROG_QUERY on tcx egress");
        progs.iter().map(|p| p.name_as_str().unwrap_or("?").to_string()).collect()
    }).unwrap()
}
