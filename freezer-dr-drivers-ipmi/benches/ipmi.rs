//! Latency of the IPMI fencer's calls against a local `ipmi_sim`, per backend: what one power-status
//! poll and one power-off cost freezer-dr (the BMC's own time included; on a real network add the RTT
//! times the ~7 round trips of a native call).
//!
//! `cargo bench -p freezer-dr-drivers-ipmi` prints a table.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Chassis, Sim};
use freezer_dr_core::{Fencer, HostId};
use freezer_dr_drivers_ipmi::Backend;

const PASSWORD: &str = "bench-pass";
const ROUNDS: usize = 30;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2], v[v.len() * 9 / 10])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = HostId::from("compute-1");
    println!("ipmi fencer against ipmi_sim on 127.0.0.1, {ROUNDS} rounds each");
    println!(
        "{:<10} {:<24} {:>10} {:>10} {:>10}",
        "backend", "call", "min", "median", "p90"
    );
    for backend in [Backend::Native, Backend::Ipmitool] {
        let sim = Sim::start(PASSWORD, Chassis::Obedient);
        let f = common::fencer(vec![("compute-1", sim.bmc(PASSWORD, backend))], "");
        let mut status = Vec::new();
        let mut off = Vec::new();
        rt.block_on(async {
            for _ in 0..ROUNDS {
                let t = Instant::now();
                f.power_status(&host).await.unwrap();
                status.push(t.elapsed());
                sim.set_power(true);
                let t = Instant::now();
                f.power_off(&host).await.unwrap();
                off.push(t.elapsed());
            }
        });
        for (name, v) in [
            ("power_status", status),
            ("power_off (status+control)", off),
        ] {
            let (min, med, p90) = stats(v);
            println!(
                "{:<10} {:<24} {:>10.2?} {:>10.2?} {:>10.2?}",
                backend.to_string(),
                name,
                min,
                med,
                p90
            );
        }
    }
}
