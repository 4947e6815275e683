//! What `EmailNotifier` sends to whom, read back from a real SMTP server (aiosmtpd writing a Maildir):
//! each project's users their own mail, the operators one digest or alert, at the phases configured,
//! within the rate limit, through templates that can be replaced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use freezer_dr_core::{Audience, HostId, Notifier, Report, ReportKind, Timestamp};
use freezer_dr_email::Phase;

#[tokio::test]
async fn users_get_their_own_projects_mail_and_operators_the_digest() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    n.notify(&recovered("r1")).await.unwrap();
    let msgs = server.messages();
    assert_eq!(
        msgs.len(),
        6,
        "alice, bob, dave and three operators: {:#?}",
        msgs.iter().map(|m| &m.rcpt).collect::<Vec<_>>()
    );
    for m in &msgs {
        assert_eq!(
            m.rcpt.len(),
            1,
            "one recipient per transaction: {:?}",
            m.rcpt
        );
    }

    // Project alpha's users: their instances, nothing of beta, each addressed alone.
    for addr in ["alice@example.org", "bob@example.org"] {
        let got = to_addr(&msgs, addr);
        assert_eq!(got.len(), 1, "{addr} gets exactly one mail");
        let m = got[0];
        assert!(m.to.contains(addr), "To: {}", m.to);
        assert!(
            !m.to.contains("bob") || addr.starts_with("bob"),
            "users never see each other: {}",
            m.to
        );
        for needle in [
            "alpha-web",
            "a-1111",
            "compute-7",
            "compute-9",
            "ACTIVE",
            "alpha-db",
            "No valid host was found",
            "alpha-scratch",
            "opted out",
        ] {
            assert!(
                m.text.contains(needle),
                "{addr}: text lacks {needle:?}:\n{}",
                m.text
            );
            assert!(
                m.html.contains(needle),
                "{addr}: html lacks {needle:?}:\n{}",
                m.html
            );
        }
        for other in ["b-4444", "beta", "script", "compute-8"] {
            assert!(
                !m.text.contains(other) && !m.html.contains(other),
                "{addr}: mail mentions {other:?} of another project"
            );
        }
        assert!(m.subject.starts_with("[freezer-dr]"), "{}", m.subject);
        // The project by the name people know it by, its id still there for the operators.
        assert_contains(&m.subject, "Project web-prod: 1 of 3 instance(s) recovered");
        assert!(!m.subject.contains("alpha"), "{}", m.subject);
        assert_contains(&m.text, "your project web-prod (alpha)");
        assert_contains(&m.text, "Instances of project web-prod (alpha):");
        assert_contains(&m.html, "your project <b>web-prod (alpha)</b>");
        // Sorted by name: db, scratch, web (the report lists web first).
        for body in [&m.text, &m.html] {
            assert_in_order(body, &["alpha-db", "alpha-scratch", "alpha-web"]);
        }
        assert_contains(
            &m.message_id,
            "freezer-dr.r1.project.alpha@cloud.example.org",
        );
        assert_contains(&m.headers, "Auto-Submitted: auto-generated");
    }
    assert_eq!(
        to_addr(&msgs, "alice@example.org")[0].message_id,
        to_addr(&msgs, "bob@example.org")[0].message_id,
        "one mail per project: the same Message-ID for each of its users"
    );

    // Project beta: the hostile name stays text.
    let dave = to_addr(&msgs, "dave@example.org");
    assert_eq!(dave.len(), 1);
    let d = dave[0];
    // Its name could not be learned: named by its id.
    assert_contains(&d.subject, "Project beta: 1 of 1 instance(s) recovered");
    assert_contains(&d.text, "Instances of project beta:");
    assert!(
        d.html.contains("&lt;script&gt;"),
        "escaped in HTML:\n{}",
        d.html
    );
    assert!(
        !d.html.contains("<script>"),
        "a <script> tag reached the HTML:\n{}",
        d.html
    );
    assert!(
        d.text.contains("<script>alert('x')</script>"),
        "plain text keeps the name as is"
    );
    for other in ["alpha", "a-1111", "a-2222"] {
        assert!(
            !d.text.contains(other) && !d.html.contains(other),
            "dave's mail mentions {other:?}"
        );
    }

    // Operators: To, Cc and Bcc each receive the same digest; Bcc is not in the headers.
    let ops: Vec<_> = [
        "ops@example.org",
        "ops-cc@example.org",
        "ops-bcc@example.org",
    ]
    .iter()
    .map(|a| {
        let got = to_addr(&msgs, a);
        assert_eq!(got.len(), 1, "{a} gets exactly one digest");
        got[0]
    })
    .collect();
    let ids: BTreeSet<_> = ops.iter().map(|m| m.message_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one digest: {ids:?}");
    let digest = ops[0];
    assert_contains(&digest.message_id, "freezer-dr.r1.operators@");
    assert_contains(&digest.to, "ops@example.org");
    assert_contains(&digest.cc, "ops-cc@example.org");
    for m in &ops {
        assert!(
            m.bcc.is_empty() && !m.headers.contains("\nBcc:"),
            "no Bcc header:\n{}",
            m.headers
        );
        assert!(
            !m.to.contains("ops-bcc") && !m.cc.contains("ops-bcc"),
            "Bcc must not show:\n{}",
            m.headers
        );
    }
    for needle in [
        "compute-7",
        "confirmed off (power status read off through fencer[0])",
        "alpha-web",
        "alpha-db",
        "No valid host was found",
        "b-4444",
        "name-u-carol (u-carol)",
        "alice@example.org",
        "dave@example.org",
        "Test Region",
    ] {
        assert!(
            digest.text.contains(needle),
            "digest text lacks {needle:?}:\n{}",
            digest.text
        );
    }
    assert_contains(&digest.text, "without an email address");
    assert_contains(&digest.text, "Project web-prod (alpha):");
    assert_contains(&digest.html, "<h4>Project web-prod (alpha)</h4>");
    // Projects by name (beta, web-prod), instances by name within each.
    let sorted = ["alpha-db", "alpha-scratch", "alpha-web"];
    assert_in_order(
        &digest.text,
        &[&["Project beta:", "Project web-prod (alpha):"], &sorted[..]].concat(),
    );
    assert_in_order(
        &digest.html,
        &[
            &["<h4>Project beta</h4>", "<h4>Project web-prod (alpha)</h4>"],
            &sorted[..],
        ]
        .concat(),
    );
    assert!(
        digest.html.contains("&lt;script&gt;") && !digest.html.contains("<script>"),
        "{}",
        digest.html
    );

    // A retry of the same report sends nothing again.
    n.notify(&recovered("r1")).await.unwrap();
    assert_eq!(
        server.messages().len(),
        6,
        "a second notify of a delivered report sent mails"
    );
}

#[tokio::test]
async fn conformance_suite_passes_and_each_mail_arrives_once() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    freezer_dr_core::testing::conformance::notifier(&n, &recovered("conf-1")).await;
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "the suite's retry must not double any mail");
}

#[tokio::test]
async fn alerts_go_to_the_operators_only() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    let mut r = Report::new(
        "alert-1",
        Timestamp(1_700_000_000_000),
        ReportKind::NeedsOperator,
        Audience::Operators,
        Some(HostId::from("compute-3")),
        "compute-3 needs an operator: power status never read off",
    );
    r.details
        .push("2023-11-14T22:13:20Z  power off accepted".into());
    n.notify(&r).await.unwrap();
    let msgs = server.messages();
    let rcpts: BTreeSet<_> = msgs.iter().flat_map(|m| m.rcpt.clone()).collect();
    assert_eq!(
        rcpts,
        BTreeSet::from([
            "ops-bcc@example.org".into(),
            "ops-cc@example.org".into(),
            "ops@example.org".into()
        ])
    );
    assert_contains(&msgs[0].subject, "ALERT needs_operator");
    assert_contains(&msgs[0].text, "power status never read off");
}

#[tokio::test]
async fn a_host_back_in_service_is_a_notice_not_an_alert() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    let r = Report::new(
        "restored-1",
        Timestamp(1_700_000_000_000),
        ReportKind::Restored,
        Audience::Operators,
        Some(HostId::from("compute-3")),
        "compute-3 was repaired and returned to service",
    );
    n.notify(&r).await.unwrap();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 3, "to the three operators, like an alert");
    for m in &msgs {
        assert_eq!(
            m.subject,
            "[freezer-dr] notice restored: compute-3 was repaired and returned to service"
        );
        assert!(
            !m.text.contains("ALERT") && !m.html.contains("ALERT"),
            "{}",
            m.text
        );
        assert!(m.text.starts_with("Notice (restored)"), "{}", m.text);
    }
}

#[tokio::test]
async fn phases_decide_who_is_written_to() {
    let Some(server) = plain_server() else {
        return;
    };
    // Started phase on for users, finished off for operators.
    let mut cfg = config(server.port);
    cfg.user_phases = vec![Phase::Started, Phase::Finished];
    cfg.operator_phases = vec![Phase::Started];
    let n = notifier(cfg);
    let mut started = recovered("s1");
    started.kind = ReportKind::HostFenced;
    started.summary = "compute-7 failed and was powered off; evacuating its instances".into();
    n.notify(&started).await.unwrap();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "started: users and operators");
    let alice = to_addr(&msgs, "alice@example.org")[0];
    assert_contains(&alice.text, "being started again");
    n.notify(&recovered("s2")).await.unwrap();
    let after = server.messages();
    assert_eq!(
        after.len(),
        6 + 3,
        "finished: users only (operators turned it off)"
    );
    assert!(to_addr(&after, "ops@example.org").len() == 1);

    // Default phases: nobody hears of a start but the operators.
    let server2 = SmtpServer::start(&ServerOptions::default());
    let n2 = notifier(config(server2.port));
    n2.notify(&started).await.unwrap();
    let rcpts: BTreeSet<_> = server2
        .messages()
        .iter()
        .flat_map(|m| m.rcpt.clone())
        .collect();
    assert_eq!(rcpts.len(), 3, "{rcpts:?}");
    assert!(rcpts.iter().all(|r| r.starts_with("ops")), "{rcpts:?}");
}

#[tokio::test]
async fn the_rate_limit_defers_the_rest_to_the_next_attempt() {
    let Some(server) = plain_server() else {
        return;
    };
    let mut cfg = config(server.port);
    cfg.max_mails_per_minute = 2;
    let n = notifier(cfg);
    let e = n.notify(&recovered("rate-1")).await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    assert!(e.to_string().contains("rate limit"), "{e}");
    let msgs = server.messages();
    let users = msgs
        .iter()
        .filter(|m| !m.rcpt[0].starts_with("ops"))
        .count();
    assert_eq!(users, 2, "exactly the budget of user mails was sent");
    assert_eq!(
        msgs.len(),
        2 + 3,
        "the operators' copies are not held back by the limit"
    );
    let digest = to_addr(&msgs, "ops@example.org")[0];
    assert!(
        digest.text.contains("Not delivered yet") && digest.text.contains("dave@example.org"),
        "the digest says who is still waiting:\n{}",
        digest.text
    );
    let e = n.notify(&recovered("rate-1")).await.unwrap_err();
    assert!(e.to_string().contains("rate limit"), "{e}");
    assert_eq!(
        server.messages().len(),
        5,
        "nothing is sent again, nothing beyond the budget"
    );
}

#[tokio::test]
async fn templates_can_be_overridden_and_a_broken_one_fails_at_build() {
    let Some(server) = plain_server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("user.subject.txt"),
        "Custom: {{ project.id }} on {{ host }}",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("user.html"),
        "<p>{% for i in instances %}[{{ i.name }}]{% endfor %}</p>",
    )
    .unwrap();
    let mut cfg = config(server.port);
    cfg.templates = Some(dir.path().to_owned());
    notifier(cfg.clone())
        .notify(&recovered("tpl-1"))
        .await
        .unwrap();
    let msgs = server.messages();
    let dave = to_addr(&msgs, "dave@example.org")[0];
    assert_eq!(dave.subject, "[freezer-dr] Custom: beta on compute-7");
    assert_contains(
        &dave.html,
        "[&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt;]",
    );
    assert!(
        dave.text.contains("b-4444"),
        "the built-in text template is kept: {}",
        dave.text
    );

    std::fs::write(dir.path().join("operator.txt"), "{{ no_such_variable }}").unwrap();
    let e = freezer_dr_email::EmailNotifier::new(cfg).unwrap_err();
    assert!(e.to_string().contains("operator.txt"), "{e}");
    tokio::time::sleep(Duration::from_millis(1)).await;
}
