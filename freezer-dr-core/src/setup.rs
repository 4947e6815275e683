//! Which journal a configuration uses, and how: the election's in etcd (`[ha]`), the file of
//! `[journal] path` under its daemon lock, or one in memory for a dry run.
//!
//! [`actor`] chooses for the daemon and one-pass runs; [`Store`] is the journal as the commands that read
//! it or store operator requests see it, from any machine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::engine::{HistoryEvent, OperatorRequest, Snapshot};
use crate::journal::{DaemonLock, MemoryJournal, OutboxEntry, PendingRequest, RedbJournal};
use crate::{Error, Journal, Result};

#[cfg(feature = "etcd")]
use crate::ha::Candidate;

/// How `run` acts.
#[non_exhaustive]
pub enum Actor {
    /// `[ha]`: a candidate of the election; it acts only while it leads.
    #[cfg(feature = "etcd")]
    Candidate(Box<Candidate>),
    /// Alone, on a journal of its own.
    Alone {
        /// The file of `[journal] path`, or an empty journal in memory for a dry run.
        journal: Arc<dyn Journal>,
        /// The file's daemon lock, held while this is alive (none for a dry run).
        lock: Option<DaemonLock>,
    },
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(feature = "etcd")]
            Actor::Candidate(c) => f.debug_tuple("Candidate").field(c).finish(),
            Actor::Alone { lock, .. } => f.debug_struct("Alone").field("lock", lock).finish(),
        }
    }
}

/// Chooses how `run` acts on `config`. A dry run keeps its journal in memory: nothing on disk is read or
/// written, and no election is joined. With `[ha]` the daemon joins the election (a one-pass run is
/// refused: it would act without one). Otherwise the journal file, under its daemon lock: a single
/// freezer-dr acts on it (one-pass runs included: two actors would recover the same host twice).
pub async fn actor(config: &Config, once: bool, dry_run: bool) -> Result<Actor> {
    if dry_run {
        return Ok(Actor::Alone {
            journal: Arc::new(MemoryJournal::new()),
            lock: None,
        });
    }
    if let Some(ha) = &config.ha {
        if once {
            return Err(Error::config(format!(
                "{}: run --once acts alone, without an election: with [ha] run the daemon \
                 (`freezer-dr run`), or use a config without [ha]",
                config.file.display()
            )));
        }
        #[cfg(feature = "etcd")]
        return connect(config, ha)
            .await
            .map(|c| Actor::Candidate(Box::new(c)));
        #[cfg(not(feature = "etcd"))]
        {
            let _ = ha;
            return Err(no_etcd(config));
        }
    }
    let path = &config.journal.path;
    let journal = open(path)?;
    let lock = journal.lock_daemon().map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "cannot lock the journal {}: is another freezer-dr running with it?: {e}",
                path.display()
            ),
        )
    })?;
    Ok(Actor::Alone {
        journal,
        lock: Some(lock),
    })
}

/// A configuration's journal for the commands that read it or store operator requests (`status`,
/// `history`, `pause`, `recover`, ...): the election's in etcd with `[ha]` (from any machine: the leader
/// applies the requests), else the file of `[journal] path`. Takes no lock.
#[derive(Debug)]
pub struct Store {
    place: Place,
}

#[derive(Debug)]
enum Place {
    #[cfg(feature = "etcd")]
    Ha(Box<Candidate>),
    File(PathBuf),
}

impl Store {
    /// With `[ha]`, connects to etcd (an error names the endpoints; so does a binary built without etcd).
    /// Otherwise the journal file, opened when used.
    pub async fn connect(config: &Config) -> Result<Store> {
        let place = match &config.ha {
            #[cfg(feature = "etcd")]
            Some(ha) => Place::Ha(Box::new(connect(config, ha).await?)),
            #[cfg(not(feature = "etcd"))]
            Some(_) => return Err(no_etcd(config)),
            None => Place::File(config.journal.path.clone()),
        };
        Ok(Store { place })
    }

    /// The election's candidate, with `[ha]`.
    #[cfg(feature = "etcd")]
    pub fn candidate(&self) -> Option<&Candidate> {
        match &self.place {
            Place::Ha(c) => Some(c),
            Place::File(_) => None,
        }
    }

    /// What is recorded: the recovery state and the pending operator requests. `None` when the journal
    /// file does not exist: reading never creates it (nor its directory).
    pub async fn load(&self) -> Result<Option<(Snapshot, Vec<PendingRequest>)>> {
        let Some(j) = self.existing()? else {
            return Ok(None);
        };
        Ok(Some((j.load().await?, j.requests().await?)))
    }

    /// The reports waiting for delivery, in the order the daemon sends them (none when the journal file
    /// does not exist).
    pub async fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        match self.existing()? {
            Some(j) => j.outbox().await,
            None => Ok(Vec::new()),
        }
    }

    /// The newest `limit` history events, oldest first (none when the journal file does not exist).
    pub async fn history(&self, limit: usize) -> Result<Vec<HistoryEvent>> {
        match self.existing()? {
            Some(j) => j.history(limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Stores an operator request for the daemon to apply (creating the journal file if missing). Returns
    /// its id and where it was stored: the journal file, or `etcd <key prefix>`.
    pub async fn submit(&self, request: OperatorRequest) -> Result<(u64, String)> {
        match &self.place {
            #[cfg(feature = "etcd")]
            Place::Ha(c) => {
                let j = c.journal();
                let id = j.submit(request).await?;
                Ok((id, format!("etcd {}", j.prefix())))
            }
            Place::File(path) => {
                let id = open(path)?.submit(request).await?;
                Ok((id, path.display().to_string()))
            }
        }
    }

    fn existing(&self) -> Result<Option<Arc<dyn Journal>>> {
        match &self.place {
            #[cfg(feature = "etcd")]
            Place::Ha(c) => Ok(Some(Arc::new(c.journal()))),
            Place::File(path) if !path.exists() => Ok(None),
            Place::File(path) => Ok(Some(open(path)?)),
        }
    }
}

/// Opens (creating it if missing) the journal file named by `[journal] path`.
fn open(path: &Path) -> Result<Arc<RedbJournal>> {
    let journal = RedbJournal::open(path).map_err(|e| {
        Error::new(
            e.kind(),
            format!("cannot open the journal {}: {e}", path.display()),
        )
    })?;
    Ok(Arc::new(journal))
}

#[cfg(feature = "etcd")]
async fn connect(config: &Config, ha: &crate::config::HaConfig) -> Result<Candidate> {
    Candidate::connect(ha.clone()).await.map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "{}: [ha]: cannot reach etcd at {}: {e}",
                config.file.display(),
                ha.endpoints.join(", ")
            ),
        )
    })
}

#[cfg(not(feature = "etcd"))]
fn no_etcd(config: &Config) -> Error {
    Error::new(
        crate::ErrorKind::Unsupported,
        format!(
            "{}: [ha] is set but this freezer-dr was built without etcd support (Cargo feature `etcd`)",
            config.file.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "[journal]\npath = {:?}\n[monitor]\ntype = \"testing\"\n[[fencer]]\ntype = \"testing\"\n\
             [evacuator]\ntype = \"testing\"\n{extra}",
            dir.join("state/journal.redb").display().to_string()
        );
        Config::parse(&text, &dir.join("freezer-dr.toml")).unwrap()
    }

    #[tokio::test]
    async fn reading_a_missing_journal_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&config(dir.path(), "")).await.unwrap();
        assert!(store.load().await.unwrap().is_none());
        assert!(store.history(10).await.unwrap().is_empty());
        assert!(!dir.path().join("state").exists());
        let (id, place) = store.submit(OperatorRequest::Resume).await.unwrap();
        assert!(place.ends_with("journal.redb"), "{place}");
        let (_, requests) = store.load().await.unwrap().unwrap();
        assert_eq!(requests.iter().map(|r| r.id).collect::<Vec<_>>(), [id]);
    }

    #[tokio::test]
    async fn one_actor_per_journal_file_and_a_dry_run_touches_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "");
        let first = actor(&cfg, true, false).await.unwrap();
        let e = actor(&cfg, false, false).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("is another freezer-dr running with it?"),
            "{e}"
        );
        assert!(matches!(
            actor(&cfg, true, true).await,
            Ok(Actor::Alone { lock: None, .. })
        ));
        drop(first);
        actor(&cfg, false, false).await.unwrap();

        let other = tempfile::tempdir().unwrap();
        actor(&config(other.path(), ""), false, true).await.unwrap();
        assert!(!other.path().join("state").exists());
    }

    #[tokio::test]
    async fn a_one_pass_run_is_refused_with_ha() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:9\"]\n",
        );
        let e = actor(&cfg, true, false).await.unwrap_err();
        assert!(e.to_string().contains("run --once acts alone"), "{e}");
        // A dry run joins no election.
        actor(&cfg, true, true).await.unwrap();
    }
}
