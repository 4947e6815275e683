//! One fast `[recovery]` for tests that run a runtime over the fakes in real time.

use std::time::Duration;

use crate::engine::RecoveryConfig;
use crate::engine::policy::{
    EvacuationConfig, FencingConfig, LocalRootDisk, PolicyConfig, StormConfig,
};

/// A `[recovery]` whose every wait is short, for tests that run a runtime over the fakes in real time.
///
/// Against [`RecoveryConfig::default`]: observations every 200 ms, a host is fenced after 2 down ones;
/// driver calls time out after 5 s and are tried twice, 100 ms apart; the power status is read every
/// 100 ms and must read off within 5 s; an instance's progress is read every 100 ms and a failed
/// evacuation asked again after 200 ms; the listing waits 100 ms after the isolation; the storm budget
/// allows half the hosts (a two-host test can lose one); instances with a local root disk are evacuated
/// (the fakes have shared storage). Everything else is the default. A test that needs another value sets
/// it on the result.
pub fn fast_recovery() -> RecoveryConfig {
    let ms = Duration::from_millis;
    RecoveryConfig {
        interval: ms(200),
        strikes: 2,
        call_timeout: Duration::from_secs(5),
        call_attempts: 2,
        call_backoff: ms(100),
        isolation_settle: ms(100),
        fencing: FencingConfig {
            poll_interval: ms(100),
            confirm_timeout: Duration::from_secs(5),
            ..FencingConfig::default()
        },
        storm: StormConfig {
            max_fraction: 0.5,
            ..StormConfig::default()
        },
        evacuation: EvacuationConfig {
            poll_interval: ms(100),
            retry_delay: ms(200),
            ..EvacuationConfig::default()
        },
        policy: PolicyConfig {
            local_root_disk: LocalRootDisk::Evacuate,
            ..PolicyConfig::default()
        },
        ..RecoveryConfig::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_recovery_waits_milliseconds_and_changes_nothing_else() {
        let cfg = fast_recovery();
        let waits = [
            cfg.interval,
            cfg.call_backoff,
            cfg.isolation_settle,
            cfg.fencing.poll_interval,
            cfg.evacuation.poll_interval,
            cfg.evacuation.retry_delay,
        ];
        assert!(waits.iter().all(|w| *w < Duration::from_secs(1)), "{cfg:?}");
        assert_eq!((cfg.strikes, cfg.call_attempts), (2, 2));
        assert_eq!(cfg.storm.max_fraction, 0.5);
        assert_eq!(cfg.policy.local_root_disk, LocalRootDisk::Evacuate);
        let default = RecoveryConfig::default();
        assert_eq!(cfg.step_retry, default.step_retry);
        assert_eq!(cfg.restore_timeout, default.restore_timeout);
        assert_eq!(cfg.storm.max_hosts, default.storm.max_hosts);
        assert_eq!(cfg.evacuation.concurrency, default.evacuation.concurrency);
        assert_eq!(cfg.return_to_service, default.return_to_service);
    }
}
