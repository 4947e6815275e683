//! Observation: the strikes that make a down host a suspect, hosts the monitors no longer list, the guards
//! that refuse to act on an untrustworthy picture (observation failing, every host stale, the storm budget),
//! and the start of a recovery.

use std::collections::BTreeSet;

use super::{Command, Engine, HostRecord, Stage};
use crate::{Failure, Health, HostHealth, HostId, ReportKind, Timestamp};

impl Engine {
    pub(super) fn observation_failed(
        &mut self,
        now: Timestamp,
        f: &Failure,
        out: &mut Vec<Command>,
    ) {
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

    pub(super) fn observed(
        &mut self,
        now: Timestamp,
        observed: Vec<HostHealth>,
        out: &mut Vec<Command>,
    ) {
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
        let listed: BTreeSet<&HostId> = observed.iter().map(|h| &h.host).collect();
        self.track_absent(now, &listed, out);
        self.track_monitor_failures(now, &observed, out);
        for h in observed {
            // One lookup for what most hosts are most of the time: known, healthy, unchanged, calm.
            // Calm: nothing below would act on it, neither down (no strike) nor disputed (no dispute
            // to count), and its record has no fence proof to void nor a dispute to end.
            let quiet = !h.health.is_down() && !h.disputed();
            let (changed, calm) = match self.hosts.get(&h.host) {
                Some(rec) => (
                    rec.health != h.health
                        || rec.admin != h.admin
                        || rec.views != h.views
                        || rec.absent_since.is_some(),
                    quiet
                        && rec.stage == Stage::Healthy
                        && rec.fence.is_none()
                        && rec.disputed == 0,
                ),
                None => {
                    // First sight: a new record is healthy, with no fence and no dispute.
                    let rec = HostRecord::new(h.host.clone(), now);
                    self.hosts.insert(h.host.clone(), rec);
                    (true, quiet)
                }
            };
            if changed && let Some(rec) = self.host_mut(&h.host) {
                rec.health = h.health.clone();
                rec.admin = h.admin.clone();
                rec.views = h.views.clone();
                rec.absent_since = None;
            }
            if calm {
                continue;
            }
            self.track_dispute(now, &h, out);
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
    fn track_absent(&mut self, now: Timestamp, listed: &BTreeSet<&HostId>, out: &mut Vec<Command>) {
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
            Stage::Restoring => self.observed_restoring(now, host, out),
            Stage::Evacuated => self.observed_evacuated(now, host),
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
    pub(super) fn storm_refuses(&self, host: &HostId) -> Option<String> {
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

    pub(super) fn start_recovery(
        &mut self,
        now: Timestamp,
        host: &HostId,
        why: &str,
        out: &mut Vec<Command>,
    ) {
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
}
