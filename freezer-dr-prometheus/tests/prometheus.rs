//! The `prometheus` monitor against a real Prometheus (Debian `prometheus`) that scrapes small targets
//! the tests start and kill: a live target reads up, a killed one down, a target Prometheus stops
//! scraping (stale series) and one it never scraped unknown; Prometheus's own errors fail the
//! observation with its message; basic authentication and TLS with a CA file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Group, Target, health_of, observe_until, scrape_configs};
use freezer_dr_core::testing::{PrometheusServer, TestCerts};
use freezer_dr_core::{ErrorKind, Health, Monitor, Secret};
use freezer_dr_prometheus::{PrometheusConfig, PrometheusMonitor};

fn mapped(url: &str, hosts: &[(&str, &str)]) -> PrometheusConfig {
    let mut c = PrometheusConfig::new(url);
    c.hosts = hosts
        .iter()
        .map(|(h, v)| ((*h).to_owned(), (*v).to_owned()))
        .collect::<BTreeMap<_, _>>();
    c.timeout = Duration::from_secs(5);
    c
}

fn is_up(seen: &[freezer_dr_core::HostHealth], host: &str) -> bool {
    health_of(seen, host) == Some(Health::Up)
}

fn is_down(seen: &[freezer_dr_core::HostHealth], host: &str) -> bool {
    health_of(seen, host).is_some_and(|h| h.is_down())
}

fn is_unknown(seen: &[freezer_dr_core::HostHealth], host: &str) -> bool {
    matches!(health_of(seen, host), Some(Health::Unknown { .. }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_target_reads_down_a_stale_or_unscraped_one_unknown_and_a_live_one_up() {
    let (mut a, mut b, c) = (
        Target::start().await,
        Target::start().await,
        Target::start().await,
    );
    let never = "127.0.0.1:1"; // mapped, never scraped by this Prometheus
    let (a_addr, b_addr, c_addr) = (a.address.clone(), b.address.clone(), c.address.clone());
    let groups = |with_c: bool| {
        let mut g = vec![
            Group {
                targets: vec![a_addr.as_str()],
                labels: vec![("nova_host", "compute-1")],
            },
            Group {
                targets: vec![b_addr.as_str()],
                labels: vec![("nova_host", "compute-2")],
            },
        ];
        if with_c {
            g.push(Group {
                targets: vec![c_addr.as_str()],
                labels: vec![("nova_host", "compute-3")],
            });
        }
        scrape_configs(&g)
    };
    let Some(mut prom) = PrometheusServer::start(&groups(true)) else {
        return;
    };
    let m = PrometheusMonitor::new(mapped(
        prom.url(),
        &[
            ("compute-1", &a.address),
            ("compute-2", &b.address),
            ("compute-3", &c.address),
            ("compute-4", never),
        ],
    ))
    .unwrap();

    let seen = observe_until(&m, "all three targets up", |s| {
        ["compute-1", "compute-2", "compute-3"]
            .iter()
            .all(|h| is_up(s, h))
    })
    .await;
    assert_eq!(
        seen.len(),
        4,
        "every mapped host, every observation: {seen:?}"
    );
    let Some(Health::Unknown { reason }) = health_of(&seen, "compute-4") else {
        panic!("a host Prometheus never scraped is unknown, never up: {seen:?}");
    };
    assert!(reason.contains("instance=\"127.0.0.1:1\""), "{reason}");
    freezer_dr_core::testing::conformance::monitor(&m).await;

    // One observation's wall time against the real server (3 live targets, 4 mapped hosts), for the
    // record; nothing is asserted about it.
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        m.observe().await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "one observation (2 queries at once, 3 targets): min {:?}, median {:?}, max {:?}",
        times[0], times[10], times[19]
    );

    // A target dies: down (up == 0), with the series as evidence; the others stay up.
    let b_address = b.address.clone();
    b.kill().await;
    let seen = observe_until(&m, "compute-2 down after its target was killed", |s| {
        is_down(s, "compute-2")
    })
    .await;
    let Some(Health::Down { reason }) = health_of(&seen, "compute-2") else {
        unreachable!()
    };
    assert!(
        reason.contains(&format!(
            "up{{job=\"node\"}} == 0 lists instance={b_address:?} (value 0)"
        )),
        "{reason}"
    );
    assert!(
        is_up(&seen, "compute-1") && is_up(&seen, "compute-3"),
        "{seen:?}"
    );
    assert!(is_unknown(&seen, "compute-4"), "{seen:?}");

    // Prometheus stops scraping compute-3's target (gone from its service discovery): its series go
    // stale, and a stale series is unknown — not up, and never down.
    prom.reload(&groups(false));
    let seen = observe_until(&m, "compute-3 unknown once its series went stale", |s| {
        is_unknown(s, "compute-3")
    })
    .await;
    assert!(
        is_up(&seen, "compute-1") && is_down(&seen, "compute-2"),
        "{seen:?}"
    );

    // The series carry the Nova host name in a label: host_label instead of a mapping.
    let mut named = PrometheusConfig::new(prom.url());
    named.host_label = Some("nova_host".into());
    let named = PrometheusMonitor::new(named).unwrap();
    let seen = named.observe().await.unwrap();
    assert!(is_up(&seen, "compute-1"), "{seen:?}");
    assert!(is_down(&seen, "compute-2"), "{seen:?}");
    named.healthcheck().await.unwrap();

    // validate --connect: a mapped host without any series is named.
    let e = m.healthcheck().await.unwrap_err().to_string();
    assert!(
        e.contains("2 of 4 hosts have no series in Prometheus")
            && e.contains("compute-3: no series with instance=")
            && e.contains("compute-4: no series with instance=\"127.0.0.1:1\""),
        "{e}"
    );

    // Prometheus refuses a query: the observation fails with its message (never "all down").
    // The error of one observation of compute-1 with the config changed by `set`.
    let error_with = |set: fn(&mut PrometheusConfig)| {
        let mut c = mapped(prom.url(), &[("compute-1", &a.address)]);
        set(&mut c);
        async move {
            PrometheusMonitor::new(c)
                .unwrap()
                .observe()
                .await
                .unwrap_err()
        }
    };
    let e = error_with(|c| c.down_query = "up{job=\"node\" == 0".into()).await;
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("Prometheus query down_query `up{job=\"node\" == 0`: Prometheus refused it (bad_data): invalid parameter \"query\""),
        "{text}"
    );
    let e = error_with(|c| c.present_query = "1".into()).await;
    assert!(
        e.to_string()
            .contains("returned a scalar, not an instant vector"),
        "{e}"
    );

    // Prometheus itself gone: an error, not a verdict.
    a.kill().await;
    drop(prom);
    let e = m.observe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_temporary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_and_tls_with_the_ca_file() {
    let certs = TestCerts::generate();
    let password = "Pr0m-Passw0rd-do-not-log";
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  freezer: {}\n",
        certs.cert.display(),
        certs.key.display(),
        common::bcrypt(password)
    );
    let target = Target::start().await;
    let scrape = scrape_configs(&[Group {
        targets: vec![target.address.as_str()],
        labels: vec![],
    }]);
    let Some(prom) = PrometheusServer::start_with_web(&scrape, Some(&web)) else {
        return;
    };
    let config = |user: &str, pw: &str, ca: &std::path::Path| {
        let mut c = mapped(prom.url(), &[("compute-1", &target.address)]);
        c.username = Some(user.into());
        c.password = Some(Secret::new(pw));
        c.ca_file = Some(ca.to_owned());
        c
    };
    let m = PrometheusMonitor::new(config("freezer", password, &certs.ca)).unwrap();
    observe_until(&m, "compute-1 up over TLS with basic auth", |s| {
        is_up(s, "compute-1")
    })
    .await;

    let wrong = PrometheusMonitor::new(config("freezer", "wrong", &certs.ca)).unwrap();
    let e = wrong.observe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary());
    assert!(!format!("{e} {e:?} {wrong:?}").contains("wrong\""), "{e}");

    let other_ca = PrometheusMonitor::new(config("freezer", password, &certs.other_ca)).unwrap();
    let e = other_ca.observe().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    for shown in [format!("{e}"), format!("{e:?}"), format!("{m:?}")] {
        assert!(!shown.contains(password), "{shown}");
    }
}
