//! What the CLI's test binaries share.

/// The `testing` drivers' sections: a monitor of two hosts, all up, one fencing level, an evacuator.
pub const TESTING_DRIVERS: &str = r#"
[monitor]
type = "testing"
hosts = ["compute-1", "compute-2"]

[[fencer]]
type = "testing"

[evacuator]
type = "testing"
"#;
