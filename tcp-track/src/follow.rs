//! Interfaces that come and go: which of them to attach to as links
//! appear, change and disappear (containers, VPNs, hot-plugged NICs).
//!
//! The decisions are pure and host-testable: a [`Follower`] takes what the
//! kernel says about links (`links` reads it over netlink) and returns
//! [`Action`]s; the runner carries them out and tells it how an attach
//! went. A link the kernel deletes takes our programs with it; the
//! follower forgets it (the runner closes its links and unpins them), and
//! an interface of a watched name (or matching a watched pattern) that
//! appears later is attached afresh, with the options of the start.

use std::collections::VecDeque;

use crate::{config::IfaceSelector, preflight::Interface};

/// What the kernel says about one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The link exists, as of now (RTM_NEWLINK: created, moved into this
    /// namespace, renamed, or any change of its state).
    Present(Interface),
    /// The link is gone (RTM_DELLINK: deleted, or moved to another
    /// namespace).
    Deleted { index: u32, name: String },
}

/// Why an attached interface is let go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gone {
    /// Deleted, or moved to another network namespace: the kernel has
    /// already detached our programs.
    Deleted,
    /// Renamed to this name, which no `--iface` selects: our programs are
    /// still attached and must be detached.
    Renamed(String),
}

/// What the runner is to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Attach to this interface (XDP, TC egress) and report it; then call
    /// `Follower::attached` or `Follower::attach_failed`. `again`: an
    /// interface of this name was attached before and went away.
    Attach { iface: Interface, again: bool },
    /// This attached interface is gone: forget (or detach) it, report it.
    Detach { iface: Interface, why: Gone },
    /// The last attached interface is gone: said once, until one is
    /// attached again.
    NoneLeft,
}

/// Attach and detach events, by kind: the metric
/// `tcp_track_interface_events_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum InterfaceEvent {
    /// Programs attached to an interface (at start, or when it appeared).
    Attached,
    /// An attached interface went away (deleted, moved out, renamed).
    Detached,
    /// An interface that should be watched could not be attached to.
    AttachFailed,
}

impl InterfaceEvent {
    pub const ALL: [InterfaceEvent; 3] = [InterfaceEvent::Attached, InterfaceEvent::Detached, InterfaceEvent::AttachFailed];

    /// The metric's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            InterfaceEvent::Attached => "attached",
            InterfaceEvent::Detached => "detached",
            InterfaceEvent::AttachFailed => "attach_failed",
        }
    }
}

/// The interfaces side of the daemon's snapshot (for the metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounts {
    /// Interfaces the programs are attached to now.
    pub attached: usize,
    /// Events so far, indexed like `InterfaceEvent::ALL`.
    pub events: [u64; 3],
}

impl InterfaceCounts {
    /// Every kind with its count, in `InterfaceEvent::ALL` order.
    pub fn by_kind(&self) -> impl Iterator<Item = (InterfaceEvent, u64)> + '_ {
        InterfaceEvent::ALL.iter().zip(self.events).map(|(&k, n)| (k, n))
    }
}

/// Names of interfaces that went away remembered at most (to say
/// "attached again"): container hosts make and delete interfaces with
/// fresh names all day, and this memory must stay bounded.
const GONE_REMEMBERED: usize = 256;

/// Which interfaces are attached, and what to do when links change.
#[derive(Debug)]
pub struct Follower {
    watch: Vec<IfaceSelector>,
    attached: Vec<Interface>,
    /// Interfaces (index, name) whose attach failed: retried on each
    /// change the kernel reports, reported only the first time.
    failing: Vec<(u32, String)>,
    /// Names of attached interfaces that went away, newest last.
    gone: VecDeque<String>,
    /// `Action::NoneLeft` was returned and nothing has been attached since.
    none_left_said: bool,
    counts: InterfaceCounts,
}

impl Follower {
    /// Follow the interfaces `watch` selects (the `--iface` values).
    pub fn new(watch: Vec<IfaceSelector>) -> Follower {
        Follower { watch, attached: Vec::new(), failing: Vec::new(), gone: VecDeque::new(), none_left_said: false, counts: InterfaceCounts::default() }
    }

    /// Whether the interface called `name` is one to watch.
    pub fn selects(&self, name: &str) -> bool {
        self.watch.iter().any(|w| w.matches(name))
    }

    /// The interfaces attached now, in the order they were attached.
    pub fn interfaces(&self) -> &[Interface] {
        &self.attached
    }

    pub fn counts(&self) -> InterfaceCounts {
        InterfaceCounts { attached: self.attached.len(), ..self.counts.clone() }
    }

    /// What to do about one change the kernel reported.
    pub fn on_link(&mut self, link: Link) -> Vec<Action> {
        let mut actions = Vec::new();
        match link {
            Link::Present(iface) => {
                self.failing.retain(|(i, n)| *i != iface.index || *n == iface.name);
                match self.attached.iter().position(|a| a.index == iface.index) {
                    // Any other change of an attached interface (up, down,
                    // addresses, MTU): nothing to do.
                    Some(at) if self.attached[at].name == iface.name => {}
                    Some(at) => {
                        // Renamed: the programs follow the index, the
                        // selection follows the name.
                        if self.selects(&iface.name) {
                            self.attached[at].name = iface.name;
                        } else {
                            let old = self.attached.remove(at);
                            self.went(&old.name, &mut actions, Action::Detach { iface: old.clone(), why: Gone::Renamed(iface.name) });
                        }
                    }
                    None if self.selects(&iface.name) => {
                        let again = self.gone.contains(&iface.name);
                        actions.push(Action::Attach { iface, again });
                    }
                    None => {}
                }
            }
            Link::Deleted { index, name } => {
                self.failing.retain(|(i, _)| *i != index);
                if let Some(at) = self.attached.iter().position(|a| a.index == index) {
                    let mut iface = self.attached.remove(at);
                    iface.name = name;
                    self.went(&iface.name.clone(), &mut actions, Action::Detach { iface, why: Gone::Deleted });
                }
            }
        }
        actions
    }

    /// What to do so that the attached interfaces are those of `present`
    /// (every link of the namespace, listed): at start, and when netlink
    /// messages were lost (the socket's buffer overran).
    pub fn resync(&mut self, present: &[Interface]) -> Vec<Action> {
        let missing: Vec<Interface> = self.attached.iter().filter(|a| !present.iter().any(|p| p.index == a.index)).cloned().collect();
        let mut actions = Vec::new();
        for iface in missing {
            actions.extend(self.on_link(Link::Deleted { index: iface.index, name: iface.name }));
        }
        for iface in present {
            actions.extend(self.on_link(Link::Present(iface.clone())));
        }
        actions
    }

    /// `Action::Attach` of `iface` succeeded.
    pub fn attached(&mut self, iface: Interface) {
        self.failing.retain(|(i, _)| *i != iface.index);
        self.gone.retain(|n| *n != iface.name);
        self.attached.push(iface);
        self.none_left_said = false;
        self.counts.events[InterfaceEvent::Attached as usize] += 1;
    }

    /// `Action::Attach` of `iface` failed: true the first time for this
    /// interface (report it then; later retries fail quietly).
    pub fn attach_failed(&mut self, iface: &Interface) -> bool {
        if self.failing.iter().any(|(i, n)| *i == iface.index && *n == iface.name) {
            return false;
        }
        self.failing.push((iface.index, iface.name.clone()));
        self.counts.events[InterfaceEvent::AttachFailed as usize] += 1;
        true
    }

    /// An attached interface called `name` went: `detach`, and
    /// `NoneLeft` if it was the last.
    fn went(&mut self, name: &str, actions: &mut Vec<Action>, detach: Action) {
        self.counts.events[InterfaceEvent::Detached as usize] += 1;
        if !self.gone.iter().any(|n| n == name) {
            if self.gone.len() == GONE_REMEMBERED {
                self.gone.pop_front();
            }
            self.gone.push_back(name.to_string());
        }
        actions.push(detach);
        if self.attached.is_empty() && !self.none_left_said {
            self.none_left_said = true;
            actions.push(Action::NoneLeft);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32) -> Interface {
        Interface { name: name.into(), index, loopback: false }
    }

    fn follower(watch: &[&str]) -> Follower {
        Follower::new(watch.iter().map(|w| IfaceSelector::parse(w).unwrap()).collect())
    }

    /// Carry out the actions as if every attach succeeded.
    fn apply(f: &mut Follower, act: impl FnOnce(&mut Follower) -> Vec<Action>) -> Vec<Action> {
        let actions = act(f);
        for a in &actions {
            if let Action::Attach { iface, .. } = a {
                f.attached(iface.clone());
            }
        }
        actions
    }

    fn attach(name: &str, index: u32, again: bool) -> Action {
        Action::Attach { iface: iface(name, index), again }
    }

    #[test]
    fn patterns_match_names_as_globs() {
        let p = |s: &str| IfaceSelector::parse(s).unwrap();
        assert!(p("veth*").matches("veth0") && p("veth*").matches("veth") && !p("veth*").matches("eth0"));
        assert!(p("tap?").matches("tap1") && !p("tap?").matches("tap12"));
        assert!(p("eth[0-3]").matches("eth2") && !p("eth[0-3]").matches("eth4"));
        assert!(p("eth[!0]").matches("eth1") && !p("eth[!0]").matches("eth0"));
        assert!(p("lo").matches("lo") && !p("lo").matches("lo0"), "a name matches itself only");
        assert!(p("veth*").is_pattern() && !p("eth0").is_pattern());
        assert_eq!(p("vt*").to_string(), "vt*");
        assert!(IfaceSelector::parse("eth[").unwrap_err().contains("not a valid pattern"));
        assert!(IfaceSelector::parse("a*/b").unwrap_err().contains("without '/'"));
        assert!(IfaceSelector::parse(&"*".repeat(65)).unwrap_err().contains("1 to 64 bytes"));
    }

    #[test]
    fn start_attaches_what_matches_and_nothing_else() {
        let mut f = follower(&["vt*", "lo"]);
        let present = [iface("lo", 1), iface("eth0", 2), iface("vt0", 3), iface("vt1", 4)];
        let actions = apply(&mut f, |f| f.resync(&present));
        assert_eq!(actions, [attach("lo", 1, false), attach("vt0", 3, false), attach("vt1", 4, false)]);
        assert_eq!(f.counts(), InterfaceCounts { attached: 3, events: [3, 0, 0] });
        // The same again (a resync, or NEWLINKs for state changes): nothing.
        assert!(f.resync(&present).is_empty());
        assert!(f.on_link(Link::Present(iface("vt0", 3))).is_empty());
    }

    #[test]
    fn a_deleted_interface_is_let_go_and_its_name_attached_again() {
        let mut f = follower(&["vt*"]);
        apply(&mut f, |f| f.resync(&[iface("vt0", 3), iface("vt1", 4)]));
        assert_eq!(f.on_link(Link::Deleted { index: 3, name: "vt0".into() }), [Action::Detach { iface: iface("vt0", 3), why: Gone::Deleted }]);
        assert_eq!(f.interfaces(), [iface("vt1", 4)]);
        // Re-created with another index.
        let actions = apply(&mut f, |f| f.on_link(Link::Present(iface("vt0", 9))));
        assert_eq!(actions, [attach("vt0", 9, true)]);
        // A new one matching the pattern.
        assert_eq!(f.on_link(Link::Present(iface("vt7", 10))), [attach("vt7", 10, false)]);
        // A deletion of what is not attached: nothing.
        assert!(f.on_link(Link::Deleted { index: 77, name: "eth5".into() }).is_empty());
        assert_eq!(f.counts().events, [3, 1, 0], "vt7 not attached yet");
    }

    #[test]
    fn no_interface_left_is_said_once_until_one_is_attached() {
        let mut f = follower(&["eth1"]);
        apply(&mut f, |f| f.resync(&[iface("eth1", 5)]));
        let gone = f.on_link(Link::Deleted { index: 5, name: "eth1".into() });
        assert_eq!(gone, [Action::Detach { iface: iface("eth1", 5), why: Gone::Deleted }, Action::NoneLeft]);
        assert!(f.on_link(Link::Deleted { index: 5, name: "eth1".into() }).is_empty(), "said once");
        apply(&mut f, |f| f.on_link(Link::Present(iface("eth1", 6))));
        let gone = f.on_link(Link::Deleted { index: 6, name: "eth1".into() });
        assert_eq!(gone.last(), Some(&Action::NoneLeft), "said again after a new attach");
        assert_eq!(f.counts(), InterfaceCounts { attached: 0, events: [2, 2, 0] });
    }

    #[test]
    fn renames_follow_the_selection() {
        let mut f = follower(&["vt*"]);
        apply(&mut f, |f| f.resync(&[iface("vt0", 3), iface("eth0", 2)]));
        // Renamed to a name still selected: kept, under its new name.
        assert!(f.on_link(Link::Present(iface("vt9", 3))).is_empty());
        assert_eq!(f.interfaces(), [iface("vt9", 3)]);
        // Renamed out of the selection: detached.
        let actions = f.on_link(Link::Present(iface("wan0", 3)));
        assert_eq!(actions, [Action::Detach { iface: iface("vt9", 3), why: Gone::Renamed("wan0".into()) }, Action::NoneLeft]);
        // Renamed into it: attached.
        assert_eq!(f.on_link(Link::Present(iface("vt2", 2))), [attach("vt2", 2, false)]);
    }

    #[test]
    fn an_interface_that_cannot_be_attached_is_reported_once_and_retried() {
        let mut f = follower(&["vt*"]);
        let busy = iface("vt0", 3);
        assert_eq!(f.on_link(Link::Present(busy.clone())), [attach("vt0", 3, false)]);
        assert!(f.attach_failed(&busy), "the first failure is reported");
        // Its next change (say, its other XDP program removed): retried.
        assert_eq!(f.on_link(Link::Present(busy.clone())), [attach("vt0", 3, false)]);
        assert!(!f.attach_failed(&busy), "not reported again");
        assert_eq!(f.counts(), InterfaceCounts { attached: 0, events: [0, 0, 1] });
        f.attached(busy.clone());
        assert_eq!(f.counts(), InterfaceCounts { attached: 1, events: [1, 0, 1] });
        // Deleted and re-created, it fails again: a new interface, reported.
        f.on_link(Link::Deleted { index: 3, name: "vt0".into() });
        assert!(f.attach_failed(&iface("vt0", 4)));
    }

    #[test]
    fn a_resync_lets_go_of_what_vanished_unseen() {
        let mut f = follower(&["vt*"]);
        apply(&mut f, |f| f.resync(&[iface("vt0", 3), iface("vt1", 4)]));
        let actions = f.resync(&[iface("vt1", 4), iface("vt0", 8)]);
        assert_eq!(actions, [Action::Detach { iface: iface("vt0", 3), why: Gone::Deleted }, attach("vt0", 8, true)]);
    }

    #[test]
    fn the_names_of_gone_interfaces_are_bounded() {
        let mut f = follower(&["c*"]);
        for i in 0..(GONE_REMEMBERED as u32 + 10) {
            let name = format!("c{i}");
            apply(&mut f, |f| f.on_link(Link::Present(iface(&name, i + 10))));
            f.on_link(Link::Deleted { index: i + 10, name });
        }
        assert_eq!(f.gone.len(), GONE_REMEMBERED);
        assert_eq!(f.on_link(Link::Present(iface("c0", 1))), [attach("c0", 1, false)], "the oldest forgotten");
        assert_eq!(f.on_link(Link::Present(iface("c265", 2))), [attach("c265", 2, true)]);
    }
}
