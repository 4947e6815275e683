//! freezer-dr monitor over TCP connect probes (`[monitor] type = "tcp"`): from the controller, a TCP
//! connection to each of a host's addresses on the networks that matter (management, storage, tenant).
//!
//! - A host is **up** when any probe connected, **down** when every probe failed in this observation
//!   (connection refused, no answer within `timeout`, or no route to the host: a dead host on a
//!   directly attached network), and **unknown** otherwise: a probe that could not be made for a reason of
//!   the controller's own (its network unreachable, no socket left) is no evidence about the host.
//! - Every probe of an observation runs at once; each is bounded by `timeout`, so one observation takes
//!   at most about `timeout`. If no probe at all could be made, the observation itself failed (`Err`).
//! - Addresses are IP literals with a port (or the section's or host's default `port`): no name is
//!   resolved, so an outage of the name servers cannot read as every host down.
//! - Strikes across observations are the engine's (`[recovery] strikes`), not this driver's: an
//!   observation says what it saw, once.
//!
//! Registered as monitor type `tcp`; embedders use [`TcpMonitor::new`] with a [`TcpConfig`].

mod config;
mod monitor;

pub use config::{TcpConfig, TcpHostConfig};
pub use monitor::TcpMonitor;
