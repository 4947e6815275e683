//! `[[fencer]] type = "ipmi"`: the BMC inventory and how to talk to each BMC.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use freezer_dr_core::{HostId, Result, Secret};
use serde::{Deserialize, Deserializer};

/// The configuration of an [`IpmiFencer`](crate::IpmiFencer): a BMC per host, plus defaults every host
/// inherits unless its own entry says otherwise.
///
/// Option names follow fence-agents where they mean the same thing: `lanplus`, `cipher`, `privlvl`
/// (for `privilege`), `login` (for `username`), `passwd` (for `password`), `ipport` (for `port`),
/// `ip`/`ipaddr` (for `address`), `power_wait`, `power_timeout`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpmiConfig {
    /// The BMC of each host, keyed by its exact Nova compute host name. A host that is not listed is
    /// not handled by this fencer.
    pub hosts: BTreeMap<String, BmcConfig>,
    /// Default BMC user name.
    #[serde(alias = "login")]
    pub username: Option<String>,
    /// Default BMC password: a string, `{ file = "/path" }` or `{ env = "VARIABLE" }`.
    #[serde(alias = "passwd")]
    pub password: Option<Secret>,
    /// Default UDP port (623).
    #[serde(alias = "ipport")]
    pub port: Option<u16>,
    /// Default session privilege: `operator` or `administrator` (the default).
    #[serde(alias = "privlvl")]
    pub privilege: Option<Privilege>,
    /// Default RMCP+ cipher suite (3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128).
    pub cipher: Option<u8>,
    /// Default for IPMI v2.0 RMCP+ (`true`, the default) or IPMI v1.5 LAN (`false`, ipmitool only).
    pub lanplus: Option<bool>,
    /// Default backend: `native` (ipmi-rs), `ipmitool`, or `auto` (the default: native first, ipmitool
    /// when native cannot talk to the BMC).
    pub backend: Option<Backend>,
    /// The longest one call to one BMC may take, retransmits included (per backend; `auto` may use
    /// both). Keep it under `[recovery] call_timeout`.
    #[serde(default = "default_timeout", with = "seconds_or_humantime")]
    pub timeout: Duration,
    /// How long to wait for a reply before sending a lost datagram again (rounded up to whole seconds
    /// for ipmitool's `-N`).
    #[serde(default = "default_retransmit_interval", with = "seconds_or_humantime")]
    pub retransmit_interval: Duration,
    /// How many times a request without a reply is sent again within one call (ipmitool's `-R`).
    #[serde(default = "default_retransmits")]
    pub retransmits: u32,
    /// After a power-off this fencer sent, power-status reads within this time answer `unknown`
    /// (BMCs that report a stale state right after the command). Default 0: no wait. The fencer never
    /// sleeps: the engine keeps polling.
    #[serde(default, with = "seconds_or_humantime")]
    pub power_wait: Duration,
    /// After a power-off this fencer sent, a power status that still does not read off past this time
    /// is reported as an error that says so. Unset: only `[recovery.fencing] confirm_timeout` applies.
    #[serde(default, with = "option_seconds_or_humantime")]
    pub power_timeout: Option<Duration>,
    /// The ipmitool executable (a name looked up in `PATH`, or a path).
    #[serde(default = "default_ipmitool")]
    pub ipmitool: PathBuf,
}

/// One host's BMC. Unset options come from the fencer section's defaults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcConfig {
    /// The BMC's address (IP or DNS name).
    #[serde(alias = "ip", alias = "ipaddr")]
    pub address: String,
    /// UDP port (623).
    #[serde(alias = "ipport")]
    pub port: Option<u16>,
    /// BMC user name.
    #[serde(alias = "login")]
    pub username: Option<String>,
    /// BMC password.
    #[serde(alias = "passwd")]
    pub password: Option<Secret>,
    /// Session privilege.
    #[serde(alias = "privlvl")]
    pub privilege: Option<Privilege>,
    /// RMCP+ cipher suite.
    pub cipher: Option<u8>,
    /// IPMI v2.0 RMCP+ (`true`) or v1.5 LAN (`false`).
    pub lanplus: Option<bool>,
    /// Backend.
    pub backend: Option<Backend>,
}

/// The session privilege level. Chassis control needs at least `operator`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privilege {
    /// Operator.
    Operator,
    /// Administrator (the default, as in fence_ipmilan).
    #[default]
    #[serde(alias = "admin")]
    Administrator,
}

impl Privilege {
    /// The IPMI value (Set Session Privilege Level).
    pub(crate) fn value(self) -> u8 {
        match self {
            Self::Operator => 0x03,
            Self::Administrator => 0x04,
        }
    }

    /// ipmitool's `-L` value.
    pub(crate) fn ipmitool_name(self) -> &'static str {
        match self {
            Self::Operator => "OPERATOR",
            Self::Administrator => "ADMINISTRATOR",
        }
    }
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Operator => "operator",
            Self::Administrator => "administrator",
        })
    }
}

/// Which client talks to a BMC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ipmi-rs in process: RMCP+ with cipher suite 3 and administrator privilege only.
    Native,
    /// The `ipmitool` program: any cipher suite it and the BMC share, IPMI v1.5 too.
    Ipmitool,
    /// Native first; ipmitool when native cannot talk to the BMC (no ASF pong, no RMCP+, a suite or
    /// privilege ipmi-rs cannot request). Never after an authentication failure.
    #[default]
    Auto,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Ipmitool => "ipmitool",
            Self::Auto => "auto",
        })
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retransmit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_retransmits() -> u32 {
    3
}
fn default_ipmitool() -> PathBuf {
    PathBuf::from("ipmitool")
}

/// The IPMI port.
pub const DEFAULT_PORT: u16 = 623;
/// The cipher suite ipmi-rs proposes (and the only one the native backend can use).
pub const NATIVE_CIPHER: u8 = 3;
/// RMCP+ cipher suites defined by IPMI v2.0 (plus 17, HMAC-SHA256 with AES, which ipmitool speaks).
const KNOWN_CIPHERS: std::ops::RangeInclusive<u8> = 0..=17;
/// IPMI v2.0 user names are at most 16 bytes; ipmi-rs silently sends an empty name for longer ones.
const MAX_USERNAME: usize = 16;
/// IPMI v2.0 passwords are at most 20 bytes.
const MAX_PASSWORD: usize = 20;

/// A host's BMC with every default applied and checked.
#[derive(Clone, Debug)]
pub(crate) struct Bmc {
    pub host: HostId,
    pub address: String,
    pub port: u16,
    pub username: String,
    pub password: Secret,
    pub privilege: Privilege,
    pub cipher: u8,
    pub lanplus: bool,
    pub backend: Backend,
}

impl Bmc {
    /// `address:port`, for errors and logs.
    pub fn target(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// Whether ipmi-rs can talk to this BMC as configured, and if not, why.
    pub fn native_unsupported(&self) -> Option<String> {
        if !self.lanplus {
            return Some(
                "lanplus = false (IPMI v1.5): ipmi-rs's RMCP 1.5 authentication is broken".into(),
            );
        }
        if self.cipher != NATIVE_CIPHER {
            return Some(format!(
                "cipher = {}: ipmi-rs only proposes cipher suite {NATIVE_CIPHER}",
                self.cipher
            ));
        }
        if self.privilege != Privilege::Administrator {
            return Some(format!(
                "privilege = {}: ipmi-rs always asks for an administrator session",
                self.privilege
            ));
        }
        None
    }
}

impl IpmiConfig {
    /// Applies the defaults to every host and checks the result; errors name the `section` key.
    pub(crate) fn resolve(&self, section: &str) -> Result<BTreeMap<HostId, Bmc>> {
        let mut problems = Vec::new();
        if self.timeout.is_zero() {
            problems.push(format!("{section}.timeout: must be more than 0"));
        }
        if self.retransmit_interval.is_zero() {
            problems.push(format!(
                "{section}.retransmit_interval: must be more than 0"
            ));
        }
        freezer_dr_core::config::resolve_hosts(
            section,
            &self.hosts,
            "address = \"10.0.0.11\"",
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
        if h.address.trim().is_empty() {
            problems.push(format!("{key}.address: empty"));
        }
        let username = h.username.clone().or_else(|| self.username.clone());
        let password = h.password.clone().or_else(|| self.password.clone());
        let port = h.port.or(self.port).unwrap_or(DEFAULT_PORT);
        let privilege = h.privilege.or(self.privilege).unwrap_or_default();
        let cipher = h.cipher.or(self.cipher).unwrap_or(NATIVE_CIPHER);
        let lanplus = h.lanplus.or(self.lanplus).unwrap_or(true);
        let backend = h.backend.or(self.backend).unwrap_or_default();
        if port == 0 {
            problems.push(format!("{key}.port: 0 is not a port"));
        }
        match &username {
            None => problems.push(format!(
                "{key}.username: missing (set it here or as the section's default)"
            )),
            Some(u) if u.len() > MAX_USERNAME => problems.push(format!(
                "{key}.username: longer than {MAX_USERNAME} bytes (IPMI's limit)"
            )),
            Some(_) => {}
        }
        match &password {
            None => problems.push(format!(
                "{key}.password: missing (set it here or as the section's default; \
                 {{ file = \"/path\" }} keeps it out of the config)"
            )),
            // Never the value, not even its length.
            Some(p) if p.expose().len() > MAX_PASSWORD => problems.push(format!(
                "{key}.password: longer than {MAX_PASSWORD} bytes (IPMI v2.0's limit)"
            )),
            Some(_) => {}
        }
        if !KNOWN_CIPHERS.contains(&cipher) {
            problems.push(format!(
                "{key}.cipher: {cipher} is not an IPMI cipher suite (0 to 17)"
            ));
        } else if cipher == 0 {
            problems.push(format!(
                "{key}.cipher: suite 0 has no authentication: anyone could power the host off or on"
            ));
        }
        let bmc = Bmc {
            host: HostId::new(name),
            address: h.address.trim().to_owned(),
            port,
            username: username.unwrap_or_default(),
            password: password.unwrap_or_else(|| Secret::new("")),
            privilege,
            cipher,
            lanplus,
            backend,
        };
        if backend == Backend::Native
            && let Some(why) = bmc.native_unsupported()
        {
            problems.push(format!(
                "{key}.backend: native cannot be used with {why}; use backend = \"ipmitool\" or \"auto\""
            ));
        }
        if problems.is_empty() {
            Ok(bmc)
        } else {
            Err(problems)
        }
    }
}

/// A duration as a number of seconds (fence-agents style, `power_wait = 2`) or a humantime string
/// (`"1500ms"`, `"2s"`).
mod seconds_or_humantime {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Raw {
        Int(u64),
        Float(f64),
        Text(String),
    }

    pub(super) fn convert<E: serde::de::Error>(raw: Raw) -> std::result::Result<Duration, E> {
        match raw {
            Raw::Int(s) => Ok(Duration::from_secs(s)),
            Raw::Float(s) => Duration::try_from_secs_f64(s)
                .map_err(|_| E::custom(format!("{s} is not a number of seconds"))),
            Raw::Text(t) => humantime::parse_duration(&t)
                .map_err(|e| E::custom(format!("{t:?} is not a duration ({e}); e.g. \"2s\" or 2"))),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
        convert(Raw::deserialize(d)?)
    }
}

mod option_seconds_or_humantime {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Duration>, D::Error> {
        seconds_or_humantime::convert(seconds_or_humantime::Raw::deserialize(d)?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use freezer_dr_core::Error;

    fn parse(text: &str) -> Result<BTreeMap<HostId, Bmc>> {
        let cfg: IpmiConfig = toml::from_str(text).map_err(|e| Error::config(e.to_string()))?;
        cfg.resolve("fencer[0]")
    }

    #[test]
    fn hosts_inherit_the_defaults_and_override_them() {
        let bmcs = parse(
            r#"
            username = "admin"
            password = "pw"
            privlvl = "operator"
            cipher = 17
            backend = "ipmitool"
            [hosts.compute-1]
            ip = "10.0.0.1"
            [hosts.compute-2]
            address = "10.0.0.2"
            ipport = 6230
            login = "root"
            passwd = "other"
            privilege = "administrator"
            lanplus = false
            "#,
        )
        .unwrap();
        let a = &bmcs[&HostId::from("compute-1")];
        assert_eq!(
            (a.port, a.username.as_str(), a.password.expose()),
            (623, "admin", "pw")
        );
        assert_eq!(
            (a.privilege, a.cipher, a.backend),
            (Privilege::Operator, 17, Backend::Ipmitool)
        );
        let b = &bmcs[&HostId::from("compute-2")];
        assert_eq!(
            (b.port, b.username.as_str(), b.password.expose()),
            (6230, "root", "other")
        );
        assert_eq!((b.privilege, b.lanplus), (Privilege::Administrator, false));
    }

    #[test]
    fn fence_agents_timing_names_take_seconds_or_durations() {
        let cfg: IpmiConfig = toml::from_str(
            "power_wait = 2\npower_timeout = \"20s\"\ntimeout = 4.5\n[hosts.h]\naddress = \"a\"\n",
        )
        .unwrap();
        assert_eq!(cfg.power_wait, Duration::from_secs(2));
        assert_eq!(cfg.power_timeout, Some(Duration::from_secs(20)));
        assert_eq!(cfg.timeout, Duration::from_millis(4500));
    }

    #[test]
    fn incomplete_entries_are_all_reported_without_the_password() {
        let e = parse(
            r#"
            password = "averyveryverylongpassword-123"
            [hosts.compute-1]
            address = "10.0.0.1"
            cipher = 0
            [hosts.compute-2]
            address = ""
            username = "a-user-name-longer-than-16"
            backend = "native"
            cipher = 17
            "#,
        )
        .unwrap_err();
        let msg = e.to_string();
        for want in [
            "fencer[0].hosts.\"compute-1\".username: missing",
            "fencer[0].hosts.\"compute-1\".password: longer than 20 bytes",
            "fencer[0].hosts.\"compute-1\".cipher: suite 0 has no authentication",
            "fencer[0].hosts.\"compute-2\".address: empty",
            "fencer[0].hosts.\"compute-2\".username: longer than 16",
            "fencer[0].hosts.\"compute-2\".backend: native cannot be used with cipher = 17",
        ] {
            assert!(msg.contains(want), "missing {want:?} in:\n{msg}");
        }
        assert!(!msg.contains("averyvery"), "{msg}");
    }

    #[test]
    fn an_empty_inventory_is_refused() {
        let e = parse("username = \"a\"\npassword = \"b\"\n[hosts]\n").unwrap_err();
        assert!(e.to_string().contains("fencer[0].hosts: empty"), "{e}");
    }

    #[test]
    fn native_limits_are_explained() {
        let bmcs = parse(
            "username = \"a\"\npassword = \"b\"\n[hosts.x]\naddress = \"h\"\nprivilege = \"operator\"\n",
        )
        .unwrap();
        let why = bmcs[&HostId::from("x")].native_unsupported().unwrap();
        assert!(why.contains("administrator"), "{why}");
    }
}
