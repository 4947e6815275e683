//! `EmailNotifier` against a real SMTP server (aiosmtpd writing a Maildir), mails read back and parsed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use freezer_dr_core::{Audience, ErrorKind, HostId, Notifier, Report, ReportKind, Timestamp};
use freezer_dr_email::{EmailConfig, Phase, Starttls};

#[tokio::test]
async fn users_get_their_own_projects_mail_and_operators_the_digest() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let n = notifier(config(server.port));
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
        assert!(
            m.message_id
                .contains("freezer-dr.r1.project.alpha@cloud.example.org"),
            "{}",
            m.message_id
        );
        assert!(
            m.headers.contains("Auto-Submitted: auto-generated"),
            "{}",
            m.headers
        );
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
    assert!(
        digest.message_id.contains("freezer-dr.r1.operators@"),
        "{}",
        digest.message_id
    );
    assert!(digest.to.contains("ops@example.org"), "{}", digest.to);
    assert!(digest.cc.contains("ops-cc@example.org"), "{}", digest.cc);
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
    assert!(
        digest.text.contains("without an email address"),
        "{}",
        digest.text
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
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let n = notifier(config(server.port));
    freezer_dr_core::testing::conformance::notifier(&n, &recovered("conf-1")).await;
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "the suite's retry must not double any mail");
}

#[tokio::test]
async fn alerts_go_to_the_operators_only() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let n = notifier(config(server.port));
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
    assert!(
        msgs[0].subject.contains("ALERT needs_operator"),
        "{}",
        msgs[0].subject
    );
    assert!(
        msgs[0].text.contains("power status never read off"),
        "{}",
        msgs[0].text
    );
}

#[tokio::test]
async fn phases_decide_who_is_written_to() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
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
    assert!(alice.text.contains("being started again"), "{}", alice.text);
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
async fn a_refused_recipient_does_not_block_the_others_and_is_reported() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let n = notifier(config(server.port));
    let mut r = recovered("rej-1");
    r.recipients.get_mut("alpha").unwrap().insert(
        0,
        freezer_dr_core::Recipient {
            user_id: "u-gone".into(),
            name: "gone".into(),
            email: Some("reject-me@example.org".into()),
        },
    );
    r.recipients
        .get_mut("beta")
        .unwrap()
        .push(freezer_dr_core::Recipient {
            user_id: "u-typo".into(),
            name: "typo".into(),
            email: Some("not an address".into()),
        });
    n.notify(&r)
        .await
        .expect("a permanent refusal of one recipient is reported, not retried forever");
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "everyone else got their mail");
    let digest = to_addr(&msgs, "ops@example.org")[0];
    assert!(
        digest.text.contains("reject-me@example.org"),
        "{}",
        digest.text
    );
    assert!(
        digest.text.contains("550"),
        "the server's reason is in the digest:\n{}",
        digest.text
    );
    assert!(digest.text.contains("not an address"), "{}", digest.text);
    n.notify(&r).await.unwrap();
    assert_eq!(server.messages().len(), 6);
}

#[tokio::test]
async fn a_deferred_recipient_is_retried_alone() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let n = notifier(config(server.port));
    let mut r = recovered("later-1");
    r.recipients.get_mut("alpha").unwrap().insert(
        0,
        freezer_dr_core::Recipient {
            user_id: "u-busy".into(),
            name: "busy".into(),
            email: Some("later-busy@example.org".into()),
        },
    );
    let e = n.notify(&r).await.unwrap_err();
    assert!(e.is_temporary(), "a 4xx is temporary: {e}");
    assert!(e.to_string().contains("later-busy@example.org"), "{e}");
    assert_eq!(server.messages().len(), 6, "the others were sent");
    n.notify(&r).await.unwrap();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 7, "only the deferred copy was sent again");
    assert_eq!(to_addr(&msgs, "later-busy@example.org").len(), 1);
    assert_eq!(to_addr(&msgs, "alice@example.org").len(), 1);
}

#[tokio::test]
async fn server_down_then_up_delivers_each_mail_once() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let n = notifier(config(port));
    let e = n.notify(&recovered("down-1")).await.unwrap_err();
    assert!(
        e.is_temporary(),
        "a server that is down is a temporary error: {e}"
    );
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{port}")),
        "the error names the server: {e}"
    );
    let e = n.healthcheck().await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    let server = SmtpServer::on(port, &dir.path().join("maildir"), &ServerOptions::default());
    n.healthcheck().await.unwrap();
    n.notify(&recovered("down-1")).await.unwrap();
    n.notify(&recovered("down-1")).await.unwrap();
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "each mail exactly once");
}

#[tokio::test]
async fn starttls_with_a_test_ca_and_a_wrong_ca_is_refused() {
    if skip() {
        return;
    }
    let certs = Certs::generate();
    let server = SmtpServer::start(&ServerOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        require_starttls: true,
        ..ServerOptions::default()
    });
    let mut cfg = config(server.port);
    cfg.server = format!("smtp://localhost:{}", server.port);
    cfg.starttls = Starttls::Required;
    cfg.ca_file = Some(certs.ca.clone());
    notifier(cfg.clone())
        .notify(&recovered("tls-1"))
        .await
        .unwrap();
    assert_eq!(server.messages().len(), 6);

    let mut wrong = cfg.clone();
    wrong.ca_file = Some(certs.other_ca.clone());
    let e = notifier(wrong)
        .notify(&recovered("tls-2"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    let mut none = cfg;
    none.ca_file = None;
    let e = notifier(none)
        .notify(&recovered("tls-3"))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("TLS"),
        "a private CA is not trusted by default: {e}"
    );
    assert_eq!(
        server.messages().len(),
        6,
        "nothing was sent over an untrusted connection"
    );
}

#[tokio::test]
async fn starttls_required_refuses_a_server_without_it() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
    let mut cfg = config(server.port);
    cfg.starttls = Starttls::Required;
    let e = notifier(cfg.clone())
        .notify(&recovered("plain-1"))
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("starttls"), "{e}");
    assert!(!e.is_temporary(), "{e}");
    assert!(
        server.messages().is_empty(),
        "no mail in plain text when STARTTLS is required"
    );
    cfg.starttls = Starttls::Opportunistic;
    notifier(cfg).notify(&recovered("plain-2")).await.unwrap();
    assert_eq!(server.messages().len(), 6);
}

#[tokio::test]
async fn smtps_with_a_test_ca() {
    if skip() {
        return;
    }
    let certs = Certs::generate();
    let server = SmtpServer::start(&ServerOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        smtps: true,
        ..ServerOptions::default()
    });
    let mut cfg = config(server.port);
    cfg.server = format!("smtps://localhost:{}", server.port);
    cfg.ca_file = Some(certs.ca.clone());
    notifier(cfg).notify(&recovered("smtps-1")).await.unwrap();
    assert_eq!(server.messages().len(), 6);
}

#[tokio::test]
async fn the_smtp_password_is_in_no_log_line_error_or_debug_output() {
    if skip() {
        return;
    }
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let server = SmtpServer::start(&ServerOptions {
        user: Some("freezer".into()),
        ..ServerOptions::default()
    });
    let with_password = |pw: &str| -> EmailConfig {
        let mut cfg = config(server.port);
        cfg.username = Some("freezer".into());
        cfg.password = Some(freezer_dr_core::Secret::new(pw));
        cfg
    };
    let wrong = format!("{PASSWORD}-wrong");
    let bad = notifier(with_password(&wrong));
    let e = bad.notify(&recovered("auth-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");
    let good = notifier(with_password(PASSWORD));
    good.notify(&recovered("auth-2")).await.unwrap();
    assert_eq!(server.messages().len(), 6, "the right password works");
    good.healthcheck().await.unwrap();
    let e = bad.healthcheck().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Auth, "{e}");

    let b64 = |s: &str| {
        // PLAIN sends base64("\0user\0password"); LOGIN sends base64("password").
        use std::fmt::Write;
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = s.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(table[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        let _ = write!(out, "");
        out
    };
    let forbidden = [
        PASSWORD.to_owned(),
        wrong.clone(),
        b64(PASSWORD),
        b64(&wrong),
        b64(&format!("\0freezer\0{PASSWORD}")),
        b64(&format!("\0freezer\0{wrong}")),
    ];
    let texts = [
        ("error", e.to_string()),
        ("error debug", format!("{e:?}")),
        (
            "healthcheck error",
            format!("{}", bad.healthcheck().await.unwrap_err()),
        ),
        ("notifier debug", format!("{good:?} {bad:?}")),
        ("config debug", format!("{:?}", with_password(PASSWORD))),
        ("logs", logs.text()),
    ];
    assert!(
        logs.text().contains("mail accepted"),
        "the capture works:\n{}",
        logs.text()
    );
    for (what, text) in &texts {
        for f in &forbidden {
            assert!(
                !text.contains(f.as_str()),
                "the SMTP password leaked into the {what}:\n{text}"
            );
        }
    }
}

#[tokio::test]
async fn the_rate_limit_defers_the_rest_to_the_next_attempt() {
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
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
    if skip() {
        return;
    }
    let server = SmtpServer::start(&ServerOptions::default());
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
    assert!(
        dave.html
            .contains("[&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt;]"),
        "{}",
        dave.html
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
