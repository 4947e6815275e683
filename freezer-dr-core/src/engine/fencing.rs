//! Fencing: power off, read the power status until it reads off (through the next fencing level when one
//! fails), mint the fence proof; and void that proof when the host is seen alive again (DESIGN §5.8).

use super::state::HostCall;
use super::{Command, Engine, FenceProof, FenceRecord, Stage};
use crate::{Failure, Health, HostId, PowerState, ReportKind, Timestamp};

impl Engine {
    pub(super) fn powered_off(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        // The in-flight call carries the level; only the stage may have moved on (an operator confirmed
        // the host off meanwhile).
        let made_for = |s: &Stage| matches!(s, Stage::Fencing { .. });
        if !self.take_answer(host, HostCall::PowerOff(level), made_for) {
            return;
        }
        match result {
            Ok(()) => self.verify(
                now,
                host,
                level,
                now,
                None,
                format!("fencer[{level}] accepted the power-off: verifying"),
            ),
            Err(f) => self.next_level(
                now,
                host,
                level,
                format!("fencer[{level}] could not power it off: {f}"),
                out,
            ),
        }
    }

    pub(super) fn power_read(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        result: Result<PowerState, Failure>,
    ) {
        if !self.take_pending(host, HostCall::PowerStatus(level)) {
            return;
        }
        let Some(stage) = self.stage_of(host).cloned() else {
            return;
        };
        match stage {
            // Re-check after a restart: a power-off may or may not have been sent.
            Stage::Fencing {
                attempted: true, ..
            } => match result {
                Ok(PowerState::Off) => self.confirm(now, host, FenceProof::PowerStatus { level }),
                Ok(state) => self.set_stage(
                    now,
                    host,
                    Stage::Fencing {
                        level,
                        attempted: false,
                    },
                    format!("power status reads {state}: powering it off"),
                ),
                Err(f) => self.verify(
                    now,
                    host,
                    level,
                    now.after(self.cfg.fencing.poll_interval),
                    Some(format!("unreadable: {f}")),
                    format!("power status unreadable after a restart: verifying ({f})"),
                ),
            },
            Stage::Verifying { deadline, .. } => match result {
                Ok(PowerState::Off) => self.confirm(now, host, FenceProof::PowerStatus { level }),
                other => {
                    let last = match other {
                        Ok(state) => format!("reads {state}"),
                        Err(f) => format!("unreadable: {f}"),
                    };
                    let next_poll = now.after(self.cfg.fencing.poll_interval);
                    if let Some(rec) = self.host_mut(host) {
                        rec.stage = Stage::Verifying {
                            level,
                            deadline,
                            next_poll,
                            last: Some(last),
                        };
                    }
                }
            },
            _ => {}
        }
    }

    /// Into `Verifying` at `level`: from now on its power status has `confirm_timeout` to read off.
    fn verify(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        next_poll: Timestamp,
        last: Option<String>,
        what: String,
    ) {
        let deadline = now.after(self.cfg.fencing.confirm_timeout);
        let stage = Stage::Verifying {
            level,
            deadline,
            next_poll,
            last,
        };
        self.set_stage(now, host, stage, what);
    }

    /// Fenced again from the first level, its power read first (it is powered off again if it reads on):
    /// a fence proof from before is never reused.
    pub(super) fn read_power_first(
        &mut self,
        now: Timestamp,
        host: &HostId,
        what: impl Into<String>,
    ) {
        let stage = Stage::Fencing {
            level: 0,
            attempted: true,
        };
        self.set_stage(now, host, stage, what);
    }

    /// Gives up a fencing level: the next level, or a person when none is left.
    pub(super) fn next_level(
        &mut self,
        now: Timestamp,
        host: &HostId,
        level: usize,
        why: String,
        out: &mut Vec<Command>,
    ) {
        if level + 1 < self.levels {
            self.set_stage(
                now,
                host,
                Stage::Fencing {
                    level: level + 1,
                    attempted: false,
                },
                format!("{why}; trying fencer[{}]", level + 1),
            );
        } else {
            self.note(now, Some(host), None, why.clone());
            self.needs_operator(
                now,
                host,
                format!(
                    "fencing not confirmed ({why}); nothing was isolated or evacuated. Check the host \
                     and its power controller, then `freezer-dr confirm-off {host}` if it is off"
                ),
                out,
            );
        }
    }

    /// Mints the proof: the only way into isolation.
    pub(super) fn confirm(&mut self, now: Timestamp, host: &HostId, proof: FenceProof) {
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        let recovery = rec
            .recovery
            .get_or_insert_with(|| format!("{host}@{}", now.as_millis()))
            .clone();
        let how = match &proof {
            FenceProof::PowerStatus { level } => {
                format!("power status read off through fencer[{level}]")
            }
            FenceProof::Operator => "an operator confirmed it is off".to_owned(),
        };
        rec.fence = Some(FenceRecord {
            at: now,
            proof,
            recovery,
        });
        self.set_stage(
            now,
            host,
            Stage::Isolating { isolated: false },
            format!("confirmed off ({how}): isolating"),
        );
    }

    /// A fence proof is only as old as the last sign of life (DESIGN §5.8): a fenced host that reports up
    /// again loses its proof. Mid-isolation or mid-evacuation that stops every write to it until its
    /// power is read again (and it is fenced again if on); the operators are told, as someone powered a
    /// fenced host on.
    pub(super) fn void_proof_if_alive(
        &mut self,
        now: Timestamp,
        host: &HostId,
        out: &mut Vec<Command>,
    ) {
        if !self
            .hosts
            .get(host)
            .is_some_and(|rec| rec.health == Health::Up && rec.fence.is_some())
        {
            return;
        }
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        rec.fence = None;
        let stage = rec.stage.clone();
        if matches!(stage, Stage::Isolating { .. } | Stage::Evacuating) {
            // Answers to calls in flight are ignored from here; after the power read the instances are
            // listed again and every one already requested is read, not sent again.
            for i in rec.instances.values_mut() {
                i.inflight = false;
            }
            self.work.mark_all(host);
            let why = format!(
                "seen alive after it was fenced (at stage {}): the fence proof is void; nothing more is \
                 done to it until its power reads off again (it is powered off again if it reads on)",
                stage.name()
            );
            self.read_power_first(now, host, why.clone());
            let summary = format!("{host} was seen alive after it was fenced: re-fencing it");
            let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
            r.details.push(why);
            r.details.push(
                "Someone or something powered it on (or its power controller lied): check it."
                    .into(),
            );
            out.push(Command::Notify(r));
        } else {
            self.note(
                now,
                Some(host),
                None,
                format!(
                    "reports up at stage {}: its fence proof is void (a recover reads its power first)",
                    stage.name()
                ),
            );
        }
    }
}
