//! [`SqliteAccounts`]: the [`AccountStore`] on SQLite.

use async_trait::async_trait;
use cloakroom_core::accounts::{
    Account, AccountError, AccountStore, GroupName, InviteHash, LinkedIdentity, PasswordHash,
    Username,
};
use cloakroom_core::mail::EmailAddress;
use cloakroom_core::store::CorruptColumn;
use cloakroom_core::{StoreError, Timestamp, UserId};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::Database;
use crate::store::{corrupt, store_error};

const COLUMNS: &str = "id, username, password_hash, disabled, created_at, password_changed_at, email, display_name, email_verified";

/// Accounts in a SQLite [`Database`] (usually the same one that holds the sessions).
#[derive(Debug, Clone)]
pub struct SqliteAccounts {
    db: Database,
}

impl SqliteAccounts {
    /// An account store over an open database.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub(crate) fn db(&self) -> &Database {
        &self.db
    }
}

fn read_row(row: &Row<'_>) -> rusqlite::Result<Result<Account, String>> {
    let id: String = row.get(0)?;
    let username: String = row.get(1)?;
    let hash: String = row.get(2)?;
    let disabled: bool = row.get(3)?;
    let created_at = Timestamp::from_unix_millis(row.get(4)?);
    let password_changed_at = Timestamp::from_unix_millis(row.get(5)?);
    let email: Option<String> = row.get(6)?;
    let display_name: Option<String> = row.get(7)?;
    let email_verified: bool = row.get(8)?;
    Ok((|| {
        Ok(Account {
            id: UserId::new(id).map_err(|e| format!("id: {e}"))?,
            username: Username::parse(&username).map_err(|e| format!("username: {e}"))?,
            password_hash: PasswordHash::new(hash),
            disabled,
            created_at,
            password_changed_at,
            email: email
                .map(|e| EmailAddress::parse(&e))
                .transpose()
                .map_err(|e| format!("email: {e}"))?,
            email_verified,
            display_name,
        })
    })())
}

/// A stored group name, checked again on the way out like every other column.
fn group_name(name: &str) -> Result<GroupName, StoreError> {
    GroupName::parse(name).map_err(|e| corrupt(Box::new(CorruptColumn::new("group_name", e))))
}

/// The insert [`AccountStore::create`] and [`AccountStore::redeem_invite_and_create`] share.
/// The unique index on `username_key` decides races between sign-ups; returns whether the
/// row went in.
fn insert(conn: &rusqlite::Connection, a: &Account) -> rusqlite::Result<bool> {
    conn.prepare_cached(&format!(
        "INSERT INTO accounts ({COLUMNS}, username_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (username_key) DO NOTHING"
    ))?
    .execute(params![
        a.id.as_str(),
        a.username.as_str(),
        a.password_hash.expose(),
        a.disabled,
        a.created_at.as_unix_millis(),
        a.password_changed_at.as_unix_millis(),
        a.email.as_ref().map(EmailAddress::as_str),
        a.display_name,
        a.email.is_some() && a.email_verified,
        a.username.key(),
    ])
    .map(|n| n == 1)
}

/// The insert [`AccountStore::link_identity`] and [`AccountStore::create_with_identity`]
/// share; the primary key decides races. Returns whether the row went in.
fn insert_identity(conn: &rusqlite::Connection, i: &LinkedIdentity) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "INSERT INTO linked_identities (issuer, subject, account_id, linked_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (issuer, subject) DO NOTHING",
    )?
    .execute(params![
        i.issuer,
        i.subject,
        i.account.as_str(),
        i.linked_at.as_unix_millis()
    ])
    .map(|n| n == 1)
}

/// How a redemption ended, inside the write transaction.
enum Redeemed {
    Created,
    InvalidInvite,
    UsernameTaken,
}

fn decoded(r: Result<Account, String>) -> Result<Account, StoreError> {
    r.map_err(|e| corrupt(e.into()))
}

#[async_trait]
impl AccountStore for SqliteAccounts {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, a: &Account) -> Result<(), AccountError> {
        let a = a.clone();
        let inserted = self
            .db
            .write(move |conn| insert(conn, &a))
            .await
            .map_err(store_error)?;
        if inserted {
            Ok(())
        } else {
            Err(AccountError::UsernameTaken)
        }
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        let key = username.key();
        let row = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM accounts WHERE username_key = ?1"
                ))?
                .query_row([key], read_row)
                .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(decoded).transpose()
    }

    async fn by_id(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        let id = id.as_str().to_owned();
        let row = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1"))?
                    .query_row([id], read_row)
                    .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(decoded).transpose()
    }

    async fn set_password(
        &self,
        id: &UserId,
        hash: &PasswordHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, hash) = (id.as_str().to_owned(), hash.expose().to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE accounts SET password_hash = ?2, password_changed_at = ?3 WHERE id = ?1",
                )?
                .execute(params![id, hash, at.as_unix_millis()])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn upgrade_password(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        let (id, expected, new) = (
            id.as_str().to_owned(),
            expected.expose().to_owned(),
            new.expose().to_owned(),
        );
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE accounts SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2",
                )?
                .execute(params![id, expected, new])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn set_email(
        &self,
        id: &UserId,
        email: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        let (id, email) = (id.as_str().to_owned(), email.map(|e| e.as_str().to_owned()));
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE accounts SET email = ?2, email_verified = 0 WHERE id = ?1",
                )?
                .execute(params![id, email])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn mark_email_verified(
        &self,
        id: &UserId,
        email: &EmailAddress,
    ) -> Result<bool, StoreError> {
        let (id, email) = (id.as_str().to_owned(), email.as_str().to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE accounts SET email_verified = 1 WHERE id = ?1 AND email = ?2",
                )?
                .execute(params![id, email])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn by_email(&self, email: &EmailAddress) -> Result<Vec<Account>, StoreError> {
        let email = email.as_str().to_owned();
        let rows = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM accounts WHERE email = ?1 ORDER BY username_key"
                ))?
                .query_map([email], read_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.into_iter().map(decoded).collect()
    }

    async fn set_disabled(&self, id: &UserId, disabled: bool) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .write(move |conn| {
                conn.prepare_cached("UPDATE accounts SET disabled = ?2 WHERE id = ?1")?
                    .execute(params![id, disabled])
                    .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn list(&self) -> Result<Vec<Account>, StoreError> {
        let rows = self
            .db
            .read(|conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM accounts ORDER BY username_key"
                ))?
                .query_map([], read_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.into_iter().map(decoded).collect()
    }

    async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.db
            .write(move |conn| {
                // One write transaction: the invitation's mark and the account go together.
                conn.prepare_cached("UPDATE invites SET used_by = NULL WHERE used_by = ?1")?
                    .execute([&id])?;
                conn.prepare_cached("DELETE FROM linked_identities WHERE account_id = ?1")?
                    .execute([&id])?;
                conn.prepare_cached("DELETE FROM account_groups WHERE account_id = ?1")?
                    .execute([&id])?;
                crate::mfa::delete_factors(conn, &id)?;
                conn.prepare_cached("DELETE FROM accounts WHERE id = ?1")?
                    .execute([&id])
                    .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn groups(&self, account: &UserId) -> Result<Vec<GroupName>, StoreError> {
        let id = account.as_str().to_owned();
        let names = self
            .db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT group_name FROM account_groups WHERE account_id = ?1 \
                     ORDER BY group_name",
                )?
                .query_map([id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        names.iter().map(|n| group_name(n)).collect()
    }

    async fn update_groups(
        &self,
        account: &UserId,
        add: &[GroupName],
        remove: &[GroupName],
    ) -> Result<bool, StoreError> {
        let id = account.as_str().to_owned();
        let add: Vec<String> = add.iter().map(|g| g.as_str().to_owned()).collect();
        let remove: Vec<String> = remove.iter().map(|g| g.as_str().to_owned()).collect();
        self.db
            .write(move |conn| {
                // One write transaction (the writer's), with the account's existence checked
                // inside it: a concurrent deletion cannot leave memberships behind.
                let exists = conn
                    .prepare_cached("SELECT 1 FROM accounts WHERE id = ?1")?
                    .exists([&id])?;
                if !exists {
                    return Ok(false);
                }
                for g in &add {
                    conn.prepare_cached(
                        "INSERT INTO account_groups (account_id, group_name) VALUES (?1, ?2) \
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![id, g])?;
                }
                for g in &remove {
                    conn.prepare_cached(
                        "DELETE FROM account_groups WHERE account_id = ?1 AND group_name = ?2",
                    )?
                    .execute(params![id, g])?;
                }
                Ok(true)
            })
            .await
            .map_err(store_error)
    }

    async fn group_sizes(&self) -> Result<Vec<(GroupName, u64)>, StoreError> {
        let rows = self
            .db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT group_name, count(*) FROM account_groups \
                     GROUP BY group_name ORDER BY group_name",
                )?
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .map_err(store_error)?;
        rows.iter()
            .map(|(n, c)| Ok((group_name(n)?, u64::try_from(*c).unwrap_or(0))))
            .collect()
    }

    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), AccountError> {
        let identity = identity.clone();
        let linked = self
            .db
            .write(move |conn| insert_identity(conn, &identity))
            .await
            .map_err(store_error)?;
        if linked {
            Ok(())
        } else {
            Err(AccountError::IdentityTaken)
        }
    }

    async fn create_with_identity(
        &self,
        account: &Account,
        identity: &LinkedIdentity,
    ) -> Result<(), AccountError> {
        let (a, identity) = (account.clone(), identity.clone());
        self.db
            .write(move |conn| {
                // One write transaction (holding the database's write lock): the identity is
                // checked before the insert, so a refusal has nothing to undo.
                let taken = conn
                    .prepare_cached(
                        "SELECT 1 FROM linked_identities WHERE issuer = ?1 AND subject = ?2",
                    )?
                    .exists(params![identity.issuer, identity.subject])?;
                if taken {
                    return Ok(Err(AccountError::IdentityTaken));
                }
                if !insert(conn, &a)? {
                    return Ok(Err(AccountError::UsernameTaken));
                }
                if insert_identity(conn, &identity)? {
                    Ok(Ok(()))
                } else {
                    // Cannot happen under the write lock; failing rolls the insert back.
                    Err(rusqlite::Error::StatementChangedRows(0))
                }
            })
            .await
            .map_err(store_error)?
    }

    async fn by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Account>, StoreError> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        let row = self
            .db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM accounts WHERE id = (SELECT account_id FROM \
                     linked_identities WHERE issuer = ?1 AND subject = ?2)"
                ))?
                .query_row([issuer, subject], read_row)
                .optional()
            })
            .await
            .map_err(store_error)?;
        row.map(decoded).transpose()
    }

    async fn identities(&self, account: &UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        let id = account.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT issuer, subject, linked_at FROM linked_identities \
                     WHERE account_id = ?1 ORDER BY linked_at, issuer, subject",
                )?
                .query_map([id.as_str()], |row| {
                    Ok(LinkedIdentity {
                        issuer: row.get(0)?,
                        subject: row.get(1)?,
                        account: id.clone(),
                        linked_at: Timestamp::from_unix_millis(row.get(2)?),
                    })
                })?
                .collect()
            })
            .await
            .map_err(store_error)
    }

    async fn unlink_identity(
        &self,
        account: &UserId,
        issuer: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        let (id, issuer, subject) = (
            account.as_str().to_owned(),
            issuer.to_owned(),
            subject.to_owned(),
        );
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM linked_identities \
                     WHERE issuer = ?1 AND subject = ?2 AND account_id = ?3",
                )?
                .execute([issuer, subject, id])
                .map(|n| n == 1)
            })
            .await
            .map_err(store_error)
    }

    async fn create_invite(
        &self,
        hash: &InviteHash,
        expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Result<(), StoreError> {
        let hash = *hash.as_bytes();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO invites (hash, created_at, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![
                    &hash[..],
                    created_at.as_unix_millis(),
                    expires_at.as_unix_millis()
                ])
                .map(drop)
            })
            .await
            .map_err(store_error)
    }

    async fn redeem_invite_and_create(
        &self,
        hash: &InviteHash,
        a: &Account,
        now: Timestamp,
    ) -> Result<(), AccountError> {
        let (hash, a) = (*hash.as_bytes(), a.clone());
        let outcome = self
            .db
            .write(move |conn| {
                // Every write runs on the one writer connection inside `BEGIN IMMEDIATE`, which
                // holds the database's write lock (against other processes too, such as the
                // admin CLI) until commit. So nothing can use the invitation between this check
                // and the update below, and checking before inserting lets a taken username
                // leave the invitation untouched without undoing anything.
                let usable = conn
                    .prepare_cached(
                        "SELECT 1 FROM invites WHERE hash = ?1 AND used_at IS NULL AND expires_at > ?2",
                    )?
                    .exists(params![&hash[..], now.as_unix_millis()])?;
                if !usable {
                    return Ok(Redeemed::InvalidInvite);
                }
                if !insert(conn, &a)? {
                    return Ok(Redeemed::UsernameTaken);
                }
                let used = conn
                    .prepare_cached(
                        "UPDATE invites SET used_at = ?2, used_by = ?3 WHERE hash = ?1 AND used_at IS NULL",
                    )?
                    .execute(params![&hash[..], now.as_unix_millis(), a.id.as_str()])?;
                if used == 1 {
                    Ok(Redeemed::Created)
                } else {
                    // Cannot happen under the write lock; failing rolls the insert back with it.
                    Err(rusqlite::Error::StatementChangedRows(used))
                }
            })
            .await
            .map_err(store_error)?;
        match outcome {
            Redeemed::Created => Ok(()),
            Redeemed::InvalidInvite => Err(AccountError::InvalidInvite),
            Redeemed::UsernameTaken => Err(AccountError::UsernameTaken),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
            .map_err(store_error)
    }
}
