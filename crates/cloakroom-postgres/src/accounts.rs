//! [`PostgresAccounts`]: the [`AccountStore`] on PostgreSQL, sharing the session store's pool
//! and schema.

use async_trait::async_trait;
use cloakroom_core::accounts::{
    Account, AccountError, AccountStore, GroupName, InviteHash, LinkedIdentity, PasswordHash,
    Username,
};
use cloakroom_core::mail::EmailAddress;
use cloakroom_core::store::CorruptColumn;
use cloakroom_core::{StoreError, Timestamp, UserId};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::schema::quoted;
use crate::store::{PostgresStore, db_error};

const COLUMNS: &str = "id, username, password_hash, disabled, created_at, password_changed_at, email, display_name, email_verified";

/// Accounts in PostgreSQL. Built from a connected [`PostgresStore`] (whose migrations created
/// the table), so one pool serves both.
#[derive(Debug, Clone)]
pub struct PostgresAccounts {
    store: PostgresStore,
    table: String,
    invites: String,
    identities: String,
    groups: String,
}

impl PostgresAccounts {
    /// Accounts in the same database and schema as `store`.
    pub fn new(store: PostgresStore) -> Self {
        let table = format!("{}.accounts", quoted(store.schema()));
        let invites = format!("{}.invites", quoted(store.schema()));
        let identities = format!("{}.linked_identities", quoted(store.schema()));
        let groups = format!("{}.account_groups", quoted(store.schema()));
        Self {
            store,
            table,
            invites,
            identities,
            groups,
        }
    }
}

impl PostgresAccounts {
    pub(crate) fn store(&self) -> &PostgresStore {
        &self.store
    }

    pub(crate) fn schema(&self) -> &str {
        self.store.schema()
    }

    /// The insert `create` and `redeem_invite_and_create` share. The unique index on
    /// `username_key` decides races between sign-ups.
    fn insert_sql(&self) -> String {
        format!(
            "INSERT INTO {} ({COLUMNS}, username_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (username_key) DO NOTHING",
            self.table
        )
    }

    /// Runs `claim` (a statement that must change one row: an invitation marked used, an
    /// identity linked) and then inserts `a`, in one transaction. If the claim changes
    /// nothing the answer is `refused`, if the username is taken `UsernameTaken`; either way
    /// the transaction rolls back and the store is as it was.
    async fn claim_and_create(
        &self,
        claim: &str,
        params: &[&(dyn ToSql + Sync)],
        refused: AccountError,
        a: &Account,
    ) -> Result<(), AccountError> {
        let insert = self.insert_sql();
        let row = InsertRow::new(a);
        self.store
            .with_client(|mut client| async move {
                let tx = client.transaction().await.map_err(db_error)?;
                let stmt = tx.prepare_cached(claim).await.map_err(db_error)?;
                if tx.execute(&stmt, params).await.map_err(db_error)? == 0 {
                    tx.rollback().await.map_err(db_error)?;
                    return Ok(Err(refused));
                }
                let stmt = tx.prepare_cached(&insert).await.map_err(db_error)?;
                if tx.execute(&stmt, &row.params()).await.map_err(db_error)? == 0 {
                    tx.rollback().await.map_err(db_error)?;
                    return Ok(Err(AccountError::UsernameTaken));
                }
                tx.commit().await.map_err(db_error)?;
                Ok(Ok(()))
            })
            .await?
    }

    /// The insert `link_identity` and `create_with_identity` share; the primary key decides
    /// races.
    fn insert_identity_sql(&self) -> String {
        format!(
            "INSERT INTO {} (issuer, subject, account_id, linked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (issuer, subject) DO NOTHING",
            self.identities
        )
    }
}

/// The parameters of [`PostgresAccounts::insert_sql`], in column order.
struct InsertRow<'a> {
    id: &'a str,
    username: &'a str,
    password_hash: &'a str,
    disabled: bool,
    created_at: i64,
    password_changed_at: i64,
    email: Option<&'a str>,
    display_name: &'a Option<String>,
    email_verified: bool,
    key: String,
}

impl<'a> InsertRow<'a> {
    fn new(a: &'a Account) -> Self {
        Self {
            id: a.id.as_str(),
            username: a.username.as_str(),
            password_hash: a.password_hash.expose(),
            disabled: a.disabled,
            created_at: a.created_at.as_unix_millis(),
            password_changed_at: a.password_changed_at.as_unix_millis(),
            email: a.email.as_ref().map(EmailAddress::as_str),
            display_name: &a.display_name,
            email_verified: a.email.is_some() && a.email_verified,
            key: a.username.key(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.id,
            &self.username,
            &self.password_hash,
            &self.disabled,
            &self.created_at,
            &self.password_changed_at,
            &self.email,
            self.display_name,
            &self.email_verified,
            &self.key,
        ]
    }
}

/// A stored group name, checked again on the way out like every other column.
fn group_name(name: &str) -> Result<GroupName, StoreError> {
    GroupName::parse(name).map_err(|e| StoreError::Corrupt {
        store: "postgres",
        source: Box::new(CorruptColumn::new("group_name", e)),
    })
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
        email: row
            .try_get::<_, Option<String>>(6)
            .map_err(|e| corrupt(e.to_string()))?
            .map(|e| EmailAddress::parse(&e))
            .transpose()
            .map_err(|e| corrupt(format!("email: {e}")))?,
        display_name: row.try_get(7).map_err(|e| corrupt(e.to_string()))?,
        email_verified: row.try_get(8).map_err(|e| corrupt(e.to_string()))?,
    })
}

#[async_trait]
impl AccountStore for PostgresAccounts {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn create(&self, a: &Account) -> Result<(), AccountError> {
        let n = self
            .store
            .execute(&self.insert_sql(), &InsertRow::new(a).params())
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

    async fn set_email(
        &self,
        id: &UserId,
        email: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET email = $2, email_verified = false WHERE id = $1",
            self.table
        );
        let email = email.map(EmailAddress::as_str);
        Ok(self.store.execute(&sql, &[&id.as_str(), &email]).await? == 1)
    }

    async fn mark_email_verified(
        &self,
        id: &UserId,
        email: &EmailAddress,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET email_verified = true WHERE id = $1 AND email = $2",
            self.table
        );
        Ok(self
            .store
            .execute(&sql, &[&id.as_str(), &email.as_str()])
            .await?
            == 1)
    }

    async fn by_email(&self, email: &EmailAddress) -> Result<Vec<Account>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE email = $1 ORDER BY username_key",
            self.table
        );
        self.store
            .query(&sql, &[&email.as_str()])
            .await?
            .iter()
            .map(read_row)
            .collect()
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

    async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        // One statement, so one transaction: the invitation's mark and the account go
        // together.
        let sql = format!(
            "WITH gone AS (DELETE FROM {} WHERE id = $1 RETURNING id),
                  unmarked AS (UPDATE {} SET used_by = NULL WHERE used_by IN (SELECT id FROM gone)),
                  unlinked AS (DELETE FROM {} WHERE account_id = $1)
             SELECT count(*) FROM gone",
            self.table, self.invites, self.identities
        );
        Ok(self.store.count(&sql, &[&id.as_str()]).await? == 1)
    }

    async fn groups(&self, account: &UserId) -> Result<Vec<GroupName>, StoreError> {
        let sql = format!(
            "SELECT group_name FROM {} WHERE account_id = $1 ORDER BY group_name",
            self.groups
        );
        self.store
            .query(&sql, &[&account.as_str()])
            .await?
            .iter()
            .map(|row| group_name(row.try_get(0).map_err(db_error)?))
            .collect()
    }

    async fn update_groups(
        &self,
        account: &UserId,
        add: &[GroupName],
        remove: &[GroupName],
    ) -> Result<bool, StoreError> {
        let add: Vec<&str> = add.iter().map(GroupName::as_str).collect();
        let remove: Vec<&str> = remove.iter().map(GroupName::as_str).collect();
        // One statement, so one transaction. The account row is share-locked, so a deletion
        // waits for it (and the foreign key takes the memberships with it); a name in both
        // lists is only deleted (the CTEs see one snapshot).
        let sql = format!(
            "WITH acct AS (SELECT id FROM {} WHERE id = $1 FOR SHARE),
                  removed AS (DELETE FROM {g} WHERE account_id IN (SELECT id FROM acct)
                              AND group_name = ANY($3::text[])),
                  added AS (INSERT INTO {g} (account_id, group_name)
                            SELECT acct.id, n FROM acct, unnest($2::text[]) AS n
                            WHERE n <> ALL($3::text[])
                            ON CONFLICT DO NOTHING)
             SELECT count(*) FROM acct",
            self.table,
            g = self.groups
        );
        let n = self
            .store
            .count(&sql, &[&account.as_str(), &add, &remove])
            .await?;
        Ok(n == 1)
    }

    async fn group_sizes(&self) -> Result<Vec<(GroupName, u64)>, StoreError> {
        let sql = format!(
            "SELECT group_name, count(*) FROM {} GROUP BY group_name ORDER BY group_name",
            self.groups
        );
        self.store
            .query(&sql, &[])
            .await?
            .iter()
            .map(|row| {
                let n: i64 = row.try_get(1).map_err(db_error)?;
                Ok((
                    group_name(row.try_get(0).map_err(db_error)?)?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect()
    }

    async fn link_identity(&self, i: &LinkedIdentity) -> Result<(), AccountError> {
        let n = self
            .store
            .execute(
                &self.insert_identity_sql(),
                &[
                    &i.issuer,
                    &i.subject,
                    &i.account.as_str(),
                    &i.linked_at.as_unix_millis(),
                ],
            )
            .await?;
        if n == 1 {
            Ok(())
        } else {
            Err(AccountError::IdentityTaken)
        }
    }

    async fn create_with_identity(
        &self,
        a: &Account,
        i: &LinkedIdentity,
    ) -> Result<(), AccountError> {
        // One transaction: the identity row goes in first and holds its key, so a concurrent
        // first sign-in with the same identity waits for this one and then finds it taken.
        let linked_at = i.linked_at.as_unix_millis();
        self.claim_and_create(
            &self.insert_identity_sql(),
            &[&i.issuer, &i.subject, &i.account.as_str(), &linked_at],
            AccountError::IdentityTaken,
            a,
        )
        .await
    }

    async fn by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Account>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE id = \
             (SELECT account_id FROM {} WHERE issuer = $1 AND subject = $2)",
            self.table, self.identities
        );
        let rows = self.store.query(&sql, &[&issuer, &subject]).await?;
        rows.first().map(read_row).transpose()
    }

    async fn identities(&self, account: &UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        let sql = format!(
            "SELECT issuer, subject, linked_at FROM {} WHERE account_id = $1 \
             ORDER BY linked_at, issuer, subject",
            self.identities
        );
        self.store
            .query(&sql, &[&account.as_str()])
            .await?
            .iter()
            .map(|row| {
                Ok(LinkedIdentity {
                    issuer: row.try_get(0).map_err(db_error)?,
                    subject: row.try_get(1).map_err(db_error)?,
                    account: account.clone(),
                    linked_at: Timestamp::from_unix_millis(row.try_get(2).map_err(db_error)?),
                })
            })
            .collect()
    }

    async fn unlink_identity(
        &self,
        account: &UserId,
        issuer: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM {} WHERE issuer = $1 AND subject = $2 AND account_id = $3",
            self.identities
        );
        Ok(self
            .store
            .execute(&sql, &[&issuer, &subject, &account.as_str()])
            .await?
            == 1)
    }

    async fn create_invite(
        &self,
        hash: &InviteHash,
        expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (hash, created_at, expires_at) VALUES ($1, $2, $3)",
            self.invites
        );
        self.store
            .execute(
                &sql,
                &[
                    &&hash.as_bytes()[..],
                    &created_at.as_unix_millis(),
                    &expires_at.as_unix_millis(),
                ],
            )
            .await
            .map(drop)
    }

    async fn redeem_invite_and_create(
        &self,
        hash: &InviteHash,
        a: &Account,
        now: Timestamp,
    ) -> Result<(), AccountError> {
        // One transaction: the invitation is marked used first, which locks its row, so a
        // concurrent redemption of the same code waits for this one and then (under READ
        // COMMITTED, re-checking `used_at IS NULL` on the committed row) finds nothing to
        // update. A taken username rolls the mark back, leaving the invitation usable.
        let redeem = format!(
            "UPDATE {} SET used_at = $2, used_by = $3
             WHERE hash = $1 AND used_at IS NULL AND expires_at > $2",
            self.invites
        );
        let now = now.as_unix_millis();
        self.claim_and_create(
            &redeem,
            &[&&hash.as_bytes()[..], &now, &a.id.as_str()],
            AccountError::InvalidInvite,
            a,
        )
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.store.query("SELECT 1", &[]).await.map(drop)
    }
}
