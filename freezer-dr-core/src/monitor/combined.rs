//! Several monitors as one (`[[monitor]]` listed more than once): each host's verdict is combined from
//! the monitors that know it, as `[recovery.monitors] combine` says, and every monitor's view is kept
//! beside the verdict.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use super::Monitor;
use crate::{AdminState, Error, ErrorKind, Health, HostHealth, HostId, MonitorView, Result};

/// How the views of several monitors make one verdict (`[recovery.monitors] combine`).
///
/// Only the monitors that *know* a host (list it) have a say about it. `Unknown` never counts as down,
/// and a monitor whose observation failed is `Unknown` for every host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Down when every monitor that knows the host says down: one `Up` or `Unknown` (a failed monitor
    /// included) keeps it from being fenced. The safe choice, and the default.
    #[default]
    All,
    /// Down when any monitor says down.
    Any,
    /// Down when more than half of the monitors that know the host say down.
    Quorum,
}

impl Combine {
    /// The verdict of `views` (the views of the monitors that know the host).
    pub fn verdict(self, views: &[MonitorView]) -> Health {
        let n = views.len();
        let down = views.iter().filter(|v| v.health.is_down()).count();
        let is_down = match self {
            Combine::All => n > 0 && down == n,
            Combine::Any => down > 0,
            Combine::Quorum => down * 2 > n,
        };
        let evidence = || {
            views
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        if is_down {
            Health::down(evidence())
        } else if views.iter().any(|v| v.health == Health::Up) {
            Health::Up
        } else {
            Health::Unknown { reason: evidence() }
        }
    }

    /// The name written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Combine::All => "all",
            Combine::Any => "any",
            Combine::Quorum => "quorum",
        }
    }
}

/// A [`Monitor`] made of several, each asked concurrently with its own time limit.
///
/// The observation fails only when every monitor's failed; otherwise a failed monitor is `Unknown` for
/// every host the others list (marked `failed` in its views, so the engine can report it).
pub struct CombinedMonitor {
    monitors: Vec<(String, Arc<dyn Monitor>)>,
    combine: Combine,
    timeout: Duration,
}

impl CombinedMonitor {
    /// Combines `monitors` (named, in configuration order) as `combine` says; each observation is given
    /// `timeout` (keep it below the runtime's call timeout, so one slow monitor is unknown rather than the
    /// whole observation failing).
    pub fn new(
        monitors: Vec<(String, Arc<dyn Monitor>)>,
        combine: Combine,
        timeout: Duration,
    ) -> Self {
        Self {
            monitors,
            combine,
            timeout,
        }
    }

    /// The names of the combined monitors, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.monitors.iter().map(|(n, _)| n.as_str())
    }

    /// Combines what each monitor returned (in the order of `self.monitors`).
    fn combine(&self, results: Vec<Result<Vec<HostHealth>>>) -> Result<Vec<HostHealth>> {
        if results.iter().all(Result::is_err) {
            let lines: Vec<String> = self
                .monitors
                .iter()
                .zip(&results)
                .filter_map(|((name, _), r)| r.as_ref().err().map(|e| format!("{name}: {e}")))
                .collect();
            let kind = results
                .iter()
                .find_map(|r| r.as_ref().err().map(Error::kind))
                .unwrap_or(ErrorKind::Unexpected);
            return Err(
                Error::new(kind, format!("every monitor failed:\n{}", lines.join("\n")))
                    .temporary(),
            );
        }
        // Per host: the admin state (merged) and the views of the monitors that list it.
        let mut hosts: BTreeMap<HostId, (AdminState, Vec<MonitorView>)> = BTreeMap::new();
        let mut failed: Vec<(&str, String)> = Vec::new();
        for ((name, _), result) in self.monitors.iter().zip(results) {
            match result {
                Ok(seen) => {
                    for h in seen {
                        let entry = hosts.entry(h.host).or_default();
                        merge_admin(&mut entry.0, h.admin);
                        entry.1.push(MonitorView {
                            monitor: name.clone(),
                            health: h.health,
                            failed: false,
                        });
                    }
                }
                Err(e) => failed.push((name, e.to_string())),
            }
        }
        Ok(hosts
            .into_iter()
            .map(|(host, (admin, mut views))| {
                views.extend(failed.iter().map(|(name, e)| MonitorView {
                    monitor: (*name).to_owned(),
                    health: Health::Unknown {
                        reason: format!("observation failed: {e}"),
                    },
                    failed: true,
                }));
                self.order(&mut views);
                HostHealth {
                    health: self.combine.verdict(&views),
                    host,
                    admin,
                    views,
                }
            })
            .collect())
    }

    /// Views in configuration order, whatever order they were gathered in.
    fn order(&self, views: &mut [MonitorView]) {
        views.sort_by_key(|v| self.monitors.iter().position(|(n, _)| *n == v.monitor));
    }
}

/// The administrative state as the most cautious reading of every monitor that reports one (only Nova's
/// does): disabled or forced down if any says so, with the first reason given.
fn merge_admin(into: &mut AdminState, other: AdminState) {
    into.disabled |= other.disabled;
    into.forced_down |= other.forced_down;
    if into.disabled_reason.is_none() {
        into.disabled_reason = other.disabled_reason;
    }
}

#[async_trait]
impl Monitor for CombinedMonitor {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        let asks = self.monitors.iter().map(|(name, m)| async move {
            match tokio::time::timeout(self.timeout, m.observe()).await {
                Ok(r) => r,
                Err(_) => Err(Error::no_answer(format!("monitor {name}"), self.timeout)),
            }
        });
        let results = join_all(asks).await;
        self.combine(results)
    }

    async fn healthcheck(&self) -> Result<()> {
        let checks = self.monitors.iter().map(|(name, m)| async move {
            m.healthcheck()
                .await
                .map_err(|e| Error::new(e.kind(), format!("monitor {name}: {e}")))
        });
        let failures: Vec<Error> = join_all(checks)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect();
        Error::from_checks("monitors failed", self.monitors.len(), failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A monitor that answers what it is told to, after `delay`.
    struct Scripted {
        answer: Result<Vec<HostHealth>>,
        delay: Duration,
    }

    #[async_trait]
    impl Monitor for Scripted {
        async fn observe(&self) -> Result<Vec<HostHealth>> {
            tokio::time::sleep(self.delay).await;
            match &self.answer {
                Ok(hosts) => Ok(hosts.clone()),
                Err(e) => Err(Error::new(e.kind(), e.message())),
            }
        }
    }

    fn sees(hosts: &[(&str, Health)]) -> Arc<dyn Monitor> {
        Arc::new(Scripted {
            answer: Ok(hosts
                .iter()
                .map(|(h, health)| HostHealth::new(*h, health.clone()))
                .collect()),
            delay: Duration::ZERO,
        })
    }

    fn fails() -> Arc<dyn Monitor> {
        Arc::new(Scripted {
            answer: Err(Error::new(ErrorKind::Unreachable, "connection refused")),
            delay: Duration::ZERO,
        })
    }

    fn down() -> Health {
        Health::down("dead")
    }

    fn unknown() -> Health {
        Health::Unknown {
            reason: "stale".into(),
        }
    }

    fn combined(mode: Combine, monitors: Vec<(&str, Arc<dyn Monitor>)>) -> CombinedMonitor {
        CombinedMonitor::new(
            monitors
                .into_iter()
                .map(|(n, m)| (n.to_owned(), m))
                .collect(),
            mode,
            Duration::from_millis(200),
        )
    }

    fn view(monitor: &str, health: Health) -> MonitorView {
        MonitorView {
            monitor: monitor.into(),
            health,
            failed: false,
        }
    }

    #[test]
    fn each_mode_decides_as_documented() {
        let (u, d, x) = (Health::Up, down(), unknown());
        // (views, all, any, quorum): true = down.
        let table: [(&[Health], bool, bool, bool); 7] = [
            (std::slice::from_ref(&d), true, true, true),
            (&[d.clone(), d.clone()], true, true, true),
            (&[d.clone(), u.clone()], false, true, false),
            (&[d.clone(), x.clone()], false, true, false),
            (&[d.clone(), d.clone(), u.clone()], false, true, true),
            (&[d.clone(), x.clone(), x.clone()], false, true, false),
            (&[x.clone(), x.clone()], false, false, false),
        ];
        for (healths, all, any, quorum) in table {
            let views: Vec<MonitorView> = healths
                .iter()
                .enumerate()
                .map(|(i, h)| view(&format!("m{i}"), h.clone()))
                .collect();
            for (mode, want) in [
                (Combine::All, all),
                (Combine::Any, any),
                (Combine::Quorum, quorum),
            ] {
                assert_eq!(
                    mode.verdict(&views).is_down(),
                    want,
                    "{mode:?} of {healths:?}"
                );
            }
        }
        assert_eq!(
            Combine::All.verdict(&[]),
            Health::Unknown {
                reason: String::new()
            }
        );
        assert_eq!(
            Combine::All.verdict(&[view("a", u.clone()), view("b", x)]),
            Health::Up,
            "not down, and one says up"
        );
    }

    #[tokio::test]
    async fn only_the_monitors_that_know_a_host_have_a_say() {
        let m = combined(
            Combine::All,
            vec![
                ("nova", sees(&[("c1", down()), ("c2", down())])),
                ("tcp", sees(&[("c1", Health::Up)])),
            ],
        );
        let seen = m.observe().await.unwrap();
        assert_eq!(seen.len(), 2);
        assert!(!seen[0].health.is_down(), "c1: tcp answers");
        assert!(seen[0].disputed());
        assert!(seen[1].health.is_down(), "c2: only nova knows it");
        assert_eq!(seen[1].views.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_or_slow_monitor_is_unknown_for_every_host_and_marked_failed() {
        let slow = Arc::new(Scripted {
            answer: Ok(vec![HostHealth::new("c1", down())]),
            delay: Duration::from_secs(5),
        });
        let m = combined(
            Combine::All,
            vec![
                ("nova", sees(&[("c1", down())])),
                ("tcp", fails()),
                ("slow", slow),
            ],
        );
        let seen = m.observe().await.unwrap();
        let [c1] = seen.as_slice() else {
            panic!("{seen:?}")
        };
        assert!(matches!(c1.health, Health::Unknown { .. }), "{c1:?}");
        let names: Vec<(&str, bool)> = c1
            .views
            .iter()
            .map(|v| (v.monitor.as_str(), v.failed))
            .collect();
        assert_eq!(names, [("nova", false), ("tcp", true), ("slow", true)]);
        assert!(
            c1.views[1].to_string().contains("connection refused"),
            "{c1:?}"
        );
        assert!(
            c1.views[2]
                .to_string()
                .contains("monitor slow: no answer within"),
            "{c1:?}"
        );
        assert!(
            !c1.disputed(),
            "a failure is reported as such, not as a dispute"
        );
    }

    #[tokio::test]
    async fn the_observation_fails_only_when_every_monitor_failed() {
        let m = combined(Combine::Any, vec![("a", fails()), ("b", fails())]);
        let e = m.observe().await.unwrap_err();
        assert!(e.is_temporary());
        assert!(
            e.to_string().contains("a: ") && e.to_string().contains("b: "),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_admin_state_is_the_most_cautious_reading() {
        let nova = Arc::new(Scripted {
            answer: Ok(vec![HostHealth {
                admin: AdminState {
                    disabled: true,
                    disabled_reason: Some("maintenance".into()),
                    forced_down: false,
                },
                ..HostHealth::new("c1", Health::Up)
            }]),
            delay: Duration::ZERO,
        });
        let m = combined(
            Combine::All,
            vec![("tcp", sees(&[("c1", Health::Up)])), ("nova", nova)],
        );
        let seen = m.observe().await.unwrap();
        assert!(seen[0].admin.disabled_by_operator(), "{seen:?}");
    }
}
