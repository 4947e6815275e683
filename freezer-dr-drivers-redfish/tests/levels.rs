//! Fencing levels together, through the real config loader, engine and runtime: `redfish` as level 0
//! and `ipmi` as level 1. With the Redfish BMC down, the host is fenced through IPMI (OpenIPMI's
//! `ipmi_sim`, read back with `ipmitool`), and the Redfish side powered nothing off (`virsh`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
// The IPMI fencer's own harness (ipmi_sim, ipmitool), shared rather than written twice; the ipmi crate
// is a dev-dependency only (driver crates never depend on each other).
#[path = "../../freezer-dr-drivers-ipmi/tests/common/mod.rs"]
mod ipmi;

use std::path::Path;
use std::sync::Arc;

use common::{Emulator, Libvirtd, Options, PASSWORD};
use freezer_dr_core::config::Config;
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::runtime::Runtime;
use freezer_dr_core::{HostId, Journal};
// Both driver crates must be linked for their registrations to exist.
use freezer_dr_drivers_ipmi as _;
use freezer_dr_drivers_redfish as _;

const IPMI_PASSWORD: &str = "level1-pass";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redfish_bmc_that_is_down_falls_through_to_ipmi() {
    if common::skip() || ipmi::skip() {
        return;
    }
    let lv = Libvirtd::start();
    let bmc = Emulator::start(&lv, "compute-1", Options::default());
    let redfish_url = bmc.url();
    let sim = ipmi::Sim::start(IPMI_PASSWORD, ipmi::Chassis::Obedient);
    let text = format!(
        r#"
[recovery]
interval = "10ms"
strikes = 1
call_attempts = 3
call_backoff = "10ms"
step_retry = "10ms"
[recovery.fencing]
poll_interval = "50ms"
confirm_timeout = "10s"
[recovery.evacuation]
poll_interval = "10ms"
retry_delay = "10ms"

[monitor]
type = "testing"
world = "levels"
hosts = ["compute-1", "compute-2", "compute-3", "compute-4", "compute-5"]
down = ["compute-1"]

[[fencer]]
type = "redfish"
username = "{user}"
password = "{PASSWORD}"
timeout = "5s"
[fencer.hosts.compute-1]
url = "{redfish_url}"

[[fencer]]
type = "ipmi"
username = "{ipmi_user}"
password = "{IPMI_PASSWORD}"
timeout = "5s"
[fencer.hosts.compute-1]
address = "127.0.0.1"
port = {port}

[evacuator]
type = "testing"
world = "levels"
"#,
        user = common::USER,
        ipmi_user = ipmi::USER,
        port = sim.port,
    );
    let config = Config::parse(&text, Path::new("levels.toml")).unwrap();
    let pipeline = config.build().unwrap();
    // Both levels are healthy, then the Redfish BMC goes down.
    for f in &pipeline.fencers {
        f.healthcheck().await.unwrap();
    }
    drop(bmc);

    let journal = MemoryJournal::new();
    let summary = Runtime::new(config.recovery.clone(), pipeline, Arc::new(journal.clone()))
        .run_once()
        .await
        .unwrap();
    let history: Vec<String> = journal
        .history(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.what)
        .collect();
    let story = history.join("\n");
    assert_eq!(
        summary.recovered,
        vec![HostId::from("compute-1")],
        "{summary:?}\n{story}"
    );
    assert!(
        story.contains("fencer[0] could not power it off")
            && story.contains("cannot reach the BMC"),
        "{story}"
    );
    assert!(story.contains("trying fencer[1]"), "{story}");
    assert!(
        story.contains("power status read off through fencer[1]"),
        "{story}"
    );
    assert_eq!(sim.reference_status(), "off", "ipmitool disagrees");
    assert_eq!(
        lv.domstate("compute-1"),
        "running",
        "the Redfish side powered nothing off"
    );
}
