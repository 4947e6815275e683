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
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::diagnostics::{
    LineIndex, error_at, explain, join_path, line_of, problem_at, unknown_key,
};
pub use crate::etcd::config::{HA_EXAMPLE, HaBackend, HaConfig, HaTlsConfig};
use crate::registry::{self, BuildContext, Kind};
use crate::runtime::Pipeline;

pub use crate::engine::policy::{
    EvacuationConfig, FencingConfig, LocalRootDisk, PolicyConfig, PolicyMode, RecoveryConfig,
    ReturnToService, StormConfig, duration,
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

/// The top-level keys of the file, in the order they are documented.
const TOP_LEVEL_KEYS: [&str; 8] = [
    "recovery",
    "journal",
    "ha",
    "monitor",
    "fencer",
    "evacuator",
    "directory",
    "notifier",
];

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
    /// The other keys of the section, deserialized by the driver itself.
    pub options: toml::Table,
}

impl fmt::Debug for DriverSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverSection")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("type_name", &self.type_name)
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
    /// `[monitor]`.
    pub monitor: DriverSection,
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

    /// Parses and checks configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> crate::Result<Config> {
        let doc = toml::de::DeTable::parse(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            // Only the message: toml's own rendering quotes the source line, which may hold a secret.
            error_at(
                file,
                line,
                "",
                format!("not valid TOML: {}", e.message().trim_end()),
            )
        })?;
        let mut lines = LineIndex::default();
        lines.walk(text, "", doc.get_ref());
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            error_at(
                file,
                None,
                "",
                format!("not valid TOML: {}", e.message().trim_end()),
            )
        })?;
        let cx = ParseCx {
            file,
            lines: &lines,
        };

        for key in table.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                let known: Vec<String> = TOP_LEVEL_KEYS.iter().map(|k| (*k).to_owned()).collect();
                return Err(cx.error(key, unknown_key(key, &known, "key")));
            }
        }

        let recovery: RecoveryConfig = match table.get("recovery") {
            Some(v) => cx.core_section("recovery", v)?,
            None => RecoveryConfig::default(),
        };
        let journal: JournalConfig = match table.get("journal") {
            Some(v) => cx.core_section("journal", v)?,
            None => JournalConfig::default(),
        };
        let ha: Option<HaConfig> = match table.get("ha") {
            Some(v) => Some(cx.core_section("ha", v)?),
            None => None,
        };
        let problems: Vec<crate::ConfigError> = check_recovery(&recovery)
            .into_iter()
            .chain(check_journal(&journal))
            .chain(
                ha.as_ref()
                    .map(crate::etcd::config::check)
                    .unwrap_or_default(),
            )
            .map(|(key, problem)| problem_at(file, lines.line(&key), &key, problem))
            .collect();
        if !problems.is_empty() {
            return Err(crate::Error::config_problems(problems));
        }

        let monitor = cx
            .single(&table, Kind::Monitor)?
            .ok_or_else(|| cx.missing(Kind::Monitor))?;
        let fencers = cx.list(&table, Kind::Fencer)?;
        if fencers.is_empty() {
            return Err(cx.missing(Kind::Fencer));
        }
        let evacuator = cx
            .single(&table, Kind::Evacuator)?
            .ok_or_else(|| cx.missing(Kind::Evacuator))?;
        let directory = cx.single(&table, Kind::Directory)?;
        let notifiers = cx.list(&table, Kind::Notifier)?;

        Ok(Config {
            file: file.to_owned(),
            recovery,
            journal,
            ha,
            monitor,
            fencers,
            evacuator,
            directory,
            notifiers,
            lines,
        })
    }

    /// Every driver section in pipeline order: monitor, fencers, evacuator, directory, notifiers.
    pub fn sections(&self) -> Vec<&DriverSection> {
        let mut v = vec![&self.monitor];
        v.extend(&self.fencers);
        v.push(&self.evacuator);
        v.extend(&self.directory);
        v.extend(&self.notifiers);
        v
    }

    /// Builds the drivers: looks each section's `type` up in the [`registry`] and calls its
    /// build function. Pure: no network I/O (`healthcheck` is where drivers connect).
    pub fn build(&self) -> crate::Result<Pipeline> {
        let monitor = self.build_one(registry::monitors(), &self.monitor)?;
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

/// A complete starting configuration: `[recovery]` and `[journal]` with their (safe) defaults, then for
/// each driver role the example section of the first driver linked into this binary (by name); a role
/// with no driver linked is left as a comment.
pub fn example_config() -> String {
    #[derive(Serialize)]
    struct Core {
        recovery: RecoveryConfig,
        journal: JournalConfig,
    }
    let core = toml::to_string(&Core {
        recovery: RecoveryConfig::default(),
        journal: JournalConfig::default(),
    })
    .unwrap_or_default();
    let mut out = format!(
        "# freezer-dr configuration ({DEFAULT_PATH}). Every value below [recovery] and [journal] is \
         the default.\n\n{core}"
    );
    let drivers = registry::drivers();
    for kind in Kind::ALL {
        let header = section_header(kind);
        match drivers.iter().find(|d| d.kind == kind) {
            Some(d) => {
                out.push_str(&format!("\n{header}\n{}", d.example.trim_end()));
                out.push('\n');
            }
            None => out.push_str(&format!(
                "\n# {header}: no {kind} driver is linked into this binary\n"
            )),
        }
    }
    out
}

/// The TOML header of a driver role: `[monitor]` or `[[fencer]]`.
pub fn section_header(kind: Kind) -> &'static str {
    match kind {
        Kind::Monitor => "[monitor]",
        Kind::Fencer => "[[fencer]]",
        Kind::Evacuator => "[evacuator]",
        Kind::Directory => "[directory]",
        Kind::Notifier => "[[notifier]]",
    }
}

/// What a missing or repeated section is for, in the error that asks for it.
fn purpose(kind: Kind) -> &'static str {
    match kind {
        Kind::Monitor => "the driver that observes which compute hosts are down",
        Kind::Fencer => {
            "the fencing levels, tried in order; freezer-dr never evacuates a host it could not \
             confirm powered off"
        }
        Kind::Evacuator => "the driver that isolates fenced hosts and evacuates their instances",
        Kind::Directory => "the driver that finds the users of a project",
        Kind::Notifier => "where reports are delivered",
    }
}

fn registered_names(kind: Kind) -> String {
    let names: Vec<&str> = registry::drivers()
        .into_iter()
        .filter(|d| d.kind == kind)
        .map(|d| d.name)
        .collect();
    if names.is_empty() {
        format!("no {kind} driver is linked into this binary")
    } else {
        format!("registered: {}", names.join(", "))
    }
}

/// Context for the errors of one parse.
struct ParseCx<'a> {
    file: &'a Path,
    lines: &'a LineIndex,
}

impl ParseCx<'_> {
    fn error(&self, key: &str, problem: impl fmt::Display) -> crate::Error {
        error_at(self.file, self.lines.line(key), key, problem)
    }

    /// `[recovery]` or `[journal]`: typed, with examples taken from the defaults.
    fn core_section<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        value: &toml::Value,
    ) -> crate::Result<T> {
        if !value.is_table() {
            return Err(self.error(
                name,
                format!(
                    "expected a table ([{name}] followed by its keys), found {}",
                    value.type_str()
                ),
            ));
        }
        serde_path_to_error::deserialize::<_, T>(value.clone()).map_err(|e| {
            let path = join_path(name, &e.path().to_string());
            let (key, problem) = explain(&path, e.inner().message(), core_example);
            self.error(&key, problem)
        })
    }

    fn missing(&self, kind: Kind) -> crate::Error {
        let header = section_header(kind);
        error_at(
            self.file,
            None,
            "",
            format!(
                "{header} is missing: add it with {} ({}); `freezer-dr example {kind} <name>` prints one",
                purpose(kind),
                registered_names(kind),
            ),
        )
    }

    /// `[monitor]`, `[evacuator]`, `[directory]`.
    fn single(&self, table: &toml::Table, kind: Kind) -> crate::Result<Option<DriverSection>> {
        let name = kind.as_str();
        match table.get(name) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => self.driver_section(kind, name.to_owned(), t).map(Some),
            Some(toml::Value::Array(_)) => Err(self.error(
                name,
                format!(
                    "there is one {name}: write [{name}], not [[{name}]] ({})",
                    purpose(kind)
                ),
            )),
            Some(other) => Err(self.error(
                name,
                format!("expected a table [{name}], found {}", other.type_str()),
            )),
        }
    }

    /// `[[fencer]]`, `[[notifier]]`.
    fn list(&self, table: &toml::Table, kind: Kind) -> crate::Result<Vec<DriverSection>> {
        let name = kind.as_str();
        match table.get(name) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let key = format!("{name}[{i}]");
                    match item {
                        toml::Value::Table(t) => self.driver_section(kind, key, t),
                        other => Err(self.error(
                            &key,
                            format!(
                                "expected a table ([[{name}]] followed by its keys), found {}",
                                other.type_str()
                            ),
                        )),
                    }
                })
                .collect(),
            Some(toml::Value::Table(_)) => Err(self.error(
                name,
                format!(
                    "write [[{name}]] (double brackets: an array of sections, {}), not [{name}]",
                    purpose(kind)
                ),
            )),
            Some(other) => Err(self.error(
                name,
                format!("expected [[{name}]] sections, found {}", other.type_str()),
            )),
        }
    }

    fn driver_section(
        &self,
        kind: Kind,
        key: String,
        table: &toml::Table,
    ) -> crate::Result<DriverSection> {
        let mut options = table.clone();
        let type_key = format!("{key}.type");
        let type_name = match options.remove("type") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
            Some(toml::Value::String(_)) => {
                return Err(self.error(
                    &type_key,
                    format!("empty; name the driver ({})", registered_names(kind)),
                ));
            }
            Some(other) => {
                return Err(self.error(
                    &type_key,
                    format!(
                        "expected a string naming the driver, e.g. `type = \"name\"`, found {} ({})",
                        other.type_str(),
                        registered_names(kind)
                    ),
                ));
            }
            None => {
                let line = self.lines.line(&key);
                return Err(error_at(
                    self.file,
                    line,
                    &type_key,
                    format!(
                        "missing; every driver section names its driver with `type = \"name\"` ({}); \
                         `freezer-dr example {kind} <name>` prints a section",
                        registered_names(kind)
                    ),
                ));
            }
        };
        Ok(DriverSection {
            kind,
            key,
            type_name,
            options,
        })
    }
}

/// A working `key = value` line for a `[recovery]`, `[journal]` or `[ha]` key: its default, or the
/// example section's value.
fn core_example(path: &str) -> Option<String> {
    if path == "ha" || path.starts_with("ha.") {
        let example: toml::Table = toml::from_str(HA_EXAMPLE).ok()?;
        let leaf = path.rsplit('.').next()?;
        return match example.get("ha")?.get(leaf)? {
            toml::Value::Table(_) => None,
            v => Some(format!("{leaf} = {v}")),
        };
    }
    #[derive(Serialize)]
    struct Core {
        recovery: RecoveryConfig,
        journal: JournalConfig,
    }
    let defaults = toml::Table::try_from(Core {
        recovery: RecoveryConfig::default(),
        journal: JournalConfig::default(),
    })
    .ok()?;
    let mut value: &toml::Value = defaults.get(path.split('.').next()?)?;
    for segment in path.split('.').skip(1) {
        value = value.get(segment)?;
    }
    let leaf = path.rsplit('.').next()?;
    match value {
        toml::Value::Table(_) => None,
        v => Some(format!("{leaf} = {v}")),
    }
}

/// Value checks serde cannot express. Each problem is (key, what is wrong and how to fix it).
fn check_recovery(r: &RecoveryConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut positive = |key: &str, d: Duration| {
        if d.is_zero() {
            let eg = core_example(key).unwrap_or_default();
            problems.push((
                key.to_owned(),
                format!("must be longer than 0s, e.g. `{eg}`"),
            ));
        }
    };
    positive("recovery.interval", r.interval);
    positive("recovery.call_timeout", r.call_timeout);
    positive("recovery.call_backoff", r.call_backoff);
    positive("recovery.step_retry", r.step_retry);
    positive("recovery.forget_after", r.forget_after);
    positive("recovery.restore_timeout", r.restore_timeout);
    positive("recovery.fencing.poll_interval", r.fencing.poll_interval);
    positive(
        "recovery.fencing.confirm_timeout",
        r.fencing.confirm_timeout,
    );
    positive(
        "recovery.evacuation.poll_interval",
        r.evacuation.poll_interval,
    );
    positive("recovery.evacuation.timeout", r.evacuation.timeout);

    let mut at_least_one = |key: &str, n: u64, why: &str| {
        if n == 0 {
            let eg = core_example(key).unwrap_or_default();
            problems.push((
                key.to_owned(),
                format!("must be at least 1 ({why}), e.g. `{eg}`"),
            ));
        }
    };
    at_least_one(
        "recovery.strikes",
        r.strikes.into(),
        "consecutive down observations before a host is fenced",
    );
    at_least_one(
        "recovery.call_attempts",
        r.call_attempts.into(),
        "the first try counts",
    );
    at_least_one(
        "recovery.evacuation.attempts",
        r.evacuation.attempts.into(),
        "the first try counts",
    );
    at_least_one(
        "recovery.fencing.concurrency",
        r.fencing.concurrency as u64,
        "power-offs in flight at once",
    );
    at_least_one(
        "recovery.evacuation.concurrency",
        r.evacuation.concurrency as u64,
        "instances evacuated at once",
    );
    at_least_one(
        "recovery.storm.max_hosts",
        r.storm.max_hosts as u64,
        "to stop all fencing use `freezer-dr pause`",
    );
    at_least_one(
        "recovery.storm.max_new_fencings_per_cycle",
        r.storm.max_new_fencings_per_cycle as u64,
        "to stop all fencing use `freezer-dr pause`",
    );

    let f = r.storm.max_fraction;
    if !(f > 0.0 && f <= 1.0) {
        problems.push((
            "recovery.storm.max_fraction".to_owned(),
            format!(
                "must be more than 0 and at most 1 (a fraction of the observed hosts), found {f}, \
                 e.g. `max_fraction = 0.25`"
            ),
        ));
    }
    if r.policy.metadata_key.trim().is_empty() {
        problems.push((
            "recovery.policy.metadata_key".to_owned(),
            "must not be empty, e.g. `metadata_key = \"freezer_dr:evacuate\"`".to_owned(),
        ));
    }
    for (i, state) in r.policy.skip_states.iter().enumerate() {
        // Nova statuses are upper case; a lower-case entry would silently never match.
        if state.is_empty() || *state != state.to_uppercase() {
            problems.push((
                format!("recovery.policy.skip_states[{i}]"),
                format!(
                    "Nova statuses are upper case: write {:?}, not {state:?}",
                    state.to_uppercase()
                ),
            ));
        }
    }
    problems
}

fn check_journal(j: &JournalConfig) -> Vec<(String, String)> {
    if j.path.as_os_str().is_empty() {
        vec![(
            "journal.path".to_owned(),
            "must not be empty, e.g. `path = \"/var/lib/freezer-dr/journal.redb\"`".to_owned(),
        )]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fenced, HostHealth, HostId, Instance, PowerState, Progress};

    // Registrations of this test binary only (driver crates are never linked into core's unit tests).
    struct NoMonitor;
    #[async_trait::async_trait]
    impl crate::Monitor for NoMonitor {
        async fn observe(&self) -> crate::Result<Vec<HostHealth>> {
            Ok(Vec::new())
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct UnitFencerConfig {
        address: String,
        #[serde(default)]
        port: u16,
        password: crate::Secret,
    }

    struct NoFencer;
    #[async_trait::async_trait]
    impl crate::Fencer for NoFencer {
        async fn power_off(&self, _: &HostId) -> crate::Result<()> {
            Ok(())
        }
        async fn power_status(&self, _: &HostId) -> crate::Result<PowerState> {
            Ok(PowerState::Off)
        }
    }

    struct NoEvacuator;
    #[async_trait::async_trait]
    impl crate::Evacuator for NoEvacuator {
        async fn isolate(&self, _: &Fenced) -> crate::Result<()> {
            Ok(())
        }
        async fn instances(&self, _: &Fenced) -> crate::Result<Vec<Instance>> {
            Ok(Vec::new())
        }
        async fn evacuate(&self, _: &Fenced, _: &Instance) -> crate::Result<()> {
            Ok(())
        }
        async fn progress(&self, _: &Instance) -> crate::Result<Progress> {
            Ok(Progress::NotStarted)
        }
        async fn restore(&self, _: &HostId) -> crate::Result<()> {
            Ok(())
        }
    }

    inventory::submit! {
        registry::MonitorRegistration {
            name: "unit-monitor",
            description: "Unit-test monitor.",
            example: "type = \"unit-monitor\"\n",
            build: |_| Ok(Box::new(NoMonitor)),
        }
    }
    inventory::submit! {
        registry::FencerRegistration {
            name: "unit-fencer",
            description: "Unit-test fencer with options.",
            example: "type = \"unit-fencer\"\naddress = \"10.0.0.1\"\npassword = \"x\"\n",
            build: |ctx| {
                let _: UnitFencerConfig = ctx.parse()?;
                Ok(Box::new(NoFencer))
            },
        }
    }
    inventory::submit! {
        registry::EvacuatorRegistration {
            name: "unit-evacuator",
            description: "Unit-test evacuator.",
            example: "type = \"unit-evacuator\"\n",
            build: |_| Ok(Box::new(NoEvacuator)),
        }
    }

    const DRIVERS: &str = r#"
[monitor]
type = "unit-monitor"

[[fencer]]
type = "unit-fencer"
address = "10.0.0.1"
password = "hunter2"

[evacuator]
type = "unit-evacuator"
"#;

    fn parse(text: &str) -> crate::Result<Config> {
        Config::parse(text, Path::new("/etc/freezer-dr/freezer-dr.toml"))
    }

    fn build_err(text: &str) -> String {
        match parse(text).unwrap().build() {
            Ok(_) => panic!("expected a build error"),
            Err(e) => e.to_string(),
        }
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => {
                assert_eq!(e.kind(), crate::ErrorKind::Config);
                e.to_string()
            }
        }
    }

    #[test]
    fn minimal_file_gets_the_safe_defaults() {
        let c = parse(DRIVERS).unwrap();
        assert_eq!(c.recovery, RecoveryConfig::default());
        assert_eq!(c.journal, JournalConfig::default());
        assert_eq!(c.monitor.type_name, "unit-monitor");
        assert_eq!(c.fencers.len(), 1);
        assert_eq!(c.fencers[0].key, "fencer[0]");
        assert!(!c.fencers[0].options.contains_key("type"));
        assert!(c.directory.is_none());
        assert!(c.notifiers.is_empty());
    }

    #[test]
    fn values_are_read_and_fencers_keep_their_order() {
        let text = format!(
            "[recovery]\ninterval = \"2s\"\nstrikes = 2\n[recovery.storm]\nmax_fraction = 0.5\n\
             [journal]\npath = \"/tmp/j.redb\"\n{DRIVERS}\n[[fencer]]\ntype = \"second\"\n\
             [[notifier]]\ntype = \"n\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.recovery.interval, Duration::from_secs(2));
        assert_eq!(c.recovery.strikes, 2);
        assert_eq!(c.recovery.storm.max_fraction, 0.5);
        assert_eq!(c.recovery.storm.max_hosts, StormConfig::default().max_hosts);
        assert_eq!(c.journal.path, PathBuf::from("/tmp/j.redb"));
        let types: Vec<_> = c.fencers.iter().map(|f| f.type_name.as_str()).collect();
        assert_eq!(types, ["unit-fencer", "second"]);
        assert_eq!(c.fencers[1].key, "fencer[1]");
        assert_eq!(c.notifiers[0].key, "notifier[0]");
        let keys: Vec<_> = c.sections().iter().map(|s| s.key.clone()).collect();
        assert_eq!(
            keys,
            [
                "monitor",
                "fencer[0]",
                "fencer[1]",
                "evacuator",
                "notifier[0]"
            ]
        );
    }

    #[test]
    fn typo_in_recovery_names_file_line_key_and_the_closest_key() {
        let e = err(&format!("[recovery]\nstrikez = 3\n{DRIVERS}"));
        assert!(
            e.starts_with("/etc/freezer-dr/freezer-dr.toml:2: recovery.strikez: unknown key; did you mean `strikes`?"),
            "{e}"
        );
        assert!(e.contains("valid keys: interval, strikes"), "{e}");
    }

    #[test]
    fn config_errors_are_typed_and_rendered_once() {
        let text =
            format!("[recovery]\nstrikez = 3\n[recovery.storm]\nmax_fraction = 2.0\n{DRIVERS}");
        let Err(e) = parse(&text) else {
            panic!("a typo must be refused")
        };
        let p = &e.problems()[0];
        assert_eq!(p.file, Path::new("/etc/freezer-dr/freezer-dr.toml"));
        assert_eq!(
            (p.line, p.key.as_str(), p.problem.as_str()),
            (Some(2), "recovery.strikez", "unknown key")
        );
        assert!(
            p.fix
                .as_deref()
                .is_some_and(|f| f.starts_with("did you mean `strikes`?")),
            "{p:?}"
        );
        assert_eq!(e.to_string(), p.to_string(), "one problem, one line");
        // A value check: the line of its key is found in the file, every problem is one line.
        let text =
            format!("[recovery]\nstrikes = 0\n[recovery.storm]\nmax_fraction = 2.0\n{DRIVERS}");
        let Err(e) = parse(&text) else {
            panic!("bad values must be refused")
        };
        let keys: Vec<(&str, Option<usize>)> = e
            .problems()
            .iter()
            .map(|p| (p.key.as_str(), p.line))
            .collect();
        assert_eq!(
            keys,
            [
                ("recovery.strikes", Some(2)),
                ("recovery.storm.max_fraction", Some(4))
            ]
        );
        assert_eq!(e.to_string().lines().count(), 2, "{e}");
        // A driver's own error gets its line when its key is in the file.
        let text = format!("{DRIVERS}\n[[notifier]]\ntype = \"nope\"\n");
        let e = parse(&text).unwrap().build().err().unwrap();
        assert_eq!(e.problems()[0].key, "notifier[0].type");
        assert!(e.problems()[0].line.is_some(), "{e}");
    }

    #[test]
    fn typo_in_a_nested_table_names_the_full_key() {
        let e = err(&format!("[recovery.storm]\nmax_fractoin = 0.1\n{DRIVERS}"));
        assert!(
            e.contains(
                ":2: recovery.storm.max_fractoin: unknown key; did you mean `max_fraction`?"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_top_level_key_suggests_the_section() {
        let e = err(&format!("{DRIVERS}\n[notifiers]\ntype = \"x\"\n"));
        assert!(
            e.contains("notifiers: unknown key; did you mean `notifier`?"),
            "{e}"
        );
        let e = err(&format!("{DRIVERS}\n[zebra]\n"));
        assert!(
            e.contains("zebra: unknown key (valid keys: recovery, journal"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_says_what_was_expected_with_an_example() {
        let e = err(&format!("[recovery]\nstrikes = \"three\"\n{DRIVERS}"));
        assert!(
            e.contains(":2: recovery.strikes: expected a whole number"),
            "{e}"
        );
        assert!(e.contains("for example `strikes = 3`"), "{e}");
        let e = err(&format!("[recovery]\ninterval = 30\n{DRIVERS}"));
        assert!(e.contains("recovery.interval: expected a string"), "{e}");
        assert!(e.contains("`interval = \"10s\"`"), "{e}");
    }

    #[test]
    fn bad_duration_says_how_durations_are_written() {
        let e = err(&format!(
            "[recovery.fencing]\nconfirm_timeout = \"30 parsecs\"\n{DRIVERS}"
        ));
        assert!(e.contains(":2: recovery.fencing.confirm_timeout: "), "{e}");
        assert!(e.contains("expected a duration such as \"30s\""), "{e}");
        assert!(e.contains("30 parsecs"), "{e}");
    }

    #[test]
    fn unknown_enum_value_lists_the_valid_ones() {
        let e = err(&format!("[recovery.policy]\nmode = \"optin\"\n{DRIVERS}"));
        assert!(
            e.contains("recovery.policy.mode: unknown value; did you mean `opt-in`?"),
            "{e}"
        );
    }

    #[test]
    fn values_out_of_range_are_refused_all_at_once() {
        let e = err(&format!(
            "[recovery]\nstrikes = 0\ninterval = \"0s\"\n[recovery.storm]\nmax_fraction = 1.5\n\
             [recovery.evacuation]\nconcurrency = 0\n{DRIVERS}"
        ));
        assert!(
            e.contains(":2: recovery.strikes: must be at least 1"),
            "{e}"
        );
        assert!(e.contains("e.g. `strikes = 3`"), "{e}");
        assert!(
            e.contains(":3: recovery.interval: must be longer than 0s"),
            "{e}"
        );
        assert!(
            e.contains(":5: recovery.storm.max_fraction: must be more than 0 and at most 1"),
            "{e}"
        );
        assert!(
            e.contains(":7: recovery.evacuation.concurrency: must be at least 1"),
            "{e}"
        );
        let e = err(&format!("[recovery.storm]\nmax_fraction = 0.0\n{DRIVERS}"));
        assert!(e.contains("recovery.storm.max_fraction"), "{e}");
        let e = err(&format!("[recovery.storm]\nmax_fraction = nan\n{DRIVERS}"));
        assert!(e.contains("recovery.storm.max_fraction"), "{e}");
        assert!(parse(&format!("[recovery.storm]\nmax_fraction = 1.0\n{DRIVERS}")).is_ok());
    }

    #[test]
    fn lower_case_skip_states_are_refused() {
        let e = err(&format!(
            "[recovery.policy]\nskip_states = [\"PAUSED\", \"shelved\"]\n{DRIVERS}"
        ));
        assert!(
            e.contains(
                "recovery.policy.skip_states[1]: Nova statuses are upper case: write \"SHELVED\""
            ),
            "{e}"
        );
    }

    #[test]
    fn missing_sections_say_which_to_add_and_how() {
        let e = err("[[fencer]]\ntype = \"unit-fencer\"\n[evacuator]\ntype = \"unit-evacuator\"\n");
        assert!(e.contains("[monitor] is missing"), "{e}");
        assert!(e.contains("`freezer-dr example monitor <name>`"), "{e}");
        assert!(e.contains("unit-monitor"), "{e}");
        let e = err("[monitor]\ntype = \"unit-monitor\"\n[evacuator]\ntype = \"unit-evacuator\"\n");
        assert!(e.contains("[[fencer]] is missing"), "{e}");
        let e = err("[monitor]\ntype = \"unit-monitor\"\n[[fencer]]\ntype = \"unit-fencer\"\n");
        assert!(e.contains("[evacuator] is missing"), "{e}");
    }

    #[test]
    fn single_and_array_sections_are_not_confused() {
        let e = err("[monitor]\ntype = \"m\"\n[fencer]\ntype = \"f\"\n[evacuator]\ntype = \"e\"\n");
        assert!(e.contains(":3: fencer: write [[fencer]]"), "{e}");
        let e =
            err("[[monitor]]\ntype = \"m\"\n[[fencer]]\ntype = \"f\"\n[evacuator]\ntype = \"e\"\n");
        assert!(
            e.contains("monitor: there is one monitor: write [monitor]"),
            "{e}"
        );
    }

    #[test]
    fn a_section_without_type_asks_for_one() {
        let e = err(
            "[monitor]\ntype = \"m\"\n[[fencer]]\naddress = \"x\"\n[evacuator]\ntype = \"e\"\n",
        );
        assert!(e.contains(":3: fencer[0].type: missing"), "{e}");
        assert!(e.contains("unit-fencer"), "{e}");
        let e = err("[monitor]\ntype = 3\n[[fencer]]\ntype = \"f\"\n[evacuator]\ntype = \"e\"\n");
        assert!(e.contains(":2: monitor.type: expected a string"), "{e}");
    }

    #[test]
    fn invalid_toml_names_the_line_without_quoting_it() {
        let e = err("[recovery]\npassword = \"hunter2\" oops\n");
        assert!(
            e.starts_with("/etc/freezer-dr/freezer-dr.toml:2: not valid TOML"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_missing_file_names_the_path_and_the_option() {
        let e = Config::load("/nonexistent/freezer-dr.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/freezer-dr.toml: cannot read"),
            "{e}"
        );
        assert!(e.contains("--config"), "{e}");
    }

    #[test]
    fn debug_never_shows_option_values() {
        let c = parse(DRIVERS).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("password"), "{d}");
    }

    #[test]
    fn build_calls_each_registered_driver() {
        let p = parse(DRIVERS).unwrap().build().unwrap();
        assert_eq!(p.fencers.len(), 1);
        assert!(p.directory.is_none());
        assert!(p.notifiers.is_empty());
    }

    #[test]
    fn unknown_driver_type_lists_the_registered_ones_with_its_line() {
        let text = DRIVERS.replace("type = \"unit-fencer\"", "type = \"ipmmi\"");
        let e = build_err(&text);
        assert!(
            e.contains(":6: fencer[0].type: unknown fencer type \"ipmmi\""),
            "{e}"
        );
        assert!(e.contains("unit-fencer"), "{e}");
    }

    #[test]
    fn driver_option_typo_names_file_line_key_and_fix() {
        let text = DRIVERS.replace("address =", "adress =");
        let e = build_err(&text);
        assert!(
            e.contains("freezer-dr.toml:7: fencer[0].adress: unknown key; did you mean `address`?"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn driver_option_wrong_type_says_what_was_expected() {
        let text = DRIVERS.replace("address = \"10.0.0.1\"", "address = \"a\"\nport = \"623\"");
        let e = build_err(&text);
        assert!(
            e.contains(":8: fencer[0].port: expected a whole number"),
            "{e}"
        );
    }

    #[test]
    fn the_example_config_parses_back_to_the_defaults() {
        let text = example_config();
        assert!(text.contains("[recovery.storm]"), "{text}");
        let c = parse(&text).unwrap();
        assert_eq!(c.recovery, RecoveryConfig::default());
        assert_eq!(c.journal, JournalConfig::default());
    }

    #[test]
    fn no_ha_section_means_running_alone() {
        assert_eq!(parse(DRIVERS).unwrap().ha, None);
    }

    #[test]
    fn an_ha_section_is_read_with_its_defaults_and_hides_the_password() {
        let text = format!(
            "{HA_EXAMPLE}user = \"freezer\"\npassword = \"etcd-s3cret\"\n[ha.tls]\nca_file = \"/etc/ca.pem\"\n{DRIVERS}"
        )
        .replace("http://127", "https://127");
        let c = parse(&text).unwrap();
        let ha = c.ha.as_ref().unwrap();
        assert_eq!(ha.backend, HaBackend::Etcd);
        assert_eq!(ha.endpoints, ["https://127.0.0.1:2379"]);
        assert_eq!(ha.lease_ttl, Duration::from_secs(10));
        assert_eq!(ha.max_txn_ops, 128);
        assert_eq!(ha.password.as_ref().unwrap().expose(), "etcd-s3cret");
        assert!(!format!("{c:?}").contains("etcd-s3cret"), "{c:?}");
    }

    #[test]
    fn ha_errors_name_the_key_and_the_fix() {
        let e = err(&format!(
            "[ha]\nbackend = \"zookeeper\"\nendpoints = []\n{DRIVERS}"
        ));
        assert!(e.contains("freezer-dr.toml:2: ha.backend"), "{e}");
        assert!(e.contains("etcd"), "{e}");
        let e = err(&format!("[ha]\nbackend = \"etcd\"\n{DRIVERS}"));
        assert!(e.contains("ha.endpoints: missing"), "{e}");
        assert!(e.contains("endpoints = "), "an example: {e}");
        let e = err(&format!(
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nlease_ttl = \"1s\"\nelection = \"a/b\"\nuser = \"u\"\n{DRIVERS}"
        ));
        assert!(e.contains(":3: ha.endpoints[0]"), "{e}");
        assert!(
            e.contains(":4: ha.lease_ttl: must be whole seconds, at least 2s"),
            "{e}"
        );
        assert!(e.contains(":5: ha.election"), "{e}");
        assert!(e.contains("ha.password: missing"), "{e}");
        let e = err(&format!(
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"http://x:2379\"]\nleasettl = \"5s\"\n{DRIVERS}"
        ));
        assert!(
            e.contains("ha.leasettl: unknown key; did you mean `lease_ttl`?"),
            "{e}"
        );
    }
}
