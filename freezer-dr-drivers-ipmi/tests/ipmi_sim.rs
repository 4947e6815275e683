//! The IPMI fencer against OpenIPMI's `ipmi_sim`, for both backends, read back with `ipmitool`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Chassis, Sim};
use freezer_dr_core::testing::conformance;
use freezer_dr_core::{ErrorKind, Fencer, HostId, PowerState};
use freezer_dr_drivers_ipmi::Backend;

const PASSWORD: &str = "sim-pass-1";
const BACKENDS: [Backend; 2] = [Backend::Native, Backend::Ipmitool];

fn host() -> HostId {
    HostId::from("compute-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powers_off_and_reads_off_with_both_backends() {
    if common::skip() {
        return;
    }
    for backend in BACKENDS {
        let sim = Sim::start(PASSWORD, Chassis::Obedient);
        let f = common::fencer(vec![("compute-1", sim.bmc(PASSWORD, backend))], "");
        assert_eq!(
            f.power_status(&host()).await.unwrap(),
            PowerState::On,
            "{backend}"
        );
        assert_eq!(sim.reference_status(), "on");

        f.power_off(&host()).await.unwrap();
        assert!(
            !sim.power_is_on(),
            "{backend}: the chassis script was not told to power off"
        );
        assert_eq!(
            f.power_status(&host()).await.unwrap(),
            PowerState::Off,
            "{backend}"
        );
        assert_eq!(
            sim.reference_status(),
            "off",
            "{backend}: ipmitool disagrees"
        );

        f.power_on(&host()).await.unwrap();
        assert!(
            sim.power_is_on(),
            "{backend}: power_on did not reach the chassis"
        );
        assert_eq!(sim.reference_status(), "on", "{backend}");
        assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::On);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_off_of_a_host_already_off_succeeds_without_a_command() {
    if common::skip() {
        return;
    }
    for backend in BACKENDS {
        let sim = Sim::start(PASSWORD, Chassis::Obedient);
        sim.set_power(false);
        let f = common::fencer(vec![("compute-1", sim.bmc(PASSWORD, backend))], "");
        f.power_off(&host()).await.unwrap();
        f.power_off(&host()).await.unwrap();
        assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Off);
        assert_eq!(sim.reference_status(), "off", "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_fast_permanent_auth_error_without_the_secret() {
    if common::skip() {
        return;
    }
    let wrong = "Wr0ng-Secret-77";
    for backend in BACKENDS {
        let sim = Sim::start(PASSWORD, Chassis::Obedient);
        let f = common::fencer(vec![("compute-1", sim.bmc(wrong, backend))], "");
        let start = Instant::now();
        let e = f.power_off(&host()).await.unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind(), ErrorKind::Auth, "{backend}: {e}");
        assert!(!e.is_temporary(), "{backend}: {e}");
        assert!(
            took < Duration::from_secs(2),
            "{backend}: took {took:?}: {e}"
        );
        let text = format!("{e} {e:?}");
        assert!(!text.contains(wrong), "{backend}: {text}");
        assert!(text.contains("compute-1"), "{backend}: {text}");
        assert!(
            sim.power_is_on(),
            "{backend}: a refused session must not power anything off"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_does_not_listen_is_temporary_and_bounded_by_the_timeout() {
    if common::skip() {
        return;
    }
    for backend in [Backend::Native, Backend::Ipmitool, Backend::Auto] {
        let port = common::free_udp_port();
        let f = common::fencer(
            vec![("compute-1", common::bmc_at(port, PASSWORD, backend))],
            "",
        );
        let start = Instant::now();
        let e = f.power_status(&host()).await.unwrap_err();
        let took = start.elapsed();
        assert!(e.is_temporary(), "{backend}: {e}");
        assert!(
            matches!(e.kind(), ErrorKind::Unreachable | ErrorKind::Timeout),
            "{backend}: {e}"
        );
        // 3 s per backend; auto never falls back on a refused port.
        assert!(
            took < Duration::from_secs(4),
            "{backend}: took {took:?}: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_accepts_power_off_but_stays_on_is_never_reported_off() {
    if common::skip() {
        return;
    }
    for backend in BACKENDS {
        let sim = Sim::start(PASSWORD, Chassis::NeverOff);
        let f = common::fencer(
            vec![("compute-1", sim.bmc(PASSWORD, backend))],
            "power_timeout = \"1s\"",
        );
        f.power_off(&host()).await.unwrap();
        // Read as the engine would, past power_timeout.
        let mut reads = Vec::new();
        for _ in 0..4 {
            reads.push(f.power_status(&host()).await);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        for r in &reads {
            assert!(
                !matches!(r, Ok(PowerState::Off)),
                "{backend}: claimed off: {reads:?}"
            );
        }
        let Err(last) = reads.pop().unwrap() else {
            panic!("{backend}: past power_timeout the read must say the power-off did not happen")
        };
        assert!(last.to_string().contains("power_timeout"), "{last}");
        assert_eq!(sim.reference_status(), "on", "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_wait_answers_unknown_right_after_the_power_off() {
    if common::skip() {
        return;
    }
    let sim = Sim::start(PASSWORD, Chassis::Obedient);
    let f = common::fencer(
        vec![("compute-1", sim.bmc(PASSWORD, Backend::Native))],
        "power_wait = 30",
    );
    f.power_off(&host()).await.unwrap();
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Unknown);
    assert_eq!(sim.reference_status(), "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fencer_conformance_suite_passes_for_both_backends() {
    if common::skip() {
        return;
    }
    for backend in BACKENDS {
        let sim = Sim::start(PASSWORD, Chassis::Obedient);
        let f = common::fencer(vec![("compute-1", sim.bmc(PASSWORD, backend))], "");
        conformance::fencer(&f, &host()).await;
        assert_eq!(sim.reference_status(), "off", "{backend}");
        assert!(!f.handles(&HostId::from("compute-10")));
        assert!(!f.handles(&HostId::from("compute")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_host_is_fenced_through_its_own_bmc() {
    if common::skip() {
        return;
    }
    let a = Sim::start(PASSWORD, Chassis::Obedient);
    let b = Sim::start(PASSWORD, Chassis::Obedient);
    let f = common::fencer(
        vec![
            ("compute-1", a.bmc(PASSWORD, Backend::Auto)),
            ("compute-10", b.bmc(PASSWORD, Backend::Auto)),
        ],
        "",
    );
    f.power_off(&HostId::from("compute-10")).await.unwrap();
    assert!(a.power_is_on(), "compute-1 was powered off for compute-10");
    assert!(!b.power_is_on());
    assert_eq!(b.reference_status(), "off");
    let e = f.power_off(&HostId::from("compute-2")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(!e.is_temporary());
    f.healthcheck().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_sessions_are_closed_so_polling_never_runs_out_of_slots() {
    if common::skip() {
        return;
    }
    let sim = Sim::start(PASSWORD, Chassis::Obedient);
    let f = common::fencer(vec![("compute-1", sim.bmc(PASSWORD, Backend::Native))], "");
    // More reads than ipmi_sim has session slots.
    for i in 0..80 {
        f.power_status(&host())
            .await
            .unwrap_or_else(|e| panic!("read {i}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_falls_back_to_ipmitool_for_a_bmc_that_ignores_the_asf_ping() {
    if common::skip() {
        return;
    }
    let sim = Sim::start(PASSWORD, Chassis::Obedient);
    let relay = common::AsfDropper::start(sim.port);

    // Native alone cannot talk to it: a temporary error within its timeout, nothing powered off.
    let native = common::fencer(
        vec![(
            "compute-1",
            common::bmc_at(relay.port, PASSWORD, Backend::Native),
        )],
        "",
    );
    let start = Instant::now();
    let e = native.power_off(&host()).await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("ASF"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(4), "{e}");
    assert!(sim.power_is_on());

    // Auto tries native, then ipmitool, and remembers.
    let auto = common::fencer(
        vec![(
            "compute-1",
            common::bmc_at(relay.port, PASSWORD, Backend::Auto),
        )],
        "",
    );
    auto.power_off(&host()).await.unwrap();
    assert!(!sim.power_is_on());
    assert_eq!(sim.reference_status(), "off");
    let start = Instant::now();
    assert_eq!(auto.power_status(&host()).await.unwrap(), PowerState::Off);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the second call should go straight to ipmitool"
    );

    // A wrong password behind the same BMC: auth, permanent, and said by ipmitool.
    let wrong = common::fencer(
        vec![(
            "compute-1",
            common::bmc_at(relay.port, "nope-nope", Backend::Auto),
        )],
        "",
    );
    let e = wrong.power_status(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(e.to_string().contains("backend: ipmitool"), "{e}");
}
