//! For the tests that prove no secret reaches a log line, an error or `Debug` output: a trace-level log
//! kept in memory, and every fencer call's outcome rendered every way it can be shown.

use std::fmt::Debug;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Error, ErrorKind, Fencer, HostId, Result};

/// Everything logged (at trace level, by this crate and every library) since [`CapturedLog::install`].
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Installs the process-wide subscriber, at trace level, writing here. Fails if the test process
    /// already has one (the capture would stay empty and the test prove nothing).
    pub fn install() -> Result<Self> {
        let log = Self::default();
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .try_init()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("a tracing subscriber is already installed in this test process: {e}"),
                )
            })?;
        Ok(log)
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Calls every method of `fencer` for `host` and appends each outcome to `seen` as an operator or a log
/// could see it: an error's `Display`, its `Debug`, its stored `Failure`; and the fencer's own `Debug`.
pub async fn exercise_fencer<F: Fencer + Debug>(fencer: &F, host: &HostId, seen: &mut Vec<String>) {
    let mut record = |what: &str, r: Result<String>| match r {
        Ok(v) => seen.push(format!("{what}: ok {v}")),
        Err(e) => {
            seen.push(format!("{what}: {e}"));
            seen.push(format!("{what}: {e:?}"));
            seen.push(format!("{what}: {}", e.to_failure()));
        }
    };
    record(
        "power_off",
        fencer.power_off(host).await.map(|()| String::new()),
    );
    record(
        "power_status",
        fencer.power_status(host).await.map(|s| s.to_string()),
    );
    record(
        "power_on",
        fencer.power_on(host).await.map(|()| String::new()),
    );
    record(
        "healthcheck",
        fencer.healthcheck().await.map(|()| String::new()),
    );
    seen.push(format!("{fencer:?}"));
}

/// Builds the registered fencer `name` from each section body of `sections` (each must fail, as
/// `fencer[0]` of `/etc/freezer-dr/freezer-dr.toml`) and appends each error's `Display` and `Debug` to
/// `seen`. Panics when the fencer is not registered, a body is not TOML, or a section builds.
pub fn exercise_fencer_config(name: &str, sections: &[String], seen: &mut Vec<String>) {
    let Some(reg) = crate::registry::fencers()
        .into_iter()
        .find(|r| r.name == name)
    else {
        panic!("no fencer {name:?} is registered");
    };
    for options in sections {
        let options = match toml::from_str(options) {
            Ok(table) => table,
            Err(e) => panic!("not a TOML section ({e}):\n{options}"),
        };
        let ctx = crate::registry::BuildContext {
            file: std::path::Path::new("/etc/freezer-dr/freezer-dr.toml"),
            section: "fencer[0]".into(),
            options,
        };
        match (reg.build)(&ctx) {
            Ok(_) => panic!("{:?} must not build", ctx.options),
            Err(e) => {
                seen.push(e.to_string());
                seen.push(format!("{e:?}"));
            }
        }
    }
}

/// Panics, naming the place, when `secret` is in any of `seen` or in `logs`.
#[track_caller]
pub fn assert_not_shown(secret: &str, seen: &[String], logs: &str) {
    for s in seen {
        assert!(!s.contains(secret), "{secret:?} leaked: {s}");
    }
    assert!(
        !logs.contains(secret),
        "{secret:?} leaked into the logs:\n{logs}"
    );
}
