//! The `prometheus` monitor builds from the example section it registers (`freezer-dr example monitor
//! prometheus`), and a mistake in its section names the file and the key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use freezer_dr_core::ErrorKind;
use freezer_dr_core::registry::{self, BuildContext};
use freezer_dr_prometheus as _;

#[test]
fn every_registered_example_builds() {
    freezer_dr_core::testing::build_examples(env!("CARGO_PKG_NAME"));
}

#[test]
fn a_config_mistake_names_the_file_and_the_key() {
    let reg = registry::monitors()
        .into_iter()
        .find(|r| r.name == "prometheus")
        .expect("the prometheus monitor is registered");
    let build = |text: &str| {
        (reg.build)(&BuildContext {
            file: Path::new("/etc/freezer-dr/freezer-dr.toml"),
            section: "monitor".into(),
            options: toml::from_str(text).unwrap(),
        })
        .err()
        .unwrap()
    };
    let e = build("url = \"http://p:9090\"\nhost_label = \"nova-host\"\n");
    assert_eq!(e.kind(), ErrorKind::Config);
    assert_eq!(
        e.to_string(),
        "/etc/freezer-dr/freezer-dr.toml: monitor.host_label: \"nova-host\" is not a Prometheus label name"
    );
    let e = build("url = \"http://p:9090\"\ndown_querry = \"x\"\n").to_string();
    assert!(
        e.contains("monitor.down_querry") && e.contains("down_query"),
        "{e}"
    );
}
