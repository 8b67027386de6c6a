//! How the admin commands keep a running server's exact session cache exact.
//!
//! With sessions in SQLite, the server caches them in process memory and trusts that it is the
//! database's only writer (`session_cache = "exact"`). Two kinds of writer could break that
//! trust, and both are ruled out rather than detected:
//!
//! - **A second server on the same data directory** cannot start: the first holds the data
//!   directory's lock ([`DataDirLock`]).
//! - **An admin command** (`cloakroom user disable`, `sessions revoke`, …) writes to SQLite
//!   itself, then *announces* each session write on the server's admin socket,
//!   `cloakroom.sock` in the data directory, and reports success only once the server has
//!   answered that it dropped what the write changed. The next request after the command
//!   returns is therefore refused, as with the server's own revocations. If no server runs,
//!   the command takes the data directory's lock before its first session write and keeps it
//!   until it ends, so none can start and cache a session in between (a server that finds the
//!   lock taken waits a few seconds for it; see [`DataDirLock::acquire_waiting`]).
//!
//! Why not detect instead: SQLite's `PRAGMA data_version` (or a change counter in a table)
//! would tell a cache that another connection wrote, but reading it is a read transaction per
//! check — 2.3 µs measured here, as much as the lookup the cache exists to avoid — while the
//! announcement costs nothing per check and a few hundred microseconds per admin write.
//!
//! The protocol is one line each way: `s <session id hex>` or `u <user id>` (the
//! [`Invalidation`] wire form), answered by `ok`. `u` also drops the user's cached identity
//! (see [`crate::identity`]): admin commands announce their account writes (groups, disabling,
//! deletion) the same way. The socket is created mode 0600 in the data
//! directory (0700), so only the account that owns the database can use it; what it allows —
//! dropping cache entries — costs a store read at worst.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::{
    CachedStore, DeleteScope, Invalidation, SaveOutcome, Session, SessionId, SessionStore,
    StoreError, Timestamp, UserId,
};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::OnceCell;

use crate::data_dir::DataDirLock;
use crate::identity::{IdentityCache, WriteNotice};
use crate::state::StartupError;

/// The socket inside the data directory.
pub(crate) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cloakroom.sock")
}

/// How long either side waits for the other.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The longest line either side reads (a user id is at most a few hundred bytes).
const MAX_LINE: u64 = 1024;

/// Binds the admin socket for the server that holds the data directory's lock (so a socket
/// file already there is a dead server's, and is replaced).
pub(crate) fn bind(data_dir: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// What an announcement drops: cached sessions, and cached identities when there are any.
#[derive(Debug, Clone)]
pub(crate) struct Caches {
    pub(crate) sessions: Option<CachedStore>,
    pub(crate) identities: Option<Arc<IdentityCache>>,
}

impl Caches {
    fn invalidate(&self, change: &Invalidation) {
        if let Some(sessions) = &self.sessions {
            sessions.invalidate(change);
        }
        if let (Some(identities), Invalidation::User(user)) = (&self.identities, change) {
            identities.invalidate(user);
        }
    }

    fn invalidate_all(&self) {
        if let Some(sessions) = &self.sessions {
            sessions.invalidate_all();
        }
        if let Some(identities) = &self.identities {
            identities.invalidate_all();
        }
    }
}

/// Answers announcements for as long as the server runs.
pub(crate) async fn serve(listener: UnixListener, cache: Caches) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let cache = cache.clone();
                tokio::spawn(async move {
                    if let Err(e) = tokio::time::timeout(TIMEOUT, answer(stream, &cache)).await {
                        tracing::warn!(error = %e, "an admin announcement timed out");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "the admin socket failed to accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, cache: &Caches) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match line.as_str() {
            "ping" => "ok\n",
            text => match Invalidation::parse(text) {
                Some(change) => {
                    cache.invalidate(&change);
                    "ok\n"
                }
                None => {
                    // Unreadable: drop everything rather than risk a stale entry.
                    cache.invalidate_all();
                    "error unreadable announcement\n"
                }
            },
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The admin command's side: one connection per announcement.
#[derive(Debug)]
struct ServerLink {
    path: PathBuf,
}

impl ServerLink {
    async fn send(&self, line: &str) -> io::Result<()> {
        let exchange = async {
            let stream = UnixStream::connect(&self.path).await?;
            let (read, mut write) = stream.into_split();
            write.write_all(format!("{line}\n").as_bytes()).await?;
            let mut reply = String::new();
            BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE))
                .read_line(&mut reply)
                .await?;
            if reply.trim_end() == "ok" {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "the server answered {:?}",
                    reply.trim_end()
                )))
            }
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
    }
}

/// Where an admin command stands towards the server.
#[derive(Debug)]
enum Writer {
    /// No server runs; the command holds the lock until it ends.
    Alone(#[allow(dead_code)] DataDirLock),
    /// A server runs; every session write is announced to it.
    BesideServer(ServerLink),
}

/// An admin command's link to the running server, shared by its session and account stores:
/// the lock (no server) or the server's socket, settled before the first write.
#[derive(Debug)]
pub(crate) struct Announcer {
    data_dir: PathBuf,
    writer: OnceCell<Writer>,
}

/// A write could not be announced to the running server.
#[derive(Debug, thiserror::Error)]
#[error(
    "the running server (which holds the data directory's lock) could not be told about a \
     change on its admin socket {path}"
)]
struct NotAnnounced {
    path: String,
    #[source]
    source: io::Error,
}

impl Announcer {
    pub(crate) fn new(data_dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            data_dir: data_dir.to_owned(),
            writer: OnceCell::new(),
        })
    }

    fn unavailable(&self, store: &'static str, source: io::Error) -> StoreError {
        StoreError::Unavailable {
            store,
            source: Box::new(NotAnnounced {
                path: crate::data_dir::shown(&socket_path(&self.data_dir)),
                source,
            }),
        }
    }

    /// Before the first write: take the lock, or make sure the server that holds it answers.
    async fn writer(&self, store: &'static str) -> Result<&Writer, StoreError> {
        self.writer
            .get_or_try_init(|| async {
                match DataDirLock::acquire(&self.data_dir) {
                    Ok(lock) => Ok(Writer::Alone(lock)),
                    Err(StartupError::Locked { .. }) => {
                        let link = ServerLink {
                            path: socket_path(&self.data_dir),
                        };
                        link.send("ping")
                            .await
                            .map_err(|e| self.unavailable(store, e))?;
                        Ok(Writer::BesideServer(link))
                    }
                    Err(e) => Err(self.unavailable(store, io::Error::other(e.to_string()))),
                }
            })
            .await
    }

    /// Tells a running server of `change` (nothing when none runs).
    async fn announce(&self, store: &'static str, change: &Invalidation) -> Result<(), StoreError> {
        if let Writer::BesideServer(link) = self.writer(store).await? {
            link.send(&change.encode())
                .await
                .map_err(|e| self.unavailable(store, e))?;
        }
        Ok(())
    }
}

/// Account writes, announced as `u <user id>`: the server drops the user's cached identity
/// (and cached sessions, which costs a reload at worst).
#[async_trait]
impl WriteNotice for Announcer {
    async fn before(&self) -> Result<(), StoreError> {
        self.writer("sqlite").await.map(drop)
    }

    async fn after(&self, user: &UserId) -> Result<(), StoreError> {
        self.announce("sqlite", &Invalidation::User(user.clone()))
            .await
    }
}

/// The admin commands' session store: SQLite, with every write announced to a running server
/// (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub(crate) struct AnnouncingStore {
    inner: Arc<dyn SessionStore>,
    announcer: Arc<Announcer>,
}

impl AnnouncingStore {
    pub(crate) fn wrap(
        inner: Arc<dyn SessionStore>,
        announcer: Arc<Announcer>,
    ) -> Arc<dyn SessionStore> {
        Arc::new(Self { inner, announcer })
    }

    /// Runs a write, then announces `change` if a server runs.
    async fn announced<T>(
        &self,
        change: Invalidation,
        write: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let store = self.inner.name();
        self.announcer.writer(store).await?;
        let result = write.await;
        // Announced whatever the outcome: a failed write may still have landed.
        self.announcer.announce(store, &change).await?;
        result
    }
}

#[async_trait]
impl SessionStore for AnnouncingStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create(session).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        self.inner.load(id).await
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.announced(
            Invalidation::Session(*id),
            self.inner.touch(id, last_seen_at, idle_expires_at),
        )
        .await
    }

    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError> {
        self.announced(Invalidation::Session(session.id), self.inner.save(session))
            .await
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.announced(Invalidation::Session(*id), self.inner.delete(id))
            .await
    }

    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        self.announced(Invalidation::Session(*old), self.inner.rotate(old, new))
            .await
    }

    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.list_for_user(user, now).await
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        self.announced(
            Invalidation::User(user.clone()),
            self.inner.delete_for_user(user, scope),
        )
        .await
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Removes only sessions no check accepts; nothing to announce.
        self.inner.purge_expired(now).await
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        self.inner.consume_link(id, expires_at).await
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        self.inner.revocation_epoch(user).await
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.inner.count_live(now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
