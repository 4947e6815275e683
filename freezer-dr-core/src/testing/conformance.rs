//! Conformance suites: what every implementation of a core trait must do, checked against a real peer.
//!
//! A driver crate calls the suite for its role from its own tests, with its driver talking to a real peer
//! (a BMC simulator, libvirt's test driver, an SMTP server, a Nova lab). The suites panic with a message
//! naming the broken rule.

// Test code: a panic with a message is how a suite reports a broken rule.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;

use crate::engine::{
    EngineMeta, FenceProof, FenceRecord, HistoryEvent, HostRecord, InstanceRecord, InstanceState,
    OperatorRequest, Stage,
};
use crate::journal::{Batch, OutboxEntry};
use crate::{Audience, Health, HostId, Instance, Journal, Report, ReportKind, Timestamp};

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
    j.outbox_retry(&retried)
        .await
        .expect("journal: outbox_retry failed");
    let out = j.outbox().await.expect("journal: outbox failed");
    assert_eq!(
        out[0], retried,
        "journal: outbox_retry must record attempts, error and next time"
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
    let r1 = j
        .submit(OperatorRequest::Pause {
            reason: "storm drill".into(),
        })
        .await
        .expect("journal: submit failed");
    let r2 = j
        .submit(OperatorRequest::Recover {
            host: HostId::from("compute-3"),
        })
        .await
        .expect("journal: submit failed");
    assert!(
        r2 > r1,
        "journal: request ids must increase ({r1}, then {r2})"
    );
    let pending = j.requests().await.expect("journal: requests failed");
    assert_eq!(
        pending.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![r1, r2],
        "journal: requests must be listed oldest first"
    );
    assert_eq!(
        pending[1].request,
        OperatorRequest::Recover {
            host: HostId::from("compute-3")
        },
        "journal: a request must round-trip"
    );
    let applied = Batch {
        applied_requests: vec![r2],
        ..Batch::default()
    };
    j.commit(applied).await.expect("journal: commit failed");
    let pending = j.requests().await.expect("journal: requests failed");
    assert_eq!(
        pending.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![r1],
        "journal: an applied request must be removed, the others kept"
    );
    let r3 = j
        .submit(OperatorRequest::Resume)
        .await
        .expect("journal: submit failed");
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
