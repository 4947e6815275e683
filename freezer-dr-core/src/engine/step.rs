//! The transition logic: [`Engine::step`] hands each input to its stage's handler, then [`Engine::drive`]
//! derives the due commands from the state alone (so a restart, which loses nothing but what was in
//! flight, derives the same work). The handlers live in one file per stage of the pipeline: `observe`,
//! `fencing`, `evacuation`, `restore`, `operator`; `drive` derives the commands, `report` writes what the
//! operators and the history are told. Here: the dispatch and the helpers every stage uses.

use super::state::HostCall;
use super::{Command, Engine, HostRecord, Input, InstanceRecord, Stage};
use crate::{HostId, ReportKind, Timestamp};

impl Engine {
    /// Feeds one input at time `now` and returns the commands to run next, in order.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Command> {
        let mut out = Vec::new();
        match input {
            Input::Tick => {}
            Input::Observed(Ok(hosts)) => self.observed(now, hosts, &mut out),
            Input::Observed(Err(f)) => self.observation_failed(now, &f, &mut out),
            Input::PoweredOff {
                host,
                level,
                result,
            } => self.powered_off(now, &host, level, result, &mut out),
            Input::PowerRead {
                host,
                level,
                result,
            } => self.power_read(now, &host, level, result),
            Input::Isolated { host, result } => self.isolated(now, &host, result, &mut out),
            Input::Listed { host, result } => self.listed(now, &host, result, &mut out),
            Input::EvacuateSent {
                host,
                instance,
                result,
            } => self.evacuate_sent(now, &host, &instance, result),
            Input::ProgressRead {
                host,
                instance,
                result,
            } => self.progress_read(now, &host, &instance, result),
            Input::Started {
                host,
                instance,
                result,
            } => self.started(now, &host, &instance, result),
            Input::Restored { host, result } => self.restored(now, &host, result, &mut out),
            Input::Operator(request) => self.operator(now, request, &mut out),
        }
        #[cfg(test)]
        if self.by_scan {
            self.drive_by_scan(now, &mut out);
            return out;
        }
        self.drive(now, &mut out);
        self.refile(now);
        #[cfg(debug_assertions)]
        self.check_work();
        out
    }

    pub(super) fn stage_of(&self, host: &HostId) -> Option<&Stage> {
        self.hosts.get(host).map(|h| &h.stage)
    }

    /// The host's record, marked changed: the journal writes it with the next
    /// [`take_changes`](Engine::take_changes). Every change to what is stored of a host goes through
    /// here (a missed mark loses the change after a crash; an extra one costs a write). Only what is not
    /// stored with the record is reached through `hosts.get_mut`: the call in flight (`pending`) and the
    /// instance records (journaled on their own, see [`Engine::touch_instance`]).
    pub(super) fn host_mut(&mut self, host: &HostId) -> Option<&mut HostRecord> {
        let rec = self.hosts.get_mut(host)?;
        self.dirty_hosts.insert(host.clone());
        self.work.mark(host);
        Some(rec)
    }

    pub(super) fn instance_mut(&mut self, host: &HostId, id: &str) -> Option<&mut InstanceRecord> {
        let rec = self.hosts.get_mut(host)?;
        if rec.stage != Stage::Evacuating {
            return None;
        }
        let inst = rec.instances.get_mut(id)?;
        self.work.mark_instance(host, id);
        Some(inst)
    }

    /// Clears the host's in-flight call if it is `call`; false (ignore the result) otherwise.
    pub(super) fn take_pending(&mut self, host: &HostId, call: HostCall) -> bool {
        match self.hosts.get_mut(host) {
            Some(rec) if rec.pending == Some(call) => {
                rec.pending = None;
                self.work.mark(host);
                true
            }
            _ => false,
        }
    }

    /// [`take_pending`](Self::take_pending), then true only if the host is still at the stage `call` was
    /// made for (an operator or a restart may have moved it on meanwhile): false, ignore the result.
    pub(super) fn take_answer(
        &mut self,
        host: &HostId,
        call: HostCall,
        made_for: impl FnOnce(&Stage) -> bool,
    ) -> bool {
        self.take_pending(host, call) && self.stage_of(host).is_some_and(made_for)
    }

    pub(super) fn set_stage(
        &mut self,
        now: Timestamp,
        host: &HostId,
        stage: Stage,
        what: impl Into<String>,
    ) {
        let what = what.into();
        if let Some(rec) = self.host_mut(host) {
            rec.stage = stage;
            rec.since = now;
            rec.failures = 0;
            rec.up_streak = 0;
            rec.down_streak = 0;
            rec.retry_at = None;
            if rec.recovery.is_some() {
                rec.timeline.push((now, what.clone()));
            }
        }
        self.note(now, Some(host), None, what);
    }

    pub(super) fn back_to_healthy(&mut self, now: Timestamp, host: &HostId, what: &str) {
        self.set_stage(now, host, Stage::Healthy, what);
        if let Some(rec) = self.host_mut(host) {
            rec.fence = None;
            rec.recovery = None;
            rec.timeline.clear();
        }
        self.clear_instances(host);
    }

    /// Drops the host's instance records (the journal deletes them with the next changes).
    pub(super) fn clear_instances(&mut self, host: &HostId) {
        if let Some(rec) = self.hosts.get_mut(host)
            && !rec.instances.is_empty()
        {
            rec.instances.clear();
            self.cleared.insert(host.clone());
            self.work.mark_all(host);
        }
    }

    /// Stops tracking a host's recovery: it no longer counts against the storm budget.
    pub(super) fn forget(
        &mut self,
        now: Timestamp,
        host: &HostId,
        why: &str,
        out: &mut Vec<Command>,
    ) {
        let summary =
            format!("{host} forgotten: {why}; it no longer counts against the storm budget");
        let timeline = self.timeline(host);
        self.back_to_healthy(now, host, &summary);
        if let Some(rec) = self.host_mut(host) {
            rec.absent_since = None;
        }
        let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
        r.details = timeline;
        out.push(Command::Notify(r));
    }
}
