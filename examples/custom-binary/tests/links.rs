//! The custom binary links exactly the drivers it names: Nova (monitor, evacuator, Keystone directory),
//! IPMI and email; not libvirt. And it is the whole `freezer-dr` command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_freezer-dr-custom");

#[test]
fn drivers_lists_exactly_nova_ipmi_and_email() {
    let out = Command::new(BIN).arg("drivers").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: BTreeSet<(String, String)> = text
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_owned(), w.next().unwrap().to_owned())
        })
        .collect();
    let (fakes, drivers): (BTreeSet<_>, BTreeSet<_>) =
        listed.into_iter().partition(|(_, name)| name == "testing");
    let want: BTreeSet<(String, String)> = [
        ("monitor", "nova"),
        ("fencer", "ipmi"),
        ("evacuator", "nova"),
        ("directory", "keystone"),
        ("notifier", "email"),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n.to_owned()))
    .collect();
    assert_eq!(drivers, want, "{text}");
    // Core's `testing` fakes are not named by this binary. Built on its own (`cargo build -p
    // freezer-dr-example-custom`) it has none; a workspace-wide test build (`cargo nextest run
    // --workspace`) unifies Cargo features, and the tests of other crates turn on core's `testing-drivers`
    // (through their dev-dependencies) for everyone, so they may be there too — all five or none, never
    // anything else.
    assert!(fakes.is_empty() || fakes.len() == 5, "{text}");
}

/// Credentials for the Nova sections (nothing is contacted: the config is refused before).
const AUTH: &str = "auth = { auth_url = \"http://127.0.0.1:9/v3\", username = \"a\", password = \"p\", \
                    project_name = \"admin\" }\n";

#[test]
fn a_driver_it_does_not_link_is_an_unknown_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("freezer-dr.toml");
    std::fs::write(
        &path,
        format!(
            "[journal]\npath = {:?}\n[monitor]\ntype = \"nova\"\n{AUTH}[[fencer]]\ntype = \"libvirt\"\n\
             uri = \"test:///default\"\nhosts = [\"compute-1\"]\n[evacuator]\ntype = \"nova\"\n{AUTH}",
            dir.path().join("j.redb").display().to_string()
        ),
    )
    .unwrap();
    for args in [&["validate"][..], &["run", "--once"]] {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("fencer[0].type: unknown fencer type \"libvirt\""),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("registered: ipmi"), "{args:?}: {stderr}");
    }
}

#[test]
fn it_has_every_subcommand_and_exit_code_of_freezer_dr() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "run",
        "validate",
        "drivers",
        "example",
        "status",
        "history",
        "pause",
        "resume",
        "recover",
        "forget",
        "confirm-off",
        "import-servers",
    ] {
        assert!(
            help.lines()
                .any(|l| l.split_whitespace().next() == Some(command)),
            "no `{command}` subcommand:\n{help}"
        );
    }
    for code in 0..=3 {
        assert!(
            help.contains(&format!("\n  {code}  ")),
            "exit code {code}:\n{help}"
        );
    }
}
