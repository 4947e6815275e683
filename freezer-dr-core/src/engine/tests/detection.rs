//! Detection and the guards: strikes, unknown health, the storm budget and its cooldown, every host stale
//! at once, a failing observation, operator-disabled hosts, hosts the monitors no longer list.

use super::*;

#[test]
fn a_flapping_host_below_the_strike_count_is_never_fenced() {
    let mut b = Bench::default();
    for _ in 0..10 {
        assert!(b.observe(&["c1"]).is_empty());
        b.advance(10);
        assert!(b.observe(&["c1"]).is_empty());
        b.advance(10);
        assert!(b.observe(&[]).is_empty());
        b.advance(10);
    }
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

#[test]
fn an_unknown_health_neither_strikes_nor_clears() {
    let mut b = Bench::default();
    b.observe(&["c1"]);
    b.advance(10);
    let mut obs = b.all_up();
    obs[0].health = Health::Unknown {
        reason: "no data".into(),
    };
    assert!(b.step(Input::Observed(Ok(obs))).is_empty());
    assert!(matches!(b.stage("c1"), Stage::Suspect { strikes: 1, .. }));
    b.advance(10);
    b.observe(&["c1"]);
    b.advance(10);
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
}

#[test]
fn strikes_stop_at_the_strike_count_while_fencing_waits() {
    let mut b = Bench::default();
    b.step(pause("x"));
    for _ in 0..6 {
        b.observe(&["c1"]);
        b.advance(10);
    }
    assert!(matches!(b.stage("c1"), Stage::Suspect { strikes: 3, .. }));
}

// ----- the storm guard -----------------------------------------------------------------------------------

#[test]
fn too_many_hosts_down_is_a_storm_nothing_is_fenced_and_one_alert_is_sent() {
    let mut b = Bench::default();
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(b.observe(&["c1", "c2", "c3"]));
        b.advance(10);
    }
    assert_eq!(all, ["notify storm"]);
    assert!(HOSTS.iter().all(|h| !b.stage(h).in_recovery()));
}

#[test]
fn a_fraction_over_budget_is_a_storm_even_under_the_absolute_count() {
    let mut b = Bench::with(1, |cfg| {
        cfg.storm.max_hosts = 100;
        cfg.storm.max_fraction = 0.25;
    });
    // 2 of 6 = 33% > 25%.
    assert_eq!(b.down_for_strikes(&["c1", "c2"]), ["notify storm"]);
    // 1 of 6 = 16% would have been fine.
    let mut b = Bench::with(1, |cfg| cfg.storm.max_fraction = 0.25);
    assert_eq!(b.down_for_strikes(&["c1"]), ["power_off c1 #0"]);
}

#[test]
fn hosts_fenced_and_not_restored_count_against_the_storm_budget() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    b.dead.push("c1");
    b.advance(10);
    b.fence_and_list("c2", vec![]);
    assert_eq!(b.stage("c1"), Stage::Evacuated);
    assert_eq!(b.stage("c2"), Stage::Evacuated);
    // Two hosts fenced and still dead: a third is over the budget of 2.
    let mut all = Vec::new();
    for _ in 0..4 {
        b.advance(10);
        all.extend(b.observe(&["c1", "c2", "c3"]));
    }
    assert_eq!(all, ["notify storm"]);
    assert!(!b.stage("c3").in_recovery());
}

#[test]
fn fencing_resumes_only_after_the_storm_calmed_for_the_cooldown() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1", "c2", "c3"]);
    // Calm again except c1: still within the cooldown (60 s), nothing.
    let mut all = Vec::new();
    for _ in 0..5 {
        all.extend(b.observe(&["c1"]));
        b.advance(10);
    }
    assert!(all.is_empty(), "{all:?}");
    b.advance(20);
    assert_eq!(b.observe(&["c1"]), ["notify resolved", "power_off c1 #0"]);
}

#[test]
fn at_most_the_configured_number_of_hosts_is_fenced_per_cycle() {
    let mut b = Bench::with(1, |cfg| {
        cfg.storm.max_hosts = 3;
        cfg.storm.max_fraction = 1.0;
    });
    assert_eq!(b.down_for_strikes(&["c2", "c1"]), ["power_off c1 #0"]);
    assert_eq!(b.observe(&["c1", "c2"]), ["power_off c2 #0"]);
}

#[test]
fn exactly_the_absolute_budget_is_still_within_it() {
    let mut b = Bench::with(1, |cfg| {
        cfg.storm.max_hosts = 2;
        cfg.storm.max_fraction = 1.0;
        cfg.storm.max_new_fencings_per_cycle = 2;
    });
    assert_eq!(
        b.down_for_strikes(&["c1", "c2"]),
        ["power_off c1 #0", "power_off c2 #0"]
    );
}

#[test]
fn exactly_the_fraction_budget_is_still_within_it() {
    let mut b = Bench::with(1, |cfg| {
        cfg.storm.max_hosts = 10;
        cfg.storm.max_fraction = 0.5;
    });
    assert_eq!(b.down_for_strikes(&["c1", "c2", "c3"]), ["power_off c1 #0"]);
}

// ----- an untrustworthy picture --------------------------------------------------------------------------

#[test]
fn every_host_stale_at_once_is_refused_with_one_alert() {
    let mut b = Bench::default();
    let mut all = Vec::new();
    for _ in 0..5 {
        all.extend(b.observe(&HOSTS));
        b.advance(10);
    }
    assert_eq!(all, ["notify all_stale"]);
    assert!(HOSTS.iter().all(|h| b.stage(h) == Stage::Healthy));
    assert_eq!(b.observe(&[]), ["notify resolved"]);
}

#[test]
fn an_empty_observation_is_not_every_host_stale() {
    let mut b = Bench::default();
    b.hosts.clear();
    assert!(b.observe(&[]).is_empty());
    assert!(!b.engine.meta().stale_alerted);
}

#[test]
fn a_failed_observation_is_no_information_and_is_reported_once_per_episode() {
    let mut b = Bench::default();
    b.down_short_of_strikes("c1");
    let mut all = Vec::new();
    for _ in 0..6 {
        b.advance(10);
        all.extend(b.step(Input::Observed(Err(fail(ErrorKind::Unreachable)))));
    }
    assert_eq!(all, ["notify observation_failing"]);
    assert!(matches!(b.stage("c1"), Stage::Suspect { strikes: 2, .. }));
    b.advance(10);
    assert_eq!(b.observe(&["c1"]), ["notify resolved", "power_off c1 #0"]);
}

#[test]
fn the_observation_alert_comes_at_the_strike_count_not_before() {
    let mut b = Bench::default();
    for _ in 0..2 {
        assert!(
            b.step(Input::Observed(Err(fail(ErrorKind::Unreachable))))
                .is_empty()
        );
    }
    assert_eq!(
        b.step(Input::Observed(Err(fail(ErrorKind::Unreachable)))),
        ["notify observation_failing"]
    );
}

#[test]
fn hosts_disabled_by_an_operator_are_left_alone_and_not_counted() {
    let mut b = Bench::default();
    let up = b.all_up();
    let obs = |down: bool| {
        let mut v = up.clone();
        for h in v.iter_mut().take(3) {
            h.health = Health::down("maintenance");
            h.admin = disabled("kernel upgrade", false);
        }
        if down {
            v[3].health = Health::down("state=down");
        }
        v
    };
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(b.step(Input::Observed(Ok(obs(true)))));
        b.advance(10);
    }
    assert_eq!(all, ["power_off c4 #0"]);
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

// ----- hosts the monitors no longer list -----------------------------------------------------------------

#[test]
fn a_suspect_absent_from_an_observation_loses_its_strikes_and_is_never_fenced() {
    let mut b = Bench::with(1, |cfg| cfg.storm.max_hosts = 3);
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
    let mut b = Bench::with(1, |cfg| cfg.forget_after = Duration::from_secs(600));
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.stage("c1"), Stage::Evacuated);
    b.hosts.retain(|h| *h != "c1");
    // Reported once when it vanishes.
    assert_eq!(b.observe(&[]), ["notify needs_operator c1"]);
    b.advance(300);
    assert!(b.observe(&[]).is_empty());
    b.advance(300);
    let cmds = b.raw(Input::Observed(Ok(b.all_up())));
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
