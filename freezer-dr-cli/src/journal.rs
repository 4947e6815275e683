//! The journal as the CLI uses it: the daemon's file, or an in-memory one for dry runs.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use freezer_dr_core::Journal;
use freezer_dr_core::journal::{MemoryJournal, RedbJournal};

/// Opens (creating it if missing) the journal file named by `[journal] path`.
pub fn open(path: &Path) -> anyhow::Result<Arc<RedbJournal>> {
    let journal = RedbJournal::open(path)
        .with_context(|| format!("cannot open the journal {}", path.display()))?;
    Ok(Arc::new(journal))
}

/// Opens the journal file only if it exists: read-only commands must not create one (nor its directory)
/// as a side effect. `None` means nothing was ever recorded there.
pub fn open_existing(path: &Path) -> anyhow::Result<Option<Arc<RedbJournal>>> {
    if !path.exists() {
        return Ok(None);
    }
    open(path).map(Some)
}

/// An empty journal in memory, for dry runs: nothing on disk is read or written.
pub fn memory() -> Arc<dyn Journal> {
    Arc::new(MemoryJournal::new())
}
