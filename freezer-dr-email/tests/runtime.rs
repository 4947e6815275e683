//! `EmailNotifier` driven by core's runtime and outbox (simulated cloud, real SMTP server): a mail server
//! that is down delays mails without losing or doubling them, and a crash between "accepted" and
//! "recorded" resends only copies with the same Message-ID.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use freezer_dr_core::config::RecoveryConfig;
use freezer_dr_core::engine::{HistoryEvent, OperatorRequest, Snapshot};
use freezer_dr_core::journal::{Batch, MemoryJournal, OutboxEntry, PendingRequest};
use freezer_dr_core::runtime::Pipeline;
use freezer_dr_core::testing::{FakeDirectory, World, fake_pipeline, fast_recovery};
use freezer_dr_core::{Error, ErrorKind, Journal, Result, Runtime};
use freezer_dr_email::EmailNotifier;

fn recovery_config() -> RecoveryConfig {
    // One down observation fences; a call is tried once and given 3 s.
    let mut cfg = fast_recovery();
    cfg.strikes = 1;
    cfg.call_timeout = Duration::from_secs(3);
    cfg.call_attempts = 1;
    cfg
}

/// Four hosts with three instances each (projects a, b, c); `c1` dies.
fn world() -> World {
    let w = World::grid(4, 3);
    w.evacuation_takes(1);
    w.kill("c1");
    w
}

fn pipeline(w: &World, notifier: EmailNotifier) -> Pipeline {
    Pipeline {
        notifiers: vec![Arc::new(notifier)],
        ..fake_pipeline(w, 1)
    }
}

/// host_fenced → the three operators; recovered → the user of each of the three projects and the three
/// operators.
const MAILS: usize = 3 + 3 + 3;

/// Per (recipient, Message-ID): how many copies arrived.
fn copies(msgs: &[Received]) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for r in msgs {
        for rcpt in &r.rcpt {
            *m.entry((rcpt.clone(), r.message_id.clone())).or_insert(0) += 1;
        }
    }
    m
}

fn check_recipients(msgs: &[Received]) {
    let rcpts: BTreeSet<String> = msgs.iter().flat_map(|m| m.rcpt.clone()).collect();
    let want: BTreeSet<String> = [
        "ops@example.org",
        "ops-cc@example.org",
        "ops-bcc@example.org",
        "user-of-project-a@example.org",
        "user-of-project-b@example.org",
        "user-of-project-c@example.org",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(rcpts, want);
    for p in ["project-a", "project-b", "project-c"] {
        for m in to_addr(msgs, &format!("user-of-{p}@example.org")) {
            // The name the directory gave, looked up by the runtime; the id in the text.
            assert_contains(&m.subject, &format!("Project name-of-{p}: "));
            assert_contains(&m.text, &format!("project name-of-{p} ({p})"));
            for other in ["project-a", "project-b", "project-c"] {
                if other != p {
                    assert!(
                        !m.text.contains(other),
                        "the mail of {p} mentions {other}:\n{}",
                        m.text
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_at_first_gets_each_mail_exactly_once_when_it_returns() {
    if skip() {
        return;
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let w = world();
    let journal = MemoryJournal::new();
    let rt = Runtime::new(
        recovery_config(),
        pipeline(&w, notifier(config(port))),
        Arc::new(journal.clone()),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(rt.run(async {
        let _ = stop_rx.await;
    }));

    // The first delivery fails (nobody listens) and is kept in the outbox with its error.
    let mut failed = false;
    for _ in 0..200 {
        let out = journal.outbox().await.unwrap();
        if let Some(e) = out.iter().find(|e| e.attempts > 0) {
            let err = e.last_error.clone().unwrap_or_default();
            assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed,
        "no delivery attempt failed while the server was down"
    );

    let server = SmtpServer::on(port, &dir.path().join("maildir"), &ServerOptions::default());
    let mut done = false;
    for _ in 0..1200 {
        if server.messages().len() >= MAILS && journal.outbox().await.unwrap().is_empty() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "the outbox did not drain once the server was up: {} mails, outbox {:?}",
        server.messages().len(),
        journal.outbox().await.unwrap()
    );
    // Give a stray duplicate the time to show up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = stop_tx.send(());
    daemon.await.unwrap().unwrap();

    let msgs = server.messages();
    assert_eq!(msgs.len(), MAILS, "each mail exactly once");
    for (k, n) in copies(&msgs) {
        assert_eq!(n, 1, "{k:?} arrived {n} times");
    }
    check_recipients(&msgs);
}

/// A journal whose `outbox_done` fails while `forget` is set: the server accepted the mails but the
/// outbox never recorded it, as if freezer-dr were killed in between.
#[derive(Clone)]
struct Forgetful {
    inner: MemoryJournal,
}

#[async_trait::async_trait]
impl Journal for Forgetful {
    async fn load(&self) -> Result<Snapshot> {
        self.inner.load().await
    }
    async fn commit(&self, batch: Batch) -> Result<()> {
        self.inner.commit(batch).await
    }
    async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        self.inner.outbox().await
    }
    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<()> {
        self.inner.outbox_retry(entry).await
    }
    async fn outbox_done(&self, _key: &str) -> Result<()> {
        Err(Error::new(
            ErrorKind::Journal,
            "killed before the delivery was recorded",
        ))
    }
    async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        self.inner.history(limit).await
    }
    async fn submit(&self, request: OperatorRequest) -> Result<u64> {
        self.inner.submit(request).await
    }
    async fn requests(&self) -> Result<Vec<PendingRequest>> {
        self.inner.requests().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_server_accepted_resends_only_the_same_message_ids() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let w = world();
    let journal = MemoryJournal::new();

    // First life: every mail is accepted, nothing is recorded as delivered.
    let first = Runtime::new(
        recovery_config(),
        pipeline(&w, notifier(config(server.port))),
        Arc::new(Forgetful {
            inner: journal.clone(),
        }),
    );
    let summary = first.run_once().await.unwrap();
    assert_eq!(summary.recovered.len(), 1, "{summary:?}");
    let before = server.messages();
    assert_eq!(
        before.len(),
        MAILS,
        "the first life sent every mail once (its retries of unrecorded reports sent nothing twice)"
    );
    let pending = journal.outbox().await.unwrap();
    assert_eq!(
        pending.len(),
        2,
        "both reports are still in the outbox: {pending:?}"
    );

    // Second life: a new process (its memory of sent mails is gone) with the same journal.
    let second = Runtime::new(
        recovery_config(),
        pipeline(&w, notifier(config(server.port))),
        Arc::new(journal.clone()),
    );
    second.run_once().await.unwrap();
    assert!(
        journal.outbox().await.unwrap().is_empty(),
        "the outbox drained"
    );

    let after = server.messages();
    assert_eq!(
        after.len(),
        2 * MAILS,
        "the second life resent what the outbox had not recorded (allowed, with the same ids)"
    );
    let ids_before: BTreeSet<(String, String)> = copies(&before).into_keys().collect();
    let ids_after: BTreeSet<(String, String)> = copies(&after).into_keys().collect();
    assert_eq!(
        ids_before, ids_after,
        "a resent mail must carry the same Message-ID as the first copy (no new ids)"
    );
    for (k, n) in copies(&after) {
        assert!(n <= 2, "{k:?} arrived {n} times");
    }
    let per_rcpt_ids = |rcpt: &str| -> BTreeSet<String> {
        to_addr(&after, rcpt)
            .iter()
            .map(|m| m.message_id.clone())
            .collect()
    };
    assert_eq!(
        per_rcpt_ids("ops@example.org").len(),
        2,
        "operators: one id for the start, one for the end"
    );
    assert_eq!(per_rcpt_ids("user-of-project-a@example.org").len(), 1);
    check_recipients(&after);
}

/// A directory that cannot list the users of `project-b`, nor name it, while `broken` is set.
#[derive(Clone)]
struct PatchyDirectory {
    inner: FakeDirectory,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl freezer_dr_core::Directory for PatchyDirectory {
    async fn recipients(&self, project: &str) -> Result<Vec<freezer_dr_core::Recipient>> {
        if project == "project-b" && self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "keystone: connection refused",
            ));
        }
        self.inner.recipients(project).await
    }

    async fn project_name(&self, project: &str) -> Result<Option<String>> {
        if project == "project-b" && self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::new(
                ErrorKind::Unreachable,
                "keystone: connection refused",
            ));
        }
        self.inner.project_name(project).await
    }
}

fn patchy(w: &World, port: u16, broken: &Arc<std::sync::atomic::AtomicBool>) -> Pipeline {
    let mut p = pipeline(w, notifier(config(port)));
    p.directory = Some(Arc::new(PatchyDirectory {
        inner: FakeDirectory::new(w),
        broken: broken.clone(),
    }));
    p
}

/// A server, the world, a directory failing for project-b (until the flag is cleared), a journal.
fn setup() -> (
    SmtpServer,
    World,
    Arc<std::sync::atomic::AtomicBool>,
    MemoryJournal,
) {
    let server = SmtpServer::start(&ServerOptions::default());
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    (server, world(), broken, MemoryJournal::new())
}

fn patchy_runtime(
    w: &World,
    server: &SmtpServer,
    broken: &Arc<std::sync::atomic::AtomicBool>,
    journal: &MemoryJournal,
) -> Runtime {
    Runtime::new(
        recovery_config(),
        patchy(w, server.port, broken),
        Arc::new(journal.clone()),
    )
}

/// Polls until `done` holds (or 60 s passed), then leaves a stray duplicate the time to show up.
async fn wait_until(mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if done().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A daemon running `rt`, and how to stop it.
fn start(
    rt: Runtime,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<()>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(rt.run(async {
        let _ = stop_rx.await;
    }));
    (stop_tx, daemon)
}

/// Runs a daemon until `done` holds (or 60 s passed), then stops it.
async fn run_until(rt: Runtime, done: impl AsyncFnMut() -> bool) {
    let (stop_tx, daemon) = start(rt);
    wait_until(done).await;
    let _ = stop_tx.send(());
    daemon.await.unwrap().unwrap();
}

/// While project-b cannot be looked up: both operator mails, and the users of a and c.
fn check_first_part(server: &SmtpServer) {
    let msgs = server.messages();
    assert_eq!(msgs.len(), MAILS - 1, "everything but project-b's mail");
    assert!(to_addr(&msgs, "user-of-project-b@example.org").is_empty());
    for p in ["a", "c"] {
        assert_eq!(
            to_addr(&msgs, &format!("user-of-project-{p}@example.org")).len(),
            1
        );
    }
    let digest = to_addr(&msgs, "ops@example.org")
        .into_iter()
        .find(|m| m.subject.contains("recovery finished"))
        .expect("the digest went out while the lookup failed");
    assert!(
        digest.text.contains("USERS NOT TOLD YET")
            && digest.text.contains("project-b")
            && digest.text.contains("keystone: connection refused")
            && digest
                .text
                .contains("mails them once the directory answers"),
        "{}",
        digest.text
    );
}

fn check_all_once(server: &SmtpServer) {
    let msgs = server.messages();
    assert_eq!(msgs.len(), MAILS, "each mail exactly once");
    for (k, n) in copies(&msgs) {
        assert_eq!(n, 1, "{k:?} arrived {n} times");
    }
    check_recipients(&msgs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_does_not_hold_back_the_digest() {
    if skip() {
        return;
    }
    let (server, w, broken, journal) = setup();
    let rt = patchy_runtime(&w, &server, &broken, &journal);
    let (stop_tx, daemon) = start(rt);
    wait_until(async || server.messages().len() >= MAILS - 1).await;
    check_first_part(&server);
    assert!(!journal.outbox().await.unwrap().is_empty(), "kept for b");

    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until(async || journal.outbox().await.unwrap().is_empty()).await;
    let _ = stop_tx.send(());
    daemon.await.unwrap().unwrap();
    assert!(journal.outbox().await.unwrap().is_empty(), "outbox drained");
    check_all_once(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_only_the_mails_of_projects_not_looked_up_are_sent() {
    if skip() {
        return;
    }
    let (server, w, broken, journal) = setup();
    let first = patchy_runtime(&w, &server, &broken, &journal);
    run_until(first, async || server.messages().len() >= MAILS - 1).await;
    check_first_part(&server);

    // A new process (its notifier's memory of sent mails is gone), the directory answering again.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let second = patchy_runtime(&w, &server, &broken, &journal);
    run_until(second, async || journal.outbox().await.unwrap().is_empty()).await;
    assert!(journal.outbox().await.unwrap().is_empty(), "outbox drained");
    check_all_once(&server);
}
