//! Reports: what the operators and the affected users are told.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{HostId, Instance, Timestamp};

/// A person to notify about a project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Recipient {
    /// Identity-service user id.
    pub user_id: String,
    /// User name.
    pub name: String,
    /// Email address, if the user has one.
    pub email: Option<String>,
}

/// Who a report is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Only the operators (alerts, refusals, digests).
    Operators,
    /// The operators, and the users of every project with an instance in the report.
    OperatorsAndUsers,
}

/// What a report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportKind {
    /// A host was confirmed off and isolated; its instances (listed, with what the policy decided for each)
    /// are being evacuated.
    HostFenced,
    /// Every evacuation from a host ended; the report lists each instance's outcome.
    Recovered,
    /// A repaired host was returned to service.
    Restored,
    /// Recovery of a host stopped and needs a person (fence not confirmed, no fencer, ...).
    NeedsOperator,
    /// Too many hosts down at once: nothing was fenced.
    Storm,
    /// The monitor could not observe: nothing was decided.
    ObservationFailing,
    /// Every host looked stale at once: the data source is distrusted, nothing was fenced.
    AllStale,
    /// A refusal episode ended; normal operation resumed.
    Resolved,
    /// An operator paused or resumed freezer-dr.
    Brake,
    /// Combined monitors disagree about a host for as long as the strike count (one says down, the
    /// verdict does not): it was not fenced.
    MonitorsDisagree,
}

impl ReportKind {
    /// Its snake_case name, as stored and as templates see it (`host_fenced`, `recovered`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ReportKind::HostFenced => "host_fenced",
            ReportKind::Recovered => "recovered",
            ReportKind::Restored => "restored",
            ReportKind::NeedsOperator => "needs_operator",
            ReportKind::Storm => "storm",
            ReportKind::ObservationFailing => "observation_failing",
            ReportKind::AllStale => "all_stale",
            ReportKind::Resolved => "resolved",
            ReportKind::Brake => "brake",
            ReportKind::MonitorsDisagree => "monitors_disagree",
        }
    }
}

/// What happened to one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Running (or back in its previous state) on another host.
    Evacuated {
        /// The new host.
        to: HostId,
        /// Its final status.
        status: String,
    },
    /// Evacuation was attempted and failed.
    Failed {
        /// Why, in plain words.
        reason: String,
    },
    /// Left alone by policy.
    Skipped {
        /// Which rule, in plain words.
        reason: String,
    },
    /// Deleted by its owner during recovery.
    Gone,
    /// Being moved to another host (in the report that a recovery started).
    Evacuating,
}

/// One instance's line in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceOutcome {
    /// The instance as it was listed on the failed host.
    pub instance: Instance,
    /// What happened.
    pub outcome: Outcome,
    /// Evacuation requests made for it.
    pub attempts: u32,
}

/// One notification, as stored in the outbox and handed to every [`crate::Notifier`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Stable, unique id (the same across delivery retries and restarts).
    pub id: String,
    /// When the engine decided it.
    pub at: crate::Timestamp,
    /// What it is about.
    #[serde(flatten)]
    pub kind: ReportKind,
    /// Who it is for.
    pub audience: Audience,
    /// The host concerned, if any.
    pub host: Option<HostId>,
    /// One line for subjects and logs.
    pub summary: String,
    /// Details in plain words (timeline, evidence, what the operator should do).
    pub details: Vec<String>,
    /// Per-instance outcomes (recovery reports).
    pub instances: Vec<InstanceOutcome>,
    /// Recipients per project, filled by the runtime from the [`crate::Directory`] just before delivery.
    #[serde(default)]
    pub recipients: BTreeMap<String, Vec<Recipient>>,
    /// Projects whose users the [`crate::Directory`] could not list for this delivery, with why (filled by
    /// the runtime, like `recipients`). A notifier tells their users nothing now and names them to the
    /// operators; the runtime keeps the report in the outbox and delivers these projects' mails on their
    /// own once the lookup works.
    // `default` (and skipped when empty): outbox entries written before this field existed still load,
    // and a report without lookup failures is stored exactly as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookup_failed: BTreeMap<String, String>,
    /// The names people know the report's projects by (project id → name), filled by the runtime from
    /// the [`crate::Directory`] just before delivery, like `recipients`. A project missing here is named by
    /// its id: its name could not be learned (logged), or the directory knows no names.
    // `default` and skipped when empty, like `lookup_failed`: older entries load, and are stored as before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub project_names: BTreeMap<String, String>,
    /// Who earlier delivery attempts of this report already told: a notifier sends them nothing again.
    /// Recorded in the outbox by the runtime (see [`Told`]), so a restart does not resend either.
    #[serde(default, skip_serializing_if = "Told::is_empty")]
    pub told: Told,
}

/// The audiences of a report that were told by earlier attempts of its outbox entry.
///
/// A report whose directory lookups partly failed is delivered in parts: first the operators and every
/// project that could be looked up, then, at later attempts, the projects still missing. Each part is
/// recorded here (through [`crate::Journal::outbox_retry`]) before the next attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Told {
    /// The operators were told (their digest or alert went out): not sent again.
    #[serde(default)]
    pub operators: bool,
    /// Projects whose users were told (or had nobody to tell): not sent again.
    #[serde(default)]
    pub projects: BTreeSet<String>,
}

impl Told {
    /// Nobody was told yet.
    pub fn is_empty(&self) -> bool {
        !self.operators && self.projects.is_empty()
    }

    /// Adds what `other` records (parts are only ever added, never taken back).
    pub fn merge(&mut self, other: &Told) {
        self.operators |= other.operators;
        self.projects.extend(other.projects.iter().cloned());
    }
}

impl Report {
    /// The projects with at least one instance in this report, sorted, without duplicates.
    pub fn projects(&self) -> Vec<&str> {
        let mut p: Vec<&str> = self
            .instances
            .iter()
            .map(|o| o.instance.project.as_str())
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// The name `project` is known by, if the runtime learned it (see `project_names`).
    pub fn project_name(&self, project: &str) -> Option<&str> {
        self.project_names.get(project).map(String::as_str)
    }

    /// The outcomes of one project's instances.
    pub fn instances_of<'a>(
        &'a self,
        project: &'a str,
    ) -> impl Iterator<Item = &'a InstanceOutcome> {
        self.instances
            .iter()
            .filter(move |o| o.instance.project == project)
    }

    /// A new report with no instances and no details.
    pub fn new(
        id: impl Into<String>,
        at: Timestamp,
        kind: ReportKind,
        audience: Audience,
        host: Option<HostId>,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            at,
            kind,
            audience,
            host,
            summary: summary.into(),
            details: Vec::new(),
            instances: Vec::new(),
            recipients: BTreeMap::new(),
            lookup_failed: BTreeMap::new(),
            project_names: BTreeMap::new(),
            told: Told::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_s_name_is_its_stored_name() {
        let all = [
            ReportKind::HostFenced,
            ReportKind::Recovered,
            ReportKind::Restored,
            ReportKind::NeedsOperator,
            ReportKind::Storm,
            ReportKind::ObservationFailing,
            ReportKind::AllStale,
            ReportKind::Resolved,
            ReportKind::Brake,
            ReportKind::MonitorsDisagree,
        ];
        for kind in all {
            let stored = serde_json::to_value(&kind).unwrap();
            assert_eq!(stored["kind"], kind.name(), "{kind:?}");
        }
    }

    /// An outbox report exactly as the release before `lookup_failed` and `told` wrote it.
    const PREVIOUS_RELEASE: &str = r#"{"id":"r-7","at":1700000000000,"kind":"recovered",
        "audience":"operators_and_users","host":"compute-7","summary":"compute-7: 1 instance(s) running elsewhere",
        "details":["down 3 times in a row: fencing"],
        "instances":[{"instance":{"id":"a-1","name":"web","project":"alpha","user":"u","status":"ACTIVE",
            "host":"compute-7","metadata":{},"volume_backed":true},
            "outcome":{"outcome":"evacuated","to":"compute-9","status":"ACTIVE"},"attempts":1}],
        "recipients":{"alpha":[{"user_id":"u-1","name":"alice","email":"alice@example.org"}]}}"#;

    #[test]
    fn a_report_stored_by_the_previous_release_still_loads() {
        let r: Report = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        assert_eq!(r.id, "r-7");
        assert_eq!(r.kind, ReportKind::Recovered);
        assert_eq!(r.projects(), ["alpha"]);
        assert_eq!(r.recipients["alpha"][0].name, "alice");
        assert!(r.lookup_failed.is_empty(), "no lookup failed");
        assert!(
            r.project_names.is_empty(),
            "no names: the mails use the ids"
        );
        assert_eq!(r.project_name("alpha"), None);
        assert_eq!(r.told, Told::default(), "nobody told yet");
    }

    #[test]
    fn a_report_without_lookup_failures_is_stored_as_before() {
        let r: Report = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        let old: serde_json::Value = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), old);
    }

    #[test]
    fn lookup_failures_told_parts_and_names_round_trip() {
        let mut r: Report = serde_json::from_str(PREVIOUS_RELEASE).unwrap();
        r.lookup_failed
            .insert("beta".into(), "keystone: connection refused".into());
        r.told.operators = true;
        r.told.projects.insert("alpha".into());
        r.project_names.insert("alpha".into(), "web-prod".into());
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn told_parts_are_only_added() {
        let mut t = Told {
            operators: true,
            projects: BTreeSet::from(["a".to_owned()]),
        };
        t.merge(&Told {
            operators: false,
            projects: BTreeSet::from(["b".to_owned()]),
        });
        assert!(t.operators);
        assert_eq!(t.projects, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(!t.is_empty() && Told::default().is_empty());
    }
}
