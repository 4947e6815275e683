//! The TOML configuration: `[recovery]` (core's), `[journal]`, and one section per driver role.
//!
//! [`Config::load`] reads the file, [`Config::build`] turns its sections into a [`Pipeline`]. Driver
//! sections keep their options as a raw TOML table; the chosen driver deserializes them itself
//! (with `deny_unknown_fields`) through [`crate::registry::BuildContext::parse`], so every error still names
//! the file and the key.
//!
//! Errors read `<file>:<line>: <key>: <problem>; <fix>`, with keys written as full paths:
//! `recovery.storm.max_fraction`, `fencer[1].address` (array sections are numbered from 0, in file order).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::diagnostics::LineIndex;
pub use crate::etcd::config::{HA_EXAMPLE, HaBackend, HaConfig, HaTlsConfig};
use crate::registry::{self, BuildContext, Kind};
use crate::runtime::Pipeline;

pub use crate::engine::policy::{
    EvacuationConfig, FencingConfig, LocalRootDisk, MonitorsConfig, PolicyConfig, PolicyMode,
    RecoveryConfig, ReturnToService, StormConfig, duration,
};

/// `[journal]`: where decisions are stored before they are acted on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// The journal file (created if missing).
    pub path: PathBuf,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/lib/freezer-dr/journal.redb"),
        }
    }
}

/// The configuration file read when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/freezer-dr/freezer-dr.toml";

/// One driver section: `[monitor]`, one `[[fencer]]`, `[evacuator]`, `[directory]` or one `[[notifier]]`.
///
/// `Debug` lists the option names but never their values: sections may hold inline secrets.
#[derive(Clone, PartialEq)]
pub struct DriverSection {
    /// The role.
    pub kind: Kind,
    /// The section's key path in the file: `monitor`, `fencer[0]` (0-based: the first `[[fencer]]`).
    pub key: String,
    /// The `type` value: the registered driver name.
    pub type_name: String,
    /// How views and reports name the section: a monitor's `name` key (when several monitors are
    /// combined, two of a type need one each), else its `type`.
    pub name: String,
    /// The other keys of the section, deserialized by the driver itself.
    pub options: toml::Table,
}

impl fmt::Debug for DriverSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverSection")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("type_name", &self.type_name)
            .field("name", &self.name)
            .field("options", &self.options.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The whole configuration file: `[recovery]`, `[journal]` and the driver sections.
///
/// Build it with [`Config::load`] or [`Config::parse`]; turn it into drivers with [`Config::build`].
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (named in every error).
    pub file: PathBuf,
    /// `[recovery]`: how freezer-dr decides.
    pub recovery: RecoveryConfig,
    /// `[journal]`: where decisions are stored.
    pub journal: JournalConfig,
    /// `[ha]`: active/passive on etcd, if configured (then the journal lives in etcd and `[journal]` is
    /// not used).
    pub ha: Option<HaConfig>,
    /// `[monitor]`, or several `[[monitor]]` sections combined as `[recovery.monitors]` says (at least
    /// one).
    pub monitors: Vec<DriverSection>,
    /// `[metrics]`: the metrics and health endpoints' listener (off unless `listen` is set).
    pub metrics: MetricsConfig,
    /// `[[fencer]]`: the fencing levels, in order (at least one).
    pub fencers: Vec<DriverSection>,
    /// `[evacuator]`.
    pub evacuator: DriverSection,
    /// `[directory]`, if any (without it only the operators are told).
    pub directory: Option<DriverSection>,
    /// `[[notifier]]`, zero or more.
    pub notifiers: Vec<DriverSection>,
    lines: LineIndex,
}

impl Config {
    /// Reads and checks a configuration file. Errors name the file, the key, the line and the fix.
    pub fn load(path: impl AsRef<Path>) -> crate::Result<Config> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let fix = if e.kind() == std::io::ErrorKind::NotFound {
                "; pass --config PATH to use another file, or create this one \
                 (`freezer-dr example` prints a starting point)"
            } else {
                ""
            };
            crate::Error::config(format!(
                "{}: cannot read the configuration file: {e}{fix}",
                path.display()
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Every driver section in pipeline order: monitor, fencers, evacuator, directory, notifiers.
    pub fn sections(&self) -> Vec<&DriverSection> {
        let mut v: Vec<&DriverSection> = self.monitors.iter().collect();
        v.extend(&self.fencers);
        v.push(&self.evacuator);
        v.extend(&self.directory);
        v.extend(&self.notifiers);
        v
    }

    /// Builds the drivers: looks each section's `type` up in the [`registry`] and calls its
    /// build function. Pure: no network I/O (`healthcheck` is where drivers connect).
    pub fn build(&self) -> crate::Result<Pipeline> {
        let monitor = self.build_monitor()?;
        let fencers = self
            .fencers
            .iter()
            .map(|s| self.build_one(registry::fencers(), s))
            .collect::<crate::Result<Vec<_>>>()?;
        let evacuator = self.build_one(registry::evacuators(), &self.evacuator)?;
        let directory = self
            .directory
            .as_ref()
            .map(|s| self.build_one(registry::directories(), s))
            .transpose()?;
        let notifiers = self
            .notifiers
            .iter()
            .map(|s| self.build_one(registry::notifiers(), s))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Pipeline {
            monitor,
            fencers,
            evacuator,
            directory,
            notifiers,
        })
    }

    /// The one monitor, or several combined (each observation given three quarters of the call timeout,
    /// so one slow monitor is unknown rather than the whole observation timing out).
    fn build_monitor(&self) -> crate::Result<Arc<dyn crate::Monitor>> {
        let mut built = self
            .monitors
            .iter()
            .map(|s| Ok((s.name.clone(), self.build_one(registry::monitors(), s)?)))
            .collect::<crate::Result<Vec<_>>>()?;
        if built.len() == 1
            && let Some((_, only)) = built.pop()
        {
            return Ok(only);
        }
        Ok(Arc::new(crate::CombinedMonitor::new(
            built,
            self.recovery.monitors.combine,
            self.recovery.call_timeout.mul_f64(0.75),
        )))
    }

    fn build_one<T: ?Sized + 'static>(
        &self,
        regs: Vec<&'static registry::Registration<T>>,
        section: &DriverSection,
    ) -> crate::Result<Arc<T>> {
        let located = |e| self.locate(e);
        let reg = registry::find(
            section.kind,
            regs,
            &section.type_name,
            &self.file,
            &section.key,
        )
        .map_err(located)?;
        let ctx = BuildContext {
            file: &self.file,
            section: section.key.clone(),
            options: section.options.clone(),
        };
        (reg.build)(&ctx).map(Arc::from).map_err(located)
    }

    /// Gives a config error's problems the lines of their keys in the file (a driver's parse and the
    /// registry know the key, not the line).
    fn locate(&self, e: crate::Error) -> crate::Error {
        e.located(|key| self.lines.line(key))
    }
}

/// Resolves a driver's per-host inventory (its `hosts` table, keyed by the exact Nova host name): an
/// empty table is a problem (`example` shows one entry's options), so is a name with surrounding blanks;
/// `entry(name, value, key)` resolves each entry (`key` is `<section>.hosts."<name>"`). Every problem,
/// those already in `problems` first, is reported in one config error, one per line.
pub fn resolve_hosts<T, V>(
    section: &str,
    hosts: &BTreeMap<String, T>,
    example: &str,
    mut problems: Vec<String>,
    entry: impl Fn(&str, &T, &str) -> Result<V, Vec<String>>,
) -> crate::Result<BTreeMap<crate::HostId, V>> {
    if hosts.is_empty() {
        problems.insert(
            0,
            format!(
                "{section}.hosts: empty; list each host's BMC, e.g. [{section}.hosts.compute-1] {example}"
            ),
        );
    }
    let mut out = BTreeMap::new();
    for (name, value) in hosts {
        let key = format!("{section}.hosts.{name:?}");
        if name.is_empty() || name.trim() != name {
            problems.push(format!(
                "{key}: not a host name; use the exact Nova compute host name"
            ));
        }
        match entry(name, value, &key) {
            Ok(v) => {
                out.insert(crate::HostId::new(name.as_str()), v);
            }
            Err(mut p) => problems.append(&mut p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(crate::Error::config(problems.join("\n")))
    }
}

/// The error for a host that a driver's `hosts` inventory does not list (`driver` as in "the ipmi
/// fencer"): permanent, and it says how to add the host.
pub fn not_in_inventory(driver: &str, host: &crate::HostId) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::NotFound,
        format!(
            "host is not in the {driver}'s inventory (add it under hosts, with its exact Nova host name)"
        ),
    )
    .with_context("host", host)
    .permanent()
}

mod check;
mod example;
mod metrics;
mod parse;
#[cfg(test)]
mod tests;

pub use example::{example_config, section_header};
pub use metrics::{METRICS_EXAMPLE, MetricsConfig};
