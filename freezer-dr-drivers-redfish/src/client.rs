//! HTTP to one BMC: the client (TLS as configured), authentication (a Redfish session deleted after
//! each call, or HTTP basic), and the one place where a failed request becomes a classified [`Error`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use freezer_dr_core::{Error, ErrorKind, Result, Secret};
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::config::{Auth, Bmc};

/// The service root, where every Redfish path starts.
pub(crate) const ROOT: &str = "/redfish/v1/";
/// Longest text kept from a BMC's error body.
const MAX_MESSAGE: usize = 300;
/// Same-origin redirects followed at most (sushy-tools redirects a system's name to its UUID).
const MAX_REDIRECTS: usize = 5;

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The JSON body, or `Null` when there is none.
    pub body: Value,
}

impl Reply {
    /// A header's URL, resolved against the BMC (Location is often a path).
    pub fn location(&self, bmc: &Bmc) -> Option<Url> {
        let loc = self.headers.get(LOCATION)?.to_str().ok()?;
        bmc.base.join(loc).ok()
    }

    /// The `Retry-After` delay in seconds, if given as a number.
    pub fn retry_after(&self) -> Option<Duration> {
        let s = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        s.trim().parse::<u64>().ok().map(Duration::from_secs)
    }
}

/// How requests to a BMC are authenticated, once found out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Basic,
    /// Sessions are created by a POST to this collection.
    Session(Url),
}

/// The HTTP side of one BMC.
pub(crate) struct Client {
    http: reqwest::Client,
    pub bmc: Arc<Bmc>,
    /// What `auth = "auto"` found out (in memory only: a restart asks again).
    mode: Mutex<Option<Mode>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bmc", &self.bmc.target())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the HTTP client (reads the CA bundle); no network I/O.
    pub fn new(bmc: Arc<Bmc>, timeout: Duration) -> Result<Self> {
        let origin = bmc.base.origin();
        // Follow redirects only on the BMC itself: a token or basic credentials must never go elsewhere.
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS || attempt.url().origin() != origin {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(policy)
            .user_agent(concat!("freezer-dr/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &bmc.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!("cannot read ca_file {}: {e}", path.display()))
                    .with_context("host", &bmc.host)
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!("ca_file {} is not PEM: {e}", path.display()))
                    .with_context("host", &bmc.host)
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                ))
                .with_context("host", &bmc.host));
            }
            // The BMC's own CA only: a certificate from any public CA is not this BMC's.
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if bmc.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| {
            Error::config(format!("cannot build the HTTP client: {e}"))
                .with_context("host", &bmc.host)
        })?;
        let mode = match bmc.auth {
            Auth::Basic => Some(Mode::Basic),
            Auth::Session | Auth::Auto => None,
        };
        Ok(Self {
            http,
            bmc,
            mode: Mutex::new(mode),
        })
    }

    fn known_mode(&self) -> Option<Mode> {
        self.mode.lock().ok().and_then(|m| m.clone())
    }

    fn remember_mode(&self, mode: Mode) {
        if let Ok(mut m) = self.mode.lock() {
            *m = Some(mode);
        }
    }

    /// Opens a connection for one call: finds out the authentication (reading the service root,
    /// which Redfish serves without credentials) and creates the session if there is one.
    pub async fn connect(&self) -> Result<Conn<'_>> {
        let mode = match self.known_mode() {
            Some(m) => m,
            None => {
                let m = self.discover_mode().await?;
                self.remember_mode(m.clone());
                m
            }
        };
        let mut conn = Conn {
            client: self,
            session: None,
            renewed: false,
        };
        if let Mode::Session(sessions) = &mode {
            match self.create_session(sessions).await {
                Ok(s) => conn.session = Some(s),
                Err(SessionError::Unsupported(why)) if self.bmc.auth == Auth::Auto => {
                    warn!(host = %self.bmc.host, bmc = %self.bmc.target(), why,
                        "Redfish: no sessions on this BMC; using HTTP basic authentication");
                    self.remember_mode(Mode::Basic);
                }
                Err(SessionError::Unsupported(why)) => {
                    return Err(self.error(
                        ErrorKind::Config,
                        format!("the BMC cannot create sessions ({why}); set auth = \"basic\""),
                    ));
                }
                Err(SessionError::Failed(e)) => return Err(e),
            }
        }
        Ok(conn)
    }

    async fn discover_mode(&self) -> Result<Mode> {
        let url = self.bmc.url(ROOT)?;
        let what = "read the Redfish service root";
        let resp = self
            .http
            .get(url.clone())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(what, &url, e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(what, &url, e))?;
        if !status.is_success() {
            let e = self.status_error(status, &bytes, what, &url);
            if self.bmc.auth == Auth::Auto && !e.is_temporary() {
                debug!(host = %self.bmc.host, error = %e, "Redfish: service root unreadable; HTTP basic");
                return Ok(Mode::Basic);
            }
            return Err(e);
        }
        let root: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match root
            .pointer("/Links/Sessions/@odata.id")
            .and_then(Value::as_str)
        {
            Some(path) => Ok(Mode::Session(self.bmc.url(path)?)),
            None if self.bmc.auth == Auth::Auto => Ok(Mode::Basic),
            None => Err(self.error(
                ErrorKind::Config,
                "the service root advertises no sessions (Links.Sessions); set auth = \"basic\"",
            )),
        }
    }

    async fn create_session(&self, sessions: &Url) -> std::result::Result<Session, SessionError> {
        let what = "create a Redfish session";
        let body = json!({
            "UserName": self.bmc.username,
            "Password": self.bmc.password.expose(),
        });
        let resp = self
            .http
            .post(sessions.clone())
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| SessionError::Failed(self.transport_error(what, sessions, e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SessionError::Failed(self.transport_error(what, sessions, e)))?;
        if matches!(
            status,
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED
        ) {
            return Err(SessionError::Unsupported(format!(
                "HTTP {} from {}",
                status.as_u16(),
                sessions.path()
            )));
        }
        if !status.is_success() {
            return Err(SessionError::Failed(
                self.status_error(status, &bytes, what, sessions),
            ));
        }
        let token = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                SessionError::Failed(self.error(
                    ErrorKind::InvalidResponse,
                    "the BMC created a session but sent no X-Auth-Token",
                ))
            })?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .or_else(|| body.get("@odata.id").and_then(Value::as_str))
            .and_then(|p| self.bmc.base.join(p).ok());
        debug!(host = %self.bmc.host, "Redfish: session created");
        Ok(Session { token, location })
    }

    /// Deletes a session (best effort: a session left behind expires on the BMC by itself).
    async fn delete_session(http: reqwest::Client, host: String, session: Session) {
        let Some(url) = session.location else {
            return;
        };
        let r = http
            .delete(url)
            .header("X-Auth-Token", session.token.expose())
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND => {
                debug!(host, "Redfish: session deleted");
            }
            Ok(resp) => {
                warn!(
                    host,
                    status = resp.status().as_u16(),
                    "Redfish: the session could not be deleted; it expires on the BMC"
                );
            }
            Err(e) => {
                let e = e.without_url();
                warn!(host, error = %e, "Redfish: the session could not be deleted; it expires on the BMC");
            }
        }
    }

    /// An error about this BMC.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::new(kind, message)
            .with_context("host", &self.bmc.host)
            .with_context("bmc", self.bmc.target())
    }

    /// A failure before any HTTP status: timeout, refused connection, TLS.
    fn transport_error(&self, what: &str, url: &Url, e: reqwest::Error) -> Error {
        let timeout = e.is_timeout();
        // The path is in the context already; the message stays short.
        let e = e.without_url();
        let mut why = Vec::new();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why.push(s.to_string());
            src = s.source();
        }
        let why = why.last().cloned().unwrap_or_else(|| e.to_string());
        if timeout {
            return self
                .error(ErrorKind::Timeout, format!("{what}: no answer in time"))
                .with_context("path", url.path())
                .temporary();
        }
        // A certificate the BMC will keep presenting: retrying cannot help, the config must change.
        if why.contains("certificate") || why.contains("Certificate") {
            return self
                .error(
                    ErrorKind::Unreachable,
                    format!(
                        "{what}: the BMC's TLS certificate is not trusted ({why}); set ca_file to \
                         the CA that signed it (or insecure = true, at the risk of talking to an \
                         impostor)"
                    ),
                )
                .permanent();
        }
        self.error(
            ErrorKind::Unreachable,
            format!("{what}: cannot reach the BMC ({why})"),
        )
        .with_context("path", url.path())
        .temporary()
    }

    /// Classifies an HTTP error status, once: 401/403 permanent auth, 404 permanent config (the
    /// system path is wrong), 409/412/429/5xx temporary, any other 4xx permanent. The BMC's own
    /// message (`@Message.ExtendedInfo`) goes into the error; the password never does.
    fn status_error(&self, status: StatusCode, body: &[u8], what: &str, url: &Url) -> Error {
        let msg = bmc_message(body, &[self.bmc.password.expose()]);
        let said = if msg.is_empty() {
            String::new()
        } else {
            format!(": {msg}")
        };
        let code = status.as_u16();
        let (kind, text) = match code {
            401 => (
                ErrorKind::Auth,
                format!(
                    "{what}: the BMC refused the credentials (HTTP 401: wrong username or \
                     password){said}"
                ),
            ),
            403 => (
                ErrorKind::Auth,
                format!(
                    "{what}: the BMC refused this user (HTTP 403: its role may not do this){said}"
                ),
            ),
            404 => (
                ErrorKind::Config,
                format!(
                    "{what}: the BMC has no {} (HTTP 404); check the host's system (or system_id) \
                     and url{said}",
                    url.path()
                ),
            ),
            409 | 412 => (
                ErrorKind::Conflict,
                format!("{what}: the BMC is busy with this resource (HTTP {code}){said}"),
            ),
            429 | 500..=599 => (
                ErrorKind::PeerFailure,
                format!("{what}: the BMC failed (HTTP {code}){said}"),
            ),
            _ => (
                ErrorKind::PeerFailure,
                format!("{what}: the BMC refused the request (HTTP {code}){said}"),
            ),
        };
        let e = self.error(kind, text).with_context("path", url.path());
        match code {
            409 | 412 | 429 | 500..=599 => e.temporary(),
            _ => e.permanent(),
        }
    }
}

/// A session, or why there is none.
enum SessionError {
    /// The BMC does not do sessions (404/405/501 on the collection).
    Unsupported(String),
    /// Anything else: wrong credentials, BMC down.
    Failed(Error),
}

struct Session {
    token: Secret,
    /// Where to DELETE it.
    location: Option<Url>,
}

/// One call's authenticated connection. [`Conn::close`] deletes its session; dropped unclosed (the
/// call was cancelled by the runtime's timeout), it deletes it in the background.
pub(crate) struct Conn<'a> {
    client: &'a Client,
    session: Option<Session>,
    /// A refused token was renewed once already in this call.
    renewed: bool,
}

impl Conn<'_> {
    /// The BMC of this connection.
    pub fn bmc(&self) -> &Bmc {
        &self.client.bmc
    }

    /// An error about this BMC.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        self.client.error(kind, message)
    }

    /// GETs `url`; `what` says what for errors.
    pub async fn get(&mut self, url: &Url, what: &str) -> Result<Reply> {
        self.send(Method::GET, url, None, what).await
    }

    /// POSTs `body` to `url`.
    pub async fn post(&mut self, url: &Url, body: Value, what: &str) -> Result<Reply> {
        self.send(Method::POST, url, Some(body), what).await
    }

    async fn send(
        &mut self,
        method: Method,
        url: &Url,
        body: Option<Value>,
        what: &str,
    ) -> Result<Reply> {
        loop {
            let c = self.client;
            let mut req = c
                .http
                .request(method.clone(), url.clone())
                .header("Accept", "application/json");
            req = match &self.session {
                Some(s) => req.header("X-Auth-Token", s.token.expose()),
                None => req.basic_auth(&c.bmc.username, Some(c.bmc.password.expose())),
            };
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| c.transport_error(what, url, e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| c.transport_error(what, url, e))?;
            if status == StatusCode::UNAUTHORIZED && self.session.is_some() && !self.renewed {
                // The token expired (or the BMC dropped the session) mid-call: one new session.
                self.renewed = true;
                debug!(host = %c.bmc.host, what, "Redfish: session token refused; renewing it once");
                let Some(Mode::Session(sessions)) = c.known_mode() else {
                    return Err(c.status_error(status, &bytes, what, url));
                };
                // The refused session is gone on the BMC: nothing to delete.
                self.session = None;
                match c.create_session(&sessions).await {
                    Ok(s) => self.session = Some(s),
                    Err(SessionError::Failed(e)) => return Err(e),
                    Err(SessionError::Unsupported(why)) => {
                        return Err(c.error(
                            ErrorKind::Auth,
                            format!("{what}: the session token was refused and no new session could be created ({why})"),
                        ));
                    }
                }
                continue;
            }
            if !status.is_success() {
                let token = self
                    .session
                    .as_ref()
                    .map(|s| s.token.expose())
                    .unwrap_or("");
                let e = c.status_error(status, &redact(&bytes, token), what, url);
                return Err(if status == StatusCode::UNAUTHORIZED && self.renewed {
                    e.with_context("session", "renewed once, refused again")
                } else {
                    e
                });
            }
            let body = if bytes.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).map_err(|e| {
                    c.error(
                        ErrorKind::InvalidResponse,
                        format!("{what}: the BMC's answer is not JSON"),
                    )
                    .with_context("path", url.path())
                    .with_source(e)
                })?
            };
            return Ok(Reply {
                status,
                headers,
                body,
            });
        }
    }

    /// Ends the call: deletes the session, if any (never fails the call).
    pub async fn close(mut self) {
        if let Some(s) = self.session.take() {
            let c = self.client;
            Client::delete_session(c.http.clone(), c.bmc.host.to_string(), s).await;
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let c = self.client;
            rt.spawn(Client::delete_session(
                c.http.clone(),
                c.bmc.host.to_string(),
                s,
            ));
        }
    }
}

fn redact(body: &[u8], secret: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    if secret.is_empty() || !text.contains(secret) {
        return body.to_vec();
    }
    text.replace(secret, "<redacted>").into_bytes()
}

/// What the BMC said in an error body: the `Message`s of `error.@Message.ExtendedInfo` (the Redfish
/// way), else `error.message`, else the text itself; short, on one line, without `secrets`.
pub(crate) fn bmc_message(body: &[u8], secrets: &[&str]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(v) => json_message(&v),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for s in secrets {
        if !s.is_empty() {
            text = text.replace(s, "<redacted>");
        }
    }
    if text.chars().count() > MAX_MESSAGE {
        let cut: String = text.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The messages of a Redfish error (or Task) body.
pub(crate) fn json_message(v: &Value) -> String {
    let err = v.get("error").unwrap_or(v);
    let infos = err
        .get("@Message.ExtendedInfo")
        .or_else(|| err.get("Messages"))
        .and_then(Value::as_array);
    let extended: Vec<String> = infos
        .into_iter()
        .flatten()
        .filter_map(|m| {
            let text = m.get("Message").and_then(Value::as_str)?;
            Some(match m.get("MessageId").and_then(Value::as_str) {
                Some(id) => format!("{text} [{id}]"),
                None => text.to_owned(),
            })
        })
        .collect();
    if !extended.is_empty() {
        return extended.join("; ");
    }
    match err.get("message").and_then(Value::as_str) {
        Some(m) => m.to_owned(),
        None if v.is_null() => String::new(),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_info_messages_are_preferred_and_secrets_removed() {
        let body = br#"{"error":{"code":"Base.1.8.GeneralError","message":"A general error has occurred.",
            "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.ResourceInUse","Message":"The change could not be made because the resource is in use by pw-123."},
            {"MessageId":"iDRAC.2.8.SYS446","Message":"Unable to complete the operation."}]}}"#;
        assert_eq!(
            bmc_message(body, &["pw-123"]),
            "The change could not be made because the resource is in use by <redacted>. \
             [Base.1.8.ResourceInUse]; Unable to complete the operation. [iDRAC.2.8.SYS446]"
        );
        assert_eq!(
            bmc_message(br#"{"error":{"message":"Domain not found"}}"#, &[]),
            "Domain not found"
        );
        assert_eq!(
            bmc_message(b"<html>\n Bad   Gateway</html>", &[]),
            "<html> Bad Gateway</html>"
        );
        assert_eq!(bmc_message(b"", &[]), "");
        let long = "x".repeat(1000);
        assert_eq!(
            bmc_message(long.as_bytes(), &[]).chars().count(),
            MAX_MESSAGE + 1
        );
    }
}
