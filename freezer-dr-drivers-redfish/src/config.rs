//! `[[fencer]] type = "redfish"`: the BMC inventory and how to talk to each BMC.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use freezer_dr_core::{Error, HostId, Result, Secret};
use reqwest::Url;
use serde::Deserialize;

/// The configuration of a [`RedfishFencer`](crate::RedfishFencer): a BMC per host, plus defaults every
/// host inherits unless its own entry says otherwise.
///
/// Option names follow fence_redfish where they mean the same thing: `ip` and `ipport` (for `url`),
/// `login` (for `username`), `passwd` (for `password`), `systems_uri` (for `system`), `ssl_insecure`
/// (for `insecure`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishConfig {
    /// The BMC of each host, keyed by its exact Nova compute host name. A host that is not listed is
    /// not handled by this fencer.
    pub hosts: BTreeMap<String, BmcConfig>,
    /// Default BMC user name.
    #[serde(alias = "login")]
    pub username: Option<String>,
    /// Default BMC password: a string, `{ file = "/path" }` or `{ env = "VARIABLE" }`.
    #[serde(alias = "passwd")]
    pub password: Option<Secret>,
    /// Default system path (`/redfish/v1/Systems/System.Embedded.1`, the same on every host of one
    /// vendor). Unset: the system is found by `system_id`, or is the only one the BMC lists.
    #[serde(alias = "systems_uri")]
    pub system: Option<String>,
    /// Default HTTPS port when a host gives `ip` instead of `url` (443).
    #[serde(alias = "ipport")]
    pub port: Option<u16>,
    /// Default CA bundle (PEM) that the BMCs' certificates must chain to. Unset: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Default for skipping certificate checks (`false`). An explicit opt-in, warned about at start:
    /// anyone on the management network could then pose as the BMC and learn its password.
    #[serde(alias = "ssl_insecure")]
    pub insecure: Option<bool>,
    /// Default authentication: `session` (SessionService, `X-Auth-Token`), `basic` (HTTP basic on
    /// every request) or `auto` (the default: a session when the BMC offers them, basic otherwise).
    pub auth: Option<Auth>,
    /// The longest one HTTP request to one BMC may take (connecting included).
    #[serde(
        default = "default_timeout",
        with = "freezer_dr_core::config::duration"
    )]
    pub timeout: Duration,
    /// The longest a power-off waits for the `Task` of an asynchronous reset (BMCs that answer 202).
    /// Keep `timeout` + `task_timeout` under `[recovery] call_timeout`.
    #[serde(
        default = "default_task_timeout",
        with = "freezer_dr_core::config::duration"
    )]
    pub task_timeout: Duration,
}

/// One host's BMC. Unset options come from the fencer section's defaults.
///
/// `Debug` hides credentials someone wrote into `url` (they are refused when the fencer is built).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcConfig {
    /// The BMC's root URL: `https://bmc.example.org` (or `https://10.0.0.11:8443`).
    pub url: Option<String>,
    /// Instead of `url`: the BMC's address (IP or DNS name), reached over HTTPS.
    #[serde(alias = "ipaddr")]
    pub ip: Option<String>,
    /// With `ip`: the HTTPS port (443).
    #[serde(alias = "ipport")]
    pub port: Option<u16>,
    /// BMC user name.
    #[serde(alias = "login")]
    pub username: Option<String>,
    /// BMC password.
    #[serde(alias = "passwd")]
    pub password: Option<Secret>,
    /// The system's path, e.g. `/redfish/v1/Systems/1`.
    #[serde(alias = "systems_uri")]
    pub system: Option<String>,
    /// Instead of `system`: the system whose `Id` or `UUID` is this, among those the BMC lists.
    pub system_id: Option<String>,
    /// CA bundle (PEM) for this BMC's certificate.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate checks for this BMC (explicit opt-in, warned about).
    #[serde(alias = "ssl_insecure")]
    pub insecure: Option<bool>,
    /// Authentication.
    pub auth: Option<Auth>,
}

impl fmt::Debug for BmcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.as_deref().map(|u| match u.rsplit_once('@') {
            Some((_, rest)) if u.contains("://") => format!("<credentials redacted>@{rest}"),
            _ => u.to_owned(),
        });
        f.debug_struct("BmcConfig")
            .field("url", &url)
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("system", &self.system)
            .field("system_id", &self.system_id)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .field("auth", &self.auth)
            .finish()
    }
}

/// How requests are authenticated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// A Redfish session (`POST` to the SessionService, `X-Auth-Token`), deleted after each call.
    Session,
    /// HTTP basic authentication on every request.
    Basic,
    /// A session when the service root advertises `Links.Sessions`, basic otherwise (the default).
    #[default]
    Auto,
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "session",
            Self::Basic => "basic",
            Self::Auto => "auto",
        })
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_task_timeout() -> Duration {
    Duration::from_secs(20)
}

/// The HTTPS port.
pub const DEFAULT_PORT: u16 = 443;

/// Which system of a BMC is the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SystemRef {
    /// This path.
    Path(String),
    /// The member of the Systems collection whose `Id` or `UUID` is this.
    Id(String),
    /// The only member of the Systems collection.
    Only,
}

/// A host's BMC with every default applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Bmc {
    pub host: HostId,
    /// The root URL, without a trailing slash.
    pub base: Url,
    pub username: String,
    pub password: Secret,
    pub system: SystemRef,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub auth: Auth,
}

impl Bmc {
    /// `scheme://host:port`, for errors and logs (never credentials: the URL has none).
    pub fn target(&self) -> String {
        self.base.origin().ascii_serialization()
    }

    /// `path` (absolute, as Redfish links are) on this BMC.
    pub fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| {
            Error::new(
                freezer_dr_core::ErrorKind::InvalidResponse,
                format!("{path:?} is not a path on the BMC ({e})"),
            )
            .with_context("host", &self.host)
            .with_context("bmc", self.target())
        })
    }
}

impl RedfishConfig {
    /// Applies the defaults to every host and checks the result; errors name the `section` key.
    pub(crate) fn resolve(&self, section: &str) -> Result<BTreeMap<HostId, Bmc>> {
        let mut problems = Vec::new();
        for (key, d) in [
            ("timeout", self.timeout),
            ("task_timeout", self.task_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{section}.{key}: must be more than 0"));
            }
        }
        freezer_dr_core::config::resolve_hosts(
            section,
            &self.hosts,
            "url = \"https://10.0.0.11\"",
            problems,
            |name, h, key| self.resolve_host(name, h, key),
        )
    }

    fn resolve_host(
        &self,
        name: &str,
        h: &BmcConfig,
        key: &str,
    ) -> std::result::Result<Bmc, Vec<String>> {
        let mut problems = Vec::new();
        let base = match base_url(h, self.port) {
            Ok(u) => Some(u),
            Err(why) => {
                problems.push(format!("{key}.{why}"));
                None
            }
        };
        let username = h.username.clone().or_else(|| self.username.clone());
        let password = h.password.clone().or_else(|| self.password.clone());
        match &username {
            None => problems.push(format!(
                "{key}.username: missing (set it here or as the section's default)"
            )),
            Some(u) if u.contains(':') => problems.push(format!(
                "{key}.username: contains ':', which HTTP basic authentication cannot carry"
            )),
            Some(_) => {}
        }
        if password.is_none() {
            problems.push(format!(
                "{key}.password: missing (set it here or as the section's default; \
                 {{ file = \"/path\" }} keeps it out of the config)"
            ));
        }
        let system = match (&h.system, &h.system_id) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{key}: both system and system_id are set; keep one (system is a path, \
                     system_id the system's Id or UUID)"
                ));
                SystemRef::Only
            }
            (Some(p), None) => SystemRef::Path(p.clone()),
            (None, Some(id)) if id.trim().is_empty() => {
                problems.push(format!("{key}.system_id: empty"));
                SystemRef::Only
            }
            (None, Some(id)) => SystemRef::Id(id.trim().to_owned()),
            (None, None) => match &self.system {
                Some(p) => SystemRef::Path(p.clone()),
                None => SystemRef::Only,
            },
        };
        if let SystemRef::Path(p) = &system
            && (!p.starts_with('/') || p.contains("://") || p.contains(['?', '#']))
        {
            problems.push(format!(
                "{key}.system: {p:?} is not a path on the BMC; write it like \
                 \"/redfish/v1/Systems/1\" (the BMC's address goes in url)"
            ));
        }
        let ca_file = h.ca_file.clone().or_else(|| self.ca_file.clone());
        let insecure = h.insecure.or(self.insecure).unwrap_or(false);
        if insecure && ca_file.is_some() {
            problems.push(format!(
                "{key}: ca_file and insecure = true contradict each other; keep ca_file (the \
                 certificate is then checked) or drop it"
            ));
        }
        let auth = h.auth.or(self.auth).unwrap_or_default();
        let Some(base) = base else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Bmc {
            host: HostId::new(name),
            base,
            username: username.unwrap_or_default(),
            password: password.unwrap_or_else(|| Secret::new("")),
            system,
            ca_file,
            insecure,
            auth,
        })
    }
}

/// The BMC's root URL from `url`, or from `ip` and `port`; the error starts with the key.
fn base_url(h: &BmcConfig, default_port: Option<u16>) -> std::result::Result<Url, String> {
    let text = match (&h.url, &h.ip) {
        (Some(_), Some(_)) => {
            return Err("url: both url and ip are set; keep one".into());
        }
        (None, None) => {
            return Err(
                "url: missing; the BMC's root URL, e.g. url = \"https://10.0.0.11\"".into(),
            );
        }
        (Some(u), None) => {
            if h.port.is_some() {
                return Err("port: goes with ip; put the port in url (https://bmc:8443)".into());
            }
            u.trim().to_owned()
        }
        (None, Some(ip)) => {
            let ip = ip.trim();
            let port = h.port.or(default_port).unwrap_or(DEFAULT_PORT);
            if port == 0 {
                return Err("port: 0 is not a port".into());
            }
            if ip.contains(':') && !ip.starts_with('[') {
                format!("https://[{ip}]:{port}")
            } else {
                format!("https://{ip}:{port}")
            }
        }
    };
    let url = Url::parse(&text).map_err(|e| format!("url: {text:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("url: {text:?}: the scheme must be https (or http)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Never echo the URL: it holds a credential.
        return Err(
            "url: holds credentials; put them in username and password, never in the URL".into(),
        );
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url: {text:?} names no host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "url: {text:?}: give the BMC's root (https://bmc); the Redfish paths are added"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<HostId, Bmc>> {
        let cfg: RedfishConfig = toml::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        cfg.resolve("fencer[0]")
    }

    #[test]
    fn hosts_inherit_the_defaults_and_fence_redfish_names_work() {
        let bmcs = parse(
            r#"
            login = "root"
            passwd = "pw"
            systems_uri = "/redfish/v1/Systems/System.Embedded.1"
            ipport = 8443
            auth = "basic"
            [hosts.compute-1]
            ip = "10.0.0.1"
            [hosts.compute-2]
            url = "https://bmc-2.example.org/"
            username = "admin"
            system_id = "4c4c4544-0042"
            ssl_insecure = true
            auth = "session"
            [hosts.compute-3]
            ip = "fd00::3"
            "#,
        )
        .unwrap();
        let a = &bmcs[&HostId::from("compute-1")];
        assert_eq!(a.target(), "https://10.0.0.1:8443");
        assert_eq!((a.username.as_str(), a.password.expose()), ("root", "pw"));
        assert_eq!(
            a.system,
            SystemRef::Path("/redfish/v1/Systems/System.Embedded.1".into())
        );
        assert_eq!((a.auth, a.insecure), (Auth::Basic, false));
        let b = &bmcs[&HostId::from("compute-2")];
        assert_eq!(b.target(), "https://bmc-2.example.org");
        assert_eq!(b.system, SystemRef::Id("4c4c4544-0042".into()));
        assert_eq!((b.auth, b.insecure), (Auth::Session, true));
        assert_eq!(
            b.url("/redfish/v1/Systems").unwrap().as_str(),
            "https://bmc-2.example.org/redfish/v1/Systems"
        );
        let c = &bmcs[&HostId::from("compute-3")];
        assert_eq!(c.target(), "https://[fd00::3]:8443");
    }

    #[test]
    fn an_unset_system_means_the_only_one_and_durations_parse() {
        let cfg: RedfishConfig = toml::from_str(
            "username = \"a\"\npassword = \"b\"\ntimeout = \"1500ms\"\ntask_timeout = \"5s\"\n\
             [hosts.h]\nurl = \"http://127.0.0.1:8000\"\n",
        )
        .unwrap();
        assert_eq!(cfg.timeout, Duration::from_millis(1500));
        assert_eq!(cfg.task_timeout, Duration::from_secs(5));
        let bmcs = cfg.resolve("fencer[0]").unwrap();
        assert_eq!(bmcs[&HostId::from("h")].system, SystemRef::Only);
        assert_eq!(bmcs[&HostId::from("h")].auth, Auth::Auto);
    }

    #[test]
    fn every_problem_is_named_with_its_key_and_fix_and_never_the_password() {
        let e = parse(
            r#"
            password = "Hunter2-Canary"
            insecure = true
            ca_file = "/etc/ca.pem"
            [hosts.compute-1]
            url = "https://admin:Hunter2-Canary@bmc"
            [hosts.compute-2]
            username = "u"
            [hosts.compute-3]
            username = "u"
            url = "https://bmc/redfish/v1"
            system = "redfish/v1/Systems/1"
            system_id = "x"
            [hosts.compute-4]
            username = "u"
            url = "https://bmc"
            ip = "10.0.0.4"
            [hosts.compute-5]
            username = "u"
            url = "ftp://bmc"
            "#,
        )
        .unwrap_err();
        let msg = e.to_string();
        for want in [
            "fencer[0].hosts.\"compute-1\".url: holds credentials",
            "fencer[0].hosts.\"compute-1\".username: missing",
            "fencer[0].hosts.\"compute-2\".url: missing",
            "fencer[0].hosts.\"compute-3\".url: \"https://bmc/redfish/v1\": give the BMC's root",
            "fencer[0].hosts.\"compute-3\": both system and system_id",
            "fencer[0].hosts.\"compute-4\".url: both url and ip",
            "fencer[0].hosts.\"compute-5\".url: \"ftp://bmc\": the scheme must be https",
        ] {
            assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
        }
        assert!(!msg.contains("Hunter2"), "{msg}");
        let e = parse(
            "username = \"u\"\npassword = \"p\"\ninsecure = true\nca_file = \"/c.pem\"\n\
             [hosts.h]\nurl = \"https://bmc\"\nsystem = \"Systems/1\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("ca_file and insecure = true contradict"), "{e}");
        assert!(
            e.contains("fencer[0].hosts.\"h\".system: \"Systems/1\" is not a path"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_inventory_and_zero_timeouts_are_refused() {
        let e = parse("username = \"a\"\npassword = \"b\"\ntimeout = \"0s\"\n[hosts]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fencer[0].hosts: empty"), "{e}");
        assert!(e.contains("fencer[0].timeout: must be more than 0"), "{e}");
    }
}
