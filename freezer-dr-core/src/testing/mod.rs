//! Fakes for every trait and conformance suites (feature `testing`).
//!
//! - [`World`] simulates a small cloud (hosts with power and service state, instances, a call log) that
//!   every fake shares, with scripted failures, latencies and crash points. Clones share the same world, so
//!   a test can kill a runtime and start a new one on the same cloud.
//! - [`FakeMonitor`], [`FakeFencer`], [`FakeEvacuator`], [`FakeDirectory`] and [`FakeNotifier`] implement
//!   the core traits over a [`World`], with the semantics the trait docs promise.
//! - Drivers named `testing` for every role (their config types; registered only with feature
//!   `testing-drivers`), for dry runs, demos and the CLI's tests.
//! - [`conformance`] holds the suites that driver crates run against their real peers;
//!   [`build_examples`] builds every driver a crate registers from its own example section.
//! - [`fast_recovery`] is one `[recovery]` with every wait short, for tests that run a runtime in real time.
//! - [`free_port`] and [`ChildGuard`] for tests that start a real peer process; [`TestCerts`] for those
//!   that speak TLS to it.
//! - `EtcdServer` (with feature `etcd`) starts a real etcd for HA tests; [`PrometheusServer`] a real
//!   Prometheus, [`promtool`] its rule checker, [`http_get`] one plain GET to a local server.

mod certs;
pub mod conformance;
pub mod drivers;
#[cfg(feature = "etcd")]
mod etcd;
mod examples;
mod fakes;
mod files;
mod peer;
mod prometheus;
mod recovery;
mod sample;
mod secrets;
mod world;

pub use certs::TestCerts;
#[cfg(feature = "etcd")]
pub use etcd::EtcdServer;
pub use examples::{Built, BuiltExample, EXAMPLE_SECRET, build_examples, build_examples_with};
pub use fakes::{
    FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, fake_pipeline,
};
pub use files::temp_file;
pub use peer::{ChildGuard, free_port};
pub use prometheus::{PrometheusServer, http_get, promtool};
pub use recovery::fast_recovery;
pub use sample::instance;
pub use secrets::{CapturedLog, assert_not_shown, exercise_fencer, exercise_fencer_config};
pub use world::{Call, Delivered, Op, SimHost, SimInstance, World};
