//! The runtime's window for operators' tools: an [`Observer`] is told, at each loop turn, where the
//! daemon stands ([`Status`], a read-only snapshot) and, as they happen, what it did ([`Event`]: a
//! driver call, a host changing stage, a fencing's result, an instance's evacuation ending, the drain).
//!
//! The runtime knows neither systemd nor Prometheus: a binary attaches observers (the CLI: a systemd
//! notifier, the metrics endpoint) with [`crate::Runtime::observer`]. Observers are called from the loop
//! itself, so a hung loop stops calling them — what a watchdog needs; they must return at once (no I/O
//! that can block: record and leave).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::engine::{Changes, Engine, HostRecord, Stage};
use crate::journal::OutboxEntry;
use crate::registry::Kind;
use crate::{ErrorKind, HostId, Timestamp};

/// Told what the runtime does. Every method has an empty default; implement the ones you need.
pub trait Observer: Send + Sync {
    /// One loop turn ended (at least once a second while the daemon runs, and after each observation).
    fn turn(&self, status: &Status) {
        let _ = status;
    }

    /// Something happened. The engine's decisions are told once their turn's commit is done; what a turn
    /// of read answers only changed (an evacuation read done, a power status read off) is told at once,
    /// and its commit follows within half a second ([`Event::Commit`] with `write_ahead: false`).
    fn event(&self, event: &Event) {
        let _ = event;
    }
}

/// Where the daemon stands, as of one loop turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Status {
    /// When (the runtime's clock).
    pub at: Timestamp,
    /// Successful observations since this runtime started.
    pub observations: u64,
    /// The last successful observation.
    pub last_observation: Option<Timestamp>,
    /// Consecutive failed observations (0: the last one succeeded).
    pub observation_failures: u32,
    /// A storm episode is on: nothing is fenced.
    pub storm: bool,
    /// The operators' brake, with its reason.
    pub paused: Option<String>,
    /// Every host looked stale at once (the data source is suspect): nothing is fenced.
    pub all_stale: bool,
    /// Hosts known, by stage name ([`Stage::name`]); every stage is present, with 0 when empty.
    pub stages: BTreeMap<&'static str, usize>,
    /// Hosts between fencing and their return to service ([`Stage::in_recovery`]).
    pub in_recovery: Vec<HostId>,
    /// Reports waiting in the outbox (one entry per report and notifier).
    pub outbox: usize,
    /// The time of the oldest report waiting in the outbox.
    pub outbox_oldest: Option<Timestamp>,
    /// Shutting down: in-flight calls are drained, nothing new starts.
    pub draining: bool,
    /// A dry run: nothing is changed.
    pub dry_run: bool,
    /// HA mode: set by whoever runs the election around the runtime (the runtime does not know it).
    pub ha: Option<HaRole>,
}

/// A process's place in an HA election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HaRole {
    /// Leading: this process acts.
    Leader {
        /// Time left on its lease (its local deadline), if known.
        lease_remaining: Option<Duration>,
    },
    /// Standing by: another process leads (or nobody yet).
    Standby {
        /// Its election lease is alive (etcd answers): it can take over.
        healthy: bool,
    },
}

/// Every stage's name, in recovery order (zeros included in [`Status::stages`]).
pub const STAGES: [&str; 9] = [
    "healthy",
    "suspect",
    "fencing",
    "verifying",
    "isolating",
    "evacuating",
    "evacuated",
    "restoring",
    "needs_operator",
];

impl Status {
    /// The status of a process that stands by in an election (no runtime runs: nothing is observed).
    pub fn standby(at: Timestamp, healthy: bool) -> Self {
        Self {
            at,
            stages: STAGES.iter().map(|s| (*s, 0)).collect(),
            ha: Some(HaRole::Standby { healthy }),
            ..Self::default()
        }
    }

    /// Observing works: at least one observation succeeded and the last one did.
    pub fn observing(&self) -> bool {
        self.observations > 0 && self.observation_failures == 0
    }

    /// Hosts waiting for a person.
    pub fn needs_operator(&self) -> usize {
        self.stages.get("needs_operator").copied().unwrap_or(0)
    }

    /// One line for an operator: `standby`, or hosts observed and in recovery, then any refusal.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match &self.ha {
            Some(HaRole::Standby { healthy: true }) => {
                return "standby (HA): another freezer-dr leads".into();
            }
            Some(HaRole::Standby { healthy: false }) => {
                return "standby (HA): not in the election (etcd unreachable?)".into();
            }
            Some(HaRole::Leader { .. }) => parts.push("leader (HA)".to_owned()),
            None => {}
        }
        if self.draining {
            parts.push("stopping: draining in-flight calls".into());
        }
        if self.observations == 0 && self.observation_failures == 0 {
            parts.push("starting: first observation pending".into());
        } else {
            let hosts: usize = self.stages.values().sum();
            let mut line = format!("{hosts} hosts observed");
            if self.in_recovery.is_empty() {
                line.push_str(", none in recovery");
            } else {
                let names: Vec<&str> = self.in_recovery.iter().map(HostId::as_str).collect();
                line.push_str(&format!(
                    ", {} in recovery ({})",
                    names.len(),
                    shorten(&names)
                ));
            }
            parts.push(line);
        }
        let waiting = self.needs_operator();
        if waiting > 0 {
            parts.push(format!("{waiting} need an operator"));
        }
        if self.observation_failures > 0 {
            parts.push(format!(
                "OBSERVATION FAILING ({} in a row)",
                self.observation_failures
            ));
        }
        if self.storm {
            parts.push("STORM: not fencing".into());
        }
        if self.all_stale {
            parts.push("ALL STALE: not fencing".into());
        }
        if let Some(why) = &self.paused {
            parts.push(format!("BRAKE ON: {why}"));
        }
        if self.dry_run {
            parts.push("dry run".into());
        }
        parts.join("; ")
    }
}

/// At most three names, then how many more: a status line stays one short line.
fn shorten(names: &[&str]) -> String {
    if names.len() <= 3 {
        return names.join(", ");
    }
    format!("{}, +{} more", names[..3].join(", "), names.len() - 3)
}

/// Something the runtime did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// One driver call ended (each attempt of a retried call is one).
    Call(Call),
    /// A host changed stage (`from` is `None` for a host seen for the first time).
    Stage {
        /// The host.
        host: HostId,
        /// The stage it left.
        from: Option<Stage>,
        /// The stage it entered.
        to: Stage,
        /// How long it was in `from`.
        spent: Duration,
    },
    /// A fencing level ended for a host.
    Fencing {
        /// The level (`None`: an operator confirmed the host off).
        level: Option<usize>,
        /// How.
        result: FencingResult,
    },
    /// An instance's evacuation ended ([`crate::engine::InstanceState::name`] of its final state: `done`, `failed`,
    /// `skipped`, `gone`).
    Evacuation {
        /// The final state's name.
        result: &'static str,
    },
    /// The journal made a commit durable (the runtime's own writes; not the CLI's requests).
    Commit {
        /// How long the journal took to write it, from the request to its answer (wall clock).
        took: Duration,
        /// Commands waited for it (write-ahead: a command that changes the cloud, a report, an
        /// operator's request); `false`: it carried only changes read answers made, journaled late
        /// (within half a second) or as the runtime returned.
        write_ahead: bool,
    },
    /// Shutting down: in-flight calls are drained from now on.
    Stopping,
}

/// How a fencing level ended for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FencingResult {
    /// Its power status read off: the host is fenced.
    Confirmed,
    /// An operator asserted it is off (`confirm-off`).
    OperatorConfirmed,
    /// The level could not power it off or prove it (the next level is tried, or an operator paged).
    Failed,
}

impl FencingResult {
    /// `confirmed`, `operator_confirmed`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::OperatorConfirmed => "operator_confirmed",
            Self::Failed => "failed",
        }
    }
}

/// One driver call, as the observers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The driver's role.
    pub role: Kind,
    /// Its place in its role's list (fencing level, notifier index; 0 for the single roles).
    pub index: usize,
    /// The trait method: `observe`, `power_off`, `power_status`, `isolate`, `instances`, `evacuate`,
    /// `progress`, `start`, `restore`, `recipients`, `notify`.
    pub operation: &'static str,
    /// How long it took.
    pub took: Duration,
    /// Its error's kind, if it failed; a call abandoned before it answered (the runtime's timeout,
    /// shutdown) counts as [`ErrorKind::Timeout`].
    pub error: Option<ErrorKind>,
}

/// The observers of one runtime, and what it takes to tell them (cheap to clone).
#[derive(Clone, Default)]
pub(crate) struct Observers(Arc<[Arc<dyn Observer>]>);

impl Observers {
    pub(crate) fn new(list: Vec<Arc<dyn Observer>>) -> Self {
        Self(list.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn event(&self, event: &Event) {
        for o in self.0.iter() {
            o.event(event);
        }
    }

    fn turn(&self, status: &Status) {
        for o in self.0.iter() {
            o.turn(status);
        }
    }
}

/// What the outbox deliverer last saw: entries by key with their report's time.
#[derive(Clone, Default)]
pub(crate) struct OutboxGauge(Arc<Mutex<BTreeMap<String, Timestamp>>>);

impl OutboxGauge {
    /// The outbox as just read.
    pub(crate) fn read(&self, entries: &[OutboxEntry]) {
        if let Ok(mut m) = self.0.lock() {
            *m = entries
                .iter()
                .map(|e| (e.key.clone(), e.report.at))
                .collect();
        }
    }

    /// New entries, just committed.
    pub(crate) fn added(&self, entries: &[OutboxEntry]) {
        if let Ok(mut m) = self.0.lock() {
            m.extend(entries.iter().map(|e| (e.key.clone(), e.report.at)));
        }
    }

    /// An entry delivered (and recorded).
    pub(crate) fn done(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }

    fn depth(&self) -> (usize, Option<Timestamp>) {
        self.0
            .lock()
            .map(|m| (m.len(), m.values().min().copied()))
            .unwrap_or_default()
    }
}

/// The runtime's side of its observers: the stages and instance states last told (to find what
/// changed in a commit), the observation counters and the outbox gauge.
pub(crate) struct Watch {
    pub(crate) observers: Observers,
    pub(crate) outbox: OutboxGauge,
    stages: HashMap<HostId, (Stage, Timestamp)>,
    instances: HashMap<(HostId, String), bool>,
    observations: u64,
    last_observation: Option<Timestamp>,
    dry_run: bool,
}

impl Watch {
    pub(crate) fn new(observers: Observers, engine: &Engine, dry_run: bool) -> Self {
        let mut w = Self {
            observers,
            outbox: OutboxGauge::default(),
            stages: HashMap::new(),
            instances: HashMap::new(),
            observations: 0,
            last_observation: None,
            dry_run,
        };
        for h in engine.hosts() {
            w.remember(h);
        }
        w
    }

    fn remember(&mut self, h: &HostRecord) {
        self.stages
            .insert(h.host.clone(), (h.stage.clone(), h.since));
        for (id, i) in &h.instances {
            self.instances
                .insert((h.host.clone(), id.clone()), i.state.is_terminal());
        }
    }

    /// An observation's result arrived.
    pub(crate) fn observed(&mut self, ok: bool, now: Timestamp) {
        if ok {
            self.observations += 1;
            self.last_observation = Some(now);
        }
    }

    /// The events in `changes` (hosts that changed stage, fencings and evacuations that ended), to be
    /// told after the turn's commit, or at once when the turn's changes wait for a later one.
    pub(crate) fn changes(&mut self, changes: &Changes) -> Vec<Event> {
        let mut events = Vec::new();
        if self.observers.is_empty() {
            return events;
        }
        for h in &changes.hosts {
            let before = self.stages.get(&h.host).cloned();
            match before {
                Some((from, _)) if from == h.stage => {}
                before => {
                    let spent = before
                        .as_ref()
                        .map_or(Duration::ZERO, |(_, since)| h.since.since(*since));
                    let from = before.map(|(s, _)| s);
                    if let Some((level, result)) = fencing_result(from.as_ref(), &h.stage) {
                        events.push(Event::Fencing { level, result });
                    }
                    events.push(Event::Stage {
                        host: h.host.clone(),
                        from,
                        to: h.stage.clone(),
                        spent,
                    });
                    self.stages
                        .insert(h.host.clone(), (h.stage.clone(), h.since));
                }
            }
        }
        for (host, i) in &changes.instances {
            let key = (host.clone(), i.instance.id.clone());
            let terminal = i.state.is_terminal();
            let was = self.instances.insert(key, terminal).unwrap_or(false);
            if terminal && !was {
                events.push(Event::Evacuation {
                    result: i.state.name(),
                });
            }
        }
        for host in &changes.clear_instances {
            self.instances.retain(|(h, _), _| h != host);
        }
        events
    }

    /// Tells the observers where the daemon stands.
    pub(crate) fn turn(&self, engine: &Engine, now: Timestamp, draining: bool) {
        if self.observers.is_empty() {
            return;
        }
        let mut stages: BTreeMap<&'static str, usize> = STAGES.iter().map(|s| (*s, 0)).collect();
        let mut in_recovery = Vec::new();
        for h in engine.hosts() {
            *stages.entry(h.stage.name()).or_default() += 1;
            if h.stage.in_recovery() {
                in_recovery.push(h.host.clone());
            }
        }
        let meta = engine.meta();
        let (outbox, outbox_oldest) = self.outbox.depth();
        self.observers.turn(&Status {
            at: now,
            observations: self.observations,
            last_observation: self.last_observation,
            observation_failures: meta.observation_failures,
            storm: meta.storm_since.is_some(),
            paused: meta.paused.clone(),
            all_stale: meta.stale_alerted,
            stages,
            in_recovery,
            outbox,
            outbox_oldest,
            draining,
            dry_run: self.dry_run,
            ha: None,
        });
    }
}

/// The fencing result a stage change means, if any: a level left for isolation is a confirmed fence,
/// for the next level or an operator a failed one; isolation reached from `NeedsOperator` is an
/// operator's `confirm-off`.
fn fencing_result(from: Option<&Stage>, to: &Stage) -> Option<(Option<usize>, FencingResult)> {
    let level = match from? {
        Stage::Fencing { level, .. } | Stage::Verifying { level, .. } => Some(*level),
        Stage::NeedsOperator { .. } => None,
        _ => return None,
    };
    match (level, to) {
        (Some(l), Stage::Isolating { .. }) => Some((Some(l), FencingResult::Confirmed)),
        (None, Stage::Isolating { .. }) => Some((None, FencingResult::OperatorConfirmed)),
        (Some(l), Stage::Fencing { level: next, .. }) if *next != l => {
            Some((Some(l), FencingResult::Failed))
        }
        (Some(l), Stage::NeedsOperator { .. }) => Some((Some(l), FencingResult::Failed)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifying(level: usize) -> Stage {
        Stage::Verifying {
            level,
            deadline: Timestamp(0),
            next_poll: Timestamp(0),
            last: None,
        }
    }

    #[test]
    fn stage_changes_name_the_fencing_result_and_its_level() {
        let isolating = Stage::Isolating { isolated: false };
        let operator = Stage::NeedsOperator { why: "x".into() };
        let next = Stage::Fencing {
            level: 1,
            attempted: false,
        };
        assert_eq!(
            fencing_result(Some(&verifying(0)), &isolating),
            Some((Some(0), FencingResult::Confirmed))
        );
        assert_eq!(
            fencing_result(Some(&verifying(0)), &next),
            Some((Some(0), FencingResult::Failed))
        );
        assert_eq!(
            fencing_result(Some(&verifying(1)), &operator),
            Some((Some(1), FencingResult::Failed))
        );
        assert_eq!(
            fencing_result(Some(&operator), &isolating),
            Some((None, FencingResult::OperatorConfirmed))
        );
        // Accepted power-off, a host seen for the first time, a recovery going on: no result.
        let fencing0 = Stage::Fencing {
            level: 0,
            attempted: true,
        };
        assert_eq!(fencing_result(Some(&fencing0), &verifying(0)), None);
        assert_eq!(fencing_result(None, &Stage::Healthy), None);
        assert_eq!(fencing_result(Some(&isolating), &Stage::Evacuating), None);
    }

    #[test]
    fn the_summary_is_one_line_with_every_refusal() {
        let mut s = Status::standby(Timestamp(0), true);
        assert_eq!(s.summary(), "standby (HA): another freezer-dr leads");
        s.ha = None;
        assert_eq!(s.summary(), "starting: first observation pending");
        s.observations = 1;
        s.stages.insert("healthy", 4);
        s.stages.insert("needs_operator", 1);
        s.in_recovery = ["c1", "c2", "c3", "c4"].map(HostId::new).to_vec();
        s.storm = true;
        s.paused = Some("maintenance".into());
        s.observation_failures = 2;
        assert_eq!(
            s.summary(),
            "5 hosts observed, 4 in recovery (c1, c2, c3, +1 more); 1 need an operator; \
             OBSERVATION FAILING (2 in a row); STORM: not fencing; BRAKE ON: maintenance"
        );
        assert!(!s.observing());
    }
}
