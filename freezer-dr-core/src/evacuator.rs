//! The `Evacuator` trait: isolating a fenced host and moving its instances.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Fenced, HostId, Instance, Result};

/// Where an instance stands in its evacuation, as the evacuator reads it from reality.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "progress", rename_all = "snake_case")]
pub enum Progress {
    /// Still on its original host with no task running: the evacuation request never took effect (safe
    /// to request it again).
    NotStarted,
    /// Rebuilding (task in progress, or not yet settled on the new host).
    InProgress {
        /// Nova's task state or migration status, for reports.
        detail: String,
    },
    /// Running (or back in its previous state) on another host, task settled.
    Done {
        /// The new host.
        host: HostId,
        /// The final status (`ACTIVE`, `SHUTOFF`).
        status: String,
    },
    /// The evacuation failed (instance in `ERROR`, migration failed).
    Failed {
        /// Why, in plain words.
        reason: String,
    },
    /// The instance no longer exists (deleted by its owner meanwhile).
    Gone,
    /// Still on its original host, busy with something that is not this evacuation (Nova: a `task_state`
    /// such as `spawning`, `rebooting` or `powering-off` left from before the host died, and no evacuation
    /// migration of ours): the request did not take effect. The engine asks again after
    /// `evacuation.retry_delay`, within the attempt budget.
    Busy {
        /// What it is busy with, for reports.
        detail: String,
    },
    /// Rebuilt on another host but left stopped, while it ran before the failure (Nova 2.95+ evacuates to
    /// a stopped server): the engine sends [`crate::Command::Start`], a journaled command like any other
    /// write, then keeps reading the progress.
    NeedsStart {
        /// The new host.
        host: HostId,
        /// Its status there (`SHUTOFF`).
        status: String,
    },
}

/// Tells the cloud a fenced host is gone, and moves its instances to healthy hosts.
///
/// Everything that changes the cloud takes a [`Fenced`] proof, which only the engine can mint after a
/// power status that read off. Every call is safe to repeat after a crash. Drivers do not retry or sleep.
#[async_trait]
pub trait Evacuator: Send + Sync {
    /// Marks the host gone (Nova: `forced_down=true`, then `disabled` with [`Fenced::marker`]).
    async fn isolate(&self, fenced: &Fenced) -> Result<()>;

    /// Every instance on the host, matched exactly, all projects.
    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>>;

    /// Requests the evacuation of one instance from the fenced host.
    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()>;

    /// Reads where an instance's evacuation stands.
    async fn progress(&self, instance: &Instance) -> Result<Progress>;

    /// Starts an instance that an evacuation left stopped (after [`Progress::NeedsStart`]). Safe to repeat:
    /// an instance already running is Ok. The default refuses: an evacuator that never reports
    /// `NeedsStart` needs no start.
    async fn start(&self, instance: &Instance) -> Result<()> {
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            format!("this evacuator cannot start instance {}", instance.id),
        ))
    }

    /// Returns a repaired host to service: unset `forced_down`, wait until it reports up, enable.
    async fn restore(&self, host: &HostId) -> Result<()>;

    /// Checks that the evacuator can reach its API (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
