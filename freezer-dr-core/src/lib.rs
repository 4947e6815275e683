//! freezer-dr core: compute-node high availability for OpenStack, without any concrete driver.
//!
//! The pipeline at a glance:
//!
//! - [`Monitor`] observes which compute hosts look down ([`HostHealth`]).
//! - The [`Engine`] (pure, synchronous) counts strikes, guards against storms and decides what to do next,
//!   as a list of [`Command`]s.
//! - A [`Fencer`] powers a host off and reads its power status until it reads off; only then does the engine
//!   mint a [`Fenced`] proof, which every destructive call downstream requires.
//! - The [`Evacuator`] isolates the host in Nova, lists its instances, evacuates each one and tracks it.
//! - The [`Notifier`]s tell the operators and, through the [`Directory`], the affected projects' users.
//! - The [`Runtime`] executes the engine's commands with timeouts, backoff and concurrency limits, and writes
//!   every decision to the [`Journal`] before acting on it, so a crash resumes without repeating itself.
//!
//! Drivers register themselves through [`inventory`] (see [`registry`]) and are chosen by `type` in the
//! TOML [`config`].

mod diagnostics;
mod directory;
mod error;
mod evacuator;
mod fence;
mod fencer;
mod host;
mod monitor;
mod notifier;
mod report;
mod secret;

pub mod checks;
pub mod config;
pub mod engine;
pub mod etcd;
/// The HA subsystem under its release 0.1 name: the same module as [`etcd`].
#[cfg(feature = "etcd")]
pub use etcd as ha;
pub mod journal;
pub mod registry;
pub mod runtime;
pub mod setup;
#[cfg(feature = "testing")]
pub mod testing;

pub use directory::{Directory, Recipient};
pub use engine::{Command, Engine, Input};
pub use error::{ConfigError, Error, ErrorKind, Failure, Result, Retry};
pub use evacuator::{Evacuator, Progress};
pub use fence::{FenceProof, FenceRecord, Fenced};
pub use fencer::{Fencer, PowerState};
pub use host::{
    AdminState, Health, HostHealth, HostId, Instance, MonitorView, Timestamp, is_isolation_marker,
    isolation_marker, marker_journal,
};
pub use journal::Journal;
pub use monitor::{Combine, CombinedMonitor, Monitor};
pub use notifier::Notifier;
pub use report::{Audience, InstanceOutcome, Outcome, Report, ReportKind, Told};
pub use runtime::Runtime;
pub use secret::Secret;

// Re-exported so driver crates register without naming `inventory` in their own manifests.
#[doc(hidden)]
pub use async_trait::async_trait;
#[doc(hidden)]
pub use inventory;
