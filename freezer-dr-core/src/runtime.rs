//! The runtime: runs the observation loop and executes the engine's commands.
//!
//! - Every engine step's changes (and the reports it produced, as outbox entries) are committed to the
//!   journal *before* any of its commands runs; a journal failure stops the runtime (acting without a
//!   record is how a restart would repeat itself).
//! - Host-level commands are serialized per host (one in flight per host); power-offs and evacuation
//!   requests have global concurrency limits; every driver call has a timeout; temporary errors are
//!   retried with exponential backoff and jitter (never an evacuation request, whose outcome is
//!   re-checked by the engine instead).
//! - Notifications are delivered from the outbox by a separate task: a slow or down mail server delays
//!   them, never blocks recovery, and never loses them.
//! - Shutdown drains in-flight calls (their results are journaled) and starts nothing new.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::engine::RecoveryConfig;
use crate::engine::{Command, Engine, Input, InstanceState, Stage};
use crate::journal::{Batch, OutboxEntry};
use crate::{
    Audience, Directory, Error, ErrorKind, Evacuator, Failure, Fencer, HostId, Journal, Monitor,
    Notifier, PowerState, Progress, Report, Result, Timestamp,
};

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
}

/// Receives dry-run plan lines as they are decided.
type PlanSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs a [`Pipeline`] with the engine and the journal.
pub struct Runtime {
    cfg: RecoveryConfig,
    pipeline: Pipeline,
    journal: Arc<dyn Journal>,
    dry_run: bool,
    plan_sink: Option<PlanSink>,
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
        }
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

/// The running state of a runtime.
struct Core {
    engine: Engine,
    cfg: RecoveryConfig,
    pipeline: Pipeline,
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
    plan: Arc<Mutex<Vec<String>>>,
    plan_sink: Option<PlanSink>,
    observing: bool,
    draining: bool,
    steps: u64,
    earlier_recoveries: std::collections::HashSet<Option<String>>,
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
        let (fencings, evacuations) = (rt.cfg.fencing.concurrency, rt.cfg.evacuation.concurrency);
        let mut core = Self {
            engine,
            cfg: rt.cfg,
            pipeline: rt.pipeline,
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
            plan: Arc::new(Mutex::new(Vec::new())),
            plan_sink: rt.plan_sink,
            observing: false,
            draining: false,
            steps: 0,
            earlier_recoveries: Default::default(),
        };
        core.earlier_recoveries = core.engine.hosts().map(|h| h.recovery.clone()).collect();
        if !core.dry_run {
            core.deliverer = Some(tokio::spawn(deliver_outbox(
                core.journal.clone(),
                core.pipeline.clone(),
                core.cfg.clone(),
                core.clock,
                core.outbox_wake.clone(),
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
        match self.engine.next_wakeup() {
            Some(t) => {
                let now = self.clock.now();
                other.min(Instant::now() + t.since(now))
            }
            None => other,
        }
    }

    /// Feeds one input, journals the result, then executes the commands.
    async fn process(&mut self, input: Input) -> Result<()> {
        if matches!(input, Input::Observed(_)) {
            self.observing = false;
        }
        if let Some(f) = deposed(&input) {
            // The guard refused a write right before it was sent: another freezer-dr may act now. Stop
            // without recording anything (this process may no longer write the journal).
            error!(error = %f.message, "no longer the leader: stopping");
            return Err(Error::new(ErrorKind::NotLeader, f.message.clone()).permanent());
        }
        self.steps += 1;
        let cmds = self.engine.step(self.clock.now(), input);
        self.commit(cmds, Vec::new()).await
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
        // A destructive command always goes through a commit, even an empty one: a journal that guards
        // leadership (HA) checks its fencing token there, right before anything is touched.
        let destructive = cmds.iter().any(Command::is_destructive);
        if !changes.is_empty() || wrote_outbox || !applied_requests.is_empty() || destructive {
            let batch = Batch {
                changes,
                outbox,
                applied_requests,
            };
            // Write-ahead: nothing below runs unless this is on disk.
            if let Err(e) = self.journal.commit(batch).await {
                error!(error = %e, "journal write failed: stopping without acting on the decision");
                return Err(e);
            }
        }
        if wrote_outbox {
            self.outbox_wake.notify_one();
        }
        for cmd in cmds {
            self.dispatch(cmd);
        }
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
        let mut summary = Summary {
            plan: self.plan.lock().map(|p| p.clone()).unwrap_or_default(),
            steps: self.steps,
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

    fn record_plan(&self, line: String) {
        info!(plan = %line, "dry run");
        if let Some(sink) = &self.plan_sink {
            sink(&line);
        }
        if let Ok(mut p) = self.plan.lock() {
            p.push(line);
        }
    }

    fn host_lock(&mut self, host: &HostId) -> Arc<tokio::sync::Mutex<()>> {
        self.host_locks.entry(host.clone()).or_default().clone()
    }

    fn dispatch(&mut self, cmd: Command) {
        if self.draining {
            debug!(
                command = cmd.name(),
                "shutting down: not started (the journal has the intent)"
            );
            return;
        }
        if self.dry_run {
            return self.dispatch_dry(cmd);
        }
        let tx = self.tx.clone();
        let cfg = self.cfg.clone();
        let p = self.pipeline.clone();
        // One source for how each call is made: its retry safety and, for the writes, the leadership
        // guard right before each attempt, are the command's own.
        let how = CallPolicy {
            op: cmd.name(),
            retry_safe: cmd.retry_safe(),
            guard: cmd.is_destructive().then(|| self.journal.clone()),
        };
        match cmd {
            Command::Notify(r) => {
                info!(report = %r.id, kind = ?r.kind, summary = %r.summary, "report queued");
            }
            Command::PowerOff { host, level } => {
                let lock = self.host_lock(&host);
                let slots = self.fencing_slots.clone();
                self.tasks.spawn(async move {
                    let _host = lock.lock().await;
                    let _slot = slots.acquire_owned().await;
                    info!(host = %host, level, "powering off");
                    let result = match p.fencers.get(level) {
                        Some(f) if f.handles(&host) => how.call(&cfg, || f.power_off(&host)).await,
                        Some(_) => Err(not_handled(level)),
                        None => Err(no_level(level)),
                    };
                    log_result("power_off", &host, &result);
                    let _ = tx.send(Input::PoweredOff {
                        host,
                        level,
                        result,
                    });
                });
            }
            Command::PowerStatus { host, level } => {
                let lock = self.host_lock(&host);
                self.tasks.spawn(async move {
                    let _host = lock.lock().await;
                    let result = match p.fencers.get(level) {
                        Some(f) if f.handles(&host) => {
                            how.call(&cfg, || f.power_status(&host)).await
                        }
                        Some(_) => Err(not_handled(level)),
                        None => Err(no_level(level)),
                    };
                    debug!(host = %host, level, result = ?result, "power status");
                    let _ = tx.send(Input::PowerRead {
                        host,
                        level,
                        result,
                    });
                });
            }
            Command::Isolate { fenced } => {
                let lock = self.host_lock(fenced.host());
                self.tasks.spawn(async move {
                    let _host = lock.lock().await;
                    info!(host = %fenced.host(), "isolating");
                    let result = how.call(&cfg, || p.evacuator.isolate(&fenced)).await;
                    log_result("isolate", fenced.host(), &result);
                    let _ = tx.send(Input::Isolated {
                        host: fenced.host().clone(),
                        result,
                    });
                });
            }
            Command::ListInstances { fenced } => {
                let lock = self.host_lock(fenced.host());
                self.tasks.spawn(async move {
                    let _host = lock.lock().await;
                    let result = how.call(&cfg, || p.evacuator.instances(&fenced)).await;
                    log_result("instances", fenced.host(), &result);
                    let _ = tx.send(Input::Listed {
                        host: fenced.host().clone(),
                        result,
                    });
                });
            }
            Command::Evacuate { fenced, instance } => {
                let slots = self.evacuation_slots.clone();
                self.tasks.spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    info!(host = %fenced.host(), instance = %instance.id, "evacuating");
                    // Never retried here: an ambiguous failure is re-checked by the engine.
                    let result = how
                        .call(&cfg, || p.evacuator.evacuate(&fenced, &instance))
                        .await;
                    log_result("evacuate", fenced.host(), &result);
                    let _ = tx.send(Input::EvacuateSent {
                        host: fenced.host().clone(),
                        instance: instance.id,
                        result,
                    });
                });
            }
            Command::Progress { host, instance } => {
                self.tasks.spawn(async move {
                    let result = how.call(&cfg, || p.evacuator.progress(&instance)).await;
                    debug!(host = %host, instance = %instance.id, result = ?result, "progress");
                    let _ = tx.send(Input::ProgressRead {
                        host,
                        instance: instance.id,
                        result,
                    });
                });
            }
            Command::Start { host, instance } => {
                self.tasks.spawn(async move {
                    info!(host = %host, instance = %instance.id, "starting an evacuated instance");
                    let result = how.call(&cfg, || p.evacuator.start(&instance)).await;
                    log_result("start", &host, &result);
                    let _ = tx.send(Input::Started {
                        host,
                        instance: instance.id,
                        result,
                    });
                });
            }
            Command::Restore { host } => {
                let lock = self.host_lock(&host);
                self.tasks.spawn(async move {
                    let _host = lock.lock().await;
                    info!(host = %host, "returning to service");
                    let result = how.call(&cfg, || p.evacuator.restore(&host)).await;
                    log_result("restore", &host, &result);
                    let _ = tx.send(Input::Restored { host, result });
                });
            }
        }
    }

    /// Dry run: plan destructive commands and assume they succeed; make read-only calls for real.
    fn dispatch_dry(&mut self, cmd: Command) {
        let tx = self.tx.clone();
        let input = match cmd {
            Command::PowerOff { host, level } => {
                self.record_plan(format!("power off {host} through fencer[{level}]"));
                Input::PoweredOff {
                    host,
                    level,
                    result: Ok(()),
                }
            }
            Command::PowerStatus { host, level } => {
                self.record_plan(format!(
                    "read the power status of {host} through fencer[{level}] until it reads off"
                ));
                Input::PowerRead {
                    host,
                    level,
                    result: Ok(PowerState::Off),
                }
            }
            Command::Isolate { fenced } => {
                self.record_plan(format!(
                    "isolate {}: forced_down, then disabled with reason {:?}",
                    fenced.host(),
                    fenced.marker()
                ));
                Input::Isolated {
                    host: fenced.host().clone(),
                    result: Ok(()),
                }
            }
            Command::ListInstances { fenced } => {
                let cfg = self.cfg.clone();
                let p = self.pipeline.clone();
                self.tasks.spawn(async move {
                    let result =
                        call(&cfg, "instances", true, || p.evacuator.instances(&fenced)).await;
                    let _ = tx.send(Input::Listed {
                        host: fenced.host().clone(),
                        result,
                    });
                });
                return;
            }
            Command::Evacuate { fenced, instance } => {
                self.record_plan(format!(
                    "evacuate instance {} ({}, project {}) from {}",
                    instance.name,
                    instance.id,
                    instance.project,
                    fenced.host()
                ));
                Input::EvacuateSent {
                    host: fenced.host().clone(),
                    instance: instance.id,
                    result: Ok(()),
                }
            }
            Command::Progress { host, instance } => Input::ProgressRead {
                host,
                result: Ok(Progress::Done {
                    host: HostId::new("<chosen by the scheduler>"),
                    status: instance.status.clone(),
                }),
                instance: instance.id,
            },
            Command::Start { host, instance } => {
                self.record_plan(format!(
                    "start instance {} ({}), evacuated from {host} and left stopped",
                    instance.name, instance.id
                ));
                Input::Started {
                    host,
                    instance: instance.id,
                    result: Ok(()),
                }
            }
            Command::Restore { host } => {
                self.record_plan(format!("return {host} to service"));
                Input::Restored {
                    host,
                    result: Ok(()),
                }
            }
            Command::Notify(r) => {
                let to = match r.audience {
                    Audience::Operators => "operators".to_owned(),
                    Audience::OperatorsAndUsers => {
                        format!("operators and the users of {}", r.projects().join(", "))
                    }
                };
                self.record_plan(format!("notify {to}: {}", r.summary));
                return;
            }
        };
        let _ = tx.send(input);
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

/// The leadership refusal a result carries, if any (see [`Journal::guard`]).
fn deposed(input: &Input) -> Option<&Failure> {
    let failure = match input {
        Input::PoweredOff { result, .. }
        | Input::Isolated { result, .. }
        | Input::EvacuateSent { result, .. }
        | Input::Started { result, .. }
        | Input::Restored { result, .. } => result.as_ref().err(),
        _ => None,
    }?;
    (failure.kind == ErrorKind::NotLeader).then_some(failure)
}

fn timeout_failure(op: &str, d: Duration) -> Failure {
    Failure::new(
        ErrorKind::Timeout,
        format!("{op}: no answer within {}", humantime::format_duration(d)),
    )
}

fn not_handled(level: usize) -> Failure {
    Failure::new(
        ErrorKind::NotFound,
        format!("fencer[{level}] does not handle this host (not in its inventory)"),
    )
}

fn no_level(level: usize) -> Failure {
    Failure::new(
        ErrorKind::Config,
        format!("fencer[{level}] is not configured"),
    )
}

fn log_result<T>(op: &str, host: &HostId, result: &std::result::Result<T, Failure>) {
    if let Err(f) = result {
        warn!(host = %host, op, kind = %f.kind, error = %f.message, "call failed");
    }
}

/// Exponential backoff with ±50% jitter, capped at one minute.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(16)));
    let capped = exp.min(Duration::from_secs(60));
    capped.mul_f64(0.5 + fastrand::f64())
}

/// How the runtime makes the driver call of one command.
struct CallPolicy {
    /// The command's name (logs, errors).
    op: &'static str,
    /// [`Command::retry_safe`].
    retry_safe: bool,
    /// For destructive commands: the journal whose [`Journal::guard`] must pass right before each
    /// attempt (HA: the fencing token), or the call is not made.
    guard: Option<Arc<dyn Journal>>,
}

impl CallPolicy {
    async fn call<'a, T, F, Fut>(
        &self,
        cfg: &RecoveryConfig,
        f: F,
    ) -> std::result::Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let guard = self.guard.as_deref();
        call_guarded(cfg, self.op, self.retry_safe, guard, f).await
    }
}

/// One driver call with the timeout, and retries of temporary errors when `retry_safe`.
async fn call<'a, T, F, Fut>(
    cfg: &RecoveryConfig,
    op: &'static str,
    retry_safe: bool,
    f: F,
) -> std::result::Result<T, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    call_guarded(cfg, op, retry_safe, None, f).await
}

/// [`call`], with `guard` checked right before each attempt: a refusal is returned as it is (kind
/// `NotLeader`: the runtime stops) and the driver is not called.
async fn call_guarded<'a, T, F, Fut>(
    cfg: &RecoveryConfig,
    op: &'static str,
    retry_safe: bool,
    guard: Option<&dyn Journal>,
    f: F,
) -> std::result::Result<T, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(journal) = guard
            && let Err(e) = journal.guard().await
        {
            error!(op, error = %e, "not calling: this process may no longer act");
            return Err(e.to_failure());
        }
        let result = match tokio::time::timeout(cfg.call_timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "{op}: no answer within {}",
                    humantime::format_duration(cfg.call_timeout)
                ),
            )),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if retry_safe && e.is_temporary() && attempt < cfg.call_attempts.max(1) => {
                let wait = backoff(cfg.call_backoff, attempt);
                warn!(op, attempt, error = %e, retry_in = ?wait, "temporary failure, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.to_failure()),
        }
    }
}

/// Delivers outbox entries until aborted: recipients resolved from the directory just before delivery,
/// failures recorded with the next attempt time (exponential backoff, capped at 15 min). Nothing is
/// dropped: an entry leaves the outbox only once every audience of its report was told.
///
/// Delivery is per audience: a project whose users cannot be looked up does not hold back the rest. The
/// operators and every other project are told at once (the operators' message names the missing
/// projects); the entry then stays in the outbox with who was told recorded in `report.told`, and later
/// attempts look up and send only the missing projects. No second operators' message follows: the first
/// one already said those users will be mailed once the directory answers.
async fn deliver_outbox(
    journal: Arc<dyn Journal>,
    pipeline: Pipeline,
    cfg: RecoveryConfig,
    clock: Clock,
    wake: Arc<Notify>,
) {
    // Delivered, but the journal could not record it: only the record is retried, never the delivery.
    let mut unrecorded: std::collections::HashSet<String> = std::collections::HashSet::new();
    // Parts told whose record failed: merged into the entry at each read, so a journal error never makes
    // the next attempt tell them again.
    let mut unrecorded_told: HashMap<String, crate::Told> = HashMap::new();
    loop {
        let entries = match journal.outbox().await {
            Ok(e) => e,
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
                let _ = journal.outbox_done(&entry.key).await;
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
    const MAX: Duration = Duration::from_secs(900);
    if f.retry == crate::Retry::Permanent {
        return MAX;
    }
    let exp = Duration::from_secs(5)
        .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(16)));
    exp.min(MAX).mul_f64(0.75 + fastrand::f64() / 2.0)
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
        call(cfg, "notify", true, || notifier.notify(report)).await?;
    }
    if failures.is_empty() {
        return Ok(None);
    }
    report.told.operators = true;
    let looked_up: Vec<String> = report
        .projects()
        .into_iter()
        .filter(|p| !report.lookup_failed.contains_key(*p))
        .map(str::to_owned)
        .collect();
    report.told.projects.extend(looked_up);
    Ok(Some(lookup_failure(&report.lookup_failed, &failures)))
}

/// One failure for the outbox entry from the lookups that failed in an attempt: temporary if any of them
/// is (the directory may answer soon), so the backoff stays short while it can help.
fn lookup_failure(
    lookup_failed: &std::collections::BTreeMap<String, String>,
    failures: &[Failure],
) -> Failure {
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
