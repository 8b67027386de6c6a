//! The data directory: the SQLite database, the service-JWT keys, and the lock that says which
//! process serves from it.
//!
//! `cloakroom serve` creates the directory and the database when they are missing; the admin
//! commands never do. An admin command pointed at the wrong `--data-dir` used to create an
//! empty database there and report an empty user list, as if every account were gone: it now
//! says that there is no Cloakroom database at that path.
//!
//! A running server holds an exclusive advisory lock on `cloakroom.lock` in the directory for
//! its whole life (`flock`, through `File::try_lock`; the kernel releases it when the process
//! ends, however it ends). `cloakroom restore` takes the same lock, so it cannot replace the
//! database under a running server, and a second server on the same directory stops with a
//! clear message instead of sharing its files. The admin commands that work beside a running
//! server (`user …`, `sessions …`, `keys …`, `backup`) do not take it: SQLite and the key files
//! are safe to use from several processes.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use crate::config::{AccountStoreKind, SessionStoreKind, Settings};
use crate::state::StartupError;

/// The database file inside the data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cloakroom.db")
}

/// The lock file inside the data directory.
fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cloakroom.lock")
}

/// Whether either store lives in the data directory's SQLite database.
pub(crate) fn uses_sqlite(settings: &Settings) -> bool {
    settings.session_store == SessionStoreKind::Sqlite
        || settings.account_store == AccountStoreKind::Sqlite
}

/// `path` made absolute for messages, so an operator sees which directory was meant even when
/// it was given relative to another working directory.
pub(crate) fn shown(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}

/// Creates the data directory (mode 0700: it will hold signing keys) if needed.
pub fn ensure_data_dir(dir: &Path) -> Result<(), StartupError> {
    use std::os::unix::fs::DirBuilderExt;
    let err = |source| StartupError::DataDir {
        path: shown(dir),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    // An existing directory keeps the operator's mode: every file in it is created 0600, but
    // a directory others can list still tells them who has an account (file names, sizes).
    if let Ok(meta) = std::fs::metadata(dir)
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        tracing::warn!(
            data_dir = %dir.display(),
            "the data directory is accessible to other users; consider `chmod 700` on it"
        );
    }
    // Fail now, not at the first sign-up, if the directory is not writable.
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// For an admin command: the data directory exists and, when a store is in SQLite, holds a
/// Cloakroom database. Creates nothing.
pub(crate) fn require_existing(settings: &Settings) -> Result<(), StartupError> {
    let dir = &settings.data_dir;
    if uses_sqlite(settings) {
        let path = std::path::absolute(database_path(dir)).unwrap_or_else(|_| database_path(dir));
        return cloakroom_sqlite::verify(&path)
            .map(drop)
            .map_err(|source| StartupError::NoDatabase { source });
    }
    if dir.is_dir() {
        Ok(())
    } else {
        Err(StartupError::DataDir {
            path: shown(dir),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

/// An exclusive hold on a data directory, released when dropped or when the process ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock, or says which process holds it. The holder's process id is written in
    /// the file for that message (the lock itself is the kernel's, not the file's content).
    pub fn acquire(dir: &Path) -> Result<Self, StartupError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = lock_path(dir);
        let err = |source| StartupError::DataDir {
            path: shown(&path),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StartupError::Locked {
                    dir: shown(dir),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(err)?;
        Ok(Self { _file: file })
    }

    /// [`acquire`](Self::acquire), waiting up to `patience` for a holder to let go: for the
    /// server, which may find an admin command holding the lock for the second it takes
    /// (see DESIGN.md, "The session cache"). Another server keeps it, and is reported.
    pub fn acquire_waiting(
        dir: &Path,
        patience: std::time::Duration,
    ) -> Result<Self, StartupError> {
        let started = std::time::Instant::now();
        loop {
            match Self::acquire(dir) {
                Err(StartupError::Locked { .. }) if started.elapsed() < patience => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }
}

/// Writes a new private file (0600) whole; an existing one is an error, never overwritten.
pub(crate) fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
