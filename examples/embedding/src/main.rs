//! Embedding freezer-dr in another program: the pipeline is built from typed constructors, the recovery
//! policy is written in code, and the journal is kept in memory. No config file, no registry lookup.
//!
//! The drivers here are core's `testing` fakes over a simulated cloud, so the example runs anywhere. For a
//! real cloud, depend on the driver crates and put their typed constructors in the same places:
//!
//! ```text
//! use freezer_dr_drivers_ipmi::{IpmiConfig, IpmiFencer};
//! use freezer_dr_email::{EmailConfig, EmailNotifier};
//! use freezer_dr_nova::{AuthConfig, KeystoneConfig, KeystoneDirectory, NovaConfig, NovaEvacuator, NovaMonitor};
//!
//! let nova = NovaConfig { auth: AuthConfig { cloud: Some("mycloud".into()), ..Default::default() },
//!                         ..Default::default() };
//! let pipeline = Pipeline {
//!     monitor: Arc::new(NovaMonitor::new(nova.clone())?),
//!     fencers: vec![Arc::new(IpmiFencer::new(ipmi_config)?)],      // an IpmiConfig with the BMC inventory
//!     evacuator: Arc::new(NovaEvacuator::new(nova)?),
//!     directory: Some(Arc::new(KeystoneDirectory::new(KeystoneConfig::default())?)),
//!     notifiers: vec![Arc::new(EmailNotifier::new(email_config)?)], // an EmailConfig: server, from, to
//! };
//! let journal = Arc::new(freezer_dr_core::journal::RedbJournal::open("/var/lib/myapp/freezer-dr.redb")?);
//! ```
//!
//! Each config struct is the driver's TOML section as a Rust value (`deny_unknown_fields`, secrets as
//! `freezer_dr_core::Secret`); the constructors do no network I/O.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use freezer_dr_core::config::RecoveryConfig;
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::runtime::{Pipeline, Runtime};
use freezer_dr_core::testing::{
    FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, World,
};

#[tokio::main]
async fn main() -> ExitCode {
    // A simulated cloud of three compute hosts with two instances each; compute-2 has just died.
    let world = World::new()
        .host("compute-1")
        .host("compute-2")
        .host("compute-3")
        .instances("compute-1", 2)
        .instances("compute-2", 2)
        .instances("compute-3", 2);
    world.kill("compute-2");

    // Stand-ins for real drivers (see the module docs).
    let pipeline = Pipeline {
        monitor: Arc::new(FakeMonitor::new(&world)),
        fencers: vec![Arc::new(FakeFencer::new(&world))],
        evacuator: Arc::new(FakeEvacuator::new(&world)),
        directory: Some(Arc::new(FakeDirectory::new(&world))),
        notifiers: vec![Arc::new(FakeNotifier::new(&world))],
    };

    // The recovery policy in code: the safe defaults, with fast polling for a simulated cloud. With three
    // hosts the default storm fraction (25%) would refuse to fence even one, so it is raised here.
    let mut recovery = RecoveryConfig {
        interval: Duration::from_millis(20),
        strikes: 2,
        ..RecoveryConfig::default()
    };
    recovery.storm.max_fraction = 0.5;
    recovery.fencing.poll_interval = Duration::from_millis(20);
    recovery.evacuation.poll_interval = Duration::from_millis(20);

    let runtime = Runtime::new(recovery, pipeline, Arc::new(MemoryJournal::new()));
    match runtime.run_once().await {
        Ok(summary) => {
            println!("recovered: {:?}", summary.recovered);
            println!("needs an operator: {:?}", summary.needs_operator);
            println!("failed instances: {}", summary.failed_instances);
            println!("refused: {:?}", summary.refused);
            for instance in world.instances_on("compute-2") {
                println!("still on compute-2: {}", instance.id);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
