//! What both backends share: the operations, their replies, their timing and their errors.

use std::time::{Duration, Instant};

use freezer_dr_core::{Error, ErrorKind, PowerState, Retry};

use crate::config::Bmc;

/// One operation on one BMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Read the power state.
    Status,
    /// Hard power-off (Chassis Control "power down"), unless already off.
    Off,
    /// Power on (Chassis Control "power up"), unless already on.
    On,
}

impl Op {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Status => "reading the power status",
            Self::Off => "powering off",
            Self::On => "powering on",
        }
    }
}

/// What a BMC answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The power state read.
    State(PowerState),
    /// The control command was sent and accepted.
    Sent,
    /// The chassis already was in the wanted state: nothing was sent.
    Already,
}

/// Timing of one call to one BMC.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// The whole call, retransmits included.
    pub timeout: Duration,
    /// Wait for a reply before sending again.
    pub retransmit_interval: Duration,
    /// Sends again at most this many times per request.
    pub retransmits: u32,
}

impl Timing {
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }
}

/// A failed call, classified once, before it becomes a core [`Error`].
#[derive(Debug)]
pub(crate) struct CallError {
    pub kind: ErrorKind,
    pub retry: Retry,
    /// `auto` may try ipmitool after this (ipmi-rs cannot talk to this BMC; ipmitool may).
    pub fallback: bool,
    pub message: String,
}

impl CallError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            retry: kind.default_retry(),
            fallback: false,
            message: message.into(),
        }
    }

    pub fn fallback(mut self) -> Self {
        self.fallback = true;
        self
    }

    pub fn permanent(mut self) -> Self {
        self.retry = Retry::Permanent;
        self
    }

    pub fn temporary(mut self) -> Self {
        self.retry = Retry::Temporary;
        self
    }

    /// The core error: what was being done, on which host, through which BMC and backend. The password
    /// is scrubbed from the message in case a peer ever echoed it.
    pub fn into_error(self, bmc: &Bmc, op: Op, backend: &str) -> Error {
        let message = scrub(&self.message, bmc.password.expose());
        let e = Error::new(
            self.kind,
            format!("IPMI {} failed: {message}", op.describe()),
        )
        .with_context("host", &bmc.host)
        .with_context("bmc", bmc.target())
        .with_context("backend", backend);
        match self.retry {
            Retry::Temporary => e.temporary(),
            Retry::Permanent => e.permanent(),
        }
    }
}

/// `text` with every occurrence of `secret` replaced (nothing to replace for an empty secret).
pub(crate) fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_replaces_every_occurrence() {
        assert_eq!(scrub("a pw b pw", "pw"), "a <redacted> b <redacted>");
        assert_eq!(scrub("nothing", ""), "nothing");
    }
}
