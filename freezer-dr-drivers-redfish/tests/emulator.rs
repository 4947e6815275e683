//! The Redfish fencer against sushy-tools' `sushy-emulator` backed by libvirt's test driver in a
//! private `libvirtd`; every result read back with `virsh` on the same daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Emulator, Options, PASSWORD};
use freezer_dr_core::testing::{TestCerts, conformance};
use freezer_dr_core::{ErrorKind, Fencer, HostId, PowerState};

fn host() -> HostId {
    HostId::from("compute-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powers_off_a_running_domain_and_reads_it_off_then_on_again() {
    let Some(lv) = common::libvirtd() else { return };
    let bmc = Emulator::start(&lv, "compute-1", Options::default());
    // No system configured: the emulator lists exactly one, which is found.
    let f = common::fencer(&common::one_host("compute-1", &bmc.url(), PASSWORD, ""));
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::On);
    f.power_off(&host()).await.unwrap();
    assert_eq!(lv.domstate("compute-1"), "shut off", "virsh disagrees");
    assert_eq!(
        lv.domstate("compute-2"),
        "running",
        "another domain was touched"
    );
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Off);
    f.power_on(&host()).await.unwrap();
    assert_eq!(lv.domstate("compute-1"), "running");
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::On);
    f.healthcheck().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_already_off_is_ok_and_stays_off() {
    let Some(lv) = common::libvirtd() else { return };
    lv.virsh(&["destroy", "compute-1"]);
    let bmc = Emulator::start(&lv, "compute-1", Options::default());
    let uuid = lv.uuid("compute-1");
    let f = common::fencer(&common::one_host(
        "compute-1",
        &bmc.url(),
        PASSWORD,
        &format!("system = \"/redfish/v1/Systems/{uuid}\""),
    ));
    f.power_off(&host()).await.unwrap();
    f.power_off(&host()).await.unwrap();
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Off);
    assert_eq!(lv.domstate("compute-1"), "shut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_fast_permanent_auth_error_without_the_secret() {
    let Some(lv) = common::libvirtd() else { return };
    let bmc = Emulator::start(&lv, "compute-1", Options::default());
    let wrong = "Wr0ng-Redfish-Secret";
    let f = common::fencer(&common::one_host("compute-1", &bmc.url(), wrong, ""));
    let start = Instant::now();
    let e = f.power_off(&host()).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary(), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}: {e}");
    let text = format!("{e} {e:?} {}", e.to_failure());
    assert!(!text.contains(wrong), "{text}");
    assert!(text.contains("compute-1") && text.contains("401"), "{text}");
    assert_eq!(lv.domstate("compute-1"), "running");
    let e = f.healthcheck().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_system_path_is_a_permanent_config_error_that_says_so() {
    let Some(lv) = common::libvirtd() else { return };
    // Every domain listed: with SUSHY_EMULATOR_ALLOWED_INSTANCES, sushy-tools 2.2 answers an unknown
    // system with a 500 (an AttributeError in its access check) instead of a 404.
    let bmc = Emulator::all_domains(&lv, "compute-1");
    for system in [
        "/redfish/v1/Systems/no-such-system",
        "/redfish/v1/Systemz/1",
    ] {
        let f = common::fencer(&common::one_host(
            "compute-1",
            &bmc.url(),
            PASSWORD,
            &format!("system = \"{system}\""),
        ));
        let e = f.power_off(&host()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        assert!(!e.is_temporary(), "{e}");
        assert!(
            e.to_string().contains("404") && e.to_string().contains("system"),
            "{e}"
        );
        let e = f.healthcheck().await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    }
    assert_eq!(lv.domstate("compute-1"), "running");
    assert_eq!(lv.domstate("compute-2"), "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_systems_need_a_path_or_an_id_and_system_id_matches_the_uuid() {
    let Some(lv) = common::libvirtd() else { return };
    let bmc = Emulator::all_domains(&lv, "compute-1");
    let f = common::fencer(&common::one_host("compute-1", &bmc.url(), PASSWORD, ""));
    let e = f.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("set the host's system"), "{e}");
    let uuid = lv.uuid("compute-2").to_uppercase();
    let f = common::fencer(&common::one_host(
        "compute-1",
        &bmc.url(),
        PASSWORD,
        &format!("system_id = \"{uuid}\""),
    ));
    f.power_off(&host()).await.unwrap();
    assert_eq!(lv.domstate("compute-2"), "shut off");
    assert_eq!(lv.domstate("compute-1"), "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_right_ca_works_a_wrong_ca_is_refused_and_insecure_is_explicit() {
    let Some(lv) = common::libvirtd() else { return };
    let certs = TestCerts::generate();
    let bmc = Emulator::tls(&lv, "compute-1", &certs);
    let ca = |name: &Path| format!("ca_file = \"{}\"", common::path_str(name));

    let wrong = common::fencer(&common::one_host(
        "compute-1",
        &bmc.url(),
        PASSWORD,
        &ca(&certs.other_ca),
    ));
    let e = wrong.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(
        !e.is_temporary(),
        "an untrusted certificate stays untrusted: {e}"
    );
    assert!(e.to_string().contains("ca_file"), "{e}");
    assert_eq!(lv.domstate("compute-1"), "running");
    // Without ca_file the system's roots do not know the test CA either.
    let roots = common::fencer(&common::one_host("compute-1", &bmc.url(), PASSWORD, ""));
    assert!(roots.power_status(&host()).await.is_err());

    let insecure = common::fencer(&common::one_host(
        "compute-1",
        &bmc.url(),
        PASSWORD,
        "insecure = true",
    ));
    assert_eq!(
        insecure.power_status(&host()).await.unwrap(),
        PowerState::On
    );

    let right = common::fencer(&common::one_host(
        "compute-1",
        &bmc.url(),
        PASSWORD,
        &ca(&certs.ca),
    ));
    right.power_off(&host()).await.unwrap();
    assert_eq!(lv.domstate("compute-1"), "shut off");
    assert_eq!(right.power_status(&host()).await.unwrap(), PowerState::Off);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fencer_conformance_suite_passes() {
    let Some(lv) = common::libvirtd() else { return };
    let a = Emulator::start(&lv, "compute-1", Options::default());
    let b = Emulator::start(&lv, "compute-2", Options::default());
    let f = common::fencer(&format!(
        "username = \"{}\"\npassword = \"{PASSWORD}\"\n[hosts.compute-1]\nurl = \"{}\"\n\
         [hosts.compute-2]\nurl = \"{}\"\n",
        common::USER,
        a.url(),
        b.url()
    ));
    conformance::fencer(&f, &host()).await;
    assert_eq!(lv.domstate("compute-1"), "shut off");
    assert_eq!(
        lv.domstate("compute-2"),
        "running",
        "compute-2 was fenced for compute-1"
    );
    assert!(!f.handles(&HostId::from("compute-10")));
    assert!(!f.handles(&HostId::from("compute")));
    let e = f.power_off(&HostId::from("compute-3")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    f.healthcheck().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_does_not_listen_is_temporary_and_fails_the_healthcheck() {
    if common::skip() {
        return;
    }
    let f = common::fencer_of_a_silent_bmc(PASSWORD);
    let e = f.power_status(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_temporary(), "{e}");
    let e = f.healthcheck().await.unwrap_err();
    assert!(e.to_string().contains("1 of 1 Redfish BMCs"), "{e}");
}
