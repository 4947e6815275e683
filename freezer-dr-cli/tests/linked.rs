//! What the binary links: `--version` lists it, and the production feature set (what `cargo build -p
//! freezer-dr-cli`, `cargo install` and the Debian package build) has no `testing` driver.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_freezer-dr");

fn stdout(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_lists_the_linked_drivers_by_role_with_their_packages() {
    let text = stdout(&["--version"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        concat!("freezer-dr ", env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    let role = |kind: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{kind}:")))
            .unwrap_or_else(|| panic!("no `{kind}:` line\n{text}"))
            .trim()
    };
    // This test binary has the CLI's `testing` feature (its dev-dependency on itself): core's fakes.
    for kind in ["monitor", "fencer", "evacuator", "directory", "notifier"] {
        assert!(
            role(kind).contains("testing (freezer-dr-core)"),
            "{kind}: {text}"
        );
    }
    if cfg!(feature = "ipmi") {
        assert!(
            role("fencer").contains("ipmi (freezer-dr-drivers-ipmi)"),
            "{text}"
        );
    }
    if cfg!(feature = "nova") {
        assert!(
            role("directory").contains("keystone (freezer-dr-nova)"),
            "{text}"
        );
    }
    if cfg!(feature = "etcd") {
        assert_eq!(role("ha"), "etcd", "{text}");
    }
    // -V stays one line.
    assert_eq!(stdout(&["-V"]), format!("{}\n", lines[0]));
}

/// The features Cargo resolves for freezer-dr-core in a build of `packages` without dev-dependencies
/// (what `cargo build`/`cargo install`/cargo-deb compile), as `cargo tree` reports them: no build.
fn core_features(packages: &[&str]) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "--manifest-path"])
        .arg(&manifest)
        .args(packages)
        .args(["-e", "normal,build", "-i", "freezer-dr-core"])
        .args(["--depth", "0", "--format", "{p}|{f}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree {packages:?}: {out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (package, features) = text.trim().split_once('|').unwrap_or(("", ""));
    assert!(package.starts_with("freezer-dr-core "), "{text}");
    features
        .split(',')
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_production_feature_set_links_no_testing_driver() {
    let registers = |features: &[String]| features.iter().any(|f| f == "testing-drivers");
    // `cargo build -p freezer-dr-cli`, `cargo install`, the package: no `type = "testing"` anywhere.
    let production = core_features(&["-p", "freezer-dr-cli"]);
    assert!(!registers(&production), "{production:?}");
    // A whole-workspace build unifies features across members (examples/embedding uses core's fakes),
    // still without registering them.
    let workspace = core_features(&["--workspace"]);
    assert!(!registers(&workspace), "{workspace:?}");
    // The check sees the registration where it is asked for.
    let demo = core_features(&["-p", "freezer-dr-cli", "--features", "testing"]);
    assert!(registers(&demo), "{demo:?}");
}
