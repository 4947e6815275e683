//! Engine benchmark: the cost of one `step` at cloud scale, printed as a table.
//!
//! `cargo bench -p freezer-dr-core --bench engine`. Scenarios: an observation of 1,000 hosts (20 instances
//! each in the cloud) with a few down, and the evacuation phase of a host with 200 instances (listing,
//! evacuation results, progress reads), each with the journal changes taken as the runtime does.
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
    name: &'static str,
    iters: u32,
    total: Duration,
}

fn measure(rows: &mut Vec<Row>, name: &'static str, iters: u32, mut f: impl FnMut(u32)) {
    for i in 0..iters.min(50) {
        f(i); // warm-up
    }
    let start = Instant::now();
    for i in 0..iters {
        f(i);
    }
    rows.push(Row {
        name,
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
}
