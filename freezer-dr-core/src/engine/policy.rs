//! The engine's policy: `[recovery]` and its sections, as the engine reads them.
//!
//! These types belong to the engine (it decides by them); the config file format (`crate::config`) parses
//! them from `[recovery]` and checks their values, and re-exports them at their old paths.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Durations written as `"30s"`, `"5m"`, `"1h 30m"` (humantime).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Deserializes a humantime duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration such as \"30s\", \"5m\" or \"1h 30m\", got {s:?} ({e})"
            ))
        })
    }

    /// Serializes a duration as a humantime string.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

/// `[recovery]`: how freezer-dr decides. The defaults are safe for a typical cloud (tens of hosts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Time between two observations.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Consecutive down observations before a host is fenced (one blip is not a failure).
    pub strikes: u32,
    /// Time limit on every driver call (a call past it counts as a temporary `timeout` error).
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// Attempts per driver call for temporary errors, with exponential backoff and jitter, before the
    /// engine is told it failed.
    pub call_attempts: u32,
    /// First backoff between attempts (doubles each time, with jitter).
    #[serde(with = "duration")]
    pub call_backoff: Duration,
    /// After a host-level step failed temporarily even with retries (Nova down), wait this long and try
    /// again; the operators are told after 3 such failures in a row.
    #[serde(with = "duration")]
    pub step_retry: Duration,
    /// A host in recovery that the monitors no longer list (decommissioned, renamed) is forgotten after
    /// this long: it stops counting against the storm budget, and the operators are told
    /// (`freezer-dr forget HOST` does it at once).
    #[serde(with = "duration")]
    pub forget_after: Duration,
    /// A repaired host not returned to service within this long (Nova keeps refusing, its nova-compute
    /// keeps failing) is handed to the operators.
    #[serde(with = "duration")]
    pub restore_timeout: Duration,
    /// After isolating a host, wait this long before listing its instances; the listing reads the
    /// host's service record again and stops if another freezer-dr's marker replaced ours meanwhile. Two
    /// daemons without `[ha]` that read the record before either wrote both write their marker: the last
    /// one stays, and this pause lets the first one see it and step back before it evacuates anything.
    /// `0s` lists at once.
    #[serde(with = "duration")]
    pub isolation_settle: Duration,
    /// Fencing: power-status polling and its deadline.
    pub fencing: FencingConfig,
    /// Storm guard.
    pub storm: StormConfig,
    /// Evacuation concurrency, retries, tracking.
    pub evacuation: EvacuationConfig,
    /// Which instances to evacuate.
    pub policy: PolicyConfig,
    /// How a repaired host returns to service.
    pub return_to_service: ReturnToService,
    /// How several `[[monitor]]` sections combine.
    pub monitors: MonitorsConfig,
}

/// `[recovery.monitors]`: how the views of several `[[monitor]]` sections make one verdict per host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorsConfig {
    /// `all` (default: every monitor that knows the host says down), `any`, or `quorum` (more than half).
    pub combine: crate::Combine,
    /// A disagreement (one monitor says down, the verdict does not) is reported to the operators once it
    /// lasted this long and the strike count: longer than the slowest monitor takes to see a dead host
    /// (Nova's heartbeat timeout plus a few intervals), so a host that died, seen by a fast probe before
    /// Nova's heartbeat times out, is fenced without a false alarm.
    #[serde(with = "duration")]
    pub disagreement_after: Duration,
}

impl Default for MonitorsConfig {
    fn default() -> Self {
        Self {
            combine: crate::Combine::default(),
            disagreement_after: Duration::from_secs(180),
        }
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            strikes: 3,
            call_timeout: Duration::from_secs(60),
            call_attempts: 4,
            call_backoff: Duration::from_secs(1),
            step_retry: Duration::from_secs(30),
            forget_after: Duration::from_secs(3600),
            restore_timeout: Duration::from_secs(1800),
            isolation_settle: Duration::from_secs(2),
            fencing: FencingConfig::default(),
            storm: StormConfig::default(),
            evacuation: EvacuationConfig::default(),
            policy: PolicyConfig::default(),
            return_to_service: ReturnToService::Auto,
            monitors: MonitorsConfig::default(),
        }
    }
}

/// `[recovery.fencing]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FencingConfig {
    /// Time between power-status reads after a power-off.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long the power status may take to read `off` before this fencing level is given up.
    #[serde(with = "duration")]
    pub confirm_timeout: Duration,
    /// Power-off requests in flight at once, across hosts (protects shared BMC networks and hypervisors).
    pub concurrency: usize,
}

impl Default for FencingConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            confirm_timeout: Duration::from_secs(60),
            concurrency: 4,
        }
    }
}

/// `[recovery.storm]`: when many hosts look down at once, the problem is the network or the control
/// plane, not the hosts; fencing them would turn an outage into a disaster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StormConfig {
    /// Most hosts down or in recovery at once (hosts fenced and not yet restored count).
    pub max_hosts: usize,
    /// Largest fraction of the observed (not operator-disabled) hosts down or in recovery at once.
    pub max_fraction: f64,
    /// Most hosts newly fenced per observation cycle (the others wait for the next cycle).
    pub max_new_fencings_per_cycle: usize,
    /// After a storm, how long the picture must stay calm before fencing resumes.
    #[serde(with = "duration")]
    pub cooldown: Duration,
}

impl Default for StormConfig {
    fn default() -> Self {
        Self {
            max_hosts: 2,
            max_fraction: 0.25,
            max_new_fencings_per_cycle: 1,
            cooldown: Duration::from_secs(600),
        }
    }
}

/// `[recovery.evacuation]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvacuationConfig {
    /// Most instances being evacuated at once, across all hosts.
    pub concurrency: usize,
    /// Evacuation requests per instance (first try included) before it is reported failed.
    pub attempts: u32,
    /// Wait before asking again for an instance whose evacuation failed.
    #[serde(with = "duration")]
    pub retry_delay: Duration,
    /// Time between progress reads of an instance being rebuilt.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Longest an instance may take to be running elsewhere before it is reported failed.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for EvacuationConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            attempts: 3,
            retry_delay: Duration::from_secs(10),
            poll_interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1200),
        }
    }
}

/// Whether instances are evacuated unless they opt out, or only if they opt in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Every instance, unless its metadata key is false (`false`, `no`, `off`, `0`).
    OptOut,
    /// Only instances whose metadata key is true (`true`, `yes`, `on`, `1`).
    OptIn,
}

/// What to do with an instance whose root disk is not a volume: Nova rebuilds it from its image unless the
/// compute storage is shared (Ceph, NFS), so its disk contents may be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalRootDisk {
    /// Leave it on the failed host (its disk survives there until the host is repaired) and say so.
    Skip,
    /// Evacuate it anyway (right for shared ephemeral storage, or when availability beats disk contents).
    Evacuate,
}

/// `[recovery.policy]`: which instances are evacuated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Opt-out (default) or opt-in.
    pub mode: PolicyMode,
    /// The server metadata key read by `mode`.
    pub metadata_key: String,
    /// Nova statuses left alone (Nova refuses to evacuate them, or they are not running anywhere).
    pub skip_states: Vec<String>,
    /// Instances whose root disk is not a volume.
    pub local_root_disk: LocalRootDisk,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            mode: PolicyMode::OptOut,
            metadata_key: "freezer_dr:evacuate".into(),
            skip_states: [
                "PAUSED",
                "SUSPENDED",
                "SHELVED",
                "SHELVED_OFFLOADED",
                "SOFT_DELETED",
                "DELETED",
            ]
            .map(String::from)
            .to_vec(),
            local_root_disk: LocalRootDisk::Skip,
        }
    }
}

/// How a repaired host comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReturnToService {
    /// Once every evacuation from it ended and it reports up again: unset forced_down, wait for up, enable.
    Auto,
    /// Leave it disabled; an operator enables it (freezer-dr then treats it as healthy).
    Manual,
}
