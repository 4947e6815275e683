//! Isolation and evacuation: a temporary isolation failure, the listing and the instance policy, the
//! retry budget, the global concurrency, the timeout, busy instances, and instances left stopped that the
//! engine starts.

use super::*;

#[test]
fn a_temporary_isolation_failure_is_retried_after_the_step_delay() {
    let mut b = Bench::default();
    b.confirmed_off("c1");
    assert!(
        b.step(Input::Isolated {
            host: "c1".into(),
            result: Err(fail(ErrorKind::Unreachable))
        })
        .is_empty()
    );
    b.advance(29);
    assert!(b.step(Input::Tick).is_empty());
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(1)))
    );
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["isolate c1"]);
    assert_eq!(b.isolated("c1"), ["list c1"]);
    assert_eq!(
        b.step(Input::Listed {
            host: "c1".into(),
            result: Err(fail(ErrorKind::Auth))
        }),
        ["notify needs_operator c1"]
    );
}

// ----- the listing and the policy ------------------------------------------------------------------------

#[test]
fn only_instances_on_exactly_that_host_are_evacuated() {
    let mut b = Bench::default();
    let cmds = b.fence_and_list(
        "c1",
        vec![
            instance("a", "c1"),
            instance("x", "c10"),
            instance("y", "C1"),
        ],
    );
    assert_eq!(cmds, ["evacuate a from c1"]);
    assert_eq!(b.engine.host(&"c1".into()).unwrap().instances.len(), 1);
}

#[test]
fn the_policy_skips_opted_out_paused_and_local_disk_instances() {
    let mut b = Bench::with(1, |cfg| cfg.policy.local_root_disk = LocalRootDisk::Skip);
    let out = opted("out", "False");
    let mut paused = instance("paused", "c1");
    paused.status = "PAUSED".into();
    let mut local = instance("local", "c1");
    local.volume_backed = false;
    let keep = opted("keep", "yes");
    let cmds = b.fence_and_list("c1", vec![out, paused, local, keep, instance("vol", "c1")]);
    assert_eq!(cmds, ["evacuate keep from c1", "evacuate vol from c1"]);
    for (id, needle) in [
        ("out", "opted out"),
        ("paused", "PAUSED"),
        ("local", "local"),
    ] {
        let InstanceState::Skipped { reason } = b.instance_state("c1", id) else {
            panic!("{id}")
        };
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn opt_in_mode_evacuates_only_opted_in_instances() {
    let mut b = Bench::with(1, |cfg| cfg.policy.mode = PolicyMode::OptIn);
    let listed = vec![
        opted("yes", "true"),
        opted("no", "maybe"),
        instance("none", "c1"),
    ];
    let cmds = b.fence_and_list("c1", listed);
    assert_eq!(cmds, ["evacuate yes from c1"]);
}

#[test]
fn a_host_with_no_instances_is_reported_to_operators_only() {
    let mut b = Bench::default();
    let cmds = b.fence_and_list("c1", vec![]);
    assert_eq!(cmds, ["notify recovered c1"]);
}

#[test]
fn the_started_report_lists_each_instance_and_what_the_policy_decided() {
    let mut b = Bench::with(1, |cfg| cfg.policy.local_root_disk = LocalRootDisk::Skip);
    b.confirmed_off("c1");
    b.isolated("c1");
    let mut local = instance("local", "c1");
    local.volume_backed = false;
    let cmds = b.raw(Input::Listed {
        host: "c1".into(),
        result: Ok(vec![instance("vol", "c1"), local]),
    });
    let r = notified(&cmds)[0];
    assert_eq!(r.kind, ReportKind::HostFenced);
    assert_eq!(r.audience, Audience::OperatorsAndUsers);
    assert!(
        r.summary.contains("fencer[0]") && r.summary.contains("1 instance(s) are being evacuated"),
        "{}",
        r.summary
    );
    let by_id = |id: &str| {
        r.instances
            .iter()
            .find(|o| o.instance.id == id)
            .unwrap()
            .outcome
            .clone()
    };
    assert_eq!(by_id("vol"), Outcome::Evacuating);
    assert!(matches!(by_id("local"), Outcome::Skipped { .. }));
}

// ----- each instance to its end --------------------------------------------------------------------------

#[test]
fn an_instance_that_fails_then_succeeds_within_budget_is_evacuated() {
    let mut b = Bench::default();
    assert_eq!(
        b.fence_and_list("c1", vec![instance("a", "c1")]),
        ["evacuate a from c1"]
    );
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    assert!(
        b.progress(
            "c1",
            "a",
            Progress::Failed {
                reason: "no valid host".into()
            }
        )
        .is_empty()
    );
    b.advance(4);
    assert!(b.step(Input::Tick).is_empty(), "waits the retry delay");
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["evacuate a from c1"]);
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    assert_eq!(b.done("c1", "a", "c2"), ["notify recovered c1"]);
    assert_eq!(
        b.instance_state("c1", "a"),
        InstanceState::Done {
            host: "c2".into(),
            status: "ACTIVE".into()
        }
    );
}

#[test]
fn an_instance_out_of_budget_is_reported_failed() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "b", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    b.done("c1", "b", "c2");
    let mut all = Vec::new();
    for _ in 0..2 {
        assert!(b.sent("c1", "a", Ok(())).is_empty());
        b.advance(2);
        assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
        all = b.raw(Input::ProgressRead {
            host: "c1".into(),
            instance: "a".into(),
            result: Ok(Progress::Failed {
                reason: "ERROR: no valid host".into(),
            }),
        });
        b.advance(5);
        b.step(Input::Tick);
    }
    let rendered: Vec<String> = all.iter().map(render).collect();
    assert_eq!(rendered, ["notify recovered c1"]);
    let report = notified(&all)[0];
    let a = report
        .instances
        .iter()
        .find(|o| o.instance.id == "a")
        .unwrap();
    assert_eq!(a.attempts, 2);
    let Outcome::Failed { reason } = &a.outcome else {
        panic!("{a:?}")
    };
    assert!(
        reason.contains("no valid host") && reason.contains("2 attempt"),
        "{reason}"
    );
    assert!(report.summary.contains("1 of 2"), "{}", report.summary);
}

#[test]
fn a_refused_evacuation_uses_the_budget_and_an_ambiguous_one_is_checked_first() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    // Timeout: the request may have reached Nova. Read progress, never send again on a guess.
    assert_eq!(
        b.sent("c1", "a", Err(fail(ErrorKind::Timeout))),
        ["progress a on c1"]
    );
    assert!(b.in_progress("c1", "a", "rebuilding").is_empty());
    assert_eq!(b.instance_at("c1", "a"), "rebuilding");
    // Permanent refusal on a second instance counts as an attempt.
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    assert!(
        b.sent("c1", "a", Err(fail(ErrorKind::Conflict).clone_permanent()))
            .is_empty()
    );
    b.advance(5);
    assert_eq!(b.step(Input::Tick), ["evacuate a from c1"]);
    assert_eq!(
        b.sent("c1", "a", Err(fail(ErrorKind::NotFound))),
        ["notify recovered c1"]
    );
}

#[test]
fn an_instance_that_never_finishes_times_out_and_is_not_sent_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    let mut all = Vec::new();
    for _ in 0..200 {
        b.advance(2);
        for c in b.step(Input::Tick) {
            if c.starts_with("progress") {
                all.extend(b.in_progress("c1", "a", "rebuilding"));
            } else {
                all.push(c);
            }
        }
    }
    assert_eq!(all, ["notify recovered c1"]);
    let InstanceState::Failed { reason } = b.instance_state("c1", "a") else {
        panic!()
    };
    assert!(
        reason.contains("5m") && reason.contains("rebuilding"),
        "{reason}"
    );
}

#[test]
fn evacuations_respect_the_global_concurrency() {
    let mut b = Bench::with(1, |cfg| cfg.evacuation.concurrency = 2);
    let list = ["a", "b", "c", "d"]
        .iter()
        .map(|i| instance(i, "c1"))
        .collect();
    assert_eq!(
        b.fence_and_list("c1", list),
        ["evacuate a from c1", "evacuate b from c1"]
    );
    b.sent("c1", "a", Ok(()));
    b.sent("c1", "b", Ok(()));
    b.advance(2);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1", "progress b on c1"]
    );
    assert_eq!(b.done("c1", "a", "c2"), ["evacuate c from c1"]);
    assert!(b.in_progress("c1", "b", "spawning").is_empty());
}

#[test]
fn an_instance_deleted_meanwhile_is_gone_not_failed() {
    let mut b = Bench::default();
    b.rebuilding("c1", "a");
    assert_eq!(
        b.progress("c1", "a", Progress::Gone),
        ["notify recovered c1"]
    );
    assert_eq!(b.instance_state("c1", "a"), InstanceState::Gone);
}

#[test]
fn done_on_the_failed_host_itself_is_not_success() {
    let mut b = Bench::default();
    b.rebuilding("c1", "a");
    assert!(b.done("c1", "a", "c1").is_empty());
    assert_eq!(b.instance_at("c1", "a"), "pending");
}

#[test]
fn duplicate_instance_results_are_ignored() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    // A second answer to the same request (not in flight any more) changes nothing.
    assert!(b.sent("c1", "a", Err(fail(ErrorKind::NotFound))).is_empty());
    assert_eq!(b.instance_at("c1", "a"), "rebuilding");
    assert!(
        b.done("c1", "a", "c2").is_empty(),
        "no progress read was in flight"
    );
    assert_eq!(b.instance_at("c1", "a"), "rebuilding");
}

// ----- a busy instance is asked again, not tracked as our evacuation -------------------------------------

fn busy(detail: &str) -> Progress {
    Progress::Busy {
        detail: detail.into(),
    }
}

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
    assert_eq!(b.instance_at("c1", "a"), "pending");
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
    let mut b = Bench::with(1, |cfg| cfg.evacuation.concurrency = 1);
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
    b.step(pause("maintenance"));
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
    b.step(resume());
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

#[test]
fn stopped_on_the_failed_host_itself_is_not_started_but_asked_again() {
    let mut b = Bench::default();
    b.rebuilding("c1", "a");
    assert!(b.progress("c1", "a", needs_start("c1")).is_empty());
    assert_eq!(b.instance_at("c1", "a"), "pending");
}

#[test]
fn a_temporary_start_failure_is_tried_again_after_the_poll_interval() {
    let mut b = Bench::default();
    b.rebuilding("c1", "a");
    assert_eq!(
        b.progress("c1", "a", needs_start("c2")),
        ["start a from c1"]
    );
    // A stray progress answer while the start is in flight changes nothing.
    assert!(b.done("c1", "a", "c2").is_empty());
    assert_eq!(b.instance_at("c1", "a"), "starting");
    assert!(
        b.step(Input::Started {
            host: "c1".into(),
            instance: "a".into(),
            result: Err(fail(ErrorKind::PeerFailure)),
        })
        .is_empty()
    );
    assert_eq!(b.instance_at("c1", "a"), "starting");
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["start a from c1"]);
}

#[test]
fn a_start_that_never_succeeds_fails_at_the_evacuation_timeout() {
    let mut b = Bench::default();
    b.rebuilding("c1", "a");
    assert_eq!(
        b.progress("c1", "a", needs_start("c2")),
        ["start a from c1"]
    );
    assert!(
        b.step(Input::Started {
            host: "c1".into(),
            instance: "a".into(),
            result: Err(fail(ErrorKind::PeerFailure)),
        })
        .is_empty()
    );
    // Past the timeout (300 s from the request) with a start due again: it fails instead, and is told.
    b.advance(400);
    assert_eq!(b.step(Input::Tick), ["notify recovered c1"]);
    let InstanceState::Failed { reason } = b.instance_state("c1", "a") else {
        panic!("{:?}", b.instance_state("c1", "a"))
    };
    assert!(reason.contains("could not be started"), "{reason}");
}
