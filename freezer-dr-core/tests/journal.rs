//! The journals: the conformance suite on both, and what only the on-disk one must do (reopen, share the
//! file with the CLI, one daemon per file, durability under SIGKILL, clear errors).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use freezer_dr_core::engine::{
    EngineMeta, HistoryEvent, HostRecord, InstanceRecord, InstanceState, OperatorRequest, Stage,
};
use freezer_dr_core::journal::{Batch, MemoryJournal, OutboxEntry, RedbJournal};
use freezer_dr_core::testing::{conformance, instance};
use freezer_dr_core::{Audience, ErrorKind, HostId, Journal, Report, ReportKind, Timestamp};

const CHILD_COMMIT_ENV: &str = "FREEZER_DR_TEST_CHILD_COMMIT";
const CHILD_SUBMIT_ENV: &str = "FREEZER_DR_TEST_CHILD_SUBMIT";

/// Batch number `n` of the kill test: every table carries `n`, so a half-written batch shows.
fn numbered_batch(n: u64) -> Batch {
    let mut host = HostRecord::new(HostId::from("compute-1"), Timestamp(n));
    host.stage = Stage::Evacuating;
    host.failures = u32::try_from(n).unwrap();
    let mut b = Batch::default();
    b.changes.hosts = vec![host];
    let rec: InstanceRecord = serde_json::from_value(serde_json::json!({
        "instance": instance("i-1", "compute-1"),
        "state": {"state": "requested", "at": n},
        "attempts": n,
    }))
    .unwrap();
    b.changes.instances = vec![(HostId::from("compute-1"), rec)];
    b.changes.meta = Some(EngineMeta {
        report_seq: n,
        ..EngineMeta::default()
    });
    b.changes.history = vec![HistoryEvent {
        at: Timestamp(n),
        host: None,
        instance: None,
        what: format!("batch {n}"),
    }];
    b.outbox = vec![OutboxEntry {
        key: format!("r{n}/0"),
        notifier: 0,
        report: Report::new(
            format!("r{n}"),
            Timestamp(n),
            ReportKind::Storm,
            Audience::Operators,
            None,
            "storm",
        ),
        attempts: 0,
        last_error: None,
        next_attempt: Timestamp(n),
    }];
    b
}

/// Checks that the journal holds exactly batches 1..=m, each one whole; returns m.
async fn check_numbered_batches(j: &RedbJournal) -> u64 {
    let snap = j.load().await.unwrap();
    let m = snap.meta.report_seq;
    let hosts = snap.hosts;
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        u64::from(hosts[0].failures),
        m,
        "host record from another batch than meta"
    );
    let rec = &hosts[0].instances["i-1"];
    assert_eq!(
        u64::from(rec.attempts),
        m,
        "instance record from another batch than meta"
    );
    assert_eq!(rec.state, InstanceState::Requested { at: Timestamp(m) });
    let history: Vec<u64> = j
        .history(usize::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.at.0)
        .collect();
    assert_eq!(
        history,
        (1..=m).collect::<Vec<_>>(),
        "history lost or duplicated a batch"
    );
    let outbox: Vec<String> = j
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(
        outbox,
        (1..=m).map(|n| format!("r{n}/0")).collect::<Vec<_>>(),
        "outbox lost a batch's entry"
    );
    m
}

/// Not a test: the child process of `committed_batches_survive_sigkill`. It continues the numbered
/// batches where the journal stands and prints `COMMITTED <n>` after each durable commit, until killed.
#[tokio::test]
#[ignore = "run as a child process by committed_batches_survive_sigkill"]
async fn child_commits_numbered_batches_until_killed() {
    let path = std::env::var(CHILD_COMMIT_ENV).expect("only run as a child process");
    let j = RedbJournal::open(&path).unwrap();
    let mut n = j.load().await.unwrap().meta.report_seq;
    loop {
        n += 1;
        j.commit(numbered_batch(n)).await.unwrap();
        println!("COMMITTED {n}");
    }
}

/// Not a test: the child process of `a_request_from_another_process_reaches_the_daemon_handle`.
#[tokio::test]
#[ignore = "run as a child process by a_request_from_another_process_reaches_the_daemon_handle"]
async fn child_submits_a_pause_request() {
    let path = std::env::var(CHILD_SUBMIT_ENV).expect("only run as a child process");
    let j = RedbJournal::open(&path).unwrap();
    let id = j
        .submit(OperatorRequest::Pause {
            reason: "from another process".into(),
        })
        .await
        .unwrap();
    println!("SUBMITTED {id}");
}

/// The number after `prefix` in a child's output line (libtest may print its own text before it).
fn marker(line: &str, prefix: &str) -> Option<u64> {
    line.split(prefix).nth(1)?.trim().parse().ok()
}

fn child(test: &str, env: &str, path: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(env, path)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

#[tokio::test]
async fn redb_journal_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    conformance::journal(&j).await;
}

#[tokio::test]
async fn memory_journal_passes_the_conformance_suite() {
    conformance::journal(&MemoryJournal::new()).await;
}

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/journal.redb");
    let j = RedbJournal::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(j.path(), path);
}

#[tokio::test]
async fn committed_data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    {
        let j = RedbJournal::open(&path).unwrap();
        j.commit(numbered_batch(1)).await.unwrap();
        j.commit(numbered_batch(2)).await.unwrap();
        j.submit(OperatorRequest::Resume).await.unwrap();
    }
    let j = RedbJournal::open(&path).unwrap();
    assert_eq!(check_numbered_batches(&j).await, 2);
    let reqs = j.requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request, OperatorRequest::Resume);
}

#[tokio::test]
async fn a_cli_handle_and_a_daemon_handle_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let daemon = RedbJournal::open(&path).unwrap();
    let _lock = daemon.lock_daemon().unwrap();
    daemon.commit(numbered_batch(1)).await.unwrap();

    let cli =
        RedbJournal::open(&path).expect("the CLI must open the journal while the daemon has it");
    assert_eq!(
        cli.load().await.unwrap().meta.report_seq,
        1,
        "the CLI sees the daemon's state"
    );
    let id = cli
        .submit(OperatorRequest::Pause {
            reason: "drill".into(),
        })
        .await
        .unwrap();

    let pending = daemon.requests().await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the daemon handle must see the CLI's request"
    );
    assert_eq!(pending[0].id, id);
    let mut applied = numbered_batch(2);
    applied.applied_requests = vec![id];
    daemon.commit(applied).await.unwrap();
    assert!(
        cli.requests().await.unwrap().is_empty(),
        "the CLI sees it applied"
    );
    assert_eq!(cli.history(10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_request_from_another_process_reaches_the_daemon_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let daemon = RedbJournal::open(&path).unwrap();
    let _lock = daemon.lock_daemon().unwrap();
    daemon.commit(numbered_batch(1)).await.unwrap();

    let out = child("child_submits_a_pause_request", CHILD_SUBMIT_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: u64 = stdout
        .lines()
        .find_map(|l| marker(l, "SUBMITTED "))
        .unwrap_or_else(|| panic!("child printed no id: {stdout}"));

    let pending = daemon.requests().await.unwrap();
    assert_eq!(
        pending.len(),
        1,
        "the daemon must see the other process's request"
    );
    assert_eq!(pending[0].id, id);
    assert_eq!(
        pending[0].request,
        OperatorRequest::Pause {
            reason: "from another process".into()
        }
    );
    // The daemon keeps writing after the other process wrote.
    let mut applied = numbered_batch(2);
    applied.applied_requests = vec![id];
    daemon.commit(applied).await.unwrap();
    assert!(daemon.requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_second_daemon_lock_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let first = RedbJournal::open(&path).unwrap();
    let second = RedbJournal::open(&path).unwrap();
    let lock = first.lock_daemon().unwrap();
    let err = second.lock_daemon().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Journal);
    let msg = err.to_string();
    assert!(msg.contains("another freezer-dr"), "{msg}");
    assert!(
        msg.contains(&std::process::id().to_string()),
        "names the holder's pid: {msg}"
    );
    assert!(
        msg.contains("journal.redb.lock"),
        "names the lock file: {msg}"
    );
    assert!(
        !err.is_temporary(),
        "a held lock is not worth retrying blindly"
    );
    drop(lock);
    let _again = second.lock_daemon().expect("the lock is released on drop");
}

#[tokio::test]
async fn a_path_under_a_regular_file_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let path = file.join("journal.redb");
    let err = RedbJournal::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(
        err.to_string().contains("[journal] path"),
        "says what to do: {err}"
    );
}

#[tokio::test]
async fn a_directory_as_journal_path_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = RedbJournal::open(dir.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_journal_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    std::fs::write(&path, "this is not a redb file, it is a note ".repeat(200)).unwrap();
    let err = RedbJournal::open(&path).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Journal);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn history_is_bounded_to_the_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
    let limit = freezer_dr_core::journal::HISTORY_LIMIT;
    let mut b = Batch::default();
    b.changes.history = (0..limit + 3)
        .map(|n| HistoryEvent {
            at: Timestamp(n),
            host: None,
            instance: None,
            what: String::new(),
        })
        .collect();
    j.commit(b).await.unwrap();
    let all = j.history(usize::MAX).await.unwrap();
    assert_eq!(all.len() as u64, limit, "history must be capped");
    assert_eq!(
        all[0].at,
        Timestamp(3),
        "the oldest lines are the ones dropped"
    );
    let last = j.history(2).await.unwrap();
    assert_eq!(last[1].at, Timestamp(limit + 2));
}

#[tokio::test]
async fn memory_journal_clones_share_one_state() {
    let j = MemoryJournal::new();
    let restarted = j.clone();
    j.commit(numbered_batch(1)).await.unwrap();
    assert_eq!(restarted.load().await.unwrap().meta.report_seq, 1);
    assert_eq!(restarted.commits(), 1);
}

#[tokio::test]
async fn memory_journal_scripted_commit_failure_writes_nothing() {
    let j = MemoryJournal::new();
    j.fail_next_commits(1);
    let err = j.commit(numbered_batch(1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Journal);
    assert!(err.is_temporary());
    assert_eq!(j.load().await.unwrap().meta, EngineMeta::default());
    assert!(j.history(10).await.unwrap().is_empty());
    assert!(j.outbox().await.unwrap().is_empty());
    j.commit(numbered_batch(1)).await.unwrap();
    assert_eq!(j.load().await.unwrap().meta.report_seq, 1);
}

/// Three rounds: a child process commits numbered batches in a loop and is SIGKILLed mid-stream; every
/// batch it reported committed must be there, whole, and at most one more (committed, not yet
/// reported).
#[tokio::test]
async fn committed_batches_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let mut before = 0;
    for round in 0..3 {
        let mut proc = child(
            "child_commits_numbered_batches_until_killed",
            CHILD_COMMIT_ENV,
            &path,
        )
        .spawn()
        .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut reported = before;
        while reported < before + 25 {
            let Some(line) = lines.next() else { break };
            if let Some(n) = marker(&line.unwrap(), "COMMITTED ") {
                reported = n;
            }
        }
        proc.kill().unwrap(); // SIGKILL
        for line in lines {
            if let Some(n) = marker(&line.unwrap(), "COMMITTED ") {
                reported = n;
            }
        }
        let status = proc.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut proc.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(
            reported >= before + 25,
            "round {round}: the child stopped early ({status}): {stderr}"
        );
        let j = RedbJournal::open(&path).unwrap();
        let m = check_numbered_batches(&j).await;
        assert!(
            m == reported || m == reported + 1,
            "round {round}: child reported {reported} commits, journal holds {m}"
        );
        before = m;
    }
}

/// What the previous release (0.1.0) wrote: `tests/fixtures/journal-0.1.0.redb`, made by that release's
/// own engine and journal (a recovery mid-evacuation on `c1`, `c2` waiting for an operator after a
/// refused power-off, reports in the outbox, a `recover` and a `pause` request), and the complete
/// example config `freezer-dr example` printed (`tests/fixtures/freezer-dr-0.1.0.toml`).
fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn a_journal_written_by_the_previous_release_loads_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    std::fs::copy(fixture("journal-0.1.0.redb"), &path).unwrap();
    let j = RedbJournal::open(&path).unwrap();
    let snap = j.load().await.unwrap();
    assert!(
        !snap.journal_id.is_empty(),
        "a 0.1 journal gets its id when opened"
    );
    drop(j);
    let j = RedbJournal::open(&path).unwrap();
    assert_eq!(
        j.load().await.unwrap().journal_id,
        snap.journal_id,
        "and keeps it"
    );
    let host = |name: &str| snap.hosts.iter().find(|h| h.host == name.into()).unwrap();
    let c1 = host("c1");
    assert_eq!(c1.stage, Stage::Evacuating);
    assert!(c1.fence.is_some());
    assert_eq!(
        (c1.down_streak, c1.absent_since),
        (0, None),
        "new fields default"
    );
    assert!(matches!(
        c1.instances["i-1"].state,
        InstanceState::Rebuilding { .. }
    ));
    assert!(matches!(
        c1.instances["i-2"].state,
        InstanceState::Requested { .. }
    ));
    assert!(matches!(host("c2").stage, Stage::NeedsOperator { .. }));
    let requests: Vec<OperatorRequest> = j
        .requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request)
        .collect();
    assert_eq!(
        requests[0],
        OperatorRequest::Recover {
            host: "c2".into(),
            despite_storm: false
        }
    );
    assert!(matches!(requests[1], OperatorRequest::Pause { .. }));
    assert!(!j.outbox().await.unwrap().is_empty());
    // The engine resumes from it: every instance whose request may have left is read, not sent again.
    let mut engine = freezer_dr_core::Engine::from_snapshot(Default::default(), 1, snap);
    let cmds = engine.step(Timestamp(1_700_000_200_000), freezer_dr_core::Input::Tick);
    let names: Vec<&str> = cmds.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["progress", "progress"], "{cmds:?}");
}

#[test]
fn the_example_config_of_the_previous_release_still_loads() {
    let cfg = freezer_dr_core::config::Config::load(fixture("freezer-dr-0.1.0.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg.recovery.forget_after,
        std::time::Duration::from_secs(3600),
        "a key it did not have takes its default"
    );
}
