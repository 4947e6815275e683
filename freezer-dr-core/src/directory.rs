//! The `Directory` trait: who to tell about a project's instances.

use async_trait::async_trait;

use crate::Result;
pub use crate::report::Recipient;

/// Looks up the users of a project (Keystone role assignments, with group expansion).
#[async_trait]
pub trait Directory: Send + Sync {
    /// The users with a role on `project`.
    async fn recipients(&self, project: &str) -> Result<Vec<Recipient>>;

    /// The name people know `project` by (Keystone's project name), for the mails; `None`: this directory
    /// knows no names (the default). The runtime asks once per delivery attempt, without retries, and a
    /// failure never holds a mail back: the mails then name the project by its id.
    async fn project_name(&self, project: &str) -> Result<Option<String>> {
        let _ = project;
        Ok(None)
    }

    /// Checks that the directory can reach its API (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
