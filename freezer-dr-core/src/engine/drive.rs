//! Deriving commands from the state: every host in recovery gets the call its stage is due for (at most
//! one in flight per host), every instance being evacuated its request, read or start within the global
//! concurrency; and [`Engine::next_wakeup`], the time at which that would produce something.
//!
//! Both read the work index (`work.rs`), not every host and instance: a `drive` looks only at the hosts
//! changed since the last one, the deadlines that fell due, and the pending instances that can have a
//! slot, in the order a full scan would (hosts by name, instances by id), so the commands are the same.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

use super::restore::restore_overdue;
use super::state::HostCall;
use super::{Command, Engine, Fenced, InstanceRecord, InstanceState, Stage};
use crate::engine::policy::EvacuationConfig;
use crate::{HostId, Timestamp};

fn after<'a, K: Ord, V>(map: &'a BTreeMap<K, V>, cursor: Option<&K>) -> Option<&'a K> {
    match cursor {
        None => map.keys().next(),
        Some(c) => map.range((Excluded(c), Unbounded)).next().map(|(k, _)| k),
    }
}

fn after_in<'a, K: Ord>(set: &'a BTreeSet<K>, cursor: Option<&K>) -> Option<&'a K> {
    match cursor {
        None => set.iter().next(),
        Some(c) => set.range((Excluded(c), Unbounded)).next(),
    }
}

/// The smaller of two optional keys.
fn first_of<'a, K: Ord>(a: Option<&'a K>, b: Option<&'a K>) -> Option<&'a K> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Engine {
    /// The earliest time at which an [`Input::Tick`] would produce something (a poll, a deadline or a
    /// retry falling due), if any.
    ///
    /// Only what [`Engine::drive`] could act on counts: an instance waiting for an evacuation slot, or any
    /// write held by the operators' brake, waits for an input (a result freeing a slot, `resume`), never
    /// for the clock — so waiting costs no CPU.
    ///
    /// [`Input::Tick`]: super::Input::Tick
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let w = &self.work;
        let paused = self.meta.paused.is_some();
        let slot_free = w.active < self.cfg.evacuation.concurrency;
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(w.host_wake.first().map(|(t, _)| *t));
        consider(w.polls.first().map(|(t, ..)| *t));
        if !paused {
            consider(w.starts.first().map(|(t, ..)| *t));
            if slot_free {
                consider(w.first_pending());
            }
        }
        next
    }

    /// True if no host is between `Fencing` and `Restoring` (what `run --once` waits for). Hosts waiting
    /// for a person (`NeedsOperator`) or for their repair (`Evacuated`) do not keep it busy.
    pub fn is_settled(&self) -> bool {
        self.work.under_way == 0
    }

    /// Emits every command that is due, from the state (through the work index).
    pub(super) fn drive(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.draining {
            return;
        }
        self.refile(now);
        let paused = self.meta.paused.is_some();
        let concurrency = self.cfg.evacuation.concurrency;
        self.work.promote(now);
        // The hosts to look at: changed since the last drive, or with a deadline that fell due...
        let mut visit = std::mem::take(&mut self.work.attention);
        for (t, h) in &self.work.host_due {
            if *t > now {
                break;
            }
            visit.insert(h.clone());
        }
        // ... or with instances to read, start or time out.
        let mut due: BTreeMap<HostId, BTreeSet<String>> = self.work.requested.clone();
        let starts = if paused {
            None
        } else {
            Some(&self.work.starts)
        };
        for set in [Some(&self.work.polls), starts].into_iter().flatten() {
            for (t, h, id) in set {
                if *t > now {
                    break;
                }
                due.entry(h.clone()).or_default().insert(id.clone());
            }
        }
        visit.extend(due.keys().cloned());
        // In host order, as a full scan would go: the hosts above, and those with a pending instance
        // while a slot is free (freed as it goes, by time-outs).
        let mut cursor: Option<HostId> = None;
        loop {
            let ready = (!paused && self.work.active < concurrency)
                .then(|| after(&self.work.ready, cursor.as_ref()))
                .flatten();
            let Some(host) = first_of(after_in(&visit, cursor.as_ref()), ready).cloned() else {
                break;
            };
            match self.stage_of(&host) {
                Some(Stage::Evacuating) => {
                    #[cfg(test)]
                    {
                        self.visits.0 += 1;
                    }
                    let ids = due.remove(&host).unwrap_or_default();
                    self.drive_instances(now, &host, paused, &ids, out);
                }
                Some(s) if s.under_way() => {
                    #[cfg(test)]
                    {
                        self.visits.0 += 1;
                    }
                    self.drive_host(now, &host, paused, out);
                    self.refile_host(&host, now, false);
                }
                _ => {}
            }
            self.refile(now);
            cursor = Some(host);
        }
    }

    /// Drives a host at a stage of its own (every stage under way but `Evacuating`).
    pub(super) fn drive_host(
        &mut self,
        now: Timestamp,
        host: &HostId,
        paused: bool,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get_mut(host) else {
            return;
        };
        if let Some(why) = restore_overdue(rec, now, self.cfg.restore_timeout) {
            return self.needs_operator(now, host, why, out);
        }
        if rec.pending.is_some() || rec.retry_at.is_some_and(|t| now < t) {
            return;
        }
        let fenced = rec.fenced(&self.journal_id);
        match rec.stage.clone() {
            Stage::Fencing { level, attempted } => {
                if attempted {
                    rec.pending = Some(HostCall::PowerStatus(level));
                    out.push(Command::PowerStatus {
                        host: host.clone(),
                        level,
                    });
                } else if !paused && let Some(rec) = self.host_mut(host) {
                    // Recorded before the command leaves (write-ahead): after a crash the power status is
                    // read first.
                    rec.stage = Stage::Fencing {
                        level,
                        attempted: true,
                    };
                    rec.pending = Some(HostCall::PowerOff(level));
                    out.push(Command::PowerOff {
                        host: host.clone(),
                        level,
                    });
                }
            }
            Stage::Verifying {
                level,
                deadline,
                next_poll,
                last,
            } => {
                if now >= deadline {
                    let timeout = humantime::format_duration(self.cfg.fencing.confirm_timeout);
                    let last = last.unwrap_or_else(|| "never read".into());
                    let why = format!(
                        "fencer[{level}]: power status did not read off within {timeout} (last: {last})"
                    );
                    self.next_level(now, host, level, why, out);
                } else if now >= next_poll {
                    rec.pending = Some(HostCall::PowerStatus(level));
                    out.push(Command::PowerStatus {
                        host: host.clone(),
                        level,
                    });
                }
            }
            Stage::Isolating { isolated } => {
                let Some(fenced) = fenced else {
                    return self.needs_operator(
                        now,
                        host,
                        "isolating without a fence proof".into(),
                        out,
                    );
                };
                if isolated {
                    rec.pending = Some(HostCall::Instances);
                    out.push(Command::ListInstances { fenced });
                } else if !paused {
                    rec.pending = Some(HostCall::Isolate);
                    out.push(Command::Isolate { fenced });
                }
            }
            Stage::Restoring if !paused => {
                rec.pending = Some(HostCall::Restore);
                out.push(Command::Restore { host: host.clone() });
            }
            _ => {}
        }
    }

    /// Drives the instances of an evacuating host that have something due (`due`: a read, a start or a
    /// time-out) and its pending ones while a slot is free, in id order; ends its evacuation once none
    /// is left.
    fn drive_instances(
        &mut self,
        now: Timestamp,
        host: &HostId,
        paused: bool,
        due: &BTreeSet<String>,
        out: &mut Vec<Command>,
    ) {
        let evac = self.cfg.evacuation.clone();
        let Some(fenced) = self
            .hosts
            .get(host)
            .and_then(|r| r.fenced(&self.journal_id))
        else {
            return self.needs_operator(now, host, "evacuating without a fence proof".into(), out);
        };
        let turn = InstanceTurn::new(host, &fenced, now, paused, &evac);
        let mut events: Vec<(String, String)> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let slot_free = self.work.active < evac.concurrency;
            let ready = (!paused && slot_free)
                .then(|| {
                    self.work
                        .ready
                        .get(host)
                        .and_then(|m| after(m, cursor.as_ref()))
                })
                .flatten();
            let Some(id) = first_of(after_in(due, cursor.as_ref()), ready).cloned() else {
                break;
            };
            #[cfg(test)]
            {
                self.visits.1 += 1;
            }
            if let Some(inst) = self
                .hosts
                .get_mut(host)
                .and_then(|r| r.instances.get_mut(&id))
            {
                turn.drive(inst, &id, slot_free, &mut events, out);
            }
            self.refile_instance(host, &id);
            cursor = Some(id);
        }
        for (id, what) in events {
            self.touch_instance(now, host, &id, what);
        }
        if self.work.live(host) == 0 {
            self.finish_evacuation(now, host, out);
        }
    }
}

/// What one `drive` of an evacuating host's instances goes by.
pub(super) struct InstanceTurn<'a> {
    pub(super) host: &'a HostId,
    pub(super) fenced: &'a Fenced,
    pub(super) now: Timestamp,
    pub(super) paused: bool,
    pub(super) evac: &'a EvacuationConfig,
}

impl<'a> InstanceTurn<'a> {
    /// The turn of `host`'s instances at `now`.
    pub(super) fn new(
        host: &'a HostId,
        fenced: &'a Fenced,
        now: Timestamp,
        paused: bool,
        evac: &'a EvacuationConfig,
    ) -> Self {
        Self {
            host,
            fenced,
            now,
            paused,
            evac,
        }
    }

    /// One instance with no call in flight: its request (if `slot_free`), read, start or time-out, if
    /// due.
    pub(super) fn drive(
        &self,
        inst: &mut InstanceRecord,
        id: &str,
        slot_free: bool,
        events: &mut Vec<(String, String)>,
        out: &mut Vec<Command>,
    ) {
        let Self {
            host,
            fenced,
            now,
            paused,
            evac,
        } = *self;
        if inst.inflight {
            return;
        }
        match &inst.state {
            InstanceState::Pending { not_before } if !paused && now >= *not_before && slot_free => {
                inst.attempts += 1;
                inst.state = InstanceState::Requested { at: now };
                inst.inflight = true;
                events.push((
                    id.to_owned(),
                    format!("evacuation requested (attempt {})", inst.attempts),
                ));
                out.push(Command::Evacuate {
                    fenced: fenced.clone(),
                    instance: inst.instance.clone(),
                });
            }
            // Not in flight yet requested: after a restart or an ambiguous failure. Read reality.
            InstanceState::Requested { .. } => {
                inst.inflight = true;
                out.push(Command::Progress {
                    host: host.clone(),
                    instance: inst.instance.clone(),
                });
            }
            // Accepted, yet not running within the timeout (counted from the request): failed.
            InstanceState::Rebuilding { since, detail, .. }
                if now.since(*since) >= evac.timeout =>
            {
                let reason = format!(
                    "not running elsewhere within {} (last seen: {detail})",
                    humantime::format_duration(evac.timeout)
                );
                time_out(inst, id, reason, events);
            }
            InstanceState::Starting { since, on, .. } if now.since(*since) >= evac.timeout => {
                let reason = format!(
                    "rebuilt on {on} but not running within {}: it could not be started",
                    humantime::format_duration(evac.timeout)
                );
                time_out(inst, id, reason, events);
            }
            InstanceState::Rebuilding { next_poll, .. } if now >= *next_poll => {
                inst.inflight = true;
                out.push(Command::Progress {
                    host: host.clone(),
                    instance: inst.instance.clone(),
                });
            }
            InstanceState::Starting { on, not_before, .. } if !paused && now >= *not_before => {
                inst.inflight = true;
                events.push((id.to_owned(), format!("starting it on {on}")));
                out.push(Command::Start {
                    host: host.clone(),
                    instance: inst.instance.clone(),
                });
            }
            _ => {}
        }
    }
}

/// An instance whose evacuation was accepted but that is not running within the timeout: failed (its
/// evacuation slot is free).
fn time_out(
    inst: &mut InstanceRecord,
    id: &str,
    reason: String,
    events: &mut Vec<(String, String)>,
) {
    events.push((id.to_owned(), reason.clone()));
    inst.state = InstanceState::Failed { reason };
}
