//! The `Notifier` trait: telling people what happened.

use async_trait::async_trait;

use crate::{Report, Result};

/// Delivers [`Report`]s (mail, chat, pager).
///
/// The runtime stores every report in the journal's outbox before delivering it and retries temporary
/// errors with backoff, so a notifier only has to try once and classify its error. `Report::id` is stable
/// across retries: a notifier may use it to avoid duplicates.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one report.
    async fn notify(&self, report: &Report) -> Result<()>;

    /// Checks that the notifier can reach its server (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
