//! Several monitors combined (`[[monitor]]` listed more than once): what each `combine` mode fences, a
//! lasting disagreement reported once per episode, and a monitor that fails mid-recovery.

use super::*;
use crate::{Combine, MonitorView};

/// Each monitor and the hosts it sees down: `&[("nova", &["c1"])]`.
type Down<'a> = &'a [(&'a str, &'a [&'a str])];

/// One observation of every bench host by the monitors `nova` and `tcp` (and `ping` with quorum, where
/// a majority of two would be both), each seeing down the hosts listed for it, combined as the
/// bench's `combine` says; monitors in `failed` failed.
struct Views<'a> {
    down: Down<'a>,
    failed: &'a [&'a str],
}

impl<'a> Views<'a> {
    /// Each monitor sees down the hosts `down` lists for it; none fails.
    fn new(down: Down<'a>) -> Self {
        Self { down, failed: &[] }
    }

    /// The same observation with the monitors `failed` failing.
    fn failing(self, failed: &'a [&'a str]) -> Self {
        Self { failed, ..self }
    }

    fn of(&self, b: &Bench) -> Vec<HostHealth> {
        let mode = b.engine.config().monitors.combine;
        let monitors: &[&str] = if mode == Combine::Quorum {
            &["nova", "tcp", "ping"]
        } else {
            &["nova", "tcp"]
        };
        b.hosts
            .iter()
            .map(|h| {
                let views: Vec<MonitorView> = monitors
                    .iter()
                    .map(|m| {
                        let failed = self.failed.contains(m);
                        let down = self
                            .down
                            .iter()
                            .any(|(who, hosts)| who == m && hosts.contains(h));
                        let health = if failed {
                            Health::Unknown {
                                reason: "observation failed: refused".into(),
                            }
                        } else if down {
                            Health::down(format!("{m} says down"))
                        } else {
                            Health::Up
                        };
                        MonitorView {
                            monitor: (*m).to_owned(),
                            health,
                            failed,
                        }
                    })
                    .collect();
                let mut hh = HostHealth::new(*h, mode.verdict(&views));
                hh.views = views;
                hh
            })
            .collect()
    }
}

/// Disagreements are told after 20 s: the third observation of one, 10 s apart.
fn bench(mode: Combine) -> Bench {
    let mut cfg = config();
    cfg.monitors.combine = mode;
    cfg.monitors.disagreement_after = Duration::from_secs(20);
    Bench::new(cfg, 1)
}

/// Observes `views` `n` times, 10 s apart; every command, in order.
fn observe_n(b: &mut Bench, views: &Views<'_>, n: usize) -> Vec<String> {
    let mut all = Vec::new();
    for _ in 0..n {
        let obs = views.of(b);
        all.extend(b.step(Input::Observed(Ok(obs))));
        b.advance(10);
    }
    all
}

#[test]
fn with_all_a_dead_nova_compute_on_a_host_that_answers_is_never_fenced_and_told_once() {
    let mut b = bench(Combine::All);
    let only_nova = Views::new(&[("nova", &["c1"])]);
    // Far past the strike count: one report, at the strike count, and nothing else.
    assert_eq!(
        observe_n(&mut b, &only_nova, 10),
        ["notify monitors_disagree c1"]
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    let rec = b.engine.host(&HostId::from("c1")).unwrap();
    assert_eq!(rec.views.len(), 2, "each monitor's view is kept: {rec:?}");
    assert!(rec.views[0].health.is_down() && rec.views[1].health == Health::Up);
    let history = &b.engine.history;
    assert!(
        history
            .iter()
            .any(|e| e.what == "c1: nova down but tcp says it is up: not fenced"),
        "{history:?}"
    );

    // The episode ends when the monitors agree; a new one is told again.
    let agree = Views::new(&[]);
    b.engine.take_changes();
    assert!(observe_n(&mut b, &agree, 1).is_empty());
    // Only the views changed (the verdict was up all along): they are kept, and journaled.
    let rec = b.engine.host(&HostId::from("c1")).unwrap().clone();
    assert!(rec.views.iter().all(|v| v.health == Health::Up), "{rec:?}");
    let changes = b.engine.take_changes();
    assert!(
        changes
            .hosts
            .iter()
            .any(|h| h.host == HostId::from("c1") && h.views == rec.views),
        "{changes:?}"
    );
    assert_eq!(
        observe_n(&mut b, &only_nova, 5),
        ["notify monitors_disagree c1"]
    );

    // Both say down (the host lost its power): fenced as today, after the strike count.
    let both = Views::new(&[("nova", &["c1"]), ("tcp", &["c1"])]);
    assert_eq!(observe_n(&mut b, &both, 3), ["power_off c1 #0"]);
}

#[test]
fn the_disagreement_report_shows_every_view_and_names_the_mode() {
    let mut b = bench(Combine::All);
    let only_nova = Views::new(&[("nova", &["c2"])]);
    let mut reports = Vec::new();
    for _ in 0..3 {
        let obs = only_nova.of(&b);
        reports.extend(
            notified(&b.raw(Input::Observed(Ok(obs))))
                .into_iter()
                .cloned(),
        );
        b.advance(10);
    }
    let [r] = reports.as_slice() else {
        panic!("one report: {reports:?}");
    };
    assert_eq!(r.kind, ReportKind::MonitorsDisagree);
    assert_eq!(r.audience, Audience::Operators);
    assert!(
        r.details
            .contains(&"nova: down (nova says down)".to_owned())
            && r.details.contains(&"tcp: up".to_owned()),
        "{r:?}"
    );
    assert!(
        r.details.iter().any(|d| d.contains("combine = \"all\"")),
        "{r:?}"
    );
}

#[test]
fn with_any_one_monitor_saying_down_is_enough() {
    let mut b = bench(Combine::Any);
    let only_tcp = Views::new(&[("tcp", &["c1"])]);
    assert_eq!(observe_n(&mut b, &only_tcp, 3), ["power_off c1 #0"]);
}

#[test]
fn with_quorum_a_majority_fences_and_a_minority_is_a_disagreement() {
    let mut b = bench(Combine::Quorum);
    let one_of_three = Views::new(&[("nova", &["c1"])]);
    assert_eq!(
        observe_n(&mut b, &one_of_three, 4),
        ["notify monitors_disagree c1"]
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    let two_of_three = Views::new(&[("nova", &["c1"]), ("ping", &["c1"])]);
    assert_eq!(observe_n(&mut b, &two_of_three, 3), ["power_off c1 #0"]);
}

#[test]
fn with_all_a_failing_monitor_blocks_fencing_and_is_reported_once() {
    let mut b = bench(Combine::All);
    let tcp_failing = Views::new(&[("nova", &["c1"])]).failing(&["tcp"]);
    assert_eq!(
        observe_n(&mut b, &tcp_failing, 8),
        ["notify observation_failing"],
        "told once that tcp cannot observe; c1 is unknown, never fenced"
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    // tcp is back and agrees: the operators hear it resolved, then c1 is fenced.
    let both = Views::new(&[("nova", &["c1"]), ("tcp", &["c1"])]);
    assert_eq!(
        observe_n(&mut b, &both, 3),
        ["notify resolved", "power_off c1 #0"]
    );
}

#[test]
fn with_quorum_the_others_decide_while_one_monitor_fails() {
    let mut b = bench(Combine::Quorum);
    let ping_failing = Views::new(&[("nova", &["c1"]), ("tcp", &["c1"])]).failing(&["ping"]);
    assert_eq!(
        observe_n(&mut b, &ping_failing, 3),
        ["notify observation_failing", "power_off c1 #0"]
    );
}

#[test]
fn a_monitor_that_fails_mid_recovery_does_not_stop_the_recovery_nor_fence_another_host() {
    let mut b = bench(Combine::All);
    let both = Views::new(&[("nova", &["c1"]), ("tcp", &["c1"])]);
    assert_eq!(observe_n(&mut b, &both, 3), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    // tcp goes away while c1 is being fenced; nova now also sees c2 down.
    let tcp_gone = Views::new(&[("nova", &["c1", "c2"])]).failing(&["tcp"]);
    let cmds = observe_n(&mut b, &tcp_gone, 4);
    assert_eq!(cmds, ["notify observation_failing"], "c2 is never fenced");
    assert_eq!(
        b.power_read("c1", 0, PowerState::Off),
        ["isolate c1"],
        "c1's recovery goes on: its fence is proven by its BMC, not by the monitors"
    );
    assert_eq!(b.stage("c2"), Stage::Healthy);
}

#[test]
fn a_single_monitor_stores_no_views_and_writes_what_it_wrote_before() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    let rec = b.engine.host(&HostId::from("c1")).unwrap();
    assert!(rec.views.is_empty() && rec.disputed == 0);
    let stored = serde_json::to_value(rec).unwrap();
    assert!(
        stored.get("views").is_none() && stored.get("disputed").is_none(),
        "nothing new is stored for a single monitor: {stored}"
    );
    let meta = serde_json::to_value(b.engine.meta()).unwrap();
    assert!(meta.get("monitor_failures").is_none(), "{meta}");
    // A disagreement under way is stored, and read back.
    let mut disputed = rec.clone();
    disputed.disputed = 2;
    let back: HostRecord =
        serde_json::from_value(serde_json::to_value(&disputed).unwrap()).unwrap();
    assert_eq!(back.disputed, 2);
}

#[test]
fn a_fast_probe_that_sees_a_dead_host_before_nova_does_is_no_false_alarm() {
    let mut b = bench(Combine::All);
    let mut cfg = b.engine.config().clone();
    cfg.monitors.disagreement_after = Duration::from_secs(60);
    b = Bench::new(cfg, 1);
    // The host lost its power: tcp sees it at once, Nova only once the heartbeat timed out (40 s later).
    let tcp_first = Views::new(&[("tcp", &["c1"])]);
    assert!(
        observe_n(&mut b, &tcp_first, 5).is_empty(),
        "a disagreement shorter than disagreement_after is not told"
    );
    let both = Views::new(&[("nova", &["c1"]), ("tcp", &["c1"])]);
    assert_eq!(observe_n(&mut b, &both, 3), ["power_off c1 #0"]);
    let rec = b.engine.host(&HostId::from("c1")).unwrap();
    assert!(rec.disputed == 0 && rec.disputed_since.is_none() && !rec.dispute_told);
}
