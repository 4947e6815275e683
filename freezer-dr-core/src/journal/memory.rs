//! A journal in memory, for dry runs and tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Batch, Journal, OutboxEntry, PendingRequest};
use crate::engine::{
    EngineMeta, HistoryEvent, HostRecord, InstanceRecord, OperatorRequest, Snapshot,
};
use crate::{Error, ErrorKind, HostId, Result, Timestamp};

/// The history keeps at most this many lines, like [`super::RedbJournal`].
const HISTORY_LIMIT: usize = super::HISTORY_LIMIT as usize;

/// A [`Journal`] in memory: used by dry runs (nothing touches the disk) and by tests.
///
/// Clones share the same state, so a test can drop ("crash") a runtime and start a new one on the same
/// journal. Records go through their JSON form on the way in, exactly as they would into
/// [`super::RedbJournal`], so fields that are never stored (in-flight markers) do not survive a restart
/// here either.
#[derive(Clone, Debug, Default)]
pub struct MemoryJournal {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    meta: EngineMeta,
    hosts: BTreeMap<HostId, HostRecord>,
    instances: BTreeMap<(HostId, String), InstanceRecord>,
    history: VecDeque<HistoryEvent>,
    /// Key → (insertion sequence, entry).
    outbox: BTreeMap<String, (u64, OutboxEntry)>,
    outbox_seq: u64,
    requests: BTreeMap<u64, PendingRequest>,
    next_request: u64,
    commits: u64,
    fail_commits: usize,
    journal_id: String,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` commits fail with a temporary journal error (writing nothing), to test that
    /// nothing is acted on before it is recorded.
    pub fn fail_next_commits(&self, n: usize) {
        self.lock().fail_commits = n;
    }

    /// Successful commits so far.
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Applying a prepared batch cannot panic, so a poisoned lock still guards consistent data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The record as it comes back from its stored bytes: encoded and decoded as [`super::RedbJournal`]
/// encodes it on commit and decodes it on load.
fn roundtrip<T: Serialize + DeserializeOwned>(value: &T) -> Result<T> {
    serde_json::to_vec(value)
        .and_then(|bytes| serde_json::from_slice(&bytes))
        .map_err(|e| {
            Error::new(ErrorKind::Journal, "cannot encode a journal record").with_source(e)
        })
}

/// A batch whose records all went through their JSON form: applying it cannot fail, so a commit is all
/// or nothing.
struct Prepared {
    hosts: Vec<HostRecord>,
    clear_instances: Vec<HostId>,
    instances: Vec<(HostId, InstanceRecord)>,
    meta: Option<EngineMeta>,
    history: Vec<HistoryEvent>,
    outbox: Vec<OutboxEntry>,
    applied_requests: Vec<u64>,
}

impl Prepared {
    fn new(batch: &Batch) -> Result<Self> {
        let c = &batch.changes;
        Ok(Self {
            hosts: c.hosts.iter().map(roundtrip).collect::<Result<_>>()?,
            clear_instances: c.clear_instances.clone(),
            instances: c
                .instances
                .iter()
                .map(|(h, r)| Ok((h.clone(), roundtrip(r)?)))
                .collect::<Result<_>>()?,
            meta: c.meta.as_ref().map(roundtrip).transpose()?,
            history: c.history.iter().map(roundtrip).collect::<Result<_>>()?,
            outbox: batch.outbox.iter().map(roundtrip).collect::<Result<_>>()?,
            applied_requests: batch.applied_requests.clone(),
        })
    }
}

impl State {
    fn apply(&mut self, batch: Prepared) {
        for mut rec in batch.hosts {
            rec.instances.clear();
            self.hosts.insert(rec.host.clone(), rec);
        }
        // Clear first, then upsert, like RedbJournal.
        for h in &batch.clear_instances {
            self.instances.retain(|(host, _), _| host != h);
        }
        for (h, rec) in batch.instances {
            self.instances.insert((h, rec.instance.id.clone()), rec);
        }
        if let Some(m) = batch.meta {
            self.meta = m;
        }
        self.history.extend(batch.history);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
        for entry in batch.outbox {
            let seq = match self.outbox.get(&entry.key) {
                Some((seq, _)) => *seq,
                None => {
                    self.outbox_seq += 1;
                    self.outbox_seq
                }
            };
            self.outbox.insert(entry.key.clone(), (seq, entry));
        }
        for id in &batch.applied_requests {
            self.requests.remove(id);
        }
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn load(&self) -> Result<Snapshot> {
        let mut s = self.lock();
        if s.journal_id.is_empty() {
            s.journal_id = super::new_journal_id();
        }
        let mut hosts: Vec<HostRecord> = Vec::with_capacity(s.hosts.len());
        for h in s.hosts.values() {
            let mut rec = roundtrip(h)?;
            for ((host, id), i) in s.instances.range((h.host.clone(), String::new())..) {
                if host != &h.host {
                    break;
                }
                rec.instances.insert(id.clone(), roundtrip(i)?);
            }
            hosts.push(rec);
        }
        Ok(Snapshot {
            journal_id: s.journal_id.clone(),
            meta: s.meta.clone(),
            hosts,
        })
    }

    async fn commit(&self, batch: Batch) -> Result<()> {
        let prepared = Prepared::new(&batch)?;
        let mut s = self.lock();
        if s.fail_commits > 0 {
            s.fail_commits -= 1;
            return Err(Error::new(ErrorKind::Journal, "scripted journal failure").temporary());
        }
        s.apply(prepared);
        s.commits += 1;
        Ok(())
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let s = self.lock();
        let mut v: Vec<_> = s.outbox.values().cloned().collect();
        v.sort_by_key(|(seq, _)| *seq);
        Ok(v.into_iter().map(|(_, e)| e).collect())
    }

    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<()> {
        let mut s = self.lock();
        // Delivered meanwhile: putting it back would deliver it twice.
        if let Some((_, e)) = s.outbox.get_mut(&entry.key) {
            e.attempts = entry.attempts;
            e.last_error.clone_from(&entry.last_error);
            e.next_attempt = entry.next_attempt;
            e.report.told.clone_from(&entry.report.told);
        }
        Ok(())
    }

    async fn outbox_done(&self, key: &str) -> Result<()> {
        self.lock().outbox.remove(key);
        Ok(())
    }

    async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        let s = self.lock();
        let skip = s.history.len().saturating_sub(limit);
        Ok(s.history.iter().skip(skip).cloned().collect())
    }

    async fn submit(&self, request: OperatorRequest) -> Result<u64> {
        let request = roundtrip(&request)?;
        let mut s = self.lock();
        s.next_request += 1;
        let id = s.next_request;
        s.requests.insert(
            id,
            PendingRequest {
                id,
                at: Timestamp::now(),
                request,
            },
        );
        Ok(id)
    }

    async fn requests(&self) -> Result<Vec<PendingRequest>> {
        Ok(self.lock().requests.values().cloned().collect())
    }
}
