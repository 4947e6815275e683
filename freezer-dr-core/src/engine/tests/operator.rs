//! Operator requests: pause and resume (the brake), recover (with and against the storm guard),
//! confirm-off, forget; and hosts that needed an operator coming back.

use super::*;

#[test]
fn paused_engine_observes_and_reports_but_never_fences() {
    let mut b = Bench::default();
    assert_eq!(b.step(pause("network work")), ["notify brake"]);
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(b.observe(&["c1"]));
        b.advance(10);
    }
    assert_eq!(all, ["notify brake c1"], "one report per host per pause");
    assert_eq!(b.step(resume()), ["notify brake"]);
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
}

#[test]
fn pause_mid_recovery_holds_destructive_steps_but_keeps_reading() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.step(pause("x"));
    b.sent("c1", "b", Err(fail(ErrorKind::NotFound).clone_permanent()));
    b.advance(10);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1"],
        "reads go on, no new evacuation"
    );
    assert_eq!(b.instance_at("c1", "b"), "pending");
    assert_eq!(b.step(resume()), ["notify brake", "evacuate b from c1"]);
}

#[test]
fn operator_recover_fences_a_host_without_waiting_for_strikes_and_still_verifies() {
    let mut b = Bench::default();
    b.observe(&[]);
    assert_eq!(b.step(recover("c2")), ["power_off c2 #0"]);
    assert_eq!(b.powered_off("c2", 0, Ok(())), ["power_status c2 #0"]);
    // A second request while it runs is refused (one recovery per host).
    assert!(b.step(recover("c2")).is_empty());
    assert!(matches!(b.stage("c2"), Stage::Verifying { .. }));
    // Unknown hosts are refused, not created.
    assert!(b.step(recover("c22")).is_empty());
    assert!(b.engine.host(&"c22".into()).is_none());
}

#[test]
fn operator_confirm_off_lets_a_host_with_unconfirmed_fencing_continue() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    assert_eq!(b.step(confirm_off("c1")), ["isolate c1"]);
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert_eq!(rec.fence.as_ref().unwrap().proof, FenceProof::Operator);
    // Confirming again changes nothing.
    assert!(b.step(confirm_off("c1")).is_empty());
}

// `recover` after a failure past fencing (reads the power, then resumes from isolation):
// `fencing::recover_with_a_proof_from_before_still_reads_the_power_first`.

#[test]
fn recover_after_failed_fencing_fences_again_from_the_first_level() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.dead.push("c1");
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    // Its power is read first (a recover never trusts what it knew before)...
    assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
    // ...and it is powered off again from the first level as it reads on.
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
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
    let cmds = b.raw(recover_despite_storm("c4"));
    let rendered: Vec<String> = cmds.iter().map(render).collect();
    assert_eq!(rendered, ["notify storm c4", "power_off c4 #0"]);
    assert!(
        notified(&cmds)[0].summary.contains("despite"),
        "{:?}",
        notified(&cmds)[0]
    );
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

// ----- forget --------------------------------------------------------------------------------------------

#[test]
fn an_operator_can_forget_a_vanished_host_but_not_one_being_recovered() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    assert!(matches!(b.stage("c1"), Stage::Fencing { .. }));
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

// ----- a host that needed an operator comes back ---------------------------------------------------------

#[test]
fn a_never_isolated_host_that_comes_back_is_healthy_again() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    assert!(b.observe(&[]).is_empty());
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

#[test]
fn a_host_isolated_before_needing_an_operator_stays_put_when_it_comes_back() {
    let mut b = Bench::default();
    b.isolation_refused("c1");
    assert!(b.observe(&[]).is_empty());
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}
