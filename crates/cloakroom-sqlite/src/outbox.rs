//! [`SqliteOutbox`]: the [`MailOutbox`] on SQLite, beside the accounts.
//!
//! Claims need no row locks here: every write runs on the one writer connection inside
//! `BEGIN IMMEDIATE`, which holds the database's write lock against other processes too (the
//! admin CLI, a second server on the same file). A claim is one `UPDATE … RETURNING`, so two
//! claimers can never both see a message as due.

use async_trait::async_trait;
use cloakroom_core::mail::{ClaimedMail, MailId, MailOutbox, MailRecord, MailRow, OutgoingMail};
use cloakroom_core::{StoreError, Timestamp};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::Database;
use crate::store::store_error;

const STORE: &str = "sqlite";

const RECORD: &str = "id, kind, recipient, subject, state, attempts, created_at, \
                      next_attempt_at, finished_at, last_error";

/// The mail outbox in a SQLite [`Database`] (the one that holds the accounts).
#[derive(Debug, Clone)]
pub struct SqliteOutbox {
    db: Database,
}

impl SqliteOutbox {
    /// An outbox over an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn record_row(row: &Row<'_>) -> rusqlite::Result<MailRow> {
    Ok(MailRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        recipient: row.get(2)?,
        subject: row.get(3)?,
        state: row.get(4)?,
        attempts: row.get(5)?,
        created_at: row.get(6)?,
        next_attempt_at: row.get(7)?,
        finished_at: row.get(8)?,
        last_error: row.get(9)?,
        ..MailRow::default()
    })
}

fn claim_row(row: &Row<'_>) -> rusqlite::Result<MailRow> {
    Ok(MailRow {
        id: row.get(0)?,
        attempts: row.get(1)?,
        created_at: row.get(2)?,
        kind: row.get(3)?,
        recipient: row.get(4)?,
        subject: row.get(5)?,
        text: row.get(6)?,
        html: row.get(7)?,
        ..MailRow::default()
    })
}

#[async_trait]
impl MailOutbox for SqliteOutbox {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn enqueue(&self, mail: &OutgoingMail, now: Timestamp) -> Result<MailId, StoreError> {
        let mail = mail.clone();
        let id = self
            .db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO mail_outbox (kind, recipient, subject, text_body, html_body,
                         state, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6) RETURNING id",
                )?
                .query_row(
                    params![
                        mail.kind(),
                        mail.to().as_str(),
                        mail.subject(),
                        mail.text(),
                        mail.html(),
                        now.as_unix_millis()
                    ],
                    |r| r.get(0),
                )
            })
            .await
            .map_err(store_error)?;
        Ok(MailId::new(id))
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE mail_outbox SET attempts = attempts + 1, next_attempt_at = ?2
                     WHERE id IN (SELECT id FROM mail_outbox
                                  WHERE state = 'pending' AND next_attempt_at <= ?1
                                  ORDER BY next_attempt_at, id LIMIT ?3)
                     RETURNING id, attempts, created_at, kind, recipient, subject,
                               text_body, html_body",
                )?
                .query_map(
                    params![now.as_unix_millis(), lease_until.as_unix_millis(), limit],
                    claim_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        let mut claimed = rows
            .into_iter()
            .map(|r| r.decode_claim(STORE))
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
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE mail_outbox
                     SET state = 'sent', finished_at = ?3, text_body = NULL, html_body = NULL
                     WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                )?
                .execute(params![id.get(), attempt, now.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn mark_failed(
        &self,
        id: MailId,
        attempt: u32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let error = error.to_owned();
        // Retry: due again at `retry_at`. Give up: failed now, kept for inspection.
        let (sql, at) = match retry_at {
            Some(at) => (
                "UPDATE mail_outbox SET last_error = ?3, next_attempt_at = ?4
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                at,
            ),
            None => (
                "UPDATE mail_outbox SET last_error = ?3, state = 'failed', finished_at = ?4
                 WHERE id = ?1 AND attempts = ?2 AND state = 'pending'",
                now,
            ),
        };
        self.db
            .write(move |conn| {
                conn.prepare_cached(sql)?
                    .execute(params![id.get(), attempt, error, at.as_unix_millis()])
                    .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn get(&self, id: MailId) -> Result<Option<MailRecord>, StoreError> {
        let row = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {RECORD} FROM mail_outbox WHERE id = ?1"))?
                    .query_row([id.get()], record_row)
                    .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(|r| r.decode_record(STORE)).transpose()
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MailRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {RECORD} FROM mail_outbox ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([limit], record_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.into_iter().map(|r| r.decode_record(STORE)).collect()
    }

    async fn purge(
        &self,
        sent_before: Timestamp,
        failed_before: Timestamp,
    ) -> Result<u64, StoreError> {
        let n = self
            .db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM mail_outbox
                     WHERE (state = 'sent' AND finished_at < ?1)
                        OR (state = 'failed' AND finished_at < ?2)",
                )?
                .execute(params![
                    sent_before.as_unix_millis(),
                    failed_before.as_unix_millis()
                ])
            })
            .await
            .map_err(store_error)?;
        Ok(n as u64)
    }
}
