//! The journal in etcd (HA mode, feature `etcd`): the same [`Journal`] as the embedded one, so a standby
//! that takes over resumes where the dead leader stopped.
//!
//! Key layout, under `/freezer-dr/<election>/` (values are JSON, inspectable with `etcdctl get --prefix`):
//!
//! | key | value |
//! |---|---|
//! | `leader` | the leader ([`super::Member`]), on the leader's lease; its create revision is the fencing token |
//! | `candidates/<id>` | every running freezer-dr of the election, on its own lease |
//! | `schema` | the layout version |
//! | `meta` | the engine-wide state ([`EngineMeta`]) |
//! | `hosts/<bucket>` | host name → [`HostRecord`], hosts spread over 32 buckets by a hash of the name |
//! | `instances/<host>` | the host and its instance records (one key per host in recovery) |
//! | `history/<seq>` | the history lines of one commit; the newest [`HISTORY_COMMITS`] commits are kept |
//! | `outbox/<key>` | one [`OutboxEntry`]; queue order is the key's create revision, then its place in its commit |
//! | `next_request`, `requests/<id>` | operator requests, ids from a compare-and-swap counter |
//!
//! Hosts live in buckets and instances in one key per host so a journal write stays far under etcd's limit
//! of operations per transaction (`--max-txn-ops`, 128 by default) however many hosts an observation
//! touches or instances a host has. A write is still ONE transaction: it compares the leader key's create
//! revision with the token this process won the election with, and writes everything, or nothing when
//! the compare fails. A write too big for one transaction is refused whole with an error that says which
//! etcd limit to raise; it is never split.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, KeyValue, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::Mutex;

use super::client::{call, decode, encode, get_responses};
use super::config::HaConfig;
use super::election::Leadership;
use super::layout::{
    HISTORY_COMMITS, Keys, REQUEST_OVERHEAD, SCHEMA, SUBMIT_ROUNDS, StoredInstances, StoredOutbox,
};
use crate::engine::{EngineMeta, HistoryEvent, HostRecord, OperatorRequest, Snapshot};
use crate::journal::{Batch, Journal, OutboxEntry, PendingRequest};
use crate::{Error, ErrorKind, HostId, Result, Timestamp};

mod calls;
use calls::{Ops, by_key};

/// The [`Journal`] in etcd, for HA mode.
///
/// Built by [`crate::ha::Candidate`]: [`crate::ha::Candidate::journal`] gives a journal that reads and
/// submits operator requests from any process (the CLI); [`crate::ha::Candidate::leader_journal`] one
/// bound to a won election, the only kind that commits. Its [`Journal::commit`] first checks the local
/// lease deadline (past it, it refuses without asking etcd), then writes the batch in one transaction
/// guarded by the fencing token; a failed check is an error of kind [`ErrorKind::NotLeader`] and
/// nothing is written.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct EtcdJournal {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    keys: Keys,
    leadership: Option<Leadership>,
    timeout: Duration,
    max_ops: usize,
    max_bytes: usize,
    /// The next history key; also serializes commits.
    history_seq: Mutex<Option<u64>>,
}

impl fmt::Debug for EtcdJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdJournal")
            .field("prefix", &self.inner.keys.prefix())
            .field(
                "token",
                &self.inner.leadership.as_ref().map(Leadership::token),
            )
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Journal for EtcdJournal {
    async fn load(&self) -> Result<Snapshot> {
        let k = &self.inner.keys;
        let prefix = || Some(GetOptions::new().with_prefix());
        // One transaction: the three reads see the same revision.
        let txn = Txn::new().and_then([
            TxnOp::get(k.meta(), None),
            TxnOp::get(k.hosts(), prefix()),
            TxnOp::get(k.instances(), prefix()),
        ]);
        let mut c = self.client();
        let resp = self.call("load the journal", c.txn(txn)).await?;
        let gets = get_responses(&resp);
        let [meta, hosts, instances] = gets.as_slice() else {
            return Err(Error::new(
                ErrorKind::InvalidResponse,
                "etcd: load the journal: the transaction did not return its three reads",
            ));
        };
        let meta = match meta.kvs().first() {
            Some(kv) => decode::<EngineMeta>(kv)?,
            None => EngineMeta::default(),
        };
        let mut by_host: BTreeMap<HostId, HostRecord> = BTreeMap::new();
        for kv in hosts.kvs() {
            let bucket: BTreeMap<HostId, HostRecord> = decode(kv)?;
            by_host.extend(bucket);
        }
        for kv in instances.kvs() {
            let stored: StoredInstances = decode(kv)?;
            if let Some(h) = by_host.get_mut(&stored.host) {
                h.instances = stored.instances;
            }
        }
        let journal_id = match self
            .get("read the journal id", self.inner.keys.journal_id(), None)
            .await?
            .kvs()
            .first()
        {
            Some(kv) => decode(kv)?,
            None => String::new(),
        };
        Ok(Snapshot {
            journal_id,
            meta,
            hosts: by_host.into_values().collect(),
        })
    }

    async fn commit(&self, batch: Batch) -> Result<()> {
        let lead = self.leadership()?;
        // Past the local deadline, refuse without asking etcd: it may be frozen, and a standby may
        // already lead.
        lead.check()?;
        let mut seq_guard = self.inner.history_seq.lock().await;
        let k = &self.inner.keys;
        let c = &batch.changes;

        // The buckets and instance maps this batch changes, read first (only the token holder writes
        // them, so they cannot change before the guarded write below).
        let mut buckets: BTreeMap<String, BTreeMap<HostId, HostRecord>> = BTreeMap::new();
        for h in &c.hosts {
            buckets.entry(k.host_bucket(&h.host)).or_default();
        }
        let mut maps: BTreeMap<HostId, StoredInstances> = BTreeMap::new();
        for h in &c.clear_instances {
            maps.insert(
                h.clone(),
                StoredInstances {
                    host: h.clone(),
                    instances: BTreeMap::new(),
                },
            );
        }
        let mut to_read: Vec<String> = buckets.keys().cloned().collect();
        for (h, _) in &c.instances {
            if !maps.contains_key(h) {
                maps.insert(
                    h.clone(),
                    StoredInstances {
                        host: h.clone(),
                        instances: BTreeMap::new(),
                    },
                );
                to_read.push(k.host_instances(h));
            }
        }
        let current = if to_read.is_empty() {
            BTreeMap::new()
        } else {
            self.get_many(to_read).await?
        };
        for (key, bucket) in &mut buckets {
            if let Some(kv) = current.get(key) {
                *bucket = decode(kv)?;
            }
        }
        for (h, map) in &mut maps {
            if let Some(kv) = current.get(&k.host_instances(h)) {
                *map = decode(kv)?;
            }
        }

        // Apply the batch to them, in the order RedbJournal does.
        for h in &c.hosts {
            let mut rec = h.clone();
            rec.instances.clear();
            if let Some(b) = buckets.get_mut(&k.host_bucket(&h.host)) {
                b.insert(rec.host.clone(), rec);
            }
        }
        for (h, rec) in &c.instances {
            if let Some(m) = maps.get_mut(h) {
                m.instances.insert(rec.instance.id.clone(), rec.clone());
            }
        }

        let mut ops = Ops::default();
        for (key, bucket) in &buckets {
            ops.put(key.clone(), encode(bucket)?);
        }
        for (h, map) in &maps {
            if map.instances.is_empty() {
                ops.delete(k.host_instances(h), None);
            } else {
                ops.put(k.host_instances(h), encode(map)?);
            }
        }
        if let Some(m) = &c.meta {
            ops.put(k.meta(), encode(m)?);
        }
        if !c.history.is_empty() {
            let seq = match *seq_guard {
                Some(s) => s,
                None => self.next_history_seq().await?,
            };
            ops.put(k.history_entry(seq), encode(&c.history)?);
            if seq >= HISTORY_COMMITS {
                ops.delete(
                    k.history(),
                    Some(
                        DeleteOptions::new().with_range(k.history_entry(seq + 1 - HISTORY_COMMITS)),
                    ),
                );
            }
            // Advanced even if the write below fails: a write that timed out may still have landed,
            // and its key must not be reused.
            *seq_guard = Some(seq + 1);
        }
        for (order, entry) in batch.outbox.iter().enumerate() {
            let stored = StoredOutbox {
                order,
                entry: entry.clone(),
            };
            ops.put(k.outbox_entry(&entry.key), encode(&stored)?);
        }
        for id in &batch.applied_requests {
            ops.delete(k.request(*id), None);
        }

        if ops.ops.len() > self.inner.max_ops || ops.bytes + REQUEST_OVERHEAD > self.inner.max_bytes
        {
            return Err(Error::new(
                ErrorKind::Journal,
                format!(
                    "a journal write needs {} operations and about {} KiB in one etcd transaction, \
                     more than [ha] max_txn_ops = {} / max_request_bytes = {} allow; nothing was \
                     written. Raise etcd's --max-txn-ops / --max-request-bytes and the [ha] values \
                     with them",
                    ops.ops.len(),
                    ops.bytes / 1024,
                    self.inner.max_ops,
                    self.inner.max_bytes
                ),
            )
            .with_context("etcd prefix", self.prefix())
            .permanent());
        }

        self.guarded(lead, ops.ops, "write the journal (fencing-token guarded)")
            .await
    }

    async fn guard(&self) -> Result<()> {
        let lead = self.leadership()?;
        lead.check()?;
        self.guarded(lead, Vec::new(), "check the fencing token before acting")
            .await
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let resp = self
            .get(
                "read the outbox",
                self.inner.keys.outbox(),
                Some(GetOptions::new().with_prefix()),
            )
            .await?;
        let mut v: Vec<(i64, StoredOutbox)> = resp
            .kvs()
            .iter()
            .map(|kv| Ok((kv.create_revision(), decode(kv)?)))
            .collect::<Result<_>>()?;
        v.sort_by_key(|(rev, s)| (*rev, s.order));
        Ok(v.into_iter().map(|(_, s)| s.entry).collect())
    }

    // Outbox bookkeeping is not guarded by the token: it records what the deliverer did (a report was
    // sent), which stays true whoever leads; refusing it would only make the next leader send it again.
    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<()> {
        let key = self.inner.keys.outbox_entry(&entry.key);
        for _ in 0..SUBMIT_ROUNDS {
            let resp = self.get("read an outbox entry", key.clone(), None).await?;
            let Some(kv) = resp.kvs().first() else {
                // Delivered meanwhile: putting it back would deliver it twice.
                return Ok(());
            };
            let mut stored: StoredOutbox = decode(kv)?;
            stored.entry.attempts = entry.attempts;
            stored.entry.last_error.clone_from(&entry.last_error);
            stored.entry.next_attempt = entry.next_attempt;
            stored.entry.report.told.clone_from(&entry.report.told);
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), encode(&stored)?, None)]);
            let mut c = self.client();
            if self
                .call("record a failed delivery", c.txn(txn))
                .await?
                .succeeded()
            {
                return Ok(());
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("etcd: the outbox entry {} kept changing", entry.key),
        ))
    }

    async fn outbox_done(&self, key: &str) -> Result<()> {
        let mut c = self.client();
        self.call(
            "remove a delivered outbox entry",
            c.delete(self.inner.keys.outbox_entry(key), None),
        )
        .await?;
        Ok(())
    }

    async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Each key holds at least one line, so `limit` keys are enough.
        let newest =
            by_key(SortOrder::Descend).with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        let resp = self
            .get("read the history", self.inner.keys.history(), Some(newest))
            .await?;
        let mut newest_first = Vec::new();
        'keys: for kv in resp.kvs() {
            let events: Vec<HistoryEvent> = decode(kv)?;
            for ev in events.into_iter().rev() {
                newest_first.push(ev);
                if newest_first.len() == limit {
                    break 'keys;
                }
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// Needs no leadership: the CLI submits from any machine, the leader applies.
    async fn submit(&self, request: OperatorRequest) -> Result<u64> {
        let k = &self.inner.keys;
        for _ in 0..SUBMIT_ROUNDS {
            let resp = self
                .get("read the request counter", k.next_request(), None)
                .await?;
            let (id, rev) = match resp.kvs().first() {
                Some(kv) => (decode::<u64>(kv)?.max(1), kv.mod_revision()),
                None => (1, 0),
            };
            let pending = PendingRequest {
                id,
                at: Timestamp::now(),
                request: request.clone(),
            };
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    k.next_request(),
                    CompareOp::Equal,
                    rev,
                )])
                .and_then([
                    TxnOp::put(k.next_request(), encode(&(id + 1))?, None),
                    TxnOp::put(k.request(id), encode(&pending)?, None),
                ]);
            let mut c = self.client();
            if self
                .call("store an operator request", c.txn(txn))
                .await?
                .succeeded()
            {
                return Ok(id);
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            "etcd: too many operator requests submitted at once; try again",
        ))
    }

    async fn requests(&self) -> Result<Vec<PendingRequest>> {
        let k = &self.inner.keys;
        let oldest = by_key(SortOrder::Ascend);
        let resp = self
            .get("read the operator requests", k.requests(), Some(oldest))
            .await?;
        resp.kvs().iter().map(decode).collect()
    }
}
