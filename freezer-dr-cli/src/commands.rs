//! The subcommands.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use freezer_dr_core::HostId;
use freezer_dr_core::checks::{self, CheckFailure};
use freezer_dr_core::config::{self, Config};
use freezer_dr_core::engine::{OperatorRequest, Snapshot};
use freezer_dr_core::registry::{self, Kind};
use freezer_dr_core::runtime::{Pipeline, Runtime};
use freezer_dr_core::setup::{self, Actor, Store};
use tracing::{info, warn};

use crate::watch::Watchers;
use crate::{Cli, Command, Exit, output};

/// Runs the command line's subcommand.
pub async fn dispatch(cli: &Cli) -> anyhow::Result<Exit> {
    match &cli.command {
        Command::Run { once, dry_run } => run(cli, *once, *dry_run).await,
        Command::Validate { connect } => validate(cli, *connect).await,
        Command::Drivers => {
            print!("{}", output::drivers(&registry::drivers()));
            Ok(Exit::Ok)
        }
        Command::Example { kind, name } => example(kind.as_deref(), name.as_deref()),
        Command::Status { json } => status(cli, *json).await,
        Command::History { limit, json } => history(cli, *limit, *json).await,
        Command::Pause { reason } => {
            let reason = reason
                .clone()
                .unwrap_or_else(|| "paused by an operator (no reason given)".to_owned());
            submit(cli, OperatorRequest::Pause { reason }).await
        }
        Command::Resume => submit(cli, OperatorRequest::Resume).await,
        Command::Recover {
            host,
            despite_storm,
        } => {
            let host = host_id(host)?;
            let despite_storm = *despite_storm;
            submit(
                cli,
                OperatorRequest::Recover {
                    host,
                    despite_storm,
                },
            )
            .await
        }
        Command::Forget { host } => {
            let host = host_id(host)?;
            submit(cli, OperatorRequest::Forget { host }).await
        }
        Command::ConfirmOff {
            host,
            yes_i_checked_it_is_off,
        } => {
            let host = host_id(host)?;
            confirm_off(&host, *yes_i_checked_it_is_off)?;
            submit(cli, OperatorRequest::ConfirmOff { host }).await
        }
        #[cfg(feature = "ipmi")]
        Command::ImportServers { file } => import_servers(file),
        Command::Completions { shell } => {
            crate::about::completions(*shell)?;
            Ok(Exit::Ok)
        }
        Command::Man { out_dir } => {
            crate::about::man_pages(out_dir)?;
            Ok(Exit::Ok)
        }
    }
}

/// Prints servers.yml as a `[[fencer]]` section; the passwords it holds are printed inline, as they
/// were in that file.
#[cfg(feature = "ipmi")]
fn import_servers(file: &std::path::Path) -> anyhow::Result<Exit> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let section = freezer_dr_drivers_ipmi::import_servers(&text, &file.display().to_string())?;
    print!("{section}");
    eprintln!(
        "note: the output holds the BMC passwords of {} inline: keep it private (mode 0600) or move \
         them to {{ file = \"...\" }}",
        file.display()
    );
    Ok(Exit::Ok)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    // The error already names the file, the key and the fix.
    Ok(Config::load(&cli.config)?)
}

fn host_id(name: &str) -> anyhow::Result<HostId> {
    if name.trim().is_empty() || name.trim() != name {
        bail!(
            "{name:?} is not a host name: give the exact Nova host name (`openstack compute service list`)"
        );
    }
    Ok(HostId::new(name))
}

/// The daemon in HA mode: stand by, lead, stand by again, until SIGINT/SIGTERM.
#[cfg(feature = "etcd")]
async fn run_ha(
    config: &Config,
    candidate: freezer_dr_core::ha::Candidate,
    pipeline: Pipeline,
) -> anyhow::Result<Exit> {
    let me = candidate.member().describe();
    info!(
        config = %config.file.display(),
        election = %candidate.config().election,
        candidate = %me,
        "daemon starting in HA mode: standing by until elected"
    );
    let recovery = config.recovery.clone();
    let watchers = Watchers::start(config).await?;
    let candidate = std::sync::Arc::new(candidate);
    let c = candidate.clone();
    let lease: std::sync::Arc<dyn Fn() -> Option<std::time::Duration> + Send + Sync> =
        std::sync::Arc::new(move || c.lease_remaining());
    let leader = watchers.clone();
    let lead_lease = lease.clone();
    let elected = candidate.run_as_leader(
        move |journal| {
            let rt = Runtime::new(recovery.clone(), pipeline.clone(), journal);
            Ok(leader.attach_leader(rt, lead_lease.clone()))
        },
        shutdown_signal(),
    );
    tokio::select! {
        r = elected => r?,
        () = watchers.stand_by(candidate.leading(), lease) => {}
    }
    info!("daemon stopped");
    Ok(Exit::Ok)
}

/// Said at every `run` and `validate` without `[ha]`: two daemons with journals of their own would both
/// recover every failed host (seen on the lab: every server evacuated two or three times).
const ALONE_WARNING: &str = "no [ha] section: this freezer-dr acts alone. Exactly one freezer-dr may \
     watch this cloud: a second one with its own journal would fence and evacuate the same hosts again \
     (it is detected at isolation, and then nothing is done). For active/passive on several machines, \
     configure [ha]";

async fn run(cli: &Cli, once: bool, dry_run: bool) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let pipeline = config.build()?;
    // Held until the end of the run: one actor per journal file.
    let (journal, _lock) = match setup::actor(&config, once, dry_run).await? {
        #[cfg(feature = "etcd")]
        Actor::Candidate(c) => return run_ha(&config, *c, pipeline).await,
        Actor::Alone { journal, lock } => (journal, lock),
        // A core built with etcd (through another crate's feature) under a CLI built without it.
        _ => bail!(
            "{}: [ha] is set but this freezer-dr was built without etcd support (Cargo feature `etcd`)",
            config.file.display()
        ),
    };

    if !dry_run {
        warn!(
            journal = %config.journal.path.display(),
            "{}", ALONE_WARNING
        );
    }
    let runtime = Runtime::new(config.recovery.clone(), pipeline, journal).dry_run(dry_run);
    if once {
        info!(config = %config.file.display(), dry_run, "one pass");
        let summary = runtime.run_once().await?;
        print!("{}", output::summary(&summary, dry_run));
        Ok(output::exit_code(&summary))
    } else {
        info!(config = %config.file.display(), dry_run, "daemon starting");
        // A dry-running daemon prints its plan as it goes (there is no summary at the end).
        let runtime = if dry_run {
            runtime.on_plan(|line| println!("plan: {line}"))
        } else {
            runtime
        };
        Watchers::start(&config)
            .await?
            .attach(runtime)
            .run(shutdown_signal())
            .await?;
        info!("daemon stopped");
        Ok(Exit::Ok)
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => info!(signal = "SIGINT", "shutdown requested: draining in-flight work"),
        () = terminate => info!(signal = "SIGTERM", "shutdown requested: draining in-flight work"),
    }
}

async fn validate(cli: &Cli, connect: bool) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let pipeline = config.build()?;
    let r = &config.recovery;
    println!(
        "{}: OK (strikes {}, interval {}, storm limit {} hosts / {}%, journal {})",
        config.file.display(),
        r.strikes,
        humantime::format_duration(r.interval),
        r.storm.max_hosts,
        r.storm.max_fraction * 100.0,
        config.journal.path.display()
    );
    if config.ha.is_none() {
        println!("warning: {ALONE_WARNING}");
    }
    let sections = config.sections();
    let width = sections.iter().map(|s| s.key.len()).max().unwrap_or(0);
    for s in &sections {
        println!("  {:<width$}  {}", s.key, s.type_name);
    }
    if !connect {
        return Ok(Exit::Ok);
    }

    // Every healthcheck at once, each under the configured call timeout.
    let timeout = r.call_timeout;
    let mut results = checks::healthchecks(&pipeline, timeout).await?.into_iter();
    println!("Connecting:");
    let mut failed = 0;
    // Several monitors are one driver of the pipeline (combined): their check is one result, shown on
    // each monitor's line (a failure names the monitor that failed).
    let mut monitors_ok: Option<bool> = None;
    for s in &sections {
        let monitor = s.kind == freezer_dr_core::registry::Kind::Monitor;
        if monitor && let Some(ok) = monitors_ok {
            let said = if ok { "OK" } else { "FAILED: see above" };
            println!("  {:<width$}  {}  {said}", s.key, s.type_name);
            continue;
        }
        let result = results.next();
        if monitor {
            monitors_ok = Some(matches!(result, Some(Ok(()))));
        }
        match result {
            Some(Ok(())) => println!("  {:<width$}  {}  OK", s.key, s.type_name),
            Some(Err(e)) => {
                failed += 1;
                println!("  {:<width$}  {}  FAILED: {e}", s.key, s.type_name);
            }
            None => {
                failed += 1;
                println!("  {:<width$}  {}  FAILED: not checked", s.key, s.type_name);
            }
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} driver(s) failed their healthcheck");
        return Ok(Exit::Error);
    }
    fencing_coverage(&pipeline, timeout).await
}

/// Every compute host the monitor sees must be handled by at least one fencing level.
async fn fencing_coverage(
    pipeline: &Pipeline,
    timeout: std::time::Duration,
) -> anyhow::Result<Exit> {
    let coverage = match checks::fencing_coverage(pipeline, timeout).await {
        Ok(c) => c,
        Err(CheckFailure::Failed(e)) => {
            eprintln!("error: the monitor could not observe the hosts: {e}");
            return Ok(Exit::Error);
        }
        Err(CheckFailure::TimedOut(t)) => {
            eprintln!(
                "error: the monitor did not answer within {}",
                humantime::format_duration(t)
            );
            return Ok(Exit::Error);
        }
    };
    if coverage.uncovered.is_empty() {
        println!(
            "Fencing: every one of the {} observed host(s) is handled by a fencer",
            coverage.observed
        );
        Ok(Exit::Ok)
    } else {
        let names: Vec<&str> = coverage.uncovered.iter().map(HostId::as_str).collect();
        println!("Fencing: no fencer handles {}", names.join(", "));
        eprintln!(
            "error: {} compute host(s) have no fencer: add them to a [[fencer]] section's inventory, \
             or disable them in Nova if they are out of service",
            names.len()
        );
        Ok(Exit::Error)
    }
}

fn example(kind: Option<&str>, name: Option<&str>) -> anyhow::Result<Exit> {
    let Some(kind_name) = kind else {
        print!("{}", config::example_config());
        return Ok(Exit::Ok);
    };
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let kind = Kind::parse(kind_name)
        .ok_or_else(|| anyhow!("unknown kind {kind_name:?}: one of {}", kinds.join(", ")))?;
    let drivers: Vec<_> = registry::drivers()
        .into_iter()
        .filter(|d| d.kind == kind)
        .collect();
    let names = if drivers.is_empty() {
        format!("no {kind} driver is linked into this binary")
    } else {
        format!(
            "registered: {}",
            drivers
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let Some(name) = name else {
        bail!("which {kind}? ({names}); e.g. `freezer-dr example {kind} <name>`");
    };
    let d = drivers.iter().find(|d| d.name == name).ok_or_else(|| {
        anyhow!("unknown {kind} driver {name:?} ({names}); `freezer-dr drivers` lists every driver")
    })?;
    let body = d.example.trim_end();
    if body.trim_start().starts_with('[') {
        println!("{body}");
    } else {
        println!("{}\n{body}", config::section_header(kind));
    }
    Ok(Exit::Ok)
}

async fn status(cli: &Cli, json: bool) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let store = Store::connect(&config).await?;
    #[cfg(feature = "etcd")]
    if let Some(c) = store.candidate() {
        let ha = c.status().await?;
        let (snapshot, requests) = store.load().await?.unwrap_or_default();
        let outbox = store.outbox().await?;
        if json {
            let mut v = output::status_json(&snapshot, &requests, &outbox);
            v["ha"] = serde_json::to_value(&ha)?;
            println!("{v:#}");
        } else {
            print!(
                "{}{}",
                output::ha_status(&ha),
                output::status(&snapshot, &requests, &outbox)
            );
        }
        return Ok(Exit::Ok);
    }
    let (snapshot, requests) = match store.load().await? {
        Some(recorded) => recorded,
        None => {
            if !json {
                println!(
                    "No journal at {}: freezer-dr has not recorded anything yet",
                    config.journal.path.display()
                );
                return Ok(Exit::Ok);
            }
            (Snapshot::default(), Vec::new())
        }
    };
    let outbox = store.outbox().await?;
    if json {
        println!("{:#}", output::status_json(&snapshot, &requests, &outbox));
    } else {
        print!("{}", output::status(&snapshot, &requests, &outbox));
    }
    Ok(Exit::Ok)
}

async fn history(cli: &Cli, limit: usize, json: bool) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let events = Store::connect(&config).await?.history(limit).await?;
    if json {
        println!("{:#}", serde_json::to_value(&events)?);
    } else {
        print!("{}", output::history(&events));
    }
    Ok(Exit::Ok)
}

/// Stores an operator request: from any machine with `[ha]` (the leader applies it, whoever that is).
async fn submit(cli: &Cli, request: OperatorRequest) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let (id, place) = Store::connect(&config)
        .await?
        .submit(request.clone())
        .await?;
    info!(id, request = ?request, "operator request stored");
    print!("{}", output::submitted(id, &request, Path::new(&place)));
    Ok(Exit::Ok)
}

/// `confirm-off` puts the operator's word in place of a verified power-off: ask for it explicitly.
fn confirm_off(host: &HostId, confirmed: bool) -> anyhow::Result<()> {
    if confirmed {
        warn!(host = %host, "power-off asserted by an operator (--yes-i-checked-it-is-off)");
        return Ok(());
    }
    let warning = format!(
        "confirm-off {host}: you assert that {host} is powered off. freezer-dr will isolate it and \
         evacuate its instances on your word; if it is still running, its instances run twice and \
         their disks are corrupted."
    );
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "{warning} Check it (BMC, hypervisor, someone at the rack), then run again with \
             --yes-i-checked-it-is-off"
        );
    }
    eprint!("{warning}\nType the host name to confirm it is off: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .context("cannot read the confirmation")?;
    if answer.trim_end_matches(['\n', '\r']) != host.as_str() {
        bail!("not confirmed (the answer was not {host:?}): nothing was stored");
    }
    Ok(())
}
