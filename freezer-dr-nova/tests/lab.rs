//! Against a REAL Keystone + Nova (fake virt driver), started once for this test binary by the project's
//! own lab script (`lab/openstack/up.sh`) and stopped at the end. Fails — never skips — when the lab cannot
//! start, unless `FREEZER_DR_SKIP_OPENSTACK=1` is set explicitly.
//!
//! One test function runs the whole story in order (the lab takes about a minute to start, and nextest
//! runs each test function in its own process): boot servers on `compute1`, `compute10` (a name with
//! `compute1` as prefix), `compute2` and a spare `compute3`; crash two computes; watch the monitor; isolate,
//! list, evacuate, track; service and evacuate bodies at microversions 2.1, 2.29, 2.53, 2.94, 2.95; repair
//! and restore; the directory.

// Test harness code outside #[test] functions: panicking is how it fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use freezer_dr_core::testing::conformance;
use freezer_dr_core::{
    Directory, Evacuator, Fenced, Health, HostHealth, HostId, Monitor, Progress, Secret,
};
use freezer_dr_nova::lab::{Admin, Lab, LabSpec};
use freezer_dr_nova::{
    KeystoneConfig, KeystoneDirectory, Microversion, NovaConfig, NovaEvacuator, NovaMonitor,
};
use serde_json::json;

const COMPUTES: &str = "compute1 compute10 compute2 compute3";

/// The OpenStack half of the lab (`lab/openstack/up.sh`) with four computes.
fn start_lab() -> Option<Lab> {
    let mut lab = Lab::start(&LabSpec {
        name: "the OpenStack lab",
        up: "lab/openstack/up.sh",
        down: "lab/openstack/down.sh",
        install: "lab/openstack/install.sh",
        args: vec!["--computes".into(), COMPUTES.into()],
        skip_var: "FREEZER_DR_SKIP_OPENSTACK",
        prefix: "fdr-nova-lab.",
    })?;
    for name in ["nova-api", "nova-conductor", "nova-scheduler", "keystone"]
        .iter()
        .map(|n| format!("{n}.log"))
        .chain(COMPUTES.split(' ').map(|h| format!("nova-compute-{h}.log")))
    {
        lab.show_on_failure(format!("logs/{name}"), 25);
    }
    Some(lab)
}

/// The test's Nova config: admin credentials, a 10 s heartbeat timeout, pages of two.
fn nova(lab: &Lab, cap: &str) -> NovaConfig {
    NovaConfig {
        auth: lab.auth(),
        heartbeat_timeout: Duration::from_secs(10),
        microversion_cap: cap.parse().expect("microversion"),
        page_size: 2,
        ..Default::default()
    }
}

async fn wait_active(admin: &Admin, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for id in ids {
        loop {
            let s = admin.server(id).await;
            match s["status"].as_str() {
                Some("ACTIVE") => break,
                Some("ERROR") => panic!("server {id} went to ERROR at boot: {s}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "server {id} not ACTIVE: {s}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

fn health_of<'a>(seen: &'a [HostHealth], host: &str) -> &'a HostHealth {
    seen.iter()
        .find(|h| h.host.as_str() == host)
        .unwrap_or_else(|| panic!("monitor did not list {host}: {seen:?}"))
}

async fn evacuate_and_track(
    e: &NovaEvacuator,
    fenced: &Fenced,
    inst: &freezer_dr_core::Instance,
) -> (HostId, String) {
    e.evacuate(fenced, inst)
        .await
        .unwrap_or_else(|err| panic!("evacuate {}: {err}", inst.id));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut started = false;
    loop {
        match e.progress(inst).await {
            Ok(Progress::Done { host, status }) => return (host, status),
            Ok(Progress::InProgress { .. }) => {}
            // Left stopped at 2.95+: the engine sends a journaled start, as here (progress never writes).
            Ok(Progress::NeedsStart { host, status }) => {
                assert_ne!(
                    host, inst.host,
                    "{} needs a start on the failed host",
                    inst.id
                );
                assert_eq!(status, "SHUTOFF", "{}", inst.id);
                e.start(inst)
                    .await
                    .unwrap_or_else(|err| panic!("start {}: {err}", inst.id));
                if started {
                    // Repeating is safe (a lost reply): already running or starting is Ok.
                    e.start(inst)
                        .await
                        .unwrap_or_else(|err| panic!("start {} again: {err}", inst.id));
                }
                started = true;
            }
            Ok(other) => panic!("evacuation of {} read {other:?}", inst.id),
            Err(err) if err.is_temporary() => {}
            Err(err) => panic!("progress {}: {err}", inst.id),
        }
        assert!(
            Instant::now() < deadline,
            "evacuation of {} did not finish",
            inst.id
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// What the runtime does with a temporary error: call again later, bounded.
async fn restore_until_ok(e: &NovaEvacuator, host: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match e.restore(&HostId::from(host)).await {
            Ok(()) => return,
            Err(err) if err.is_temporary() && Instant::now() < deadline => {
                eprintln!("restore {host}: {err} (trying again)");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => panic!("restore {host}: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_nova_recovery_path() {
    let Some(lab) = start_lab() else { return };
    let admin = Admin::new(&lab).await;
    let image = lab.var("LAB_IMAGE_ID").to_owned();

    // ---- Boot: 3 on compute1, 2 on compute10 (prefix trap), 6 on compute2 (one per body test).
    let mut on: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (host, n) in [("compute1", 3), ("compute10", 2), ("compute2", 6)] {
        for i in 0..n {
            let id = admin
                .boot(&format!("{host}-vm{i}"), host, "on", &image)
                .await;
            on.entry(host).or_default().push(id);
        }
    }
    let all: Vec<String> = on.values().flatten().cloned().collect();
    wait_active(&admin, &all).await;
    for (host, ids) in &on {
        for id in ids {
            assert_eq!(admin.server(id).await["OS-EXT-SRV-ATTR:host"], *host);
        }
    }

    // ---- Monitor on a healthy cloud.
    let monitor = NovaMonitor::new(nova(&lab, "2.94")).expect("monitor");
    monitor.healthcheck().await.expect("monitor healthcheck");
    conformance::monitor(&monitor).await;
    let seen = monitor.observe().await.expect("observe");
    for h in COMPUTES.split(' ') {
        assert_eq!(health_of(&seen, h).health, Health::Up, "{seen:?}");
    }

    // ---- Crash compute1 and compute2; the monitor sees exactly them down within the window.
    // A second monitor with a heartbeat_timeout of 5 s (report_interval is 2 s here): it must see the
    // crash first, and still read the repaired host up (three beats do not fit in 5 s).
    let mut fast_cfg = nova(&lab, "2.94");
    fast_cfg.heartbeat_timeout = Duration::from_secs(5);
    let fast = NovaMonitor::new(fast_cfg).expect("fast monitor");
    let crashed = Instant::now();
    lab.compute("kill", "compute1");
    lab.compute("kill", "compute2");
    let mut fast_seen = None;
    loop {
        if fast_seen.is_none()
            && health_of(&fast.observe().await.expect("observe"), "compute1")
                .health
                .is_down()
        {
            fast_seen = Some(crashed.elapsed());
        }
        let seen = monitor.observe().await.expect("observe");
        let down: BTreeSet<&str> = seen
            .iter()
            .filter(|h| h.health.is_down())
            .map(|h| h.host.as_str())
            .collect();
        if down == BTreeSet::from(["compute1", "compute2"]) {
            assert_eq!(health_of(&seen, "compute10").health, Health::Up);
            let Health::Down { reason } = &health_of(&seen, "compute1").health else {
                unreachable!()
            };
            assert!(reason.contains("last heartbeat"), "{reason}");
            break;
        }
        assert!(
            down.is_subset(&BTreeSet::from(["compute1", "compute2"])),
            "only the crashed hosts may read down: {seen:?}"
        );
        assert!(
            crashed.elapsed() < Duration::from_secs(40),
            "the monitor did not report compute1 and compute2 down within 40 s: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("crash seen after {:.1?}", crashed.elapsed());
    let fast_seen =
        fast_seen.expect("the 5 s monitor saw compute1 down no later than the 10 s one");
    eprintln!("crash seen by the 5 s monitor after {fast_seen:.1?}");
    assert!(fast_seen < Duration::from_secs(9), "{fast_seen:?}");

    // ---- compute1: the core conformance suite, then the rest by hand.
    let evac = NovaEvacuator::new(nova(&lab, "2.94")).expect("evacuator");
    assert_eq!(
        evac.microversion().await.unwrap(),
        Microversion::DEFAULT_CAP
    );
    let fenced1 = Fenced::for_tests("compute1");
    conformance::evacuator(&evac, &fenced1).await;

    let svc = admin.service("compute1").await;
    assert_eq!(svc["forced_down"], true, "{svc}");
    assert_eq!(svc["status"], "disabled", "{svc}");
    assert_eq!(svc["disabled_reason"], fenced1.marker().as_str(), "{svc}");
    let seen = monitor.observe().await.unwrap();
    let c1 = health_of(&seen, "compute1");
    assert!(
        c1.admin.isolated_by_freezer_dr() && !c1.admin.disabled_by_operator(),
        "{c1:?}"
    );

    let listed = evac.instances(&fenced1).await.expect("instances");
    let listed_ids: BTreeSet<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        listed.len(),
        2,
        "one of three was evacuated by the suite: {listed:?}"
    );
    assert!(
        listed_ids
            .iter()
            .all(|id| on["compute1"].iter().any(|x| x == id))
    );
    for i in &listed {
        assert_eq!(i.host.as_str(), "compute1");
        assert_eq!(i.status, "ACTIVE");
        assert_eq!(i.metadata.get("ha").map(String::as_str), Some("on"));
        assert!(!i.volume_backed, "booted from an image");
        assert!(!i.project.is_empty() && !i.user.is_empty());
    }
    for i in &listed {
        let (to, status) = evacuate_and_track(&evac, &fenced1, i).await;
        assert!(
            to.as_str() != "compute1" && to.as_str() != "compute2",
            "{} went to {to}",
            i.id
        );
        assert_eq!(status, "ACTIVE");
    }
    assert!(evac.instances(&fenced1).await.unwrap().is_empty());
    // compute10 (compute1 is its prefix) was never touched.
    for id in &on["compute10"] {
        let s = admin.server(id).await;
        assert_eq!(s["OS-EXT-SRV-ATTR:host"], "compute10", "{s}");
        assert_eq!(s["status"], "ACTIVE");
        assert!(s["OS-EXT-STS:task_state"].is_null(), "{s}");
    }
    let c10 = admin.service("compute10").await;
    assert_eq!(c10["status"], "enabled");
    assert_eq!(c10["forced_down"], false);

    // ---- Service bodies at each microversion, on the spare compute3 (up, no instances): isolate then
    // restore. Evacuate bodies on compute2 (down): one server per microversion.
    let fenced2 = Fenced::for_tests("compute2");
    evac.isolate(&fenced2).await.expect("isolate compute2");
    let mut c2 = evac.instances(&fenced2).await.expect("instances compute2");
    assert_eq!(c2.len(), 6, "{c2:?}");

    // ---- A task left from before the failure: a stop sent to the dead compute2 (never restarted in
    // this story, so the queued stop is never run) leaves task_state powering-off. Without an evacuation
    // of ours, progress reads Busy (it read InProgress and held a slot for the whole timeout). This Nova
    // (34) accepts an evacuation whatever the task_state (`check_instance_state(task_state=None)`), so the
    // 409 on evacuate is shown with the scripted server (tests/faults.rs) only.
    let busy = &c2[0];
    admin
        .call(
            reqwest::Method::POST,
            &format!("/servers/{}/action", busy.id),
            Some(json!({"os-stop": null})),
        )
        .await;
    let s = admin.server(&busy.id).await;
    assert_eq!(s["OS-EXT-STS:task_state"], "powering-off", "{s}");
    let p = evac.progress(busy).await.expect("progress");
    assert!(
        matches!(&p, Progress::Busy { detail } if detail.contains("powering-off")),
        "{p:?}"
    );
    // The operator clears the stuck task; the story goes on with an ordinary server.
    admin
        .call(
            reqwest::Method::POST,
            &format!("/servers/{}/action", busy.id),
            Some(json!({"os-resetState": {"state": "active"}})),
        )
        .await;
    let s = admin.server(&busy.id).await;
    assert!(s["OS-EXT-STS:task_state"].is_null(), "{s}");
    for (cap, restore_power) in [
        ("2.1", false),
        ("2.29", false),
        ("2.53", false),
        ("2.94", false),
        ("2.95", false),
        ("2.95", true),
    ] {
        let mut cfg = nova(&lab, cap);
        cfg.restore_power_state = restore_power;
        let e = NovaEvacuator::new(cfg).expect("evacuator");
        assert_eq!(e.microversion().await.unwrap().to_string(), cap);
        let f3 = Fenced::for_tests("compute3");
        e.isolate(&f3)
            .await
            .unwrap_or_else(|err| panic!("isolate at {cap}: {err}"));
        let s = admin.service("compute3").await;
        assert_eq!(s["status"], "disabled", "at {cap}: {s}");
        assert_eq!(s["disabled_reason"], f3.marker().as_str(), "at {cap}");
        assert_eq!(
            s["forced_down"],
            cap != "2.1",
            "at {cap} (no forced_down before 2.11): {s}"
        );
        restore_until_ok(&e, "compute3", Duration::from_secs(30)).await;
        let s = admin.service("compute3").await;
        assert_eq!(s["status"], "enabled", "restore at {cap}: {s}");
        assert_eq!(s["forced_down"], false, "restore at {cap}: {s}");

        let inst = c2.remove(0);
        let (to, status) = evacuate_and_track(&e, &fenced2, &inst).await;
        assert_ne!(to.as_str(), "compute2");
        let want = if cap == "2.95" && !restore_power {
            "SHUTOFF"
        } else {
            "ACTIVE"
        };
        assert_eq!(
            status, want,
            "evacuated at {cap} (restore_power_state={restore_power})"
        );
    }

    // ---- Repair compute1: it heartbeats again (monitor: Up although still forced down), then restore.
    lab.compute("start", "compute1");
    let repaired = Instant::now();
    let mut fast_up = None;
    loop {
        if fast_up.is_none()
            && health_of(&fast.observe().await.unwrap(), "compute1").health == Health::Up
        {
            fast_up = Some(repaired.elapsed());
        }
        let seen = monitor.observe().await.unwrap();
        let c1 = health_of(&seen, "compute1");
        if c1.health == Health::Up {
            assert!(
                c1.admin.forced_down,
                "still forced down until restored: {c1:?}"
            );
            break;
        }
        assert!(
            repaired.elapsed() < Duration::from_secs(90),
            "compute1 never read up: {c1:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The 5 s monitor reads the forced-down, repaired host up too (it never did before heartbeat_window).
    let fast_deadline = Instant::now() + Duration::from_secs(30);
    while fast_up.is_none() {
        let seen = fast.observe().await.unwrap();
        let c1 = health_of(&seen, "compute1");
        if c1.health == Health::Up {
            assert!(c1.admin.forced_down, "{c1:?}");
            fast_up = Some(repaired.elapsed());
        }
        assert!(
            Instant::now() < fast_deadline,
            "the 5 s monitor never read the repaired compute1 up: {c1:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "repaired compute1 read up by the 5 s monitor after {:.1?}",
        fast_up.unwrap_or_default()
    );
    restore_until_ok(&evac, "compute1", Duration::from_secs(90)).await;
    let svc = admin.service("compute1").await;
    assert_eq!(svc["status"], "enabled", "{svc}");
    assert_eq!(svc["forced_down"], false, "{svc}");
    assert_eq!(svc["state"], "up", "{svc}");
    // A second restore is a no-op.
    evac.restore(&HostId::from("compute1"))
        .await
        .expect("restore again");

    // An operator's disable is left alone by restore.
    admin
        .call(
            reqwest::Method::PUT,
            &format!(
                "/os-services/{}",
                admin.service("compute10").await["id"].as_str().unwrap()
            ),
            Some(json!({"status": "disabled", "disabled_reason": "disk swap, ticket 42"})),
        )
        .await;
    evac.restore(&HostId::from("compute10"))
        .await
        .expect("restore compute10");
    let s = admin.service("compute10").await;
    assert_eq!(s["status"], "disabled");
    let seen = monitor.observe().await.unwrap();
    assert!(health_of(&seen, "compute10").admin.disabled_by_operator());

    // ---- Directory: the demo project's users (bob through a group), never another project's.
    let dir = KeystoneDirectory::new(KeystoneConfig {
        auth: lab.auth(),
        ..Default::default()
    })
    .expect("directory");
    dir.healthcheck().await.expect("directory healthcheck");
    let demo = lab.var("LAB_DEMO_PROJECT_ID").to_owned();
    conformance::directory(&dir, &demo).await;
    assert_eq!(
        dir.project_name(&demo).await.unwrap().as_deref(),
        Some("demo"),
        "the mails name the project as Keystone does"
    );
    let users = dir.recipients(&demo).await.unwrap();
    let by_name: BTreeMap<&str, Option<&str>> = users
        .iter()
        .map(|u| (u.name.as_str(), u.email.as_deref()))
        .collect();
    assert_eq!(
        by_name,
        BTreeMap::from([
            ("alice", Some("alice@example.org")),
            ("bob", Some("bob@example.org")),
            ("carol", None),
        ])
    );

    // ---- Wrong credentials: a permanent auth error that shows no secret.
    let mut bad = nova(&lab, "2.94");
    bad.auth.password = Some(Secret::new("not-the-password-x9"));
    let m = NovaMonitor::new(bad).unwrap();
    let err = m.observe().await.expect_err("wrong password");
    assert!(!err.is_temporary(), "{err}");
    assert!(!err.to_string().contains("not-the-password-x9"), "{err}");
    assert!(!format!("{err:?} {m:?}").contains("not-the-password-x9"));
    assert!(!format!("{evac:?}").contains(lab.var("OS_PASSWORD")));
}
