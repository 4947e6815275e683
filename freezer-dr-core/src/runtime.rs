//! The runtime: runs the observation loop and executes the engine's commands.

use std::sync::Arc;

use crate::config::RecoveryConfig;
use crate::{Directory, Evacuator, Fencer, HostId, Journal, Monitor, Notifier};

/// The drivers of one freezer-dr: built from a config file by [`crate::config::Config::build`], or by hand
/// with typed constructors when embedding.
#[derive(Clone)]
pub struct Pipeline {
    /// Observes hosts.
    pub monitor: Arc<dyn Monitor>,
    /// Fencing levels, tried in order.
    pub fencers: Vec<Arc<dyn Fencer>>,
    /// Isolates and evacuates.
    pub evacuator: Arc<dyn Evacuator>,
    /// Finds who to tell (optional: without it only the operators are told).
    pub directory: Option<Arc<dyn Directory>>,
    /// Deliver reports.
    pub notifiers: Vec<Arc<dyn Notifier>>,
}

/// What a `run --once` pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Hosts that went into recovery during the pass.
    pub recovered: Vec<HostId>,
    /// Hosts left waiting for a person.
    pub needs_operator: Vec<HostId>,
    /// Instances whose evacuation failed.
    pub failed_instances: usize,
    /// Why the pass refused to act (storm, pause, observation failing), if it did.
    pub refused: Option<String>,
    /// In a dry run: what would have been done, one line per action.
    pub plan: Vec<String>,
}

/// Runs a [`Pipeline`] with the engine and the journal.
pub struct Runtime {
    cfg: RecoveryConfig,
    pipeline: Pipeline,
    journal: Arc<dyn Journal>,
    dry_run: bool,
}

impl Runtime {
    /// A runtime for these drivers and this journal.
    pub fn new(cfg: RecoveryConfig, pipeline: Pipeline, journal: Arc<dyn Journal>) -> Self {
        Self {
            cfg,
            pipeline,
            journal,
            dry_run: false,
        }
    }

    /// Dry run: decide and print the plan, touch nothing (only read-only driver calls are made).
    #[must_use]
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
}

impl Runtime {
    /// One pass, the original freezer-dr behaviour: observe (up to `strikes` times, `interval` apart) and
    /// recover every host found down, then return once every recovery settled. Nothing down: an empty
    /// [`Summary`] (the CLI prints `No failed nodes`).
    pub async fn run_once(self) -> crate::Result<Summary> {
        let _ = (&self.cfg, &self.pipeline, &self.journal, self.dry_run);
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            "run_once: not built yet",
        ))
    }

    /// The daemon loop, until `shutdown` resolves; in-flight work is drained before returning.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> crate::Result<()> {
        let _ = shutdown;
        Err(crate::Error::new(
            crate::ErrorKind::Unsupported,
            "run: not built yet",
        ))
    }
}
