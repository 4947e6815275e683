//! The `Monitor` trait: which hosts look down.

use async_trait::async_trait;

use crate::{HostHealth, Result};

/// Observes compute hosts. Read-only: observing never changes anything.
///
/// An `Err` means the observation itself failed (the control plane could not be asked); the engine treats
/// that as "no information", never as "everything is down".
#[async_trait]
pub trait Monitor: Send + Sync {
    /// Every known compute host with its health and administrative state.
    async fn observe(&self) -> Result<Vec<HostHealth>>;

    /// Checks that the monitor can reach what it observes (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}

mod combined;

pub use combined::{Combine, CombinedMonitor};
