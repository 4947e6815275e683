//! The `freezer-dr` command line as a library: every subcommand, its output and its exit codes, for the
//! reference binary and for binaries that link other drivers.
//!
//! A binary is its list of driver crates and one call:
//!
//! ```ignore
//! freezer_dr_cli::drivers![freezer_dr_nova, freezer_dr_drivers_ipmi, freezer_dr_email];
//!
//! fn main() -> std::process::ExitCode {
//!     freezer_dr_cli::main()
//! }
//! ```
//!
//! [`drivers!`] names each crate once, so the linker keeps its registrations (a crate the binary does not
//! name is dropped, and its `type` becomes unknown in the config), and generates a test that checks the
//! list against the registry ([`check_linked`]).

mod about;
mod commands;
mod linked;
mod output;
mod systemd;
mod watch;

pub use linked::check_linked;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};

/// Exit codes, shown in `--help` and the README.
const EXIT_CODES: &str = "\
Exit codes:
  0  ok: nothing down, or every host found down was recovered
  1  error: configuration, journal, driver build, or a failed check
  2  a recovery needs an operator, or some instance evacuation failed
  3  refused to act: storm guard, emergency brake, or observation failing

Logs go to standard error (RUST_LOG overrides -v); results to standard output.";

/// Compute-node HA for OpenStack: fence dead compute hosts, evacuate their instances, tell people.
#[derive(Debug, Parser)]
#[command(name = "freezer-dr", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "FREEZER_DR_CONFIG",
        default_value = freezer_dr_core::config::DEFAULT_PATH
    )]
    pub config: PathBuf,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More logs (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Human,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Watch the compute hosts and recover the dead ones (daemon), or one pass with --once.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// One pass, then exit (the original freezer-dr): prints `No failed nodes` when nothing is down.
        #[arg(long)]
        once: bool,
        /// Decide and print the plan; change nothing (the journal is kept in memory, nothing is written).
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the configuration and build every driver; --connect also asks each one to reach its peer.
    Validate {
        /// Call every driver's healthcheck (network I/O: BMCs, Nova, the mail server).
        #[arg(long)]
        connect: bool,
    },
    /// List the drivers linked into this binary, by kind then name.
    Drivers,
    /// Print a working config section for a driver, or a whole starting file without arguments.
    Example {
        /// monitor, fencer, evacuator, directory or notifier.
        kind: Option<String>,
        /// The driver's name (see `freezer-dr drivers`).
        name: Option<String>,
    },
    /// Hosts in recovery and their instances, pending operator requests, and the brake.
    Status {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// What happened, newest last.
    History {
        /// How many lines.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Emergency brake: keep observing and reporting, but never fence, isolate, evacuate or restore.
    Pause {
        /// Why (shown in `status` and in the reports).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Release the emergency brake.
    Resume,
    /// Recover a host known to be dead: fence it (the power-off is still verified), isolate, evacuate.
    /// A host fenced before has its power read first, and is fenced again if it reads on.
    Recover {
        /// The exact Nova host name.
        host: String,
        /// Recover it although the storm guard refuses to fence now (too many hosts down or fenced):
        /// the operators are told that the budget was overridden.
        #[arg(long)]
        despite_storm: bool,
    },
    /// Stop tracking a host's recovery: a decommissioned or renamed host the monitors no longer list
    /// stops counting against the storm budget (done by itself after `recovery.forget_after`).
    Forget {
        /// The exact Nova host name.
        host: String,
    },
    /// Assert that a host is powered off when no fencer can prove it; its recovery continues from
    /// isolation. You take responsibility: evacuating a running host corrupts its instances.
    ConfirmOff {
        /// The exact Nova host name.
        host: String,
        /// Confirm without the interactive question.
        #[arg(long)]
        yes_i_checked_it_is_off: bool,
    },
    /// Print the original freezer-dr's servers.yml (BMC credentials) as an IPMI `[[fencer]]` section.
    #[cfg(feature = "ipmi")]
    ImportServers {
        /// The servers.yml file.
        file: PathBuf,
    },
    /// Print the shell completion script (e.g. `freezer-dr completions bash > /etc/bash_completion.d/freezer-dr`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (freezer-dr.1, one page per subcommand) into a directory: for packagers.
    #[command(hide = true)]
    Man {
        /// The directory (it must exist).
        out_dir: PathBuf,
    },
}

/// How the process ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: ok, nothing down, or all recovered.
    Ok = 0,
    /// 1: an error (config, journal, driver build, failed check).
    Error = 1,
    /// 2: a recovery needs an operator, or an instance evacuation failed.
    NeedsOperator = 2,
    /// 3: refused to act (storm, brake, observation failing).
    Refused = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

/// What the `freezer-dr` binary does: parses the command line, runs the subcommand, and returns its exit
/// code. `--version` also lists the drivers the binary links, from the registry.
pub fn main() -> ExitCode {
    let version = about::long_version(&freezer_dr_core::registry::drivers());
    let matches = Cli::command().long_version(version).get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli.run(),
        Err(e) => e.exit(),
    }
}

impl Cli {
    /// Runs the subcommand on a new async runtime, with logs on standard error as `--log-format` and
    /// `-v` say: what [`main`] does once the command line is parsed.
    pub fn run(&self) -> ExitCode {
        init_logging(self);
        let runtime = match freezer_dr_core::runtime::tokio_runtime() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return Exit::Error.into();
            }
        };
        runtime.block_on(self.execute()).into()
    }

    /// Runs the subcommand on the caller's async runtime (logging is the caller's). An error is printed on
    /// standard error (`error: ...`) and is [`Exit::Error`].
    pub async fn execute(&self) -> Exit {
        match commands::dispatch(self).await {
            Ok(exit) => exit,
            Err(e) => {
                tracing::debug!(error = ?e, "command failed");
                eprintln!("error: {e:#}");
                Exit::Error
            }
        }
    }
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Run { .. }) => "info",
        (0, _) => "warn",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_documents_every_exit_code() {
        let help = Cli::command().render_long_help().to_string();
        for code in [Exit::Ok, Exit::Error, Exit::NeedsOperator, Exit::Refused] {
            assert!(help.contains(&format!("  {}  ", code as u8)), "{help}");
        }
    }
}
