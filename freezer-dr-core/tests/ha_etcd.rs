//! HA mode against a real etcd (Debian `etcd-server`) started by each test on 127.0.0.1: the journal
//! conformance suite, the fencing token, the local lease deadline under a frozen etcd (SIGSTOP), and
//! failover in the middle of a recovery with two runtimes on one simulated cloud.
//!
//! Set `FREEZER_DR_SKIP_ETCD=1` to skip (never in CI); otherwise a missing etcd fails the tests.
#![cfg(feature = "etcd")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use freezer_dr_core::config::{HaConfig, RecoveryConfig};
use freezer_dr_core::engine::{HostRecord, OperatorRequest};
use freezer_dr_core::ha::{Candidate, EtcdJournal, Leadership};
use freezer_dr_core::journal::{Batch, OutboxEntry};
use freezer_dr_core::runtime::Pipeline;
use freezer_dr_core::testing::{
    EtcdServer, FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World,
    conformance, fast_recovery,
};
use freezer_dr_core::{
    Audience, ErrorKind, HostHealth, HostId, Journal, Monitor, Report, ReportKind, Runtime, Secret,
    Timestamp,
};

// ---- a real etcd (core's shared harness), and what these tests ask of it ----

trait EtcdExt {
    fn ha(&self, election: &str, ttl_secs: u64) -> HaConfig;
    /// A candidate of `election` (leases of `ttl_secs`), connected.
    async fn candidate(&self, election: &str, ttl_secs: u64) -> Candidate;
    async fn raw(&self) -> etcd_client::Client;
}

impl EtcdExt for EtcdServer {
    fn ha(&self, election: &str, ttl_secs: u64) -> HaConfig {
        let mut cfg = HaConfig::etcd(vec![self.endpoint().to_owned()]);
        cfg.election = election.to_owned();
        cfg.lease_ttl = Duration::from_secs(ttl_secs);
        cfg.request_timeout = Duration::from_secs(1);
        cfg
    }

    async fn candidate(&self, election: &str, ttl_secs: u64) -> Candidate {
        Candidate::connect(self.ha(election, ttl_secs))
            .await
            .unwrap()
    }

    async fn raw(&self) -> etcd_client::Client {
        etcd_client::Client::connect([self.endpoint()], None)
            .await
            .unwrap()
    }
}

// ---- helpers ----

trait CandidateExt {
    /// Campaigns until elected: the leadership and the leader's journal.
    async fn lead(&self) -> (Leadership, EtcdJournal);
}

impl CandidateExt for Candidate {
    async fn lead(&self) -> (Leadership, EtcdJournal) {
        let l = self.campaign().await.unwrap();
        let j = self.leader_journal(&l).await.unwrap();
        (l, j)
    }
}

fn host_batch(name: &str) -> Batch {
    let mut b = Batch::default();
    b.changes.hosts = vec![HostRecord::new(HostId::from(name), Timestamp(1))];
    b
}

fn recovery() -> RecoveryConfig {
    // Slower observations and progress reads than `fast_recovery`: three candidates share one etcd.
    let mut cfg = fast_recovery();
    cfg.interval = Duration::from_millis(300);
    cfg.fencing.confirm_timeout = RecoveryConfig::default().fencing.confirm_timeout;
    cfg.evacuation.poll_interval = Duration::from_millis(200);
    cfg.evacuation.retry_delay = Duration::from_millis(500);
    cfg
}

/// Counts the observations of one candidate's runtime: who acts.
struct Tagged {
    inner: FakeMonitor,
    observed: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Monitor for Tagged {
    async fn observe(&self) -> freezer_dr_core::Result<Vec<HostHealth>> {
        self.observed.fetch_add(1, Ordering::SeqCst);
        self.inner.observe().await
    }
}

fn pipeline(w: &World, observed: &Arc<AtomicUsize>) -> Pipeline {
    Pipeline {
        monitor: Arc::new(Tagged {
            inner: FakeMonitor::new(w),
            observed: observed.clone(),
        }),
        fencers: vec![Arc::new(FakeFencer::new(w))],
        evacuator: Arc::new(FakeEvacuator::new(w)),
        directory: Some(Arc::new(FakeDirectory::new(w))),
        notifiers: vec![Arc::new(FakeNotifier::new(w))],
    }
}

/// Starts `run_as_leader` for a candidate on its own task (the candidate moves in: aborting the task
/// is killing the process, lease keepalive included). Returns the task, its "leading" watch and its
/// observation counter.
fn spawn_candidate(
    cand: Candidate,
    w: &World,
) -> (
    tokio::task::JoinHandle<freezer_dr_core::Result<()>>,
    tokio::sync::watch::Receiver<Option<i64>>,
    Arc<AtomicUsize>,
) {
    let observed = Arc::new(AtomicUsize::new(0));
    let leading = cand.leading();
    let p = pipeline(w, &observed);
    let task = tokio::spawn(async move {
        cand.run_as_leader(
            move |journal| Ok(Runtime::new(recovery(), p.clone(), journal)),
            std::future::pending(),
        )
        .await
    });
    (task, leading, observed)
}

async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_journal_passes_the_journal_conformance_suite() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let cand = etcd.candidate("conformance", 10).await;
    let (_lead, j) = cand.lead().await;
    conformance::journal(&j).await;

    // A second election is another journal: nothing leaks across prefixes.
    let other = etcd.candidate("other", 10).await;
    assert!(other.journal().load().await.unwrap().hosts.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_submits_requests_but_cannot_commit() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let leader = etcd.candidate("requests", 10).await.named("leader");
    let (l, lj) = leader.lead().await;
    let cli = etcd.candidate("requests", 10).await.named("cli");
    let id = cli
        .journal()
        .submit(OperatorRequest::Pause {
            reason: "drill".into(),
        })
        .await
        .unwrap();
    let seen = lj.requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, id);

    let err = cli.journal().commit(host_batch("x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
    assert!(lj.load().await.unwrap().hosts.is_empty());

    let st = cli.status().await.unwrap();
    assert_eq!(st.leader.as_ref().unwrap().id, "leader");
    assert_eq!(st.token, Some(l.token()));
    // `cli` never campaigned, so it has no presence key; only candidates are standbys.
    assert!(st.standbys.is_empty(), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_big_for_one_transaction_is_refused_whole() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let cand = etcd.candidate("big", 10).await;
    let (_lead, j) = cand.lead().await;
    let mut b = host_batch("compute-1");
    for n in 0..200 {
        b.outbox.push(OutboxEntry {
            key: format!("r{n}/0"),
            notifier: 0,
            report: Report::new(
                format!("r{n}"),
                Timestamp(1),
                ReportKind::HostFenced,
                Audience::Operators,
                None,
                "x",
            ),
            attempts: 0,
            last_error: None,
            next_attempt: Timestamp(1),
        });
    }
    let err = j.commit(b).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Journal, "{err}");
    assert!(!err.is_temporary(), "{err}");
    assert!(err.to_string().contains("max_txn_ops = 128"), "{err}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert!(
        j.load().await.unwrap().hosts.is_empty(),
        "half a batch was written"
    );
    assert!(j.outbox().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_late_commit_is_rejected_by_the_token_check() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let a = etcd.candidate("token", 10).await.named("a");
    let b = etcd.candidate("token", 10).await.named("b");
    let (la, ja) = a.lead().await;
    ja.commit(host_batch("before")).await.unwrap();

    // The leader key goes while `a` still believes it leads (its lease is alive and renewed): an
    // operator deleting it, or `a` paused past its lease while its keepalive stream stayed open.
    let mut raw = etcd.raw().await;
    raw.delete("/freezer-dr/token/leader", None).await.unwrap();
    let lb = tokio::time::timeout(Duration::from_secs(10), b.campaign())
        .await
        .expect("b did not take over")
        .unwrap();
    assert!(lb.token() > la.token(), "tokens only grow");
    assert!(
        la.check().is_ok(),
        "a's local deadline has not passed: what rejects it must be etcd's compare"
    );

    let err = ja.commit(host_batch("late")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
    assert!(err.to_string().contains("fencing token"), "{err}");
    assert!(
        err.to_string().contains("b (host"),
        "names who leads now: {err}"
    );
    let jb = b.leader_journal(&lb).await.unwrap();
    let hosts: Vec<String> = jb
        .load()
        .await
        .unwrap()
        .hosts
        .iter()
        .map(|h| h.host.to_string())
        .collect();
    assert_eq!(hosts, ["before"], "the late commit wrote nothing");
    // `a` knows at once: its runtime would stop.
    tokio::time::timeout(Duration::from_secs(1), la.lost())
        .await
        .expect("a's leadership must be lost after a failed token check");
    jb.commit(host_batch("after")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_over_mid_recovery_without_repeating_anything() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let ttl = 2;
    let w = World::grid(4, 3);
    w.evacuation_takes(15);
    let on_c1: Vec<String> = w.instances_on("c1").into_iter().map(|i| i.id).collect();

    let a = etcd.candidate("failover", ttl).await.named("a");
    let b = etcd.candidate("failover", ttl).await.named("b");
    let status = etcd.candidate("failover", ttl).await.named("status");
    let (task_a, mut lead_a, seen_a) = spawn_candidate(a, &w);
    tokio::time::timeout(Duration::from_secs(10), lead_a.wait_for(Option::is_some))
        .await
        .expect("a did not become leader")
        .unwrap();
    let (task_b, mut lead_b, seen_b) = spawn_candidate(b, &w);
    until("a to observe", Duration::from_secs(10), || {
        seen_a.load(Ordering::SeqCst) >= 2
    })
    .await;
    let st = status.status().await.unwrap();
    assert_eq!(st.leader.as_ref().unwrap().id, "a");

    // c1 dies; wait until its instances are being rebuilt.
    w.kill("c1");
    until(
        "c1's instances to be rebuilding",
        Duration::from_secs(30),
        || {
            on_c1
                .iter()
                .any(|id| w.instance_state(id).unwrap().is_evacuating())
        },
    )
    .await;
    assert_eq!(
        seen_b.load(Ordering::SeqCst),
        0,
        "the standby must not observe (nor act) while a leads"
    );
    assert!(lead_b.borrow().is_none());
    let st = status.status().await.unwrap();
    assert_eq!(
        st.standbys
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );

    // Kill the leader: the task goes, its keepalive with it; its lease lapses on its own.
    let killed = Instant::now();
    task_a.abort();
    let _ = task_a.await;
    let a_observed = seen_a.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(30), lead_b.wait_for(Option::is_some))
        .await
        .expect("b did not take over")
        .unwrap();
    let elected = killed.elapsed();
    let before = seen_b.load(Ordering::SeqCst);
    until("b to observe", Duration::from_secs(10), || {
        seen_b.load(Ordering::SeqCst) > before
    })
    .await;
    let acting = killed.elapsed();
    println!(
        "failover: leader killed -> standby elected in {elected:?}, first observation by the new \
         leader {acting:?} after the kill (lease TTL {ttl}s, observe interval 300ms)"
    );
    assert!(
        acting < Duration::from_secs(3 * ttl + 5),
        "takeover took {acting:?} (hang guard, not a benchmark)"
    );

    until(
        "c1's instances to run elsewhere",
        Duration::from_secs(60),
        || {
            on_c1.iter().all(|id| {
                let s = w.instance_state(id).unwrap();
                s.instance.host != HostId::from("c1") && !s.is_evacuating()
            })
        },
    )
    .await;
    assert_eq!(
        seen_a.load(Ordering::SeqCst),
        a_observed,
        "the dead leader acted"
    );
    assert_eq!(
        w.power_offs("c1"),
        1,
        "a confirmed host was powered off twice"
    );
    for id in &on_c1 {
        assert_eq!(w.evacuate_calls(id), 1, "{id} was evacuated twice");
    }
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    let st = status.status().await.unwrap();
    assert_eq!(st.leader.as_ref().unwrap().id, "b");
    task_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_stops_the_leader_by_its_local_deadline_and_one_leads_after() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let ttl = 3;
    let w = World::new()
        .host("c1")
        .host("c2")
        .host("c3")
        .host("c4")
        .instances("c1", 2)
        .instances("c2", 2);
    let a = etcd.candidate("frozen", ttl).await.named("a");
    let b = etcd.candidate("frozen", ttl).await.named("b");
    // A leader outside any runtime, to show a commit is refused locally once its deadline passed.
    let c = etcd.candidate("frozen-journal", ttl).await;
    let (lc, jc) = c.lead().await;
    jc.commit(host_batch("x")).await.unwrap();

    let (task_a, mut lead_a, seen_a) = spawn_candidate(a, &w);
    tokio::time::timeout(Duration::from_secs(10), lead_a.wait_for(Option::is_some))
        .await
        .expect("a did not become leader")
        .unwrap();
    let (task_b, lead_b, _seen_b) = spawn_candidate(b, &w);
    until("a to observe", Duration::from_secs(10), || {
        seen_a.load(Ordering::SeqCst) >= 2
    })
    .await;

    etcd.freeze();
    let frozen = Instant::now();
    // A leader that kept acting would fence c1 within strikes x interval.
    w.kill("c1");
    tokio::time::timeout(
        Duration::from_secs(3 * ttl),
        lead_a.wait_for(Option::is_none),
    )
    .await
    .expect("the leader kept leading with etcd frozen")
    .unwrap();
    let stopped = frozen.elapsed();
    println!(
        "frozen etcd: the leader stopped acting {stopped:?} after the freeze (lease TTL {ttl}s)"
    );
    assert!(
        lead_b.borrow().is_none(),
        "b cannot win while etcd is frozen"
    );

    tokio::time::sleep(lc.remaining() + Duration::from_millis(50)).await;
    let asked = Instant::now();
    let err = jc.commit(host_batch("y")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotLeader, "{err}");
    assert!(err.to_string().contains("local lease deadline"), "{err}");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "refused without waiting for the frozen etcd"
    );

    // Stay frozen past two TTLs: nobody may act meanwhile.
    let observed_when_stopped = seen_a.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2 * ttl).saturating_sub(frozen.elapsed())).await;
    assert_eq!(
        w.power_offs("c1"),
        0,
        "someone fenced while etcd was frozen"
    );
    assert!(
        seen_a.load(Ordering::SeqCst) <= observed_when_stopped + 1,
        "the stopped leader kept observing"
    );
    assert!(lead_a.borrow().is_none() && lead_b.borrow().is_none());

    etcd.thaw();
    let thawed = Instant::now();
    until("one leader after the thaw", Duration::from_secs(30), || {
        lead_a.borrow().is_some() || lead_b.borrow().is_some()
    })
    .await;
    println!(
        "thawed etcd: a leader again {:?} after the thaw",
        thawed.elapsed()
    );
    // Exactly one, for a while.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert!(
            !(lead_a.borrow().is_some() && lead_b.borrow().is_some()),
            "two leaders at once"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    until("c1 to be fenced once", Duration::from_secs(30), || {
        w.power_offs("c1") >= 1 && w.count(Op::Evacuate) >= 2
    })
    .await;
    assert_eq!(w.power_offs("c1"), 1);
    assert!(w.violations().is_empty(), "{:?}", w.violations());
    task_a.abort();
    task_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_etcd_password_is_an_auth_error_that_never_shows_the_password() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let run = |args: &[&str]| {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", etcd.endpoint()])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["user", "add", "root:root-pw-123"]);
    run(&["auth", "enable"]);

    let mut cfg = etcd.ha("auth", 10);
    cfg.user = Some("root".into());
    cfg.password = Some(Secret::new("wrong-pw-S3CRET"));
    assert!(!format!("{cfg:?}").contains("wrong-pw-S3CRET"));
    let err = Candidate::connect(cfg.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(!err.is_temporary());
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("wrong-pw-S3CRET"), "{shown}");
    }

    cfg.password = Some(Secret::new("root-pw-123"));
    let cand = Candidate::connect(cfg).await.unwrap();
    let l = cand.campaign().await.unwrap();
    assert!(format!("{l:?}").contains("token"));
    cand.leader_journal(&l)
        .await
        .unwrap()
        .commit(host_batch("x"))
        .await
        .unwrap();
}

/// The first power-off takes `delay` (it holds the one fencing slot meanwhile); the others are instant.
struct SlowFirst {
    inner: FakeFencer,
    delay: Duration,
    first: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl freezer_dr_core::Fencer for SlowFirst {
    async fn power_off(&self, host: &HostId) -> freezer_dr_core::Result<()> {
        if self.first.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.power_off(host).await
    }

    async fn power_status(
        &self,
        host: &HostId,
    ) -> freezer_dr_core::Result<freezer_dr_core::PowerState> {
        self.inner.power_status(host).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_off_queued_behind_a_slot_is_not_sent_once_the_token_is_lost() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let w = World::new().host("c1").host("c2").host("c3").host("c4");
    let mut cfg = recovery();
    cfg.storm.max_new_fencings_per_cycle = 2;
    cfg.fencing.concurrency = 1;
    let a = etcd.candidate("guard", 10).await.named("a");
    let observed = Arc::new(AtomicUsize::new(0));
    let mut p = pipeline(&w, &observed);
    p.fencers = vec![Arc::new(SlowFirst {
        inner: FakeFencer::new(&w),
        delay: Duration::from_secs(2),
        first: true.into(),
    })];
    let mut leading = a.leading();
    let task = tokio::spawn(async move {
        a.run_as_leader(
            move |journal| Ok(Runtime::new(cfg.clone(), p.clone(), journal)),
            std::future::pending(),
        )
        .await
    });
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(Option::is_some))
        .await
        .expect("a did not become leader")
        .unwrap();
    // Both die; both power-offs are committed in the cycle of the second strike, and the second waits
    // for the one fencing slot while the first takes 2 s.
    let before = observed.load(Ordering::SeqCst);
    w.kill("c1");
    w.kill("c2");
    until("the second strike", Duration::from_secs(20), || {
        observed.load(Ordering::SeqCst) >= before + 3
    })
    .await;
    assert_eq!(
        w.count(Op::PowerOff),
        0,
        "the first power-off is still in flight"
    );
    // The leader key goes while `a` still believes it leads (its local deadline is far), and `b` takes
    // the lead (it runs no runtime: whatever is powered off from here was sent by a deposed `a`).
    let b = etcd.candidate("guard", 10).await.named("b");
    let mut raw = etcd.raw().await;
    raw.delete("/freezer-dr/guard/leader", None).await.unwrap();
    let _lb = tokio::time::timeout(Duration::from_secs(10), b.campaign())
        .await
        .expect("b did not take over")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), leading.wait_for(Option::is_none))
        .await
        .expect("the deposed leader did not stop")
        .unwrap();
    // Give a late call every chance to show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.count(Op::PowerOff),
        1,
        "only the power-off that left before the token was lost"
    );
    task.abort();
}
