//! [`PostgresAccounts`]: the [`AccountStore`] on PostgreSQL, sharing the session store's pool
//! and schema.

use async_trait::async_trait;
use cloakroom_core::accounts::{Account, AccountError, AccountStore, PasswordHash, Username};
use cloakroom_core::{StoreError, Timestamp, UserId};
use tokio_postgres::Row;

use crate::schema::quoted;
use crate::store::PostgresStore;

const COLUMNS: &str =
    "id, username, password_hash, disabled, created_at, password_changed_at, email, display_name";

/// Accounts in PostgreSQL. Built from a connected [`PostgresStore`] (whose migrations created
/// the table), so one pool serves both.
#[derive(Debug, Clone)]
pub struct PostgresAccounts {
    store: PostgresStore,
    table: String,
}

impl PostgresAccounts {
    /// Accounts in the same database and schema as `store`.
    pub fn new(store: PostgresStore) -> Self {
        let table = format!("{}.accounts", quoted(store.schema()));
        Self { store, table }
    }
}

fn read_row(row: &Row) -> Result<Account, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt {
        store: "postgres",
        source: e.into(),
    };
    let get = |i: usize| {
        row.try_get::<_, String>(i)
            .map_err(|e| corrupt(e.to_string()))
    };
    let millis = |i: usize| {
        row.try_get::<_, i64>(i)
            .map(Timestamp::from_unix_millis)
            .map_err(|e| corrupt(e.to_string()))
    };
    Ok(Account {
        id: UserId::new(get(0)?).map_err(|e| corrupt(format!("id: {e}")))?,
        username: Username::parse(&get(1)?).map_err(|e| corrupt(format!("username: {e}")))?,
        password_hash: PasswordHash::new(get(2)?),
        disabled: row.try_get(3).map_err(|e| corrupt(e.to_string()))?,
        created_at: millis(4)?,
        password_changed_at: millis(5)?,
        email: row.try_get(6).map_err(|e| corrupt(e.to_string()))?,
        display_name: row.try_get(7).map_err(|e| corrupt(e.to_string()))?,
    })
}

#[async_trait]
impl AccountStore for PostgresAccounts {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, a: &Account) -> Result<(), AccountError> {
        // The unique index on `username_key` decides races between sign-ups.
        let sql = format!(
            "INSERT INTO {} ({COLUMNS}, username_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (username_key) DO NOTHING",
            self.table
        );
        let n = self
            .store
            .execute(
                &sql,
                &[
                    &a.id.as_str(),
                    &a.username.as_str(),
                    &a.password_hash.expose(),
                    &a.disabled,
                    &a.created_at.as_unix_millis(),
                    &a.password_changed_at.as_unix_millis(),
                    &a.email,
                    &a.display_name,
                    &a.username.key(),
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(AccountError::UsernameTaken)
        }
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE username_key = $1",
            self.table
        );
        let rows = self.store.query(&sql, &[&username.key()]).await?;
        rows.first().map(read_row).transpose()
    }

    async fn by_id(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM {} WHERE id = $1", self.table);
        let rows = self.store.query(&sql, &[&id.as_str()]).await?;
        rows.first().map(read_row).transpose()
    }

    async fn set_password(
        &self,
        id: &UserId,
        hash: &PasswordHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET password_hash = $2, password_changed_at = $3 WHERE id = $1",
            self.table
        );
        Ok(self
            .store
            .execute(&sql, &[&id.as_str(), &hash.expose(), &at.as_unix_millis()])
            .await?
            == 1)
    }

    async fn upgrade_password(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
            self.table
        );
        Ok(self
            .store
            .execute(&sql, &[&id.as_str(), &expected.expose(), &new.expose()])
            .await?
            == 1)
    }

    async fn set_disabled(&self, id: &UserId, disabled: bool) -> Result<bool, StoreError> {
        let sql = format!("UPDATE {} SET disabled = $2 WHERE id = $1", self.table);
        Ok(self.store.execute(&sql, &[&id.as_str(), &disabled]).await? == 1)
    }

    async fn list(&self) -> Result<Vec<Account>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY username_key", self.table);
        self.store
            .query(&sql, &[])
            .await?
            .iter()
            .map(read_row)
            .collect()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store.query("SELECT 1", &[]).await.map(drop)
    }
}
