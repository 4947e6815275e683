//! freezer-dr notifier over SMTP (notifier type `email`).
//!
//! For each recovery, every user of each affected project (as the [`freezer_dr_core::Directory`] lists
//! them) gets one mail listing that project's instances only: name, id, old host, new host, final state
//! and, for those not moved, why in plain words. The operators (`to`, `cc`, `bcc`) get one digest per
//! recovery phase with the timeline, the fencing evidence, every instance's outcome, the users who could
//! not be told, and alerts (a host needs an operator, storm, observation failing, ...) at once.
//!
//! Mails are multipart text + HTML, rendered with [minijinja](https://docs.rs/minijinja) templates that
//! are built in and can be replaced one by one from a directory; every value in HTML is escaped.
//!
//! Delivery goes through core's outbox: [`notify`](freezer_dr_core::Notifier::notify) tries once and
//! says whether trying again may help; each mail has a stable Message-ID (report id + role) so a copy
//! resent after a crash is recognisable; see [`EmailNotifier`] for what is never sent twice.
//!
//! ```toml
//! [[notifier]]
//! type = "email"
//! server = "smtp://mail.example.org:587"   # or smtps://mail.example.org:465
//! starttls = "required"                    # or "opportunistic", "never"
//! ca_file = "/etc/freezer-dr/mail-ca.pem"  # optional, added to the system's CAs
//! username = "freezer-dr"                  # optional SMTP AUTH
//! password = { file = "/etc/freezer-dr/smtp.pass" }
//! from = "freezer-dr <freezer-dr@example.org>"
//! to = ["cloud-ops@example.org"]
//! cc = []
//! bcc = []
//! user_phases = ["finished"]               # add "started" to tell users when recovery starts
//! operator_phases = ["started", "finished"]
//! max_mails_per_minute = 120
//! timeout = "30s"
//! ```

mod config;
mod ledger;
mod notifier;
mod plan;
mod rate;
mod render;
mod sample;
mod smtp;

pub use config::{EmailConfig, Phase, Starttls};
pub use notifier::EmailNotifier;

use freezer_dr_core::registry::NotifierRegistration;

/// The section printed by `freezer-dr example notifier email`.
pub const EXAMPLE: &str = r#"type = "email"
server = "smtp://mail.example.org:587"
starttls = "required"
from = "freezer-dr <freezer-dr@example.org>"
to = ["cloud-ops@example.org"]
cc = []
bcc = []
user_phases = ["finished"]
operator_phases = ["started", "finished"]
max_mails_per_minute = 120
timeout = "30s"
"#;

freezer_dr_core::register! {
    NotifierRegistration {
        name: "email",
        description: "Mail over SMTP (STARTTLS/SMTPS): one mail per affected project to its users, a digest and alerts to the operators.",
        example: EXAMPLE,
        build: |ctx| Ok(Box::new(EmailNotifier::new(ctx.parse()?)?)),
    }
}
