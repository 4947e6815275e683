//! The `Directory` trait: who to tell about a project's instances.

use async_trait::async_trait;

use crate::Result;
pub use crate::report::Recipient;

/// Looks up the users of a project (Keystone role assignments, with group expansion).
#[async_trait]
pub trait Directory: Send + Sync {
    /// The users with a role on `project`.
    async fn recipients(&self, project: &str) -> Result<Vec<Recipient>>;

    /// Checks that the directory can reach its API (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
