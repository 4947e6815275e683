//! `EmailNotifier`: turns one report into every mail it calls for, and sends each one once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, OnceLock};

use async_trait::async_trait;
use freezer_dr_core::{Audience, Error, ErrorKind, Notifier, Report, ReportKind, Result};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, PoolConfig};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor, address::Envelope};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{EmailConfig, Phase, Starttls};
use crate::render::{
    Counts, InstanceView, OperatorView, ProjectDigest, ProjectRef, RejectedView, Rendered,
    ReportView, Templates, UserView, kind_name,
};

/// Completed reports remembered, so a repeated `notify` (a retry after a lost reply) sends nothing twice.
const REMEMBERED_REPORTS: usize = 4096;

/// SMTP reply codes that mean the login was refused: the whole server is unusable, not one recipient.
const AUTH_CODES: [&str; 4] = ["530", "534", "535", "538"];

/// Notifier over SMTP (lettre, async, rustls with ring).
///
/// One [`Notifier::notify`] call sends every mail of one report: one per affected project to that
/// project's users (each user gets their own copy, so users never see each other's addresses), and one
/// digest or alert to the operators (To, Cc and Bcc each get it through their own SMTP transaction).
///
/// - Each mail has a stable Message-ID derived from the report id and the mail's role (`operators` or the
///   project), so a copy sent again after a crash is recognisable as the same mail.
/// - Each accepted (mail, recipient) pair is remembered for the life of the process: a retry of a report
///   that was partly delivered sends only what is missing.
/// - Across restarts the runtime's outbox records which audiences were told (`Report::told`): a project
///   whose users could not be looked up (`Report::lookup_failed`) is named in the digest and mailed later
///   on its own, without the digest or the other projects' mails going out again.
/// - A recipient the server refuses for good (5xx) is not retried and does not stop the others; it is
///   logged as an error and listed in the operator digest.
/// - A rate limit (`max_mails_per_minute`) stops sending when exhausted; the report stays in the outbox
///   (a temporary error) and continues at the runtime's next attempt.
pub struct EmailNotifier {
    cfg: EmailConfig,
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    domain: String,
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    templates: Templates,
    ledger: Mutex<Ledger>,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The builder holds the credentials: never printed.
        f.debug_struct("EmailNotifier")
            .field("server", &self.server)
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What happened to the mails of the reports seen by this process.
#[derive(Default)]
struct Ledger {
    reports: HashMap<String, ReportState>,
    completed: VecDeque<String>,
}

#[derive(Default)]
struct ReportState {
    /// `<role>\n<address>` of every copy the server accepted.
    accepted: HashSet<String>,
    /// Copies refused for good, with the key they were refused under.
    rejected: Vec<(String, RejectedView)>,
    complete: bool,
}

/// A token bucket: `capacity` mails at once, refilled at `capacity` per minute.
struct Bucket {
    capacity: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self {
            capacity,
            tokens: capacity,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.capacity / 60.0;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One mail of a report, before it is sent to each recipient.
struct Mail {
    /// `operators` or `project.<id>`.
    role: String,
    project: Option<String>,
    rendered: Rendered,
    /// For user mails: each recipient gets a copy addressed to them alone.
    recipients: Vec<Recipient>,
}

struct Recipient {
    /// As written (for the digest and logs).
    label: String,
    /// Parsed, or why not.
    mailbox: std::result::Result<Mailbox, String>,
}

/// The outcome of sending one copy.
enum Sent {
    Accepted,
    /// 5xx for this recipient: final.
    Rejected(String),
    /// 4xx for this recipient: try again at the next attempt.
    Deferred(Error),
    /// The server or the connection failed: stop this attempt.
    Failed(Error),
}

/// Where a delivery attempt stands.
#[derive(Default)]
struct Progress {
    sent: usize,
    deferred: Vec<Error>,
    rate_limited: usize,
    /// Per project: addresses not delivered in this attempt (deferred or over the rate limit).
    pending: BTreeMap<String, Vec<String>>,
}

impl EmailNotifier {
    /// A notifier from its config. Pure: checks the addresses, the server URL, the CA file and the
    /// templates, and connects to nothing (that is [`Notifier::healthcheck`]).
    pub fn new(cfg: EmailConfig) -> Result<Self> {
        let (tls_wrapper, host, port) = parse_server(&cfg.server)?;
        let from = parse_mailbox("from", &cfg.from)?;
        let domain = from.email.domain().to_owned();
        if cfg.to.is_empty() {
            return Err(Error::config(
                "to: name at least one operator address (they receive every digest and alert)",
            ));
        }
        let list = |key: &str, v: &[String]| -> Result<Vec<Mailbox>> {
            v.iter().map(|a| parse_mailbox(key, a)).collect()
        };
        let to = list("to", &cfg.to)?;
        let cc = list("cc", &cfg.cc)?;
        let bcc = list("bcc", &cfg.bcc)?;
        if cfg.max_mails_per_minute == 0 {
            return Err(Error::config(
                "max_mails_per_minute: must be at least 1 (mails per minute sent at most)",
            ));
        }
        if cfg.username.is_some() != cfg.password.is_some() {
            return Err(Error::config(
                "username and password: set both for SMTP AUTH, or neither",
            ));
        }
        if cfg.timeout.is_zero() {
            return Err(Error::config("timeout: must be more than zero"));
        }

        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!("ca_file: cannot read {}: {e}", path.display()))
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                Error::config(format!(
                    "ca_file: {} holds no usable PEM certificate: {e}",
                    path.display()
                ))
            })?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| Error::config(format!("TLS setup for {host} failed: {e}")))?;
        let tls = if tls_wrapper {
            Tls::Wrapper(tls)
        } else {
            match cfg.starttls {
                Starttls::Required => Tls::Required(tls),
                Starttls::Opportunistic => Tls::Opportunistic(tls),
                Starttls::Never => Tls::None,
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(cfg.timeout))
            .pool_config(PoolConfig::new().max_size(4));
        if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let templates = Templates::load(cfg.templates.as_deref(), &cfg.subject_prefix)?;
        let notifier = Self {
            server: format!("{host}:{port}"),
            from,
            to,
            cc,
            bcc,
            domain,
            builder,
            transport: OnceLock::new(),
            templates,
            ledger: Mutex::new(Ledger::default()),
            bucket: Mutex::new(Bucket::new(cfg.max_mails_per_minute)),
            cfg,
        };
        notifier.check_templates()?;
        Ok(notifier)
    }

    /// Renders every template once over sample reports (every phase), so a broken override fails at
    /// start rather than during a failure.
    fn check_templates(&self) -> Result<()> {
        for report in crate::sample::reports() {
            for phase in ["started", "finished"] {
                for project in report.projects() {
                    self.templates
                        .mail("user", &self.user_view(&report, project, phase))?;
                }
            }
            for phase in ["started", "finished", "alert"] {
                let rejected = [RejectedView {
                    address: "nobody@example.org".into(),
                    project: report.projects().first().map(|p| (*p).to_owned()),
                    reason: "550 no such user".into(),
                }];
                let pending =
                    BTreeMap::from([("p1".to_owned(), vec!["later@example.org".to_owned()])]);
                let view =
                    self.operator_view(&report, phase, &rejected, &BTreeMap::new(), &pending);
                self.templates.mail("operator", &view)?;
                // And with a project whose users could not be looked up.
                let mut partial = report.clone();
                if let Some(p) = report.projects().first() {
                    partial
                        .lookup_failed
                        .insert((*p).to_owned(), "keystone: connection refused".into());
                }
                let view =
                    self.operator_view(&partial, phase, &rejected, &BTreeMap::new(), &pending);
                self.templates.mail("operator", &view)?;
            }
        }
        Ok(())
    }

    /// The pooled transport, created on first use (its pool needs a running tokio runtime).
    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }

    fn user_phase(&self, kind: &ReportKind) -> Option<&'static str> {
        match kind {
            ReportKind::HostFenced if self.cfg.user_phases.contains(&Phase::Started) => {
                Some("started")
            }
            ReportKind::Recovered if self.cfg.user_phases.contains(&Phase::Finished) => {
                Some("finished")
            }
            _ => None,
        }
    }

    /// `None`: no operator mail for this report (a phase the operators turned off).
    fn operator_phase(&self, kind: &ReportKind) -> Option<&'static str> {
        match kind {
            ReportKind::HostFenced => self
                .cfg
                .operator_phases
                .contains(&Phase::Started)
                .then_some("started"),
            ReportKind::Recovered => self
                .cfg
                .operator_phases
                .contains(&Phase::Finished)
                .then_some("finished"),
            _ => Some("alert"),
        }
    }

    /// One mail per affected project with users to tell.
    fn user_mails(&self, report: &Report) -> Result<Vec<Mail>> {
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
            });
        }
        Ok(mails)
    }

    fn user_view(&self, report: &Report, project: &str, phase: &'static str) -> UserView {
        let instances: Vec<InstanceView> = report
            .instances_of(project)
            .map(InstanceView::from)
            .collect();
        UserView {
            kind: kind_name(&report.kind),
            phase,
            cloud: self.cfg.cloud.clone(),
            host: report
                .host
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_default(),
            report: ReportView::from(report),
            project: ProjectRef {
                id: project.to_owned(),
            },
            counts: Counts::of(&instances),
            instances,
        }
    }

    /// The operators' digest or alert, listing what happened to the users' mails.
    fn operator_mail(
        &self,
        report: &Report,
        rejected: &[RejectedView],
        told: &BTreeMap<String, Vec<String>>,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> Result<Option<Rendered>> {
        let Some(phase) = self.operator_phase(&report.kind) else {
            return Ok(None);
        };
        let view = self.operator_view(report, phase, rejected, told, pending);
        self.templates.mail("operator", &view).map(Some)
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
        let projects = report
            .projects()
            .into_iter()
            .map(|p| {
                let instances: Vec<InstanceView> =
                    report.instances_of(p).map(InstanceView::from).collect();
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
                ProjectDigest {
                    id: p.to_owned(),
                    instances,
                    told: told.get(p).cloned().unwrap_or_default(),
                    pending: pending.get(p).cloned().unwrap_or_default(),
                    without_email,
                    note,
                }
            })
            .collect();
        OperatorView {
            kind: kind_name(&report.kind),
            phase,
            cloud: self.cfg.cloud.clone(),
            host: report.host.as_ref().map(|h| h.to_string()),
            report: ReportView::from(report),
            projects,
            counts: Counts::of(&all),
            rejected: rejected.to_vec(),
            not_looked_up: if user_phase.is_some() {
                report.lookup_failed.keys().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// `<freezer-dr.<report id>.<role>@<domain of from>>`: the same for every copy and every retry.
    fn message_id(&self, report: &Report, role: &str) -> String {
        format!(
            "<freezer-dr.{}.{}@{}>",
            id_part(&report.id),
            id_part(role),
            self.domain
        )
    }

    fn message(
        &self,
        report: &Report,
        mail: &Mail,
        to: &[Mailbox],
        cc: &[Mailbox],
    ) -> Result<Vec<u8>> {
        let mut b = lettre::Message::builder()
            .from(self.from.clone())
            .subject(mail.rendered.subject.clone())
            .message_id(Some(self.message_id(report, &mail.role)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Freezer-DR-Report"),
                report.id.clone(),
            ));
        for m in to {
            b = b.to(m.clone());
        }
        for m in cc {
            b = b.cc(m.clone());
        }
        let body = MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(mail.rendered.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(mail.rendered.html.clone()),
            );
        let msg = b.multipart(body).map_err(|e| {
            Error::new(ErrorKind::Unexpected, format!("cannot build the mail: {e}"))
                .with_context("report", &report.id)
                .with_context("mail", &mail.role)
        })?;
        Ok(msg.formatted())
    }

    /// Sends one copy to one recipient, unless it was accepted or refused before.
    async fn send_copy(
        &self,
        report: &Report,
        mail: &Mail,
        rcpt: &Mailbox,
        bytes: &[u8],
        progress: &mut Progress,
    ) -> Option<Sent> {
        let key = format!(
            "{}\n{}",
            mail.role,
            rcpt.email.to_string().to_ascii_lowercase()
        );
        if self.settled(&report.id, &key) {
            return None;
        }
        // The limit protects the server from the bulk (users' mails); the few operator copies always go,
        // so operators hear of a large incident without waiting for every project's mail.
        if mail.project.is_some() && !self.bucket.lock().map(|mut b| b.take()).unwrap_or(true) {
            progress.rate_limited += 1;
            if let Some(p) = &mail.project {
                progress
                    .pending
                    .entry(p.clone())
                    .or_default()
                    .push(rcpt.email.to_string());
            }
            return None;
        }
        let envelope = match Envelope::new(Some(self.from.email.clone()), vec![rcpt.email.clone()])
        {
            Ok(e) => e,
            Err(e) => return Some(Sent::Rejected(format!("no valid envelope: {e}"))),
        };
        let outcome = match self.transport().send_raw(&envelope, bytes).await {
            Ok(_) => Sent::Accepted,
            Err(e) => self.classify(e, report, rcpt),
        };
        let mut ledger = self.ledger.lock().ok()?;
        let state = ledger.reports.entry(report.id.clone()).or_default();
        match &outcome {
            Sent::Accepted => {
                progress.sent += 1;
                state.accepted.insert(key);
                info!(report = %report.id, mail = %mail.role, to = %rcpt.email, "mail accepted");
            }
            Sent::Rejected(reason) => {
                state.rejected.push((
                    key,
                    RejectedView {
                        address: rcpt.email.to_string(),
                        project: mail.project.clone(),
                        reason: reason.clone(),
                    },
                ));
                error!(report = %report.id, mail = %mail.role, to = %rcpt.email, reason = %reason,
                       "the mail server refused this recipient for good: not retried");
            }
            Sent::Deferred(e) => {
                warn!(report = %report.id, mail = %mail.role, to = %rcpt.email, error = %e,
                      "recipient deferred; retried with the report");
            }
            Sent::Failed(_) => {}
        }
        Some(outcome)
    }

    fn settled(&self, report: &str, key: &str) -> bool {
        self.ledger.lock().is_ok_and(|l| {
            l.reports.get(report).is_some_and(|s| {
                s.accepted.contains(key) || s.rejected.iter().any(|(k, _)| k == key)
            })
        })
    }

    fn classify(&self, e: lettre::transport::smtp::Error, report: &Report, rcpt: &Mailbox) -> Sent {
        let code = e.status().map(|c| c.to_string());
        let base = |kind: ErrorKind, what: &str| {
            Error::new(kind, format!("{what} {}", self.server))
                .with_context("report", &report.id)
                .with_context("recipient", &rcpt.email)
                .with_source(e.clone_message())
        };
        if e.is_permanent() {
            if code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c)) {
                return Sent::Failed(
                    base(ErrorKind::Auth, "the login was refused by the mail server").permanent(),
                );
            }
            return Sent::Rejected(e.to_string());
        }
        if e.is_transient() {
            return Sent::Deferred(
                base(
                    ErrorKind::PeerFailure,
                    "the recipient was deferred (4xx) by",
                )
                .temporary(),
            );
        }
        if e.is_timeout() {
            return Sent::Failed(
                base(ErrorKind::Timeout, "no answer in time from the mail server").temporary(),
            );
        }
        if e.is_tls() || is_certificate_error(&e) {
            return Sent::Failed(
                base(
                    ErrorKind::Unreachable,
                    "TLS failed (is its certificate signed by a CA in ca_file or the system store?) with",
                )
                .permanent(),
            );
        }
        if e.is_client() {
            return Sent::Failed(
                base(
                    ErrorKind::Unsupported,
                    "the mail server cannot do what the config asks:",
                )
                .permanent(),
            );
        }
        Sent::Failed(base(ErrorKind::Unreachable, "cannot talk to the mail server").temporary())
    }

    /// Sends the copies of `mail` to `recipients` (each through its own transaction).
    async fn send_mail(
        &self,
        report: &Report,
        mail: &Mail,
        to_header: Option<(&[Mailbox], &[Mailbox])>,
        progress: &mut Progress,
    ) -> Result<()> {
        let shared = match to_header {
            Some((to, cc)) => Some(self.message(report, mail, to, cc)?),
            None => None,
        };
        for rcpt in &mail.recipients {
            let mailbox = match &rcpt.mailbox {
                Ok(m) => m,
                Err(why) => {
                    self.reject_unparsable(report, mail, rcpt, why);
                    continue;
                }
            };
            let bytes = match &shared {
                Some(b) => b.clone(),
                None => self.message(report, mail, std::slice::from_ref(mailbox), &[])?,
            };
            match self
                .send_copy(report, mail, mailbox, &bytes, progress)
                .await
            {
                None | Some(Sent::Accepted | Sent::Rejected(_)) => {}
                Some(Sent::Deferred(e)) => {
                    if let Some(p) = &mail.project {
                        progress
                            .pending
                            .entry(p.clone())
                            .or_default()
                            .push(mailbox.email.to_string());
                    }
                    progress.deferred.push(e);
                }
                Some(Sent::Failed(e)) => return Err(e),
            }
        }
        Ok(())
    }

    fn reject_unparsable(&self, report: &Report, mail: &Mail, rcpt: &Recipient, why: &str) {
        let key = format!("{}\n{}", mail.role, rcpt.label.to_ascii_lowercase());
        if self.settled(&report.id, &key) {
            return;
        }
        error!(report = %report.id, mail = %mail.role, to = %rcpt.label, reason = %why,
               "a recipient's address is unusable: not told");
        if let Ok(mut l) = self.ledger.lock() {
            l.reports
                .entry(report.id.clone())
                .or_default()
                .rejected
                .push((
                    key,
                    RejectedView {
                        address: rcpt.label.clone(),
                        project: mail.project.clone(),
                        reason: why.to_owned(),
                    },
                ));
        }
    }

    fn is_complete(&self, id: &str) -> bool {
        self.ledger
            .lock()
            .is_ok_and(|l| l.reports.get(id).is_some_and(|s| s.complete))
    }

    fn complete(&self, id: &str) {
        if let Ok(mut l) = self.ledger.lock() {
            l.reports.entry(id.to_owned()).or_default().complete = true;
            l.completed.push_back(id.to_owned());
            while l.completed.len() > REMEMBERED_REPORTS {
                if let Some(old) = l.completed.pop_front() {
                    l.reports.remove(&old);
                }
            }
        }
    }

    fn rejected(&self, id: &str) -> Vec<RejectedView> {
        self.ledger
            .lock()
            .map(|l| {
                l.reports
                    .get(id)
                    .map(|s| s.rejected.iter().map(|(_, r)| r.clone()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    fn accepted_for(&self, id: &str, role: &str) -> Vec<String> {
        let prefix = format!("{role}\n");
        let mut v: Vec<String> = self
            .ledger
            .lock()
            .map(|l| {
                l.reports
                    .get(id)
                    .map(|s| {
                        s.accepted
                            .iter()
                            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    async fn deliver(&self, report: &Report, progress: &mut Progress) -> Result<()> {
        let user_mails = self.user_mails(report)?;
        for mail in &user_mails {
            self.send_mail(report, mail, None, progress).await?;
        }
        let mut told = BTreeMap::new();
        for mail in &user_mails {
            if let Some(p) = &mail.project {
                told.insert(p.clone(), self.accepted_for(&report.id, &mail.role));
            }
        }
        let rejected = self.rejected(&report.id);
        if report.told.operators {
            // A later part of a report whose lookups failed: the operators had their digest.
            return Ok(());
        }
        if let Some(rendered) = self.operator_mail(report, &rejected, &told, &progress.pending)? {
            let recipients = self
                .to
                .iter()
                .chain(&self.cc)
                .chain(&self.bcc)
                .map(|m| Recipient {
                    label: m.email.to_string(),
                    mailbox: Ok(m.clone()),
                })
                .collect();
            let mail = Mail {
                role: "operators".into(),
                project: None,
                rendered,
                recipients,
            };
            self.send_mail(report, &mail, Some((&self.to, &self.cc)), progress)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn notify(&self, report: &Report) -> Result<()> {
        if self.is_complete(&report.id) {
            debug!(report = %report.id, "every mail of this report was already sent");
            return Ok(());
        }
        let mut progress = Progress::default();
        let result = self.deliver(report, &mut progress).await;
        if let Err(e) = result {
            return Err(e.with_context("sent_in_this_attempt", progress.sent));
        }
        if progress.rate_limited > 0 {
            return Err(Error::new(
                ErrorKind::PeerFailure,
                format!(
                    "rate limit of {} mails per minute reached: {} mail(s) wait for the next attempt",
                    self.cfg.max_mails_per_minute, progress.rate_limited
                ),
            )
            .with_context("report", &report.id)
            .with_context("server", &self.server)
            .with_context("sent_in_this_attempt", progress.sent)
            .temporary());
        }
        if let Some(first) = progress.deferred.first() {
            return Err(Error::new(
                ErrorKind::PeerFailure,
                format!(
                    "{} recipient(s) deferred by the mail server; the others were sent: {first}",
                    progress.deferred.len()
                ),
            )
            .with_context("report", &report.id)
            .temporary());
        }
        let rejected = self.rejected(&report.id);
        let operators = self.to.len() + self.cc.len() + self.bcc.len();
        let operators_rejected = rejected.iter().filter(|r| r.project.is_none()).count();
        if self.operator_phase(&report.kind).is_some() && operators_rejected >= operators {
            error!(report = %report.id, summary = %report.summary,
                   "the mail server refused the report for every operator: nobody was told by mail");
        }
        // Projects not looked up yet come back in a later `notify` of the same report: not complete.
        if report.lookup_failed.is_empty() {
            self.complete(&report.id);
        }
        Ok(())
    }

    async fn healthcheck(&self) -> Result<()> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(
                ErrorKind::Unreachable,
                format!("the mail server {} did not answer NOOP", self.server),
            )),
            Err(e) => {
                let probe = Mailbox::new(None, self.from.email.clone());
                let report = Report::new(
                    "healthcheck",
                    freezer_dr_core::Timestamp::now(),
                    ReportKind::Resolved,
                    Audience::Operators,
                    None,
                    "healthcheck",
                );
                Err(match self.classify(e, &report, &probe) {
                    Sent::Failed(e) | Sent::Deferred(e) => e,
                    Sent::Rejected(why) => Error::new(
                        ErrorKind::PeerFailure,
                        format!(
                            "the mail server {} refused the connection: {why}",
                            self.server
                        ),
                    ),
                    Sent::Accepted => return Ok(()),
                })
            }
        }
    }
}

/// lettre reports a refused server certificate as a connection error; its source chain says why.
fn is_certificate_error(e: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("handshake") {
            return true;
        }
        source = s.source();
    }
    false
}

/// Keeps the characters a Message-ID may hold verbatim; anything else becomes `_xx` (hex), so two
/// different roles never share an id.
fn id_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

fn parse_mailbox(key: &str, value: &str) -> Result<Mailbox> {
    value.parse::<Mailbox>().map_err(|e| {
        Error::config(format!(
            "{key}: {value:?} is not an email address (\"name <user@example.org>\" or \"user@example.org\"): {e}"
        ))
    })
}

/// `smtp://host[:port]` or `smtps://host[:port]` → (implicit TLS, host, port).
fn parse_server(url: &str) -> Result<(bool, String, u16)> {
    if url.contains('@') {
        // Never echo it: the part before '@' may be a password.
        return Err(Error::config(
            "server: must not hold credentials (use username and password); expected \
             smtp://host[:port] or smtps://host[:port]",
        ));
    }
    let bad = |why: &str| {
        Error::config(format!(
            "server: {url:?} {why} (expected smtp://host[:port] or smtps://host[:port])"
        ))
    };
    let (wrapper, rest) = if let Some(r) = url.strip_prefix("smtps://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("smtp://") {
        (false, r)
    } else {
        return Err(bad("has an unknown scheme"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) || rest.is_empty() {
        return Err(bad("is not a bare host and port"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
        (h.to_owned(), p.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad("has an invalid port"))?,
        None if wrapper => 465,
        None => 587,
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok((wrapper, host, port))
}

/// lettre's error is not `Clone`; its message is all the core error needs.
trait CloneMessage {
    fn clone_message(&self) -> MessageError;
}

impl CloneMessage for lettre::transport::smtp::Error {
    fn clone_message(&self) -> MessageError {
        MessageError(self.to_string())
    }
}

/// An error message kept as text.
#[derive(Debug)]
struct MessageError(String);

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MessageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse() {
        assert_eq!(
            parse_server("smtp://mail.example.org").unwrap(),
            (false, "mail.example.org".into(), 587)
        );
        assert_eq!(
            parse_server("smtps://mail.example.org:2465/").unwrap(),
            (true, "mail.example.org".into(), 2465)
        );
        assert_eq!(
            parse_server("smtp://[::1]:25").unwrap(),
            (false, "::1".into(), 25)
        );
        let e = parse_server("smtp://user:hunter2@mail.example.org").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(parse_server("http://mail.example.org").is_err());
        assert!(parse_server("smtp://mail:port").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_bucket_refills_at_its_rate() {
        let mut b = Bucket::new(60);
        for _ in 0..60 {
            assert!(b.take());
        }
        assert!(!b.take(), "a full minute's budget is spent");
        tokio::time::advance(std::time::Duration::from_millis(1100)).await;
        assert!(b.take(), "one mail per second comes back");
        assert!(!b.take());
        tokio::time::advance(std::time::Duration::from_secs(3600)).await;
        for _ in 0..60 {
            assert!(b.take());
        }
        assert!(!b.take(), "never more than the budget at once");
    }

    #[test]
    fn message_id_parts_are_safe_and_distinct() {
        assert_eq!(id_part("project.abc-1"), "project.abc-1");
        assert_ne!(id_part("project.a b"), id_part("project.a_b"));
        assert!(
            id_part("project.<x>@y")
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        );
    }
}
