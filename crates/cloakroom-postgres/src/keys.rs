//! [`PostgresKeys`]: signing keys that every instance on the same database shares.
//!
//! This crate stores the rows and makes each change atomic for the whole cluster; it never sees
//! a private key: `sealed` is what the server encrypted with the operator's secret, and the
//! server alone opens it. Every change that must happen once for all instances — the first key
//! of a purpose, a rotation — runs in one transaction under an advisory lock, and re-checks
//! inside it whether another instance got there first.

use cloakroom_core::{StoreError, Timestamp};
use tokio_postgres::Row;

use crate::schema::{advisory_key, quoted};
use crate::store::{PostgresStore, db_error};

const COLUMNS: &str = "purpose, kid, alg, created_at, signs_from, retire_at, sealed";

/// One key as stored: public schedule in the clear, the private part sealed.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// What the key is for (`service-jwt`, `link`, …).
    pub purpose: String,
    /// Its id, unique within the purpose.
    pub kid: String,
    /// Its algorithm, as the server names it.
    pub alg: String,
    /// When it was made (and published).
    pub created_at: Timestamp,
    /// When it starts signing.
    pub signs_from: Timestamp,
    /// When it leaves the key set, once a newer key has taken over.
    pub retire_at: Option<Timestamp>,
    /// The private key, sealed by the server.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("purpose", &self.purpose)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .field("retire_at", &self.retire_at)
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .finish()
    }
}

/// What [`PostgresKeys::rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The new key was added and the keys before it scheduled to retire.
    Done,
    /// Another instance rotated since the time the caller asked about: nothing was changed.
    NotDue,
}

/// Signing keys in PostgreSQL, in the same database and schema as a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresKeys {
    store: PostgresStore,
    table: String,
    lock: i64,
}

impl PostgresKeys {
    /// Keys beside `store` (whose migrations created the table).
    pub fn new(store: PostgresStore) -> Self {
        let table = format!("{}.signing_keys", quoted(store.schema()));
        let lock = advisory_key("signing keys", store.schema());
        Self { store, table, lock }
    }

    /// Every key of every purpose.
    pub async fn load(&self) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} ORDER BY purpose, signs_from, created_at",
            self.table
        );
        self.store
            .query(&sql, &[])
            .await?
            .iter()
            .map(row_to_key)
            .collect()
    }

    /// The keys of one purpose.
    pub async fn load_purpose(&self, purpose: &str) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE purpose = $1 ORDER BY signs_from, created_at",
            self.table
        );
        self.store
            .query(&sql, &[&purpose])
            .await?
            .iter()
            .map(row_to_key)
            .collect()
    }

    /// Adds `keys` as the first keys of their purposes, all in one transaction, unless any of
    /// those purposes has a key already (another instance got there first: nothing is added,
    /// so keys made under two different secrets never sit side by side). Returns whether they
    /// were added.
    pub async fn insert_first(&self, keys: &[StoredKey]) -> Result<bool, StoreError> {
        let mut purposes: Vec<String> = keys.iter().map(|k| k.purpose.clone()).collect();
        purposes.dedup();
        if purposes.is_empty() {
            return Ok(false);
        }
        let count = format!(
            "SELECT count(*) FROM {} WHERE purpose = ANY($1::text[])",
            self.table
        );
        let insert = self.insert_sql();
        let lock = self.lock;
        let rows: Vec<Params> = keys.iter().map(params).collect();
        self.store
            .with_client(|mut client| async move {
                let tx = client.transaction().await.map_err(db_error)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
                    .await
                    .map_err(db_error)?;
                let n: i64 = tx
                    .query_one(&count, &[&purposes])
                    .await
                    .map_err(db_error)?
                    .try_get(0)
                    .map_err(db_error)?;
                if n > 0 {
                    return Ok(false);
                }
                for row in &rows {
                    tx.execute(&insert, &row.as_refs())
                        .await
                        .map_err(db_error)?;
                }
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            })
            .await
    }

    /// Adds `key` and schedules every key of its purpose that has no retirement date yet to
    /// retire at `retire_at`, in one transaction. With `unless_newer_than`, nothing happens if
    /// a key of the purpose was made after that time: a scheduled rotation that several
    /// instances reach at once happens once. Keys retired at or before `remove_retired_at` are
    /// deleted in the same step.
    pub async fn rotate(
        &self,
        key: &StoredKey,
        retire_at: Timestamp,
        unless_newer_than: Option<Timestamp>,
        remove_retired_at: Timestamp,
    ) -> Result<Rotation, StoreError> {
        let newest = format!(
            "SELECT max(created_at) FROM {} WHERE purpose = $1",
            self.table
        );
        let retire = format!(
            "UPDATE {} SET retire_at = $2 WHERE purpose = $1 AND retire_at IS NULL",
            self.table
        );
        let remove = format!(
            "DELETE FROM {} WHERE purpose = $1 AND retire_at <= $2",
            self.table
        );
        let insert = self.insert_sql();
        let lock = self.lock;
        let key = key.clone();
        self.store
            .with_client(|mut client| async move {
                let tx = client.transaction().await.map_err(db_error)?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
                    .await
                    .map_err(db_error)?;
                if let Some(since) = unless_newer_than {
                    let newest: Option<i64> = tx
                        .query_one(&newest, &[&key.purpose])
                        .await
                        .map_err(db_error)?
                        .try_get(0)
                        .map_err(db_error)?;
                    if newest.is_some_and(|n| n > since.as_unix_millis()) {
                        return Ok(Rotation::NotDue);
                    }
                }
                tx.execute(
                    &remove,
                    &[&key.purpose, &remove_retired_at.as_unix_millis()],
                )
                .await
                .map_err(db_error)?;
                tx.execute(&retire, &[&key.purpose, &retire_at.as_unix_millis()])
                    .await
                    .map_err(db_error)?;
                tx.execute(&insert, &params(&key).as_refs())
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                Ok(Rotation::Done)
            })
            .await
    }

    /// Replaces the sealed part of one key (after the secret itself was rotated). Returns
    /// whether the key still exists.
    pub async fn reseal(
        &self,
        purpose: &str,
        kid: &str,
        sealed: &[u8],
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET sealed = $3 WHERE purpose = $1 AND kid = $2",
            self.table
        );
        Ok(self.store.execute(&sql, &[&purpose, &kid, &sealed]).await? == 1)
    }

    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.table
        )
    }
}

struct Params {
    purpose: String,
    kid: String,
    alg: String,
    created_at: i64,
    signs_from: i64,
    retire_at: Option<i64>,
    sealed: Vec<u8>,
}

impl Params {
    fn as_refs(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 7] {
        [
            &self.purpose,
            &self.kid,
            &self.alg,
            &self.created_at,
            &self.signs_from,
            &self.retire_at,
            &self.sealed,
        ]
    }
}

fn params(k: &StoredKey) -> Params {
    Params {
        purpose: k.purpose.clone(),
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        created_at: k.created_at.as_unix_millis(),
        signs_from: k.signs_from.as_unix_millis(),
        retire_at: k.retire_at.map(Timestamp::as_unix_millis),
        sealed: k.sealed.clone(),
    }
}

fn row_to_key(row: &Row) -> Result<StoredKey, StoreError> {
    let retire_at: Option<i64> = row.try_get(5).map_err(db_error)?;
    Ok(StoredKey {
        purpose: row.try_get(0).map_err(db_error)?,
        kid: row.try_get(1).map_err(db_error)?,
        alg: row.try_get(2).map_err(db_error)?,
        created_at: Timestamp::from_unix_millis(row.try_get(3).map_err(db_error)?),
        signs_from: Timestamp::from_unix_millis(row.try_get(4).map_err(db_error)?),
        retire_at: retire_at.map(Timestamp::from_unix_millis),
        sealed: row.try_get(6).map_err(db_error)?,
    })
}
