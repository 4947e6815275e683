//! What waiting costs: the CPU the runtime uses while instances wait for an evacuation slot or the brake is
//! on, against an idle daemon, in real time with the `testing` drivers. Printed as a table.
//!
//! `cargo bench -p freezer-dr-core --bench waiting`. Linux only (reads `/proc/self/stat`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use freezer_dr_core::config::{LocalRootDisk, RecoveryConfig};
use freezer_dr_core::engine::OperatorRequest;
use freezer_dr_core::journal::MemoryJournal;
use freezer_dr_core::runtime::Pipeline;
use freezer_dr_core::testing::{
    FakeDirectory, FakeEvacuator, FakeFencer, FakeMonitor, FakeNotifier, Op, World,
};
use freezer_dr_core::{Journal, Runtime};

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

fn config() -> RecoveryConfig {
    let mut cfg = RecoveryConfig::default();
    cfg.interval = Duration::from_millis(500);
    cfg.strikes = 2;
    cfg.storm.max_fraction = 1.0;
    cfg.fencing.poll_interval = Duration::from_millis(50);
    cfg.evacuation.poll_interval = Duration::from_millis(50);
    cfg.evacuation.concurrency = 1;
    cfg.policy.local_root_disk = LocalRootDisk::Evacuate;
    cfg
}

fn pipeline(w: &World) -> Pipeline {
    Pipeline {
        monitor: Arc::new(FakeMonitor::new(w)),
        fencers: vec![Arc::new(FakeFencer::new(w))],
        evacuator: Arc::new(FakeEvacuator::new(w)),
        directory: Some(Arc::new(FakeDirectory::new(w))),
        notifiers: vec![Arc::new(FakeNotifier::new(w))],
    }
}

/// Runs the daemon for `wall` (or until `done` says so) and returns (wall, cpu).
async fn measure(
    w: &World,
    journal: &MemoryJournal,
    wall: Duration,
    done: impl Fn(&World) -> bool,
) -> (Duration, Duration) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = Runtime::new(config(), pipeline(w), Arc::new(journal.clone()));
    let daemon = tokio::spawn(rt.run(async {
        let _ = stop_rx.await;
    }));
    let (t0, c0) = (Instant::now(), cpu());
    while t0.elapsed() < wall && !done(w) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (elapsed, used) = (t0.elapsed(), cpu() - c0);
    let _ = stop_tx.send(());
    daemon.await.unwrap().unwrap();
    (elapsed, used)
}

fn row(what: &str, (wall, cpu): (Duration, Duration)) {
    let pct = cpu.as_secs_f64() / wall.as_secs_f64() * 100.0;
    println!(
        "| {what} | {:.1} s | {:.0} ms | {pct:.1}% |",
        wall.as_secs_f64(),
        cpu.as_millis()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("| phase | wall | CPU | CPU / wall |");
    println!("|---|---|---|---|");

    // Idle: nothing down.
    let w = World::new().host("c1").host("c2").instances("c1", 30);
    row(
        "idle daemon, nothing down",
        measure(&w, &MemoryJournal::new(), Duration::from_secs(5), |_| false).await,
    );

    // 30 instances at concurrency 1, 5 polls each: 29 always wait for the slot.
    let w = World::c1_failed(3, 30, 5);
    let all_moved = |w: &World| w.count(Op::Evacuate) >= 30 && w.instances_on("c1").is_empty();
    row(
        "30 instances, concurrency 1, 5 polls each (whole evacuation)",
        measure(
            &w,
            &MemoryJournal::new(),
            Duration::from_secs(60),
            all_moved,
        )
        .await,
    );

    // The brake on with instances pending.
    let w = World::c1_failed(3, 30, 5);
    let journal = MemoryJournal::new();
    let started = |w: &World| w.count(Op::Evacuate) >= 2;
    measure(&w, &journal, Duration::from_secs(30), started).await;
    journal
        .submit(OperatorRequest::Pause {
            reason: "bench".into(),
        })
        .await
        .unwrap();
    row(
        "brake on, 28 instances pending",
        measure(&w, &journal, Duration::from_secs(5), |_| false).await,
    );
}
