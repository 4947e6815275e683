//! Return to service: only after every evacuation ended and the host reports up for the strike count;
//! manual mode; a restore that fails, never succeeds, or meets a host that dies again.

use super::*;

#[test]
fn a_host_is_restored_only_after_every_evacuation_ended_and_it_reports_up() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    // Still dead while its instance rebuilds: no restore. (Seen up mid-evacuation, it would be fenced
    // again: `a_host_seen_alive_mid_evacuation_stops_being_evacuated_until_its_power_is_read`.)
    for _ in 0..3 {
        b.advance(1);
        let cmds = b.observe(&["c1"]);
        assert!(!cmds.iter().any(|c| c.starts_with("restore")), "{cmds:?}");
    }
    b.advance(2);
    b.step(Input::Tick);
    assert_eq!(b.done("c1", "a", "c2"), ["notify recovered c1"]);
    // Every evacuation ended, but the host is still down: no restore.
    assert!(b.observe(&["c1"]).is_empty());
    // One stray heartbeat between down observations is not a repair.
    assert!(b.observe(&[]).is_empty());
    assert!(b.observe(&["c1"]).is_empty());
    assert_eq!(b.engine.host(&"c1".into()).unwrap().up_streak, 0);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
}

#[test]
fn manual_return_to_service_waits_for_an_operator_to_enable_the_host() {
    let mut b = Bench::with(1, |cfg| cfg.return_to_service = ReturnToService::Manual);
    b.fence_and_list("c1", vec![]);
    let mut forced = b.all_up();
    forced[0].admin = disabled(&crate::isolation_marker("j1", "c1@1", Timestamp(1)), true);
    assert!(b.step(Input::Observed(Ok(forced))).is_empty());
    assert_eq!(b.stage("c1"), Stage::Evacuated);
    assert!(b.observe(&[]).is_empty());
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

#[test]
fn manual_return_to_service_needs_both_enabled_and_not_forced_down() {
    let mut b = Bench::with(1, |cfg| cfg.return_to_service = ReturnToService::Manual);
    b.fence_and_list("c1", vec![]);
    let up = b.all_up();
    let with_admin = |disabled: bool, forced_down: bool| {
        let mut v = up.clone();
        v[0].admin = AdminState {
            disabled,
            disabled_reason: None,
            forced_down,
        };
        Input::Observed(Ok(v))
    };
    b.step(with_admin(false, true));
    assert_eq!(b.stage("c1"), Stage::Evacuated, "still forced down");
    b.step(with_admin(true, false));
    assert_eq!(b.stage("c1"), Stage::Evacuated, "still disabled");
    b.step(with_admin(false, false));
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

#[test]
fn paused_engine_does_not_return_a_repaired_host_to_service() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    b.step(pause("x"));
    assert!(b.up_for_strikes().is_empty());
    assert_eq!(b.stage("c1"), Stage::Restoring);
    assert_eq!(b.step(resume()), ["notify brake", "restore c1"]);
}

#[test]
fn a_failed_restore_is_retried_later_and_the_operators_told_after_three() {
    let mut b = Bench::default();
    b.restoring("c1");
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(b.restored("c1", Err(fail(ErrorKind::PeerFailure))));
        b.advance(29);
        all.extend(b.step(Input::Tick));
        b.advance(1);
        all.extend(b.step(Input::Tick));
    }
    assert_eq!(
        all,
        [
            "restore c1",
            "restore c1",
            "notify needs_operator c1",
            "restore c1"
        ]
    );
    assert_eq!(
        b.step(Input::Restored {
            host: "c1".into(),
            result: Err(fail(ErrorKind::Auth)),
        }),
        ["notify needs_operator c1"]
    );
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn a_restore_that_never_succeeds_is_handed_to_the_operators_after_its_timeout() {
    let mut b = Bench::default();
    b.restoring("c1");
    let mut all = Vec::new();
    for _ in 0..70 {
        all.extend(b.restored("c1", Err(fail(ErrorKind::Conflict))));
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
    b.rebuilding("c1", "a");
    b.done("c1", "a", "c2");
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    b.restored("c1", Err(fail(ErrorKind::Conflict)));
    // It dies again (after forced_down was unset, before it was enabled).
    b.advance(10);
    b.down_short_of_strikes("c1");
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
    b.restoring("c1");
    b.restored("c1", Err(fail(ErrorKind::Conflict)));
    // Down, down, up, down, down: never three downs in a row.
    for down in [true, true, false, true, true] {
        b.advance(10);
        let cmds = b.observe(if down { &["c1"] } else { &[] });
        assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    }
    assert_eq!(b.stage("c1"), Stage::Restoring);
}

#[test]
fn a_host_that_reports_up_while_restoring_is_never_fenced_again() {
    let mut b = Bench::default();
    b.restoring("c1");
    for _ in 0..5 {
        b.restored("c1", Err(fail(ErrorKind::Conflict)));
        b.advance(10);
        let cmds = b.observe(&[]);
        assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    }
    assert_eq!(b.stage("c1"), Stage::Restoring);
}

#[test]
fn an_unknown_observation_while_restoring_neither_counts_down_nor_clears() {
    let mut b = Bench::default();
    b.restoring("c1");
    b.restored("c1", Err(fail(ErrorKind::Conflict)));
    b.advance(10);
    b.down_short_of_strikes("c1");
    b.advance(10);
    let mut obs = b.all_up();
    obs[0].health = Health::Unknown {
        reason: "its cell does not answer".into(),
    };
    let cmds = b.step(Input::Observed(Ok(obs)));
    assert!(!cmds.iter().any(|c| c.starts_with("power")), "{cmds:?}");
    // The retried restore (due meanwhile) fails again.
    b.restored("c1", Err(fail(ErrorKind::Conflict)));
    b.advance(10);
    assert_eq!(
        b.observe(&["c1"]),
        ["power_off c1 #0"],
        "the third down in a row"
    );
}
