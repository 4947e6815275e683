//! Conformance suites: what every implementation of a core trait must do, checked against a real peer.
//!
//! A driver crate calls the suite for its role from its own tests, with its driver talking to a real peer
//! (a BMC simulator, libvirt's test driver, an SMTP server, a Nova lab). The suites panic with a message
//! naming the broken rule.

// Test code: a panic with a message is how a suite reports a broken rule.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::engine::{
    EngineMeta, FenceProof, FenceRecord, HistoryEvent, HostRecord, InstanceRecord, InstanceState,
    OperatorRequest, Stage,
};
use crate::journal::{Batch, OutboxEntry, PendingRequest};
use crate::{
    Audience, Directory, Evacuator, Fenced, Fencer, Health, HostId, Instance, Journal, Monitor,
    Notifier, PowerState, Progress, Report, ReportKind, Timestamp,
};

fn instance(id: &str, host: &str, project: &str) -> Instance {
    Instance {
        id: id.into(),
        name: format!("vm-{id}"),
        project: project.into(),
        user: format!("user-of-{project}"),
        status: "ACTIVE".into(),
        host: HostId::from(host),
        metadata: [("freezer_dr:evacuate".to_owned(), "true".to_owned())].into(),
        volume_backed: true,
    }
}

fn instance_record(id: &str, host: &str, state: InstanceState) -> InstanceRecord {
    InstanceRecord {
        by_other: false,
        instance: instance(id, host, "p1"),
        state,
        attempts: 1,
        inflight: false,
    }
}

fn event(n: u64) -> HistoryEvent {
    HistoryEvent {
        at: Timestamp(n),
        host: Some(HostId::from("compute-1")),
        instance: None,
        what: format!("event {n}"),
    }
}

fn outbox_entry(key: &str, at: u64) -> OutboxEntry {
    let mut report = Report::new(
        key.split('/').next().unwrap_or(key),
        Timestamp(at),
        ReportKind::HostFenced,
        Audience::OperatorsAndUsers,
        Some(HostId::from("compute-1")),
        "compute-1 fenced",
    );
    report.details.push("power status read off".into());
    OutboxEntry {
        key: key.into(),
        notifier: 0,
        report,
        attempts: 0,
        last_error: None,
        next_attempt: Timestamp(at),
    }
}

async fn load_sorted(j: &dyn Journal) -> Vec<HostRecord> {
    let mut hosts = j.load().await.expect("journal: load failed").hosts;
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    hosts
}

/// The [`Journal`] contract, on a fresh, empty journal: every table round-trips, upserts replace,
/// `clear_instances` clears one host's instances only, history is ordered and limited, the outbox keeps
/// its order and retry state, request ids only grow.
pub async fn journal(j: &dyn Journal) {
    let empty = j
        .load()
        .await
        .expect("journal: load of an empty journal failed");
    assert_eq!(
        empty.meta,
        EngineMeta::default(),
        "journal: an empty journal must load the default engine state"
    );
    assert!(
        empty.hosts.is_empty(),
        "journal: an empty journal has no hosts"
    );
    assert!(
        !empty.journal_id.is_empty()
            && !empty.journal_id.contains('@')
            && !empty.journal_id.contains(':'),
        "journal: a journal has a stable id from its creation, without '@' or ':' (got {:?})",
        empty.journal_id
    );
    assert_eq!(
        j.load().await.expect("journal: load failed").journal_id,
        empty.journal_id,
        "journal: the journal id never changes"
    );
    assert!(
        j.outbox().await.expect("journal: outbox failed").is_empty(),
        "journal: an empty journal has an empty outbox"
    );

    // Every table in one batch.
    let mut a = HostRecord::new(HostId::from("compute-1"), Timestamp(10));
    a.stage = Stage::Evacuating;
    a.health = Health::down("state=down for 60s");
    a.recovery = Some("compute-1@10".into());
    a.fence = Some(FenceRecord {
        at: Timestamp(11),
        proof: FenceProof::PowerStatus { level: 0 },
        recovery: "compute-1@10".into(),
    });
    a.timeline
        .push((Timestamp(11), "power status read off".into()));
    let b = HostRecord::new(HostId::from("compute-10"), Timestamp(10));
    let meta = EngineMeta {
        paused: Some("maintenance".into()),
        report_seq: 7,
        ..EngineMeta::default()
    };
    let mut batch = Batch::default();
    batch.changes.hosts = vec![a.clone(), b.clone()];
    batch.changes.instances = vec![
        (
            a.host.clone(),
            instance_record(
                "i-1",
                "compute-1",
                InstanceState::Pending {
                    not_before: Timestamp(0),
                },
            ),
        ),
        (
            a.host.clone(),
            instance_record(
                "i-2",
                "compute-1",
                InstanceState::Requested { at: Timestamp(12) },
            ),
        ),
        (
            b.host.clone(),
            instance_record("i-3", "compute-10", InstanceState::Gone),
        ),
    ];
    batch.changes.meta = Some(meta.clone());
    batch.changes.history = vec![event(1), event(2), event(3)];
    batch.outbox = vec![outbox_entry("r9/0", 20), outbox_entry("r10/0", 21)];
    j.commit(batch.clone())
        .await
        .expect("journal: commit failed");

    let snap = j.load().await.expect("journal: load failed");
    assert_eq!(snap.meta, meta, "journal: the engine state must round-trip");
    let hosts = load_sorted(j).await;
    assert_eq!(
        hosts.len(),
        2,
        "journal: both hosts must be stored: {hosts:?}"
    );
    let mut want_a = a.clone();
    for (h, r) in &batch.changes.instances {
        if h == &a.host {
            want_a.instances.insert(r.instance.id.clone(), r.clone());
        }
    }
    let mut want_b = b.clone();
    want_b
        .instances
        .insert("i-3".into(), batch.changes.instances[2].1.clone());
    assert_eq!(
        hosts[0], want_a,
        "journal: a host must load with exactly its own instances (compute-1 is not compute-10)"
    );
    assert_eq!(
        hosts[1], want_b,
        "journal: compute-10 must load with its instance"
    );

    // Upserts replace; a batch without meta keeps it.
    let mut a2 = a.clone();
    a2.stage = Stage::Evacuated;
    let mut i1 = batch.changes.instances[0].1.clone();
    i1.state = InstanceState::Done {
        host: HostId::from("compute-2"),
        status: "ACTIVE".into(),
    };
    i1.attempts = 2;
    let mut up = Batch::default();
    up.changes.hosts = vec![a2.clone()];
    up.changes.instances = vec![(a.host.clone(), i1.clone())];
    j.commit(up).await.expect("journal: commit failed");
    let snap = j.load().await.expect("journal: load failed");
    assert_eq!(
        snap.meta, meta,
        "journal: a batch without meta must keep the engine state"
    );
    let hosts = load_sorted(j).await;
    assert_eq!(
        hosts[0].stage,
        Stage::Evacuated,
        "journal: a host upsert must replace it"
    );
    assert_eq!(
        hosts[0].instances.get("i-1"),
        Some(&i1),
        "journal: an instance upsert must replace it"
    );
    assert_eq!(
        hosts[0].instances.len(),
        2,
        "journal: a host upsert must not drop its instances"
    );

    // clear_instances removes one host's instances; instances in the same batch (a new recovery) stay.
    let mut clear = Batch::default();
    clear.changes.clear_instances = vec![a.host.clone()];
    clear.changes.instances = vec![(
        a.host.clone(),
        instance_record(
            "i-4",
            "compute-1",
            InstanceState::Pending {
                not_before: Timestamp(0),
            },
        ),
    )];
    j.commit(clear).await.expect("journal: commit failed");
    let hosts = load_sorted(j).await;
    assert_eq!(
        hosts[0].instances.keys().collect::<Vec<_>>(),
        vec!["i-4"],
        "journal: clear_instances must remove the host's instances, then the batch's own are stored"
    );
    assert_eq!(
        hosts[1].instances.len(),
        1,
        "journal: clear_instances of compute-1 must not touch compute-10"
    );

    // History: newest `limit`, oldest first.
    let mut more = Batch::default();
    more.changes.history = vec![event(4), event(5)];
    j.commit(more).await.expect("journal: commit failed");
    let all = j.history(100).await.expect("journal: history failed");
    assert_eq!(
        all.iter().map(|e| e.at.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5],
        "journal: history must keep every line, oldest first"
    );
    let last2 = j.history(2).await.expect("journal: history failed");
    assert_eq!(
        last2.iter().map(|e| e.at.0).collect::<Vec<_>>(),
        vec![4, 5],
        "journal: history(2) must return the newest two, oldest first"
    );
    assert!(
        j.history(0)
            .await
            .expect("journal: history failed")
            .is_empty(),
        "journal: history(0) must be empty"
    );

    // Outbox: insertion order (not key order: "r10" sorts before "r9"), retry state, done.
    let out = j.outbox().await.expect("journal: outbox failed");
    assert_eq!(
        out.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec!["r9/0", "r10/0"],
        "journal: the outbox must be oldest first"
    );
    assert_eq!(
        out[0], batch.outbox[0],
        "journal: an outbox entry must round-trip"
    );
    let mut retried = out[0].clone();
    retried.attempts = 3;
    retried.last_error = Some("smtp: connection refused".into());
    retried.next_attempt = Timestamp(99);
    retried.report.told.operators = true;
    retried.report.told.projects.insert("project-a".into());
    j.outbox_retry(&retried)
        .await
        .expect("journal: outbox_retry failed");
    let out = j.outbox().await.expect("journal: outbox failed");
    assert_eq!(
        out[0], retried,
        "journal: outbox_retry must record attempts, error, next time and who was told"
    );
    assert_eq!(out.len(), 2);
    j.outbox_done("r9/0")
        .await
        .expect("journal: outbox_done failed");
    let out = j.outbox().await.expect("journal: outbox failed");
    assert_eq!(
        out.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec!["r10/0"],
        "journal: outbox_done must remove exactly that entry"
    );
    j.outbox_retry(&retried)
        .await
        .expect("journal: outbox_retry of a delivered entry must succeed");
    assert_eq!(
        j.outbox().await.expect("journal: outbox failed").len(),
        1,
        "journal: outbox_retry must not bring back a delivered entry (it would be delivered twice)"
    );
    j.outbox_done("no-such-key")
        .await
        .expect("journal: outbox_done of an unknown key must succeed (idempotent)");

    // Requests: increasing ids, oldest first, removed when applied, ids never reused.
    let pause = OperatorRequest::Pause {
        reason: "storm drill".into(),
    };
    let recover = OperatorRequest::Recover {
        host: HostId::from("compute-3"),
        despite_storm: true,
    };
    let r1 = submit(j, pause).await;
    let r2 = submit(j, recover.clone()).await;
    assert!(
        r2 > r1,
        "journal: request ids must increase ({r1}, then {r2})"
    );
    let pending = j.requests().await.expect("journal: requests failed");
    assert_eq!(
        request_ids(&pending),
        vec![r1, r2],
        "journal: requests must be listed oldest first"
    );
    assert_eq!(
        pending[1].request, recover,
        "journal: a request must round-trip"
    );
    let applied = Batch {
        applied_requests: vec![r2],
        ..Batch::default()
    };
    j.commit(applied).await.expect("journal: commit failed");
    let pending = j.requests().await.expect("journal: requests failed");
    assert_eq!(
        request_ids(&pending),
        vec![r1],
        "journal: an applied request must be removed, the others kept"
    );
    let r3 = submit(j, OperatorRequest::Resume).await;
    assert!(
        r3 > r2,
        "journal: a request id must never be reused after removal ({r3} after {r2})"
    );

    // Nothing else was disturbed along the way.
    let snap = j.load().await.expect("journal: load failed");
    let names: BTreeSet<_> = snap.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["compute-1", "compute-10"]),
        "journal: hosts are never removed by these operations"
    );
}

/// Power-status reads after a power-off before the fencer suite gives up (one every [`POLL`]).
pub const POWER_POLLS: u32 = 60;
/// Progress reads after an evacuation before the evacuator suite gives up (one every [`POLL`]).
pub const PROGRESS_POLLS: u32 = 300;
/// Time between two reads.
pub const POLL: Duration = Duration::from_millis(500);

/// A host name that starts with `host` but is another host: a driver that matches names by substring or
/// prefix would take it for `host`.
fn near_miss(host: &HostId) -> HostId {
    HostId::new(format!("{host}-freezer-dr-conformance-absent"))
}

/// The [`Fencer`] contract, against a real peer, on `host` (which it must handle and which will be left
/// powered off): `power_off` is accepted and the power status then reads off within [`POWER_POLLS`]
/// reads; a second `power_off` of the off host succeeds (idempotent); a host the fencer does not know is
/// either not handled or refused with a permanent error, never powered off.
pub async fn fencer(f: &dyn Fencer, host: &HostId) {
    assert!(
        f.handles(host),
        "fencer: handles({host}) is false; the suite needs a host the fencer handles"
    );
    f.power_off(host)
        .await
        .unwrap_or_else(|e| panic!("fencer: power_off({host}) failed: {e}"));
    let mut last = None;
    for _ in 0..POWER_POLLS {
        match f.power_status(host).await {
            Ok(PowerState::Off) => {
                last = Some(PowerState::Off);
                break;
            }
            Ok(state) => last = Some(state),
            Err(e) if e.is_temporary() => {}
            Err(e) => {
                panic!("fencer: power_status({host}) failed permanently after power_off: {e}")
            }
        }
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(
        last,
        Some(PowerState::Off),
        "fencer: after an accepted power_off, power_status({host}) must read off within {POWER_POLLS} reads"
    );
    f.power_off(host).await.unwrap_or_else(|e| {
        panic!("fencer: power_off of a host already off must succeed (idempotent), got: {e}")
    });
    let again = f
        .power_status(host)
        .await
        .unwrap_or_else(|e| panic!("fencer: power_status({host}) failed: {e}"));
    assert_eq!(
        again,
        PowerState::Off,
        "fencer: a host powered off twice must still read off"
    );

    let absent = near_miss(host);
    if f.handles(&absent) {
        match f.power_off(&absent).await {
            Ok(()) => panic!(
                "fencer: power_off({absent}) succeeded for a host the peer does not have \
                 (names must match exactly, never by prefix or substring)"
            ),
            Err(e) => assert!(
                !e.is_temporary(),
                "fencer: an unknown host must be a permanent error (retrying cannot help), got: {e}"
            ),
        }
    }
}

/// The [`Evacuator`] contract, against a real peer, for a host that is really down and has at least one
/// instance (two or more also checks that an untouched instance reads `NotStarted`): `isolate` succeeds
/// twice; `instances` lists only instances on exactly that host; an accepted evacuation never reads
/// `NotStarted` and reaches `Done` on another host within [`PROGRESS_POLLS`] reads; the moved instance is
/// no longer listed; an instance that does not exist reads `Gone`.
pub async fn evacuator(e: &dyn Evacuator, fenced: &Fenced) {
    let host = fenced.host();
    e.isolate(fenced)
        .await
        .unwrap_or_else(|err| panic!("evacuator: isolate({host}) failed: {err}"));
    e.isolate(fenced).await.unwrap_or_else(|err| {
        panic!("evacuator: a second isolate({host}) must succeed (safe to repeat), got: {err}")
    });
    let listed = e
        .instances(fenced)
        .await
        .unwrap_or_else(|err| panic!("evacuator: instances({host}) failed: {err}"));
    for i in &listed {
        assert_eq!(
            &i.host, host,
            "evacuator: instances({host}) listed {} which is on {} (hosts must match exactly)",
            i.id, i.host
        );
    }
    let ids: BTreeSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids.len(),
        listed.len(),
        "evacuator: instances({host}) listed an instance twice"
    );
    let Some(first) = listed.first() else {
        panic!("evacuator: the suite needs at least one instance on {host}, found none");
    };
    if let Some(other) = listed.get(1) {
        let p = e
            .progress(other)
            .await
            .unwrap_or_else(|err| panic!("evacuator: progress({}) failed: {err}", other.id));
        assert_eq!(
            p,
            Progress::NotStarted,
            "evacuator: an instance never evacuated, still on its host, must read NotStarted"
        );
    }

    e.evacuate(fenced, first)
        .await
        .unwrap_or_else(|err| panic!("evacuator: evacuate({}) failed: {err}", first.id));
    let mut done = None;
    for _ in 0..PROGRESS_POLLS {
        match e.progress(first).await {
            Ok(Progress::Done { host: to, status }) => {
                done = Some((to, status));
                break;
            }
            Ok(Progress::InProgress { .. }) => {}
            Ok(Progress::NotStarted) => panic!(
                "evacuator: progress({}) read NotStarted after an accepted evacuation: the engine \
                 would request it a second time",
                first.id
            ),
            Ok(other) => panic!("evacuator: evacuation of {} ended {other:?}", first.id),
            Err(err) if err.is_temporary() => {}
            Err(err) => panic!(
                "evacuator: progress({}) failed permanently: {err}",
                first.id
            ),
        }
        tokio::time::sleep(POLL).await;
    }
    let Some((to, status)) = done else {
        panic!(
            "evacuator: evacuation of {} did not reach Done within {PROGRESS_POLLS} reads",
            first.id
        );
    };
    assert_ne!(
        &to, host,
        "evacuator: Done must name another host than the failed one"
    );
    assert!(
        !status.is_empty(),
        "evacuator: Done must carry the instance's status"
    );
    let after = e
        .instances(fenced)
        .await
        .unwrap_or_else(|err| panic!("evacuator: instances({host}) failed: {err}"));
    assert!(
        after.iter().all(|i| i.id != first.id),
        "evacuator: {} is still listed on {host} after its evacuation was done",
        first.id
    );

    let mut ghost = first.clone();
    ghost.id = "00000000-0000-4000-8000-00000000dead".into();
    let p = e
        .progress(&ghost)
        .await
        .unwrap_or_else(|err| panic!("evacuator: progress of a deleted instance failed: {err}"));
    assert_eq!(
        p,
        Progress::Gone,
        "evacuator: an instance that does not exist must read Gone"
    );
}

/// The [`Notifier`] contract: `report` is delivered, and delivering it again (a retry after a lost
/// reply) succeeds too. The peer's side (what arrived, to whom) is the driver's own test.
pub async fn notifier(n: &dyn Notifier, report: &Report) {
    n.notify(report)
        .await
        .unwrap_or_else(|e| panic!("notifier: notify({}) failed: {e}", report.id));
    n.notify(report).await.unwrap_or_else(|e| {
        panic!(
            "notifier: a second notify({}) (a retry) must succeed, got: {e}",
            report.id
        )
    });
}

/// The [`Monitor`] contract: `observe` succeeds, lists at least one host, no host twice, and the same
/// hosts on a second observation.
pub async fn monitor(m: &dyn Monitor) {
    let seen = m
        .observe()
        .await
        .unwrap_or_else(|e| panic!("monitor: observe failed: {e}"));
    assert!(!seen.is_empty(), "monitor: observe listed no host");
    let names: BTreeSet<&HostId> = seen.iter().map(|h| &h.host).collect();
    assert_eq!(
        names.len(),
        seen.len(),
        "monitor: observe listed a host twice: {seen:?}"
    );
    let again = m
        .observe()
        .await
        .unwrap_or_else(|e| panic!("monitor: a second observe failed: {e}"));
    let names_again: BTreeSet<&HostId> = again.iter().map(|h| &h.host).collect();
    assert_eq!(
        names, names_again,
        "monitor: two observations in a row listed different hosts"
    );
}

/// The [`Directory`] contract, for a project that has users: `recipients` lists them, each once, and
/// every email it gives looks like one; `project_name` answers, with a name that is not blank if it
/// knows one.
pub async fn directory(d: &dyn Directory, project: &str) {
    let name = d
        .project_name(project)
        .await
        .unwrap_or_else(|e| panic!("directory: project_name({project}) failed: {e}"));
    if let Some(name) = name {
        assert!(
            !name.trim().is_empty(),
            "directory: project_name({project}) is blank"
        );
    }
    let users = d
        .recipients(project)
        .await
        .unwrap_or_else(|e| panic!("directory: recipients({project}) failed: {e}"));
    assert!(
        !users.is_empty(),
        "directory: recipients({project}) listed nobody"
    );
    let ids: BTreeSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        users.len(),
        "directory: a user was listed twice: {users:?}"
    );
    for u in &users {
        if let Some(email) = &u.email {
            assert!(
                email.contains('@') && !email.trim().is_empty(),
                "directory: {} has the email {email:?}, which is not an address",
                u.user_id
            );
        }
    }
}

/// Submits `request`; its id.
async fn submit(j: &dyn Journal, request: OperatorRequest) -> u64 {
    j.submit(request).await.expect("journal: submit failed")
}

/// The ids of `pending`, in order.
fn request_ids(pending: &[PendingRequest]) -> Vec<u64> {
    pending.iter().map(|p| p.id).collect()
}
