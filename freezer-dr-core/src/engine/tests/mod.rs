//! Engine scenarios: exact command lists for each situation (openraft style).
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use super::*;
use crate::engine::policy::{LocalRootDisk, PolicyMode, ReturnToService};
use crate::{
    AdminState, Audience, ErrorKind, Failure, Health, HostHealth, Instance, Outcome, PowerState,
    Progress, Report, ReportKind, Timestamp,
};

const HOSTS: [&str; 6] = ["c1", "c2", "c3", "c4", "c5", "c6"];

fn config() -> RecoveryConfig {
    let mut cfg = RecoveryConfig::default();
    cfg.strikes = 3;
    // The pause before listing (two daemons racing) has tests of its own.
    cfg.isolation_settle = Duration::ZERO;
    cfg.storm.max_hosts = 2;
    cfg.storm.max_fraction = 0.5;
    cfg.storm.max_new_fencings_per_cycle = 1;
    cfg.storm.cooldown = Duration::from_secs(60);
    cfg.fencing.poll_interval = Duration::from_secs(1);
    cfg.fencing.confirm_timeout = Duration::from_secs(10);
    cfg.evacuation.concurrency = 8;
    cfg.evacuation.attempts = 2;
    cfg.evacuation.retry_delay = Duration::from_secs(5);
    cfg.evacuation.poll_interval = Duration::from_secs(2);
    cfg.evacuation.timeout = Duration::from_secs(300);
    cfg.policy.local_root_disk = LocalRootDisk::Evacuate;
    cfg.step_retry = Duration::from_secs(30);
    cfg
}

fn instance(id: &str, host: &str) -> Instance {
    Instance {
        id: id.into(),
        name: format!("vm-{id}"),
        project: format!("p-{id}"),
        user: "u".into(),
        status: "ACTIVE".into(),
        host: host.into(),
        metadata: Default::default(),
        volume_backed: true,
    }
}

fn fail(kind: ErrorKind) -> Failure {
    Failure::new(kind, "boom")
}

/// A test bench: an engine, a clock, and commands rendered as short strings.
struct Bench {
    engine: Engine,
    now: Timestamp,
    hosts: Vec<&'static str>,
    /// Hosts that stay dead in every observation (besides those passed in).
    dead: Vec<&'static str>,
}

impl Bench {
    fn new(cfg: RecoveryConfig, levels: usize) -> Self {
        Self {
            engine: Engine::new(cfg, levels),
            now: Timestamp(1_000_000),
            hosts: HOSTS.to_vec(),
            dead: Vec::new(),
        }
    }

    fn default() -> Self {
        Self::new(config(), 2)
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.after(Duration::from_secs(secs));
    }

    fn raw(&mut self, input: Input) -> Vec<Command> {
        self.engine.step(self.now, input)
    }

    fn step(&mut self, input: Input) -> Vec<String> {
        let cmds = self.raw(input);
        cmds.iter().map(render).collect()
    }

    fn observe(&mut self, down: &[&str]) -> Vec<String> {
        let obs = self
            .hosts
            .iter()
            .map(|h| {
                let health = if down.contains(h) || self.dead.contains(h) {
                    Health::down("state=down")
                } else {
                    Health::Up
                };
                HostHealth::new(*h, health)
            })
            .collect();
        self.step(Input::Observed(Ok(obs)))
    }

    /// Observes `down` until the strike count is reached; returns the last step's commands.
    fn down_for_strikes(&mut self, down: &[&str]) -> Vec<String> {
        let mut last = Vec::new();
        for _ in 0..self.engine.config().strikes {
            last = self.observe(down);
            self.advance(10);
        }
        last
    }

    fn powered_off(
        &mut self,
        host: &str,
        level: usize,
        result: Result<(), Failure>,
    ) -> Vec<String> {
        self.step(Input::PoweredOff {
            host: host.into(),
            level,
            result,
        })
    }

    fn power_read(&mut self, host: &str, level: usize, state: PowerState) -> Vec<String> {
        self.step(Input::PowerRead {
            host: host.into(),
            level,
            result: Ok(state),
        })
    }

    fn isolated(&mut self, host: &str) -> Vec<String> {
        self.step(Input::Isolated {
            host: host.into(),
            result: Ok(()),
        })
    }

    fn listed(&mut self, host: &str, instances: Vec<Instance>) -> Vec<String> {
        self.step(Input::Listed {
            host: host.into(),
            result: Ok(instances),
        })
    }

    fn sent(&mut self, host: &str, id: &str, result: Result<(), Failure>) -> Vec<String> {
        self.step(Input::EvacuateSent {
            host: host.into(),
            instance: id.into(),
            result,
        })
    }

    fn progress(&mut self, host: &str, id: &str, p: Progress) -> Vec<String> {
        self.step(Input::ProgressRead {
            host: host.into(),
            instance: id.into(),
            result: Ok(p),
        })
    }

    fn done(&mut self, host: &str, id: &str, to: &str) -> Vec<String> {
        self.progress(
            host,
            id,
            Progress::Done {
                host: to.into(),
                status: "ACTIVE".into(),
            },
        )
    }

    fn stage(&self, host: &str) -> Stage {
        self.engine
            .host(&HostId::from(host))
            .map(|h| h.stage.clone())
            .unwrap_or(Stage::Healthy)
    }

    fn instance_state(&self, host: &str, id: &str) -> InstanceState {
        self.engine.host(&HostId::from(host)).unwrap().instances[id]
            .state
            .clone()
    }

    /// Observes every host up until the strike count is reached; returns the last step's commands.
    fn up_for_strikes(&mut self) -> Vec<String> {
        let n = self.engine.config().strikes;
        for i in 1..n {
            let cmds = self.observe(&[]);
            assert!(
                cmds.is_empty(),
                "up observation {i} of {n} already acted: {cmds:?}"
            );
            self.advance(10);
        }
        self.observe(&[])
    }

    /// Drives `host` from healthy to `Evacuating` with `instances`; returns the commands after listing.
    fn fence_and_list(&mut self, host: &'static str, instances: Vec<Instance>) -> Vec<String> {
        assert_eq!(
            self.down_for_strikes(&[host]),
            [format!("power_off {host} #0")]
        );
        assert_eq!(
            self.powered_off(host, 0, Ok(())),
            [format!("power_status {host} #0")]
        );
        assert_eq!(
            self.power_read(host, 0, PowerState::Off),
            [format!("isolate {host}")]
        );
        assert_eq!(self.isolated(host), [format!("list {host}")]);
        let mut cmds = self.listed(host, instances);
        assert_eq!(
            cmds.first(),
            Some(&format!("notify host_fenced {host}")),
            "{cmds:?}"
        );
        cmds.remove(0);
        cmds
    }
}

/// Commands as short strings: exact lists stay readable.
fn render(c: &Command) -> String {
    match c {
        Command::PowerOff { host, level } => format!("power_off {host} #{level}"),
        Command::PowerStatus { host, level } => format!("power_status {host} #{level}"),
        Command::Isolate { fenced } => format!("isolate {}", fenced.host()),
        Command::ListInstances { fenced } => format!("list {}", fenced.host()),
        Command::Evacuate { fenced, instance } => {
            format!("evacuate {} from {}", instance.id, fenced.host())
        }
        Command::Progress { host, instance } => format!("progress {} on {host}", instance.id),
        Command::Start { host, instance } => format!("start {} from {host}", instance.id),
        Command::Restore { host } => format!("restore {host}"),
        Command::Notify(r) => {
            let kind = serde_json::to_value(&r.kind).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned();
            match &r.host {
                Some(h) => format!("notify {kind} {h}"),
                None => format!("notify {kind}"),
            }
        }
    }
}

fn notified(cmds: &[Command]) -> Vec<&Report> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Notify(r) => Some(r),
            _ => None,
        })
        .collect()
}

// ----- the main path ---------------------------------------------------------------------------------

#[test]
fn one_host_down_is_fully_recovered_and_returned_to_service() {
    let mut b = Bench::default();
    assert!(b.observe(&["c1"]).is_empty(), "strike 1 does nothing");
    b.advance(10);
    assert!(b.observe(&["c1"]).is_empty(), "strike 2 does nothing");
    b.advance(10);
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
    assert_eq!(b.powered_off("c1", 0, Ok(())), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::On), Vec::<String>::new());
    b.advance(1);
    assert_eq!(b.step(Input::Tick), ["power_status c1 #0"]);
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
    assert_eq!(b.isolated("c1"), ["list c1"]);
    assert_eq!(
        b.listed("c1", vec![instance("a", "c1"), instance("b", "c1")]),
        [
            "notify host_fenced c1",
            "evacuate a from c1",
            "evacuate b from c1"
        ]
    );
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    assert!(b.sent("c1", "b", Ok(())).is_empty());
    b.advance(2);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1", "progress b on c1"]
    );
    assert!(b.done("c1", "a", "c2").is_empty());
    let last = b.raw(Input::ProgressRead {
        host: "c1".into(),
        instance: "b".into(),
        result: Ok(Progress::Done {
            host: "c3".into(),
            status: "ACTIVE".into(),
        }),
    });
    assert_eq!(
        last.iter().map(render).collect::<Vec<_>>(),
        ["notify recovered c1"]
    );
    let report = notified(&last)[0];
    assert_eq!(report.audience, Audience::OperatorsAndUsers);
    assert_eq!(report.projects(), ["p-a", "p-b"]);
    assert_eq!(
        report.instances[0].outcome,
        Outcome::Evacuated {
            to: "c2".into(),
            status: "ACTIVE".into()
        }
    );
    assert_eq!(b.stage("c1"), Stage::Evacuated);

    // Still dead: nothing. Repaired (heartbeat back, still forced down) for the strike count: restore.
    b.advance(10);
    assert!(b.observe(&["c1"]).is_empty());
    b.advance(10);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    assert_eq!(
        b.step(Input::Restored {
            host: "c1".into(),
            result: Ok(())
        }),
        ["notify restored c1"]
    );
    assert_eq!(b.stage("c1"), Stage::Healthy);
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert!(rec.fence.is_none() && rec.recovery.is_none() && rec.instances.is_empty());
    assert!(
        b.engine
            .take_changes()
            .clear_instances
            .contains(&"c1".into())
    );
}

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
    let mut obs: Vec<HostHealth> = HOSTS
        .iter()
        .map(|h| HostHealth::new(*h, Health::Up))
        .collect();
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

// ----- fencing -------------------------------------------------------------------------------------------

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

// ----- the storm guard -------------------------------------------------------------------------------

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
    let mut cfg = config();
    cfg.storm.max_hosts = 100;
    cfg.storm.max_fraction = 0.25;
    let mut b = Bench::new(cfg, 1);
    // 2 of 6 = 33% > 25%.
    assert_eq!(b.down_for_strikes(&["c1", "c2"]), ["notify storm"]);
    // 1 of 6 = 16% would have been fine.
    let mut cfg = config();
    cfg.storm.max_fraction = 0.25;
    let mut b = Bench::new(cfg, 1);
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
    let mut cfg = config();
    cfg.storm.max_hosts = 3;
    cfg.storm.max_fraction = 1.0;
    let mut b = Bench::new(cfg, 1);
    assert_eq!(b.down_for_strikes(&["c2", "c1"]), ["power_off c1 #0"]);
    assert_eq!(b.observe(&["c1", "c2"]), ["power_off c2 #0"]);
}

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
fn a_failed_observation_is_no_information_and_is_reported_once_per_episode() {
    let mut b = Bench::default();
    b.observe(&["c1"]);
    b.advance(10);
    b.observe(&["c1"]);
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
fn hosts_disabled_by_an_operator_are_left_alone_and_not_counted() {
    let mut b = Bench::default();
    let obs = |down: bool| {
        let mut v: Vec<HostHealth> = HOSTS
            .iter()
            .map(|h| HostHealth::new(*h, Health::Up))
            .collect();
        for h in v.iter_mut().take(3) {
            h.health = Health::down("maintenance");
            h.admin = AdminState {
                disabled: true,
                disabled_reason: Some("kernel upgrade".into()),
                forced_down: false,
            };
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

#[test]
fn a_host_carrying_our_marker_without_a_journal_record_needs_an_operator() {
    let mut b = Bench::default();
    let mut obs: Vec<HostHealth> = HOSTS
        .iter()
        .map(|h| HostHealth::new(*h, Health::Up))
        .collect();
    obs[0].health = Health::down("forced down");
    obs[0].admin = AdminState {
        disabled: true,
        disabled_reason: Some(crate::isolation_marker("j1", "c1@1", Timestamp(5))),
        forced_down: true,
    };
    // The operators are told (this report was dropped before).
    assert_eq!(
        b.step(Input::Observed(Ok(obs))),
        ["notify needs_operator c1"]
    );
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

// ----- evacuation ----------------------------------------------------------------------------------------

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
    assert!(
        b.progress(
            "c1",
            "a",
            Progress::InProgress {
                detail: "rebuilding".into()
            }
        )
        .is_empty()
    );
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Rebuilding { .. }
    ));
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

trait Permanent {
    fn clone_permanent(self) -> Self;
}
impl Permanent for Failure {
    fn clone_permanent(mut self) -> Self {
        self.retry = crate::Retry::Permanent;
        self
    }
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
                all.extend(b.progress(
                    "c1",
                    "a",
                    Progress::InProgress {
                        detail: "rebuilding".into(),
                    },
                ));
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
    let mut cfg = config();
    cfg.evacuation.concurrency = 2;
    let mut b = Bench::new(cfg, 1);
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
    assert!(
        b.progress(
            "c1",
            "b",
            Progress::InProgress {
                detail: "spawning".into()
            }
        )
        .is_empty()
    );
}

#[test]
fn an_instance_deleted_meanwhile_is_gone_not_failed() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    assert_eq!(
        b.progress("c1", "a", Progress::Gone),
        ["notify recovered c1"]
    );
    assert_eq!(b.instance_state("c1", "a"), InstanceState::Gone);
}

#[test]
fn done_on_the_failed_host_itself_is_not_success() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.advance(2);
    b.step(Input::Tick);
    assert!(b.done("c1", "a", "c1").is_empty());
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Pending { .. }
    ));
}

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
    let mut cfg = config();
    cfg.policy.local_root_disk = LocalRootDisk::Skip;
    let mut b = Bench::new(cfg, 1);
    let mut out = instance("out", "c1");
    out.metadata
        .insert("freezer_dr:evacuate".into(), "False".into());
    let mut paused = instance("paused", "c1");
    paused.status = "PAUSED".into();
    let mut local = instance("local", "c1");
    local.volume_backed = false;
    let mut keep = instance("keep", "c1");
    keep.metadata
        .insert("freezer_dr:evacuate".into(), "yes".into());
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
    let mut cfg = config();
    cfg.policy.mode = PolicyMode::OptIn;
    let mut b = Bench::new(cfg, 1);
    let mut yes = instance("yes", "c1");
    yes.metadata
        .insert("freezer_dr:evacuate".into(), "true".into());
    let mut no = instance("no", "c1");
    no.metadata
        .insert("freezer_dr:evacuate".into(), "maybe".into());
    let cmds = b.fence_and_list("c1", vec![yes, no, instance("none", "c1")]);
    assert_eq!(cmds, ["evacuate yes from c1"]);
}

#[test]
fn a_host_with_no_instances_is_reported_to_operators_only() {
    let mut b = Bench::default();
    let cmds = b.fence_and_list("c1", vec![]);
    assert_eq!(cmds, ["notify recovered c1"]);
}

// ----- return to service -----------------------------------------------------------------------------

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
    let mut cfg = config();
    cfg.return_to_service = ReturnToService::Manual;
    let mut b = Bench::new(cfg, 1);
    b.fence_and_list("c1", vec![]);
    let mut forced: Vec<HostHealth> = HOSTS
        .iter()
        .map(|h| HostHealth::new(*h, Health::Up))
        .collect();
    forced[0].admin = AdminState {
        disabled: true,
        disabled_reason: Some(crate::isolation_marker("j1", "c1@1", Timestamp(1))),
        forced_down: true,
    };
    assert!(b.step(Input::Observed(Ok(forced))).is_empty());
    assert_eq!(b.stage("c1"), Stage::Evacuated);
    assert!(b.observe(&[]).is_empty());
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

#[test]
fn a_failed_restore_is_retried_later_and_the_operators_told_after_three() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    assert_eq!(b.up_for_strikes(), ["restore c1"]);
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(b.step(Input::Restored {
            host: "c1".into(),
            result: Err(fail(ErrorKind::PeerFailure)),
        }));
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
fn a_temporary_isolation_failure_is_retried_after_the_step_delay() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
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

// ----- operators -------------------------------------------------------------------------------------

#[test]
fn paused_engine_observes_and_reports_but_never_fences() {
    let mut b = Bench::default();
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Pause {
            reason: "network work".into()
        })),
        ["notify brake"]
    );
    let mut all = Vec::new();
    for _ in 0..6 {
        all.extend(b.observe(&["c1"]));
        b.advance(10);
    }
    assert_eq!(all, ["notify brake c1"], "one report per host per pause");
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Resume)),
        ["notify brake"]
    );
    assert_eq!(b.observe(&["c1"]), ["power_off c1 #0"]);
}

#[test]
fn pause_mid_recovery_holds_destructive_steps_but_keeps_reading() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1"), instance("b", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "x".into(),
    }));
    b.sent("c1", "b", Err(fail(ErrorKind::NotFound).clone_permanent()));
    b.advance(10);
    assert_eq!(
        b.step(Input::Tick),
        ["progress a on c1"],
        "reads go on, no new evacuation"
    );
    assert!(matches!(
        b.instance_state("c1", "b"),
        InstanceState::Pending { .. }
    ));
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Resume)),
        ["notify brake", "evacuate b from c1"]
    );
}

#[test]
fn operator_recover_fences_a_host_without_waiting_for_strikes_and_still_verifies() {
    let mut b = Bench::default();
    b.observe(&[]);
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Recover {
            host: "c2".into(),
            despite_storm: false,
        })),
        ["power_off c2 #0"]
    );
    assert_eq!(b.powered_off("c2", 0, Ok(())), ["power_status c2 #0"]);
    // A second request while it runs is refused (one recovery per host).
    assert!(
        b.step(Input::Operator(OperatorRequest::Recover {
            host: "c2".into(),
            despite_storm: false,
        }))
        .is_empty()
    );
    assert!(matches!(b.stage("c2"), Stage::Verifying { .. }));
    // Unknown hosts are refused, not created.
    assert!(
        b.step(Input::Operator(OperatorRequest::Recover {
            host: "c22".into(),
            despite_storm: false,
        }))
        .is_empty()
    );
    assert!(b.engine.host(&"c22".into()).is_none());
}

#[test]
fn operator_confirm_off_lets_a_host_with_unconfirmed_fencing_continue() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::ConfirmOff {
            host: "c1".into()
        })),
        ["isolate c1"]
    );
    let rec = b.engine.host(&"c1".into()).unwrap();
    assert_eq!(rec.fence.as_ref().unwrap().proof, FenceProof::Operator);
    // Confirming again changes nothing.
    assert!(
        b.step(Input::Operator(OperatorRequest::ConfirmOff {
            host: "c1".into()
        }))
        .is_empty()
    );
}

#[test]
fn recover_after_a_post_fencing_failure_reads_the_power_then_resumes_from_isolation() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.step(Input::Isolated {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Recover {
            host: "c1".into(),
            despite_storm: false,
        })),
        ["power_status c1 #0"]
    );
    assert_eq!(b.power_read("c1", 0, PowerState::Off), ["isolate c1"]);
}

#[test]
fn a_never_isolated_host_that_comes_back_is_healthy_again() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    assert!(b.observe(&[]).is_empty());
    assert_eq!(b.stage("c1"), Stage::Healthy);
}

// ----- journal and restart ---------------------------------------------------------------------------

fn restart(b: &mut Bench) {
    let hosts: Vec<HostRecord> = b.engine.hosts().cloned().collect();
    let snapshot = Snapshot {
        journal_id: b.engine.journal_id.clone(),
        meta: b.engine.meta().clone(),
        hosts,
    };
    b.engine = Engine::from_snapshot(b.engine.config().clone(), 2, snapshot);
}

#[test]
fn the_power_off_intent_is_recorded_before_the_command_leaves() {
    let mut b = Bench::default();
    b.observe(&["c1"]);
    b.advance(10);
    b.observe(&["c1"]);
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
    assert!(
        b.progress(
            "c1",
            "a",
            Progress::InProgress {
                detail: "rebuilding".into()
            }
        )
        .is_empty()
    );
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
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "x".into(),
    }));
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
fn next_wakeup_tracks_polls_and_deadlines() {
    let mut b = Bench::default();
    assert_eq!(b.engine.next_wakeup(), None);
    b.down_for_strikes(&["c1"]);
    assert_eq!(b.engine.next_wakeup(), None, "power-off in flight");
    b.powered_off("c1", 0, Ok(()));
    assert_eq!(b.engine.next_wakeup(), None, "status read in flight");
    b.power_read("c1", 0, PowerState::On);
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(1)))
    );
    b.advance(1);
    b.step(Input::Tick);
    b.power_read("c1", 0, PowerState::Off);
    b.isolated("c1");
    b.listed("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Err(fail(ErrorKind::Conflict).clone_permanent()));
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(5)))
    );
    b.advance(5);
    b.step(Input::Tick);
    b.sent("c1", "a", Ok(()));
    assert_eq!(
        b.engine.next_wakeup(),
        Some(b.now.after(Duration::from_secs(2)))
    );
}

#[test]
fn is_settled_only_when_no_recovery_is_mid_way() {
    let mut b = Bench::default();
    assert!(b.engine.is_settled());
    b.down_for_strikes(&["c1"]);
    assert!(!b.engine.is_settled());
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.isolated("c1");
    b.listed("c1", vec![]);
    assert!(b.engine.is_settled());
}

#[test]
fn report_ids_are_unique_and_history_records_transitions() {
    let mut b = Bench::default();
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "a".into(),
    }));
    b.step(Input::Operator(OperatorRequest::Resume));
    let c = b.engine.take_changes();
    assert_eq!(c.meta.as_ref().unwrap().report_seq, 2);
    assert!(
        c.history
            .iter()
            .any(|h| h.what.contains("paused by an operator: a"))
    );
    let mut b = Bench::default();
    let cmds = b.raw(Input::Operator(OperatorRequest::Pause {
        reason: "a".into(),
    }));
    let mut ids: Vec<String> = notified(&cmds).iter().map(|r| r.id.clone()).collect();
    let cmds = b.raw(Input::Operator(OperatorRequest::Resume));
    ids.extend(notified(&cmds).iter().map(|r| r.id.clone()));
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
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

// ----- boundaries and bookkeeping (each pins a decision a careless edit would flip) --------------------

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
fn an_empty_observation_is_not_every_host_stale() {
    let mut b = Bench::default();
    b.hosts.clear();
    assert!(b.observe(&[]).is_empty());
    assert!(!b.engine.meta().stale_alerted);
}

#[test]
fn exactly_the_absolute_budget_is_still_within_it() {
    let mut cfg = config();
    cfg.storm.max_hosts = 2;
    cfg.storm.max_fraction = 1.0;
    cfg.storm.max_new_fencings_per_cycle = 2;
    let mut b = Bench::new(cfg, 1);
    assert_eq!(
        b.down_for_strikes(&["c1", "c2"]),
        ["power_off c1 #0", "power_off c2 #0"]
    );
}

#[test]
fn exactly_the_fraction_budget_is_still_within_it() {
    let mut cfg = config();
    cfg.storm.max_hosts = 10;
    cfg.storm.max_fraction = 0.5;
    let mut b = Bench::new(cfg, 1);
    assert_eq!(b.down_for_strikes(&["c1", "c2", "c3"]), ["power_off c1 #0"]);
}

#[test]
fn strikes_stop_at_the_strike_count_while_fencing_waits() {
    let mut b = Bench::default();
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "x".into(),
    }));
    for _ in 0..6 {
        b.observe(&["c1"]);
        b.advance(10);
    }
    assert!(matches!(b.stage("c1"), Stage::Suspect { strikes: 3, .. }));
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
    let mut cfg = config();
    cfg.policy.mode = PolicyMode::OptIn;
    let mut b = Bench::new(cfg, 1);
    let mut yes = instance("yes", "c1");
    yes.metadata
        .insert("freezer_dr:evacuate".into(), "1".into());
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
fn a_host_isolated_before_needing_an_operator_stays_put_when_it_comes_back() {
    let mut b = Bench::default();
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
    b.step(Input::Isolated {
        host: "c1".into(),
        result: Err(fail(ErrorKind::Auth)),
    });
    assert!(b.observe(&[]).is_empty());
    assert!(matches!(b.stage("c1"), Stage::NeedsOperator { .. }));
}

#[test]
fn recover_after_failed_fencing_fences_again_from_the_first_level() {
    let mut b = Bench::new(config(), 1);
    b.down_for_strikes(&["c1"]);
    b.dead.push("c1");
    b.powered_off("c1", 0, Err(fail(ErrorKind::Auth)));
    // Its power is read first (a recover never trusts what it knew before)...
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Recover {
            host: "c1".into(),
            despite_storm: false,
        })),
        ["power_status c1 #0"]
    );
    // ...and it is powered off again from the first level as it reads on.
    assert_eq!(b.power_read("c1", 0, PowerState::On), ["power_off c1 #0"]);
}

#[test]
fn duplicate_instance_results_are_ignored() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    assert!(b.sent("c1", "a", Ok(())).is_empty());
    // A second answer to the same request (not in flight any more) changes nothing.
    assert!(b.sent("c1", "a", Err(fail(ErrorKind::NotFound))).is_empty());
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Rebuilding { .. }
    ));
    assert!(
        b.done("c1", "a", "c2").is_empty(),
        "no progress read was in flight"
    );
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Rebuilding { .. }
    ));
}

#[test]
fn the_evacuation_timeout_counts_from_the_request_even_across_a_restart() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.advance(200);
    restart(&mut b);
    assert_eq!(b.step(Input::Tick), ["progress a on c1"]);
    b.progress(
        "c1",
        "a",
        Progress::InProgress {
            detail: "rebuilding".into(),
        },
    );
    b.advance(100);
    assert_eq!(
        b.step(Input::Tick),
        ["notify recovered c1"],
        "300 s since the request"
    );
}

#[test]
fn progress_reads_that_change_nothing_are_not_journaled() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    b.sent("c1", "a", Ok(()));
    b.engine.take_changes();
    b.advance(2);
    b.step(Input::Tick);
    b.progress(
        "c1",
        "a",
        Progress::InProgress {
            detail: "spawning".into(),
        },
    );
    assert_eq!(
        b.engine.take_changes().instances.len(),
        1,
        "a new detail is journaled"
    );
    b.advance(2);
    b.step(Input::Tick);
    b.progress(
        "c1",
        "a",
        Progress::InProgress {
            detail: "spawning".into(),
        },
    );
    assert!(
        b.engine.take_changes().instances.is_empty(),
        "the same detail is not"
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

#[test]
fn manual_return_to_service_needs_both_enabled_and_not_forced_down() {
    let mut cfg = config();
    cfg.return_to_service = ReturnToService::Manual;
    let mut b = Bench::new(cfg, 1);
    b.fence_and_list("c1", vec![]);
    let with_admin = |disabled: bool, forced_down: bool| {
        let mut v: Vec<HostHealth> = HOSTS
            .iter()
            .map(|h| HostHealth::new(*h, Health::Up))
            .collect();
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
fn a_stray_evacuation_answer_after_a_restart_is_ignored() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![instance("a", "c1")]);
    restart(&mut b);
    // The answer to the request the dead runtime sent must not be taken for this runtime's.
    assert_eq!(b.sent("c1", "a", Ok(())), ["progress a on c1"]);
    assert!(matches!(
        b.instance_state("c1", "a"),
        InstanceState::Requested { .. }
    ));
}

#[test]
fn paused_engine_does_not_return_a_repaired_host_to_service() {
    let mut b = Bench::default();
    b.fence_and_list("c1", vec![]);
    b.step(Input::Operator(OperatorRequest::Pause {
        reason: "x".into(),
    }));
    assert!(b.up_for_strikes().is_empty());
    assert_eq!(b.stage("c1"), Stage::Restoring);
    assert_eq!(
        b.step(Input::Operator(OperatorRequest::Resume)),
        ["notify brake", "restore c1"]
    );
}

#[test]
fn the_started_report_lists_each_instance_and_what_the_policy_decided() {
    let mut cfg = config();
    cfg.policy.local_root_disk = LocalRootDisk::Skip;
    let mut b = Bench::new(cfg, 1);
    b.down_for_strikes(&["c1"]);
    b.powered_off("c1", 0, Ok(()));
    b.power_read("c1", 0, PowerState::Off);
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

mod hardening;
