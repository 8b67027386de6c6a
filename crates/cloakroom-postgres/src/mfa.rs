//! The [`SecondFactorStore`] on PostgreSQL, beside the accounts (same pool and schema). The
//! factor tables reference the account with `ON DELETE CASCADE`, so a deleted account takes
//! its factors along in the same statement.

use async_trait::async_trait;
use cloakroom_core::mfa::{
    Factors, PasskeyRecord, RecoveryCodeHash, SecondFactorStore, TotpRecord,
};
use cloakroom_core::store::CorruptColumn;
use cloakroom_core::{StoreError, Timestamp, UserId};
use tokio_postgres::Row;

use crate::accounts::PostgresAccounts;
use crate::schema::quoted;
use crate::store::db_error;

/// A time step as a `bigint`; a step past it is refused, never wrapped.
fn step_column(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|e| StoreError::Backend {
        store: "postgres",
        source: Box::new(e),
    })
}

fn corrupt(column: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt {
        store: "postgres",
        source: Box::new(CorruptColumn::new(column, e)),
    }
}

const PASSKEY_COLUMNS: &str = "credential_id, account_id, name, data, created_at, last_used_at";

fn read_passkey(row: &Row) -> Result<PasskeyRecord, StoreError> {
    let account: String = row.try_get(1).map_err(db_error)?;
    Ok(PasskeyRecord {
        credential_id: row.try_get(0).map_err(db_error)?,
        account: UserId::new(account).map_err(|e| corrupt("account_id", e))?,
        name: row.try_get(2).map_err(db_error)?,
        data: row.try_get(3).map_err(db_error)?,
        created_at: Timestamp::from_unix_millis(row.try_get(4).map_err(db_error)?),
        last_used_at: row
            .try_get::<_, Option<i64>>(5)
            .map_err(db_error)?
            .map(Timestamp::from_unix_millis),
    })
}

impl PostgresAccounts {
    fn factor_table(&self, name: &str) -> String {
        format!("{}.{name}", quoted(self.schema()))
    }

    /// Replaces the recovery codes of `user` in one transaction, after `first` (a statement
    /// whose row count says whether to go on) when given; returns whether it went on.
    async fn replace_codes(
        &self,
        user: &UserId,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
        first: Option<(
            String,
            Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>>,
        )>,
    ) -> Result<bool, StoreError> {
        let codes_table = self.factor_table("recovery_codes");
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| c.as_bytes().to_vec()).collect();
        let user = user.as_str().to_owned();
        self.store()
            .with_client(|mut client| async move {
                let tx = client.transaction().await.map_err(db_error)?;
                if let Some((sql, params)) = &first {
                    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                        .iter()
                        .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    if tx.execute(sql.as_str(), &refs).await.map_err(db_error)? == 0 {
                        tx.rollback().await.map_err(db_error)?;
                        return Ok(false);
                    }
                }
                tx.execute(
                    &format!("DELETE FROM {codes_table} WHERE account_id = $1"),
                    &[&user],
                )
                .await
                .map_err(db_error)?;
                tx.execute(
                    &format!(
                        "INSERT INTO {codes_table} (account_id, hash, created_at)
                         SELECT $1, h, $3 FROM unnest($2::bytea[]) AS h ON CONFLICT DO NOTHING"
                    ),
                    &[&user, &hashes, &at.as_unix_millis()],
                )
                .await
                .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                Ok(true)
            })
            .await
    }
}

#[async_trait]
impl SecondFactorStore for PostgresAccounts {
    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        let sql = format!(
            "SELECT
               (SELECT count(*) FROM {} WHERE account_id = $1 AND confirmed_at IS NOT NULL),
               (SELECT count(*) FROM {} WHERE account_id = $1),
               (SELECT count(*) FROM {} WHERE account_id = $1 AND used_at IS NULL)",
            self.factor_table("totp_secrets"),
            self.factor_table("passkeys"),
            self.factor_table("recovery_codes"),
        );
        let rows = self.store().query(&sql, &[&user.as_str()]).await?;
        let row = rows.first().ok_or_else(|| StoreError::Backend {
            store: "postgres",
            source: "no row".into(),
        })?;
        let n = |i: usize| -> Result<i64, StoreError> { row.try_get(i).map_err(db_error) };
        Ok(Factors {
            totp: n(0)? > 0,
            passkeys: u32::try_from(n(1)?).unwrap_or(u32::MAX),
            recovery_codes: u32::try_from(n(2)?).unwrap_or(u32::MAX),
        })
    }

    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError> {
        let sql = format!(
            "SELECT sealed, created_at, confirmed_at, last_step FROM {} WHERE account_id = $1",
            self.factor_table("totp_secrets")
        );
        let rows = self.store().query(&sql, &[&user.as_str()]).await?;
        rows.first()
            .map(|r| {
                Ok(TotpRecord {
                    sealed: r.try_get(0).map_err(db_error)?,
                    created_at: Timestamp::from_unix_millis(r.try_get(1).map_err(db_error)?),
                    confirmed_at: r
                        .try_get::<_, Option<i64>>(2)
                        .map_err(db_error)?
                        .map(Timestamp::from_unix_millis),
                    last_step: r
                        .try_get::<_, Option<i64>>(3)
                        .map_err(db_error)?
                        .map(u64::try_from)
                        .transpose()
                        .map_err(|e| corrupt("last_step", e))?,
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
        let t = self.factor_table("totp_secrets");
        let sql = format!(
            "INSERT INTO {t} (account_id, sealed, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (account_id) DO UPDATE
               SET sealed = excluded.sealed, created_at = excluded.created_at, last_step = NULL
               WHERE {t}.confirmed_at IS NULL"
        );
        Ok(self
            .store()
            .execute(&sql, &[&user.as_str(), &sealed, &at.as_unix_millis()])
            .await?
            == 1)
    }

    async fn confirm_totp(
        &self,
        user: &UserId,
        sealed: &[u8],
        step: u64,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET confirmed_at = $3, last_step = $4
             WHERE account_id = $1 AND sealed = $2 AND confirmed_at IS NULL",
            self.factor_table("totp_secrets")
        );
        let params: Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> = vec![
            Box::new(user.as_str().to_owned()),
            Box::new(sealed.to_vec()),
            Box::new(at.as_unix_millis()),
            Box::new(step_column(step)?),
        ];
        self.replace_codes(user, codes, at, Some((sql, params)))
            .await
    }

    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET last_step = $2
             WHERE account_id = $1 AND confirmed_at IS NOT NULL
               AND (last_step IS NULL OR last_step < $2)",
            self.factor_table("totp_secrets")
        );
        Ok(self
            .store()
            .execute(&sql, &[&user.as_str(), &step_column(step)?])
            .await?
            == 1)
    }

    async fn remove_totp(&self, user: &UserId) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE account_id = $1",
            self.factor_table("totp_secrets")
        );
        Ok(self.store().execute(&sql, &[&user.as_str()]).await? == 1)
    }

    async fn set_recovery_codes(
        &self,
        user: &UserId,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.replace_codes(user, codes, at, None).await.map(drop)
    }

    async fn use_recovery_code(
        &self,
        user: &UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET used_at = $3 WHERE account_id = $1 AND hash = $2 AND used_at IS NULL",
            self.factor_table("recovery_codes")
        );
        Ok(self
            .store()
            .execute(
                &sql,
                &[
                    &user.as_str(),
                    &code.as_bytes().as_slice(),
                    &at.as_unix_millis(),
                ],
            )
            .await?
            == 1)
    }

    async fn add_passkey(&self, p: &PasskeyRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO {} ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (credential_id) DO NOTHING",
            self.factor_table("passkeys")
        );
        Ok(self
            .store()
            .execute(
                &sql,
                &[
                    &p.credential_id,
                    &p.account.as_str(),
                    &p.name,
                    &p.data,
                    &p.created_at.as_unix_millis(),
                    &p.last_used_at.map(Timestamp::as_unix_millis),
                ],
            )
            .await?
            == 1)
    }

    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM {} WHERE account_id = $1
             ORDER BY created_at, credential_id",
            self.factor_table("passkeys")
        );
        self.store()
            .query(&sql, &[&user.as_str()])
            .await?
            .iter()
            .map(read_passkey)
            .collect()
    }

    async fn passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM {} WHERE credential_id = $1",
            self.factor_table("passkeys")
        );
        self.store()
            .query(&sql, &[&credential_id])
            .await?
            .first()
            .map(read_passkey)
            .transpose()
    }

    async fn update_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        previous: &str,
        data: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET data = $4, last_used_at = $5
             WHERE account_id = $1 AND credential_id = $2 AND data = $3",
            self.factor_table("passkeys")
        );
        Ok(self
            .store()
            .execute(
                &sql,
                &[
                    &user.as_str(),
                    &credential_id,
                    &previous,
                    &data,
                    &at.as_unix_millis(),
                ],
            )
            .await?
            == 1)
    }

    async fn rename_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        name: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET name = $3 WHERE account_id = $1 AND credential_id = $2",
            self.factor_table("passkeys")
        );
        Ok(self
            .store()
            .execute(&sql, &[&user.as_str(), &credential_id, &name])
            .await?
            == 1)
    }

    async fn remove_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE account_id = $1 AND credential_id = $2",
            self.factor_table("passkeys")
        );
        Ok(self
            .store()
            .execute(&sql, &[&user.as_str(), &credential_id])
            .await?
            == 1)
    }

    async fn reset(&self, user: &UserId) -> Result<bool, StoreError> {
        // One statement, so one transaction.
        let sql = format!(
            "WITH a AS (DELETE FROM {} WHERE account_id = $1 RETURNING 1),
                  b AS (DELETE FROM {} WHERE account_id = $1 RETURNING 1),
                  c AS (DELETE FROM {} WHERE account_id = $1 RETURNING 1)
             SELECT (SELECT count(*) FROM a) + (SELECT count(*) FROM b) + (SELECT count(*) FROM c)",
            self.factor_table("totp_secrets"),
            self.factor_table("recovery_codes"),
            self.factor_table("passkeys"),
        );
        Ok(self.store().count(&sql, &[&user.as_str()]).await? > 0)
    }
}
