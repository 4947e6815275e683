//! Turning the engine's commands into driver calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::call::{CallPolicy, call};
use super::{Core, Pipeline};
use crate::engine::{Command, Input};
use crate::{Audience, ErrorKind, Failure, Fencer, HostId, PowerState, Progress};

impl Core {
    pub(super) fn record_plan(&self, line: String) {
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

    /// Executes one engine command: one task that takes the host's lock and the command's slot, makes
    /// its driver call the way [`CallPolicy::of`] says, and sends the result back as the engine's input.
    /// Each command adds only what differs (see [`Job`]). A report is only logged: it is in the outbox
    /// already (the commit wrote it), and the deliverer sends it.
    pub(super) fn execute(&mut self, cmd: Command) {
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
        let how = CallPolicy::of(&cmd, Some(&self.journal));
        let cfg = self.cfg.clone();
        let p = self.pipeline.clone();
        let job = match cmd {
            Command::Notify(r) => {
                info!(report = %r.id, kind = ?r.kind, summary = %r.summary, "report queued");
                return;
            }
            Command::PowerOff { host, level } => Job {
                host: Some(host.clone()),
                slots: Some(self.fencing_slots.clone()),
                run: Box::pin(async move {
                    info!(host = %host, level, "powering off");
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
                    info!(host = %fenced.host(), "isolating");
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
                    info!(host = %fenced.host(), instance = %instance.id, "evacuating");
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
                    info!(host = %host, instance = %instance.id, "starting an evacuated instance");
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
                    info!(host = %host, "returning to service");
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
        self.tasks.spawn(async move {
            let _host = match &lock {
                Some(lock) => Some(lock.lock().await),
                None => None,
            };
            let _slot = match job.slots {
                Some(slots) => Some(slots.acquire_owned().await),
                None => None,
            };
            let input = job.run.await;
            log_outcome(&input);
            let _ = tx.send(input);
        });
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
