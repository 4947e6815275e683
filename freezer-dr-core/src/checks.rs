//! Checks of a built [`Pipeline`] against its real peers, as `freezer-dr validate --connect` runs them:
//! every driver's healthcheck, and the fencing coverage (every compute host the monitor observes is handled
//! by at least one fencing level). Pure reporting: nothing here changes anything.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::runtime::Pipeline;
use crate::{Error, ErrorKind, Fencer, HostHealth, HostId};

/// Why a check did not pass.
#[derive(Debug)]
pub enum CheckFailure {
    /// The driver answered with an error.
    Failed(Error),
    /// No answer within the call timeout.
    TimedOut(Duration),
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Failed(e) => write!(f, "{e}"),
            CheckFailure::TimedOut(t) => {
                write!(f, "no answer within {}", humantime::format_duration(*t))
            }
        }
    }
}

/// One driver's healthcheck, spawned on its own task.
type CheckFuture = Pin<Box<dyn Future<Output = crate::Result<()>> + Send>>;

/// Runs every driver's healthcheck at once, each under `timeout`. One result per driver, in pipeline order
/// (monitor, fencers, evacuator, directory, notifiers: the order of
/// [`Config::sections`](crate::config::Config::sections)). An error only if a healthcheck panicked.
pub async fn healthchecks(
    pipeline: &Pipeline,
    timeout: Duration,
) -> crate::Result<Vec<Result<(), CheckFailure>>> {
    let mut checks: Vec<CheckFuture> = Vec::new();
    let m = pipeline.monitor.clone();
    checks.push(Box::pin(async move { m.healthcheck().await }));
    for f in &pipeline.fencers {
        let f = f.clone();
        checks.push(Box::pin(async move { f.healthcheck().await }));
    }
    let e = pipeline.evacuator.clone();
    checks.push(Box::pin(async move { e.healthcheck().await }));
    if let Some(d) = &pipeline.directory {
        let d = d.clone();
        checks.push(Box::pin(async move { d.healthcheck().await }));
    }
    for n in &pipeline.notifiers {
        let n = n.clone();
        checks.push(Box::pin(async move { n.healthcheck().await }));
    }

    let mut set = tokio::task::JoinSet::new();
    let total = checks.len();
    for (i, check) in checks.into_iter().enumerate() {
        set.spawn(async move { (i, tokio::time::timeout(timeout, check).await) });
    }
    let mut results: Vec<Option<Result<(), CheckFailure>>> = (0..total).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, outcome) = joined.map_err(|e| {
            Error::new(
                ErrorKind::Unexpected,
                format!("a healthcheck panicked: {e}"),
            )
        })?;
        let result = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CheckFailure::Failed(e)),
            Err(_) => Err(CheckFailure::TimedOut(timeout)),
        };
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(result);
        }
    }
    // Every task answered (a panic returned above), so every slot is filled.
    Ok(results.into_iter().flatten().collect())
}

/// What the fencing coverage check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coverage {
    /// How many hosts the monitor observed.
    pub observed: usize,
    /// The observed hosts that no fencing level handles (hosts disabled by an operator aside), in the
    /// monitor's order. A host no fencer knows would only be found out during a failure: it would wait
    /// for a person instead of being recovered.
    pub uncovered: Vec<HostId>,
}

/// Observes the hosts once (under `timeout`) and finds those that no fencing level handles.
pub async fn fencing_coverage(
    pipeline: &Pipeline,
    timeout: Duration,
) -> Result<Coverage, CheckFailure> {
    let hosts = match tokio::time::timeout(timeout, pipeline.monitor.observe()).await {
        Ok(Ok(hosts)) => hosts,
        Ok(Err(e)) => return Err(CheckFailure::Failed(e)),
        Err(_) => return Err(CheckFailure::TimedOut(timeout)),
    };
    Ok(Coverage {
        observed: hosts.len(),
        uncovered: uncovered(&hosts, &pipeline.fencers),
    })
}

/// The hosts, of those observed and not disabled by an operator, that no fencer handles.
pub fn uncovered(hosts: &[HostHealth], fencers: &[Arc<dyn Fencer>]) -> Vec<HostId> {
    hosts
        .iter()
        .filter(|h| !h.admin.disabled_by_operator())
        .filter(|h| !fencers.iter().any(|f| f.handles(&h.host)))
        .map(|h| h.host.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::testing::{
        FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World,
    };

    fn pipeline(world: &World, fencers: Vec<FakeFencer>) -> Pipeline {
        Pipeline {
            monitor: Arc::new(FakeMonitor::new(world)),
            fencers: fencers
                .into_iter()
                .map(|f| Arc::new(f) as Arc<dyn Fencer>)
                .collect(),
            evacuator: Arc::new(FakeEvacuator::new(world)),
            directory: Some(Arc::new(FakeDirectory::new(world))),
            notifiers: vec![Arc::new(FakeNotifier::new(world))],
        }
    }

    #[tokio::test]
    async fn every_driver_is_checked_in_pipeline_order() {
        let w = World::new().host("compute-1");
        let p = pipeline(&w, vec![FakeFencer::new(&w), FakeFencer::new(&w).level(1)]);
        let results = healthchecks(&p, Duration::from_secs(5)).await.unwrap();
        // monitor, two fencers, evacuator, directory, notifier
        assert_eq!(results.len(), 6);
        assert!(results.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_host_no_fencer_handles_is_uncovered_unless_an_operator_disabled_it() {
        let w = World::new()
            .host("compute-1")
            .host("compute-2")
            .host("compute-10");
        let p = pipeline(
            &w,
            vec![
                FakeFencer::new(&w)
                    .exclude("compute-1")
                    .exclude("compute-2"),
                FakeFencer::new(&w).level(1).exclude("compute-1"),
            ],
        );
        let c = fencing_coverage(&p, Duration::from_secs(5)).await.unwrap();
        assert_eq!(c.observed, 3);
        assert_eq!(c.uncovered, [HostId::from("compute-1")]);

        w.disable("compute-1", "maintenance");
        let c = fencing_coverage(&p, Duration::from_secs(5)).await.unwrap();
        assert_eq!((c.observed, c.uncovered), (3, Vec::new()));
    }

    #[tokio::test]
    async fn a_monitor_that_fails_or_hangs_is_a_failed_coverage_check() {
        let w = World::new().host("compute-1");
        let p = pipeline(&w, vec![FakeFencer::new(&w)]);
        w.fail(Op::Observe, 1, ErrorKind::Unreachable);
        let e = fencing_coverage(&p, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, CheckFailure::Failed(_)), "{e:?}");

        w.latency(Op::Observe, Duration::from_secs(60));
        let e = fencing_coverage(&p, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(e, CheckFailure::TimedOut(_)), "{e:?}");
        assert_eq!(e.to_string(), "no answer within 20ms");
    }
}
