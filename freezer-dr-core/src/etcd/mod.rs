//! Active/passive high availability on etcd (feature `etcd`): leader election with a fencing token.
//!
//! Every freezer-dr of an election is a [`Candidate`]. It holds an etcd lease (TTL `[ha] lease_ttl`),
//! renewed by a keepalive task, with a presence key on it (`candidates/<id>`, for `freezer-dr status`).
//! To lead, it creates the leader key on its lease in a transaction that succeeds only if the key does
//! not exist; the key's create revision is the **fencing token**. Standbys watch the leader key and try
//! again when it goes (the leader resigned, or its lease lapsed because it died).
//!
//! A leader acts only through an [`EtcdJournal`] bound to its [`Leadership`]: every commit (the runtime
//! commits before every destructive command) compares the leader key's create revision with the token
//! in the same transaction that records the intent. And the leader keeps a **local deadline**: the send
//! time of the last keepalive etcd answered, plus the TTL, minus a margin (a quarter of the TTL). Past
//! it, it stops without waiting for etcd to say anything, because a frozen etcd or a partition leaves the
//! keepalive hanging while a standby may be about to take over. etcd counts the lease from when it
//! processed the keepalive, which is after it was sent, so the deadline always falls at least the margin
//! before any standby can win.
//!
//! [`Candidate::run_as_leader`] is the whole loop: stand by, lead (a [`Runtime`] on the etcd journal),
//! go back to standby when deposed or when the deadline passes.
//!
//! The subsystem in one folder: [`config`] (`[ha]`, always compiled), and with the feature `client` (calls
//! and errors), `lease` (keepalive and local deadline), `election` ([`Candidate`], [`Leadership`]) and
//! `journal` ([`EtcdJournal`]).

#[cfg(feature = "etcd")]
mod client;
pub mod config;
#[cfg(feature = "etcd")]
mod election;
#[cfg(feature = "etcd")]
mod journal;
#[cfg(feature = "etcd")]
mod layout;
#[cfg(feature = "etcd")]
mod lease;

pub use config::{HA_EXAMPLE, HaBackend, HaConfig, HaTlsConfig};
#[cfg(feature = "etcd")]
pub use election::{Candidate, HaStatus, Leadership, Member};
#[cfg(feature = "etcd")]
pub use journal::EtcdJournal;
#[cfg(feature = "etcd")]
pub use layout::HISTORY_COMMITS;
