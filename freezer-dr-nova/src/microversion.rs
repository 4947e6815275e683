//! Compute API microversions: parsing, comparing, choosing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A compute API microversion, `2.53`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Microversion {
    major: u16,
    minor: u16,
}

impl Microversion {
    /// `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// The base version (2.1), which every compute API serves.
    pub const BASE: Self = Self::new(2, 1);
    /// The default cap: from 2.95 Nova leaves evacuated servers SHUTOFF.
    pub const DEFAULT_CAP: Self = Self::new(2, 94);
    /// The highest microversion whose request and response bodies this code knows.
    pub const HIGHEST_KNOWN: Self = Self::new(2, 100);

    /// From 2.11: `forced_down` exists (`PUT /os-services/force-down`).
    pub(crate) const FORCE_DOWN: Self = Self::new(2, 11);
    /// From 2.14: evacuate takes no `onSharedStorage` and returns no `adminPass`.
    pub(crate) const EVACUATE_NO_SHARED_STORAGE: Self = Self::new(2, 14);
    /// From 2.53: services are updated by id (UUID) with `PUT /os-services/{id}`.
    pub(crate) const SERVICE_BY_ID: Self = Self::new(2, 53);
    /// From 2.95: an evacuated server ends SHUTOFF.
    pub(crate) const EVACUATE_TO_STOPPED: Self = Self::new(2, 95);

    /// The version in use: the highest both sides know, at most `cap`; `None` if the server's range and
    /// ours do not meet.
    pub fn negotiate(server_min: Self, server_max: Self, cap: Self) -> Option<Self> {
        let want = cap.min(Self::HIGHEST_KNOWN).min(server_max);
        (want >= server_min && want >= Self::BASE).then_some(want)
    }
}

impl fmt::Display for Microversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Microversion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a microversion like \"2.53\"");
        let (a, b) = s.trim().split_once('.').ok_or_else(bad)?;
        Ok(Self::new(
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
        ))
    }
}

impl<'de> Deserialize<'de> for Microversion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_numerically() {
        let a: Microversion = "2.9".parse().unwrap();
        let b: Microversion = "2.10".parse().unwrap();
        assert!(a < b, "2.9 < 2.10 numerically, not as text");
        assert_eq!(b.to_string(), "2.10");
        assert!("2".parse::<Microversion>().is_err());
        assert!("two.one".parse::<Microversion>().is_err());
    }

    #[test]
    fn negotiates_the_highest_common_version_under_the_cap() {
        let v = |s: &str| s.parse::<Microversion>().unwrap();
        assert_eq!(
            Microversion::negotiate(v("2.1"), v("2.104"), Microversion::DEFAULT_CAP),
            Some(v("2.94"))
        );
        assert_eq!(
            Microversion::negotiate(v("2.1"), v("2.60"), Microversion::DEFAULT_CAP),
            Some(v("2.60"))
        );
        assert_eq!(
            Microversion::negotiate(v("2.1"), v("2.104"), v("2.200")),
            Some(Microversion::HIGHEST_KNOWN)
        );
        assert_eq!(
            Microversion::negotiate(v("2.60"), v("2.104"), v("2.53")),
            None
        );
    }
}
