//! What this process already delivered, per report, so a retry of `notify` never mails anyone twice.
//!
//! The runtime's outbox records which audiences were told across restarts (`Report::told`); this ledger
//! covers what the outbox cannot see: the copies of one attempt that went out before it failed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use crate::plan::Mail;
use crate::render::RejectedView;

/// Completed reports remembered, so a repeated `notify` (a retry after a lost reply) sends nothing twice.
const REMEMBERED_REPORTS: usize = 4096;

/// One copy of one mail: its role and its recipient, compared without case.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CopyKey(String);

impl CopyKey {
    pub fn new(role: &str, address: &str) -> Self {
        Self(format!("{role}\n{}", address.to_ascii_lowercase()))
    }

    /// The address, if this copy belongs to `role`.
    fn address_in(&self, role: &str) -> Option<&str> {
        self.0.strip_prefix(role)?.strip_prefix('\n')
    }
}

/// What happened to the mails of the reports seen by this process.
#[derive(Default)]
pub(crate) struct Ledger {
    inner: Mutex<Reports>,
}

#[derive(Default)]
struct Reports {
    reports: HashMap<String, ReportState>,
    completed: VecDeque<String>,
}

#[derive(Default)]
struct ReportState {
    /// Every copy the server accepted.
    accepted: HashSet<CopyKey>,
    /// Copies refused for good, with the key they were refused under.
    rejected: Vec<(CopyKey, RejectedView)>,
    complete: bool,
}

impl Ledger {
    /// Runs `f` over the state of `report`, if the ledger knows it (a poisoned lock knows nothing).
    fn read<T: Default>(&self, report: &str, f: impl FnOnce(&ReportState) -> T) -> T {
        self.inner
            .lock()
            .ok()
            .and_then(|l| l.reports.get(report).map(f))
            .unwrap_or_default()
    }

    fn write(&self, report: &str, f: impl FnOnce(&mut ReportState)) {
        if let Ok(mut l) = self.inner.lock() {
            f(l.reports.entry(report.to_owned()).or_default());
        }
    }

    /// True if this copy was accepted or refused for good before: it is not sent again.
    pub fn settled(&self, report: &str, key: &CopyKey) -> bool {
        self.read(report, |s| {
            s.accepted.contains(key) || s.rejected.iter().any(|(k, _)| k == key)
        })
    }

    pub fn accept(&self, report: &str, key: CopyKey) {
        self.write(report, |s| {
            s.accepted.insert(key);
        });
    }

    pub fn reject(&self, report: &str, key: CopyKey, why: RejectedView) {
        self.write(report, |s| s.rejected.push((key, why)));
    }

    /// Every copy of the report refused for good, in the order they were refused.
    pub fn rejected(&self, report: &str) -> Vec<RejectedView> {
        self.read(report, |s| {
            s.rejected.iter().map(|(_, r)| r.clone()).collect()
        })
    }

    /// Per project of `mails`: the addresses its mail was accepted for, sorted.
    pub fn told(&self, report: &str, mails: &[Mail]) -> BTreeMap<String, Vec<String>> {
        mails
            .iter()
            .filter_map(|mail| {
                let project = mail.project.clone()?;
                let mut told: Vec<String> = self.read(report, |s| {
                    s.accepted
                        .iter()
                        .filter_map(|k| k.address_in(&mail.role).map(str::to_owned))
                        .collect()
                });
                told.sort();
                Some((project, told))
            })
            .collect()
    }

    pub fn is_complete(&self, report: &str) -> bool {
        self.read(report, |s| s.complete)
    }

    /// Every mail of the report went out: a later `notify` of it sends nothing. Only the last
    /// [`REMEMBERED_REPORTS`] completed reports are kept.
    pub fn complete(&self, report: &str) {
        if let Ok(mut l) = self.inner.lock() {
            l.reports.entry(report.to_owned()).or_default().complete = true;
            l.completed.push_back(report.to_owned());
            while l.completed.len() > REMEMBERED_REPORTS {
                if let Some(old) = l.completed.pop_front() {
                    l.reports.remove(&old);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Rendered;

    fn refused(address: &str) -> RejectedView {
        RejectedView {
            address: address.into(),
            project: None,
            reason: "550 no such user".into(),
        }
    }

    fn mail(role: &str, project: &str) -> Mail {
        Mail {
            role: role.into(),
            project: Some(project.into()),
            rendered: Rendered {
                subject: String::new(),
                text: String::new(),
                html: String::new(),
            },
            recipients: Vec::new(),
            headers: None,
        }
    }

    #[test]
    fn an_accepted_or_refused_copy_is_settled_whatever_the_case_of_its_address() {
        let l = Ledger::default();
        let alice = CopyKey::new("project.p1", "Alice@Example.org");
        assert!(!l.settled("r1", &alice));
        l.accept("r1", alice);
        assert!(l.settled("r1", &CopyKey::new("project.p1", "alice@example.org")));
        assert!(
            !l.settled("r1", &CopyKey::new("operators", "alice@example.org")),
            "another mail to the same address is another copy"
        );
        assert!(
            !l.settled("r2", &CopyKey::new("project.p1", "alice@example.org")),
            "another report"
        );
        l.reject(
            "r1",
            CopyKey::new("operators", "x@example.org"),
            refused("x@example.org"),
        );
        assert!(l.settled("r1", &CopyKey::new("operators", "x@example.org")));
        assert_eq!(l.rejected("r1"), vec![refused("x@example.org")]);
        assert!(l.rejected("r2").is_empty());
    }

    #[test]
    fn told_lists_each_projects_accepted_addresses_only() {
        let l = Ledger::default();
        l.accept("r1", CopyKey::new("project.p1", "bob@example.org"));
        l.accept("r1", CopyKey::new("project.p1", "alice@example.org"));
        l.accept("r1", CopyKey::new("project.p10", "carol@example.org"));
        l.accept("r1", CopyKey::new("operators", "ops@example.org"));
        let told = l.told("r1", &[mail("project.p1", "p1"), mail("project.p2", "p2")]);
        assert_eq!(
            told,
            BTreeMap::from([
                (
                    "p1".to_owned(),
                    vec!["alice@example.org".to_owned(), "bob@example.org".to_owned()]
                ),
                ("p2".to_owned(), Vec::new()),
            ])
        );
    }

    #[test]
    fn only_the_last_completed_reports_are_remembered() {
        let l = Ledger::default();
        for i in 0..=REMEMBERED_REPORTS {
            l.complete(&format!("r{i}"));
        }
        assert!(!l.is_complete("r0"), "the oldest is forgotten");
        assert!(l.is_complete("r1"));
        assert!(l.is_complete(&format!("r{REMEMBERED_REPORTS}")));
    }
}
