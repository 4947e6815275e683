//! What sushy-emulator cannot do on demand, against a scripted Redfish BMC: sessions (created, used,
//! deleted, renewed once when the token expires), a reset answered with a Task, a BMC that accepts
//! ForceOff and stays on, 503s, 409s, a hang.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use axum::http::Method;
use common::scripted::{Reset, SYSTEM, Scripted, TARGET, redfish_error};
use freezer_dr_core::{ErrorKind, Fencer, HostId, PowerState};

const PW: &str = "scripted-Pass-8";

fn host() -> HostId {
    HostId::from("compute-1")
}

#[tokio::test]
async fn a_session_is_created_used_for_every_request_and_deleted_afterwards() {
    let bmc = Scripted::start(PW).await;
    let f = common::fencer(&bmc.section(PW, ""));
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::On);
    f.power_off(&host()).await.unwrap();
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Off);
    bmc.with(|s| {
        assert_eq!(s.created, 3, "one session per call: {:?}", s.log);
        assert_eq!(s.deleted, 3, "every session deleted: {:?}", s.log);
        assert!(s.live_sessions.is_empty());
        assert_eq!(s.resets, ["ForceOff"]);
        for (m, p, how) in &s.log {
            if p != "/redfish/v1" && !(m == Method::POST && p.ends_with("/Sessions")) {
                assert_eq!(*how, "token", "{m} {p} went without the session token");
            }
        }
        // The target named by the system resource was used, not a guessed one.
        assert!(
            s.log
                .iter()
                .any(|(m, p, _)| m == Method::POST && p == TARGET)
        );
    });
}

#[tokio::test]
async fn a_token_that_expires_mid_call_is_renewed_once() {
    let bmc = Scripted::start(PW).await;
    // Each token works for one request: the system read, then the reset needs a new one.
    bmc.with(|s| s.token_uses = Some(1));
    let f = common::fencer(&bmc.section(PW, ""));
    f.power_off(&host()).await.unwrap();
    bmc.with(|s| {
        assert_eq!(s.power, "Off");
        assert_eq!(s.created, 2, "{:?}", s.log);
        assert!(
            s.live_sessions.is_empty(),
            "both sessions deleted: {:?}",
            s.log
        );
    });
    // A token refused at once every time: one renewal, then a permanent auth error.
    bmc.with(|s| {
        s.token_uses = Some(0);
        s.created = 0;
    });
    let e = f.power_status(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary(), "{e}");
    assert!(e.to_string().contains("renewed once"), "{e}");
    assert_eq!(bmc.with(|s| s.created), 2);
    assert!(!e.to_string().contains("tok-"), "the token leaked: {e}");
}

#[tokio::test]
async fn a_wrong_password_at_session_creation_is_permanent_auth_without_the_secret() {
    let bmc = Scripted::start(PW).await;
    let wrong = "Wrong-Scripted-77";
    let f = common::fencer(&bmc.section(wrong, ""));
    let e = f.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary());
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("Invalid username or password"),
        "the BMC's message: {text}"
    );
    assert!(!text.contains(wrong), "{text}");
    assert_eq!(bmc.with(|s| s.power), "On");
}

#[tokio::test]
async fn without_sessions_auto_uses_basic_and_session_is_a_config_error() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| s.sessions = false);
    let f = common::fencer(&bmc.section(PW, ""));
    f.power_off(&host()).await.unwrap();
    bmc.with(|s| {
        assert_eq!(s.power, "Off");
        assert!(
            s.log
                .iter()
                .any(|(m, p, how)| m == Method::POST && p == TARGET && *how == "basic")
        );
    });
    let f = common::fencer(&bmc.section(PW, "auth = \"session\""));
    let e = f.power_status(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("auth = \"basic\""), "{e}");
}

#[tokio::test]
async fn a_reset_answered_with_a_task_is_followed_until_it_completes() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| {
        s.reset = Reset::Task {
            running: 2,
            end: "Completed",
        }
    });
    let f = common::fencer(&bmc.section(PW, ""));
    f.power_off(&host()).await.unwrap();
    bmc.with(|s| {
        assert_eq!(s.task_polls, 3, "{:?}", s.log);
        assert_eq!(s.power, "Off");
        assert!(s.live_sessions.is_empty());
    });
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::Off);
}

#[tokio::test]
async fn a_task_that_ends_in_exception_is_an_error_with_the_bmc_message() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| {
        s.reset = Reset::Task {
            running: 1,
            end: "Exception",
        }
    });
    let f = common::fencer(&bmc.section(PW, ""));
    let e = f.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerFailure, "{e}");
    assert!(e.to_string().contains("ended Exception"), "{e}");
    assert!(
        e.to_string()
            .contains("The power controller did not respond"),
        "{e}"
    );
    assert_eq!(f.power_status(&host()).await.unwrap(), PowerState::On);
}

#[tokio::test]
async fn a_task_still_running_at_task_timeout_is_left_to_the_power_status() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| {
        s.reset = Reset::Task {
            running: 1000,
            end: "Completed",
        }
    });
    let f = common::fencer(
        &bmc.section(PW, "")
            .replace("task_timeout = \"3s\"", "task_timeout = \"1s\""),
    );
    let start = Instant::now();
    f.power_off(&host()).await.unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "bounded by task_timeout: {took:?}"
    );
    assert_eq!(
        f.power_status(&host()).await.unwrap(),
        PowerState::On,
        "never claimed off"
    );
}

#[tokio::test]
async fn a_bmc_that_accepts_force_off_but_stays_on_is_never_reported_off() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| s.sticky_on = true);
    let f = common::fencer(&bmc.section(PW, ""));
    f.power_off(&host()).await.unwrap();
    for _ in 0..5 {
        assert_ne!(f.power_status(&host()).await.unwrap(), PowerState::Off);
    }
    // PoweringOff and a missing PowerState are not off either.
    for state in ["PoweringOff", "Unknown-Value"] {
        bmc.with(|s| s.power = state);
        assert_ne!(
            f.power_status(&host()).await.unwrap(),
            PowerState::Off,
            "{state}"
        );
    }
}

#[tokio::test]
async fn force_off_not_allowed_is_refused_without_sending_anything_else() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| s.allowed = vec!["On", "GracefulShutdown"]);
    let f = common::fencer(&bmc.section(PW, ""));
    let e = f.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(!e.is_temporary());
    assert!(e.to_string().contains("On, GracefulShutdown"), "{e}");
    assert!(
        bmc.with(|s| s.resets.is_empty()),
        "a graceful shutdown is not a fence"
    );
}

#[tokio::test]
async fn a_503_is_temporary_with_the_bmc_message_and_the_next_call_succeeds() {
    let bmc = Scripted::start(PW).await;
    bmc.fault(
        SYSTEM,
        503,
        redfish_error(
            "Base.1.8.ServiceTemporarilyUnavailable",
            "The service is busy, retry later.",
        ),
    );
    let f = common::fencer(&bmc.section(PW, ""));
    let e = f.power_off(&host()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PeerFailure, "{e}");
    assert!(e.is_temporary(), "{e}");
    assert!(
        e.to_string().contains("The service is busy, retry later."),
        "{e}"
    );
    assert_eq!(
        bmc.with(|s| s.live_sessions.len()),
        0,
        "the session is deleted on failure too"
    );
    // The driver did not retry by itself; the runtime's next attempt succeeds.
    f.power_off(&host()).await.unwrap();
    assert_eq!(bmc.with(|s| s.power), "Off");
}

#[tokio::test]
async fn status_codes_are_classified_once() {
    let bmc = Scripted::start(PW).await;
    let f = common::fencer(&bmc.section(PW, ""));
    for (status, kind, temporary) in [
        (409, ErrorKind::Conflict, true),
        (412, ErrorKind::Conflict, true),
        (500, ErrorKind::PeerFailure, true),
        (403, ErrorKind::Auth, false),
        (404, ErrorKind::Config, false),
        (400, ErrorKind::PeerFailure, false),
    ] {
        bmc.fault(
            TARGET,
            status,
            redfish_error("Base.1.8.X", &format!("scripted {status}")),
        );
        let e = f.power_off(&host()).await.unwrap_err();
        assert_eq!(
            (e.kind(), e.is_temporary()),
            (kind, temporary),
            "{status}: {e}"
        );
        assert!(e.to_string().contains(&format!("scripted {status}")), "{e}");
    }
}

#[tokio::test]
async fn a_hung_bmc_is_a_temporary_timeout_bounded_by_the_timeout() {
    let bmc = Scripted::start(PW).await;
    bmc.with(|s| s.hang = true);
    let f = common::fencer(
        &bmc.section(PW, "")
            .replace("timeout = \"2s\"", "timeout = \"500ms\""),
    );
    let start = Instant::now();
    let e = f.power_status(&host()).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_temporary());
    assert!(took < Duration::from_secs(2), "{took:?}");
}
