//! `[metrics]` judged by a real Prometheus (Debian `prometheus`, started here on 127.0.0.1): it scrapes a
//! running `freezer-dr run` (the `testing` drivers, one host down: fenced, evacuated) every second, and
//! its query API must show the recovery. Also the health endpoints. `FREEZER_DR_SKIP_PROMETHEUS=1` skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_core::testing::{ChildGuard, PrometheusServer, free_port, http_get};

/// A config in `dir` (its journal there too) for the `testing` drivers with one host down, and
/// `[metrics]` on 127.0.0.1:`port`.
fn config_in(dir: &Path, port: u16) -> PathBuf {
    let config = dir.join("freezer-dr.toml");
    let journal = dir.join("journal.redb").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = {journal:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
            common::one_host_down("200ms")
        ),
    )
    .unwrap();
    config
}

#[test]
fn prometheus_scrapes_a_recovery_and_the_health_endpoints_answer() {
    let metrics_port = free_port();
    let Some(prometheus) = PrometheusServer::start(&format!(
        "scrape_configs:\n  - job_name: freezer-dr\n    static_configs:\n      - targets: \
         ['127.0.0.1:{metrics_port}']\n"
    )) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), metrics_port);
    let log = dir.path().join("daemon.log");
    let _daemon = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || {
        format!(
            "--- daemon\n{}\n--- prometheus\n{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            prometheus.log()
        )
    };
    let expect = |promql: &str, ok: &dyn Fn(f64) -> bool| {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let v = prometheus.query(promql);
            if v.is_some_and(ok) {
                return;
            }
            assert!(
                Instant::now() < end,
                "Prometheus never showed {promql} as expected (last: {v:?})\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    };

    // The recovery of compute-1 (two instances), counted exactly.
    for (promql, want) in [
        ("up{job=\"freezer-dr\"}", 1.0),
        (
            "freezer_dr_fencings_total{result=\"confirmed\",level=\"0\"}",
            1.0,
        ),
        ("freezer_dr_evacuations_total{result=\"done\"}", 2.0),
        ("freezer_dr_hosts{stage=\"evacuated\"}", 1.0),
        ("freezer_dr_hosts{stage=\"healthy\"}", 4.0),
        ("sum(freezer_dr_hosts)", 5.0),
        (
            "freezer_dr_driver_calls_total{driver=\"testing\",role=\"fencer\",operation=\"power_off\"}",
            1.0,
        ),
        (
            "freezer_dr_driver_calls_total{driver=\"testing\",role=\"evacuator\",operation=\"evacuate\"}",
            2.0,
        ),
        ("sum(freezer_dr_driver_errors_total) or vector(0)", 0.0),
        (
            "freezer_dr_driver_call_duration_seconds_count{role=\"fencer\",operation=\"power_off\"}",
            1.0,
        ),
        (
            "freezer_dr_recovery_phase_duration_seconds_count{phase=\"fencing\"}",
            1.0,
        ),
        (
            "freezer_dr_recovery_phase_duration_seconds_count{phase=\"evacuating\"}",
            1.0,
        ),
        (
            "freezer_dr_storm + freezer_dr_brake + freezer_dr_observation_failing + freezer_dr_all_stale",
            0.0,
        ),
        ("freezer_dr_outbox_entries", 0.0),
    ] {
        expect(promql, &|v| v == want);
    }
    // The daemon's redb journal: the power-off, the isolation and the evacuations are decided in three
    // turns at least, and each turn's durable commit went before its commands (and took some time).
    expect(
        "freezer_dr_journal_commit_duration_seconds_count{kind=\"write_ahead\"}",
        &|v| v >= 3.0,
    );
    expect(
        "freezer_dr_journal_commit_duration_seconds_sum{kind=\"write_ahead\"}",
        &|v| v > 0.0,
    );
    // Observations go on; the last one is recent.
    expect(
        "freezer_dr_driver_calls_total{driver=\"testing\",role=\"monitor\",operation=\"observe\"}",
        &|v| v >= 2.0,
    );
    expect(
        "time() - freezer_dr_last_observation_timestamp_seconds",
        &|v| (0.0..10.0).contains(&v),
    );

    let (code, body) = http_get(metrics_port, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(metrics_port, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1 in recovery (compute-1)"), "{body}");
    let (code, _) = http_get(metrics_port, "/nothing").unwrap();
    assert_eq!(code, 404);
}

#[test]
fn a_metrics_port_in_use_stops_the_daemon_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), port);
    let out = Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "metrics.listen: cannot listen on 127.0.0.1:{port}"
        )),
        "{err}"
    );
}
