//! Engine benchmark: the cost of one `step` at cloud scale, printed as a table.
//!
//! `cargo bench -p freezer-dr-core --bench engine`. Scenarios: an observation of 1,000 hosts (20 instances
//! each in the cloud) with a few down, and the evacuation phase of a host with 200 instances (listing,
//! evacuation results, progress reads), each with the journal changes taken as the runtime does.
//!
//! Then whole recoveries at scale, to show the cost of one input flat in the number of hosts and
//! instances: 1,000 instances on one failed host of 1,000; 2,000 on one of 10,000; 20,000 across 100
//! failed hosts of 10,000 (the storm budget raised). Every command is answered at once (evacuations
//! accepted, then done) and the clock moves 1 ms per input, as a runtime would drive the engine; the
//! time per input is for the whole recovery, and the observation of every host is timed on its own.
//! Last, the redb journal: the bytes written per commit of one step, with 1,000 and 20,000 instances
//! stored (the commit writes what the step changed, not the journal's size), and the CPU and wall time
//! of one such durable commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use freezer_dr_core::config::{LocalRootDisk, RecoveryConfig};
use freezer_dr_core::{
    Command, Engine, Health, HostHealth, HostId, Input, Instance, PowerState, Progress, Timestamp,
};

const HOSTS: usize = 1_000;
const BIG_HOST_INSTANCES: usize = 200;

fn config() -> RecoveryConfig {
    let mut cfg = RecoveryConfig::default();
    cfg.storm.max_hosts = 10;
    cfg.storm.max_fraction = 0.1;
    cfg.storm.max_new_fencings_per_cycle = 5;
    cfg.evacuation.concurrency = 32;
    cfg.policy.local_root_disk = LocalRootDisk::Evacuate;
    // The listing follows the isolation at once (the pause before it is a wait, not engine work).
    cfg.isolation_settle = Duration::ZERO;
    cfg
}

fn host(i: usize) -> HostId {
    HostId::new(format!("compute-{i:04}"))
}

fn observation(down: &[usize]) -> Vec<HostHealth> {
    (0..HOSTS)
        .map(|i| {
            let health = if down.contains(&i) {
                Health::down("state=down, last heartbeat 95s ago")
            } else {
                Health::Up
            };
            HostHealth::new(host(i), health)
        })
        .collect()
}

fn instances(h: &HostId, n: usize) -> Vec<Instance> {
    (0..n)
        .map(|i| Instance {
            id: format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            name: format!("vm-{i}"),
            project: format!("project-{}", i % 17),
            user: format!("user-{}", i % 31),
            status: "ACTIVE".into(),
            host: h.clone(),
            metadata: [("role".to_owned(), "web".to_owned())].into(),
            volume_backed: i % 2 == 0,
        })
        .collect()
}

struct Row {
    name: String,
    iters: u32,
    total: Duration,
}

fn measure(rows: &mut Vec<Row>, name: &str, iters: u32, mut f: impl FnMut(u32)) {
    for i in 0..iters.min(50) {
        f(i); // warm-up
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    rows.push(Row {
        name: name.to_owned(),
        iters,
        total: start.elapsed(),
    });
}

fn main() {
    let mut rows = Vec::new();
    let mut now = Timestamp(1_700_000_000_000);

    // Observation: 1,000 hosts, a few down (alternating with a clean one so state stays bounded).
    let mut engine = Engine::new(config(), 2);
    let down = observation(&[3, 500, 997]);
    let up = observation(&[]);
    let iters = 2_000u32;
    let inputs: Vec<Input> = (0..iters + 50)
        .map(|i| Input::Observed(Ok(if i % 2 == 0 { down.clone() } else { up.clone() })))
        .collect();
    let mut inputs = inputs.into_iter();
    measure(
        &mut rows,
        "observe 1,000 hosts (3 down) + take_changes",
        iters,
        |_| {
            now = now.after(Duration::from_secs(10));
            let cmds = engine.step(now, inputs.next().unwrap());
            black_box(cmds);
            black_box(engine.take_changes());
        },
    );

    // Evacuation phase of a 200-instance host in a 1,000-host cloud.
    let mut engine = Engine::new(config(), 1);
    let big = host(42);
    let dead = observation(&[42]);
    for _ in 0..3 {
        now = now.after(Duration::from_secs(10));
        engine.step(now, Input::Observed(Ok(dead.clone())));
    }
    engine.step(
        now,
        Input::PoweredOff {
            host: big.clone(),
            level: 0,
            result: Ok(()),
        },
    );
    engine.step(
        now,
        Input::PowerRead {
            host: big.clone(),
            level: 0,
            result: Ok(PowerState::Off),
        },
    );
    engine.step(
        now,
        Input::Isolated {
            host: big.clone(),
            result: Ok(()),
        },
    );
    let list = instances(&big, BIG_HOST_INSTANCES);
    let before = engine.clone();
    measure(
        &mut rows,
        "(setup: clone the 1,000-host engine)",
        200,
        |_| {
            black_box(before.clone());
        },
    );
    let mut first = Vec::new();
    measure(
        &mut rows,
        "list 200 instances (policy, first 32 evacuations), clone included",
        200,
        |_| {
            let mut e = before.clone();
            let cmds = e.step(
                now,
                Input::Listed {
                    host: big.clone(),
                    result: Ok(list.clone()),
                },
            );
            black_box(e.take_changes());
            first = cmds;
        },
    );
    engine.step(
        now,
        Input::Listed {
            host: big.clone(),
            result: Ok(list.clone()),
        },
    );
    engine.take_changes();
    let mut requested: Vec<String> = first
        .iter()
        .filter_map(|c| match c {
            Command::Evacuate { instance, .. } => Some(instance.id.clone()),
            _ => None,
        })
        .collect();
    // Accept every request in flight, then measure progress reads that keep them rebuilding.
    for id in requested.clone() {
        engine.step(
            now,
            Input::EvacuateSent {
                host: big.clone(),
                instance: id,
                result: Ok(()),
            },
        );
    }
    engine.take_changes();
    let mut k = 0usize;
    measure(
        &mut rows,
        "progress read (200-instance host, 32 in flight)",
        20_000,
        |i| {
            now = now.after(Duration::from_millis(1));
            let cmds = engine.step(now, Input::Tick);
            black_box(&cmds);
            let id = requested[k % requested.len()].clone();
            k += 1;
            let detail = if i % 2 == 0 { "rebuilding" } else { "spawning" };
            black_box(engine.step(
                now,
                Input::ProgressRead {
                    host: big.clone(),
                    instance: id,
                    result: Ok(Progress::InProgress {
                        detail: detail.into(),
                    }),
                },
            ));
            black_box(engine.take_changes());
        },
    );
    // Completion of each instance, which frees a slot and sends the next request.
    let mut done = 0u32;
    measure(
        &mut rows,
        "instance done -> next evacuation requested",
        150,
        |_| {
            let Some(id) = requested.pop() else {
                panic!("bench bug: nothing in flight")
            };
            // Make sure the read is in flight as the runtime would.
            now = now.after(Duration::from_secs(3));
            engine.step(now, Input::Tick);
            let cmds = engine.step(
                now,
                Input::ProgressRead {
                    host: big.clone(),
                    instance: id,
                    result: Ok(Progress::Done {
                        host: host(7),
                        status: "ACTIVE".into(),
                    }),
                },
            );
            for c in &cmds {
                if let Command::Evacuate { instance, .. } = c {
                    engine.step(
                        now,
                        Input::EvacuateSent {
                            host: big.clone(),
                            instance: instance.id.clone(),
                            result: Ok(()),
                        },
                    );
                    requested.insert(0, instance.id.clone());
                }
            }
            black_box(engine.take_changes());
            done += 1;
        },
    );
    black_box(done);
    for (cloud, instances, failed) in [(1_000, 1_000, 1), (10_000, 2_000, 1), (10_000, 20_000, 100)]
    {
        at_scale(&mut rows, cloud, instances, failed);
    }

    println!("| scenario | iterations | time per step |");
    println!("|---|---:|---:|");
    for r in &rows {
        let per = r.total / r.iters;
        println!(
            "| {} | {} | {:.1} µs |",
            r.name,
            r.iters,
            per.as_secs_f64() * 1e6
        );
    }
    journal_bytes();
}

fn named(i: usize) -> HostId {
    HostId::new(format!("c{i:05}"))
}

fn cloud_observation(cloud: usize, failed: usize) -> Vec<HostHealth> {
    (0..cloud)
        .map(|i| {
            let health = if i < failed {
                Health::down("state=down, last heartbeat 95s ago")
            } else {
                Health::Up
            };
            HostHealth::new(named(i), health)
        })
        .collect()
}

/// The engine's answer to `cmd` as a runtime with instant drivers would bring it back.
fn answer(
    cmd: Command,
    lists: &mut std::collections::HashMap<HostId, Vec<Instance>>,
) -> Option<Input> {
    Some(match cmd {
        Command::PowerOff { host, level } => Input::PoweredOff {
            host,
            level,
            result: Ok(()),
        },
        Command::PowerStatus { host, level } => Input::PowerRead {
            host,
            level,
            result: Ok(PowerState::Off),
        },
        Command::Isolate { fenced } => Input::Isolated {
            host: fenced.host().clone(),
            result: Ok(()),
        },
        Command::ListInstances { fenced } => Input::Listed {
            host: fenced.host().clone(),
            result: Ok(lists.remove(fenced.host()).unwrap_or_default()),
        },
        Command::Evacuate { fenced, instance } => Input::EvacuateSent {
            host: fenced.host().clone(),
            instance: instance.id,
            result: Ok(()),
        },
        Command::Progress { host, instance } => Input::ProgressRead {
            host,
            instance: instance.id,
            result: Ok(Progress::Done {
                host: HostId::new("elsewhere"),
                status: "ACTIVE".into(),
            }),
        },
        _ => return None,
    })
}

/// The engine of a `cloud`-host cloud recovering `failed` hosts with `instances` instances among them,
/// every command answered at once; `each` sees every step's changes. Returns the inputs it took.
fn recover(
    cloud: usize,
    instances: usize,
    failed: usize,
    mut each: impl FnMut(freezer_dr_core::engine::Changes),
) -> (u64, Duration) {
    let mut cfg = config();
    cfg.strikes = 1;
    cfg.storm.max_hosts = failed;
    cfg.storm.max_fraction = 1.0;
    cfg.storm.max_new_fencings_per_cycle = failed;
    cfg.evacuation.poll_interval = Duration::from_millis(1);
    let mut engine = Engine::new(cfg, 1);
    let mut lists: std::collections::HashMap<HostId, Vec<Instance>> = (0..failed)
        .map(|h| {
            let host = named(h);
            let mut list = instances_of(&host, instances / failed);
            for (k, i) in list.iter_mut().enumerate() {
                i.id = format!("{h:05}-{k:06}");
            }
            (host, list)
        })
        .collect();
    let mut now = Timestamp(1_700_000_000_000);
    let mut queue: std::collections::VecDeque<Command> = engine
        .step(now, Input::Observed(Ok(cloud_observation(cloud, failed))))
        .into();
    each(engine.take_changes());
    let (mut inputs, start) = (0u64, Instant::now());
    loop {
        let input = match queue.pop_front() {
            Some(cmd) => match answer(cmd, &mut lists) {
                Some(i) => i,
                None => continue,
            },
            None => match engine.next_wakeup() {
                Some(t) => {
                    now = now.max(t);
                    Input::Tick
                }
                None => break,
            },
        };
        now = now.after(Duration::from_millis(1));
        queue.extend(engine.step(now, input));
        each(engine.take_changes());
        inputs += 1;
    }
    let took = start.elapsed();
    assert!(engine.is_settled(), "bench bug: the recovery did not end");
    let done = engine
        .hosts()
        .filter(|h| h.stage.name() == "evacuated")
        .count();
    assert_eq!(done, failed, "bench bug: not every host was recovered");
    (inputs, took)
}

fn instances_of(h: &HostId, n: usize) -> Vec<Instance> {
    instances(h, n)
}

fn at_scale(rows: &mut Vec<Row>, cloud: usize, instances: usize, failed: usize) {
    let (inputs, took) = recover(cloud, instances, failed, |c| {
        black_box(c);
    });
    rows.push(Row {
        name: format!(
            "whole recovery: {instances} instances on {failed} of {cloud} hosts, per input"
        ),
        iters: u32::try_from(inputs).unwrap(),
        total: took,
    });
    // One observation of every host, nothing changing (the cost of the input itself).
    let mut engine = Engine::new(config(), 1);
    let obs = cloud_observation(cloud, 0);
    let mut now = Timestamp(1_700_000_000_000);
    engine.step(now, Input::Observed(Ok(obs.clone())));
    let iters = 50;
    let inputs: Vec<Input> = (0..iters + 50)
        .map(|_| Input::Observed(Ok(obs.clone())))
        .collect();
    let mut inputs = inputs.into_iter();
    measure(
        rows,
        &format!("observe {cloud} hosts, all up + take_changes"),
        iters,
        |_| {
            now = now.after(Duration::from_secs(10));
            black_box(engine.step(now, inputs.next().unwrap()));
            black_box(engine.take_changes());
        },
    );
}

/// This process's CPU time so far (user + system, every thread: redb commits on tokio's blocking pool).
fn cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Bytes this process has written so far (`wchar` in /proc/self/io: what its write calls asked for).
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The redb journal's bytes per commit of one step, with 1,000 and 20,000 instances stored: the
/// recovery is run with every step's changes collected, the changes up to the end of the listings are
/// committed at once, then the next steps one commit each (every commit durable, as the runtime does).
fn journal_bytes() {
    use freezer_dr_core::Journal;
    use freezer_dr_core::journal::{Batch, RedbJournal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!();
    println!(
        "| redb journal | instances stored | commits | bytes written per commit | record bytes per commit | CPU per commit | wall per commit |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (cloud, instances, failed) in [(1_000, 1_000, 1), (10_000, 20_000, 100)] {
        let mut steps = Vec::new();
        recover(cloud, instances, failed, |c| steps.push(c));
        // Up to the step after which every instance is listed (stored), then a sample of single steps.
        let listed = steps
            .iter()
            .scan(0usize, |n, c| {
                *n += c.instances.len();
                Some(*n)
            })
            .position(|n| n >= instances)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let journal = RedbJournal::open(dir.path().join("journal.redb")).unwrap();
        let mut rest = steps.split_off(listed + 1);
        let mut first = freezer_dr_core::engine::Changes::default();
        for c in steps {
            first.absorb(c);
        }
        first.dedup();
        let commit = |changes| {
            rt.block_on(journal.commit(Batch {
                changes,
                outbox: Vec::new(),
                applied_requests: Vec::new(),
            }))
            .unwrap();
        };
        commit(first);
        let sample: Vec<_> = rest
            .drain(..rest.len().min(2_000))
            .filter(|c| !c.is_empty())
            .collect();
        let record: usize = sample
            .iter()
            .map(|c| {
                c.hosts
                    .iter()
                    .map(|h| serde_json::to_string(h).unwrap().len())
                    .sum::<usize>()
                    + c.instances
                        .iter()
                        .map(|(_, i)| serde_json::to_string(i).unwrap().len())
                        .sum::<usize>()
                    + c.history
                        .iter()
                        .map(|e| serde_json::to_string(e).unwrap().len())
                        .sum::<usize>()
            })
            .sum();
        let n = sample.len();
        let (before, cpu0, t0) = (written(), cpu(), Instant::now());
        for c in sample {
            commit(c);
        }
        let (wall, cpu) = (t0.elapsed(), cpu() - cpu0);
        let bytes = written() - before;
        let per = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3 / n as f64);
        println!(
            "| {instances} instances on {failed} host(s) | {instances} | {n} | {} | {} | {} | {} |",
            bytes / n as u64,
            record / n,
            per(cpu),
            per(wall)
        );
    }
}
