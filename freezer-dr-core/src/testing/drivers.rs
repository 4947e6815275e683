//! Drivers named `testing` for every role, built from config sections: dry runs, demos and the CLI's
//! black-box tests run the whole pipeline against a simulated cloud with them.
//!
//! Every `testing` driver built in one process with the same `world` option (default `"default"`) shares
//! one [`World`]. The monitor's section describes it (hosts, which are down, instances per host).

use serde::Deserialize;

use super::{FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, World};
use crate::registry::{
    BuildContext, DirectoryRegistration, EvacuatorRegistration, FencerRegistration,
    MonitorRegistration, NotifierRegistration,
};
use crate::{Error, ErrorKind, Failure, HostId, Result};

fn default_world() -> String {
    "default".into()
}

/// `[monitor] type = "testing"`: describes the simulated cloud and observes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingMonitorConfig {
    /// The shared world's name.
    pub world: String,
    /// The compute hosts (added to the world if missing).
    pub hosts: Vec<String>,
    /// Hosts that died: their service is down and they answer no probe (their power stays on until
    /// fenced).
    pub down: Vec<String>,
    /// Hosts whose `nova-compute` alone is dead: the host still answers probes.
    pub service_down: Vec<String>,
    /// Instances created on each newly added host.
    pub instances_per_host: usize,
    /// Probe the hosts themselves (as the `tcp` monitor does) instead of reading their `nova-compute`
    /// heartbeat (as Nova's monitor does): the second opinion of a combined `[[monitor]]`.
    pub probe: bool,
}

impl Default for TestingMonitorConfig {
    fn default() -> Self {
        Self {
            world: default_world(),
            hosts: vec!["compute-1".into(), "compute-2".into(), "compute-3".into()],
            down: Vec::new(),
            service_down: Vec::new(),
            instances_per_host: 2,
            probe: false,
        }
    }
}

/// `[[fencer]] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingFencerConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// Hosts this fencer does not handle.
    pub exclude: Vec<String>,
    /// Hosts whose power-off is accepted but whose power keeps reading on (a broken BMC).
    pub never_off: Vec<String>,
}

/// `[evacuator] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingEvacuatorConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// Progress reads an evacuation stays in progress before it is done.
    pub evacuation_polls: u32,
}

/// `[directory] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingDirectoryConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
}

/// `[[notifier]] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingNotifierConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// The notifier's name in the world's delivery log (default: its section, e.g. `notifier[0]`).
    pub name: Option<String>,
    /// The first `fail` deliveries fail with a temporary error.
    pub fail: usize,
}

/// Builds the world described by a monitor section.
fn build_monitor(ctx: &BuildContext<'_>) -> Result<FakeMonitor> {
    let cfg: TestingMonitorConfig = ctx.parse()?;
    for (key, d) in cfg
        .down
        .iter()
        .map(|d| ("down", d))
        .chain(cfg.service_down.iter().map(|d| ("service_down", d)))
    {
        if !cfg.hosts.contains(d) {
            return Err(Error::config(format!(
                "{}: {}.{key}: {d:?} is not in {}.hosts ({})",
                ctx.file.display(),
                ctx.section,
                ctx.section,
                cfg.hosts.join(", ")
            )));
        }
    }
    let world = World::named(&cfg.world);
    for h in &cfg.hosts {
        if world.add_host(h.as_str()) {
            world.add_instances(h.as_str(), cfg.instances_per_host);
        }
    }
    for d in &cfg.down {
        world.kill(d.as_str());
    }
    for d in &cfg.service_down {
        world.kill_service(d.as_str());
    }
    Ok(match cfg.probe {
        false => FakeMonitor::new(&world),
        true => FakeMonitor::probe(&world),
    })
}

/// The index in `fencer[2]` / `notifier[0]`, or 0.
fn section_index(section: &str) -> usize {
    section
        .rsplit_once('[')
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn build_fencer(ctx: &BuildContext<'_>) -> Result<FakeFencer> {
    let cfg: TestingFencerConfig = ctx.parse()?;
    let world = World::named(&cfg.world);
    for h in &cfg.never_off {
        world.power_never_off(h.as_str());
    }
    let mut f = FakeFencer::new(&world).level(section_index(&ctx.section));
    for h in cfg.exclude {
        f = f.exclude(HostId::from(h));
    }
    Ok(f)
}

fn build_evacuator(ctx: &BuildContext<'_>) -> Result<FakeEvacuator> {
    let cfg: TestingEvacuatorConfig = ctx.parse()?;
    let world = World::named(&cfg.world);
    world.evacuation_takes(cfg.evacuation_polls);
    Ok(FakeEvacuator::new(&world))
}

fn build_directory(ctx: &BuildContext<'_>) -> Result<FakeDirectory> {
    let cfg: TestingDirectoryConfig = ctx.parse()?;
    Ok(FakeDirectory::new(&World::named(&cfg.world)))
}

fn build_notifier(ctx: &BuildContext<'_>) -> Result<FakeNotifier> {
    let cfg: TestingNotifierConfig = ctx.parse()?;
    let world = World::named(&cfg.world);
    let name = cfg.name.unwrap_or_else(|| ctx.section.clone());
    world.fail_with(
        super::Op::Notify,
        Some(&name),
        cfg.fail,
        Failure::new(ErrorKind::Unreachable, "scripted delivery failure"),
        false,
    );
    Ok(FakeNotifier::new(&world).named(name))
}

crate::register! {
    MonitorRegistration {
        name: "testing",
        description: "Fake monitor over a simulated cloud, for dry runs, demos and tests (never a real host).",
        example: "type = \"testing\"\nworld = \"default\"\nhosts = [\"compute-1\", \"compute-2\", \"compute-3\"]\ndown = [\"compute-2\"]\ninstances_per_host = 2\n",
        build: |ctx| Ok(Box::new(build_monitor(ctx)?)),
    }
}

crate::register! {
    FencerRegistration {
        name: "testing",
        description: "Fake fencer powering simulated hosts off, for dry runs, demos and tests (never a real host).",
        example: "type = \"testing\"\nworld = \"default\"\nexclude = []\nnever_off = []\n",
        build: |ctx| Ok(Box::new(build_fencer(ctx)?)),
    }
}

crate::register! {
    EvacuatorRegistration {
        name: "testing",
        description: "Fake evacuator moving simulated instances, for dry runs, demos and tests (never a real cloud).",
        example: "type = \"testing\"\nworld = \"default\"\nevacuation_polls = 1\n",
        build: |ctx| Ok(Box::new(build_evacuator(ctx)?)),
    }
}

crate::register! {
    DirectoryRegistration {
        name: "testing",
        description: "Fake directory with one user per project, for dry runs, demos and tests.",
        example: "type = \"testing\"\nworld = \"default\"\n",
        build: |ctx| Ok(Box::new(build_directory(ctx)?)),
    }
}

crate::register! {
    NotifierRegistration {
        name: "testing",
        description: "Fake notifier recording reports in memory, for dry runs, demos and tests (sends nothing).",
        example: "type = \"testing\"\nworld = \"default\"\nfail = 0\n",
        build: |ctx| Ok(Box::new(build_notifier(ctx)?)),
    }
}
