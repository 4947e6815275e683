//! Benchmark of the Nova drivers against the scripted Keystone/Nova server with injected latency (50 ms a
//! call by default), the server running in a child process so the CPU time measured is the client's:
//!
//! 1. observe 1,000 compute services (one `GET /os-services`);
//! 2. evacuate 1,000 instances of one failed host at concurrency 32 through the real core runtime
//!    (`Runtime::run_once`: observe, fence with a stand-in fencer, isolate, list, evacuate, track).
//!
//! Prints a table: wall time against the ideal (calls × latency / concurrency) and CPU time.
//! `cargo bench -p freezer-dr-nova --bench nova [-- --latency-ms 50 --instances 1000 --hosts 1000]`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/scripted.rs"]
mod scripted;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freezer_dr_core::config::RecoveryConfig;
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::runtime::Pipeline;
use freezer_dr_core::{Fencer, HostId, Monitor, PowerState, Result, Runtime, Secret};
use freezer_dr_nova::{AuthConfig, NovaConfig, NovaEvacuator, NovaMonitor};
use serde_json::Value;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 (11 and 12 after the command name), in clock ticks (100 Hz).
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn serve(latency_ms: u64, hosts: u64, instances: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = scripted::Scripted::start().await;
        let names: Vec<String> = (0..hosts).map(|i| format!("c{i:04}")).collect();
        s.add_hosts(&names);
        s.set_down("c0000");
        for i in 0..instances {
            s.add_server(&format!("i{i:05}"), "c0000");
        }
        s.with(|st| st.latency = Duration::from_millis(latency_ms));
        println!("{}", s.addr);
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut buf = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut buf);
        })
        .await
        .unwrap();
    });
}

struct InstantFencer;

#[async_trait]
impl Fencer for InstantFencer {
    async fn power_off(&self, _host: &HostId) -> Result<()> {
        Ok(())
    }
    async fn power_status(&self, _host: &HostId) -> Result<PowerState> {
        Ok(PowerState::Off)
    }
}

fn cfg(addr: &str) -> NovaConfig {
    NovaConfig {
        auth: AuthConfig {
            auth_url: Some(format!("http://{addr}/identity/v3")),
            username: Some("admin".into()),
            password: Some(Secret::new("s3cret-pw")),
            project_name: Some("admin".into()),
            region_name: Some("RegionOne".into()),
            ..Default::default()
        },
        heartbeat_timeout: Duration::from_secs(60),
        page_size: 1000,
        ..Default::default()
    }
}

/// A duration in seconds, for the table.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// How much longer `took` was than `ideal`, in percent.
fn over(took: Duration, ideal: Duration) -> String {
    format!(
        "{:+.1}%",
        (took.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
    )
}

async fn stats(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn main() {
    let latency = arg("--latency-ms", 50);
    let hosts = arg("--hosts", 1000);
    let instances = arg("--instances", 1000);
    let concurrency = arg("--concurrency", 32) as usize;
    if std::env::args().any(|a| a == "--serve") {
        serve(latency, hosts, instances);
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", "--latency-ms", &latency.to_string()])
        .args([
            "--hosts",
            &hosts.to_string(),
            "--instances",
            &instances.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the scripted server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_owned();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let lat = Duration::from_millis(latency);
    let mut rows: Vec<[String; 6]> = Vec::new();
    rt.block_on(async {
        // ---- 1. observe 1,000 services.
        let monitor = NovaMonitor::new(cfg(&addr)).unwrap();
        let seen = monitor.observe().await.unwrap(); // auth + microversion discovery
        assert_eq!(seen.len() as u64, hosts);
        let rounds = 20u32;
        let (c0, t0) = (cpu(), Instant::now());
        for _ in 0..rounds {
            monitor.observe().await.unwrap();
        }
        let (wall, cpu_used) = (t0.elapsed() / rounds, (cpu() - c0) / rounds);
        rows.push([
            format!("observe {hosts} services"),
            "1".into(),
            format!("{:.1} ms", wall.as_secs_f64() * 1e3),
            format!("{:.1} ms", lat.as_secs_f64() * 1e3),
            over(wall, lat),
            format!("{:.1} ms", cpu_used.as_secs_f64() * 1e3),
        ]);

        // ---- 2. evacuate 1,000 instances at concurrency 32 through the runtime.
        let before = stats(&addr).await;
        // A short interval: run_once's own waits between its phases are multiples of it (core's, not
        // the driver's); the default 10 s would dominate the whole-pass row.
        let mut rc = RecoveryConfig {
            strikes: 1,
            interval: Duration::from_millis(arg("--interval-ms", 200)),
            ..Default::default()
        };
        rc.fencing.poll_interval = Duration::from_millis(1);
        rc.evacuation.concurrency = concurrency;
        rc.evacuation.poll_interval = Duration::from_millis(1);
        let pipeline = Pipeline {
            monitor: Arc::new(NovaMonitor::new(cfg(&addr)).unwrap()) as Arc<dyn Monitor>,
            fencers: vec![Arc::new(InstantFencer)],
            evacuator: Arc::new(NovaEvacuator::new(cfg(&addr)).unwrap()),
            directory: None,
            notifiers: Vec::new(),
        };
        let runtime = Runtime::new(rc, pipeline, Arc::new(MemoryJournal::new()));
        let (c0, t0) = (cpu(), Instant::now());
        let summary = runtime.run_once().await.unwrap();
        let (wall, cpu_used) = (t0.elapsed(), cpu() - c0);
        assert_eq!(summary.failed_instances, 0, "{summary:?}");
        assert_eq!(
            summary.recovered,
            vec![HostId::from("c0000")],
            "{summary:?}"
        );
        let after = stats(&addr).await;
        let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        let (posts, gets, calls) = (d("evacuate_posts"), d("server_gets"), d("calls"));
        // Before each request, the instance's evacuation migrations are read (one actor per host).
        let migration_gets = d("migration_gets");
        assert_eq!(posts, instances, "one evacuation request per instance");
        let evac_calls = posts + gets + migration_gets;
        let ideal = lat * u32::try_from(evac_calls).unwrap() / u32::try_from(concurrency).unwrap();
        let window = Duration::from_secs_f64(after["evac_window_s"].as_f64().unwrap());
        rows.push([
            format!("evacuate {instances} (migrations+evacuate+progress calls)"),
            evac_calls.to_string(),
            secs(window),
            secs(ideal),
            over(window, ideal),
            "-".into(),
        ]);
        let ideal_all = lat * u32::try_from(calls - evac_calls).unwrap() + ideal;
        rows.push([
            format!(
                "run_once whole pass (all calls, {} serial)",
                calls - evac_calls
            ),
            calls.to_string(),
            secs(wall),
            secs(ideal_all),
            over(wall, ideal_all),
            secs(cpu_used),
        ]);
    });
    drop(child.stdin.take());
    let _ = child.wait();

    println!(
        "\nfreezer-dr-nova, scripted Nova with {latency} ms per call, concurrency {concurrency}\n"
    );
    let head = [
        "scenario",
        "calls",
        "wall",
        "ideal",
        "vs ideal",
        "client CPU",
    ];
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([head[i].len()])
                .max()
                .unwrap()
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(&head.map(String::from)));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
    );
    for r in &rows {
        println!("{}", line(r));
    }
    println!(
        "\nideal = calls x latency / concurrency for the evacuations; serial calls (observe, auth, \
         discovery, isolate, listing) at one latency each. CPU per observe is averaged over 20 rounds \
         (10 ms tick resolution)."
    );
}
