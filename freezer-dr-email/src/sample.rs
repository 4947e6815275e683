//! Sample reports, used to render every template once when the notifier is built.

use freezer_dr_core::{
    Audience, HostId, Instance, InstanceOutcome, Outcome, Recipient, Report, ReportKind, Timestamp,
};

fn outcome(id: &str, project: &str, outcome: Outcome) -> InstanceOutcome {
    InstanceOutcome {
        instance: Instance {
            id: id.into(),
            name: format!("vm-{id}"),
            project: project.into(),
            user: "u".into(),
            status: "ACTIVE".into(),
            host: HostId::from("compute-1"),
            metadata: Default::default(),
            volume_backed: true,
        },
        outcome,
        attempts: 1,
    }
}

/// A recovery with every outcome, a user without email and one project without a name, and an alert.
pub(crate) fn reports() -> Vec<Report> {
    let mut r = Report::new(
        "sample-1",
        Timestamp(0),
        ReportKind::Recovered,
        Audience::OperatorsAndUsers,
        Some(HostId::from("compute-1")),
        "compute-1: 1 of 4 instance(s) running elsewhere, 1 failed, 1 left alone",
    );
    r.details = vec!["1970-01-01T00:00:00Z  confirmed off".into()];
    r.instances = vec![
        outcome(
            "a",
            "p1",
            Outcome::Evacuated {
                to: HostId::from("compute-2"),
                status: "ACTIVE".into(),
            },
        ),
        outcome(
            "b",
            "p1",
            Outcome::Failed {
                reason: "no valid host".into(),
            },
        ),
        outcome(
            "c",
            "p2",
            Outcome::Skipped {
                reason: "opted out".into(),
            },
        ),
        outcome("d", "p2", Outcome::Gone),
    ];
    r.recipients.insert(
        "p1".into(),
        vec![
            Recipient {
                user_id: "u1".into(),
                name: "alice".into(),
                email: Some("alice@example.org".into()),
            },
            Recipient {
                user_id: "u2".into(),
                name: "bob".into(),
                email: None,
            },
        ],
    );
    // p1 has a name, p2 is named by its id (its name could not be learned): templates render both.
    r.project_names.insert("p1".into(), "web-prod".into());
    let alert = Report::new(
        "sample-2",
        Timestamp(0),
        ReportKind::Storm,
        Audience::Operators,
        None,
        "3 hosts down at once: nothing fenced",
    );
    vec![r, alert]
}
