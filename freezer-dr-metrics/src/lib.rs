//! freezer-dr's Prometheus metrics and health endpoints.
//!
//! [`Metrics`] is an observer of the runtime ([`freezer_dr_core::runtime::Observer`]): every loop turn
//! sets the gauges (hosts by stage, storm, brake, observation, outbox, HA role), every event counts
//! (fencings, evacuations, recovery phases, driver calls with their latency and error kinds). [`serve`]
//! answers `/metrics` (Prometheus text format), `/healthz` (the loop turned recently) and `/readyz`
//! (observing successfully; in HA the leader observing, or a healthy standby) on the address of
//! `[metrics] listen`, which core's config parses. A crate of its own so core stays free of an HTTP
//! server and of prometheus-client: a binary that wants no metrics links neither.
//!
//! No label holds a secret, a host name or an instance id: every label has a handful of values (stage,
//! result, fencing level, driver type, role, operation, error kind).

mod metrics;
mod server;

pub use metrics::Metrics;
pub use server::{ALIVE_WITHIN, alive, ready, serve};
