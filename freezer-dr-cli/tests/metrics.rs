//! `[metrics]` judged by a real Prometheus (Debian `prometheus`, started here on 127.0.0.1): it scrapes a
//! running `freezer-dr run` (the `testing` drivers, one host down: fenced, evacuated) every second, and
//! its query API must show the recovery. Also the health endpoints. `FREEZER_DR_SKIP_PROMETHEUS=1` skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the process it holds when dropped (the test's own children only).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 GET on 127.0.0.1: (status code, body), or `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

/// The value of an instant query's only sample, if it has exactly one.
fn query(port: u16, promql: &str) -> Option<f64> {
    let q: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let (code, body) = get(port, &format!("/api/v1/query?query={q}"))?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

fn prometheus(dir: &Path, port: u16, target: u16) -> Option<Killed> {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: \
             freezer-dr\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
        ),
    )
    .unwrap();
    let spawned = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn();
    match spawned {
        Ok(child) => Some(Killed(child)),
        Err(e) if std::env::var("FREEZER_DR_SKIP_PROMETHEUS").as_deref() == Ok("1") => {
            eprintln!("skipped (FREEZER_DR_SKIP_PROMETHEUS=1): cannot start prometheus: {e}");
            None
        }
        Err(e) => panic!(
            "cannot start `prometheus` ({e}): install it with tools/test-deps.sh (Debian package \
             prometheus), or set FREEZER_DR_SKIP_PROMETHEUS=1 to skip this test"
        ),
    }
}

#[test]
fn prometheus_scrapes_a_recovery_and_the_health_endpoints_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, prom_port) = (free_port(), free_port());
    let Some(_prometheus) = prometheus(dir.path(), prom_port, metrics_port) else {
        return;
    };
    let config = dir.path().join("freezer-dr.toml");
    let journal = dir.path().join("journal.redb").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = {journal:?}\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
            common::one_host_down("200ms")
        ),
    )
    .unwrap();
    let log = dir.path().join("daemon.log");
    let _daemon = Killed(
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
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        )
    };
    let expect = |promql: &str, ok: &dyn Fn(f64) -> bool| {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let v = query(prom_port, promql);
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

    expect("up{job=\"freezer-dr\"}", &|v| v == 1.0);
    expect(
        "freezer_dr_fencings_total{result=\"confirmed\",level=\"0\"}",
        &|v| v == 1.0,
    );
    expect("freezer_dr_evacuations_total{result=\"done\"}", &|v| {
        v == 2.0
    });
    expect("freezer_dr_hosts{stage=\"evacuated\"}", &|v| v == 1.0);
    expect("freezer_dr_hosts{stage=\"healthy\"}", &|v| v == 4.0);
    expect("sum(freezer_dr_hosts)", &|v| v == 5.0);
    expect(
        "freezer_dr_driver_calls_total{driver=\"testing\",role=\"fencer\",operation=\"power_off\"}",
        &|v| v == 1.0,
    );
    expect(
        "freezer_dr_driver_calls_total{driver=\"testing\",role=\"evacuator\",operation=\"evacuate\"}",
        &|v| v == 2.0,
    );
    expect(
        "freezer_dr_driver_calls_total{driver=\"testing\",role=\"monitor\",operation=\"observe\"}",
        &|v| v >= 2.0,
    );
    expect("sum(freezer_dr_driver_errors_total) or vector(0)", &|v| {
        v == 0.0
    });
    expect(
        "freezer_dr_driver_call_duration_seconds_count{role=\"fencer\",operation=\"power_off\"}",
        &|v| v == 1.0,
    );
    expect(
        "freezer_dr_recovery_phase_duration_seconds_count{phase=\"fencing\"}",
        &|v| v == 1.0,
    );
    expect(
        "freezer_dr_recovery_phase_duration_seconds_count{phase=\"evacuating\"}",
        &|v| v == 1.0,
    );
    expect(
        "freezer_dr_storm + freezer_dr_brake + freezer_dr_observation_failing + freezer_dr_all_stale",
        &|v| v == 0.0,
    );
    expect(
        "time() - freezer_dr_last_observation_timestamp_seconds",
        &|v| (0.0..10.0).contains(&v),
    );
    expect("freezer_dr_outbox_entries", &|v| v == 0.0);

    let (code, body) = get(metrics_port, "/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(metrics_port, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("1 in recovery (compute-1)"), "{body}");
    let (code, _) = get(metrics_port, "/nothing").unwrap();
    assert_eq!(code, 404);
}

#[test]
fn a_metrics_port_in_use_stops_the_daemon_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("freezer-dr.toml");
    let journal = dir.path().join("journal.redb").display().to_string();
    std::fs::write(
        &config,
        format!(
            "[journal]\npath = {journal:?}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n{}",
            common::one_host_down("200ms")
        ),
    )
    .unwrap();
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
