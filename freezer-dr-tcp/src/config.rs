//! `[monitor] type = "tcp"`: each host's addresses, and the defaults they inherit.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use freezer_dr_core::{Error, HostId, Result};
use serde::Deserialize;

/// The configuration of a [`TcpMonitor`](crate::TcpMonitor): the addresses of each host, keyed by its
/// exact Nova compute host name, and the defaults they inherit.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// The addresses of each host, keyed by its exact Nova compute host name. Only these hosts are
    /// observed.
    pub hosts: BTreeMap<String, TcpHostConfig>,
    /// The port of an address written without one (e.g. `22`, sshd), unless its host sets another.
    pub port: Option<u16>,
    /// How long one probe waits for the connection (every probe of an observation runs at once, so an
    /// observation takes about this long at most).
    #[serde(
        default = "default_timeout",
        with = "freezer_dr_core::config::duration"
    )]
    pub timeout: Duration,
}

/// One host's addresses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpHostConfig {
    /// `"10.0.0.11:22"`, `"[fd00::11]:22"`, or an address without a port (`"10.1.0.11"`, `"fd00::11"`)
    /// that takes the host's or the section's `port`. IP literals only: no name is resolved.
    pub addresses: Vec<String>,
    /// The port of this host's addresses written without one (default: the section's `port`).
    pub port: Option<u16>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

/// The longest `timeout` accepted: a probe that takes longer says nothing a shorter one would not, and
/// the observation waits for it.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

impl TcpConfig {
    /// Applies the defaults and checks every address; errors name the key under `section`.
    pub(crate) fn resolve(&self, section: &str) -> Result<BTreeMap<HostId, Vec<SocketAddr>>> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            problems.push(format!(
                "{section}.timeout: {} is out of range; give a duration from 1ms to 1m, e.g. \"2s\"",
                humantime_like(self.timeout)
            ));
        }
        if self.port == Some(0) {
            problems.push(format!("{section}.port: 0 is not a port"));
        }
        if self.hosts.is_empty() {
            return Err(Error::config(
                std::iter::once(format!(
                    "{section}.hosts: empty; list each host's addresses, e.g. \
                     [{section}.hosts.compute-1] addresses = [\"10.0.0.11:22\", \"10.1.0.11:22\"]"
                ))
                .chain(problems)
                .collect::<Vec<_>>()
                .join("\n"),
            ));
        }
        let resolved = freezer_dr_core::config::resolve_hosts(
            section,
            &self.hosts,
            "addresses = [\"10.0.0.11:22\"]",
            problems,
            |_, h, key| self.resolve_host(h, key),
        )?;
        // Two hosts answering on one address would make each look alive while the other is dead.
        let mut owner: BTreeMap<SocketAddr, &HostId> = BTreeMap::new();
        let mut problems = Vec::new();
        for (host, addrs) in &resolved {
            for a in addrs {
                if let Some(first) = owner.insert(*a, host) {
                    problems.push(format!(
                        "{section}.hosts.{:?}.addresses: {a} is also an address of {:?}; each \
                         address belongs to one host",
                        host.as_str(),
                        first.as_str()
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(resolved)
        } else {
            Err(Error::config(problems.join("\n")))
        }
    }

    fn resolve_host(
        &self,
        h: &TcpHostConfig,
        key: &str,
    ) -> std::result::Result<Vec<SocketAddr>, Vec<String>> {
        let mut problems = Vec::new();
        if h.port == Some(0) {
            problems.push(format!("{key}.port: 0 is not a port"));
        }
        if h.addresses.is_empty() {
            problems.push(format!(
                "{key}.addresses: empty; give at least one, e.g. addresses = [\"10.0.0.11:22\"]"
            ));
        }
        let port = h.port.or(self.port).filter(|p| *p != 0);
        let mut out: Vec<SocketAddr> = Vec::new();
        for (i, text) in h.addresses.iter().enumerate() {
            match parse_address(text, port) {
                Ok(a) if out.contains(&a) => {
                    problems.push(format!("{key}.addresses[{i}]: {a} is listed twice"));
                }
                Ok(a) => out.push(a),
                Err(why) => problems.push(format!("{key}.addresses[{i}]: {why}")),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

/// `ip:port`, `[v6]:port`, or a bare IP with `default_port`; the error says the fix.
fn parse_address(text: &str, default_port: Option<u16>) -> std::result::Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(format!("{text:?}: 0 is not a port"));
        }
        return Ok(a);
    }
    let bare = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    match bare.parse::<IpAddr>() {
        Ok(ip) => match default_port {
            Some(p) => Ok(SocketAddr::new(ip, p)),
            None => Err(format!(
                "{text:?} has no port; write it as \"{t}:22\", or set port for the host or the section"
            )),
        },
        Err(_) => Err(format!(
            "{text:?} is not an IP address with a port; write it like \"10.0.0.11:22\" or \
             \"[fd00::11]:22\" (names are not resolved: a name server outage must not read as every \
             host down)"
        )),
    }
}

/// A duration as the config writes it, for messages.
fn humantime_like(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("\"{}s\"", d.as_secs())
    } else {
        format!("\"{}ms\"", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<HostId, Vec<SocketAddr>>> {
        let cfg: TcpConfig = toml::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        cfg.resolve("monitor")
    }

    #[test]
    fn addresses_take_the_host_s_or_the_section_s_port() {
        let hosts = parse(
            r#"
            port = 22
            timeout = "500ms"
            [hosts.compute-1]
            addresses = ["10.0.0.11", "10.1.0.11:2222", "fd00::11", "[fd00::12]:7"]
            [hosts.compute-2]
            port = 2049
            addresses = ["10.0.0.12", "[fd00::22]"]
            "#,
        )
        .unwrap();
        let a: Vec<String> = hosts[&HostId::from("compute-1")]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            a,
            [
                "10.0.0.11:22",
                "10.1.0.11:2222",
                "[fd00::11]:22",
                "[fd00::12]:7"
            ]
        );
        let b: Vec<String> = hosts[&HostId::from("compute-2")]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(b, ["10.0.0.12:2049", "[fd00::22]:2049"]);
    }

    #[test]
    fn every_problem_names_its_key_and_the_fix() {
        let e = parse(
            r#"
            timeout = "0s"
            [hosts.compute-1]
            addresses = ["10.0.0.11", "compute-1.example.org:22", "10.0.0.13:0"]
            [hosts.compute-2]
            addresses = []
            [hosts.compute-3]
            port = 22
            addresses = ["10.0.0.31", "10.0.0.31:22"]
            [hosts.compute-4]
            addresses = ["10.0.0.31:22"]
            [hosts." compute-5"]
            addresses = ["10.0.0.51:22"]
            "#,
        )
        .unwrap_err()
        .to_string();
        for want in [
            "monitor.timeout: \"0s\" is out of range; give a duration from 1ms to 1m",
            "monitor.hosts.\"compute-1\".addresses[0]: \"10.0.0.11\" has no port; write it as \"10.0.0.11:22\"",
            "monitor.hosts.\"compute-1\".addresses[1]: \"compute-1.example.org:22\" is not an IP address",
            "monitor.hosts.\"compute-1\".addresses[2]: \"10.0.0.13:0\": 0 is not a port",
            "monitor.hosts.\"compute-2\".addresses: empty",
            "monitor.hosts.\"compute-3\".addresses[1]: 10.0.0.31:22 is listed twice",
            "monitor.hosts.\" compute-5\": not a host name",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
        let e = parse(
            "[hosts.compute-3]\naddresses = [\"10.0.0.31:22\"]\n\
             [hosts.compute-4]\naddresses = [\"10.0.0.31:22\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "monitor.hosts.\"compute-4\".addresses: 10.0.0.31:22 is also an address of \"compute-3\""
            ),
            "{e}"
        );
    }

    #[test]
    fn an_empty_inventory_and_a_long_timeout_are_refused() {
        let e = parse("timeout = \"2m\"\n[hosts]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("monitor.hosts: empty; list each host's addresses"),
            "{e}"
        );
        assert!(
            e.contains("monitor.timeout: \"120s\" is out of range"),
            "{e}"
        );
    }
}
