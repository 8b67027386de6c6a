//! Copies of a database for an operator to keep ([`backup`]), putting one back ([`restore`]),
//! and telling a Cloakroom database from any other file ([`verify`]).
//!
//! # A consistent copy while the server writes
//!
//! [`backup`] runs SQLite's online backup API in **one step** over every page. One step is one
//! read transaction on the source: a snapshot holding every write committed before it began
//! and none after. In WAL mode a reader never blocks the writer, so the server keeps serving
//! while the copy is taken. The backup API's usual loop of a few pages per step would let every
//! write the server commits meanwhile restart the copy from the first page, which under steady
//! load never finishes.
//!
//! # Why a copy holds no sessions
//!
//! A session revoked after the backup was taken — "sign out everywhere" after a phone was
//! stolen — would come back to life for whoever still holds its token if a restore brought its
//! row back. So a copy keeps the accounts and the invitations and no session: their rows are
//! deleted from the copy and the copy is vacuumed, so not even their hashes remain in its free
//! pages. A restore starts with no session at all (it also clears those of a database copied by
//! other means): everyone signs in again, which is the price of never reviving a revoked one.
//!
//! # Atomic replacement
//!
//! Both write a file beside the destination, fsync it, and rename it into place, then fsync the
//! directory: a crash leaves either the old file or the new one, never half of either. A
//! restore first folds the old database's write-ahead log into it and removes the log, because
//! SQLite would otherwise apply that log to the new file on the next open and corrupt it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::db::{DbError, configure, make_private};
use crate::schema::{self, SCHEMA_VERSION};

/// What a [`backup`] or [`restore`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Copied {
    /// Accounts in the copy.
    pub accounts: u64,
    /// The copy's schema version (after a restore, the one this build writes).
    pub schema_version: i64,
}

/// Checks that `path` is a Cloakroom database this build can open — an SQLite file with
/// Cloakroom's tables, a schema version between 1 and [`SCHEMA_VERSION`], and pages that pass
/// `PRAGMA quick_check` — and returns its schema version. Reads only: it never creates the file
/// nor changes it.
pub fn verify(path: &Path) -> Result<i64, DbError> {
    check(&open_read_only(path)?, path)
}

/// Copies the database at `source` into a new file at `dest` (mode 0600: it holds password
/// hashes) while other connections, in this process or others, keep writing to it. The copy
/// holds every write committed before it began, and no session (see the module docs). An
/// existing `dest` is refused unless `replace`.
pub fn backup(source: &Path, dest: &Path, replace: bool) -> Result<Copied, DbError> {
    if !replace && dest.exists() {
        return Err(DbError::Exists {
            path: dest.to_owned(),
        });
    }
    let partial = beside(dest);
    let copied = copy_without_sessions(source, &partial, false)?;
    publish(&partial, dest, replace)?;
    Ok(copied)
}

/// Replaces the database at `target` with a copy of the backup at `from`, once `from` has been
/// verified and the copy brought up to this build's schema; anything wrong with `from` leaves
/// `target` untouched. The restored database holds no session.
///
/// The caller must make sure no other process has `target` open (the server holds a lock on
/// its data directory for this): a connection left open on the old file would keep writing to
/// it after the rename.
pub fn restore(from: &Path, target: &Path) -> Result<Copied, DbError> {
    let partial = beside(target);
    let copied = copy_without_sessions(from, &partial, true)?;
    retire_write_ahead_log(target)?;
    publish(&partial, target, true)?;
    Ok(copied)
}

/// Checks `source`, copies it into `partial` without its sessions (brought up to this build's
/// schema if `upgrade`) and fsyncs the copy; leaves no `partial` behind if anything fails.
fn copy_without_sessions(source: &Path, partial: &Path, upgrade: bool) -> Result<Copied, DbError> {
    let src = open_read_only(source)?;
    check(&src, source)?;
    write_partial(partial, |partial| {
        let copy = copy_into(&src, partial)?;
        drop(src);
        clear_sessions(&copy)?;
        if upgrade {
            schema::migrate(&copy)?;
        }
        Ok(Copied {
            accounts: count_accounts(&copy)?,
            schema_version: check(&copy, partial)?,
        })
    })
}

fn not_cloakroom(path: &Path, reason: impl Into<String>) -> DbError {
    DbError::NotCloakroom {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    let path = path.to_owned();
    move |source| DbError::Io {
        action,
        path,
        source,
    }
}

/// Opens `path` read-only. Without `SQLITE_OPEN_CREATE`, a missing file is an error rather
/// than a new empty database.
fn open_read_only(path: &Path) -> Result<Connection, DbError> {
    if !path.is_file() {
        return Err(not_cloakroom(path, "there is no such file"));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn check(conn: &Connection, path: &Path) -> Result<i64, DbError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| match e.sqlite_error_code() {
            // SQLite's own message would only say the same again.
            Some(ErrorCode::NotADatabase) => not_cloakroom(path, "it is not an SQLite database"),
            _ => DbError::Sqlite(e),
        })?;
    if version > SCHEMA_VERSION {
        return Err(DbError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    // Another program's SQLite file may use `user_version` too: the tables must be ours.
    let has = |table: &str| -> Result<bool, DbError> {
        Ok(conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )? == 1)
    };
    if version < 1 || !has("sessions")? || (version >= 2 && !has("accounts")?) {
        return Err(not_cloakroom(
            path,
            "it is an SQLite file without Cloakroom's tables",
        ));
    }
    let verdict: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(not_cloakroom(path, format!("it is damaged ({verdict})")));
    }
    Ok(version)
}

/// Copies every page of `src` into a new database file at `path`, in one step (see the module
/// docs), and returns a connection to the copy.
fn copy_into(src: &Connection, path: &Path) -> Result<Connection, DbError> {
    make_private(path)?;
    let mut copy = Connection::open(path)?;
    configure(&copy)?;
    {
        let backup = Backup::new(src, &mut copy)?;
        // The source is only ever busy for a moment (a checkpoint, a writer's recovery).
        let mut waits = 0;
        loop {
            match backup.step(-1)? {
                StepResult::Done => break,
                StepResult::Busy | StepResult::Locked if waits < 100 => {
                    waits += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                StepResult::Busy | StepResult::Locked => {
                    return Err(DbError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked for five seconds".into()),
                    )));
                }
                // `More` cannot follow a step over every page; go on if it ever does.
                _ => {}
            }
        }
    }
    // A single file that needs no write-ahead log beside it to be read.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(copy)
}

/// Removes every session from a copy, leaving no trace of them in its pages.
fn clear_sessions(copy: &Connection) -> Result<(), DbError> {
    copy.execute_batch("DELETE FROM sessions; VACUUM;")?;
    Ok(())
}

fn count_accounts(conn: &Connection) -> Result<u64, DbError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'accounts'",
            [],
            |r| r.get(0),
        )
        .and_then(|tables: i64| {
            if tables == 0 {
                Ok(0)
            } else {
                conn.query_row("SELECT count(*) FROM accounts", [], |r| r.get(0))
            }
        })?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The file a copy is written to before it is renamed to `path`: hidden, in the same directory
/// (a rename is atomic only within one file system).
fn beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `partial` with `write` (after removing one a crash may have left), closes it and
/// fsyncs it; removes it again if anything failed.
fn write_partial(
    partial: &Path,
    write: impl FnOnce(&Path) -> Result<Copied, DbError>,
) -> Result<Copied, DbError> {
    remove_if_present(partial)?;
    let written = write(partial).and_then(|copied| {
        std::fs::File::open(partial)
            .and_then(|f| f.sync_all())
            .map_err(io("write", partial))?;
        Ok(copied)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(partial);
        for side in ["-journal", "-wal", "-shm"] {
            let _ = std::fs::remove_file(with_suffix(partial, side));
        }
    }
    written
}

/// Moves `partial` to `dest` (replacing it only if `replace`) and makes the rename durable.
fn publish(partial: &Path, dest: &Path, replace: bool) -> Result<(), DbError> {
    if replace {
        std::fs::rename(partial, dest).map_err(io("rename into place", dest))?;
    } else {
        // A link fails if `dest` appeared meanwhile, where a rename would silently replace it.
        let linked = std::fs::hard_link(partial, dest);
        let _ = std::fs::remove_file(partial);
        linked.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => DbError::Exists {
                path: dest.to_owned(),
            },
            _ => io("write", dest)(e),
        })?;
    }
    let dir = directory_of(dest);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory", dir))
}

/// Folds the write-ahead log of the database at `target` into it and removes the log and its
/// index, so that nothing of the old database can be applied to the file that replaces it.
fn retire_write_ahead_log(target: &Path) -> Result<(), DbError> {
    if target.exists() {
        // Best effort: the file is about to be replaced, and a damaged one may not open; what
        // matters is that its log is gone before the rename.
        if let Ok(old) = Connection::open_with_flags(
            target,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ) {
            let _ = old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
    for side in ["-wal", "-shm"] {
        remove_if_present(&with_suffix(target, side))?;
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn remove_if_present(path: &Path) -> Result<(), DbError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}
