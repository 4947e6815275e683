//! [`PrometheusMonitor`]: the down query and the present query, one verdict per host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use freezer_dr_core::registry::{BuildContext, MonitorRegistration};
use freezer_dr_core::{Error, ErrorKind, Health, HostHealth, HostId, Monitor, Result, async_trait};
use tracing::{debug, warn};

use crate::client::{Client, Sample};
use crate::config::{Hosts, PrometheusConfig, Resolved};

/// Observes hosts through two PromQL instant queries, run at once in every observation.
///
/// A host listed by the down query is `Down` (with the series as evidence); one listed by the present
/// query only is `Up`; one in neither is `Unknown` — its series went stale or was never scraped, which
/// is no evidence either way. A failed query, or an answer with `status: error`, fails the whole
/// observation (`Err`), never "everything is down". The administrative state (disabled, forced down) is
/// Nova's: this monitor reports none.
#[derive(Debug)]
pub struct PrometheusMonitor {
    client: Client,
    down_query: String,
    present_query: String,
    hosts: Hosts,
    /// With `host_label`: every host a query listed so far (one that disappears stays listed, unknown).
    seen: Mutex<BTreeSet<HostId>>,
}

/// What the two queries say about each host, by the value of its identifying label.
struct Answer {
    /// Label value → the down query's series values.
    down: BTreeMap<String, Vec<String>>,
    /// Label values the present query lists.
    present: BTreeSet<String>,
}

impl PrometheusMonitor {
    /// A monitor from its config (reads the CA bundle; no network I/O).
    pub fn new(config: PrometheusConfig) -> Result<Self> {
        Self::build(&config, "prometheus")
    }

    fn build(config: &PrometheusConfig, section: &str) -> Result<Self> {
        let r: Resolved = config.resolve(section)?;
        if r.query_url.scheme() == "http" && !matches!(r.auth, crate::config::Auth::None) {
            warn!(url = %r.query_url,
                "Prometheus: plain http: the credentials cross the network unencrypted");
        }
        Ok(Self {
            client: Client::new(&r)?,
            down_query: r.down_query,
            present_query: r.present_query,
            hosts: r.hosts,
            seen: Mutex::new(BTreeSet::new()),
        })
    }

    fn from_context(ctx: &BuildContext<'_>) -> Result<Self> {
        let config: PrometheusConfig = ctx.parse()?;
        Self::build(&config, &ctx.section).map_err(|e| ctx.file_error(e))
    }

    fn label(&self) -> &str {
        match &self.hosts {
            Hosts::Mapped { label, .. } => label,
            Hosts::Named(label) => label,
        }
    }

    /// Both queries, at once; either failing fails the observation.
    async fn ask(&self) -> Result<Answer> {
        let (down, present) = tokio::try_join!(
            self.client.query("down_query", &self.down_query),
            self.client.query("present_query", &self.present_query),
        )?;
        let label = self.label();
        let mut answer = Answer {
            down: BTreeMap::new(),
            present: BTreeSet::new(),
        };
        for s in down {
            if let Some(v) = value_of(&s, label) {
                answer.down.entry(v).or_default().push(s.value);
            }
        }
        for s in present {
            if let Some(v) = value_of(&s, label) {
                answer.present.insert(v);
            }
        }
        Ok(answer)
    }

    fn health(&self, value: &str, answer: &Answer) -> Health {
        let label = self.label();
        if let Some(values) = answer.down.get(value) {
            return Health::down(format!(
                "prometheus: {} lists {label}={value:?} (value {})",
                self.down_query,
                values.join(", ")
            ));
        }
        if answer.present.contains(value) {
            return Health::Up;
        }
        Health::Unknown {
            reason: format!(
                "prometheus: {} has no series with {label}={value:?} (stale, or never scraped)",
                self.present_query
            ),
        }
    }
}

/// The non-empty value of `label` in a series.
fn value_of(s: &Sample, label: &str) -> Option<String> {
    s.labels.get(label).filter(|v| !v.is_empty()).cloned()
}

#[async_trait]
impl Monitor for PrometheusMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        let answer = self.ask().await?;
        let mut out: Vec<HostHealth> = match &self.hosts {
            Hosts::Mapped { by_value, .. } => {
                let unmapped = answer
                    .down
                    .keys()
                    .chain(&answer.present)
                    .filter(|v| !by_value.contains_key(*v))
                    .collect::<BTreeSet<_>>();
                if !unmapped.is_empty() {
                    debug!(label = self.label(), values = ?unmapped,
                        "prometheus: series of no configured host, ignored");
                }
                by_value
                    .iter()
                    .map(|(value, host)| HostHealth::new(host.clone(), self.health(value, &answer)))
                    .collect()
            }
            Hosts::Named(_) => {
                let mut seen = self
                    .seen
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                seen.extend(
                    answer
                        .down
                        .keys()
                        .chain(&answer.present)
                        .map(|v| HostId::new(v.as_str())),
                );
                seen.iter()
                    .map(|host| HostHealth::new(host.clone(), self.health(host.as_str(), &answer)))
                    .collect()
            }
        };
        out.sort_by(|a, b| a.host.cmp(&b.host));
        for h in &out {
            debug!(host = %h.host, health = ?h.health, "prometheus: observed");
        }
        Ok(out)
    }

    /// Both queries run, and every configured host has a series in the present query's result (a host
    /// without one points at a wrong mapping or `label`).
    async fn healthcheck(&self) -> Result<()> {
        let answer = self.ask().await?;
        let label = self.label();
        let sample = || {
            let some: Vec<&String> = answer.present.iter().take(5).collect();
            format!("{some:?}")
        };
        match &self.hosts {
            Hosts::Mapped { by_value, .. } => {
                let missing: Vec<Error> = by_value
                    .iter()
                    .filter(|(v, _)| !answer.present.contains(*v) && !answer.down.contains_key(*v))
                    .map(|(v, host)| {
                        Error::new(
                            ErrorKind::NotFound,
                            format!(
                                "{host}: no series with {label}={v:?} in {} (its values include {})",
                                self.present_query,
                                sample()
                            ),
                        )
                    })
                    .collect();
                Error::from_checks(
                    "hosts have no series in Prometheus",
                    by_value.len(),
                    missing,
                )
            }
            Hosts::Named(_) if answer.present.is_empty() => Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "{} lists no series with a {label} label: no host would be observed",
                    self.present_query
                ),
            )),
            Hosts::Named(_) => Ok(()),
        }
    }
}

/// The example section printed by `freezer-dr example monitor prometheus`.
const EXAMPLE: &str = r#"type = "prometheus"
url = "http://prometheus.example.org:9090"    # the root URL (with its path prefix, if any)
# Hosts the down query lists are down; hosts only the present query lists are up; a host in neither
# (a stale series, a target never scraped) is unknown: never counted down, never fenced.
down_query = 'up{job="node"} == 0'
present_query = 'up{job="node"}'
label = "instance"                            # the label that tells the hosts apart
timeout = "10s"                               # per query; both run at once
# bearer_token = { file = "/etc/freezer-dr/prometheus.token" }   # or username + password (basic)
# ca_file = "/etc/freezer-dr/prometheus-ca.pem"
# Each exact Nova compute host name and its series' label value. Or instead of label and hosts:
# host_label = "nova_host" when the series carry the Nova host name in a label.
[monitor.hosts]
compute-1 = "10.0.0.11:9100"
compute-2 = "10.0.0.12:9100"
"#;

freezer_dr_core::register! {
    MonitorRegistration {
        name: "prometheus",
        description: "Prometheus: a PromQL query lists the down hosts, another the ones it has data for (the rest are unknown).",
        example: EXAMPLE,
        build: |ctx| Ok(Box::new(PrometheusMonitor::from_context(ctx)?)),
    }
}
