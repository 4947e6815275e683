//! What the engine knows, as stored in the journal.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fence::{FenceRecord, Fenced};
use crate::{AdminState, Health, HostId, Instance, MonitorView, Timestamp};

/// Where a host stands in its recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Up, or down fewer times in a row than the strike count needs... or never seen down.
    Healthy,
    /// Observed down `strikes` times in a row.
    Suspect {
        /// Consecutive down observations.
        strikes: u32,
        /// The first of them.
        since: Timestamp,
    },
    /// Powering off through fencing level `level` (0-based index into `[[fencer]]`).
    Fencing {
        /// The level in use.
        level: usize,
        /// A power-off may already have been sent at this level (so after a crash the power status is
        /// read first instead of sending it again blindly).
        attempted: bool,
    },
    /// Power-off accepted; reading the power status until it reads off.
    Verifying {
        /// The level whose power-off was accepted.
        level: usize,
        /// Give this level up at this time.
        deadline: Timestamp,
        /// Next power-status read.
        next_poll: Timestamp,
        /// What the last read said.
        last: Option<String>,
    },
    /// Confirmed off; telling Nova the host is gone, then listing its instances.
    Isolating {
        /// `isolate` succeeded; the instance list is next.
        isolated: bool,
    },
    /// Evacuating the host's instances.
    Evacuating,
    /// Every evacuation ended; waiting for the repaired host to report up.
    Evacuated,
    /// Returning the host to service.
    Restoring,
    /// Recovery stopped; a person must act (`freezer-dr recover` / `confirm-off`).
    NeedsOperator {
        /// Why, in plain words.
        why: String,
    },
}

impl Stage {
    /// A short name for logs, `status` and the history.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Suspect { .. } => "suspect",
            Self::Fencing { .. } => "fencing",
            Self::Verifying { .. } => "verifying",
            Self::Isolating { .. } => "isolating",
            Self::Evacuating => "evacuating",
            Self::Evacuated => "evacuated",
            Self::Restoring => "restoring",
            Self::NeedsOperator { .. } => "needs_operator",
        }
    }

    /// True from `Fencing` until the host is healthy again (what the storm budget counts).
    pub fn in_recovery(&self) -> bool {
        !matches!(self, Self::Healthy | Self::Suspect { .. })
    }

    /// True at a stage the engine drives on by itself: in recovery, and not parked at `Evacuated` (waiting
    /// for the host to come up) or `NeedsOperator`.
    pub fn under_way(&self) -> bool {
        self.in_recovery() && !matches!(self, Self::Evacuated | Self::NeedsOperator { .. })
    }
}

/// A host and its recovery.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host.
    pub host: HostId,
    /// Its stage.
    pub stage: Stage,
    /// When it entered the stage.
    pub since: Timestamp,
    /// Last observed health.
    pub health: Health,
    /// Last observed administrative state.
    pub admin: AdminState,
    /// The current recovery's id (`<host>@<time>`), if one is under way.
    pub recovery: Option<String>,
    /// Set once the host is confirmed off; cleared when it is healthy again.
    pub fence: Option<FenceRecord>,
    /// Consecutive temporary failures of the current host-level step.
    pub failures: u32,
    /// Consecutive observations reporting the host up again while `Evacuated` (it is returned to service
    /// only after as many as the strike count: one stray heartbeat is not a repair).
    #[serde(default)]
    pub up_streak: u32,
    /// Consecutive observations reporting the host down again while `Restoring` (after as many as the
    /// strike count it is fenced again).
    #[serde(default)]
    pub down_streak: u32,
    /// Since when the monitors no longer list it (decommissioned, renamed), if they do not.
    #[serde(default)]
    pub absent_since: Option<Timestamp>,
    /// When several monitors are combined: each one's last view of the host (empty with one monitor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<MonitorView>,
    /// Consecutive observations in which a combined monitor said down but the verdict did not (a dead
    /// `nova-compute` on a host that still answers).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disputed: u32,
    /// Since when, in this episode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disputed_since: Option<Timestamp>,
    /// The operators were told about this episode (once it lasted the strike count and
    /// `[recovery.monitors] disagreement_after`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dispute_told: bool,
    /// Do not retry the current host-level step before this time.
    pub retry_at: Option<Timestamp>,
    /// The recovery's timeline, for the reports.
    pub timeline: Vec<(Timestamp, String)>,
    /// Instances being evacuated, by id (stored separately in the journal).
    #[serde(skip)]
    pub instances: BTreeMap<String, InstanceRecord>,
    /// The host-level call in flight (never stored: after a restart nothing is in flight).
    #[serde(skip)]
    pub(crate) pending: Option<HostCall>,
}

impl HostRecord {
    /// Its fence proof, if its power-off was confirmed, held by the freezer-dr of journal `journal`.
    pub(crate) fn fenced(&self, journal: &str) -> Option<Fenced> {
        self.fence
            .as_ref()
            .map(|f| Fenced::from_record(&self.host, f, journal, &self.admin))
    }
}

impl HostRecord {
    /// A healthy host never seen down.
    pub fn new(host: HostId, now: Timestamp) -> Self {
        Self {
            host,
            stage: Stage::Healthy,
            since: now,
            health: Health::Unknown {
                reason: "not observed yet".into(),
            },
            admin: AdminState::default(),
            recovery: None,
            fence: None,
            failures: 0,
            up_streak: 0,
            down_streak: 0,
            absent_since: None,
            views: Vec::new(),
            disputed: 0,
            disputed_since: None,
            dispute_told: false,
            retry_at: None,
            timeline: Vec::new(),
            instances: BTreeMap::new(),
            pending: None,
        }
    }
}

/// Host-level calls (one in flight per host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostCall {
    PowerOff(usize),
    PowerStatus(usize),
    Isolate,
    Instances,
    Restore,
}

/// Where an instance stands in its evacuation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstanceState {
    /// To be evacuated (again) once a slot is free and `not_before` has passed.
    Pending {
        /// Earliest time for the next request.
        not_before: Timestamp,
    },
    /// An evacuation request was (or was about to be) sent. After a crash this is re-checked with a
    /// progress read before anything else.
    Requested {
        /// When.
        at: Timestamp,
    },
    /// Accepted; tracking it until it runs elsewhere.
    Rebuilding {
        /// When the request was accepted.
        since: Timestamp,
        /// Next progress read.
        next_poll: Timestamp,
        /// What the last read said.
        detail: String,
    },
    /// Rebuilt on another host but left stopped while it ran before: to be started (a journaled write),
    /// then tracked again.
    Starting {
        /// When the evacuation request was accepted (the timeout counts from there).
        since: Timestamp,
        /// Where it was rebuilt.
        on: HostId,
        /// Earliest time for the (next) start request.
        not_before: Timestamp,
    },
    /// Running (or back in its previous state) on another host.
    Done {
        /// The new host.
        host: HostId,
        /// Its status.
        status: String,
    },
    /// Given up.
    Failed {
        /// Why.
        reason: String,
    },
    /// Left alone by policy.
    Skipped {
        /// Which rule.
        reason: String,
    },
    /// Deleted meanwhile.
    Gone,
}

impl InstanceState {
    /// True once nothing more will be done for it.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Done { .. } | Self::Failed { .. } | Self::Skipped { .. } | Self::Gone
        )
    }

    /// True while it holds an evacuation slot.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            Self::Requested { .. } | Self::Rebuilding { .. } | Self::Starting { .. }
        )
    }

    /// A short name for logs and `status`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Pending { .. } => "pending",
            Self::Requested { .. } => "requested",
            Self::Rebuilding { .. } => "rebuilding",
            Self::Starting { .. } => "starting",
            Self::Done { .. } => "done",
            Self::Failed { .. } => "failed",
            Self::Skipped { .. } => "skipped",
            Self::Gone => "gone",
        }
    }
}

/// One instance of a host under recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The instance as listed on the failed host.
    pub instance: Instance,
    /// Its state.
    pub state: InstanceState,
    /// Evacuation requests sent so far.
    pub attempts: u32,
    /// Someone else (not this freezer-dr) evacuated it: tracked to its end, never requested again.
    #[serde(default)]
    pub by_other: bool,
    /// A call about it is in flight (never stored).
    #[serde(skip)]
    pub(crate) inflight: bool,
}

/// Engine-wide state: the brake and the refusal episodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineMeta {
    /// The operators' emergency brake: observe and report, never act.
    pub paused: Option<String>,
    /// A storm episode started at this time (no fencing until it calmed down for the cooldown).
    pub storm_since: Option<Timestamp>,
    /// The storm condition has been false since this time.
    pub calm_since: Option<Timestamp>,
    /// Consecutive failed observations.
    pub observation_failures: u32,
    /// The operators were told observation is failing.
    pub observation_alerted: bool,
    /// The operators were told every host looked stale.
    pub stale_alerted: bool,
    /// Hosts already reported as "would fence, but paused" in this pause.
    pub paused_reported: Vec<HostId>,
    /// Sequence of report ids.
    pub report_seq: u64,
    /// Combined monitors whose observation failed, with how many times in a row (the others still
    /// observe; the operators are told once it reaches the strike count).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub monitor_failures: BTreeMap<String, u32>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One line of the history (`freezer-dr history`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When.
    pub at: Timestamp,
    /// The host concerned, if any.
    pub host: Option<HostId>,
    /// The instance concerned, if any.
    pub instance: Option<String>,
    /// What happened.
    pub what: String,
}

/// What changed in one or more steps: the runtime writes it to the journal before executing the commands
/// those steps returned.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// Hosts whose record changed (without their instances).
    pub hosts: Vec<HostRecord>,
    /// Instances whose record changed.
    pub instances: Vec<(HostId, InstanceRecord)>,
    /// Hosts whose instance records are to be removed (recovery over).
    pub clear_instances: Vec<HostId>,
    /// The engine-wide state, if it changed.
    pub meta: Option<EngineMeta>,
    /// New history lines.
    pub history: Vec<HistoryEvent>,
}

impl Changes {
    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
            && self.instances.is_empty()
            && self.clear_instances.is_empty()
            && self.meta.is_none()
            && self.history.is_empty()
    }

    /// Adds the changes made after these, as if both had been taken at once: a host's instances cleared
    /// later drop the earlier records of them (a journal clears a batch's hosts before it writes the
    /// batch's instances), and the later record of a host or an instance comes after the earlier one
    /// (written in order, it wins; [`Changes::dedup`] drops the earlier).
    pub fn absorb(&mut self, later: Changes) {
        if !later.clear_instances.is_empty() {
            self.instances
                .retain(|(h, _)| !later.clear_instances.contains(h));
            for h in later.clear_instances {
                if !self.clear_instances.contains(&h) {
                    self.clear_instances.push(h);
                }
            }
        }
        self.hosts.extend(later.hosts);
        self.instances.extend(later.instances);
        if later.meta.is_some() {
            self.meta = later.meta;
        }
        self.history.extend(later.history);
    }

    /// Keeps only the newest record of each host and instance (after [`Changes::absorb`]), in the order
    /// they were last changed.
    pub fn dedup(&mut self) {
        fn newest<T, K: Eq + std::hash::Hash>(v: &mut Vec<T>, key: impl Fn(&T) -> K) {
            let mut seen = std::collections::HashSet::new();
            let keep: Vec<bool> = v.iter().rev().map(|x| seen.insert(key(x))).collect();
            let mut keep = keep.into_iter().rev();
            v.retain(|_| keep.next().unwrap_or(true));
        }
        newest(&mut self.hosts, |h| h.host.clone());
        newest(&mut self.instances, |(h, i)| {
            (h.clone(), i.instance.id.clone())
        });
    }
}

/// The whole engine state as loaded from the journal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The journal's stable id, created with it: it names this freezer-dr in its isolation markers, so a
    /// second one (its own journal) is told apart.
    pub journal_id: String,
    /// Engine-wide state.
    pub meta: EngineMeta,
    /// Every host record, with its instances.
    pub hosts: Vec<HostRecord>,
}

/// What an operator asked for on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum OperatorRequest {
    /// Emergency brake: observe and report, never fence, isolate, evacuate or restore.
    Pause {
        /// Why (shown in `status` and the reports).
        reason: String,
    },
    /// Release the brake.
    Resume,
    /// Recover a host known dead: fence it (still verified), isolate, evacuate. A host that was fenced
    /// before has its power read first (and is fenced again if on): an old proof is never reused.
    Recover {
        /// The host.
        host: HostId,
        /// Go ahead although the storm guard refuses to fence (the operators are told). Without it a
        /// recover during a storm, or one that would take the fenced hosts past the budget, is refused.
        #[serde(default)]
        despite_storm: bool,
    },
    /// Stop tracking a host's recovery (a decommissioned or renamed host the monitors no longer list): it
    /// no longer counts against the storm budget. Refused while a recovery of a listed host is under way.
    Forget {
        /// The host.
        host: HostId,
    },
    /// The operator asserts the host is off (no fencer can prove it); recovery continues from isolation.
    ConfirmOff {
        /// The host.
        host: HostId,
    },
}
