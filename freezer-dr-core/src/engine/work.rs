//! The work index: what [`Engine::drive`] and [`Engine::next_wakeup`] look at, kept up to date as the
//! state changes, so one input costs what it changed, not the number of hosts and instances.
//!
//! Every change to a host or an instance is marked where it is made (`host_mut`, `instance_mut`,
//! `take_pending`, a listing, a restart); [`Engine::refile`] files the marked ones again before `drive`
//! and at the end of each step. What is filed is a function of the state (and the brake), so it can be
//! rebuilt from a full scan and compared: the engine scenarios check it after every step, and so does
//! every debug build, and they also compare each step's commands with the full scan's.
//!
//! Per instance of an `Evacuating` host it files the slot it holds (`active`), whether it still keeps its
//! host's evacuation open (`live`), and the time its next request, read or start falls due. Per host it
//! files whether it is under way (`is_settled`), its next host-level deadline, and its next wake-up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use super::restore::restore_overdue_at;
use super::{Engine, HostRecord, InstanceRecord, InstanceState, Stage};
use crate::{HostId, Timestamp};

/// The work index. See the [module documentation](self).
#[derive(Clone, Debug, Default)]
pub(super) struct Work {
    /// Hosts marked changed since they were last filed.
    marked: BTreeSet<HostId>,
    /// Hosts whose every instance is to be filed again (listed, cleared, restarted).
    marked_all: BTreeSet<HostId>,
    /// Instances marked changed since they were last filed.
    marked_instances: BTreeSet<(HostId, String)>,
    /// Hosts the next `drive` looks at: changed since it last did.
    pub(super) attention: BTreeSet<HostId>,
    /// What is filed, per host.
    pub(super) hosts: HashMap<HostId, Filed>,
    /// Hosts under way ([`Stage::under_way`]).
    pub(super) under_way: usize,
    /// Host-level deadlines still ahead (a retry, a power poll, the restore timeout), for `drive`.
    pub(super) host_due: BTreeSet<(Timestamp, HostId)>,
    /// Host-level wake-ups, for `next_wakeup`.
    pub(super) host_wake: BTreeSet<(Timestamp, HostId)>,
    /// Instances holding an evacuation slot.
    pub(super) active: usize,
    /// Pending instances not yet promoted to `ready`, by `not_before`.
    pub(super) waiting: BTreeSet<(Timestamp, HostId, String)>,
    /// Pending instances whose `not_before` had passed when `drive` last looked, by host and id.
    pub(super) ready: BTreeMap<HostId, BTreeMap<String, Timestamp>>,
    /// Requested instances with no call in flight (read at once: after a restart, an unknown outcome).
    pub(super) requested: BTreeMap<HostId, BTreeSet<String>>,
    /// Rebuilding instances by their next read or their timeout, whichever comes first; starting ones
    /// by their timeout.
    pub(super) polls: BTreeSet<(Timestamp, HostId, String)>,
    /// Starting instances by their next start request.
    pub(super) starts: BTreeSet<(Timestamp, HostId, String)>,
}

/// What is filed for one host.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Filed {
    /// Its instances are filed (it is `Evacuating`).
    evacuating: bool,
    /// It is under way ([`Stage::under_way`]).
    pub(super) under_way: bool,
    due: Option<Timestamp>,
    wake: Option<Timestamp>,
    /// Instances not ended, or with a call in flight: the evacuation ends when none is left.
    live: usize,
    instances: HashMap<String, Slot>,
}

/// What is filed for one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    at: Due,
    active: bool,
    live: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// Nothing to do until an input comes (ended, or a call in flight).
    Quiet,
    Pending(Timestamp),
    Requested,
    Poll(Timestamp),
    Start {
        timeout: Timestamp,
        next: Timestamp,
    },
}

fn slot_of(inst: &InstanceRecord, timeout: Duration) -> Slot {
    let at = if inst.inflight {
        Due::Quiet
    } else {
        match &inst.state {
            InstanceState::Pending { not_before } => Due::Pending(*not_before),
            InstanceState::Requested { .. } => Due::Requested,
            InstanceState::Rebuilding {
                since, next_poll, ..
            } => Due::Poll((*next_poll).min(since.after(timeout))),
            InstanceState::Starting {
                since, not_before, ..
            } => Due::Start {
                timeout: since.after(timeout),
                next: *not_before,
            },
            _ => Due::Quiet,
        }
    };
    Slot {
        at,
        active: inst.state.is_active(),
        live: inst.inflight || !inst.state.is_terminal(),
    }
}

/// The earliest time at which `drive` may have host-level work for `rec` by the clock alone, if it is
/// after `now` (work due at `now` is done by the `drive` that files it, or held by the brake, whose
/// release files every host again).
fn host_due(rec: &HostRecord, now: Timestamp, restore_timeout: Duration) -> Option<Timestamp> {
    if !rec.stage.under_way() || rec.stage == Stage::Evacuating || rec.pending.is_some() {
        return None;
    }
    let mut times = vec![rec.retry_at];
    match rec.stage {
        Stage::Verifying {
            deadline,
            next_poll,
            ..
        } => times.extend([Some(deadline), Some(next_poll)]),
        Stage::Restoring => times.push(Some(restore_overdue_at(rec, restore_timeout))),
        _ => {}
    }
    times.into_iter().flatten().filter(|t| *t > now).min()
}

/// The host-level part of [`Engine::next_wakeup`] for `rec`.
pub(super) fn host_wake(
    rec: &HostRecord,
    paused: bool,
    restore_timeout: Duration,
) -> Option<Timestamp> {
    if !rec.stage.in_recovery() || rec.pending.is_some() {
        return None;
    }
    let mut next: Option<Timestamp> = None;
    let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
    // A retry of a write waits for `resume` under the brake; a retry of a read does not.
    let write_held = paused
        && matches!(
            rec.stage,
            Stage::Fencing {
                attempted: false,
                ..
            } | Stage::Isolating { isolated: false }
                | Stage::Restoring
        );
    if let Some(t) = rec.retry_at
        && !write_held
    {
        consider(t);
    }
    if let Stage::Verifying {
        deadline,
        next_poll,
        ..
    } = rec.stage
    {
        consider(next_poll.min(deadline));
    }
    if rec.stage == Stage::Restoring {
        consider(restore_overdue_at(rec, restore_timeout));
    }
    next
}

impl Work {
    pub(super) fn mark(&mut self, host: &HostId) {
        if !self.marked.contains(host) {
            self.marked.insert(host.clone());
        }
    }

    pub(super) fn mark_all(&mut self, host: &HostId) {
        if !self.marked_all.contains(host) {
            self.marked_all.insert(host.clone());
        }
    }

    pub(super) fn mark_instance(&mut self, host: &HostId, id: &str) {
        self.marked_instances.insert((host.clone(), id.to_owned()));
    }

    /// Instances of `host` that keep its evacuation open.
    pub(super) fn live(&self, host: &HostId) -> usize {
        self.hosts.get(host).map_or(0, |f| f.live)
    }

    fn file(&mut self, host: &HostId, id: &str, slot: Slot) {
        let Some(f) = self.hosts.get_mut(host) else {
            return;
        };
        f.live += usize::from(slot.live);
        self.active += usize::from(slot.active);
        match slot.at {
            Due::Quiet => {}
            Due::Pending(t) => {
                self.waiting.insert((t, host.clone(), id.to_owned()));
            }
            Due::Requested => {
                self.requested
                    .entry(host.clone())
                    .or_default()
                    .insert(id.to_owned());
            }
            Due::Poll(t) => {
                self.polls.insert((t, host.clone(), id.to_owned()));
            }
            Due::Start { timeout, next } => {
                self.polls.insert((timeout, host.clone(), id.to_owned()));
                self.starts.insert((next, host.clone(), id.to_owned()));
            }
        }
        f.instances.insert(id.to_owned(), slot);
    }

    fn unfile(&mut self, host: &HostId, id: &str) {
        let Some(f) = self.hosts.get_mut(host) else {
            return;
        };
        let Some(slot) = f.instances.remove(id) else {
            return;
        };
        f.live -= usize::from(slot.live);
        self.active -= usize::from(slot.active);
        let key = |t: Timestamp| (t, host.clone(), id.to_owned());
        match slot.at {
            Due::Quiet => {}
            Due::Pending(t) => {
                if !self.waiting.remove(&key(t)) {
                    remove_in(&mut self.ready, host, |m| m.remove(id).is_some());
                }
            }
            Due::Requested => remove_in(&mut self.requested, host, |s| s.remove(id)),
            Due::Poll(t) => {
                self.polls.remove(&key(t));
            }
            Due::Start { timeout, next } => {
                self.polls.remove(&key(timeout));
                self.starts.remove(&key(next));
            }
        }
    }

    /// Moves the pending instances whose `not_before` passed by `now` to `ready`.
    pub(super) fn promote(&mut self, now: Timestamp) {
        while let Some(first) = self.waiting.first()
            && first.0 <= now
        {
            let Some((t, host, id)) = self.waiting.pop_first() else {
                break;
            };
            self.ready.entry(host).or_default().insert(id, t);
        }
    }

    /// The earliest `not_before` of a pending instance.
    pub(super) fn first_pending(&self) -> Option<Timestamp> {
        let waiting = self.waiting.first().map(|(t, ..)| *t);
        // Ready instances left over happen only while no slot is free, under the brake, or while
        // draining; the scan is for those odd cases only.
        let ready = self.ready.values().flat_map(|m| m.values()).min().copied();
        match (waiting, ready) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Removes from the set filed under `host` (`remove` says whether it did), dropping an empty set.
fn remove_in<T: IsEmpty>(
    map: &mut BTreeMap<HostId, T>,
    host: &HostId,
    remove: impl FnOnce(&mut T) -> bool,
) {
    if let Some(v) = map.get_mut(host)
        && remove(v)
        && v.is_empty()
    {
        map.remove(host);
    }
}

trait IsEmpty {
    fn is_empty(&self) -> bool;
}

impl<K, V> IsEmpty for BTreeMap<K, V> {
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

impl<T> IsEmpty for BTreeSet<T> {
    fn is_empty(&self) -> bool {
        BTreeSet::is_empty(self)
    }
}

impl Engine {
    /// Files every marked host and instance again (at `now`).
    pub(super) fn refile(&mut self, now: Timestamp) {
        let all = std::mem::take(&mut self.work.marked_all);
        let marked = std::mem::take(&mut self.work.marked);
        for host in marked.union(&all) {
            self.refile_host(host, now, all.contains(host));
            self.work.attention.insert(host.clone());
        }
        for (host, id) in std::mem::take(&mut self.work.marked_instances) {
            self.refile_instance(&host, &id);
            if !self.work.attention.contains(&host) {
                self.work.attention.insert(host);
            }
        }
    }

    /// Files `host` again: its stage, deadlines, wake-up; all its instances when `all` or when it entered
    /// or left `Evacuating`.
    pub(super) fn refile_host(&mut self, host: &HostId, now: Timestamp, all: bool) {
        let restore_timeout = self.cfg.restore_timeout;
        let paused = self.meta.paused.is_some();
        let timeout = self.cfg.evacuation.timeout;
        let work = &mut self.work;
        let rec = self.hosts.get(host);
        let evacuating = rec.is_some_and(|r| r.stage == Stage::Evacuating);
        let filed = work.hosts.entry(host.clone()).or_default();
        let (old_due, old_wake, was_under_way, was_evacuating) =
            (filed.due, filed.wake, filed.under_way, filed.evacuating);
        if all || was_evacuating != evacuating {
            let ids: Vec<String> = filed.instances.keys().cloned().collect();
            for id in ids {
                work.unfile(host, &id);
            }
            if let Some(f) = work.hosts.get_mut(host) {
                f.evacuating = evacuating;
            }
            if evacuating && let Some(rec) = rec {
                for (id, inst) in &rec.instances {
                    work.file(host, id, slot_of(inst, timeout));
                }
            }
        }
        let under_way = rec.is_some_and(|r| r.stage.under_way());
        let due = rec.and_then(|r| host_due(r, now, restore_timeout));
        let wake = rec.and_then(|r| host_wake(r, paused, restore_timeout));
        if old_due != due {
            if let Some(t) = old_due {
                work.host_due.remove(&(t, host.clone()));
            }
            if let Some(t) = due {
                work.host_due.insert((t, host.clone()));
            }
        }
        if old_wake != wake {
            if let Some(t) = old_wake {
                work.host_wake.remove(&(t, host.clone()));
            }
            if let Some(t) = wake {
                work.host_wake.insert((t, host.clone()));
            }
        }
        work.under_way = work.under_way + usize::from(under_way) - usize::from(was_under_way);
        let Some(f) = work.hosts.get_mut(host) else {
            return;
        };
        f.due = due;
        f.wake = wake;
        f.under_way = under_way;
        if rec.is_none() && f.instances.is_empty() {
            work.hosts.remove(host);
        }
    }

    /// Files one instance of an `Evacuating` host again.
    pub(super) fn refile_instance(&mut self, host: &HostId, id: &str) {
        let timeout = self.cfg.evacuation.timeout;
        if !self.work.hosts.get(host).is_some_and(|f| f.evacuating) {
            return;
        }
        self.work.unfile(host, id);
        if let Some(inst) = self.hosts.get(host).and_then(|r| r.instances.get(id)) {
            let slot = slot_of(inst, timeout);
            self.work.file(host, id, slot);
        }
    }

    /// Files every host: after a restart, and when the brake is set or released.
    pub(super) fn refile_all(&mut self) {
        let hosts: Vec<HostId> = self.hosts.keys().cloned().collect();
        for h in hosts {
            self.work.mark(&h);
        }
    }

    /// Files every host and instance from scratch (a restart).
    pub(super) fn file_everything(&mut self) {
        self.work = Work::default();
        let all: Vec<HostId> = self.hosts.keys().cloned().collect();
        for h in &all {
            self.work.mark_all(h);
        }
        // No deadline has been looked at yet: every one is ahead.
        self.refile(Timestamp(0));
    }

    /// Checks the index against one built from a full scan (what is filed per instance, the counters,
    /// the wake-ups); panics on a difference. Run after every step by the engine scenarios and by debug
    /// builds.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn check_work(&self) {
        let mut fresh = self.clone();
        fresh.file_everything();
        let (a, b) = (&self.work, &fresh.work);
        // Per host: evacuating, under way, wake-up, live instances, each instance's slot.
        type Row = (
            HostId,
            bool,
            bool,
            Option<Timestamp>,
            usize,
            Vec<(String, Slot)>,
        );
        let normal = |w: &Work| {
            let mut v: Vec<Row> = w
                .hosts
                .iter()
                .filter(|(_, f)| f.evacuating || f.under_way || f.wake.is_some())
                .map(|(h, f)| {
                    let mut i: Vec<(String, Slot)> =
                        f.instances.iter().map(|(k, s)| (k.clone(), *s)).collect();
                    i.sort_by(|x, y| x.0.cmp(&y.0));
                    (h.clone(), f.evacuating, f.under_way, f.wake, f.live, i)
                })
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        let pending = |w: &Work| {
            let mut v: Vec<(Timestamp, HostId, String)> = w.waiting.iter().cloned().collect();
            for (h, m) in &w.ready {
                v.extend(m.iter().map(|(id, t)| (*t, h.clone(), id.clone())));
            }
            v.sort();
            v
        };
        assert_eq!(
            normal(a),
            normal(b),
            "work index: filed hosts and instances"
        );
        assert_eq!(
            (a.active, a.under_way),
            (b.active, b.under_way),
            "work index: active evacuations, hosts under way"
        );
        assert_eq!(pending(a), pending(b), "work index: pending instances");
        assert!(
            a.ready.values().all(|m| !m.is_empty()),
            "work index: a host left filed with no ready instance"
        );
        assert_eq!(a.requested, b.requested, "work index: requested instances");
        assert_eq!(a.polls, b.polls, "work index: reads and timeouts");
        assert_eq!(a.starts, b.starts, "work index: starts");
        assert_eq!(a.host_wake, b.host_wake, "work index: host wake-ups");
        assert!(
            a.marked.is_empty() && a.marked_all.is_empty() && a.marked_instances.is_empty(),
            "work index: marks left unfiled"
        );
    }
}

#[cfg(test)]
mod tests {
    //! Parts of the index alone. `host_due`: the full-scan comparison cannot see a change to it (both
    //! sides call it), and filing too much only costs visits, so its cases are pinned here. Unfiling one
    //! instance: in the scenarios a host's requested instances all leave at once.
    use super::*;
    use crate::engine::state::HostCall;

    const NOW: Timestamp = Timestamp(1_000_000);
    const TIMEOUT: Duration = Duration::from_secs(1800);

    fn at(stage: Stage, retry_in_ms: Option<u64>) -> HostRecord {
        let mut rec = HostRecord::new("c1".into(), Timestamp(NOW.0 - 10_000));
        rec.stage = stage;
        rec.retry_at = retry_in_ms.map(|ms| Timestamp(NOW.0 + ms));
        rec
    }

    #[test]
    fn a_host_not_under_way_or_evacuating_or_with_a_call_in_flight_is_not_due_by_the_clock() {
        // A retry time left on them is not host-level work: healthy, per-instance work, or the answer
        // comes first.
        assert_eq!(host_due(&at(Stage::Healthy, Some(5)), NOW, TIMEOUT), None);
        assert_eq!(
            host_due(&at(Stage::Evacuating, Some(5)), NOW, TIMEOUT),
            None
        );
        let mut busy = at(Stage::Isolating { isolated: false }, Some(5));
        busy.pending = Some(HostCall::Isolate);
        assert_eq!(host_due(&busy, NOW, TIMEOUT), None);
        let waiting = at(Stage::Isolating { isolated: false }, Some(5));
        assert_eq!(host_due(&waiting, NOW, TIMEOUT), Some(Timestamp(NOW.0 + 5)));
    }

    fn slot(at: Due) -> Slot {
        Slot {
            at,
            active: false,
            live: true,
        }
    }

    #[test]
    fn an_instance_unfiled_leaves_its_host_s_others_filed_and_no_empty_set_behind() {
        let host = HostId::from("c1");
        let mut w = Work::default();
        w.hosts.insert(host.clone(), Filed::default());
        for id in ["a", "b"] {
            w.file(&host, id, slot(Due::Requested));
        }
        for id in ["p", "q"] {
            w.file(&host, id, slot(Due::Pending(NOW)));
        }
        w.promote(NOW);
        assert_eq!(w.ready[&host].len(), 2);
        w.unfile(&host, "a");
        w.unfile(&host, "p");
        assert_eq!(w.requested[&host], BTreeSet::from(["b".to_owned()]));
        assert_eq!(w.ready[&host].keys().collect::<Vec<_>>(), ["q"]);
        w.unfile(&host, "b");
        w.unfile(&host, "q");
        assert!(w.requested.is_empty() && w.ready.is_empty(), "{w:?}");
        assert_eq!(w.hosts[&host].live, 0);
    }

    #[test]
    fn only_times_after_now_are_filed_and_a_restore_is_due_at_its_timeout() {
        let now_due = at(Stage::Isolating { isolated: false }, Some(0));
        assert_eq!(
            host_due(&now_due, NOW, TIMEOUT),
            None,
            "work due now is done by the drive that files it"
        );
        let restoring = at(Stage::Restoring, None);
        assert_eq!(
            host_due(&restoring, NOW, TIMEOUT),
            Some(restore_overdue_at(&restoring, TIMEOUT))
        );
    }
}
