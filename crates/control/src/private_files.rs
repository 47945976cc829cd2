//! The data directory and the keys in it, readable by their owner only: the directory holds
//! every tenant's mail (the spool), DKIM private keys and password hashes (the database), the
//! SRS key and the TLS key the relay made. On a host with other users, any of them could read
//! those if they were created with the usual 0644/0755.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Internal, Result};

/// Makes `dir` (and what leads to it) if missing, and leaves it readable by its owner only.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` (replacing what is there), readable by its owner only, synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // The mode above holds for a file made now; one that was there keeps its own otherwise.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The data directory: made readable by its owner only, or, when it was there already with
/// access for group or others, narrowed to its owner with a warning that says so. A relay calls
/// it at start in cluster mode too: its spool (mail) and keys are there.
pub fn data_dir(dir: &Path) -> Result<()> {
    let was = fs::metadata(dir)
        .ok()
        .map(|m| m.permissions().mode() & 0o777);
    private_dir(dir).map_err(|e| {
        Internal(format!(
            "cannot make the data directory {} its owner's only: {e}",
            dir.display()
        ))
    })?;
    if let Some(mode) = was
        && mode & 0o077 != 0
    {
        tracing::warn!(
            dir = %dir.display(),
            "the data directory (mail, DKIM keys, password hashes) was readable by others (mode {mode:o}): now 700"
        );
    }
    Ok(())
}
