//! What every test that starts a real peer needs: a free loopback port for it, and a guard that stops
//! the process however the test ends.

use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::process::Child;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it), for a peer the test starts.
/// Panics when loopback cannot be bound: such a machine cannot run these tests at all.
pub fn free_port() -> u16 {
    // Test code: a machine that cannot bind loopback cannot run these tests at all.
    #[allow(clippy::expect_used)]
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a free port on 127.0.0.1")
        .port()
}

/// A peer process started by a test: killed and reaped when dropped, so a failing test leaves no
/// process behind. Derefs to the [`Child`].
#[derive(Debug)]
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Polls `ready` every 100 ms until it holds. Fails the test, with `log()`, when the process exits
    /// first or `within` passes; `name` names the process in those messages.
    pub fn wait_until(
        &mut self,
        name: &str,
        within: Duration,
        mut ready: impl FnMut() -> bool,
        log: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + within;
        while !ready() {
            if let Ok(Some(status)) = self.0.try_wait() {
                panic!("{name} exited ({status}); its log:\n{}", log());
            }
            assert!(
                Instant::now() < deadline,
                "{name}: not ready within {within:?}; its log:\n{}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Already gone is fine: the guard only makes sure.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
