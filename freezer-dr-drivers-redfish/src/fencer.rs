//! [`RedfishFencer`]: the [`Fencer`] over the BMC inventory.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use freezer_dr_core::config::not_in_inventory;
use freezer_dr_core::registry::FencerRegistration;
use freezer_dr_core::{Error, ErrorKind, Fencer, HostId, PowerState, Result, async_trait};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::client::{Client, Conn, ROOT, Reply, json_message};
use crate::config::{RedfishConfig, SystemRef};

/// The shortest and longest wait between two reads of a reset's task monitor.
const TASK_POLL_MIN: Duration = Duration::from_millis(200);
const TASK_POLL_MAX: Duration = Duration::from_secs(1);

/// Powers hosts off through their BMCs over DMTF Redfish: `ComputerSystem.Reset` with `ForceOff`, the
/// action's target and allowed values read from the system resource; the power status is the system's
/// `PowerState`, and only `Off` is off.
///
/// Only hosts in the inventory are handled (names match exactly). Every call opens its own
/// authenticated connection (a session, deleted at the end of the call, or HTTP basic).
pub struct RedfishFencer {
    clients: BTreeMap<HostId, Arc<Client>>,
    task_timeout: Duration,
    /// The system path of each host, once found (discovered or matched by `system_id`).
    systems: Mutex<BTreeMap<HostId, Url>>,
}

impl std::fmt::Debug for RedfishFencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishFencer")
            .field("hosts", &self.clients.keys().collect::<Vec<_>>())
            .field("task_timeout", &self.task_timeout)
            .finish_non_exhaustive()
    }
}

/// What the fencer reads of a system resource.
#[derive(Debug)]
struct System {
    /// `PowerState` as the BMC wrote it (`None`: missing or not a string).
    power: Option<String>,
    /// `Actions["#ComputerSystem.Reset"].target`.
    reset_target: Option<String>,
    /// `ResetType@Redfish.AllowableValues`, if listed.
    allowed: Option<Vec<String>>,
    /// `@Redfish.ActionInfo`, where the allowed values are when not listed inline.
    action_info: Option<String>,
}

impl System {
    fn parse(v: &Value) -> System {
        let reset = v.pointer("/Actions/#ComputerSystem.Reset");
        System {
            power: v
                .get("PowerState")
                .and_then(Value::as_str)
                .map(str::to_owned),
            reset_target: reset
                .and_then(|r| r.get("target"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            allowed: reset
                .and_then(|r| r.get("ResetType@Redfish.AllowableValues"))
                .and_then(strings),
            action_info: reset
                .and_then(|r| r.get("@Redfish.ActionInfo"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    /// Only `Off` is off; `PoweringOff` is still on; a missing or unknown value is unknown.
    fn state(&self) -> PowerState {
        match self.power.as_deref() {
            Some("Off") => PowerState::Off,
            Some("On" | "PoweringOn" | "PoweringOff" | "Paused") => PowerState::On,
            _ => PowerState::Unknown,
        }
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

impl RedfishFencer {
    /// A fencer from its configuration (for embedders); errors name the keys under `redfish`.
    pub fn new(config: RedfishConfig) -> Result<Self> {
        Self::build(config, "redfish")
    }

    fn build(config: RedfishConfig, section: &str) -> Result<Self> {
        let mut clients = BTreeMap::new();
        for (host, bmc) in config.resolve(section)? {
            if bmc.insecure {
                warn!(host = %host, bmc = %bmc.target(),
                    "Redfish: insecure = true: the BMC's certificate is not checked; anyone on the \
                     management network could pose as it and learn its password");
            } else if bmc.base.scheme() == "http" {
                warn!(host = %host, bmc = %bmc.target(),
                    "Redfish: plain http: the BMC password crosses the network unencrypted");
            }
            let client = Client::new(Arc::new(bmc), config.timeout)?;
            clients.insert(host, Arc::new(client));
        }
        Ok(Self {
            clients,
            task_timeout: config.task_timeout,
            systems: Mutex::new(BTreeMap::new()),
        })
    }

    /// The hosts in the inventory, sorted.
    pub fn hosts(&self) -> impl Iterator<Item = &HostId> {
        self.clients.keys()
    }

    fn client(&self, host: &HostId) -> Result<&Arc<Client>> {
        self.clients
            .get(host)
            .ok_or_else(|| not_in_inventory("redfish fencer", host))
    }

    /// The host's system resource URL: configured, or found once and remembered.
    async fn system_url(&self, conn: &mut Conn<'_>) -> Result<Url> {
        let bmc = conn.bmc();
        if let SystemRef::Path(p) = &bmc.system {
            return bmc.url(p);
        }
        let host = bmc.host.clone();
        if let Some(u) = self.systems.lock().ok().and_then(|m| m.get(&host).cloned()) {
            return Ok(u);
        }
        let url = find_system(conn).await?;
        if let Ok(mut m) = self.systems.lock() {
            m.insert(host, url.clone());
        }
        Ok(url)
    }

    /// Forgets a found system path (it answered 404: the BMC may have renumbered its systems).
    fn forget_system(&self, host: &HostId) {
        if let Ok(mut m) = self.systems.lock() {
            m.remove(host);
        }
    }

    async fn read_system(&self, conn: &mut Conn<'_>) -> Result<(Url, System)> {
        let url = self.system_url(conn).await?;
        match conn.get(&url, "read the system").await {
            Ok(r) => Ok((url, System::parse(&r.body))),
            Err(e) => {
                if e.kind() == ErrorKind::Config {
                    self.forget_system(&conn.bmc().host);
                }
                Err(e)
            }
        }
    }

    /// Opens a connection, runs `op`, and closes it (deleting the session) whatever `op` returned.
    async fn with_conn<T>(
        &self,
        host: &HostId,
        op: impl AsyncFnOnce(&mut Conn<'_>) -> Result<T>,
    ) -> Result<T> {
        let client = self.client(host)?;
        let mut conn = client.connect().await?;
        let result = op(&mut conn).await;
        conn.close().await;
        result
    }

    /// Sends `reset_type` (which must be one the system allows) and follows its task, if any.
    async fn reset(
        &self,
        conn: &mut Conn<'_>,
        system: &System,
        wanted: &[&'static str],
    ) -> Result<&'static str> {
        let Some(target) = &system.reset_target else {
            return Err(conn
                .error(
                    ErrorKind::Unsupported,
                    "the system resource has no #ComputerSystem.Reset action: this BMC cannot \
                     power it off through Redfish",
                )
                .permanent());
        };
        let target = conn.bmc().url(target)?;
        let allowed = match &system.allowed {
            Some(a) => Some(a.clone()),
            None => match &system.action_info {
                Some(info) => {
                    let url = conn.bmc().url(info)?;
                    let r = conn.get(&url, "read the reset action's ActionInfo").await?;
                    allowed_from_action_info(&r.body)
                }
                None => None,
            },
        };
        // Not listed anywhere: the Redfish schema says every ResetType is then allowed.
        let chosen = match &allowed {
            None => wanted.first().copied(),
            Some(a) => wanted.iter().copied().find(|w| a.iter().any(|x| x == w)),
        };
        let Some(reset_type) = chosen else {
            return Err(conn
                .error(
                    ErrorKind::Unsupported,
                    format!(
                        "the BMC allows ResetType {} only; {} is needed",
                        allowed.unwrap_or_default().join(", "),
                        wanted.join(" or ")
                    ),
                )
                .permanent());
        };
        let what = format!("send ComputerSystem.Reset {reset_type}");
        let reply = conn
            .post(&target, json!({ "ResetType": reset_type }), &what)
            .await?;
        if reply.status == StatusCode::ACCEPTED {
            self.follow_task(conn, &reply, reset_type).await?;
        }
        Ok(reset_type)
    }

    /// Follows the `Task` of an asynchronous reset until it ends or `task_timeout` passes.
    ///
    /// Drivers do not wait on their own, but a BMC that answers 202 has not done the reset yet and may
    /// still fail it: reading its task monitor within this one call turns a failed reset into an error
    /// that names the BMC's reason right away, instead of a power status that never reads off. The
    /// wait is bounded by `task_timeout` (configured under the runtime's call timeout); a task still
    /// running then counts as accepted, and the engine's power-status reads decide.
    async fn follow_task(&self, conn: &mut Conn<'_>, accepted: &Reply, reset: &str) -> Result<()> {
        let bmc = conn.bmc();
        let monitor = accepted.location(bmc).or_else(|| {
            accepted
                .body
                .get("@odata.id")
                .and_then(Value::as_str)
                .and_then(|p| bmc.base.join(p).ok())
        });
        let Some(monitor) = monitor else {
            debug!(host = %bmc.host, "Redfish: reset accepted (202) without a task monitor");
            return Ok(());
        };
        let host = bmc.host.clone();
        let deadline = tokio::time::Instant::now() + self.task_timeout;
        let mut reply_wait = accepted.retry_after();
        loop {
            let wait = reply_wait
                .unwrap_or(TASK_POLL_MIN)
                .clamp(TASK_POLL_MIN, TASK_POLL_MAX);
            if tokio::time::Instant::now() + wait > deadline {
                warn!(host = %host, reset, task_timeout = ?self.task_timeout,
                    "Redfish: the reset's task is still running; the power status will tell");
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            let r = match conn.get(&monitor, "read the reset's task").await {
                Ok(r) => r,
                // Some BMCs remove the monitor once the task is done.
                Err(e) if e.kind() == ErrorKind::Config => {
                    debug!(host = %host, "Redfish: the task monitor is gone; the power status will tell");
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            reply_wait = r.retry_after();
            let state = r.body.get("TaskState").and_then(Value::as_str);
            match (r.status, state) {
                (StatusCode::ACCEPTED, _)
                | (
                    _,
                    Some(
                        "New" | "Starting" | "Running" | "Pending" | "Stopping" | "Suspended"
                        | "Interrupted" | "Service",
                    ),
                ) => continue,
                (_, Some("Completed") | None) => {
                    debug!(host = %host, reset, "Redfish: the reset's task completed");
                    return Ok(());
                }
                (_, Some(other)) => {
                    let said = json_message(&r.body);
                    return Err(conn.error(
                        ErrorKind::PeerFailure,
                        format!(
                            "the BMC's task for ResetType {reset} ended {other}{}",
                            if said.is_empty() {
                                String::new()
                            } else {
                                format!(": {said}")
                            }
                        ),
                    ));
                }
            }
        }
    }

    async fn check(&self, host: &HostId) -> Result<()> {
        self.with_conn(host, async |conn| {
            let (_, system) = self.read_system(conn).await?;
            if system.reset_target.is_none() {
                return Err(conn
                    .error(
                        ErrorKind::Unsupported,
                        "the system has no #ComputerSystem.Reset action",
                    )
                    .permanent());
            }
            debug!(host = %host, power = ?system.power, "Redfish: BMC checked");
            Ok(())
        })
        .await
    }
}

fn allowed_from_action_info(v: &Value) -> Option<Vec<String>> {
    v.get("Parameters")?
        .as_array()?
        .iter()
        .find(|p| p.get("Name").and_then(Value::as_str) == Some("ResetType"))?
        .get("AllowableValues")
        .and_then(strings)
}

/// Finds the host's system in the Systems collection: the one whose `Id` or `UUID` is `system_id`,
/// or the only one listed.
async fn find_system(conn: &mut Conn<'_>) -> Result<Url> {
    let bmc = conn.bmc();
    let wanted = bmc.system.clone();
    let collection = bmc.url(&format!("{ROOT}Systems"))?;
    let list = conn.get(&collection, "list the systems").await?;
    let members: Vec<String> = list
        .body
        .get("Members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let listed = || {
        if members.is_empty() {
            "none".to_owned()
        } else {
            members.join(", ")
        }
    };
    match wanted {
        SystemRef::Path(p) => conn.bmc().url(&p),
        SystemRef::Only => match members.as_slice() {
            [one] => conn.bmc().url(one),
            _ => Err(conn
                .error(
                    ErrorKind::Config,
                    format!(
                        "the BMC lists {} systems ({}); set the host's system to one of them, or \
                         system_id to its Id or UUID",
                        members.len(),
                        listed()
                    ),
                )
                .permanent()),
        },
        SystemRef::Id(id) => {
            let mut found = Vec::new();
            for m in &members {
                let url = conn.bmc().url(m)?;
                let r = conn.get(&url, "read a listed system").await?;
                let is = |k: &str| {
                    r.body
                        .get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.eq_ignore_ascii_case(&id))
                };
                if is("Id") || is("UUID") {
                    found.push(url);
                }
            }
            match found.len() {
                1 => Ok(found.remove(0)),
                n => Err(conn
                    .error(
                        ErrorKind::Config,
                        format!(
                            "system_id {id:?} matches {n} of the systems the BMC lists ({}); \
                             it must match exactly one Id or UUID",
                            listed()
                        ),
                    )
                    .permanent()),
            }
        }
    }
}

#[async_trait]
impl Fencer for RedfishFencer {
    fn handles(&self, host: &HostId) -> bool {
        self.clients.contains_key(host)
    }

    async fn power_off(&self, host: &HostId) -> Result<()> {
        self.with_conn(host, async |conn| {
            let (_, system) = self.read_system(conn).await?;
            if system.state() == PowerState::Off {
                info!(host = %host, bmc = %conn.bmc().target(), "Redfish: already powered off");
                return Ok(());
            }
            self.reset(conn, &system, &["ForceOff"]).await?;
            info!(host = %host, bmc = %conn.bmc().target(), "Redfish: ForceOff accepted");
            Ok(())
        })
        .await
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        self.with_conn(host, async |conn| {
            let (_, system) = self.read_system(conn).await?;
            let state = system.state();
            debug!(host = %host, power = ?system.power, state = %state, "Redfish: power status");
            Ok(state)
        })
        .await
    }

    async fn power_on(&self, host: &HostId) -> Result<()> {
        self.with_conn(host, async |conn| {
            let (_, system) = self.read_system(conn).await?;
            if system.state() == PowerState::On {
                info!(host = %host, "Redfish: already powered on");
                return Ok(());
            }
            let sent = self.reset(conn, &system, &["On", "ForceOn"]).await?;
            info!(host = %host, bmc = %conn.bmc().target(), reset = sent, "Redfish: power-on accepted");
            Ok(())
        })
        .await
    }

    async fn healthcheck(&self) -> Result<()> {
        Error::check_each(
            "Redfish BMCs failed the check (reachable, credentials accepted, system found)",
            self.clients.keys(),
            |host| self.check(host),
        )
        .await
    }
}

freezer_dr_core::register! {
    FencerRegistration {
        name: "redfish",
        description: "Power control through each host's BMC over DMTF Redfish (iDRAC, iLO, XClarity, OpenBMC): Reset ForceOff, PowerState.",
        example: EXAMPLE,
        build: |ctx| Ok(Box::new(ctx.build(RedfishFencer::build)?)),
    }
}

/// The example section printed by `freezer-dr example fencer redfish`.
pub(crate) const EXAMPLE: &str = r#"type = "redfish"
# Defaults for every host below; each host may override any of them.
username = "fence"                  # fence_redfish: login
password = "change-me"              # or { file = "/etc/freezer-dr/bmc.pass" } or { env = "BMC_PASSWORD" }
auth = "auto"                       # "session" (X-Auth-Token, deleted after each call), "basic", or "auto"
# ca_file = "/etc/freezer-dr/bmc-ca.pem"   # the CA of the BMCs' certificates (default: the system's roots)
# insecure = false                  # fence_redfish: ssl_insecure; true skips certificate checks (warned)
timeout = "10s"                     # one HTTP request to one BMC
task_timeout = "20s"                # the longest wait for an asynchronous reset's Task
# The inventory: each host's BMC, keyed by its exact Nova compute host name.
[fencer.hosts.compute-1]
url = "https://10.0.0.11"           # or ip = "10.0.0.11" (+ port); the system is found if it is the only one
[fencer.hosts.compute-2]
url = "https://10.0.0.12"
system = "/redfish/v1/Systems/System.Embedded.1"   # fence_redfish: systems_uri
[fencer.hosts.compute-3]
ip = "10.0.0.13"
system_id = "4c4c4544-0035-4410-8052-b4c04f4d5a31"  # the system's Id or UUID
"#;
