//! Test harness: a real SMTP server (aiosmtpd writing a Maildir, see `smtp_server.py`), test certificates
//! made with the `openssl` CLI, mails read back and parsed, and reports to send.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use freezer_dr_core::testing::free_port;

use freezer_dr_core::{
    Audience, HostId, Instance, InstanceOutcome, Outcome, Recipient, Report, ReportKind, Timestamp,
};
use freezer_dr_email::{EmailConfig, EmailNotifier};

pub const PASSWORD: &str = "s3cr3t-Pa55word-do-not-log";

/// `FREEZER_DR_SKIP_SMTP=1` skips the tests that need the SMTP server (never set in CI).
pub fn skip() -> bool {
    if std::env::var("FREEZER_DR_SKIP_SMTP").as_deref() == Ok("1") {
        eprintln!("FREEZER_DR_SKIP_SMTP=1: skipping a test that needs a real SMTP server");
        return true;
    }
    false
}

fn python() -> &'static str {
    // Debian's interpreter has python3-aiosmtpd; a pyenv shim first on PATH would not.
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// How the test server listens.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// STARTTLS (or SMTPS) with this certificate.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub require_starttls: bool,
    pub smtps: bool,
    /// AUTH required, with this user and [`PASSWORD`].
    pub user: Option<String>,
}

/// A running aiosmtpd; killed on drop, its log printed if the test panicked.
pub struct SmtpServer {
    pub port: u16,
    pub maildir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl SmtpServer {
    pub fn start(opts: &ServerOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let mut s = Self::on(free_port(), &maildir, opts);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on `port` writing into `maildir` (which must not exist yet, or be a Maildir).
    pub fn on(port: u16, maildir: &Path, opts: &ServerOptions) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let log = maildir.with_extension(format!("{port}.log"));
        let logfile = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--maildir")
            .arg(maildir)
            .env("FREEZER_DR_TEST_SMTP_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(logfile);
        if let Some((cert, key)) = &opts.tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if opts.require_starttls {
            cmd.arg("--require-starttls");
        }
        if opts.smtps {
            cmd.arg("--smtps");
        }
        if let Some(u) = &opts.user {
            cmd.arg("--user").arg(u);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the test SMTP server ({} {}): {e}",
                python(),
                script.display()
            )
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let ready = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        if ready.trim() != "READY" {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the test SMTP server (aiosmtpd, Debian package python3-aiosmtpd) did not start on port \
                 {port}; set FREEZER_DR_SKIP_SMTP=1 to skip. Its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Self {
            port,
            maildir: maildir.to_owned(),
            log,
            child: Some(child),
            _dir: None,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every message the server stored, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        read_maildir(&self.maildir)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- test SMTP server log (port {}) ---\n{}",
                self.port,
                self.log()
            );
        }
        self.stop();
    }
}

/// One stored message, parsed.
#[derive(Clone, Debug)]
pub struct Received {
    /// The envelope recipient (`X-RcptTo`, one per transaction here).
    pub rcpt: Vec<String>,
    pub message_id: String,
    pub subject: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub text: String,
    pub html: String,
    pub headers: String,
}

pub fn read_maildir(maildir: &Path) -> Vec<Received> {
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            for e in rd.flatten() {
                let m = e.metadata().unwrap().modified().unwrap();
                files.push((m, e.path()));
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|(_, p)| {
            let raw = std::fs::read(&p).unwrap();
            let msg = mail_parser::MessageParser::default()
                .parse(&raw)
                .unwrap_or_else(|| panic!("{} is not a mail", p.display()));
            let header = |name: &str| {
                msg.header_raw(name)
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let end = raw
                .windows(4)
                .position(|w| w == b"\r\n\r\n" || w.starts_with(b"\n\n"))
                .unwrap_or(raw.len());
            Received {
                rcpt: header("X-RcptTo")
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect(),
                message_id: header("Message-ID"),
                subject: msg.subject().unwrap_or_default().to_owned(),
                to: header("To"),
                cc: header("Cc"),
                bcc: header("Bcc"),
                text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
                html: msg.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
                headers: String::from_utf8_lossy(&raw[..end]).into_owned(),
            }
        })
        .collect()
}

/// Panics, showing `text`, unless it holds `needle`.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "{needle:?} is not in:\n{text}");
}

/// Panics, showing `text`, unless `needles` appear in it in this order (each at its first place).
#[track_caller]
pub fn assert_in_order(text: &str, needles: &[&str]) {
    let at: Vec<usize> = needles
        .iter()
        .map(|n| {
            text.find(n)
                .unwrap_or_else(|| panic!("{n:?} is not in:\n{text}"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "not in the order {needles:?} (at {at:?}):\n{text}"
    );
}

/// Messages whose envelope recipient is `addr`.
pub fn to_addr<'a>(msgs: &'a [Received], addr: &str) -> Vec<&'a Received> {
    msgs.iter()
        .filter(|m| m.rcpt.iter().any(|r| r == addr))
        .collect()
}

/// A config for the server on `port`, operators to/cc/bcc, plain SMTP.
pub fn config(port: u16) -> EmailConfig {
    let text = format!(
        r#"
server = "smtp://127.0.0.1:{port}"
starttls = "never"
from = "freezer-dr <freezer-dr@cloud.example.org>"
to = ["ops@example.org"]
cc = ["ops-cc@example.org"]
bcc = ["ops-bcc@example.org"]
cloud = "Test Region"
timeout = "10s"
"#
    );
    toml::from_str(&text).unwrap()
}

pub fn notifier(cfg: EmailConfig) -> EmailNotifier {
    EmailNotifier::new(cfg).unwrap()
}

/// A plain SMTP server; `None` when the SMTP tests are skipped.
pub fn plain_server() -> Option<SmtpServer> {
    (!skip()).then(|| SmtpServer::start(&ServerOptions::default()))
}

/// A plain SMTP server and a notifier with [`config`] for it; `None` when the SMTP tests are skipped.
pub fn plain_notifier() -> Option<(SmtpServer, EmailNotifier)> {
    let server = plain_server()?;
    let n = notifier(config(server.port));
    Some((server, n))
}

/// An ACTIVE instance on compute-7.
pub fn instance(id: &str, name: &str, project: &str) -> Instance {
    Instance {
        id: id.into(),
        name: name.into(),
        project: project.into(),
        user: "someone".into(),
        status: "ACTIVE".into(),
        host: HostId::from("compute-7"),
        metadata: Default::default(),
        volume_backed: true,
    }
}

/// A user `name-<id>` of a project.
pub fn user(id: &str, email: Option<&str>) -> Recipient {
    Recipient {
        user_id: id.into(),
        name: format!("name-{id}"),
        email: email.map(str::to_owned),
    }
}

/// A finished recovery of compute-7: project `alpha` (alice, bob, carol without email) has three
/// instances with three outcomes; project `beta` (dave) has a hostile instance name.
pub fn recovered(id: &str) -> Report {
    let mut r = Report::new(
        id,
        Timestamp(1_700_000_000_000),
        ReportKind::Recovered,
        Audience::OperatorsAndUsers,
        Some(HostId::from("compute-7")),
        "compute-7: 2 of 4 instance(s) running elsewhere, 1 failed, 1 left alone",
    );
    r.details = vec![
        "2023-11-14T22:13:20Z  down 3 times in a row: fencing".into(),
        "2023-11-14T22:13:25Z  confirmed off (power status read off through fencer[0]): isolating"
            .into(),
    ];
    r.instances = vec![
        InstanceOutcome {
            instance: instance("a-1111", "alpha-web", "alpha"),
            outcome: Outcome::Evacuated {
                to: HostId::from("compute-9"),
                status: "ACTIVE".into(),
            },
            attempts: 1,
        },
        InstanceOutcome {
            instance: instance("a-2222", "alpha-db", "alpha"),
            outcome: Outcome::Failed {
                reason: "No valid host was found".into(),
            },
            attempts: 3,
        },
        InstanceOutcome {
            instance: instance("a-3333", "alpha-scratch", "alpha"),
            outcome: Outcome::Skipped {
                reason: "opted out (metadata freezer_dr:evacuate=false)".into(),
            },
            attempts: 0,
        },
        InstanceOutcome {
            instance: instance("b-4444", "<script>alert('x')</script>", "beta"),
            outcome: Outcome::Evacuated {
                to: HostId::from("compute-8"),
                status: "ACTIVE".into(),
            },
            attempts: 1,
        },
    ];
    r.recipients.insert(
        "alpha".into(),
        vec![
            user("u-alice", Some("alice@example.org")),
            user("u-bob", Some("bob@example.org")),
            user("u-carol", None),
        ],
    );
    r.recipients.insert(
        "beta".into(),
        vec![user("u-dave", Some("dave@example.org"))],
    );
    // Alpha's name is known; beta's could not be learned (its mails name it by its id).
    r.project_names.insert("alpha".into(), "web-prod".into());
    r
}

/// Collects every log line (all levels) written while it is the default subscriber.
#[derive(Clone, Default)]
pub struct LogCapture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync {
        let w = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish()
    }
}

/// Waits until `f` is true (polling), or panics with `what`.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
