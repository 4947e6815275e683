//! `[monitor] type = "prometheus"`: where Prometheus is, what to ask it, and which series is which host.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use freezer_dr_core::{Error, HostId, Result, Secret};
use reqwest::Url;
use serde::Deserialize;

/// The configuration of a [`PrometheusMonitor`](crate::PrometheusMonitor).
///
/// Which series is which host: either `hosts` maps each exact Nova host name to the value of `label`
/// (default `instance`) in its series, or `host_label` names a label whose value already is the Nova
/// host name.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Prometheus's root URL (`http://prometheus.example.org:9090`, or with a path prefix such as
    /// `https://monitoring.example.org/prometheus`); the API path `api/v1/query` is added.
    pub url: String,
    /// The PromQL query whose result lists the hosts that are down (default `up{job="node"} == 0`).
    #[serde(default = "default_down_query")]
    pub down_query: String,
    /// The PromQL query whose result lists the hosts Prometheus has fresh data about (default
    /// `up{job="node"}`). A host in neither result is unknown (its series went stale, or was never
    /// scraped), never up.
    #[serde(default = "default_present_query")]
    pub present_query: String,
    /// The label whose value identifies a host in `hosts` (default `instance`).
    pub label: Option<String>,
    /// Each exact Nova host name and the value of `label` in its series (`"compute-1" =
    /// "10.0.0.11:9100"`). Only these hosts are observed, each in every observation.
    #[serde(default)]
    pub hosts: BTreeMap<String, String>,
    /// Instead of `label` and `hosts`: a label whose value is the exact Nova host name. The hosts are
    /// those the queries list; one listed before and missing now is unknown.
    pub host_label: Option<String>,
    /// A bearer token (`Authorization: Bearer`): a string, `{ file = "/path" }` or `{ env = "VAR" }`.
    pub bearer_token: Option<Secret>,
    /// HTTP basic authentication: the user name (with `password`).
    pub username: Option<String>,
    /// HTTP basic authentication: the password (with `username`).
    pub password: Option<Secret>,
    /// The CA bundle (PEM) Prometheus's certificate must chain to; only it is trusted. Unset: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// The longest one query may take (connecting included); also sent to Prometheus as the query's
    /// own `timeout`. Both queries of an observation run at once.
    #[serde(
        default = "default_timeout",
        with = "freezer_dr_core::config::duration"
    )]
    pub timeout: Duration,
}

impl fmt::Debug for PrometheusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusConfig")
            .field("url", &redact_url(&self.url))
            .field("down_query", &self.down_query)
            .field("present_query", &self.present_query)
            .field("label", &self.label)
            .field("hosts", &self.hosts)
            .field("host_label", &self.host_label)
            .field("bearer_token", &self.bearer_token)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl PrometheusConfig {
    /// A config for Prometheus at `url`, with the default queries and label and no host yet.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            down_query: default_down_query(),
            present_query: default_present_query(),
            label: None,
            hosts: BTreeMap::new(),
            host_label: None,
            bearer_token: None,
            username: None,
            password: None,
            ca_file: None,
            timeout: default_timeout(),
        }
    }
}

/// `url` with any credentials in it replaced, for `Debug`.
fn redact_url(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, rest)) if url.contains("://") => format!("<credentials redacted>@{rest}"),
        _ => url.to_owned(),
    }
}

fn default_down_query() -> String {
    "up{job=\"node\"} == 0".to_owned()
}
fn default_present_query() -> String {
    "up{job=\"node\"}".to_owned()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The label a mapped host's series is found by, unless `label` says otherwise.
pub const DEFAULT_LABEL: &str = "instance";
/// The longest `timeout` accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// Which series is which host.
#[derive(Clone, Debug)]
pub(crate) enum Hosts {
    /// `label`'s value → the host.
    Mapped {
        label: String,
        by_value: BTreeMap<String, HostId>,
    },
    /// The value of this label is the host name.
    Named(String),
}

/// The config with every default applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub query_url: Url,
    pub down_query: String,
    pub present_query: String,
    pub hosts: Hosts,
    pub auth: Auth,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl PrometheusConfig {
    /// Applies the defaults and checks everything; every problem names its key under `section`.
    pub(crate) fn resolve(&self, section: &str) -> Result<Resolved> {
        let mut problems = Vec::new();
        let query_url = match query_url(&self.url) {
            Ok(u) => Some(u),
            Err(why) => {
                problems.push(format!("{section}.url: {why}"));
                None
            }
        };
        for (key, q) in [
            ("down_query", &self.down_query),
            ("present_query", &self.present_query),
        ] {
            if q.trim().is_empty() {
                problems.push(format!(
                    "{section}.{key}: empty; give a PromQL query, e.g. {key} = {:?}",
                    if key == "down_query" {
                        default_down_query()
                    } else {
                        default_present_query()
                    }
                ));
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            problems.push(format!(
                "{section}.timeout: out of range; give a duration from 1ms to 5m, e.g. \"10s\""
            ));
        }
        let hosts = self.resolve_hosts(section, &mut problems);
        let auth = self.resolve_auth(section, &mut problems);
        match (query_url, hosts) {
            (Some(query_url), Some(hosts)) if problems.is_empty() => Ok(Resolved {
                query_url,
                down_query: self.down_query.trim().to_owned(),
                present_query: self.present_query.trim().to_owned(),
                hosts,
                auth,
                ca_file: self.ca_file.clone(),
                timeout: self.timeout,
            }),
            _ => Err(Error::config(problems.join("\n"))),
        }
    }

    fn resolve_hosts(&self, section: &str, problems: &mut Vec<String>) -> Option<Hosts> {
        if let Some(named) = &self.host_label {
            if !self.hosts.is_empty() || self.label.is_some() {
                problems.push(format!(
                    "{section}.host_label: set together with label/hosts; keep host_label when the \
                     series carry the Nova host name, or label and hosts to map them"
                ));
                return None;
            }
            if !is_label_name(named) {
                problems.push(format!(
                    "{section}.host_label: {named:?} is not a Prometheus label name"
                ));
                return None;
            }
            return Some(Hosts::Named(named.clone()));
        }
        let label = self.label.as_deref().unwrap_or(DEFAULT_LABEL);
        if !is_label_name(label) {
            problems.push(format!(
                "{section}.label: {label:?} is not a Prometheus label name"
            ));
        }
        if self.hosts.is_empty() {
            problems.push(format!(
                "{section}.hosts: empty; map each exact Nova host name to its series' {label} label, \
                 e.g. [{section}.hosts] compute-1 = \"10.0.0.11:9100\" (or set host_label when the \
                 series carry the host name)"
            ));
            return None;
        }
        let mut by_value: BTreeMap<String, HostId> = BTreeMap::new();
        for (host, value) in &self.hosts {
            let key = format!("{section}.hosts.{host:?}");
            if host.is_empty() || host.trim() != host {
                problems.push(format!(
                    "{key}: not a host name; use the exact Nova compute host name"
                ));
            }
            if value.is_empty() {
                problems.push(format!(
                    "{key}: empty; give the value of its series' {label} label, e.g. \"10.0.0.11:9100\""
                ));
                continue;
            }
            if let Some(other) = by_value.insert(value.clone(), HostId::new(host.as_str())) {
                problems.push(format!(
                    "{key}: {label}={value:?} is also the series of {:?}; each series belongs to one host",
                    other.as_str()
                ));
            }
        }
        Some(Hosts::Mapped {
            label: label.to_owned(),
            by_value,
        })
    }

    fn resolve_auth(&self, section: &str, problems: &mut Vec<String>) -> Auth {
        match (&self.bearer_token, &self.username, &self.password) {
            (None, None, None) => Auth::None,
            (Some(t), None, None) => Auth::Bearer(t.clone()),
            (None, Some(u), Some(p)) => {
                if u.contains(':') || u.is_empty() {
                    problems.push(format!(
                        "{section}.username: empty or contains ':', which HTTP basic authentication \
                         cannot carry"
                    ));
                }
                Auth::Basic {
                    username: u.clone(),
                    password: p.clone(),
                }
            }
            (Some(_), _, _) => {
                problems.push(format!(
                    "{section}.bearer_token: set together with username/password; keep one way to \
                     authenticate"
                ));
                Auth::None
            }
            (None, Some(_), None) => {
                problems.push(format!(
                    "{section}.password: missing (basic authentication needs username and password; \
                     {{ file = \"/path\" }} keeps it out of the config)"
                ));
                Auth::None
            }
            (None, None, Some(_)) => {
                problems.push(format!(
                    "{section}.username: missing (basic authentication needs username and password)"
                ));
                Auth::None
            }
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, as Prometheus names labels.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The query endpoint under Prometheus's root URL; the error says the fix (and never echoes a URL
/// that holds a credential).
fn query_url(text: &str) -> std::result::Result<Url, String> {
    let text = text.trim();
    let mut url = Url::parse(text)
        .map_err(|e| format!("{text:?} is not a URL ({e}); e.g. \"http://prometheus:9090\""))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "holds credentials; put them in username and password (or bearer_token), never in the URL"
                .into(),
        );
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} names no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?}: give Prometheus's root URL, without a query; the API path is added"
        ));
    }
    if url.path().trim_end_matches('/').ends_with("/api/v1/query") {
        return Err(format!(
            "{text:?}: give Prometheus's root URL (without /api/v1/query); the API path is added"
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join("api/v1/query")
        .map_err(|e| format!("{text:?}: cannot add the API path ({e})"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<Resolved> {
        let cfg: PrometheusConfig =
            toml::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        cfg.resolve("monitor")
    }

    #[test]
    fn the_defaults_and_a_path_prefix() {
        let r = parse(
            "url = \"https://monitoring.example.org/prometheus\"\n\
             [hosts]\ncompute-1 = \"10.0.0.11:9100\"\ncompute-2 = \"10.0.0.12:9100\"\n",
        )
        .unwrap();
        assert_eq!(
            r.query_url.as_str(),
            "https://monitoring.example.org/prometheus/api/v1/query"
        );
        assert_eq!(r.down_query, "up{job=\"node\"} == 0");
        assert_eq!(r.present_query, "up{job=\"node\"}");
        assert_eq!(r.timeout, Duration::from_secs(10));
        let Hosts::Mapped { label, by_value } = &r.hosts else {
            panic!("{:?}", r.hosts);
        };
        assert_eq!(label, "instance");
        assert_eq!(by_value["10.0.0.12:9100"], HostId::from("compute-2"));
        assert!(matches!(r.auth, Auth::None));
        let r =
            parse("url = \"http://p:9090/\"\nhost_label = \"nodename\"\nbearer_token = \"t\"\n")
                .unwrap();
        assert_eq!(r.query_url.as_str(), "http://p:9090/api/v1/query");
        assert!(matches!(&r.hosts, Hosts::Named(l) if l == "nodename"));
        assert!(matches!(r.auth, Auth::Bearer(_)));
    }

    #[test]
    fn every_problem_names_its_key_and_the_fix_and_never_a_secret() {
        let e = parse(
            r#"
            url = "http://admin:Hunter2-Canary@prometheus:9090"
            down_query = " "
            label = "in-stance"
            timeout = "0s"
            bearer_token = "Hunter2-Canary"
            password = "Hunter2-Canary"
            [hosts]
            compute-1 = "10.0.0.11:9100"
            compute-2 = "10.0.0.11:9100"
            compute-3 = ""
            " compute-4" = "x"
            "#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "monitor.url: holds credentials",
            "monitor.down_query: empty; give a PromQL query, e.g. down_query = \"up{job=\\\"node\\\"} == 0\"",
            "monitor.label: \"in-stance\" is not a Prometheus label name",
            "monitor.timeout: out of range",
            "monitor.bearer_token: set together with username/password",
            "monitor.hosts.\"compute-2\": in-stance=\"10.0.0.11:9100\" is also the series of \"compute-1\"",
            "monitor.hosts.\"compute-3\": empty; give the value of its series' in-stance label",
            "monitor.hosts.\" compute-4\": not a host name",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        assert!(!e.contains("Hunter2"), "{e}");
        for (text, want) in [
            (
                "url = \"prometheus:9090\"\nhost_label = \"h\"\n",
                "monitor.url: \"prometheus:9090\": the scheme must be http or https",
            ),
            (
                "url = \"http://p/api/v1/query\"\nhost_label = \"h\"\n",
                "without /api/v1/query",
            ),
            (
                "url = \"http://p\"\n",
                "monitor.hosts: empty; map each exact Nova host name",
            ),
            (
                "url = \"http://p\"\nhost_label = \"h\"\nlabel = \"instance\"\n",
                "monitor.host_label: set together with label/hosts",
            ),
            (
                "url = \"http://p\"\nhost_label = \"h\"\nusername = \"u\"\n",
                "monitor.password: missing",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn debug_hides_every_secret() {
        let mut c = PrometheusConfig::new("http://u:Hunter2-Canary@p:9090");
        c.bearer_token = Some(Secret::new("Hunter2-Canary"));
        c.password = Some(Secret::new("Hunter2-Canary"));
        let d = format!("{c:?}");
        assert!(!d.contains("Hunter2"), "{d}");
        assert!(d.contains("<credentials redacted>@p:9090"), "{d}");
    }
}
