//! The `email` registration and its config: the example builds, mistakes are config errors that name
//! the key, and no secret is echoed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use freezer_dr_core::ErrorKind;
use freezer_dr_core::registry::{self, BuildContext};
use freezer_dr_email as _;

fn build(section: &str) -> freezer_dr_core::Result<Box<dyn freezer_dr_core::Notifier>> {
    let mut options: toml::Table = toml::from_str(section).unwrap();
    let ty = options.remove("type").unwrap();
    assert_eq!(ty.as_str(), Some("email"));
    let reg = registry::notifiers()
        .into_iter()
        .find(|r| r.name == "email")
        .expect("the email notifier is registered");
    (reg.build)(&BuildContext {
        file: Path::new("/etc/freezer-dr/freezer-dr.toml"),
        section: "notifier[0]".into(),
        options,
    })
}

#[test]
fn the_registered_example_builds() {
    freezer_dr_core::testing::build_examples(env!("CARGO_PKG_NAME"));
}

#[test]
fn an_unknown_key_is_a_config_error_naming_it() {
    let e = build(&format!(
        "{}\nstarttsl = \"required\"\n",
        freezer_dr_email::EXAMPLE
    ))
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("starttsl"), "{e}");
    assert!(e.to_string().contains("notifier[0]"), "{e}");
}

#[test]
fn mistakes_are_config_errors() {
    let base = freezer_dr_email::EXAMPLE;
    for (change, needle) in [
        ("to = []", "to"),
        ("from = \"not an address\"", "from"),
        ("server = \"http://mail.example.org\"", "server"),
        ("max_mails_per_minute = 0", "max_mails_per_minute"),
        ("timeout = \"soon\"", "timeout"),
    ] {
        let key = change.split(' ').next().unwrap();
        let section: String = base
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} ")))
            .chain([change])
            .collect::<Vec<_>>()
            .join("\n");
        let e = build(&section)
            .err()
            .unwrap_or_else(|| panic!("{change} was accepted"));
        assert_eq!(e.kind(), ErrorKind::Config, "{change}: {e}");
        assert!(e.to_string().contains(needle), "{change}: {e}");
    }
    let e = build(&format!("{base}\nusername = \"u\"\n")).err().unwrap();
    assert!(e.to_string().contains("password"), "{e}");
    let e = build(&format!("{base}\nca_file = \"/nonexistent/ca.pem\"\n"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

#[test]
fn credentials_in_the_server_url_are_refused_and_not_echoed() {
    let section: String = freezer_dr_email::EXAMPLE
        .lines()
        .filter(|l| !l.starts_with("server "))
        .chain(["server = \"smtp://freezer:hunter2@mail.example.org\""])
        .collect::<Vec<_>>()
        .join("\n");
    let e = build(&section).err().unwrap();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    let section = format!(
        "{}\nusername = \"u\"\npassword = \"hunter2\"\n",
        freezer_dr_email::EXAMPLE
    );
    let n = build(&section).unwrap();
    let _ = n;
    let cfg: freezer_dr_email::EmailConfig =
        toml::from_str(&section.replace("type = \"email\"\n", "")).unwrap();
    let notifier = freezer_dr_email::EmailNotifier::new(cfg.clone()).unwrap();
    assert!(!format!("{cfg:?} {notifier:?}").contains("hunter2"));
}
