//! The `nova` monitor and evacuator and the `keystone` directory build from the example sections they
//! register (`freezer-dr example monitor nova`, ...).

use freezer_dr_nova as _;

#[test]
fn every_registered_example_builds() {
    let built =
        freezer_dr_core::testing::build_examples_with(env!("CARGO_PKG_NAME"), |d, options| {
            let Some(toml::Value::Table(auth)) = options.get_mut("auth") else {
                panic!("{} {}: the example has no auth table", d.kind, d.name);
            };
            // A clouds.yaml entry cannot be provided here (it is looked for in the working directory and
            // the home directory): the monitor's example names one; its values go inline instead.
            if let Some(cloud) = auth.remove("cloud") {
                assert_eq!(cloud.as_str(), Some("mycloud"), "{} {}", d.kind, d.name);
                *auth = toml::from_str(
                "auth_url = \"https://keystone.example.org:5000/v3\"\nusername = \"freezer-dr\"\n\
                 password = \"p\"\nproject_name = \"admin\"\n",
            )
            .unwrap_or_else(|e| panic!("{e}"));
            }
        });
    let names: Vec<String> = built
        .iter()
        .map(|b| format!("{} {}", b.info.kind, b.info.name))
        .collect();
    assert_eq!(
        names,
        ["monitor nova", "evacuator nova", "directory keystone"]
    );
}
