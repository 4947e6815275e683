//! The SMTP side: the lettre transport (server URL, TLS, login, timeouts), one mail's bytes, sending one
//! copy to one recipient, and what the server's answer means as core's `ErrorKind` and `Retry`.

use std::sync::OnceLock;

use freezer_dr_core::{Error, ErrorKind, Report, Result, Retry};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};

use crate::config::{EmailConfig, Starttls};
use crate::plan::Mail;

/// SMTP reply codes that mean the login was refused: the whole server is unusable, not one recipient.
const AUTH_CODES: [&str; 4] = ["530", "534", "535", "538"];

/// `smtp://host[:port]` or `smtps://host[:port]`, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Server {
    /// TLS from the first byte (`smtps://`).
    wrapper: bool,
    host: String,
    port: u16,
}

impl Server {
    pub fn parse(url: &str) -> Result<Self> {
        if url.contains('@') {
            // Never echo it: the part before '@' may be a password.
            return Err(Error::config(
                "server: must not hold credentials (use username and password); expected \
                 smtp://host[:port] or smtps://host[:port]",
            ));
        }
        let bad = |why: &str| {
            Error::config(format!(
                "server: {url:?} {why} (expected smtp://host[:port] or smtps://host[:port])"
            ))
        };
        let (wrapper, rest) = if let Some(r) = url.strip_prefix("smtps://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("smtp://") {
            (false, r)
        } else {
            return Err(bad("has an unknown scheme"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) || rest.is_empty() {
            return Err(bad("is not a bare host and port"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            (h.to_owned(), p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("has an invalid port"))?,
            None if wrapper => 465,
            None => 587,
        };
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        Ok(Self {
            wrapper,
            host,
            port,
        })
    }
}

/// The outcome of sending one copy.
pub(crate) enum Sent {
    Accepted,
    /// 5xx for this recipient: final.
    Rejected(String),
    /// 4xx for this recipient: try again at the next attempt.
    Deferred(Error),
    /// The server or the connection failed: stop this attempt.
    Failed(Error),
}

/// One mail server, through a pooled transport (lettre, async, rustls with ring).
pub(crate) struct Smtp {
    /// `host:port`, for errors and logs.
    server: String,
    from: Mailbox,
    /// The domain of `from`, which names the Message-IDs.
    domain: String,
    /// Holds the credentials: never printed.
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
}

impl Smtp {
    /// Pure: checks the login and the timeout, reads the CA file, and connects to nothing.
    pub fn new(cfg: &EmailConfig, server: Server, from: Mailbox) -> Result<Self> {
        if cfg.username.is_some() != cfg.password.is_some() {
            return Err(Error::config(
                "username and password: set both for SMTP AUTH, or neither",
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(Error::config("timeout: must be more than zero"));
        }
        let Server {
            wrapper,
            host,
            port,
        } = server;
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!("ca_file: cannot read {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                Error::config(format!(
                    "ca_file: {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| Error::config(format!("TLS setup for {host} failed: {e}")))?;
        let tls = if wrapper {
            Tls::Wrapper(tls)
        } else {
            match cfg.starttls {
                Starttls::Required => Tls::Required(tls),
                Starttls::Opportunistic => Tls::Opportunistic(tls),
                Starttls::Never => Tls::None,
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(cfg.timeout))
            .pool_config(PoolConfig::new().max_size(4));
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(Self {
            server: format!("{host}:{port}"),
            domain: from.email.domain().to_owned(),
            from,
            builder,
            transport: OnceLock::new(),
        })
    }

    /// `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The pooled transport, created on first use (its pool needs a running tokio runtime).
    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }

    /// `<freezer-dr.<report id>.<role>@<domain of from>>`: the same for every copy and every retry.
    fn message_id(&self, report: &Report, role: &str) -> String {
        format!(
            "<freezer-dr.{}.{}@{}>",
            id_part(&report.id),
            id_part(role),
            self.domain
        )
    }

    /// The bytes of one copy of `mail`, with these To and Cc headers (Bcc never shows).
    pub fn message(
        &self,
        report: &Report,
        mail: &Mail,
        to: &[Mailbox],
        cc: &[Mailbox],
    ) -> Result<Vec<u8>> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(mail.rendered.subject.clone())
            .message_id(Some(self.message_id(report, &mail.role)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Freezer-DR-Report"),
                report.id.clone(),
            ));
        for m in to {
            b = b.to(m.clone());
        }
        for m in cc {
            b = b.cc(m.clone());
        }
        let part = |kind, body: &String| SinglePart::builder().header(kind).body(body.clone());
        let body = MultiPart::alternative()
            .singlepart(part(ContentType::TEXT_PLAIN, &mail.rendered.text))
            .singlepart(part(ContentType::TEXT_HTML, &mail.rendered.html));
        let msg = b.multipart(body).map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("cannot build the mail: {e}"))
                .with_context("report", &report.id)
                .with_context("mail", &mail.role)
        })?;
        Ok(msg.formatted())
    }

    /// Sends one copy (`bytes`) to one recipient, in its own transaction.
    pub async fn send(&self, report: &Report, rcpt: &Mailbox, bytes: &[u8]) -> Sent {
        let envelope = match Envelope::new(Some(self.from.email.clone()), vec![rcpt.email.clone()])
        {
            Ok(e) => e,
            Err(e) => return Sent::Rejected(format!("no valid envelope: {e}")),
        };
        match self.transport().send_raw(&envelope, bytes).await {
            Ok(_) => Sent::Accepted,
            Err(e) => self.classify(&e, &report.id, &rcpt.email),
        }
    }

    /// Connects and says NOOP (`freezer-dr validate --connect`).
    pub async fn healthcheck(&self) -> Result<()> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::Unreachable,
                format!("the mail server {} did not answer NOOP", self.server),
            )),
            Err(e) => Err(match self.classify(&e, "healthcheck", &self.from.email) {
                Sent::Failed(e) | Sent::Deferred(e) => e,
                Sent::Rejected(why) => Error::new(
                    ErrorKind::PeerFailure,
                    format!(
                        "the mail server {} refused the connection: {why}",
                        self.server
                    ),
                ),
                Sent::Accepted => return Ok(()),
            }),
        }
    }

    /// What a failed send means: one recipient refused for good or for now, or the server unusable.
    fn classify(&self, e: &lettre::transport::smtp::Error, report: &str, rcpt: &Address) -> Sent {
        let auth = e
            .status()
            .is_some_and(|c| AUTH_CODES.contains(&c.to_string().as_str()));
        if e.is_permanent() && !auth {
            return Sent::Rejected(e.to_string());
        }
        let (kind, what, retry) = if e.is_permanent() {
            (
                ErrorKind::Auth,
                "the login was refused by the mail server",
                Retry::Permanent,
            )
        } else if e.is_transient() {
            (
                ErrorKind::PeerFailure,
                "the recipient was deferred (4xx) by",
                Retry::Temporary,
            )
        } else if e.is_timeout() {
            (
                ErrorKind::Timeout,
                "no answer in time from the mail server",
                Retry::Temporary,
            )
        } else if e.is_tls() || is_certificate_error(e) {
            (
                ErrorKind::Unreachable,
                "TLS failed (is its certificate signed by a CA in ca_file or the system store?) with",
                Retry::Permanent,
            )
        } else if e.is_client() {
            (
                ErrorKind::Unsupported,
                "the mail server cannot do what the config asks:",
                Retry::Permanent,
            )
        } else {
            (
                ErrorKind::Unreachable,
                "cannot talk to the mail server",
                Retry::Temporary,
            )
        };
        let err = Error::new(kind, format!("{what} {}", self.server))
            .with_context("report", report)
            .with_context("recipient", rcpt)
            .with_source(MessageError(e.to_string()));
        let err = match retry {
            Retry::Temporary => err.temporary(),
            Retry::Permanent => err.permanent(),
        };
        if e.is_transient() {
            Sent::Deferred(err)
        } else {
            Sent::Failed(err)
        }
    }
}

/// lettre reports a refused server certificate as a connection error; its source chain says why.
fn is_certificate_error(e: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("handshake") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Keeps the characters a Message-ID may hold verbatim; anything else becomes `_xx` (hex), so two
/// different roles never share an id.
fn id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// lettre's error is not `Clone`; its message is all the core error needs.
#[derive(Debug)]
struct MessageError(String);

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(wrapper: bool, host: &str, port: u16) -> Server {
        Server {
            wrapper,
            host: host.into(),
            port,
        }
    }

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            Server::parse("smtp://mail.example.org").unwrap(),
            server(false, "mail.example.org", 587)
        );
        assert_eq!(
            Server::parse("smtps://mail.example.org:2465/").unwrap(),
            server(true, "mail.example.org", 2465)
        );
        assert_eq!(
            Server::parse("smtp://[::1]:25").unwrap(),
            server(false, "::1", 25)
        );
        let e = Server::parse("smtp://user:hunter2@mail.example.org").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(Server::parse("http://mail.example.org").is_err());
        assert!(Server::parse("smtp://mail:port").is_err());
    }

    #[test]
    fn message_id_parts_are_safe_and_distinct() {
        assert_eq!(id_part("project.abc-1"), "project.abc-1");
        assert_ne!(id_part("project.a b"), id_part("project.a_b"));
        assert!(
            id_part("project.<x>@y")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
    }
}
