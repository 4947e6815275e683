//! Turning the engine's commands into driver calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::call::CallPolicy;
use super::{Core, Pipeline};
use crate::engine::{Command, Input};
use crate::{ErrorKind, Failure, Fencer, HostId};

impl Core {
    fn host_lock(&mut self, host: &HostId) -> Arc<tokio::sync::Mutex<()>> {
        self.host_locks.entry(host.clone()).or_default().clone()
    }

    /// Executes one engine command: one task that takes the host's lock and the command's slot, makes
    /// its driver call the way [`CallPolicy::of`] says, and sends the result back as the engine's input.
    /// Each command adds only what differs (see [`Job`]). A report is only logged (a dry run plans it):
    /// it is in the outbox already (the commit wrote it), and the deliverer sends it.
    pub(super) fn execute(&mut self, cmd: Command) {
        if self.draining {
            debug!(
                command = cmd.name(),
                "shutting down: not started (the journal has the intent)"
            );
            return;
        }
        // A dry run's drivers are recorders (dry.rs): it logs its plan, not the calls it stands in for,
        // and writes nothing, so it has no leadership to check either.
        let loud = !self.dry_run;
        let how = CallPolicy::of(&cmd, loud.then_some(&self.journal));
        let cfg = self.cfg.clone();
        let p = self.pipeline.clone();
        let job = match cmd {
            Command::Notify(r) if self.dry_run => {
                self.plan.notify(&r);
                return;
            }
            Command::Notify(r) => {
                info!(report = %r.id, kind = ?r.kind, summary = %r.summary, "report queued");
                return;
            }
            Command::PowerOff { host, level } => Job {
                host: Some(host.clone()),
                slots: Some(self.fencing_slots.clone()),
                run: Box::pin(async move {
                    if loud {
                        info!(host = %host, level, "powering off");
                    }
                    let result = match fencer(&p, level, &host) {
                        Ok(f) => how.call(&cfg, || f.power_off(&host)).await,
                        Err(f) => Err(f),
                    };
                    Input::PoweredOff {
                        host,
                        level,
                        result,
                    }
                }),
            },
            Command::PowerStatus { host, level } => Job {
                host: Some(host.clone()),
                slots: None,
                run: Box::pin(async move {
                    let result = match fencer(&p, level, &host) {
                        Ok(f) => how.call(&cfg, || f.power_status(&host)).await,
                        Err(f) => Err(f),
                    };
                    Input::PowerRead {
                        host,
                        level,
                        result,
                    }
                }),
            },
            Command::Isolate { fenced } => Job {
                host: Some(fenced.host().clone()),
                slots: None,
                run: Box::pin(async move {
                    if loud {
                        info!(host = %fenced.host(), "isolating");
                    }
                    let result = how.call(&cfg, || p.evacuator.isolate(&fenced)).await;
                    Input::Isolated {
                        host: fenced.host().clone(),
                        result,
                    }
                }),
            },
            Command::ListInstances { fenced } => Job {
                host: Some(fenced.host().clone()),
                slots: None,
                run: Box::pin(async move {
                    let result = how.call(&cfg, || p.evacuator.instances(&fenced)).await;
                    Input::Listed {
                        host: fenced.host().clone(),
                        result,
                    }
                }),
            },
            Command::Evacuate { fenced, instance } => Job {
                host: None,
                slots: Some(self.evacuation_slots.clone()),
                run: Box::pin(async move {
                    if loud {
                        info!(host = %fenced.host(), instance = %instance.id, "evacuating");
                    }
                    // Never retried here: an ambiguous failure is re-checked by the engine.
                    let result = how
                        .call(&cfg, || p.evacuator.evacuate(&fenced, &instance))
                        .await;
                    Input::EvacuateSent {
                        host: fenced.host().clone(),
                        instance: instance.id,
                        result,
                    }
                }),
            },
            Command::Progress { host, instance } => Job {
                host: None,
                slots: None,
                run: Box::pin(async move {
                    let result = how.call(&cfg, || p.evacuator.progress(&instance)).await;
                    Input::ProgressRead {
                        host,
                        instance: instance.id,
                        result,
                    }
                }),
            },
            Command::Start { host, instance } => Job {
                host: None,
                slots: None,
                run: Box::pin(async move {
                    if loud {
                        info!(host = %host, instance = %instance.id, "starting an evacuated instance");
                    }
                    let result = how.call(&cfg, || p.evacuator.start(&instance)).await;
                    Input::Started {
                        host,
                        instance: instance.id,
                        result,
                    }
                }),
            },
            Command::Restore { host } => Job {
                host: Some(host.clone()),
                slots: None,
                run: Box::pin(async move {
                    if loud {
                        info!(host = %host, "returning to service");
                    }
                    let result = how.call(&cfg, || p.evacuator.restore(&host)).await;
                    Input::Restored { host, result }
                }),
            },
        };
        self.spawn(job);
    }

    /// Runs `job` in a task: its host's lock first, then its slot, then its call; the result is logged
    /// and sent to the loop (held lock and slot are released after the send).
    fn spawn(&mut self, job: Job) {
        let lock = job.host.map(|h| self.host_lock(&h));
        let tx = self.tx.clone();
        let loud = !self.dry_run;
        let task = async move {
            let _host = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            let _slot = match job.slots {
                Some(slots) => Some(slots.acquire_owned().await),
                None => None,
            };
            let input = job.run.await;
            if loud {
                log_outcome(&input);
            }
            let _ = tx.send(input);
        };
        if self.dry_run {
            // A recorder answers at once: polled here, each planned step writes its plan line and
            // queues its input now, in the order the engine emitted the commands, whatever the
            // runtime's threads (the plan is printed as it is decided). Only a real read that waits
            // (a listing) goes on in a task. Unconstrained: the loop's cooperative budget must not make
            // a free lock or slot look busy here.
            let mut task = Box::pin(tokio::task::unconstrained(task));
            let mut cx = Context::from_waker(Waker::noop());
            if task.as_mut().poll(&mut cx).is_pending() {
                self.tasks.spawn(task);
            }
        } else {
            self.tasks.spawn(task);
        }
    }
}

/// What one command adds to [`Core::execute`]; the rest is the same for every command.
struct Job {
    /// Serialized with the other host-level commands of this host (one in flight per host).
    host: Option<HostId>,
    /// The global limit the call waits for (fencing, evacuation), after the host's lock.
    slots: Option<Arc<Semaphore>>,
    /// The driver call, made the command's way, and the engine input its result makes.
    run: Pin<Box<dyn Future<Output = Input> + Send>>,
}

/// Fencing level `level`, if it is configured and handles `host`.
fn fencer(p: &Pipeline, level: usize, host: &HostId) -> Result<Arc<dyn Fencer>, Failure> {
    match p.fencers.get(level) {
        Some(f) if f.handles(host) => Ok(f.clone()),
        Some(_) => Err(not_handled(level)),
        None => Err(no_level(level)),
    }
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

/// The log line of a call's result: reads at debug level with what they read, failures as warnings.
fn log_outcome(input: &Input) {
    match input {
        Input::PowerRead {
            host,
            level,
            result,
        } => debug!(host = %host, level, result = ?result, "power status"),
        Input::ProgressRead {
            host,
            instance,
            result,
        } => debug!(host = %host, instance = %instance, result = ?result, "progress"),
        Input::PoweredOff { host, result, .. } => log_result("power_off", host, result),
        Input::Isolated { host, result } => log_result("isolate", host, result),
        Input::Listed { host, result } => log_result("instances", host, result),
        Input::EvacuateSent { host, result, .. } => log_result("evacuate", host, result),
        Input::Started { host, result, .. } => log_result("start", host, result),
        Input::Restored { host, result } => log_result("restore", host, result),
        Input::Tick | Input::Observed(_) | Input::Operator(_) => {}
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::Runtime;
    use crate::engine::RecoveryConfig;
    use crate::journal::MemoryJournal;
    use crate::testing::{FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World};

    #[tokio::test]
    async fn a_dry_run_plans_each_step_at_once_in_the_order_of_the_commands() {
        let w = World::new().host("c1").host("c2").host("c3");
        let mut cfg = RecoveryConfig::default();
        // One fencing slot: each planned power-off must free it before the next one is planned.
        cfg.fencing.concurrency = 1;
        let pipeline = Pipeline {
            monitor: Arc::new(FakeMonitor::new(&w)),
            fencers: vec![Arc::new(FakeFencer::new(&w))],
            evacuator: Arc::new(FakeEvacuator::new(&w)),
            directory: None,
            notifiers: vec![Arc::new(FakeNotifier::new(&w))],
        };
        let rt = Runtime::new(cfg, pipeline, Arc::new(MemoryJournal::new())).dry_run(true);
        let mut core = Core::start(rt).await.unwrap();
        for host in ["c3", "c1", "c2"] {
            core.execute(Command::PowerOff {
                host: host.into(),
                level: 0,
            });
        }
        core.execute(Command::Restore { host: "c1".into() });

        assert!(
            core.tasks.is_empty(),
            "a planned step leaves nothing running"
        );
        let inputs: Vec<Input> = std::iter::from_fn(|| core.rx.try_recv().ok()).collect();
        let off = |host: &str| Input::PoweredOff {
            host: host.into(),
            level: 0,
            result: Ok(()),
        };
        let restored = Input::Restored {
            host: "c1".into(),
            result: Ok(()),
        };
        assert_eq!(inputs, [off("c3"), off("c1"), off("c2"), restored]);
        assert_eq!(
            core.plan.lines(),
            [
                "power off c3 through fencer[0]",
                "power off c1 through fencer[0]",
                "power off c2 through fencer[0]",
                "return c1 to service",
            ]
        );
        assert_eq!(w.count(Op::PowerOff) + w.count(Op::Restore), 0);
    }
}
