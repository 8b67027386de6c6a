//! [`PostgresCounters`]: the login throttle's backoff counters in PostgreSQL, for instances
//! whose sessions are here.
//!
//! A reserve is one `INSERT … ON CONFLICT DO UPDATE … WHERE`: the row lock it takes makes check
//! and count one step for every instance, and the `WHERE` lets the update happen only when the
//! attempt need not wait. When it must, no row comes back, and a second read says how long
//! (nothing was counted). Counters are dropped by [`purge_forgotten`] once their failures are
//! forgotten, as Redis's TTL does there.
//!
//! [`purge_forgotten`]: BackoffCounters::purge_forgotten

use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::throttle::{Backoff, BackoffCounters};
use cloakroom_core::{StoreError, Timestamp};

use crate::schema::quoted;
use crate::store::{PostgresStore, db_error};

/// Backoff counters beside a [`PostgresStore`]'s sessions (same pool and schema).
#[derive(Debug, Clone)]
pub struct PostgresCounters {
    store: PostgresStore,
    table: String,
}

impl PostgresCounters {
    /// Counters in the same database and schema as `store` (whose migrations made the table).
    pub fn new(store: PostgresStore) -> Self {
        let table = format!("{}.throttle_counters", quoted(store.schema()));
        Self { store, table }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl BackoffCounters for PostgresCounters {
    async fn reserve(
        &self,
        name: &str,
        limits: &Backoff,
        now: Timestamp,
    ) -> Result<Option<Duration>, StoreError> {
        // $2 now, $3 forget, $4 free, $5 base, $6 max (milliseconds). The wait condition is
        // `Backoff::wait` in SQL: forgotten, or under the free failures, or past the delay.
        let sql = format!(
            "INSERT INTO {t} AS c (name, failures, last_failure, forget_at)
             VALUES ($1::text, 1, $2::bigint, $2::bigint + $3::bigint)
             ON CONFLICT (name) DO UPDATE SET
               failures = CASE WHEN $2::bigint - c.last_failure >= $3::bigint THEN 1
                               ELSE c.failures + 1 END,
               last_failure = $2::bigint,
               forget_at = $2::bigint + $3::bigint
             WHERE $2::bigint - c.last_failure >= $3::bigint
                OR c.failures < $4::integer
                OR $2::bigint >= c.last_failure + LEAST(
                     $5::bigint::float8 * power(2, LEAST(c.failures - $4::integer, 20)),
                     $6::bigint::float8)
             RETURNING failures",
            t = self.table
        );
        let free = i32::try_from(limits.free).unwrap_or(i32::MAX);
        let now_ms = now.as_unix_millis();
        let counted = self
            .store
            .query(
                &sql,
                &[
                    &name,
                    &now_ms,
                    &millis(limits.forget).max(1),
                    &free,
                    &millis(limits.base),
                    &millis(limits.max),
                ],
            )
            .await?;
        if !counted.is_empty() {
            return Ok(None);
        }
        let read = format!(
            "SELECT failures, last_failure FROM {} WHERE name = $1",
            self.table
        );
        let rows = self.store.query(&read, &[&name]).await?;
        let Some(row) = rows.first() else {
            // Reset between the two statements: the next attempt starts from zero.
            return Ok(Some(Duration::from_millis(1)));
        };
        let failures: i32 = row.try_get(0).map_err(db_error)?;
        let last: i64 = row.try_get(1).map_err(db_error)?;
        let wait = limits.wait(
            u32::try_from(failures).unwrap_or(0),
            Timestamp::from_unix_millis(last),
            now,
        );
        // Counted as refused even if the wait ran out between the two statements.
        Ok(Some(wait.max(Duration::from_millis(1))))
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        let sql = format!(
            "WITH gone AS (DELETE FROM {t} WHERE name = $1 AND failures <= 1 RETURNING 1)
             UPDATE {t} SET failures = failures - 1 WHERE name = $1 AND failures > 1",
            t = self.table
        );
        self.store.execute(&sql, &[&name]).await.map(drop)
    }

    async fn reset(&self, name: &str) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE name = $1", self.table);
        self.store.execute(&sql, &[&name]).await.map(drop)
    }

    async fn purge_forgotten(&self, now: Timestamp) -> Result<u64, StoreError> {
        let sql = format!("DELETE FROM {} WHERE forget_at <= $1", self.table);
        self.store.execute(&sql, &[&now.as_unix_millis()]).await
    }
}
