//! Reading the file: TOML into [`Config`], each core section through serde with errors that name the
//! file, the line, the key and the fix; driver sections kept raw for their drivers.

use std::fmt;
use std::path::Path;

use super::check::{check_journal, check_recovery};
use super::example::{core_example, section_header};
use super::metrics::check_metrics;
use super::{Config, DriverSection, JournalConfig, MetricsConfig};
use crate::diagnostics::{
    LineIndex, error_at, explain, join_path, line_of, problem_at, unknown_key,
};
use crate::engine::RecoveryConfig;
use crate::etcd::config::HaConfig;
use crate::registry::{self, Kind};

/// The top-level keys of the file, in the order they are documented.
const TOP_LEVEL_KEYS: [&str; 9] = [
    "recovery",
    "journal",
    "ha",
    "metrics",
    "monitor",
    "fencer",
    "evacuator",
    "directory",
    "notifier",
];

impl Config {
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
        let metrics: MetricsConfig = match table.get("metrics") {
            Some(v) => cx.core_section("metrics", v)?,
            None => MetricsConfig::default(),
        };
        let problems: Vec<crate::ConfigError> = check_recovery(&recovery)
            .into_iter()
            .chain(check_journal(&journal))
            .chain(check_metrics(&metrics))
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

        let monitors = cx.monitors(&table)?;
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
            monitors,
            metrics,
            fencers,
            evacuator,
            directory,
            notifiers,
            lines,
        })
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

    /// `[monitor]`, or `[[monitor]]` listed one or more times (combined): at least one, each with a
    /// distinct name.
    fn monitors(&self, table: &toml::Table) -> crate::Result<Vec<DriverSection>> {
        let kind = Kind::Monitor;
        let monitors = match table.get(kind.as_str()) {
            Some(toml::Value::Array(_)) => self.list(table, kind)?,
            _ => self.single(table, kind)?.into_iter().collect(),
        };
        if monitors.is_empty() {
            return Err(self.missing(kind));
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &monitors {
            if !seen.insert(m.name.as_str()) {
                return Err(self.error(
                    &format!("{}.name", m.key),
                    format!(
                        "a second monitor named `{}`: give each [[monitor]] of the same type its own \
                         `name = \"...\"` (views and reports name them by it)",
                        m.name
                    ),
                ));
            }
        }
        Ok(monitors)
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
        let name = match kind {
            Kind::Monitor => match options.remove("name") {
                None => type_name.clone(),
                Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
                Some(other) => {
                    return Err(self.error(
                        &format!("{key}.name"),
                        format!(
                            "expected a non-empty string naming this monitor in views and reports, \
                             e.g. `name = \"nova\"`, found {}",
                            other
                        ),
                    ));
                }
            },
            _ => type_name.clone(),
        };
        Ok(DriverSection {
            kind,
            key,
            type_name,
            name,
            options,
        })
    }
}
