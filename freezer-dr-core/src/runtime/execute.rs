//! Turning the engine's commands into driver calls.

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::Core;
use super::call::{CallPolicy, call};
use crate::engine::{Command, Input};
use crate::{Audience, ErrorKind, Failure, HostId, PowerState, Progress};

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

    pub(super) fn dispatch(&mut self, cmd: Command) {
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
