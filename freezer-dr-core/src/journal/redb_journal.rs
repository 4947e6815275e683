//! The embedded single-file journal on redb.
//!
//! Every value is stored as JSON, so a journal can be inspected with any redb tool. One [`Journal::commit`]
//! is one redb write transaction with immediate durability: it is on disk when `commit` returns, or not at
//! all.
//!
//! The database is opened in redb's [`ConcurrencyMode::MultiWriter`] so that the CLI (`freezer-dr pause`,
//! `status`, `history`) can open the same file while the daemon runs; redb serializes write transactions
//! across processes. Two daemons on one journal are prevented separately by [`RedbJournal::lock_daemon`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    AccessGuard, ConcurrencyMode, Database, DatabaseError, Key, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, StorageError, TableDefinition, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Batch, Journal, OutboxEntry, PendingRequest};
use crate::engine::{
    EngineMeta, HistoryEvent, HostRecord, InstanceRecord, OperatorRequest, Snapshot,
};
use crate::{Error, ErrorKind, Result, Timestamp};

/// Engine-wide values by name: `engine` (the [`EngineMeta`]), `schema`, `next_request`, `outbox_seq`.
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Host name → [`HostRecord`] (without its instances).
const HOSTS: TableDefinition<&str, &str> = TableDefinition::new("hosts");
/// (host name, instance id) → [`InstanceRecord`].
const INSTANCES: TableDefinition<(&str, &str), &str> = TableDefinition::new("instances");
/// Sequence number → [`HistoryEvent`], append-only.
const HISTORY: TableDefinition<u64, &str> = TableDefinition::new("history");
/// Outbox key → [`StoredOutbox`].
const OUTBOX: TableDefinition<&str, &str> = TableDefinition::new("outbox");
/// Request id → [`PendingRequest`].
const REQUESTS: TableDefinition<u64, &str> = TableDefinition::new("requests");

const META_ENGINE: &str = "engine";
const META_SCHEMA: &str = "schema";
const META_NEXT_REQUEST: &str = "next_request";
const META_OUTBOX_SEQ: &str = "outbox_seq";
/// The journal's stable id, created with it (release 0.1 journals get one when first opened).
const META_JOURNAL_ID: &str = "journal_id";

/// The layout version this code writes. A journal written by a newer layout is refused rather than
/// misread.
const SCHEMA: u64 = 1;

/// The history keeps at most this many lines; each commit that goes past it drops the oldest ones.
pub const HISTORY_LIMIT: u64 = 100_000;

/// redb's page cache. Small on purpose: the journal is tiny and the daemon should idle in a few MiB.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// An outbox entry with its place in the queue (insertion order), so `outbox()` is oldest first whatever
/// the keys look like.
#[derive(Serialize, Deserialize)]
struct StoredOutbox {
    seq: u64,
    #[serde(flatten)]
    entry: OutboxEntry,
}

/// The embedded journal: one redb file (default `/var/lib/freezer-dr/journal.redb`).
///
/// Values are JSON. Each commit is one redb write transaction, durable when it returns. The file is opened
/// in redb's multi-writer mode, so the CLI can open it (to submit requests, read status and history)
/// while the daemon runs; redb serializes write transactions across processes. [`RedbJournal::lock_daemon`]
/// keeps a second daemon away. The history keeps the newest [`HISTORY_LIMIT`] lines.
///
/// Cheap to clone: clones share the open database.
#[derive(Clone)]
pub struct RedbJournal {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    path: PathBuf,
    /// Makes the next commit fail after writing part of its batch (unit tests of atomicity).
    #[cfg(test)]
    fail_mid_commit: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for RedbJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbJournal")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl RedbJournal {
    /// Opens the journal at `path`, creating the file and its parent directories if missing.
    ///
    /// Several handles (in one process or several) may have the same file open at once; see
    /// [`RedbJournal`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.as_os_str().is_empty() {
            return Err(Error::config(
                "the journal path is empty; set [journal] path to a file such as \
                 /var/lib/freezer-dr/journal.redb",
            ));
        }
        if path.is_dir() {
            return Err(Error::config(format!(
                "the journal path {} is a directory; set [journal] path to a file in it, such as {}",
                path.display(),
                path.join("journal.redb").display()
            )));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                // `AlreadyExists` here means a path component is a regular file.
                let e = if e.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(io::ErrorKind::NotADirectory, e)
                } else {
                    e
                };
                io_error(
                    e,
                    format!(
                        "cannot create the journal directory {} (for {}); create it, give the \
                         freezer-dr user write access, or set [journal] path elsewhere",
                        parent.display(),
                        path.display()
                    ),
                )
            })?;
        }
        let db = redb::Builder::new()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_error(e, &path))?;
        let journal = Self {
            inner: Arc::new(Inner {
                db,
                path,
                #[cfg(test)]
                fail_mid_commit: std::sync::atomic::AtomicBool::new(false),
            }),
        };
        journal.prepare()?;
        Ok(journal)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Creates the tables and checks the layout version.
    fn prepare(&self) -> Result<()> {
        self.write(|tx| {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let schema = match meta.get(META_SCHEMA).map_err(db_err)? {
                Some(v) => Some(decode::<u64>(v.value(), "meta", META_SCHEMA)?),
                None => None,
            };
            match schema {
                Some(s) if s > SCHEMA => {
                    return Err(Error::new(
                        ErrorKind::Journal,
                        format!(
                            "the journal was written by a newer freezer-dr (layout {s}, this one \
                             knows {SCHEMA}); upgrade freezer-dr or use another [journal] path"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, encode(&SCHEMA)?.as_str())
                        .map_err(db_err)?;
                }
            }
            if meta.get(META_JOURNAL_ID).map_err(db_err)?.is_none() {
                let id = super::new_journal_id();
                meta.insert(META_JOURNAL_ID, encode(&id)?.as_str())
                    .map_err(db_err)?;
            }
            drop(meta);
            tx.open_table(HOSTS).map_err(db_err)?;
            tx.open_table(INSTANCES).map_err(db_err)?;
            tx.open_table(HISTORY).map_err(db_err)?;
            tx.open_table(OUTBOX).map_err(db_err)?;
            tx.open_table(REQUESTS).map_err(db_err)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction and commits it durably; nothing is written if `f` fails.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
        let run = || {
            let tx = self.inner.db.begin_write().map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        };
        run().map_err(|e: Error| e.with_context("journal", self.inner.path.display()))
    }

    /// Runs `f` on a consistent read snapshot.
    fn read<T>(&self, f: impl FnOnce(&redb::ReadTransaction) -> Result<T>) -> Result<T> {
        let run = || {
            let tx = self.inner.db.begin_read().map_err(db_err)?;
            f(&tx)
        };
        run().map_err(|e: Error| e.with_context("journal", self.inner.path.display()))
    }

    /// Runs blocking journal work off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RedbJournal) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Journal, "journal task failed")
                    .with_context("journal", self.inner.path.display())
                    .with_source(e)
            })?
    }

    fn load_sync(&self) -> Result<Snapshot> {
        self.read(|tx| {
            let meta_t = tx.open_table(META).map_err(db_err)?;
            let meta = match meta_t.get(META_ENGINE).map_err(db_err)? {
                Some(v) => decode::<EngineMeta>(v.value(), "meta", META_ENGINE)?,
                None => EngineMeta::default(),
            };
            let journal_id = match meta_t.get(META_JOURNAL_ID).map_err(db_err)? {
                Some(v) => decode::<String>(v.value(), "meta", META_JOURNAL_ID)?,
                None => String::new(),
            };
            let hosts_t = tx.open_table(HOSTS).map_err(db_err)?;
            let mut hosts: Vec<HostRecord> = decode_rows(hosts_t.iter().map_err(db_err)?, "hosts")?;
            let inst_t = tx.open_table(INSTANCES).map_err(db_err)?;
            for host in &mut hosts {
                let name = host.host.as_str();
                for row in inst_t.range((name, "")..).map_err(db_err)? {
                    let (k, v) = row.map_err(db_err)?;
                    let (h, id) = k.value();
                    if h != name {
                        break;
                    }
                    let rec =
                        decode::<InstanceRecord>(v.value(), "instances", &format!("{h}/{id}"))?;
                    host.instances.insert(id.to_owned(), rec);
                }
            }
            Ok(Snapshot {
                journal_id,
                meta,
                hosts,
            })
        })
    }

    fn commit_sync(&self, batch: &Batch) -> Result<()> {
        self.write(|tx| {
            let c = &batch.changes;
            {
                let mut hosts = tx.open_table(HOSTS).map_err(db_err)?;
                for h in &c.hosts {
                    hosts
                        .insert(h.host.as_str(), encode(h)?.as_str())
                        .map_err(db_err)?;
                }
            }
            {
                let mut inst = tx.open_table(INSTANCES).map_err(db_err)?;
                // Clear first, then upsert: instances listed in the same batch belong to a recovery that
                // started after the one being cleared.
                for h in &c.clear_instances {
                    let name = h.as_str();
                    let mut ids = Vec::new();
                    for row in inst.range((name, "")..).map_err(db_err)? {
                        let (k, _) = row.map_err(db_err)?;
                        let (kh, id) = k.value();
                        if kh != name {
                            break;
                        }
                        ids.push(id.to_owned());
                    }
                    for id in &ids {
                        inst.remove((name, id.as_str())).map_err(db_err)?;
                    }
                }
                for (h, rec) in &c.instances {
                    inst.insert(
                        (h.as_str(), rec.instance.id.as_str()),
                        encode(rec)?.as_str(),
                    )
                    .map_err(db_err)?;
                }
            }
            #[cfg(test)]
            if self
                .inner
                .fail_mid_commit
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(Error::new(
                    ErrorKind::Journal,
                    "scripted failure mid-commit",
                ));
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            if let Some(m) = &c.meta {
                meta.insert(META_ENGINE, encode(m)?.as_str())
                    .map_err(db_err)?;
            }
            if !c.history.is_empty() {
                let mut hist = tx.open_table(HISTORY).map_err(db_err)?;
                let next = match hist.last().map_err(db_err)? {
                    Some((k, _)) => k.value() + 1,
                    None => 0,
                };
                for (n, ev) in (next..).zip(&c.history) {
                    hist.insert(n, encode(ev)?.as_str()).map_err(db_err)?;
                }
                let len = hist.len().map_err(db_err)?;
                for _ in HISTORY_LIMIT..len {
                    hist.pop_first().map_err(db_err)?;
                }
            }
            if !batch.outbox.is_empty() {
                let mut seq = read_counter(&meta, META_OUTBOX_SEQ)?;
                let mut outbox = tx.open_table(OUTBOX).map_err(db_err)?;
                for entry in &batch.outbox {
                    let existing = match outbox.get(entry.key.as_str()).map_err(db_err)? {
                        Some(v) => {
                            Some(decode::<StoredOutbox>(v.value(), "outbox", &entry.key)?.seq)
                        }
                        None => None,
                    };
                    let stored = StoredOutbox {
                        seq: existing.unwrap_or(seq),
                        entry: entry.clone(),
                    };
                    if existing.is_none() {
                        seq += 1;
                    }
                    outbox
                        .insert(entry.key.as_str(), encode(&stored)?.as_str())
                        .map_err(db_err)?;
                }
                meta.insert(META_OUTBOX_SEQ, encode(&seq)?.as_str())
                    .map_err(db_err)?;
            }
            if !batch.applied_requests.is_empty() {
                let mut req = tx.open_table(REQUESTS).map_err(db_err)?;
                for id in &batch.applied_requests {
                    req.remove(*id).map_err(db_err)?;
                }
            }
            Ok(())
        })
    }

    fn outbox_sync(&self) -> Result<Vec<OutboxEntry>> {
        self.read(|tx| {
            let t = tx.open_table(OUTBOX).map_err(db_err)?;
            let mut v: Vec<StoredOutbox> = decode_rows(t.iter().map_err(db_err)?, "outbox")?;
            v.sort_by_key(|s| s.seq);
            Ok(v.into_iter().map(|s| s.entry).collect())
        })
    }

    fn outbox_retry_sync(&self, entry: &OutboxEntry) -> Result<()> {
        self.write(|tx| {
            let mut t = tx.open_table(OUTBOX).map_err(db_err)?;
            let stored = match t.get(entry.key.as_str()).map_err(db_err)? {
                Some(v) => decode::<StoredOutbox>(v.value(), "outbox", &entry.key)?,
                // Delivered meanwhile: putting it back would deliver it twice.
                None => return Ok(()),
            };
            let mut updated = stored.entry;
            updated.attempts = entry.attempts;
            updated.last_error.clone_from(&entry.last_error);
            updated.next_attempt = entry.next_attempt;
            updated.report.told.clone_from(&entry.report.told);
            let stored = StoredOutbox {
                seq: stored.seq,
                entry: updated,
            };
            t.insert(entry.key.as_str(), encode(&stored)?.as_str())
                .map_err(db_err)?;
            Ok(())
        })
    }

    fn outbox_done_sync(&self, key: &str) -> Result<()> {
        self.write(|tx| {
            let mut t = tx.open_table(OUTBOX).map_err(db_err)?;
            t.remove(key).map_err(db_err)?;
            Ok(())
        })
    }

    fn history_sync(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        self.read(|tx| {
            let t = tx.open_table(HISTORY).map_err(db_err)?;
            let newest = t.iter().map_err(db_err)?.rev().take(limit);
            let mut v: Vec<HistoryEvent> = decode_rows(newest, "history")?;
            v.reverse();
            Ok(v)
        })
    }

    fn submit_sync(&self, request: OperatorRequest) -> Result<u64> {
        self.write(|tx| {
            let mut meta = tx.open_table(META).map_err(db_err)?;
            let id = read_counter(&meta, META_NEXT_REQUEST)?.max(1);
            meta.insert(META_NEXT_REQUEST, encode(&(id + 1))?.as_str())
                .map_err(db_err)?;
            let pending = PendingRequest {
                id,
                at: Timestamp::now(),
                request,
            };
            let mut t = tx.open_table(REQUESTS).map_err(db_err)?;
            t.insert(id, encode(&pending)?.as_str()).map_err(db_err)?;
            Ok(id)
        })
    }

    fn requests_sync(&self) -> Result<Vec<PendingRequest>> {
        self.read(|tx| {
            let t = tx.open_table(REQUESTS).map_err(db_err)?;
            decode_rows(t.iter().map_err(db_err)?, "requests")
        })
    }
}

#[async_trait]
impl Journal for RedbJournal {
    async fn load(&self) -> Result<Snapshot> {
        self.blocking(RedbJournal::load_sync).await
    }

    async fn commit(&self, batch: Batch) -> Result<()> {
        self.blocking(move |j| j.commit_sync(&batch)).await
    }

    async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        self.blocking(RedbJournal::outbox_sync).await
    }

    async fn outbox_retry(&self, entry: &OutboxEntry) -> Result<()> {
        let entry = entry.clone();
        self.blocking(move |j| j.outbox_retry_sync(&entry)).await
    }

    async fn outbox_done(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.blocking(move |j| j.outbox_done_sync(&key)).await
    }

    async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        self.blocking(move |j| j.history_sync(limit)).await
    }

    async fn submit(&self, request: OperatorRequest) -> Result<u64> {
        self.blocking(move |j| j.submit_sync(request)).await
    }

    async fn requests(&self) -> Result<Vec<PendingRequest>> {
        self.blocking(RedbJournal::requests_sync).await
    }
}

fn read_counter(meta: &redb::Table<'_, &str, &str>, key: &str) -> Result<u64> {
    match meta.get(key).map_err(db_err)? {
        Some(v) => decode::<u64>(v.value(), "meta", key),
        None => Ok(0),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| {
        Error::new(ErrorKind::Journal, "cannot encode a journal record").with_source(e)
    })
}

fn decode<T: DeserializeOwned>(json: &str, table: &str, key: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| {
        Error::new(
            ErrorKind::Journal,
            "a journal record cannot be read (written by another freezer-dr version, or edited by \
             hand?)",
        )
        .with_context("table", table)
        .with_context("key", key)
        .with_source(e)
    })
}

/// Decodes the records of `rows`, read from `table`, in their order.
fn decode_rows<'a, K, T>(
    rows: impl Iterator<
        Item = std::result::Result<
            (AccessGuard<'a, K>, AccessGuard<'a, &'static str>),
            StorageError,
        >,
    >,
    table: &str,
) -> Result<Vec<T>>
where
    K: Key + 'static,
    for<'b> K::SelfType<'b>: ToString,
    T: DeserializeOwned,
{
    rows.map(|row| {
        let (k, v) = row.map_err(db_err)?;
        decode(v.value(), table, &k.value().to_string())
    })
    .collect()
}

fn db_err(e: impl Into<redb::Error>) -> Error {
    let e: redb::Error = e.into();
    let temporary = matches!(&e, redb::Error::Io(_));
    let err = Error::new(ErrorKind::Journal, "journal read or write failed").with_source(e);
    if temporary { err.temporary() } else { err }
}

pub(super) fn io_error(e: io::Error, message: String) -> Error {
    let kind = match e.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::IsADirectory
        | io::ErrorKind::ReadOnlyFilesystem
        | io::ErrorKind::InvalidFilename => ErrorKind::Config,
        _ => ErrorKind::Journal,
    };
    Error::new(kind, message).with_source(e)
}

fn open_error(e: DatabaseError, path: &Path) -> Error {
    let shown = path.display();
    match e {
        DatabaseError::Storage(redb::StorageError::Io(io)) => io_error(
            io,
            format!(
                "cannot open the journal {shown}; check the path and that the freezer-dr user may \
                 read and write it, or set [journal] path elsewhere"
            ),
        ),
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => Error::new(
            ErrorKind::Journal,
            format!(
                "the journal {shown} is held open by a process that does not share it (another \
                 freezer-dr version?); stop it, or use another [journal] path"
            ),
        )
        .with_source(e),
        DatabaseError::UpgradeRequired(v) => Error::new(
            ErrorKind::Journal,
            format!(
                "the journal {shown} is in an old redb file format ({v}); move it away and let \
                 freezer-dr create a new one"
            ),
        ),
        other => Error::new(
            ErrorKind::Journal,
            format!(
                "cannot open the journal {shown}: is it a freezer-dr journal? If it is damaged, \
                 move it away (freezer-dr starts a new one and re-checks every host) or restore \
                 it from a backup"
            ),
        )
        .with_source(other),
    }
}

#[cfg(test)]
mod tests;
