//! `[[notifier]] type = "email"`: the server, the operators, when to write, how fast.

use std::path::PathBuf;
use std::time::Duration;

use freezer_dr_core::Secret;
use serde::Deserialize;

/// How a `smtp://` connection is protected (`smtps://` is always TLS from the first byte).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Starttls {
    /// STARTTLS or no mail: a server that does not offer it is an error (the default).
    #[default]
    Required,
    /// STARTTLS when the server offers it, plain text otherwise.
    Opportunistic,
    /// Plain text (a relay on the same host or a trusted network only).
    Never,
}

/// A moment of a recovery that can be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The host was confirmed off and its instances are being evacuated (`host_fenced`).
    Started,
    /// Every evacuation ended; each instance's outcome is known (`recovered`).
    Finished,
}

fn default_user_phases() -> Vec<Phase> {
    vec![Phase::Finished]
}

fn default_operator_phases() -> Vec<Phase> {
    vec![Phase::Started, Phase::Finished]
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_rate() -> u32 {
    120
}

fn default_subject_prefix() -> String {
    "[freezer-dr]".into()
}

/// The `email` notifier's section.
///
/// ```toml
/// [[notifier]]
/// type = "email"
/// server = "smtp://mail.example.org:587"
/// starttls = "required"
/// username = "freezer-dr"
/// password = { file = "/etc/freezer-dr/smtp.pass" }
/// from = "freezer-dr <freezer-dr@example.org>"
/// to = ["cloud-ops@example.org"]
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host[:port]` (port 587 by default, see `starttls`) or `smtps://host[:port]` (TLS from the
    /// first byte, port 465 by default).
    pub server: String,
    /// How a `smtp://` connection is protected (`required`, `opportunistic`, `never`).
    #[serde(default)]
    pub starttls: Starttls,
    /// PEM file of CA certificates trusted in addition to the system's (a private mail CA).
    pub ca_file: Option<PathBuf>,
    /// Login for SMTP AUTH (PLAIN or LOGIN); needs `password`.
    pub username: Option<String>,
    /// Password for SMTP AUTH: a string, `{ file = "..." }` or `{ env = "..." }`.
    pub password: Option<Secret>,
    /// The sender, `name <address>` or `address`; its domain also names the Message-IDs.
    pub from: String,
    /// Operators who receive every digest and alert (at least one).
    pub to: Vec<String>,
    /// Operators in copy (visible to the others).
    #[serde(default)]
    pub cc: Vec<String>,
    /// Operators in blind copy (they receive it; the others do not see them).
    #[serde(default)]
    pub bcc: Vec<String>,
    /// When the users of an affected project are written to (`started`, `finished`).
    ///
    /// A `started` mail (sent once the failed host's instances are listed) says which of the project's
    /// instances are being moved and which stay on the failed host, and why.
    #[serde(default = "default_user_phases")]
    pub user_phases: Vec<Phase>,
    /// When the operators get a digest (`started`, `finished`); alerts (a host needs an operator, storm,
    /// observation failing, ...) always go to them at once.
    #[serde(default = "default_operator_phases")]
    pub operator_phases: Vec<Phase>,
    /// A name for the cloud in subjects and bodies, e.g. `"Region One"`.
    pub cloud: Option<String>,
    /// Put in front of every subject.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// A directory whose `user.subject.txt`, `user.txt`, `user.html`, `operator.subject.txt`,
    /// `operator.txt` and `operator.html` replace the built-in templates (minijinja syntax; every file is
    /// optional).
    pub templates: Option<PathBuf>,
    /// Time allowed for each SMTP command (connect, TLS, each reply).
    #[serde(
        default = "default_timeout",
        with = "freezer_dr_core::config::duration"
    )]
    pub timeout: Duration,
    /// Mails (one per recipient) sent per minute at most, to protect the mail server during a large
    /// incident; the rest waits in the outbox for the next delivery attempt.
    #[serde(default = "default_rate")]
    pub max_mails_per_minute: u32,
}
