//! The driver crates a binary links: named once in its [`drivers!`](crate::drivers) list, checked against
//! the registry by [`check_linked`].

use freezer_dr_core::registry;

/// Names the driver crates a binary links, once each, at the root of the binary's `main.rs`:
///
/// ```ignore
/// freezer_dr_cli::drivers![
///     freezer_dr_nova,
///     #[cfg(feature = "ipmi")]
///     freezer_dr_drivers_ipmi,
/// ];
/// ```
///
/// Expands to a `use <crate> as _;` line per crate (without one the linker drops the crate's
/// registrations, and its `type` becomes unknown in the config), `pub const LINKED: &[&str]` with the
/// crates' names, and a test that checks the list against the registry with [`check_linked`]. Attributes
/// (`#[cfg(feature = "...")]`) apply to their crate's line and its entry in `LINKED`.
#[macro_export]
macro_rules! drivers {
    ($($(#[$attr:meta])* $krate:ident),* $(,)?) => {
        $( $(#[$attr])* use $krate as _; )*

        /// The driver crates this binary links, as its `drivers!` list names them.
        #[allow(dead_code)]
        pub const LINKED: &[&str] = &[$( $(#[$attr])* ::core::stringify!($krate) ),*];

        #[cfg(test)]
        #[test]
        fn links_exactly_the_driver_crates_its_drivers_list_names() {
            if let Err(e) = $crate::check_linked(LINKED) {
                panic!("{e}");
            }
        }
    };
}

/// Checks a binary's list of driver crates (its [`drivers!`](crate::drivers) list, `LINKED`) against the
/// registry: every listed crate registered at least one driver, and every registered driver comes from a
/// listed crate. Core's own drivers (the `testing` fakes, with core's `testing` feature) need no entry:
/// every binary links core. Crate and package names compare with `-` and `_` alike. The error lists every
/// mismatch, one per line.
pub fn check_linked(linked: &[&str]) -> Result<(), String> {
    let crate_name = |package: &str| package.replace('-', "_");
    let drivers = registry::drivers();
    let mut problems = Vec::new();
    for listed in linked {
        let listed = crate_name(listed);
        if !drivers.iter().any(|d| crate_name(d.package) == listed) {
            problems.push(format!(
                "{listed} is listed but registered no driver: it is not a driver crate, or it registers \
                 without freezer_dr_core::register!"
            ));
        }
    }
    for d in &drivers {
        let package = crate_name(d.package);
        if package != "freezer_dr_core" && !linked.iter().any(|l| crate_name(l) == package) {
            problems.push(format!(
                "{} {:?} is registered by {}, which the drivers! list does not name: add {package} to it",
                d.kind, d.name, d.package
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_crate_without_drivers_is_named() {
        let linked: &[&str] = if cfg!(feature = "ipmi") {
            &["freezer_dr_drivers_ipmi", "freezer_dr_nothing"]
        } else {
            &["freezer_dr_nothing"]
        };
        let e = check_linked(linked).err().unwrap_or_default();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("freezer_dr_nothing is listed"), "{e}");
    }

    // The library links the IPMI crate for `import-servers`: a binary with this feature links it too, and
    // its list must say so.
    #[cfg(feature = "ipmi")]
    #[test]
    fn a_linked_crate_missing_from_the_list_is_named() {
        let e = check_linked(&[]).err().unwrap_or_default();
        assert!(
            e.contains("fencer \"ipmi\" is registered by freezer-dr-drivers-ipmi"),
            "{e}"
        );
        assert!(e.contains("add freezer_dr_drivers_ipmi to it"), "{e}");
        assert_eq!(check_linked(&["freezer-dr-drivers-ipmi"]), Ok(()));
    }
}
