//! Every driver a crate registers builds from its own `example` section, as `freezer-dr example <kind>
//! <name>` prints it: the one conformance check of a registration, run from each driver crate's tests.

// Test code: a panic with a message is how the check reports a broken example.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use crate::config::section_header;
use crate::registry::{self, BuildContext, DriverInfo, Kind, Registration};
use crate::{Directory, Evacuator, Fencer, Monitor, Notifier};

/// The value that stands in for a secret the example reads from a file or the environment.
pub const EXAMPLE_SECRET: &str = "example-secret";

/// A driver built from its registered example.
pub struct BuiltExample {
    /// What the registry says of it.
    pub info: DriverInfo,
    /// The driver.
    pub driver: Built,
}

/// A built driver, whatever its role.
pub enum Built {
    /// A [`Monitor`].
    Monitor(Box<dyn Monitor>),
    /// A [`Fencer`].
    Fencer(Box<dyn Fencer>),
    /// An [`Evacuator`].
    Evacuator(Box<dyn Evacuator>),
    /// A [`Directory`].
    Directory(Box<dyn Directory>),
    /// A [`Notifier`].
    Notifier(Box<dyn Notifier>),
}

/// Builds every driver that `package` (the driver crate's `env!("CARGO_PKG_NAME")`) registered, from its
/// own example section, and returns them by kind then name. Panics, naming the driver, when the package
/// registered nothing (the crate is not linked: `use <crate> as _;`), when a description is empty, or when
/// an example is not TOML, has another `type`, or does not build (an unknown key under
/// `deny_unknown_fields`, a bad value).
///
/// A secret the example reads from a file or an environment variable (`{ file = "..." }`,
/// `{ env = "..." }`) is replaced by [`EXAMPLE_SECRET`] first: the example shows where a secret comes
/// from, a test cannot provide it.
pub fn build_examples(package: &str) -> Vec<BuiltExample> {
    build_examples_with(package, |_, _| {})
}

/// [`build_examples`], with `prepare` changing each section's options (without `type`, secrets already
/// replaced) before the build: for what a test cannot provide either, e.g. a `clouds.yaml` entry.
pub fn build_examples_with(
    package: &str,
    prepare: impl Fn(&DriverInfo, &mut toml::Table),
) -> Vec<BuiltExample> {
    let drivers: Vec<DriverInfo> = registry::drivers()
        .into_iter()
        .filter(|d| d.package == package)
        .collect();
    assert!(
        !drivers.is_empty(),
        "{package} registered no driver: is the crate linked (`use <crate> as _;`), and does it \
         register with freezer_dr_core::register!?"
    );
    drivers
        .into_iter()
        .map(|info| {
            let driver = build_one(&info, &prepare);
            BuiltExample { info, driver }
        })
        .collect()
}

fn build_one(info: &DriverInfo, prepare: &impl Fn(&DriverInfo, &mut toml::Table)) -> Built {
    let who = format!("{} {:?} of {}", info.kind, info.name, info.package);
    assert!(!info.description.trim().is_empty(), "{who}: no description");
    let body = info.example.trim_end();
    // As `freezer-dr example` prints it: the section header, unless the example starts with one.
    let text = if body.trim_start().starts_with('[') {
        body.to_owned()
    } else {
        format!("{}\n{body}\n", section_header(info.kind))
    };
    let mut doc: toml::Table = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("{who}: its example is not TOML: {e}\n{text}"));
    let (section, value) = match info.kind {
        Kind::Fencer | Kind::Notifier => (
            format!("{}[0]", info.kind),
            doc.remove(info.kind.as_str()).and_then(|v| match v {
                toml::Value::Array(a) => a.into_iter().next(),
                _ => None,
            }),
        ),
        _ => (info.kind.to_string(), doc.remove(info.kind.as_str())),
    };
    let Some(toml::Value::Table(mut options)) = value else {
        panic!(
            "{who}: its example has no {} section\n{text}",
            section_header(info.kind)
        );
    };
    let ty = options.remove("type");
    assert_eq!(
        ty.as_ref().and_then(toml::Value::as_str),
        Some(info.name),
        "{who}: its example's `type`\n{text}"
    );
    replace_secrets(&mut options);
    prepare(info, &mut options);
    let ctx = BuildContext {
        file: Path::new("<example>"),
        section,
        options,
    };
    let built = match info.kind {
        Kind::Monitor => build(registry::monitors(), info, &ctx).map(Built::Monitor),
        Kind::Fencer => build(registry::fencers(), info, &ctx).map(Built::Fencer),
        Kind::Evacuator => build(registry::evacuators(), info, &ctx).map(Built::Evacuator),
        Kind::Directory => build(registry::directories(), info, &ctx).map(Built::Directory),
        Kind::Notifier => build(registry::notifiers(), info, &ctx).map(Built::Notifier),
    };
    built.unwrap_or_else(|e| panic!("{who}: its example does not build: {e}\n{text}"))
}

fn build<T: ?Sized>(
    regs: Vec<&'static Registration<T>>,
    info: &DriverInfo,
    ctx: &BuildContext<'_>,
) -> crate::Result<Box<T>> {
    let reg = regs
        .into_iter()
        .find(|r| r.name == info.name && r.package == info.package)
        .expect("a listed driver is registered");
    (reg.build)(ctx)
}

/// `{ file = "..." }` and `{ env = "..." }`, at any depth, become [`EXAMPLE_SECRET`].
fn replace_secrets(table: &mut toml::Table) {
    for (_, value) in table.iter_mut() {
        replace_secret(value);
    }
}

fn replace_secret(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => {
            let source = t.len() == 1
                && ["file", "env"]
                    .iter()
                    .any(|k| t.get(*k).is_some_and(toml::Value::is_str));
            if source {
                *value = toml::Value::String(EXAMPLE_SECRET.to_owned());
            } else {
                replace_secrets(t);
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(replace_secret),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_s_own_testing_drivers_build_from_their_examples() {
        let built = build_examples("freezer-dr-core");
        for kind in Kind::ALL {
            assert!(
                built
                    .iter()
                    .any(|b| b.info.kind == kind && b.info.name == "testing"),
                "no testing {kind}"
            );
        }
        assert!(built.iter().any(|b| matches!(b.driver, Built::Fencer(_))));
    }

    #[test]
    fn secrets_from_files_and_variables_are_replaced_at_any_depth() {
        let mut t: toml::Table = toml::from_str(
            "password = { file = \"/etc/x\" }\n[auth]\nsecret = { env = \"X\" }\n\
             domains = { file = \"a\", other = \"b\" }\n",
        )
        .unwrap();
        replace_secrets(&mut t);
        assert_eq!(t["password"].as_str(), Some(EXAMPLE_SECRET));
        assert_eq!(t["auth"]["secret"].as_str(), Some(EXAMPLE_SECRET));
        assert_eq!(t["auth"]["domains"]["file"].as_str(), Some("a"));
    }

    #[test]
    #[should_panic(expected = "registered no driver")]
    fn a_package_without_drivers_is_a_failure() {
        build_examples("freezer-dr-nothing");
    }
}
