//! Fencing: the levels, a power status that never reads off, no fencer at all, one host-level call in
//! flight; and the fence proof, only as old as the last sign of life.

use super::*;

#[test]
fn fencing_falls_back_to_the_next_level_when_the_first_fails() {
    let mut b = Bench::default();
    assert_eq!(b.down_for_strikes(&["c1"]), ["power_off c1 #0"]);
    assert_eq!(
        b.powered_off("c1", 0, Err(fail(ErrorKind::Auth))),
        ["power_off c1 #1"]
    );
    assert_eq!(b.powered_off("c1", 1, Ok(())), ["power_status c1 #1"]);
    assert_eq!(b.power_read("c1", 1, PowerState::Off), ["isolate c1"]);
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert_eq!(
        rec.fence.as_ref().unwrap().proof,
        FenceProof::PowerStatus { level: 1 }
    );
}

#[test]
fn power_status_that_never_reads_off_stops_recovery_and_tells_the_operators() {
    let mut b = Bench::default();
    assert_eq!(b.down_for_strikes(&["c1"]), ["power_off c1 #0"]);
    let mut all = Vec::new();
    all.extend(b.powered_off("c1", 0, Ok(())));
    // Level 1: reads on until its 10 s deadline.
    for _ in 0..20 {
        all.extend(b.power_read("c1", 0, PowerState::On));
        b.advance(1);
        all.extend(b.step(Input::Tick));
        if all.iter().any(|c| c == "power_off c1 #1") {
            break;
        }
    }
    assert!(all.iter().any(|c| c == "power_off c1 #1"), "{all:?}");
    all.clear();
    all.extend(b.powered_off("c1", 1, Ok(())));
    for _ in 0..20 {
        let read = b.step(Input::PowerRead {
            host: "c1".into(),
            level: 1,
            result: Err(fail(ErrorKind::Timeout)),
        });
        all.extend(read);
        b.advance(1);
        all.extend(b.step(Input::Tick));
    }
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    assert_eq!(
        all.iter()
            .filter(|c| c.starts_with("notify needs_operator c1"))
            .count(),
        1
    );
    assert!(
        !all.iter().any(|c| c.starts_with("isolate")
            || c.starts_with("evacuate")
            || c.starts_with("list")),
        "{all:?}"
    );
    // Nothing more happens to it, however long we wait.
    for _ in 0..5 {
        b.advance(60);
        assert!(b.observe(&["c1"]).is_empty());
    }
    let Stage::NeedsOperator { why } = b.stage("c1") else {
        unreachable!()
    };
    assert!(why.contains("did not read off"), "{why}");
    assert!(why.contains("confirm-off c1"), "{why}");
}

#[test]
fn power_off_failing_at_every_level_needs_an_operator() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    assert_eq!(
        b.powered_off("c1", 0, Err(fail(ErrorKind::Unreachable))),
        ["power_off c1 #1"]
    );
    assert_eq!(
        b.powered_off("c1", 1, Err(fail(ErrorKind::Auth))),
        ["notify needs_operator c1"]
    );
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn without_any_fencer_a_down_host_needs_an_operator() {
    let mut b = Bench::new(config(), 0);
    assert_eq!(b.down_for_strikes(&["c1"]), ["notify needs_operator c1"]);
}

#[test]
fn a_result_for_a_call_not_in_flight_is_ignored() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    // A stray power reading before the power-off was answered must not mint a proof.
    assert!(b.power_read("c1", 0, PowerState::Off).is_empty());
    assert!(matches!(b.stage("c1"), Stage::Fencing { .. }));
    // Nor a result of the wrong level.
    assert!(b.powered_off("c1", 1, Ok(())).is_empty());
    assert!(matches!(b.stage("c1"), Stage::Fencing { .. }));
    assert!(b.isolated("c1").is_empty());
    assert!(b.listed("c1", vec![instance("a", "c1")]).is_empty());
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
}

#[test]
fn only_one_host_level_call_is_in_flight_per_host() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    for _ in 0..5 {
        b.advance(5);
        assert!(b.step(Input::Tick).is_empty());
        assert!(b.observe(&["c1"]).is_empty());
    }
}

// ----- a fence proof is only as old as the last sign of life ---------------------------------------------

#[test]
fn recover_after_the_host_was_seen_alive_reads_its_power_and_fences_again() {
    let mut b = Bench::default();
    // Repaired: up for the strike count, restore fails for good.
    b.restoring("c1");
    let cmds = b.restored("c1", Err(fail(ErrorKind::Auth)));
    assert_eq!(cmds, ["notify needs_operator c1"]);
    // Seen alive (it heartbeats) while still carrying our isolation: the old proof is void, and it stays
    // for an operator.
    assert_eq!(b.engine.host(&"c1".into()).unwrap().fence, None);
    b.advance(10);
    let mut obs = b.all_up();
    obs[0].admin = disabled(&crate::isolation_marker("j1", "c1@1", Timestamp(1)), false);
    assert!(b.step(Input::Observed(Ok(obs))).is_empty());
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    // Its new instances are on it now. `recover` reads the power first, and fences again as it reads on.
    assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
}

/// Also what `recover` does after a failure past fencing: it reads the power, then resumes from isolation.
#[test]
fn recover_with_a_proof_from_before_still_reads_the_power_first() {
    // Someone powered it back on meanwhile: no isolation, no evacuation on the old proof. Still off: no
    // second power-off, on to isolation with a fresh proof.
    for (power, next) in [
        (PowerState::On, "power_off c1 #0"),
        (PowerState::Off, "isolate c1"),
    ] {
        let mut b = Bench::default();
        b.isolation_refused("c1");
        let first = b.engine.host(&"c1".into()).unwrap().fence.clone().unwrap();
        b.advance(60);
        assert_eq!(b.step(recover("c1")), ["power_status c1 #0"]);
        assert_eq!(b.power_read("c1", 0, power), [next]);
        if power == PowerState::Off {
            let fresh = b.engine.host(&"c1".into()).unwrap().fence.clone().unwrap();
            assert!(fresh.at > first.at, "{fresh:?} vs {first:?}");
        }
    }
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
    let fenced = b.proof("c1");
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
    assert_eq!(b.instance_at("c1", "a"), "done");
}
