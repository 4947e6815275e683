//! Import of the original freezer-dr's `servers.yml` (its IPMI credentials file) as a `[[fencer]]`
//! section.
//!
//! The original format: a top-level `servers` list, each entry with `hostname` (matched against the
//! Nova host), `fencer-ip`, `fencer-user`, `fencer-password`, and informational `id` and `ip-addr`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use freezer_dr_core::{Error, Result};
use serde_yaml_ng::Value;

/// Converts a `servers.yml` text into a TOML `[[fencer]] type = "ipmi"` section, one host per server
/// entry keyed by its `hostname`.
///
/// The passwords are written inline, as they were in `servers.yml`: keep the output as private as
/// that file was, or move them to `{ file = "..." }`. Errors name the entry (by position and `id`) and
/// the key, never a password. `source` names the file in errors.
pub fn import_servers(yaml: &str, source: &str) -> Result<String> {
    let doc: Value = serde_yaml_ng::from_str(yaml).map_err(|e| {
        // serde_yaml's message may quote the offending text, which could be a password line: keep only
        // where it is.
        let at = e
            .location()
            .map(|l| format!(" at line {}, column {}", l.line(), l.column()))
            .unwrap_or_default();
        Error::config(format!("{source}: not valid YAML{at}"))
    })?;
    let servers = doc
        .get("servers")
        .and_then(Value::as_sequence)
        .ok_or_else(|| {
            Error::config(format!(
                "{source}: no `servers:` list (the original freezer-dr format: servers: [{{hostname, \
                 fencer-ip, fencer-user, fencer-password}}, ...])"
            ))
        })?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported from {source} by `freezer-dr import-servers`.\n\
         # Host keys are the `hostname` entries: they must be the exact Nova compute host names\n\
         # (`openstack compute service list`). The passwords are inline, as they were in {source}:\n\
         # keep this file private, or move them to {{ file = \"/etc/freezer-dr/bmc/<host>\" }}.\n\
         [[fencer]]\n\
         type = \"ipmi\"\n\
         backend = \"auto\""
    );
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, server) in servers.iter().enumerate() {
        let id = scalar(server.get("id"));
        let place = match &id {
            Some(id) => format!("{source}: servers[{i}] (id {id})"),
            None => format!("{source}: servers[{i}]"),
        };
        if server.as_mapping().is_none() {
            problems.push(format!("{place}: not a mapping"));
            continue;
        }
        let field = |key: &str| scalar(server.get(key)).filter(|v| !v.trim().is_empty());
        let (hostname, address, user, password) = (
            field("hostname"),
            field("fencer-ip"),
            field("fencer-user"),
            field("fencer-password"),
        );
        for (key, value) in [
            ("hostname", &hostname),
            ("fencer-ip", &address),
            ("fencer-user", &user),
            ("fencer-password", &password),
        ] {
            if value.is_none() {
                problems.push(format!("{place}.{key}: missing"));
            }
        }
        let (Some(hostname), Some(address), Some(user), Some(password)) =
            (hostname, address, user, password)
        else {
            continue;
        };
        if !seen.insert(hostname.clone()) {
            problems.push(format!(
                "{place}.hostname: {hostname:?} is listed twice; each host has one BMC"
            ));
            continue;
        }
        let _ = writeln!(out, "\n[fencer.hosts.{}]", key(&hostname));
        let mut notes = Vec::new();
        if let Some(id) = &id {
            notes.push(format!("id {id}"));
        }
        if let Some(ip) = field("ip-addr") {
            notes.push(format!("ip-addr {ip}"));
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "# {}", notes.join(", "));
        }
        let _ = writeln!(out, "address = {}", quoted(&address));
        let _ = writeln!(out, "username = {}", quoted(&user));
        let _ = writeln!(out, "password = {}", quoted(&password));
    }
    if servers.is_empty() {
        problems.push(format!("{source}: the servers list is empty"));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Error::config(problems.join("\n")))
    }
}

/// A YAML scalar as text (numbers and booleans too: `fencer-password: 1234` is a password).
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A TOML key: bare when it can be, quoted otherwise (host names with dots).
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// A TOML basic string (also valid as a quoted key).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ORIGINAL: &str = r#"
---

  servers:

    - id: COMPUTE-0001
      ip-addr: 192.168.10.6
      hostname: padawan-ccp-comp0001-mgmt
      fencer-ip: 192.168.9.6
      fencer-password: "pa\"ss"
      fencer-user: admin

    - id: COMPUTE-0002
      ip-addr: 192.168.10.7
      hostname: padawan-ccp-comp0002-mgmt
      fencer-ip: 192.168.9.7
      fencer-password: 1234
      fencer-user: admin
"#;

    #[test]
    fn converts_the_original_format_into_a_section_the_fencer_accepts() {
        let toml_text = import_servers(ORIGINAL, "servers.yml").unwrap();
        let doc: toml::Table = toml::from_str(&toml_text).unwrap();
        let fencer = doc["fencer"].as_array().unwrap()[0].as_table().unwrap();
        assert_eq!(fencer["type"].as_str(), Some("ipmi"));
        let mut options = fencer.clone();
        options.remove("type");
        let cfg: crate::IpmiConfig = toml::Value::Table(options).try_into().unwrap();
        let fencer = crate::IpmiFencer::new(cfg).unwrap();
        let hosts: Vec<_> = fencer.hosts().map(|h| h.to_string()).collect();
        assert_eq!(
            hosts,
            ["padawan-ccp-comp0001-mgmt", "padawan-ccp-comp0002-mgmt"]
        );
        let host = |h: &str| {
            doc["fencer"][0]["hosts"][h]["password"]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(host("padawan-ccp-comp0001-mgmt").as_deref(), Some("pa\"ss"));
        assert_eq!(host("padawan-ccp-comp0002-mgmt").as_deref(), Some("1234"));
        assert!(
            toml_text.contains("# id COMPUTE-0001, ip-addr 192.168.10.6"),
            "{toml_text}"
        );
    }

    #[test]
    fn incomplete_entries_are_named_without_their_passwords() {
        let yaml = "servers:\n  - id: a\n    hostname: h1\n    fencer-password: hunter2\n  - id: b\n    hostname: h1\n    fencer-ip: x\n    fencer-user: u\n    fencer-password: hunter2\n  - id: c\n    hostname: h1\n    fencer-ip: y\n    fencer-user: u\n    fencer-password: hunter2\n";
        let e = import_servers(yaml, "s.yml").unwrap_err().to_string();
        assert!(
            e.contains("s.yml: servers[0] (id a).fencer-ip: missing"),
            "{e}"
        );
        assert!(
            e.contains("s.yml: servers[0] (id a).fencer-user: missing"),
            "{e}"
        );
        assert!(
            e.contains("servers[2] (id c).hostname: \"h1\" is listed twice"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn yaml_errors_do_not_quote_the_file() {
        let e = import_servers("servers:\n  - fencer-password: \"hunter2\n", "s.yml").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(import_servers("other: 1\n", "s.yml").is_err());
    }
}
