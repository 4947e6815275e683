//! Mail texts: minijinja templates (built in, overridable from a directory) over a view of the report.
//!
//! Templates whose name ends in `.html` escape every value (an instance named `<script>` stays text);
//! `.txt` templates do not need to. Undefined variables are errors, so a typo in an override fails when
//! the notifier is built (every template is rendered once with a sample report), not during a failure.

use std::path::Path;

use freezer_dr_core::{Error, InstanceOutcome, Outcome, Report, Result};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The template names, each optional in an override directory.
pub(crate) const TEMPLATES: [(&str, &str); 6] = [
    (
        "user.subject.txt",
        include_str!("../templates/user.subject.txt"),
    ),
    ("user.txt", include_str!("../templates/user.txt")),
    ("user.html", include_str!("../templates/user.html")),
    (
        "operator.subject.txt",
        include_str!("../templates/operator.subject.txt"),
    ),
    ("operator.txt", include_str!("../templates/operator.txt")),
    ("operator.html", include_str!("../templates/operator.html")),
];

/// A rendered mail: subject, plain text, HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The loaded templates.
pub(crate) struct Templates {
    env: Environment<'static>,
    prefix: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The built-in templates, each replaced by the file of the same name in `dir` if it has one.
    pub fn load(dir: Option<&Path>, prefix: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, builtin) in TEMPLATES {
            let source = match dir.map(|d| d.join(name)) {
                Some(path) if path.exists() => std::fs::read_to_string(&path).map_err(|e| {
                    Error::config(format!(
                        "cannot read the mail template {}: {e}",
                        path.display()
                    ))
                })?,
                _ => builtin.to_owned(),
            };
            env.add_template_owned(name, source).map_err(|e| {
                Error::config(format!("mail template {name}: {e:#}")).with_context(
                    "templates",
                    dir.map_or("<built in>".into(), |d| d.display().to_string()),
                )
            })?;
        }
        if let Some(d) = dir
            && !d.is_dir()
        {
            return Err(Error::config(format!(
                "templates: {} is not a directory",
                d.display()
            )));
        }
        Ok(Self {
            env,
            prefix: prefix.to_owned(),
        })
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> Result<String> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| Error::config(format!("mail template {name} failed to render: {e:#}")))
    }

    /// Renders `<role>.subject.txt`, `<role>.txt` and `<role>.html` over `view`.
    pub fn mail<V: Serialize>(&self, role: &str, view: &V) -> Result<Rendered> {
        let ctx = minijinja::Value::from(minijinja::value::Serde(view));
        let raw = self.render(&format!("{role}.subject.txt"), &ctx)?;
        // One line, whatever the template or the data did: a header cannot hold a line break.
        let subject = format!(
            "{} {}",
            self.prefix,
            raw.split_whitespace().collect::<Vec<_>>().join(" ")
        )
        .trim()
        .to_owned();
        let ctx = minijinja::context! { subject => subject.clone(), ..ctx };
        let text = self.render(&format!("{role}.txt"), &ctx)?;
        let html = self.render(&format!("{role}.html"), &ctx)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// The report as the templates see it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ReportView {
    pub id: String,
    pub at: String,
    pub summary: String,
    pub details: Vec<String>,
}

impl From<&Report> for ReportView {
    fn from(r: &Report) -> Self {
        Self {
            id: r.id.clone(),
            at: r.at.to_string(),
            summary: r.summary.clone(),
            details: r.details.clone(),
        }
    }
}

/// One instance's line.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct InstanceView {
    pub name: String,
    pub id: String,
    pub old_host: String,
    pub new_host: Option<String>,
    pub status: Option<String>,
    /// `evacuated`, `failed`, `skipped`, `gone`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub attempts: u32,
    /// What happened, in plain words.
    pub summary: String,
}

impl From<&InstanceOutcome> for InstanceView {
    fn from(o: &InstanceOutcome) -> Self {
        let i = &o.instance;
        let (outcome, summary) = match &o.outcome {
            Outcome::Evacuated { status, .. } => (
                "evacuated",
                format!("running again on another host ({status})"),
            ),
            Outcome::Failed { reason } => ("failed", format!("could not be moved: {reason}")),
            Outcome::Skipped { reason } => {
                ("skipped", format!("left on the failed host: {reason}"))
            }
            Outcome::Gone => (
                "gone",
                "deleted by its owner during the recovery".to_owned(),
            ),
            Outcome::Evacuating => ("evacuating", "being moved to another host".to_owned()),
        };
        let (new_host, status) = match &o.outcome {
            Outcome::Evacuated { to, status } => (Some(to.to_string()), Some(status.clone())),
            Outcome::Failed { .. }
            | Outcome::Skipped { .. }
            | Outcome::Gone
            | Outcome::Evacuating => (None, None),
        };
        let reason = match &o.outcome {
            Outcome::Failed { reason } | Outcome::Skipped { reason } => Some(reason.clone()),
            Outcome::Evacuated { .. } | Outcome::Gone | Outcome::Evacuating => None,
        };
        Self {
            name: i.name.clone(),
            id: i.id.clone(),
            old_host: i.host.to_string(),
            new_host,
            status,
            outcome,
            reason,
            attempts: o.attempts,
            summary,
        }
    }
}

/// The lines of `outcomes`, sorted by instance name (ignoring case; instances of the same name keep the
/// report's order), as every mail lists them.
pub(crate) fn instance_views<'a>(
    outcomes: impl Iterator<Item = &'a InstanceOutcome>,
) -> Vec<InstanceView> {
    let mut views: Vec<InstanceView> = outcomes.map(InstanceView::from).collect();
    views.sort_by_cached_key(|v| v.name.to_lowercase());
    views
}

/// Outcome counts.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Counts {
    pub evacuated: usize,
    pub failed: usize,
    pub skipped: usize,
    pub gone: usize,
}

impl Counts {
    pub fn of(instances: &[InstanceView]) -> Self {
        let mut c = Self::default();
        for i in instances {
            match i.outcome {
                "evacuated" => c.evacuated += 1,
                "failed" => c.failed += 1,
                "skipped" => c.skipped += 1,
                _ => c.gone += 1,
            }
        }
        c
    }
}

/// A project as the mails name it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProjectRef {
    pub id: String,
    /// The name people know it by; `None` when the directory could not say (the mails use the id).
    pub name: Option<String>,
    /// `name (id)`, or the id alone when the name is unknown: for the text, where operators need the id.
    pub label: String,
}

impl ProjectRef {
    /// `project` of `report`, with its name if the runtime learned it.
    pub fn of(report: &Report, project: &str) -> Self {
        let name = report.project_name(project).map(str::to_owned);
        Self {
            id: project.to_owned(),
            label: match &name {
                Some(n) => format!("{n} ({project})"),
                None => project.to_owned(),
            },
            name,
        }
    }
}

/// Context of `user.*`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct UserView {
    pub kind: &'static str,
    pub phase: &'static str,
    pub cloud: Option<String>,
    pub host: String,
    pub report: ReportView,
    pub project: ProjectRef,
    pub instances: Vec<InstanceView>,
    pub counts: Counts,
}

/// A project in the operator digest.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ProjectDigest {
    pub id: String,
    /// As in [`ProjectRef`].
    pub name: Option<String>,
    /// As in [`ProjectRef`].
    pub label: String,
    pub instances: Vec<InstanceView>,
    /// Addresses the project's mail was accepted for.
    pub told: Vec<String>,
    /// Addresses not delivered yet when the digest was sent (deferred, or over the rate limit); they are
    /// retried with the report.
    pub pending: Vec<String>,
    /// Users without an email address (`name (user id)`).
    pub without_email: Vec<String>,
    /// Why the users were not written to, if they were not.
    pub note: Option<String>,
}

/// A recipient the server refused for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct RejectedView {
    pub address: String,
    pub project: Option<String>,
    pub reason: String,
}

/// Context of `operator.*`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct OperatorView {
    pub kind: &'static str,
    /// `started`, `finished`, `alert` (needs attention) or `notice` (good news: a host back in service,
    /// a refusal over).
    pub phase: &'static str,
    pub cloud: Option<String>,
    pub host: Option<String>,
    pub report: ReportView,
    pub projects: Vec<ProjectDigest>,
    pub counts: Counts,
    pub rejected: Vec<RejectedView>,
    /// Projects whose users the directory could not list (their labels): not told yet, mailed once it
    /// answers.
    pub not_looked_up: Vec<String>,
}
