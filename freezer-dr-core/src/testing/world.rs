//! The simulated cloud every fake shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::{AdminState, ErrorKind, Failure, HostId, Instance, PowerState, Report};

mod call;
mod inspect;

pub use call::{Call, Op};

/// A simulated compute host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimHost {
    /// Its `nova-compute` heartbeats (what the monitor reports as up/down).
    pub service_up: bool,
    /// The host itself answers on the network (what a probe such as the `tcp` monitor sees): false once
    /// it died or was powered off, whatever its `nova-compute` does.
    pub answers: bool,
    /// Its power, as its BMC reports it.
    pub power: PowerState,
    /// Nova's administrative state of its service.
    pub admin: AdminState,
}

/// A simulated instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimInstance {
    /// The instance; `host` and `status` are its current ones.
    pub instance: Instance,
    /// Nova's task state (`rebuilding` while evacuating).
    pub task_state: Option<String>,
    /// Evacuation requests accepted for it.
    pub evacuations: u32,
    evac: Option<Evacuation>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Evacuation {
    /// `None`: no valid host was found; the evacuation fails.
    target: Option<HostId>,
    polls_left: u32,
    fails: bool,
}

/// A report a [`super::FakeNotifier`] delivered.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// The notifier's name.
    pub notifier: String,
    /// The report.
    pub report: Report,
}

#[derive(Clone, Debug)]
struct Script {
    op: Op,
    target: Option<String>,
    remaining: usize,
    failure: Failure,
    after_effect: bool,
}

/// The world's data, behind [`World`]'s lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    hosts: BTreeMap<HostId, SimHost>,
    instances: BTreeMap<String, SimInstance>,
    calls: Vec<Call>,
    scripts: Vec<Script>,
    latency: HashMap<Op, Duration>,
    never_off: Vec<HostId>,
    evacuation_polls: u32,
    evacuation_fails: HashMap<String, usize>,
    delivered: Vec<Delivered>,
    violations: Vec<String>,
    crash_after: Option<usize>,
    crash_before: Option<usize>,
    crashed: bool,
}

/// A small simulated cloud shared by every fake: hosts (service, power, admin state), instances, a call
/// log, and scripted failures, latencies and crash points.
///
/// Cheap to clone: clones share the same world. Scripting methods take `&self`, so a test can change
/// reality while a runtime runs.
#[derive(Clone, Debug)]
pub struct World {
    state: Arc<Mutex<State>>,
    crashed: Arc<watch::Sender<bool>>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

/// What a fake call does after the world let it through.
pub(crate) enum Admission {
    /// Apply the effect, then call [`World::finish`].
    Proceed(Option<Failure>),
    /// A scripted failure before any effect.
    Fail(Failure),
}

impl World {
    /// An empty world.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            crashed: Arc::new(watch::Sender::new(false)),
        }
    }

    /// The process-global world called `name`, created empty on first use. Every `testing` driver built
    /// from a config with the same `world = "..."` option shares it.
    pub fn named(name: &str) -> World {
        static WORLDS: OnceLock<Mutex<HashMap<String, World>>> = OnceLock::new();
        let worlds = WORLDS.get_or_init(Mutex::default);
        let mut worlds = worlds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        worlds.entry(name.to_owned()).or_default().clone()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only changed by short, non-panicking sections; a poisoned lock still guards
        // consistent data (and a test that panicked has failed anyway).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // ---- building ----

    /// Adds a healthy, powered-on, enabled host (no-op if it exists).
    #[must_use]
    pub fn host(self, name: impl Into<HostId>) -> Self {
        self.add_host(name);
        self
    }

    /// Adds a healthy, powered-on, enabled host if it does not exist; returns true if it was added.
    pub fn add_host(&self, name: impl Into<HostId>) -> bool {
        let mut s = self.lock();
        let name = name.into();
        if s.hosts.contains_key(&name) {
            return false;
        }
        s.hosts.insert(
            name,
            SimHost {
                service_up: true,
                answers: true,
                power: PowerState::On,
                admin: AdminState::default(),
            },
        );
        true
    }

    /// `hosts` hosts `c1`, `c2`, ... with `per_host` instances each (see [`World::instances`]), as
    /// `World::new().host("c1")...instances("c1", per_host)...` builds them.
    #[must_use]
    pub fn grid(hosts: usize, per_host: usize) -> Self {
        let names: Vec<String> = (1..=hosts).map(|i| format!("c{i}")).collect();
        let w = names.iter().fold(Self::new(), |w, h| w.host(h.as_str()));
        names
            .iter()
            .fold(w, |w, h| w.instances(h.as_str(), per_host))
    }

    /// `hosts` hosts `c1`, `c2`, ... with `instances` instances on `c1`, which has died; each evacuation
    /// takes `polls` progress reads.
    #[must_use]
    pub fn c1_failed(hosts: usize, instances: usize, polls: u32) -> Self {
        let w = (1..=hosts)
            .fold(Self::new(), |w, i| w.host(format!("c{i}").as_str()))
            .instances("c1", instances);
        w.evacuation_takes(polls);
        w.kill("c1");
        w
    }

    /// Adds `n` ACTIVE, volume-backed instances on `host`, spread over three projects (`project-a`,
    /// `project-b`, `project-c`, owned by `user-of-<project>`). Ids are `<host>-vm-<k>`.
    #[must_use]
    pub fn instances(self, host: impl Into<HostId>, n: usize) -> Self {
        self.add_instances(host, n);
        self
    }

    /// See [`World::instances`].
    pub fn add_instances(&self, host: impl Into<HostId>, n: usize) {
        const PROJECTS: [&str; 3] = ["project-a", "project-b", "project-c"];
        let host = host.into();
        let mut s = self.lock();
        let start = s
            .instances
            .values()
            .filter(|i| i.instance.host == host)
            .count();
        for k in start..start + n {
            let project = PROJECTS[k % PROJECTS.len()];
            let id = format!("{host}-vm-{k}");
            let instance = Instance {
                id: id.clone(),
                name: format!("vm-{k}"),
                project: project.to_owned(),
                user: format!("user-of-{project}"),
                status: "ACTIVE".into(),
                host: host.clone(),
                metadata: BTreeMap::new(),
                volume_backed: true,
            };
            s.instances.insert(id, SimInstance::new(instance));
        }
    }

    /// Adds (or replaces) one instance exactly as given (its `host` is where it runs).
    #[must_use]
    pub fn instance(self, instance: Instance) -> Self {
        self.lock()
            .instances
            .insert(instance.id.clone(), SimInstance::new(instance));
        self
    }

    /// Disables a host as an operator would (maintenance): `disabled` with a reason that is not
    /// freezer-dr's.
    pub fn disable(&self, host: impl Into<HostId>, reason: &str) {
        if let Some(h) = self.lock().hosts.get_mut(&host.into()) {
            h.admin.disabled = true;
            h.admin.disabled_reason = Some(reason.to_owned());
        }
    }

    // ---- scripting reality ----

    /// The host dies: its service stops reporting and it answers no probe; its power stays on until it
    /// is fenced.
    pub fn kill(&self, host: impl Into<HostId>) {
        if let Some(h) = self.lock().hosts.get_mut(&host.into()) {
            h.service_up = false;
            h.answers = false;
        }
    }

    /// Only the host's `nova-compute` dies (or its link to the message queue): Nova sees it down, the
    /// host itself still answers probes and runs its instances.
    pub fn kill_service(&self, host: impl Into<HostId>) {
        if let Some(h) = self.lock().hosts.get_mut(&host.into()) {
            h.service_up = false;
        }
    }

    /// The host is repaired: powered on and its service reports again (its admin state is untouched:
    /// returning it to service is `restore`'s job).
    pub fn repair(&self, host: impl Into<HostId>) {
        let host = host.into();
        let mut s = self.lock();
        s.never_off.retain(|h| h != &host);
        if let Some(h) = s.hosts.get_mut(&host) {
            h.power = PowerState::On;
            h.service_up = true;
            h.answers = true;
        }
    }

    /// The next `times` calls of `op` fail with `kind` (its default retry class), before any effect.
    pub fn fail(&self, op: Op, times: usize, kind: ErrorKind) {
        let failure = Failure::new(kind, "scripted failure");
        self.fail_with(op, None, times, failure, false);
    }

    /// The next `times` calls of `op` about `target` (a host, an instance id, a project, a report id or a
    /// notifier name) fail with `kind`, before any effect.
    pub fn fail_on(&self, op: Op, target: &str, times: usize, kind: ErrorKind) {
        let failure = Failure::new(kind, "scripted failure");
        self.fail_with(op, Some(target), times, failure, false);
    }

    /// Full control: the next `times` calls of `op` (about `target`, if given) fail with `failure`. With
    /// `after_effect`, the call takes effect and then reports the failure (a lost reply: the caller
    /// cannot tell whether it happened).
    pub fn fail_with(
        &self,
        op: Op,
        target: Option<&str>,
        times: usize,
        failure: Failure,
        after_effect: bool,
    ) {
        if times == 0 {
            return;
        }
        self.lock().scripts.push(Script {
            op,
            target: target.map(str::to_owned),
            remaining: times,
            failure,
            after_effect,
        });
    }

    /// Every call of `op` takes `latency` (a `tokio::time::sleep`, so paused-time tests stay fast).
    pub fn latency(&self, op: Op, latency: Duration) {
        self.lock().latency.insert(op, latency);
    }

    /// Power-offs of `host` are accepted but its power keeps reading on (a broken BMC) until
    /// [`World::repair`].
    pub fn power_never_off(&self, host: impl Into<HostId>) {
        self.lock().never_off.push(host.into());
    }

    /// An evacuated instance reads `InProgress` for `polls` progress reads, then `Done` on its new host.
    pub fn evacuation_takes(&self, polls: u32) {
        self.lock().evacuation_polls = polls;
    }

    /// The next `times` evacuations of `instance` fail (progress reads `Failed`, the instance goes to
    /// `ERROR` on its host).
    pub fn evacuation_fails(&self, instance: &str, times: usize) {
        self.lock()
            .evacuation_fails
            .insert(instance.to_owned(), times);
    }

    /// The instance's owner deletes it.
    pub fn delete_instance(&self, instance: &str) {
        self.lock().instances.remove(instance);
    }

    // ---- crash points ----

    /// After the `n`-th driver call from now on (counted over every fake sharing this world) has taken
    /// effect, the world "crashes": that call's reply never arrives, and every further call hangs until
    /// [`World::restart`]. Await [`World::crashed`], then abort the runtime task.
    pub fn crash_after(&self, n: usize) {
        let mut s = self.lock();
        s.crash_after = Some(s.calls.len() + n.max(1));
    }

    /// The `n`-th driver call from now on hangs before it has any effect (the previous one returned
    /// normally), as does every further call until [`World::restart`].
    pub fn crash_before(&self, n: usize) {
        let mut s = self.lock();
        s.crash_before = Some(s.calls.len() + n.max(1));
    }

    /// Resolves once the world has crashed (see [`World::crash_after`]).
    pub async fn crashed(&self) {
        let mut rx = self.crashed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// True if the world has crashed and not restarted.
    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Clears the crash (and any crash point not reached yet): calls go through again. Calls that hung
    /// stay hung; they belong to the aborted runtime.
    pub fn restart(&self) {
        let mut s = self.lock();
        s.crashed = false;
        s.crash_after = None;
        s.crash_before = None;
        self.crashed.send_replace(false);
    }

    fn set_crashed(&self, s: &mut State) {
        s.crashed = true;
        s.crash_after = None;
        s.crash_before = None;
        self.crashed.send_replace(true);
    }

    // ---- the fakes' side ----

    /// Lets a call through: hangs if crashed (or if this call is the crash point), sleeps the scripted
    /// latency, logs the call and decides on scripted failures.
    pub(crate) async fn enter(&self, call: Call) -> Admission {
        let (crashed, latency) = {
            let s = self.lock();
            (s.crashed, s.latency.get(&call.op()).copied())
        };
        if crashed {
            return std::future::pending().await;
        }
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        match self.admit(call) {
            Some(a) => a,
            None => std::future::pending().await,
        }
    }

    /// The synchronous part of [`World::enter`]; `None` means hang.
    fn admit(&self, call: Call) -> Option<Admission> {
        let mut s = self.lock();
        if s.crashed {
            return None;
        }
        if s.crash_before == Some(s.calls.len() + 1) {
            self.set_crashed(&mut s);
            return None;
        }
        let targets = call.targets();
        let script = s.scripts.iter_mut().find(|sc| {
            sc.op == call.op()
                && sc.remaining > 0
                && sc.target.as_deref().is_none_or(|t| targets.contains(&t))
        });
        let failure = script.map(|sc| {
            sc.remaining -= 1;
            (sc.failure.clone(), sc.after_effect)
        });
        s.scripts.retain(|sc| sc.remaining > 0);
        s.calls.push(call);
        Some(match failure {
            Some((f, false)) => Admission::Fail(f),
            Some((f, true)) => Admission::Proceed(Some(f)),
            None => Admission::Proceed(None),
        })
    }

    /// Ends a call that took effect: if it is the crash point, its reply is lost (hangs).
    pub(crate) async fn finish(&self) {
        let crash = {
            let mut s = self.lock();
            let crash = s.crash_after.is_some_and(|n| s.calls.len() >= n);
            if crash {
                self.set_crashed(&mut s);
            }
            crash
        };
        if crash {
            std::future::pending::<()>().await;
        }
    }

    /// Ends a call that failed before any effect: it still counts for [`World::crash_after`].
    pub(crate) async fn finish_failed(&self) {
        self.finish().await;
    }

    pub(crate) fn violation(s: &mut State, what: String) {
        tracing::error!(violation = %what, "testing world: safety violation");
        s.violations.push(what);
    }
}

impl SimInstance {
    fn new(instance: Instance) -> Self {
        Self {
            instance,
            task_state: None,
            evacuations: 0,
            evac: None,
        }
    }

    /// True while an evacuation is under way.
    pub fn is_evacuating(&self) -> bool {
        self.evac.is_some()
    }
}

/// The world's behaviour for the fakes (kept here, next to the state it changes).
impl State {
    pub(crate) fn host_mut(&mut self, host: &HostId) -> Option<&mut SimHost> {
        self.hosts.get_mut(host)
    }

    pub(crate) fn host(&self, host: &HostId) -> Option<&SimHost> {
        self.hosts.get(host)
    }

    pub(crate) fn hosts_iter(&self) -> impl Iterator<Item = (&HostId, &SimHost)> {
        self.hosts.iter()
    }

    pub(crate) fn power_off(&mut self, host: &HostId) -> bool {
        let never = self.never_off.contains(host);
        match self.hosts.get_mut(host) {
            Some(h) => {
                if !never {
                    h.power = PowerState::Off;
                    h.service_up = false;
                    h.answers = false;
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn instances_on(&self, host: &HostId) -> Vec<Instance> {
        self.instances
            .values()
            .filter(|i| &i.instance.host == host)
            .map(|i| i.instance.clone())
            .collect()
    }

    pub(crate) fn deliver(&mut self, d: Delivered) {
        self.delivered.push(d);
    }

    /// Starts an evacuation (the caller checked the request is valid).
    pub(crate) fn start_evacuation(&mut self, id: &str, from: &HostId) -> Result<(), Failure> {
        let target = self.pick_target(from);
        let fails = match self.evacuation_fails.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        let polls = self.evacuation_polls;
        let Some(inst) = self.instances.get_mut(id) else {
            return Err(Failure::new(
                ErrorKind::NotFound,
                format!("no instance {id}"),
            ));
        };
        inst.task_state = Some("rebuilding".into());
        inst.evacuations += 1;
        inst.evac = Some(Evacuation {
            target,
            polls_left: polls,
            fails,
        });
        Ok(())
    }

    /// The least-loaded healthy, enabled, powered-on host other than `from` (ties by name).
    fn pick_target(&self, from: &HostId) -> Option<HostId> {
        self.hosts
            .iter()
            .filter(|(name, h)| {
                *name != from
                    && h.service_up
                    && h.power == PowerState::On
                    && !h.admin.disabled
                    && !h.admin.forced_down
            })
            .min_by_key(|(name, _)| {
                let load = self
                    .instances
                    .values()
                    .filter(|i| &&i.instance.host == name)
                    .count();
                (load, (*name).clone())
            })
            .map(|(name, _)| name.clone())
    }

    pub(crate) fn instance_mut(&mut self, id: &str) -> Option<&mut SimInstance> {
        self.instances.get_mut(id)
    }

    /// One progress read of an evacuation under way: counts down, then settles it. Returns the settled
    /// outcome (`Ok(host)` or `Err(reason)`), or `None` while it is still in progress.
    pub(crate) fn advance(inst: &mut SimInstance) -> Option<Result<HostId, String>> {
        let evac = inst.evac.as_mut()?;
        if evac.polls_left > 0 {
            evac.polls_left -= 1;
            return None;
        }
        let evac = inst.evac.take()?;
        inst.task_state = None;
        match evac.target {
            Some(target) if !evac.fails => {
                inst.instance.host = target.clone();
                Some(Ok(target))
            }
            Some(_) => {
                inst.instance.status = "ERROR".into();
                Some(Err("rebuild failed on the target host (scripted)".into()))
            }
            None => {
                inst.instance.status = "ERROR".into();
                Some(Err("No valid host was found".into()))
            }
        }
    }
}
