//! The starting configuration `freezer-dr example` prints: core's defaults and one example section per
//! driver role, from the drivers linked into this binary.

use serde::Serialize;

use super::{DEFAULT_PATH, JournalConfig};
use crate::engine::RecoveryConfig;
use crate::etcd::config::HA_EXAMPLE;
use crate::registry::{self, Kind};

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
    out.push_str(&format!(
        "\n# Metrics and health endpoints (/metrics, /healthz, /readyz): off unless set.\n\
         # [metrics]\n# {}\n",
        super::METRICS_EXAMPLE
    ));
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

/// A working `key = value` line for a `[recovery]`, `[journal]` or `[ha]` key: its default, or the
/// example section's value.
pub(super) fn core_example(path: &str) -> Option<String> {
    if path == "metrics" || path.starts_with("metrics.") {
        return Some(super::METRICS_EXAMPLE.to_owned());
    }
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
