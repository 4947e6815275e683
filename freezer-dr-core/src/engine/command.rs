//! What the engine asks the runtime to do, and what the runtime tells the engine back.

use crate::engine::{Fenced, OperatorRequest};
use crate::{Failure, HostHealth, HostId, Instance, PowerState, Progress, Report};

/// One action for the runtime. Commands are emitted only after the state that allows them was recorded
/// (the runtime writes [`crate::engine::Changes`] to the journal before executing them).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Ask fencing level `level` to power `host` off.
    PowerOff {
        /// The host.
        host: HostId,
        /// The fencing level (index into the configured fencers).
        level: usize,
    },
    /// Read `host`'s power state through fencing level `level`.
    PowerStatus {
        /// The host.
        host: HostId,
        /// The fencing level.
        level: usize,
    },
    /// Tell the cloud the fenced host is gone.
    Isolate {
        /// The proof it is off.
        fenced: Fenced,
    },
    /// List the fenced host's instances.
    ListInstances {
        /// The proof it is off.
        fenced: Fenced,
    },
    /// Evacuate one instance from the fenced host.
    Evacuate {
        /// The proof its host is off.
        fenced: Fenced,
        /// The instance.
        instance: Instance,
    },
    /// Read an instance's evacuation progress.
    Progress {
        /// The host it is evacuated from.
        host: HostId,
        /// The instance.
        instance: Instance,
    },
    /// Start an instance an evacuation left stopped on its new host (it ran before the failure).
    Start {
        /// The host it was evacuated from.
        host: HostId,
        /// The instance.
        instance: Instance,
    },
    /// Return a repaired host to service.
    Restore {
        /// The host.
        host: HostId,
    },
    /// Deliver a report (the runtime stores it in the outbox first, in the same journal commit).
    Notify(Report),
}

impl Command {
    /// The host this command is about, if any.
    pub fn host(&self) -> Option<&HostId> {
        match self {
            Self::PowerOff { host, .. }
            | Self::PowerStatus { host, .. }
            | Self::Progress { host, .. }
            | Self::Start { host, .. }
            | Self::Restore { host } => Some(host),
            Self::Isolate { fenced }
            | Self::ListInstances { fenced }
            | Self::Evacuate { fenced, .. } => Some(fenced.host()),
            Self::Notify(r) => r.host.as_ref(),
        }
    }

    /// True if repeating this command after an ambiguous failure (timeout, lost reply) is harmless, so the
    /// runtime may retry it. An evacuation request is not: its outcome is re-checked with a progress read.
    pub fn retry_safe(&self) -> bool {
        !matches!(self, Self::Evacuate { .. })
    }

    /// True for the commands that change the cloud (power, isolation, evacuation, return to service).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Self::PowerOff { .. }
                | Self::Isolate { .. }
                | Self::Evacuate { .. }
                | Self::Start { .. }
                | Self::Restore { .. }
        )
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PowerOff { .. } => "power_off",
            Self::PowerStatus { .. } => "power_status",
            Self::Isolate { .. } => "isolate",
            Self::ListInstances { .. } => "list_instances",
            Self::Evacuate { .. } => "evacuate",
            Self::Progress { .. } => "progress",
            Self::Start { .. } => "start",
            Self::Restore { .. } => "restore",
            Self::Notify(_) => "notify",
        }
    }
}

/// What happened, fed to [`crate::Engine::step`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// Time passed (deadlines, polls and retries fall due).
    Tick,
    /// A monitor observation, or why it failed.
    Observed(Result<Vec<HostHealth>, Failure>),
    /// The result of [`Command::PowerOff`].
    PoweredOff {
        /// The host.
        host: HostId,
        /// The level asked.
        level: usize,
        /// Accepted, or why not (after the runtime's retries).
        result: Result<(), Failure>,
    },
    /// The result of [`Command::PowerStatus`].
    PowerRead {
        /// The host.
        host: HostId,
        /// The level asked.
        level: usize,
        /// The state read, or why not.
        result: Result<PowerState, Failure>,
    },
    /// The result of [`Command::Isolate`].
    Isolated {
        /// The host.
        host: HostId,
        /// Done, or why not.
        result: Result<(), Failure>,
    },
    /// The result of [`Command::ListInstances`].
    Listed {
        /// The host.
        host: HostId,
        /// Its instances, or why not.
        result: Result<Vec<Instance>, Failure>,
    },
    /// The result of [`Command::Evacuate`].
    EvacuateSent {
        /// The source host.
        host: HostId,
        /// The instance id.
        instance: String,
        /// Accepted, or why not.
        result: Result<(), Failure>,
    },
    /// The result of [`Command::Progress`].
    ProgressRead {
        /// The source host.
        host: HostId,
        /// The instance id.
        instance: String,
        /// Where it stands, or why it could not be read.
        result: Result<Progress, Failure>,
    },
    /// The result of [`Command::Start`].
    Started {
        /// The source host.
        host: HostId,
        /// The instance id.
        instance: String,
        /// Done, or why not.
        result: Result<(), Failure>,
    },
    /// The result of [`Command::Restore`].
    Restored {
        /// The host.
        host: HostId,
        /// Done, or why not.
        result: Result<(), Failure>,
    },
    /// An operator's request from the command line.
    Operator(OperatorRequest),
}
