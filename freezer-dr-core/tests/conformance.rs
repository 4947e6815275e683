//! The conformance suites run against the fakes, and shown to catch the violations they are for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use freezer_dr_core::testing::{
    FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World, conformance,
};
use freezer_dr_core::{
    Audience, ErrorKind, Evacuator, Fenced, Fencer, HostId, Instance, Notifier, Progress, Report,
    ReportKind, Result, Timestamp,
};

fn cloud() -> World {
    World::new()
        .host("compute-1")
        .host("compute-2")
        .host("compute-10")
        .instances("compute-1", 3)
        .instances("compute-10", 1)
}

/// [`cloud`] with `compute-1` dead and powered off by the fake fencer; each evacuation takes `polls`
/// progress reads (0, as `World::new` leaves it: done at the first read).
async fn fenced_cloud(polls: u32) -> World {
    let world = cloud();
    world.evacuation_takes(polls);
    world.kill("compute-1");
    FakeFencer::new(&world)
        .power_off(&HostId::from("compute-1"))
        .await
        .unwrap();
    world
}

/// Runs a suite in its own task; the message it panicked with (how a suite reports a violation).
async fn suite_panic(fut: impl Future<Output = ()> + Send + 'static) -> String {
    let Err(e) = tokio::spawn(fut).await else {
        panic!("the suite passed; it should have caught the violation");
    };
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn fake_fencer_passes_the_fencer_suite() {
    let world = cloud();
    world.kill("compute-1");
    conformance::fencer(&FakeFencer::new(&world), &HostId::from("compute-1")).await;
    assert_eq!(world.power_offs("compute-1"), 2);
}

#[tokio::test(start_paused = true)]
async fn fencer_suite_catches_a_power_off_that_never_reads_off() {
    let world = cloud();
    world.power_never_off("compute-1");
    let f = FakeFencer::new(&world);
    let msg =
        suite_panic(async move { conformance::fencer(&f, &HostId::from("compute-1")).await }).await;
    assert!(msg.contains("must read off"), "{msg}");
}

/// A fencer that matches host names by prefix (the Python original's substring bug).
struct PrefixFencer(FakeFencer);

#[async_trait::async_trait]
impl Fencer for PrefixFencer {
    fn handles(&self, _: &HostId) -> bool {
        true
    }
    async fn power_off(&self, host: &HostId) -> Result<()> {
        let real = HostId::from(host.as_str().split("-freezer").next().unwrap());
        self.0.power_off(&real).await
    }
    async fn power_status(&self, host: &HostId) -> Result<freezer_dr_core::PowerState> {
        self.0.power_status(host).await
    }
}

#[tokio::test(start_paused = true)]
async fn fencer_suite_catches_a_fencer_matching_names_loosely() {
    let world = cloud();
    let f = PrefixFencer(FakeFencer::new(&world));
    let msg =
        suite_panic(async move { conformance::fencer(&f, &HostId::from("compute-1")).await }).await;
    assert!(msg.contains("names must match exactly"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn fake_evacuator_passes_the_evacuator_suite() {
    let world = fenced_cloud(3).await;
    conformance::evacuator(&FakeEvacuator::new(&world), &Fenced::for_tests("compute-1")).await;
    assert!(world.violations().is_empty(), "{:?}", world.violations());
}

#[tokio::test(start_paused = true)]
async fn evacuator_suite_catches_an_evacuation_that_fails() {
    let world = fenced_cloud(0).await;
    world.evacuation_fails("compute-1-vm-0", 1);
    let e = FakeEvacuator::new(&world);
    let msg =
        suite_panic(
            async move { conformance::evacuator(&e, &Fenced::for_tests("compute-1")).await },
        )
        .await;
    assert!(msg.contains("ended Failed"), "{msg}");
}

/// An evacuator whose progress forgets an accepted evacuation (reads `NotStarted`): the engine would
/// evacuate twice.
struct ForgetfulEvacuator(FakeEvacuator);

#[async_trait::async_trait]
impl Evacuator for ForgetfulEvacuator {
    async fn isolate(&self, fenced: &Fenced) -> Result<()> {
        self.0.isolate(fenced).await
    }
    async fn instances(&self, fenced: &Fenced) -> Result<Vec<Instance>> {
        self.0.instances(fenced).await
    }
    async fn evacuate(&self, fenced: &Fenced, instance: &Instance) -> Result<()> {
        self.0.evacuate(fenced, instance).await
    }
    async fn progress(&self, instance: &Instance) -> Result<Progress> {
        match self.0.progress(instance).await? {
            Progress::InProgress { .. } => Ok(Progress::NotStarted),
            p => Ok(p),
        }
    }
    async fn restore(&self, host: &HostId) -> Result<()> {
        self.0.restore(host).await
    }
}

#[tokio::test(start_paused = true)]
async fn evacuator_suite_catches_progress_forgetting_an_accepted_evacuation() {
    let world = fenced_cloud(2).await;
    let e = ForgetfulEvacuator(FakeEvacuator::new(&world));
    let msg =
        suite_panic(
            async move { conformance::evacuator(&e, &Fenced::for_tests("compute-1")).await },
        )
        .await;
    assert!(
        msg.contains("NotStarted after an accepted evacuation"),
        "{msg}"
    );
}

#[tokio::test]
async fn fake_monitor_passes_the_monitor_suite() {
    conformance::monitor(&FakeMonitor::new(&cloud())).await;
}

#[tokio::test]
async fn monitor_suite_catches_a_failing_observation() {
    let world = cloud();
    world.fail(Op::Observe, 1, ErrorKind::Unreachable);
    let m = FakeMonitor::new(&world);
    let msg = suite_panic(async move { conformance::monitor(&m).await }).await;
    assert!(msg.contains("observe failed"), "{msg}");
}

#[tokio::test]
async fn fake_directory_passes_the_directory_suite() {
    conformance::directory(&FakeDirectory::new(&cloud()), "project-a").await;
}

/// The report the notifier suite sends.
fn storm_report() -> Report {
    Report::new(
        "r1",
        Timestamp(0),
        ReportKind::Storm,
        Audience::Operators,
        None,
        "storm",
    )
}

#[tokio::test]
async fn fake_notifier_passes_the_notifier_suite() {
    let world = cloud();
    let n = FakeNotifier::new(&world);
    let report = storm_report();
    conformance::notifier(&n, &report).await;
    assert_eq!(n.delivered().len(), 2);
}

/// A notifier that refuses a report it already delivered, instead of accepting the retry.
struct DedupRefusingNotifier(FakeNotifier);

#[async_trait::async_trait]
impl Notifier for DedupRefusingNotifier {
    async fn notify(&self, report: &Report) -> Result<()> {
        if self.0.delivered().iter().any(|r| r.id == report.id) {
            return Err(
                freezer_dr_core::Error::new(ErrorKind::Conflict, "already sent").permanent(),
            );
        }
        self.0.notify(report).await
    }
}

#[tokio::test]
async fn notifier_suite_catches_a_refused_retry() {
    let world = cloud();
    let n = DedupRefusingNotifier(FakeNotifier::new(&world));
    let report = storm_report();
    let msg = suite_panic(async move { conformance::notifier(&n, &report).await }).await;
    assert!(msg.contains("second notify"), "{msg}");
}
