//! [`PostgresOutbox`]: the [`MailOutbox`] on PostgreSQL, sharing the session store's pool and
//! schema.
//!
//! A claim is one statement: a CTE picks the due rows `FOR UPDATE SKIP LOCKED` and the
//! `UPDATE` leases them. Concurrent claimers on any number of instances skip each other's
//! rows instead of waiting for them, and under READ COMMITTED a row whose lease another
//! claimer committed first is re-checked against `next_attempt_at <= now` and left out — so
//! no message is ever handed to two senders at once.

use async_trait::async_trait;
use cloakroom_core::mail::{ClaimedMail, MailId, MailOutbox, MailRecord, MailRow, OutgoingMail};
use cloakroom_core::{StoreError, Timestamp};
use tokio_postgres::Row;

use crate::schema::quoted;
use crate::store::{PostgresStore, db_error};

const RECORD: &str = "id, kind, recipient, subject, state, attempts, created_at, \
                      next_attempt_at, finished_at, last_error";

/// The mail outbox in PostgreSQL. Built from a connected [`PostgresStore`] (whose migrations
/// created the table), so one pool serves sessions, accounts and mail.
#[derive(Debug, Clone)]
pub struct PostgresOutbox {
    store: PostgresStore,
    table: String,
}

impl PostgresOutbox {
    /// The outbox in the same database and schema as `store`.
    pub fn new(store: PostgresStore) -> Self {
        let table = format!("{}.mail_outbox", quoted(store.schema()));
        Self { store, table }
    }
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(db_error)
}

fn record_row(row: &Row) -> Result<MailRow, StoreError> {
    Ok(MailRow {
        id: column(row, 0)?,
        kind: column(row, 1)?,
        recipient: column(row, 2)?,
        subject: column(row, 3)?,
        state: column(row, 4)?,
        attempts: column::<i32>(row, 5)?.into(),
        created_at: column(row, 6)?,
        next_attempt_at: column(row, 7)?,
        finished_at: column(row, 8)?,
        last_error: column(row, 9)?,
        ..MailRow::default()
    })
}

fn claim_row(row: &Row) -> Result<MailRow, StoreError> {
    Ok(MailRow {
        id: column(row, 0)?,
        attempts: column::<i32>(row, 1)?.into(),
        created_at: column(row, 2)?,
        kind: column(row, 3)?,
        recipient: column(row, 4)?,
        subject: column(row, 5)?,
        text: column(row, 6)?,
        html: column(row, 7)?,
        ..MailRow::default()
    })
}

/// An attempt number as the `integer` column holds it.
fn attempt_column(attempt: u32) -> i32 {
    // Attempts are capped by the retry policy far below 2^31; a larger one matches no row.
    i32::try_from(attempt).unwrap_or(-1)
}

#[async_trait]
impl MailOutbox for PostgresOutbox {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn enqueue(&self, mail: &OutgoingMail, now: Timestamp) -> Result<MailId, StoreError> {
        let sql = format!(
            "INSERT INTO {} (kind, recipient, subject, text_body, html_body, state, created_at,
                 next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) RETURNING id",
            self.table
        );
        let rows = self
            .store
            .query(
                &sql,
                &[
                    &mail.kind(),
                    &mail.to().as_str(),
                    &mail.subject(),
                    &mail.text(),
                    &mail.html(),
                    &now.as_unix_millis(),
                ],
            )
            .await?;
        let row = rows.first().ok_or_else(|| StoreError::Backend {
            store: "postgres",
            source: "INSERT … RETURNING returned no row".into(),
        })?;
        Ok(MailId::new(column(row, 0)?))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let sql = format!(
            "WITH due AS (
                 SELECT id FROM {t} WHERE state = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             UPDATE {t} m SET attempts = m.attempts + 1, next_attempt_at = $2
             FROM due WHERE m.id = due.id
             RETURNING m.id, m.attempts, m.created_at, m.kind, m.recipient, m.subject,
                       m.text_body, m.html_body",
            t = self.table
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .store
            .query(
                &sql,
                &[&now.as_unix_millis(), &lease_until.as_unix_millis(), &limit],
            )
            .await?;
        let mut claimed = rows
            .iter()
            .map(|r| claim_row(r)?.decode_claim("postgres"))
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    async fn mark_sent(
        &self,
        id: MailId,
        attempt: u32,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET state = 'sent', finished_at = $3, text_body = NULL, html_body = NULL
             WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            self.table
        );
        let n = self
            .store
            .execute(
                &sql,
                &[&id.get(), &attempt_column(attempt), &now.as_unix_millis()],
            )
            .await?;
        Ok(n == 1)
    }

    async fn mark_failed(
        &self,
        id: MailId,
        attempt: u32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Retry: due again at `retry_at`. Give up: failed now, kept for inspection.
        let (set, at) = match retry_at {
            Some(at) => ("next_attempt_at = $4", at),
            None => ("state = 'failed', finished_at = $4", now),
        };
        let sql = format!(
            "UPDATE {} SET last_error = $3, {set}
             WHERE id = $1 AND attempts = $2 AND state = 'pending'",
            self.table
        );
        let n = self
            .store
            .execute(
                &sql,
                &[
                    &id.get(),
                    &attempt_column(attempt),
                    &error,
                    &at.as_unix_millis(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn get(&self, id: MailId) -> Result<Option<MailRecord>, StoreError> {
        let sql = format!("SELECT {RECORD} FROM {} WHERE id = $1", self.table);
        let rows = self.store.query(&sql, &[&id.get()]).await?;
        rows.first()
            .map(|r| record_row(r)?.decode_record("postgres"))
            .transpose()
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MailRecord>, StoreError> {
        let sql = format!(
            "SELECT {RECORD} FROM {} ORDER BY id DESC LIMIT $1",
            self.table
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.store
            .query(&sql, &[&limit])
            .await?
            .iter()
            .map(|r| record_row(r)?.decode_record("postgres"))
            .collect()
    }

    async fn purge(
        &self,
        sent_before: Timestamp,
        failed_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE (state = 'sent' AND finished_at < $1)
                OR (state = 'failed' AND finished_at < $2)",
            self.table
        );
        self.store
            .execute(
                &sql,
                &[
                    &sent_before.as_unix_millis(),
                    &failed_before.as_unix_millis(),
                ],
            )
            .await
    }
}
