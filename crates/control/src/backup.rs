//! A backup of the embedded store, taken while the relay runs, and its restore while the relay
//! is stopped. A backup holds the database (tenants, domains, connectors, users, DKIM keys,
//! accounts, tokens, restrictions, the audit log, the trace), the SRS key the relay made
//! (without it, bounces to copies forwarded before a restore could not be returned) and the TLS
//! certificate it made. Not the spool: its mail is delivered by the relay that holds it, and a
//! restore leaves it where it is. A restore moves what it replaces aside; it deletes nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use relayward_config::Config;
use relayward_store::sqlite_backup;
pub use relayward_store::sqlite_backup::Snapshot;

use crate::{Conflict, ControlError, Internal, Invalid, Result};

const DATABASE: &str = "relayward.sqlite";
const SRS_KEY: &str = "srs.key";
const TLS: &str = "tls";

/// What a backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub database: Snapshot,
    /// The other files copied (`srs.key`, `tls/cert.pem`, ...).
    pub files: Vec<String>,
}

/// What a restore put in place and what it moved aside.
#[derive(Debug)]
pub struct Restored {
    pub database: Snapshot,
    pub files: Vec<String>,
    /// Where the replaced files went, and their names; `None` when there were none.
    pub aside: Option<(PathBuf, Vec<String>)>,
}

/// Copies the embedded store into `dest`, a new or empty directory (made readable by its owner
/// only: it holds keys and password hashes).
pub fn backup(config: &Config, dest: &Path) -> Result<Backup> {
    embedded_only(config, "back it up with pg_dump")?;
    let db = config.data_dir.join(DATABASE);
    if !db.is_file() {
        return Err(Invalid(format!(
            "there is no database at {}: nothing to back up (has the relay run with this configuration?)",
            db.display()
        )));
    }
    if dest.exists() {
        let empty = fs::read_dir(dest)
            .map_err(io("reading", dest))?
            .next()
            .is_none();
        if !empty {
            return Err(Conflict(format!(
                "{} is not empty: a backup goes into a new or empty directory",
                dest.display()
            )));
        }
    }
    private_dir(dest)?;
    let copy = dest.join(DATABASE);
    let database = sqlite_backup::backup(&db, &copy)?;
    // A backup is one once it is on the disk.
    fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(io("syncing", &copy))?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o600))
        .map_err(io("setting the permissions of", &copy))?;
    let files = copy_files(&config.data_dir, dest)?;
    sync_dir(dest)?;
    Ok(Backup { database, files })
}

/// Puts the backup in `src` in place of the embedded store. Refused while a relay runs on the
/// data directory, and for a directory that does not hold a sound database this binary knows.
pub fn restore(config: &Config, src: &Path) -> Result<Restored> {
    embedded_only(config, "restore it with pg_restore or psql")?;
    let database = sqlite_backup::inspect(&src.join(DATABASE))
        .map_err(|e| Invalid(format!("{} is not a usable backup: {e}", src.display())))?;
    let data = &config.data_dir;
    // A running relay holds the spool's lock: taking it tells that none runs, and holding it
    // keeps one from starting while the files change.
    let spool = data.join("spool");
    fs::create_dir_all(&spool).map_err(io("creating", &spool))?;
    let lock_path = spool.join("spool.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("opening", &lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Conflict(format!(
                "a relay is running on {}: stop it first, then restore",
                data.display()
            )));
        }
        Err(fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e)),
    }

    // A name no earlier restore took: one second may see two.
    let stamp = relayward_clock::now_secs();
    let aside_dir = (0..)
        .map(|n| match n {
            0 => data.join(format!("before-restore-{stamp}")),
            n => data.join(format!("before-restore-{stamp}-{n}")),
        })
        .find(|d| !d.exists())
        .unwrap_or_else(|| data.join("before-restore"));
    let mut moved = Vec::new();
    // Should anything fail from here (a full disk), what was copied is removed and what was
    // moved aside goes back: the data directory is as it was, and the error says why.
    let partial = data.join(format!("{DATABASE}.restoring"));
    // `copying`: the failure came once everything was aside, so the SRS key and TLS files in
    // the data directory are the backup's copies (before, they may still be the originals).
    let undo = |moved: &[String], copying: bool| {
        if copying {
            let _ = fs::remove_file(&partial);
            let _ = fs::remove_file(data.join(SRS_KEY));
            let _ = fs::remove_dir_all(data.join(TLS));
        }
        for name in moved {
            let _ = fs::rename(aside_dir.join(name), data.join(name));
        }
        let _ = fs::remove_dir(&aside_dir);
    };
    for name in [
        DATABASE.to_string(),
        format!("{DATABASE}-wal"),
        format!("{DATABASE}-shm"),
        SRS_KEY.to_string(),
        TLS.to_string(),
    ] {
        let from = data.join(&name);
        if !from.exists() {
            continue;
        }
        let step = if moved.is_empty() {
            private_dir(&aside_dir)
        } else {
            Ok(())
        }
        .and_then(|()| fs::rename(&from, aside_dir.join(&name)).map_err(io("moving aside", &from)));
        if let Err(e) = step {
            undo(&moved, false);
            return Err(e);
        }
        moved.push(name);
    }
    // The database last, under another name until it is whole.
    let _ = fs::remove_file(&partial); // left by a restore that was killed: only ours to use
    let put = (if moved.is_empty() {
        Ok(())
    } else {
        sync_dir(&aside_dir)
    })
    .and_then(|()| copy_files(src, data))
    .and_then(|files| {
        copy_private(&src.join(DATABASE), &partial)?;
        fs::rename(&partial, data.join(DATABASE)).map_err(io("putting in place", &partial))?;
        Ok(files)
    });
    let files = match put {
        Ok(files) => files,
        Err(e) => {
            undo(&moved, true);
            return Err(e);
        }
    };
    sync_dir(data)?;
    drop(lock);
    Ok(Restored {
        database,
        files,
        aside: (!moved.is_empty()).then_some((aside_dir, moved)),
    })
}

fn embedded_only(config: &Config, how: &str) -> Result<()> {
    if config.database_url.is_some() {
        return Err(Invalid(format!(
            "this configuration keeps its database in PostgreSQL ([storage] database_url): {how}; this command copies the embedded store"
        )));
    }
    Ok(())
}

/// Copies the SRS key and the TLS files from `from` to `to`, those that are there; the names
/// copied.
fn copy_files(from: &Path, to: &Path) -> Result<Vec<String>> {
    let mut copied = Vec::new();
    if from.join(SRS_KEY).is_file() {
        copy_private(&from.join(SRS_KEY), &to.join(SRS_KEY))?;
        copied.push(SRS_KEY.to_string());
    }
    let tls = from.join(TLS);
    if tls.is_dir() {
        let mut names: Vec<String> = fs::read_dir(&tls)
            .map_err(io("reading", &tls))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if !names.is_empty() {
            private_dir(&to.join(TLS))?;
        }
        for n in &names {
            copy_private(&tls.join(n), &to.join(TLS).join(n))?;
            copied.push(format!("{TLS}/{n}"));
        }
        if !names.is_empty() {
            sync_dir(&to.join(TLS))?;
        }
    }
    Ok(copied)
}

/// A copy readable by its owner only (keys are among what is copied), synced to the disk.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let bytes = fs::read(from).map_err(io("reading", from))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(io("creating", to))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(io("writing", to))
}

fn private_dir(dir: &Path) -> Result<()> {
    crate::private_files::private_dir(dir).map_err(io("creating", dir))
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ControlError {
    let path = path.display().to_string();
    move |e| Internal(format!("{what} {path}: {e}"))
}
