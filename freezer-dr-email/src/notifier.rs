//! `EmailNotifier`: plans the mails of one report, sends each copy once, and says what is left.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use freezer_dr_core::{Error, ErrorKind, Notifier, Report, Result};
use lettre::message::Mailbox;
use tracing::{debug, error, info, warn};

use crate::config::EmailConfig;
use crate::ledger::{CopyKey, Ledger};
use crate::plan::{self, Mail, Operators, Planner};
use crate::rate::Bucket;
use crate::render::RejectedView;
use crate::smtp::{Sent, Server, Smtp};

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
    smtp: Smtp,
    plan: Planner,
    ledger: Ledger,
    bucket: Mutex<Bucket>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: never printed.
        f.debug_struct("EmailNotifier")
            .field("server", &self.smtp.server())
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
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

impl Progress {
    fn pend(&mut self, mail: &Mail, rcpt: &Mailbox) {
        if let Some(p) = &mail.project {
            self.pending
                .entry(p.clone())
                .or_default()
                .push(rcpt.email.to_string());
        }
    }
}

impl EmailNotifier {
    /// A notifier from its config. Pure: checks the addresses, the server URL, the CA file and the
    /// templates, and connects to nothing (that is [`Notifier::healthcheck`]).
    pub fn new(cfg: EmailConfig) -> Result<Self> {
        let server = Server::parse(&cfg.server)?;
        let from = plan::parse_mailbox("from", &cfg.from)?;
        let operators = Operators::from_config(&cfg)?;
        if cfg.max_mails_per_minute == 0 {
            return Err(Error::config(
                "max_mails_per_minute: must be at least 1 (mails per minute sent at most)",
            ));
        }
        Ok(Self {
            smtp: Smtp::new(&cfg, server, from)?,
            plan: Planner::new(&cfg, operators)?,
            ledger: Ledger::default(),
            bucket: Mutex::new(Bucket::new(cfg.max_mails_per_minute)),
            cfg,
        })
    }

    async fn deliver(&self, report: &Report, progress: &mut Progress) -> Result<()> {
        let user_mails = self.plan.user_mails(report)?;
        for mail in &user_mails {
            self.send_mail(report, mail, progress).await?;
        }
        let told = self.ledger.told(&report.id, &user_mails);
        let rejected = self.ledger.rejected(&report.id);
        if let Some(mail) = self
            .plan
            .operator_mail(report, &rejected, &told, &progress.pending)?
        {
            self.send_mail(report, &mail, progress).await?;
        }
        Ok(())
    }

    /// Sends the copies of `mail` to its recipients (each through its own transaction).
    async fn send_mail(&self, report: &Report, mail: &Mail, progress: &mut Progress) -> Result<()> {
        let shared = match &mail.headers {
            Some((to, cc)) => Some(self.smtp.message(report, mail, to, cc)?),
            None => None,
        };
        for rcpt in &mail.recipients {
            let mailbox = match &rcpt.mailbox {
                Ok(m) => m,
                Err(why) => {
                    let key = CopyKey::new(&mail.role, &rcpt.label);
                    if !self.ledger.settled(&report.id, &key) {
                        error!(report = %report.id, mail = %mail.role, to = %rcpt.label, reason = %why,
                               "a recipient's address is unusable: not told");
                        self.reject(report, mail, key, &rcpt.label, why);
                    }
                    continue;
                }
            };
            let key = CopyKey::new(&mail.role, mailbox.email.as_ref());
            if self.ledger.settled(&report.id, &key) {
                continue;
            }
            // The limit protects the server from the bulk (users' mails); the few operator copies always
            // go, so operators hear of a large incident without waiting for every project's mail.
            if mail.project.is_some() && !self.bucket.lock().map(|mut b| b.take()).unwrap_or(true) {
                progress.rate_limited += 1;
                progress.pend(mail, mailbox);
                continue;
            }
            let own;
            let bytes = match &shared {
                Some(b) => b,
                None => {
                    own = (self.smtp).message(report, mail, std::slice::from_ref(mailbox), &[])?;
                    &own
                }
            };
            match self.smtp.send(report, mailbox, bytes).await {
                Sent::Accepted => {
                    progress.sent += 1;
                    self.ledger.accept(&report.id, key);
                    info!(report = %report.id, mail = %mail.role, to = %mailbox.email, "mail accepted");
                }
                Sent::Rejected(reason) => {
                    error!(report = %report.id, mail = %mail.role, to = %mailbox.email, reason = %reason,
                           "the mail server refused this recipient for good: not retried");
                    self.reject(report, mail, key, mailbox.email.as_ref(), &reason);
                }
                Sent::Deferred(e) => {
                    warn!(report = %report.id, mail = %mail.role, to = %mailbox.email, error = %e,
                          "recipient deferred; retried with the report");
                    progress.pend(mail, mailbox);
                    progress.deferred.push(e);
                }
                Sent::Failed(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn reject(&self, report: &Report, mail: &Mail, key: CopyKey, address: &str, reason: &str) {
        let view = RejectedView {
            address: address.to_owned(),
            project: mail.project.clone(),
            reason: reason.to_owned(),
        };
        self.ledger.reject(&report.id, key, view);
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn notify(&self, report: &Report) -> Result<()> {
        if self.ledger.is_complete(&report.id) {
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
            .with_context("server", self.smtp.server())
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
        let rejected = self.ledger.rejected(&report.id);
        let operators_rejected = rejected.iter().filter(|r| r.project.is_none()).count();
        if self.plan.operator_phase(&report.kind).is_some()
            && operators_rejected >= self.plan.operator_count()
        {
            error!(report = %report.id, summary = %report.summary,
                   "the mail server refused the report for every operator: nobody was told by mail");
        }
        // Projects not looked up yet come back in a later `notify` of the same report: not complete.
        if report.lookup_failed.is_empty() {
            self.ledger.complete(&report.id);
        }
        Ok(())
    }

    async fn healthcheck(&self) -> Result<()> {
        self.smtp.healthcheck().await
    }
}
