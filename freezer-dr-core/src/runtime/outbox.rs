//! Report delivery from the journal's outbox, with its retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::backoff::Backoff;
use super::call::call;
use super::observer::OutboxGauge;
use super::{Clock, Pipeline};
use crate::engine::RecoveryConfig;
use crate::{Audience, Directory, ErrorKind, Failure, Journal, Notifier, Report, Timestamp};

/// Delivers outbox entries until aborted: recipients (and project names) resolved from the directory just
/// before delivery,
/// failures recorded with the next attempt time (exponential backoff, capped at 15 min). Nothing is
/// dropped: an entry leaves the outbox only once every audience of its report was told.
///
/// Delivery is per audience: a project whose users cannot be looked up does not hold back the rest. The
/// operators and every other project are told at once (the operators' message names the missing
/// projects); the entry then stays in the outbox with who was told recorded in `report.told`, and later
/// attempts look up and send only the missing projects. No second operators' message follows: the first
/// one already said those users will be mailed once the directory answers.
pub(super) async fn deliver_outbox(
    journal: Arc<dyn Journal>,
    pipeline: Pipeline,
    cfg: RecoveryConfig,
    clock: Clock,
    wake: Arc<Notify>,
    gauge: OutboxGauge,
) {
    // Delivered, but the journal could not record it: only the record is retried, never the delivery.
    let mut unrecorded: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Parts told whose record failed: merged into the entry at each read, so a journal error never makes
    // the next attempt tell them again.
    let mut unrecorded_told: HashMap<String, crate::Told> = HashMap::new();
    loop {
        let entries = match journal.outbox().await {
            Ok(e) => {
                gauge.read(&e);
                e
            }
            Err(e) => {
                error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
        };
        let now = clock.now();
        let mut next: Option<Timestamp> = None;
        let soon = |next: &mut Option<Timestamp>, t: Timestamp| {
            *next = Some(next.map_or(t, |n: Timestamp| n.min(t)));
        };
        for mut entry in entries {
            if unrecorded.contains(&entry.key) {
                match journal.outbox_done(&entry.key).await {
                    Ok(()) => {
                        unrecorded.remove(&entry.key);
                        unrecorded_told.remove(&entry.key);
                        gauge.done(&entry.key);
                    }
                    Err(e) => {
                        error!(error = %e, key = %entry.key, "still cannot record a delivery");
                        soon(&mut next, now.after(Duration::from_secs(5)));
                    }
                }
                continue;
            }
            if let Some(told) = unrecorded_told.get(&entry.key) {
                entry.report.told.merge(told);
            }
            if entry.next_attempt > now {
                soon(&mut next, entry.next_attempt);
                continue;
            }
            let Some(notifier) = pipeline.notifiers.get(entry.notifier) else {
                warn!(key = %entry.key, "no such notifier any more: dropping the entry from the outbox");
                if journal.outbox_done(&entry.key).await.is_ok() {
                    gauge.done(&entry.key);
                }
                continue;
            };
            let result = deliver(&cfg, &pipeline, notifier.as_ref(), &mut entry.report).await;
            match result {
                Ok(None) => {
                    info!(report = %entry.report.id, notifier = entry.notifier, "report delivered");
                    if let Err(e) = journal.outbox_done(&entry.key).await {
                        error!(error = %e, key = %entry.key, "cannot record a delivery");
                        unrecorded.insert(entry.key.clone());
                        soon(&mut next, now.after(Duration::from_secs(5)));
                    } else {
                        unrecorded_told.remove(&entry.key);
                        gauge.done(&entry.key);
                    }
                }
                Ok(Some(f)) => {
                    entry.attempts += 1;
                    let wait = delivery_delay(&f, entry.attempts);
                    entry.next_attempt = clock.now().after(wait);
                    entry.last_error = Some(f.message.clone());
                    warn!(report = %entry.report.id, notifier = entry.notifier, attempts = entry.attempts,
                          error = %f.message, retry_in = ?wait,
                          "report delivered except to the projects whose users could not be looked up; \
                           kept in the outbox for them");
                    match journal.outbox_retry(&entry).await {
                        Ok(()) => {
                            unrecorded_told.remove(&entry.key);
                        }
                        Err(e) => {
                            error!(error = %e, key = %entry.key, "cannot record a partial delivery");
                            unrecorded_told.insert(entry.key.clone(), entry.report.told.clone());
                        }
                    }
                    soon(&mut next, entry.next_attempt);
                }
                Err(f) => {
                    entry.attempts += 1;
                    let wait = delivery_delay(&f, entry.attempts);
                    entry.next_attempt = clock.now().after(wait);
                    entry.last_error = Some(f.message.clone());
                    if f.retry == crate::Retry::Permanent {
                        error!(report = %entry.report.id, notifier = entry.notifier, attempts = entry.attempts,
                               error = %f.message, retry_in = ?wait,
                               "delivery refused for good: check the notifier's configuration; kept in the outbox");
                    } else {
                        warn!(report = %entry.report.id, notifier = entry.notifier, attempts = entry.attempts,
                              error = %f.message, retry_in = ?wait, "delivery failed; kept in the outbox");
                    }
                    if let Err(e) = journal.outbox_retry(&entry).await {
                        error!(error = %e, "cannot record a failed delivery");
                    }
                    soon(&mut next, entry.next_attempt);
                }
            }
        }
        let sleep = next.map_or(Duration::from_secs(30), |t| t.since(clock.now()));
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
        }
    }
}

/// When to try a report again: temporary errors back off from 5 s to 15 min; a permanent error (wrong
/// password, refused sender) waits 15 min every time: it needs a person, and nothing is dropped meanwhile.
fn delivery_delay(f: &Failure, attempts: u32) -> Duration {
    if f.retry == crate::Retry::Permanent {
        return Backoff::DELIVERY.cap;
    }
    Backoff::DELIVERY.delay(attempts)
}

/// One delivery attempt of a report to one notifier: looks up the users of every project not told yet,
/// then hands the notifier everything it can deliver now.
///
/// `Ok(None)`: every audience was told. `Ok(Some(f))`: the notifier delivered all it was given, but the
/// projects in `report.lookup_failed` are still to be told (`f` sums up why, for the backoff and the
/// outbox's last error); `report.told` records what this attempt told. `Err`: the notifier failed; nothing
/// is counted as told (the notifier's own ledger keeps a retry from resending what it already sent).
async fn deliver(
    cfg: &RecoveryConfig,
    pipeline: &Pipeline,
    notifier: &dyn Notifier,
    report: &mut Report,
) -> std::result::Result<Option<Failure>, Failure> {
    // Recomputed by every attempt: a project listed here is exactly one whose lookup failed just now.
    report.lookup_failed.clear();
    let mut failures: Vec<Failure> = Vec::new();
    if report.audience == Audience::OperatorsAndUsers
        && let Some(directory) = &pipeline.directory
    {
        for project in report
            .projects()
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
        {
            if report.told.projects.contains(&project) || report.recipients.contains_key(&project) {
                continue;
            }
            match call(cfg, "recipients", true, || directory.recipients(&project)).await {
                Ok(users) => {
                    report.recipients.insert(project, users);
                }
                Err(f) => {
                    warn!(report = %report.id, project = %project, error = %f.message,
                          "cannot look up the users of a project: the others are told now, these later");
                    report.lookup_failed.insert(project, f.message.clone());
                    failures.push(f);
                }
            }
        }
    }
    // A later attempt whose lookups failed again has nothing new for the notifier: skip the call.
    let nothing_new = report.told.operators
        && report
            .projects()
            .iter()
            .all(|p| report.told.projects.contains(*p) || report.lookup_failed.contains_key(*p));
    if !nothing_new {
        if let Some(directory) = &pipeline.directory {
            learn_project_names(cfg, directory.as_ref(), report).await;
        }
        call(cfg, "notify", true, || notifier.notify(report)).await?;
    }
    if failures.is_empty() {
        return Ok(None);
    }
    report.told.operators = true;
    let looked_up = projects_not_in(report, &report.lookup_failed);
    report.told.projects.extend(looked_up);
    Ok(Some(lookup_failure(&report.lookup_failed, &failures)))
}

/// The projects of `report` that are not keys of `map`.
fn projects_not_in(report: &Report, map: &BTreeMap<String, String>) -> Vec<String> {
    report
        .projects()
        .into_iter()
        .filter(|p| !map.contains_key(*p))
        .map(str::to_owned)
        .collect()
}

/// The most a delivery attempt spends learning project names: a name is a courtesy, the mail must not
/// wait for it (with a hung directory, `run --once` would otherwise leave its last report undelivered).
fn names_budget(cfg: &RecoveryConfig) -> Duration {
    (cfg.call_timeout / 4).min(Duration::from_secs(5))
}

/// Asks the directory for the name of each project of `report` not named yet: one try each, all within
/// [`names_budget`]. A name it cannot learn is logged and the mails name that project by its id (for good,
/// if this attempt delivers everything: a mail is never held back for a name).
async fn learn_project_names(cfg: &RecoveryConfig, directory: &dyn Directory, report: &mut Report) {
    let unnamed = projects_not_in(report, &report.project_names);
    let budget = names_budget(cfg);
    let deadline = tokio::time::Instant::now() + budget;
    for (i, project) in unnamed.iter().enumerate() {
        match tokio::time::timeout_at(deadline, directory.project_name(project)).await {
            Ok(Ok(Some(name))) if !name.trim().is_empty() => {
                report
                    .project_names
                    .insert(project.clone(), name.trim().to_owned());
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(report = %report.id, project = %project, error = %e,
                      "cannot learn the project's name: its mails name it by its id");
            }
            Err(_) => {
                warn!(report = %report.id, projects = unnamed.len() - i, budget = ?budget,
                      "the directory did not name the projects in time: their mails name them by their ids");
                break;
            }
        }
    }
}

/// One failure for the outbox entry from the lookups that failed in an attempt: temporary if any of them
/// is (the directory may answer soon), so the backoff stays short while it can help.
fn lookup_failure(lookup_failed: &BTreeMap<String, String>, failures: &[Failure]) -> Failure {
    let projects: Vec<String> = lookup_failed
        .iter()
        .map(|(p, why)| format!("{p}: {why}"))
        .collect();
    let temporary = failures.iter().find(|f| f.retry == crate::Retry::Temporary);
    let first = temporary.or(failures.first());
    let mut f = Failure::new(
        first.map_or(ErrorKind::PeerFailure, |f| f.kind),
        format!(
            "the operators and the other projects were told; the users of {} project(s) wait for the \
             directory: {}",
            lookup_failed.len(),
            projects.join("; ")
        ),
    );
    if let Some(first) = first {
        f.retry = first.retry;
    }
    f
}
