//! Black-box tests of the `freezer-dr` binary: the real executable, temp dirs, the `testing` drivers.

// Test helpers panic on a broken test environment, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn freezer_dr(dir: &Path, args: &[&str]) -> Run {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_freezer-dr"))
        .args(args)
        .current_dir(dir)
        .env_remove("FREEZER_DR_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp dir with `freezer-dr.toml` = `[journal]` in the dir + `body`.
fn config(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("freezer-dr.toml");
    let journal = dir.path().join("journal.redb");
    let text = format!(
        "[journal]\npath = {:?}\n\n{body}",
        journal.display().to_string()
    );
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// True if `stderr` has a `registered: a, b, ...` list naming `driver`.
fn lists_registered(stderr: &str, driver: &str) -> bool {
    stderr.split("registered: ").skip(1).any(|rest| {
        rest.split([')', ';', '\n'])
            .next()
            .is_some_and(|list| list.split(", ").any(|n| n == driver))
    })
}

fn with_config<'a>(path: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.push("--config");
    v.push(path.to_str().unwrap());
    v
}

/// Fast observations over the `testing` drivers, every host up.
fn testing_drivers_all_up() -> String {
    format!(
        "[recovery]\ninterval = \"10ms\"\nstrikes = 2\n{}",
        common::TESTING_DRIVERS
    )
}

#[test]
fn a_typo_in_the_config_names_file_line_key_and_fix_and_exits_1() {
    let (dir, path) = config("[recovery]\nstrikez = 3\n");
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains(&format!(
            "{}:5: recovery.strikez: unknown key; did you mean `strikes`?",
            path.display()
        )),
        "{}",
        r.show()
    );
}

#[test]
fn a_missing_config_names_the_path_and_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let r = freezer_dr(dir.path(), &["validate", "--config", "nowhere.toml"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("nowhere.toml: cannot read"),
        "{}",
        r.show()
    );
    assert!(r.stderr.contains("--config"), "{}", r.show());
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let r = freezer_dr(dir.path(), &["run", "--help"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    for line in [
        "  0  ok",
        "  1  error",
        "  2  a recovery needs an operator",
        "  3  refused",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing\n{}", r.show());
    }
}

#[test]
fn confirm_off_without_the_flag_refuses_and_stores_nothing() {
    let (dir, path) = config(&testing_drivers_all_up());
    let r = freezer_dr(
        dir.path(),
        &with_config(&path, &["confirm-off", "compute-1"]),
    );
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("--yes-i-checked-it-is-off"),
        "{}",
        r.show()
    );
    assert!(!dir.path().join("journal.redb").exists(), "{}", r.show());
}

// The registration guard: a driver crate (or core's `testing` feature) dropped from the binary shows up
// here. Driver crates add their names as they land.
#[test]
fn drivers_lists_every_linked_driver() {
    let dir = tempfile::tempdir().unwrap();
    let r = freezer_dr(dir.path(), &["drivers"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let testing =
        ["monitor", "fencer", "evacuator", "directory", "notifier"].map(|k| (k, "testing"));
    let nova = [
        ("monitor", "nova"),
        ("evacuator", "nova"),
        ("directory", "keystone"),
    ];
    // (linked into this build, the feature that links it, the (kind, name) lines it adds)
    type Lines<'a> = &'a [(&'a str, &'a str)];
    let expected: [(bool, &str, Lines); 6] = [
        (true, "testing", &testing),
        (
            cfg!(feature = "libvirt"),
            "libvirt",
            &[("fencer", "libvirt")],
        ),
        (cfg!(feature = "ipmi"), "ipmi", &[("fencer", "ipmi")]),
        (
            cfg!(feature = "redfish"),
            "redfish",
            &[("fencer", "redfish")],
        ),
        (cfg!(feature = "email"), "email", &[("notifier", "email")]),
        (cfg!(feature = "nova"), "nova", &nova),
    ];
    for (_, feature, lines) in expected.into_iter().filter(|e| e.0) {
        for &(kind, name) in lines {
            assert!(
                r.stdout
                    .lines()
                    .any(|l| l.split_whitespace().take(2).eq([kind, name])),
                "no `{kind} {name}` line: feature {feature} is on, yet its crate was dropped by \
                 the linker\n{}",
                r.show()
            );
        }
    }
}

#[cfg(feature = "ipmi")]
#[test]
fn the_ipmi_example_and_an_imported_servers_yml_validate() {
    let (dir, yml) = freezer_dr_core::testing::temp_file(
        "servers.yml",
        "---\n  servers:\n    - id: COMPUTE-0001\n      ip-addr: 192.168.10.6\n      \
         hostname: compute-1\n      fencer-ip: 192.168.9.6\n      fencer-password: pw\n      \
         fencer-user: admin\n",
    );
    let imported = freezer_dr(dir.path(), &["import-servers", yml.to_str().unwrap()]);
    assert_eq!(imported.code, Some(0), "{}", imported.show());
    assert!(
        imported.stdout.contains("[fencer.hosts.compute-1]"),
        "{}",
        imported.show()
    );
    assert!(
        imported.stderr.contains("keep it private"),
        "{}",
        imported.show()
    );
    let example = freezer_dr(dir.path(), &["example", "fencer", "ipmi"]);
    assert_eq!(example.code, Some(0), "{}", example.show());
    for fencer in [&imported.stdout, &example.stdout] {
        let body =
            format!("[monitor]\ntype = \"testing\"\n\n{fencer}\n[evacuator]\ntype = \"testing\"\n");
        let (dir, path) = config(&body);
        let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
        assert_eq!(r.code, Some(0), "{body}\n{}", r.show());
    }
}

#[cfg(feature = "redfish")]
#[test]
fn the_redfish_example_validates_and_a_typo_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let example = freezer_dr(dir.path(), &["example", "fencer", "redfish"]);
    assert_eq!(example.code, Some(0), "{}", example.show());
    assert!(
        example.stdout.contains("type = \"redfish\""),
        "{}",
        example.show()
    );
    let body = |fencer: &str| {
        format!("[monitor]\ntype = \"testing\"\n\n{fencer}\n[evacuator]\ntype = \"testing\"\n")
    };
    let (dir, path) = config(&body(&example.stdout));
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    let typo = example.stdout.replace("task_timeout", "task_timout");
    let (dir, path) = config(&body(&typo));
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("task_timout"), "{}", r.show());
    assert!(r.stderr.contains("task_timeout"), "the fix: {}", r.show());
}

#[test]
fn an_unknown_driver_type_lists_the_registered_ones() {
    let (dir, path) = config(
        "[monitor]\ntype = \"testing\"\n[[fencer]]\ntype = \"ipmmi\"\n[evacuator]\ntype = \"testing\"\n",
    );
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr
            .contains("fencer[0].type: unknown fencer type \"ipmmi\""),
        "{}",
        r.show()
    );
    assert!(lists_registered(&r.stderr, "testing"), "{}", r.show());
}

#[test]
fn the_email_example_section_is_accepted_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for (kind, name) in [
        ("monitor", "testing"),
        ("fencer", "testing"),
        ("evacuator", "testing"),
        ("directory", "testing"),
        ("notifier", "email"),
    ] {
        let r = freezer_dr(dir.path(), &["example", kind, name]);
        assert_eq!(r.code, Some(0), "{}", r.show());
        body.push_str(&r.stdout);
        body.push('\n');
    }
    assert!(body.contains("type = \"email\""), "{body}");
    let (dir, path) = config(&body);
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(0), "{body}\n{}", r.show());
}

#[test]
fn example_sections_are_accepted_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let mut body = String::new();
    for kind in ["monitor", "fencer", "evacuator", "directory", "notifier"] {
        let r = freezer_dr(dir.path(), &["example", kind, "testing"]);
        assert_eq!(r.code, Some(0), "{}", r.show());
        body.push_str(&r.stdout);
        body.push('\n');
    }
    assert!(body.contains("[[fencer]]"), "{body}");
    let (dir, path) = config(&body);
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate", "--connect"]));
    assert_eq!(r.code, Some(0), "{body}\n{}", r.show());
    let has = |words: &[&str]| {
        r.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(words.iter().copied()))
    };
    assert!(has(&["fencer[0]", "testing"]), "{}", r.show());
    assert!(has(&["notifier[0]", "testing", "OK"]), "{}", r.show());
}

#[test]
fn validate_connect_checks_every_driver_when_monitors_are_combined() {
    let body = r#"
[[monitor]]
type = "testing"
name = "nova"
world = "combined-validate"

[[monitor]]
type = "testing"
name = "probe"
probe = true
world = "combined-validate"

[[fencer]]
type = "testing"
world = "combined-validate"

[evacuator]
type = "testing"
world = "combined-validate"

[[notifier]]
type = "testing"
world = "combined-validate"
"#;
    let (dir, path) = config(body);
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate", "--connect"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    let has = |words: &[&str]| {
        r.stdout
            .lines()
            .any(|l| l.split_whitespace().eq(words.iter().copied()))
    };
    for line in [
        ["monitor[0]", "testing", "OK"],
        ["monitor[1]", "testing", "OK"],
        ["fencer[0]", "testing", "OK"],
        ["notifier[0]", "testing", "OK"],
    ] {
        assert!(has(&line), "{line:?}: {}", r.show());
    }
}

#[test]
fn validate_connect_fails_when_a_compute_host_has_no_fencer() {
    let body = r#"
[monitor]
type = "testing"
world = "coverage"
hosts = ["compute-1", "compute-2", "compute-10"]

[[fencer]]
type = "testing"
world = "coverage"
exclude = ["compute-1"]

[evacuator]
type = "testing"
world = "coverage"
"#;
    let (dir, path) = config(body);
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate", "--connect"]));
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stdout.contains("no fencer handles compute-1\n"),
        "{}",
        r.show()
    );
    assert!(
        r.stderr.contains("1 compute host(s) have no fencer"),
        "{}",
        r.show()
    );
    let covered = body.replace("exclude = [\"compute-1\"]", "");
    let (dir, path) = config(&covered);
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate", "--connect"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("every one of the 3 observed host(s)"),
        "{}",
        r.show()
    );
}

#[test]
fn an_unknown_example_lists_the_registered_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let r = freezer_dr(dir.path(), &["example", "fencer", "nope"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(lists_registered(&r.stderr, "testing"), "{}", r.show());
}

#[test]
fn run_once_with_nothing_down_prints_no_failed_nodes_and_exits_0() {
    let (dir, path) = config(&testing_drivers_all_up());
    let r = freezer_dr(dir.path(), &with_config(&path, &["run", "--once"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(r.stdout, "No failed nodes\n", "{}", r.show());
}

#[test]
fn run_once_dry_run_prints_the_plan_and_touches_nothing() {
    let (dir, path) = config(&common::one_host_down("10ms"));
    let r = freezer_dr(
        dir.path(),
        &with_config(&path, &["run", "--once", "--dry-run"]),
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let plan = r.stdout.to_lowercase();
    assert!(
        plan.starts_with("dry run: nothing was changed.\nplan:\n"),
        "{}",
        r.show()
    );
    let line_with = |words: &[&str]| {
        plan.lines()
            .position(|l| words.iter().all(|w| l.contains(w)))
            .unwrap_or_else(|| panic!("no plan line with {words:?}\n{}", r.show()))
    };
    // In this order: nothing is isolated or evacuated before the power-off.
    let off = line_with(&["power off", "compute-1"]);
    let isolate = line_with(&["isolate", "compute-1"]);
    let vm0 = line_with(&["evacuate", "compute-1-vm-0"]);
    let vm1 = line_with(&["evacuate", "compute-1-vm-1"]);
    assert!(
        off < isolate && isolate < vm0 && isolate < vm1,
        "{}",
        r.show()
    );
    assert!(!plan.contains("compute-2"), "{}", r.show());
    assert!(!dir.path().join("journal.redb").exists(), "{}", r.show());
}

#[test]
fn pause_then_status_shows_the_brake_request() {
    let (dir, path) = config(&testing_drivers_all_up());
    let r = freezer_dr(
        dir.path(),
        &with_config(&path, &["pause", "--reason", "switch upgrade"]),
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("within one cycle"), "{}", r.show());
    let r = freezer_dr(dir.path(), &with_config(&path, &["status"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("pause (switch upgrade)"), "{}", r.show());
    let r = freezer_dr(dir.path(), &with_config(&path, &["status", "--json"]));
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", r.show()));
    assert_eq!(
        v["requests"][0]["request"]["request"],
        "pause",
        "{}",
        r.show()
    );
    assert_eq!(
        v["requests"][0]["request"]["reason"],
        "switch upgrade",
        "{}",
        r.show()
    );
}

#[test]
fn the_readme_config_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README has a ```toml block");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("freezer-dr.toml");
    std::fs::write(&path, example).unwrap();
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(0), "{example}\n{}", r.show());
}

#[test]
fn recover_despite_storm_and_forget_are_stored_as_requests() {
    let (dir, path) = config(&testing_drivers_all_up());
    let r = freezer_dr(
        dir.path(),
        &with_config(&path, &["recover", "compute-1", "--despite-storm"]),
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let r = freezer_dr(dir.path(), &with_config(&path, &["forget", "compute-2"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("no longer be tracked"), "{}", r.show());
    let r = freezer_dr(dir.path(), &with_config(&path, &["status", "--json"]));
    let v: serde_json::Value =
        serde_json::from_str(&r.stdout).unwrap_or_else(|_| panic!("{}", r.show()));
    let reqs = &v["requests"];
    assert_eq!(reqs[0]["request"]["request"], "recover", "{}", r.show());
    assert_eq!(reqs[0]["request"]["despite_storm"], true, "{}", r.show());
    assert_eq!(reqs[1]["request"]["request"], "forget", "{}", r.show());
    let r = freezer_dr(dir.path(), &with_config(&path, &["status"]));
    assert!(
        r.stdout.contains("recover compute-1 --despite-storm")
            && r.stdout.contains("forget compute-2"),
        "{}",
        r.show()
    );
}

#[test]
fn without_ha_run_and_validate_warn_that_exactly_one_daemon_may_watch_the_cloud() {
    let (dir, path) = config(&testing_drivers_all_up());
    let r = freezer_dr(dir.path(), &with_config(&path, &["validate"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("warning: no [ha] section")
            && r.stdout.contains("Exactly one freezer-dr"),
        "{}",
        r.show()
    );
    let r = freezer_dr(dir.path(), &with_config(&path, &["run", "--once"]));
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stderr.contains("Exactly one freezer-dr"), "{}", r.show());
}
