//! Drivers named `testing` for every role, built from config sections: dry runs, demos and the CLI's
//! black-box tests run the whole pipeline against a simulated cloud with them. Their config types are
//! here with feature `testing`; they are registered only with feature `testing-drivers`, which a
//! production binary never has.
//!
//! Every `testing` driver built in one process with the same `world` option (default `"default"`) shares
//! one [`World`](super::World). The monitor's section describes it (hosts, which are down, instances per host).

use serde::Deserialize;

#[cfg(feature = "testing-drivers")]
mod registered;

fn default_world() -> String {
    "default".into()
}

/// `[monitor] type = "testing"`: describes the simulated cloud and observes it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingMonitorConfig {
    /// The shared world's name.
    pub world: String,
    /// The compute hosts (added to the world if missing).
    pub hosts: Vec<String>,
    /// Hosts that died: their service is down and they answer no probe (their power stays on until
    /// fenced).
    pub down: Vec<String>,
    /// Hosts whose `nova-compute` alone is dead: the host still answers probes.
    pub service_down: Vec<String>,
    /// Instances created on each newly added host.
    pub instances_per_host: usize,
    /// Probe the hosts themselves (as the `tcp` monitor does) instead of reading their `nova-compute`
    /// heartbeat (as Nova's monitor does): the second opinion of a combined `[[monitor]]`.
    pub probe: bool,
}

impl Default for TestingMonitorConfig {
    fn default() -> Self {
        Self {
            world: default_world(),
            hosts: vec!["compute-1".into(), "compute-2".into(), "compute-3".into()],
            down: Vec::new(),
            service_down: Vec::new(),
            instances_per_host: 2,
            probe: false,
        }
    }
}

/// `[[fencer]] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingFencerConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// Hosts this fencer does not handle.
    pub exclude: Vec<String>,
    /// Hosts whose power-off is accepted but whose power keeps reading on (a broken BMC).
    pub never_off: Vec<String>,
}

/// `[evacuator] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingEvacuatorConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// Progress reads an evacuation stays in progress before it is done.
    pub evacuation_polls: u32,
}

/// `[directory] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingDirectoryConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
}

/// `[[notifier]] type = "testing"`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingNotifierConfig {
    /// The shared world's name (default `"default"`).
    #[serde(default = "default_world")]
    pub world: String,
    /// The notifier's name in the world's delivery log (default: its section, e.g. `notifier[0]`).
    pub name: Option<String>,
    /// The first `fail` deliveries fail with a temporary error.
    pub fail: usize,
}
