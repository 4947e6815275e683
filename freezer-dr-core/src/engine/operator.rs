//! Operator requests: pause and resume (the brake), recover (with the storm guard), forget, confirm-off.

use super::{Command, Engine, FenceProof, OperatorRequest, Stage};
use crate::{HostId, ReportKind, Timestamp};

impl Engine {
    pub(super) fn operator(
        &mut self,
        now: Timestamp,
        request: OperatorRequest,
        out: &mut Vec<Command>,
    ) {
        match request {
            OperatorRequest::Pause { reason } => {
                // The brake holds writes and wake-ups: every host is filed again.
                self.refile_all();
                self.meta.paused = Some(reason.clone());
                self.meta.paused_reported.clear();
                self.meta_dirty = true;
                let summary = format!("paused by an operator: {reason}");
                self.note(now, None, None, summary.clone());
                let mut r = self.report(now, ReportKind::Brake, None, summary);
                r.details.push(
                    "Hosts are still observed and reported; nothing is fenced, isolated, evacuated or \
                     restored until `freezer-dr resume`."
                        .to_owned(),
                );
                out.push(Command::Notify(r));
            }
            OperatorRequest::Resume => {
                if self.meta.paused.take().is_some() {
                    self.refile_all();
                    self.meta.paused_reported.clear();
                    self.meta_dirty = true;
                    self.note(now, None, None, "resumed by an operator".to_owned());
                    let r = self.report(now, ReportKind::Brake, None, "resumed by an operator");
                    out.push(Command::Notify(r));
                }
            }
            OperatorRequest::Recover {
                host,
                despite_storm,
            } => self.operator_recover(now, &host, despite_storm, out),
            OperatorRequest::Forget { host } => self.operator_forget(now, &host, out),
            OperatorRequest::ConfirmOff { host } => {
                let Some(rec) = self.hosts.get(&host) else {
                    self.note(
                        now,
                        Some(&host),
                        None,
                        "operator confirmed an unknown host off: ignored".into(),
                    );
                    return;
                };
                if rec.fence.is_some() {
                    self.note(
                        now,
                        Some(&host),
                        None,
                        "operator confirmed it off: already confirmed".into(),
                    );
                    return;
                }
                match rec.stage {
                    Stage::Healthy
                    | Stage::Suspect { .. }
                    | Stage::Fencing { .. }
                    | Stage::Verifying { .. }
                    | Stage::NeedsOperator { .. } => {
                        self.confirm(now, &host, FenceProof::Operator);
                    }
                    ref other => {
                        let what = format!(
                            "operator confirmed it off at stage {}: ignored",
                            other.name()
                        );
                        self.note(now, Some(&host), None, what);
                    }
                }
            }
        }
    }

    fn operator_forget(&mut self, now: Timestamp, host: &HostId, out: &mut Vec<Command>) {
        let Some(rec) = self.hosts.get(host) else {
            return self.note(
                now,
                Some(host),
                None,
                "operator asked to forget an unknown host: ignored".into(),
            );
        };
        if rec.stage == Stage::Healthy || (rec.stage.under_way() && rec.absent_since.is_none()) {
            let what = format!(
                "operator asked to forget it at stage {}: refused (nothing to forget, or a recovery of a \
                 host the monitors list is under way: `freezer-dr pause` first)",
                rec.stage.name()
            );
            return self.note(now, Some(host), None, what);
        }
        self.forget(now, host, "forgotten by an operator", out);
    }

    fn operator_recover(
        &mut self,
        now: Timestamp,
        host: &HostId,
        despite_storm: bool,
        out: &mut Vec<Command>,
    ) {
        let Some(rec) = self.hosts.get(host) else {
            self.note(
                now,
                Some(host),
                None,
                "operator asked to recover an unknown host: ignored".into(),
            );
            return;
        };
        let stage = rec.stage.clone();
        if !matches!(
            stage,
            Stage::Healthy | Stage::Suspect { .. } | Stage::NeedsOperator { .. }
        ) {
            let what = format!(
                "operator asked to recover it, but a recovery is already at stage {}: ignored",
                stage.name()
            );
            return self.note(now, Some(host), None, what);
        }
        if let Some(why) = self.storm_refuses(host) {
            if !despite_storm {
                let summary = format!(
                    "{host}: `recover` refused: {why}. Nothing was done; `freezer-dr recover {host} \
                     --despite-storm` overrides the storm guard"
                );
                self.note(now, Some(host), None, summary.clone());
                let r = self.report(now, ReportKind::NeedsOperator, Some(host.clone()), summary);
                out.push(Command::Notify(r));
                return;
            }
            let summary = format!(
                "{host}: recovering it at an operator's request despite the storm guard: {why}"
            );
            self.note(now, Some(host), None, summary.clone());
            let mut r = self.report(now, ReportKind::Storm, Some(host.clone()), summary);
            r.details.push(
                "An operator overrode the storm budget with `recover --despite-storm`.".into(),
            );
            out.push(Command::Notify(r));
        }
        if let Stage::NeedsOperator { .. } = stage
            && self.levels > 0
        {
            // Whatever it went through before, its power is read first (it is powered off again if it
            // reads on): an old fence proof is never reused.
            if let Some(rec) = self.host_mut(host) {
                rec.fence = None;
                rec.recovery
                    .get_or_insert_with(|| format!("{host}@{}", now.as_millis()));
            }
            self.read_power_first(
                now,
                host,
                "operator asked to recover it: reading its power first",
            );
        } else {
            self.start_recovery(now, host, "requested by an operator", out);
        }
    }
}
