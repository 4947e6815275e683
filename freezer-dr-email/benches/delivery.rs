//! How fast one large incident is mailed: rendering alone, and delivery to a real SMTP server (aiosmtpd on
//! 127.0.0.1, plain SMTP, pooled connections). Prints a table; run with
//! `cargo bench -p freezer-dr-email --bench delivery`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use freezer_dr_core::{HostId, InstanceOutcome, Notifier, Outcome, Report};

/// A recovery of one host with `projects` projects, two instances and one user each.
fn incident(id: &str, projects: usize) -> Report {
    let mut r = recovered(id);
    r.instances.clear();
    r.recipients.clear();
    for p in 0..projects {
        let project = format!("project-{p:04}");
        for i in 0..2 {
            r.instances.push(InstanceOutcome {
                instance: instance(&format!("{project}-vm-{i}"), &format!("vm-{i}"), &project),
                outcome: Outcome::Evacuated {
                    to: HostId::from("compute-9"),
                    status: "ACTIVE".into(),
                },
                attempts: 1,
            });
        }
        let email = format!("user-{p}@example.org");
        r.recipients
            .insert(project.clone(), vec![user(&format!("u-{p}"), Some(&email))]);
    }
    r
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("| scenario | mails | time | per mail | mails/s |");
    println!("|---|---:|---:|---:|---:|");
    for projects in [10usize, 100, 300] {
        let server = SmtpServer::start(&ServerOptions::default());
        let mut cfg = config(server.port);
        cfg.max_mails_per_minute = 100_000;
        let n = freezer_dr_email::EmailNotifier::new(cfg).unwrap();
        let report = incident(&format!("bench-{projects}"), projects);
        let start = Instant::now();
        n.notify(&report).await.unwrap();
        let took = start.elapsed();
        let mails = projects + 3;
        assert_eq!(server.messages().len(), mails);
        println!(
            "| deliver {projects} projects to aiosmtpd | {mails} | {:.2?} | {:.2?} | {:.0} |",
            took,
            took / mails as u32,
            mails as f64 / took.as_secs_f64()
        );
        // A repeated notify of a delivered report: what a retry after a lost reply costs.
        let start = Instant::now();
        n.notify(&report).await.unwrap();
        println!(
            "| repeat notify, {projects} projects (nothing sent) | 0 | {:.2?} | - | - |",
            start.elapsed()
        );
    }
}
