//! Faults a real Nova cannot produce on demand, through the scripted server (tests/common/scripted.rs):
//! 500s, 409s, 400 "still in use", hangs, slow answers, tokens revoked or expiring mid-run, pagination, a
//! sloppy host filter, endpoint selection, request ids in errors, and no secret in any error; and
//! Keystone failing to name a project (404, 403, a hang), which the mails survive under the id.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use common::scripted::{Fault, Scripted};
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::testing::{FakeDirectory, World, fake_pipeline, fast_recovery, instance};
use freezer_dr_core::{
    Directory, ErrorKind, Evacuator, Fenced, Health, HostId, Instance, Monitor, Progress,
    Recipient, Report, ReportKind, Runtime, Secret,
};
use freezer_dr_nova::{
    AuthConfig, KeystoneConfig, KeystoneDirectory, NovaConfig, NovaEvacuator, NovaMonitor,
};
use serde_json::json;

fn cfg(s: &Scripted) -> NovaConfig {
    NovaConfig {
        auth: AuthConfig {
            auth_url: Some(s.auth_url()),
            username: Some("admin".into()),
            password: Some(Secret::new("s3cret-pw")),
            project_name: Some("admin".into()),
            region_name: Some("RegionOne".into()),
            ..Default::default()
        },
        timeout: Duration::from_secs(2),
        heartbeat_timeout: Duration::from_secs(30),
        page_size: 2,
        ..Default::default()
    }
}

async fn cloud() -> Scripted {
    let s = Scripted::start().await;
    s.add_hosts(&["c1".into(), "c10".into(), "c2".into()]);
    for i in 0..5 {
        s.add_server(&format!("a{i}"), "c1");
    }
    for i in 0..3 {
        s.add_server(&format!("b{i}"), "c10");
    }
    s
}

/// The next action on server `id` gets Nova's 409 with `message`.
/// The scripted cloud's service record of `host`.
fn service(s: &Scripted, host: &str) -> serde_json::Value {
    s.with(|st| st.services.iter().find(|v| v["host"] == host).cloned())
        .unwrap_or_else(|| panic!("no service on {host}"))
}

fn refuse_action(s: &Scripted, id: &str, message: &str) {
    s.fault(
        Method::POST,
        &format!("/compute/v2.1/servers/{id}/action"),
        Fault::Status(
            409,
            json!({"conflictingRequest": {"code": 409, "message": message}}),
        ),
    );
}

#[tokio::test]
async fn server_errors_are_temporary_and_carry_the_request_id() {
    let s = cloud().await;
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Status(
            503,
            json!({"computeFault": {"code": 503, "message": "database gone"}}),
        ),
    );
    let e = m.observe().await.expect_err("503");
    assert_eq!(e.kind(), ErrorKind::PeerFailure);
    assert!(e.is_temporary());
    let text = e.to_string();
    assert!(text.contains("list nova-compute services"), "{text}");
    assert!(text.contains("database gone"), "{text}");
    assert!(text.contains("request_id: req-scripted-"), "{text}");
    // The observation failure is an error, never "everything is down"; the next one works.
    let seen = m.observe().await.unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|h| h.health == Health::Up));
}

#[tokio::test]
async fn conflicts_and_still_in_use_are_temporary_bad_requests_are_not() {
    let s = cloud().await;
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let f = Fenced::for_tests("c1");
    let i = instance("a0", "c1");
    refuse_action(&s, "a0", "Instance a0 is locked");
    let err = e.evacuate(&f, &i).await.expect_err("409");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_temporary());
    assert!(
        err.to_string().contains("instance: a0") && err.to_string().contains("host: c1"),
        "{err}"
    );
    s.fault(
        Method::POST,
        "/compute/v2.1/servers/a0/action",
        Fault::Status(400, json!({"badRequest": {"code": 400, "message": "Compute service of c1 is still in use."}})),
    );
    let err = e.evacuate(&f, &i).await.expect_err("400 in use");
    assert!(err.is_temporary(), "{err}");
    s.fault(
        Method::POST,
        "/compute/v2.1/servers/a0/action",
        Fault::Status(
            400,
            json!({"badRequest": {"code": 400, "message": "Invalid input for field"}}),
        ),
    );
    let err = e.evacuate(&f, &i).await.expect_err("400");
    assert!(!err.is_temporary(), "{err}");
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Status(
            403,
            json!({"forbidden": {"code": 403, "message": "Policy doesn't allow"}}),
        ),
    );
    let err = e.isolate(&f).await.expect_err("403");
    assert_eq!(err.kind(), ErrorKind::Auth);
    assert!(!err.is_temporary());
    let err = e
        .restore(&HostId::from("c3"))
        .await
        .expect_err("unknown host");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(!err.is_temporary());
    assert!(err.to_string().contains("c3"), "{err}");
    // After all that, the request goes through.
    e.evacuate(&f, &i).await.unwrap();
    assert!(matches!(
        e.progress(&i).await.unwrap(),
        Progress::Done { .. }
    ));
}

#[tokio::test]
async fn a_hang_is_a_timeout_and_a_slow_answer_is_fine() {
    let s = cloud().await;
    let m = NovaMonitor::new(NovaConfig {
        timeout: Duration::from_millis(700),
        ..cfg(&s)
    })
    .unwrap();
    m.observe().await.unwrap();
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Delay(Duration::from_secs(5)),
    );
    let t = Instant::now();
    let e = m.observe().await.expect_err("hang");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_temporary());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the timeout bounds the call"
    );
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Delay(Duration::from_millis(300)),
    );
    m.observe().await.expect("slow but in time");
}

#[tokio::test]
async fn tokens_are_reused_renewed_before_expiry_and_after_a_401() {
    let s = cloud().await;
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    for _ in 0..5 {
        m.observe().await.unwrap();
    }
    assert_eq!(s.with(|st| st.auth_calls), 1, "one token for many calls");

    // Revoked mid-run (Keystone restarted with new keys): one 401, one re-auth, the call succeeds.
    s.with(|st| st.tokens.clear());
    m.observe().await.expect("re-authenticated");
    assert_eq!(s.with(|st| st.auth_calls), 2);

    // Short-lived tokens are replaced shortly before they expire, without a 401.
    s.with(|st| st.token_life = Duration::from_secs(2));
    s.with(|st| st.tokens.clear());
    m.observe().await.unwrap();
    let before = s.with(|st| st.auth_calls);
    tokio::time::sleep(Duration::from_millis(1900)).await;
    let unauthorized = s.calls(&Method::GET, "/compute/v2.1/os-services");
    m.observe().await.unwrap();
    assert_eq!(s.with(|st| st.auth_calls), before + 1);
    assert_eq!(
        s.calls(&Method::GET, "/compute/v2.1/os-services"),
        unauthorized + 1,
        "renewed before use, not after a refusal"
    );

    // A token refused even when fresh: one retry, then a clear permanent error.
    s.with(|st| st.refuse_all_tokens = true);
    let e = m.observe().await.expect_err("401 twice");
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!e.is_temporary());
    assert!(
        e.to_string().contains("fresh Keystone token was refused"),
        "{e}"
    );
}

#[tokio::test]
async fn listing_follows_pages_and_matches_the_host_exactly() {
    let s = cloud().await;
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let listed = e.instances(&Fenced::for_tests("c1")).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        ["a0", "a1", "a2", "a3", "a4"],
        "c10's servers never listed for c1"
    );
    assert!(
        listed
            .iter()
            .all(|i| i.host.as_str() == "c1" && i.volume_backed)
    );
    let pages = s.with(|st| {
        st.log
            .iter()
            .filter(|(_, p)| p.contains("/servers/detail"))
            .map(|(_, p)| p.clone())
            .collect::<Vec<_>>()
    });
    assert!(pages.len() >= 3, "page size 2 over 5+3 matches: {pages:?}");
    assert!(
        pages
            .iter()
            .all(|p| p.contains("all_tenants=1") && p.contains("host=c1&")),
        "{pages:?}"
    );
    assert!(pages[1].contains("marker="), "{pages:?}");
}

#[tokio::test]
async fn the_catalog_endpoint_is_chosen_by_interface_and_region() {
    let s = cloud().await;
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    m.observe().await.unwrap();
    assert!(
        s.with(|st| st.log.iter().all(|(_, p)| p.starts_with("/compute/"))),
        "only the public RegionOne endpoint is used"
    );
}

#[tokio::test]
async fn isolate_and_restore_update_the_service_in_order() {
    let s = cloud().await;
    s.set_down("c2");
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let f = Fenced::for_tests("c2");
    e.isolate(&f).await.unwrap();
    let puts: Vec<String> = s.with(|st| {
        st.log
            .iter()
            .filter(|(m, _)| m == Method::PUT)
            .map(|(_, p)| p.clone())
            .collect()
    });
    assert_eq!(
        puts,
        [
            "/compute/v2.1/os-services/svc-c2",
            "/compute/v2.1/os-services/svc-c2"
        ]
    );
    let svc = service(&s, "c2");
    assert_eq!(svc["forced_down"], true);
    assert_eq!(svc["disabled_reason"], f.marker().as_str());
    // Repeating changes nothing.
    e.isolate(&f).await.unwrap();
    assert_eq!(s.calls(&Method::PUT, "/compute"), 2);
    // Still down: restore unsets forced_down but refuses to enable, temporarily.
    let err = e
        .restore(&HostId::from("c2"))
        .await
        .expect_err("not up yet");
    assert!(err.is_temporary(), "{err}");
    let svc = service(&s, "c2");
    assert_eq!(svc["status"], "disabled", "never enabled while down");
    s.with(|st| {
        for v in &mut st.services {
            if v["host"] == "c2" {
                v["state"] = json!("up");
            }
        }
    });
    e.restore(&HostId::from("c2")).await.unwrap();
    let svc = service(&s, "c2");
    assert_eq!(svc["status"], "enabled");
    assert_eq!(svc["forced_down"], false);
}

#[tokio::test]
async fn an_unreachable_api_is_temporary() {
    let port = freezer_dr_core::testing::free_port();
    let m = NovaMonitor::new(NovaConfig {
        auth: AuthConfig {
            auth_url: Some(format!("http://127.0.0.1:{port}/v3")),
            username: Some("admin".into()),
            password: Some(Secret::new("s3cret-pw")),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let e = m.observe().await.expect_err("nothing listens");
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_temporary());
}

/// A redirect is an error, never followed: the token (a header reqwest does not know is secret) would go
/// wherever the `Location` points, and a 307 or 308 from Keystone would send the password along in the
/// body. The error says where it pointed, so the operator can set that endpoint if it is theirs.
#[tokio::test]
async fn a_redirect_is_an_error_and_no_token_or_password_follows_it() {
    let s = cloud().await;
    let elsewhere = cloud().await;
    let away = |path: &str| elsewhere.auth_url().replace("/identity/v3", path);
    // 1. Keystone redirects the token request (307 keeps the method and the body: the password).
    s.fault(
        Method::POST,
        "/identity/v3/auth/tokens",
        Fault::Redirect(307, away("/identity/v3/auth/tokens")),
    );
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    let e = m.observe().await.expect_err("a redirect is not followed");
    assert!(e.to_string().contains("307"), "{e}");
    assert!(
        format!("{e:#}").contains(&away("/identity/v3/auth/tokens")),
        "{e:#}"
    );
    // 2. Nova redirects a call made with the token.
    m.observe().await.expect("no fault left");
    let calls = s.with(|st| st.log.len());
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Redirect(302, away("/compute/v2.1/os-services")),
    );
    let e = m.observe().await.expect_err("a redirect is not followed");
    assert!(e.to_string().contains("302"), "{e}");
    assert!(
        format!("{e:#}").contains(&away("/compute/v2.1/os-services")),
        "{e:#}"
    );
    assert_eq!(
        s.with(|st| st.log.len()),
        calls + 1,
        "one call, not retried"
    );
    assert_eq!(
        elsewhere.with(|st| (st.auth_calls, st.log.len())),
        (0, 0),
        "nothing reached the redirect's target"
    );
}

#[tokio::test]
async fn no_secret_in_errors_or_debug_output() {
    let s = cloud().await;
    // Wrong password: permanent, and the password we sent is nowhere.
    let mut c = cfg(&s);
    c.auth.password = Some(Secret::new("wrong-pw-123"));
    let m = NovaMonitor::new(c.clone()).unwrap();
    let e = m.observe().await.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Auth);
    assert!(!e.is_temporary());
    for text in [
        e.to_string(),
        format!("{e:?}"),
        format!("{m:?}"),
        format!("{c:?}"),
    ] {
        assert!(!text.contains("wrong-pw-123"), "{text}");
    }
    // A peer that echoes our token in an error body: the token is redacted.
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    m.observe().await.unwrap();
    let token = s.with(|st| st.tokens.keys().next().cloned().unwrap());
    s.fault(
        Method::GET,
        "/compute/v2.1/os-services",
        Fault::Status(
            502,
            json!({"message": format!("bad gateway for X-Auth-Token: {token}")}),
        ),
    );
    let e = m.observe().await.expect_err("502");
    assert!(!e.to_string().contains(&token), "{e}");
    assert!(e.to_string().contains("<redacted>"), "{e}");
    assert!(!format!("{m:?}").contains(&token));
    // Application credentials too.
    let mut c = cfg(&s);
    c.auth.password = None;
    c.auth.username = None;
    c.auth.application_credential_id = Some("ac-1".into());
    c.auth.application_credential_secret = Some(Secret::new("s3cret-ac"));
    let m = NovaMonitor::new(c.clone()).unwrap();
    m.observe().await.expect("application credential auth");
    assert!(!format!("{c:?} {m:?}").contains("s3cret-ac"));
}

#[tokio::test]
async fn a_foreign_task_state_on_the_failed_host_is_busy_not_our_evacuation() {
    let s = cloud().await;
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let f = Fenced::for_tests("c1");
    for (id, task) in [("a0", "powering-off"), ("a1", "spawning")] {
        // Left from before the host died: Nova refuses the evacuation with 409.
        s.patch_server(id, json!({"OS-EXT-STS:task_state": task}));
        let i = instance(id, "c1");
        let err = e.evacuate(&f, &i).await.expect_err("409 while busy");
        assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        assert!(
            err.to_string().contains(&format!("task_state {task}")),
            "the refusal names the task: {err}"
        );
        assert!(
            err.to_string().contains(&format!("instance: {id}")),
            "{err}"
        );
        let p = e.progress(&i).await.unwrap();
        let Progress::Busy { detail } = &p else {
            panic!("{task} on the failed host without an evacuation of ours read {p:?}")
        };
        assert!(detail.contains(task), "{detail}");
    }
    assert_eq!(
        s.with(|st| st.servers["a0"]["OS-EXT-SRV-ATTR:host"].clone()),
        "c1",
        "nothing moved"
    );
}

/// A repeated evacuate is Ok and progress reads InProgress: the evacuation is recognised as ours.
async fn assert_ours(e: &NovaEvacuator, f: &Fenced, id: &str, why: &str) {
    let i = instance(id, "c1");
    e.evacuate(f, &i)
        .await
        .unwrap_or_else(|err| panic!("{why}: {err}"));
    let p = e
        .progress(&i)
        .await
        .unwrap_or_else(|err| panic!("{why}: progress: {err}"));
    assert!(matches!(p, Progress::InProgress { .. }), "{why}: {p:?}");
}

#[tokio::test]
async fn our_evacuation_is_recognised_by_its_task_state_its_migration_or_its_new_host() {
    let s = cloud().await;
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let f = Fenced::for_tests("c1");
    // An evacuation's own task states, on the failed host: a 409 on a repeat is the request taking effect.
    for (id, task) in [
        ("a0", "rebuilding"),
        ("a1", "rebuild_block_device_mapping"),
        ("a2", "rebuild_spawning"),
    ] {
        s.patch_server(id, json!({"OS-EXT-STS:task_state": task}));
        assert_ours(&e, &f, id, task).await;
    }
    // A foreign-looking task, but a running evacuation migration from c1: ours.
    s.patch_server("a3", json!({"OS-EXT-STS:task_state": "powering-off"}));
    s.with(|st| {
        st.migrations.push(json!({
            "id": 7, "instance_uuid": "a3", "status": "migrating", "source_compute": "c1",
            "migration_type": "evacuation", "created_at": "2026-01-01T00:00:00.000000",
        }));
    });
    // Progress follows it as under way; a new request is refused as someone else's (the engine never
    // sends one while one of its own may run: it reads the progress first), so no second evacuation.
    let i3 = instance("a3", "c1");
    assert!(matches!(
        e.progress(&i3).await.unwrap(),
        Progress::InProgress { .. }
    ));
    let before = s.calls(&Method::POST, "/compute/v2.1/servers/a3/action");
    let err = e.evacuate(&f, &i3).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OtherActor, "{err}");
    assert!(err.to_string().contains("migration 7"), "{err}");
    assert_eq!(
        s.calls(&Method::POST, "/compute/v2.1/servers/a3/action"),
        before,
        "nothing was sent"
    );
    // A task on another host: the rebuild there.
    s.patch_server(
        "a4",
        json!({"OS-EXT-STS:task_state": "spawning", "OS-EXT-SRV-ATTR:host": "c2"}),
    );
    assert_ours(&e, &f, "a4", "already on another host").await;
}

#[tokio::test]
async fn progress_never_writes_a_stopped_evacuee_needs_start_and_start_is_safe_to_repeat() {
    let s = cloud().await;
    let mut c = cfg(&s);
    c.restore_power_state = true;
    c.microversion_cap = "2.95".parse().unwrap();
    let e = NovaEvacuator::new(c).unwrap();
    // Evacuated at 2.95+: rebuilt on target-1 but left SHUTOFF, while it ran before.
    s.patch_server(
        "a0",
        json!({"OS-EXT-SRV-ATTR:host": "target-1", "status": "SHUTOFF"}),
    );
    let i = instance("a0", "c1");
    let p = e.progress(&i).await.unwrap();
    assert_eq!(
        p,
        Progress::NeedsStart {
            host: HostId::from("target-1"),
            status: "SHUTOFF".into()
        }
    );
    assert_eq!(
        s.calls(&Method::POST, "/compute/v2.1/servers/"),
        0,
        "progress sends nothing"
    );
    e.start(&i).await.expect("start");
    assert_eq!(s.calls(&Method::POST, "/compute/v2.1/servers/a0/action"), 1);
    assert_eq!(
        e.progress(&i).await.unwrap(),
        Progress::Done {
            host: HostId::from("target-1"),
            status: "ACTIVE".into()
        }
    );
    // Again (a lost reply, a crash): already running is Ok, although Nova answers 409.
    e.start(&i).await.expect("start again");
    assert_eq!(s.calls(&Method::POST, "/compute/v2.1/servers/a0/action"), 2);
    // A 409 for another reason (locked, SHUTOFF still) is an error.
    s.patch_server("a0", json!({"status": "SHUTOFF"}));
    refuse_action(&s, "a0", "Instance a0 is locked");
    let err = e.start(&i).await.expect_err("locked");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

#[tokio::test]
async fn a_down_cell_reads_unknown_and_the_other_hosts_are_still_observed() {
    let s = cloud().await;
    s.set_down("c2");
    // Nova from 2.69 (nova/api/openstack/compute/services.py): a service of a cell it cannot reach is
    // listed with only binary, host and status UNKNOWN.
    s.with(|st| {
        st.services
            .push(json!({"binary": "nova-compute", "host": "cell2-h1", "status": "UNKNOWN"}));
        // And the servers of that cell with only id, status UNKNOWN, tenant_id, created, links.
        st.servers.insert(
            "z9".into(),
            json!({"id": "z9", "status": "UNKNOWN", "tenant_id": "p1",
                   "created": "2026-01-01T00:00:00Z", "links": []}),
        );
    });
    let m = NovaMonitor::new(cfg(&s)).unwrap();
    let seen = m
        .observe()
        .await
        .expect("a down cell does not stop observation");
    let by: std::collections::BTreeMap<&str, &Health> =
        seen.iter().map(|h| (h.host.as_str(), &h.health)).collect();
    assert_eq!(by.len(), 4, "{seen:?}");
    assert!(
        matches!(by["cell2-h1"], Health::Unknown { reason } if reason.contains("UNKNOWN")),
        "{seen:?}"
    );
    assert_eq!(*by["c1"], Health::Up);
    assert!(by["c2"].is_down(), "{seen:?}");
    // The evacuator lists a host of a live cell exactly, the partial records left out.
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let listed = e.instances(&Fenced::for_tests("c1")).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");
    assert!(listed.iter().all(|i| i.id != "z9"));
    // Nothing is written to a service of a down cell: it has no id to write to.
    let err = e
        .isolate(&Fenced::for_tests("cell2-h1"))
        .await
        .expect_err("down cell");
    assert!(err.to_string().contains("cell"), "{err}");
    assert_eq!(s.calls(&Method::PUT, "/compute"), 0);
    // A server read from a down cell is not a progress reading.
    let err = e
        .progress(&instance("z9", "cell2-h1"))
        .await
        .expect_err("unreadable");
    assert!(err.is_temporary(), "{err}");
}

#[tokio::test]
async fn isolation_reads_the_service_first_and_stops_for_another_actor() {
    let s = cloud().await;
    let e = NovaEvacuator::new(cfg(&s)).unwrap();
    let f = Fenced::for_tests("c2");
    let disable = |reason: &str| {
        s.with(|st| {
            for svc in &mut st.services {
                if svc["host"] == "c2" {
                    svc["status"] = json!("disabled");
                    svc["disabled_reason"] = json!(reason);
                    svc["forced_down"] = json!(false);
                }
            }
        })
    };
    let puts = || s.calls(&Method::PUT, "/compute");
    // Another freezer-dr (another journal) isolated it: nothing is written, the error names it.
    disable("freezer-dr:fenced:j0badc0ffee:c2@1:2026-12-01T10:00:00Z");
    let err = e.isolate(&f).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OtherActor, "{err}");
    assert!(
        err.to_string().contains("j0badc0ffee") && err.to_string().contains("[ha]"),
        "{err}"
    );
    assert_eq!(puts(), 0, "read before write: nothing written");
    // Disabled by someone else since it was observed enabled (an operator's manual evacuation).
    disable("evacuating by hand, ticket 9");
    let err = e.isolate(&f).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OtherActor, "{err}");
    assert_eq!(puts(), 0);
    // A marker written by release 0.1 (no journal id) is ours, as it always was: isolation goes on.
    disable("freezer-dr:fenced:c2@1:2026-12-01T10:00:00Z");
    e.isolate(&f).await.unwrap();
    assert!(puts() > 0);
    // Our own marker: a repeat.
    e.isolate(&f).await.unwrap();
    e.instances(&f).await.unwrap();
    // Another daemon overwrote our marker right after we isolated: listing stops before any evacuation.
    disable("freezer-dr:fenced:j0badc0ffee:c2@1:2026-12-01T10:00:01Z");
    let err = e.instances(&f).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OtherActor, "{err}");
}

// ----- Keystone: project names ------------------------------------------------------------------

fn keystone(s: &Scripted) -> KeystoneConfig {
    KeystoneConfig {
        auth: cfg(s).auth,
        timeout: Duration::from_millis(300),
        ..Default::default()
    }
}

/// [`cloud`], with the Keystone projects `project-a` (`web-prod`), `project-c` and `project-d`;
/// `project-b` does not exist.
async fn keystone_cloud() -> Scripted {
    let s = cloud().await;
    for (id, name) in [
        ("project-a", "web-prod"),
        ("project-c", "secret"),
        ("project-d", "slow"),
    ] {
        s.add_project(id, name);
    }
    s
}

fn forbidden() -> Fault {
    Fault::Status(
        403,
        json!({"error": {"code": 403, "title": "Forbidden",
               "message": "You are not authorized to perform the requested action: identity:get_project."}}),
    )
}

#[tokio::test]
async fn a_project_is_named_by_keystone_and_a_missing_forbidden_or_slow_one_is_an_error() {
    let s = keystone_cloud().await;
    let d = KeystoneDirectory::new(keystone(&s)).unwrap();
    assert_eq!(
        d.project_name("project-a").await.unwrap().as_deref(),
        Some("web-prod")
    );
    d.project_name("project-a").await.unwrap();
    assert_eq!(
        s.calls(&Method::GET, "/identity/v3/projects/project-a"),
        1,
        "a name is cached"
    );

    let e = d.project_name("project-b").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(
        !e.is_temporary() && e.to_string().contains("project-b"),
        "{e}"
    );

    s.fault(Method::GET, "/identity/v3/projects/project-c", forbidden());
    let e = d.project_name("project-c").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    assert!(!e.is_temporary(), "{e}");

    s.fault(
        Method::GET,
        "/identity/v3/projects/project-d",
        Fault::Delay(Duration::from_secs(5)),
    );
    let t = Instant::now();
    let e = d.project_name("project-d").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(
        e.is_temporary() && t.elapsed() < Duration::from_secs(3),
        "{e}"
    );
    // Failures are not cached: once Keystone answers, the name is there.
    assert_eq!(
        d.project_name("project-d").await.unwrap().as_deref(),
        Some("slow")
    );
}

/// Users from the testing directory, names from Keystone (the scripted server).
struct KeystoneNames {
    users: FakeDirectory,
    keystone: KeystoneDirectory,
}

#[async_trait::async_trait]
impl Directory for KeystoneNames {
    async fn recipients(&self, project: &str) -> freezer_dr_core::Result<Vec<Recipient>> {
        self.users.recipients(project).await
    }

    async fn project_name(&self, project: &str) -> freezer_dr_core::Result<Option<String>> {
        self.keystone.project_name(project).await
    }
}

#[tokio::test]
async fn a_project_keystone_cannot_name_is_mailed_under_its_id_at_once() {
    // project-a is named; project-b is unknown (404); project-c is forbidden (403); project-d hangs.
    let s = keystone_cloud().await;
    for _ in 0..4 {
        s.fault(Method::GET, "/identity/v3/projects/project-c", forbidden());
        s.fault(
            Method::GET,
            "/identity/v3/projects/project-d",
            Fault::Delay(Duration::from_secs(5)),
        );
    }
    let w = World::c1_failed(3, 3, 1).instance(Instance {
        project: "project-d".into(),
        ..instance("c1-vm-d", "c1")
    });
    let mut pipeline = fake_pipeline(&w, 1);
    pipeline.directory = Some(Arc::new(KeystoneNames {
        users: FakeDirectory::new(&w),
        keystone: KeystoneDirectory::new(keystone(&s)).unwrap(),
    }));
    let rt = Runtime::new(fast_recovery(), pipeline, Arc::new(MemoryJournal::new()));
    let summary = rt.run_once().await.unwrap();
    assert_eq!(summary.recovered, [HostId::from("c1")], "{summary:?}");
    assert_eq!(summary.undelivered, 0, "no mail waits for a name");
    let recovered: Vec<Report> = w
        .delivered()
        .into_iter()
        .map(|d| d.report)
        .filter(|r| r.kind == ReportKind::Recovered)
        .collect();
    assert_eq!(recovered.len(), 1, "delivered once: {recovered:?}");
    let r = &recovered[0];
    assert_eq!(
        r.project_names,
        BTreeMap::from([("project-a".to_owned(), "web-prod".to_owned())]),
        "the others are named by their ids"
    );
    assert_eq!(r.recipients.len(), 4, "every project's users told: {r:?}");
    assert!(r.lookup_failed.is_empty(), "{r:?}");
}
