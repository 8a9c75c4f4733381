//! Following the flows of an adopted state (`tcp-track run` taking over
//! the pinned tables of the daemon before it): each flow found in the
//! tables is remembered as if its events had been seen, and the deadlines
//! its state calls for are armed from the times its record holds, so that
//! TIME_WAIT expiries, half-open reports and lingering CLOSE_WAITs that
//! fall due after the restart are still printed. Nothing is printed for
//! the adoption itself.
//!
//! An `impl Reporter` of its own, like `expiry`.

use tcp_track_common::{
    conn::last_seen_ns,
    event::{FlowEvent, DETAIL_CLOSER_HI, DETAIL_CLOSER_LO, EVENT_STATE},
    flow::{FlowRecord, INFO_CLOSER_HI, INFO_CLOSER_LO, ORIGIN_SYN},
    state::endpoint_state,
};

use super::{
    deadlines::{dur_ns, Deadline},
    flow::FlowLookup,
    followed::FlowRef,
    FlowId, Reporter,
};
use crate::{events::Event, vocab::ConnState};

/// The record of a table entry as an event record, as if its last
/// transition had just been reported: what `Reporter::adopt` takes.
/// `ts_ns` is when the flow's current deadline counts from: its first
/// segment while the handshake is under way, else its last segment (a
/// connection enters TIME_WAIT, CLOSE_WAIT or CLOSE on the last segment
/// it sent, or just before).
pub fn adopted_event(family: u8, lo: (&[u8; 16], u16), hi: (&[u8; 16], u16), rec: &FlowRecord, ifindex: u32, now_ns: u64) -> FlowEvent {
    let state = ConnState::from_raw(rec.state);
    let ts_ns = if state <= ConnState::SynRecv && rec.first_ns != 0 { rec.first_ns } else { last_seen_ns(rec, now_ns) };
    let mut detail = 0;
    if rec.info & INFO_CLOSER_LO != 0 {
        detail |= DETAIL_CLOSER_LO;
    }
    if rec.info & INFO_CLOSER_HI != 0 {
        detail |= DETAIL_CLOSER_HI;
    }
    FlowEvent {
        ts_ns,
        ifindex,
        lo_addr: *lo.0,
        lo_port: lo.1,
        hi_addr: *hi.0,
        hi_port: hi.1,
        kind: EVENT_STATE,
        family,
        initiator: rec.initiator,
        origin: rec.origin,
        old_state: rec.state,
        new_state: rec.state,
        detail,
        lo_state: endpoint_state(rec, 0),
        hi_state: endpoint_state(rec, 1),
        ..FlowEvent::default()
    }
}

impl<L: FlowLookup> Reporter<L> {
    /// Follow a flow found in an adopted table (`raw` from
    /// `adopted_event`, `ev` its decoding). A flow already followed is
    /// left as it is. One that had ended (TIME_WAIT, CLOSE) had its `conn`
    /// record written when it ended, by the daemon before: it is followed
    /// as ended, so that no other record is written for it.
    pub fn adopt(&mut self, raw: &FlowEvent, ev: &Event) {
        self.follow(raw, ev);
        if matches!(ConnState::from_raw(raw.new_state), ConnState::TimeWait | ConnState::Close) {
            if let Some(t) = self.flows.find_mut(&FlowId::of(raw)) {
                t.ended = true;
            }
        }
    }

    /// Follow a flow found in a table, as `adopt`, without judging whether
    /// its record was written.
    pub(super) fn follow(&mut self, raw: &FlowEvent, ev: &Event) {
        let id = FlowId::of(raw);
        if self.flows.find(&id).is_some() {
            return;
        }
        // A new flow: no older incarnation whose accounting could end.
        let (r, _) = self.start_tracking(&id, raw, ev.iface.clone());
        self.arm_for_state(r, raw);
    }

    /// The deadline the state of `raw` (an `adopted_event`) calls for,
    /// counted from its `ts_ns`: what the transition into that state would
    /// have armed.
    pub(super) fn arm_for_state(&mut self, r: FlowRef, raw: &FlowEvent) {
        let at = raw.ts_ns;
        match ConnState::from_raw(raw.new_state) {
            // Only a handshake begun with a SYN is reported half-open, as
            // when its SYN is seen (`Reporter::handle`). It is not counted
            // among its server's half-open connections: SYN floods are
            // judged on the SYNs this daemon sees.
            ConnState::SynSent | ConnState::SynSent2 | ConnState::SynRecv if raw.origin == ORIGIN_SYN => {
                self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::HalfOpen);
            }
            ConnState::TimeWait => {
                let closer = super::conn::closer_of(raw.detail & DETAIL_CLOSER_LO != 0, raw.detail & DETAIL_CLOSER_HI != 0, raw.initiator);
                if let Some(t) = self.flows.get_mut(r) {
                    t.closer = closer;
                }
                self.arm(at.saturating_add(dur_ns(self.cfg.time_wait_timeout)), r, Deadline::TimeWait);
            }
            ConnState::Close => self.arm(at.saturating_add(dur_ns(self.cfg.half_open_timeout)), r, Deadline::Closed),
            ConnState::FinWait | ConnState::CloseWait => {
                self.arm(at.saturating_add(dur_ns(self.cfg.close_wait_timeout)), r, Deadline::CloseWait);
                if let Some(t) = self.flows.get_mut(r) {
                    t.close_wait_armed = true;
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap as Map, time::SystemTime};

    use tcp_track_common::{
        flow::{coarse_time, DIR_LO_TO_HI},
        parse::FAMILY_IPV4,
        state::{STATE_ESTABLISHED, STATE_SYN_SENT, STATE_TIME_WAIT},
    };

    use super::*;
    use crate::{clock::WallClock, config::ReportConfig, events::Decoder, vocab::EventKind};

    /// The kernel's table, holding one flow.
    struct One(Option<(FlowId, FlowRecord)>);

    impl FlowLookup for One {
        fn lookup(&self, id: &FlowId) -> Option<FlowRecord> {
            self.0.filter(|(i, _)| i == id).map(|(_, r)| r)
        }
        fn remove(&mut self, id: &FlowId) {
            self.0 = self.0.filter(|(i, _)| i != id);
        }
        fn open_flows(&self) -> Vec<(FlowId, FlowRecord)> {
            self.0.into_iter().collect()
        }
    }

    const S: u64 = 1_000_000_000;
    const T0: u64 = 1000 * S;

    /// `rec` as the daemon finds it in an adopted table at `now`, given to a
    /// fresh reporter (TIME_WAIT 2 s, half-open 3 s, CLOSE_WAIT 5 s).
    fn adopted(rec: FlowRecord, now: u64) -> Reporter<One> {
        let mut lo = [0u8; 16];
        lo[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut hi = [0u8; 16];
        hi[..4].copy_from_slice(&[198, 18, 0, 2]);
        let raw = adopted_event(FAMILY_IPV4, (&lo, 40000), (&hi, 80), &rec, 3, now);
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH, 0);
        let cfg = ReportConfig {
            time_wait_timeout: std::time::Duration::from_secs(2),
            half_open_timeout: std::time::Duration::from_secs(3),
            close_wait_timeout: std::time::Duration::from_secs(5),
            ..ReportConfig::default()
        };
        let mut r = Reporter::new(cfg, One(Some((FlowId::of(&raw), rec))), clock);
        let ev = Decoder::new(clock, Map::from([(3, "veth0".into())])).event(&raw).unwrap();
        r.adopt(&raw, &ev);
        r
    }

    fn kinds(evs: &[Event]) -> Vec<EventKind> {
        evs.iter().map(|e| e.event).collect()
    }

    #[test]
    fn a_time_wait_expires_from_its_last_segment_and_leaves_the_table() {
        let rec = FlowRecord { state: STATE_TIME_WAIT, initiator: DIR_LO_TO_HI, info: INFO_CLOSER_LO, last_seen: coarse_time(T0), ..FlowRecord::default() };
        let mut r = adopted(rec, T0 + S);
        let due = r.next_deadline().unwrap();
        assert!(due.abs_diff(T0 + 2 * S) < 1 << 21, "2 s after its last segment, not after the adoption: {due}");
        assert!(r.on_time(T0 + S).is_empty(), "nothing printed for the adoption itself");
        let evs = r.on_time(T0 + 3 * S);
        assert_eq!(kinds(&evs), [EventKind::TimeWaitExpired]);
        assert_eq!(evs[0].client.as_ref().map(|c| c.to_string()), Some("198.18.0.1:40000".to_string()));
        assert!(r.lookup().0.is_none(), "the kernel record is removed, as for a TIME_WAIT followed from the start");
    }

    #[test]
    fn a_handshake_is_reported_half_open_from_its_first_segment() {
        let rec = FlowRecord { state: STATE_SYN_SENT, origin: ORIGIN_SYN, first_ns: T0, last_seen: coarse_time(T0 + 2 * S), ..FlowRecord::default() };
        let mut r = adopted(rec, T0 + 2 * S);
        assert_eq!(r.next_deadline(), Some(T0 + 3 * S));
        assert_eq!(kinds(&r.on_time(T0 + 3 * S)), [EventKind::HalfOpen]);
    }

    #[test]
    fn an_open_connection_waits_for_nothing_and_is_adopted_once() {
        let rec = FlowRecord { state: STATE_ESTABLISHED, first_ns: T0, last_seen: coarse_time(T0), ..FlowRecord::default() };
        let mut r = adopted(rec, T0 + S);
        assert_eq!((r.next_deadline(), r.tracked_flows()), (None, 1));
        let mut lo = [0u8; 16];
        lo[..4].copy_from_slice(&[198, 18, 0, 1]);
        let mut hi = [0u8; 16];
        hi[..4].copy_from_slice(&[198, 18, 0, 2]);
        let raw = adopted_event(FAMILY_IPV4, (&lo, 40000), (&hi, 80), &rec, 3, T0 + S);
        let clock = WallClock::anchored(SystemTime::UNIX_EPOCH, 0);
        let ev = Decoder::new(clock, Map::new()).event(&raw).unwrap();
        r.adopt(&raw, &ev);
        assert_eq!(r.tracked_flows(), 1);
    }
}
