//! The etcd journal's key layout (see [`super::EtcdJournal`] for the table of keys) and the stored forms
//! of what is not stored as the engine's own types. A contract: a change here is a schema change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::HostId;
use crate::engine::InstanceRecord;
use crate::journal::OutboxEntry;

/// The layout version this code writes; a newer one is refused rather than misread.
pub(super) const SCHEMA: u64 = 1;
/// The history keeps the lines of this many commits (each key holds one commit's lines).
pub const HISTORY_COMMITS: u64 = 10_000;
/// Host records are spread over this many keys.
pub(super) const HOST_BUCKETS: u64 = 32;
/// Room left in a request for etcd's own framing.
pub(super) const REQUEST_OVERHEAD: usize = 16 * 1024;
/// Compare-and-swap rounds for a request id before giving up (many CLIs submitting at once).
pub(super) const SUBMIT_ROUNDS: usize = 32;

/// The etcd keys of one election.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(election: &str) -> Self {
        Self {
            prefix: format!("/freezer-dr/{election}/"),
        }
    }
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }
    pub(crate) fn leader(&self) -> String {
        self.key("leader")
    }
    pub(crate) fn candidates(&self) -> String {
        self.key("candidates/")
    }
    pub(crate) fn candidate(&self, id: &str) -> String {
        self.key(&format!("candidates/{}", escape(id)))
    }
    pub(super) fn schema(&self) -> String {
        self.key("schema")
    }
    pub(super) fn journal_id(&self) -> String {
        self.key("journal_id")
    }
    pub(super) fn meta(&self) -> String {
        self.key("meta")
    }
    pub(super) fn next_request(&self) -> String {
        self.key("next_request")
    }
    pub(super) fn hosts(&self) -> String {
        self.key("hosts/")
    }
    pub(super) fn host_bucket(&self, host: &HostId) -> String {
        self.key(&format!("hosts/{:02}", fnv1a(host.as_str()) % HOST_BUCKETS))
    }
    pub(super) fn instances(&self) -> String {
        self.key("instances/")
    }
    pub(super) fn host_instances(&self, host: &HostId) -> String {
        self.key(&format!("instances/{}", escape(host.as_str())))
    }
    pub(super) fn history(&self) -> String {
        self.key("history/")
    }
    pub(super) fn history_entry(&self, seq: u64) -> String {
        self.key(&format!("history/{seq:020}"))
    }
    pub(super) fn outbox(&self) -> String {
        self.key("outbox/")
    }
    pub(super) fn outbox_entry(&self, key: &str) -> String {
        self.key(&format!("outbox/{}", escape(key)))
    }
    pub(super) fn requests(&self) -> String {
        self.key("requests/")
    }
    pub(super) fn request(&self, id: u64) -> String {
        self.key(&format!("requests/{id:020}"))
    }
}

/// `/` and `%` escaped, so a name is exactly one key segment (`compute-1` never prefixes `compute-10`'s
/// keys, whatever the names hold).
pub(super) fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

/// A stable hash (FNV-1a), so every version of freezer-dr finds a host in the same bucket.
pub(super) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An outbox entry as stored: entries created by one commit share its create revision, so their order
/// within it is kept here.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredOutbox {
    pub(super) order: usize,
    #[serde(flatten)]
    pub(super) entry: OutboxEntry,
}

/// One host's instance records, as stored.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredInstances {
    pub(super) host: HostId,
    pub(super) instances: BTreeMap<String, InstanceRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_key_segment() {
        let k = Keys::new("e");
        assert_eq!(
            k.host_instances(&HostId::from("a/b%c")),
            "/freezer-dr/e/instances/a%2Fb%25c"
        );
        assert_eq!(k.outbox_entry("r9/0"), "/freezer-dr/e/outbox/r9%2F0");
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        let k = Keys::new("e");
        assert_eq!(
            k.host_bucket(&HostId::from("compute-1")),
            k.host_bucket(&HostId::from("compute-1"))
        );
        let used: std::collections::BTreeSet<String> = (0..200)
            .map(|i| k.host_bucket(&HostId::new(format!("compute-{i}"))))
            .collect();
        assert!(used.len() > 24, "{used:?}");
    }
}
