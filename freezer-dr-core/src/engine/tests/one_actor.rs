//! One actor per host: the isolation marker names this journal; another actor's marker at isolation or
//! at listing, or its evacuation of an instance, stops freezer-dr from acting on it; the pause before
//! the listing.

use super::*;

#[test]
fn a_host_carrying_our_marker_without_a_journal_record_needs_an_operator() {
    let mut b = Bench::default();
    let mut obs = b.all_up();
    obs[0].health = Health::down("forced down");
    obs[0].admin = disabled(&crate::isolation_marker("j1", "c1@1", Timestamp(5)), true);
    // The operators are told (this report was dropped before).
    assert_eq!(
        b.step(Input::Observed(Ok(obs))),
        ["notify needs_operator c1"]
    );
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn the_proof_token_carries_the_marker_for_isolation() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    let cmds = b.raw(Input::PowerRead {
        host: "c1".into(),
        level: 0,
        result: Ok(PowerState::Off),
    });
    let Some(Command::Isolate { fenced }) =
        cmds.iter().find(|c| matches!(c, Command::Isolate { .. }))
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(fenced.host(), &HostId::from("c1"));
    assert!(crate::is_isolation_marker(&fenced.marker()));
    assert!(fenced.marker().contains(fenced.recovery()));
    assert_eq!(fenced.proof(), &FenceProof::PowerStatus { level: 0 });
    let _ = ReportKind::Recovered;
}

#[test]
fn the_marker_names_this_journal_and_keeps_the_observed_admin_state() {
    let mut b = Bench::default();
    b.engine.journal_id = "j00ff".into();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    let fenced = b.proof("c1");
    assert_eq!(crate::marker_journal(&fenced.marker()), Some("j00ff"));
    assert_eq!(fenced.journal(), "j00ff");
    assert!(fenced.marker().contains("c1@"), "{}", fenced.marker());
    assert!(!fenced.observed().disabled);
    // An operator recovers a host they had disabled themselves: the proof carries that disable, so the
    // evacuator can tell it from one made by someone else since.
    let mut obs = b.all_up();
    obs[1].health = Health::down("state=down");
    obs[1].admin = disabled("maintenance, ticket 7", false);
    b.step(Input::Observed(Ok(obs)));
    assert_eq!(b.step(recover("c2")), ["power_off c2 #0"]);
    b.powered_off("c2", 0, Ok(()));
    let fenced = b.proof("c2");
    assert!(fenced.observed().disabled);
}

#[test]
fn another_actor_at_isolation_stops_the_recovery_and_tells_the_operators() {
    let mut b = Bench::default();
    b.confirmed_off("c1");
    let cmds = b.raw(Input::Isolated {
        host: "c1".into(),
        result: Err(other_actor("another freezer-dr (journal j42) isolated c1")),
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
fn another_actor_seen_at_listing_stops_before_any_evacuation() {
    let mut b = Bench::default();
    b.confirmed_off("c1");
    b.isolated("c1");
    let cmds = b.step(Input::Listed {
        host: "c1".into(),
        result: Err(other_actor("journal j42 isolated it right after")),
    });
    assert_eq!(cmds, ["notify needs_operator c1"]);
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn an_instance_someone_else_evacuates_is_followed_not_requested_again() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    let other = other_actor(
        "an evacuation of a from c1 is under way (migration 7), not requested by this freezer-dr",
    );
    assert!(b.sent("c1", "a", Err(other)).is_empty());
    let rec = &b.engine.host(&"c1".into()).unwrap().instances["a"];
    assert!(rec.by_other && rec.attempts == 1, "{rec:?}");
    b.advance(2);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    let cmds = b.raw(read_done("c1", "a", "c3"));
    let r = notified(&cmds)[0];
    assert!(
        r.details.iter().any(|d| d.contains("another actor")),
        "{:?}",
        r.details
    );
    assert!(matches!(&r.instances[0].outcome, Outcome::Evacuated { .. }));
}

#[test]
fn the_listing_waits_for_the_isolation_to_settle_and_a_restart_keeps_the_wait() {
    // Two daemons without [ha] that both read the service record before either wrote: the pause lets the
    // first writer's listing see the second one's marker (seen on the lab: the two writes were 50 ms
    // apart, and without a pause both daemons evacuated every server).
    let mut b = Bench::with(2, |cfg| cfg.isolation_settle = Duration::from_secs(2));
    b.confirmed_off("c1");
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
