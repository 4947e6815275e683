//! Latency of the libvirt fencer's calls, in process (`test:///` node file) and against a private libvirtd
//! over TCP: prints a table (median and p99 of each call), and the first call after a daemon restart.
//! `cargo bench -p freezer-dr-drivers-libvirt`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use freezer_dr_core::{Fencer, HostId};
use freezer_dr_drivers_libvirt::{LibvirtConfig, LibvirtFencer};

const N: usize = 300;

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

async fn measure(name: &str, f: &LibvirtFencer, rows: &mut Vec<(String, Duration, Duration)>) {
    let host = HostId::from("compute-1");
    f.power_status(&host).await.unwrap(); // connect
    let mut status = Vec::with_capacity(N);
    let mut off = Vec::with_capacity(N);
    let mut on = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        f.power_status(&host).await.unwrap();
        status.push(t.elapsed());
        let t = Instant::now();
        f.power_off(&host).await.unwrap();
        off.push(t.elapsed());
        let t = Instant::now();
        f.power_on(&host).await.unwrap();
        on.push(t.elapsed());
    }
    for (call, v) in [
        ("power_status", status),
        ("power_off", off),
        ("power_on", on),
    ] {
        let (p50, p99) = stats(v);
        rows.push((format!("{name} {call}"), p50, p99));
    }
}

#[tokio::main]
async fn main() {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let uri = common::node_uri(dir.path(), &common::COMPUTES, &[]);
    let f = LibvirtFencer::new(LibvirtConfig::new(uri, common::COMPUTES)).unwrap();
    measure("test:/// (in process)", &f, &mut rows).await;

    let mut d = common::Libvirtd::start();
    let f = LibvirtFencer::new(LibvirtConfig::new(d.tcp_uri(), common::COMPUTES)).unwrap();
    measure("libvirtd tcp", &f, &mut rows).await;
    let mut first = Vec::new();
    for _ in 0..10 {
        d.restart();
        let t = Instant::now();
        f.power_status(&HostId::from("compute-1")).await.unwrap();
        first.push(t.elapsed());
    }
    let (p50, p99) = stats(first);
    rows.push((
        "libvirtd tcp first call after restart (10x)".into(),
        p50,
        p99,
    ));

    println!("{:<50} {:>12} {:>12}", "call", "median", "p99");
    for (name, p50, p99) in rows {
        println!("{name:<50} {:>12.1?} {:>12.1?}", p50, p99);
    }
}
