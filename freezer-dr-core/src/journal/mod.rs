//! The journal: every decision is stored before any command it allows that changes the cloud, and before
//! any report it makes goes out (write-ahead), so a restart resumes from reality instead of repeating
//! itself. Reads may leave first: the runtime journals a turn that only asked for reads with the next
//! commit, within half a second. It also holds the notification outbox, the history and the operators'
//! requests.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::engine::{Changes, HistoryEvent, OperatorRequest, Snapshot};
use crate::{Report, Timestamp};

mod lock;
mod memory;
mod redb_journal;

pub use lock::DaemonLock;
pub use memory::MemoryJournal;
pub use redb_journal::{HISTORY_LIMIT, RedbJournal};

/// One report waiting for one notifier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Unique key: `<report id>/<notifier index>`.
    pub key: String,
    /// Index of the notifier in `[[notifier]]`.
    pub notifier: usize,
    /// The report.
    pub report: Report,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Do not try again before this time.
    pub next_attempt: Timestamp,
}

/// An operator request waiting to be applied by the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRequest {
    /// Its id (increasing).
    pub id: u64,
    /// When it was submitted.
    pub at: Timestamp,
    /// The request.
    pub request: OperatorRequest,
}

/// One atomic write: the engine's changes, the reports they produced, and the operator requests they
/// applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    /// Engine state changes.
    pub changes: Changes,
    /// New outbox entries.
    pub outbox: Vec<OutboxEntry>,
    /// Operator requests applied (removed from the pending list).
    pub applied_requests: Vec<u64>,
}

/// A new journal id: `j` and 16 hex digits (never `@` or `:`, which the isolation marker separates on).
pub(crate) fn new_journal_id() -> String {
    format!("j{:016x}", fastrand::u64(..))
}

/// Durable storage of the engine state, outbox, history and operator requests.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Loads the engine state (hosts with their instances, engine-wide state).
    async fn load(&self) -> Result<Snapshot>;
    /// Writes a batch atomically and durably; returns only once it is on disk. The runtime calls it before
    /// every destructive command, with an empty batch if nothing changed, so a journal that guards
    /// leadership (HA) can refuse there: an `Err` stops the runtime before it acts.
    async fn commit(&self, batch: Batch) -> Result<()>;
    /// Checks that this process may still act, right before a destructive driver call (a power-off or an
    /// evacuation queued behind a concurrency slot may run long after its commit). An `Err` (kind
    /// [`crate::ErrorKind::NotLeader`]) means the call must not be made and the runtime stops. A journal
    /// used by one process only always allows it; the HA journal checks the local lease deadline and
    /// the fencing token in etcd.
    async fn guard(&self) -> Result<()> {
        Ok(())
    }
    /// Undelivered outbox entries, oldest first.
    async fn outbox(&self) -> Result<Vec<OutboxEntry>>;
    /// Records a failed or partial delivery attempt: attempts, last error, next attempt time, and who the
    /// report's attempts told so far (`report.told`, so a restart never tells them again). The rest of the
    /// stored report is left as it was written.
    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<()>;
    /// Removes a delivered entry.
    async fn outbox_done(&self, key: &str) -> Result<()>;
    /// The newest `limit` history lines, oldest first.
    async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>>;
    /// Stores an operator request for the daemon to apply; returns its id.
    async fn submit(&self, request: OperatorRequest) -> Result<u64>;
    /// Operator requests not applied yet, oldest first.
    async fn requests(&self) -> Result<Vec<PendingRequest>>;
}
