//! The [`SecondFactorStore`] on SQLite, beside the accounts (same database, same writer).

use async_trait::async_trait;
use cloakroom_core::mfa::{
    Factors, PasskeyRecord, RecoveryCodeHash, SecondFactorStore, TotpRecord,
};
use cloakroom_core::{StoreError, Timestamp, UserId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::accounts::SqliteAccounts;
use crate::store::{corrupt, store_error};

/// A time step as SQLite stores it (a signed 64-bit integer); steps past that are refused as
/// corrupt input rather than wrapped.
fn step_column(step: u64) -> rusqlite::Result<i64> {
    i64::try_from(step).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn replace_codes(
    conn: &Connection,
    user: &str,
    codes: &[[u8; 32]],
    at: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM recovery_codes WHERE account_id = ?1")?
        .execute([user])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO recovery_codes (account_id, hash, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT DO NOTHING",
    )?;
    for code in codes {
        insert.execute(params![user, code.as_slice(), at])?;
    }
    Ok(())
}

const PASSKEY_COLUMNS: &str = "credential_id, account_id, name, data, created_at, last_used_at";

fn read_passkey(row: &Row<'_>) -> rusqlite::Result<Result<PasskeyRecord, String>> {
    let credential_id: Vec<u8> = row.get(0)?;
    let account: String = row.get(1)?;
    let name: String = row.get(2)?;
    let data: String = row.get(3)?;
    let created_at = Timestamp::from_unix_millis(row.get(4)?);
    let last_used_at: Option<i64> = row.get(5)?;
    Ok(UserId::new(account)
        .map_err(|e| format!("account_id: {e}"))
        .map(|account| PasskeyRecord {
            credential_id,
            account,
            name,
            data,
            created_at,
            last_used_at: last_used_at.map(Timestamp::from_unix_millis),
        }))
}

#[async_trait]
impl SecondFactorStore for SqliteAccounts {
    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        let user = user.as_str().to_owned();
        self.db()
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT
                       (SELECT count(*) FROM totp_secrets WHERE account_id = ?1 AND confirmed_at IS NOT NULL),
                       (SELECT count(*) FROM passkeys WHERE account_id = ?1),
                       (SELECT count(*) FROM recovery_codes WHERE account_id = ?1 AND used_at IS NULL)",
                )?
                .query_row([user], |r| {
                    Ok(Factors {
                        totp: r.get::<_, i64>(0)? > 0,
                        passkeys: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(u32::MAX),
                        recovery_codes: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(u32::MAX),
                    })
                })
            })
            .await
            .map_err(store_error)
    }

    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError> {
        let user = user.as_str().to_owned();
        let row = self
            .db()
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT sealed, created_at, confirmed_at, last_step FROM totp_secrets
                     WHERE account_id = ?1",
                )?
                .query_row([user], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(|(sealed, created, confirmed, step)| {
            Ok(TotpRecord {
                sealed,
                created_at: Timestamp::from_unix_millis(created),
                confirmed_at: confirmed.map(Timestamp::from_unix_millis),
                last_step: step
                    .map(u64::try_from)
                    .transpose()
                    .map_err(|e| corrupt(Box::new(e)))?,
            })
        })
        .transpose()
    }

    async fn begin_totp(
        &self,
        user: &UserId,
        sealed: &[u8],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (user, sealed) = (user.as_str().to_owned(), sealed.to_vec());
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO totp_secrets (account_id, sealed, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (account_id) DO UPDATE
                       SET sealed = excluded.sealed, created_at = excluded.created_at,
                           last_step = NULL
                       WHERE totp_secrets.confirmed_at IS NULL",
                )?
                .execute(params![user, sealed, at.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn confirm_totp(
        &self,
        user: &UserId,
        sealed: &[u8],
        step: u64,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (user, sealed) = (user.as_str().to_owned(), sealed.to_vec());
        let codes: Vec<[u8; 32]> = codes.iter().map(|c| *c.as_bytes()).collect();
        self.db()
            .write(move |conn| {
                let confirmed =
                    conn.prepare_cached(
                        "UPDATE totp_secrets SET confirmed_at = ?3, last_step = ?4
                         WHERE account_id = ?1 AND sealed = ?2 AND confirmed_at IS NULL",
                    )?
                    .execute(params![
                        user,
                        sealed,
                        at.as_unix_millis(),
                        step_column(step)?
                    ])? == 1;
                if confirmed {
                    replace_codes(conn, &user, &codes, at.as_unix_millis())?;
                }
                Ok(confirmed)
            })
            .await
            .map_err(store_error)
    }

    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let user = user.as_str().to_owned();
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE totp_secrets SET last_step = ?2
                     WHERE account_id = ?1 AND confirmed_at IS NOT NULL
                       AND (last_step IS NULL OR last_step < ?2)",
                )?
                .execute(params![user, step_column(step)?])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn remove_totp(&self, user: &UserId) -> Result<bool, StoreError> {
        let user = user.as_str().to_owned();
        self.db()
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM totp_secrets WHERE account_id = ?1")?
                    .execute([user])
                    .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn set_recovery_codes(
        &self,
        user: &UserId,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let user = user.as_str().to_owned();
        let codes: Vec<[u8; 32]> = codes.iter().map(|c| *c.as_bytes()).collect();
        self.db()
            .write(move |conn| replace_codes(conn, &user, &codes, at.as_unix_millis()))
            .await
            .map_err(store_error)
    }

    async fn use_recovery_code(
        &self,
        user: &UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (user, code) = (user.as_str().to_owned(), *code.as_bytes());
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE recovery_codes SET used_at = ?3
                     WHERE account_id = ?1 AND hash = ?2 AND used_at IS NULL",
                )?
                .execute(params![user, code.as_slice(), at.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn add_passkey(&self, p: &PasskeyRecord) -> Result<bool, StoreError> {
        let p = p.clone();
        self.db()
            .write(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (credential_id) DO NOTHING"
                ))?
                .execute(params![
                    p.credential_id,
                    p.account.as_str(),
                    p.name,
                    p.data,
                    p.created_at.as_unix_millis(),
                    p.last_used_at.map(Timestamp::as_unix_millis),
                ])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let user = user.as_str().to_owned();
        let rows = self
            .db()
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE account_id = ?1
                     ORDER BY created_at, credential_id"
                ))?
                .query_map([user], read_passkey)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.into_iter()
            .map(|r| r.map_err(|e| corrupt(e.into())))
            .collect()
    }

    async fn passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        let id = credential_id.to_vec();
        let row = self
            .db()
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?1"
                ))?
                .query_row([id], read_passkey)
                .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(|r| r.map_err(|e| corrupt(e.into()))).transpose()
    }

    async fn update_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        previous: &str,
        data: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (user, id, previous, data) = (
            user.as_str().to_owned(),
            credential_id.to_vec(),
            previous.to_owned(),
            data.to_owned(),
        );
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE passkeys SET data = ?4, last_used_at = ?5
                     WHERE account_id = ?1 AND credential_id = ?2 AND data = ?3",
                )?
                .execute(params![user, id, previous, data, at.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn rename_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        name: &str,
    ) -> Result<bool, StoreError> {
        let (user, id, name) = (
            user.as_str().to_owned(),
            credential_id.to_vec(),
            name.to_owned(),
        );
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE passkeys SET name = ?3 WHERE account_id = ?1 AND credential_id = ?2",
                )?
                .execute(params![user, id, name])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn remove_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        let (user, id) = (user.as_str().to_owned(), credential_id.to_vec());
        self.db()
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM passkeys WHERE account_id = ?1 AND credential_id = ?2",
                )?
                .execute(params![user, id])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn reset(&self, user: &UserId) -> Result<bool, StoreError> {
        let user = user.as_str().to_owned();
        self.db()
            .write(move |conn| delete_factors(conn, &user).map(|n| n > 0))
            .await
            .map_err(store_error)
    }
}

/// Deletes every second factor of `user`, in the caller's transaction; how many rows went.
pub(crate) fn delete_factors(conn: &Connection, user: &str) -> rusqlite::Result<usize> {
    let mut n = 0;
    for table in ["totp_secrets", "recovery_codes", "passkeys"] {
        n += conn
            .prepare_cached(&format!("DELETE FROM {table} WHERE account_id = ?1"))?
            .execute([user])?;
    }
    Ok(n)
}
