//! Engine scenarios: exact command lists for each situation (openraft style).
//!
//! This file holds the bench (an engine, a clock, commands rendered as short strings) and the helpers the
//! scenarios share; the scenarios live in one file per behaviour: `main_path`, `detection` (strikes,
//! storm, an untrustworthy picture, vanished hosts), `fencing` (levels, the fence proof), `evacuation`
//! (isolation, listing, policy, each instance to its end), `restore`, `operator` (requests), `journal`
//! (write-ahead, restart, what is written), `waiting` (wake-ups, shutdown) and `one_actor`. Many come from
//! the safety review (issue 11) or from mutants: each is named after the behaviour it guards.
#![allow(clippy::field_reassign_with_default)]

use std::time::Duration;

use super::*;
use crate::engine::policy::{LocalRootDisk, PolicyMode, ReturnToService};
use crate::{
    AdminState, Audience, ErrorKind, Failure, Health, HostHealth, Instance, Outcome, PowerState,
    Progress, Report, ReportKind, Timestamp,
};

const HOSTS: [&str; 6] = ["c1", "c2", "c3", "c4", "c5", "c6"];

/// The engine scenarios' own `[recovery]`, not `testing::fast_recovery()`: the exact command lists below
/// are pinned to these values (3 strikes, a budget of 2 hosts, seconds on the bench's clock), and the
/// engine may not reach the `testing` layer above it (`tests/layers.rs` reads these files too).
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

/// An instance of c1 whose `freezer_dr:evacuate` metadata says `evacuate`.
fn opted(id: &str, evacuate: &str) -> Instance {
    let mut i = instance(id, "c1");
    i.metadata
        .insert("freezer_dr:evacuate".into(), evacuate.into());
    i
}

/// The admin state of a host disabled with `reason`, forced down or not.
fn disabled(reason: &str, forced_down: bool) -> AdminState {
    AdminState {
        disabled: true,
        disabled_reason: Some(reason.into()),
        forced_down,
    }
}

/// What a driver answers when another actor recovers the host or instance: `why`.
fn other_actor(why: &str) -> Failure {
    Failure::new(ErrorKind::OtherActor, why)
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

    /// A bench with `levels` fencers and the scenarios' `[recovery]` changed by `tune`.
    fn with(levels: usize, tune: impl FnOnce(&mut RecoveryConfig)) -> Self {
        let mut cfg = config();
        tune(&mut cfg);
        Self::new(cfg, levels)
    }

    fn default() -> Self {
        Self::new(config(), 2)
    }

    fn advance(&mut self, secs: u64) {
        self.now = self.now.after(Duration::from_secs(secs));
    }

    /// One step, checked against the full scan: the same commands, state and next wake-up as the
    /// engine without its work index, and an index that matches one rebuilt from scratch.
    fn raw(&mut self, input: Input) -> Vec<Command> {
        let mut reference = self.engine.clone();
        reference.by_scan = true;
        let want = reference.step(self.now, input.clone());
        let cmds = self.engine.step(self.now, input);
        assert_eq!(
            cmds, want,
            "the work index drove other commands than a full scan"
        );
        assert_eq!(self.engine.hosts, reference.hosts, "state after the step");
        assert_eq!(
            self.engine.history, reference.history,
            "history of the step"
        );
        assert_eq!(self.engine.next_wakeup(), reference.next_wakeup_by_scan());
        assert_eq!(self.engine.is_settled(), reference.is_settled_by_scan());
        self.engine.check_work();
        cmds
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

    /// What the monitors report when every host of the bench is up (a test then edits the hosts it is
    /// about).
    fn all_up(&self) -> Vec<HostHealth> {
        self.hosts
            .iter()
            .map(|h| HostHealth::new(*h, Health::Up))
            .collect()
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

    /// The isolation of `host` answered with `result`.
    fn isolated_with(&mut self, host: &str, result: Result<(), Failure>) -> Vec<String> {
        self.step(Input::Isolated {
            host: host.into(),
            result,
        })
    }

    /// The return to service of `host` answered with `result`.
    fn restored(&mut self, host: &str, result: Result<(), Failure>) -> Vec<String> {
        self.step(Input::Restored {
            host: host.into(),
            result,
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

    /// A progress read of `id`: still under way, at `detail`.
    fn in_progress(&mut self, host: &str, id: &str, detail: &str) -> Vec<String> {
        let detail = detail.into();
        self.progress(host, id, Progress::InProgress { detail })
    }

    fn done(&mut self, host: &str, id: &str, to: &str) -> Vec<String> {
        self.step(read_done(host, id, to))
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

    /// Observes `host` down one time short of the strike count, 10 s apart (the next down observation
    /// is the last strike).
    fn down_short_of_strikes(&mut self, host: &str) {
        self.observe(&[host]);
        for _ in 2..self.engine.config().strikes {
            self.advance(10);
            self.observe(&[host]);
        }
    }

    /// The name of the state `id` is at (`pending`, `rebuilding`...).
    fn instance_at(&self, host: &str, id: &str) -> &'static str {
        self.instance_state(host, id).name()
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

    /// Drives `host` from healthy to confirmed off (`Isolating`): down for the strike count, the power-off
    /// accepted, the power read off (answers unchecked).
    fn confirmed_off(&mut self, host: &str) {
        self.down_for_strikes(&[host]);
        self.powered_off(host, 0, Ok(()));
        self.power_read(host, 0, PowerState::Off);
    }

    /// Drives `host` to confirmed off, then has its isolation refused (an auth failure): it needs an
    /// operator, and holds a fence proof.
    fn isolation_refused(&mut self, host: &str) {
        self.confirmed_off(host);
        self.isolated_with(host, Err(fail(ErrorKind::Auth)));
        assert!(matches!(self.stage(host), Stage::NeedsOperator { .. }));
    }

    /// Reads `host`'s power off through the first fencer; returns the proof its isolation carries.
    fn proof(&mut self, host: &str) -> Fenced {
        let cmds = self.raw(Input::PowerRead {
            host: host.into(),
            level: 0,
            result: Ok(PowerState::Off),
        });
        let Some(Command::Isolate { fenced }) = cmds.first() else {
            panic!("{cmds:?}")
        };
        fenced.clone()
    }

    /// Drives `host` to `Evacuating` with the one instance `id`, its evacuation accepted and its first
    /// progress read sent (that answer is left to the test).
    fn rebuilding(&mut self, host: &'static str, id: &str) {
        self.fence_and_list(host, vec![instance(id, host)]);
        self.sent(host, id, Ok(()));
        self.advance(2);
        self.step(Input::Tick);
    }

    /// Drives `host` through a recovery with no instances until it is repaired: up for the strike count,
    /// its return to service sent.
    fn restoring(&mut self, host: &'static str) {
        self.fence_and_list(host, vec![]);
        assert_eq!(self.up_for_strikes(), [format!("restore {host}")]);
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

/// A progress read of `id` (evacuated from `host`): done, active on `to`.
fn read_done(host: &str, id: &str, to: &str) -> Input {
    Input::ProgressRead {
        host: host.into(),
        instance: id.into(),
        result: Ok(Progress::Done {
            host: to.into(),
            status: "ACTIVE".into(),
        }),
    }
}

/// The reports among `cmds`.
fn notified(cmds: &[Command]) -> Vec<&Report> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Notify(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// The same failure, but permanent (a refusal rather than a glitch).
trait Permanent {
    fn clone_permanent(self) -> Self;
}

impl Permanent for Failure {
    fn clone_permanent(mut self) -> Self {
        self.retry = crate::Retry::Permanent;
        self
    }
}

/// A restart: a new engine from what the journal holds (the hosts, the engine-wide state).
fn restart(b: &mut Bench) {
    let hosts: Vec<HostRecord> = b.engine.hosts().cloned().collect();
    let snapshot = Snapshot {
        journal_id: b.engine.journal_id.clone(),
        meta: b.engine.meta().clone(),
        hosts,
    };
    b.engine = Engine::from_snapshot(b.engine.config().clone(), 2, snapshot);
}

/// An operator's `recover HOST` (without `--despite-storm`).
fn recover(host: &str) -> Input {
    Input::Operator(OperatorRequest::Recover {
        host: host.into(),
        despite_storm: false,
    })
}

/// An operator's `recover --despite-storm HOST`.
fn recover_despite_storm(host: &str) -> Input {
    Input::Operator(OperatorRequest::Recover {
        host: host.into(),
        despite_storm: true,
    })
}

/// An operator's `pause` (the brake), with `reason`.
fn pause(reason: &str) -> Input {
    Input::Operator(OperatorRequest::Pause {
        reason: reason.into(),
    })
}

/// An operator's `resume`.
fn resume() -> Input {
    Input::Operator(OperatorRequest::Resume)
}

/// An operator's `confirm-off HOST`.
fn confirm_off(host: &str) -> Input {
    Input::Operator(OperatorRequest::ConfirmOff { host: host.into() })
}

/// An operator's `forget HOST`.
fn forget(host: &str) -> Input {
    Input::Operator(OperatorRequest::Forget { host: host.into() })
}

mod detection;
mod evacuation;
mod fencing;
mod journal;
mod main_path;
mod monitors;
mod one_actor;
mod operator;
mod reference;
mod restore;
mod waiting;
