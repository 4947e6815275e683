//! What the operators and the history are told: reports, history notes, a host handed to the operators,
//! a host-level step that keeps failing.

use super::{Command, Engine, HistoryEvent, Stage};
use crate::{Audience, Failure, HostId, Report, ReportKind, Retry, Timestamp};

/// Consecutive temporary failures of a host-level step after which the operators are told (it keeps
/// being retried).
const ALERT_AFTER_FAILURES: u32 = 3;

impl Engine {
    pub(super) fn needs_operator(
        &mut self,
        now: Timestamp,
        host: &HostId,
        why: String,
        out: &mut Vec<Command>,
    ) {
        self.set_stage(
            now,
            host,
            Stage::NeedsOperator { why: why.clone() },
            why.clone(),
        );
        let summary = format!("{host} needs an operator: {why}");
        let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
        r.details = self.timeline(host);
        out.push(Command::Notify(r));
    }

    /// The host's recovery so far, one report line per step (`<time>  <what>`).
    pub(super) fn timeline(&self, host: &HostId) -> Vec<String> {
        self.hosts
            .get(host)
            .map(|r| {
                r.timeline
                    .iter()
                    .map(|(t, w)| format!("{t}  {w}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A host-level step failed even after the runtime's retries.
    pub(super) fn step_failed(
        &mut self,
        now: Timestamp,
        host: &HostId,
        doing: &str,
        f: &Failure,
        out: &mut Vec<Command>,
    ) {
        if f.retry == Retry::Permanent {
            return self.needs_operator(now, host, format!("{doing} failed: {f}"), out);
        }
        let retry_at = now.after(self.cfg.step_retry);
        let Some(rec) = self.host_mut(host) else {
            return;
        };
        rec.failures = rec.failures.saturating_add(1);
        rec.retry_at = Some(retry_at);
        let failures = rec.failures;
        let what = format!("{doing} failed ({failures} in a row), retrying at {retry_at}: {f}");
        self.note(now, Some(host), None, what.clone());
        if failures == ALERT_AFTER_FAILURES {
            let summary = format!("{host}: {doing} keeps failing; freezer-dr keeps retrying");
            let mut r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
            r.details.push(what);
            out.push(Command::Notify(r));
        }
    }

    pub(super) fn resolved(&mut self, now: Timestamp, what: &str, out: &mut Vec<Command>) {
        self.meta_dirty = true;
        self.note(now, None, None, what.to_owned());
        let r = self.report(now, ReportKind::Resolved, None, what);
        out.push(Command::Notify(r));
    }

    pub(super) fn report(
        &mut self,
        now: Timestamp,
        kind: ReportKind,
        host: Option<HostId>,
        summary: impl Into<String>,
    ) -> Report {
        self.meta.report_seq += 1;
        self.meta_dirty = true;
        let id = format!("{}-{}", now.as_millis(), self.meta.report_seq);
        Report::new(id, now, kind, Audience::Operators, host, summary)
    }

    pub(super) fn note(
        &mut self,
        now: Timestamp,
        host: Option<&HostId>,
        instance: Option<&str>,
        what: String,
    ) {
        self.history.push(HistoryEvent {
            at: now,
            host: host.cloned(),
            instance: instance.map(str::to_owned),
            what,
        });
    }

    pub(super) fn touch_instance(&mut self, now: Timestamp, host: &HostId, id: &str, what: String) {
        self.dirty_instances.insert((host.clone(), id.to_owned()));
        self.work.mark_instance(host, id);
        self.note(now, Some(host), Some(id), what);
    }
}
