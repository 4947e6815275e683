//! The transition logic: inputs update the state, then [`Engine::drive`] derives the due commands from the
//! state alone (so a restart, which loses nothing but what was in flight, derives the same work).

use std::collections::BTreeSet;

use super::state::HostCall;
use super::{
    Command, Engine, FenceProof, FenceRecord, HistoryEvent, HostRecord, Input, InstanceRecord,
    InstanceState, OperatorRequest, Stage,
};
use crate::engine::policy::{LocalRootDisk, PolicyMode, ReturnToService};
use crate::{
    Audience, ErrorKind, Failure, Health, HostHealth, HostId, Instance, InstanceOutcome, Outcome,
    PowerState, Progress, Report, ReportKind, Retry, Timestamp,
};

/// Consecutive temporary failures of a host-level step after which the operators are told (it keeps
/// being retried).
const ALERT_AFTER_FAILURES: u32 = 3;

impl Engine {
    /// Feeds one input at time `now` and returns the commands to run next, in order.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Observed(Ok(hosts)) => self.observed(now, hosts, &mut out),
            Input::Observed(Err(f)) => self.observation_failed(now, &f, &mut out),
            Input::PoweredOff {
                host,
                level,
                result,
            } => self.powered_off(now, &host, level, result, &mut out),
            Input::PowerRead {
                host,
                level,
                result,
            } => self.power_read(now, &host, level, result),
            Input::Isolated { host, result } => self.isolated(now, &host, result, &mut out),
            Input::Listed { host, result } => self.listed(now, &host, result, &mut out),
            Input::EvacuateSent {
                host,
                instance,
                result,
            } => self.evacuate_sent(now, &host, &instance, result),
            Input::ProgressRead {
                host,
                instance,
                result,
            } => self.progress_read(now, &host, &instance, result),
            Input::Started {
                host,
                instance,
                result,
            } => self.started(now, &host, &instance, result),
            Input::Restored { host, result } => self.restored(now, &host, result, &mut out),
            Input::Operator(request) => self.operator(now, request, &mut out),
        }
        self.drive(now, &mut out);
        out
    }

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

    // ----- observation -------------------------------------------------------------------------------

    fn observation_failed(&mut self, now: Timestamp, f: &Failure, out: &mut Vec<Command>) {
        self.meta.observation_failures = self.meta.observation_failures.saturating_add(1);
        self.meta_dirty = true;
        if self.meta.observation_failures >= self.cfg.strikes.max(1)
            && !self.meta.observation_alerted
        {
            self.meta.observation_alerted = true;
            let n = self.meta.observation_failures;
            self.note(
                now,
                None,
                None,
                format!("observation failing ({n} in a row): {f}"),
            );
            let mut r = self.report(
                now,
                ReportKind::ObservationFailing,
                None,
                format!("freezer-dr cannot observe the compute hosts ({n} failures in a row)"),
            );
            r.details.push(format!("last error: {f}"));
            r.details.push(
                "Nothing is fenced or evacuated while the hosts cannot be observed.".to_owned(),
            );
            out.push(Command::Notify(r));
        }
    }

    fn observed(&mut self, now: Timestamp, observed: Vec<HostHealth>, out: &mut Vec<Command>) {
        if self.meta.observation_failures > 0 {
            self.meta.observation_failures = 0;
            self.meta_dirty = true;
            if std::mem::take(&mut self.meta.observation_alerted) {
                self.resolved(now, "observation works again", out);
            }
        }

        // Hosts an operator disabled (maintenance) are neither counted nor acted on.
        let mut total = 0usize;
        let mut down = 0usize;
        for h in observed.iter().filter(|h| !h.admin.disabled_by_operator()) {
            total += 1;
            down += usize::from(h.health.is_down());
        }

        // Every host stale at once means the data source is broken, not the hosts.
        let all_stale = total > 0 && down == total;
        let listed: BTreeSet<HostId> = observed.iter().map(|h| h.host.clone()).collect();
        self.track_absent(now, &listed, out);
        for h in observed {
            let rec = self
                .hosts
                .entry(h.host.clone())
                .or_insert_with(|| HostRecord::new(h.host.clone(), now));
            if (rec.health != h.health || rec.admin != h.admin || rec.absent_since.is_some())
                && let Some(rec) = self.host_mut(&h.host)
            {
                rec.health = h.health;
                rec.admin = h.admin;
                rec.absent_since = None;
            }
            if !all_stale {
                self.advance_on_observation(now, &h.host, out);
                self.void_proof_if_alive(now, &h.host, out);
            }
        }
        if all_stale {
            if !self.meta.stale_alerted {
                self.meta.stale_alerted = true;
                self.meta_dirty = true;
                self.note(
                    now,
                    None,
                    None,
                    format!("all {total} hosts look down: refusing to act"),
                );
                let mut r = self.report(
                    now,
                    ReportKind::AllStale,
                    None,
                    format!("all {total} compute hosts look down at once: nothing will be fenced"),
                );
                r.details.push(
                    "When every service is stale at once the monitor's data source (database, message \
                     queue, clock) is the likely fault, not the hosts."
                        .to_owned(),
                );
                out.push(Command::Notify(r));
            }
            return;
        }
        if std::mem::take(&mut self.meta.stale_alerted) {
            self.meta_dirty = true;
            self.resolved(now, "hosts no longer all look down", out);
        }
        self.start_fencings(now, total, out);
    }

    /// Hosts the monitors no longer list (DESIGN §5.9): a suspect loses its strikes at once (it is never
    /// fenced); a host in recovery is reported once, then forgotten after `forget_after`.
    fn track_absent(&mut self, now: Timestamp, listed: &BTreeSet<HostId>, out: &mut Vec<Command>) {
        let forget_after = self.cfg.forget_after;
        let absent: Vec<(HostId, Stage, Option<Timestamp>)> = self
            .hosts
            .values()
            .filter(|h| h.stage != Stage::Healthy && !listed.contains(&h.host))
            .map(|h| (h.host.clone(), h.stage.clone(), h.absent_since))
            .collect();
        for (host, stage, since) in absent {
            match (stage, since) {
                (Stage::Suspect { .. }, _) => self.set_stage(
                    now,
                    &host,
                    Stage::Healthy,
                    "no longer listed by the monitors: strikes dropped, never fenced",
                ),
                (stage, None) => {
                    if let Some(rec) = self.host_mut(&host) {
                        rec.absent_since = Some(now);
                    }
                    let summary = format!(
                        "{host} is no longer listed by the monitors (at stage {}): it is forgotten in {} \
                         unless it is listed again",
                        stage.name(),
                        humantime::format_duration(forget_after)
                    );
                    self.note(now, Some(&host), None, summary.clone());
                    let mut r =
                        self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
                    r.details.push(format!(
                        "Decommissioned or renamed? `freezer-dr forget {host}` forgets it now; until then \
                         it counts against the storm budget."
                    ));
                    out.push(Command::Notify(r));
                }
                (stage, Some(t)) if now.since(t) >= forget_after => {
                    let why = format!(
                        "not listed by the monitors for {} (at stage {})",
                        humantime::format_duration(now.since(t)),
                        stage.name()
                    );
                    self.forget(now, &host, &why, out);
                }
                _ => {}
            }
        }
    }

    /// Stops tracking a host's recovery: it no longer counts against the storm budget.
    fn forget(&mut self, now: Timestamp, host: &HostId, why: &str, out: &mut Vec<Command>) {
        let summary =
            format!("{host} forgotten: {why}; it no longer counts against the storm budget");
        let timeline: Vec<String> = self
            .hosts
            .get(host)
            .map(|r| {
                r.timeline
                    .iter()
                    .map(|(t, w)| format!("{t}  {w}"))
                    .collect()
            })
            .unwrap_or_default();
        self.back_to_healthy(now, host, &summary);
        if let Some(rec) = self.host_mut(host) {
            rec.absent_since = None;
        }
        let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
        r.details = timeline;
        out.push(Command::Notify(r));
    }

    /// Moves one observed host along according to its fresh health.
    fn advance_on_observation(&mut self, now: Timestamp, host: &HostId, out: &mut Vec<Command>) {
        let Some(rec) = self.hosts.get(host) else {
            return;
        };
        let strikes_needed = self.cfg.strikes.max(1);
        let operator_disabled = rec.admin.disabled_by_operator();
        let up = rec.health == Health::Up;
        let down = rec.health.is_down();
        match &rec.stage {
            Stage::Healthy if down && !operator_disabled => {
                if rec.admin.isolated_by_freezer_dr() {
                    // Isolated by freezer-dr, yet the journal knows no recovery: never guess.
                    // A marker naming another journal is read as another actor at isolation, so a
                    // `recover` alone would stop there: say what to clear first.
                    let why = "down and carrying freezer-dr's isolation marker, but this journal has no \
                               recovery for it (another freezer-dr, or a lost journal?): check it; if no \
                               other freezer-dr acts on it, enable it in Nova (or clear its \
                               disabled_reason), then `freezer-dr recover` it"
                        .to_owned();
                    self.needs_operator(now, host, why, out);
                } else {
                    let reason = match &rec.health {
                        Health::Down { reason } => reason.clone(),
                        _ => String::new(),
                    };
                    self.set_stage(
                        now,
                        host,
                        Stage::Suspect {
                            strikes: 1,
                            since: now,
                        },
                        format!("observed down (strike 1 of {strikes_needed}): {reason}"),
                    );
                }
            }
            Stage::Suspect { strikes, since } => {
                let (strikes, since) = (*strikes, *since);
                if operator_disabled {
                    self.set_stage(
                        now,
                        host,
                        Stage::Healthy,
                        "disabled by an operator: left alone",
                    );
                } else if down && strikes < strikes_needed {
                    let n = strikes + 1;
                    self.set_stage(
                        now,
                        host,
                        Stage::Suspect { strikes: n, since },
                        format!("observed down (strike {n} of {strikes_needed})"),
                    );
                } else if up {
                    self.set_stage(
                        now,
                        host,
                        Stage::Healthy,
                        format!("up again after {strikes} strike(s): not a failure"),
                    );
                }
            }
            Stage::Restoring if down => {
                let streak = rec.down_streak + 1;
                if streak >= strikes_needed && self.meta.storm_since.is_none() {
                    self.start_recovery(
                        now,
                        host,
                        &format!("down again while being returned to service ({streak} observations in a row)"),
                        out,
                    );
                } else if let Some(rec) = self.host_mut(host) {
                    rec.down_streak = streak;
                }
            }
            Stage::Restoring if up && rec.down_streak > 0 => {
                if let Some(rec) = self.host_mut(host) {
                    rec.down_streak = 0;
                }
            }
            Stage::Evacuated if !up => {
                if rec.up_streak > 0
                    && let Some(rec) = self.host_mut(host)
                {
                    rec.up_streak = 0;
                }
            }
            Stage::Evacuated => match self.cfg.return_to_service {
                ReturnToService::Auto => {
                    let streak = rec.up_streak + 1;
                    if streak >= strikes_needed {
                        self.set_stage(
                            now,
                            host,
                            Stage::Restoring,
                            format!("reports up again ({streak} observations in a row): returning it to service"),
                        );
                    } else if let Some(rec) = self.host_mut(host) {
                        rec.up_streak = streak;
                    }
                }
                ReturnToService::Manual => {
                    if !rec.admin.disabled && !rec.admin.forced_down {
                        self.back_to_healthy(now, host, "enabled by an operator: healthy again");
                    }
                }
            },
            Stage::NeedsOperator { .. }
                if rec.fence.is_none()
                    && up
                    && !rec.admin.forced_down
                    && !rec.admin.isolated_by_freezer_dr() =>
            {
                self.back_to_healthy(
                    now,
                    host,
                    "reports up again and was never isolated: healthy again",
                );
            }
            _ => {}
        }
    }

    /// A fence proof is only as old as the last sign of life (DESIGN §5.8): a fenced host that reports up
    /// again loses its proof. Mid-isolation or mid-evacuation that stops every write to it until its
    /// power is read again (and it is fenced again if on); the operators are told, as someone powered a
    /// fenced host on.
    fn void_proof_if_alive(&mut self, now: Timestamp, host: &HostId, out: &mut Vec<Command>) {
        if !self
            .hosts
            .get(host)
            .is_some_and(|rec| rec.health == Health::Up && rec.fence.is_some())
        {
            return;
        }
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        rec.fence = None;
        let stage = rec.stage.clone();
        if matches!(stage, Stage::Isolating { .. } | Stage::Evacuating) {
            // Answers to calls in flight are ignored from here; after the power read the instances are
            // listed again and every one already requested is read, not sent again.
            for i in rec.instances.values_mut() {
                i.inflight = false;
            }
            let why = format!(
                "seen alive after it was fenced (at stage {}): the fence proof is void; nothing more is                  done to it until its power reads off again (it is powered off again if it reads on)",
                stage.name()
            );
            self.set_stage(
                now,
                host,
                Stage::Fencing {
                    level: 0,
                    attempted: true,
                },
                why.clone(),
            );
            let summary = format!("{host} was seen alive after it was fenced: re-fencing it");
            let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
            r.details.push(why);
            r.details.push(
                "Someone or something powered it on (or its power controller lied): check it."
                    .into(),
            );
            out.push(Command::Notify(r));
        } else {
            self.note(
                now,
                Some(host),
                None,
                format!(
                    "reports up at stage {}: its fence proof is void (a recover reads its power first)",
                    stage.name()
                ),
            );
        }
    }

    /// The storm guard and the per-cycle budget, then the start of each allowed recovery.
    fn start_fencings(&mut self, now: Timestamp, total: usize, out: &mut Vec<Command>) {
        let storm = self.cfg.storm.clone();
        let needed = self.cfg.strikes.max(1);
        let mut candidates: Vec<(Timestamp, HostId)> = self
            .hosts
            .values()
            .filter_map(|h| match h.stage {
                Stage::Suspect { strikes, since } if strikes >= needed => {
                    Some((since, h.host.clone()))
                }
                _ => None,
            })
            .collect();
        candidates.sort();
        // Hosts down or in recovery (fenced and not yet restored) all count against the budget.
        let affected: Vec<HostId> = self
            .hosts
            .values()
            .filter(|h| h.stage != Stage::Healthy)
            .map(|h| h.host.clone())
            .collect();
        let storm_now = self.over_budget(affected.len(), total);

        if storm_now {
            if self.meta.calm_since.take().is_some() {
                self.meta_dirty = true;
            }
            if self.meta.storm_since.is_none() && !candidates.is_empty() {
                self.meta.storm_since = Some(now);
                self.meta_dirty = true;
                let names: Vec<String> = affected.iter().map(|h| h.to_string()).collect();
                let summary = format!(
                    "storm: {} of {total} hosts down or in recovery (budget: {} hosts, {:.0}%): nothing \
                     will be fenced",
                    affected.len(),
                    storm.max_hosts,
                    storm.max_fraction * 100.0
                );
                self.note(now, None, None, summary.clone());
                let mut r = self.report(now, ReportKind::Storm, None, summary);
                r.details.push(format!("hosts: {}", names.join(", ")));
                r.details.push(format!(
                    "Fencing resumes once the picture has been within budget for {}.",
                    humantime::format_duration(storm.cooldown)
                ));
                out.push(Command::Notify(r));
            }
        } else if self.meta.storm_since.is_some() {
            let calm = *self.meta.calm_since.get_or_insert(now);
            self.meta_dirty = true;
            if now.since(calm) >= storm.cooldown {
                self.meta.storm_since = None;
                self.meta.calm_since = None;
                self.resolved(now, "storm over: within budget for the whole cooldown", out);
            }
        }
        if self.meta.storm_since.is_some() || candidates.is_empty() {
            return;
        }
        if let Some(reason) = self.meta.paused.clone() {
            for (_, host) in candidates {
                if !self.meta.paused_reported.contains(&host) {
                    self.meta.paused_reported.push(host.clone());
                    self.meta_dirty = true;
                    let summary =
                        format!("{host} is down but freezer-dr is paused: not fencing it");
                    self.note(now, Some(&host), None, summary.clone());
                    let mut r = self.report(now, ReportKind::Brake, Some(host), summary);
                    r.details.push(format!("paused: {reason}"));
                    out.push(Command::Notify(r));
                }
            }
            return;
        }
        for (_, host) in candidates
            .into_iter()
            .take(storm.max_new_fencings_per_cycle)
        {
            self.start_recovery(now, &host, "down for the whole strike count", out);
        }
    }

    /// The storm condition: more hosts down or in recovery than the budget allows, of `total` observed.
    fn over_budget(&self, affected: usize, total: usize) -> bool {
        let storm = &self.cfg.storm;
        affected > storm.max_hosts || affected as f64 > storm.max_fraction * total as f64
    }

    /// Why the storm guard refuses an operator's `recover` of `host` now, if it does: a storm episode is
    /// on, or recovering it would take the hosts in recovery past the budget.
    fn storm_refuses(&self, host: &HostId) -> Option<String> {
        if self.meta.storm_since.is_some() {
            return Some("a storm is on (too many hosts down at once)".into());
        }
        let counted = |h: &HostRecord| h.stage != Stage::Healthy || h.host == *host;
        let affected = self.hosts.values().filter(|h| counted(h)).count();
        let total = self
            .hosts
            .values()
            .filter(|h| !h.admin.disabled_by_operator())
            .count();
        self.over_budget(affected, total).then(|| {
            format!(
                "recovering it would make {affected} of {total} hosts down or in recovery (budget: {} \
                 hosts, {:.0}%)",
                self.cfg.storm.max_hosts,
                self.cfg.storm.max_fraction * 100.0
            )
        })
    }

    fn start_recovery(&mut self, now: Timestamp, host: &HostId, why: &str, out: &mut Vec<Command>) {
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        rec.recovery = Some(format!("{host}@{}", now.as_millis()));
        rec.timeline.clear();
        rec.fence = None;
        self.clear_instances(host);
        if self.levels == 0 {
            self.needs_operator(
                now,
                host,
                "no fencer is configured: nothing can power it off".into(),
                out,
            );
            return;
        }
        self.set_stage(
            now,
            host,
            Stage::Fencing {
                level: 0,
                attempted: false,
            },
            format!("recovery started ({why}): fencing"),
        );
    }

    // ----- fencing -----------------------------------------------------------------------------------

    fn powered_off(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        if !self.take_pending(host, HostCall::PowerOff(level)) {
            return;
        }
        let Some(rec) = self.hosts.get(host) else {
            return;
        };
        // The in-flight call carried the level (checked above); only the stage may have moved on (an
        // operator confirmed the host off meanwhile).
        if !matches!(rec.stage, Stage::Fencing { .. }) {
            return;
        }
        match result {
            Ok(()) => {
                let deadline = now.after(self.cfg.fencing.confirm_timeout);
                self.set_stage(
                    now,
                    host,
                    Stage::Verifying {
                        level,
                        deadline,
                        next_poll: now,
                        last: None,
                    },
                    format!("fencer[{level}] accepted the power-off: verifying"),
                );
            }
            Err(f) => self.next_level(
                now,
                host,
                level,
                format!("fencer[{level}] could not power it off: {f}"),
                out,
            ),
        }
    }

    fn power_read(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        result: Result<PowerState, Failure>,
    ) {
        if !self.take_pending(host, HostCall::PowerStatus(level)) {
            return;
        }
        let Some(stage) = self.stage_of(host).cloned() else {
            return;
        };
        match stage {
            // Re-check after a restart: a power-off may or may not have been sent.
            Stage::Fencing {
                attempted: true, ..
            } => match result {
                Ok(PowerState::Off) => self.confirm(now, host, FenceProof::PowerStatus { level }),
                Ok(state) => self.set_stage(
                    now,
                    host,
                    Stage::Fencing {
                        level,
                        attempted: false,
                    },
                    format!("power status reads {state}: powering it off"),
                ),
                Err(f) => {
                    let deadline = now.after(self.cfg.fencing.confirm_timeout);
                    self.set_stage(
                        now,
                        host,
                        Stage::Verifying {
                            level,
                            deadline,
                            next_poll: now.after(self.cfg.fencing.poll_interval),
                            last: Some(format!("unreadable: {f}")),
                        },
                        format!("power status unreadable after a restart: verifying ({f})"),
                    );
                }
            },
            Stage::Verifying { deadline, .. } => match result {
                Ok(PowerState::Off) => self.confirm(now, host, FenceProof::PowerStatus { level }),
                other => {
                    let last = match other {
                        Ok(state) => format!("reads {state}"),
                        Err(f) => format!("unreadable: {f}"),
                    };
                    let next_poll = now.after(self.cfg.fencing.poll_interval);
                    if let Some(rec) = self.host_mut(host) {
                        rec.stage = Stage::Verifying {
                            level,
                            deadline,
                            next_poll,
                            last: Some(last),
                        };
                    }
                }
            },
            _ => {}
        }
    }

    /// Gives up a fencing level: the next level, or a person when none is left.
    fn next_level(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        why: String,
        out: &mut Vec<Command>,
    ) {
        if level + 1 < self.levels {
            self.set_stage(
                now,
                host,
                Stage::Fencing {
                    level: level + 1,
                    attempted: false,
                },
                format!("{why}; trying fencer[{}]", level + 1),
            );
        } else {
            self.note(now, Some(host), None, why.clone());
            self.needs_operator(
                now,
                host,
                format!(
                    "fencing not confirmed ({why}); nothing was isolated or evacuated. Check the host \
                     and its power controller, then `freezer-dr confirm-off {host}` if it is off"
                ),
                out,
            );
        }
    }

    /// Mints the proof: the only way into isolation.
    fn confirm(&mut self, now: Timestamp, host: &HostId, proof: FenceProof) {
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        let recovery = rec
            .recovery
            .get_or_insert_with(|| format!("{host}@{}", now.as_millis()))
            .clone();
        let how = match &proof {
            FenceProof::PowerStatus { level } => {
                format!("power status read off through fencer[{level}]")
            }
            FenceProof::Operator => "an operator confirmed it is off".to_owned(),
        };
        rec.fence = Some(FenceRecord {
            at: now,
            proof,
            recovery,
        });
        self.set_stage(
            now,
            host,
            Stage::Isolating { isolated: false },
            format!("confirmed off ({how}): isolating"),
        );
    }

    // ----- isolation and listing ---------------------------------------------------------------------

    fn isolated(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        if !self.take_pending(host, HostCall::Isolate) {
            return;
        }
        if !matches!(
            self.stage_of(host),
            Some(Stage::Isolating { isolated: false })
        ) {
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

    fn listed(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<Vec<Instance>, Failure>,
        out: &mut Vec<Command>,
    ) {
        if !self.take_pending(host, HostCall::Instances) {
            return;
        }
        if !matches!(
            self.stage_of(host),
            Some(Stage::Isolating { isolated: true })
        ) {
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

    // ----- instances ---------------------------------------------------------------------------------

    fn evacuate_sent(
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

    fn progress_read(
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

    fn started(&mut self, now: Timestamp, host: &HostId, id: &str, result: Result<(), Failure>) {
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

    // ----- return to service -------------------------------------------------------------------------

    fn restored(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        if !self.take_pending(host, HostCall::Restore) {
            return;
        }
        if self.stage_of(host) != Some(&Stage::Restoring) {
            return;
        }
        match result {
            Ok(()) => {
                self.back_to_healthy(
                    now,
                    host,
                    "returned to service (forced_down unset, enabled)",
                );
                let summary = format!("{host} was repaired and returned to service");
                let r = self.report(now, ReportKind::Restored, Some(host.clone()), summary);
                out.push(Command::Notify(r));
            }
            Err(f) => self.step_failed(now, host, "returning it to service", &f, out),
        }
    }

    // ----- operators ---------------------------------------------------------------------------------

    fn operator(&mut self, now: Timestamp, request: OperatorRequest, out: &mut Vec<Command>) {
        match request {
            OperatorRequest::Pause { reason } => {
                self.meta.paused = Some(reason.clone());
                self.meta.paused_reported.clear();
                self.meta_dirty = true;
                let summary = format!("paused by an operator: {reason}");
                self.note(now, None, None, summary.clone());
                let mut r = self.report(now, ReportKind::Brake, None, summary);
                r.details.push(
                    "Hosts are still observed and reported; nothing is fenced, isolated, evacuated or \
                     restored until `freezer-dr resume`."
                        .to_owned(),
                );
                out.push(Command::Notify(r));
            }
            OperatorRequest::Resume => {
                if self.meta.paused.take().is_some() {
                    self.meta.paused_reported.clear();
                    self.meta_dirty = true;
                    self.note(now, None, None, "resumed by an operator".to_owned());
                    let r = self.report(now, ReportKind::Brake, None, "resumed by an operator");
                    out.push(Command::Notify(r));
                }
            }
            OperatorRequest::Recover {
                host,
                despite_storm,
            } => self.operator_recover(now, &host, despite_storm, out),
            OperatorRequest::Forget { host } => self.operator_forget(now, &host, out),
            OperatorRequest::ConfirmOff { host } => {
                let Some(rec) = self.hosts.get(&host) else {
                    self.note(
                        now,
                        Some(&host),
                        None,
                        "operator confirmed an unknown host off: ignored".into(),
                    );
                    return;
                };
                if rec.fence.is_some() {
                    self.note(
                        now,
                        Some(&host),
                        None,
                        "operator confirmed it off: already confirmed".into(),
                    );
                    return;
                }
                match rec.stage {
                    Stage::Healthy
                    | Stage::Suspect { .. }
                    | Stage::Fencing { .. }
                    | Stage::Verifying { .. }
                    | Stage::NeedsOperator { .. } => {
                        self.confirm(now, &host, FenceProof::Operator);
                    }
                    ref other => {
                        let what = format!(
                            "operator confirmed it off at stage {}: ignored",
                            other.name()
                        );
                        self.note(now, Some(&host), None, what);
                    }
                }
            }
        }
    }

    fn operator_forget(&mut self, now: Timestamp, host: &HostId, out: &mut Vec<Command>) {
        let Some(rec) = self.hosts.get(host) else {
            return self.note(
                now,
                Some(host),
                None,
                "operator asked to forget an unknown host: ignored".into(),
            );
        };
        let under_way = matches!(
            rec.stage,
            Stage::Fencing { .. }
                | Stage::Verifying { .. }
                | Stage::Isolating { .. }
                | Stage::Evacuating
                | Stage::Restoring
        );
        if rec.stage == Stage::Healthy || (under_way && rec.absent_since.is_none()) {
            let what = format!(
                "operator asked to forget it at stage {}: refused (nothing to forget, or a recovery of a \
                 host the monitors list is under way: `freezer-dr pause` first)",
                rec.stage.name()
            );
            return self.note(now, Some(host), None, what);
        }
        self.forget(now, host, "forgotten by an operator", out);
    }

    fn operator_recover(
        &mut self,
        now: Timestamp,
        host: &HostId,
        despite_storm: bool,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get(host) else {
            self.note(
                now,
                Some(host),
                None,
                "operator asked to recover an unknown host: ignored".into(),
            );
            return;
        };
        let stage = rec.stage.clone();
        if !matches!(
            stage,
            Stage::Healthy | Stage::Suspect { .. } | Stage::NeedsOperator { .. }
        ) {
            let what = format!(
                "operator asked to recover it, but a recovery is already at stage {}: ignored",
                stage.name()
            );
            return self.note(now, Some(host), None, what);
        }
        if let Some(why) = self.storm_refuses(host) {
            if !despite_storm {
                let summary = format!(
                    "{host}: `recover` refused: {why}. Nothing was done; `freezer-dr recover {host} \
                     --despite-storm` overrides the storm guard"
                );
                self.note(now, Some(host), None, summary.clone());
                let r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
                out.push(Command::Notify(r));
                return;
            }
            let summary = format!(
                "{host}: recovering it at an operator's request despite the storm guard: {why}"
            );
            self.note(now, Some(host), None, summary.clone());
            let mut r = self.report(now, ReportKind::Storm, Some(host.clone()), summary);
            r.details.push(
                "An operator overrode the storm budget with `recover --despite-storm`.".into(),
            );
            out.push(Command::Notify(r));
        }
        if let Stage::NeedsOperator { .. } = stage
            && self.levels > 0
        {
            // Whatever it went through before, its power is read first (it is powered off again if it
            // reads on): an old fence proof is never reused.
            if let Some(rec) = self.host_mut(host) {
                rec.fence = None;
                rec.recovery
                    .get_or_insert_with(|| format!("{host}@{}", now.as_millis()));
            }
            self.set_stage(
                now,
                host,
                Stage::Fencing {
                    level: 0,
                    attempted: true,
                },
                "operator asked to recover it: reading its power first",
            );
        } else {
            self.start_recovery(now, host, "requested by an operator", out);
        }
    }

    // ----- deriving commands from state --------------------------------------------------------------

    /// Emits every command that is due, from the state alone.
    fn drive(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        if self.draining {
            return;
        }
        let paused = self.meta.paused.is_some();
        let busy: Vec<HostId> = self
            .hosts
            .values()
            .filter(|h| {
                matches!(
                    h.stage,
                    Stage::Fencing { .. }
                        | Stage::Verifying { .. }
                        | Stage::Isolating { .. }
                        | Stage::Evacuating
                        | Stage::Restoring
                )
            })
            .map(|h| h.host.clone())
            .collect();
        let mut active = self.active_evacuations();
        for host in &busy {
            self.drive_host(now, host, paused, &mut active, out);
        }
    }

    fn drive_host(
        &mut self,
        now: Timestamp,
        host: &HostId,
        paused: bool,
        active: &mut usize,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get_mut(host) else {
            return;
        };
        if rec.stage == Stage::Evacuating {
            return self.drive_instances(now, host, paused, active, out);
        }
        let restore_timeout = self.cfg.restore_timeout;
        if rec.stage == Stage::Restoring
            && rec.pending.is_none()
            && now.since(rec.since) >= restore_timeout
        {
            let why = format!(
                "not returned to service within {}: check its nova-compute and the service record in \
                 Nova, then enable it by hand (or `freezer-dr recover` it if it is dead)",
                humantime::format_duration(restore_timeout)
            );
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
                InstanceState::Starting {
                    since,
                    on,
                    not_before,
                } => {
                    if now.since(*since) >= evac.timeout {
                        *active = active.saturating_sub(1);
                        let reason = format!(
                            "rebuilt on {on} but not running within {}: it could not be started",
                            humantime::format_duration(evac.timeout)
                        );
                        events.push((id.clone(), reason.clone()));
                        inst.state = InstanceState::Failed { reason };
                    } else {
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
                }
                InstanceState::Rebuilding {
                    since,
                    next_poll,
                    detail,
                } => {
                    if now.since(*since) >= evac.timeout {
                        *active = active.saturating_sub(1);
                        let reason = format!(
                            "not running elsewhere within {} (last seen: {detail})",
                            humantime::format_duration(evac.timeout)
                        );
                        events.push((id.clone(), reason.clone()));
                        inst.state = InstanceState::Failed { reason };
                    } else {
                        all_done = false;
                        if now >= *next_poll {
                            inst.inflight = true;
                            out.push(Command::Progress {
                                host: host.clone(),
                                instance: inst.instance.clone(),
                            });
                        }
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

    fn finish_evacuation(&mut self, now: Timestamp, host: &HostId, out: &mut Vec<Command>) {
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
        let timeline: Vec<String> = self
            .hosts
            .get(host)
            .map(|r| {
                r.timeline
                    .iter()
                    .map(|(t, w)| format!("{t}  {w}"))
                    .collect()
            })
            .unwrap_or_default();
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

    // ----- helpers -----------------------------------------------------------------------------------

    fn stage_of(&self, host: &HostId) -> Option<&Stage> {
        self.hosts.get(host).map(|h| &h.stage)
    }

    /// The host's record, marked changed: the journal writes it with the next
    /// [`take_changes`](Engine::take_changes). Every change to what is stored of a host goes through
    /// here (a missed mark loses the change after a crash; an extra one costs a write). Only what is not
    /// stored with the record is reached through `hosts.get_mut`: the call in flight (`pending`) and the
    /// instance records (journaled on their own, see [`Engine::touch_instance`]).
    fn host_mut(&mut self, host: &HostId) -> Option<&mut HostRecord> {
        let rec = self.hosts.get_mut(host)?;
        self.dirty_hosts.insert(host.clone());
        Some(rec)
    }

    fn instance_mut(&mut self, host: &HostId, id: &str) -> Option<&mut InstanceRecord> {
        let rec = self.hosts.get_mut(host)?;
        if rec.stage != Stage::Evacuating {
            return None;
        }
        rec.instances.get_mut(id)
    }

    /// Clears the host's in-flight call if it is `call`; false (ignore the result) otherwise.
    fn take_pending(&mut self, host: &HostId, call: HostCall) -> bool {
        match self.hosts.get_mut(host) {
            Some(rec) if rec.pending == Some(call) => {
                rec.pending = None;
                true
            }
            _ => false,
        }
    }

    fn set_stage(&mut self, now: Timestamp, host: &HostId, stage: Stage, what: impl Into<String>) {
        let what = what.into();
        if let Some(rec) = self.host_mut(host) {
            rec.stage = stage;
            rec.since = now;
            rec.failures = 0;
            rec.up_streak = 0;
            rec.down_streak = 0;
            rec.retry_at = None;
            if rec.recovery.is_some() {
                rec.timeline.push((now, what.clone()));
            }
        }
        self.note(now, Some(host), None, what);
    }

    fn back_to_healthy(&mut self, now: Timestamp, host: &HostId, what: &str) {
        self.set_stage(now, host, Stage::Healthy, what);
        if let Some(rec) = self.host_mut(host) {
            rec.fence = None;
            rec.recovery = None;
            rec.timeline.clear();
        }
        self.clear_instances(host);
    }

    /// Drops the host's instance records (the journal deletes them with the next changes).
    fn clear_instances(&mut self, host: &HostId) {
        if let Some(rec) = self.hosts.get_mut(host)
            && !rec.instances.is_empty()
        {
            rec.instances.clear();
            self.cleared.insert(host.clone());
        }
    }

    fn needs_operator(
        &mut self,
        now: Timestamp,
        host: &HostId,
        why: String,
        out: &mut Vec<Command>,
    ) {
        self.set_stage(
            now,
            host,
            Stage::NeedsOperator { why: why.clone() },
            why.clone(),
        );
        let summary = format!("{host} needs an operator: {why}");
        let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
        if let Some(rec) = self.hosts.get(host) {
            r.details = rec
                .timeline
                .iter()
                .map(|(t, w)| format!("{t}  {w}"))
                .collect();
        }
        out.push(Command::Notify(r));
    }

    /// A host-level step failed even after the runtime's retries.
    fn step_failed(
        &mut self,
        now: Timestamp,
        host: &HostId,
        doing: &str,
        f: &Failure,
        out: &mut Vec<Command>,
    ) {
        if f.retry == Retry::Permanent {
            return self.needs_operator(now, host, format!("{doing} failed: {f}"), out);
        }
        let retry_at = now.after(self.cfg.step_retry);
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        rec.failures = rec.failures.saturating_add(1);
        rec.retry_at = Some(retry_at);
        let failures = rec.failures;
        let what = format!("{doing} failed ({failures} in a row), retrying at {retry_at}: {f}");
        self.note(now, Some(host), None, what.clone());
        if failures == ALERT_AFTER_FAILURES {
            let summary = format!("{host}: {doing} keeps failing; freezer-dr keeps retrying");
            let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
            r.details.push(what);
            out.push(Command::Notify(r));
        }
    }

    fn resolved(&mut self, now: Timestamp, what: &str, out: &mut Vec<Command>) {
        self.meta_dirty = true;
        self.note(now, None, None, what.to_owned());
        let r = self.report(now, ReportKind::Resolved, None, what);
        out.push(Command::Notify(r));
    }

    fn report(
        &mut self,
        now: Timestamp,
        kind: ReportKind,
        host: Option<HostId>,
        summary: impl Into<String>,
    ) -> Report {
        self.meta.report_seq += 1;
        self.meta_dirty = true;
        let id = format!("{}-{}", now.as_millis(), self.meta.report_seq);
        Report::new(id, now, kind, Audience::Operators, host, summary)
    }

    fn note(
        &mut self,
        now: Timestamp,
        host: Option<&HostId>,
        instance: Option<&str>,
        what: String,
    ) {
        self.history.push(HistoryEvent {
            at: now,
            host: host.cloned(),
            instance: instance.map(str::to_owned),
            what,
        });
    }

    fn touch_instance(&mut self, now: Timestamp, host: &HostId, id: &str, what: String) {
        self.dirty_instances.insert((host.clone(), id.to_owned()));
        self.note(now, Some(host), Some(id), what);
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
