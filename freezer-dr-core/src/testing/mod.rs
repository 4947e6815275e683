//! Fakes for every trait and conformance suites (feature `testing`).
