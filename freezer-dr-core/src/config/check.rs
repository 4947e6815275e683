//! Value checks serde cannot express (a strike count of 0, a fraction above 1, ...): each problem is
//! (key, what is wrong and how to fix it), turned into a located [`crate::ConfigError`] by the parse.

use std::time::Duration;

use super::JournalConfig;
use super::example::core_example;
use crate::engine::RecoveryConfig;

/// Value checks serde cannot express. Each problem is (key, what is wrong and how to fix it).
pub(super) fn check_recovery(r: &RecoveryConfig) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut positive = |key: &str, d: Duration| {
        if d.is_zero() {
            let eg = core_example(key).unwrap_or_default();
            problems.push((
                key.to_owned(),
                format!("must be longer than 0s, e.g. `{eg}`"),
            ));
        }
    };
    positive("recovery.interval", r.interval);
    positive("recovery.call_timeout", r.call_timeout);
    positive("recovery.call_backoff", r.call_backoff);
    positive("recovery.step_retry", r.step_retry);
    positive("recovery.forget_after", r.forget_after);
    positive("recovery.restore_timeout", r.restore_timeout);
    positive("recovery.fencing.poll_interval", r.fencing.poll_interval);
    positive(
        "recovery.fencing.confirm_timeout",
        r.fencing.confirm_timeout,
    );
    positive(
        "recovery.evacuation.poll_interval",
        r.evacuation.poll_interval,
    );
    positive("recovery.evacuation.timeout", r.evacuation.timeout);

    let mut at_least_one = |key: &str, n: u64, why: &str| {
        if n == 0 {
            let eg = core_example(key).unwrap_or_default();
            problems.push((
                key.to_owned(),
                format!("must be at least 1 ({why}), e.g. `{eg}`"),
            ));
        }
    };
    let first_try = "the first try counts";
    let pause = "to stop all fencing use `freezer-dr pause`";
    let strikes = "consecutive down observations before a host is fenced";
    for (key, n, why) in [
        ("recovery.strikes", u64::from(r.strikes), strikes),
        ("recovery.call_attempts", r.call_attempts.into(), first_try),
        (
            "recovery.evacuation.attempts",
            r.evacuation.attempts.into(),
            first_try,
        ),
        (
            "recovery.fencing.concurrency",
            r.fencing.concurrency as u64,
            "power-offs in flight at once",
        ),
        (
            "recovery.evacuation.concurrency",
            r.evacuation.concurrency as u64,
            "instances evacuated at once",
        ),
        ("recovery.storm.max_hosts", r.storm.max_hosts as u64, pause),
        (
            "recovery.storm.max_new_fencings_per_cycle",
            r.storm.max_new_fencings_per_cycle as u64,
            pause,
        ),
    ] {
        at_least_one(key, n, why);
    }

    // The pause before listing a fenced host's instances (two daemons racing): a few seconds is what it
    // takes; more only delays every recovery.
    let settle_max = Duration::from_secs(60);
    if r.isolation_settle > settle_max {
        problems.push((
            "recovery.isolation_settle".to_owned(),
            format!(
                "at most 1m (it delays every evacuation), found {}; e.g. `isolation_settle = \"2s\"`",
                humantime::format_duration(r.isolation_settle)
            ),
        ));
    }

    let f = r.storm.max_fraction;
    if !(f > 0.0 && f <= 1.0) {
        problems.push((
            "recovery.storm.max_fraction".to_owned(),
            format!(
                "must be more than 0 and at most 1 (a fraction of the observed hosts), found {f}, \
                 e.g. `max_fraction = 0.25`"
            ),
        ));
    }
    if r.policy.metadata_key.trim().is_empty() {
        problems.push((
            "recovery.policy.metadata_key".to_owned(),
            "must not be empty, e.g. `metadata_key = \"freezer_dr:evacuate\"`".to_owned(),
        ));
    }
    for (i, state) in r.policy.skip_states.iter().enumerate() {
        // Nova statuses are upper case; a lower-case entry would silently never match.
        if state.is_empty() || *state != state.to_uppercase() {
            problems.push((
                format!("recovery.policy.skip_states[{i}]"),
                format!(
                    "Nova statuses are upper case: write {:?}, not {state:?}",
                    state.to_uppercase()
                ),
            ));
        }
    }
    problems
}

pub(super) fn check_journal(j: &JournalConfig) -> Vec<(String, String)> {
    if j.path.as_os_str().is_empty() {
        vec![(
            "journal.path".to_owned(),
            "must not be empty, e.g. `path = \"/var/lib/freezer-dr/journal.redb\"`".to_owned(),
        )]
    } else {
        Vec::new()
    }
}
