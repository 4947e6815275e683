//! Isolation and evacuation: the host is isolated (unless another actor recovers it), its instances are
//! listed and sorted by the policy, each evacuation request, progress read and start is taken in, and the
//! recovery report is sent once every instance ended.

use std::collections::BTreeSet;

use super::state::HostCall;
use super::{Command, Engine, FenceProof, FenceRecord, InstanceRecord, InstanceState, Stage};
use crate::engine::policy::{LocalRootDisk, PolicyMode};
use crate::{
    Audience, ErrorKind, Failure, HostId, Instance, InstanceOutcome, Outcome, Progress, ReportKind,
    Retry, Timestamp,
};

impl Engine {
    pub(super) fn isolated(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        let made_for = |s: &Stage| *s == Stage::Isolating { isolated: false };
        if !self.take_answer(host, HostCall::Isolate, made_for) {
            return;
        }
        match result {
            Ok(()) => {
                let settle = self.cfg.isolation_settle;
                let what = if settle.is_zero() {
                    "isolated (forced down, disabled): listing its instances".to_owned()
                } else {
                    format!(
                        "isolated (forced down, disabled): listing its instances in {} (after reading \
                         its marker again)",
                        humantime::format_duration(settle)
                    )
                };
                self.set_stage(now, host, Stage::Isolating { isolated: true }, what);
                // The pause before the listing (which reads the marker again): see `isolation_settle`.
                if !settle.is_zero()
                    && let Some(rec) = self.host_mut(host)
                {
                    rec.retry_at = Some(now.after(settle));
                }
            }
            Err(f) if f.kind == ErrorKind::OtherActor => self.other_actor(now, host, &f, out),
            Err(f) => self.step_failed(now, host, "isolating it", &f, out),
        }
    }

    /// Another actor recovers the host: nothing more is done to it, the operators are told, and it stays
    /// counted by the storm guard.
    fn other_actor(&mut self, now: Timestamp, host: &HostId, f: &Failure, out: &mut Vec<Command>) {
        let why = format!(
            "another actor is recovering it, so freezer-dr does not isolate or evacuate it: {f}. Two \
             freezer-dr daemons without [ha], each with its own journal? Stop one; this one keeps watching \
             the host"
        );
        self.needs_operator(now, host, why, out);
    }

    pub(super) fn listed(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<Vec<Instance>, Failure>,
        out: &mut Vec<Command>,
    ) {
        let made_for = |s: &Stage| *s == Stage::Isolating { isolated: true };
        if !self.take_answer(host, HostCall::Instances, made_for) {
            return;
        }
        let list = match result {
            Ok(list) => list,
            // Another actor's marker replaced ours between isolation and listing (two daemons racing).
            Err(f) if f.kind == ErrorKind::OtherActor => {
                return self.other_actor(now, host, &f, out);
            }
            Err(f) => return self.step_failed(now, host, "listing its instances", &f, out),
        };
        // Listed again (the host was re-fenced mid-evacuation): what is known stays, an instance already
        // requested is read, not sent again; only new instances are added.
        let mut instances = self
            .hosts
            .get_mut(host)
            .map(|r| std::mem::take(&mut r.instances))
            .unwrap_or_default();
        let relisted = !instances.is_empty();
        let mut added = BTreeSet::new();
        let (mut to_move, mut skipped) = (0usize, 0usize);
        for instance in list {
            if instances.contains_key(&instance.id) {
                continue;
            }
            // Exact match only: a listing that returns another host's instance is a bug upstream.
            if instance.host != *host {
                let what = format!(
                    "ignored instance {} listed for {host} but on {:?} (not an exact match)",
                    instance.id,
                    instance.host.as_str()
                );
                self.note(now, Some(host), Some(&instance.id), what);
                continue;
            }
            let state = match self.policy_skip(&instance) {
                Some(reason) => {
                    skipped += 1;
                    InstanceState::Skipped { reason }
                }
                None => {
                    to_move += 1;
                    InstanceState::Pending { not_before: now }
                }
            };
            self.dirty_instances
                .insert((host.clone(), instance.id.clone()));
            added.insert(instance.id.clone());
            instances.insert(
                instance.id.clone(),
                InstanceRecord {
                    by_other: false,
                    instance,
                    state,
                    attempts: 0,
                    inflight: false,
                },
            );
        }
        // The report that a recovery started: the operators, and the users of every listed instance, learn
        // which instances are being moved and which stay (and why) before anything moves.
        let outcomes: Vec<InstanceOutcome> = instances
            .values()
            .filter(|i| added.contains(&i.instance.id))
            .map(|i| InstanceOutcome {
                instance: i.instance.clone(),
                attempts: 0,
                outcome: match &i.state {
                    InstanceState::Skipped { reason } => Outcome::Skipped {
                        reason: reason.clone(),
                    },
                    _ => Outcome::Evacuating,
                },
            })
            .collect();
        let how = match self.hosts.get(host).and_then(|r| r.fence.as_ref()) {
            Some(FenceRecord {
                proof: FenceProof::PowerStatus { level },
                ..
            }) => format!("power status read off through fencer[{level}]"),
            _ => "an operator confirmed it is off".to_owned(),
        };
        if let Some(rec) = self.hosts.get_mut(host) {
            rec.instances = instances;
            self.work.mark_all(host);
        }
        self.set_stage(
            now,
            host,
            Stage::Evacuating,
            format!("{to_move} instance(s) to evacuate, {skipped} left alone by policy"),
        );
        let summary = format!(
            "{host} failed and was powered off ({how}); {to_move} instance(s) are being evacuated, \
             {skipped} left alone"
        );
        if relisted && added.is_empty() {
            // Everyone was told when it was first listed.
            return;
        }
        let mut r = self.report(now, ReportKind::HostFenced, Some(host.clone()), summary);
        if !outcomes.is_empty() {
            r.audience = Audience::OperatorsAndUsers;
        }
        r.instances = outcomes;
        out.push(Command::Notify(r));
    }

    /// The per-instance policy: `Some(reason)` if the instance is left alone.
    fn policy_skip(&self, instance: &Instance) -> Option<String> {
        let policy = &self.cfg.policy;
        let flag = instance
            .metadata
            .get(&policy.metadata_key)
            .map(|v| v.trim().to_ascii_lowercase());
        let truthy = |v: &str| matches!(v, "true" | "yes" | "on" | "1");
        let falsy = |v: &str| matches!(v, "false" | "no" | "off" | "0");
        match (policy.mode, flag.as_deref()) {
            (PolicyMode::OptOut, Some(v)) if falsy(v) => {
                return Some(format!("opted out (metadata {}={v})", policy.metadata_key));
            }
            (PolicyMode::OptIn, v) if !v.is_some_and(truthy) => {
                return Some(format!(
                    "not opted in (evacuation needs metadata {}=true)",
                    policy.metadata_key
                ));
            }
            _ => {}
        }
        if policy
            .skip_states
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&instance.status))
        {
            return Some(format!("status {} is left alone", instance.status));
        }
        if !instance.volume_backed && policy.local_root_disk == LocalRootDisk::Skip {
            return Some(
                "its root disk is local: evacuating would rebuild it from its image, so it stays on the \
                 failed host until the host is repaired"
                    .to_owned(),
            );
        }
        None
    }

    pub(super) fn evacuate_sent(
        &mut self,
        now: Timestamp,
        host: &HostId,
        id: &str,
        result: Result<(), Failure>,
    ) {
        let retry_delay = self.cfg.evacuation.retry_delay;
        let attempts_allowed = self.cfg.evacuation.attempts;
        let poll = self.cfg.evacuation.poll_interval;
        let Some(inst) = self.instance_mut(host, id) else {
            return;
        };
        if !inst.inflight || !matches!(inst.state, InstanceState::Requested { .. }) {
            return;
        }
        inst.inflight = false;
        let what = match result {
            Ok(()) => {
                inst.state = InstanceState::Rebuilding {
                    since: now,
                    next_poll: now.after(poll),
                    detail: "evacuation accepted".into(),
                };
                format!("evacuation accepted (attempt {})", inst.attempts)
            }
            // Someone else already evacuates it (an evacuation we did not request): never ask again,
            // follow theirs to its end. It still counts as an attempt: the budget bounds an instance
            // that keeps coming back.
            Err(f) if f.kind == ErrorKind::OtherActor => {
                inst.by_other = true;
                inst.state = InstanceState::Rebuilding {
                    since: now,
                    next_poll: now.after(poll),
                    detail: "evacuated by another actor: tracking it".into(),
                };
                format!(
                    "already being evacuated by another actor, not by freezer-dr ({f}): tracking it"
                )
            }
            Err(f) if f.retry == Retry::Permanent => {
                retry_or_fail(
                    inst,
                    now,
                    attempts_allowed,
                    retry_delay,
                    format!("refused: {f}"),
                );
                format!("evacuation refused: {f}")
            }
            // A conflict is a definite answer (the instance is busy: a task left from before the failure,
            // locked): nothing happened, so ask again after the retry delay, within the attempt budget.
            Err(f) if f.kind == ErrorKind::Conflict => {
                retry_or_fail(
                    inst,
                    now,
                    attempts_allowed,
                    retry_delay,
                    format!("refused while busy: {f}"),
                );
                format!("evacuation refused while the instance is busy: {f}")
            }
            // The request may or may not have reached Nova: stay `Requested`; `drive` reads the progress
            // before anything is sent again.
            Err(f) => format!("evacuation request outcome unknown ({f}): checking its progress"),
        };
        self.touch_instance(now, host, id, what);
    }

    pub(super) fn progress_read(
        &mut self,
        now: Timestamp,
        host: &HostId,
        id: &str,
        result: Result<Progress, Failure>,
    ) {
        let retry_delay = self.cfg.evacuation.retry_delay;
        let attempts_allowed = self.cfg.evacuation.attempts;
        let poll = self.cfg.evacuation.poll_interval;
        let Some(inst) = self.instance_mut(host, id) else {
            return;
        };
        if !inst.inflight || !inst.state.is_active() {
            return;
        }
        // The call in flight of an instance being started is the start, not a read: a stray read is ignored.
        if matches!(inst.state, InstanceState::Starting { .. }) {
            return;
        }
        inst.inflight = false;
        let since = match &inst.state {
            InstanceState::Rebuilding { since, .. } => *since,
            InstanceState::Requested { at } => *at,
            _ => now,
        };
        let what = match result {
            Ok(Progress::Done { host: to, status }) if to == *host => {
                let reason = format!("reported {status} on the failed host itself");
                retry_or_fail(inst, now, attempts_allowed, retry_delay, reason.clone());
                reason
            }
            Ok(Progress::Done { host: to, status }) => {
                let what = format!("{status} on {to}");
                inst.state = InstanceState::Done { host: to, status };
                what
            }
            Ok(Progress::InProgress { detail }) => {
                let changed = !matches!(&inst.state, InstanceState::Rebuilding { detail: d, .. } if *d == detail);
                inst.state = InstanceState::Rebuilding {
                    since,
                    next_poll: now.after(poll),
                    detail: detail.clone(),
                };
                if !changed {
                    // Polls that change nothing are not worth a journal write.
                    return;
                }
                format!("rebuilding: {detail}")
            }
            Ok(Progress::NotStarted) => {
                let reason = "the evacuation did not start".to_owned();
                retry_or_fail(inst, now, attempts_allowed, retry_delay, reason.clone());
                reason
            }
            Ok(Progress::Busy { detail }) => {
                let reason = format!(
                    "the evacuation did not take effect: the instance is busy on the failed host ({detail})"
                );
                retry_or_fail(inst, now, attempts_allowed, retry_delay, reason.clone());
                reason
            }
            Ok(Progress::NeedsStart { host: to, status }) if to == *host => {
                let reason = format!("reported {status} on the failed host itself");
                retry_or_fail(inst, now, attempts_allowed, retry_delay, reason.clone());
                reason
            }
            Ok(Progress::NeedsStart { host: to, status }) => {
                let what = format!("{status} on {to}, running before the failure: starting it");
                inst.state = InstanceState::Starting {
                    since,
                    on: to,
                    not_before: now,
                };
                what
            }
            Ok(Progress::Failed { reason }) => {
                retry_or_fail(inst, now, attempts_allowed, retry_delay, reason.clone());
                format!("evacuation failed: {reason}")
            }
            Ok(Progress::Gone) => {
                inst.state = InstanceState::Gone;
                "deleted meanwhile".to_owned()
            }
            Err(f) => {
                // Unknown: never send again on a guess; keep reading until it is known or times out.
                inst.state = InstanceState::Rebuilding {
                    since,
                    next_poll: now.after(poll),
                    detail: format!("progress unreadable: {f}"),
                };
                format!("progress unreadable: {f}")
            }
        };
        self.touch_instance(now, host, id, what);
    }

    pub(super) fn started(
        &mut self,
        now: Timestamp,
        host: &HostId,
        id: &str,
        result: Result<(), Failure>,
    ) {
        let poll = self.cfg.evacuation.poll_interval;
        let Some(inst) = self.instance_mut(host, id) else {
            return;
        };
        let InstanceState::Starting { since, on, .. } = inst.state.clone() else {
            return;
        };
        if !inst.inflight {
            return;
        }
        inst.inflight = false;
        let what = match result {
            Ok(()) => {
                inst.state = InstanceState::Rebuilding {
                    since,
                    next_poll: now.after(poll),
                    detail: format!("start requested on {on}"),
                };
                format!("start requested on {on}")
            }
            Err(f) if f.retry == Retry::Permanent => {
                let what = format!("left SHUTOFF on {on}: it could not be started ({f})");
                inst.state = InstanceState::Done {
                    host: on,
                    status: "SHUTOFF".into(),
                };
                what
            }
            Err(f) => {
                inst.state = InstanceState::Starting {
                    since,
                    on,
                    not_before: now.after(poll),
                };
                format!("start failed, trying again: {f}")
            }
        };
        self.touch_instance(now, host, id, what);
    }

    pub(super) fn finish_evacuation(
        &mut self,
        now: Timestamp,
        host: &HostId,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get(host) else {
            return;
        };
        let outcomes: Vec<InstanceOutcome> = rec
            .instances
            .values()
            .map(|i| InstanceOutcome {
                instance: i.instance.clone(),
                attempts: i.attempts,
                outcome: match &i.state {
                    InstanceState::Done { host, status } => Outcome::Evacuated {
                        to: host.clone(),
                        status: status.clone(),
                    },
                    InstanceState::Skipped { reason } => Outcome::Skipped {
                        reason: reason.clone(),
                    },
                    InstanceState::Gone => Outcome::Gone,
                    InstanceState::Failed { reason } => Outcome::Failed {
                        reason: reason.clone(),
                    },
                    other => Outcome::Failed {
                        reason: format!("unfinished ({})", other.name()),
                    },
                },
            })
            .collect();
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(&o.outcome)).count();
        let moved = count(|o| matches!(o, Outcome::Evacuated { .. }));
        let failed = count(|o| matches!(o, Outcome::Failed { .. }));
        let skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
        let summary = format!(
            "{host}: {moved} of {} instance(s) running elsewhere, {failed} failed, {skipped} left alone",
            outcomes.len()
        );
        self.set_stage(now, host, Stage::Evacuated, summary.clone());
        let timeline = self.timeline(host);
        let by_other: Vec<String> = self
            .hosts
            .get(host)
            .map(|r| {
                r.instances
                    .values()
                    .filter(|i| i.by_other)
                    .map(|i| {
                        format!(
                            "{} ({}) was evacuated by another actor, not by freezer-dr: followed to its end",
                            i.instance.name, i.instance.id
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut r = self.report(now, ReportKind::Recovered, Some(host.clone()), summary);
        r.audience = if outcomes.is_empty() {
            Audience::Operators
        } else {
            Audience::OperatorsAndUsers
        };
        r.details = timeline;
        r.details.extend(by_other);
        r.instances = outcomes;
        out.push(Command::Notify(r));
    }
}

/// Another attempt if the budget allows, else failed for good.
fn retry_or_fail(
    inst: &mut InstanceRecord,
    now: Timestamp,
    attempts_allowed: u32,
    retry_delay: std::time::Duration,
    reason: String,
) {
    inst.state = if inst.attempts < attempts_allowed {
        InstanceState::Pending {
            not_before: now.after(retry_delay),
        }
    } else {
        InstanceState::Failed {
            reason: format!("{reason} (after {} attempt(s))", inst.attempts),
        }
    };
}
