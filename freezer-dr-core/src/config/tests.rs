//! The config file format's tests: parse, checks, errors, examples.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

crate::register! {
    registry::MonitorRegistration {
        name: "unit-monitor",
        description: "Unit-test monitor.",
        example: "type = \"unit-monitor\"\n",
        build: |_| Ok(Box::new(NoMonitor)),
    }
}
crate::register! {
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
crate::register! {
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

/// `text` is refused (a config error) with a message that contains each of `wanted`.
fn refused(text: &str, wanted: &[&str]) {
    says(&err(text), wanted);
}

/// The error message `e` contains each of `wanted`.
fn says(e: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(e.contains(w), "{w:?} not in: {e}");
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
    assert_eq!(c.monitors[0].type_name, "unit-monitor");
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
    let text = format!("[recovery]\nstrikez = 3\n[recovery.storm]\nmax_fraction = 2.0\n{DRIVERS}");
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
    let text = format!("[recovery]\nstrikes = 0\n[recovery.storm]\nmax_fraction = 2.0\n{DRIVERS}");
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
    refused(
        &format!("[recovery.storm]\nmax_fractoin = 0.1\n{DRIVERS}"),
        &[":2: recovery.storm.max_fractoin: unknown key; did you mean `max_fraction`?"],
    );
}

#[test]
fn unknown_top_level_key_suggests_the_section() {
    refused(
        &format!("{DRIVERS}\n[notifiers]\ntype = \"x\"\n"),
        &["notifiers: unknown key; did you mean `notifier`?"],
    );
    refused(
        &format!("{DRIVERS}\n[zebra]\n"),
        &["zebra: unknown key (valid keys: recovery, journal"],
    );
}

#[test]
fn wrong_type_says_what_was_expected_with_an_example() {
    refused(
        &format!("[recovery]\nstrikes = \"three\"\n{DRIVERS}"),
        &[
            ":2: recovery.strikes: expected a whole number",
            "for example `strikes = 3`",
        ],
    );
    refused(
        &format!("[recovery]\ninterval = 30\n{DRIVERS}"),
        &[
            "recovery.interval: expected a string",
            "`interval = \"10s\"`",
        ],
    );
}

#[test]
fn bad_duration_says_how_durations_are_written() {
    refused(
        &format!("[recovery.fencing]\nconfirm_timeout = \"30 parsecs\"\n{DRIVERS}"),
        &[
            ":2: recovery.fencing.confirm_timeout: ",
            "expected a duration such as \"30s\"",
            "30 parsecs",
        ],
    );
}

#[test]
fn unknown_enum_value_lists_the_valid_ones() {
    refused(
        &format!("[recovery.policy]\nmode = \"optin\"\n{DRIVERS}"),
        &["recovery.policy.mode: unknown value; did you mean `opt-in`?"],
    );
}

#[test]
fn values_out_of_range_are_refused_all_at_once() {
    refused(
        &format!(
            "[recovery]\nstrikes = 0\ninterval = \"0s\"\n[recovery.storm]\nmax_fraction = 1.5\n\
         [recovery.evacuation]\nconcurrency = 0\n{DRIVERS}"
        ),
        &[
            ":2: recovery.strikes: must be at least 1",
            "e.g. `strikes = 3`",
            ":3: recovery.interval: must be longer than 0s",
            ":5: recovery.storm.max_fraction: must be more than 0 and at most 1",
            ":7: recovery.evacuation.concurrency: must be at least 1",
        ],
    );
    refused(
        &format!("[recovery.storm]\nmax_fraction = 0.0\n{DRIVERS}"),
        &["recovery.storm.max_fraction"],
    );
    refused(
        &format!("[recovery.storm]\nmax_fraction = nan\n{DRIVERS}"),
        &["recovery.storm.max_fraction"],
    );
    assert!(parse(&format!("[recovery.storm]\nmax_fraction = 1.0\n{DRIVERS}")).is_ok());
}

#[test]
fn lower_case_skip_states_are_refused() {
    refused(
        &format!("[recovery.policy]\nskip_states = [\"PAUSED\", \"shelved\"]\n{DRIVERS}"),
        &["recovery.policy.skip_states[1]: Nova statuses are upper case: write \"SHELVED\""],
    );
}

#[test]
fn missing_sections_say_which_to_add_and_how() {
    refused(
        "[[fencer]]\ntype = \"unit-fencer\"\n[evacuator]\ntype = \"unit-evacuator\"\n",
        &[
            "[monitor] is missing",
            "`freezer-dr example monitor <name>`",
            "unit-monitor",
        ],
    );
    refused(
        "[monitor]\ntype = \"unit-monitor\"\n[evacuator]\ntype = \"unit-evacuator\"\n",
        &["[[fencer]] is missing"],
    );
    refused(
        "[monitor]\ntype = \"unit-monitor\"\n[[fencer]]\ntype = \"unit-fencer\"\n",
        &["[evacuator] is missing"],
    );
}

#[test]
fn single_and_array_sections_are_not_confused() {
    refused(
        "[monitor]\ntype = \"m\"\n[fencer]\ntype = \"f\"\n[evacuator]\ntype = \"e\"\n",
        &[":3: fencer: write [[fencer]]"],
    );
    refused(
        "[monitor]\ntype = \"m\"\n[[fencer]]\ntype = \"f\"\n[[evacuator]]\ntype = \"e\"\n",
        &["evacuator: there is one evacuator: write [evacuator]"],
    );
}

#[test]
fn monitors_may_be_listed_and_each_needs_its_own_name() {
    let tail = "[[fencer]]\ntype = \"unit-fencer\"\n[evacuator]\ntype = \"unit-evacuator\"\n";
    // One [[monitor]] is today's single [monitor].
    let c = parse(&format!("[[monitor]]\ntype = \"unit-monitor\"\n{tail}")).unwrap();
    assert_eq!(c.monitors.len(), 1);
    assert_eq!(c.monitors[0].name, "unit-monitor");
    assert_eq!(c.monitors[0].key, "monitor[0]");
    // Two of a type need a name each, and the error points at the second one's.
    let e = err(&format!(
        "[[monitor]]\ntype = \"unit-monitor\"\n[[monitor]]\ntype = \"unit-monitor\"\n{tail}"
    ));
    assert!(
        e.contains(":3: monitor[1].name: a second monitor named `unit-monitor`"),
        "{e}"
    );
    let c = parse(&format!(
        "[recovery.monitors]\ncombine = \"quorum\"\n[[monitor]]\ntype = \"unit-monitor\"\n\
         name = \"a\"\n[[monitor]]\ntype = \"unit-monitor\"\nname = \"b\"\n{tail}"
    ))
    .unwrap();
    let names: Vec<&str> = c.monitors.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(c.recovery.monitors.combine, crate::Combine::Quorum);
    assert!(
        !c.monitors[0].options.contains_key("name"),
        "core keeps `name`: the driver never sees it"
    );
    let e = err(&format!(
        "[[monitor]]\ntype = \"unit-monitor\"\nname = 3\n{tail}"
    ));
    assert!(
        e.contains(":3: monitor[0].name: expected a non-empty string"),
        "{e}"
    );
    let e = err(&format!(
        "[recovery.monitors]\ncombine = \"most\"\n[monitor]\ntype = \"unit-monitor\"\n{tail}"
    ));
    assert!(e.contains(":2: recovery.monitors.combine"), "{e}");
    assert!(e.contains("all") && e.contains("quorum"), "{e}");
}

#[test]
fn a_section_without_type_asks_for_one() {
    refused(
        "[monitor]\ntype = \"m\"\n[[fencer]]\naddress = \"x\"\n[evacuator]\ntype = \"e\"\n",
        &[":3: fencer[0].type: missing", "unit-fencer"],
    );
    refused(
        "[monitor]\ntype = 3\n[[fencer]]\ntype = \"f\"\n[evacuator]\ntype = \"e\"\n",
        &[":2: monitor.type: expected a string"],
    );
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
    let wanted = [
        ":6: fencer[0].type: unknown fencer type \"ipmmi\"",
        "unit-fencer",
    ];
    says(&build_err(&text), &wanted);
}

#[test]
fn driver_option_typo_names_file_line_key_and_fix() {
    let text = DRIVERS.replace("address =", "adress =");
    let e = build_err(&text);
    says(
        &e,
        &["freezer-dr.toml:7: fencer[0].adress: unknown key; did you mean `address`?"],
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn driver_option_wrong_type_says_what_was_expected() {
    let text = DRIVERS.replace("address = \"10.0.0.1\"", "address = \"a\"\nport = \"623\"");
    says(
        &build_err(&text),
        &[":8: fencer[0].port: expected a whole number"],
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
    refused(
        &format!("[ha]\nbackend = \"zookeeper\"\nendpoints = []\n{DRIVERS}"),
        &["freezer-dr.toml:2: ha.backend", "etcd"],
    );
    // The fix shows an example.
    refused(
        &format!("[ha]\nbackend = \"etcd\"\n{DRIVERS}"),
        &["ha.endpoints: missing", "endpoints = "],
    );
    refused(
        &format!(
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nlease_ttl = \"1s\"\nelection = \"a/b\"\nuser = \"u\"\n{DRIVERS}"
        ),
        &[
            ":3: ha.endpoints[0]",
            ":4: ha.lease_ttl: must be whole seconds, at least 2s",
            ":5: ha.election",
            "ha.password: missing",
        ],
    );
    refused(
        &format!(
            "[ha]\nbackend = \"etcd\"\nendpoints = [\"http://x:2379\"]\nleasettl = \"5s\"\n{DRIVERS}"
        ),
        &["ha.leasettl: unknown key; did you mean `lease_ttl`?"],
    );
}

#[test]
fn the_isolation_settle_is_bounded_and_zero_is_allowed() {
    // A pause of an hour would hold every recovery an hour after its host was fenced: refused.
    refused(
        &format!("[recovery]\nisolation_settle = \"1h\"\n{DRIVERS}"),
        &[":2: recovery.isolation_settle: at most 1m"],
    );
    let c = parse(&format!("[recovery]\nisolation_settle = \"0s\"\n{DRIVERS}")).unwrap();
    assert!(c.recovery.isolation_settle.is_zero());
    let c = parse(&format!("[recovery]\nisolation_settle = \"1m\"\n{DRIVERS}")).unwrap();
    assert_eq!(c.recovery.isolation_settle, Duration::from_secs(60));
}
