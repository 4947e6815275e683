//! What the commands print, and how a pass maps to an exit code. Pure functions, unit-tested.

use std::fmt::Write as _;

use freezer_dr_core::engine::{HistoryEvent, HostRecord, OperatorRequest, Snapshot, Stage};
use freezer_dr_core::journal::{OutboxEntry, PendingRequest};
use freezer_dr_core::registry::DriverInfo;
use freezer_dr_core::runtime::Summary;
use serde_json::json;

use crate::Exit;

/// The exit code of a `run --once` pass. A host or instance waiting for a person (2) outranks a refusal
/// (3): it names concrete work to do.
pub fn exit_code(summary: &Summary) -> Exit {
    if !summary.needs_operator.is_empty() || summary.failed_instances > 0 {
        Exit::NeedsOperator
    } else if summary.refused.is_some() {
        Exit::Refused
    } else {
        Exit::Ok
    }
}

/// What `run --once` prints.
pub fn summary(s: &Summary, dry_run: bool) -> String {
    let mut out = String::new();
    if dry_run {
        out.push_str("Dry run: nothing was changed.\n");
    }
    if !s.plan.is_empty() {
        out.push_str("Plan:\n");
        for line in &s.plan {
            let _ = writeln!(out, "  {line}");
        }
    }
    if let Some(why) = &s.refused {
        let _ = writeln!(out, "Refused to act: {why}");
    }
    if !s.recovered.is_empty() {
        let label = if dry_run {
            "Would recover"
        } else {
            "Recovered"
        };
        let _ = writeln!(out, "{label}: {}", join(&s.recovered));
    }
    if !s.needs_operator.is_empty() {
        let _ = writeln!(
            out,
            "Needs an operator: {} (see `freezer-dr status`)",
            join(&s.needs_operator)
        );
    }
    if s.failed_instances > 0 {
        let _ = writeln!(
            out,
            "Failed instance evacuations: {} (see `freezer-dr history`)",
            s.failed_instances
        );
    }
    // A dry run delivers nothing and keeps nothing: its plan lists the reports instead.
    if s.undelivered > 0 && !dry_run {
        let _ = writeln!(
            out,
            "Reports not delivered yet: {} (kept in the journal; the next run delivers them)",
            s.undelivered
        );
    }
    if s.plan.is_empty()
        && s.refused.is_none()
        && s.recovered.is_empty()
        && s.needs_operator.is_empty()
        && s.failed_instances == 0
    {
        // The original freezer-dr's words, kept for the scripts that grep them.
        out.push_str("No failed nodes\n");
    }
    out
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `drivers` prints: kind, name, description, aligned.
pub fn drivers(list: &[DriverInfo]) -> String {
    if list.is_empty() {
        return "No driver is linked into this binary.\n".to_owned();
    }
    let width = list.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for d in list {
        let _ = writeln!(
            out,
            "{:<9}  {:<width$}  {}",
            d.kind.as_str(),
            d.name,
            d.description
        );
    }
    out
}

fn request_line(r: &OperatorRequest) -> String {
    match r {
        OperatorRequest::Pause { reason } => format!("pause ({reason})"),
        OperatorRequest::Resume => "resume".to_owned(),
        OperatorRequest::Recover {
            host,
            despite_storm: false,
        } => format!("recover {host}"),
        OperatorRequest::Recover {
            host,
            despite_storm: true,
        } => format!("recover {host} --despite-storm"),
        OperatorRequest::Forget { host } => format!("forget {host}"),
        OperatorRequest::ConfirmOff { host } => format!("confirm-off {host}"),
    }
}

fn stage_detail(stage: &Stage) -> String {
    match stage {
        Stage::Suspect { strikes, .. } => format!("suspect ({strikes} down observations)"),
        Stage::Fencing { level, .. } => format!("fencing (level {level})"),
        Stage::Verifying { level, last, .. } => format!(
            "verifying power-off (level {level}, last read: {})",
            last.as_deref().unwrap_or("none yet")
        ),
        Stage::NeedsOperator { why } => format!("needs an operator: {why}"),
        other => other.name().to_owned(),
    }
}

/// Hosts `status` lists: those in recovery or suspect, and healthy ones the combined monitors disagree
/// about (one says down).
fn in_view(h: &HostRecord) -> bool {
    !matches!(h.stage, Stage::Healthy) || h.disputed > 0
}

/// The election part of `status` in HA mode: who leads, since when, who stands by.
#[cfg(feature = "etcd")]
pub fn ha_status(st: &freezer_dr_core::ha::HaStatus) -> String {
    let mut out = String::new();
    match (&st.leader, st.token) {
        (Some(l), token) => {
            let _ = writeln!(
                out,
                "Leader: {} since {} (election {}, fencing token {})",
                l.describe(),
                l.since,
                st.election,
                token.unwrap_or_default()
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "Leader: none (election {}): no freezer-dr is acting; a standby takes over within the lease TTL",
                st.election
            );
        }
    }
    if st.standbys.is_empty() {
        out.push_str("Standbys: none\n");
    } else {
        out.push_str("Standbys:\n");
        for m in &st.standbys {
            let _ = writeln!(out, "  {}  running since {}", m.describe(), m.since);
        }
    }
    out
}

/// What `status` prints.
pub fn status(snapshot: &Snapshot, requests: &[PendingRequest], outbox: &[OutboxEntry]) -> String {
    let mut out = String::new();
    if !snapshot.journal_id.is_empty() {
        // The id this daemon writes into its isolation markers: tells two daemons apart.
        let _ = writeln!(out, "Journal: {}", snapshot.journal_id);
    }
    match &snapshot.meta.paused {
        Some(reason) => {
            let _ = writeln!(
                out,
                "Brake: ON ({reason}): observing and reporting only; `freezer-dr resume` releases it"
            );
        }
        None => out.push_str("Brake: off\n"),
    }
    if let Some(since) = snapshot.meta.storm_since {
        let _ = writeln!(
            out,
            "Storm guard: holding since {since}: nothing is fenced until it stays calm for the cooldown"
        );
    }
    if snapshot.meta.observation_failures > 0 {
        let _ = writeln!(
            out,
            "Observation: failing ({} in a row): nothing is decided meanwhile",
            snapshot.meta.observation_failures
        );
    }

    for (monitor, n) in &snapshot.meta.monitor_failures {
        let _ = writeln!(
            out,
            "Monitor {monitor}: failing ({n} in a row): unknown for every host meanwhile"
        );
    }

    let hosts: Vec<&HostRecord> = snapshot.hosts.iter().filter(|h| in_view(h)).collect();
    if hosts.is_empty() {
        out.push_str("Hosts: all healthy\n");
    } else {
        out.push_str("Hosts not healthy:\n");
        for h in hosts {
            let _ = writeln!(
                out,
                "  {}  {}  since {}{}",
                h.host,
                stage_detail(&h.stage),
                h.since,
                h.recovery
                    .as_deref()
                    .map(|r| format!("  recovery {r}"))
                    .unwrap_or_default()
            );
            if let Some(since) = h.disputed_since {
                let _ = writeln!(
                    out,
                    "    the monitors disagree since {since} ({} observations in a row): not fenced",
                    h.disputed
                );
            }
            for v in &h.views {
                let _ = writeln!(out, "    {v}");
            }
            let (settled, active): (Vec<_>, Vec<_>) =
                h.instances.values().partition(|i| i.state.is_terminal());
            for i in active {
                let _ = writeln!(
                    out,
                    "    {} ({})  {}  attempts {}",
                    i.instance.id,
                    i.instance.name,
                    i.state.name(),
                    i.attempts
                );
            }
            if !settled.is_empty() {
                let _ = writeln!(out, "    {} instance(s) settled", settled.len());
            }
        }
    }

    if requests.is_empty() {
        out.push_str("Pending requests: none\n");
    } else {
        out.push_str(
            "Pending requests (the running daemon applies them within one cycle, or at its next start):\n",
        );
        for r in requests {
            let _ = writeln!(out, "  #{} {}  {}", r.id, r.at, request_line(&r.request));
        }
    }
    outbox_lines(&mut out, outbox);
    out
}

/// The reports not yet delivered: what each is, how often it was tried, and why it failed.
fn outbox_lines(out: &mut String, outbox: &[OutboxEntry]) {
    if outbox.is_empty() {
        out.push_str("Outbox: empty (every report delivered)\n");
        return;
    }
    let _ = writeln!(
        out,
        "Outbox: {} report(s) not delivered yet (the daemon retries them; nothing is dropped):",
        outbox.len()
    );
    for e in outbox {
        let r = &e.report;
        let _ = writeln!(
            out,
            "  {}  {}  notifier #{}  queued {}: {}",
            r.id,
            r.kind.name(),
            e.notifier,
            r.at,
            r.summary
        );
        if e.attempts > 0 {
            let _ = writeln!(
                out,
                "    {} attempt(s), next at {}: {}",
                e.attempts,
                e.next_attempt,
                e.last_error.as_deref().unwrap_or("no error recorded")
            );
        }
        if !r.told.is_empty() {
            let mut told: Vec<String> = Vec::new();
            if r.told.operators {
                told.push("the operators".into());
            }
            told.extend(r.told.projects.iter().map(|p| format!("project {p}")));
            let _ = writeln!(
                out,
                "    already told (not sent again): {}",
                told.join(", ")
            );
        }
    }
}

/// `status --json`.
pub fn status_json(
    snapshot: &Snapshot,
    requests: &[PendingRequest],
    outbox: &[OutboxEntry],
) -> serde_json::Value {
    let hosts: Vec<serde_json::Value> = snapshot
        .hosts
        .iter()
        .filter(|h| in_view(h))
        .map(|h| {
            let instances: Vec<serde_json::Value> = h
                .instances
                .values()
                .map(|i| {
                    json!({
                        "id": i.instance.id,
                        "name": i.instance.name,
                        "project": i.instance.project,
                        "state": i.state,
                        "attempts": i.attempts,
                    })
                })
                .collect();
            json!({
                "host": h.host,
                "stage": h.stage,
                "since": h.since.to_string(),
                "recovery": h.recovery,
                "health": h.health,
                "views": h.views,
                "disputed": h.disputed,
                "disputed_since": h.disputed_since.map(|t| t.to_string()),
                "instances": instances,
            })
        })
        .collect();
    json!({
        "journal_id": snapshot.journal_id,
        "paused": snapshot.meta.paused,
        "storm_since": snapshot.meta.storm_since.map(|t| t.to_string()),
        "observation_failures": snapshot.meta.observation_failures,
        "monitor_failures": snapshot.meta.monitor_failures,
        "hosts": hosts,
        "requests": requests,
        "outbox": outbox.iter().map(|e| json!({
            "report": e.report.id,
            "kind": e.report.kind.name(),
            "host": e.report.host,
            "summary": e.report.summary,
            "queued": e.report.at.to_string(),
            "notifier": e.notifier,
            "attempts": e.attempts,
            "last_error": e.last_error,
            "next_attempt": e.next_attempt.to_string(),
            "operators_told": e.report.told.operators,
            "projects_told": e.report.told.projects,
        })).collect::<Vec<_>>(),
    })
}

/// What `history` prints.
pub fn history(events: &[HistoryEvent]) -> String {
    if events.is_empty() {
        return "No history yet\n".to_owned();
    }
    let mut out = String::new();
    for e in events {
        let mut subject = e.host.as_ref().map(ToString::to_string).unwrap_or_default();
        if let Some(i) = &e.instance {
            if !subject.is_empty() {
                subject.push(' ');
            }
            subject.push_str(i);
        }
        if subject.is_empty() {
            let _ = writeln!(out, "{}  {}", e.at, e.what);
        } else {
            let _ = writeln!(out, "{}  {}  {}", e.at, subject, e.what);
        }
    }
    out
}

/// What a request command prints once the request is stored.
pub fn submitted(id: u64, request: &OperatorRequest, journal: &std::path::Path) -> String {
    let effect = match request {
        OperatorRequest::Pause { .. } => {
            "freezer-dr will keep observing and reporting, and never fence, isolate, evacuate or \
             restore until `freezer-dr resume`"
        }
        OperatorRequest::Resume => "freezer-dr will act on failed hosts again",
        OperatorRequest::Recover { .. } => {
            "the host will be fenced (its power-off still verified), isolated and evacuated"
        }
        OperatorRequest::Forget { .. } => {
            "the host's recovery will no longer be tracked nor count against the storm budget (refused \
             while a recovery of a host the monitors list is under way)"
        }
        OperatorRequest::ConfirmOff { .. } => {
            "the host counts as powered off on your word; its recovery continues from isolation"
        }
    };
    format!(
        "Request #{id} ({}) stored in {}.\nThe running daemon applies it within one cycle (or at its \
         next start): {effect}.\n`freezer-dr status` shows it until then.\n",
        request_line(request),
        journal.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use freezer_dr_core::{HostId, Timestamp};

    #[test]
    fn nothing_down_prints_no_failed_nodes_and_exits_0() {
        let s = Summary::default();
        assert_eq!(summary(&s, false), "No failed nodes\n");
        assert_eq!(exit_code(&s), Exit::Ok);
    }

    #[test]
    fn recovered_hosts_exit_0_and_a_person_needed_or_failed_instances_exit_2() {
        let host = || vec![HostId::from("compute-1")];
        let recovered = Summary {
            recovered: host(),
            ..Summary::default()
        };
        assert!(summary(&recovered, false).contains("Recovered: compute-1"));
        assert!(!summary(&recovered, false).contains("No failed nodes"));
        let needs_operator = Summary {
            needs_operator: host(),
            ..Summary::default()
        };
        let failed = Summary {
            failed_instances: 1,
            ..Summary::default()
        };
        for (s, code) in [
            (recovered, Exit::Ok),
            (needs_operator, Exit::NeedsOperator),
            (failed, Exit::NeedsOperator),
        ] {
            assert_eq!(exit_code(&s), code, "{s:?}");
        }
    }

    #[test]
    fn refusal_exits_3_unless_a_person_is_also_needed() {
        let s = Summary {
            refused: Some("storm".into()),
            ..Summary::default()
        };
        assert_eq!(exit_code(&s), Exit::Refused);
        assert!(summary(&s, false).contains("Refused to act: storm"));
        // The same refusal, and an instance that failed.
        let s = Summary {
            failed_instances: 2,
            ..s
        };
        assert_eq!(exit_code(&s), Exit::NeedsOperator);
    }

    #[test]
    fn dry_run_prints_the_plan_and_says_nothing_changed() {
        let s = Summary {
            plan: vec!["power off compute-1".into(), "isolate compute-1".into()],
            ..Summary::default()
        };
        let text = summary(&s, true);
        assert!(text.starts_with("Dry run: nothing was changed.\nPlan:\n  power off compute-1\n"));
        assert!(!text.contains("No failed nodes"));
        let s = Summary {
            recovered: vec![HostId::from("compute-1")],
            undelivered: 2,
            ..Summary::default()
        };
        let text = summary(&s, true);
        assert!(text.contains("Would recover: compute-1"), "{text}");
        assert!(!text.contains("not delivered"), "{text}");
        assert!(summary(&s, false).contains("Reports not delivered yet: 2"));
    }

    #[test]
    fn status_shows_the_brake_and_pending_requests() {
        let mut snap = Snapshot::default();
        let req = PendingRequest {
            id: 7,
            at: Timestamp(0),
            request: OperatorRequest::Pause {
                reason: "switch upgrade".into(),
            },
        };
        let text = status(&snap, std::slice::from_ref(&req), &[]);
        assert!(text.contains("Brake: off"), "{text}");
        assert!(!text.contains("Journal:"), "no journal, no id: {text}");
        snap.journal_id = "j0123456789abcdef".into();
        let text = status(&snap, std::slice::from_ref(&req), &[]);
        assert!(text.starts_with("Journal: j0123456789abcdef\n"), "{text}");
        assert!(
            text.contains("#7 1970-01-01T00:00:00Z  pause (switch upgrade)"),
            "{text}"
        );
        snap.meta.paused = Some("switch upgrade".into());
        let text = status(&snap, &[], &[]);
        assert!(text.contains("Brake: ON (switch upgrade)"), "{text}");
        let j = status_json(&snap, &[req], &[]);
        assert_eq!(j["paused"], "switch upgrade");
        assert_eq!(j["journal_id"], "j0123456789abcdef");
        assert_eq!(j["requests"][0]["id"], 7);
    }

    #[test]
    fn status_lists_hosts_in_recovery_with_their_instances_in_flight() {
        use freezer_dr_core::engine::{InstanceRecord, InstanceState};
        // Built from JSON: the record has engine-private fields.
        let instance = |id: &str, state: InstanceState| -> InstanceRecord {
            serde_json::from_value(json!({
                "instance": {"id": id, "name": format!("vm-{id}"), "project": "p", "user": "u",
                             "status": "ACTIVE", "host": "compute-1", "volume_backed": true},
                "state": state,
                "attempts": 1
            }))
            .unwrap()
        };
        let mut h = HostRecord::new(HostId::from("compute-1"), Timestamp(0));
        h.stage = Stage::Evacuating;
        h.instances.insert(
            "a".into(),
            instance("a", InstanceState::Requested { at: Timestamp(0) }),
        );
        h.instances.insert(
            "b".into(),
            instance(
                "b",
                InstanceState::Done {
                    host: HostId::from("compute-2"),
                    status: "ACTIVE".into(),
                },
            ),
        );
        let healthy = HostRecord::new(HostId::from("compute-9"), Timestamp(0));
        let snap = Snapshot {
            hosts: vec![h, healthy],
            ..Snapshot::default()
        };
        let text = status(&snap, &[], &[]);
        assert!(text.contains("compute-1  evacuating"), "{text}");
        assert!(text.contains("a (vm-a)  requested  attempts 1"), "{text}");
        assert!(text.contains("1 instance(s) settled"), "{text}");
        assert!(!text.contains("compute-9"), "{text}");
    }

    #[test]
    fn status_shows_the_reports_not_delivered_yet_and_why() {
        let snap = Snapshot::default();
        let text = status(&snap, &[], &[]);
        assert!(text.contains("Outbox: empty"), "{text}");
        let report: freezer_dr_core::Report = serde_json::from_value(json!({
            "id": "1796290393471-4", "at": 0, "kind": "recovered", "audience": "operators_and_users",
            "host": "compute2", "summary": "compute2: 1 of 1 instance(s) running elsewhere",
            "details": [], "instances": [], "recipients": {},
            "told": {"operators": true, "projects": ["alpha"]},
        }))
        .unwrap();
        let waiting = OutboxEntry {
            key: "1796290393471-4/0".into(),
            notifier: 0,
            report,
            attempts: 0,
            last_error: None,
            next_attempt: Timestamp(0),
        };
        let failed = OutboxEntry {
            attempts: 3,
            last_error: Some("smtp.lab:25: connection refused".into()),
            next_attempt: Timestamp(60_000),
            ..waiting.clone()
        };
        let text = status(&snap, &[], std::slice::from_ref(&waiting));
        assert!(
            text.contains("Outbox: 1 report(s) not delivered yet"),
            "{text}"
        );
        assert!(
            text.contains(
                "  1796290393471-4  recovered  notifier #0  queued 1970-01-01T00:00:00Z: \
                 compute2: 1 of 1 instance(s) running elsewhere\n"
            ),
            "{text}"
        );
        assert!(!text.contains("attempt(s)"), "not tried yet: {text}");
        assert!(
            text.contains("already told (not sent again): the operators, project alpha"),
            "{text}"
        );
        let text = status(&snap, &[], std::slice::from_ref(&failed));
        assert!(
            text.contains(
                "    3 attempt(s), next at 1970-01-01T00:01:00Z: smtp.lab:25: connection refused\n"
            ),
            "{text}"
        );
        let j = status_json(&snap, &[], &[failed]);
        let e = &j["outbox"][0];
        assert_eq!(e["report"], "1796290393471-4");
        assert_eq!(e["kind"], "recovered");
        assert_eq!(e["host"], "compute2");
        assert_eq!(e["attempts"], 3);
        assert_eq!(e["last_error"], "smtp.lab:25: connection refused");
        assert_eq!(e["next_attempt"], "1970-01-01T00:01:00Z");
        assert_eq!(e["operators_told"], true);
        assert_eq!(e["projects_told"][0], "alpha");
        assert_eq!(status_json(&snap, &[], &[])["outbox"], json!([]));
    }

    #[test]
    fn status_shows_each_monitors_view_of_a_disputed_host_and_a_failing_monitor() {
        let mut h = HostRecord::new(HostId::from("compute-2"), Timestamp(0));
        h.disputed = 3;
        h.disputed_since = Some(Timestamp(0));
        h.views = vec![
            freezer_dr_core::MonitorView {
                monitor: "nova".into(),
                health: freezer_dr_core::Health::down("heartbeat 90s old"),
                failed: false,
            },
            freezer_dr_core::MonitorView {
                monitor: "tcp".into(),
                health: freezer_dr_core::Health::Up,
                failed: false,
            },
        ];
        let mut snap = Snapshot {
            hosts: vec![h],
            ..Snapshot::default()
        };
        snap.meta.monitor_failures.insert("prometheus".into(), 4);
        let text = status(&snap, &[], &[]);
        assert!(text.contains("compute-2  healthy"), "{text}");
        assert!(
            text.contains(
                "the monitors disagree since 1970-01-01T00:00:00Z (3 observations in a row): not fenced"
            ),
            "{text}"
        );
        assert!(
            text.contains("    nova: down (heartbeat 90s old)\n    tcp: up\n"),
            "{text}"
        );
        assert!(
            text.contains("Monitor prometheus: failing (4 in a row)"),
            "{text}"
        );
        let j = status_json(&snap, &[], &[]);
        assert_eq!(j["hosts"][0]["views"][1]["monitor"], "tcp");
        assert_eq!(j["monitor_failures"]["prometheus"], 4);
    }

    #[test]
    fn history_lines_name_host_and_instance() {
        let events = [HistoryEvent {
            at: Timestamp(0),
            host: Some(HostId::from("compute-1")),
            instance: Some("vm-1".into()),
            what: "evacuated to compute-2".into(),
        }];
        assert_eq!(
            history(&events),
            "1970-01-01T00:00:00Z  compute-1 vm-1  evacuated to compute-2\n"
        );
        assert_eq!(history(&[]), "No history yet\n");
    }
}
