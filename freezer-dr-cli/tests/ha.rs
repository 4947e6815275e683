//! `freezer-dr` in HA mode against a real etcd started here (Debian `etcd-server`): requests from a
//! process that does not lead, `status` showing the leader and the standby, and two daemons of which one
//! acts and the other takes over when it stops. `FREEZER_DR_SKIP_ETCD=1` skips (never in CI).
#![cfg(feature = "etcd")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use freezer_dr_core::testing::EtcdServer;

fn freezer_dr(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn daemon(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn status_until(config: &Path, what: &str, f: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = freezer_dr(config, &["status"]);
        assert_eq!(code, Some(0), "{out}\n{err}");
        if f(&out) {
            return out;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_daemons_one_leads_the_other_takes_over_and_requests_work_from_anywhere() {
    let Some(etcd) = EtcdServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("freezer-dr.toml");
    std::fs::write(
        &config,
        format!(
            r#"[ha]
backend = "etcd"
endpoints = ["{}"]
election = "cli-test"
lease_ttl = "2s"

[recovery]
interval = "100ms"
{}"#,
            etcd.endpoint(),
            common::TESTING_DRIVERS
        ),
    )
    .unwrap();

    // No daemon yet: a request is stored in etcd for whoever leads next.
    let (code, out, err) = freezer_dr(&config, &["pause", "--reason", "drill"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("etcd /freezer-dr/cli-test/"), "{out}");
    let out = status_until(&config, "the request", |s| s.contains("pause (drill)"));
    assert!(out.contains("Leader: none"), "{out}");

    let (log1, log2) = (dir.path().join("d1.log"), dir.path().join("d2.log"));
    let mut first = daemon(&config, &log1);
    let out = status_until(&config, "a leader that applied the pause", |s| {
        s.contains("Leader: ") && !s.contains("Leader: none") && s.contains("Brake: ON (drill)")
    });
    assert!(
        out.contains(&format!("pid {}", first.id())),
        "the first daemon leads: {out}"
    );
    let mut second = daemon(&config, &log2);
    let out = status_until(&config, "the standby", |s| {
        s.contains(&format!("pid {}", second.id()))
    });
    assert!(out.contains("Standbys:\n"), "{out}");

    // SIGTERM: the leader drains, resigns, and the standby takes over at once.
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    let code = first.wait().unwrap().code();
    assert_eq!(
        code,
        Some(0),
        "{}",
        std::fs::read_to_string(&log1).unwrap_or_default()
    );
    let out = status_until(&config, "the standby to lead", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains(&format!("pid {}", second.id())))
    });
    println!(
        "handover after SIGTERM of the leader: {:?} (resigned, no lease wait)",
        stopped.elapsed()
    );
    assert!(
        out.contains("Brake: ON (drill)"),
        "the state survived: {out}"
    );
    let _ = second.kill();
    let _ = second.wait();
    let log = std::fs::read_to_string(&log2).unwrap_or_default();
    assert!(log.contains("elected leader"), "{log}");
}
