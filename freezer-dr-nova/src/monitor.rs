//! The `nova` monitor: `GET /os-services?binary=nova-compute`, one [`HostHealth`] per host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use freezer_dr_core::{AdminState, Health, HostHealth, HostId, Monitor, Result};

use crate::config::NovaConfig;
use crate::nova::{ComputeService, NovaApi};

/// Observes Nova's `nova-compute` services.
///
/// A host is `Up` when its heartbeat (`updated_at`) is younger than `heartbeat_timeout` and Nova does not
/// call it down — or when freezer-dr forced it down but its service heartbeats again (a repaired host
/// coming back). While a service is forced down its `updated_at` also moves when its record is written
/// (freezer-dr's own isolation writes `forced_down`, then `disabled`), so one fresh value is no proof of
/// life: a forced-down host reads up only once three distinct `updated_at` values were observed within
/// `heartbeat_window`, the newest younger than `heartbeat_timeout` (a running `nova-compute` writes one every `report_interval`). `Down` carries the evidence
/// (state, status, forced_down, heartbeat age). A service that never reported, or one of a cell Nova cannot
/// reach (status `UNKNOWN` from 2.69), is `Unknown`: never fenced, never counted down. A failed API call is an error, never "everything is down".
#[derive(Debug)]
pub struct NovaMonitor {
    api: Arc<NovaApi>,
    heartbeat_timeout: Duration,
    /// How far back a forced-down host's heartbeats are counted (`heartbeat_window`).
    heartbeat_window: Duration,
    /// Per forced-down host: the distinct fresh `updated_at` values observed.
    beats: Mutex<Beats>,
}

/// Host name → distinct `updated_at` values seen while it was forced down (those within the window).
type Beats = BTreeMap<String, Vec<SystemTime>>;

/// Distinct fresh heartbeats a forced-down host must show before it reads up: isolation writes the
/// service record twice (`forced_down`, then `disabled`), each write moving `updated_at`; a third value can
/// only come from the host's own `nova-compute`.
pub(crate) const FORCED_UP_BEATS: usize = 3;

impl NovaMonitor {
    /// A monitor from its config (reads `clouds.yaml`/`OS_*` for missing credentials; no network I/O).
    pub fn new(cfg: NovaConfig) -> Result<Self> {
        Ok(Self {
            api: Arc::new(crate::build_api(&cfg)?),
            heartbeat_timeout: cfg.heartbeat_timeout,
            heartbeat_window: cfg.heartbeat_window()?,
            beats: Mutex::new(Beats::new()),
        })
    }
}

/// The health of one service at `now`; `beats`: distinct fresh heartbeats observed while it is forced down.
pub(crate) fn health_of(
    s: ComputeService,
    now: SystemTime,
    timeout: Duration,
    beats: usize,
) -> HostHealth {
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
    let health = match s.updated_at {
        // A cell Nova cannot reach: nothing is known about its hosts (never fenced, never counted down).
        _ if s.in_down_cell() => Health::Unknown {
            reason: "nova-compute status UNKNOWN: its Nova cell does not answer".to_owned(),
        },
        None => Health::Unknown {
            reason: evidence(None),
        },
        Some(t) => {
            // A heartbeat "in the future" (clock skew between Nova's database and us) counts as fresh.
            let age = now.duration_since(t).unwrap_or_default();
            let fresh = age <= timeout;
            let up = if forced {
                // Nova reports a forced-down service down whatever its heartbeat says: liveness is the
                // heartbeat alone, and only a heartbeat that keeps moving (see FORCED_UP_BEATS).
                fresh && beats >= FORCED_UP_BEATS
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
        host: HostId::from(s.host),
        health,
        admin,
        views: Vec::new(),
    }
}

/// One entry per host: if Nova lists a host twice (several cells), it is up if any of its services is.
/// A forced-down host's distinct heartbeats are counted over `window` (its newest must be fresh).
pub(crate) fn merge(
    services: Vec<ComputeService>,
    now: SystemTime,
    timeout: Duration,
    window: Duration,
    beats: &mut Beats,
) -> Vec<HostHealth> {
    let mut hosts: Vec<HostHealth> = Vec::with_capacity(services.len());
    for s in services {
        let seen = match s.updated_at {
            // A down cell's record says nothing about heartbeats: the count is kept until it answers.
            _ if s.in_down_cell() => 0,
            Some(t) if s.forced_down.unwrap_or(false) => {
                let v = beats.entry(s.host.clone()).or_default();
                if !v.contains(&t) {
                    v.push(t);
                }
                // Counted over a window of their own: a heartbeat_timeout shorter than three beats
                // (report_interval 2 s, timeout 5 s) would otherwise keep a repaired host out for ever.
                v.retain(|b| now.duration_since(*b).unwrap_or_default() <= window);
                v.len()
            }
            _ => {
                beats.remove(&s.host);
                0
            }
        };
        hosts.push(health_of(s, now, timeout, seen));
    }
    // By host name; a host listed again replaces what came before unless that said up (a stable sort
    // keeps Nova's order within a host).
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    hosts.dedup_by(|later, kept| {
        if later.host != kept.host {
            return false;
        }
        if kept.health != Health::Up {
            std::mem::swap(later, kept);
        }
        true
    });
    hosts
}

#[async_trait]
impl Monitor for NovaMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        let services = self.api.services(None).await?;
        let mut beats = self
            .beats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(merge(
            services,
            SystemTime::now(),
            self.heartbeat_timeout,
            self.heartbeat_window,
            &mut beats,
        ))
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
            updated_at: age_s.map(|a| now - Duration::from_secs(a)),
            disabled_reason: None,
        }
    }

    #[test]
    fn heartbeat_age_and_state_decide_liveness() {
        let now = SystemTime::now();
        let t = Duration::from_secs(30);
        assert_eq!(
            health_of(svc("a", "up", false, Some(2), now), now, t, 0).health,
            Health::Up
        );
        let stale = health_of(svc("a", "up", false, Some(45), now), now, t, 0).health;
        assert!(
            stale.is_down(),
            "a stale heartbeat is down even if Nova says up: {stale:?}"
        );
        let down = health_of(svc("a", "down", false, Some(2), now), now, t, 0).health;
        assert!(down.is_down());
        // Forced down by freezer-dr, but heartbeating again: the repaired host shows it is back.
        let back = health_of(
            svc("a", "down", true, Some(1), now),
            now,
            t,
            FORCED_UP_BEATS,
        );
        assert_eq!(back.health, Health::Up);
        assert!(back.admin.forced_down);
        let dead = health_of(svc("a", "down", true, Some(300), now), now, t, 0).health;
        let Health::Down { reason } = dead else {
            panic!("expected down")
        };
        assert!(
            reason.contains("forced_down=true") && reason.contains("300s ago"),
            "{reason}"
        );
        assert!(matches!(
            health_of(svc("a", "down", false, None, now), now, t, 0).health,
            Health::Unknown { .. }
        ));
    }

    #[test]
    fn operator_disabled_hosts_are_reported_as_such() {
        let now = SystemTime::now();
        let mut s = svc("a", "up", false, Some(1), now);
        s.status = "disabled".into();
        s.disabled_reason = Some("disk swap, ticket 42".into());
        let h = health_of(s.clone(), now, Duration::from_secs(30), 0);
        assert!(h.admin.disabled_by_operator());
        s.disabled_reason = Some(freezer_dr_core::isolation_marker(
            "j1",
            "c1@1",
            freezer_dr_core::Timestamp(0),
        ));
        assert!(
            health_of(s, now, Duration::from_secs(30), 0)
                .admin
                .isolated_by_freezer_dr()
        );
    }

    #[test]
    fn duplicate_hosts_are_merged() {
        let now = SystemTime::now();
        let v = merge(
            vec![
                svc("a", "down", false, Some(100), now),
                svc("a", "up", false, Some(1), now),
                svc("b", "up", false, Some(1), now),
            ],
            now,
            Duration::from_secs(30),
            Duration::from_secs(90),
            &mut Beats::new(),
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].health, Health::Up);
    }

    #[test]
    fn a_forced_down_host_whose_record_was_just_written_is_not_up() {
        // Isolation writes the record twice (forced_down, disabled): two fresh values, then nothing.
        let t0 = SystemTime::now();
        let t = Duration::from_secs(10);
        let mut beats = Beats::new();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let isolated = |written: u64, now: u64| {
            let mut s = svc("a", "down", true, Some(0), at(written));
            s.status = "disabled".into();
            (s, at(now))
        };
        for (written, now) in [(0, 0), (1, 1), (1, 3), (1, 9), (1, 30)] {
            let (s, now) = isolated(written, now);
            let h = merge(vec![s], now, t, t * 3, &mut beats);
            assert!(
                h[0].health.is_down(),
                "written at {written}, read at {now:?}: {h:?}"
            );
        }
        // Its nova-compute runs again: a new value every report_interval; up at the third distinct one.
        for (beat, up) in [(31, false), (33, false), (35, true)] {
            let (s, now) = isolated(beat, beat);
            let h = merge(vec![s], now, t, t * 3, &mut beats);
            assert_eq!(h[0].health == Health::Up, up, "beat at {beat}: {h:?}");
        }
        // Not forced down any more: Nova's own state decides again, and the count starts over.
        let s = svc("a", "up", false, Some(0), at(14));
        assert_eq!(
            merge(vec![s], at(14), t, t * 3, &mut beats)[0].health,
            Health::Up
        );
        assert!(beats.is_empty());
    }

    #[test]
    fn a_service_of_a_down_cell_is_unknown_and_its_neighbours_are_not() {
        // The shape Nova lists from 2.69 for a cell it cannot reach: binary, host, status UNKNOWN.
        let now = SystemTime::now();
        let partial: ComputeService = serde_json::from_value(
            json!({"binary": "nova-compute", "host": "c9", "status": "UNKNOWN"}),
        )
        .unwrap();
        // Even forced down with a record of beats: UNKNOWN is no sign of life nor of death.
        let mut beats = Beats::from([("c9".to_owned(), vec![now, now - Duration::from_secs(2)])]);
        let v = merge(
            vec![partial, svc("a", "up", false, Some(1), now)],
            now,
            Duration::from_secs(30),
            Duration::from_secs(90),
            &mut beats,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].health, Health::Up);
        assert!(
            matches!(&v[1].health, Health::Unknown { reason } if reason.contains("cell")),
            "{v:?}"
        );
        assert!(!v[1].health.is_down());
    }

    #[test]
    fn a_repaired_host_reads_up_with_a_heartbeat_timeout_shorter_than_three_beats() {
        // The lab: report_interval 2 s, beats ~3 s apart in practice, heartbeat_timeout 5 s.
        let t0 = SystemTime::now();
        let t = Duration::from_secs(5);
        let mut beats = Beats::new();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let forced = |beat: u64| {
            let mut s = svc("a", "down", true, Some(0), at(beat));
            s.status = "disabled".into();
            s
        };
        // Isolation's two writes, long ago.
        for (w, now) in [(0, 0), (1, 1), (1, 20)] {
            assert!(
                merge(vec![forced(w)], at(now), t, t * 3, &mut beats)[0]
                    .health
                    .is_down()
            );
        }
        let mut up_at = None;
        for beat in [31, 34, 37, 40] {
            let h = merge(vec![forced(beat)], at(beat), t, t * 3, &mut beats);
            if h[0].health == Health::Up && up_at.is_none() {
                up_at = Some(beat);
            }
        }
        assert_eq!(up_at, Some(37), "up at the third distinct fresh beat");
        // The newest beat must still be fresh: a host that stops again reads down at once.
        let h = merge(vec![forced(40)], at(46), t, t * 3, &mut beats);
        assert!(h[0].health.is_down(), "{h:?}");
    }
}
