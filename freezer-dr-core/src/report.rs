//! Reports: what the operators and the affected users are told.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{HostId, Instance, Recipient, Timestamp};

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
        }
    }
}
