//! From a report to the mails it calls for: which audiences are written to at its phase, who each
//! project's recipients are, one mail per project and one for the operators, and what earlier attempts
//! already told (`Report::told`) so it is not planned again.

use std::collections::{BTreeMap, HashSet};

use freezer_dr_core::{Audience, Error, Report, ReportKind, Result};
use lettre::Address;
use lettre::message::Mailbox;

use crate::config::{EmailConfig, Phase};
use crate::render::{
    Counts, OperatorView, ProjectDigest, ProjectRef, RejectedView, Rendered, ReportView, Templates,
    UserView, instance_views,
};

/// One mail of a report, before it is sent to each recipient.
pub(crate) struct Mail {
    /// `operators` or `project.<id>`.
    pub role: String,
    pub project: Option<String>,
    pub rendered: Rendered,
    pub recipients: Vec<Recipient>,
    /// The To and Cc every copy shows; `None`: each copy is addressed to its recipient alone (users never
    /// see each other's addresses).
    pub headers: Option<(Vec<Mailbox>, Vec<Mailbox>)>,
}

pub(crate) struct Recipient {
    /// As written (for the digest and logs).
    pub label: String,
    /// Parsed, or why not.
    pub mailbox: std::result::Result<Mailbox, String>,
}

/// The operators (`to`, `cc`, `bcc`): every digest and alert goes to each of them.
pub(crate) struct Operators {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
}

impl Operators {
    pub fn from_config(cfg: &EmailConfig) -> Result<Self> {
        if cfg.to.is_empty() {
            return Err(Error::config(
                "to: name at least one operator address (they receive every digest and alert)",
            ));
        }
        let list = |key: &str, v: &[String]| -> Result<Vec<Mailbox>> {
            v.iter().map(|a| parse_mailbox(key, a)).collect()
        };
        Ok(Self {
            to: list("to", &cfg.to)?,
            cc: list("cc", &cfg.cc)?,
            bcc: list("bcc", &cfg.bcc)?,
        })
    }

    fn all(&self) -> impl Iterator<Item = &Mailbox> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
    }
}

/// Plans the mails of each report.
pub(crate) struct Planner {
    user_phases: Vec<Phase>,
    operator_phases: Vec<Phase>,
    cloud: Option<String>,
    templates: Templates,
    operators: Operators,
}

impl Planner {
    /// Loads the templates and renders each once over sample reports (every phase), so a broken override
    /// fails at start rather than during a failure.
    pub fn new(cfg: &EmailConfig, operators: Operators) -> Result<Self> {
        let planner = Self {
            user_phases: cfg.user_phases.clone(),
            operator_phases: cfg.operator_phases.clone(),
            cloud: cfg.cloud.clone(),
            templates: Templates::load(cfg.templates.as_deref(), &cfg.subject_prefix)?,
            operators,
        };
        planner.check_templates()?;
        Ok(planner)
    }

    fn check_templates(&self) -> Result<()> {
        for report in crate::sample::reports() {
            for phase in ["started", "finished"] {
                for project in report.projects() {
                    self.templates
                        .mail("user", &self.user_view(&report, project, phase))?;
                }
            }
            // And with a project whose users could not be looked up.
            let mut partial = report.clone();
            if let Some(p) = report.projects().first() {
                partial
                    .lookup_failed
                    .insert((*p).to_owned(), "keystone: connection refused".into());
            }
            let rejected = [RejectedView {
                address: "nobody@example.org".into(),
                project: report.projects().first().map(|p| (*p).to_owned()),
                reason: "550 no such user".into(),
            }];
            let pending = BTreeMap::from([("p1".to_owned(), vec!["later@example.org".to_owned()])]);
            for phase in ["started", "finished", "alert", "notice"] {
                for r in [&report, &partial] {
                    let view = self.operator_view(r, phase, &rejected, &BTreeMap::new(), &pending);
                    self.templates.mail("operator", &view)?;
                }
            }
        }
        Ok(())
    }

    /// How many operators each operator mail goes to.
    pub fn operator_count(&self) -> usize {
        self.operators.all().count()
    }

    fn user_phase(&self, kind: &ReportKind) -> Option<&'static str> {
        match kind {
            ReportKind::HostFenced if self.user_phases.contains(&Phase::Started) => Some("started"),
            ReportKind::Recovered if self.user_phases.contains(&Phase::Finished) => {
                Some("finished")
            }
            _ => None,
        }
    }

    /// `None`: no operator mail for this report (a phase the operators turned off).
    pub fn operator_phase(&self, kind: &ReportKind) -> Option<&'static str> {
        let digest = |phase, name| self.operator_phases.contains(&phase).then_some(name);
        match kind {
            ReportKind::HostFenced => digest(Phase::Started, "started"),
            ReportKind::Recovered => digest(Phase::Finished, "finished"),
            // Good news, not an alert: sent like one (always), worded as a notice.
            ReportKind::Restored | ReportKind::Resolved => Some("notice"),
            _ => Some("alert"),
        }
    }

    /// One mail per affected project with users to tell.
    pub fn user_mails(&self, report: &Report) -> Result<Vec<Mail>> {
        let Some(phase) = self.user_phase(&report.kind) else {
            return Ok(Vec::new());
        };
        if report.audience != Audience::OperatorsAndUsers && report.recipients.is_empty() {
            return Ok(Vec::new());
        }
        let mut mails = Vec::new();
        for project in report.projects() {
            // Told by an earlier attempt (recorded in the outbox), or not looked up: nothing to send now.
            if report.told.projects.contains(project) || report.lookup_failed.contains_key(project)
            {
                continue;
            }
            let Some(users) = report.recipients.get(project) else {
                continue;
            };
            let mut seen = HashSet::new();
            let recipients: Vec<Recipient> = users
                .iter()
                .filter_map(|u| u.email.as_deref())
                .map(str::trim)
                .filter(|e| !e.is_empty() && seen.insert(e.to_ascii_lowercase()))
                .map(|e| Recipient {
                    label: e.to_owned(),
                    mailbox: e
                        .parse::<Address>()
                        .map(|a| Mailbox::new(None, a))
                        .map_err(|err| format!("not a valid email address ({err})")),
                })
                .collect();
            if recipients.is_empty() {
                continue;
            }
            let view = self.user_view(report, project, phase);
            mails.push(Mail {
                role: format!("project.{project}"),
                project: Some(project.to_owned()),
                rendered: self.templates.mail("user", &view)?,
                recipients,
                headers: None,
            });
        }
        Ok(mails)
    }

    fn user_view(&self, report: &Report, project: &str, phase: &'static str) -> UserView {
        let instances = instance_views(report.instances_of(project));
        UserView {
            kind: report.kind.name(),
            phase,
            cloud: self.cloud.clone(),
            host: report
                .host
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default(),
            report: ReportView::from(report),
            project: ProjectRef::of(report, project),
            counts: Counts::of(&instances),
            instances,
        }
    }

    /// The operators' digest or alert, listing what happened to the users' mails (`told`: accepted
    /// addresses per project; `pending`: not delivered yet). `None` when the operators do not hear of
    /// this report now: a phase they turned off, or a later part of a report whose lookups failed (they
    /// had their digest with the first part).
    pub fn operator_mail(
        &self,
        report: &Report,
        rejected: &[RejectedView],
        told: &BTreeMap<String, Vec<String>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> Result<Option<Mail>> {
        if report.told.operators {
            return Ok(None);
        }
        let Some(phase) = self.operator_phase(&report.kind) else {
            return Ok(None);
        };
        let view = self.operator_view(report, phase, rejected, told, pending);
        Ok(Some(Mail {
            role: "operators".into(),
            project: None,
            rendered: self.templates.mail("operator", &view)?,
            recipients: self
                .operators
                .all()
                .map(|m| Recipient {
                    label: m.email.to_string(),
                    mailbox: Ok(m.clone()),
                })
                .collect(),
            headers: Some((self.operators.to.clone(), self.operators.cc.clone())),
        }))
    }

    fn operator_view(
        &self,
        report: &Report,
        phase: &'static str,
        rejected: &[RejectedView],
        told: &BTreeMap<String, Vec<String>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> OperatorView {
        let user_phase = self.user_phase(&report.kind);
        let mut all = Vec::new();
        let mut projects: Vec<ProjectDigest> = report
            .projects()
            .into_iter()
            .map(|p| {
                let instances = instance_views(report.instances_of(p));
                all.extend(instances.iter().cloned());
                let users = report.recipients.get(p);
                let without_email = users
                    .map(|us| {
                        us.iter()
                            .filter(|u| u.email.as_deref().is_none_or(|e| e.trim().is_empty()))
                            .map(|u| format!("{} ({})", u.name, u.user_id))
                            .collect()
                    })
                    .unwrap_or_default();
                let failed = report.lookup_failed.get(p);
                let note = match (user_phase, users) {
                    (None, _) => {
                        Some("users are not written to at this phase (user_phases)".into())
                    }
                    (Some(_), _) if failed.is_some() => Some(format!(
                        "the directory could not list this project's users ({}): they were NOT told \
                         yet; freezer-dr keeps trying and mails them once the directory answers (no \
                         further digest is sent)",
                        failed.map_or("", String::as_str)
                    )),
                    (Some(_), None) => Some(
                        "no recipients were looked up for this project: its users were NOT told \
                         (is a [directory] configured?)"
                            .into(),
                    ),
                    (Some(_), Some(us)) if us.is_empty() => {
                        Some("the directory lists no user for this project: nobody was told".into())
                    }
                    _ => None,
                };
                let ProjectRef { id, name, label } = ProjectRef::of(report, p);
                ProjectDigest {
                    id,
                    name,
                    label,
                    instances,
                    told: told.get(p).cloned().unwrap_or_default(),
                    pending: pending.get(p).cloned().unwrap_or_default(),
                    without_email,
                    note,
                }
            })
            .collect();
        // By name, like the instances; a project named by its id only sorts by its id.
        projects.sort_by_cached_key(|p| p.label.to_lowercase());
        OperatorView {
            kind: report.kind.name(),
            phase,
            cloud: self.cloud.clone(),
            host: report.host.as_ref().map(|h| h.to_string()),
            report: ReportView::from(report),
            projects,
            counts: Counts::of(&all),
            rejected: rejected.to_vec(),
            not_looked_up: if user_phase.is_some() {
                report
                    .lookup_failed
                    .keys()
                    .map(|p| ProjectRef::of(report, p).label)
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// A configured address (`from`, `to`, ...), `name <user@example.org>` or `user@example.org`.
pub(crate) fn parse_mailbox(key: &str, value: &str) -> Result<Mailbox> {
    value.parse::<Mailbox>().map_err(|e| {
        Error::config(format!(
            "{key}: {value:?} is not an email address (\"name <user@example.org>\" or \"user@example.org\"): {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use freezer_dr_core::Recipient as User;

    use super::*;

    fn planner(extra: &str) -> Planner {
        let cfg: EmailConfig = toml::from_str(&format!(
            "server = \"smtp://127.0.0.1:25\"\nfrom = \"dr@example.org\"\nto = [\"ops@example.org\"]\n\
             bcc = [\"ops-bcc@example.org\"]\n{extra}"
        ))
        .unwrap();
        Planner::new(&cfg, Operators::from_config(&cfg).unwrap()).unwrap()
    }

    fn user(email: &str) -> User {
        User {
            user_id: email.into(),
            name: email.into(),
            email: Some(email.into()),
        }
    }

    /// The sample recovery (projects p1 and p2), with users for both.
    fn recovered() -> Report {
        let mut r = crate::sample::reports().remove(0);
        r.recipients
            .insert("p2".into(), vec![user("carol@example.org")]);
        r
    }

    fn roles(mails: &[Mail]) -> Vec<&str> {
        mails.iter().map(|m| m.role.as_str()).collect()
    }

    #[test]
    fn a_project_told_earlier_or_not_looked_up_gets_no_mail_now() {
        let p = planner("");
        assert_eq!(
            roles(&p.user_mails(&recovered()).unwrap()),
            ["project.p1", "project.p2"]
        );
        let mut r = recovered();
        r.told.projects.insert("p1".into());
        assert_eq!(roles(&p.user_mails(&r).unwrap()), ["project.p2"]);
        let mut r = recovered();
        r.lookup_failed.insert("p2".into(), "keystone: down".into());
        assert_eq!(roles(&p.user_mails(&r).unwrap()), ["project.p1"]);
    }

    #[test]
    fn each_address_gets_one_copy_addressed_alone_and_an_unusable_one_is_kept_to_be_reported() {
        let mut r = recovered();
        r.recipients.insert(
            "p2".into(),
            [
                "Carol@Example.org",
                "carol@example.org ",
                " ",
                "not an address",
            ]
            .map(user)
            .into(),
        );
        let mails = planner("").user_mails(&r).unwrap();
        let p2 = &mails[1];
        assert!(p2.headers.is_none(), "users never see each other");
        let got: Vec<(&str, bool)> = p2
            .recipients
            .iter()
            .map(|r| (r.label.as_str(), r.mailbox.is_ok()))
            .collect();
        assert_eq!(
            got,
            [("Carol@Example.org", true), ("not an address", false)]
        );
    }

    #[test]
    fn the_phases_and_told_decide_who_is_written_to() {
        let none = BTreeMap::new();
        let p = planner("");
        let digest = p.operator_mail(&recovered(), &[], &none, &none).unwrap();
        let digest = digest.expect("the operators hear of a finished recovery");
        let (to, cc) = digest.headers.as_ref().unwrap();
        assert_eq!((to.len(), cc.len(), digest.recipients.len()), (1, 0, 2));
        let mut told = recovered();
        told.told.operators = true;
        assert!(p.operator_mail(&told, &[], &none, &none).unwrap().is_none());

        let mut started = recovered();
        started.kind = ReportKind::HostFenced;
        assert!(
            p.user_mails(&started).unwrap().is_empty(),
            "users: finished only"
        );
        let p = planner("operator_phases = [\"started\"]\nuser_phases = [\"started\"]");
        assert_eq!(p.user_mails(&started).unwrap().len(), 2);
        assert!(
            p.operator_mail(&recovered(), &[], &none, &none)
                .unwrap()
                .is_none()
        );
        let mut alert = recovered();
        alert.kind = ReportKind::Storm;
        assert!(
            p.operator_mail(&alert, &[], &none, &none)
                .unwrap()
                .is_some(),
            "alerts always go to the operators"
        );
        for (kind, phase) in [
            (ReportKind::Restored, "notice"),
            (ReportKind::Resolved, "notice"),
            (ReportKind::NeedsOperator, "alert"),
            (ReportKind::Brake, "alert"),
        ] {
            assert_eq!(p.operator_phase(&kind), Some(phase), "{kind:?}");
        }
    }
}
