//! [`IpmiFencer`]: the [`Fencer`] over the BMC inventory, choosing a backend per host.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use freezer_dr_core::config::not_in_inventory;
use freezer_dr_core::registry::FencerRegistration;
use freezer_dr_core::{Error, ErrorKind, Fencer, HostId, PowerState, Result, async_trait};
use tracing::{debug, info, warn};

use crate::call::{CallError, Op, Reply, Timing, scrub};
use crate::config::{Backend, Bmc, IpmiConfig};
use crate::{ipmitool, native};

/// Extra time the async side gives a blocking native call past its own deadline before giving up on
/// it (the blocking thread always ends by itself: every socket read has a timeout).
const NATIVE_GRACE: Duration = Duration::from_millis(500);

/// Powers hosts off through their BMCs over IPMI v2.0 LAN (RMCP+): natively with ipmi-rs, or through
/// ipmitool, or native first with ipmitool as the fallback (`backend = "auto"`).
///
/// Only hosts in the inventory are handled (names match exactly). `power_off` reads the power status
/// first and sends Chassis Control "power down" only when the host is not already off; the engine
/// then polls [`Fencer::power_status`] until it reads off.
pub struct IpmiFencer {
    bmcs: BTreeMap<HostId, Arc<Bmc>>,
    timing: Timing,
    ipmitool: PathBuf,
    power_wait: Duration,
    power_timeout: Option<Duration>,
    memory: Mutex<HashMap<HostId, Memory>>,
}

/// What the fencer remembers of a host between calls (in memory only: a restart forgets it, which
/// only ever makes it less strict).
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    /// When this fencer last had a power-off accepted.
    off_sent: Option<Instant>,
    /// `auto` found that native cannot talk to this BMC and ipmitool can.
    use_ipmitool: bool,
}

impl std::fmt::Debug for IpmiFencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiFencer")
            .field("hosts", &self.bmcs.keys().collect::<Vec<_>>())
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

impl IpmiFencer {
    /// A fencer from its configuration (for embedders); errors name the keys under `ipmi`.
    pub fn new(config: IpmiConfig) -> Result<Self> {
        Self::build(config, "ipmi")
    }

    fn build(config: IpmiConfig, section: &str) -> Result<Self> {
        let bmcs = config
            .resolve(section)?
            .into_iter()
            .map(|(h, b)| (h, Arc::new(b)))
            .collect();
        Ok(Self {
            bmcs,
            timing: Timing {
                timeout: config.timeout,
                retransmit_interval: config.retransmit_interval,
                retransmits: config.retransmits,
            },
            ipmitool: config.ipmitool,
            power_wait: config.power_wait,
            power_timeout: config.power_timeout,
            memory: Mutex::new(HashMap::new()),
        })
    }

    /// The hosts in the inventory, sorted.
    pub fn hosts(&self) -> impl Iterator<Item = &HostId> {
        self.bmcs.keys()
    }

    /// The hosts of `hosts` that are not in the inventory (to check a monitor's host list at start:
    /// a compute host no fencing level handles can never be recovered).
    pub fn missing<'a>(&self, hosts: impl IntoIterator<Item = &'a HostId>) -> Vec<HostId> {
        hosts
            .into_iter()
            .filter(|h| !self.bmcs.contains_key(*h))
            .cloned()
            .collect()
    }

    fn bmc(&self, host: &HostId) -> Result<&Arc<Bmc>> {
        self.bmcs
            .get(host)
            .ok_or_else(|| not_in_inventory("ipmi fencer", host))
    }

    fn remember(&self, host: &HostId, f: impl FnOnce(&mut Memory)) {
        if let Ok(mut m) = self.memory.lock() {
            f(m.entry(host.clone()).or_default());
        }
    }

    fn recall(&self, host: &HostId) -> Memory {
        self.memory
            .lock()
            .ok()
            .and_then(|m| m.get(host).copied())
            .unwrap_or_default()
    }

    async fn call(&self, bmc: &Arc<Bmc>, op: Op) -> Result<Reply> {
        match bmc.backend {
            Backend::Native => self
                .native(bmc, op)
                .await
                .map_err(|e| e.into_error(bmc, op, "native")),
            Backend::Ipmitool => self.ipmitool(bmc, op).await,
            Backend::Auto => {
                if let Some(why) = bmc.native_unsupported() {
                    debug!(host = %bmc.host, why, "IPMI: using ipmitool");
                    return self.ipmitool(bmc, op).await;
                }
                if self.recall(&bmc.host).use_ipmitool {
                    return self.ipmitool(bmc, op).await;
                }
                match self.native(bmc, op).await {
                    Ok(reply) => Ok(reply),
                    // Only failures before any command was sent fall back: nothing was done yet.
                    Err(e) if e.fallback => {
                        let native = scrub(&e.message, bmc.password.expose());
                        warn!(host = %bmc.host, bmc = %bmc.target(), error = %native,
                            "IPMI: ipmi-rs cannot talk to this BMC; trying ipmitool");
                        let reply = self
                            .ipmitool(bmc, op)
                            .await
                            .map_err(|e| e.with_context("native", native))?;
                        self.remember(&bmc.host, |m| m.use_ipmitool = true);
                        Ok(reply)
                    }
                    Err(e) => Err(e.into_error(bmc, op, "native")),
                }
            }
        }
    }

    async fn ipmitool(&self, bmc: &Bmc, op: Op) -> Result<Reply> {
        ipmitool::call(&self.ipmitool, bmc, op, &self.timing)
            .await
            .map_err(|e| e.into_error(bmc, op, "ipmitool"))
    }

    /// ipmi-rs blocks: run it on the blocking pool, under a deadline of our own.
    async fn native(&self, bmc: &Arc<Bmc>, op: Op) -> std::result::Result<Reply, CallError> {
        let timing = self.timing;
        let owned = Arc::clone(bmc);
        let task = tokio::task::spawn_blocking(move || native::call(&owned, op, &timing));
        match tokio::time::timeout(timing.timeout + NATIVE_GRACE, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(CallError::new(
                ErrorKind::Unexpected,
                if join.is_panic() {
                    "the ipmi-rs client panicked (a malformed or unexpected reply)"
                } else {
                    "the ipmi-rs call was cancelled"
                },
            )
            .temporary()),
            Err(_) => Err(CallError::new(
                ErrorKind::Timeout,
                format!("no result within {:?}", timing.timeout),
            )),
        }
    }
}

#[async_trait]
impl Fencer for IpmiFencer {
    fn handles(&self, host: &HostId) -> bool {
        self.bmcs.contains_key(host)
    }

    async fn power_off(&self, host: &HostId) -> Result<()> {
        let bmc = self.bmc(host)?;
        match self.call(bmc, Op::Off).await? {
            Reply::Already => {
                info!(host = %host, bmc = %bmc.target(), "IPMI: already powered off");
            }
            _ => {
                self.remember(host, |m| m.off_sent = Some(Instant::now()));
                info!(host = %host, bmc = %bmc.target(), "IPMI: power-off accepted");
            }
        }
        Ok(())
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        let bmc = self.bmc(host)?;
        let state = match self.call(bmc, Op::Status).await? {
            Reply::State(s) => s,
            other => {
                return Err(Error::new(
                    ErrorKind::Unexpected,
                    format!("IPMI status read returned {other:?}"),
                )
                .with_context("host", host));
            }
        };
        let since_off = self.recall(host).off_sent.map(|t| t.elapsed());
        if let Some(elapsed) = since_off {
            if elapsed < self.power_wait {
                debug!(host = %host, state = %state, "IPMI: within power_wait of the power-off: unknown");
                return Ok(PowerState::Unknown);
            }
            if let Some(limit) = self.power_timeout
                && state != PowerState::Off
                && elapsed > limit
            {
                return Err(Error::new(
                    ErrorKind::PeerFailure,
                    format!(
                        "the BMC accepted the power-off {}s ago but the power still reads {state} \
                         (power_timeout {}s)",
                        elapsed.as_secs(),
                        limit.as_secs_f64()
                    ),
                )
                .with_context("host", host)
                .with_context("bmc", bmc.target())
                .permanent());
            }
        }
        Ok(state)
    }

    async fn power_on(&self, host: &HostId) -> Result<()> {
        let bmc = self.bmc(host)?;
        let reply = self.call(bmc, Op::On).await?;
        self.remember(host, |m| m.off_sent = None);
        info!(host = %host, bmc = %bmc.target(), already = (reply == Reply::Already), "IPMI: powered on");
        Ok(())
    }

    async fn healthcheck(&self) -> Result<()> {
        Error::check_each(
            "BMCs did not answer a power-status read",
            self.bmcs.keys(),
            |host| async move { self.power_status(host).await.map(drop) },
        )
        .await
    }
}

freezer_dr_core::register! {
    FencerRegistration {
        name: "ipmi",
        description: "Power control through each host's BMC over IPMI v2.0 LAN (RMCP+): ipmi-rs, or ipmitool.",
        example: EXAMPLE,
        build: |ctx| Ok(Box::new(ctx.build(IpmiFencer::build)?)),
    }
}

/// The example section printed by `freezer-dr example fencer ipmi`.
pub(crate) const EXAMPLE: &str = r#"type = "ipmi"
# Defaults for every host below; each host may override any of them.
username = "admin"                  # fence-agents: login
password = "change-me"              # or { file = "/etc/freezer-dr/bmc.pass" } or { env = "BMC_PASSWORD" }
privilege = "administrator"         # fence-agents: privlvl; "operator" also works (ipmitool only)
cipher = 3                          # RMCP+ cipher suite; native speaks 3 only, ipmitool any (e.g. 17)
backend = "auto"                    # "native" (ipmi-rs), "ipmitool", or "auto": native, then ipmitool
timeout = "10s"                     # one call to one BMC, retransmits included
retransmit_interval = "1s"
retransmits = 3
# The inventory: each host's BMC, keyed by its exact Nova compute host name.
[fencer.hosts.compute-1]
address = "10.0.0.11"
[fencer.hosts.compute-2]
address = "10.0.0.12"
port = 623
"#;
