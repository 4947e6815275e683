//! The lease of one candidacy: its keepalive task and the local deadline derived from the answers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::warn;

/// The lease of one candidacy and the local deadline derived from its keepalives.
pub(super) struct LeaseState {
    pub(super) id: i64,
    pub(super) ttl: Duration,
    pub(super) margin: Duration,
    pub(super) deadline: Mutex<Instant>,
    /// Why the lease can no longer be trusted, once it cannot.
    pub(super) lost: Mutex<Option<String>>,
    pub(super) changed: Notify,
}

impl LeaseState {
    pub(super) fn deadline(&self) -> Instant {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn lost(&self) -> Option<String> {
        if let Some(why) = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Some(why);
        }
        if Instant::now() >= self.deadline() {
            let why = format!(
                "local lease deadline passed: etcd answered no keepalive for {} (lease TTL {} minus a \
                 margin of {})",
                humantime::format_duration(self.ttl - self.margin),
                humantime::format_duration(self.ttl),
                humantime::format_duration(self.margin)
            );
            self.lose(&why);
            return Some(why);
        }
        None
    }

    pub(super) fn lose(&self, why: &str) {
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        if lost.is_none() {
            *lost = Some(why.to_owned());
        }
        drop(lost);
        self.changed.notify_waiters();
    }

    /// A keepalive sent at `sent` was answered: etcd's countdown restarted no earlier than that.
    pub(super) fn renewed(&self, sent: Instant, ttl: Duration) {
        if self.lost().is_some() {
            // Once lost, always lost: a late renewal does not bring back what a standby may have taken.
            return;
        }
        let new = sent + ttl.min(self.ttl) - self.margin;
        let mut d = self.deadline.lock().unwrap_or_else(PoisonError::into_inner);
        if new > *d {
            *d = new;
        }
    }
}

/// A lease with its keepalive task; the task stops when the last holder drops it.
pub(super) struct Session {
    pub(super) state: Arc<LeaseState>,
    pub(super) keepalive: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Renews the lease every third of its TTL; each answered renewal moves the local deadline. A renewal
/// without answer in time drops the stream (a late answer on it could not be matched to its request)
/// and opens a new one. Stops once the lease is lost.
pub(super) async fn keep_alive(client: Client, state: Arc<LeaseState>, request_timeout: Duration) {
    let interval = state.ttl / 3;
    let mut stream = None;
    loop {
        let sent = Instant::now();
        let wait = interval.min(request_timeout);
        let answer = tokio::time::timeout(wait, async {
            if stream.is_none() {
                let mut c = client.clone();
                stream = Some(c.lease_keep_alive(state.id).await?);
            }
            match stream.as_mut() {
                Some((keeper, s)) => {
                    keeper.keep_alive().await?;
                    s.message().await
                }
                None => Ok(None),
            }
        })
        .await;
        match answer {
            Ok(Ok(Some(resp))) if resp.ttl() > 0 => {
                state.renewed(sent, Duration::from_secs(resp.ttl().unsigned_abs()));
            }
            Ok(Ok(Some(_))) => {
                state.lose("the etcd lease expired (etcd says so)");
            }
            Ok(Ok(None)) => {
                warn!(
                    lease = state.id,
                    "etcd closed the keepalive stream; reopening"
                );
                stream = None;
            }
            Ok(Err(e)) => {
                warn!(lease = state.id, error = %e, "lease keepalive failed");
                stream = None;
            }
            Err(_) => {
                warn!(
                    lease = state.id,
                    "etcd did not answer a lease keepalive in time"
                );
                stream = None;
            }
        }
        if state.lost().is_some() {
            return;
        }
        tokio::time::sleep_until((sent + interval).into()).await;
    }
}
