//! What the daemon tells operators' tools: the observers `run` attaches to its runtime (systemd's notify
//! protocol when started by systemd) and, in HA mode, the leader/standby role around them.

use std::sync::Arc;
use std::time::Duration;

use freezer_dr_core::Timestamp;
use freezer_dr_core::config::Config;
use freezer_dr_core::runtime::{Event, HaRole, Observer, Runtime, Status};
use freezer_dr_metrics::Metrics;
use tracing::warn;

use crate::systemd::SystemdNotifier;

/// The daemon's observers, as its environment and configuration ask.
#[derive(Clone, Default)]
pub(crate) struct Watchers(Vec<Arc<dyn Observer>>);

impl Watchers {
    /// systemd's notifier when systemd started this process, the metrics listener when `[metrics]`
    /// has `listen` (bound now: an address in use is an error here, not later).
    pub(crate) async fn start(config: &Config) -> anyhow::Result<Self> {
        let mut list: Vec<Arc<dyn Observer>> = Vec::new();
        if let Some(n) = SystemdNotifier::from_env() {
            list.push(Arc::new(n));
        }
        if let Some(listen) = config.metrics.address() {
            if !listen.ip().is_loopback() {
                warn!(address = %listen, "metrics.listen is not a loopback address: the metrics and \
                      health endpoints are open to that network, without authentication");
            }
            let metrics = Arc::new(Metrics::new(config));
            freezer_dr_metrics::serve(metrics.clone(), listen)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.file.display()))?;
            list.push(metrics);
        }
        Ok(Self(list))
    }

    /// `runtime` telling every observer.
    pub(crate) fn attach(&self, runtime: Runtime) -> Runtime {
        self.0.iter().fold(runtime, |rt, o| rt.observer(o.clone()))
    }

    /// `runtime` telling every observer it leads, with its lease's time left from `lease`.
    #[cfg(feature = "etcd")]
    pub(crate) fn attach_leader(
        &self,
        runtime: Runtime,
        lease: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    ) -> Runtime {
        if self.0.is_empty() {
            return runtime;
        }
        runtime.observer(Arc::new(Leader {
            inner: self.clone(),
            lease,
        }))
    }

    /// Tells every observer this process stands by (no runtime runs meanwhile), once a second: systemd's
    /// watchdog and the health endpoints then see a live standby.
    #[cfg(feature = "etcd")]
    pub(crate) async fn stand_by(
        &self,
        leading: tokio::sync::watch::Receiver<Option<i64>>,
        lease: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
    ) {
        if self.0.is_empty() {
            return std::future::pending().await;
        }
        loop {
            if leading.borrow().is_none() {
                let healthy = lease().is_some_and(|d| !d.is_zero());
                self.turn(&Status::standby(Timestamp::now(), healthy));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Observer for Watchers {
    fn turn(&self, status: &Status) {
        for o in &self.0 {
            o.turn(status);
        }
    }

    fn event(&self, event: &Event) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

/// The observers of a leader's runtime: its status says it leads.
#[cfg(feature = "etcd")]
struct Leader {
    inner: Watchers,
    lease: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
}

#[cfg(feature = "etcd")]
impl Observer for Leader {
    fn turn(&self, status: &Status) {
        let mut status = status.clone();
        status.ha = Some(HaRole::Leader {
            lease_remaining: (self.lease)(),
        });
        self.inner.turn(&status);
    }

    fn event(&self, event: &Event) {
        self.inner.event(event);
    }
}
