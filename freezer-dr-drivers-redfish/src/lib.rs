//! freezer-dr fencer over DMTF Redfish: powers a compute host off through its BMC (iDRAC, iLO,
//! XClarity, OpenBMC, ...) and reads its power status, so the engine can confirm it is off before
//! anything is evacuated.
//!
//! Registered as fencer type `redfish`; embedders use [`RedfishFencer::new`] with a [`RedfishConfig`].
//!
//! - **Power-off** is `ComputerSystem.Reset` with `ResetType` `ForceOff`, sent to the action target
//!   the system resource names, and only if the values it allows include `ForceOff` (never a graceful
//!   shutdown instead: that is not a fence). A system already `Off` is left alone. An asynchronous
//!   reset (202 and a `Task` monitor) is followed, for at most `task_timeout`.
//! - **Power status** is the system's `PowerState`: only `Off` is off; `PoweringOff` is still on, and a
//!   missing value is unknown.
//! - **The system** is a configured path, the one whose `Id`/`UUID` is `system_id`, or the only one the
//!   BMC lists.
//! - **Authentication**: a Redfish session (`X-Auth-Token`) for each call, deleted at its end, renewed
//!   once if the token expires mid-call; HTTP basic where the BMC has no sessions.
//! - **TLS** through rustls (ring), with the system's roots, or only the CA in `ca_file`;
//!   `insecure = true` is an explicit, warned-about opt-out.
//!
//! The driver never retries a failed call: it classifies its errors once (401/403: permanent auth;
//! 404: permanent config, the system path is wrong; 409/412/5xx/timeouts: temporary) and the runtime
//! decides. The BMC's own message (`@Message.ExtendedInfo`) is kept in the error; no password or
//! token appears in an error, a log line or `Debug` output.

mod client;
mod config;
mod fencer;

pub use config::{Auth, BmcConfig, DEFAULT_PORT, RedfishConfig};
pub use fencer::RedfishFencer;
