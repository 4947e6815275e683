//! The runtime: runs the observation loop and executes the engine's commands.
//!
//! - Every engine step's changes (and the reports it produced, as outbox entries) are committed to the
//!   journal *before* any of its commands that changes the cloud runs, and before its reports go out; a
//!   journal failure stops the runtime (acting without a record is how a restart would repeat itself).
//!   Answers that arrived together are stepped one by one and committed together: one durable write for
//!   a burst, not one per answer. A turn whose commands only read (a power status, an evacuation's
//!   progress, a host's instances) sends them at once; its changes ride on the next commit, at most
//!   [`LATE_AT_MOST`] later (and always before the runtime returns).
//! - Host-level commands are serialized per host (one in flight per host); power-offs and evacuation
//!   requests have global concurrency limits; every driver call has a timeout; temporary errors are
//!   retried with exponential backoff and jitter (never an evacuation request, whose outcome is
//!   re-checked by the engine instead).
//! - Notifications are delivered from the outbox by a separate task: a slow or down mail server delays
//!   them, never blocks recovery, and never loses them.
//! - Shutdown drains in-flight calls (their results are journaled) and starts nothing new.
//! - A dry run is the same loop with recorders for the fencers and the evacuator: they write the plan
//!   and answer as if each change succeeded; reads stay real.
//!
//! Here: the loop (load, step, commit before execute, drain). `execute`: commands into driver calls;
//! `call`: one driver call (timeout, retries, the leadership guard); `backoff`: the one retry schedule;
//! `outbox`: report delivery; `dry`: the dry run's recorders; `observer`: what operators' tools are told
//! (status at each loop turn, events), `instrument`: the driver calls they see.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::engine::RecoveryConfig;
use crate::engine::{Changes, Command, Engine, Input, InstanceState, Stage};
use crate::journal::{Batch, OutboxEntry};
use crate::{
    Directory, Error, ErrorKind, Evacuator, Failure, Fencer, HostId, Journal, Monitor, Notifier,
    Result, Timestamp,
};

mod backoff;
mod call;
mod dry;
mod execute;
mod instrument;
mod observer;
mod outbox;

pub use observer::{Call, Event, FencingResult, HaRole, Observer, STAGES, Status};

use call::{deposed, timeout_failure};
use dry::{Plan, PlanSink};
use outbox::deliver_outbox;

/// The tokio runtime the reference binary runs freezer-dr on: one thread for the loop and every driver
/// call, the blocking driver work (redb, IPMI, libvirt) on tokio's blocking pool.
///
/// freezer-dr waits on the network nearly all the time. Measured with the nova bench (1,000 instances at
/// concurrency 32), a thread per core cost 0.125–0.157 ms of CPU per driver call and one thread
/// 0.094–0.112 ms: handing each answer between threads costs more than the work it shares.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The drivers of one freezer-dr: built from a config file by the config module, or by hand with typed
/// constructors when embedding.
#[derive(Clone)]
pub struct Pipeline {
    /// Observes hosts.
    pub monitor: Arc<dyn Monitor>,
    /// Fencing levels, tried in order.
    pub fencers: Vec<Arc<dyn Fencer>>,
    /// Isolates and evacuates.
    pub evacuator: Arc<dyn Evacuator>,
    /// Finds who to tell (optional: without it only the operators are told).
    pub directory: Option<Arc<dyn Directory>>,
    /// Deliver reports.
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

/// What a `run --once` pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hosts that went into recovery during the pass.
    pub recovered: Vec<HostId>,
    /// Hosts left waiting for a person.
    pub needs_operator: Vec<HostId>,
    /// Instances whose evacuation failed.
    pub failed_instances: usize,
    /// Why the pass refused to act (storm, pause, observation failing), if it did.
    pub refused: Option<String>,
    /// In a dry run: what would have been done, one line per action.
    pub plan: Vec<String>,
    /// Reports still in the outbox when the pass ended (delivered by the next run).
    pub undelivered: usize,
    /// Engine steps the pass took (inputs, ticks included): what waiting costs, in loop turns.
    pub steps: u64,
    /// Journal commits the pass made (with redb, each one a durable write).
    pub commits: u64,
}

/// Runs a [`Pipeline`] with the engine and the journal.
pub struct Runtime {
    cfg: RecoveryConfig,
    pipeline: Pipeline,
    journal: Arc<dyn Journal>,
    dry_run: bool,
    plan_sink: Option<PlanSink>,
    observers: Vec<Arc<dyn Observer>>,
}

impl Runtime {
    /// A runtime for these drivers and this journal.
    pub fn new(cfg: RecoveryConfig, pipeline: Pipeline, journal: Arc<dyn Journal>) -> Self {
        Self {
            cfg,
            pipeline,
            journal,
            dry_run: false,
            plan_sink: None,
            observers: Vec::new(),
        }
    }

    /// Tells `observer` where the runtime stands at each loop turn and what it does (see [`Observer`]).
    #[must_use]
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Dry run: decide and print the plan, touch nothing. Only read-only driver calls are made (observe,
    /// list instances); power-offs, isolation, evacuations and restores are planned and assumed to
    /// succeed, and nothing is delivered.
    #[must_use]
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Called with each plan line as it is decided (dry runs), e.g. to print it at once in daemon mode.
    #[must_use]
    pub fn on_plan(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.plan_sink = Some(Arc::new(sink));
        self
    }

    /// One pass, the original freezer-dr behaviour: observe (up to `strikes` times, `interval` apart) and
    /// recover every host found down, then return once every recovery settled (instances running
    /// elsewhere or failed, or a person needed). Nothing down: an empty [`Summary`].
    pub async fn run_once(self) -> Result<Summary> {
        let mut core = Core::start(self).await?;
        // Enough rounds for every host down now to reach the strike count, plus one per host the
        // per-cycle fencing budget makes wait; recoveries progress between rounds.
        let max_rounds = core.engine.config().strikes.max(1) + 10;
        for round in 0..max_rounds {
            if round > 0 {
                core.wait(core.interval()).await?;
            }
            core.observe_now().await?;
            if !core.any_suspect() || core.refusing() {
                break;
            }
        }
        core.settle().await?;
        core.finish().await
    }

    /// The daemon loop, until `shutdown` resolves; in-flight calls are drained (and journaled) before
    /// returning.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let mut core = Core::start(self).await?;
        tokio::pin!(shutdown);
        let mut next_observation = Instant::now();
        let mut next_requests = Instant::now();
        loop {
            let wake = core.next_wake(next_observation.min(next_requests));
            tokio::select! {
                () = &mut shutdown => {
                    info!("shutting down: draining in-flight calls");
                    core.watch.observers.event(&observer::Event::Stopping);
                    core.watch.turn(&core.engine, core.clock.now(), true);
                    break;
                }
                Some(input) = core.rx.recv() => core.process(input).await?,
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if now >= next_requests {
                        core.apply_requests().await?;
                        next_requests = now + Duration::from_secs(1);
                    }
                    if now >= next_observation {
                        core.spawn_observation();
                        next_observation = now + core.interval();
                    }
                    core.process(Input::Tick).await?;
                }
            }
        }
        core.drain().await?;
        core.finish().await.map(|_| ())
    }
}

/// Most inputs stepped before one journal commit: answers that arrived together share a write, and a
/// burst still commits (and acts) every this many.
const MAX_BATCH: usize = 64;

/// The longest a change waits in memory for its commit when the turn that made it asked only for reads
/// (a power status, an evacuation's progress, a host's instances): those go out at once, and the change
/// rides on the next commit, which is at the latest this much later. A crash in between loses answers
/// that the engine re-checks after a restart, as when it loses an answer in flight.
const LATE_AT_MOST: Duration = Duration::from_millis(500);

/// Changes not journaled yet, whose turn's commands were all reads, and when they must be.
struct Late {
    changes: Changes,
    due: Instant,
}

/// The shortest time between two status snapshots for the observers on ticks alone.
const TURN_EVERY: Duration = Duration::from_millis(100);

/// What a step means for the observers: ordered, the strongest of a batch counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Turn {
    None,
    Tick,
    Observation,
}

/// The running state of a runtime.
struct Core {
    engine: Engine,
    // Shared with every driver task (one per command): a reference count, not a copy, per call.
    cfg: Arc<RecoveryConfig>,
    pipeline: Arc<Pipeline>,
    journal: Arc<dyn Journal>,
    dry_run: bool,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    tasks: JoinSet<()>,
    host_locks: HashMap<HostId, Arc<tokio::sync::Mutex<()>>>,
    fencing_slots: Arc<Semaphore>,
    evacuation_slots: Arc<Semaphore>,
    clock: Clock,
    outbox_wake: Arc<Notify>,
    deliverer: Option<tokio::task::JoinHandle<()>>,
    plan: Plan,
    observing: bool,
    draining: bool,
    steps: u64,
    /// Journal commits made.
    commits: u64,
    /// Changes held for the next commit (see [`LATE_AT_MOST`]).
    late: Option<Late>,
    /// When the observers were last given a status.
    last_turn: Option<Timestamp>,
    earlier_recoveries: std::collections::HashSet<Option<String>>,
    watch: observer::Watch,
}

impl Drop for Core {
    fn drop(&mut self) {
        // A runtime stopped by an error (a journal refusing a commit: deposed in HA mode) must not leave
        // its outbox deliverer running on behind it.
        if let Some(handle) = self.deliverer.take() {
            handle.abort();
        }
    }
}

/// Wall-clock time derived from tokio's clock, so paused-time tests move the engine's clock too.
#[derive(Clone, Copy)]
struct Clock {
    base: Timestamp,
    start: Instant,
}

impl Clock {
    fn now(&self) -> Timestamp {
        self.base.after(self.start.elapsed())
    }
}

impl Core {
    async fn start(rt: Runtime) -> Result<Self> {
        let snapshot = rt.journal.load().await?;
        // The id in this daemon's isolation markers: what tells two daemons' logs (and markers) apart.
        info!(journal_id = %snapshot.journal_id, "journal loaded");
        let engine = Engine::from_snapshot(rt.cfg.clone(), rt.pipeline.fencers.len(), snapshot);
        let (tx, rx) = mpsc::unbounded_channel();
        let plan = Plan::new(rt.plan_sink);
        // A dry run is the same runtime with recorders for drivers (see dry.rs).
        let pipeline = if rt.dry_run {
            dry::recording(rt.pipeline, &plan)
        } else {
            rt.pipeline
        };
        let observers = observer::Observers::new(rt.observers);
        let pipeline = if observers.is_empty() {
            pipeline
        } else {
            instrument::instrumented(pipeline, &observers)
        };
        let watch = observer::Watch::new(observers, &engine, rt.dry_run);
        let (fencings, evacuations) = (rt.cfg.fencing.concurrency, rt.cfg.evacuation.concurrency);
        let mut core = Self {
            engine,
            cfg: Arc::new(rt.cfg),
            pipeline: Arc::new(pipeline),
            journal: rt.journal,
            dry_run: rt.dry_run,
            tx,
            rx,
            tasks: JoinSet::new(),
            host_locks: HashMap::new(),
            fencing_slots: Arc::new(Semaphore::new(fencings.max(1))),
            evacuation_slots: Arc::new(Semaphore::new(evacuations.max(1))),
            clock: Clock {
                base: Timestamp::now(),
                start: Instant::now(),
            },
            outbox_wake: Arc::new(Notify::new()),
            deliverer: None,
            plan,
            observing: false,
            draining: false,
            steps: 0,
            commits: 0,
            late: None,
            last_turn: None,
            earlier_recoveries: Default::default(),
            watch,
        };
        core.earlier_recoveries = core.engine.hosts().map(|h| h.recovery.clone()).collect();
        if !core.dry_run {
            core.deliverer = Some(tokio::spawn(deliver_outbox(
                core.journal.clone(),
                (*core.pipeline).clone(),
                (*core.cfg).clone(),
                core.clock,
                core.outbox_wake.clone(),
                core.watch.outbox.clone(),
            )));
        }
        let resuming = core
            .engine
            .hosts()
            .filter(|h| h.stage.in_recovery())
            .count();
        if resuming > 0 {
            info!(hosts = resuming, "resuming recoveries from the journal");
        }
        // Operator requests submitted while no daemon ran (a pause above all) apply before anything else.
        core.apply_requests().await?;
        core.process(Input::Tick).await?;
        Ok(core)
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }

    /// A host observed down that is not in recovery yet.
    fn any_suspect(&self) -> bool {
        self.engine
            .hosts()
            .any(|h| matches!(h.stage, Stage::Suspect { .. }))
    }

    /// The engine refuses to fence at all right now (brake, storm, all stale, observation failing).
    fn refusing(&self) -> bool {
        let m = self.engine.meta();
        m.paused.is_some()
            || m.storm_since.is_some()
            || m.stale_alerted
            || m.observation_failures >= self.cfg.strikes.max(1)
    }

    /// When the loop should wake next: the earlier of `other` and the engine's next due poll/deadline.
    fn next_wake(&self, other: Instant) -> Instant {
        let other = self.late.as_ref().map_or(other, |l| other.min(l.due));
        match self.engine.next_wakeup() {
            Some(t) => {
                let now = self.clock.now();
                other.min(Instant::now() + t.since(now))
            }
            None => other,
        }
    }

    /// Feeds one input, and every input already waiting behind it, to the engine; journals what they
    /// changed in one commit, then executes their commands in order. Write-ahead holds for each of them:
    /// nothing any of them decided runs before that commit, and a crash before it loses only answers the
    /// engine re-checks after a restart, as it would lose one.
    async fn process(&mut self, input: Input) -> Result<()> {
        let mut cmds = Vec::new();
        let mut turn = self.step(input, &mut cmds)?;
        for _ in 1..MAX_BATCH {
            let Ok(next) = self.rx.try_recv() else {
                break;
            };
            turn = turn.max(self.step(next, &mut cmds)?);
        }
        self.commit(cmds, Vec::new()).await?;
        // The observers' status reads every host: after each observation, but for the ticks (up to one
        // per millisecond while polls fall due) at most every TURN_EVERY.
        let now = self.clock.now();
        let due = match turn {
            Turn::Observation => true,
            Turn::Tick => self.last_turn.is_none_or(|t| now.since(t) >= TURN_EVERY),
            Turn::None => false,
        };
        if due {
            self.last_turn = Some(now);
            self.watch.turn(&self.engine, now, self.draining);
        }
        Ok(())
    }

    /// One engine step, its commands added to `cmds`; whether it was a loop turn for the observers.
    fn step(&mut self, input: Input, cmds: &mut Vec<Command>) -> Result<Turn> {
        let turn = match &input {
            Input::Observed(result) => {
                self.observing = false;
                self.watch.observed(result.is_ok(), self.clock.now());
                Turn::Observation
            }
            Input::Tick => Turn::Tick,
            _ => Turn::None,
        };
        if let Some(f) = deposed(&input) {
            // The guard refused a write right before it was sent: another freezer-dr may act now. Stop
            // without recording anything (this process may no longer write the journal).
            error!(error = %f.message, "no longer the leader: stopping");
            return Err(Error::new(ErrorKind::NotLeader, f.message.clone()).permanent());
        }
        self.steps += 1;
        cmds.extend(self.engine.step(self.clock.now(), input));
        Ok(turn)
    }

    async fn commit(&mut self, cmds: Vec<Command>, applied_requests: Vec<u64>) -> Result<()> {
        let changes = self.engine.take_changes();
        let now = self.clock.now();
        let mut outbox = Vec::new();
        for report in cmds.iter().filter_map(|c| match c {
            Command::Notify(r) => Some(r),
            _ => None,
        }) {
            for (i, _) in self.pipeline.notifiers.iter().enumerate() {
                outbox.push(OutboxEntry {
                    key: format!("{}/{i}", report.id),
                    notifier: i,
                    report: report.clone(),
                    attempts: 0,
                    last_error: None,
                    next_attempt: now,
                });
            }
        }
        let wrote_outbox = !outbox.is_empty();
        let events = self.watch.changes(&changes);
        self.watch.outbox.added(&outbox);
        // Write-ahead for every command that changes the cloud, for the reports and for the operators'
        // requests. A destructive command always goes through a commit, even an empty one: a journal that
        // guards leadership (HA) checks its fencing token there, right before anything is touched. A turn
        // that asked only for reads sends them now; its changes wait for the next commit (LATE_AT_MOST).
        let destructive = cmds.iter().any(Command::is_destructive);
        let urgent = destructive || wrote_outbox || !applied_requests.is_empty();
        let changes = match self.late.take() {
            Some(mut late) => {
                late.changes.absorb(changes);
                if urgent || Instant::now() >= late.due {
                    late.changes.dedup();
                    late.changes
                } else {
                    self.late = Some(late);
                    Changes::default()
                }
            }
            None if urgent => changes,
            None => {
                if !changes.is_empty() {
                    self.late = Some(Late {
                        changes,
                        due: Instant::now() + LATE_AT_MOST,
                    });
                }
                Changes::default()
            }
        };
        if !changes.is_empty() || urgent {
            let batch = Batch {
                changes,
                outbox,
                applied_requests,
            };
            // Write-ahead: nothing below runs unless this is on disk.
            if let Err(e) = self.write(batch, urgent).await {
                error!(error = %e, "journal write failed: stopping without acting on the decision");
                return Err(e);
            }
        }
        if wrote_outbox {
            self.outbox_wake.notify_one();
        }
        for event in &events {
            self.watch.observers.event(event);
        }
        for cmd in cmds {
            self.execute(cmd);
        }
        Ok(())
    }

    /// Commits `batch`, counts it and tells the observers how long the journal took
    /// ([`observer::Event::Commit`]); `write_ahead`: commands wait for it.
    async fn write(&mut self, batch: Batch, write_ahead: bool) -> Result<()> {
        self.commits += 1;
        // The wall clock, not tokio's (paused in tests): what a slow disk costs every command.
        let started = std::time::Instant::now();
        self.journal.commit(batch).await?;
        self.watch.observers.event(&observer::Event::Commit {
            took: started.elapsed(),
            write_ahead,
        });
        Ok(())
    }

    /// Applies operator requests waiting in the journal, acknowledging them in the same commit.
    async fn apply_requests(&mut self) -> Result<()> {
        let requests = self.journal.requests().await?;
        for req in requests {
            info!(request = ?req.request, id = req.id, "applying operator request");
            self.steps += 1;
            let cmds = self
                .engine
                .step(self.clock.now(), Input::Operator(req.request));
            self.commit(cmds, vec![req.id]).await?;
        }
        Ok(())
    }

    fn spawn_observation(&mut self) {
        if self.observing || self.draining {
            return;
        }
        self.observing = true;
        let monitor = self.pipeline.monitor.clone();
        let tx = self.tx.clone();
        let timeout = self.cfg.call_timeout;
        self.tasks.spawn(async move {
            let result = observe(monitor.as_ref(), timeout).await;
            let _ = tx.send(Input::Observed(result));
        });
    }

    /// Observes once and processes the result right away (run --once).
    async fn observe_now(&mut self) -> Result<()> {
        self.apply_requests().await?;
        let result = observe(self.pipeline.monitor.as_ref(), self.cfg.call_timeout).await;
        if let Err(f) = &result {
            warn!(error = %f, "observation failed");
        }
        self.process(Input::Observed(result)).await
    }

    /// Processes results and ticks for `d`.
    async fn wait(&mut self, d: Duration) -> Result<()> {
        let until = Instant::now() + d;
        loop {
            let wake = self.next_wake(until);
            tokio::select! {
                Some(input) = self.rx.recv() => self.process(input).await?,
                () = tokio::time::sleep_until(wake) => {
                    self.process(Input::Tick).await?;
                    if Instant::now() >= until {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Runs until no recovery is mid-way and no call is in flight (run --once).
    async fn settle(&mut self) -> Result<()> {
        loop {
            self.reap();
            if self.engine.is_settled() && self.tasks.is_empty() {
                return Ok(());
            }
            let wake = self.next_wake(Instant::now() + self.interval());
            tokio::select! {
                Some(input) = self.rx.recv() => self.process(input).await?,
                () = tokio::time::sleep_until(wake) => self.process(Input::Tick).await?,
            }
        }
    }

    /// Waits for in-flight calls and journals their results; starts nothing new.
    async fn drain(&mut self) -> Result<()> {
        self.draining = true;
        self.engine.drain();
        loop {
            self.reap();
            if self.tasks.is_empty() {
                break;
            }
            tokio::select! {
                Some(input) = self.rx.recv() => self.process(input).await?,
                _ = self.tasks.join_next() => {}
            }
        }
        while let Ok(input) = self.rx.try_recv() {
            self.process(input).await?;
        }
        Ok(())
    }

    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Err(e) = done {
                error!(error = %e, "a driver task panicked");
            }
        }
    }

    async fn finish(mut self) -> Result<Summary> {
        // What the last turns changed, before the process may end.
        if let Some(late) = self.late.take() {
            let mut changes = late.changes;
            changes.dedup();
            let batch = Batch {
                changes,
                outbox: Vec::new(),
                applied_requests: Vec::new(),
            };
            self.write(batch, false).await?;
        }
        let mut summary = Summary {
            plan: self.plan.lines(),
            steps: self.steps,
            commits: self.commits,
            ..Summary::default()
        };
        for h in self.engine.hosts() {
            // Only recoveries this pass started: a host recovered by an earlier pass and still dead is
            // not news.
            if h.recovery.is_some() && !self.earlier_recoveries.contains(&h.recovery) {
                summary.recovered.push(h.host.clone());
            }
            if matches!(h.stage, Stage::NeedsOperator { .. }) {
                summary.needs_operator.push(h.host.clone());
            }
            summary.failed_instances += h
                .instances
                .values()
                .filter(|i| matches!(i.state, InstanceState::Failed { .. }))
                .count();
        }
        let meta = self.engine.meta();
        summary.refused = if let Some(reason) = &meta.paused {
            Some(format!("paused by an operator: {reason}"))
        } else if meta.storm_since.is_some() {
            Some("storm: too many hosts down at once".into())
        } else if meta.stale_alerted {
            Some("every host looked down at once".into())
        } else if meta.observation_failures > 0 {
            Some("the hosts could not be observed".into())
        } else {
            None
        };
        if let Some(handle) = self.deliverer.take() {
            // Give the outbox a bounded chance to empty, then leave the rest for the next run.
            let deadline = Instant::now() + self.cfg.call_timeout;
            while Instant::now() < deadline {
                match self.journal.outbox().await {
                    Ok(o) if o.iter().all(|e| e.attempts > 0) => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => break,
                }
            }
            handle.abort();
        }
        summary.undelivered = self.journal.outbox().await.map(|o| o.len()).unwrap_or(0);
        self.tasks.shutdown().await;
        Ok(summary)
    }
}

async fn observe(
    monitor: &dyn Monitor,
    timeout: Duration,
) -> std::result::Result<Vec<crate::HostHealth>, Failure> {
    match tokio::time::timeout(timeout, monitor.observe()).await {
        Ok(Ok(hosts)) => Ok(hosts),
        Ok(Err(e)) => Err(e.to_failure()),
        Err(_) => Err(timeout_failure("observe", timeout)),
    }
}
