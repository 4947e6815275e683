//! The `nova` monitor: `GET /os-services?binary=nova-compute`, one [`HostHealth`] per host.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use freezer_dr_core::{AdminState, Health, HostHealth, HostId, Monitor, Result};

use crate::config::NovaConfig;
use crate::nova::{ComputeService, NovaApi};
use crate::session::parse_time;

/// Observes Nova's `nova-compute` services.
///
/// A host is `Up` when its heartbeat (`updated_at`) is younger than `heartbeat_timeout` and Nova does not
/// call it down — or when freezer-dr forced it down but its service heartbeats again (a repaired host
/// coming back). `Down` carries the evidence (state, status, forced_down, heartbeat age). A service that
/// never reported is `Unknown`. A failed API call is an error, never "everything is down".
#[derive(Debug)]
pub struct NovaMonitor {
    api: Arc<NovaApi>,
    heartbeat_timeout: Duration,
}

impl NovaMonitor {
    /// A monitor from its config (reads `clouds.yaml`/`OS_*` for missing credentials; no network I/O).
    pub fn new(cfg: NovaConfig) -> Result<Self> {
        Ok(Self {
            api: Arc::new(crate::build_api(&cfg)?),
            heartbeat_timeout: cfg.heartbeat_timeout,
        })
    }
}

/// The health of one service at `now`.
pub(crate) fn health_of(s: &ComputeService, now: SystemTime, timeout: Duration) -> HostHealth {
    let forced = s.forced_down.unwrap_or(false);
    let admin = AdminState {
        disabled: s.status == "disabled",
        disabled_reason: s.disabled_reason.clone().filter(|r| !r.is_empty()),
        forced_down: forced,
    };
    let evidence = |age: Option<Duration>| {
        let age = age.map_or_else(|| "never".to_owned(), |a| format!("{}s ago", a.as_secs()));
        format!(
            "nova-compute state={} status={} forced_down={forced} last heartbeat {age}",
            s.state, s.status
        )
    };
    let updated = s.updated_at.as_deref().and_then(parse_time);
    let health = match updated {
        None => Health::Unknown {
            reason: evidence(None),
        },
        Some(t) => {
            // A heartbeat "in the future" (clock skew between Nova's database and us) counts as fresh.
            let age = now.duration_since(t).unwrap_or_default();
            let fresh = age <= timeout;
            let up = if forced {
                // Nova reports a forced-down service down whatever its heartbeat says: liveness is the
                // heartbeat alone.
                fresh
            } else {
                fresh && s.state == "up"
            };
            if up {
                Health::Up
            } else {
                Health::down(evidence(Some(age)))
            }
        }
    };
    HostHealth {
        host: HostId::from(s.host.as_str()),
        health,
        admin,
    }
}

/// One entry per host: if Nova lists a host twice (several cells), it is up if any of its services is.
pub(crate) fn merge(
    services: &[ComputeService],
    now: SystemTime,
    timeout: Duration,
) -> Vec<HostHealth> {
    let mut by_host: BTreeMap<HostId, HostHealth> = BTreeMap::new();
    for s in services {
        let h = health_of(s, now, timeout);
        match by_host.get_mut(&h.host) {
            Some(prev) if prev.health != Health::Up => *prev = h,
            Some(_) => {}
            None => {
                by_host.insert(h.host.clone(), h);
            }
        }
    }
    by_host.into_values().collect()
}

#[async_trait]
impl Monitor for NovaMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        let services = self.api.services(None).await?;
        Ok(merge(&services, SystemTime::now(), self.heartbeat_timeout))
    }

    async fn healthcheck(&self) -> Result<()> {
        self.api.healthcheck().await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(
        host: &str,
        state: &str,
        forced: bool,
        age_s: Option<u64>,
        now: SystemTime,
    ) -> ComputeService {
        ComputeService {
            id: json!(host),
            binary: "nova-compute".into(),
            host: host.into(),
            state: state.into(),
            status: "enabled".into(),
            forced_down: Some(forced),
            updated_at: age_s.map(|a| {
                humantime::format_rfc3339_micros(now - Duration::from_secs(a))
                    .to_string()
                    .trim_end_matches('Z')
                    .to_owned()
            }),
            disabled_reason: None,
        }
    }

    #[test]
    fn heartbeat_age_and_state_decide_liveness() {
        let now = SystemTime::now();
        let t = Duration::from_secs(30);
        assert_eq!(
            health_of(&svc("a", "up", false, Some(2), now), now, t).health,
            Health::Up
        );
        let stale = health_of(&svc("a", "up", false, Some(45), now), now, t).health;
        assert!(
            stale.is_down(),
            "a stale heartbeat is down even if Nova says up: {stale:?}"
        );
        let down = health_of(&svc("a", "down", false, Some(2), now), now, t).health;
        assert!(down.is_down());
        // Forced down by freezer-dr, but heartbeating again: the repaired host shows it is back.
        let back = health_of(&svc("a", "down", true, Some(1), now), now, t);
        assert_eq!(back.health, Health::Up);
        assert!(back.admin.forced_down);
        let dead = health_of(&svc("a", "down", true, Some(300), now), now, t).health;
        let Health::Down { reason } = dead else {
            panic!("expected down")
        };
        assert!(
            reason.contains("forced_down=true") && reason.contains("300s ago"),
            "{reason}"
        );
        assert!(matches!(
            health_of(&svc("a", "down", false, None, now), now, t).health,
            Health::Unknown { .. }
        ));
    }

    #[test]
    fn operator_disabled_hosts_are_reported_as_such() {
        let now = SystemTime::now();
        let mut s = svc("a", "up", false, Some(1), now);
        s.status = "disabled".into();
        s.disabled_reason = Some("disk swap, ticket 42".into());
        let h = health_of(&s, now, Duration::from_secs(30));
        assert!(h.admin.disabled_by_operator());
        s.disabled_reason = Some(freezer_dr_core::isolation_marker(
            "r1",
            freezer_dr_core::Timestamp(0),
        ));
        assert!(
            health_of(&s, now, Duration::from_secs(30))
                .admin
                .isolated_by_freezer_dr()
        );
    }

    #[test]
    fn duplicate_hosts_are_merged() {
        let now = SystemTime::now();
        let v = merge(
            &[
                svc("a", "down", false, Some(100), now),
                svc("a", "up", false, Some(1), now),
                svc("b", "up", false, Some(1), now),
            ],
            now,
            Duration::from_secs(30),
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].health, Health::Up);
    }
}
