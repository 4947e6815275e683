//! A custom freezer-dr binary: it links only the drivers it names (Nova, IPMI, email), loads a config file
//! and runs one pass.
//!
//! Usage: `freezer-dr-custom [CONFIG]` (default `/etc/freezer-dr/freezer-dr.toml`), or
//! `freezer-dr-custom --drivers` to list the drivers linked into it.

// Name every driver crate this binary links, or the linker drops its registration and its `type` becomes
// unknown in the config. One line per driver crate: Nova (`nova` monitor and evacuator, `keystone`
// directory), IPMI (`ipmi` fencer), email (`email` notifier). `type = "libvirt"` is unknown to this binary,
// by design.
use freezer_dr_drivers_ipmi as _;
use freezer_dr_email as _;
use freezer_dr_nova as _;

use std::process::ExitCode;
use std::sync::Arc;

use freezer_dr_core::config::{Config, DEFAULT_PATH};
use freezer_dr_core::journal::RedbJournal;
use freezer_dr_core::registry;
use freezer_dr_core::runtime::{Runtime, Summary};

#[tokio::main]
async fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--drivers") {
        // As `freezer-dr drivers`: what the registry holds, by kind then name.
        for d in registry::drivers() {
            println!("{:<10} {:<9} {}", d.kind.as_str(), d.name, d.description);
        }
        return ExitCode::SUCCESS;
    }
    let path = arg.unwrap_or_else(|| DEFAULT_PATH.to_owned());
    match run(&path).await {
        Ok(summary) if summary == Summary::default() => {
            println!("No failed nodes");
            ExitCode::SUCCESS
        }
        Ok(summary) => {
            println!("{summary:#?}");
            if summary.needs_operator.is_empty() && summary.failed_instances == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: &str) -> freezer_dr_core::Result<Summary> {
    let config = Config::load(path)?;
    let pipeline = config.build()?;
    let journal = RedbJournal::open(&config.journal.path)?;
    // One actor per journal: a running daemon holds this lock too.
    let _lock = journal.lock_daemon()?;
    Runtime::new(config.recovery.clone(), pipeline, Arc::new(journal))
        .run_once()
        .await
}
