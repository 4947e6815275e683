//! Driver calls as the observers see them: every driver of the pipeline wrapped so that each call it
//! answers (or is abandoned: the runtime's timeout dropped it) becomes an [`Event::Call`], with its
//! duration and its error's kind. The runtime's own code is left as it is: it calls the wrappers.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::Pipeline;
use super::observer::{Call, Event, Observers};
use crate::registry::Kind;
use crate::{
    Directory, ErrorKind, Evacuator, Fenced, Fencer, HostHealth, HostId, Instance, Monitor,
    Notifier, PowerState, Progress, Recipient, Report, Result,
};

/// `pipeline` with every driver telling `observers` about each call.
pub(super) fn instrumented(pipeline: Pipeline, observers: &Observers) -> Pipeline {
    let site = |role, index| Site {
        role,
        index,
        observers: observers.clone(),
    };
    Pipeline {
        monitor: timed(pipeline.monitor, site(Kind::Monitor, 0)),
        fencers: pipeline
            .fencers
            .into_iter()
            .enumerate()
            .map(|(i, f)| timed(f, site(Kind::Fencer, i)) as Arc<dyn Fencer>)
            .collect(),
        evacuator: timed(pipeline.evacuator, site(Kind::Evacuator, 0)),
        directory: pipeline
            .directory
            .map(|d| timed(d, site(Kind::Directory, 0)) as Arc<dyn Directory>),
        notifiers: pipeline
            .notifiers
            .into_iter()
            .enumerate()
            .map(|(i, n)| timed(n, site(Kind::Notifier, i)) as Arc<dyn Notifier>)
            .collect(),
    }
}

/// Which driver a wrapper stands for.
struct Site {
    role: Kind,
    index: usize,
    observers: Observers,
}

impl Site {
    /// Runs `call`, then tells the observers how it went; a call dropped before it answered is told
    /// as a timeout (by the guard's drop).
    async fn time<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let mut guard = Pending {
            site: self,
            operation,
            start: Instant::now(),
            error: Some(ErrorKind::Timeout),
        };
        let result = call.await;
        guard.error = result.as_ref().err().map(|e| e.kind());
        result
    }
}

/// Tells the observers about one call when dropped: answered or abandoned.
struct Pending<'a> {
    site: &'a Site,
    operation: &'static str,
    start: Instant,
    error: Option<ErrorKind>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.site.observers.event(&Event::Call(Call {
            role: self.site.role,
            index: self.site.index,
            operation: self.operation,
            took: self.start.elapsed(),
            error: self.error,
        }));
    }
}

/// A driver and where it stands in the pipeline.
struct Timed<T: ?Sized> {
    inner: Arc<T>,
    site: Site,
}

fn timed<T: ?Sized>(inner: Arc<T>, site: Site) -> Arc<Timed<T>> {
    Arc::new(Timed { inner, site })
}

#[async_trait]
impl Monitor for Timed<dyn Monitor> {
    async fn observe(&self) -> Result<Vec<HostHealth>> {
        self.site.time("observe", self.inner.observe()).await
    }

    async fn healthcheck(&self) -> Result<()> {
        self.inner.healthcheck().await
    }
}

#[async_trait]
impl Fencer for Timed<dyn Fencer> {
    fn handles(&self, host: &HostId) -> bool {
        self.inner.handles(host)
    }

    async fn power_off(&self, host: &HostId) -> Result<()> {
        self.site
            .time("power_off", self.inner.power_off(host))
            .await
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        self.site
            .time("power_status", self.inner.power_status(host))
            .await
    }

    async fn power_on(&self, host: &HostId) -> Result<()> {
        self.site.time("power_on", self.inner.power_on(host)).await
    }

    async fn healthcheck(&self) -> Result<()> {
        self.inner.healthcheck().await
    }
}

#[async_trait]
impl Evacuator for Timed<dyn Evacuator> {
    async fn isolate(&self, fenced: &Fenced) -> Result<()> {
        self.site.time("isolate", self.inner.isolate(fenced)).await
    }

    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>> {
        self.site
            .time("instances", self.inner.instances(fenced))
            .await
    }

    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()> {
        self.site
            .time("evacuate", self.inner.evacuate(fenced, instance))
            .await
    }

    async fn progress(&self, instance: &Instance) -> Result<Progress> {
        self.site
            .time("progress", self.inner.progress(instance))
            .await
    }

    async fn start(&self, instance: &Instance) -> Result<()> {
        self.site.time("start", self.inner.start(instance)).await
    }

    async fn restore(&self, host: &HostId) -> Result<()> {
        self.site.time("restore", self.inner.restore(host)).await
    }

    async fn healthcheck(&self) -> Result<()> {
        self.inner.healthcheck().await
    }
}

#[async_trait]
impl Directory for Timed<dyn Directory> {
    async fn recipients(&self, project: &str) -> Result<Vec<Recipient>> {
        self.site
            .time("recipients", self.inner.recipients(project))
            .await
    }

    async fn healthcheck(&self) -> Result<()> {
        self.inner.healthcheck().await
    }
}

#[async_trait]
impl Notifier for Timed<dyn Notifier> {
    async fn notify(&self, report: &Report) -> Result<()> {
        self.site.time("notify", self.inner.notify(report)).await
    }

    async fn healthcheck(&self) -> Result<()> {
        self.inner.healthcheck().await
    }
}
