//! The file journal's unit tests.

use std::sync::atomic::Ordering;

use super::*;
use crate::engine::Stage;
use crate::{HostId, Journal};

#[tokio::test]
async fn a_batch_that_fails_midway_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    let mut host = HostRecord::new(HostId::from("compute-1"), Timestamp(1));
    let mut first = Batch::default();
    first.changes.hosts = vec![host.clone()];
    j.commit(first).await.unwrap();

    host.stage = Stage::Evacuating;
    let mut b = Batch::default();
    b.changes.hosts = vec![
        host.clone(),
        HostRecord::new(HostId::from("compute-2"), Timestamp(1)),
    ];
    b.changes.meta = Some(EngineMeta {
        report_seq: 5,
        ..EngineMeta::default()
    });
    b.changes.history = vec![HistoryEvent {
        at: Timestamp(2),
        host: None,
        instance: None,
        what: "x".into(),
    }];
    j.inner.fail_mid_commit.store(true, Ordering::SeqCst);
    let err = j.commit(b.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Journal);
    assert!(
        err.to_string().contains("journal.redb"),
        "names the file: {err}"
    );

    let snap = j.load().await.unwrap();
    assert_eq!(
        snap.hosts.len(),
        1,
        "the hosts written before the failure were rolled back"
    );
    assert_eq!(snap.hosts[0].stage, Stage::Healthy);
    assert_eq!(snap.meta, EngineMeta::default());
    assert!(j.history(10).await.unwrap().is_empty());

    j.commit(b).await.unwrap();
    let snap = j.load().await.unwrap();
    assert_eq!(
        snap.hosts.len(),
        2,
        "the same batch commits once the failure is gone"
    );
    assert_eq!(snap.meta.report_seq, 5);
}

#[tokio::test]
async fn values_are_stored_as_inspectable_json() {
    let dir = tempfile::tempdir().unwrap();
    let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    let mut b = Batch::default();
    b.changes.hosts = vec![HostRecord::new(HostId::from("compute-1"), Timestamp(1))];
    j.commit(b).await.unwrap();
    let tx = j.inner.db.begin_read().unwrap();
    let t = tx.open_table(HOSTS).unwrap();
    let raw = t.get("compute-1").unwrap().unwrap().value().to_owned();
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["host"], "compute-1");
    assert_eq!(v["stage"]["stage"], "healthy");
    assert!(
        v.get("instances").is_none(),
        "instances live in their own table"
    );
}
