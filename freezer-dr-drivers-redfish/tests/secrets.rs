//! Every failure path, run with a recognisable password: it appears in no error, no `Debug` output and
//! no log line (ours, reqwest's or hyper's, captured at trace level); nor does a session token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::scripted::{Reset, SYSTEM, Scripted, TARGET};
use common::{Emulator, Libvirtd};
use freezer_dr_core::HostId;
use freezer_dr_core::testing::{
    CapturedLog, TestCerts, assert_not_shown, exercise_fencer, exercise_fencer_config,
};
use freezer_dr_drivers_redfish::{RedfishConfig, RedfishFencer};
use serde_json::json;

const CANARY: &str = "Leak-Canary-5521";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failure_path_shows_the_password_or_a_token() {
    if common::skip() {
        return;
    }
    let captured = CapturedLog::install().unwrap();
    let host = HostId::from("compute-1");
    let mut seen = Vec::new();

    // sushy-emulator: the canary is the wrong password; TLS with the wrong CA; insecure.
    let certs = TestCerts::generate();
    let lv = Libvirtd::start();
    let bmc = Emulator::tls(&lv, "compute-1", &certs);
    let wrong_ca = format!("ca_file = \"{}\"", common::path_str(&certs.other_ca));
    for extra in ["insecure = true", wrong_ca.as_str()] {
        let f = common::fencer(&common::one_host("compute-1", &bmc.url(), CANARY, extra));
        exercise_fencer(&f, &host, &mut seen).await;
    }
    // Nothing listens.
    let f = common::fencer_of_a_silent_bmc(CANARY);
    exercise_fencer(&f, &host, &mut seen).await;

    // The scripted BMC, whose real password is the canary: tokens expire, errors echo the password
    // and the token, tasks fail, ForceOff is not allowed, it hangs.
    let s = Scripted::start(CANARY).await;
    let f = common::fencer(&s.section(CANARY, ""));
    let f_basic = common::fencer(&s.section(CANARY, "auth = \"basic\""));
    let wrong = common::fencer(&s.section("not-the-canary", ""));
    exercise_fencer(&wrong, &host, &mut seen).await;
    s.with(|st| st.token_uses = Some(1));
    exercise_fencer(&f, &host, &mut seen).await;
    s.with(|st| st.token_uses = Some(0));
    exercise_fencer(&f, &host, &mut seen).await;
    s.with(|st| st.token_uses = None);
    for fencer in [&f, &f_basic] {
        for path in [SYSTEM, TARGET] {
            s.fault(
                path,
                500,
                json!({"error": {"message": format!("echo: password={CANARY} token=tok-1-f00d"),
                "@Message.ExtendedInfo": [{"Message": format!("bad login {CANARY}")}]}}),
            );
            s.with(|st| st.power = "On");
            exercise_fencer(fencer, &host, &mut seen).await;
        }
    }
    s.with(|st| {
        st.reset = Reset::Task {
            running: 0,
            end: "Exception",
        }
    });
    s.with(|st| st.power = "On");
    exercise_fencer(&f, &host, &mut seen).await;
    s.with(|st| {
        st.reset = Reset::Sync;
        st.allowed = vec!["GracefulShutdown"];
    });
    exercise_fencer(&f, &host, &mut seen).await;
    exercise_fencer(&f, &HostId::from("compute-2"), &mut seen).await;
    s.with(|st| st.hang = true);
    let hung = common::fencer(
        &s.section(CANARY, "")
            .replace("timeout = \"2s\"", "timeout = \"300ms\""),
    );
    exercise_fencer(&hung, &host, &mut seen).await;

    // Config errors, through the typed constructor and through the registry.
    let text =
        format!("password = \"{CANARY}\"\n[hosts.compute-1]\nurl = \"https://u:{CANARY}@bmc\"\n");
    let cfg: RedfishConfig = toml::from_str(&text).unwrap();
    seen.push(format!("{cfg:?}"));
    seen.push(RedfishFencer::new(cfg).unwrap_err().to_string());
    exercise_fencer_config(
        "redfish",
        &[
            text.clone(),
            format!("pasword = \"{CANARY}\"\n[hosts.h]\nurl = \"https://bmc\"\n"),
            format!("password = [\"{CANARY}\"]\n[hosts.h]\nurl = \"https://bmc\"\n"),
            format!("password = \"{CANARY}\"\n[hosts.h]\nurl = 7\n"),
            format!(
                "username = \"u\"\npassword = \"{CANARY}\"\n[hosts.h]\nurl = \"https://bmc\"\nca_file = \"/nonexistent/ca.pem\"\n"
            ),
        ],
        &mut seen,
    );

    let logs = captured.text();
    for want in [
        "401",
        "certificate",
        "renewed once",
        "ended Exception",
        "ForceOff is needed",
        "no answer in time",
        "HTTP 500",
    ] {
        assert!(
            seen.iter().any(|s| s.contains(want)),
            "the {want:?} path was not exercised:\n{}",
            seen.join("\n")
        );
    }
    assert!(
        logs.contains("session"),
        "the session paths were not logged:\n{logs}"
    );
    assert_not_shown(CANARY, &seen, &logs);
    assert_not_shown("tok-", &seen, &logs);
}
