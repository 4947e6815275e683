//! The series, kept up to date by the runtime's [`Observer`] calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use freezer_dr_core::Timestamp;
use freezer_dr_core::config::Config;
use freezer_dr_core::registry::Kind;
use freezer_dr_core::runtime::{Event, FencingResult, HaRole, Observer, STAGES, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FencingLabels {
    result: String,
    level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommitLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    driver: String,
    role: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    #[prometheus(flatten)]
    call: CallLabels,
    kind: String,
}

/// Driver calls: 1 ms to about 9 minutes (a BMC or Nova call, timeouts included).
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 20))
}

/// Journal commits: 0.1 ms to about 52 s (a durable write on a fast disk, one stalled by a failing one).
fn commit_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

/// The `kind` label of a journal commit: commands waited for it, or it carried read answers only.
fn commit_kind(write_ahead: bool) -> &'static str {
    if write_ahead { "write_ahead" } else { "late" }
}

/// Recovery phases: 0.1 s to about 14 hours (a host waiting for its repair stays `evacuated` long).
fn phase_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 20))
}

/// Every series freezer-dr exports, and what the health endpoints answer from.
pub struct Metrics {
    registry: Registry,
    drivers: HashMap<(Kind, usize), String>,
    hosts: Family<StageLabel, Gauge>,
    fencings: Family<FencingLabels, Counter>,
    evacuations: Family<ResultLabel, Counter>,
    phases: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    storm: Gauge,
    brake: Gauge,
    observation_failing: Gauge,
    all_stale: Gauge,
    last_observation: FloatGauge,
    last_turn: FloatGauge,
    outbox: Gauge,
    outbox_oldest: FloatGauge,
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<CallLabels, Histogram, fn() -> Histogram>,
    commits: Family<CommitLabel, Histogram, fn() -> Histogram>,
    ha: Option<(Gauge, FloatGauge)>,
    last: Mutex<Option<Status>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The series of a daemon running `config`: its drivers are named by their `type` in the driver
    /// series (combined monitors by their types joined with `+`); `freezer_dr_leader` and the lease's time exist only with `[ha]`.
    pub fn new(config: &Config) -> Self {
        let mut drivers = HashMap::new();
        // Several monitors are observed as one (combined): named `nova+tcp`.
        let monitors: Vec<&str> = config
            .monitors
            .iter()
            .map(|m| m.type_name.as_str())
            .collect();
        drivers.insert((Kind::Monitor, 0), monitors.join("+"));
        let roles = [
            (Kind::Fencer, config.fencers.as_slice()),
            (Kind::Evacuator, std::slice::from_ref(&config.evacuator)),
            (Kind::Directory, config.directory.as_slice()),
            (Kind::Notifier, config.notifiers.as_slice()),
        ];
        for (kind, sections) in roles {
            for (i, s) in sections.iter().enumerate() {
                drivers.insert((kind, i), s.type_name.clone());
            }
        }
        Self::with_drivers(drivers, config.ha.is_some())
    }

    fn with_drivers(drivers: HashMap<(Kind, usize), String>, ha: bool) -> Self {
        let mut registry = Registry::with_prefix("freezer_dr");
        let m = Self {
            drivers,
            hosts: Family::default(),
            fencings: Family::default(),
            evacuations: Family::default(),
            phases: Family::new_with_constructor(phase_buckets),
            storm: Gauge::default(),
            brake: Gauge::default(),
            observation_failing: Gauge::default(),
            all_stale: Gauge::default(),
            last_observation: FloatGauge::default(),
            last_turn: FloatGauge::default(),
            outbox: Gauge::default(),
            outbox_oldest: FloatGauge::default(),
            calls: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(call_buckets),
            commits: Family::new_with_constructor(commit_buckets),
            ha: ha.then(|| (Gauge::default(), FloatGauge::default())),
            last: Mutex::new(None),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("hosts", "Hosts known, by recovery stage", m.hosts.clone());
        r.register(
            "fencings",
            "Fencing levels ended, by result (confirmed, operator_confirmed, failed) and level",
            m.fencings.clone(),
        );
        r.register(
            "evacuations",
            "Instance evacuations ended, by result (done, failed, skipped, gone)",
            m.evacuations.clone(),
        );
        r.register_with_unit(
            "recovery_phase_duration",
            "Time hosts spent in each recovery stage they left",
            Unit::Seconds,
            m.phases.clone(),
        );
        r.register(
            "storm",
            "1 while a storm episode holds all fencing",
            m.storm.clone(),
        );
        r.register(
            "brake",
            "1 while the operators' brake is on",
            m.brake.clone(),
        );
        r.register(
            "observation_failing",
            "1 while the last observation failed",
            m.observation_failing.clone(),
        );
        r.register(
            "all_stale",
            "1 while every host looked stale at once (the data source is suspect)",
            m.all_stale.clone(),
        );
        r.register_with_unit(
            "last_observation_timestamp",
            "When the last successful observation ended (Unix time)",
            Unit::Seconds,
            m.last_observation.clone(),
        );
        r.register_with_unit(
            "last_loop_turn_timestamp",
            "When the daemon's loop last turned (Unix time)",
            Unit::Seconds,
            m.last_turn.clone(),
        );
        r.register(
            "outbox_entries",
            "Reports waiting for delivery (one entry per report and notifier)",
            m.outbox.clone(),
        );
        r.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest report waiting for delivery (0 when empty)",
            Unit::Seconds,
            m.outbox_oldest.clone(),
        );
        r.register(
            "driver_calls",
            "Driver calls made, by driver type, role and operation",
            m.calls.clone(),
        );
        r.register(
            "driver_errors",
            "Driver calls failed, by driver type, role, operation and error kind",
            m.errors.clone(),
        );
        r.register_with_unit(
            "driver_call_duration",
            "Driver call latency, by driver type, role and operation",
            Unit::Seconds,
            m.latency.clone(),
        );
        r.register_with_unit(
            "journal_commit_duration",
            "Time the journal took to make one commit durable, by kind (write_ahead: commands waited \
             for it; late: it carried read answers only)",
            Unit::Seconds,
            m.commits.clone(),
        );
        if let Some((leader, lease)) = &m.ha {
            r.register(
                "leader",
                "1 while this process leads its HA election",
                leader.clone(),
            );
            r.register_with_unit(
                "lease_remaining",
                "Time left on this process's election lease (0 without one)",
                Unit::Seconds,
                lease.clone(),
            );
        }
        // Counters exist from the start at 0, so the first increment shows in `increase()`.
        let levels = m.drivers.keys().filter(|(k, _)| *k == Kind::Fencer).count();
        for level in 0..levels {
            for result in [FencingResult::Confirmed, FencingResult::Failed] {
                let _ = m.fencings.get_or_create(&FencingLabels {
                    result: result.as_str().into(),
                    level: level.to_string(),
                });
            }
        }
        let _ = m.fencings.get_or_create(&FencingLabels {
            result: FencingResult::OperatorConfirmed.as_str().into(),
            level: "operator".into(),
        });
        for result in ["done", "failed", "skipped", "gone"] {
            let _ = m.evacuations.get_or_create(&ResultLabel {
                result: result.into(),
            });
        }
        for write_ahead in [true, false] {
            let _ = m.commits.get_or_create(&CommitLabel {
                kind: commit_kind(write_ahead).into(),
            });
        }
        for stage in STAGES {
            let _ = m.hosts.get_or_create(&StageLabel {
                stage: stage.into(),
            });
        }
        Self { registry, ..m }
    }

    /// The Prometheus text format of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The last status told, if any.
    pub fn last_status(&self) -> Option<Status> {
        self.last.lock().ok().and_then(|s| s.clone())
    }

    fn driver(&self, kind: Kind, index: usize) -> String {
        self.drivers
            .get(&(kind, index))
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }
}

fn seconds(t: Timestamp) -> f64 {
    // Milliseconds since the epoch fit an f64 exactly for the next 280,000 years.
    t.as_millis() as f64 / 1000.0
}

fn flag(g: &Gauge, on: bool) {
    g.set(i64::from(on));
}

impl Observer for Metrics {
    fn turn(&self, status: &Status) {
        for (stage, n) in &status.stages {
            self.hosts
                .get_or_create(&StageLabel {
                    stage: (*stage).into(),
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
        flag(&self.storm, status.storm);
        flag(&self.brake, status.paused.is_some());
        flag(&self.observation_failing, status.observation_failures > 0);
        flag(&self.all_stale, status.all_stale);
        if let Some(t) = status.last_observation {
            self.last_observation.set(seconds(t));
        }
        self.last_turn.set(seconds(status.at));
        self.outbox
            .set(i64::try_from(status.outbox).unwrap_or(i64::MAX));
        let age = status
            .outbox_oldest
            .map_or(Duration::ZERO, |t| status.at.since(t));
        self.outbox_oldest.set(age.as_secs_f64());
        if let Some((leader, lease)) = &self.ha {
            let (leads, left) = match &status.ha {
                Some(HaRole::Leader { lease_remaining }) => {
                    (true, lease_remaining.unwrap_or_default())
                }
                _ => (false, Duration::ZERO),
            };
            flag(leader, leads);
            lease.set(left.as_secs_f64());
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(status.clone());
        }
    }

    fn event(&self, event: &Event) {
        match event {
            Event::Call(c) => {
                let labels = CallLabels {
                    driver: self.driver(c.role, c.index),
                    role: c.role.as_str().into(),
                    operation: c.operation.into(),
                };
                self.calls.get_or_create(&labels).inc();
                self.latency
                    .get_or_create(&labels)
                    .observe(c.took.as_secs_f64());
                if let Some(kind) = c.error {
                    self.errors
                        .get_or_create(&ErrorLabels {
                            call: labels,
                            kind: kind.as_str().into(),
                        })
                        .inc();
                }
            }
            Event::Stage {
                from: Some(from),
                spent,
                ..
            } if from.in_recovery() || from.name() == "suspect" => {
                self.phases
                    .get_or_create(&PhaseLabel {
                        phase: from.name().into(),
                    })
                    .observe(spent.as_secs_f64());
            }
            Event::Fencing { level, result } => {
                self.fencings
                    .get_or_create(&FencingLabels {
                        result: result.as_str().into(),
                        level: level.map_or_else(|| "operator".into(), |l| l.to_string()),
                    })
                    .inc();
            }
            Event::Evacuation { result } => {
                self.evacuations
                    .get_or_create(&ResultLabel {
                        result: (*result).into(),
                    })
                    .inc();
            }
            Event::Commit { took, write_ahead } => {
                self.commits
                    .get_or_create(&CommitLabel {
                        kind: commit_kind(*write_ahead).into(),
                    })
                    .observe(took.as_secs_f64());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use freezer_dr_core::ErrorKind;
    use freezer_dr_core::runtime::Call;

    #[test]
    fn a_failed_call_is_counted_by_driver_role_operation_and_error_kind() {
        let m = Metrics::with_drivers(HashMap::from([((Kind::Fencer, 0), "ipmi".into())]), false);
        m.event(&Event::Call(Call {
            role: Kind::Fencer,
            index: 0,
            operation: "power_off",
            took: Duration::from_millis(5),
            error: Some(ErrorKind::Timeout),
        }));
        let text = m.encode();
        assert!(
            text.contains(
                "freezer_dr_driver_errors_total{driver=\"ipmi\",role=\"fencer\",operation=\"power_off\",kind=\"timeout\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "freezer_dr_driver_calls_total{driver=\"ipmi\",role=\"fencer\",operation=\"power_off\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn journal_commits_are_timed_by_kind_and_both_kinds_exist_from_the_start() {
        let m = Metrics::with_drivers(HashMap::new(), false);
        let text = m.encode();
        for kind in ["write_ahead", "late"] {
            assert!(
                text.contains(&format!(
                    "freezer_dr_journal_commit_duration_seconds_count{{kind=\"{kind}\"}} 0\n"
                )),
                "{text}"
            );
        }
        m.event(&Event::Commit {
            took: Duration::from_micros(700),
            write_ahead: true,
        });
        m.event(&Event::Commit {
            took: Duration::from_millis(3),
            write_ahead: false,
        });
        m.event(&Event::Commit {
            took: Duration::from_millis(2),
            write_ahead: true,
        });
        let text = m.encode();
        for line in [
            "freezer_dr_journal_commit_duration_seconds_count{kind=\"write_ahead\"} 2\n",
            "freezer_dr_journal_commit_duration_seconds_sum{kind=\"write_ahead\"} 0.0027\n",
            "freezer_dr_journal_commit_duration_seconds_count{kind=\"late\"} 1\n",
            // 0.7 ms falls in the 0.8 ms bucket (0.1 ms doubled), not in the 0.4 ms one.
            "freezer_dr_journal_commit_duration_seconds_bucket{kind=\"write_ahead\",le=\"0.0004\"} 0\n",
            "freezer_dr_journal_commit_duration_seconds_bucket{kind=\"write_ahead\",le=\"0.0008\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
