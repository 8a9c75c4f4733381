//! The flow tables' logic, for every driver: which record a segment belongs
//! to, when a flow starts, moves from the half-open table to the
//! established one, or is evicted, and what is counted and reported on the
//! way. The kernel programs run it over BPF maps; the host runs it over
//! memory (`host`), for tests and captures.
//!
//! A connection starts in the half-open table (`halfopen`: sets of four
//! flows picked by a keyed hash, the oldest-born evicted first) and moves
//! to the established table (`estab`: sets of eight ways, two candidate
//! sets per flow, and a stash) when its handshake completes, so a SYN
//! flood can only churn the half-open table. A flow picked up mid-stream
//! goes straight to the established table.
//!
//! Two traits say what the logic needs: a [`FlowStore`] (the two tables of
//! one address family) and a [`Driver`] (clock, RST policy, counters,
//! events). They are separate objects because the logic counts and reports
//! while it holds a record borrowed from a table.
//!
//! BPF: a call chain has 512 bytes of stack in all. [`account`],
//! [`step_flow`] and [`report`] are subprograms (`#[inline(never)]`), whose
//! frames are not live at the same time; a subprogram takes at most five
//! arguments and leaves a scalar in R0, hence [`Cx`] (the driver, which is
//! zero-sized in the kernel, and where the segment was seen, behind one
//! pointer) and [`Verdict`] as the result. The verifier walks every path
//! through `account` with the values it knows, and stops walking a path
//! only where its state matches one walked already: so the RST policy is
//! asked where the drop rule needs it, not carried from the start (two
//! known policies would double every path); a driver that never drops
//! (egress) answers with a constant, which takes the drop rule out of its
//! program; and records are copied word by word (`FlowRecord::copy_from`)
//! or not at all (`FlowStore::promote`), never by a `memcpy` byte loop.

use crate::{
    counters,
    event::{conn_end_of, event_kind},
    flow::{initiator_of, key_v4, key_v6, note_dropped_rst, FlowKeyV4, FlowKeyV6, FlowRecord},
    guard::{drops, RST_POLICY_OBSERVE},
    halfopen::{born, find, set_of, victim, Set, Words},
    parse::{checksum::CSUM_OK, Segment},
    state::{classify_reset, step, Outcome, STATE_CLOSE, STATE_ESTABLISHED, STATE_NONE, STATE_SYN_RECV, STATE_TIME_WAIT},
    tcp,
};

/// A flow key type: how a segment sent in `dir` names its flow.
pub trait FlowKey: Words + Copy {
    fn of(seg: &Segment, dir: u8) -> Self;
    /// The key's endpoints as an event carries them: family (4 or 6),
    /// `lo` address and port, `hi` address and port.
    fn endpoints(&self) -> (u8, [u8; 16], u16, [u8; 16], u16);
}

impl FlowKey for FlowKeyV4 {
    #[inline(always)]
    fn of(seg: &Segment, dir: u8) -> Self {
        key_v4(seg, dir)
    }

    #[inline(always)]
    fn endpoints(&self) -> (u8, [u8; 16], u16, [u8; 16], u16) {
        let (mut lo, mut hi) = ([0u8; 16], [0u8; 16]);
        lo[..4].copy_from_slice(&self.lo_addr);
        hi[..4].copy_from_slice(&self.hi_addr);
        (crate::parse::FAMILY_IPV4, lo, self.lo_port, hi, self.hi_port)
    }
}

impl FlowKey for FlowKeyV6 {
    #[inline(always)]
    fn of(seg: &Segment, dir: u8) -> Self {
        key_v6(seg, dir)
    }

    #[inline(always)]
    fn endpoints(&self) -> (u8, [u8; 16], u16, [u8; 16], u16) {
        (crate::parse::FAMILY_IPV6, self.lo_addr, self.lo_port, self.hi_addr, self.hi_port)
    }
}

/// How `FlowStore::insert` treats a record already stored under the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Fail if there is one (`BPF_NOEXIST`): another CPU may have created
    /// the flow since the lookup.
    New,
    /// Replace it (`BPF_ANY`).
    Any,
}

/// The two flow tables of one address family.
pub trait FlowStore {
    type Key: FlowKey;
    type Set: Set<Key = Self::Key>;

    /// The established record of `key`, to update in place. Counts as a
    /// use of the entry (the stash, an LRU table, keeps it longer).
    fn established(&mut self, key: &Self::Key) -> Option<&mut FlowRecord>;
    /// Store `rec` as `key`'s established record; false when the table
    /// refused (a record exists and `mode` is `New`, or no memory). A flow
    /// whose sets are full goes to the stash, which, full, makes room by
    /// evicting an entry not used lately.
    fn insert(&mut self, key: &Self::Key, rec: &FlowRecord, mode: Insert) -> bool;
    /// Store the record in way `way` of half-open set `index` as `key`'s
    /// established record (replacing any); false when the table refused.
    /// (`insert` from one table to the other without a copy through the
    /// caller, who holds no borrow of the set meanwhile: in BPF the helper
    /// reads the set's map value directly.)
    fn promote(&mut self, key: &Self::Key, index: u32, way: u32) -> bool;
    /// Forget `key`'s established record; false if there was none.
    fn remove(&mut self, key: &Self::Key) -> bool;
    /// The half-open table's hash seed and set mask.
    fn half_open_layout(&self) -> (u32, u32);
    /// Set `index` of the half-open table (`halfopen::set_of`); `None`
    /// only when the table and its set mask were sized apart.
    fn half_open_set(&mut self, index: u32) -> Option<&mut Self::Set>;
}

/// What whoever runs the tracker provides besides the tables: the clock,
/// the RST policy, and where counts and events go.
pub trait Driver {
    /// The time, in nanoseconds (the kernel's CLOCK_MONOTONIC, a capture's
    /// timestamps, a test's clock). Asked at most once per TCP segment,
    /// once its flow is looked up: a frame that is not TCP costs no clock
    /// read.
    fn now(&mut self) -> u64;
    /// The time on the same clock, possibly up to one scheduler tick (at
    /// most 10 ms) behind `now`: for the segments whose time only keeps an
    /// established flow alive (`last_seen`, in milliseconds anyway), which
    /// are most segments. In the kernel a precise clock read costs about
    /// 40 ns on a VM, as much as the rest of such a segment's work; a tick
    /// costs nothing. Drivers without that cost give `now`.
    fn now_cheap(&mut self) -> u64 {
        self.now()
    }
    /// The RST policy (`guard::RST_POLICY_*`) for a RST that arrived on
    /// `ifindex`, not a liberal one, and proved its checksum: observe where
    /// nothing may be dropped (egress, whose RSTs come from this host's own
    /// stack).
    fn rst_policy(&mut self, ifindex: u32) -> u8;
    /// Whether `ifindex` sees only part of the conversations crossing it
    /// (`--liberal-iface`: a tap, a mirror port, asymmetric routing): the
    /// state machine is liberal there (`state::step`), and no RST is
    /// dropped, since the tracker cannot judge one. Asked once per TCP
    /// segment.
    fn liberal(&mut self, ifindex: u32) -> bool;
    /// Add one to counter `counter` (`counters::*`).
    fn count(&mut self, counter: u32);
    /// An event of kind `kind` (`event::EVENT_*`): the segment, its
    /// direction, the record after it and what it did (enough for
    /// `FlowEvent::new`).
    fn event(&mut self, kind: u16, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen);
    /// A connection ended with this segment (`event::conn_end_of(out)` is
    /// not 0): an `EVENT_CONN_END` record (`event::ConnEnd`) of it, with
    /// `rec` as it is now.
    fn conn_end(&mut self, seg: &Segment, dir: u8, rec: &FlowRecord, out: &Outcome, seen: &Seen);
    /// The flow `key` with record `rec` is being evicted from a table to
    /// make room: its `EVENT_CONN_END` record (`CONN_END_EVICTED`).
    fn conn_evicted<K: FlowKey>(&mut self, key: &K, rec: &FlowRecord, seen: &Seen);
}

/// Where and when a segment was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// `Driver::now`, or `Driver::now_cheap` when `cheap` says so; set by
    /// `account` once the flow is found (0 before).
    pub now: u64,
    pub ifindex: u32,
    /// `event::HOOK_*`.
    pub hook: u8,
    /// `parse::checksum::CSUM_*` of a segment whose checksum XDP verifies
    /// (`track::verified`); `CSUM_OK` for anything else (nothing to prove).
    pub csum: u8,
    /// `now` came from `Driver::now_cheap`: an event is stamped with a
    /// fresh `Driver::now` instead.
    pub cheap: bool,
    /// `Driver::liberal` of `ifindex`.
    pub liberal: bool,
}

impl Seen {
    /// Seen at `now` on `ifindex` by `hook`, checksum not in question
    /// (until a RST at XDP proves it).
    #[inline(always)]
    pub const fn new(now: u64, ifindex: u32, hook: u8) -> Self {
        Seen { now, ifindex, hook, csum: CSUM_OK, cheap: false, liberal: false }
    }
}

/// What the logic carries from call to call: the driver and where the
/// segment was seen. The driver is held by value: the kernel's is
/// zero-sized, so this is `Seen` alone on the BPF stack.
pub struct Cx<D> {
    pub driver: D,
    pub seen: Seen,
}

/// The segment being accounted and a record for a flow it may start: in
/// the kernel a per-CPU slot, since neither fits the BPF stack next to
/// everything else.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scratch {
    pub seg: Segment,
    pub fresh: FlowRecord,
}

/// What `account` did with a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Verdict {
    /// The table refused an entry: the segment went untracked.
    Untracked = 0,
    /// Stepped on its flow's record (or it could not start one: a stray
    /// RST, invalid flags).
    Accounted = 1,
    /// A RST the policy drops; it changed nothing.
    Drop = 2,
}

/// Find the flow of `scratch.seg` (established table first, then
/// half-open), or start one, run the state machine on the segment, report
/// the outcome, and move a flow out of the half-open table once its
/// handshake is over.
#[inline(never)]
pub fn account<S: FlowStore, D: Driver>(store: &mut S, scratch: &mut Scratch, cx: &mut Cx<D>) -> Verdict {
    let Scratch { seg, fresh } = scratch;
    let dir = crate::flow::direction(seg);
    let key = S::Key::of(seg, dir);
    if let Some(rec) = store.established(&key) {
        // Most segments are data or ACKs of established flows: their time
        // only keeps the flow alive, so the cheap clock serves. Anything
        // that may change the state, or start the handshake's timing, asks
        // the precise one.
        if rec.state == STATE_ESTABLISHED && !seg.has(tcp::SYN | tcp::FIN | tcp::RST) {
            cx.seen.now = cx.driver.now_cheap();
            cx.seen.cheap = true;
        } else {
            cx.seen.now = cx.driver.now();
        }
        return on_record(rec, seg, dir, cx);
    }
    cx.seen.now = cx.driver.now();
    // The key's set in the half-open table. Looking an entry up changes
    // nothing about its age (unlike an LRU lookup): a retransmitted SYN or
    // SYN-ACK keeps the entry as old as its first SYN.
    let (seed, set_mask) = store.half_open_layout();
    let index = set_of(&key, seed, set_mask);
    let Some(set) = store.half_open_set(index) else {
        cx.driver.count(counters::MAP_UPDATE_FAILED);
        return Verdict::Untracked;
    };
    if let Some(way) = find(set, &key) {
        let rec = set.record_mut(way);
        let verdict = on_record(rec, seg, dir, cx);
        if rec.state <= STATE_SYN_RECV {
            return verdict;
        }
        // The handshake completed (or the attempt was reset): promote an
        // open connection to the established table, forget the rest.
        if rec.state == STATE_CLOSE {
            set.clear(way);
            return verdict;
        }
        // Insert before freeing the way, so that another CPU looking the
        // flow up meanwhile finds it in one table or the other.
        if store.promote(&key, index, way) {
            cx.driver.count(counters::FLOWS_PROMOTED);
        } else {
            cx.driver.count(counters::MAP_UPDATE_FAILED);
        }
        if let Some(set) = store.half_open_set(index) {
            set.clear(way);
        }
        return verdict;
    }
    // A flow we have no record of: the state machine decides whether this
    // segment starts one (a RST or a malformed segment does not), and where
    // it lives: a SYN or SYN-ACK in the half-open table, a flow picked up
    // mid-stream in the established one.
    *fresh = FlowRecord::default();
    fresh.initiator = initiator_of(seg, dir).0;
    let out = step_flow(fresh, seg, dir, cx);
    if out.new_state == STATE_NONE {
        report(seg, fresh, &out, cx);
        return Verdict::Accounted;
    }
    if out.new_state <= STATE_SYN_RECV {
        // A free way of the set, else the one created longest ago.
        let (way, evicts) = victim(set.born(), cx.seen.now);
        if evicts {
            // Its connection's record is written before the way is reused.
            evict(set, way, cx);
            cx.driver.count(counters::HALF_OPEN_EVICTED);
        }
        set.fill(way, &key, born(cx.seen.now), fresh);
        cx.driver.count(counters::FLOWS_CREATED);
        report(seg, fresh, &out, cx);
        return Verdict::Accounted;
    }
    if store.insert(&key, fresh, Insert::New) {
        cx.driver.count(counters::FLOWS_CREATED);
        report(seg, fresh, &out, cx);
        return Verdict::Accounted;
    }
    // Another CPU created it between our lookup and insert: step theirs.
    match store.established(&key) {
        Some(rec) => on_record(rec, seg, dir, cx),
        None => {
            // No memory, or evicted at once: this segment goes untracked.
            cx.driver.count(counters::MAP_UPDATE_FAILED);
            Verdict::Untracked
        }
    }
}

/// A segment of a flow we have a record of: the drop rule, then the state
/// machine.
#[inline(always)]
pub(crate) fn on_record<D: Driver>(rec: &mut FlowRecord, seg: &Segment, dir: u8, cx: &mut Cx<D>) -> Verdict {
    if seg.has(tcp::RST) && !cx.seen.liberal {
        let policy = cx.driver.rst_policy(cx.seen.ifindex);
        // A RST must have proved its checksum before it is called forged.
        if policy != RST_POLICY_OBSERVE && cx.seen.csum == CSUM_OK {
            // Judge before applying: a dropped RST must not change the flow.
            let class = classify_reset(rec, seg, dir);
            if drops(policy, class) {
                cx.driver.count(counters::RST_DROPPED);
                note_dropped_rst(rec);
                report(seg, rec, &Outcome::dropped_reset(rec.state, class), cx);
                return Verdict::Drop;
            }
        }
    }
    let out = step_flow(rec, seg, dir, cx);
    report(seg, rec, &out, cx);
    Verdict::Accounted
}

/// The state machine, counting closed flows, new incarnations and
/// segments rejected for lying outside the window; one BPF subprogram for
/// the four places in `account` that step a record.
#[inline(never)]
pub fn step_flow<D: Driver>(rec: &mut FlowRecord, seg: &Segment, dir: u8, cx: &mut Cx<D>) -> Outcome {
    let out = step(rec, seg, dir, cx.seen.now, cx.seen.liberal);
    if out.out_of_window(seg) {
        cx.driver.count(counters::OUT_OF_WINDOW);
    }
    // Closed once: on the way into TIME_WAIT or CLOSE, not from one to the other.
    if out.old_state < STATE_TIME_WAIT && (out.new_state == STATE_TIME_WAIT || out.new_state == STATE_CLOSE) {
        cx.driver.count(counters::FLOWS_CLOSED);
    }
    // A SYN reusing a 4-tuple in TIME_WAIT or CLOSE starts a new flow on
    // the old entry: created as much as one in a fresh entry, so that
    // every flow created ends in exactly one connection record.
    if out.old_state >= STATE_TIME_WAIT && out.new_state != STATE_NONE && out.new_state < STATE_TIME_WAIT {
        cx.driver.count(counters::FLOWS_CREATED);
    }
    out
}

/// Hand the outcome's event, if it is worth one, to the driver, and the
/// connection's record if the segment ended it; 1 if an event was handed
/// over. Whether it is worth one is decided inline: most segments are
/// worth none, and a BPF subprogram call for nothing costs.
#[inline(always)]
pub fn report<D: Driver>(seg: &Segment, rec: &FlowRecord, out: &Outcome, cx: &mut Cx<D>) -> u32 {
    let Some(kind) = event_kind(out) else { return 0 };
    emit(kind, seg, rec, out, cx);
    // Every end is an event (a reset, or the change of state into
    // TIME_WAIT), so ends are looked for only here.
    if conn_end_of(out) != 0 {
        conn_end(seg, rec, out, cx);
    }
    1
}

/// The event, then the connection's record if the segment ended it (after
/// the event, so that readers see the reset or TIME_WAIT before the record
/// it ended). Its own BPF subprogram: building an event is big, and
/// inlined at every call site it would not fit the stack. (Five arguments
/// at most for a BPF subprogram: the direction is the segment's own, found
/// again.)
#[inline(never)]
fn emit<D: Driver>(kind: u16, seg: &Segment, rec: &FlowRecord, out: &Outcome, cx: &mut Cx<D>) -> u32 {
    let dir = crate::flow::direction(seg);
    if cx.seen.cheap {
        // An event's time is what users read: the precise clock.
        cx.seen.now = cx.driver.now();
        cx.seen.cheap = false;
    }
    cx.driver.event(kind, seg, dir, rec, out, &cx.seen);
    1
}

/// The connection's record at its end: a BPF subprogram of its own, called
/// after `emit` rather than from it, so that its frame (the record is
/// built in place, but its pieces pass through the stack) is never stacked
/// on the event's: the call chain stays within BPF's 512 bytes.
#[inline(never)]
fn conn_end<D: Driver>(seg: &Segment, rec: &FlowRecord, out: &Outcome, cx: &mut Cx<D>) -> u32 {
    cx.driver.conn_end(seg, crate::flow::direction(seg), rec, out, &cx.seen);
    1
}

/// Way `way` of `set` is about to be taken from its flow: that
/// connection's record. A BPF subprogram of its own, called where an entry
/// is evicted (the half-open table today; an established table whose
/// eviction runs in this logic can call it the same way).
#[inline(never)]
pub fn evict<T: Set, D: Driver>(set: &T, way: u32, cx: &mut Cx<D>) -> u32
where
    T::Key: FlowKey,
{
    cx.driver.conn_evicted(set.key(way), set.record(way), &cx.seen);
    1
}
