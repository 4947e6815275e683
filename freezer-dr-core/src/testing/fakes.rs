//! Fakes of every driver trait over a shared [`World`].

use async_trait::async_trait;

use super::world::{Admission, Call, Delivered, State, World};
use crate::{
    Directory, Error, ErrorKind, Evacuator, Failure, Fenced, Fencer, Health, HostHealth, HostId,
    Instance, Monitor, Notifier, PowerState, Progress, Recipient, Report, Result,
};

fn to_error(f: Failure) -> Error {
    let e = Error::new(f.kind, f.message);
    match f.retry {
        crate::Retry::Temporary => e.temporary(),
        crate::Retry::Permanent => e.permanent(),
    }
}

/// Runs one fake call: admission (crash, latency, scripted failure), effect, then the crash point.
async fn run<T>(
    world: &World,
    call: Call,
    effect: impl FnOnce(&mut State) -> Result<T>,
) -> Result<T> {
    let context = format!("{call:?}");
    match world.enter(call).await {
        Admission::Fail(f) => {
            world.finish_failed().await;
            Err(to_error(f).with_context("call", context))
        }
        Admission::Proceed(lost) => {
            let out = effect(&mut world.lock());
            world.finish().await;
            match lost {
                Some(f) => Err(to_error(f).with_context("call", context)),
                None => out,
            }
        }
    }
}

fn unknown_host(host: &HostId) -> Error {
    Error::new(ErrorKind::NotFound, "no such host in the testing world")
        .permanent()
        .with_context("host", host)
}

// ---------------------------------------------------------------------------------------------------

/// A [`Monitor`] over a [`World`]: each host `Up` if its service reports, `Down` otherwise, with its
/// admin state.
#[derive(Clone, Debug)]
pub struct FakeMonitor {
    world: World,
    probe: bool,
}

impl FakeMonitor {
    /// A monitor of `world` that reads each host's `nova-compute` heartbeat, as Nova's does.
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
            probe: false,
        }
    }

    /// A monitor of `world` that probes each host itself, as the `tcp` monitor does: down once the host
    /// died or was powered off, up while it answers even if its `nova-compute` is dead (no admin state).
    pub fn probe(world: &World) -> Self {
        Self {
            world: world.clone(),
            probe: true,
        }
    }
}

#[async_trait]
impl Monitor for FakeMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        run(&self.world, Call::Observe, |s| {
            Ok(s.hosts_iter()
                .map(|(name, h)| match self.probe {
                    false => HostHealth {
                        admin: h.admin.clone(),
                        ..HostHealth::new(
                            name.clone(),
                            if h.service_up {
                                Health::Up
                            } else {
                                Health::down("nova-compute stopped reporting (testing world)")
                            },
                        )
                    },
                    true => HostHealth::new(
                        name.clone(),
                        if h.answers {
                            Health::Up
                        } else {
                            Health::down("no answer to the probe (testing world)")
                        },
                    ),
                })
                .collect())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------------

/// A [`Fencer`] over a [`World`]: power-off is idempotent; hosts not in the world, or excluded from this
/// fencer, are not handled (and calls about them fail permanently).
#[derive(Clone, Debug)]
pub struct FakeFencer {
    world: World,
    level: usize,
    excluded: Vec<HostId>,
}

impl FakeFencer {
    /// A fencer of `world` at fencing level 0, handling every host of the world.
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
            level: 0,
            excluded: Vec::new(),
        }
    }

    /// The fencing level this fencer is configured at (recorded in the call log).
    #[must_use]
    pub fn level(mut self, level: usize) -> Self {
        self.level = level;
        self
    }

    /// This fencer does not handle `host` (it is not in its inventory).
    #[must_use]
    pub fn exclude(mut self, host: impl Into<HostId>) -> Self {
        self.excluded.push(host.into());
        self
    }

    /// One call about `host` (`call` names it for the log, given the host and this fencer's level): an
    /// error for a host this fencer does not know, else `effect`.
    async fn call<T>(
        &self,
        host: &HostId,
        call: fn(HostId, usize) -> Call,
        effect: impl FnOnce(&mut State) -> T,
    ) -> Result<T> {
        run(&self.world, call(host.clone(), self.level), |s| {
            self.check(s, host)?;
            Ok(effect(s))
        })
        .await
    }

    fn check(&self, s: &State, host: &HostId) -> Result<()> {
        if self.excluded.contains(host) {
            return Err(
                Error::new(ErrorKind::NotFound, "host not in this fencer's inventory")
                    .permanent()
                    .with_context("host", host),
            );
        }
        if s.host(host).is_none() {
            return Err(unknown_host(host));
        }
        Ok(())
    }
}

#[async_trait]
impl Fencer for FakeFencer {
    fn handles(&self, host: &HostId) -> bool {
        !self.excluded.contains(host) && self.world.lock().host(host).is_some()
    }

    async fn power_off(&self, host: &HostId) -> Result<()> {
        let call = |host, level| Call::PowerOff { host, level };
        self.call(host, call, |s| {
            s.power_off(host);
        })
        .await
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        let call = |host, level| Call::PowerStatus { host, level };
        self.call(host, call, |s| {
            s.host(host).map_or(PowerState::Unknown, |h| h.power)
        })
        .await
    }

    async fn power_on(&self, host: &HostId) -> Result<()> {
        let call = |host, level| Call::PowerOn { host, level };
        self.call(host, call, |s| {
            if let Some(h) = s.host_mut(host) {
                h.power = PowerState::On;
                h.service_up = true;
            }
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------------

/// An [`Evacuator`] over a [`World`], behaving like Nova: isolate sets `forced_down` and `disabled` with
/// the fence marker; instances are listed by exact host; evacuate starts a rebuild on the least-loaded
/// healthy enabled host; progress reads it; restore needs the host's service up.
///
/// It also records safety violations in the world: an evacuation from a host whose power reads on, and
/// an evacuation request for an instance already rebuilding (Nova refuses it with a conflict).
#[derive(Clone, Debug)]
pub struct FakeEvacuator {
    world: World,
}

impl FakeEvacuator {
    /// An evacuator of `world`.
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
        }
    }
}

#[async_trait]
impl Evacuator for FakeEvacuator {
    async fn isolate(&self, fenced: &Fenced) -> Result<()> {
        let host = fenced.host();
        let call = Call::Isolate { host: host.clone() };
        run(&self.world, call, |s| {
            let h = s.host_mut(host).ok_or_else(|| unknown_host(host))?;
            h.admin.forced_down = true;
            h.admin.disabled = true;
            h.admin.disabled_reason = Some(fenced.marker());
            Ok(())
        })
        .await
    }

    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>> {
        let host = fenced.host();
        let call = Call::ListInstances { host: host.clone() };
        run(&self.world, call, |s| {
            if s.host(host).is_none() {
                return Err(unknown_host(host));
            }
            Ok(s.instances_on(host))
        })
        .await
    }

    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()> {
        let from = fenced.host();
        let call = Call::Evacuate {
            instance: instance.id.clone(),
        };
        run(&self.world, call, |s| {
            let source = s.host(from).cloned().ok_or_else(|| unknown_host(from))?;
            let Some(current) = s.instance_mut(&instance.id).map(|i| i.clone()) else {
                return Err(Error::new(ErrorKind::NotFound, "no such instance")
                    .permanent()
                    .with_context("instance", &instance.id));
            };
            if current.is_evacuating() {
                World::violation(
                    s,
                    format!(
                        "evacuate of instance {} requested while it is already rebuilding",
                        instance.id
                    ),
                );
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "instance is in task_state rebuilding",
                )
                .with_context("instance", &instance.id));
            }
            if &current.instance.host != from {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "instance is on host {}, not on {from}",
                        current.instance.host
                    ),
                )
                .permanent()
                .with_context("instance", &instance.id));
            }
            if source.service_up && !source.admin.forced_down {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("compute service of {from} is still in use"),
                )
                .permanent()
                .with_context("instance", &instance.id));
            }
            if source.power != PowerState::Off {
                World::violation(
                    s,
                    format!(
                        "evacuate of instance {} from host {from} whose power reads {}",
                        instance.id, source.power
                    ),
                );
            }
            s.start_evacuation(&instance.id, from).map_err(to_error)
        })
        .await
    }

    async fn progress(&self, instance: &Instance) -> Result<Progress> {
        let call = Call::Progress {
            instance: instance.id.clone(),
        };
        run(&self.world, call, |s| {
            let Some(inst) = s.instance_mut(&instance.id) else {
                return Ok(Progress::Gone);
            };
            if inst.is_evacuating() {
                return Ok(match State::advance(inst) {
                    None => Progress::InProgress {
                        detail: "task_state=rebuilding".into(),
                    },
                    Some(Ok(host)) => Progress::Done {
                        host,
                        status: inst.instance.status.clone(),
                    },
                    Some(Err(reason)) => Progress::Failed { reason },
                });
            }
            if inst.instance.status == "ERROR" {
                return Ok(Progress::Failed {
                    reason: "instance is in ERROR".into(),
                });
            }
            if inst.instance.host == instance.host {
                return Ok(Progress::NotStarted);
            }
            Ok(Progress::Done {
                host: inst.instance.host.clone(),
                status: inst.instance.status.clone(),
            })
        })
        .await
    }

    async fn restore(&self, host: &HostId) -> Result<()> {
        let call = Call::Restore { host: host.clone() };
        run(&self.world, call, |s| {
            let h = s.host_mut(host).ok_or_else(|| unknown_host(host))?;
            if !h.service_up {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "the host's compute service is not up yet",
                )
                .temporary()
                .with_context("host", host));
            }
            h.admin.forced_down = false;
            h.admin.disabled = false;
            h.admin.disabled_reason = None;
            Ok(())
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------------

/// A [`Directory`] over a [`World`]: every project has one user, `user-of-<project>`, with the email
/// `user-of-<project>@example.org`, and the name `name-of-<project>`.
#[derive(Clone, Debug)]
pub struct FakeDirectory {
    world: World,
}

impl FakeDirectory {
    /// A directory of `world`.
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
        }
    }
}

#[async_trait]
impl Directory for FakeDirectory {
    async fn recipients(&self, project: &str) -> Result<Vec<Recipient>> {
        let call = Call::Recipients {
            project: project.to_owned(),
        };
        run(&self.world, call, |_| {
            let user = format!("user-of-{project}");
            Ok(vec![Recipient {
                user_id: user.clone(),
                name: user.clone(),
                email: Some(format!("{user}@example.org")),
            }])
        })
        .await
    }

    async fn project_name(&self, project: &str) -> Result<Option<String>> {
        let call = Call::ProjectName {
            project: project.to_owned(),
        };
        run(&self.world, call, |_| {
            Ok(Some(format!("name-of-{project}")))
        })
        .await
    }
}

// ---------------------------------------------------------------------------------------------------

/// A [`Notifier`] over a [`World`]: records each delivered report in the world
/// ([`World::delivered`]); scripted failures (`Op::Notify`, target = report id or notifier name) make
/// deliveries fail.
#[derive(Clone, Debug)]
pub struct FakeNotifier {
    world: World,
    name: String,
}

impl FakeNotifier {
    /// A notifier of `world` named `notifier`.
    pub fn new(world: &World) -> Self {
        Self {
            world: world.clone(),
            name: "notifier".into(),
        }
    }

    /// Its name, recorded with each delivery (to tell several notifiers apart).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The reports this notifier delivered, in order.
    pub fn delivered(&self) -> Vec<Report> {
        self.world
            .delivered()
            .into_iter()
            .filter(|d| d.notifier == self.name)
            .map(|d| d.report)
            .collect()
    }
}

#[async_trait]
impl Notifier for FakeNotifier {
    async fn notify(&self, report: &Report) -> Result<()> {
        let call = Call::Notify {
            report_id: report.id.clone(),
            notifier: self.name.clone(),
        };
        run(&self.world, call, |s| {
            s.deliver(Delivered {
                notifier: self.name.clone(),
                report: report.clone(),
            });
            Ok(())
        })
        .await
    }
}

/// A pipeline of fakes over `w`: its monitor, `levels` fencing levels (`FakeFencer` at level 0, 1, ...),
/// its evacuator and directory, one `FakeNotifier`. Replace a field to try a real driver in one role.
pub fn fake_pipeline(w: &World, levels: usize) -> crate::runtime::Pipeline {
    crate::runtime::Pipeline {
        monitor: std::sync::Arc::new(FakeMonitor::new(w)),
        fencers: (0..levels)
            .map(|l| std::sync::Arc::new(FakeFencer::new(w).level(l)) as _)
            .collect(),
        evacuator: std::sync::Arc::new(FakeEvacuator::new(w)),
        directory: Some(std::sync::Arc::new(FakeDirectory::new(w))),
        notifiers: vec![std::sync::Arc::new(FakeNotifier::new(w))],
    }
}
