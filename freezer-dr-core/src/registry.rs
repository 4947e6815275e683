//! Link-time driver registry (through [`inventory`]).
//!
//! A driver crate registers each role it fills with [`register!`](crate::register), which also records
//! the crate's Cargo package (so a binary's list of linked crates can be checked against the registry):
//!
//! ```ignore
//! freezer_dr_core::register! {
//!     freezer_dr_core::registry::FencerRegistration {
//!         name: "ipmi",
//!         description: "Power control through a BMC over IPMI v2.0 LAN (RMCP+).",
//!         example: "type = \"ipmi\"\n...",
//!         build: |ctx| Ok(Box::new(IpmiFencer::new(ctx.parse()?)?)),
//!     }
//! }
//! ```
//!
//! A binary must name every driver crate it links (`use freezer_dr_drivers_ipmi as _;`), or the linker
//! drops the registration. Lookups never rely on link order: they are sorted by name.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::{ConfigError, Directory, Error, Evacuator, Fencer, Monitor, Notifier, Result};

/// What a driver's build function gets: its own section of the config, and where it came from (for
/// errors).
#[derive(Debug)]
pub struct BuildContext<'a> {
    /// The config file (or a description such as `<embedded>`).
    pub file: &'a Path,
    /// The section's key path, e.g. `fencer[1]` or `monitor`.
    pub section: String,
    /// The section's options, without `type`.
    pub options: toml::Table,
}

impl BuildContext<'_> {
    /// Deserializes the section into the driver's config type. Use `#[serde(deny_unknown_fields)]` on it;
    /// the error names the file, the full key and the fix (e.g. the closest known key for a typo).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        crate::diagnostics::parse_section(self.file, &self.section, &self.options)
    }

    /// Deserializes the section (like [`BuildContext::parse`]) and builds the driver with
    /// `build(config, section key)`, for drivers whose own checks name keys under the section: their
    /// errors get the file, like [`BuildContext::file_error`].
    pub fn build<C: DeserializeOwned, T>(
        &self,
        build: impl FnOnce(C, &str) -> Result<T>,
    ) -> Result<T> {
        build(self.parse()?, &self.section).map_err(|e| self.file_error(e))
    }

    /// A driver's own config error (one problem per line, each starting with its key) with every line
    /// prefixed by the file, as `<file>: <key>: problem` like core's own errors.
    pub fn file_error(&self, e: Error) -> Error {
        let problems = e
            .to_string()
            .lines()
            .map(|l| match l.split_once(": ") {
                Some((key, problem)) if !key.contains(' ') => {
                    ConfigError::new(self.file, key, problem)
                }
                _ => ConfigError::new(self.file, "", l),
            })
            .collect();
        Error::config_problems(problems)
    }
}

/// One driver implementation of a role `T` (`dyn Fencer`, `dyn Monitor`, ...). Submit it with
/// [`register!`](crate::register), which fills in `package`.
pub struct Registration<T: ?Sized + 'static> {
    /// The Cargo package that registered it (`freezer-dr-drivers-ipmi`): `env!("CARGO_PKG_NAME")` of the
    /// driver crate, set by [`register!`](crate::register).
    pub package: &'static str,
    /// The `type` name in the config (a short noun: `ipmi`, `nova`).
    pub name: &'static str,
    /// One line for `freezer-dr drivers`.
    pub description: &'static str,
    /// A working TOML section (with its `type` line) for `freezer-dr example`.
    pub example: &'static str,
    /// Builds the driver from its section. Pure: no network I/O (that is `healthcheck`'s job).
    pub build: fn(&BuildContext<'_>) -> Result<Box<T>>,
}

impl<T: ?Sized> fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("package", &self.package)
            .field("name", &self.name)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

/// Registration of a [`Monitor`].
pub type MonitorRegistration = Registration<dyn Monitor>;
/// Registration of a [`Fencer`].
pub type FencerRegistration = Registration<dyn Fencer>;
/// Registration of an [`Evacuator`].
pub type EvacuatorRegistration = Registration<dyn Evacuator>;
/// Registration of a [`Directory`].
pub type DirectoryRegistration = Registration<dyn Directory>;
/// Registration of a [`Notifier`].
pub type NotifierRegistration = Registration<dyn Notifier>;

/// Registers a driver: [`inventory::submit!`] of a [`Registration`] literal (every field but `package`),
/// with `package` set to the calling crate's Cargo package name.
///
/// ```ignore
/// freezer_dr_core::register! {
///     freezer_dr_core::registry::NotifierRegistration {
///         name: "email",
///         description: "Mail over SMTP.",
///         example: EXAMPLE,
///         build: |ctx| Ok(Box::new(EmailNotifier::new(ctx.parse()?)?)),
///     }
/// }
/// ```
#[macro_export]
macro_rules! register {
    ($($registration:ident)::+ { $($field:tt)* }) => {
        $crate::inventory::submit! {
            $($registration)::+ {
                package: ::core::env!("CARGO_PKG_NAME"),
                $($field)*
            }
        }
    };
}

inventory::collect!(MonitorRegistration);
inventory::collect!(FencerRegistration);
inventory::collect!(EvacuatorRegistration);
inventory::collect!(DirectoryRegistration);
inventory::collect!(NotifierRegistration);

/// The driver roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `[monitor]`
    Monitor,
    /// `[[fencer]]`
    Fencer,
    /// `[evacuator]`
    Evacuator,
    /// `[directory]`
    Directory,
    /// `[[notifier]]`
    Notifier,
}

impl Kind {
    /// Every kind, in pipeline order.
    pub const ALL: [Kind; 5] = [
        Kind::Monitor,
        Kind::Fencer,
        Kind::Evacuator,
        Kind::Directory,
        Kind::Notifier,
    ];

    /// The config section name (`fencer`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Monitor => "monitor",
            Kind::Fencer => "fencer",
            Kind::Evacuator => "evacuator",
            Kind::Directory => "directory",
            Kind::Notifier => "notifier",
        }
    }

    /// Parses a kind name as written on the command line.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered driver, whatever its role (for listings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    /// Its role.
    pub kind: Kind,
    /// Its `type` name.
    pub name: &'static str,
    /// One line.
    pub description: &'static str,
    /// A working TOML section.
    pub example: &'static str,
    /// The Cargo package that registered it.
    pub package: &'static str,
}

fn sorted<T: ?Sized + 'static>(
    regs: impl Iterator<Item = &'static Registration<T>>,
) -> Vec<&'static Registration<T>> {
    let mut v: Vec<_> = regs.collect();
    v.sort_by_key(|r| r.name);
    v
}

/// Registered monitors, sorted by name.
pub fn monitors() -> Vec<&'static MonitorRegistration> {
    sorted(inventory::iter::<MonitorRegistration>.into_iter())
}
/// Registered fencers, sorted by name.
pub fn fencers() -> Vec<&'static FencerRegistration> {
    sorted(inventory::iter::<FencerRegistration>.into_iter())
}
/// Registered evacuators, sorted by name.
pub fn evacuators() -> Vec<&'static EvacuatorRegistration> {
    sorted(inventory::iter::<EvacuatorRegistration>.into_iter())
}
/// Registered directories, sorted by name.
pub fn directories() -> Vec<&'static DirectoryRegistration> {
    sorted(inventory::iter::<DirectoryRegistration>.into_iter())
}
/// Registered notifiers, sorted by name.
pub fn notifiers() -> Vec<&'static NotifierRegistration> {
    sorted(inventory::iter::<NotifierRegistration>.into_iter())
}

fn infos<T: ?Sized>(kind: Kind, regs: Vec<&'static Registration<T>>) -> Vec<DriverInfo> {
    regs.into_iter()
        .map(|r| DriverInfo {
            kind,
            name: r.name,
            description: r.description,
            example: r.example,
            package: r.package,
        })
        .collect()
}

/// Every registered driver, by kind then name.
pub fn drivers() -> Vec<DriverInfo> {
    let mut v = infos(Kind::Monitor, monitors());
    v.extend(infos(Kind::Fencer, fencers()));
    v.extend(infos(Kind::Evacuator, evacuators()));
    v.extend(infos(Kind::Directory, directories()));
    v.extend(infos(Kind::Notifier, notifiers()));
    v
}

/// Finds a registration by name; an unknown name is a config error listing the registered ones.
pub fn find<T: ?Sized + 'static>(
    kind: Kind,
    regs: Vec<&'static Registration<T>>,
    name: &str,
    file: &Path,
    section: &str,
) -> Result<&'static Registration<T>> {
    if let Some(r) = regs.iter().find(|r| r.name == name) {
        return Ok(r);
    }
    let known: Vec<&str> = regs.iter().map(|r| r.name).collect();
    let listed = if known.is_empty() {
        "none are linked into this binary".to_owned()
    } else {
        format!("registered: {}", known.join(", "))
    };
    Err(Error::config_problems(vec![ConfigError::new(
        file,
        format!("{section}.type"),
        format!(
            "unknown {kind} type {name:?} ({listed}); `freezer-dr drivers` lists them and \
             `freezer-dr example {kind} <name>` prints a section"
        ),
    )]))
}

#[cfg(test)]
mod tests {
    #[test]
    fn register_records_the_registering_package() {
        // In core's own tests every driver (the `testing` ones, config's unit drivers) is core's.
        let drivers = super::drivers();
        assert!(drivers.iter().any(|d| d.name == "testing"), "{drivers:?}");
        assert!(
            drivers.iter().all(|d| d.package == "freezer-dr-core"),
            "{drivers:?}"
        );
    }
}
