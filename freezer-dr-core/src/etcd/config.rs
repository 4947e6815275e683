//! `[ha]`: the HA section of the config file, and its checks (compiled with or without the `etcd` feature,
//! so a config with `[ha]` is read, and refused clearly, by a binary built without it).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::policy::duration;

/// `[ha]`: active/passive high availability. Without it freezer-dr runs alone on the embedded journal.
///
/// Several freezer-dr processes with the same `[ha]` section (same etcd, same `election`) elect one
/// leader on an etcd lease; only the leader observes and acts, and its journal lives in etcd so a standby
/// resumes where it stopped. `Debug` never shows the password.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// The coordination service: `"etcd"` (the only one).
    pub backend: HaBackend,
    /// The etcd client URLs, e.g. `["https://10.0.0.1:2379", "https://10.0.0.2:2379"]`.
    pub endpoints: Vec<String>,
    /// The election's name: freezer-dr processes with the same name (on the same etcd) form one
    /// active/passive group, and their journal lives under `/freezer-dr/<election>/` in etcd.
    #[serde(default = "HaConfig::default_election")]
    pub election: String,
    /// The leader's lease: a standby takes over at most this long after the leader died. The leader
    /// itself stops acting once it has not renewed the lease for this long minus a margin (a quarter of
    /// it), whatever etcd says, so a frozen etcd or a network partition cannot leave two acting.
    #[serde(default = "HaConfig::default_lease_ttl", with = "duration")]
    pub lease_ttl: Duration,
    /// Time limit on every etcd request.
    #[serde(default = "HaConfig::default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// `[ha.tls]`: TLS to etcd (use `https://` endpoints with it).
    pub tls: Option<HaTlsConfig>,
    /// etcd user (with `password`), when etcd has authentication enabled.
    pub user: Option<String>,
    /// The etcd user's password: a string, `{ file = "..." }` or `{ env = "..." }`.
    pub password: Option<crate::Secret>,
    /// Most operations in one etcd transaction: etcd's `--max-txn-ops` (default 128). A journal write that
    /// needs more is refused whole, never written in parts.
    #[serde(default = "HaConfig::default_max_txn_ops")]
    pub max_txn_ops: usize,
    /// Largest etcd request in bytes: etcd's `--max-request-bytes` (default 1.5 MiB).
    #[serde(default = "HaConfig::default_max_request_bytes")]
    pub max_request_bytes: usize,
}

impl HaConfig {
    fn default_election() -> String {
        "default".to_owned()
    }
    fn default_lease_ttl() -> Duration {
        Duration::from_secs(10)
    }
    fn default_request_timeout() -> Duration {
        Duration::from_secs(5)
    }
    fn default_max_txn_ops() -> usize {
        128
    }
    fn default_max_request_bytes() -> usize {
        1536 * 1024
    }

    /// An `[ha]` section for etcd at `endpoints`, with every other option at its default.
    pub fn etcd(endpoints: Vec<String>) -> Self {
        Self {
            backend: HaBackend::Etcd,
            endpoints,
            election: Self::default_election(),
            lease_ttl: Self::default_lease_ttl(),
            request_timeout: Self::default_request_timeout(),
            tls: None,
            user: None,
            password: None,
            max_txn_ops: Self::default_max_txn_ops(),
            max_request_bytes: Self::default_max_request_bytes(),
        }
    }
}

/// `[ha] backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaBackend {
    /// etcd v3 (3.4 or later).
    Etcd,
}

/// `[ha.tls]`: TLS to etcd.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaTlsConfig {
    /// PEM file of the CA that signed etcd's certificate.
    pub ca_file: PathBuf,
    /// PEM client certificate, when etcd requires one (`--client-cert-auth`); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// A working `[ha]` section, printed in errors about it.
pub const HA_EXAMPLE: &str = r#"[ha]
backend = "etcd"
endpoints = ["http://127.0.0.1:2379"]
election = "default"
lease_ttl = "10s"
"#;

/// Value checks of `[ha]` serde cannot express: each problem is (key, what is wrong and how to fix it).
pub(crate) fn check(ha: &HaConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut problem = |key: &str, what: String| problems.push((format!("ha.{key}"), what));
    if ha.endpoints.is_empty() {
        problem(
            "endpoints",
            "must list at least one etcd client URL, e.g. `endpoints = [\"http://127.0.0.1:2379\"]`"
                .to_owned(),
        );
    }
    for (i, e) in ha.endpoints.iter().enumerate() {
        let scheme_ok = e.starts_with("http://") || e.starts_with("https://");
        if !scheme_ok {
            problem(
                &format!("endpoints[{i}]"),
                format!(
                    "{e:?} is not an etcd client URL: write it as \"http://host:2379\" or \"https://host:2379\""
                ),
            );
        } else if ha.tls.is_some() && e.starts_with("http://") {
            problem(
                &format!("endpoints[{i}]"),
                format!("[ha.tls] is set but {e:?} is plain http: write https://"),
            );
        }
    }
    let election_ok = !ha.election.is_empty()
        && ha
            .election
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !election_ok {
        problem(
            "election",
            format!(
                "{:?}: use letters, digits, '-', '_' or '.', e.g. `election = \"region-one\"`",
                ha.election
            ),
        );
    }
    if ha.lease_ttl < Duration::from_secs(2) || ha.lease_ttl.subsec_nanos() != 0 {
        problem(
            "lease_ttl",
            format!(
                "must be whole seconds, at least 2s (etcd's shortest lease), found {}, e.g. `lease_ttl = \"10s\"`",
                humantime::format_duration(ha.lease_ttl)
            ),
        );
    }
    if ha.request_timeout.is_zero() {
        problem(
            "request_timeout",
            "must be longer than 0s, e.g. `request_timeout = \"5s\"`".to_owned(),
        );
    }
    match (&ha.user, &ha.password) {
        (Some(_), None) => problem(
            "password",
            "missing: `user` is set, so give its password (a string, { file = \"...\" } or { env = \"...\" })"
                .to_owned(),
        ),
        (None, Some(_)) => problem(
            "user",
            "missing: `password` is set, so name the etcd user it belongs to".to_owned(),
        ),
        _ => {}
    }
    if ha.max_txn_ops < 16 {
        problem(
            "max_txn_ops",
            format!(
                "{} is too small for a journal write: use etcd's --max-txn-ops (default 128)",
                ha.max_txn_ops
            ),
        );
    }
    if ha.max_request_bytes < 64 * 1024 {
        problem(
            "max_request_bytes",
            format!(
                "{} is too small for a journal write: use etcd's --max-request-bytes (default 1572864)",
                ha.max_request_bytes
            ),
        );
    }
    if let Some(tls) = &ha.tls
        && tls.cert_file.is_some() != tls.key_file.is_some()
    {
        problem(
            "tls",
            "cert_file and key_file go together (the client certificate and its key)".to_owned(),
        );
    }
    problems
}
