//! `freezer-dr run` under the systemd notify protocol: a real `NOTIFY_SOCKET` (a unix datagram socket
//! made here, as systemd makes one), the real binary with the `testing` drivers, one host down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

/// A daemon on the `testing` drivers (one host down) in a temp dir, its log in `daemon.log` there, with
/// `NOTIFY_SOCKET=socket` and systemd's `WatchdogSec=400ms` (a ping every 200 ms at most).
fn daemon(dir: &Path, socket: &Path) -> Child {
    let config = dir.join("freezer-dr.toml");
    let journal = dir.join("journal.redb").display().to_string();
    let text = format!(
        "[journal]\npath = {journal:?}\n{}",
        common::one_host_down("300ms")
    );
    std::fs::write(&config, text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

fn sigterm(child: &Child) {
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
}

/// Every datagram until `done` says stop (or 20 s pass).
fn receive_until(sock: &UnixDatagram, got: &mut Vec<String>, done: impl Fn(&[String]) -> bool) {
    let end = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 4096];
    while !done(got) {
        assert!(
            Instant::now() < end,
            "timed out; received so far:\n{}",
            got.join("\n--\n")
        );
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn status_of(msg: &str) -> Option<&str> {
    msg.lines().find_map(|l| l.strip_prefix("STATUS="))
}

#[test]
fn run_tells_systemd_ready_after_the_first_observation_then_watchdog_status_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = daemon(dir.path(), &socket);

    let mut got = Vec::new();
    let pings = |g: &[String]| g.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    receive_until(&sock, &mut got, |g| {
        g.iter()
            .filter_map(|m| status_of(m))
            .any(|s| s.contains("1 in recovery (compute-1)"))
            && pings(g) >= 5
    });
    let show = |got: &[String]| {
        format!(
            "{}\n--- log\n{}",
            got.join("\n--\n"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };

    // READY=1 once, after the first observation: the statuses before it say none was made yet, the one
    // sent with it counts the observed hosts.
    let ready: Vec<usize> = (0..got.len())
        .filter(|i| got[*i].lines().any(|l| l == "READY=1"))
        .collect();
    assert_eq!(ready.len(), 1, "{}", show(&got));
    let before: Vec<&str> = got[..ready[0]]
        .iter()
        .filter_map(|m| status_of(m))
        .collect();
    assert!(
        before
            .iter()
            .all(|s| s.contains("first observation pending")),
        "{}",
        show(&got)
    );
    let at_ready = status_of(&got[ready[0]]).unwrap_or_default();
    assert!(
        at_ready.contains("5 hosts observed, none in recovery"),
        "{}",
        show(&got)
    );
    // STATUS= follows the recovery; WATCHDOG=1 repeats (at most every 200 ms: the loop's own turns).
    let statuses: Vec<&str> = got.iter().filter_map(|m| status_of(m)).collect();
    assert!(
        statuses.windows(2).all(|w| w[0] != w[1]),
        "a STATUS= is sent only when it changes: {statuses:?}"
    );
    assert!(pings(&got) >= 5, "{}", show(&got));

    // SIGTERM: STOPPING=1, then a clean exit.
    sigterm(&child);
    receive_until(&sock, &mut got, |g| {
        g.iter().any(|m| m.lines().any(|l| l == "STOPPING=1"))
    });
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", show(&got));
}

#[test]
fn a_notify_socket_nobody_listens_on_is_warned_about_once_and_the_daemon_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("daemon.log");
    let mut child = daemon(dir.path(), &dir.path().join("nobody.sock"));
    // Long enough for the recovery of compute-1 and several watchdog turns.
    let end = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("evacuating")
    {
        assert!(
            Instant::now() < end,
            "{}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    sigterm(&child);
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{text}");
    assert_eq!(text.matches("cannot notify systemd").count(), 1, "{text}");
}
