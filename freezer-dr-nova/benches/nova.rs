//! Benchmark of the Nova drivers against the scripted Keystone/Nova server with injected latency (50 ms a
//! call by default), the server running in a child process so the CPU time measured is the client's:
//!
//! 1. observe the compute services (one `GET /os-services`), beside bare GETs of the same list (its
//!    HTTP floor: the rest is reading the services and judging them);
//! 2. evacuate every instance of the failed hosts at concurrency 32 through the real core runtime
//!    (`Runtime::run_once`: observe, fence with a stand-in fencer, isolate, list, evacuate, track);
//! 3. bare reqwest GETs of the same server's instances at the same concurrency: the HTTP stack's own
//!    CPU per call on this machine (the floor), since the same build's CPU per call differs twofold
//!    between two days on this VM;
//! 4. `NovaEvacuator::progress` alone on the evacuated instances at the same concurrency: what the
//!    driver adds to the floor, and so what the runtime adds to the driver;
//! 5. the same pass against a server with no instances, for what a pass costs besides the
//!    evacuations (the difference, over the difference in calls, is the CPU per evacuation call).
//!
//! Scenarios, by default: 1,000 services with 1,000 instances on one failed host; 10,000 services with
//! 2,000 on one; 10,000 services with 20,000 across 100 failed hosts (the storm budget raised to let
//! them all be fenced). Prints a table per scenario (wall time against the ideal, calls × latency /
//! concurrency, and CPU time), then a summary: CPU per observation, per driver call (whole pass, and the evacuations' alone), and the
//! process's resident memory after each pass.
//! `cargo bench -p freezer-dr-nova --bench nova [-- --latency-ms 50 --hosts 1000 --instances 1000
//! --failed 1]` runs one scenario; `--observe-rounds N` (default 50) observations are averaged;
//! `--repeat N` (default 3) runs each scale N times, the scales taking turns (so a slower spell of the
//! host falls on every scale alike), the summary showing the median run and the range;
//! the client and the server are pinned to a core each (`--no-pin` leaves them to the scheduler);
//! `--proc-clock` reads the CPU time from /proc (10 ms resolution), for a run under valgrind;
//! `--unobserved` runs the passes without an observer (the packaged daemon has one: systemd's notifier);
//! `--journal redb` journals the passes to a redb file (durable commits, as the daemon does) instead of
//! in memory.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/scripted.rs"]
mod scripted;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freezer_dr_core::config::RecoveryConfig;
use freezer_dr_core::journal::{Journal, MemoryJournal, RedbJournal};
use freezer_dr_core::runtime::{Event, Observer, Pipeline};
use freezer_dr_core::{
    Evacuator, Fencer, HostId, Monitor, PowerState, Result, Runtime, Secret, Timestamp,
};
use freezer_dr_nova::{AuthConfig, NovaConfig, NovaEvacuator, NovaMonitor};
use serde_json::Value;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system, every thread) of this process so far: `CLOCK_PROCESS_CPUTIME_ID`; with
/// `--proc-clock`, from /proc/self/stat (10 ms resolution), for a run under valgrind (callgrind counts
/// instructions, the same for the same build whatever the VM's speed that day), whose process rustix's
/// vDSO lookup crashes.
fn cpu() -> Duration {
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *PROC.get_or_init(|| std::env::args().any(|a| a == "--proc-clock")) {
        return cpu_of(std::process::id());
    }
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time (user + system) of process `pid` so far, from /proc/PID/stat (10 ms resolution): the
/// scripted server's, to see whether it kept up.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 (11 and 12 after the command name), in clock ticks (100 Hz).
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The cores this process may run on (its affinity mask, not core numbers: a container may be given
/// cores 4 and 5); empty with `--no-pin`.
fn allowed_cores() -> Vec<usize> {
    if std::env::args().any(|a| a == "--no-pin") {
        return Vec::new();
    }
    let Ok(allowed) = rustix::thread::sched_getaffinity(None) else {
        return Vec::new();
    };
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|c| allowed.is_set(*c))
        .collect()
}

/// Pins the calling thread (and so every thread it starts later, and every child process) to `core`.
fn pin_to(core: usize) -> bool {
    let mut set = rustix::thread::CpuSet::new();
    set.set(core);
    rustix::thread::sched_setaffinity(None, &set).is_ok()
}

/// The core the scripted server is to pin itself to (`--core`), chosen by the client before it pinned
/// itself: a child inherits its parent's mask, so the server could not find a second core on its own.
static SERVER_CORE: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// True with `--journal redb`: the passes journal to a redb file in a temporary folder.
fn redb() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .any(|w| w[0] == "--journal" && w[1] == "redb")
}

/// The resident set of this process now and at its peak (`VmRSS`, `VmHWM` in /proc/self/status).
fn rss() -> (String, String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or_else(
                || "?".to_owned(),
                |kb| format!("{:.0} MiB", kb as f64 / 1024.0),
            )
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The name of failed host `i` (the first `failed` of the cloud's hosts).
fn host_name(i: u64) -> String {
    format!("c{i:04}")
}

fn serve(latency_ms: u64, hosts: u64, instances: u64, failed: u64) {
    let core = std::env::args()
        .skip_while(|a| a != "--core")
        .nth(1)
        .and_then(|c| c.parse().ok());
    if let Some(core) = core
        && !pin_to(core)
    {
        eprintln!("scripted server: could not pin itself to core {core}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = scripted::Scripted::start().await;
        let names: Vec<String> = (0..hosts).map(host_name).collect();
        s.add_hosts(&names);
        for h in 0..failed {
            s.set_down(&host_name(h));
        }
        for i in 0..instances {
            s.add_server(&format!("i{i:05}"), &host_name(i % failed));
        }
        s.with(|st| st.latency = Duration::from_millis(latency_ms));
        println!("{}", s.addr);
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut buf = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut buf);
        })
        .await
        .unwrap();
    });
}

struct InstantFencer;

#[async_trait]
impl Fencer for InstantFencer {
    async fn power_off(&self, _host: &HostId) -> Result<()> {
        Ok(())
    }
    async fn power_status(&self, _host: &HostId) -> Result<PowerState> {
        Ok(PowerState::Off)
    }
}

fn cfg(addr: &str) -> NovaConfig {
    NovaConfig {
        auth: AuthConfig {
            auth_url: Some(format!("http://{addr}/identity/v3")),
            username: Some("admin".into()),
            password: Some(Secret::new("s3cret-pw")),
            project_name: Some("admin".into()),
            region_name: Some("RegionOne".into()),
            ..Default::default()
        },
        heartbeat_timeout: Duration::from_secs(60),
        page_size: 1000,
        ..Default::default()
    }
}

/// A duration in seconds, for the table.
fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// How much longer `took` was than `ideal`, in percent.
fn over(took: Duration, ideal: Duration) -> String {
    format!(
        "{:+.1}%",
        (took.as_secs_f64() / ideal.as_secs_f64() - 1.0) * 100.0
    )
}

async fn stats(addr: &str) -> Value {
    reqwest::get(format!("http://{addr}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One scenario's figures, for the summary.
struct Summary {
    scale: String,
    observe_cpu: Duration,
    /// The client CPU of a bare GET of the same service list (see `observe_floor`).
    observe_floor: Duration,
    pass_vs_ideal: String,
    pass_cpu: Duration,
    calls: u64,
    rss: (String, String),
    /// The client CPU and the calls of the same pass with no instances.
    base_cpu: Duration,
    base_calls: u64,
    /// The client CPU per call of bare reqwest GETs against the same server (see `floor`).
    floor: Duration,
    /// The client CPU per call of `NovaEvacuator::progress` alone against the same server (see `driver`).
    driver: Duration,
    /// The pass's engine steps and journal commits.
    steps: u64,
    commits: u64,
    /// The wall time of the pass's journal commits, as the runtime's observers are told it.
    commit_wall: Vec<Duration>,
}

impl Summary {
    /// The whole pass's client CPU per call, in ms.
    fn per_call(&self) -> f64 {
        self.pass_cpu.as_secs_f64() * 1e3 / self.calls.max(1) as f64
    }

    /// What the evacuations added to the pass's client CPU, per call they added, in ms.
    fn per_evacuation_call(&self) -> f64 {
        let calls = self.calls.saturating_sub(self.base_calls).max(1);
        self.pass_cpu.saturating_sub(self.base_cpu).as_secs_f64() * 1e3 / calls as f64
    }
}

fn main() {
    let latency = arg("--latency-ms", 50);
    let concurrency = arg("--concurrency", 32) as usize;
    let one = ["--hosts", "--instances", "--failed"]
        .iter()
        .any(|a| std::env::args().any(|x| x == *a));
    let (hosts, instances, failed) = (
        arg("--hosts", 1000),
        arg("--instances", 1000),
        arg("--failed", 1).max(1),
    );
    if std::env::args().any(|a| a == "--serve") {
        serve(latency, hosts, instances, failed);
        return;
    }
    // The client on the first allowed core, the scripted server on the second, so the server's work
    // never lands on the core whose CPU time is measured.
    let cores = allowed_cores();
    let pinned = cores.len() >= 2 && pin_to(cores[0]);
    let _ = SERVER_CORE.set(pinned.then(|| cores[1]));
    let repeat = arg("--repeat", 3).max(1);
    let scenarios = if one {
        vec![(hosts, instances, failed)]
    } else {
        vec![(1000, 1000, 1), (10_000, 2000, 1), (10_000, 20_000, 100)]
    };
    let mut summaries: Vec<Vec<Summary>> = scenarios.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeat {
        for (runs, &(hosts, instances, failed)) in summaries.iter_mut().zip(&scenarios) {
            runs.push(scenario(latency, concurrency, hosts, instances, failed));
        }
    }
    println!(
        "\nfreezer-dr-nova summary, scripted Nova with {latency} ms per call, concurrency {concurrency}, \
         {repeat} run(s) per scale, journal {}{}\n",
        if redb() {
            "redb (a file in a temporary folder)"
        } else {
            "in memory"
        },
        if pinned {
            "; client and scripted server pinned to a core each"
        } else {
            "; not pinned"
        }
    );
    let mut medians = Vec::new();
    let mut above = Vec::new();
    let rows: Vec<[String; 13]> = summaries
        .iter_mut()
        .map(|runs| {
            // Memory from the scale's first run: the first round runs the scales smallest first, so only
            // smaller ones ran before it in this process (the later rounds follow the largest).
            let rss = runs[0].rss.clone();
            // The run with the median CPU per evacuation call stands for the scale; the spread is shown.
            runs.sort_by(|a, b| a.per_evacuation_call().total_cmp(&b.per_evacuation_call()));
            let (lo, hi) = (
                runs[0].per_evacuation_call(),
                runs[runs.len() - 1].per_evacuation_call(),
            );
            let whole: Vec<f64> = runs.iter().map(Summary::per_call).collect();
            let whole_lo = whole.iter().copied().fold(f64::INFINITY, f64::min);
            let whole_hi = whole.iter().copied().fold(0.0, f64::max);
            let s = &runs[runs.len() / 2];
            medians.push(s.per_evacuation_call());
            let floor = s.floor.as_secs_f64() * 1e3;
            above.push(s.per_evacuation_call() - floor);
            let driver = s.driver.as_secs_f64() * 1e3;
            [
                s.scale.clone(),
                format!(
                    "{:.1} ms (floor {:.1})",
                    s.observe_cpu.as_secs_f64() * 1e3,
                    s.observe_floor.as_secs_f64() * 1e3
                ),
                s.pass_vs_ideal.clone(),
                format!("{} / {} calls", secs(s.pass_cpu), s.calls),
                format!("{:.3} ms ({whole_lo:.3}..{whole_hi:.3})", s.per_call()),
                format!("{:.3} ms ({lo:.3}..{hi:.3})", s.per_evacuation_call()),
                format!("{floor:.3} ms"),
                format!("{:.3} ms", s.per_evacuation_call() - floor),
                format!("{driver:.3} ms ({:+.3})", driver - floor),
                format!("{:.3} ms", s.per_evacuation_call() - driver),
                format!("{} / {}", s.steps, s.commits),
                commit_wall(&s.commit_wall),
                format!("{} (peak {})", rss.0, rss.1),
            ]
        })
        .collect();
    table(
        [
            "scale",
            "observe CPU (HTTP floor)",
            "whole pass vs ideal",
            "client CPU of the pass",
            "CPU per call (range)",
            "CPU per evacuation call (range)",
            "HTTP floor per call",
            "above the floor",
            "driver alone per call (vs floor)",
            "runtime's share (evacuation call - driver)",
            "engine steps / journal commits",
            "wall per commit (median / p99)",
            "RSS after the pass",
        ],
        &rows,
    );
    let (min, max) = medians
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), m| {
            (lo.min(*m), hi.max(*m))
        });
    println!(
        "\nCPU is user + system time of this process (the scripted server runs in a child process), \
         from its CPU clock (CLOCK_PROCESS_CPUTIME_ID); per observation averaged over {} rounds, its floor \
         the same number of bare reqwest GETs of the same list (read, not parsed). CPU per call is the \
         whole pass's over all its calls; per evacuation call, what the evacuations added to it: (pass - \
         the same pass with no instances) / (its calls - that pass's calls), the costs paid once per pass \
         (start, the first sight of every service, the observation, fencing, isolation, listing) left \
         out. Each row is the run with the median CPU per evacuation call; the ranges span every run. \
         The HTTP floor is bare reqwest GETs of the same server's instances at the same concurrency in \
         the same run (nothing parsed or stored); above the floor is the median run's CPU per evacuation \
         call minus it: freezer-dr's own work per call (session, JSON, engine, journal, tracing). The \
         driver alone is NovaEvacuator::progress of the evacuated instances at the same concurrency (one \
         GET each, parsed), its difference to the floor the driver's work; the runtime's share is the \
         CPU per evacuation call minus the driver's (engine, journal, workers, tracing, and what an \
         evacuation request or a migration list costs the driver beyond a progress read). The journal \
         commits are the runtime's (with redb, each a durable write): turns that only read ride on the next \
         one; their wall time is what the runtime tells its observers (the metric \
         freezer_dr_journal_commit_duration_seconds). RSS is this process's (VmRSS, VmHWM) right after \
         the scale's first pass (in the first round, where only smaller scales ran before it), its \
         engine and journal (in memory, or redb's page cache) included.",
        arg("--observe-rounds", 50).max(1)
    );
    println!(
        "median CPU per evacuation call across the scales: {min:.3}..{max:.3} ms, the largest {:+.0}% over \
         the smallest",
        (max / min - 1.0) * 100.0
    );
    let (lo, hi) = above.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), m| {
        (lo.min(*m), hi.max(*m))
    });
    println!("CPU per evacuation call above the HTTP floor across the scales: {lo:.3}..{hi:.3} ms");
}

fn table<const N: usize>(head: [&str; N], rows: &[[String; N]]) {
    let widths: Vec<usize> = (0..N)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap()
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(&head.map(String::from)));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
    );
    for r in rows {
        println!("{}", line(r));
    }
}

/// The first failed host's recovery, phase by phase, from the journal's history: when each host-level
/// event happened (ms after the pass started), and its first and last instance events.
async fn phases(journal: &dyn Journal, started: Timestamp) {
    let history = journal.history(usize::MAX).await.unwrap();
    let host = HostId::from(host_name(0));
    let mine: Vec<_> = history
        .iter()
        .filter(|e| e.host.as_ref() == Some(&host))
        .collect();
    let ms = |t: Timestamp| t.as_millis().saturating_sub(started.as_millis());
    println!("\nphases of {host} (ms after the pass started):");
    let mut shown_instance = false;
    for (i, e) in mine.iter().enumerate() {
        let last_instance =
            e.instance.is_some() && !mine[i + 1..].iter().any(|n| n.instance.is_some());
        if e.instance.is_none() || !shown_instance || last_instance {
            println!("{:>7}  {}", ms(e.at), e.what);
            shown_instance |= e.instance.is_some();
        }
    }
}

/// Starts the scripted server in a child process; its address and pid.
fn spawn_server(latency: u64, hosts: u64, instances: u64, failed: u64) -> (Child, String, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", "--latency-ms", &latency.to_string()])
        .args([
            "--hosts",
            &hosts.to_string(),
            "--instances",
            &instances.to_string(),
            "--failed",
            &failed.to_string(),
        ])
        .args(
            SERVER_CORE
                .get()
                .copied()
                .flatten()
                .map(|c| ["--core".to_owned(), c.to_string()])
                .into_iter()
                .flatten(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the scripted server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_owned();
    let pid = child.id();
    (child, addr, pid)
}

/// Stops a scripted server (it serves until its stdin closes).
fn stop_server(mut child: Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// What one `run_once` pass cost.
struct Pass {
    wall: Duration,
    /// The client's (this process's) CPU time.
    cpu: Duration,
    server_cpu: Duration,
    /// The calls the server answered in the pass (Keystone's included).
    calls: u64,
    /// The runtime's engine steps and journal commits in the pass.
    steps: u64,
    commits: u64,
    /// How long each commit took (wall), as the observers are told.
    commit_wall: Vec<Duration>,
    settle: Duration,
    poll: Duration,
    journal: Arc<dyn Journal>,
    /// The redb journal's folder (`--journal redb`), removed when the pass is dropped.
    _dir: Option<tempfile::TempDir>,
    started: Timestamp,
    /// The server's counters before and after the pass.
    before: Value,
    after: Value,
}

/// One `run_once` pass against the server at `addr` (pid `server`): every failed host fenced (a
/// stand-in fencer), isolated, listed and evacuated, checked recovered.
async fn pass(addr: &str, server: u32, concurrency: usize, failed: u64) -> Pass {
    let before = stats(addr).await;
    // A short interval: run_once's own waits between its phases are multiples of it (core's, not
    // the driver's); the default 10 s would dominate the whole-pass row.
    let mut rc = RecoveryConfig {
        strikes: 1,
        interval: Duration::from_millis(arg("--interval-ms", 200)),
        ..Default::default()
    };
    rc.fencing.poll_interval = Duration::from_millis(1);
    rc.evacuation.concurrency = concurrency;
    // No wait between an evacuation request and its first progress read (the scripted Nova
    // evacuates at once): every millisecond between two calls about a server is the client's.
    rc.evacuation.poll_interval = Duration::ZERO;
    // The storm budget raised for the bench: every failed host is fenced in the first cycle.
    let failed_hosts = usize::try_from(failed).unwrap();
    rc.storm.max_hosts = failed_hosts;
    rc.storm.max_fraction = 1.0;
    rc.storm.max_new_fencings_per_cycle = failed_hosts;
    rc.fencing.concurrency = failed_hosts;
    let pipeline = Pipeline {
        monitor: Arc::new(NovaMonitor::new(cfg(addr)).unwrap()) as Arc<dyn Monitor>,
        fencers: vec![Arc::new(InstantFencer)],
        evacuator: Arc::new(NovaEvacuator::new(cfg(addr)).unwrap()),
        directory: None,
        notifiers: Vec::new(),
    };
    let (settle, poll) = (rc.isolation_settle, rc.evacuation.poll_interval);
    // In memory by default (each record still encoded and decoded as redb's are); `--journal redb`
    // writes a redb file as the daemon does, each commit durable before the loop acts on it.
    let (journal, dir): (Arc<dyn Journal>, _) = if redb() {
        let dir = tempfile::tempdir().unwrap();
        let j = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
        (Arc::new(j), Some(dir))
    } else {
        (Arc::new(MemoryJournal::new()), None)
    };
    // Observed, as the packaged daemon is (systemd's notifier, the metrics): `--unobserved` leaves the
    // observers' work (a status per turn, an event per call and commit) out.
    let commits = Arc::new(CommitWall::default());
    let mut runtime = Runtime::new(rc, pipeline, journal.clone());
    if !std::env::args().any(|a| a == "--unobserved") {
        runtime = runtime.observer(commits.clone());
    }
    let (c0, t0, started) = (cpu(), Instant::now(), Timestamp::now());
    let server0 = cpu_of(server);
    let summary = runtime.run_once().await.unwrap();
    let (wall, cpu) = (t0.elapsed(), cpu() - c0);
    let server_cpu = cpu_of(server) - server0;
    assert_eq!(summary.failed_instances, 0, "{summary:?}");
    let mut recovered = summary.recovered.clone();
    recovered.sort();
    let want: Vec<HostId> = (0..failed).map(|h| HostId::from(host_name(h))).collect();
    assert_eq!(recovered, want, "{summary:?}");
    let after = stats(addr).await;
    let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    // Keystone's token requests are calls at the same latency too (the server logs them apart).
    let calls = d("calls") + d("auth");
    println!(
        "engine steps in the pass: {} for {calls} calls (ticks included), in {} journal commits",
        summary.steps, summary.commits
    );
    Pass {
        wall,
        cpu,
        server_cpu,
        calls,
        steps: summary.steps,
        commits: summary.commits,
        commit_wall: std::mem::take(&mut *commits.0.lock().unwrap()),
        settle,
        poll,
        journal,
        _dir: dir,
        started,
        before,
        after,
    }
}

/// The wall time of each journal commit of a pass (the runtime's [`Event::Commit`]).
#[derive(Default)]
struct CommitWall(std::sync::Mutex<Vec<Duration>>);

impl Observer for CommitWall {
    fn event(&self, event: &Event) {
        if let Event::Commit { took, .. } = event {
            self.0.lock().unwrap().push(*took);
        }
    }
}

/// "median / p99" of commit wall times, in ms.
fn commit_wall(walls: &[Duration]) -> String {
    if walls.is_empty() {
        return "-".into();
    }
    let mut w = walls.to_vec();
    w.sort_unstable();
    let at = |q: f64| w[((w.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("{:.2} / {:.2} ms", at(0.5), at(0.99))
}

/// The same pass with no instances on the failed hosts: what a pass costs besides the evacuations
/// (start, first sight of every service, observation, fencing, isolation, listing, settle).
fn baseline(
    rt: &tokio::runtime::Runtime,
    latency: u64,
    concurrency: usize,
    hosts: u64,
    failed: u64,
) -> Pass {
    let (child, addr, server) = spawn_server(latency, hosts, 0, failed);
    let p = rt.block_on(pass(&addr, server, concurrency, failed));
    stop_server(child);
    p
}

/// A bare `reqwest::Client` (rustls, as the session builds it) and a token from the server at `addr`.
async fn bare_client(addr: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let auth = http
        .post(format!("http://{addr}/identity/v3/auth/tokens"))
        .json(
            &serde_json::json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"name": "admin", "password": "s3cret-pw"}}}}}),
        )
        .send()
        .await
        .unwrap();
    let token = auth.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned();
    (http, token)
}

/// The observation's floor: `rounds` bare GETs of the service list the monitor reads
/// (`/os-services?binary=nova-compute`), each body read whole and dropped, nothing parsed; CPU per GET.
async fn observe_floor(addr: &str, rounds: u32) -> Duration {
    let (http, token) = bare_client(addr).await;
    let get = || {
        http.get(format!(
            "http://{addr}/compute/v2.1/os-services?binary=nova-compute"
        ))
        .header("X-Auth-Token", &token)
        .send()
    };
    // One first, for the connection; the body's size for the table.
    let first = get().await.unwrap().bytes().await.unwrap();
    println!("the service list is {} KiB", first.len() / 1024);
    let c0 = cpu();
    for _ in 0..rounds {
        let resp = get().await.unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        drop(resp.bytes().await.unwrap());
    }
    (cpu() - c0) / rounds
}

/// The floor: what the HTTP stack alone costs this client per call on this machine. `calls` GETs of
/// the instances (`/servers/{id}`, the progress read's answer) through a bare `reqwest::Client` (rustls,
/// as the session builds it) at `concurrency`, each body read and dropped, nothing parsed or stored;
/// its wall time and CPU.
/// CPU time per call differs twofold between two runs of this VM on different days for the same
/// build, so the pass's figure is shown beside this one: the difference is freezer-dr's own work.
async fn floor(addr: &str, concurrency: usize, instances: u64, calls: u64) -> (Duration, Duration) {
    let (http, token) = bare_client(addr).await;
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c0, t0) = (cpu(), Instant::now());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, next, token, addr) =
            (http.clone(), next.clone(), token.clone(), addr.to_owned());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= calls {
                    return;
                }
                let url = format!(
                    "http://{addr}/compute/v2.1/servers/i{:05}",
                    n % instances.max(1)
                );
                let resp = http
                    .get(url)
                    .header("X-Auth-Token", &token)
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                drop(resp.bytes().await.unwrap());
            }
        });
    }
    while workers.join_next().await.is_some() {}
    (t0.elapsed(), cpu() - c0)
}

/// The driver alone: `NovaEvacuator::progress` of the instances after the pass (each evacuated, so
/// one `GET /servers/{id}` parsed into `Progress::Done`) at `concurrency`, `calls` of them, from tasks
/// on the same runtime; its wall time and CPU. Against the floor: what the driver adds to a call
/// (session, URL, headers, JSON, the `Progress`); against the pass: what the runtime adds (engine,
/// journal, worker, tracing).
async fn driver(
    addr: &str,
    concurrency: usize,
    instances: u64,
    calls: u64,
) -> (Duration, Duration) {
    let evacuator = Arc::new(NovaEvacuator::new(cfg(addr)).unwrap());
    // Authenticate and negotiate first, as the pass had done before its evacuations.
    evacuator.microversion().await.unwrap();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c0, t0) = (cpu(), Instant::now());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (evacuator, next) = (evacuator.clone(), next.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= calls {
                    return;
                }
                let i = n % instances.max(1);
                let instance = freezer_dr_core::Instance {
                    id: format!("i{i:05}"),
                    name: String::new(),
                    project: String::new(),
                    user: String::new(),
                    status: "ACTIVE".into(),
                    host: HostId::from(host_name(0)),
                    metadata: Default::default(),
                    volume_backed: false,
                };
                let progress = evacuator.progress(&instance).await.unwrap();
                assert!(
                    matches!(progress, freezer_dr_core::Progress::Done { .. }),
                    "{progress:?}"
                );
            }
        });
    }
    while workers.join_next().await.is_some() {}
    (t0.elapsed(), cpu() - c0)
}

fn scenario(latency: u64, concurrency: usize, hosts: u64, instances: u64, failed: u64) -> Summary {
    let (child, addr, server) = spawn_server(latency, hosts, instances, failed);
    // The client runs on the daemon's own runtime (`freezer-dr run`'s).
    let rt = freezer_dr_core::runtime::tokio_runtime().unwrap();
    let lat = Duration::from_millis(latency);
    let mut rows: Vec<[String; 6]> = Vec::new();
    let summary = rt.block_on(async {
        // ---- 1. observe the services.
        let monitor = NovaMonitor::new(cfg(&addr)).unwrap();
        let seen = monitor.observe().await.unwrap(); // auth + microversion discovery
        assert_eq!(seen.len() as u64, hosts);
        // `--observe-rounds 1` leaves (nearly) only the pass to a profiler.
        let rounds = u32::try_from(arg("--observe-rounds", 50)).unwrap().max(1);
        let (c0, t0) = (cpu(), Instant::now());
        for _ in 0..rounds {
            monitor.observe().await.unwrap();
        }
        let (wall, observe_cpu) = (t0.elapsed() / rounds, (cpu() - c0) / rounds);
        rows.push([
            format!("observe {hosts} services"),
            "1".into(),
            format!("{:.1} ms", wall.as_secs_f64() * 1e3),
            format!("{:.1} ms", lat.as_secs_f64() * 1e3),
            over(wall, lat),
            format!("{:.1} ms", observe_cpu.as_secs_f64() * 1e3),
        ]);
        let observe_floor = observe_floor(&addr, rounds).await;
        rows.push([
            format!("bare reqwest GET of the {hosts} services (the observation's HTTP floor)"),
            "1".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            format!("{:.1} ms", observe_floor.as_secs_f64() * 1e3),
        ]);

        // ---- 2. evacuate every instance of the failed hosts at concurrency 32 through the runtime.
        let p = pass(&addr, server, concurrency, failed).await;
        let (wall, pass_cpu, server_cpu, settle, poll) =
            (p.wall, p.cpu, p.server_cpu, p.settle, p.poll);
        let rss = rss();
        let (steps, commits, commit_wall) = (p.steps, p.commits, p.commit_wall);
        let (journal, started, before, after, calls) = (p.journal, p.started, p.before, p.after, p.calls);
        phases(journal.as_ref(), started).await;
        let d = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
        let (posts, gets) = (d("evacuate_posts"), d("server_gets"));
        // Before each request, the instance's evacuation migrations are read (one actor per host).
        let migration_gets = d("migration_gets");
        assert_eq!(posts, instances, "one evacuation request per instance");
        let evac_calls = posts + gets + migration_gets;
        // Each instance holds its slot for its calls and for the configured wait before its first
        // progress read (`evacuation.poll_interval`), a wait by design like `isolation_settle`.
        let ideal = (lat * u32::try_from(evac_calls).unwrap()
            + poll * u32::try_from(instances).unwrap())
            / u32::try_from(concurrency).unwrap();
        let window = Duration::from_secs_f64(after["evac_window_s"].as_f64().unwrap());
        println!(
            "between two calls about one server: {:.2} ms in the client on average; each injected \
             wait took {:+.2} ms more than the latency on average; the scripted server used {} of CPU",
            after["think_ms"].as_f64().unwrap(),
            after["overslept_ms"].as_f64().unwrap(),
            secs(server_cpu)
        );
        rows.push([
            format!("evacuate {instances} (migrations+evacuate+progress calls)"),
            evac_calls.to_string(),
            secs(window),
            secs(ideal),
            over(window, ideal),
            "-".into(),
        ]);
        // The other calls (observe, auth, discovery, then per host isolate and list) are serial within
        // a host; the hosts' own run side by side, so one host's share counts.
        let serial = (calls - evac_calls).div_ceil(failed);
        // The configured pause between isolation and listing (`isolation_settle`) is a wait by design.
        let ideal_all = lat * u32::try_from(serial).unwrap() + settle + ideal;
        let pass_vs_ideal = over(wall, ideal_all);
        rows.push([
            format!("run_once whole pass (all calls, {serial} serial, settle)"),
            calls.to_string(),
            secs(wall),
            secs(ideal_all),
            pass_vs_ideal.clone(),
            secs(pass_cpu),
        ]);
        // ---- 3. the HTTP floor on the same server, as many calls as the evacuations made (at most
        // 3,000: the floor per call does not depend on their number, and each costs 50 ms / 32 of wall).
        let floor_calls = evac_calls.min(3000);
        let (floor_wall, floor_cpu) = floor(&addr, concurrency, instances, floor_calls).await;
        // Both side runs make `floor_calls` calls at `concurrency`: their ideal is the same.
        let side_ideal =
            lat * u32::try_from(floor_calls).unwrap() / u32::try_from(concurrency).unwrap();
        let side_row = |what: &str, wall: Duration, cpu: Duration| {
            [
                what.to_owned(),
                floor_calls.to_string(),
                secs(wall),
                secs(side_ideal),
                over(wall, side_ideal),
                secs(cpu),
            ]
        };
        rows.push(side_row(
            "bare reqwest GET /servers/{id} at the same concurrency (the HTTP floor)",
            floor_wall,
            floor_cpu,
        ));
        // ---- 4. the driver alone on the same server, as many calls as the floor.
        let (driver_wall, driver_cpu) = driver(&addr, concurrency, instances, floor_calls).await;
        rows.push(side_row(
            "NovaEvacuator::progress alone at the same concurrency (one GET each)",
            driver_wall,
            driver_cpu,
        ));
        Summary {
            observe_floor,
            driver: driver_cpu / u32::try_from(floor_calls.max(1)).unwrap(),
            floor: floor_cpu / u32::try_from(floor_calls.max(1)).unwrap(),
            scale: format!("{hosts} services, {instances} instances on {failed} failed host(s)"),
            observe_cpu,
            pass_vs_ideal,
            pass_cpu,
            calls,
            rss,
            base_cpu: Duration::ZERO,
            base_calls: 0,
            steps,
            commits,
            commit_wall,
        }
    });
    stop_server(child);
    // The same pass without instances, for what the evacuations alone cost per call.
    let base = baseline(&rt, latency, concurrency, hosts, failed);
    rows.push([
        "the same pass with no instances (start, observation, fence, isolate, list)".into(),
        base.calls.to_string(),
        secs(base.wall),
        "-".into(),
        "-".into(),
        secs(base.cpu),
    ]);
    let summary = Summary {
        base_cpu: base.cpu,
        base_calls: base.calls,
        ..summary
    };

    println!(
        "\nfreezer-dr-nova, {hosts} services, {instances} instances on {failed} failed host(s); scripted \
         Nova with {latency} ms per call, concurrency {concurrency}\n"
    );
    table(
        [
            "scenario",
            "calls",
            "wall",
            "ideal",
            "vs ideal",
            "client CPU",
        ],
        &rows,
    );
    println!(
        "\nideal = (calls x latency + instances x evacuation.poll_interval) / concurrency for the evacuations; serial calls (observe, auth, \
         discovery, isolate, listing) at one latency each, one host's share when several failed, plus \
         the isolation_settle pause (2 s by default)."
    );
    summary
}
