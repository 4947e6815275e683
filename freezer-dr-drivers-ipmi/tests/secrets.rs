//! Every failure path, run with a recognisable password: it appears in no error, no `Debug` output and
//! no log line (ours, or ipmi-rs's `log` records, captured at trace level).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Chassis, Sim};
use freezer_dr_core::HostId;
use freezer_dr_core::testing::{
    CapturedLog, assert_not_shown, exercise_fencer, exercise_fencer_config,
};
use freezer_dr_drivers_ipmi::{Backend, IpmiConfig, IpmiFencer, import_servers};

const CANARY: &str = "Leak-Canary-9137";
const REAL: &str = "real-pass-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failure_path_shows_the_password() {
    if common::skip() {
        return;
    }
    let captured = CapturedLog::install().unwrap();

    let host = HostId::from("compute-1");
    let mut seen = Vec::new();
    let wrong_bmc = Sim::start(REAL, Chassis::Obedient);
    let stuck_bmc = Sim::start(CANARY, Chassis::NeverOff);
    let relay = common::AsfDropper::start(wrong_bmc.port);
    let silent_port = common::free_udp_port();

    for backend in [Backend::Native, Backend::Ipmitool, Backend::Auto] {
        // Wrong password (the canary is the wrong one).
        let f = common::fencer(vec![("compute-1", wrong_bmc.bmc(CANARY, backend))], "");
        exercise_fencer(&f, &host, &mut seen).await;
        // Nothing listens.
        let f = common::fencer(
            vec![("compute-1", common::bmc_at(silent_port, CANARY, backend))],
            "",
        );
        exercise_fencer(&f, &host, &mut seen).await;
        // No ASF pong (auto falls back to ipmitool), wrong password.
        let f = common::fencer(
            vec![("compute-1", common::bmc_at(relay.port, CANARY, backend))],
            "",
        );
        exercise_fencer(&f, &host, &mut seen).await;
        // Accepts the power-off, stays on, past power_timeout.
        let f = common::fencer(
            vec![("compute-1", stuck_bmc.bmc(CANARY, backend))],
            "power_timeout = 0",
        );
        exercise_fencer(&f, &host, &mut seen).await;
        // A host that is not in the inventory.
        exercise_fencer(&f, &HostId::from("compute-2"), &mut seen).await;
    }
    // ipmitool missing.
    let f = common::fencer(
        vec![("compute-1", wrong_bmc.bmc(CANARY, Backend::Ipmitool))],
        "ipmitool = \"/nonexistent/ipmitool\"",
    );
    exercise_fencer(&f, &host, &mut seen).await;

    // Config errors, through the typed constructor and through the registry.
    let long = format!("{CANARY}{CANARY}");
    let text = format!(
        "password = \"{long}\"\n[hosts.compute-1]\naddress = \"a\"\nusername = \"u\"\ncipher = 0\n"
    );
    let cfg: IpmiConfig = toml::from_str(&text).unwrap();
    seen.push(format!("{cfg:?}"));
    seen.push(IpmiFencer::new(cfg).unwrap_err().to_string());
    exercise_fencer_config(
        "ipmi",
        &[
            text.clone(),
            format!("pasword = \"{CANARY}\"\n[hosts.h]\naddress = \"a\"\n"),
            format!("password = [\"{CANARY}\"]\n[hosts.h]\naddress = \"a\"\n"),
            format!("password = \"{CANARY}\"\n[hosts.h]\naddress = 7\n"),
        ],
        &mut seen,
    );
    // servers.yml import errors.
    for yaml in [
        format!("servers:\n  - hostname: h\n    fencer-password: {CANARY}\n"),
        format!("servers:\n  - hostname: h\n    fencer-password: \"{CANARY}\n"),
    ] {
        seen.push(
            import_servers(&yaml, "servers.yml")
                .unwrap_err()
                .to_string(),
        );
    }

    let logs = captured.text();
    assert!(
        logs.contains("ipmi-rs cannot talk to this BMC"),
        "the fallback path was not exercised:\n{logs}"
    );
    assert!(
        seen.iter().any(|s| s.contains("power_timeout")),
        "the power_timeout path was not exercised"
    );
    assert!(
        seen.iter().any(|s| s.contains("wrong password")),
        "the wrong-password path was not exercised"
    );
    assert_not_shown(CANARY, &seen, &logs);
}
