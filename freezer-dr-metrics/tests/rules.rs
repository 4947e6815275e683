//! The example alert rules (contrib/prometheus/freezer-dr.rules.yml) checked and unit-tested by Prometheus'
//! own `promtool` (Debian `prometheus`); every series they name is one this crate exports, and one the
//! README's series table lists.
//! `FREEZER_DR_SKIP_PROMETHEUS=1` skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use freezer_dr_core::testing::promtool;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus")
}

#[test]
fn the_example_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let Some(out) = promtool(&contrib(), &["check", "rules", "freezer-dr.rules.yml"]) else {
        return;
    };
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&contrib(), &["test", "rules", "freezer-dr.rules.test.yml"]).unwrap();
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn the_example_alert_rules_name_only_exported_series() {
    let rules = std::fs::read_to_string(contrib().join("freezer-dr.rules.yml")).unwrap();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("freezer_dr_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 8, "{names:?}");
    let config = freezer_dr_core::config::Config::parse(
        "[monitor]\ntype = \"t\"\n[[fencer]]\ntype = \"t\"\n[evacuator]\ntype = \"t\"\n\
         [ha]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
        Path::new("freezer-dr.toml"),
    )
    .unwrap();
    let exported = freezer_dr_metrics::Metrics::new(&config).encode();
    for name in names {
        // A histogram's series are named after it: `<name>_bucket`, `_count`, `_sum`.
        let name = ["_bucket", "_count", "_sum"]
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .find(|base| exported.contains(&format!("\n# TYPE {base} histogram\n")))
            .unwrap_or(name);
        assert!(
            exported.contains(&format!("\n# TYPE {name} "))
                || exported.contains(&format!("\n{name}{{")),
            "{name} (used by the rules) is not exported:\n{exported}"
        );
        assert!(
            readme.contains(&format!("`{name}")),
            "{name} (used by the rules) is not in the README's series table"
        );
    }
}
