//! [`Database`]: one SQLite database shared by a writer thread and a pool of readers.
//!
//! SQLite allows one writer at a time. Rather than letting async tasks contend for the write
//! lock (and sleep in `busy_timeout`), every write goes to a single thread that owns the write
//! connection and commits **groups** of writes: it takes whatever jobs are queued, runs each
//! inside its own savepoint (so one failing job cannot undo another), commits once, and only
//! then answers every caller. With `synchronous=FULL` each commit is one fsync however many
//! writes it carries, so durability costs little under load and an `Ok` always means "on
//! disk" — an acknowledged write survives a process crash, and a power cut too.
//!
//! In WAL mode readers never wait for the writer. A read runs on the calling thread with a
//! connection from the pool: a primary-key lookup in a warm page cache takes a few
//! microseconds, less than handing the work to a blocking thread would. The pool never grows
//! beyond the number of threads reading at once, since a connection is held only for the
//! duration of one synchronous query.
//!
//! An in-memory database exists only inside its one connection, so there reads go through the
//! writer thread as well.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::schema;

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 256;

/// Why a database could not be opened, or a query failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite reported an error (its message is this error's message).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The database was written by a newer Cloakroom (its schema version is unknown here).
    #[error("database schema version {found} is newer than this build understands ({supported})")]
    TooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The writer thread is gone (it panicked, or the database was closed).
    #[error("the sqlite writer thread has stopped")]
    WriterGone,
    /// The transaction carrying this write could not begin or commit; nothing from it was
    /// persisted.
    #[error("sqlite transaction failed")]
    Transaction(#[source] Arc<rusqlite::Error>),
    /// Reading the database from a background thread failed.
    #[error("sqlite reader thread failed")]
    Reader,
    /// The database file could not be created or made private.
    #[error("cannot create or restrict {}", path.display())]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a Cloakroom database this build can open: not SQLite, SQLite without
    /// Cloakroom's schema, or damaged. Nothing was changed.
    #[error("{} is not a Cloakroom database: {reason}", path.display())]
    NotCloakroom {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A backup would overwrite a file that exists (and replacing it was not asked for).
    #[error("{} exists; nothing was written", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file operation of a backup or restore failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("write", "rename", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    /// Whether this looks like the database being unreachable (locked, unopenable, disk
    /// errors) rather than a bad query.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::CannotOpen
                    | C::SystemIoFailure
                    | C::DiskFull
                    | C::ReadOnly
                    | C::PermissionDenied
            ),
            Self::WriterGone | Self::Transaction(_) | Self::Reader | Self::Permissions { .. } => {
                true
            }
            _ => false,
        }
    }
}

type Reply = Box<dyn FnOnce(Result<(), Arc<rusqlite::Error>>) + Send>;
/// A write: given the connection (or `None` if its transaction could not begin, in which case
/// it must not run), it reports whether it succeeded and how to answer its caller once the
/// transaction's fate is known.
type Job = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

/// A SQLite database: a writer thread with group commit plus a pool of read connections.
/// Cheap to clone; clones share the threads and connections.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    writer: mpsc::Sender<Job>,
    /// `None` for an in-memory database: reads then go through the writer.
    readers: Option<Readers>,
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.readers {
            Some(r) => f.debug_struct("Database").field("path", &r.path).finish(),
            None => f
                .debug_struct("Database")
                .field("path", &":memory:")
                .finish(),
        }
    }
}

impl Database {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to
    /// date.
    ///
    /// The file is created readable by its owner only (0600), whatever the umask and the
    /// directory's mode: it holds password hashes and CSRF secrets. SQLite gives its
    /// write-ahead log and shared-memory files the database file's mode. A database found
    /// with looser permissions (created by an older version) is tightened, with a warning.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DbError> {
        let path = path.as_ref().to_owned();
        make_private(&path)?;
        let conn = Connection::open(&path)?;
        configure(&conn)?;
        // WAL is a property of the file; it persists and lets readers run beside the writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        schema::migrate(&conn)?;
        let readers = Readers {
            path,
            idle: Mutex::new(Vec::new()),
        };
        Ok(Self::start(conn, Some(readers)))
    }

    /// An in-memory database (gone when the last clone is dropped).
    pub fn open_in_memory() -> Result<Self, DbError> {
        let conn = Connection::open_in_memory()?;
        configure(&conn)?;
        schema::migrate(&conn)?;
        Ok(Self::start(conn, None))
    }

    fn start(conn: Connection, readers: Option<Readers>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("cloakroom-sqlite-writer".into())
            .spawn(move || writer_loop(&conn, &rx))
            .map(drop)
            .unwrap_or_else(
                |e| tracing::error!(error = %e, "cannot start the sqlite writer thread"),
            );
        Self {
            inner: Arc::new(Inner {
                writer: tx,
                readers,
            }),
        }
    }

    /// Runs `f` in the writer's current transaction and returns its result once the
    /// transaction has committed. If `f` fails, its changes are rolled back (other writes in
    /// the same group are unaffected).
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, DbError>>();
        let job: Job = Box::new(move |conn| {
            let result = conn.map(f);
            let ok = matches!(result, Some(Ok(_)));
            let reply: Reply = Box::new(move |transaction| {
                let out = match (result, transaction) {
                    (_, Err(e)) => Err(DbError::Transaction(e)),
                    (Some(Ok(v)), Ok(())) => Ok(v),
                    (Some(Err(e)), Ok(())) => Err(DbError::Sqlite(e)),
                    (None, Ok(())) => Err(DbError::WriterGone),
                };
                // The caller may have gone away (request cancelled); the write stands anyway.
                let _ = tx.send(out);
            });
            (ok, reply)
        });
        self.inner
            .writer
            .send(job)
            .map_err(|_| DbError::WriterGone)?;
        rx.await.map_err(|_| DbError::WriterGone)?
    }

    /// Runs a read-only `f` against a consistent snapshot of the committed data.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        match &self.inner.readers {
            Some(readers) => readers.run(f),
            None => self.write(f).await,
        }
    }
}

impl Readers {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, DbError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                configure(&c)?;
                c
            }
        };
        let out = f(&conn);
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        Ok(out?)
    }
}

/// Creates `path` with mode 0600 if it does not exist; tightens it (and the WAL and
/// shared-memory files beside it) if it does and others may read it.
pub(crate) fn make_private(path: &Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |source| DbError::Permissions {
        path: path.to_owned(),
        source,
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut shm = path.as_os_str().to_owned();
    shm.push("-shm");
    for file in [path.to_owned(), PathBuf::from(wal), PathBuf::from(shm)] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %file.display(), "database file was readable by others; making it private (0600)");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // FULL: an acknowledged write is on disk (fsync of the WAL at each commit), not just in
    // the OS page cache. Group commit keeps this cheap.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Another process (the admin CLI) may hold the write lock for a moment.
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn writer_loop(conn: &Connection, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = Arc::new(e);
            for job in group {
                let (_, reply) = job(None);
                reply(Err(e.clone()));
            }
            continue;
        }
        let mut replies = Vec::with_capacity(group.len());
        for job in group {
            let savepoint = conn.execute_batch("SAVEPOINT job");
            let (ok, reply) = job(Some(conn));
            if savepoint.is_ok() {
                let end = if ok {
                    "RELEASE job"
                } else {
                    "ROLLBACK TO job; RELEASE job"
                };
                if let Err(e) = conn.execute_batch(end) {
                    tracing::error!(error = %e, "sqlite savepoint cleanup failed");
                }
            }
            replies.push(reply);
        }
        let commit = conn.execute_batch("COMMIT").map_err(Arc::new);
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}
