//! Dry runs: the pipeline's fencers and evacuator replaced by recorders that write the plan line of
//! each change and answer as if it succeeded. Reads stay real (observing, listing instances), so the
//! plan is made from the cloud as it is; the runtime executes commands as it always does.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tracing::info;

use super::Pipeline;
use crate::{
    Audience, Evacuator, Fenced, Fencer, HostId, Instance, PowerState, Progress, Report, Result,
};

/// Receives dry-run plan lines as they are decided.
pub(super) type PlanSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The plan of a dry run: its lines in the order they were decided, each also logged and handed to
/// the sink.
#[derive(Clone, Default)]
pub(super) struct Plan {
    lines: Arc<Mutex<Vec<String>>>,
    sink: Option<PlanSink>,
}

impl Plan {
    /// An empty plan whose lines also go to `sink`.
    pub(super) fn new(sink: Option<PlanSink>) -> Self {
        Self {
            lines: Arc::default(),
            sink,
        }
    }

    /// The lines so far.
    pub(super) fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn record(&self, line: String) {
        info!(plan = %line, "dry run");
        if let Some(sink) = &self.sink {
            sink(&line);
        }
        if let Ok(mut p) = self.lines.lock() {
            p.push(line);
        }
    }

    /// A report queued for delivery: in a dry run nothing is delivered, the plan says who would be told.
    pub(super) fn notify(&self, r: &Report) {
        let to = match r.audience {
            Audience::Operators => "operators".to_owned(),
            Audience::OperatorsAndUsers => {
                format!("operators and the users of {}", r.projects().join(", "))
            }
        };
        self.record(format!("notify {to}: {}", r.summary));
    }
}

/// `pipeline` for a dry run: every fencing level and the evacuator record into `plan` instead of
/// acting; the monitor, the directory and the notifiers are left as they are (a dry run delivers
/// nothing: the runtime starts no outbox deliverer).
pub(super) fn recording(pipeline: Pipeline, plan: &Plan) -> Pipeline {
    let fencers = (0..pipeline.fencers.len())
        .map(|level| {
            Arc::new(PlannedFencer {
                level,
                plan: plan.clone(),
            }) as Arc<dyn Fencer>
        })
        .collect();
    let evacuator = Arc::new(PlannedEvacuator {
        real: pipeline.evacuator.clone(),
        plan: plan.clone(),
    });
    Pipeline {
        fencers,
        evacuator,
        ..pipeline
    }
}

/// A fencing level in a dry run: plans the power-off and reads every host as off.
struct PlannedFencer {
    level: usize,
    plan: Plan,
}

#[async_trait]
impl Fencer for PlannedFencer {
    // The default `handles` (every host): a dry run assumes the first level it is asked for succeeds.

    async fn power_off(&self, host: &HostId) -> Result<()> {
        let level = self.level;
        self.plan
            .record(format!("power off {host} through fencer[{level}]"));
        Ok(())
    }

    async fn power_status(&self, host: &HostId) -> Result<PowerState> {
        let level = self.level;
        self.plan.record(format!(
            "read the power status of {host} through fencer[{level}] until it reads off"
        ));
        Ok(PowerState::Off)
    }
}

/// The evacuator in a dry run: plans every change and assumes it succeeds; lists instances for real.
struct PlannedEvacuator {
    real: Arc<dyn Evacuator>,
    plan: Plan,
}

#[async_trait]
impl Evacuator for PlannedEvacuator {
    async fn isolate(&self, fenced: &Fenced) -> Result<()> {
        self.plan.record(format!(
            "isolate {}: forced_down, then disabled with reason {:?}",
            fenced.host(),
            fenced.marker()
        ));
        Ok(())
    }

    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>> {
        self.real.instances(fenced).await
    }

    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()> {
        self.plan.record(format!(
            "evacuate instance {} ({}, project {}) from {}",
            instance.name,
            instance.id,
            instance.project,
            fenced.host()
        ));
        Ok(())
    }

    async fn progress(&self, instance: &Instance) -> Result<Progress> {
        Ok(Progress::Done {
            host: HostId::new("<chosen by the scheduler>"),
            status: instance.status.clone(),
        })
    }

    async fn start(&self, instance: &Instance) -> Result<()> {
        // The engine keeps an instance's listed host, matched exactly: the host it is evacuated from.
        self.plan.record(format!(
            "start instance {} ({}), evacuated from {} and left stopped",
            instance.name, instance.id, instance.host
        ));
        Ok(())
    }

    async fn restore(&self, host: &HostId) -> Result<()> {
        self.plan.record(format!("return {host} to service"));
        Ok(())
    }
}
