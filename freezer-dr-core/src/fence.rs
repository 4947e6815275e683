//! The fence proof: a host confirmed powered off ([`Fenced`]), and its stored form.
//!
//! A domain type below the engine: the role traits take `&Fenced` for everything destructive, and only the
//! engine builds one (from a power status that read off, or an operator's confirmation).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::host::{AdminState, HostId, Timestamp, isolation_marker, recovery_marker_prefix};

/// How a host's power-off was confirmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum FenceProof {
    /// A fencer's power status read off.
    PowerStatus {
        /// The fencing level that read it.
        level: usize,
    },
    /// An operator asserted it on the command line (`freezer-dr confirm-off`).
    Operator,
}

/// The stored form of a confirmed power-off (the engine turns it back into a [`Fenced`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// When it was confirmed.
    pub at: Timestamp,
    /// How.
    pub proof: FenceProof,
    /// The recovery it belongs to.
    pub recovery: String,
}

/// Proof that a host was confirmed powered off (or that an operator asserted it).
///
/// Only the engine can build one, and only from a power status that read off or an explicit operator
/// confirmation. Everything destructive downstream of fencing takes `&Fenced`, not a bare host name.
#[derive(Clone, PartialEq, Eq)]
pub struct Fenced {
    host: HostId,
    at: Timestamp,
    proof: FenceProof,
    recovery: String,
    journal: String,
    observed: AdminState,
}

impl Fenced {
    /// The proof of `host`, from its stored record, held by the freezer-dr of journal `journal`;
    /// `observed` is the host's administrative state as last observed. Only the engine calls this.
    pub(crate) fn from_record(
        host: &HostId,
        record: &FenceRecord,
        journal: &str,
        observed: &AdminState,
    ) -> Self {
        Self {
            host: host.clone(),
            at: record.at,
            proof: record.proof.clone(),
            recovery: record.recovery.clone(),
            journal: journal.to_owned(),
            observed: observed.clone(),
        }
    }

    /// The id of the journal of the freezer-dr that holds this proof (it names it in the marker).
    pub fn journal(&self) -> &str {
        &self.journal
    }

    /// The host's administrative state as last observed before this call: a disable by anyone else
    /// since then means another actor is at work (read before write).
    pub fn observed(&self) -> &AdminState {
        &self.observed
    }

    /// The fenced host.
    pub fn host(&self) -> &HostId {
        &self.host
    }

    /// When its power-off was confirmed.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// How it was confirmed.
    pub fn proof(&self) -> &FenceProof {
        &self.proof
    }

    /// The recovery this belongs to.
    pub fn recovery(&self) -> &str {
        &self.recovery
    }

    /// True if `reason` is a marker this recovery of this freezer-dr wrote, with this proof or an earlier
    /// one (a host fenced again within one recovery): isolating again need not write anything, so our own
    /// writes never move the service's heartbeat again.
    pub fn marks(&self, reason: &str) -> bool {
        reason.starts_with(&recovery_marker_prefix(&self.journal, &self.recovery))
    }

    /// The `disabled_reason` to set when isolating the host:
    /// `freezer-dr:fenced:<journal id>:<recovery>:<time>`.
    pub fn marker(&self) -> String {
        isolation_marker(&self.journal, &self.recovery, self.at)
    }
}

impl fmt::Debug for Fenced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fenced")
            .field("host", &self.host.as_str())
            .field("at", &self.at.0)
            .field("proof", &self.proof)
            .finish()
    }
}

#[cfg(feature = "testing")]
impl Fenced {
    /// A proof for tests of evacuators (feature `testing` only): never use outside tests.
    pub fn for_tests(host: impl Into<HostId>) -> Self {
        Self {
            host: host.into(),
            at: Timestamp(0),
            proof: FenceProof::Operator,
            recovery: "test".into(),
            journal: "jtest".into(),
            observed: AdminState::default(),
        }
    }
}
