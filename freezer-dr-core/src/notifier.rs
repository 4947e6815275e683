//! The `Notifier` trait: telling people what happened.

use async_trait::async_trait;

use crate::{Report, Result};

/// Delivers [`Report`]s (mail, chat, pager).
///
/// The runtime stores every report in the journal's outbox before delivering it and retries temporary
/// errors with backoff, so a notifier only has to try once and classify its error. `Report::id` is stable
/// across retries: a notifier may use it to avoid duplicates.
///
/// A report may be delivered in parts, all with the same id. A notifier:
/// - tells nobody in [`Report::told`] again (the operators, or a project's users, told by an earlier
///   attempt — recorded in the outbox, so this holds across restarts);
/// - tells the users of a project in [`Report::lookup_failed`] nothing now (who they are is unknown), and
///   says plainly to the operators which projects those are, why, and that their users will be told once
///   the directory answers; the runtime delivers those projects later, on their own.
///
/// `Ok` means everything the report asked for now was delivered.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers one report.
    async fn notify(&self, report: &Report) -> Result<()>;

    /// Checks that the notifier can reach its server (`freezer-dr validate --connect`).
    async fn healthcheck(&self) -> Result<()> {
        Ok(())
    }
}
