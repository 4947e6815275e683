//! One driver call: its timeout, its retries, and the leadership guard right before each attempt.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use super::backoff::Backoff;
use crate::engine::{Command, Input, RecoveryConfig};
use crate::{Error, ErrorKind, Failure, Journal, Result};

/// The leadership refusal a result carries, if any (see [`Journal::guard`]).
pub(super) fn deposed(input: &Input) -> Option<&Failure> {
    let failure = match input {
        Input::PoweredOff { result, .. }
        | Input::Isolated { result, .. }
        | Input::EvacuateSent { result, .. }
        | Input::Started { result, .. }
        | Input::Restored { result, .. } => result.as_ref().err(),
        _ => None,
    }?;
    (failure.kind == ErrorKind::NotLeader).then_some(failure)
}

pub(super) fn timeout_failure(op: &str, d: Duration) -> Failure {
    Error::no_answer(op, d).to_failure()
}

/// How the runtime makes the driver call of one command.
pub(super) struct CallPolicy {
    /// The command's name (logs, errors).
    op: &'static str,
    /// [`Command::retry_safe`].
    retry_safe: bool,
    /// For destructive commands: the journal whose [`Journal::guard`] must pass right before each
    /// attempt (HA: the fencing token), or the call is not made.
    guard: Option<Arc<dyn Journal>>,
}

impl CallPolicy {
    /// How `cmd`'s call is made: its name, its retry safety and, for the writes, `journal`'s guard right
    /// before each attempt (`None`: nothing to guard).
    pub(super) fn of(cmd: &Command, journal: Option<&Arc<dyn Journal>>) -> Self {
        Self {
            op: cmd.name(),
            retry_safe: cmd.retry_safe(),
            guard: journal.filter(|_| cmd.is_destructive()).cloned(),
        }
    }

    /// Makes the call `f` the way this policy says.
    pub(super) async fn call<'a, T, F, Fut>(
        &self,
        cfg: &RecoveryConfig,
        f: F,
    ) -> std::result::Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>> + 'a,
    {
        let guard = self.guard.as_deref();
        call_guarded(cfg, self.op, self.retry_safe, guard, f).await
    }
}

/// One driver call with the timeout, and retries of temporary errors when `retry_safe`.
pub(super) async fn call<'a, T, F, Fut>(
    cfg: &RecoveryConfig,
    op: &'static str,
    retry_safe: bool,
    f: F,
) -> std::result::Result<T, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    call_guarded(cfg, op, retry_safe, None, f).await
}

/// [`call`], with `guard` checked right before each attempt: a refusal is returned as it is (kind
/// `NotLeader`: the runtime stops) and the driver is not called.
async fn call_guarded<'a, T, F, Fut>(
    cfg: &RecoveryConfig,
    op: &'static str,
    retry_safe: bool,
    guard: Option<&dyn Journal>,
    f: F,
) -> std::result::Result<T, Failure>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(journal) = guard
            && let Err(e) = journal.guard().await
        {
            error!(op, error = %e, "not calling: this process may no longer act");
            return Err(e.to_failure());
        }
        let result = match tokio::time::timeout(cfg.call_timeout, f()).await {
            Ok(r) => r,
            Err(_) => Err(Error::no_answer(op, cfg.call_timeout)),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if retry_safe && e.is_temporary() && attempt < cfg.call_attempts.max(1) => {
                let wait = Backoff::call(cfg.call_backoff).delay(attempt);
                warn!(op, attempt, error = %e, retry_in = ?wait, "temporary failure, retrying");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e.to_failure()),
        }
    }
}
