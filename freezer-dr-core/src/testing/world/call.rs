//! The calls a world records and the operations scripts name.

use crate::HostId;

/// A driver operation, for scripting failures and latencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// [`crate::Monitor::observe`].
    Observe,
    /// [`crate::Fencer::power_off`].
    PowerOff,
    /// [`crate::Fencer::power_status`].
    PowerStatus,
    /// [`crate::Fencer::power_on`].
    PowerOn,
    /// [`crate::Evacuator::isolate`].
    Isolate,
    /// [`crate::Evacuator::instances`].
    ListInstances,
    /// [`crate::Evacuator::evacuate`].
    Evacuate,
    /// [`crate::Evacuator::progress`].
    Progress,
    /// [`crate::Evacuator::restore`].
    Restore,
    /// [`crate::Notifier::notify`].
    Notify,
    /// [`crate::Directory::recipients`].
    Recipients,
    /// [`crate::Directory::project_name`].
    ProjectName,
}

/// One driver call as the world saw it (calls that hung on a crash are not logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `observe()`.
    Observe,
    /// `power_off(host)` through fencing level `level`.
    PowerOff {
        /// The host.
        host: HostId,
        /// The fencer's level.
        level: usize,
    },
    /// `power_status(host)` through fencing level `level`.
    PowerStatus {
        /// The host.
        host: HostId,
        /// The fencer's level.
        level: usize,
    },
    /// `power_on(host)` through fencing level `level`.
    PowerOn {
        /// The host.
        host: HostId,
        /// The fencer's level.
        level: usize,
    },
    /// `isolate(fenced)`.
    Isolate {
        /// The host.
        host: HostId,
    },
    /// `instances(fenced)`.
    ListInstances {
        /// The host.
        host: HostId,
    },
    /// `evacuate(fenced, instance)`.
    Evacuate {
        /// The instance id.
        instance: String,
    },
    /// `progress(instance)`.
    Progress {
        /// The instance id.
        instance: String,
    },
    /// `restore(host)`.
    Restore {
        /// The host.
        host: HostId,
    },
    /// `notify(report)` by the notifier named `notifier`.
    Notify {
        /// The report id.
        report_id: String,
        /// The notifier's name.
        notifier: String,
    },
    /// `recipients(project)`.
    Recipients {
        /// The project.
        project: String,
    },
    /// `project_name(project)`.
    ProjectName {
        /// The project.
        project: String,
    },
}

impl Call {
    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Call::Observe => Op::Observe,
            Call::PowerOff { .. } => Op::PowerOff,
            Call::PowerStatus { .. } => Op::PowerStatus,
            Call::PowerOn { .. } => Op::PowerOn,
            Call::Isolate { .. } => Op::Isolate,
            Call::ListInstances { .. } => Op::ListInstances,
            Call::Evacuate { .. } => Op::Evacuate,
            Call::Progress { .. } => Op::Progress,
            Call::Restore { .. } => Op::Restore,
            Call::Notify { .. } => Op::Notify,
            Call::Recipients { .. } => Op::Recipients,
            Call::ProjectName { .. } => Op::ProjectName,
        }
    }

    /// The names a scripted failure's target is matched against: the host, the instance id, the project,
    /// or the report id and the notifier's name.
    pub(super) fn targets(&self) -> Vec<&str> {
        match self {
            Call::Observe => vec![],
            Call::PowerOff { host, .. }
            | Call::PowerStatus { host, .. }
            | Call::PowerOn { host, .. }
            | Call::Isolate { host }
            | Call::ListInstances { host }
            | Call::Restore { host } => vec![host.as_str()],
            Call::Evacuate { instance } | Call::Progress { instance } => vec![instance.as_str()],
            Call::Notify {
                report_id,
                notifier,
            } => vec![report_id.as_str(), notifier.as_str()],
            Call::Recipients { project } | Call::ProjectName { project } => vec![project.as_str()],
        }
    }
}
