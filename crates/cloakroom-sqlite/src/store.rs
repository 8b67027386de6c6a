//! [`SqliteStore`]: the [`SessionStore`] contract on SQLite.

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::store::{BoxError, IpColumn, SessionRow, version_column};
use cloakroom_core::{
    DeleteScope, SaveOutcome, Session, SessionId, SessionStore, StoreError, Timestamp, UserId,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::{Database, DbError};

const STORE: &str = "sqlite";

/// The session columns, in the order [`read_row`] reads them. A macro rather than a `const` so
/// the statements below can be `concat!`ed at compile time: building them with `format!` cost
/// an allocation and about a twentieth of a load's instructions on every call.
macro_rules! columns {
    () => {
        "id, user_id, handle, created_at, last_seen_at, idle_expires_at, absolute_expires_at, \
         auth_time, auth_method, remember, user_agent, ip, csrf_secret, data, version"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO sessions (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT DO NOTHING"
);
const LOAD: &str = concat!("SELECT ", columns!(), " FROM sessions WHERE id = ?1");
const LIST_FOR_USER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM sessions WHERE user_id = ?1 AND expires_at > ?2"
);

/// Sessions in a SQLite [`Database`].
///
/// Every guarantee of the store contract comes from one SQL statement or one transaction:
/// `create` is `INSERT … ON CONFLICT DO NOTHING`, `save` is `UPDATE … WHERE version = ?`,
/// `rotate` deletes and inserts in one transaction, and the per-user index is an ordinary
/// SQL index that can never point at a deleted row.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Database,
}

impl SqliteStore {
    /// A store over an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// The underlying database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

pub(crate) fn store_error(e: DbError) -> StoreError {
    if e.is_unavailable() {
        StoreError::Unavailable {
            store: STORE,
            source: Box::new(e),
        }
    } else {
        StoreError::Backend {
            store: STORE,
            source: Box::new(e),
        }
    }
}

/// Reads one row's columns; SQL errors and decoding errors are kept apart so a corrupt row is
/// reported as such ([`SessionRow::decode`], shared with the other SQL stores, decides).
///
/// Columns that are only parsed (id, handle, address, CSRF secret, data) are read borrowed from
/// SQLite's row buffer: an owned copy of each would be one more allocation on every load.
fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Session, StoreError>> {
    let ip = row.get_ref(11)?.as_str_or_null()?;
    let columns = SessionRow {
        id: row.get_ref(0)?.as_blob()?,
        user_id: row.get(1)?,
        handle: row.get_ref(2)?.as_str()?,
        created_at: row.get(3)?,
        last_seen_at: row.get(4)?,
        idle_expires_at: row.get(5)?,
        absolute_expires_at: row.get(6)?,
        auth_time: row.get(7)?,
        auth_method: row.get(8)?,
        remember: row.get(9)?,
        user_agent: row.get(10)?,
        ip: ip.map(IpColumn::Text),
        csrf_secret: row.get_ref(12)?.as_blob()?,
        data: row.get_ref(13)?.as_str()?,
        version: row.get(14)?,
    };
    Ok(columns.decode(STORE))
}

pub(crate) fn corrupt(source: BoxError) -> StoreError {
    StoreError::Corrupt {
        store: STORE,
        source,
    }
}

/// Inserts `s` unless its id exists; `version` is `s.version` as [`version_column`] stores it.
fn insert(conn: &Connection, s: &Session, version: i64) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(INSERT)?;
    let n = stmt.execute(params![
        &s.id.as_bytes()[..],
        s.user_id.as_str(),
        s.handle.as_str(),
        s.created_at.as_unix_millis(),
        s.last_seen_at.as_unix_millis(),
        s.idle_expires_at.as_unix_millis(),
        s.absolute_expires_at.as_unix_millis(),
        s.auth_time.as_unix_millis(),
        s.auth_method.as_str(),
        s.remember,
        s.user_agent,
        s.ip.map(|ip| ip.to_string()),
        &s.csrf_secret.expose_bytes()[..],
        s.data.to_json(),
        version,
    ])?;
    Ok(n == 1)
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        let s = session.clone();
        let version = version_column(s.version, STORE)?;
        let inserted = self
            .db
            .write(move |conn| insert(conn, &s, version))
            .await
            .map_err(store_error)?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { store: STORE })
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let id = *id;
        let row = self
            .db
            .read(move |conn| {
                conn.prepare_cached(LOAD)?
                    .query_row([&id.as_bytes()[..]], read_row)
                    .optional()
            })
            .await
            .map_err(store_error)?;
        Ok(row.transpose()?.map(Arc::new))
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = *id;
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE sessions SET last_seen_at = max(last_seen_at, ?2),
                         idle_expires_at = max(idle_expires_at, min(?3, absolute_expires_at))
                     WHERE id = ?1",
                )?
                .execute(params![
                    &id.as_bytes()[..],
                    last_seen_at.as_unix_millis(),
                    idle_expires_at.as_unix_millis()
                ])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError> {
        let s = session.clone();
        let version = version_column(s.version, STORE)?;
        self.db
            .write(move |conn| {
                let n = conn
                    .prepare_cached(
                        "UPDATE sessions SET last_seen_at = ?3, idle_expires_at = ?4,
                             absolute_expires_at = ?5, auth_time = ?6, auth_method = ?7,
                             remember = ?8, user_agent = ?9, ip = ?10, csrf_secret = ?11,
                             data = ?12, version = version + 1
                         WHERE id = ?1 AND version = ?2",
                    )?
                    .execute(params![
                        &s.id.as_bytes()[..],
                        version,
                        s.last_seen_at.as_unix_millis(),
                        s.idle_expires_at.as_unix_millis(),
                        s.absolute_expires_at.as_unix_millis(),
                        s.auth_time.as_unix_millis(),
                        s.auth_method.as_str(),
                        s.remember,
                        s.user_agent,
                        s.ip.map(|ip| ip.to_string()),
                        &s.csrf_secret.expose_bytes()[..],
                        s.data.to_json(),
                    ])?;
                if n == 1 {
                    return Ok(SaveOutcome::Saved);
                }
                let exists = conn
                    .prepare_cached("SELECT 1 FROM sessions WHERE id = ?1")?
                    .exists([&s.id.as_bytes()[..]])?;
                Ok(if exists {
                    SaveOutcome::VersionConflict
                } else {
                    SaveOutcome::NotFound
                })
            })
            .await
            .map_err(store_error)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = *id;
        self.db
            .write(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute([&id.as_bytes()[..]])?
                    == 1;
                Ok(deleted)
            })
            .await
            .map_err(store_error)
    }

    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        let (old, new) = (*old, new.clone());
        let version = version_column(new.version, STORE)?;
        // One transaction: both happen or neither does. Inserting first means a refused insert
        // leaves nothing to undo.
        let inserted = self
            .db
            .write(move |conn| {
                if !insert(conn, &new, version)? {
                    return Ok(false);
                }
                conn.prepare_cached("DELETE FROM sessions WHERE id = ?1")?
                    .execute([&old.as_bytes()[..]])?;
                Ok(true)
            })
            .await
            .map_err(store_error)?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { store: STORE })
        }
    }

    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let user = user.as_str().to_owned();
        let rows = self
            .db
            .read(move |conn| {
                conn.prepare_cached(LIST_FOR_USER)?
                    .query_map(params![user, now.as_unix_millis()], read_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.into_iter().collect()
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        let user = user.as_str().to_owned();
        let except = match scope {
            DeleteScope::All => None,
            DeleteScope::AllExcept(id) => Some(*id),
        };
        self.db
            .write(move |conn| {
                // In the same transaction as the deletion: no instance sees one without the
                // other.
                conn.prepare_cached(
                    "INSERT INTO revocation_epochs (user_id, epoch) VALUES (?1, 1)
                     ON CONFLICT (user_id) DO UPDATE SET epoch = epoch + 1",
                )?
                .execute([&user])?;
                let n = match except {
                    None => conn
                        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1")?
                        .execute([&user])?,
                    Some(id) => conn
                        .prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND id <> ?2")?
                        .execute(params![user, &id.as_bytes()[..]])?,
                };
                Ok(n as u64)
            })
            .await
            .map_err(store_error)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM consumed_links WHERE expires_at <= ?1")?
                    .execute([now.as_unix_millis()])?;
                conn.prepare_cached("DELETE FROM sessions WHERE expires_at <= ?1")?
                    .execute([now.as_unix_millis()])
                    .map(|n| n as u64)
            })
            .await
            .map_err(store_error)
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        let id = *id;
        // Writes are serialised (one writer thread, and `BEGIN IMMEDIATE` across processes),
        // so the insert that finds the key free is the one first use.
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO consumed_links (id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![&id.as_bytes()[..], expires_at.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        let user = user.as_str().to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT epoch FROM revocation_epochs WHERE user_id = ?1")?
                    .query_row([&user], |r| r.get::<_, i64>(0))
                    .optional()
                    .map(|e| e.map_or(0, |e| e.max(0) as u64))
            })
            .await
            .map_err(store_error)
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.db
            .read(move |conn| {
                conn.prepare_cached("SELECT count(*) FROM sessions WHERE expires_at > ?1")?
                    .query_row([now.as_unix_millis()], |r| r.get::<_, i64>(0))
                    .map(|n| Some(n.max(0) as u64))
            })
            .await
            .map_err(store_error)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
            .map_err(store_error)
    }
}
