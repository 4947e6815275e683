//! One error type for every driver and for core, classified once so the runtime can decide about retries.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What went wrong, in categories the runtime and the operators can act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is wrong; the message names the file, the key and the fix.
    Config,
    /// The peer could not be reached (connection refused, DNS, TLS handshake).
    Unreachable,
    /// The call did not finish in time; its effect is unknown.
    Timeout,
    /// Credentials were refused or have expired.
    Auth,
    /// The peer does not know the thing asked for (host, instance, domain).
    NotFound,
    /// The peer refused because of the thing's current state (Nova 409: locked, task in progress).
    Conflict,
    /// The peer is busy or failing (5xx, BMC busy).
    PeerFailure,
    /// The peer answered something we cannot interpret.
    InvalidResponse,
    /// The driver cannot do this (e.g. `power_on` on a fencer without it).
    Unsupported,
    /// The journal failed to read or write.
    Journal,
    /// Another actor (a second freezer-dr with a journal of its own, an operator's manual evacuation,
    /// Masakari) is recovering this host or instance: this freezer-dr must not act on it.
    OtherActor,
    /// This process does not (or no longer) lead in HA mode: another freezer-dr may act, so this one must
    /// not. Returned by a journal that guards leadership (fencing token, local lease deadline).
    NotLeader,
    /// Anything else.
    Unexpected,
}

impl ErrorKind {
    /// The retry class that goes with this kind unless the driver says otherwise.
    pub fn default_retry(self) -> Retry {
        match self {
            Self::Unreachable | Self::Timeout | Self::PeerFailure | Self::Conflict => {
                Retry::Temporary
            }
            _ => Retry::Permanent,
        }
    }

    /// A stable snake_case name, for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PeerFailure => "peer_failure",
            Self::InvalidResponse => "invalid_response",
            Self::Unsupported => "unsupported",
            Self::Journal => "journal",
            Self::NotLeader => "not_leader",
            Self::OtherActor => "other_actor",
            Self::Unexpected => "unexpected",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying again may help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retry {
    /// Trying again later may succeed (network, 5xx, busy BMC).
    Temporary,
    /// Trying again will fail the same way (auth, 4xx, unknown host).
    Permanent,
}

/// The error of every freezer-dr operation.
///
/// Drivers build it once with the right kind (and retry class when the default does not fit); context
/// key/values say what was being done. Messages never contain secrets.
pub struct Error {
    kind: ErrorKind,
    retry: Retry,
    message: String,
    context: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    /// For a configuration error: each problem, typed (the message is their rendering).
    problems: Vec<ConfigError>,
}

/// One problem in a configuration file: where it is, what is wrong and how to fix it.
///
/// Rendered once, as `<file>[:<line>]: [<key>: ]<problem>[; <fix>]`; keys are full paths
/// (`recovery.storm.max_fraction`, `fencer[1].address`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or a description such as `<embedded>`).
    pub file: PathBuf,
    /// The line of the key, when the key is in the file.
    pub line: Option<usize>,
    /// The key's full path; empty for a problem with the file as a whole (not valid TOML).
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it, when known.
    pub fix: Option<String>,
}

impl ConfigError {
    /// A problem with `key` of `file`; `text` is `problem[; fix]` (the first `; ` separates them).
    pub fn new(file: impl Into<PathBuf>, key: impl Into<String>, text: impl fmt::Display) -> Self {
        let text = text.to_string();
        let (problem, fix) = match text.split_once("; ") {
            Some((p, f)) => (p.to_owned(), Some(f.to_owned())),
            None => (text, None),
        };
        Self {
            file: file.into(),
            line: None,
            key: key.into(),
            problem,
            fix,
        }
    }

    /// The same problem, at `line`.
    #[must_use]
    pub fn at(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(n) = self.line {
            write!(f, ":{n}")?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.problem)?;
        if let Some(fix) = &self.fix {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind`, with its default retry class.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            retry: kind.default_retry(),
            message: message.into(),
            context: Vec::new(),
            source: None,
            problems: Vec::new(),
        }
    }

    /// A configuration error made of typed problems, one per line of its message.
    pub fn config_problems(problems: Vec<ConfigError>) -> Self {
        let mut e = Self::config(String::new());
        e.problems = problems;
        e.render();
        e
    }

    /// The typed problems of a configuration error (empty for any other error).
    pub fn problems(&self) -> &[ConfigError] {
        &self.problems
    }

    /// Gives each problem without a line the line `line_of(key)` finds, and renders the message again.
    #[must_use]
    pub fn located(mut self, line_of: impl Fn(&str) -> Option<usize>) -> Self {
        if self.problems.is_empty() {
            return self;
        }
        for p in &mut self.problems {
            if p.line.is_none() {
                p.line = line_of(&p.key);
            }
        }
        self.render();
        self
    }

    fn render(&mut self) {
        let lines: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        self.message = lines.join("\n");
    }

    /// A call that did not answer within `limit`: `<what>: no answer within <limit>` (temporary).
    pub fn no_answer(what: impl fmt::Display, limit: std::time::Duration) -> Self {
        Self::new(
            ErrorKind::Timeout,
            format!(
                "{what}: no answer within {}",
                humantime::format_duration(limit)
            ),
        )
    }

    /// Shorthand for a configuration error.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// Marks the error temporary.
    #[must_use]
    pub fn temporary(mut self) -> Self {
        self.retry = Retry::Temporary;
        self
    }

    /// Marks the error permanent.
    #[must_use]
    pub fn permanent(mut self) -> Self {
        self.retry = Retry::Permanent;
        self
    }

    /// Adds a key/value saying what was being done (`host`, `request_id`, ...).
    #[must_use]
    pub fn with_context(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((key, value.to_string()));
        self
    }

    /// Attaches the underlying error. Its `Display` becomes part of this error's message, so it must not
    /// contain secrets either.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The retry class.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// True if trying again may help.
    pub fn is_temporary(&self) -> bool {
        self.retry == Retry::Temporary
    }

    /// The message without context or source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The context key/values.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.context
    }

    /// Folds the failures of `total` independent checks (one per BMC, say, in a `healthcheck`) into one
    /// result: `Ok` when none failed, else an error of the first failure's kind whose message reads
    /// `<n> of <total> <what>:` followed by each failure on its own line.
    pub fn from_checks(what: &str, total: usize, failures: Vec<Error>) -> Result<()> {
        let Some(kind) = failures.first().map(Error::kind) else {
            return Ok(());
        };
        let lines: Vec<String> = failures.iter().map(Error::to_string).collect();
        Err(Error::new(
            kind,
            format!(
                "{} of {total} {what}:\n{}",
                failures.len(),
                lines.join("\n")
            ),
        ))
    }

    /// Runs `check` on each of `items` in turn (one at a time: the load on a shared management network
    /// stays predictable) and folds the failures like [`Error::from_checks`].
    pub async fn check_each<'a, T: 'a, F: Future<Output = Result<()>>>(
        what: &str,
        items: impl ExactSizeIterator<Item = &'a T>,
        check: impl Fn(&'a T) -> F,
    ) -> Result<()> {
        let total = items.len();
        let mut failures = Vec::new();
        for item in items {
            if let Err(e) = check(item).await {
                failures.push(e);
            }
        }
        Self::from_checks(what, total, failures)
    }

    /// A cloneable, serializable summary, for the engine and the journal.
    pub fn to_failure(&self) -> Failure {
        Failure {
            kind: self.kind,
            retry: self.retry,
            message: self.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// What the engine and the journal keep of an [`Error`]: kind, retry class and the full message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind.
    pub kind: ErrorKind,
    /// The retry class.
    pub retry: Retry,
    /// The full message, with context and source.
    pub message: String,
}

impl Failure {
    /// A failure built directly (tests, engine-internal timeouts).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            retry: kind.default_retry(),
            message: message.into(),
        }
    }
}

impl From<&Error> for Failure {
    fn from(e: &Error) -> Self {
        e.to_failure()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_classify_retries() {
        assert!(Error::new(ErrorKind::Unreachable, "x").is_temporary());
        assert!(Error::new(ErrorKind::PeerFailure, "x").is_temporary());
        assert!(!Error::new(ErrorKind::Auth, "x").is_temporary());
        assert!(!Error::new(ErrorKind::NotFound, "x").is_temporary());
        assert!(Error::new(ErrorKind::Auth, "x").temporary().is_temporary());
        assert!(
            !Error::new(ErrorKind::Timeout, "x")
                .permanent()
                .is_temporary()
        );
    }

    #[test]
    fn from_checks_lists_every_failure_with_the_first_kind() {
        assert!(Error::from_checks("BMCs failed", 3, Vec::new()).is_ok());
        let e = Error::from_checks(
            "BMCs failed",
            3,
            vec![
                Error::new(ErrorKind::Auth, "a: refused"),
                Error::new(ErrorKind::Timeout, "b: no answer"),
            ],
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_temporary());
        assert_eq!(
            e.to_string(),
            "2 of 3 BMCs failed:\na: refused\nb: no answer"
        );
    }

    #[tokio::test]
    async fn check_each_checks_every_item_and_folds_the_failures() {
        let e = Error::check_each("hosts failed", ["a", "b", "c"].iter(), |h| async move {
            match *h {
                "b" => Err(Error::new(ErrorKind::Timeout, "b: no answer")),
                _ => Ok(()),
            }
        })
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "1 of 3 hosts failed:\nb: no answer");
    }

    #[test]
    fn display_carries_context_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::new(ErrorKind::Unreachable, "power off failed")
            .with_context("host", "compute-1")
            .with_context("bmc", "10.0.0.1:623")
            .with_source(io);
        assert_eq!(
            e.to_string(),
            "power off failed (host: compute-1, bmc: 10.0.0.1:623): refused"
        );
        let f = e.to_failure();
        assert_eq!(f.kind, ErrorKind::Unreachable);
        assert_eq!(f.retry, Retry::Temporary);
        assert!(f.to_string().contains("(unreachable)"));
    }
}
