//! Engine scenarios for the edge paths of the safety review (issue 11): each test is named after the
//! behaviour it guards and failed on the engine before its fix.

use super::*;

fn busy(detail: &str) -> Progress {
    Progress::Busy {
        detail: detail.into(),
    }
}

// ----- a busy instance is asked again, not tracked as our evacuation ------------------------------------

#[test]
fn a_conflict_on_evacuate_is_asked_again_after_the_delay_and_the_report_says_why() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    let conflict = Failure::new(
        ErrorKind::Conflict,
        "Cannot 'evacuate' instance a while it is in task_state powering-off",
    );
    // A 409 is a definite "not done": no progress read that would take a foreign task for ours.
    assert!(b.sent("c1", "a", Err(conflict.clone())).is_empty());
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Pending { .. }
    ));
    b.advance(4);
    assert!(b.step(Input::Tick).is_empty(), "waits the retry delay");
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["evacuate a from c1"]);
    let cmds = b.raw(Input::EvacuateSent {
        host: "c1".into(),
        instance: "a".into(),
        result: Err(conflict),
    });
    let report = notified(&cmds)[0];
    let Outcome::Failed { reason } = &report.instances[0].outcome else {
        panic!("{report:?}")
    };
    assert!(
        reason.contains("busy") && reason.contains("powering-off") && reason.contains("2 attempt"),
        "{reason}"
    );
}

#[test]
fn an_instance_busy_with_a_foreign_task_frees_its_slot_and_is_asked_again() {
    let mut cfg = config();
    cfg.evacuation.concurrency = 1;
    let mut b = Bench::new(cfg, 1);
    assert_eq!(
        b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]),
        ["evacuate a from c1"]
    );
    // Ambiguous answer: read the progress; it says the instance is busy with something that is not ours.
    assert_eq!(
        b.sent("c1", "a", Err(fail(ErrorKind::Timeout))),
        ["progress a on c1"]
    );
    assert_eq!(
        b.progress("c1", "a", busy("task_state spawning, status BUILD")),
        ["evacuate b from c1"],
        "the slot goes to the next instance at once"
    );
    let InstanceState::Pending { not_before } = b.instance_state("c1", "a") else {
        panic!("{:?}", b.instance_state("c1", "a"))
    };
    assert_eq!(not_before, b.now.after(Duration::from_secs(5)));
    assert!(b.engine.history.iter().any(|e| e.what.contains("spawning")));
}

// ----- a start after an evacuation is a command of the engine --------------------------------------------

fn needs_start(to: &str) -> Progress {
    Progress::NeedsStart {
        host: to.into(),
        status: "SHUTOFF".into(),
    }
}

#[test]
fn an_instance_left_stopped_is_started_by_a_journaled_command() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    let cmds = b.raw(Input::ProgressRead {
        host: "c1".into(),
        instance: "a".into(),
        result: Ok(needs_start("c2")),
    });
    assert_eq!(
        cmds.iter().map(render).collect::<Vec<_>>(),
        ["start a from c1"]
    );
    assert!(
        cmds[0].is_destructive(),
        "a start is a write: token-checked"
    );
    // Write-ahead: the journal learns it is being started before the command leaves.
    let changes = b.engine.take_changes();
    assert!(matches!(
        changes.instances[0].1.state,
        InstanceState::Starting { .. }
    ));
    assert!(
        b.step(Input::Started {
            host: "c1".into(),
            instance: "a".into(),
            result: Ok(()),
        })
        .is_empty()
    );
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    assert_eq!(b.done("c1", "a", "c2"), ["notify recovered c1"]);
}

#[test]
fn a_start_waits_for_the_brake_and_is_sent_again_after_a_restart() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "maintenance".into(),
    }));
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"], "reads go on");
    assert!(
        b.progress("c1", "a", needs_start("c2")).is_empty(),
        "no write under the brake"
    );
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(298))),
        "under the brake only the evacuation timeout (from the accepted request) is due"
    );
    b.step(Input::Operator(OperatorRequest::Resume));
    restart(&mut b);
    assert_eq!(b.step(Input::Tick), ["start a from c1"]);
    // A permanent refusal leaves it stopped on its new host, and says so.
    let cmds = b.raw(Input::Started {
        host: "c1".into(),
        instance: "a".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    let report = notified(&cmds)[0];
    assert!(matches!(
        &report.instances[0].outcome,
        Outcome::Evacuated { status, .. } if status == "SHUTOFF"
    ));
}

// ----- waiting costs no CPU -------------------------------------------------------------------------------

#[test]
fn instances_waiting_for_a_slot_do_not_wake_the_loop() {
    let mut cfg = config();
    cfg.evacuation.concurrency = 1;
    let mut b = Bench::new(cfg, 1);
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
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "maintenance".into(),
    }));
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
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "maintenance".into(),
    }));
    b.step(Input::Restored {
        host: "c2".into(),
        result: Err(fail(ErrorKind::Unreachable)),
    });
    b.advance(60);
    assert!(b.step(Input::Tick).is_empty());
    assert_eq!(b.engine.next_wakeup(), None);
}
