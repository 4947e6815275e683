//! One PromQL instant query over Prometheus's HTTP API (`POST /api/v1/query`), and the one place where a
//! failed query becomes a classified [`Error`].

use std::collections::BTreeMap;
use std::time::Duration;

use freezer_dr_core::{Error, ErrorKind, Result};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;
use tracing::warn;

use crate::config::{Auth, Resolved};

/// Longest text kept from an error body.
const MAX_MESSAGE: usize = 400;
/// Largest answer read: a result for thousands of hosts is a few MiB; anything bigger is not ours.
const MAX_BODY: usize = 32 << 20;

/// One series of an instant vector: its labels and its value as Prometheus wrote it (`"0"`, `"1"`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: String,
}

/// The HTTP side of one Prometheus.
pub(crate) struct Client {
    http: reqwest::Client,
    url: Url,
    auth: Auth,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `{"status": "success"|"error", "data": ..., "errorType": ..., "error": ..., "warnings": [...]}`.
#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Value,
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[<unix time>, "<value>"]`.
    value: (Value, String),
}

impl Client {
    /// Builds the HTTP client (reads the CA bundle); no network I/O.
    pub fn new(cfg: &Resolved) -> Result<Self> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // Credentials must never follow a redirect elsewhere; Prometheus's API does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("freezer-dr/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!("cannot read ca_file {}: {e}", path.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!("ca_file {} is not PEM: {e}", path.display()))
            })?;
            if certs.is_empty() {
                return Err(Error::config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            // This Prometheus's CA only: a certificate from any public CA is not its.
            b = b.tls_built_in_root_certs(false);
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| Error::config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            url: cfg.query_url.clone(),
            auth: cfg.auth.clone(),
            timeout: cfg.timeout,
        })
    }

    /// `api/v1/query` with `query`, evaluated now; `key` names the config key it came from (for
    /// errors). The result must be an instant vector.
    pub async fn query(&self, key: &str, query: &str) -> Result<Vec<Sample>> {
        let what = format!("Prometheus query {key} `{query}`");
        let timeout = format!("{}ms", self.timeout.as_millis().max(1));
        let mut req = self
            .http
            .post(self.url.clone())
            .header("Accept", "application/json")
            .form(&[("query", query), ("timeout", timeout.as_str())]);
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t.expose()),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| self.transport_error(&what, &e))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(&what, &e))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(self.error(
                    ErrorKind::InvalidResponse,
                    format!("{what}: the answer is larger than {} MiB", MAX_BODY >> 20),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let envelope: Option<Envelope> = serde_json::from_slice(&body).ok();
        match envelope {
            Some(env) if env.status == "success" && status.is_success() => {
                if !env.warnings.is_empty() {
                    // A partial answer (a remote store or a shard missing): used, and said.
                    warn!(query = key, url = %self.url, warnings = ?env.warnings,
                        "Prometheus answered with warnings (partial response?)");
                }
                self.vector(&what, env.data)
            }
            Some(env) if env.status == "error" => Err(self.refused(&what, status, &env)),
            _ if !status.is_success() => Err(self.status_error(&what, status, &body)),
            _ => Err(self
                .error(
                    ErrorKind::InvalidResponse,
                    format!(
                        "{what}: the answer is not a Prometheus API response: {}",
                        excerpt(&body)
                    ),
                )
                .temporary()),
        }
    }

    fn vector(&self, what: &str, data: Option<Data>) -> Result<Vec<Sample>> {
        let Some(data) = data else {
            return Err(self.error(
                ErrorKind::InvalidResponse,
                format!("{what}: the answer has no data"),
            ));
        };
        if data.result_type != "vector" {
            return Err(self.error(
                ErrorKind::Config,
                format!(
                    "{what} returned a {}, not an instant vector; write a query that selects series, \
                     e.g. up{{job=\"node\"}} == 0",
                    data.result_type
                ),
            ));
        }
        let samples: Vec<VectorSample> = serde_json::from_value(data.result).map_err(|e| {
            self.error(
                ErrorKind::InvalidResponse,
                format!("{what}: the vector cannot be read ({e})"),
            )
        })?;
        Ok(samples
            .into_iter()
            .map(|s| Sample {
                labels: s.metric,
                value: s.value.1,
            })
            .collect())
    }

    /// `status: error`: Prometheus's own reason. A query it cannot parse is a config error; one it could
    /// not run in time, or while unavailable, may work later.
    fn refused(&self, what: &str, status: StatusCode, env: &Envelope) -> Error {
        let error_type = env.error_type.as_deref().unwrap_or("unknown");
        let message = shorten(env.error.as_deref().unwrap_or(""));
        let text = format!("{what}: Prometheus refused it ({error_type}): {message}");
        let e = match (error_type, status.as_u16()) {
            ("bad_data", _) | (_, 400) => self.error(ErrorKind::Config, text).permanent(),
            (_, 401 | 403) => self.error(ErrorKind::Auth, text).permanent(),
            ("timeout" | "canceled", _) => self.error(ErrorKind::Timeout, text).temporary(),
            _ => self.error(ErrorKind::PeerFailure, text).temporary(),
        };
        e.with_context("http_status", status.as_u16())
    }

    /// An HTTP error without Prometheus's envelope (a proxy, a wrong URL).
    fn status_error(&self, what: &str, status: StatusCode, body: &[u8]) -> Error {
        let (kind, temporary) = match status.as_u16() {
            401 | 403 => (ErrorKind::Auth, false),
            404 => (ErrorKind::NotFound, false),
            408 | 429 | 500..=599 => (ErrorKind::PeerFailure, true),
            _ => (ErrorKind::Unexpected, false),
        };
        let mut text = format!("{what}: HTTP {status}");
        if status == StatusCode::NOT_FOUND {
            text.push_str(" (is url Prometheus's root URL, with its path prefix if it has one?)");
        }
        let body = excerpt(body);
        if !body.is_empty() {
            text = format!("{text}: {body}");
        }
        let e = self.error(kind, text);
        if temporary {
            e.temporary()
        } else {
            e.permanent()
        }
    }

    /// A failure before any HTTP status: timeout, refused connection, TLS.
    fn transport_error(&self, what: &str, e: &reqwest::Error) -> Error {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Unreachable
        };
        // The innermost cause says why (refused, certificate, ...); reqwest's own text repeats the URL.
        let mut why = String::new();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            why = s.to_string();
            src = s.source();
        }
        let phrase = match kind {
            ErrorKind::Timeout => format!("no answer within {:?}", self.timeout),
            _ => "cannot reach Prometheus".to_owned(),
        };
        let text = if why.is_empty() {
            format!("{what}: {phrase}")
        } else {
            format!("{what}: {phrase} ({why})")
        };
        self.error(kind, text).temporary()
    }

    fn error(&self, kind: ErrorKind, text: String) -> Error {
        Error::new(kind, text).with_context("url", self.url.as_str())
    }
}

fn shorten(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > MAX_MESSAGE {
        let cut: String = text.chars().take(MAX_MESSAGE).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn excerpt(body: &[u8]) -> String {
    shorten(&String::from_utf8_lossy(body))
}
