//! freezer-dr's OpenStack half: a typed Keystone v3 + Nova client over reqwest (rustls, ring) and three
//! drivers.
//!
//! - [`NovaMonitor`] (`[monitor] type = "nova"`): `GET /os-services?binary=nova-compute`, one health per
//!   host with the evidence (state, status, forced_down, heartbeat age).
//! - [`NovaEvacuator`] (`[evacuator] type = "nova"`): force down and disable a fenced host with
//!   freezer-dr's marker, list its instances exactly, evacuate each, track it until it runs elsewhere,
//!   return the host to service.
//! - [`KeystoneDirectory`] (`[directory] type = "keystone"`): the users with a role on a project, with
//!   their emails.
//!
//! Credentials come from the section's `auth` table, a `clouds.yaml` entry (`cloud` or `OS_CLOUD`) or the
//! `OS_*` variables. Every request body is built for the negotiated compute microversion (default cap
//! 2.94). Drivers never retry or sleep (the runtime does), except one re-authentication on a 401. Tokens
//! and passwords never appear in logs, errors or `Debug` output.

mod config;
mod directory;
mod evacuator;
#[cfg(feature = "lab")]
pub mod lab;
mod microversion;
mod monitor;
mod nova;
mod session;

pub use config::{AuthConfig, KeystoneConfig, NovaConfig};
pub use directory::KeystoneDirectory;
pub use evacuator::NovaEvacuator;
pub use microversion::Microversion;
pub use monitor::NovaMonitor;

use freezer_dr_core::Result;
use freezer_dr_core::registry::{
    DirectoryRegistration, EvacuatorRegistration, MonitorRegistration,
};

fn build_api(cfg: &NovaConfig) -> Result<nova::NovaApi> {
    let auth = cfg.auth.resolve(&config::Sources::process())?;
    let session = session::Session::new(auth, cfg.timeout, cfg.compute_endpoint.clone())?;
    Ok(nova::NovaApi::new(session, cfg.microversion_cap))
}

const NOVA_EXAMPLE: &str = r#"type = "nova"
# A host whose nova-compute heartbeat is older than this is down (Nova's service_down_time is 60s).
heartbeat_timeout = "60s"
# A repaired, forced-down host reads up after three distinct heartbeats within this window (default: three
# times heartbeat_timeout; never shorter than it).
# heartbeat_window = "3m"
timeout = "30s"
microversion_cap = "2.94"
# From clouds.yaml (or leave `auth` out and use OS_CLOUD / OS_* variables):
[monitor.auth]
cloud = "mycloud"
"#;

const EVACUATOR_EXAMPLE: &str = r#"type = "nova"
timeout = "30s"
microversion_cap = "2.94"
page_size = 200
[evacuator.auth]
auth_url = "https://keystone.example.org:5000/v3"
username = "freezer-dr"
password = { file = "/etc/freezer-dr/keystone.pass" }
user_domain_name = "Default"
project_name = "admin"
project_domain_name = "Default"
region_name = "RegionOne"
interface = "internal"
"#;

const DIRECTORY_EXAMPLE: &str = r#"type = "keystone"
cache_ttl = "10m"
[directory.auth]
auth_url = "https://keystone.example.org:5000/v3"
application_credential_id = "21dced0fd20347869b93710d2b98aae0"
application_credential_secret = { env = "FREEZER_DR_APP_CRED_SECRET" }
"#;

freezer_dr_core::register! {
    MonitorRegistration {
        name: "nova",
        description: "Nova os-services: nova-compute state and heartbeat age per host (Keystone v3 auth).",
        example: NOVA_EXAMPLE,
        build: |ctx| Ok(Box::new(NovaMonitor::new(ctx.parse()?)?)),
    }
}

freezer_dr_core::register! {
    EvacuatorRegistration {
        name: "nova",
        description: "Nova: force down + disable the fenced host, evacuate its instances, track them, restore it.",
        example: EVACUATOR_EXAMPLE,
        build: |ctx| Ok(Box::new(NovaEvacuator::new(ctx.parse()?)?)),
    }
}

freezer_dr_core::register! {
    DirectoryRegistration {
        name: "keystone",
        description: "Keystone v3 role assignments: the users of a project and their emails.",
        example: DIRECTORY_EXAMPLE,
        build: |ctx| Ok(Box::new(KeystoneDirectory::new(ctx.parse()?)?)),
    }
}
