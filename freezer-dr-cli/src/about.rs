//! What the binary says about itself: `--version` with the drivers it links, its man pages and its shell
//! completions. The package ships the last two as the binary writes them, so they always match its
//! command line (no build script, no second copy of the definition).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use clap::CommandFactory as _;
use freezer_dr_core::registry::{DriverInfo, Kind};

use crate::Cli;

/// The HA backend this binary was built with (`[ha] backend = "..."`), if any.
const HA_BACKEND: Option<&str> = if cfg!(feature = "etcd") {
    Some("etcd")
} else {
    None
};

/// The long version (`--version`; `-V` prints the version alone): the version, then one line per role
/// with each linked driver and the package that registered it, then the HA backend. No trailing newline
/// (clap adds it).
pub fn long_version(drivers: &[DriverInfo]) -> String {
    let mut out = env!("CARGO_PKG_VERSION").to_owned();
    for kind in Kind::ALL {
        let linked: Vec<String> = drivers
            .iter()
            .filter(|d| d.kind == kind)
            .map(|d| format!("{} ({})", d.name, d.package))
            .collect();
        let linked = if linked.is_empty() {
            "none linked".to_owned()
        } else {
            linked.join(", ")
        };
        let _ = write!(out, "\n{:<10} {linked}", format!("{kind}:"));
    }
    let ha = HA_BACKEND.unwrap_or("none (built without the `etcd` feature)");
    let _ = write!(out, "\n{:<10} {ha}", "ha:");
    out
}

/// Writes the man pages into `dir`: `freezer-dr.1` and one `freezer-dr-<subcommand>.1` per subcommand.
pub fn man_pages(dir: &Path) -> anyhow::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))
}

/// Prints the completion script for `shell` on standard output.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&script)
        .and_then(|()| stdout.flush())
        .context("cannot write the completion script to standard output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(kind: Kind, name: &'static str, package: &'static str) -> DriverInfo {
        DriverInfo {
            kind,
            name,
            description: "",
            example: "",
            package,
        }
    }

    #[test]
    fn the_long_version_lists_each_role_with_its_drivers_and_their_packages() {
        let drivers = [
            driver(Kind::Fencer, "ipmi", "freezer-dr-drivers-ipmi"),
            driver(Kind::Fencer, "redfish", "freezer-dr-drivers-redfish"),
            driver(Kind::Directory, "keystone", "freezer-dr-nova"),
        ];
        let text = long_version(&drivers);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], env!("CARGO_PKG_VERSION"), "{text}");
        assert_eq!(
            &lines[1..6],
            [
                "monitor:   none linked",
                "fencer:    ipmi (freezer-dr-drivers-ipmi), redfish (freezer-dr-drivers-redfish)",
                "evacuator: none linked",
                "directory: keystone (freezer-dr-nova)",
                "notifier:  none linked",
            ],
            "{text}"
        );
        assert!(lines[6].starts_with("ha:"), "{text}");
        assert!(!text.ends_with('\n'));
    }
}
