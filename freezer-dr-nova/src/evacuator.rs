//! The `nova` evacuator: isolate a fenced host, list its instances, evacuate and track them, restore it.

use std::sync::Arc;

use async_trait::async_trait;
use freezer_dr_core::{
    Error, ErrorKind, Evacuator, Fenced, HostId, Instance, Progress, Result, Timestamp,
    is_isolation_marker, marker_journal,
};
use serde_json::Value;
use tracing::{info, warn};

use crate::config::NovaConfig;
use crate::microversion::Microversion;
use crate::nova::{NovaApi, Server, ServiceChange};
use crate::session::parse_time;

/// Isolates fenced hosts in Nova and evacuates their instances.
///
/// Order matters: `forced_down` first (Nova's docs: only for a host that is really off — which the
/// [`Fenced`] proof guarantees), then `disabled` with [`Fenced::marker`] as `disabled_reason`. Every call is
/// safe to repeat. The driver never retries or sleeps: 409s and 5xx come back as temporary errors.
#[derive(Debug)]
pub struct NovaEvacuator {
    api: Arc<NovaApi>,
    page_size: u32,
    restore_power_state: bool,
    on_shared_storage: bool,
}

impl NovaEvacuator {
    /// An evacuator from its config (reads `clouds.yaml`/`OS_*` for missing credentials; no network I/O).
    pub fn new(cfg: NovaConfig) -> Result<Self> {
        Ok(Self {
            api: Arc::new(crate::build_api(&cfg)?),
            page_size: cfg.page_size.max(1),
            restore_power_state: cfg.restore_power_state,
            on_shared_storage: cfg.on_shared_storage,
        })
    }

    /// The compute API microversion in use (negotiated on first use).
    pub async fn microversion(&self) -> Result<Microversion> {
        self.api.version().await
    }

    /// What shows that an evacuation of `s` from `from` is under way, if anything does: one of an
    /// evacuation's own task states, the server on another host, or an evacuation migration from `from`
    /// that is running (or `done`: it becomes `completed` only when `from`'s nova-compute runs again).
    async fn our_evacuation(&self, s: &Server, from: &str) -> Result<Option<String>> {
        let task = s.task_state.as_deref().unwrap_or("none");
        if evacuation_task(task) {
            return Ok(Some(format!("task_state {task}")));
        }
        if let Some(h) = s.host.as_deref().filter(|h| *h != from) {
            return Ok(Some(format!("task_state {task} on {h}")));
        }
        let migrations = self.api.evacuations(&s.id).await?;
        let latest = migrations
            .iter()
            .find(|m| m.source_compute.as_deref() == Some(from));
        Ok(match latest.map(|m| m.status.as_str()) {
            Some(st) if migration_running(st) || st == "done" => {
                Some(format!("task_state {task}, evacuation migration {st}"))
            }
            _ => None,
        })
    }
}

/// Why the service record shows someone else isolating the host, if it does: a marker of another
/// freezer-dr (another journal id), or a disable by anyone else since freezer-dr observed it enabled. A
/// marker written by release 0.1 carries no journal id and is taken for ours, as it always was.
fn other_isolation(fenced: &Fenced, disabled: bool, reason: Option<&str>) -> Option<String> {
    let reason = reason.unwrap_or("");
    if !disabled {
        return None;
    }
    if let Some(other) = marker_journal(reason).filter(|j| *j != fenced.journal()) {
        return Some(format!(
            "another freezer-dr (journal {other}) is recovering it (disabled_reason {reason:?}): two \
             daemons without [ha]?"
        ));
    }
    if !is_isolation_marker(reason) && !fenced.observed().disabled {
        return Some(format!(
            "disabled by someone else since freezer-dr observed it enabled (disabled_reason {reason:?}): \
             an operator, Masakari or another freezer-dr is at work on it"
        ));
    }
    None
}

fn instance_of(s: Server, host: &HostId) -> Instance {
    Instance {
        metadata: s.metadata_strings(),
        volume_backed: s.volume_backed(),
        id: s.id,
        name: s.name,
        project: s.tenant_id,
        user: s.user_id,
        status: s.status.to_ascii_uppercase(),
        host: host.clone(),
    }
}

/// Statuses a finished evacuation may leave: the instance's previous one, or ACTIVE.
fn settled(status: &str) -> bool {
    !matches!(
        status,
        "BUILD" | "REBUILD" | "MIGRATING" | "RESIZE" | "VERIFY_RESIZE" | "REBOOT" | "HARD_REBOOT"
    )
}

/// Task states Nova sets for an evacuation itself (the API's `rebuilding`, then the target compute's).
fn evacuation_task(task: &str) -> bool {
    matches!(
        task,
        "rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning"
    )
}

/// Migration statuses of an evacuation still under way.
fn migration_running(status: &str) -> bool {
    matches!(
        status,
        "accepted" | "pre-migrating" | "migrating" | "post-migrating" | "queued" | "preparing"
    )
}

#[async_trait]
impl Evacuator for NovaEvacuator {
    async fn isolate(&self, fenced: &Fenced) -> Result<()> {
        let host = fenced.host().as_str();
        // Read before write: the service record as it is now, before anything is written to it.
        let svc = self.api.service(host).await?;
        if let Some(why) = other_isolation(
            fenced,
            svc.status == "disabled",
            svc.disabled_reason.as_deref(),
        ) {
            return Err(Error::new(ErrorKind::OtherActor, format!("{host}: {why}"))
                .with_context("host", host)
                .permanent());
        }
        if !svc.forced_down.unwrap_or(false) {
            match self
                .api
                .update_service(&svc, &ServiceChange::ForcedDown(true))
                .await?
            {
                Some(_) => info!(host, "nova-compute forced down"),
                None => {
                    let mv = self.api.version().await?;
                    warn!(
                        host,
                        microversion = %mv,
                        "this microversion cannot force a service down; relying on Nova seeing it down"
                    );
                }
            }
        }
        let marker = fenced.marker();
        let reason = svc.disabled_reason.as_deref().unwrap_or("");
        if svc.status == "disabled" && !is_isolation_marker(reason) {
            // Disabled by an operator: keep their reason (and so their decision about its return).
            info!(host, reason, "already disabled by an operator; reason kept");
        } else if svc.status != "disabled" || !fenced.marks(reason) {
            self.api
                .update_service(&svc, &ServiceChange::Disable(marker.clone()))
                .await?;
            info!(host, marker = %marker, "nova-compute disabled");
        }
        Ok(())
    }

    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>> {
        let host = fenced.host();
        // Read again after isolating: two daemons that both read the record before either wrote it both
        // isolate, and the last writer's marker wins; the other stops here, before any evacuation.
        let svc = self.api.service(host.as_str()).await?;
        let reason = svc.disabled_reason.as_deref().unwrap_or("");
        if let Some(other) = marker_journal(reason).filter(|j| *j != fenced.journal()) {
            return Err(Error::new(
                ErrorKind::OtherActor,
                format!(
                    "{host}: another freezer-dr (journal {other}) isolated it right after this one \
                     (disabled_reason {reason:?}): two daemons without [ha]?"
                ),
            )
            .with_context("host", host)
            .permanent());
        }
        let servers = self.api.servers_on(host.as_str(), self.page_size).await?;
        Ok(servers.into_iter().map(|s| instance_of(s, host)).collect())
    }

    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()> {
        let from = fenced.host().as_str();
        if &instance.host != fenced.host() {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!(
                    "refusing to evacuate {} from {from}: it was listed on {}",
                    instance.id, instance.host
                ),
            )
            .permanent());
        }
        // An evacuation from this host that started after our fence is not ours (ours is never sent
        // while one of ours may be under way: the engine reads the progress first): follow it, never
        // start a second one.
        if let Some(m) = self
            .api
            .evacuations(&instance.id)
            .await?
            .into_iter()
            .find(|m| {
                m.source_compute.as_deref() == Some(from)
                    && (migration_running(&m.status)
                        || matches!(m.status.as_str(), "done" | "completed"))
                    && m.created_at
                        .as_deref()
                        .and_then(parse_time)
                        .is_some_and(|t| Timestamp::from(t) > fenced.at())
            })
        {
            return Err(Error::new(
                ErrorKind::OtherActor,
                format!(
                    "an evacuation of {} from {from} is already under way (migration {}, {}), not requested \
                     by this freezer-dr: another freezer-dr, an operator or Masakari evacuates it",
                    instance.id, m.id, m.status
                ),
            )
            .with_context("instance", &instance.id)
            .permanent());
        }
        match self
            .api
            .evacuate(&instance.id, from, None, self.on_shared_storage)
            .await
        {
            Ok(()) => {
                info!(host = from, instance = %instance.id, "evacuation requested");
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                // A repeat after a lost reply or a crash: if our evacuation is visibly under way, the
                // request we are repeating took effect. Anything else is a refusal (a task left from
                // before the failure, a lock): said with the task, so the report tells why.
                let Some(s) = self.api.server(&instance.id).await? else {
                    return Err(e);
                };
                if let Some(detail) = self.our_evacuation(&s, from).await? {
                    info!(host = from, instance = %instance.id, detail, "evacuation already under way");
                    return Ok(());
                }
                let busy = match s.task_state.as_deref() {
                    Some(task) => format!("it is busy with task_state {task}"),
                    None => "no task_state (locked?)".to_owned(),
                };
                Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "Nova refused to evacuate {} from {from}: {busy}, status {}, and no evacuation of \
                         ours is under way",
                        instance.id,
                        s.status.to_ascii_uppercase()
                    ),
                )
                .with_context("instance", &instance.id)
                .with_context("host", from)
                .with_source(e)
                .temporary())
            }
            Err(e) => Err(e),
        }
    }

    async fn progress(&self, instance: &Instance) -> Result<Progress> {
        let Some(s) = self.api.server(&instance.id).await? else {
            return Ok(Progress::Gone);
        };
        let status = s.status.to_ascii_uppercase();
        let on_original = s.host.as_deref() == Some(instance.host.as_str());
        if let Some(task) = s.task_state.as_deref() {
            // A task is ours only if it is visibly this evacuation; on the failed host anything else was
            // left from before the failure (spawning, rebooting, powering-off) and blocks the evacuation.
            return Ok(
                match self.our_evacuation(&s, instance.host.as_str()).await? {
                    Some(detail) => Progress::InProgress {
                        detail: format!("{detail}, status {status}"),
                    },
                    None => Progress::Busy {
                        detail: format!(
                            "task_state {task}, status {status}, on {} with no evacuation of ours",
                            instance.host
                        ),
                    },
                },
            );
        }
        if status == "ERROR" && !(on_original && instance.status == "ERROR") {
            let why = s
                .fault
                .as_ref()
                .map(|f| f.message.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "no fault recorded".into());
            return Ok(Progress::Failed {
                reason: format!("server {} is in ERROR: {why}", instance.id),
            });
        }
        if !on_original {
            let Some(new_host) = s.host.clone() else {
                return Ok(Progress::InProgress {
                    detail: format!("no host yet, status {status}"),
                });
            };
            if !settled(&status) {
                return Ok(Progress::InProgress {
                    detail: format!("status {status} on {new_host}"),
                });
            }
            if status == "SHUTOFF"
                && instance.status == "ACTIVE"
                && self.restore_power_state
                && self.api.version().await? >= Microversion::EVACUATE_TO_STOPPED
            {
                // From 2.95 Nova leaves an evacuated server stopped. Starting it is a write: the engine
                // sends it as a journaled command (`start`); reading progress never changes anything.
                return Ok(Progress::NeedsStart {
                    host: HostId::from(new_host),
                    status,
                });
            }
            return Ok(Progress::Done {
                host: HostId::from(new_host),
                status,
            });
        }
        // On its original host with no task: either the request never took effect, or an evacuation
        // failed before moving it (no valid host). The migration record tells which.
        let migrations = self.api.evacuations(&instance.id).await?;
        let latest = migrations
            .iter()
            .find(|m| m.source_compute.as_deref() == Some(instance.host.as_str()));
        match latest.map(|m| m.status.as_str()) {
            Some(st) if migration_running(st) => Ok(Progress::InProgress {
                detail: format!("evacuation migration {st}"),
            }),
            // `done` flips to `completed` only when the source's nova-compute starts again, so a `done`
            // evacuation from a host the server still shows is this evacuation finishing: Nova saves the
            // new host after clearing the task (seen at 2.95, while it stops the rebuilt server).
            Some("done") => Ok(Progress::InProgress {
                detail: "evacuation migration done, server record not yet moved".into(),
            }),
            Some(st @ ("error" | "failed")) => Ok(Progress::Failed {
                reason: format!(
                    "the evacuation migration of {} from {} ended {st} (no valid host?)",
                    instance.id, instance.host
                ),
            }),
            _ => Ok(Progress::NotStarted),
        }
    }

    async fn start(&self, instance: &Instance) -> Result<()> {
        match self.api.start(&instance.id).await {
            Ok(()) => {
                info!(instance = %instance.id, "start requested");
                Ok(())
            }
            // Nova refuses to start a server that is not stopped: already running (a repeat after a lost
            // reply) is what we asked for; anything else (locked, still stopped) is the refusal.
            Err(e) if e.kind() == ErrorKind::Conflict => match self.api.server(&instance.id).await?
            {
                Some(s)
                    if s.status.eq_ignore_ascii_case("ACTIVE")
                        || s.task_state.as_deref() == Some("powering-on") =>
                {
                    info!(instance = %instance.id, status = %s.status, "already started");
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn restore(&self, host: &HostId) -> Result<()> {
        let h = host.as_str();
        let mut svc = self.api.service(h).await?;
        if svc.forced_down.unwrap_or(false) {
            let after = self
                .api
                .update_service(&svc, &ServiceChange::ForcedDown(false))
                .await
                .map_err(|e| {
                    if e.kind() == ErrorKind::Unexpected {
                        // Nova refuses while the host's evacuation migrations are `done` (they become
                        // `completed` once its nova-compute runs again): worth another try later.
                        Error::new(
                            ErrorKind::Conflict,
                            format!(
                                "Nova refused to unset forced_down on {h} (its evacuations complete once \
                                 its nova-compute runs again)"
                            ),
                        )
                        .with_context("host", h)
                        .with_source(e)
                        .temporary()
                    } else {
                        e
                    }
                })?;
            info!(host = h, "forced_down unset");
            if let Some(Value::Object(m)) = after
                && let Some(Value::String(state)) = m.get("state")
            {
                svc.state = state.as_str().into();
            } else {
                svc = self.api.service(h).await?;
            }
        }
        if svc.state != "up" {
            // Enabling a host that is still down leaves its provider marked disabled in placement; the
            // runtime calls again after its backoff.
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{h} does not report up yet (nova-compute state {}); not enabling",
                    svc.state
                ),
            )
            .with_context("host", h)
            .temporary());
        }
        if svc.status == "disabled" {
            let reason = svc.disabled_reason.as_deref().unwrap_or("");
            if is_isolation_marker(reason) {
                self.api
                    .update_service(&svc, &ServiceChange::Enable)
                    .await?;
                info!(host = h, "nova-compute enabled");
            } else {
                info!(host = h, reason, "left disabled: an operator disabled it");
            }
        }
        Ok(())
    }

    async fn healthcheck(&self) -> Result<()> {
        self.api.healthcheck().await
    }
}
