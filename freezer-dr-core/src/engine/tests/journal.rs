//! The journal and a restart: every intent is recorded before its command leaves, a restart re-reads
//! reality instead of repeating a call, only what changed is written; the history and the accessors.

use super::*;

#[test]
fn the_power_off_intent_is_recorded_before_the_command_leaves() {
    let mut b = Bench::default();
    b.down_short_of_strikes("c1");
    b.engine.take_changes();
    b.advance(10);
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
    let changes = b.engine.take_changes();
    let c1 = changes
        .hosts
        .iter()
        .find(|h| h.host == "c1".into())
        .unwrap();
    assert_eq!(
        c1.stage,
        Stage::Fencing {
            level: 0,
            attempted: true
        }
    );
    assert!(c1.instances.is_empty(), "instances travel separately");
}

#[test]
fn the_evacuation_intent_is_recorded_before_the_command_leaves() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    let changes = b.engine.take_changes();
    let (_, a) = changes
        .instances
        .iter()
        .find(|(_, i)| i.instance.id == "a")
        .unwrap();
    assert!(matches!(a.state, InstanceState::Requested { .. }));
    assert_eq!(a.attempts, 1);
}

#[test]
fn after_a_restart_mid_fencing_the_power_status_is_read_before_any_power_off() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    restart(&mut b);
    assert_eq!(b.step(Input::Tick), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
    // And when it still reads on, powering off again is right (it was never confirmed off).
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    restart(&mut b);
    b.step(Input::Tick);
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
}

#[test]
fn after_a_restart_a_requested_evacuation_is_read_not_sent_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "b", Ok(()));
    restart(&mut b);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    assert!(b.in_progress("c1", "a", "rebuilding").is_empty());
    b.advance(2);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1", "progress b on c1"]
    );
    // If the request never reached Nova, it is sent again (budget permitting).
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    restart(&mut b);
    b.step(Input::Tick);
    assert!(b.progress("c1", "a", Progress::NotStarted).is_empty());
    b.advance(5);
    assert_eq!(b.step(Input::Tick), ["evacuate a from c1"]);
}

#[test]
fn after_a_restart_the_brake_and_refusal_episodes_hold() {
    let mut b = Bench::default();
    b.step(pause("x"));
    b.observe(&HOSTS);
    restart(&mut b);
    assert!(b.observe(&HOSTS).is_empty(), "no second all-stale alert");
    for _ in 0..3 {
        b.advance(10);
        b.observe(&["c1"]);
    }
    assert!(!b.stage("c1").in_recovery(), "still paused");
}

#[test]
fn the_evacuation_timeout_counts_from_the_request_even_across_a_restart() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.advance(200);
    restart(&mut b);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    b.in_progress("c1", "a", "rebuilding");
    b.advance(100);
    assert_eq!(
        b.step(Input::Tick),
        ["notify recovered c1"],
        "300 s since the request"
    );
}

#[test]
fn a_stray_evacuation_answer_after_a_restart_is_ignored() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    restart(&mut b);
    // The answer to the request the dead runtime sent must not be taken for this runtime's.
    assert_eq!(b.sent("c1", "a", Ok(())), ["progress a on c1"]);
    assert_eq!(b.instance_at("c1", "a"), "requested");
}

// ----- only what changed is written ----------------------------------------------------------------------

#[test]
fn progress_reads_that_change_nothing_are_not_journaled() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.engine.take_changes();
    for (written, what) in [
        (1, "a new detail is journaled"),
        (0, "the same detail is not"),
    ] {
        b.advance(2);
        b.step(Input::Tick);
        b.in_progress("c1", "a", "spawning");
        assert_eq!(b.engine.take_changes().instances.len(), written, "{what}");
    }
}

#[test]
fn an_instance_s_step_writes_its_record_not_its_host_s() {
    // A recovery of 1,000 instances takes thousands of steps: each writes the instance it moved, and
    // the host record only when the host's own state moves (here: the last one done).
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.engine.take_changes();
    let only_the_instance = |b: &mut Bench, what: &str| {
        let c = b.engine.take_changes();
        assert_eq!(c.instances.len(), 1, "{what}: {c:?}");
        assert!(
            c.hosts.is_empty(),
            "{what}: the host record was written again: {c:?}"
        );
    };
    b.sent("c1", "a", Ok(()));
    only_the_instance(&mut b, "a's request answered");
    b.sent("c1", "b", Ok(()));
    only_the_instance(&mut b, "b's request answered");
    b.advance(2);
    b.step(Input::Tick);
    b.in_progress("c1", "a", "spawning");
    only_the_instance(&mut b, "a under way");
    b.advance(2);
    b.step(Input::Tick);
    b.done("c1", "a", "c2");
    only_the_instance(&mut b, "a done, b not yet");
    // The last one done moves the host on: then, and only then, its record is written too.
    b.advance(2);
    b.step(Input::Tick);
    b.done("c1", "b", "c2");
    let c = b.engine.take_changes();
    assert!(
        c.hosts
            .iter()
            .any(|h| h.host == "c1".into() && h.stage != Stage::Evacuating),
        "the host's own change is written: {c:?}"
    );
}

#[test]
fn changes_are_empty_only_when_nothing_changed() {
    let mut b = Bench::default();
    assert!(b.engine.take_changes().is_empty());
    let only = |f: &dyn Fn(&mut Changes)| {
        let mut c = Changes::default();
        f(&mut c);
        !c.is_empty()
    };
    assert!(only(&|c| c
        .hosts
        .push(HostRecord::new("c1".into(), Timestamp(0)))));
    assert!(only(&|c| c.clear_instances.push("c1".into())));
    assert!(only(&|c| c.meta = Some(EngineMeta::default())));
    assert!(only(&|c| c.history.push(HistoryEvent {
        at: Timestamp(0),
        host: None,
        instance: None,
        what: String::new()
    })));
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    let mut c = b.engine.take_changes();
    c.hosts.clear();
    c.meta = None;
    c.history.clear();
    assert!(!c.instances.is_empty() && !c.is_empty());
}

#[test]
fn a_quiet_observation_writes_nothing_engine_wide() {
    let mut b = Bench::default();
    b.observe(&[]);
    b.engine.take_changes();
    b.advance(10);
    b.observe(&[]);
    let c = b.engine.take_changes();
    assert!(
        c.meta.is_none() && c.hosts.is_empty() && c.history.is_empty(),
        "{c:?}"
    );
}

// ----- the history, the reports and the accessors --------------------------------------------------------

#[test]
fn report_ids_are_unique_and_history_records_transitions() {
    let mut b = Bench::default();
    b.step(pause("a"));
    b.step(resume());
    let c = b.engine.take_changes();
    assert_eq!(c.meta.as_ref().unwrap().report_seq, 2);
    assert!(
        c.history
            .iter()
            .any(|h| h.what.contains("paused by an operator: a"))
    );
    let mut b = Bench::default();
    let cmds = b.raw(pause("a"));
    let mut ids: Vec<String> = notified(&cmds).iter().map(|r| r.id.clone()).collect();
    let cmds = b.raw(resume());
    ids.extend(notified(&cmds).iter().map(|r| r.id.clone()));
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn the_history_records_the_evidence_and_the_policy_counts() {
    let mut b = Bench::default();
    b.observe(&["c1"]);
    let c = b.engine.take_changes();
    assert!(
        c.history
            .iter()
            .any(|h| h.what.contains("strike 1 of 3") && h.what.contains("state=down")),
        "{:?}",
        c.history
    );
    let mut b = Bench::with(1, |cfg| cfg.policy.mode = PolicyMode::OptIn);
    let yes = opted("yes", "1");
    let mut yes2 = yes.clone();
    yes2.id = "yes2".into();
    b.fence_and_list("c1", vec![yes, yes2, instance("no", "c1")]);
    let c = b.engine.take_changes();
    assert!(
        c.history
            .iter()
            .any(|h| h.what == "2 instance(s) to evacuate, 1 left alone by policy"),
        "{:?}",
        c.history
    );
}

#[test]
fn accessors_and_names_say_what_they_hold() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    let at = b.now;
    let cmds = b.raw(Input::PowerRead {
        host: "c1".into(),
        level: 0,
        result: Ok(PowerState::Off),
    });
    let isolate = cmds.iter().find(|c| c.name() == "isolate").unwrap();
    let Command::Isolate { fenced } = isolate else {
        panic!()
    };
    assert_eq!(fenced.at(), at);
    assert!(
        fenced.recovery().starts_with("c1@"),
        "{}",
        fenced.recovery()
    );
    let debug = format!("{fenced:?}");
    assert!(
        debug.contains("c1") && debug.contains("PowerStatus"),
        "{debug}"
    );
    assert_eq!(isolate.host(), Some(&HostId::from("c1")));
    assert!(isolate.retry_safe());
    let evac = Command::Evacuate {
        fenced: fenced.clone(),
        instance: instance("a", "c1"),
    };
    assert!(
        !evac.retry_safe(),
        "an evacuation request is never retried blindly"
    );
    assert!(evac.is_destructive() && isolate.is_destructive());
    let reads = [
        Command::PowerStatus {
            host: "c1".into(),
            level: 0,
        },
        Command::ListInstances {
            fenced: fenced.clone(),
        },
        Command::Progress {
            host: "c1".into(),
            instance: instance("a", "c1"),
        },
    ];
    assert!(reads.iter().all(|c| !c.is_destructive() && c.retry_safe()));
    assert!(
        Command::PowerOff {
            host: "c1".into(),
            level: 0
        }
        .is_destructive()
    );
    assert!(Command::Restore { host: "c1".into() }.is_destructive());
    assert_eq!(evac.name(), "evacuate");
    assert_eq!(evac.host(), Some(&HostId::from("c1")));
    assert_eq!(
        Command::Restore { host: "c2".into() }.host(),
        Some(&HostId::from("c2"))
    );
    let names: Vec<&str> = [
        Stage::Healthy,
        Stage::Suspect {
            strikes: 1,
            since: at,
        },
        Stage::Fencing {
            level: 0,
            attempted: false,
        },
        Stage::Isolating { isolated: false },
        Stage::Evacuating,
        Stage::Evacuated,
        Stage::Restoring,
        Stage::NeedsOperator { why: String::new() },
    ]
    .iter()
    .map(Stage::name)
    .collect();
    assert_eq!(
        names,
        [
            "healthy",
            "suspect",
            "fencing",
            "isolating",
            "evacuating",
            "evacuated",
            "restoring",
            "needs_operator"
        ]
    );
    let states = [
        InstanceState::Pending { not_before: at },
        InstanceState::Requested { at },
        InstanceState::Done {
            host: "c2".into(),
            status: "ACTIVE".into(),
        },
        InstanceState::Failed {
            reason: String::new(),
        },
        InstanceState::Skipped {
            reason: String::new(),
        },
        InstanceState::Gone,
    ];
    let names: Vec<&str> = states.iter().map(InstanceState::name).collect();
    assert_eq!(
        names,
        ["pending", "requested", "done", "failed", "skipped", "gone"]
    );
    let terminal: Vec<bool> = states.iter().map(InstanceState::is_terminal).collect();
    assert_eq!(terminal, [false, false, true, true, true, true]);
}

/// A host that dies again while its return to service is refused, and a second recovery with another
/// instance; `between` runs after each stage of it.
fn two_recoveries(b: &mut Bench, mut between: impl FnMut(&mut Bench)) {
    b.rebuilding("c1", "a");
    between(b);
    b.done("c1", "a", "c2");
    between(b);
    b.up_for_strikes();
    between(b);
    b.restored("c1", Err(fail(ErrorKind::Conflict)));
    between(b);
    b.advance(10);
    b.down_short_of_strikes("c1");
    between(b);
    b.advance(10);
    b.observe(&["c1"]);
    between(b);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    between(b);
    b.isolated("c1");
    b.listed("c1", vec![instance("b", "c1")]);
    between(b);
}

#[test]
fn changes_taken_apart_and_absorbed_write_what_one_take_would() {
    // The runtime holds a turn's changes when its commands only read and absorbs the next turns' into
    // them: the commit must write what taking them all at once would have.
    let mut apart = Bench::default();
    let mut absorbed = Changes::default();
    two_recoveries(&mut apart, |b| absorbed.absorb(b.engine.take_changes()));
    absorbed.dedup();
    let mut whole = Bench::default();
    two_recoveries(&mut whole, |_| {});
    let once = whole.engine.take_changes();
    let key = |c: &Changes| {
        let mut hosts: Vec<String> = c.hosts.iter().map(|h| format!("{h:?}")).collect();
        let mut instances: Vec<String> = c.instances.iter().map(|i| format!("{i:?}")).collect();
        hosts.sort();
        instances.sort();
        (hosts, instances, c.clear_instances.clone(), c.meta.clone())
    };
    assert_eq!(key(&absorbed), key(&once));
    assert_eq!(absorbed.history, once.history);
    // The second recovery's "b" is written, not the first one's "a" (cleared in between).
    assert_eq!(absorbed.clear_instances, [HostId::from("c1")]);
    let written: Vec<_> = absorbed
        .instances
        .iter()
        .map(|(_, i)| (i.instance.id.as_str(), &i.state))
        .collect();
    assert!(
        matches!(written[..], [("b", InstanceState::Requested { .. })]),
        "{written:?}"
    );
}
