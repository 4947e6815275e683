//! Deriving commands from the state: every host in recovery gets the call its stage is due for (at most
//! one in flight per host), every instance being evacuated its request, read or start within the global
//! concurrency; and [`Engine::next_wakeup`], the time at which that would produce something.

use super::restore::restore_overdue;
use super::state::HostCall;
use super::{Command, Engine, InstanceRecord, InstanceState, Stage};
use crate::{HostId, Timestamp};

impl Engine {
    /// The earliest time at which an [`Input::Tick`] would produce something (a poll, a deadline or a
    /// retry falling due), if any.
    ///
    /// Only what [`Engine::drive`] could act on counts: an instance waiting for an evacuation slot, or any
    /// write held by the operators' brake, waits for an input (a result freeing a slot, `resume`), never
    /// for the clock — so waiting costs no CPU.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let evac = &self.cfg.evacuation;
        let paused = self.meta.paused.is_some();
        let slot_free = self.active_evacuations() < evac.concurrency;
        let mut next: Option<Timestamp> = None;
        let mut consider = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        for rec in self.hosts.values().filter(|h| h.stage.in_recovery()) {
            if rec.pending.is_none() {
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
                    consider(rec.since.after(self.cfg.restore_timeout));
                }
            }
            if rec.stage == Stage::Evacuating {
                for inst in rec.instances.values().filter(|i| !i.inflight) {
                    match &inst.state {
                        InstanceState::Pending { not_before } if slot_free && !paused => {
                            consider(*not_before);
                        }
                        InstanceState::Rebuilding {
                            since, next_poll, ..
                        } => consider((*next_poll).min(since.after(evac.timeout))),
                        InstanceState::Starting {
                            since, not_before, ..
                        } => {
                            let timeout = since.after(evac.timeout);
                            consider(if paused {
                                timeout
                            } else {
                                (*not_before).min(timeout)
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        next
    }

    /// Instances holding an evacuation slot (requested, rebuilding or being started), across all hosts.
    fn active_evacuations(&self) -> usize {
        self.hosts
            .values()
            .filter(|h| h.stage == Stage::Evacuating)
            .flat_map(|h| h.instances.values())
            .filter(|i| i.state.is_active())
            .count()
    }

    /// Emits every command that is due, from the state alone.
    pub(super) fn drive(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.draining {
            return;
        }
        let paused = self.meta.paused.is_some();
        let busy: Vec<HostId> = self
            .hosts
            .values()
            .filter(|h| h.stage.under_way())
            .map(|h| h.host.clone())
            .collect();
        let mut active = self.active_evacuations();
        for host in &busy {
            if self.stage_of(host) == Some(&Stage::Evacuating) {
                self.drive_instances(now, host, paused, &mut active, out);
            } else {
                self.drive_host(now, host, paused, out);
            }
        }
    }

    /// Drives a host at a stage of its own (every stage under way but `Evacuating`).
    fn drive_host(&mut self, now: Timestamp, host: &HostId, paused: bool, out: &mut Vec<Command>) {
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

    fn drive_instances(
        &mut self,
        now: Timestamp,
        host: &HostId,
        paused: bool,
        active: &mut usize,
        out: &mut Vec<Command>,
    ) {
        let evac = self.cfg.evacuation.clone();
        let Some(rec) = self.hosts.get_mut(host) else {
            return;
        };
        let Some(fenced) = rec.fenced(&self.journal_id) else {
            return self.needs_operator(now, host, "evacuating without a fence proof".into(), out);
        };
        let mut events: Vec<(String, String)> = Vec::new();
        let mut all_done = true;
        for (id, inst) in rec.instances.iter_mut() {
            if inst.inflight {
                all_done = false;
                continue;
            }
            match &inst.state {
                InstanceState::Pending { not_before } => {
                    all_done = false;
                    if !paused && now >= *not_before && *active < evac.concurrency {
                        *active += 1;
                        inst.attempts += 1;
                        inst.state = InstanceState::Requested { at: now };
                        inst.inflight = true;
                        events.push((
                            id.clone(),
                            format!("evacuation requested (attempt {})", inst.attempts),
                        ));
                        out.push(Command::Evacuate {
                            fenced: fenced.clone(),
                            instance: inst.instance.clone(),
                        });
                    }
                }
                // Not in flight yet requested: after a restart or an ambiguous failure. Read reality.
                InstanceState::Requested { .. } => {
                    all_done = false;
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
                    time_out(inst, id, reason, active, &mut events);
                }
                InstanceState::Starting { since, on, .. } if now.since(*since) >= evac.timeout => {
                    let reason = format!(
                        "rebuilt on {on} but not running within {}: it could not be started",
                        humantime::format_duration(evac.timeout)
                    );
                    time_out(inst, id, reason, active, &mut events);
                }
                InstanceState::Rebuilding { next_poll, .. } => {
                    all_done = false;
                    if now >= *next_poll {
                        inst.inflight = true;
                        out.push(Command::Progress {
                            host: host.clone(),
                            instance: inst.instance.clone(),
                        });
                    }
                }
                InstanceState::Starting { on, not_before, .. } => {
                    all_done = false;
                    if !paused && now >= *not_before {
                        inst.inflight = true;
                        events.push((id.clone(), format!("starting it on {on}")));
                        out.push(Command::Start {
                            host: host.clone(),
                            instance: inst.instance.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        for (id, what) in events {
            self.touch_instance(now, host, &id, what);
        }
        if all_done {
            self.finish_evacuation(now, host, out);
        }
    }
}

/// An instance whose evacuation was accepted but that is not running within the timeout: failed, and its
/// evacuation slot is free.
fn time_out(
    inst: &mut InstanceRecord,
    id: &str,
    reason: String,
    active: &mut usize,
    events: &mut Vec<(String, String)>,
) {
    *active = active.saturating_sub(1);
    events.push((id.to_owned(), reason.clone()));
    inst.state = InstanceState::Failed { reason };
}
