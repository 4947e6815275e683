//! The `Fencer` trait: out-of-band power control.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, ErrorKind, HostId, Result};

/// A host's power state as its BMC or hypervisor reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    /// Powered on.
    On,
    /// Powered off: the only state that lets recovery continue.
    Off,
    /// The controller answered but the state is not known.
    Unknown,
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
            Self::Unknown => "unknown",
        })
    }
}

/// Powers hosts off (and reads their power state) through a channel that does not depend on the host's
/// own OS: a BMC, a hypervisor.
///
/// Every call is idempotent: powering off a host that is already off succeeds. Drivers do not retry or
/// sleep; they classify their errors and the runtime retries.
#[async_trait]
pub trait Fencer: Send + Sync {
    /// True if this fencer can act on `host` (it is in its inventory). A fencing level that does not
    /// handle a host is skipped for it.
    fn handles(&self, host: &HostId) -> bool {
        let _ = host;
        true
    }

    /// Requests a hard power-off. Success means the request was accepted, not that the host is off: the
    /// engine confirms with [`Fencer::power_status`].
    async fn power_off(&self, host: &HostId) -> Result<()>;

    /// Reads the current power state.
    async fn power_status(&self, host: &HostId) -> Result<PowerState>;

    /// Powers a host on (optional; used by labs and operators, never by recovery).
    async fn power_on(&self, host: &HostId) -> Result<()> {
        Err(
            Error::new(ErrorKind::Unsupported, "this fencer cannot power hosts on")
                .with_context("host", host),
        )
    }

    /// Checks that the fencer can reach its controllers (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
