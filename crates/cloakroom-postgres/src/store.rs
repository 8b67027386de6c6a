//! [`PostgresStore`]: the [`SessionStore`] contract on PostgreSQL.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::store::{BoxError, CorruptColumn, IpColumn, SessionRow, version_column};
use cloakroom_core::{
    DeleteScope, SaveOutcome, Session, SessionId, SessionStore, StoreError, Timestamp, UserId,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use crate::config::PostgresConfig;
use crate::schema::{self, MigrateError, quoted};

const STORE: &str = "postgres";

const COLUMNS: &str = "id, user_id, handle, created_at, last_seen_at, idle_expires_at, \
    absolute_expires_at, auth_time, auth_method, remember, user_agent, ip, csrf_secret, data, version";

/// Sessions in PostgreSQL. Cheap to clone; clones share the connection pool.
///
/// Every guarantee of the store contract is one statement or one transaction: `create` is
/// `INSERT … ON CONFLICT DO NOTHING`, `save` is `UPDATE … WHERE version = $n`, `rotate` inserts
/// and deletes in one transaction, and the per-user index is an ordinary B-tree index on
/// `(user_id, expires_at)` that can never point at a deleted row.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// For the invalidation feed's own connection.
    pg: tokio_postgres::Config,
    schema: String,
    command_timeout: Duration,
    sql: Sql,
    tls: Option<crate::config::Tls>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("pool", &self.inner.pool.status())
            .finish()
    }
}

/// The statements, with the schema name filled in once.
struct Sql {
    insert: String,
    load: String,
    touch: String,
    save: String,
    delete: String,
    list: String,
    delete_user: String,
    delete_user_except: String,
    purge: String,
    consume_link: String,
    epoch: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let t = format!("{}.sessions", quoted(schema));
        let l = format!("{}.consumed_links", quoted(schema));
        let e = format!("{}.revocation_epochs", quoted(schema));
        // Every change to a row is announced by the `sessions_announce` trigger (migration 9),
        // in the same transaction; the statements need not say so.
        let counted_delete = |condition: &str| {
            format!(
                "WITH deleted AS (DELETE FROM {t} WHERE {condition} RETURNING 1) SELECT count(*) FROM deleted"
            )
        };
        // A revoke-all moves the user's epoch in the same statement as the deletion ($1 is the
        // user), whether or not it finds a session.
        let revoke_user = |condition: &str| {
            format!(
                "WITH epoch AS (INSERT INTO {e} AS r (user_id, epoch) VALUES ($1, 1)
                     ON CONFLICT (user_id) DO UPDATE SET epoch = r.epoch + 1),
                 deleted AS (DELETE FROM {t} WHERE {condition} RETURNING 1)
                 SELECT count(*) FROM deleted"
            )
        };
        Self {
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT DO NOTHING"
            ),
            load: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1"),
            touch: format!(
                "UPDATE {t} SET last_seen_at = GREATEST(last_seen_at, $2),
                     idle_expires_at = GREATEST(idle_expires_at, LEAST($3, absolute_expires_at))
                 WHERE id = $1"
            ),
            // One round trip: the update, and whether the row exists to tell a version
            // conflict from a missing session when nothing was updated.
            save: format!(
                "WITH updated AS (
                     UPDATE {t} SET last_seen_at = $3, idle_expires_at = $4,
                         absolute_expires_at = $5, auth_time = $6, auth_method = $7,
                         remember = $8, user_agent = $9, ip = $10, csrf_secret = $11,
                         data = $12, version = version + 1
                     WHERE id = $1 AND version = $2
                     RETURNING 1)
                 SELECT (SELECT count(*) FROM updated), EXISTS (SELECT 1 FROM {t} WHERE id = $1)"
            ),
            delete: counted_delete("id = $1"),
            list: format!("SELECT {COLUMNS} FROM {t} WHERE user_id = $1 AND expires_at > $2"),
            delete_user: revoke_user("user_id = $1"),
            delete_user_except: revoke_user("user_id = $1 AND id <> $2"),
            // The consumed links go with the sessions: one statement for the upkeep to run.
            purge: format!(
                "WITH links AS (DELETE FROM {l} WHERE expires_at <= $1)
                 DELETE FROM {t} WHERE expires_at <= $1"
            ),
            consume_link: format!(
                "INSERT INTO {l} (id, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            ),
            epoch: format!("SELECT epoch FROM {e} WHERE user_id = $1"),
        }
    }
}

/// No answer within the command timeout.
#[derive(Debug, thiserror::Error)]
#[error("no answer from PostgreSQL within {0:?}")]
struct TimedOut(Duration);

pub(crate) fn unavailable(source: BoxError) -> StoreError {
    StoreError::Unavailable {
        store: STORE,
        source,
    }
}

fn backend(source: BoxError) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source,
    }
}

/// Connection trouble (refused, reset, closed, the server shutting down or out of connection
/// slots) means "cannot tell" and is `Unavailable`; anything the server answered is `Backend`.
pub(crate) fn db_error(e: tokio_postgres::Error) -> StoreError {
    let connection_trouble = e.is_closed()
        || e.code().is_some_and(|c| {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
        })
        || (e.code().is_none()
            && std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>()));
    if connection_trouble {
        unavailable(Box::new(e))
    } else {
        backend(Box::new(e))
    }
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => db_error(e),
        PoolError::Timeout(_) | PoolError::Closed => unavailable(Box::new(e)),
        other => backend(Box::new(other)),
    }
}

fn migrate_error(e: MigrateError) -> StoreError {
    match e {
        MigrateError::Db(e) => db_error(e),
        MigrateError::TooNew(e) => backend(Box::new(e)),
    }
}

/// Reads one row's columns and decodes them with [`SessionRow::decode`], shared with the other
/// SQL stores. A column the driver cannot read as its type is corrupt too.
fn read_row(row: &Row) -> Result<Session, StoreError> {
    fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
        column: &'static str,
    ) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| StoreError::Corrupt {
            store: STORE,
            source: Box::new(CorruptColumn::new(column, e)),
        })
    }
    SessionRow {
        id: col(row, 0, "id")?,
        user_id: col(row, 1, "user_id")?,
        handle: col(row, 2, "handle")?,
        created_at: col(row, 3, "created_at")?,
        last_seen_at: col(row, 4, "last_seen_at")?,
        idle_expires_at: col(row, 5, "idle_expires_at")?,
        absolute_expires_at: col(row, 6, "absolute_expires_at")?,
        auth_time: col(row, 7, "auth_time")?,
        auth_method: col(row, 8, "auth_method")?,
        remember: col(row, 9, "remember")?,
        user_agent: col(row, 10, "user_agent")?,
        ip: col::<Option<IpAddr>>(row, 11, "ip")?.map(IpColumn::Addr),
        csrf_secret: col(row, 12, "csrf_secret")?,
        data: col(row, 13, "data")?,
        version: col(row, 14, "version")?,
    }
    .decode(STORE)
}

impl PostgresStore {
    /// Builds the pool and brings the schema up to date. Fails with
    /// [`StoreError::Unavailable`] if the database cannot be reached, or
    /// [`StoreError::Backend`] if the schema cannot be migrated (or is newer than this build).
    pub async fn connect(config: PostgresConfig) -> Result<Self, StoreError> {
        let manager_config = ManagerConfig {
            // A connection the server closed is noticed by the client and discarded at
            // checkout, without an extra round trip on every request.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &config.tls {
            Some(tls) => Manager::from_config(config.pg.clone(), tls.connector(), manager_config),
            None => Manager::from_config(config.pg.clone(), tokio_postgres::NoTls, manager_config),
        };
        let connect_timeout = config
            .pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(2));
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(connect_timeout))
            .recycle_timeout(Some(connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| backend(Box::new(e)))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                pg: config.pg.clone(),
                tls: config.tls.clone(),
                sql: Sql::new(&config.schema),
                schema: config.schema,
                command_timeout: config.command_timeout,
            }),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The TLS its connections use, if any.
    pub(crate) fn tls(&self) -> Option<&crate::config::Tls> {
        self.inner.tls.as_ref()
    }

    pub(crate) fn pg_config(&self) -> &tokio_postgres::Config {
        &self.inner.pg
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Applies any missing migrations (done by [`connect`](Self::connect); safe to run from
    /// several instances at once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.inner.pool.get().await.map_err(pool_error)?;
        let client: &mut tokio_postgres::Client = &mut client;
        schema::migrate(client, &self.inner.schema)
            .await
            .map_err(migrate_error)
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Runs `f` with a pooled connection, bounded by the command timeout.
    pub(crate) async fn with_client<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let work = async {
            let client = self.inner.pool.get().await.map_err(pool_error)?;
            f(client).await
        };
        match tokio::time::timeout(self.inner.command_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(Box::new(TimedOut(self.inner.command_timeout)))),
        }
    }

    pub(crate) async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.with_client(|client| async move {
            let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
            client.execute(&stmt, params).await.map_err(db_error)
        })
        .await
    }

    /// Runs a statement that answers with one non-negative count.
    pub(crate) async fn count(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let rows = self.query(sql, params).await?;
        let n: i64 = rows
            .first()
            .ok_or_else(|| backend("the statement returned no row".into()))?
            .try_get(0)
            .map_err(db_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        self.with_client(|client| async move {
            let stmt = client.prepare_cached(sql).await.map_err(db_error)?;
            client.query(&stmt, params).await.map_err(db_error)
        })
        .await
    }
}

/// The parameters of an insert, in [`COLUMNS`] order.
struct InsertParams<'a> {
    session: &'a Session,
    user_id: &'a str,
    handle: &'a str,
    auth_method: &'a str,
    id: Vec<u8>,
    csrf: Vec<u8>,
    data: String,
    version: i64,
    created_at: i64,
    last_seen_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    auth_time: i64,
}

impl<'a> InsertParams<'a> {
    fn new(s: &'a Session) -> Result<Self, StoreError> {
        Ok(Self {
            session: s,
            user_id: s.user_id.as_str(),
            handle: s.handle.as_str(),
            auth_method: s.auth_method.as_str(),
            id: s.id.as_bytes().to_vec(),
            csrf: s.csrf_secret.expose_bytes().to_vec(),
            data: s.data.to_json(),
            version: version_column(s.version, STORE)?,
            created_at: s.created_at.as_unix_millis(),
            last_seen_at: s.last_seen_at.as_unix_millis(),
            idle_expires_at: s.idle_expires_at.as_unix_millis(),
            absolute_expires_at: s.absolute_expires_at.as_unix_millis(),
            auth_time: s.auth_time.as_unix_millis(),
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 15] {
        let s = self.session;
        [
            &self.id,
            &self.user_id,
            &self.handle,
            &self.created_at,
            &self.last_seen_at,
            &self.idle_expires_at,
            &self.absolute_expires_at,
            &self.auth_time,
            &self.auth_method,
            &s.remember,
            &s.user_agent,
            &s.ip,
            &self.csrf,
            &self.data,
            &self.version,
        ]
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        let p = InsertParams::new(session)?;
        let inserted = self.execute(&self.inner.sql.insert, &p.params()).await?;
        if inserted == 1 {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { store: STORE })
        }
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let id = id.as_bytes().as_slice();
        let rows = self.query(&self.inner.sql.load, &[&id]).await?;
        Ok(rows.first().map(read_row).transpose()?.map(Arc::new))
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let id = id.as_bytes().as_slice();
        let n = self
            .execute(
                &self.inner.sql.touch,
                &[
                    &id,
                    &last_seen_at.as_unix_millis(),
                    &idle_expires_at.as_unix_millis(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn save(&self, s: &Session) -> Result<SaveOutcome, StoreError> {
        let p = InsertParams::new(s)?;
        let rows = self
            .query(
                &self.inner.sql.save,
                &[
                    &p.id,
                    &p.version,
                    &p.last_seen_at,
                    &p.idle_expires_at,
                    &p.absolute_expires_at,
                    &p.auth_time,
                    &p.auth_method,
                    &s.remember,
                    &s.user_agent,
                    &s.ip,
                    &p.csrf,
                    &p.data,
                ],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| backend("the save statement returned no row".into()))?;
        let updated: i64 = row.try_get(0).map_err(db_error)?;
        let exists: bool = row.try_get(1).map_err(db_error)?;
        Ok(match (updated, exists) {
            (1, _) => SaveOutcome::Saved,
            (_, true) => SaveOutcome::VersionConflict,
            (_, false) => SaveOutcome::NotFound,
        })
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let id = id.as_bytes().as_slice();
        Ok(self.count(&self.inner.sql.delete, &[&id]).await? == 1)
    }

    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        let p = InsertParams::new(new)?;
        let old = old.as_bytes().as_slice();
        let sql = &self.inner.sql;
        // One transaction: both happen or neither does. Inserting first means a refused insert
        // leaves nothing to undo.
        let inserted = self
            .with_client(|mut client| async move {
                let tx = client.transaction().await.map_err(db_error)?;
                let insert = tx.prepare_cached(&sql.insert).await.map_err(db_error)?;
                if tx.execute(&insert, &p.params()).await.map_err(db_error)? != 1 {
                    return Ok(false);
                }
                let delete = tx.prepare_cached(&sql.delete).await.map_err(db_error)?;
                tx.query(&delete, &[&old]).await.map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            })
            .await?;
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
        let rows = self
            .query(
                &self.inner.sql.list,
                &[&user.as_str(), &now.as_unix_millis()],
            )
            .await?;
        rows.iter().map(read_row).collect()
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        // One statement: under READ COMMITTED it removes every row committed before it
        // started, so a create acknowledged before the revoke-all cannot survive it.
        match scope {
            DeleteScope::All => {
                self.count(&self.inner.sql.delete_user, &[&user.as_str()])
                    .await
            }
            DeleteScope::AllExcept(id) => {
                let id = id.as_bytes().as_slice();
                self.count(&self.inner.sql.delete_user_except, &[&user.as_str(), &id])
                    .await
            }
        }
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Unbounded by the command timeout: a purge of a large backlog may take a while, and
        // nobody is waiting on it.
        let client = self.inner.pool.get().await.map_err(pool_error)?;
        let stmt = client
            .prepare_cached(&self.inner.sql.purge)
            .await
            .map_err(db_error)?;
        client
            .execute(&stmt, &[&now.as_unix_millis()])
            .await
            .map_err(db_error)
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        // The primary key decides: of concurrent inserts, exactly one finds the key free.
        let id = id.as_bytes().as_slice();
        let n = self
            .execute(
                &self.inner.sql.consume_link,
                &[&id, &expires_at.as_unix_millis()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        let rows = self.query(&self.inner.sql.epoch, &[&user.as_str()]).await?;
        match rows.first() {
            None => Ok(0),
            Some(row) => {
                let epoch: i64 = row.try_get(0).map_err(db_error)?;
                Ok(u64::try_from(epoch).unwrap_or(0))
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query("SELECT 1", &[]).await.map(drop)
    }
}
