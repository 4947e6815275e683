//! What every test that starts a real peer needs: a free loopback port for it, and a guard that stops
//! the process however the test ends.

use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::process::Child;

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
