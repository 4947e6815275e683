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
    let rec = b.engine.host(&"c2".into()).unwrap();
    assert_eq!(
        b.engine.next_wakeup(),
        Some(rec.since.after(b.engine.config().restore_timeout)),
        "only the stage's own deadline, in the future"
    );
}

// ----- a fence proof is only as old as the last sign of life ---------------------------------------------

fn recover(host: &str) -> Input {
    Input::Operator(OperatorRequest::Recover {
        host: host.into(),
        despite_storm: false,
    })
}

#[test]
fn recover_after_the_host_was_seen_alive_reads_its_power_and_fences_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    // Repaired: up for the strike count, restore fails for good.
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    let cmds = b.step(Input::Restored {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    assert_eq!(cmds, ["notify needs_operator c1"]);
    // Seen alive (it heartbeats) while still carrying our isolation: the old proof is void, and it stays
    // for an operator.
    assert_eq!(b.engine.host(&"c1".into()).unwrap().fence, None);
    b.advance(10);
    let obs = b
        .hosts
        .iter()
        .map(|h| {
            let mut hh = HostHealth::new(*h, Health::Up);
            if *h == "c1" {
                hh.admin = AdminState {
                    disabled: true,
                    disabled_reason: Some(crate::isolation_marker("j1", "c1@1", Timestamp(1))),
                    forced_down: false,
                };
            }
            hh
        })
        .collect();
    assert!(b.step(Input::Observed(Ok(obs))).is_empty());
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    // Its new instances are on it now. `recover` reads the power first, and fences again as it reads on.
    assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
}

#[test]
fn recover_with_a_proof_from_before_still_reads_the_power_first() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.step(Input::Isolated {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    // Someone powered it back on meanwhile: no isolation, no evacuation on the old proof.
    assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
    // Still off: no second power-off, on to isolation with a fresh proof.
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    let first = b.engine.host(&"c1".into()).unwrap().fence.clone().unwrap();
    b.step(Input::Isolated {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    b.advance(60);
    assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
    let fresh = b.engine.host(&"c1".into()).unwrap().fence.clone().unwrap();
    assert!(fresh.at > first.at, "{fresh:?} vs {first:?}");
}

#[test]
fn a_host_seen_alive_mid_evacuation_stops_being_evacuated_until_its_power_is_read() {
    let mut b = Bench::default();
    let cmds = b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    assert_eq!(cmds, ["evacuate a from c1", "evacuate b from c1"]);
    let rec = b.engine.host(&"c1".into()).unwrap();
    let first_marker = rec.fenced(&b.engine.journal_id).unwrap().marker();
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    b.done("c1", "a", "c2");
    // The host heartbeats again (someone powered it on) while `b` is still in flight.
    let cmds = b.observe(&[]);
    assert_eq!(
        cmds,
        ["notify needs_operator c1", "power_status c1 #0"],
        "{cmds:?}"
    );
    assert_eq!(b.engine.host(&"c1".into()).unwrap().fence, None);
    // The in-flight answer is not acted on; nothing is evacuated while the power is unknown.
    assert!(b.sent("c1", "b", Ok(())).is_empty());
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    let cmds = b.raw(Input::PowerRead {
        host: "c1".into(),
        level: 0,
        result: Ok(PowerState::Off),
    });
    let Command::Isolate { fenced } = &cmds[0] else {
        panic!("{cmds:?}")
    };
    // The marker written under the first proof is this recovery's own: isolating again writes nothing
    // (our own writes must not look like heartbeats).
    assert!(
        fenced.marks(&first_marker),
        "{first_marker} vs {}",
        fenced.marker()
    );
    assert!(!fenced.marks("freezer-dr:fenced:jother:c1@1:1970-01-01T00:00:00Z"));
    assert_eq!(b.isolated("c1"), ["list c1"]);
    // Listing again keeps what is known: `a` stays done, `b` (requested) is read, not sent again.
    let cmds = b.listed("c1", vec![instance("b", "c1")]);
    assert_eq!(cmds, ["progress b on c1"], "{cmds:?}");
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Done { .. }
    ));
}

// ----- recover during a storm ----------------------------------------------------------------------------

#[test]
fn recover_during_a_storm_needs_despite_storm_and_tells_the_operators() {
    let mut b = Bench::default();
    assert_eq!(
        b.down_for_strikes(&["c1", "c2", "c3"]),
        ["notify storm"],
        "three of six down with a budget of two"
    );
    let cmds = b.step(recover("c4"));
    assert_eq!(cmds, ["notify needs_operator c4"], "refused, and said so");
    assert_eq!(b.stage("c4"), Stage::Healthy);
    let cmds = b.raw(Input::Operator(OperatorRequest::Recover {
        host: "c4".into(),
        despite_storm: true,
    }));
    let rendered: Vec<String> = cmds.iter().map(render).collect();
    assert_eq!(rendered, ["notify storm c4", "power_off c4 #0"]);
    assert!(
        notified(&cmds)[0].summary.contains("despite"),
        "{:?}",
        notified(&cmds)[0]
    );
}

#[test]
fn a_recover_request_written_by_the_previous_release_still_loads() {
    let old = r#"{"request":"recover","host":"c1"}"#;
    let req: OperatorRequest = serde_json::from_str(old).unwrap();
    assert_eq!(
        req,
        OperatorRequest::Recover {
            host: "c1".into(),
            despite_storm: false
        }
    );
}

// ----- hosts the monitors no longer list -----------------------------------------------------------------

#[test]
fn a_suspect_absent_from_an_observation_loses_its_strikes_and_is_never_fenced() {
    let mut cfg = config();
    cfg.storm.max_hosts = 3;
    let mut b = Bench::new(cfg, 1);
    // Two hosts reach the strike count together; the per-cycle cap fences one, the other waits.
    assert_eq!(b.down_for_strikes(&["c1", "c2"]), ["power_off c1 #0"]);
    assert!(matches!(b.stage("c2"), Stage::Suspect { strikes: 3, .. }));
    // Nova no longer lists c2 (decommissioned): it is never fenced.
    b.hosts.retain(|h| *h != "c2");
    let cmds = b.observe(&["c1"]);
    assert!(cmds.is_empty(), "{cmds:?}");
    assert_eq!(b.stage("c2"), Stage::Healthy);
    b.advance(10);
    assert!(b.observe(&["c1"]).is_empty());
}

#[test]
fn a_host_in_recovery_that_vanishes_is_reported_then_forgotten_and_stops_counting() {
    let mut cfg = config();
    cfg.forget_after = Duration::from_secs(600);
    let mut b = Bench::new(cfg, 1);
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.stage("c1"), Stage::Evacuated);
    b.hosts.retain(|h| *h != "c1");
    // Reported once when it vanishes.
    assert_eq!(b.observe(&[]), ["notify needs_operator c1"]);
    b.advance(300);
    assert!(b.observe(&[]).is_empty());
    b.advance(300);
    let cmds = b.raw(Input::Observed(Ok(b
        .hosts
        .iter()
        .map(|h| HostHealth::new(*h, Health::Up))
        .collect())));
    let rendered: Vec<String> = cmds.iter().map(render).collect();
    assert_eq!(rendered, ["notify needs_operator c1"]);
    assert!(
        notified(&cmds)[0].summary.contains("forgotten"),
        "{:?}",
        notified(&cmds)[0]
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    // It no longer counts: two more hosts down fit the budget of two.
    b.advance(10);
    let cmds = b.down_for_strikes(&["c2", "c3"]);
    assert_eq!(cmds, ["power_off c2 #0"], "{cmds:?}");
}

#[test]
fn an_operator_can_forget_a_vanished_host_but_not_one_being_recovered() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    assert!(matches!(b.stage("c1"), Stage::Fencing { .. }));
    let forget = |h: &str| Input::Operator(OperatorRequest::Forget { host: h.into() });
    assert!(
        b.step(forget("c1")).is_empty(),
        "refused: listed and being fenced"
    );
    assert!(matches!(b.stage("c1"), Stage::Fencing { .. }));
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    b.powered_off("c1", 1, Err(fail(ErrorKind::Auth)));
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    assert_eq!(b.step(forget("c1")), ["notify needs_operator c1"]);
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

// ----- every recovery stage ends -------------------------------------------------------------------------

#[test]
fn a_restore_that_never_succeeds_is_handed_to_the_operators_after_its_timeout() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    let mut all = Vec::new();
    for _ in 0..70 {
        all.extend(b.step(Input::Restored {
            host: "c1".into(),
            result: Err(fail(ErrorKind::Conflict)),
        }));
        b.advance(30);
        all.extend(b.step(Input::Tick));
        if matches!(b.stage("c1"), Stage::NeedsOperator { .. }) {
            break;
        }
    }
    let Stage::NeedsOperator { why } = b.stage("c1") else {
        panic!("{:?}", b.stage("c1"))
    };
    assert!(why.contains("30m"), "{why}");
    assert!(all.iter().filter(|c| c.starts_with("restore")).count() >= 50);
}

#[test]
fn a_host_that_dies_again_while_restoring_is_fenced_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    b.done("c1", "a", "c2");
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    b.step(Input::Restored {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Conflict)),
    });
    // It dies again (after forced_down was unset, before it was enabled).
    b.advance(10);
    b.observe(&["c1"]);
    b.advance(10);
    b.observe(&["c1"]);
    b.advance(10);
    b.engine.take_changes();
    let cmds = b.observe(&["c1"]);
    assert_eq!(cmds, ["power_off c1 #0"], "{cmds:?}");
    // A new recovery: the old one's instance records go (from the journal too).
    assert!(b.engine.host(&"c1".into()).unwrap().instances.is_empty());
    assert_eq!(
        b.engine.take_changes().clear_instances,
        [HostId::from("c1")]
    );
}

#[test]
fn one_down_observation_between_up_ones_while_restoring_is_no_new_failure() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    b.step(Input::Restored {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Conflict)),
    });
    // Down, down, up, down, down: never three downs in a row.
    for down in [true, true, false, true, true] {
        b.advance(10);
        let cmds = b.observe(if down { &["c1"] } else { &[] });
        assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    }
    assert_eq!(b.stage("c1"), Stage::Restoring);
}

#[test]
fn recover_that_would_go_past_the_budget_needs_despite_storm() {
    let mut b = Bench::default();
    // Two hosts in recovery fill the budget of two (no storm episode: they failed one at a time).
    b.fence_and_list("c1", vec![]);
    b.dead.push("c1");
    b.fence_and_list("c2", vec![]);
    b.dead.push("c2");
    assert_eq!(b.engine.meta().storm_since, None);
    assert_eq!(b.step(recover("c3")), ["notify needs_operator c3"]);
    assert_eq!(b.stage("c3"), Stage::Healthy);
}

// ----- shutdown ------------------------------------------------------------------------------------------

#[test]
fn a_result_taken_in_while_draining_starts_nothing_and_counts_no_attempt() {
    let mut cfg = config();
    cfg.evacuation.concurrency = 1;
    cfg.evacuation.attempts = 1;
    let mut b = Bench::new(cfg, 1);
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    b.engine.drain();
    // `a` is done: the slot frees, but nothing is sent while shutting down, and `b` keeps its attempt.
    assert!(b.done("c1", "a", "c2").is_empty());
    assert!(matches!(
        b.instance_state("c1", "b"),
        InstanceState::Pending { .. }
    ));
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert_eq!(rec.instances["b"].attempts, 0);
}

// ----- one actor per host --------------------------------------------------------------------------------

#[test]
fn the_marker_names_this_journal_and_keeps_the_observed_admin_state() {
    let mut b = Bench::default();
    b.engine.journal_id = "j00ff".into();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    let cmds = b.raw(Input::PowerRead {
        host: "c1".into(),
        level: 0,
        result: Ok(PowerState::Off),
    });
    let Command::Isolate { fenced } = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!(crate::marker_journal(&fenced.marker()), Some("j00ff"));
    assert_eq!(fenced.journal(), "j00ff");
    assert!(fenced.marker().contains("c1@"), "{}", fenced.marker());
    assert!(!fenced.observed().disabled);
    // An operator recovers a host they had disabled themselves: the proof carries that disable, so the
    // evacuator can tell it from one made by someone else since.
    let mut obs: Vec<HostHealth> = b
        .hosts
        .iter()
        .map(|h| HostHealth::new(*h, Health::Up))
        .collect();
    obs[1].health = Health::down("state=down");
    obs[1].admin = AdminState {
        disabled: true,
        disabled_reason: Some("maintenance, ticket 7".into()),
        forced_down: false,
    };
    b.step(Input::Observed(Ok(obs)));
    assert_eq!(b.step(recover("c2")), ["power_off c2 #0"]);
    b.powered_off("c2", 0, Ok(()));
    let cmds = b.raw(Input::PowerRead {
        host: "c2".into(),
        level: 0,
        result: Ok(PowerState::Off),
    });
    let Command::Isolate { fenced } = &cmds[0] else {
        panic!("{cmds:?}")
    };
    assert!(fenced.observed().disabled);
}

#[test]
fn a_host_that_reports_up_while_restoring_is_never_fenced_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    for _ in 0..5 {
        b.step(Input::Restored {
            host: "c1".into(),
            result: Err(fail(ErrorKind::Conflict)),
        });
        b.advance(10);
        let cmds = b.observe(&[]);
        assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    }
    assert_eq!(b.stage("c1"), Stage::Restoring);
}

#[test]
fn another_actor_at_isolation_stops_the_recovery_and_tells_the_operators() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    let cmds = b.raw(Input::Isolated {
        host: "c1".into(),
        result: Err(Failure::new(
            ErrorKind::OtherActor,
            "another freezer-dr (journal j42) isolated c1",
        )),
    });
    let rendered: Vec<String> = cmds.iter().map(render).collect();
    assert_eq!(
        rendered,
        ["notify needs_operator c1"],
        "no listing, no evacuation"
    );
    let r = notified(&cmds)[0];
    assert!(
        r.summary.contains("j42") && r.summary.contains("[ha]"),
        "{}",
        r.summary
    );
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    // It still counts against the storm budget: two more hosts down is over a budget of two.
    b.dead.push("c1");
    b.advance(10);
    assert_eq!(b.down_for_strikes(&["c2", "c3"]), ["notify storm"]);
}

#[test]
fn an_instance_someone_else_evacuates_is_followed_not_requested_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    let other = Failure::new(
        ErrorKind::OtherActor,
        "an evacuation of a from c1 is under way (migration 7), not requested by this freezer-dr",
    );
    assert!(b.sent("c1", "a", Err(other)).is_empty());
    let rec = &b.engine.host(&"c1".into()).unwrap().instances["a"];
    assert!(rec.by_other && rec.attempts == 1, "{rec:?}");
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    let cmds = b.raw(Input::ProgressRead {
        host: "c1".into(),
        instance: "a".into(),
        result: Ok(Progress::Done {
            host: "c3".into(),
            status: "ACTIVE".into(),
        }),
    });
    let r = notified(&cmds)[0];
    assert!(
        r.details.iter().any(|d| d.contains("another actor")),
        "{:?}",
        r.details
    );
    assert!(matches!(&r.instances[0].outcome, Outcome::Evacuated { .. }));
}

#[test]
fn stopped_on_the_failed_host_itself_is_not_started_but_asked_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    assert!(b.progress("c1", "a", needs_start("c1")).is_empty());
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Pending { .. }
    ));
}

#[test]
fn a_temporary_start_failure_is_tried_again_after_the_poll_interval() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    assert_eq!(
        b.progress("c1", "a", needs_start("c2")),
        ["start a from c1"]
    );
    // A stray progress answer while the start is in flight changes nothing.
    assert!(b.done("c1", "a", "c2").is_empty());
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Starting { .. }
    ));
    assert!(
        b.step(Input::Started {
            host: "c1".into(),
            instance: "a".into(),
            result: Err(fail(ErrorKind::PeerFailure)),
        })
        .is_empty()
    );
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Starting { .. }
    ));
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["start a from c1"]);
}

#[test]
fn recover_without_any_fencer_needs_an_operator_even_from_needs_operator() {
    let mut b = Bench::new(config(), 0);
    assert_eq!(b.down_for_strikes(&["c1"]), ["notify needs_operator c1"]);
    assert_eq!(b.step(recover("c1")), ["notify needs_operator c1"]);
    let Stage::NeedsOperator { why } = b.stage("c1") else {
        panic!()
    };
    assert!(why.contains("no fencer"), "{why}");
}

#[test]
fn an_unknown_observation_while_restoring_neither_counts_down_nor_clears() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    b.step(Input::Restored {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Conflict)),
    });
    b.advance(10);
    b.observe(&["c1"]);
    b.advance(10);
    b.observe(&["c1"]);
    b.advance(10);
    let obs = b
        .hosts
        .iter()
        .map(|h| {
            let health = if *h == "c1" {
                Health::Unknown {
                    reason: "its cell does not answer".into(),
                }
            } else {
                Health::Up
            };
            HostHealth::new(*h, health)
        })
        .collect();
    let cmds = b.step(Input::Observed(Ok(obs)));
    assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    // The retried restore (due meanwhile) fails again.
    b.step(Input::Restored {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Conflict)),
    });
    b.advance(10);
    assert_eq!(
        b.observe(&["c1"]),
        ["power_off c1 #0"],
        "the third down in a row"
    );
}

#[test]
fn another_actor_seen_at_listing_stops_before_any_evacuation() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.isolated("c1");
    let cmds = b.step(Input::Listed {
        host: "c1".into(),
        result: Err(Failure::new(
            ErrorKind::OtherActor,
            "journal j42 isolated it right after",
        )),
    });
    assert_eq!(cmds, ["notify needs_operator c1"]);
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn the_listing_waits_for_the_isolation_to_settle_and_a_restart_keeps_the_wait() {
    // Two daemons without [ha] that both read the service record before either wrote: the pause lets the
    // first writer's listing see the second one's marker (seen on the lab: the two writes were 50 ms
    // apart, and without a pause both daemons evacuated every server).
    let mut cfg = config();
    cfg.isolation_settle = Duration::from_secs(2);
    let mut b = Bench::new(cfg, 2);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    let isolated_at = b.now;
    assert!(b.isolated("c1").is_empty(), "no listing before the pause");
    assert_eq!(
        b.engine.next_wakeup(),
        Some(isolated_at.after(Duration::from_secs(2)))
    );
    b.advance(1);
    assert!(b.step(Input::Tick).is_empty(), "still within the pause");
    restart(&mut b);
    assert!(b.step(Input::Tick).is_empty(), "a restart keeps the pause");
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["list c1"]);
    let listed = b.listed("c1", vec![instance("a", "c1")]);
    assert!(
        listed.contains(&"evacuate a from c1".to_owned()),
        "{listed:?}"
    );
}
