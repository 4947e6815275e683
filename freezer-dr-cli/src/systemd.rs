//! The systemd notify protocol (`Type=notify`, `WatchdogSec=`): `READY=1` once the first observation
//! succeeded (a standby in HA: once it is in the election), `WATCHDOG=1` from the loop's own turns at
//! half of `WATCHDOG_USEC` (a hung loop stops sending it and systemd restarts the daemon), `STATUS=` with
//! the one-line summary whenever it changes, `STOPPING=1` when draining. Without `NOTIFY_SOCKET` nothing
//! is attached and nothing is sent.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use freezer_dr_core::runtime::{Event, HaRole, Observer, Status};
use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Tells systemd where the daemon stands.
pub struct SystemdNotifier {
    /// Half of `WATCHDOG_USEC`, when systemd watches this process.
    watchdog: Option<Duration>,
    state: Mutex<State>,
}

struct State {
    ready: bool,
    stopping: bool,
    status: String,
    last_watchdog: Option<Instant>,
    warned: bool,
}

impl SystemdNotifier {
    /// A notifier for this process, if systemd gave it a notify socket.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("NOTIFY_SOCKET")?;
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        debug!(watchdog = ?watchdog, "systemd notify socket found");
        Some(Self {
            watchdog,
            state: Mutex::new(State {
                ready: false,
                stopping: false,
                status: String::new(),
                last_watchdog: None,
                warned: false,
            }),
        })
    }

    fn send(&self, state: &mut State, msg: &[NotifyState<'_>]) {
        if msg.is_empty() {
            return;
        }
        if let Err(e) = sd_notify::notify(msg) {
            // Once: a broken notify socket must not flood the log every second.
            if !state.warned {
                warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
                state.warned = true;
            }
        }
    }
}

/// Ready for systemd: the first observation succeeded, or a standby is in the election.
fn ready(status: &Status) -> bool {
    match status.ha {
        Some(HaRole::Standby { healthy }) => healthy,
        _ => status.observations > 0,
    }
}

impl Observer for SystemdNotifier {
    fn turn(&self, status: &Status) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let summary = status.summary();
        let mut msg = Vec::new();
        if !state.ready && !state.stopping && ready(status) {
            state.ready = true;
            msg.push(NotifyState::Ready);
        }
        if summary != state.status {
            msg.push(NotifyState::Status(&summary));
        }
        let now = Instant::now();
        if let Some(every) = self.watchdog
            && state
                .last_watchdog
                .is_none_or(|t| now.duration_since(t) >= every)
        {
            msg.push(NotifyState::Watchdog);
            state.last_watchdog = Some(now);
        }
        self.send(&mut state, &msg);
        drop(msg);
        state.status = summary;
    }

    fn event(&self, event: &Event) {
        if matches!(event, Event::Stopping) {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            state.stopping = true;
            self.send(&mut state, &[NotifyState::Stopping]);
        }
    }
}
