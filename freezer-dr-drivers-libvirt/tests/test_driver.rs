//! The libvirt fencer against libvirt's own `test:///` driver, in process, on a node XML of compute
//! domains (each test opens its own fresh copy).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use freezer_dr_core::registry::{self, BuildContext};
use freezer_dr_core::testing::{self, Built, BuiltExample};
use freezer_dr_core::{ErrorKind, Fencer, HostId, PowerState, Secret};
use freezer_dr_drivers_libvirt::{LibvirtConfig, LibvirtFencer};

fn h(name: &str) -> HostId {
    HostId::from(name)
}

/// `host`'s power state as `f` reads it.
async fn status(f: &dyn Fencer, host: &str) -> PowerState {
    f.power_status(&h(host)).await.unwrap()
}

/// A fencer over a fresh node with compute-1..3 running and compute-4 shut off.
fn lab(dir: &Path) -> LibvirtFencer {
    let uri = common::node_uri(dir, &common::COMPUTES, &["compute-4"]);
    LibvirtFencer::new(LibvirtConfig::new(
        uri,
        ["compute-1", "compute-2", "compute-3", "compute-4"],
    ))
    .unwrap()
}

#[tokio::test]
async fn fences_one_domain_and_leaves_the_others_running() {
    let dir = tempfile::tempdir().unwrap();
    let f = lab(dir.path());
    for c in common::COMPUTES {
        assert_eq!(status(&f, c).await, PowerState::On, "{c}");
    }
    f.power_off(&h("compute-2")).await.unwrap();
    assert_eq!(status(&f, "compute-2").await, PowerState::Off);
    assert_eq!(status(&f, "compute-1").await, PowerState::On);
    assert_eq!(status(&f, "compute-3").await, PowerState::On);
}

#[tokio::test]
async fn power_off_of_a_domain_already_off_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let f = lab(dir.path());
    assert_eq!(status(&f, "compute-4").await, PowerState::Off);
    f.power_off(&h("compute-4")).await.unwrap();
    f.power_off(&h("compute-1")).await.unwrap();
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(status(&f, "compute-1").await, PowerState::Off);
}

#[tokio::test]
async fn a_listed_host_without_a_domain_is_a_permanent_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let uri = common::node_uri(dir.path(), &common::COMPUTES, &[]);
    let f = LibvirtFencer::new(LibvirtConfig::new(uri.clone(), ["compute-9"])).unwrap();
    assert!(f.handles(&h("compute-9")));
    for e in [
        f.power_off(&h("compute-9")).await.unwrap_err(),
        f.power_status(&h("compute-9")).await.unwrap_err(),
        f.power_on(&h("compute-9")).await.unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(!e.is_temporary(), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("host: compute-9") && msg.contains("domain: compute-9"),
            "{msg}"
        );
        assert!(msg.contains(&uri), "{msg}");
    }
    let e = f.healthcheck().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("compute-9"), "{e}");
}

#[tokio::test]
async fn a_host_not_listed_is_not_handled_and_never_powered_off() {
    let dir = tempfile::tempdir().unwrap();
    let uri = common::node_uri(dir.path(), &common::COMPUTES, &[]);
    // compute-2 and compute-3 exist as domains, but this fencer only lists compute-1.
    let f = LibvirtFencer::new(LibvirtConfig::new(uri, ["compute-1"])).unwrap();
    assert!(f.handles(&h("compute-1")));
    for other in ["compute-2", "compute-10", "compute-1 ", "Compute-1"] {
        assert!(!f.handles(&h(other)), "{other:?}");
        let e = f.power_off(&h(other)).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert!(!e.is_temporary());
    }
    // Nothing was touched: compute-1 (the only one it could reach) still runs.
    assert_eq!(status(&f, "compute-1").await, PowerState::On);
}

#[tokio::test]
async fn a_mapped_host_fences_its_own_domain() {
    let dir = tempfile::tempdir().unwrap();
    let uri = common::node_uri(dir.path(), &common::COMPUTES, &[]);
    let mut cfg = LibvirtConfig::new(uri, Vec::<String>::new());
    cfg.domains = BTreeMap::from([
        ("nova-a.example.org".to_owned(), "compute-3".to_owned()),
        ("nova-b.example.org".to_owned(), "compute-1".to_owned()),
    ]);
    let f = LibvirtFencer::new(cfg).unwrap();
    assert!(!f.handles(&h("compute-3")));
    assert_eq!(f.domain_for(&h("nova-a.example.org")), Some("compute-3"));
    f.power_off(&h("nova-a.example.org")).await.unwrap();
    assert_eq!(status(&f, "nova-a.example.org").await, PowerState::Off);
    assert_eq!(status(&f, "nova-b.example.org").await, PowerState::On);
}

#[tokio::test]
async fn power_on_starts_a_fenced_domain_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let f = lab(dir.path());
    f.power_on(&h("compute-4")).await.unwrap();
    assert_eq!(status(&f, "compute-4").await, PowerState::On);
    f.power_on(&h("compute-4")).await.unwrap();
    f.power_off(&h("compute-4")).await.unwrap();
    assert_eq!(status(&f, "compute-4").await, PowerState::Off);
    f.power_on(&h("compute-4")).await.unwrap();
    assert_eq!(status(&f, "compute-4").await, PowerState::On);
    f.healthcheck().await.unwrap();
}

#[tokio::test]
async fn conformance_against_the_test_driver() {
    let dir = tempfile::tempdir().unwrap();
    let f = lab(dir.path());
    freezer_dr_core::testing::conformance::fencer(&f, &h("compute-2")).await;
    assert_eq!(status(&f, "compute-1").await, PowerState::On);
}

#[tokio::test]
async fn an_unreadable_node_file_is_a_permanent_config_error() {
    let f = LibvirtFencer::new(LibvirtConfig::new(
        "test:///nonexistent/freezer-dr/node.xml",
        ["compute-1"],
    ))
    .unwrap();
    let e = f.power_status(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(!e.is_temporary());
}

#[tokio::test]
async fn an_unreachable_daemon_is_a_temporary_error_naming_the_host() {
    let port = freezer_dr_core::testing::free_port();
    let uri = format!("test+tcp://127.0.0.1:{port}/default");
    let mut cfg = LibvirtConfig::new(uri.clone(), ["compute-1"]);
    cfg.username = Some("fence".into());
    cfg.password = Some(Secret::new("hunter2-very-secret"));
    let f = LibvirtFencer::new(cfg.clone()).unwrap();
    let e = f.power_off(&h("compute-1")).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unreachable, "{e}");
    assert!(e.is_temporary());
    let msg = e.to_string();
    assert!(msg.contains("compute-1") && msg.contains(&uri), "{msg}");
    for shown in [msg, format!("{e:?}"), format!("{cfg:?}"), format!("{f:?}")] {
        assert!(!shown.contains("hunter2"), "secret leaked: {shown}");
    }
}

#[test]
fn a_password_in_the_uri_is_never_shown() {
    let mut cfg = LibvirtConfig::new("qemu+ssh://root:hunter2@hv1/system", ["compute-1"]);
    cfg.password = Some(Secret::new("hunter3"));
    let f = LibvirtFencer::new(cfg.clone()).unwrap();
    for shown in [format!("{cfg:?}"), format!("{f:?}")] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(shown.contains("root:<redacted>@hv1"), "{shown}");
    }
}

fn build(toml_text: &str) -> freezer_dr_core::Result<Box<dyn Fencer>> {
    let reg = registry::fencers()
        .into_iter()
        .find(|r| r.name == "libvirt")
        .expect("the libvirt fencer is registered");
    let mut options: toml::Table = toml::from_str(toml_text).unwrap();
    options.remove("type");
    (reg.build)(&BuildContext {
        file: Path::new("freezer-dr.toml"),
        section: "fencer[0]".into(),
        options,
    })
}

#[tokio::test]
async fn builds_from_its_registration_and_its_example() {
    let reg = registry::fencers()
        .into_iter()
        .find(|r| r.name == "libvirt")
        .unwrap();
    // The example's password comes from the environment; without it, it is a config error naming it.
    let example = reg.example.replace("# password", "password");
    let e = build(&example).err().expect("needs LIBVIRT_PASSWORD");
    assert!(e.to_string().contains("LIBVIRT_PASSWORD"), "{e}");
    let built = testing::build_examples(env!("CARGO_PKG_NAME"));
    let [
        BuiltExample {
            driver: Built::Fencer(f),
            ..
        },
    ] = built.as_slice()
    else {
        panic!("one fencer registered");
    };
    assert!(f.handles(&h("compute-1")));
    assert!(f.handles(&h("compute-3.example.org")));
    assert!(!f.handles(&h("compute-3")));

    let dir = tempfile::tempdir().unwrap();
    let uri = common::node_uri(dir.path(), &common::COMPUTES, &[]);
    let f = build(&format!(
        "type = \"libvirt\"\nuri = \"{uri}\"\nhosts = [\"compute-1\"]\ntimeout = \"5s\"\ngraceful_shutdown = \"2s\"\n"
    ))
    .unwrap();
    f.power_off(&h("compute-1")).await.unwrap();
    assert_eq!(status(f.as_ref(), "compute-1").await, PowerState::Off);
}

#[test]
fn config_errors_name_the_key() {
    let e = build("uri = \"test:///default\"\nhosts = [\"c1\"]\ntimeuot = \"5s\"\n")
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.to_string().contains("fencer[0].timeuot"), "{e}");
    let e = build("uri = \"test:///default\"\n").err().unwrap();
    assert!(e.to_string().contains("no host"), "{e}");
    let e = build("uri = \"test:///default\"\nhosts = [\"c1\"]\ntimeout = \"soon\"\n")
        .err()
        .unwrap();
    assert!(e.to_string().contains("timeout"), "{e}");
}
