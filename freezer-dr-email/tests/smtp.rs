//! `EmailNotifier`'s SMTP side against a real server (aiosmtpd writing a Maildir): a refused or deferred
//! recipient, a server that is down, STARTTLS and SMTPS with a test CA, a login whose password never
//! shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use freezer_dr_core::testing::TestCerts;
use freezer_dr_core::{ErrorKind, Notifier};
use freezer_dr_email::{EmailConfig, Starttls};

#[tokio::test]
async fn a_refused_recipient_does_not_block_the_others_and_is_reported() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    let mut r = recovered("rej-1");
    let alpha = r.recipients.get_mut("alpha").unwrap();
    alpha.insert(0, user("u-gone", Some("reject-me@example.org")));
    let beta = r.recipients.get_mut("beta").unwrap();
    beta.push(user("u-typo", Some("not an address")));
    n.notify(&r)
        .await
        .expect("a permanent refusal of one recipient is reported, not retried forever");
    let msgs = server.messages();
    assert_eq!(msgs.len(), 6, "everyone else got their mail");
    let digest = to_addr(&msgs, "ops@example.org")[0];
    assert_contains(&digest.text, "reject-me@example.org");
    assert!(
        digest.text.contains("550"),
        "the server's reason is in the digest:\n{}",
        digest.text
    );
    assert_contains(&digest.text, "not an address");
    n.notify(&r).await.unwrap();
    assert_eq!(server.messages().len(), 6);
}

#[tokio::test]
async fn a_deferred_recipient_is_retried_alone() {
    let Some((server, n)) = plain_notifier() else {
        return;
    };
    let mut r = recovered("later-1");
    let alpha = r.recipients.get_mut("alpha").unwrap();
    alpha.insert(0, user("u-busy", Some("later-busy@example.org")));
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

/// A server with the test certificate, over SMTPS or with STARTTLS required, and a config trusting the
/// test CA.
fn tls_server(certs: &TestCerts, smtps: bool) -> (SmtpServer, EmailConfig) {
    let server = SmtpServer::start(&ServerOptions {
        tls: Some((certs.cert.clone(), certs.key.clone())),
        require_starttls: !smtps,
        smtps,
        ..ServerOptions::default()
    });
    let mut cfg = config(server.port);
    if smtps {
        cfg.server = format!("smtps://localhost:{}", server.port);
    } else {
        cfg.server = format!("smtp://localhost:{}", server.port);
        cfg.starttls = Starttls::Required;
    }
    cfg.ca_file = Some(certs.ca.clone());
    (server, cfg)
}

#[tokio::test]
async fn starttls_with_a_test_ca_and_a_wrong_ca_is_refused() {
    if skip() {
        return;
    }
    let certs = TestCerts::generate();
    let (server, cfg) = tls_server(&certs, false);
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
    let Some(server) = plain_server() else {
        return;
    };
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
    let certs = TestCerts::generate();
    let (server, cfg) = tls_server(&certs, true);
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
