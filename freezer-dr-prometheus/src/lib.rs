//! freezer-dr monitor over Prometheus (`[monitor] type = "prometheus"`): two PromQL instant queries
//! through the HTTP API (`POST /api/v1/query`) say which compute hosts are down.
//!
//! - **down_query** (default `up{job="node"} == 0`) lists the hosts that are down: a series per host,
//!   its value kept as evidence.
//! - **present_query** (default `up{job="node"}`) lists the hosts Prometheus has fresh data about: a
//!   host in it and not in the down query's result is up. A host in neither is **unknown** — its series
//!   went stale (the target vanished from service discovery) or was never scraped — and unknown never
//!   counts as down.
//! - **Which series is which host**: `hosts` maps each exact Nova host name to the value of `label`
//!   (default `instance`, e.g. `"10.0.0.11:9100"`); or `host_label` names a label whose value already is
//!   the Nova host name.
//! - A query that fails (unreachable, timeout, HTTP error, an answer that is not the API's) or that
//!   Prometheus refuses (`status: error`, with its message) fails the observation: an `Err`, never
//!   "everything is down". Warnings of a partial answer are logged.
//! - Authentication: a bearer token or HTTP basic (core `Secret`s: never logged, never in `Debug`);
//!   TLS through rustls (ring), with the system's roots or only the CA in `ca_file`. Every query is
//!   bounded by `timeout`, which is also sent to Prometheus.
//!
//! Registered as monitor type `prometheus`; embedders use [`PrometheusMonitor::new`] with a
//! [`PrometheusConfig`].

mod client;
mod config;
mod monitor;

pub use config::{DEFAULT_LABEL, PrometheusConfig};
pub use monitor::PrometheusMonitor;
