//! The `tcp` monitor against real listeners on loopback addresses (127.0.0.2, 127.0.0.3, ... all reach
//! the loopback interface on Linux) that the tests open and close: up while any address answers, down
//! when every one refuses or times out, unknown when a probe cannot be made, and the registration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use freezer_dr_core::registry::{self, BuildContext};
use freezer_dr_core::{ErrorKind, Health, HostHealth, HostId, Monitor};
use freezer_dr_tcp::{TcpConfig, TcpHostConfig, TcpMonitor};

fn listen(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"))
}

fn addr(l: &TcpListener) -> String {
    l.local_addr().unwrap().to_string()
}

/// A port on `ip` where nothing listens (bound, then closed: the kernel refuses connections to it).
fn closed_port(ip: &str) -> String {
    addr(&listen(ip))
}

/// A listener that accepts no more connections: its accept queue is full, so the kernel drops every
/// new SYN and a connect gets no answer at all, as from a host that is gone.
struct Blackhole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _queued: Vec<TcpStream>,
}

fn blackhole(ip: &str) -> Blackhole {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // A backlog of 0 still queues one connection; the next ones fill it for sure.
    for _ in 0..2 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            queued.push(s);
        }
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the blackhole listener on {addr} still accepts connections"
    );
    Blackhole {
        addr,
        _listener: listener,
        _queued: queued,
    }
}

fn monitor(hosts: &[(&str, Vec<String>)], timeout: Duration) -> TcpMonitor {
    TcpMonitor::new(TcpConfig {
        hosts: hosts
            .iter()
            .map(|(h, a)| {
                (
                    (*h).to_owned(),
                    TcpHostConfig {
                        addresses: a.clone(),
                        port: None,
                    },
                )
            })
            .collect(),
        port: None,
        timeout,
    })
    .unwrap()
}

fn health<'a>(seen: &'a [HostHealth], host: &str) -> &'a Health {
    &seen
        .iter()
        .find(|h| h.host == HostId::from(host))
        .unwrap_or_else(|| panic!("{host} not observed: {seen:?}"))
        .health
}

#[tokio::test]
async fn a_host_is_up_while_any_address_answers_and_down_once_every_probe_is_refused() {
    let mgmt = listen("127.0.0.2");
    let storage = listen("127.0.0.3");
    let other = listen("127.0.0.5");
    let m = monitor(
        &[
            ("compute-1", vec![addr(&mgmt), addr(&storage)]),
            ("compute-2", vec![addr(&other), closed_port("127.0.0.6")]),
        ],
        Duration::from_secs(2),
    );
    let seen = m.observe().await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(health(&seen, "compute-1"), &Health::Up);
    // One network down (its address refuses), the host still answers on the other: up.
    assert_eq!(health(&seen, "compute-2"), &Health::Up);

    let storage_addr = addr(&storage);
    drop(storage);
    assert_eq!(
        health(&m.observe().await.unwrap(), "compute-1"),
        &Health::Up
    );

    let mgmt_addr = addr(&mgmt);
    drop(mgmt);
    let seen = m.observe().await.unwrap();
    let Health::Down { reason } = health(&seen, "compute-1") else {
        panic!("compute-1 should be down once both its addresses refuse: {seen:?}");
    };
    for want in [
        format!("{mgmt_addr}: connection refused"),
        format!("{storage_addr}: connection refused"),
    ] {
        assert!(reason.contains(&want), "{want:?} not in {reason:?}");
    }
    assert_eq!(health(&seen, "compute-2"), &Health::Up);
    // The same hosts, every observation (a host the monitor stops listing is never fenced).
    freezer_dr_core::testing::conformance::monitor(&m).await;
}

#[tokio::test]
async fn a_probe_without_an_answer_fails_after_the_timeout_and_the_observation_stays_bounded() {
    let hole = blackhole("127.0.0.7");
    let live = listen("127.0.0.8");
    let timeout = Duration::from_millis(700);
    let m = monitor(
        &[
            (
                "compute-1",
                vec![hole.addr.to_string(), closed_port("127.0.0.9")],
            ),
            ("compute-2", vec![addr(&live)]),
        ],
        timeout,
    );
    let start = Instant::now();
    let seen = m.observe().await.unwrap();
    let took = start.elapsed();
    let Health::Down { reason } = health(&seen, "compute-1") else {
        panic!("compute-1 should be down: one probe timed out, the other was refused: {seen:?}");
    };
    assert!(
        reason.contains(&format!("{}: no answer in 700ms", hole.addr)),
        "{reason}"
    );
    assert!(reason.contains("connection refused"), "{reason}");
    assert_eq!(health(&seen, "compute-2"), &Health::Up);
    // Every probe runs at once: the observation waits for one timeout, not one per probe. (A bound on
    // correctness, generous enough for a loaded machine; the speed itself is not measured here.)
    assert!(
        took < timeout * 4,
        "one observation with a timed-out probe took {took:?} (timeout {timeout:?})"
    );
}

#[tokio::test]
async fn a_probe_the_controller_cannot_make_is_no_evidence() {
    // TCP to a multicast address: Linux refuses it locally (ENETUNREACH), the host is never asked.
    let local = "224.0.0.1:22".to_owned();
    let live = listen("127.0.0.10");
    let m = monitor(
        &[
            ("compute-1", vec![local.clone(), closed_port("127.0.0.11")]),
            ("compute-2", vec!["224.0.0.2:22".to_owned(), addr(&live)]),
        ],
        Duration::from_secs(2),
    );
    let seen = m.observe().await.unwrap();
    let h = health(&seen, "compute-1");
    assert!(
        matches!(h, Health::Unknown { reason } if reason.contains("224.0.0.1:22: not probed")),
        "one refused probe and one that could not be made is unknown, never down: {h:?}"
    );
    assert!(!h.is_down());
    assert_eq!(health(&seen, "compute-2"), &Health::Up);

    // Not one probe could be made: the observation itself failed (never "everything is down").
    let m = monitor(&[("compute-1", vec![local])], Duration::from_secs(2));
    let e = m.observe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_temporary());
    assert!(e.to_string().contains("no probe could be made"), "{e}");
}

#[tokio::test]
async fn healthcheck_names_every_address_that_does_not_answer() {
    let live = listen("127.0.0.12");
    let dead = closed_port("127.0.0.13");
    let m = monitor(
        &[("compute-1", vec![addr(&live), dead.clone()])],
        Duration::from_secs(2),
    );
    let e = m.healthcheck().await.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "1 of 2 TCP probes did not connect:\ncompute-1 at {dead}: connection refused"
        )),
        "{e}"
    );
    let m = monitor(&[("compute-1", vec![addr(&live)])], Duration::from_secs(2));
    m.healthcheck().await.unwrap();
}

#[test]
fn the_registered_example_builds() {
    freezer_dr_core::testing::build_examples(env!("CARGO_PKG_NAME"));
}

#[test]
fn a_config_mistake_names_the_file_and_the_key() {
    let options: toml::Table =
        toml::from_str("timeout = \"2s\"\n[hosts.compute-1]\naddresses = [\"compute-1:22\"]\n")
            .unwrap();
    let reg = registry::monitors()
        .into_iter()
        .find(|r| r.name == "tcp")
        .expect("the tcp monitor is registered");
    let e = (reg.build)(&BuildContext {
        file: Path::new("/etc/freezer-dr/freezer-dr.toml"),
        section: "monitor".into(),
        options,
    })
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.to_string().starts_with(
            "/etc/freezer-dr/freezer-dr.toml: monitor.hosts.\"compute-1\".addresses[0]: \
             \"compute-1:22\" is not an IP address with a port"
        ),
        "{e}"
    );
    let options: toml::Table = toml::from_str("timeuot = \"2s\"\n[hosts]\n").unwrap();
    let e = (reg.build)(&BuildContext {
        file: Path::new("f.toml"),
        section: "monitor".into(),
        options,
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("monitor.timeuot") && e.contains("timeout"),
        "{e}"
    );
}
