//! The custom binary links exactly the drivers it names: libvirt and core's testing fakes, not ipmi.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_custom_binary_knows_only_the_drivers_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("freezer-dr.toml");
    std::fs::write(
        &path,
        format!(
            "[journal]\npath = {:?}\n[monitor]\ntype = \"testing\"\n[[fencer]]\ntype = \"ipmi\"\n\
             [evacuator]\ntype = \"testing\"\n",
            dir.path().join("j.redb").display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freezer-dr-custom"))
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unknown fencer type \"ipmi\""), "{stderr}");
    assert!(stderr.contains("registered: libvirt, testing"), "{stderr}");
}
