//! The libvirt fencer against a private `libvirtd` (serving libvirt's test driver) in another process,
//! checked with `virsh` in a third: what the fencer does is what the daemon's other clients see.
//! `FREEZER_DR_SKIP_LIBVIRTD=1` skips these tests (never set in CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Libvirtd;
use freezer_dr_core::{ErrorKind, Fencer, HostId, PowerState};
use freezer_dr_drivers_libvirt::{LibvirtConfig, LibvirtFencer};

fn h(name: &str) -> HostId {
    HostId::from(name)
}

/// Powers compute-1 off through `f`; `virsh` sees it off and compute-2 still running.
async fn fences_compute_1_alone(f: &LibvirtFencer, d: &Libvirtd) {
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(d.domstate("compute-1"), "shut off");
    assert_eq!(d.domstate("compute-2"), "running");
}

fn fencer(uri: String) -> LibvirtFencer {
    let mut cfg = LibvirtConfig::new(uri, common::COMPUTES);
    cfg.timeout = Duration::from_secs(5);
    LibvirtFencer::new(cfg).unwrap()
}

#[tokio::test]
async fn virsh_in_another_process_sees_the_fenced_domain_shut_off() {
    let Some(d) = common::libvirtd() else { return };
    let f = fencer(d.tcp_uri());
    assert_eq!(d.domstate("compute-2"), "running");
    f.power_off(&h("compute-2")).await.unwrap();
    assert_eq!(d.domstate("compute-2"), "shut off");
    assert_eq!(
        d.virsh(&["domstate", "--reason", "compute-2"]),
        "shut off (destroyed)"
    );
    assert_eq!(d.domstate("compute-1"), "running");
    assert_eq!(d.domstate("compute-3"), "running");
    assert_eq!(
        f.power_status(&h("compute-2")).await.unwrap(),
        PowerState::Off
    );

    // Already off (destroyed by someone else, here virsh): success, still off.
    d.virsh(&["destroy", "compute-3"]);
    f.power_off(&h("compute-3")).await.unwrap();
    assert_eq!(d.domstate("compute-3"), "shut off");

    // Return to service: virsh sees it running again.
    f.power_on(&h("compute-2")).await.unwrap();
    assert_eq!(d.domstate("compute-2"), "running");
    f.healthcheck().await.unwrap();
}

#[tokio::test]
async fn works_over_the_unix_socket_too() {
    let Some(d) = common::libvirtd() else { return };
    let f = fencer(d.unix_uri());
    fences_compute_1_alone(&f, &d).await;
}

#[tokio::test]
async fn a_graceful_shutdown_is_tried_first_when_configured() {
    let Some(d) = common::libvirtd() else { return };
    let mut cfg = LibvirtConfig::new(d.tcp_uri(), common::COMPUTES);
    cfg.graceful_shutdown = Some(Duration::from_secs(3));
    let f = LibvirtFencer::new(cfg).unwrap();
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(
        d.virsh(&["domstate", "--reason", "compute-1"]),
        "shut off (shutdown)"
    );
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(d.domstate("compute-1"), "shut off");
    // Without it: destroyed.
    fencer(d.tcp_uri())
        .power_off(&h("compute-2"))
        .await
        .unwrap();
    assert_eq!(
        d.virsh(&["domstate", "--reason", "compute-2"]),
        "shut off (destroyed)"
    );
}

#[tokio::test]
async fn reconnects_after_the_daemon_restarted() {
    let Some(mut d) = common::libvirtd() else {
        return;
    };
    let f = fencer(d.tcp_uri());
    assert_eq!(
        f.power_status(&h("compute-1")).await.unwrap(),
        PowerState::On
    );
    d.restart();
    // The first call after the restart works: the dead cached connection is noticed and replaced.
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(d.domstate("compute-1"), "shut off");
    assert_eq!(
        f.power_status(&h("compute-1")).await.unwrap(),
        PowerState::Off
    );
    assert_eq!(d.domstate("compute-2"), "running");
}

#[tokio::test]
async fn a_daemon_that_stopped_answering_is_a_timeout_then_recovers() {
    let Some(d) = common::libvirtd() else { return };
    let mut cfg = LibvirtConfig::new(d.tcp_uri(), common::COMPUTES);
    cfg.timeout = Duration::from_millis(500);
    let f = LibvirtFencer::new(cfg).unwrap();
    assert_eq!(
        f.power_status(&h("compute-1")).await.unwrap(),
        PowerState::On
    );
    d.signal("-STOP");
    let e = f.power_off(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_temporary());
    assert!(e.to_string().contains("compute-1"), "{e}");
    let e = f.power_status(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    d.signal("-CONT");
    // The power-off sent while frozen may still be processed when the daemon wakes; either way the
    // fencer answers again and a power-off leaves the domain off.
    fences_compute_1_alone(&f, &d).await;
}

#[tokio::test]
async fn conformance_against_a_private_libvirtd() {
    let Some(d) = common::libvirtd() else { return };
    let f = fencer(d.tcp_uri());
    freezer_dr_core::testing::conformance::fencer(&f, &h("compute-3")).await;
    assert_eq!(d.domstate("compute-3"), "shut off");
    assert_eq!(d.domstate("compute-1"), "running");
}

#[tokio::test]
async fn sasl_credentials_are_answered_and_a_wrong_password_is_a_permanent_auth_error() {
    let Some(d) = common::libvirtd_with_sasl("fence", "right-pass-4711") else {
        return;
    };
    let with = |user: Option<&str>, password: Option<&str>| {
        let mut cfg = LibvirtConfig::new(d.tcp_uri(), common::COMPUTES);
        cfg.timeout = Duration::from_secs(5);
        cfg.username = user.map(str::to_owned);
        cfg.password = password.map(freezer_dr_core::Secret::new);
        LibvirtFencer::new(cfg).unwrap()
    };

    let wrong = with(Some("fence"), Some("wrong-pass-0815"));
    let e = wrong.power_off(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary(), "{e}");
    assert!(e.to_string().contains("compute-1"), "{e}");
    for shown in [
        e.to_string(),
        format!("{e:?}"),
        format!("{wrong:?}"),
        d.log(),
    ] {
        assert!(
            !shown.contains("wrong-pass") && !shown.contains("right-pass"),
            "secret leaked: {shown}"
        );
    }
    assert_eq!(d.domstate("compute-1"), "running");

    let none = with(None, None);
    let e = none.power_status(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");

    let right = with(Some("fence"), Some("right-pass-4711"));
    right.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(d.domstate("compute-1"), "shut off");
    assert_eq!(d.domstate("compute-2"), "running");
}
