//! The transition logic.

use super::{Command, Engine, Input};
use crate::Timestamp;

impl Engine {
    /// Feeds one input at time `now` and returns the commands to run next.
    pub fn step(&mut self, now: Timestamp, input: Input) -> Vec<Command> {
        let _ = (now, input);
        Vec::new()
    }

    /// The earliest time at which a [`Input::Tick`] would produce something (a poll or retry falling
    /// due), if any.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        None
    }
}
