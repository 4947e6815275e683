//! The `redfish` fencer builds from the example section it registers (`freezer-dr example fencer redfish`).

use freezer_dr_drivers_redfish as _;

#[test]
fn every_registered_example_builds() {
    freezer_dr_core::testing::build_examples(env!("CARGO_PKG_NAME"));
}
