//! A file a test writes for the program under test (a configuration, a `clouds.yaml`, an inventory).

use std::path::PathBuf;

/// Writes `text` to a file named `name` in a new temporary directory; the directory (and the file) is
/// removed when the returned guard drops. Panics if the file cannot be written: such a machine cannot
/// run the tests at all.
pub fn temp_file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
    // Test code: a machine without a writable temporary directory cannot run these tests.
    #[allow(clippy::expect_used)]
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let path = dir.path().join(name);
    #[allow(clippy::expect_used)]
    std::fs::write(&path, text).expect("cannot write a temporary file");
    (dir, path)
}
