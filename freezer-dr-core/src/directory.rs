//! The `Directory` trait: who to tell about a project's instances.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A person to notify about a project.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Recipient {
    /// Identity-service user id.
    pub user_id: String,
    /// User name.
    pub name: String,
    /// Email address, if the user has one.
    pub email: Option<String>,
}

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
