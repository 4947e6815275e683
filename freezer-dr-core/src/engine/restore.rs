//! Return to service: a repaired host reports up for the strike count, is restored, and is healthy again;
//! one that dies again meanwhile is fenced again, one that cannot be restored goes to the operators.

use std::time::Duration;

use super::state::HostCall;
use super::{Command, Engine, HostRecord, Stage};
use crate::engine::policy::ReturnToService;
use crate::{Failure, Health, HostId, ReportKind, Timestamp};

impl Engine {
    /// A host being returned to service, observed: down for the strike count again, it failed again and
    /// is fenced again (not during a storm); one down observation between up ones is no new failure.
    pub(super) fn observed_restoring(
        &mut self,
        now: Timestamp,
        host: &HostId,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get(host) else {
            return;
        };
        let strikes_needed = self.cfg.strikes.max(1);
        if rec.health.is_down() {
            let streak = rec.down_streak + 1;
            if streak >= strikes_needed && self.meta.storm_since.is_none() {
                self.start_recovery(
                    now,
                    host,
                    &format!("down again while being returned to service ({streak} observations in a row)"),
                    out,
                );
            } else if let Some(rec) = self.host_mut(host) {
                rec.down_streak = streak;
            }
        } else if rec.health == Health::Up
            && rec.down_streak > 0
            && let Some(rec) = self.host_mut(host)
        {
            rec.down_streak = 0;
        }
    }

    /// A host whose evacuation ended, observed: up for the strike count, it is returned to service
    /// (`auto`), or healthy again once an operator enabled it (`manual`).
    pub(super) fn observed_evacuated(&mut self, now: Timestamp, host: &HostId) {
        let Some(rec) = self.hosts.get(host) else {
            return;
        };
        if rec.health != Health::Up {
            if rec.up_streak > 0
                && let Some(rec) = self.host_mut(host)
            {
                rec.up_streak = 0;
            }
            return;
        }
        match self.cfg.return_to_service {
            ReturnToService::Auto => {
                let streak = rec.up_streak + 1;
                if streak >= self.cfg.strikes.max(1) {
                    self.set_stage(
                        now,
                        host,
                        Stage::Restoring,
                        format!("reports up again ({streak} observations in a row): returning it to service"),
                    );
                } else if let Some(rec) = self.host_mut(host) {
                    rec.up_streak = streak;
                }
            }
            ReturnToService::Manual => {
                if !rec.admin.disabled && !rec.admin.forced_down {
                    self.back_to_healthy(now, host, "enabled by an operator: healthy again");
                }
            }
        }
    }

    pub(super) fn restored(
        &mut self,
        now: Timestamp,
        host: &HostId,
        result: Result<(), Failure>,
        out: &mut Vec<Command>,
    ) {
        if !self.take_answer(host, HostCall::Restore, |s| *s == Stage::Restoring) {
            return;
        }
        match result {
            Ok(()) => {
                self.back_to_healthy(
                    now,
                    host,
                    "returned to service (forced_down unset, enabled)",
                );
                let summary = format!("{host} was repaired and returned to service");
                let r = self.report(now, ReportKind::Restored, Some(host.clone()), summary);
                out.push(Command::Notify(r));
            }
            Err(f) => self.step_failed(now, host, "returning it to service", &f, out),
        }
    }
}

/// When a host being returned to service goes to the operators if it is not back by then.
pub(super) fn restore_overdue_at(rec: &HostRecord, restore_timeout: Duration) -> Timestamp {
    rec.since.after(restore_timeout)
}

/// Why a host being returned to service goes to the operators now, if it does: it was not returned within
/// `restore_timeout` (and no call is in flight).
pub(super) fn restore_overdue(
    rec: &HostRecord,
    now: Timestamp,
    restore_timeout: Duration,
) -> Option<String> {
    (rec.stage == Stage::Restoring
        && rec.pending.is_none()
        && now.since(rec.since) >= restore_timeout)
        .then(|| {
            format!(
                "not returned to service within {}: check its nova-compute and the service record in \
                 Nova, then enable it by hand (or `freezer-dr recover` it if it is dead)",
                humantime::format_duration(restore_timeout)
            )
        })
}
