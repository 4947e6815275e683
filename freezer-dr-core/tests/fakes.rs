//! The testing world and its fakes: scripting, Nova-like semantics, crash points, and the `testing`
//! driver registrations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::Path;
use std::time::Duration;

use freezer_dr_core::registry::{self, BuildContext, Kind};
use freezer_dr_core::testing::{
    Call, FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World,
};
use freezer_dr_core::{
    Audience, Directory, ErrorKind, Evacuator, Failure, Fenced, Fencer, Health, HostId, Monitor,
    Notifier, PowerState, Progress, Report, ReportKind, Timestamp,
};

fn h(name: &str) -> HostId {
    HostId::from(name)
}

fn cloud() -> World {
    World::new()
        .host("compute-1")
        .host("compute-2")
        .host("compute-3")
        .instances("compute-1", 3)
}

/// compute-1 dead and powered off, ready for evacuation.
async fn fenced_cloud() -> (World, Fenced) {
    let world = cloud();
    world.kill("compute-1");
    FakeFencer::new(&world)
        .power_off(&h("compute-1"))
        .await
        .unwrap();
    (world, Fenced::for_tests("compute-1"))
}

fn report(id: &str) -> Report {
    Report::new(
        id,
        Timestamp(0),
        ReportKind::Storm,
        Audience::Operators,
        None,
        "storm",
    )
}

#[test]
fn instances_are_spread_over_projects_with_distinct_owners() {
    let world = cloud();
    let on = world.instances_on("compute-1");
    assert_eq!(on.len(), 3);
    let mut projects: Vec<_> = on.iter().map(|i| i.project.clone()).collect();
    projects.dedup();
    assert_eq!(projects, ["project-a", "project-b", "project-c"]);
    assert!(
        on.iter()
            .all(|i| i.user == format!("user-of-{}", i.project))
    );
    assert!(on.iter().all(|i| i.status == "ACTIVE" && i.volume_backed));
}

#[tokio::test]
async fn a_killed_host_reads_down_but_stays_powered_on_until_fenced() {
    let world = cloud();
    world.kill("compute-2");
    let seen = FakeMonitor::new(&world).observe().await.unwrap();
    let c2 = seen.iter().find(|x| x.host == h("compute-2")).unwrap();
    assert!(c2.health.is_down());
    let c1 = seen.iter().find(|x| x.host == h("compute-1")).unwrap();
    assert_eq!(c1.health, Health::Up);
    let f = FakeFencer::new(&world);
    assert_eq!(
        f.power_status(&h("compute-2")).await.unwrap(),
        PowerState::On
    );
    f.power_off(&h("compute-2")).await.unwrap();
    assert_eq!(
        f.power_status(&h("compute-2")).await.unwrap(),
        PowerState::Off
    );
    f.power_off(&h("compute-2"))
        .await
        .expect("power_off of a host already off is Ok");
    assert_eq!(world.power_offs("compute-2"), 2);
    assert_eq!(world.power_offs("compute-1"), 0);
}

#[tokio::test]
async fn scripted_failures_hit_the_next_n_calls_then_stop() {
    let world = cloud();
    world.fail(Op::PowerOff, 2, ErrorKind::Unreachable);
    let f = FakeFencer::new(&world);
    for _ in 0..2 {
        let e = f.power_off(&h("compute-1")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unreachable);
        assert!(e.is_temporary());
    }
    assert_eq!(
        world.host_state("compute-1").unwrap().power,
        PowerState::On,
        "a failure before the effect changes nothing"
    );
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(
        world.host_state("compute-1").unwrap().power,
        PowerState::Off
    );
    assert_eq!(
        world.power_offs("compute-1"),
        3,
        "failed calls are logged too"
    );
}

#[tokio::test]
async fn a_failure_scripted_for_one_host_leaves_the_others_alone() {
    let world = cloud();
    world.fail_on(Op::PowerOff, "compute-2", 1, ErrorKind::Auth);
    let f = FakeFencer::new(&world);
    f.power_off(&h("compute-1")).await.unwrap();
    let e = f.power_off(&h("compute-2")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!e.is_temporary());
    f.power_off(&h("compute-2")).await.unwrap();
}

#[tokio::test]
async fn a_lost_reply_takes_effect_but_reports_the_failure() {
    let world = cloud();
    world.fail_with(
        Op::PowerOff,
        None,
        1,
        Failure::new(ErrorKind::Timeout, "reply lost"),
        true,
    );
    let e = FakeFencer::new(&world)
        .power_off(&h("compute-1"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(
        world.host_state("compute-1").unwrap().power,
        PowerState::Off
    );
}

#[tokio::test]
async fn power_never_off_accepts_the_power_off_but_keeps_reading_on() {
    let world = cloud();
    world.power_never_off("compute-1");
    let f = FakeFencer::new(&world);
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(
        f.power_status(&h("compute-1")).await.unwrap(),
        PowerState::On
    );
    world.repair("compute-1");
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(
        f.power_status(&h("compute-1")).await.unwrap(),
        PowerState::Off
    );
}

#[tokio::test]
async fn a_fencer_handles_only_world_hosts_it_is_not_excluded_from() {
    let world = cloud();
    let f = FakeFencer::new(&world).level(1).exclude("compute-2");
    assert!(f.handles(&h("compute-1")));
    assert!(!f.handles(&h("compute-2")));
    assert!(!f.handles(&h("compute-10")));
    let e = f.power_off(&h("compute-2")).await.unwrap_err();
    assert!(!e.is_temporary());
    let e = f.power_off(&h("compute-10")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(world.host_state("compute-2").unwrap().power, PowerState::On);
    assert!(world.calls().contains(&Call::PowerOff {
        host: h("compute-2"),
        level: 1
    }));
}

#[tokio::test(start_paused = true)]
async fn latency_sleeps_in_tokio_time() {
    let world = cloud();
    world.latency(Op::PowerStatus, Duration::from_secs(7));
    let start = tokio::time::Instant::now();
    FakeFencer::new(&world)
        .power_status(&h("compute-1"))
        .await
        .unwrap();
    assert!(start.elapsed() >= Duration::from_secs(7));
    let start = tokio::time::Instant::now();
    FakeFencer::new(&world)
        .power_off(&h("compute-1"))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "other ops are not slowed"
    );
}

#[tokio::test]
async fn isolate_forces_down_and_disables_with_the_fence_marker() {
    let (world, fenced) = fenced_cloud().await;
    let e = FakeEvacuator::new(&world);
    e.isolate(&fenced).await.unwrap();
    e.isolate(&fenced).await.unwrap();
    let admin = world.host_state("compute-1").unwrap().admin;
    assert!(admin.forced_down && admin.disabled);
    assert_eq!(admin.disabled_reason, Some(fenced.marker()));
    assert!(admin.isolated_by_freezer_dr());
}

#[tokio::test]
async fn instances_are_listed_by_exact_host_only() {
    let world = cloud().host("compute-10").instances("compute-10", 2);
    world.kill("compute-1");
    let listed = FakeEvacuator::new(&world)
        .instances(&Fenced::for_tests("compute-1"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|i| i.host == h("compute-1")));
}

#[tokio::test]
async fn an_evacuation_takes_the_scripted_polls_then_lands_on_a_healthy_enabled_host() {
    let (world, fenced) = fenced_cloud().await;
    world.evacuation_takes(2);
    world.kill("compute-2");
    let e = FakeEvacuator::new(&world);
    let inst = world.instances_on("compute-1").remove(0);
    assert_eq!(e.progress(&inst).await.unwrap(), Progress::NotStarted);
    e.evacuate(&fenced, &inst).await.unwrap();
    assert_eq!(
        world
            .instance_state(&inst.id)
            .unwrap()
            .task_state
            .as_deref(),
        Some("rebuilding")
    );
    for _ in 0..2 {
        assert!(matches!(
            e.progress(&inst).await.unwrap(),
            Progress::InProgress { .. }
        ));
    }
    assert_eq!(
        e.progress(&inst).await.unwrap(),
        Progress::Done {
            host: h("compute-3"),
            status: "ACTIVE".into()
        },
        "compute-2 is down: compute-3 is the only healthy target"
    );
    assert_eq!(
        e.progress(&inst).await.unwrap(),
        Progress::Done {
            host: h("compute-3"),
            status: "ACTIVE".into()
        },
        "a finished evacuation keeps reading done"
    );
    assert!(world.violations().is_empty());
}

#[tokio::test]
async fn evacuations_spread_to_the_least_loaded_host_and_skip_disabled_ones() {
    let (world, fenced) = fenced_cloud().await;
    world.disable("compute-3", "disk swap");
    let world = world.host("compute-4");
    let e = FakeEvacuator::new(&world);
    let mut landed = Vec::new();
    for inst in world.instances_on("compute-1") {
        e.evacuate(&fenced, &inst).await.unwrap();
        if let Progress::Done { host, .. } = e.progress(&inst).await.unwrap() {
            landed.push(host);
        }
    }
    assert_eq!(landed, [h("compute-2"), h("compute-4"), h("compute-2")]);
}

#[tokio::test]
async fn a_scripted_evacuation_failure_reads_failed_then_a_retry_succeeds() {
    let (world, fenced) = fenced_cloud().await;
    world.evacuation_fails("compute-1-vm-0", 1);
    let e = FakeEvacuator::new(&world);
    let inst = world.instance_state("compute-1-vm-0").unwrap().instance;
    e.evacuate(&fenced, &inst).await.unwrap();
    assert!(matches!(
        e.progress(&inst).await.unwrap(),
        Progress::Failed { .. }
    ));
    assert_eq!(
        world.instance_state(&inst.id).unwrap().instance.status,
        "ERROR"
    );
    assert!(matches!(
        e.progress(&inst).await.unwrap(),
        Progress::Failed { .. }
    ));
    e.evacuate(&fenced, &inst).await.unwrap();
    assert!(matches!(
        e.progress(&inst).await.unwrap(),
        Progress::Done { .. }
    ));
    assert_eq!(world.evacuate_calls(&inst.id), 2);
}

#[tokio::test]
async fn evacuating_an_instance_already_rebuilding_is_a_conflict_and_a_violation() {
    let (world, fenced) = fenced_cloud().await;
    world.evacuation_takes(5);
    let e = FakeEvacuator::new(&world);
    let inst = world.instances_on("compute-1").remove(0);
    e.evacuate(&fenced, &inst).await.unwrap();
    let err = e.evacuate(&fenced, &inst).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(world.violations().len(), 1, "{:?}", world.violations());
}

#[tokio::test]
async fn evacuating_from_a_host_whose_service_is_up_is_refused() {
    let world = cloud();
    let e = FakeEvacuator::new(&world);
    let inst = world.instances_on("compute-1").remove(0);
    let err = e
        .evacuate(&Fenced::for_tests("compute-1"), &inst)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(!err.is_temporary());
    assert!(!world.instance_state(&inst.id).unwrap().is_evacuating());
}

#[tokio::test]
async fn evacuating_from_a_host_still_powered_on_is_recorded_as_a_violation() {
    let world = cloud();
    world.kill("compute-1");
    let fenced = Fenced::for_tests("compute-1");
    let e = FakeEvacuator::new(&world);
    e.isolate(&fenced).await.unwrap();
    let inst = world.instances_on("compute-1").remove(0);
    e.evacuate(&fenced, &inst).await.unwrap();
    let v = world.violations();
    assert_eq!(v.len(), 1);
    assert!(v[0].contains("power reads on"), "{v:?}");
}

#[tokio::test]
async fn progress_of_a_deleted_instance_reads_gone() {
    let (world, _) = fenced_cloud().await;
    let inst = world.instances_on("compute-1").remove(0);
    world.delete_instance(&inst.id);
    assert_eq!(
        FakeEvacuator::new(&world).progress(&inst).await.unwrap(),
        Progress::Gone
    );
}

#[tokio::test]
async fn restore_waits_for_the_repaired_service_then_enables() {
    let (world, fenced) = fenced_cloud().await;
    let e = FakeEvacuator::new(&world);
    e.isolate(&fenced).await.unwrap();
    let err = e.restore(&h("compute-1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_temporary());
    world.repair("compute-1");
    e.restore(&h("compute-1")).await.unwrap();
    let admin = world.host_state("compute-1").unwrap().admin;
    assert!(!admin.forced_down && !admin.disabled && admin.disabled_reason.is_none());
}

#[tokio::test]
async fn the_notifier_records_deliveries_per_name_and_fails_when_scripted() {
    let world = cloud();
    world.fail_on(Op::Notify, "ops", 1, ErrorKind::Unreachable);
    let ops = FakeNotifier::new(&world).named("ops");
    let users = FakeNotifier::new(&world).named("users");
    assert!(ops.notify(&report("r1")).await.unwrap_err().is_temporary());
    ops.notify(&report("r1")).await.unwrap();
    users.notify(&report("r1")).await.unwrap();
    assert_eq!(ops.delivered().len(), 1);
    assert_eq!(users.delivered().len(), 1);
    assert_eq!(world.delivered().len(), 2);
}

#[tokio::test]
async fn the_directory_has_one_user_with_email_per_project() {
    let r = FakeDirectory::new(&cloud())
        .recipients("project-b")
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].user_id, "user-of-project-b");
    assert_eq!(r[0].email.as_deref(), Some("user-of-project-b@example.org"));
}

#[tokio::test(start_paused = true)]
async fn crash_after_n_loses_the_nth_reply_and_hangs_every_call_until_restart() {
    let world = cloud();
    let f = FakeFencer::new(&world);
    world.crash_after(2);
    f.power_status(&h("compute-1")).await.unwrap();
    assert!(
        hangs(60, f.power_off(&h("compute-1"))).await,
        "the crash point's reply never arrives"
    );
    assert_eq!(
        world.host_state("compute-1").unwrap().power,
        PowerState::Off,
        "but its effect happened"
    );
    tokio::time::timeout(Duration::from_secs(1), world.crashed())
        .await
        .expect("crashed() resolves");
    assert!(world.is_crashed());
    assert!(
        hangs(60, f.power_off(&h("compute-2"))).await,
        "calls after the crash hang"
    );
    assert_eq!(world.host_state("compute-2").unwrap().power, PowerState::On);
    assert_eq!(world.calls().len(), 2, "hung calls are not logged");
    world.restart();
    assert!(!world.is_crashed());
    f.power_off(&h("compute-2")).await.unwrap();
    assert_eq!(
        world.host_state("compute-2").unwrap().power,
        PowerState::Off
    );
}

#[tokio::test(start_paused = true)]
async fn crash_before_n_hangs_the_nth_call_before_its_effect() {
    let world = cloud();
    let f = FakeFencer::new(&world);
    world.crash_before(2);
    f.power_off(&h("compute-1")).await.unwrap();
    assert!(hangs(60, f.power_off(&h("compute-2"))).await);
    assert_eq!(world.host_state("compute-2").unwrap().power, PowerState::On);
    assert!(world.is_crashed());
    world.restart();
    f.power_off(&h("compute-2")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_crash_point_counts_calls_across_every_fake_of_the_world() {
    let world = cloud();
    world.crash_after(3);
    FakeMonitor::new(&world).observe().await.unwrap();
    FakeDirectory::new(&world).recipients("p").await.unwrap();
    assert!(hangs(5, FakeNotifier::new(&world).notify(&report("r"))).await);
    assert!(world.is_crashed());
}

/// True if `call` does not answer within `secs` (of paused time).
async fn hangs(secs: u64, call: impl Future) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), call)
        .await
        .is_err()
}

// ---- registrations ----

fn ctx(section: &str, toml_src: &str) -> BuildContext<'static> {
    let mut options: toml::Table = toml::from_str(toml_src).unwrap();
    options.remove("type");
    BuildContext {
        file: Path::new("/etc/freezer-dr/test.toml"),
        section: section.into(),
        options,
    }
}

#[test]
fn every_role_has_a_described_testing_driver() {
    let drivers = registry::drivers();
    for kind in Kind::ALL {
        let d = drivers
            .iter()
            .find(|d| d.kind == kind && d.name == "testing")
            .unwrap_or_else(|| panic!("no testing {kind}"));
        assert!(d.description.starts_with("Fake "), "{}", d.description);
        assert!(d.example.starts_with("type = \"testing\""), "{}", d.example);
    }
}

#[tokio::test]
async fn the_examples_build_one_shared_world() {
    let find = |regs: Vec<_>| -> &'static str {
        regs.into_iter()
            .find(|(n, _): &(&str, &str)| *n == "testing")
            .unwrap()
            .1
    };
    let ex = |k: Kind| {
        find(
            registry::drivers()
                .into_iter()
                .filter(|d| d.kind == k)
                .map(|d| (d.name, d.example))
                .collect(),
        )
    };
    let reg_m = testing(registry::monitors());
    let reg_f = testing(registry::fencers());
    let reg_e = testing(registry::evacuators());
    let reg_d = testing(registry::directories());
    let reg_n = testing(registry::notifiers());

    let monitor = (reg_m.build)(&ctx("monitor", ex(Kind::Monitor))).unwrap();
    let fencer = (reg_f.build)(&ctx("fencer[1]", ex(Kind::Fencer))).unwrap();
    let evacuator = (reg_e.build)(&ctx("evacuator", ex(Kind::Evacuator))).unwrap();
    let directory = (reg_d.build)(&ctx("directory", ex(Kind::Directory))).unwrap();
    let notifier = (reg_n.build)(&ctx("notifier[0]", ex(Kind::Notifier))).unwrap();

    let seen = monitor.observe().await.unwrap();
    let down: Vec<_> = seen
        .iter()
        .filter(|x| x.health.is_down())
        .map(|x| x.host.as_str())
        .collect();
    assert_eq!(down, ["compute-2"], "the example's down host");
    assert_eq!(seen.len(), 3);

    fencer.power_off(&h("compute-2")).await.unwrap();
    assert_eq!(
        fencer.power_status(&h("compute-2")).await.unwrap(),
        PowerState::Off
    );
    let world = World::named("default");
    assert!(world.calls().contains(&Call::PowerOff {
        host: h("compute-2"),
        level: 1
    }));
    let listed = evacuator
        .instances(&Fenced::for_tests("compute-2"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "instances_per_host = 2");
    assert!(!directory.recipients("project-a").await.unwrap().is_empty());
    notifier.notify(&report("r1")).await.unwrap();
    assert_eq!(world.delivered()[0].notifier, "notifier[0]");
}

#[test]
fn an_unknown_option_is_refused_naming_the_file_and_key() {
    let e = monitor_refused("type = \"testing\"\nworld = \"typo\"\nhostz = []\n");
    assert_eq!(e.kind(), ErrorKind::Config);
    let msg = e.to_string();
    assert!(
        msg.contains("/etc/freezer-dr/test.toml") && msg.contains("hostz"),
        "{msg}"
    );
}

#[test]
fn a_down_host_missing_from_hosts_is_refused() {
    let e = monitor_refused(
        "world = \"down-check\"\nhosts = [\"compute-1\"]\ndown = [\"compute-9\"]\n",
    );
    assert!(e.to_string().contains("monitor.down"), "{e}");
    assert!(
        World::named("down-check").hosts().is_empty(),
        "nothing built on error"
    );
}

/// Why the `testing` monitor refuses the `[monitor]` section `toml_src`.
fn monitor_refused(toml_src: &str) -> freezer_dr_core::Error {
    let reg = testing(registry::monitors());
    match (reg.build)(&ctx("monitor", toml_src)) {
        Ok(_) => panic!("accepted: {toml_src}"),
        Err(e) => e,
    }
}

/// The `testing` driver among `regs`.
fn testing<T: ?Sized>(
    regs: Vec<&'static registry::Registration<T>>,
) -> &'static registry::Registration<T> {
    regs.into_iter().find(|r| r.name == "testing").unwrap()
}
