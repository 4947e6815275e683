//! [`TcpMonitor`]: every host's addresses probed at once, one verdict per host.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use freezer_dr_core::registry::{BuildContext, MonitorRegistration};
use freezer_dr_core::{Error, ErrorKind, Health, HostHealth, HostId, Monitor, Result, async_trait};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::debug;

use crate::config::TcpConfig;

/// Observes hosts by TCP connect probes to each of their addresses.
///
/// A host is `Up` when any probe connected, `Down` when every probe failed (refused, no answer in time,
/// no route to the host), `Unknown` when none connected and some could not be made for a reason of the
/// controller's own. Only the hosts of the inventory are observed, each in every observation. The
/// administrative state (disabled, forced down) is Nova's: this monitor reports none.
#[derive(Debug)]
pub struct TcpMonitor {
    hosts: BTreeMap<HostId, Vec<SocketAddr>>,
    timeout: Duration,
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The connection was accepted.
    Open,
    /// Evidence against the host: refused, no answer in time, no route to it.
    Failed(String),
    /// No evidence either way: the controller could not make the probe (its own network unreachable,
    /// no socket left, ...).
    Inconclusive(String),
}

impl Probe {
    fn of(
        result: std::result::Result<io::Result<TcpStream>, tokio::time::error::Elapsed>,
        timeout: Duration,
    ) -> Probe {
        match result {
            Ok(Ok(_stream)) => Probe::Open,
            Err(_) => Probe::Failed(format!("no answer in {}", humantime_ms(timeout))),
            Ok(Err(e)) => match e.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
                    Probe::Failed("connection refused".into())
                }
                io::ErrorKind::TimedOut => Probe::Failed("connection timed out".into()),
                // ARP (or neighbour discovery) got no answer: the host is gone from its network.
                io::ErrorKind::HostUnreachable => Probe::Failed("no route to host".into()),
                _ => Probe::Inconclusive(e.to_string()),
            },
        }
    }
}

fn humantime_ms(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl TcpMonitor {
    /// A monitor from its config (checks every address; no network I/O).
    pub fn new(config: TcpConfig) -> Result<Self> {
        Self::build(&config, "tcp")
    }

    fn build(config: &TcpConfig, section: &str) -> Result<Self> {
        Ok(Self {
            hosts: config.resolve(section)?,
            timeout: config.timeout,
        })
    }

    fn from_context(ctx: &BuildContext<'_>) -> Result<Self> {
        let config: TcpConfig = ctx.parse()?;
        Self::build(&config, &ctx.section).map_err(|e| ctx.file_error(e))
    }

    /// Probes every address of every host at once; each probe's outcome, by host then address.
    async fn probe_all(&self) -> BTreeMap<&HostId, Vec<(SocketAddr, Probe)>> {
        let timeout = self.timeout;
        let mut set = JoinSet::new();
        for (h, addrs) in self.hosts.iter().enumerate() {
            for (a, addr) in addrs.1.iter().enumerate() {
                let addr = *addr;
                set.spawn(async move {
                    let r = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
                    (h, a, Probe::of(r, timeout))
                });
            }
        }
        let mut found: Vec<Vec<Option<Probe>>> = self
            .hosts
            .values()
            .map(|addrs| vec![None; addrs.len()])
            .collect();
        while let Some(joined) = set.join_next().await {
            // A probe task cannot panic; if the runtime cancelled one, it simply gave no evidence.
            if let Ok((h, a, p)) = joined
                && let Some(slot) = found.get_mut(h).and_then(|v| v.get_mut(a))
            {
                *slot = Some(p);
            }
        }
        self.hosts
            .iter()
            .zip(found)
            .map(|((host, addrs), probes)| {
                let probes = addrs
                    .iter()
                    .zip(probes)
                    .map(|(addr, p)| {
                        let p = p.unwrap_or_else(|| Probe::Inconclusive("probe cancelled".into()));
                        (*addr, p)
                    })
                    .collect();
                (host, probes)
            })
            .collect()
    }
}

/// One host's verdict from its probes: up if any connected, down if every one failed, else unknown.
pub(crate) fn health_of(probes: &[(SocketAddr, Probe)]) -> Health {
    if probes.iter().any(|(_, p)| *p == Probe::Open) {
        return Health::Up;
    }
    let detail = probes
        .iter()
        .map(|(a, p)| match p {
            Probe::Open => format!("{a}: open"),
            Probe::Failed(why) => format!("{a}: {why}"),
            Probe::Inconclusive(why) => format!("{a}: not probed ({why})"),
        })
        .collect::<Vec<_>>()
        .join("; ");
    if probes.iter().all(|(_, p)| matches!(p, Probe::Failed(_))) {
        Health::down(format!("tcp: every probe failed: {detail}"))
    } else {
        Health::Unknown {
            reason: format!("tcp: no probe connected, not every one could be made: {detail}"),
        }
    }
}

#[async_trait]
impl Monitor for TcpMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        let probed = self.probe_all().await;
        let conclusive = probed
            .values()
            .flatten()
            .any(|(_, p)| !matches!(p, Probe::Inconclusive(_)));
        if !conclusive {
            // Not one probe could be made: the controller's own network (or its sockets) failed.
            let why = probed
                .values()
                .flatten()
                .find_map(|(a, p)| match p {
                    Probe::Inconclusive(why) => Some(format!("{a}: {why}")),
                    _ => None,
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("tcp: no probe could be made from this controller (e.g. {why})"),
            )
            .temporary());
        }
        Ok(probed
            .into_iter()
            .map(|(host, probes)| {
                let health = health_of(&probes);
                debug!(host = %host, health = ?health, "tcp: observed");
                HostHealth::new(host.clone(), health)
            })
            .collect())
    }

    /// Every address of every host answers: a probe that does not is named (a wrong address or port, a
    /// firewall, or a host that is down now).
    async fn healthcheck(&self) -> Result<()> {
        let probed = self.probe_all().await;
        let total = probed.values().map(Vec::len).sum();
        let failures = probed
            .into_iter()
            .flat_map(|(host, probes)| {
                probes.into_iter().filter_map(move |(addr, p)| {
                    let why = match p {
                        Probe::Open => return None,
                        Probe::Failed(why) | Probe::Inconclusive(why) => why,
                    };
                    Some(
                        Error::new(ErrorKind::Unreachable, format!("{host} at {addr}: {why}"))
                            .temporary(),
                    )
                })
            })
            .collect();
        Error::from_checks("TCP probes did not connect", total, failures)
    }
}

/// The example section printed by `freezer-dr example monitor tcp`.
const EXAMPLE: &str = r#"type = "tcp"
# A host is down when every one of its probes fails in one observation (refused, no answer within
# timeout, no route to it); up when any connects. [recovery] strikes counts observations in a row.
port = 22            # for addresses written without a port (sshd answers on every network)
timeout = "2s"       # per probe; every probe runs at once, so one observation takes about this long
# Keyed by the exact Nova compute host name; IP literals only (names are not resolved).
[monitor.hosts.compute-1]
addresses = ["10.0.0.11", "10.1.0.11", "10.2.0.11:4789"]   # management, storage, tenant
[monitor.hosts.compute-2]
addresses = ["10.0.0.12", "10.1.0.12"]
"#;

freezer_dr_core::register! {
    MonitorRegistration {
        name: "tcp",
        description: "TCP connect probes from the controller to each host's addresses: down when every probe fails.",
        example: EXAMPLE,
        build: |ctx| Ok(Box::new(TcpMonitor::from_context(ctx)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 1)))
    }

    #[test]
    fn one_open_probe_is_up_every_failed_probe_is_down_and_the_rest_unknown() {
        let open = (a("10.0.0.1:22"), Probe::Open);
        let refused = (a("10.1.0.1:22"), Probe::Failed("connection refused".into()));
        let timeout = (a("10.2.0.1:22"), Probe::Failed("no answer in 2s".into()));
        let local = (
            a("10.3.0.1:22"),
            Probe::Inconclusive("Network is unreachable".into()),
        );
        assert_eq!(health_of(&[refused.clone(), open.clone()]), Health::Up);
        assert_eq!(health_of(&[local.clone(), open]), Health::Up);
        let down = health_of(&[refused.clone(), timeout.clone()]);
        assert_eq!(
            down,
            Health::down(
                "tcp: every probe failed: 10.1.0.1:22: connection refused; 10.2.0.1:22: no answer in 2s"
            )
        );
        let unknown = health_of(&[refused, local]);
        assert!(
            matches!(&unknown, Health::Unknown { reason } if reason.contains("10.3.0.1:22: not probed (Network is unreachable)")),
            "{unknown:?}"
        );
        assert!(!unknown.is_down());
    }
}
