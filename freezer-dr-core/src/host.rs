//! Hosts, their health as observed, and the instances that run on them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A compute host, named exactly as Nova's `os-services` names it (`host` field).
///
/// Comparison is exact and case-sensitive: `compute-1` never matches `compute-10`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    /// Wraps a host name as Nova reports it.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The exact host name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for HostId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for HostId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch.
///
/// The engine never reads a clock: the runtime passes `now` in, which keeps the engine deterministic and lets
/// tests drive time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `d`, saturating.
    #[must_use]
    pub fn after(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
        Self(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = UNIX_EPOCH + Duration::from_millis(self.0);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

/// Whether a host's compute service is alive, as a monitor sees it.
///
/// This is liveness of the service's heartbeat: a host that Nova reports `down` only because freezer-dr set
/// `forced_down` but whose `nova-compute` heartbeats again is `Up` here (that is how a repaired host shows it
/// is back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    /// The service reports and its heartbeat is fresh.
    Up,
    /// The service is down, with the evidence (state, heartbeat age, ...).
    Down {
        /// Why the monitor thinks so, for logs and reports.
        reason: String,
    },
    /// The monitor has no opinion about this host (e.g. no data yet); never counts as a strike.
    Unknown {
        /// Why the monitor has no opinion.
        reason: String,
    },
}

impl Health {
    /// Shorthand for `Health::Down { reason }`.
    pub fn down(reason: impl Into<String>) -> Self {
        Self::Down {
            reason: reason.into(),
        }
    }

    /// True if the host is observed down.
    pub fn is_down(&self) -> bool {
        matches!(self, Self::Down { .. })
    }
}

/// The administrative state of a host's compute service in Nova.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminState {
    /// `status=disabled`.
    pub disabled: bool,
    /// The `disabled_reason`, if any. freezer-dr's own reasons start with [`isolation_marker`]'s prefix.
    pub disabled_reason: Option<String>,
    /// `forced_down=true`.
    pub forced_down: bool,
}

impl AdminState {
    /// True if the host was disabled by someone other than freezer-dr (maintenance): the engine leaves such
    /// hosts alone.
    pub fn disabled_by_operator(&self) -> bool {
        self.disabled
            && !self
                .disabled_reason
                .as_deref()
                .is_some_and(is_isolation_marker)
    }

    /// True if the host carries freezer-dr's isolation marker (a restarted freezer-dr fenced it earlier).
    pub fn isolated_by_freezer_dr(&self) -> bool {
        self.disabled_reason
            .as_deref()
            .is_some_and(is_isolation_marker)
    }
}

/// One host as observed by a [`crate::Monitor`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHealth {
    /// The exact host name.
    pub host: HostId,
    /// Whether its service is alive.
    pub health: Health,
    /// Its administrative state.
    #[serde(default)]
    pub admin: AdminState,
    /// When several monitors are combined: each one's view of this host, in configuration order
    /// (`health` is then their combined verdict). Empty with a single monitor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub views: Vec<MonitorView>,
}

impl HostHealth {
    /// An enabled host with the given health.
    pub fn new(host: impl Into<HostId>, health: Health) -> Self {
        Self {
            host: host.into(),
            health,
            admin: AdminState::default(),
            views: Vec::new(),
        }
    }

    /// True if one of the combined monitors says down while the combined verdict does not, because
    /// another one that observed says up or cannot tell (the second opinion that keeps a host with a dead
    /// `nova-compute` from being powered off). A monitor whose whole observation failed is no opinion:
    /// that is reported as its failure, not as a dispute.
    pub fn disputed(&self) -> bool {
        !self.health.is_down()
            && self.views.iter().any(|v| v.health.is_down())
            && self.views.iter().any(|v| !v.failed && !v.health.is_down())
    }
}

/// One monitor's view of one host, kept beside the combined verdict (`status`, `history` and the
/// operators' mails show it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorView {
    /// The monitor's name (its `name` key, else its `type`).
    pub monitor: String,
    /// What it saw (a monitor whose observation failed sees `Unknown` for every host).
    pub health: Health,
    /// True if the monitor's whole observation failed (rather than this host being unknown to it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
}

impl fmt::Display for MonitorView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.health {
            Health::Up => write!(f, "{}: up", self.monitor),
            Health::Down { reason } => write!(f, "{}: down ({reason})", self.monitor),
            Health::Unknown { reason } => write!(f, "{}: unknown ({reason})", self.monitor),
        }
    }
}

const MARKER_PREFIX: &str = "freezer-dr:fenced:";

/// The machine-readable `disabled_reason` freezer-dr sets when it isolates a fenced host:
/// `freezer-dr:fenced:<journal id>:<host>@<run>:<time>`. The journal id says which freezer-dr wrote it (a
/// second daemon with a journal of its own is another actor); release 0.1 wrote no journal id
/// (`freezer-dr:fenced:<host>@<run>:<time>`), and such markers still parse.
pub fn isolation_marker(journal: &str, recovery: &str, at: Timestamp) -> String {
    format!("{}{at}", recovery_marker_prefix(journal, recovery))
}

/// What every isolation marker of one recovery by one freezer-dr starts with, whatever its time.
pub(crate) fn recovery_marker_prefix(journal: &str, recovery: &str) -> String {
    if journal.is_empty() {
        return format!("{MARKER_PREFIX}{recovery}:");
    }
    format!("{MARKER_PREFIX}{journal}:{recovery}:")
}

/// The id of the journal whose freezer-dr wrote this isolation marker, if it is one that carries it
/// (`None` for any other reason, and for markers written by release 0.1).
pub fn marker_journal(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix(MARKER_PREFIX)?;
    let first = rest.split(':').next()?;
    // A 0.1 marker starts with the recovery id `<host>@<run>`; a journal id has no `@`.
    (!first.is_empty() && !first.contains('@')).then_some(first)
}

/// True if a `disabled_reason` is one freezer-dr wrote.
pub fn is_isolation_marker(reason: &str) -> bool {
    reason.starts_with(MARKER_PREFIX)
}

/// An instance (Nova server) as the evacuator lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Server UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Project (tenant) id.
    pub project: String,
    /// Id of the user who created it.
    pub user: String,
    /// Nova status (`ACTIVE`, `SHUTOFF`, `ERROR`, ...), upper case.
    pub status: String,
    /// The host it is on, exactly.
    pub host: HostId,
    /// Server metadata (the per-instance policy reads it).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// True if its root disk is a Cinder volume (survives an evacuation intact); false if it is a local or
    /// image-backed disk that Nova rebuilds from its image unless the storage is shared.
    pub volume_backed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_match_exactly() {
        assert_ne!(HostId::from("compute-1"), HostId::from("compute-10"));
        assert_ne!(HostId::from("Compute-1"), HostId::from("compute-1"));
    }

    #[test]
    fn markers_are_recognised_and_operator_reasons_are_not() {
        let m = isolation_marker("j1", "c1@0", Timestamp(0));
        assert_eq!(m, "freezer-dr:fenced:j1:c1@0:1970-01-01T00:00:00Z");
        assert_eq!(marker_journal(&m), Some("j1"));
        // Written by release 0.1: ours, with no journal id.
        let old = "freezer-dr:fenced:c1@0:1970-01-01T00:00:00Z";
        assert!(is_isolation_marker(old));
        assert_eq!(marker_journal(old), None);
        assert_eq!(marker_journal("disk swap"), None);
        let ours = AdminState {
            disabled: true,
            disabled_reason: Some(m),
            forced_down: true,
        };
        assert!(ours.isolated_by_freezer_dr());
        assert!(!ours.disabled_by_operator());
        let theirs = AdminState {
            disabled: true,
            disabled_reason: Some("disk swap, ticket 42".into()),
            forced_down: false,
        };
        assert!(theirs.disabled_by_operator());
        assert!(!theirs.isolated_by_freezer_dr());
        assert!(!AdminState::default().disabled_by_operator());
    }

    #[test]
    fn timestamps_add_and_subtract_without_overflow() {
        let t = Timestamp(1_000);
        assert_eq!(t.after(Duration::from_secs(2)), Timestamp(3_000));
        assert_eq!(Timestamp(3_000).since(t), Duration::from_secs(2));
        assert_eq!(t.since(Timestamp(3_000)), Duration::ZERO);
        assert_eq!(
            Timestamp(u64::MAX).after(Duration::from_secs(1)),
            Timestamp(u64::MAX)
        );
    }
}
