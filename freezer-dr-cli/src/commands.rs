//! The subcommands.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use freezer_dr_core::config::{self, Config};
use freezer_dr_core::engine::{OperatorRequest, Snapshot};
use freezer_dr_core::registry::{self, Kind};
use freezer_dr_core::runtime::Runtime;
use freezer_dr_core::{HostId, Journal};
use tracing::{info, warn};

use crate::{Cli, Command, Exit, journal, output};

/// One driver's healthcheck, spawned on its own task.
type CheckFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = freezer_dr_core::Result<()>> + Send>>;

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

/// `[ha]` set: connect to etcd as a candidate of the election.
#[cfg(feature = "etcd")]
async fn candidate(config: &Config) -> anyhow::Result<Option<freezer_dr_core::ha::Candidate>> {
    let Some(ha) = &config.ha else {
        return Ok(None);
    };
    let c = freezer_dr_core::ha::Candidate::connect(ha.clone())
        .await
        .with_context(|| {
            format!(
                "{}: [ha]: cannot reach etcd at {}",
                config.file.display(),
                ha.endpoints.join(", ")
            )
        })?;
    Ok(Some(c))
}

/// `[ha]` set in a binary built without etcd.
#[cfg(not(feature = "etcd"))]
async fn candidate(config: &Config) -> anyhow::Result<Option<std::convert::Infallible>> {
    if config.ha.is_some() {
        bail!(
            "{}: [ha] is set but this freezer-dr was built without etcd support (Cargo feature `etcd`)",
            config.file.display()
        );
    }
    Ok(None)
}

/// The daemon in HA mode: stand by, lead, stand by again, until SIGINT/SIGTERM.
#[cfg(feature = "etcd")]
async fn run_ha(
    config: &Config,
    candidate: freezer_dr_core::ha::Candidate,
    pipeline: freezer_dr_core::runtime::Pipeline,
) -> anyhow::Result<Exit> {
    let me = candidate.member().describe();
    info!(
        config = %config.file.display(),
        election = %candidate.config().election,
        candidate = %me,
        "daemon starting in HA mode: standing by until elected"
    );
    let recovery = config.recovery.clone();
    candidate
        .run_as_leader(
            move |journal| Ok(Runtime::new(recovery.clone(), pipeline.clone(), journal)),
            shutdown_signal(),
        )
        .await?;
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
    if config.ha.is_some() && !dry_run {
        if once {
            bail!(
                "{}: run --once acts alone, without an election: with [ha] run the daemon \
                 (`freezer-dr run`), or use a config without [ha]",
                config.file.display()
            );
        }
        #[cfg(feature = "etcd")]
        if let Some(c) = candidate(&config).await? {
            return run_ha(&config, c, pipeline).await;
        }
        candidate(&config).await?;
    }

    // A dry run keeps its journal in memory: nothing on disk is read or written. Otherwise the daemon
    // lock makes sure a single freezer-dr acts on this journal (one-pass runs included: two actors
    // would recover the same host twice).
    let disk = if dry_run {
        None
    } else {
        Some(journal::open(&config.journal.path)?)
    };
    let _lock = match &disk {
        Some(j) => Some(j.lock_daemon().with_context(|| {
            format!(
                "cannot lock the journal {}: is another freezer-dr running with it?",
                config.journal.path.display()
            )
        })?),
        None => None,
    };
    let journal: Arc<dyn Journal> = match &disk {
        Some(j) => j.clone(),
        None => journal::memory(),
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
        runtime.run(shutdown_signal()).await?;
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
    let mut checks = tokio::task::JoinSet::new();
    let mut spawn = |i: usize, check: CheckFuture| {
        checks.spawn(async move { (i, tokio::time::timeout(timeout, check).await) });
    };
    let m = pipeline.monitor.clone();
    spawn(0, Box::pin(async move { m.healthcheck().await }));
    let mut i = 1;
    for f in &pipeline.fencers {
        let f = f.clone();
        spawn(i, Box::pin(async move { f.healthcheck().await }));
        i += 1;
    }
    let e = pipeline.evacuator.clone();
    spawn(i, Box::pin(async move { e.healthcheck().await }));
    i += 1;
    if let Some(d) = &pipeline.directory {
        let d = d.clone();
        spawn(i, Box::pin(async move { d.healthcheck().await }));
        i += 1;
    }
    for n in &pipeline.notifiers {
        let n = n.clone();
        spawn(i, Box::pin(async move { n.healthcheck().await }));
        i += 1;
    }

    let mut results = vec![None; sections.len()];
    while let Some(joined) = checks.join_next().await {
        let (i, outcome) = joined.context("a healthcheck panicked")?;
        let line = match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            )),
        };
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(line);
        }
    }
    println!("Connecting:");
    let mut failed = 0;
    for (s, result) in sections.iter().zip(results) {
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

/// Every compute host the monitor sees must be handled by at least one fencing level; a host no fencer
/// knows would only be found out during a failure (it would wait for a person instead of being recovered).
async fn fencing_coverage(
    pipeline: &freezer_dr_core::runtime::Pipeline,
    timeout: std::time::Duration,
) -> anyhow::Result<Exit> {
    let hosts = match tokio::time::timeout(timeout, pipeline.monitor.observe()).await {
        Ok(Ok(hosts)) => hosts,
        Ok(Err(e)) => {
            eprintln!("error: the monitor could not observe the hosts: {e}");
            return Ok(Exit::Error);
        }
        Err(_) => {
            eprintln!(
                "error: the monitor did not answer within {}",
                humantime::format_duration(timeout)
            );
            return Ok(Exit::Error);
        }
    };
    let uncovered: Vec<String> = hosts
        .iter()
        .filter(|h| !h.admin.disabled_by_operator())
        .filter(|h| !pipeline.fencers.iter().any(|f| f.handles(&h.host)))
        .map(|h| h.host.to_string())
        .collect();
    if uncovered.is_empty() {
        println!(
            "Fencing: every one of the {} observed host(s) is handled by a fencer",
            hosts.len()
        );
        Ok(Exit::Ok)
    } else {
        println!("Fencing: no fencer handles {}", uncovered.join(", "));
        eprintln!(
            "error: {} compute host(s) have no fencer: add them to a [[fencer]] section's inventory, \
             or disable them in Nova if they are out of service",
            uncovered.len()
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
    #[cfg(feature = "etcd")]
    if let Some(c) = candidate(&config).await? {
        let ha = c.status().await?;
        let j = c.journal();
        let (snapshot, requests) = (j.load().await?, j.requests().await?);
        if json {
            let mut v = output::status_json(&snapshot, &requests);
            v["ha"] = serde_json::to_value(&ha)?;
            println!("{v:#}");
        } else {
            print!(
                "{}{}",
                output::ha_status(&ha),
                output::status(&snapshot, &requests)
            );
        }
        return Ok(Exit::Ok);
    }
    candidate(&config).await?;
    let path = &config.journal.path;
    let (snapshot, requests) = match journal::open_existing(path)? {
        Some(j) => (j.load().await?, j.requests().await?),
        None => {
            if !json {
                println!(
                    "No journal at {}: freezer-dr has not recorded anything yet",
                    path.display()
                );
                return Ok(Exit::Ok);
            }
            (Snapshot::default(), Vec::new())
        }
    };
    if json {
        println!("{:#}", output::status_json(&snapshot, &requests));
    } else {
        print!("{}", output::status(&snapshot, &requests));
    }
    Ok(Exit::Ok)
}

async fn history(cli: &Cli, limit: usize, json: bool) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let events = match candidate(&config).await? {
        #[cfg(feature = "etcd")]
        Some(c) => c.journal().history(limit).await?,
        #[cfg(not(feature = "etcd"))]
        Some(never) => match never {},
        None => match journal::open_existing(&config.journal.path)? {
            Some(j) => j.history(limit).await?,
            None => Vec::new(),
        },
    };
    if json {
        println!("{:#}", serde_json::to_value(&events)?);
    } else {
        print!("{}", output::history(&events));
    }
    Ok(Exit::Ok)
}

async fn submit(cli: &Cli, request: OperatorRequest) -> anyhow::Result<Exit> {
    let config = load_config(cli)?;
    let (id, place) = match candidate(&config).await? {
        // From any machine: the leader applies it, whoever that is.
        #[cfg(feature = "etcd")]
        Some(c) => {
            let j = c.journal();
            let id = j.submit(request.clone()).await?;
            (id, std::path::PathBuf::from(format!("etcd {}", j.prefix())))
        }
        #[cfg(not(feature = "etcd"))]
        Some(never) => match never {},
        None => {
            let j = journal::open(&config.journal.path)?;
            (
                j.submit(request.clone()).await?,
                config.journal.path.clone(),
            )
        }
    };
    info!(id, request = ?request, "operator request stored");
    print!("{}", output::submitted(id, &request, &place));
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
