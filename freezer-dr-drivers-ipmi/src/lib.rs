//! freezer-dr fencer over IPMI v2.0 LAN (RMCP+): powers a compute host off through its BMC and reads
//! its power status, so the engine can confirm it is off before anything is evacuated.
//!
//! Registered as fencer type `ipmi`; embedders use [`IpmiFencer::new`] with an [`IpmiConfig`].
//!
//! Two backends, chosen per host:
//!
//! - **native**, on [ipmi-rs](https://crates.io/crates/ipmi-rs) 0.6, in process. ipmi-rs has no chassis
//!   commands (Get Chassis Status and Chassis Control are implemented here), never raises the session
//!   privilege (Set Session Privilege Level is sent here, or power-off is refused with 0xD4), has no
//!   retransmits (lost datagrams are sent again here, within the call's deadline) and blocks (it runs on
//!   tokio's blocking pool). It speaks RMCP+ with cipher suite 3 at administrator privilege only, and
//!   needs the BMC to answer the ASF presence ping; its RMCP 1.5 authentication is broken and never
//!   used on purpose.
//! - **ipmitool**, one process per command, the password passed in its environment (`-E`), never on its
//!   command line: any cipher suite (17 too), operator privilege, IPMI v1.5 (`lanplus = false`).
//!
//! `backend = "auto"` (the default) uses native where it can and falls back to ipmitool when native
//! cannot open a session with the BMC (no ASF pong, no RMCP+, suite refused) — never after an
//! authentication failure, and never once a command was sent.
//!
//! The driver never retries a failed call nor sleeps: it classifies its errors (wrong credentials →
//! permanent; no answer → temporary) and the runtime decides. No password appears in an error, a log
//! line or `Debug` output.
//!
//! [`import_servers`] converts the original freezer-dr's `servers.yml` into a `[[fencer]]` section.

mod call;
mod config;
mod fencer;
mod import;
mod ipmitool;
mod native;

pub use config::{Backend, BmcConfig, DEFAULT_PORT, IpmiConfig, NATIVE_CIPHER, Privilege};
pub use fencer::IpmiFencer;
pub use import::import_servers;
