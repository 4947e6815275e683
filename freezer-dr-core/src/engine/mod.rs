//! The recovery engine: a pure, synchronous state machine.
//!
//! [`Engine::step`] takes the time and one [`Input`] (an observation, a driver call's result, an operator
//! request, or a tick) and returns the [`Command`]s to run next. It does no I/O and reads no clock, so every
//! decision is reproducible in a test that asserts the exact command list. The runtime writes
//! [`Engine::take_changes`] to the journal *before* executing the commands that change the cloud
//! (write-ahead); reads may go first.
//!
//! Per host: `Healthy → Suspect → Fencing → Verifying → Isolating → Evacuating → Evacuated → Restoring →
//! Healthy`, or `NeedsOperator`. Per instance: `Pending → Requested → Rebuilding → Done | Failed` (or
//! `Skipped`/`Gone`). The storm guard, the strikes, the fencing levels, evacuation concurrency and retry
//! budget, the instance policy and the return to service all live here.

mod command;
mod drive;
mod evacuation;
mod fencing;
mod observe;
mod operator;
pub mod policy;
mod report;
mod restore;
mod state;
mod step;
#[cfg(test)]
mod tests;
mod views;
mod work;

use std::collections::{BTreeMap, BTreeSet};

pub use crate::fence::{FenceProof, FenceRecord, Fenced};
pub use command::{Command, Input};
pub use state::{
    Changes, EngineMeta, HistoryEvent, HostRecord, InstanceRecord, InstanceState, OperatorRequest,
    Snapshot, Stage,
};

use crate::HostId;
pub use policy::RecoveryConfig;

/// The recovery engine. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Engine {
    cfg: RecoveryConfig,
    levels: usize,
    hosts: BTreeMap<HostId, HostRecord>,
    meta: EngineMeta,
    // What changed since the last `take_changes`.
    dirty_hosts: BTreeSet<HostId>,
    dirty_instances: BTreeSet<(HostId, String)>,
    cleared: BTreeSet<HostId>,
    meta_dirty: bool,
    history: Vec<HistoryEvent>,
    // The journal's id (named in isolation markers).
    journal_id: String,
    // Shutting down: results are taken in, nothing new is started (not stored: a restart starts afresh).
    draining: bool,
    // What `drive` and `next_wakeup` look at (derived from the state, see work.rs).
    work: work::Work,
    // The engine scenarios' reference: drive by a full scan, not through the work index.
    #[cfg(test)]
    by_scan: bool,
    // The engine scenarios' measure of what `drive` looked at: hosts driven and instance turns taken.
    #[cfg(test)]
    visits: (usize, usize),
}

impl Engine {
    /// An engine with no history. `fencing_levels` is the number of configured fencers (`[[fencer]]`).
    pub fn new(cfg: RecoveryConfig, fencing_levels: usize) -> Self {
        Self::from_snapshot(cfg, fencing_levels, Snapshot::default())
    }

    /// An engine resuming from the journal. Nothing is in flight after a restart: hosts mid-fencing re-read
    /// their power status before anything else, and instances whose evacuation was requested re-read their
    /// progress, so no destructive call is repeated blindly.
    pub fn from_snapshot(cfg: RecoveryConfig, fencing_levels: usize, snapshot: Snapshot) -> Self {
        let hosts = snapshot
            .hosts
            .into_iter()
            .map(|mut h| {
                // Nothing is in flight after a restart, whatever the caller passed in.
                h.pending = None;
                for i in h.instances.values_mut() {
                    i.inflight = false;
                }
                (h.host.clone(), h)
            })
            .collect();
        let mut engine = Self {
            cfg,
            levels: fencing_levels,
            hosts,
            meta: snapshot.meta,
            dirty_hosts: BTreeSet::new(),
            dirty_instances: BTreeSet::new(),
            cleared: BTreeSet::new(),
            meta_dirty: false,
            history: Vec::new(),
            journal_id: snapshot.journal_id,
            draining: false,
            work: work::Work::default(),
            #[cfg(test)]
            by_scan: false,
            #[cfg(test)]
            visits: (0, 0),
        };
        engine.file_everything();
        engine
    }

    /// Shutting down: from now on results are still taken in, but nothing new is started — no call, and
    /// no write-ahead mark (a `Requested` instance, an attempt counted) for a call that would never leave.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    /// The configuration in use.
    pub fn config(&self) -> &RecoveryConfig {
        &self.cfg
    }

    /// Every known host, by name.
    pub fn hosts(&self) -> impl Iterator<Item = &HostRecord> {
        self.hosts.values()
    }

    /// One host's record.
    pub fn host(&self, host: &HostId) -> Option<&HostRecord> {
        self.hosts.get(host)
    }

    /// Engine-wide state (brake, refusal episodes).
    pub fn meta(&self) -> &EngineMeta {
        &self.meta
    }

    /// Everything that changed since the last call, for the journal.
    pub fn take_changes(&mut self) -> Changes {
        let hosts = std::mem::take(&mut self.dirty_hosts)
            .into_iter()
            .filter_map(|h| {
                // Without its instances (journaled on their own), and without copying them.
                let rec = self.hosts.get_mut(&h)?;
                let instances = std::mem::take(&mut rec.instances);
                let copy = rec.clone();
                rec.instances = instances;
                Some(copy)
            })
            .collect();
        let instances = std::mem::take(&mut self.dirty_instances)
            .into_iter()
            .filter_map(|(h, i)| {
                let rec = self.hosts.get(&h)?.instances.get(&i)?.clone();
                Some((h, rec))
            })
            .collect();
        Changes {
            hosts,
            instances,
            clear_instances: std::mem::take(&mut self.cleared).into_iter().collect(),
            meta: std::mem::take(&mut self.meta_dirty).then(|| self.meta.clone()),
            history: std::mem::take(&mut self.history),
        }
    }
}
