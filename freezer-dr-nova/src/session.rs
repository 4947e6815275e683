//! A Keystone v3 session over reqwest: authenticates, reuses the token until shortly before it expires,
//! re-authenticates once on a 401, finds endpoints in the catalog, and turns every failed call into a
//! classified [`Error`] that says what was being done and carries Nova's request id.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use freezer_dr_core::{Error, ErrorKind, Result, Secret};
use reqwest::{Method as HttpMethod, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tracing::debug;
use url::Url;

use crate::config::{Identity, Method, ResolvedAuth};
use crate::microversion::Microversion;

/// Which API a call goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    /// Nova, found in the catalog as `compute` (or the configured override).
    Compute,
    /// Keystone itself, at the configured `auth_url`.
    Identity,
}

/// A successful response, its body as received: [`Reply::json`] reads it whole, a caller that wants a
/// few fields of a large list reads them straight from [`Reply::bytes`].
#[derive(Debug)]
pub(crate) struct Reply {
    pub bytes: Vec<u8>,
    pub request_id: Option<String>,
    url: String,
}

impl Reply {
    /// The body as JSON (`null` when empty), for `what`.
    pub(crate) fn json(&self, what: &str) -> Result<Value> {
        if self.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.bytes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!("{what}: the response is not JSON"),
            )
            .with_context("url", &self.url)
            .with_context("request_id", self.request_id.as_deref().unwrap_or("-"))
            .with_source(e)
        })
    }
}

/// One HTTP call, described for the error message.
pub(crate) struct Call<'a> {
    pub method: HttpMethod,
    pub service: Service,
    /// Path (and query) relative to the service's endpoint, starting with `/`.
    pub path: &'a str,
    pub body: Option<Value>,
    pub microversion: Option<Microversion>,
    /// What is being done, e.g. `evacuate server 1234 from compute1`.
    pub what: &'a str,
}

struct Token {
    value: Secret,
    /// Reuse the token until this instant.
    refresh_at: SystemTime,
    catalog: Vec<CatalogService>,
    /// The endpoints found for this token, parsed once: a call copies one and sets its path.
    compute: OnceLock<Url>,
    identity: OnceLock<Url>,
}

#[derive(Debug, Deserialize)]
struct CatalogService {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Deserialize)]
struct CatalogEndpoint {
    interface: String,
    region_id: Option<String>,
    region: Option<String>,
    url: String,
}

/// A Keystone session shared by the calls of one driver.
pub(crate) struct Session {
    http: reqwest::Client,
    auth: ResolvedAuth,
    compute_override: Option<String>,
    token: Mutex<Option<Arc<Token>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("auth_url", &self.auth.auth_url)
            .field("interface", &self.auth.interface)
            .field("region", &self.auth.region)
            .finish_non_exhaustive()
    }
}

/// Longest margin before expiry at which a token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// Longest error text kept from a response body.
const MAX_MESSAGE: usize = 400;

impl Session {
    /// A session; builds the HTTP client (reads the CA bundle), no network I/O.
    pub(crate) fn new(
        auth: ResolvedAuth,
        timeout: Duration,
        compute_override: Option<String>,
    ) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("freezer-dr/", env!("CARGO_PKG_VERSION")))
            // Never follow a redirect: every call carries the token in X-Auth-Token, which reqwest
            // does not know to drop on the way elsewhere, and a 307 from Keystone would resend the
            // password. A redirect is an error that says where it pointed (`refused_redirect`).
            .redirect(reqwest::redirect::Policy::none())
            .use_rustls_tls();
        if let Some(path) = &auth.cacert {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!("cannot read CA bundle {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!("CA bundle {} is not PEM: {e}", path.display()))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if auth.insecure {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            auth,
            compute_override: compute_override.map(|u| u.trim_end_matches('/').to_owned()),
            token: Mutex::new(None),
        })
    }

    /// A valid token, authenticating if there is none or it is about to expire.
    async fn token(&self) -> Result<Arc<Token>> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref()
            && SystemTime::now() < t.refresh_at
        {
            return Ok(Arc::clone(t));
        }
        let t = Arc::new(self.authenticate().await?);
        *slot = Some(Arc::clone(&t));
        Ok(t)
    }

    /// Forgets `used` if it is still the current token (another task may have replaced it already).
    async fn invalidate(&self, used: &Arc<Token>) {
        let mut slot = self.token.lock().await;
        if slot.as_ref().is_some_and(|t| Arc::ptr_eq(t, used)) {
            *slot = None;
        }
    }

    fn auth_body(&self) -> Value {
        fn identity(i: &Identity) -> Value {
            match i {
                Identity::Id(id) => json!({ "id": id }),
                Identity::Name {
                    name,
                    domain_id,
                    domain_name,
                } => {
                    let domain = match (domain_id, domain_name) {
                        (Some(id), _) => json!({ "id": id }),
                        (None, Some(n)) => json!({ "name": n }),
                        (None, None) => json!({ "id": "default" }),
                    };
                    json!({ "name": name, "domain": domain })
                }
            }
        }
        match &self.auth.method {
            Method::Password {
                user,
                password,
                project,
            } => {
                let mut u = identity(user);
                u["password"] = Value::String(password.expose().to_owned());
                let mut auth = json!({
                    "identity": { "methods": ["password"], "password": { "user": u } }
                });
                if let Some(p) = project {
                    auth["scope"] = json!({ "project": identity(p) });
                }
                json!({ "auth": auth })
            }
            Method::ApplicationCredential {
                id,
                name,
                user,
                secret,
            } => {
                let mut ac = json!({ "secret": secret.expose() });
                if let Some(id) = id {
                    ac["id"] = json!(id);
                } else {
                    if let Some(n) = name {
                        ac["name"] = json!(n);
                    }
                    if let Some(u) = user {
                        ac["user"] = identity(u);
                    }
                }
                json!({ "auth": { "identity": {
                    "methods": ["application_credential"], "application_credential": ac
                } } })
            }
        }
    }

    async fn authenticate(&self) -> Result<Token> {
        let url = format!("{}/auth/tokens", self.auth.auth_url);
        let what = "authenticate with Keystone";
        debug!(auth_url = %self.auth.auth_url, "authenticating");
        let started = SystemTime::now();
        let resp = self
            .http
            .post(&url)
            .json(&self.auth_body())
            .send()
            .await
            .map_err(|e| transport_error(what, &url, e))?;
        let status = resp.status();
        let request_id = request_id(resp.headers());
        if let Some(e) = refused_redirect(status, resp.headers(), what, &url) {
            return Err(e);
        }
        let subject = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(what, &url, e))?;
        if !status.is_success() {
            let secret = match &self.auth.method {
                Method::Password { password, .. } => password.expose(),
                Method::ApplicationCredential { secret, .. } => secret.expose(),
            };
            let bytes = redact(&bytes, secret);
            let mut e = status_error(status, &bytes, request_id.as_deref(), what, &url);
            if status == StatusCode::UNAUTHORIZED {
                e = Error::new(
                    ErrorKind::Auth,
                    format!(
                        "Keystone refused the credentials from {} (check user, password or \
                         application credential, and the project)",
                        self.auth.source
                    ),
                )
                .with_context("url", &url)
                .with_context("request_id", request_id.as_deref().unwrap_or("-"));
            }
            return Err(e);
        }
        let subject = subject.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                "Keystone issued no X-Subject-Token",
            )
            .with_context("url", &url)
        })?;
        #[derive(Deserialize)]
        struct Body {
            token: TokenBody,
        }
        #[derive(Deserialize)]
        struct TokenBody {
            expires_at: String,
            #[serde(default)]
            catalog: Vec<CatalogService>,
        }
        let body: Body = serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                "Keystone's token body is unreadable",
            )
            .with_context("url", &url)
            .with_source(e)
        })?;
        let expires = parse_time(&body.token.expires_at).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "Keystone's expires_at {:?} is not a time",
                    body.token.expires_at
                ),
            )
        })?;
        let life = expires.duration_since(started).unwrap_or_default();
        let margin = REFRESH_MARGIN.min(life / 10);
        Ok(Token {
            value: Secret::new(subject),
            refresh_at: expires - margin,
            catalog: body.token.catalog,
            compute: OnceLock::new(),
            identity: OnceLock::new(),
        })
    }

    fn endpoint(&self, service: Service, token: &Token) -> Result<String> {
        match service {
            Service::Identity => Ok(self.auth.auth_url.clone()),
            Service::Compute => {
                if let Some(u) = &self.compute_override {
                    return Ok(u.clone());
                }
                let region_ok = |e: &CatalogEndpoint| match &self.auth.region {
                    None => true,
                    Some(r) => {
                        e.region_id.as_deref() == Some(r.as_str())
                            || e.region.as_deref() == Some(r.as_str())
                    }
                };
                token
                    .catalog
                    .iter()
                    .filter(|s| s.kind == "compute")
                    .flat_map(|s| s.endpoints.iter())
                    .find(|e| e.interface == self.auth.interface && region_ok(e))
                    .map(|e| e.url.trim_end_matches('/').to_owned())
                    .ok_or_else(|| {
                        Error::new(
                            ErrorKind::Config,
                            format!(
                                "the service catalog has no compute endpoint for interface {} \
                                 in region {}",
                                self.auth.interface,
                                self.auth.region.as_deref().unwrap_or("(any)")
                            ),
                        )
                    })
            }
        }
    }

    /// The compute endpoint from the catalog (or the override), authenticating if needed.
    pub(crate) async fn compute_endpoint(&self) -> Result<String> {
        let t = self.token().await?;
        self.endpoint(Service::Compute, &t)
    }

    /// Sends `call`; on a 401 re-authenticates once and sends it again.
    pub(crate) async fn send(&self, call: &Call<'_>) -> Result<Reply> {
        let token = self.token().await?;
        match self.send_with(call, &token).await? {
            Sent::Done(r) => Ok(r),
            Sent::Unauthorized(request_id) => {
                debug!(what = call.what, "token refused, authenticating again");
                self.invalidate(&token).await;
                let token = self.token().await?;
                match self.send_with(call, &token).await? {
                    Sent::Done(r) => Ok(r),
                    Sent::Unauthorized(again) => Err(Error::new(
                        ErrorKind::Auth,
                        format!(
                            "{}: a fresh Keystone token was refused too (401)",
                            call.what
                        ),
                    )
                    .with_context(
                        "request_id",
                        again.or(request_id).unwrap_or_else(|| "-".into()),
                    )),
                }
            }
        }
    }

    /// The URL of `call`: its service's endpoint (parsed once per token) with the call's path and query.
    fn url(&self, call: &Call<'_>, token: &Token) -> Result<Url> {
        let cell = match call.service {
            Service::Compute => &token.compute,
            Service::Identity => &token.identity,
        };
        let base = match cell.get() {
            Some(u) => u.clone(),
            None => {
                let endpoint = self.endpoint(call.service, token)?;
                let u = Url::parse(&endpoint).map_err(|e| {
                    Error::config(format!("the endpoint {endpoint} is not a URL: {e}"))
                })?;
                cell.get_or_init(|| u).clone()
            }
        };
        Ok(with_path(base, call.path))
    }

    async fn send_with(&self, call: &Call<'_>, token: &Token) -> Result<Sent> {
        let parsed = self.url(call, token)?;
        let url = parsed.to_string();
        let mut req = self
            .http
            .request(call.method.clone(), parsed)
            .header("X-Auth-Token", token.value.expose())
            .header("Accept", "application/json");
        if let Some(mv) = call.microversion {
            req = req
                .header("OpenStack-API-Version", format!("compute {mv}"))
                .header("X-OpenStack-Nova-API-Version", mv.to_string());
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(call.what, &url, e))?;
        let status = resp.status();
        let rid = request_id(resp.headers());
        if let Some(e) = refused_redirect(status, resp.headers(), call.what, &url) {
            return Err(e);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(call.what, &url, e))?;
        if status == StatusCode::UNAUTHORIZED {
            return Ok(Sent::Unauthorized(rid));
        }
        if !status.is_success() {
            // A peer that echoes the request (a proxy's error page) must not put our token in an error.
            let bytes = redact(&bytes, token.value.expose());
            return Err(status_error(
                status,
                &bytes,
                rid.as_deref(),
                call.what,
                &url,
            ));
        }
        Ok(Sent::Done(Reply {
            bytes: Vec::from(bytes),
            request_id: rid,
            url,
        }))
    }
}

/// `base` with `path_and_query` after its path: what parsing the two strings joined gives, without
/// parsing the scheme and host again.
fn with_path(mut base: Url, path_and_query: &str) -> Url {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let path = format!("{}{path}", base.path().trim_end_matches('/'));
    base.set_path(&path);
    base.set_query(query);
    base
}

enum Sent {
    Done(Reply),
    Unauthorized(Option<String>),
}

fn redact(body: &[u8], secret: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    if secret.is_empty() || !text.contains(secret) {
        return body.to_vec();
    }
    text.replace(secret, "<redacted>").into_bytes()
}

fn request_id(h: &reqwest::header::HeaderMap) -> Option<String> {
    ["x-openstack-request-id", "x-compute-request-id"]
        .iter()
        .find_map(|k| h.get(*k).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

/// A failure before any HTTP status: timeout, refused connection, TLS.
fn transport_error(what: &str, url: &str, e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Unreachable
    };
    // reqwest's message names the URL already; the chain says why (refused, TLS, ...).
    let mut why = String::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        why = s.to_string();
        src = s.source();
    }
    let msg = if why.is_empty() {
        format!("{what}: {}", kind_phrase(kind))
    } else {
        format!("{what}: {} ({why})", kind_phrase(kind))
    };
    Error::new(kind, msg).with_context("url", url).temporary()
}

fn kind_phrase(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Timeout => "no answer in time",
        _ => "cannot reach the API",
    }
}

/// The message of an OpenStack error body: Nova's `{"badRequest": {"message": ...}}`, Keystone's
/// `{"error": {"message": ...}}`, or the text itself.
pub(crate) fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map
            .values()
            .find_map(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| {
                map.get("message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > MAX_MESSAGE {
        let cut: String = text.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Classifies an HTTP error status once: 409, 429 and 5xx are temporary; 400, 403, 404 and other 4xx are
/// permanent — except Nova's 400 "Compute service of X is still in use" on evacuate, which means Nova still
/// believes the host is up (it is temporary: once the service is forced down, the same request is accepted).
/// The error for a redirect (3xx with a `Location`), which the client does not follow: it names the
/// target so that an operator who moved the endpoint can configure it there.
fn refused_redirect(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    what: &str,
    url: &str,
) -> Option<Error> {
    if !status.is_redirection() {
        return None;
    }
    let location = headers
        .get(reqwest::header::LOCATION)
        .map_or("(no Location)".into(), |v| {
            String::from_utf8_lossy(v.as_bytes()).into_owned()
        });
    Some(
        Error::new(
            ErrorKind::Config,
            format!(
                "{what}: HTTP {status} redirect to {location}, not followed (it would carry the \
                 token or the password there); if that is the endpoint, configure it"
            ),
        )
        .with_context("url", url)
        .permanent(),
    )
}

pub(crate) fn status_error(
    status: StatusCode,
    body: &[u8],
    request_id: Option<&str>,
    what: &str,
    url: &str,
) -> Error {
    let message = error_message(body);
    let (kind, retry_temporary) = match status.as_u16() {
        400 if message.contains("is still in use") => (ErrorKind::Conflict, true),
        400 => (ErrorKind::Unexpected, false),
        401 | 403 => (ErrorKind::Auth, false),
        404 => (ErrorKind::NotFound, false),
        409 => (ErrorKind::Conflict, true),
        408 | 429 => (ErrorKind::PeerFailure, true),
        500..=599 => (ErrorKind::PeerFailure, true),
        _ => (ErrorKind::Unexpected, false),
    };
    let text = if message.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {message}")
    };
    let e = Error::new(kind, text)
        .with_context("url", url)
        .with_context("request_id", request_id.unwrap_or("-"));
    if retry_temporary {
        e.temporary()
    } else {
        e.permanent()
    }
}

/// Parses OpenStack's times: `2024-05-01T10:00:00.000000Z`, `2024-05-01T10:00:00.000000`,
/// `2024-05-01T10:00:00+00:00` (all UTC).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s
        .strip_suffix("+00:00")
        .or_else(|| s.strip_suffix("Z"))
        .unwrap_or(s);
    humantime::parse_rfc3339_weak(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_s_url_is_its_endpoint_and_path_as_if_parsed_joined() {
        let bases = [
            "http://127.0.0.1:8774/compute/v2.1",
            "https://nova.example.org:8774/v2.1/",
            "http://[::1]/identity/v3",
            "http://ctl",
        ];
        let paths = [
            "/",
            "/os-services?binary=nova-compute&host=c%201",
            "/servers/detail?all_tenants=1&host=c1&limit=1000&marker=abc-1",
            "/servers/0f1e/action",
            "/os-migrations?instance_uuid=0f1e&migration_type=evacuation",
            "/projects/p%2F1",
            "/servers/a b",
        ];
        for base in bases {
            for path in paths {
                let joined = format!("{}{path}", base.trim_end_matches('/'));
                assert_eq!(
                    with_path(Url::parse(base).unwrap(), path).as_str(),
                    Url::parse(&joined).unwrap().as_str(),
                    "{base} + {path}"
                );
            }
        }
    }

    #[test]
    fn statuses_are_classified_once() {
        let e = |code: u16, body: &str| {
            status_error(
                StatusCode::from_u16(code).unwrap(),
                body.as_bytes(),
                Some("req-1"),
                "evacuate server s1 from compute1",
                "http://n/servers/s1/action",
            )
        };
        let busy = e(
            409,
            r#"{"conflictingRequest": {"code": 409, "message": "Instance s1 is locked"}}"#,
        );
        assert_eq!(busy.kind(), ErrorKind::Conflict);
        assert!(busy.is_temporary());
        assert!(busy.to_string().contains("Instance s1 is locked"), "{busy}");
        assert!(busy.to_string().contains("request_id: req-1"), "{busy}");
        assert!(e(503, "Service Unavailable").is_temporary());
        assert!(e(500, "{}").is_temporary());
        let in_use = e(
            400,
            r#"{"badRequest": {"code": 400, "message": "Compute service of compute2 is still in use."}}"#,
        );
        assert!(in_use.is_temporary(), "{in_use}");
        assert_eq!(in_use.kind(), ErrorKind::Conflict);
        let bad = e(
            400,
            r#"{"badRequest": {"code": 400, "message": "Invalid input"}}"#,
        );
        assert!(!bad.is_temporary());
        assert!(!e(403, "{}").is_temporary());
        assert_eq!(e(404, "{}").kind(), ErrorKind::NotFound);
        assert!(!e(404, "{}").is_temporary());
    }

    #[test]
    fn keystone_errors_and_long_bodies_are_read() {
        assert_eq!(
            error_message(br#"{"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}"#),
            "The request you have made requires authentication."
        );
        let long = "x".repeat(5000);
        assert!(error_message(long.as_bytes()).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn openstack_times_parse_as_utc() {
        let a = parse_time("2024-05-01T10:00:00.000000Z").unwrap();
        let b = parse_time("2024-05-01T10:00:00.000000").unwrap();
        let c = parse_time("2024-05-01T10:00:00+00:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(parse_time("yesterday").is_none());
    }
}
