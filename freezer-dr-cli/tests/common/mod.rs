//! What the CLI's test binaries share.

/// The `testing` drivers' sections: a monitor of two hosts, all up, one fencing level, an evacuator.
#[allow(dead_code)] // not every test binary uses it
pub const TESTING_DRIVERS: &str = r#"
[monitor]
type = "testing"
hosts = ["compute-1", "compute-2"]

[[fencer]]
type = "testing"

[evacuator]
type = "testing"
"#;

/// The `testing` drivers with fast timings, five hosts of two instances each, `compute-1` down;
/// observations every `interval`. The `testing` drivers share one simulated cloud per process; host `h`
/// gets instances `vm-0`, `vm-1`, ... with ids `h-vm-0`, ...
#[allow(dead_code)] // not every test binary uses it
pub fn one_host_down(interval: &str) -> String {
    format!(
        r#"
[recovery]
interval = "{interval}"
strikes = 2
call_backoff = "10ms"
step_retry = "10ms"

[recovery.fencing]
poll_interval = "10ms"

[recovery.evacuation]
poll_interval = "10ms"
retry_delay = "10ms"

[monitor]
type = "testing"
hosts = ["compute-1", "compute-2", "compute-3", "compute-4", "compute-5"]
down = ["compute-1"]
instances_per_host = 2

[[fencer]]
type = "testing"

[evacuator]
type = "testing"
"#
    )
}
