//! The election: candidates, the leader key and its fencing token, the leader's term.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

use super::client::{call, decode, tls_options};
use super::config::HaConfig;
use super::journal::EtcdJournal;
use super::layout::Keys;
use super::lease::{LeaseState, Session, keep_alive};

mod term;
use crate::{Error, ErrorKind, Journal, Result, Runtime, Timestamp};

/// One freezer-dr process of an election, as stored in the leader and presence keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Unique id: `<hostname>:<pid>` unless set with [`Candidate::named`].
    pub id: String,
    /// The machine's host name.
    pub hostname: String,
    /// The process id.
    pub pid: u32,
    /// In the leader key: since when it leads; in a presence key: since when it runs.
    pub since: Timestamp,
}

impl Member {
    /// `<id> (host <hostname>, pid <pid>)`.
    pub fn describe(&self) -> String {
        format!("{} (host {}, pid {})", self.id, self.hostname, self.pid)
    }
}

/// Who leads an election and who stands by (`freezer-dr status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HaStatus {
    /// The election's name.
    pub election: String,
    /// The leader, with the time it won, if any.
    pub leader: Option<Member>,
    /// The leader's fencing token (the leader key's create revision).
    pub token: Option<i64>,
    /// The other running candidates.
    pub standbys: Vec<Member>,
}

/// A won election: the fencing token and the lease it stands on. Cheap to clone.
#[derive(Clone)]
pub struct Leadership {
    session: Arc<Session>,
    token: i64,
    leader_key: String,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("token", &self.token)
            .field("lease", &self.session.state.id)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// The fencing token: the leader key's create revision when this process won.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// The etcd lease id this leadership stands on.
    pub fn lease(&self) -> i64 {
        self.session.state.id
    }

    /// Time left before the local deadline (zero once lost).
    pub fn remaining(&self) -> Duration {
        if self.session.state.lost().is_some() {
            return Duration::ZERO;
        }
        self.session
            .state
            .deadline()
            .saturating_duration_since(Instant::now())
    }

    /// `Ok` while this process may act: not deposed and before the local deadline.
    pub fn check(&self) -> Result<()> {
        match self.session.state.lost() {
            None => Ok(()),
            Some(why) => Err(not_leader(format!(
                "not acting: this freezer-dr no longer leads (token {}): {why}",
                self.token
            ))),
        }
    }

    /// Resolves once this process must stop acting (deposed, lease expired, or deadline passed).
    pub async fn lost(&self) {
        loop {
            let state = &self.session.state;
            let changed = state.changed.notified();
            if state.lost().is_some() {
                return;
            }
            let left = state.deadline().saturating_duration_since(Instant::now());
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep(left) => {}
            }
        }
    }

    /// Why leadership was lost, if it was.
    pub fn why_lost(&self) -> Option<String> {
        self.session.state.lost()
    }

    /// The compare that guards every leader write: the leader key still has the create revision it had
    /// when this process won.
    pub(crate) fn compare(&self, keys: &Keys) -> Compare {
        debug_assert_eq!(keys.leader(), self.leader_key);
        Compare::create_revision(self.leader_key.clone(), CompareOp::Equal, self.token)
    }

    /// The error of a commit past the local deadline.
    pub(crate) fn deadline_error(&self) -> Error {
        self.check().err().unwrap_or_else(|| {
            not_leader(format!(
                "not acting: the local lease deadline of token {} is reached",
                self.token
            ))
        })
    }

    /// The token check failed in etcd: someone else leads (`holder`). Marks the leadership lost.
    pub(crate) fn depose(&self, holder: &str) -> Error {
        let why = format!("deposed: the fencing token check failed in etcd ({holder})");
        self.session.state.lose(&why);
        not_leader(format!(
            "not acting: this freezer-dr (token {}) was {why}; nothing was written",
            self.token
        ))
    }
}

fn not_leader(message: String) -> Error {
    Error::new(ErrorKind::NotLeader, message).permanent()
}

/// One freezer-dr process taking part in an election on etcd.
pub struct Candidate {
    client: Client,
    cfg: HaConfig,
    keys: Keys,
    me: Member,
    session: tokio::sync::Mutex<Option<Arc<Session>>>,
    leading: watch::Sender<Option<i64>>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("election", &self.cfg.election)
            .field("id", &self.me.id)
            .finish_non_exhaustive()
    }
}

impl Candidate {
    /// Connects to etcd (TLS and authentication from `cfg`) and checks it answers. Does not campaign.
    pub async fn connect(cfg: HaConfig) -> Result<Self> {
        let mut opts = ConnectOptions::new().with_connect_timeout(cfg.request_timeout);
        if let (Some(user), Some(password)) = (&cfg.user, &cfg.password) {
            opts = opts.with_user(user.clone(), password.expose());
        }
        if let Some(tls) = &cfg.tls {
            opts = opts.with_tls(tls_options(tls)?);
        }
        let endpoints = cfg.endpoints.join(", ");
        let client = call(
            cfg.request_timeout,
            "connect",
            Client::connect(cfg.endpoints.clone(), Some(opts)),
        )
        .await
        .map_err(|e| e.with_context("endpoints", &endpoints))?;
        let keys = Keys::new(&cfg.election);
        let hostname = hostname();
        let pid = std::process::id();
        let me = Member {
            id: format!("{hostname}:{pid}"),
            hostname,
            pid,
            since: Timestamp::now(),
        };
        let this = Self {
            client,
            cfg,
            keys,
            me,
            session: tokio::sync::Mutex::new(None),
            leading: watch::Sender::new(None),
        };
        // Reachable, and the credentials are accepted for our keys.
        let mut c = this.client.clone();
        call(
            this.cfg.request_timeout,
            "read the leader key",
            c.get(this.keys.leader(), None),
        )
        .await
        .map_err(|e| e.with_context("endpoints", &endpoints))?;
        Ok(this)
    }

    /// Sets this candidate's id (default `<hostname>:<pid>`), e.g. to run several in one process.
    #[must_use]
    pub fn named(mut self, id: impl Into<String>) -> Self {
        self.me.id = id.into();
        self
    }

    /// This candidate as the others see it.
    pub fn member(&self) -> &Member {
        &self.me
    }

    /// The election's configuration.
    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    /// The election's journal for reading and for operator requests, from any process; its commits are
    /// refused (only [`Candidate::leader_journal`] writes the recovery state).
    pub fn journal(&self) -> EtcdJournal {
        EtcdJournal::new(self.client.clone(), self.keys.clone(), &self.cfg, None)
    }

    /// The journal a leader writes through: every commit is guarded by `leadership`.
    pub async fn leader_journal(&self, leadership: &Leadership) -> Result<EtcdJournal> {
        let j = EtcdJournal::new(
            self.client.clone(),
            self.keys.clone(),
            &self.cfg,
            Some(leadership.clone()),
        );
        j.check_schema().await?;
        Ok(j)
    }

    /// `Some(token)` while this candidate leads inside [`Candidate::run_as_leader`].
    pub fn leading(&self) -> watch::Receiver<Option<i64>> {
        self.leading.subscribe()
    }

    /// Time left before this candidate's lease's local deadline: `None` without a live lease (not in
    /// the election, etcd not answering its keepalives), or while a new lease is being granted.
    pub fn lease_remaining(&self) -> Option<Duration> {
        let slot = self.session.try_lock().ok()?;
        let s = slot.as_ref()?;
        if s.state.lost().is_some() {
            return None;
        }
        Some(s.state.deadline().saturating_duration_since(Instant::now()))
    }

    /// Who leads, since when, and who stands by.
    pub async fn status(&self) -> Result<HaStatus> {
        let txn = Txn::new().and_then([
            TxnOp::get(self.keys.leader(), None),
            TxnOp::get(
                self.keys.candidates(),
                Some(GetOptions::new().with_prefix()),
            ),
        ]);
        let mut c = self.client.clone();
        let resp = call(self.cfg.request_timeout, "read the election", c.txn(txn)).await?;
        let gets: Vec<_> = resp
            .op_responses()
            .into_iter()
            .filter_map(|r| match r {
                TxnOpResponse::Get(g) => Some(g),
                _ => None,
            })
            .collect();
        let (leader, token) = match gets.first().and_then(|g| g.kvs().first()) {
            Some(kv) => (Some(decode::<Member>(kv)?), Some(kv.create_revision())),
            None => (None, None),
        };
        let mut standbys = Vec::new();
        if let Some(g) = gets.get(1) {
            for kv in g.kvs() {
                let m: Member = decode(kv)?;
                if leader.as_ref().is_none_or(|l| l.id != m.id) {
                    standbys.push(m);
                }
            }
        }
        Ok(HaStatus {
            election: self.cfg.election.clone(),
            leader,
            token,
            standbys,
        })
    }

    /// The current lease, or a new one (with its keepalive task and presence key) if there is none or
    /// the last one was lost.
    async fn session(&self) -> Result<Arc<Session>> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref()
            && s.state.lost().is_none()
        {
            return Ok(s.clone());
        }
        if let Some(old) = slot.take() {
            self.revoke_later(old.state.id);
        }
        let ttl = self.cfg.lease_ttl;
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let mut c = self.client.clone();
        let grant = call(
            self.cfg.request_timeout,
            "grant the election lease",
            c.lease_grant(secs, None),
        )
        .await?;
        let granted = Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(0));
        let margin = ttl / 4;
        let state = Arc::new(LeaseState {
            id: grant.id(),
            ttl,
            margin,
            deadline: Mutex::new(sent + granted.min(ttl).saturating_sub(margin)),
            lost: Mutex::new(None),
            changed: Notify::new(),
        });
        let keepalive = tokio::spawn(keep_alive(
            self.client.clone(),
            state.clone(),
            self.cfg.request_timeout,
        ));
        let session = Arc::new(Session { state, keepalive });
        let presence = serde_json::to_string(&self.me).map_err(|e| {
            Error::new(ErrorKind::Journal, "cannot encode the presence key").with_source(e)
        })?;
        let mut c = self.client.clone();
        call(
            self.cfg.request_timeout,
            "write the presence key",
            c.put(
                self.keys.candidate(&self.me.id),
                presence,
                Some(PutOptions::new().with_lease(session.state.id)),
            ),
        )
        .await?;
        debug!(lease = session.state.id, "election lease granted");
        *slot = Some(session.clone());
        Ok(session)
    }

    /// Revokes a lease in the background, bounded: when etcd answers, the keys on it go at once instead
    /// of at the end of their TTL.
    fn revoke_later(&self, lease: i64) {
        let mut c = self.client.clone();
        let limit = self.cfg.lease_ttl * 2;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, c.lease_revoke(lease)).await;
        });
    }

    /// Gives up the current lease now (resigning leadership and presence), bounded by the request timeout.
    pub async fn resign(&self) {
        let old = self.session.lock().await.take();
        if let Some(s) = old {
            let mut c = self.client.clone();
            match call(
                self.cfg.request_timeout,
                "revoke the election lease",
                c.lease_revoke(s.state.id),
            )
            .await
            {
                Ok(_) => info!(lease = s.state.id, "resigned: lease revoked"),
                Err(e) => {
                    warn!(error = %e, "cannot revoke the election lease; it lapses by itself")
                }
            }
        }
    }

    /// Waits until this candidate leads: returns its [`Leadership`]. Errors only when etcd cannot be
    /// asked (the caller decides when to try again).
    pub async fn campaign(&self) -> Result<Leadership> {
        let leader = self.keys.leader();
        loop {
            let session = self.session().await?;
            let me = Member {
                since: Timestamp::now(),
                ..self.me.clone()
            };
            let value = serde_json::to_string(&me).map_err(|e| {
                Error::new(ErrorKind::Journal, "cannot encode the leader key").with_source(e)
            })?;
            let txn = Txn::new()
                .when([Compare::create_revision(
                    leader.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    leader.clone(),
                    value,
                    Some(PutOptions::new().with_lease(session.state.id)),
                )])
                .or_else([TxnOp::get(leader.clone(), None)]);
            let mut c = self.client.clone();
            let resp = call(self.cfg.request_timeout, "campaign", c.txn(txn)).await?;
            let revision = resp.header().map_or(0, |h| h.revision());
            if resp.succeeded() {
                return Ok(Leadership {
                    session,
                    token: revision,
                    leader_key: leader,
                });
            }
            let current = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().cloned(),
                _ => None,
            });
            if let Some(kv) = &current
                && kv.lease() == session.state.id
            {
                // Already ours (a campaign whose answer was lost).
                return Ok(Leadership {
                    session,
                    token: kv.create_revision(),
                    leader_key: leader,
                });
            }
            if let Some(kv) = &current
                && let Ok(m) = decode::<Member>(kv)
            {
                debug!(leader = %m.describe(), "standing by");
            }
            self.wait_for_vacancy(revision + 1, &session).await;
        }
    }

    /// Watches the leader key from `revision` until it is deleted, the own lease is lost, or a TTL has
    /// passed (then the caller simply asks again: a watch on an unresponsive etcd may never answer).
    async fn wait_for_vacancy(&self, revision: i64, session: &Session) {
        let mut c = self.client.clone();
        let key = self.keys.leader();
        let lost = async {
            while session.state.lost().is_none() {
                let changed = session.state.changed.notified();
                let left = session
                    .state
                    .deadline()
                    .saturating_duration_since(Instant::now());
                tokio::select! {
                    () = changed => {}
                    () = tokio::time::sleep(left) => {}
                }
            }
        };
        let watch = async {
            let Ok(mut stream) = c
                .watch(key, Some(WatchOptions::new().with_start_revision(revision)))
                .await
            else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            };
            while let Ok(Some(resp)) = stream.message().await {
                if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                    || resp.canceled()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::select! {
            () = watch => {}
            () = lost => {}
            () = tokio::time::sleep(self.cfg.lease_ttl) => {}
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}
