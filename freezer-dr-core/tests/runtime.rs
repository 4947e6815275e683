//! The runtime with fault-injecting fakes under paused time: retries, timeouts, the outbox, shutdown, and
//! crashes injected after every driver call with a restart from the journal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::sync::Arc;
use std::time::Duration;

use freezer_dr_core::config::{LocalRootDisk, RecoveryConfig};
use freezer_dr_core::engine::{InstanceState, OperatorRequest, Stage};
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::runtime::{Pipeline, Summary};
use freezer_dr_core::testing::{Call, FakeDirectory, Op, World, fake_pipeline};
use freezer_dr_core::{ErrorKind, HostId, Journal, PowerState, Runtime};

fn config() -> RecoveryConfig {
    let mut cfg = RecoveryConfig::default();
    cfg.interval = Duration::from_secs(10);
    cfg.strikes = 2;
    cfg.call_timeout = Duration::from_secs(20);
    cfg.call_attempts = 3;
    cfg.call_backoff = Duration::from_secs(1);
    cfg.storm.max_fraction = 0.5;
    cfg.fencing.poll_interval = Duration::from_secs(1);
    cfg.fencing.confirm_timeout = Duration::from_secs(15);
    cfg.evacuation.poll_interval = Duration::from_secs(2);
    cfg.evacuation.retry_delay = Duration::from_secs(3);
    cfg.policy.local_root_disk = LocalRootDisk::Evacuate;
    cfg
}

/// Four hosts with three instances each; `c1` dies.
fn world() -> World {
    let w = World::grid(4, 3);
    w.evacuation_takes(2);
    w.kill("c1");
    w
}

fn pipeline(w: &World, levels: usize) -> Pipeline {
    fake_pipeline(w, levels)
}

fn runtime(w: &World, journal: &MemoryJournal, cfg: RecoveryConfig) -> Runtime {
    Runtime::new(cfg, pipeline(w, 1), Arc::new(journal.clone()))
}

/// One pass of a runtime of `w` with a fresh journal and the tests' `[recovery]`.
async fn run_once(w: &World) -> Summary {
    runtime(w, &MemoryJournal::new(), config())
        .run_once()
        .await
        .unwrap()
}

fn delivered_kinds(w: &World) -> Vec<String> {
    w.delivered()
        .iter()
        .map(|d| {
            serde_json::to_value(&d.report.kind).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn host_of(w: &World, instance: &str) -> HostId {
    w.instance_state(instance).unwrap().instance.host
}

#[tokio::test(start_paused = true)]
async fn run_once_recovers_a_dead_host_and_tells_everyone() {
    let w = world();
    let on_c1: Vec<String> = w.instances_on("c1").into_iter().map(|i| i.id).collect();
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, config()).run_once().await.unwrap();
    assert_eq!(summary.recovered, [HostId::from("c1")]);
    assert!(summary.needs_operator.is_empty() && summary.failed_instances == 0);
    assert_eq!(summary.refused, None);
    assert_eq!(w.host_state("c1").unwrap().power, PowerState::Off);
    for id in &on_c1 {
        assert_ne!(host_of(&w, id), HostId::from("c1"), "{id} still on c1");
    }
    assert_eq!(w.power_offs("c1"), 1);
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    let kinds = delivered_kinds(&w);
    assert!(kinds.contains(&"host_fenced".into()), "{kinds:?}");
    assert!(kinds.contains(&"recovered".into()), "{kinds:?}");
    let recovered = w
        .delivered()
        .into_iter()
        .find(|d| d.report.kind == freezer_dr_core::ReportKind::Recovered)
        .unwrap();
    assert_eq!(
        recovered.report.recipients.len(),
        3,
        "one project per instance"
    );
    assert_eq!(
        recovered.report.project_names,
        ["project-a", "project-b", "project-c"]
            .map(|p| (p.to_owned(), format!("name-of-{p}")))
            .into(),
        "each project's name, from the directory"
    );
    assert_eq!(summary.undelivered, 0);
    // The journal holds the outcome.
    let snap = journal.load().await.unwrap();
    let c1 = snap.hosts.iter().find(|h| h.host == "c1".into()).unwrap();
    assert_eq!(c1.stage, Stage::Evacuated);
    assert!(
        c1.instances
            .values()
            .all(|i| matches!(i.state, InstanceState::Done { .. }))
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_pass_does_not_recover_or_report_a_host_twice() {
    let w = world();
    let journal = MemoryJournal::new();
    runtime(&w, &journal, config()).run_once().await.unwrap();
    let delivered = w.delivered().len();
    let summary = runtime(&w, &journal, config()).run_once().await.unwrap();
    assert!(summary.recovered.is_empty(), "{summary:?}");
    assert_eq!(w.power_offs("c1"), 1);
    assert_eq!(w.count(Op::Evacuate), 3);
    assert_eq!(w.delivered().len(), delivered);
}

#[tokio::test(start_paused = true)]
async fn one_pass_recovers_every_host_down_even_one_fencing_per_cycle() {
    let w = World::new()
        .host("c1")
        .host("c2")
        .host("c3")
        .host("c4")
        .host("c5")
        .host("c6")
        .instances("c1", 1)
        .instances("c2", 1);
    w.kill("c1");
    w.kill("c2");
    let mut cfg = config();
    cfg.storm.max_hosts = 2;
    cfg.storm.max_new_fencings_per_cycle = 1;
    let summary = runtime(&w, &MemoryJournal::new(), cfg)
        .run_once()
        .await
        .unwrap();
    assert_eq!(summary.recovered, [HostId::from("c1"), HostId::from("c2")]);
    assert!(w.instances_on("c1").is_empty() && w.instances_on("c2").is_empty());
}

#[tokio::test(start_paused = true)]
async fn run_once_with_nothing_down_does_nothing() {
    let w = world();
    w.repair("c1");
    let summary = run_once(&w).await;
    // A start tick and one observation.
    assert_eq!(
        summary,
        Summary {
            steps: 2,
            // The first sight of the hosts, journaled as the pass ends.
            commits: 1,
            ..Summary::default()
        }
    );
    assert_eq!(w.count(Op::Observe), 1);
    assert_eq!(w.count(Op::PowerOff), 0);
}

#[tokio::test(start_paused = true)]
async fn dry_run_plans_everything_and_touches_nothing() {
    let w = world();
    let summary = runtime(&w, &MemoryJournal::new(), config())
        .dry_run(true)
        .run_once()
        .await
        .unwrap();
    let plan = summary.plan.join("\n");
    assert!(plan.contains("power off c1 through fencer[0]"), "{plan}");
    assert!(plan.contains("isolate c1"), "{plan}");
    assert_eq!(plan.matches("evacuate instance").count(), 3, "{plan}");
    assert!(plan.contains("notify operators and the users of"), "{plan}");
    for op in [
        Op::PowerOff,
        Op::Isolate,
        Op::Evacuate,
        Op::Restore,
        Op::Notify,
    ] {
        assert_eq!(w.count(op), 0, "{op:?} was called in a dry run");
    }
    assert_eq!(
        w.count(Op::ListInstances),
        1,
        "listing is read-only and real"
    );
}

#[tokio::test(start_paused = true)]
async fn temporary_bmc_failures_are_retried_with_backoff() {
    let w = world();
    w.fail(Op::PowerOff, 2, ErrorKind::Unreachable);
    let summary = run_once(&w).await;
    assert_eq!(summary.recovered, [HostId::from("c1")]);
    assert_eq!(w.power_offs("c1"), 3, "two failures then success");
    assert!(summary.needs_operator.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_wrong_bmc_password_stops_recovery_before_any_evacuation_and_pages() {
    let w = world();
    w.fail(Op::PowerOff, 100, ErrorKind::Auth);
    let summary = run_once(&w).await;
    assert_eq!(summary.needs_operator, [HostId::from("c1")]);
    assert_eq!(
        w.power_offs("c1"),
        1,
        "auth errors are permanent: not retried"
    );
    for op in [Op::Isolate, Op::Evacuate] {
        assert_eq!(w.count(op), 0);
    }
    assert!(delivered_kinds(&w).contains(&"needs_operator".into()));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_bmc_times_out_and_the_host_needs_an_operator() {
    let w = world();
    w.latency(Op::PowerOff, Duration::from_secs(3600));
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, config()).run_once().await.unwrap();
    assert_eq!(summary.needs_operator, [HostId::from("c1")]);
    let snap = journal.load().await.unwrap();
    let c1 = snap.hosts.iter().find(|h| h.host == "c1".into()).unwrap();
    let Stage::NeedsOperator { why } = &c1.stage else {
        panic!("{:?}", c1.stage)
    };
    assert!(why.contains("no answer within 20s"), "{why}");
    assert_eq!(w.count(Op::Evacuate), 0);
}

#[tokio::test(start_paused = true)]
async fn power_status_that_never_reads_off_means_no_isolation_and_no_evacuation() {
    let w = world();
    w.power_never_off("c1");
    let summary = run_once(&w).await;
    assert_eq!(summary.needs_operator, [HostId::from("c1")]);
    assert_eq!(w.count(Op::Isolate), 0);
    assert_eq!(w.count(Op::Evacuate), 0);
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

#[tokio::test(start_paused = true)]
async fn a_down_mail_server_delays_reports_but_never_blocks_recovery_or_loses_them() {
    let w = world();
    w.fail(Op::Notify, 5, ErrorKind::Unreachable);
    let journal = MemoryJournal::new();
    let rt = runtime(&w, &journal, config());
    let running = Running::start(rt);
    // Recovery completes while every delivery fails.
    wait_for(|| w.instances_on("c1").is_empty(), 600).await;
    // Deliveries retry with backoff until they get through, and only then leave the outbox.
    until_outbox_drained(&journal).await;
    let kinds = delivered_kinds(&w);
    assert!(
        kinds.contains(&"recovered".to_owned()) && kinds.contains(&"host_fenced".to_owned()),
        "{kinds:?}"
    );
    assert!(
        w.count(Op::Notify) >= kinds.len() + 5,
        "the five failures were real attempts"
    );
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn operator_pause_in_the_journal_holds_a_starting_daemon() {
    let w = world();
    let journal = MemoryJournal::new();
    journal
        .submit(OperatorRequest::Pause {
            reason: "network maintenance".into(),
        })
        .await
        .unwrap();
    let summary = runtime(&w, &journal, config()).run_once().await.unwrap();
    assert!(summary.refused.unwrap().contains("network maintenance"));
    assert_eq!(w.count(Op::PowerOff), 0);
    assert!(
        journal.requests().await.unwrap().is_empty(),
        "applied and acknowledged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_write_stops_the_runtime_before_it_acts() {
    let w = world();
    let journal = MemoryJournal::new();
    journal.fail_next_commits(1000);
    let result = runtime(&w, &journal, config()).run_once().await;
    assert!(result.is_err());
    assert_eq!(w.count(Op::PowerOff), 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_calls_and_journals_them() {
    let w = world();
    w.latency(Op::PowerOff, Duration::from_secs(5));
    let journal = MemoryJournal::new();
    let rt = runtime(&w, &journal, config());
    let running = Running::start(rt);
    // Strike 2 at t=10 s sends the power-off, which takes 5 s: stop in the middle of it.
    wait_for(|| w.count(Op::Observe) >= 2, 120).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(w.power_offs("c1"), 0, "still in flight");
    running.stop().await.unwrap();
    assert_eq!(w.power_offs("c1"), 1);
    let snap = journal.load().await.unwrap();
    let c1 = snap.hosts.iter().find(|h| h.host == "c1".into()).unwrap();
    assert!(
        matches!(c1.stage, Stage::Verifying { .. }),
        "the drained power-off's result was journaled: {:?}",
        c1.stage
    );
    assert_eq!(
        w.count(Op::PowerStatus),
        0,
        "nothing new started while draining"
    );
}

/// A runtime running in a task until it is stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<freezer_dr_core::Result<()>>,
}

impl Running {
    fn start(rt: Runtime) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(rt.run(async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Shuts it down: what its run returned.
    async fn stop(self) -> freezer_dr_core::Result<()> {
        let _ = self.stop.send(());
        self.handle.await.unwrap()
    }
}

async fn wait_for(mut cond: impl FnMut() -> bool, max_secs: u64) {
    for _ in 0..max_secs {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        cond(),
        "condition not reached within {max_secs} s of (paused) time"
    );
}

/// Waits (up to an hour of paused time) until every report has left the outbox; fails if one never does.
async fn until_outbox_drained(journal: &MemoryJournal) {
    for _ in 0..3600 {
        if journal.outbox().await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "outbox never emptied: {:?}",
        journal.outbox().await.unwrap()
    );
}

// ----- crashes -----------------------------------------------------------------------------------

/// How a clean run goes: the number of driver calls until c1 is recovered and its reports delivered.
async fn clean_run_calls(cfg: fn() -> RecoveryConfig) -> usize {
    let w = world();
    let journal = MemoryJournal::new();
    run_until_recovered(&w, &journal, cfg()).await;
    w.calls().len()
}

fn recovered(w: &World) -> bool {
    let kinds = delivered_kinds(w);
    w.instances_on("c1").is_empty()
        && kinds.contains(&"recovered".to_owned())
        && kinds.contains(&"host_fenced".to_owned())
}

async fn run_until_recovered(w: &World, journal: &MemoryJournal, cfg: RecoveryConfig) {
    let rt = runtime(w, journal, cfg);
    let running = Running::start(rt);
    wait_for(|| recovered(w), 1200).await;
    // Let the outbox settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.stop().await.unwrap();
}

/// Checks the crash invariants on the call log: no power-off after a power status read off (a confirmed
/// host), no evacuation request for an instance already rebuilding or moved, every report delivered.
fn check_invariants(w: &World, k: usize) {
    let mut confirmed = false;
    let mut requested: std::collections::HashMap<String, usize> = Default::default();
    for (i, call) in w.calls().iter().enumerate() {
        match call {
            // Power reads off from the first power-off on (the fake powers off at once).
            Call::PowerStatus { host, .. }
                if host == &HostId::from("c1")
                    && w.calls()[..i]
                        .iter()
                        .any(|c| matches!(c, Call::PowerOff { .. })) =>
            {
                confirmed = true;
            }
            Call::PowerOff { host, .. } if host == &HostId::from("c1") => {
                assert!(
                    !confirmed,
                    "crash point {k}: power-off #{i} of c1 after it read off"
                );
            }
            Call::Evacuate { instance } => *requested.entry(instance.clone()).or_default() += 1,
            _ => {}
        }
    }
    // The fake powers off at once, so the first logged power-off always took effect: a restart must read
    // the power status instead of sending another one.
    assert_eq!(
        w.power_offs("c1"),
        1,
        "crash point {k}: c1 powered off more than once"
    );
    for (instance, n) in requested {
        let evacuations = w.instance_state(&instance).map_or(0, |s| s.evacuations);
        assert!(
            n == 1 || evacuations <= 1,
            "crash point {k}: {instance} asked {n} times, evacuated {evacuations} times"
        );
    }
    assert!(
        w.violations().is_empty(),
        "crash point {k}: {:?}",
        w.violations()
    );
}

/// Crashes a full recovery at every driver call (`after`: once the call took effect, its reply lost;
/// otherwise before it has any effect), restarts from the journal, and checks the invariants.
async fn crash_at_every_call(after: bool, cfg: fn() -> RecoveryConfig) {
    let total = clean_run_calls(cfg).await;
    assert!(total > 10, "the clean run made {total} calls");
    for k in 1..=total {
        let w = world();
        let journal = MemoryJournal::new();
        if after {
            w.crash_after(k);
        } else {
            w.crash_before(k);
        }
        let rt = runtime(&w, &journal, cfg());
        let handle = tokio::spawn(rt.run(std::future::pending()));
        tokio::select! {
            () = w.crashed() => {}
            () = tokio::time::sleep(Duration::from_secs(1200)) => panic!("crash point {k} never reached"),
        }
        handle.abort();
        let _ = handle.await;
        w.restart();
        run_until_recovered(&w, &journal, cfg()).await;
        check_invariants(&w, k);
        assert!(
            journal.outbox().await.unwrap().is_empty(),
            "crash point {k}: reports left undelivered"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_any_call_resumes_without_repeating_a_destructive_action() {
    crash_at_every_call(true, config).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_before_any_call_resumes_without_losing_anything() {
    crash_at_every_call(false, config).await;
}

/// Reads every 100 ms: answers arrive faster than a commit's wait, so a crash finds them journaled late
/// or not yet (see the runtime's `LATE_AT_MOST`).
fn fast_reads() -> RecoveryConfig {
    let mut cfg = config();
    cfg.fencing.poll_interval = Duration::from_millis(100);
    cfg.evacuation.poll_interval = Duration::from_millis(100);
    cfg
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_any_call_while_answers_wait_for_their_commit_repeats_nothing() {
    crash_at_every_call(true, fast_reads).await;
}

#[tokio::test(start_paused = true)]
async fn a_crash_before_any_call_while_answers_wait_for_their_commit_loses_nothing() {
    crash_at_every_call(false, fast_reads).await;
}

#[tokio::test(start_paused = true)]
async fn a_destructive_command_always_goes_through_a_journal_commit() {
    // A retried isolation changes no state, yet its commit is where an HA journal checks leadership.
    let w = world();
    w.fail(Op::Isolate, 3, ErrorKind::PeerFailure);
    let journal = MemoryJournal::new();
    let mut cfg = config();
    cfg.call_attempts = 1;
    cfg.step_retry = Duration::from_secs(5);
    let rt = runtime(&w, &journal, cfg);
    let running = Running::start(rt);
    wait_for(|| w.count(Op::Isolate) >= 2, 600).await;
    // The second failure is journaled at once; the retry 5 s later changes nothing but must still commit.
    let before = journal.commits();
    journal.fail_next_commits(1000);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        running.stop().await.is_err(),
        "the runtime stops on a refused commit"
    );
    assert_eq!(journal.commits(), before);
    assert_eq!(
        w.count(Op::Isolate),
        2,
        "no isolation without a commit right before it"
    );
}

/// A journal whose `outbox_done` fails a given number of times (the delivery happened, its record did not).
#[derive(Clone)]
struct ForgetfulJournal {
    inner: MemoryJournal,
    failures: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl Journal for ForgetfulJournal {
    async fn load(&self) -> freezer_dr_core::Result<freezer_dr_core::engine::Snapshot> {
        self.inner.load().await
    }
    async fn commit(&self, batch: freezer_dr_core::journal::Batch) -> freezer_dr_core::Result<()> {
        self.inner.commit(batch).await
    }
    async fn outbox(&self) -> freezer_dr_core::Result<Vec<freezer_dr_core::journal::OutboxEntry>> {
        self.inner.outbox().await
    }
    async fn outbox_retry(
        &self,
        entry: &freezer_dr_core::journal::OutboxEntry,
    ) -> freezer_dr_core::Result<()> {
        self.inner.outbox_retry(entry).await
    }
    async fn outbox_done(&self, key: &str) -> freezer_dr_core::Result<()> {
        use std::sync::atomic::Ordering;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(freezer_dr_core::Error::new(ErrorKind::Journal, "disk full"));
        }
        self.inner.outbox_done(key).await
    }
    async fn history(
        &self,
        limit: usize,
    ) -> freezer_dr_core::Result<Vec<freezer_dr_core::engine::HistoryEvent>> {
        self.inner.history(limit).await
    }
    async fn submit(&self, request: OperatorRequest) -> freezer_dr_core::Result<u64> {
        self.inner.submit(request).await
    }
    async fn requests(
        &self,
    ) -> freezer_dr_core::Result<Vec<freezer_dr_core::journal::PendingRequest>> {
        self.inner.requests().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_delivery_the_journal_could_not_record_is_not_delivered_again() {
    let w = world();
    let journal = ForgetfulJournal {
        inner: MemoryJournal::new(),
        failures: Arc::new(std::sync::atomic::AtomicUsize::new(20)),
    };
    let rt = Runtime::new(config(), pipeline(&w, 1), Arc::new(journal.clone()));
    let running = Running::start(rt);
    for _ in 0..3600 {
        if recovered(&w) && journal.inner.outbox().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    running.stop().await.unwrap();
    assert!(
        journal.inner.outbox().await.unwrap().is_empty(),
        "recorded in the end"
    );
    let mut ids: Vec<String> = w.delivered().iter().map(|d| d.report.id.clone()).collect();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a report was delivered twice: {ids:?}");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_refused_for_good_is_kept_and_retried_slowly() {
    let w = world();
    w.fail(Op::Notify, 1, ErrorKind::Auth);
    let journal = MemoryJournal::new();
    let rt = runtime(&w, &journal, config());
    let running = Running::start(rt);
    wait_for(|| w.count(Op::Notify) >= 1, 600).await;
    let first = w.count(Op::Notify);
    let entry = journal.outbox().await.unwrap();
    assert!(
        entry
            .iter()
            .any(|e| e.attempts == 1 && e.last_error.is_some()),
        "the refusal is recorded: {entry:?}"
    );
    // The refused report waits 15 minutes; the other reports go out meanwhile.
    tokio::time::sleep(Duration::from_secs(600)).await;
    let refused_id = &entry.iter().find(|e| e.attempts == 1).unwrap().report.id;
    assert!(!w.delivered().iter().any(|d| &d.report.id == refused_id));
    tokio::time::sleep(Duration::from_secs(400)).await;
    assert!(
        w.delivered().iter().any(|d| &d.report.id == refused_id),
        "retried after 15 min"
    );
    assert!(w.count(Op::Notify) > first);
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn instances_waiting_for_an_evacuation_slot_cost_no_loop_turns() {
    let w = World::c1_failed(3, 30, 5);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    cfg.evacuation.concurrency = 1;
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, cfg).run_once().await.unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    assert_eq!(w.count(Op::Evacuate), 30);
    // Each instance: one request, five progress reads and the ticks that make them due (about 12 steps),
    // plus the observations and the host-level steps. A loop that wakes for instances it cannot send
    // turns millions of times.
    assert!(
        summary.steps < 30 * 15 + 50,
        "{} engine steps for 30 instances at concurrency 1",
        summary.steps
    );
}

#[tokio::test(start_paused = true)]
async fn a_result_drained_at_shutdown_costs_no_evacuation_attempt() {
    let w = World::new()
        .host("c1")
        .host("c2")
        .host("c3")
        .instances("c1", 2);
    w.evacuation_takes(0);
    w.latency(Op::Progress, Duration::from_secs(3));
    w.kill("c1");
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    cfg.evacuation.concurrency = 1;
    cfg.evacuation.attempts = 1;
    let journal = MemoryJournal::new();
    let rt = runtime(&w, &journal, cfg.clone());
    let running = Running::start(rt);
    // The first instance is accepted; its progress read (due 2 s later) takes 3 s: stop in the middle.
    wait_for(|| w.count(Op::Evacuate) >= 1, 120).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.count(Op::Progress), 0, "the read is still in flight");
    running.stop().await.unwrap();
    assert_eq!(w.count(Op::Evacuate), 1, "nothing new left while draining");
    // The next run evacuates the second instance: its only attempt was not spent on a request that
    // never left.
    let summary = runtime(&w, &journal, cfg).run_once().await.unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    assert_eq!(w.count(Op::Evacuate), 2);
    assert!(w.instances_on("c1").is_empty());
}

// ----- per-audience delivery ---------------------------------------------------------------------

/// A directory that cannot list the users of one project while `broken` is set (Keystone failing for
/// it), and answers like [`FakeDirectory`] otherwise.
#[derive(Clone)]
struct PatchyDirectory {
    inner: FakeDirectory,
    project: &'static str,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

#[async_trait::async_trait]
impl freezer_dr_core::Directory for PatchyDirectory {
    async fn recipients(
        &self,
        project: &str,
    ) -> freezer_dr_core::Result<Vec<freezer_dr_core::Recipient>> {
        if project == self.project && self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(freezer_dr_core::Error::new(
                ErrorKind::Unreachable,
                "keystone: connection refused",
            ));
        }
        self.inner.recipients(project).await
    }
}

/// A recovery whose digest has gone out while project-b could not be looked up: the world, the switch
/// that breaks the lookup (still on), the journal, and the runtime still running.
async fn digest_sent_during_a_failed_lookup() -> (
    World,
    Arc<std::sync::atomic::AtomicBool>,
    MemoryJournal,
    Running,
) {
    let w = world();
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let journal = MemoryJournal::new();
    let running = Running::start(patchy_runtime(&w, &broken, &journal));
    let recovered = freezer_dr_core::ReportKind::Recovered;
    wait_for(|| !deliveries_of(&w, &recovered).is_empty(), 600).await;
    (w, broken, journal, running)
}

fn patchy_runtime(
    w: &World,
    broken: &Arc<std::sync::atomic::AtomicBool>,
    journal: &MemoryJournal,
) -> Runtime {
    let mut p = pipeline(w, 1);
    p.directory = Some(Arc::new(PatchyDirectory {
        inner: FakeDirectory::new(w),
        project: "project-b",
        broken: broken.clone(),
    }));
    Runtime::new(config(), p, Arc::new(journal.clone()))
}

fn deliveries_of(w: &World, kind: &freezer_dr_core::ReportKind) -> Vec<freezer_dr_core::Report> {
    w.delivered()
        .into_iter()
        .map(|d| d.report)
        .filter(|r| &r.kind == kind)
        .collect()
}

fn names(v: &[&str]) -> std::collections::BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failed_lookup_does_not_hold_back_the_digest() {
    use freezer_dr_core::ReportKind::Recovered;
    // The report goes out while project-b cannot be looked up, naming it, with everyone else's users.
    let (w, broken, journal, running) = digest_sent_during_a_failed_lookup().await;
    let first = deliveries_of(&w, &Recovered).remove(0);
    assert_eq!(
        first.lookup_failed.keys().cloned().collect::<Vec<_>>(),
        ["project-b"],
        "{first:?}"
    );
    assert!(first.lookup_failed["project-b"].contains("connection refused"));
    assert_eq!(
        first.recipients.keys().cloned().collect::<Vec<_>>(),
        ["project-a", "project-c"]
    );
    assert!(first.told.is_empty(), "the first attempt tells everyone");
    // It stays in the outbox, with who was told recorded.
    let entry = journal
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.report.id == first.id)
        .expect("the report waits in the outbox for project-b");
    assert!(entry.report.told.operators);
    assert_eq!(
        entry.report.told.projects,
        names(&["project-a", "project-c"])
    );
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("project-b")),
        "{entry:?}"
    );

    // While the lookup keeps failing, the notifier is not called again for nothing.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(deliveries_of(&w, &Recovered).len(), 1);

    // Once the directory answers, only project-b is delivered, and the entry leaves the outbox.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    until_outbox_drained(&journal).await;
    let all = deliveries_of(&w, &Recovered);
    assert_eq!(all.len(), 2, "{all:?}");
    let later = &all[1];
    assert_eq!(later.id, first.id, "the same report, so the same mail ids");
    assert!(later.lookup_failed.is_empty());
    assert!(later.told.operators, "the operators are not told twice");
    assert_eq!(later.told.projects, names(&["project-a", "project-c"]));
    assert!(later.recipients.contains_key("project-b"));
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_only_the_projects_not_told_are_delivered() {
    use freezer_dr_core::ReportKind::Recovered;
    let (w, broken, journal, running) = digest_sent_during_a_failed_lookup().await;
    running.stop().await.unwrap();

    // A new process with the same journal: the directory works again.
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let running = Running::start(patchy_runtime(&w, &broken, &journal));
    until_outbox_drained(&journal).await;
    running.stop().await.unwrap();
    assert!(journal.outbox().await.unwrap().is_empty(), "outbox drained");
    let all = deliveries_of(&w, &Recovered);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[1].told.operators,
        "the journal told the new process the operators already had the digest"
    );
    assert_eq!(all[1].told.projects, names(&["project-a", "project-c"]));
    assert!(all[1].recipients.contains_key("project-b"));
}

// ----- project names -----------------------------------------------------------------------------

/// The calls of `project_name` about `project`.
fn name_lookups(w: &World, project: &str) -> usize {
    w.calls()
        .iter()
        .filter(|c| matches!(c, Call::ProjectName { project: p } if p == project))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_name_that_cannot_be_learned_never_holds_a_mail_back() {
    let w = world();
    // project-b's name: a temporary failure every time (Keystone failing for it).
    w.fail_on(Op::ProjectName, "project-b", 1000, ErrorKind::Unreachable);
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, config()).run_once().await.unwrap();
    assert_eq!(summary.undelivered, 0, "every report went out at once");
    assert!(journal.outbox().await.unwrap().is_empty());
    let reports = deliveries_of(&w, &freezer_dr_core::ReportKind::Recovered);
    assert_eq!(reports.len(), 1, "delivered once: {reports:?}");
    let r = &reports[0];
    assert_eq!(r.project_name("project-a"), Some("name-of-project-a"));
    assert_eq!(r.project_name("project-b"), None, "named by its id");
    assert!(r.recipients.contains_key("project-b"), "and its users told");
    // One attempt per delivered report, never a retry for a name.
    let with_b = w
        .delivered()
        .iter()
        .filter(|d| d.report.projects().contains(&"project-b"))
        .count();
    assert!(with_b >= 2, "host_fenced and recovered name project-b");
    assert_eq!(name_lookups(&w, "project-b"), with_b);
}

/// A directory whose name lookups never answer (counting them); recipients like [`FakeDirectory`].
struct HungNames {
    inner: FakeDirectory,
    asked: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl freezer_dr_core::Directory for HungNames {
    async fn recipients(
        &self,
        project: &str,
    ) -> freezer_dr_core::Result<Vec<freezer_dr_core::Recipient>> {
        self.inner.recipients(project).await
    }

    async fn project_name(&self, _project: &str) -> freezer_dr_core::Result<Option<String>> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_directory_costs_each_delivery_one_short_wait_for_names() {
    let w = world();
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut p = pipeline(&w, 1);
    p.directory = Some(Arc::new(HungNames {
        inner: FakeDirectory::new(&w),
        asked: asked.clone(),
    }));
    let journal = MemoryJournal::new();
    let rt = Runtime::new(config(), p, Arc::new(journal.clone()));
    let summary = rt.run_once().await.unwrap();
    assert_eq!(
        summary.undelivered, 0,
        "run --once still delivers everything"
    );
    let reports = deliveries_of(&w, &freezer_dr_core::ReportKind::Recovered);
    assert_eq!(reports.len(), 1);
    assert!(reports[0].project_names.is_empty(), "{reports:?}");
    assert_eq!(reports[0].recipients.len(), 3, "everyone told");
    let with_projects = w
        .delivered()
        .iter()
        .filter(|d| d.report.projects().len() == 3)
        .count();
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        with_projects,
        "one lookup per delivery runs out the budget; the other projects are named by their ids"
    );
}

/// Forty instances on `c1` at concurrency 40, each evacuated at its first progress read.
fn forty_at_once() -> (World, RecoveryConfig) {
    let w = World::c1_failed(3, 40, 0);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    cfg.evacuation.concurrency = 40;
    (w, cfg)
}

#[tokio::test(start_paused = true)]
async fn answers_that_arrive_together_share_one_journal_commit() {
    let (w, cfg) = forty_at_once();
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, cfg).run_once().await.unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    assert_eq!(w.count(Op::Evacuate), 40);
    assert_eq!(w.count(Op::Progress), 40);
    // 40 evacuation answers and 40 progress answers would be 80 commits one by one; they arrive
    // together, so they are journaled together (with redb, each commit is a durable write).
    assert!(
        journal.commits() < 20,
        "{} journal commits for 80 answers that arrived in two bursts",
        journal.commits()
    );
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

#[tokio::test(start_paused = true)]
async fn nothing_a_burst_of_answers_decided_runs_before_its_commit() {
    let (w, mut cfg) = forty_at_once();
    cfg.evacuation.concurrency = 20;
    let journal = MemoryJournal::new();
    let running = Running::start(runtime(&w, &journal, cfg));
    // The first twenty are requested; their progress reads are due 2 s later.
    wait_for(|| w.count(Op::Evacuate) >= 20, 600).await;
    assert_eq!(w.count(Op::Progress), 0);
    // The commit of the twenty answers "done" (which frees the slots for the next twenty) fails.
    journal.fail_next_commits(1000);
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        running.stop().await.is_err(),
        "the runtime stops on a refused commit"
    );
    assert_eq!(w.count(Op::Progress), 20, "the burst of reads was answered");
    assert_eq!(
        w.count(Op::Evacuate),
        20,
        "no evacuation that the unrecorded answers allowed"
    );
}

/// The times of the status snapshots an observer was given, with the observation count of each.
#[derive(Default)]
struct Turns(std::sync::Mutex<Vec<(freezer_dr_core::Timestamp, u64)>>);

impl freezer_dr_core::runtime::Observer for Turns {
    fn turn(&self, status: &freezer_dr_core::runtime::Status) {
        self.0
            .lock()
            .unwrap()
            .push((status.at, status.observations));
    }
}

#[tokio::test(start_paused = true)]
async fn the_observers_status_is_taken_after_each_observation_and_at_most_every_100_ms_on_ticks() {
    // Thirty instances read every 10 ms: the loop ticks about every 10 ms, and a status reads every host.
    let w = World::c1_failed(3, 30, 5);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    cfg.evacuation.concurrency = 30;
    cfg.evacuation.poll_interval = Duration::from_millis(10);
    let turns = Arc::new(Turns::default());
    let summary = runtime(&w, &MemoryJournal::new(), cfg)
        .observer(turns.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    let turns = turns.0.lock().unwrap();
    assert!(turns.len() >= 3, "{} snapshots", turns.len());
    let observations = turns.last().map_or(0, |t| t.1);
    assert!(observations >= 1);
    for pair in turns.windows(2) {
        let ((a, seen_a), (b, seen_b)) = (pair[0], pair[1]);
        assert!(
            seen_b > seen_a || b.since(a) >= Duration::from_millis(100),
            "two snapshots on ticks alone {:?} apart ({} in all, {} engine steps)",
            b.since(a),
            turns.len(),
            summary.steps
        );
    }
}

/// Three hosts, c1 dead with ten instances evacuated one at a time and read every 100 ms: each reads in
/// progress twice, then done (three progress reads).
fn ten_evacuations_one_at_a_time() -> (World, RecoveryConfig) {
    let w = World::c1_failed(3, 10, 2);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    cfg.evacuation.concurrency = 1;
    cfg.evacuation.poll_interval = Duration::from_millis(100);
    (w, cfg)
}

#[tokio::test(start_paused = true)]
async fn only_turns_that_change_the_cloud_or_tell_someone_wait_for_a_commit() {
    // One evacuation at a time, each read three times: every answer arrives alone. The evacuation requests
    // commit first (write-ahead); the answers "accepted" and "rebuilding", and the progress reads they
    // ask for, ride on the next request's commit instead of writing one each.
    // Read every 100 ms: one instance's answers all fall within one commit's wait.
    let (w, cfg) = ten_evacuations_one_at_a_time();
    let journal = MemoryJournal::new();
    let summary = runtime(&w, &journal, cfg).run_once().await.unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    assert_eq!(w.count(Op::Evacuate), 10);
    assert_eq!(w.count(Op::Progress), 30);
    assert_eq!(summary.commits, journal.commits());
    // 10 requests, the host's stages that act (fence, isolate), the reports and the last changes: 15 when
    // this was written, 36 when each answer committed on its own.
    assert!(
        journal.commits() <= 20,
        "{} journal commits for 10 evacuations one at a time",
        journal.commits()
    );
    assert!(w.violations().is_empty(), "{:?}", w.violations());
}

/// What an observer was told, in order: the journal's commits (whether commands waited for them) and the
/// driver calls that change the cloud.
#[derive(Default)]
struct Writes(std::sync::Mutex<Vec<(&'static str, Option<bool>)>>);

impl freezer_dr_core::runtime::Observer for Writes {
    fn event(&self, event: &freezer_dr_core::runtime::Event) {
        use freezer_dr_core::runtime::Event;
        let seen = match event {
            Event::Commit { write_ahead, .. } => ("commit", Some(*write_ahead)),
            Event::Call(c) if matches!(c.operation, "power_off" | "isolate" | "evacuate") => {
                (c.operation, None)
            }
            _ => return,
        };
        self.0.lock().unwrap().push(seen);
    }
}

#[tokio::test(start_paused = true)]
async fn the_observers_are_told_of_every_commit_and_each_destructive_call_follows_its_own() {
    // One evacuation at a time: every command that changes the cloud is decided in a turn of its own.
    let (w, cfg) = ten_evacuations_one_at_a_time();
    let journal = MemoryJournal::new();
    let writes = Arc::new(Writes::default());
    let summary = runtime(&w, &journal, cfg)
        .observer(writes.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    let seen = writes.0.lock().unwrap();
    let commits = seen.iter().filter(|(what, _)| *what == "commit").count();
    assert_eq!(commits as u64, summary.commits, "{seen:?}");
    assert_eq!(summary.commits, journal.commits());
    let late = seen.iter().filter(|s| s.1 == Some(false)).count();
    assert!(late >= 1, "the last answers are journaled late: {seen:?}");
    // The k-th power-off, isolation or evacuation to end came after at least k write-ahead commits.
    let (mut ahead, mut acted) = (0, 0);
    for (what, write_ahead) in seen.iter() {
        match write_ahead {
            Some(true) => ahead += 1,
            Some(false) => {}
            None => {
                acted += 1;
                assert!(
                    ahead >= acted,
                    "{what} #{acted} after {ahead} write-ahead commits: {seen:?}"
                );
            }
        }
    }
    assert_eq!(
        acted, 12,
        "a power-off, an isolation, ten evacuations: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_commit_a_pass_makes_as_it_returns_is_told_too() {
    // No notifier: no report commits at the end, so the last answers are journaled as run_once returns.
    let w = World::c1_failed(3, 2, 2);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    let mut pipeline = pipeline(&w, 1);
    pipeline.notifiers.clear();
    let journal = MemoryJournal::new();
    let writes = Arc::new(Writes::default());
    let summary = Runtime::new(cfg, pipeline, Arc::new(journal.clone()))
        .observer(writes.clone())
        .run_once()
        .await
        .unwrap();
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    let seen = writes.0.lock().unwrap().clone();
    let commits: Vec<bool> = seen.iter().filter_map(|s| s.1).collect();
    assert_eq!(commits.len() as u64, journal.commits(), "{seen:?}");
    assert_eq!(commits.last(), Some(&false), "{seen:?}");
    let done = journal.load().await.unwrap();
    let c1 = done.hosts.iter().find(|h| h.host == "c1".into()).unwrap();
    assert!(
        c1.instances
            .values()
            .all(|i| matches!(i.state, InstanceState::Done { .. })),
        "the last answers are journaled: {:?}",
        c1.instances
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_whose_turn_only_reads_is_journaled_within_half_a_second() {
    // One instance, read every 2 s for a long rebuild: after its request, nothing else commits.
    let w = World::c1_failed(3, 1, 100);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    let journal = MemoryJournal::new();
    let running = Running::start(runtime(&w, &journal, cfg));
    for _ in 0..60_000 {
        if w.count(Op::Evacuate) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(w.count(Op::Evacuate), 1, "no evacuation request");
    let journaled = || async {
        let snapshot = journal.load().await.unwrap();
        let c1 = snapshot
            .hosts
            .iter()
            .find(|h| h.host == "c1".into())
            .cloned();
        c1.and_then(|h| h.instances.into_values().next())
            .map(|i| i.state)
    };
    // The request was journaled before it left; its answer ("accepted") waits for a commit.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let state = journaled().await;
    assert!(
        matches!(state, Some(InstanceState::Rebuilding { .. })),
        "the accepted request is not journaled 600 ms later: {state:?}"
    );
    assert_eq!(w.count(Op::Progress), 0, "nothing else happened meanwhile");
    running.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_pass_counts_the_instances_it_could_not_evacuate() {
    // Every evacuation request refused for good: the pass ends with both instances failed, and says so.
    let w = World::c1_failed(3, 2, 0);
    w.fail(Op::Evacuate, 1000, ErrorKind::InvalidResponse);
    let mut cfg = config();
    cfg.storm.max_fraction = 1.0;
    let summary = runtime(&w, &MemoryJournal::new(), cfg)
        .run_once()
        .await
        .unwrap();
    assert_eq!(summary.recovered, [HostId::from("c1")], "{summary:?}");
    assert_eq!(summary.failed_instances, 2, "{summary:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_cannot_observe_says_why_it_did_nothing() {
    let w = world();
    w.fail(Op::Observe, 1000, ErrorKind::PeerFailure);
    let summary = run_once(&w).await;
    assert_eq!(
        summary.refused.as_deref(),
        Some("the hosts could not be observed"),
        "{summary:?}"
    );
    assert_eq!(w.count(Op::PowerOff), 0);
}

/// A `run --once` pass with a call timeout of an hour: its reports' delivery, what the pass left in the
/// outbox, and how long it took in paused time.
async fn one_pass_with_an_hour_to_deliver(w: &World) -> (Summary, Duration) {
    let mut cfg = config();
    cfg.call_timeout = Duration::from_secs(3600);
    let started = tokio::time::Instant::now();
    let summary = runtime(w, &MemoryJournal::new(), cfg)
        .run_once()
        .await
        .unwrap();
    (summary, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_pass_ends_once_every_report_was_tried_not_after_the_whole_wait() {
    // The pass gives the outbox up to call_timeout to be tried once; it ends as soon as it was, long
    // before the hour: when the mail server answers at once, and when it is down.
    let w = world();
    let (summary, took) = one_pass_with_an_hour_to_deliver(&w).await;
    assert_eq!(summary.undelivered, 0, "{summary:?}");
    assert!(!delivered_kinds(&w).is_empty());
    assert!(took < Duration::from_secs(600), "the pass took {took:?}");
    let down = world();
    down.fail(Op::Notify, 1000, ErrorKind::Unreachable);
    let (summary, took) = one_pass_with_an_hour_to_deliver(&down).await;
    assert!(summary.undelivered > 0, "{summary:?}");
    assert!(
        took < Duration::from_secs(600),
        "the pass with the mail server down took {took:?}"
    );
}
