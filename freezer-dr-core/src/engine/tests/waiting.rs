//! Waiting costs no CPU, and shutdown: the next wake-up, what counts as settled, and a drain that
//! starts nothing new.

use super::*;

#[test]
fn next_wakeup_tracks_polls_and_deadlines() {
    let mut b = Bench::default();
    assert_eq!(b.engine.next_wakeup(), None);
    b.down_for_strikes(&["c1"]);
    assert_eq!(b.engine.next_wakeup(), None, "power-off in flight");
    b.powered_off("c1", 0, Ok(()));
    assert_eq!(b.engine.next_wakeup(), None, "status read in flight");
    b.power_read("c1", 0, PowerState::On);
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(1)))
    );
    b.advance(1);
    b.step(Input::Tick);
    b.power_read("c1", 0, PowerState::Off);
    b.isolated("c1");
    b.listed("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Err(fail(ErrorKind::Conflict).clone_permanent()));
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(5)))
    );
    b.advance(5);
    b.step(Input::Tick);
    b.sent("c1", "a", Ok(()));
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(2)))
    );
}

#[test]
fn instances_waiting_for_a_slot_do_not_wake_the_loop() {
    let mut b = Bench::with(1, |cfg| cfg.evacuation.concurrency = 1);
    let many: Vec<Instance> = (0..30)
        .map(|i| instance(&format!("i{i:02}"), "c1"))
        .collect();
    assert_eq!(b.fence_and_list("c1", many), ["evacuate i00 from c1"]);
    assert!(b.sent("c1", "i00", Ok(())).is_empty());
    // 29 instances wait for the one slot: the next thing due is the running one's poll, not "now".
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(2)))
    );
}

#[test]
fn writes_held_by_the_brake_do_not_wake_the_loop() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.step(pause("maintenance"));
    // `a` is refused and falls due for a retry while the brake is on; `b` never left.
    b.sent("c1", "a", Err(fail(ErrorKind::Conflict)));
    b.sent("c1", "b", Err(fail(ErrorKind::Conflict)));
    b.advance(60);
    assert!(b.step(Input::Tick).is_empty());
    assert_eq!(
        b.engine.next_wakeup(),
        None,
        "{:?}",
        b.instance_state("c1", "a")
    );
    // A host-level write waiting for its retry under the brake: no wake-up either.
    let mut b = Bench::default();
    b.fence_and_list("c2", vec![]);
    b.advance(10);
    b.up_for_strikes();
    assert_eq!(b.stage("c2"), Stage::Restoring);
    b.step(pause("maintenance"));
    b.restored("c2", Err(fail(ErrorKind::Unreachable)));
    b.advance(60);
    assert!(b.step(Input::Tick).is_empty());
    let rec = b.engine.host(&"c2".into()).unwrap();
    assert_eq!(
        b.engine.next_wakeup(),
        Some(rec.since.after(b.engine.config().restore_timeout)),
        "only the stage's own deadline, in the future"
    );
}

#[test]
fn is_settled_only_when_no_recovery_is_mid_way() {
    let mut b = Bench::default();
    assert!(b.engine.is_settled());
    b.down_for_strikes(&["c1"]);
    assert!(!b.engine.is_settled());
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.isolated("c1");
    b.listed("c1", vec![]);
    assert!(b.engine.is_settled());
}

// ----- shutdown ------------------------------------------------------------------------------------------

#[test]
fn a_result_taken_in_while_draining_starts_nothing_and_counts_no_attempt() {
    let mut b = Bench::with(1, |cfg| {
        cfg.evacuation.concurrency = 1;
        cfg.evacuation.attempts = 1;
    });
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    b.engine.drain();
    // `a` is done: the slot frees, but nothing is sent while shutting down, and `b` keeps its attempt.
    assert!(b.done("c1", "a", "c2").is_empty());
    assert_eq!(b.instance_at("c1", "b"), "pending");
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert_eq!(rec.instances["b"].attempts, 0);
}

#[test]
fn a_step_looks_only_at_what_it_changed() {
    // 20 instances of c1 wait for the one slot.
    let mut b = Bench::with(1, |cfg| cfg.evacuation.concurrency = 1);
    let many: Vec<Instance> = (0..21)
        .map(|i| instance(&format!("i{i:02}"), "c1"))
        .collect();
    assert_eq!(b.fence_and_list("c1", many), ["evacuate i00 from c1"]);
    // The running one's answer (taken in by its own handler): c1 driven once, no turn for the 20 that wait.
    b.engine.visits = (0, 0);
    assert!(b.sent("c1", "i00", Ok(())).is_empty());
    assert_eq!(b.engine.visits, (1, 0), "(hosts driven, instance turns)");
    // An observation drives the one host in recovery (seen again), not the healthy ones, and turns none
    // of the waiting instances.
    b.engine.visits = (0, 0);
    b.observe(&[]);
    assert_eq!(b.engine.visits, (1, 0), "(hosts driven, instance turns)");
    // With the brake on, a tick turns nothing that waits.
    b.step(pause("maintenance"));
    b.engine.visits = (0, 0);
    b.advance(1);
    b.step(Input::Tick);
    assert_eq!(b.engine.visits.1, 0, "{:?}", b.engine.visits);
}

#[test]
fn a_step_drives_only_the_hosts_whose_work_is_due() {
    let mut b = Bench::with(1, |cfg| cfg.evacuation.concurrency = 1);
    // c1 evacuates three instances through the one slot: i0 holds it, i1 and i2 wait for it.
    let three: Vec<Instance> = (0..3).map(|i| instance(&format!("i{i}"), "c1")).collect();
    assert_eq!(b.fence_and_list("c1", three), ["evacuate i0 from c1"]);
    assert!(b.sent("c1", "i0", Ok(())).is_empty());
    // c2 is fenced meanwhile (i0's progress is read as its strikes are counted), and its isolation fails
    // on an unreachable Nova: retried in 30 s, a host-level deadline ahead.
    b.down_for_strikes(&["c1", "c2"]);
    b.in_progress("c1", "i0", "rebuilding");
    b.powered_off("c2", 0, Ok(()));
    assert_eq!(b.power_read("c2", 0, PowerState::Off), ["isolate c2"]);
    assert!(
        b.isolated_with("c2", Err(fail(ErrorKind::Unreachable)))
            .is_empty()
    );
    assert_eq!(b.stage("c1"), Stage::Evacuating);
    assert_eq!(b.instance_at("c1", "i1"), "pending");
    // A tick before any of it falls due drives no host: not c2 (its retry is ahead), not c1 (its one
    // slot is taken).
    b.engine.visits = (0, 0);
    b.advance(1);
    assert!(b.step(Input::Tick).is_empty());
    assert_eq!(b.engine.visits, (0, 0), "(hosts driven, instance turns)");
    // A first strike on c3 changes c3, which is not under way, and nothing else: no host is driven.
    b.engine.visits = (0, 0);
    let cmds = b.observe(&["c1", "c2", "c3"]);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(b.engine.visits, (0, 0), "(hosts driven, instance turns)");
    // Long past c2's retry: it is driven (a deadline that passed before the tick, not at it).
    b.advance(60);
    b.engine.visits = (0, 0);
    let cmds = b.step(Input::Tick);
    assert!(cmds.contains(&"isolate c2".to_owned()), "{cmds:?}");
    // And c1, for i0's read, the one instance turned (the two waiting ones still have no slot).
    assert!(cmds.contains(&"progress i0 on c1".to_owned()), "{cmds:?}");
    assert_eq!(b.engine.visits, (2, 1), "(hosts driven, instance turns)");
}
