//! `[[fencer]] type = "libvirt"`: which daemon, which domains, which credentials, how long to wait.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use freezer_dr_core::config::duration;
use freezer_dr_core::{Error, HostId, Result, Secret};
use serde::Deserialize;

/// The configuration of a [`crate::LibvirtFencer`].
///
/// A host is fenced only if it is listed, either in `hosts` (its domain has the host's own name) or as a
/// key of `domains` (its domain is the value). A host the fencer does not list is not handled, so an
/// unlisted host is never powered off by accident, even if a domain of that name exists.
///
/// ```toml
/// [[fencer]]
/// type = "libvirt"
/// uri = "qemu+ssh://fence@hypervisor-1/system"
/// hosts = ["compute-1", "compute-2"]             # domain named like the host
/// domains = { "compute-3.example.org" = "compute-3" }
/// timeout = "20s"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibvirtConfig {
    /// The libvirt connection URI, any libvirt accepts: `qemu+ssh://user@host/system`,
    /// `qemu+tls://host/system`, `test+tcp://127.0.0.1:16509/default`, `test:///abs/path/node.xml`.
    pub uri: String,
    /// Hosts whose libvirt domain has exactly the host's name (Nova's `os-services` host).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Hosts whose domain has another name: Nova host name → libvirt domain name.
    #[serde(default)]
    pub domains: BTreeMap<String, String>,
    /// User name for URIs whose daemon asks for one (SASL), given to libvirt's auth callback.
    pub username: Option<String>,
    /// Password or passphrase for URIs whose daemon asks for one (SASL), given to libvirt's auth callback.
    pub password: Option<Secret>,
    /// Time limit on each libvirt call, connecting included (default 20 s). A call past it is a temporary
    /// `timeout` error and the connection is opened afresh next time.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// If set, `power_off` first asks the guest to shut down (ACPI) and waits up to this long for the domain
    /// to read shut off before it destroys it (hard off). Unset (the default): destroy at once. The
    /// runtime's `recovery.call_timeout` must exceed this plus two `timeout`s.
    #[serde(default, with = "optional_duration")]
    pub graceful_shutdown: Option<Duration>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(20)
}

mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "expected a duration such as \"30s\" or \"2m\", got {s:?} ({e})"
            ))
        })
    }
}

impl LibvirtConfig {
    /// A config for `uri` fencing `hosts`, each through the domain of the same name, with default timeouts
    /// and no credentials.
    pub fn new(uri: impl Into<String>, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            uri: uri.into(),
            hosts: hosts.into_iter().map(Into::into).collect(),
            domains: BTreeMap::new(),
            username: None,
            password: None,
            timeout: default_timeout(),
            graceful_shutdown: None,
        }
    }

    /// Checks the config and returns the host → domain map it describes.
    pub(crate) fn domain_map(&self) -> Result<BTreeMap<HostId, String>> {
        if self.uri.trim().is_empty() {
            return Err(Error::config(
                "uri: is empty; set the libvirt URI, e.g. \"qemu+ssh://user@hypervisor/system\"",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("timeout: must be more than 0s"));
        }
        if self.graceful_shutdown.is_some_and(|d| d.is_zero()) {
            return Err(Error::config(
                "graceful_shutdown: must be more than 0s; remove it to destroy at once",
            ));
        }
        let mut map = BTreeMap::new();
        let pairs = self
            .hosts
            .iter()
            .map(|h| (h, h, "hosts"))
            .chain(self.domains.iter().map(|(h, d)| (h, d, "domains")));
        for (host, domain, key) in pairs {
            if host.is_empty() || domain.is_empty() {
                return Err(Error::config(format!(
                    "{key}: host and domain names must not be empty"
                )));
            }
            if map
                .insert(HostId::from(host.as_str()), domain.clone())
                .is_some()
            {
                return Err(Error::config(format!(
                    "{key}: host {host:?} is listed twice (in `hosts` and `domains`, or twice in `hosts`); \
                     list each host once"
                )));
            }
        }
        if map.is_empty() {
            return Err(Error::config(
                "hosts/domains: no host is listed; list the hosts this fencer may power off in `hosts` \
                 (domain of the same name) or `domains` (host = \"domain\")",
            ));
        }
        let mut seen = BTreeSet::new();
        for (host, domain) in &map {
            if !seen.insert(domain) {
                return Err(Error::config(format!(
                    "domains: domain {domain:?} is mapped from several hosts (one is {host:?}); fencing one \
                     host would power off another's domain"
                )));
            }
        }
        Ok(map)
    }
}

impl fmt::Debug for LibvirtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibvirtConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("hosts", &self.hosts)
            .field("domains", &self.domains)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("graceful_shutdown", &self.graceful_shutdown)
            .finish()
    }
}

/// The URI without a password in its user part (`qemu+ssh://user:pw@host` → `qemu+ssh://user:<redacted>@host`):
/// libvirt does not use one there, but an operator may have written it.
pub(crate) fn redact_uri(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}{tail}"),
            None => uri.to_owned(),
        },
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn redacts_a_password_in_the_uri() {
        assert_eq!(
            redact_uri("qemu+ssh://root:hunter2@h1/system?keyfile=/k"),
            "qemu+ssh://root:<redacted>@h1/system?keyfile=/k"
        );
        assert_eq!(
            redact_uri("qemu+ssh://root@h1/system"),
            "qemu+ssh://root@h1/system"
        );
        assert_eq!(redact_uri("test:///tmp/a:b@c.xml"), "test:///tmp/a:b@c.xml");
    }

    #[test]
    fn maps_listed_hosts_only_and_refuses_ambiguity() {
        let mut c = LibvirtConfig::new("test:///default", ["compute-1"]);
        c.domains
            .insert("compute-2.example".into(), "compute-2".into());
        let m = c.domain_map().unwrap();
        assert_eq!(m.get(&HostId::from("compute-1")).unwrap(), "compute-1");
        assert_eq!(
            m.get(&HostId::from("compute-2.example")).unwrap(),
            "compute-2"
        );
        assert_eq!(m.len(), 2);

        c.domains.insert("compute-1".into(), "other".into());
        assert!(c.domain_map().unwrap_err().to_string().contains("twice"));

        let mut c = LibvirtConfig::new("test:///default", Vec::<String>::new());
        assert!(c.domain_map().unwrap_err().to_string().contains("no host"));
        c.domains.insert("a".into(), "dom".into());
        c.domains.insert("b".into(), "dom".into());
        assert!(
            c.domain_map()
                .unwrap_err()
                .to_string()
                .contains("several hosts")
        );
    }
}
