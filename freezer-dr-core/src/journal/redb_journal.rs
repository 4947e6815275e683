//! The embedded single-file journal on redb.

/// The embedded journal: one redb file (default `/var/lib/freezer-dr/journal.redb`).
#[derive(Debug)]
pub struct RedbJournal {}
