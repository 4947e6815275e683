//! The `testing` drivers' build functions and their registrations (feature `testing-drivers`).

use super::{
    TestingDirectoryConfig, TestingEvacuatorConfig, TestingFencerConfig, TestingMonitorConfig,
    TestingNotifierConfig,
};
use crate::registry::{
    BuildContext, DirectoryRegistration, EvacuatorRegistration, FencerRegistration,
    MonitorRegistration, NotifierRegistration,
};
use crate::testing::{
    FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World,
};
use crate::{Error, ErrorKind, Failure, HostId, Result};

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
        Op::Notify,
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
