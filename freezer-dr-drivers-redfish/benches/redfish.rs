//! Latency of the Redfish fencer's calls on 127.0.0.1: one power-status round trip, and a power-off
//! until the power status reads off (what the engine does), against sushy-emulator backed by libvirt's
//! test driver (HTTP basic, plain and TLS) and the scripted BMC (sessions: create, use, delete).
//! The BMC's own time is included; on a real network add the round trips times the RTT.
//!
//! `cargo bench -p freezer-dr-drivers-redfish` prints a table.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::scripted::Scripted;
use common::{Emulator, Libvirtd, Options, PASSWORD};
use freezer_dr_core::testing::TestCerts;
use freezer_dr_core::{Fencer, HostId, PowerState};
use freezer_dr_drivers_redfish::RedfishFencer;

const ROUNDS: usize = 20;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() * 9 / 10])
}

/// `ROUNDS` × (status read; power-off then reads until off; power-on, untimed).
async fn measure(f: &RedfishFencer) -> (Vec<Duration>, Vec<Duration>) {
    let host = HostId::from("compute-1");
    let (mut status, mut off) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        assert_eq!(f.power_status(&host).await.unwrap(), PowerState::On);
        status.push(t.elapsed());
        let t = Instant::now();
        f.power_off(&host).await.unwrap();
        while f.power_status(&host).await.unwrap() != PowerState::Off {}
        off.push(t.elapsed());
        f.power_on(&host).await.unwrap();
    }
    (status, off)
}

fn main() {
    if common::skip() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("redfish fencer on 127.0.0.1, {ROUNDS} rounds each");
    println!(
        "{:<36} {:<34} {:>10} {:>10} {:>10}",
        "BMC", "call", "min", "median", "p90"
    );
    let certs = TestCerts::generate();
    let lv = Libvirtd::start();
    let plain = Emulator::start(&lv, "compute-1", Options::default());
    let tls = Emulator::tls(&lv, "compute-1", &certs);
    let ca = format!("ca_file = \"{}\"", common::path_str(&certs.ca));
    let mut rows = Vec::new();
    rt.block_on(async {
        let f = common::fencer(&common::one_host("compute-1", &plain.url(), PASSWORD, ""));
        rows.push(("sushy-emulator+libvirt, http basic", measure(&f).await));
        let f = common::fencer(&common::one_host("compute-1", &tls.url(), PASSWORD, &ca));
        rows.push(("sushy-emulator+libvirt, https basic", measure(&f).await));
        let s = Scripted::start("bench-pass").await;
        let f = common::fencer(&s.section("bench-pass", ""));
        rows.push(("scripted, http session", measure(&f).await));
        let (created, deleted) = s.with(|st| (st.created, st.deleted));
        assert_eq!(created, deleted, "every session deleted");
    });
    for (bmc, (status, off)) in rows {
        for (call, v) in [
            ("power_status", status),
            ("power_off until status reads off", off),
        ] {
            let (min, med, p90) = stats(v);
            println!("{bmc:<36} {call:<34} {min:>10.2?} {med:>10.2?} {p90:>10.2?}");
        }
    }
}
