//! Who a session's user is, read on every check — not frozen into the session.
//!
//! A session records only *that* a user signed in. What apps are told about them — username,
//! display name, verified address, groups — is read from the account store per forward-auth
//! check and per admin decision, so that adding someone to a group, removing them from one,
//! renaming them or verifying a new address takes effect on their next request, on every
//! session they have (issue 15; before it, other sessions kept the identity they signed in
//! with).
//!
//! Reading the account store per check would undo the session cache's work, so identities
//! are cached under the same discipline, and only where it can be exact: when the accounts
//! are in SQLite, this server is their only writer (it holds the data directory's lock), every
//! write the server makes goes through [`InvalidatingAccounts`], which drops the user's entry
//! after the write returns, and the admin commands announce their account writes on the admin
//! socket (`u <user id>`, see [`crate::admin_socket`]) before reporting success. An epoch moved
//! by every invalidation keeps a load that raced one out of the cache. With accounts in
//! PostgreSQL, written by every instance, each check reads the account (two indexed queries);
//! a PostgreSQL feed for accounts belongs with the scale-out work.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use cloakroom_core::accounts::{
    Account, AccountError, AccountStore, GroupName, InviteHash, LinkedIdentity, PasswordHash,
    Username,
};
use cloakroom_core::mail::EmailAddress;
use cloakroom_core::{StoreError, Timestamp, UserId};

/// Most identities cached (a few hundred bytes each).
const MAX_CACHED: usize = 100_000;

/// Who the user is, as apps are told: headers, the service JWT, the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// The username.
    pub(crate) username: String,
    /// The display name, if known.
    pub(crate) name: Option<String>,
    /// The email address, only once verified.
    pub(crate) email: Option<String>,
    /// The groups, ordered by name.
    pub(crate) groups: Vec<GroupName>,
}

impl Identity {
    fn of(account: &Account, groups: Vec<GroupName>) -> Self {
        Self {
            username: account.username.as_str().to_owned(),
            name: account.display_name.clone(),
            email: account.verified_email().map(|e| e.as_str().to_owned()),
            groups,
        }
    }

    /// The groups as one comma-separated list (`Remote-Groups`).
    pub(crate) fn groups_joined(&self) -> String {
        let names: Vec<&str> = self.groups.iter().map(GroupName::as_str).collect();
        names.join(",")
    }
}

/// The cache, when the server is the accounts' only writer.
#[derive(Debug)]
pub(crate) struct IdentityCache {
    entries: quick_cache::sync::Cache<UserId, Arc<Identity>>,
    epoch: AtomicU64,
}

impl IdentityCache {
    fn new() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(MAX_CACHED),
            epoch: AtomicU64::new(0),
        }
    }

    /// Drops `user`'s entry: after every write to their account.
    pub(crate) fn invalidate(&self, user: &UserId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.remove(user);
    }

    /// Drops every entry (an announcement that could not be read).
    pub(crate) fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }
}

/// Identities, read from the account store through the cache when there is one.
#[derive(Debug, Clone)]
pub(crate) struct Identities {
    store: Arc<dyn AccountStore>,
    cache: Option<Arc<IdentityCache>>,
}

impl Identities {
    /// Identities from `store`, cached when `exact` (this server is the store's only writer).
    /// Returns the store to use for writes: with a cache, one that invalidates it.
    pub(crate) fn new(store: Arc<dyn AccountStore>, exact: bool) -> (Self, Arc<dyn AccountStore>) {
        if !exact {
            return (
                Self {
                    store: store.clone(),
                    cache: None,
                },
                store,
            );
        }
        let cache = Arc::new(IdentityCache::new());
        let writes = NoticedAccounts::wrap(store, cache.clone());
        (
            Self {
                store: writes.clone(),
                cache: Some(cache),
            },
            writes,
        )
    }

    /// The cache, for the admin socket's announcements.
    pub(crate) fn cache(&self) -> Option<&Arc<IdentityCache>> {
        self.cache.as_ref()
    }

    /// Who `user` is now; `None` when the account is gone or disabled — its sessions are then
    /// worth nothing, whatever the session store still holds.
    pub(crate) async fn of(&self, user: &UserId) -> Result<Option<Arc<Identity>>, StoreError> {
        let Some(cache) = &self.cache else {
            return self.load(user).await;
        };
        if let Some(hit) = cache.entries.get(user) {
            return Ok(Some(hit));
        }
        let epoch = cache.epoch.load(Ordering::SeqCst);
        let loaded = self.load(user).await?;
        // A write that landed while we read may have been invalidated already: keep the
        // answer for this request only.
        if let Some(identity) = &loaded
            && cache.epoch.load(Ordering::SeqCst) == epoch
        {
            cache.entries.insert(user.clone(), identity.clone());
            // An invalidation between the check and the insert moved the epoch before its
            // removal, which may have run before the insert: look again, and undo it. (One
            // after this look removes the entry itself.)
            if cache.epoch.load(Ordering::SeqCst) != epoch {
                cache.entries.remove(user);
            }
        }
        Ok(loaded)
    }

    async fn load(&self, user: &UserId) -> Result<Option<Arc<Identity>>, StoreError> {
        // Both at once: uncached (accounts in PostgreSQL), this is on every check's path.
        let (account, groups) = tokio::try_join!(self.store.by_id(user), self.store.groups(user))?;
        Ok(account
            .filter(|a| !a.disabled)
            .map(|a| Arc::new(Identity::of(&a, groups))))
    }
}

/// Told of every account write: before it (may refuse it) and after it, whatever its
/// outcome — a failed write may still have landed. After, never only before: a concurrent
/// read could otherwise cache the old account again.
#[async_trait]
pub(crate) trait WriteNotice: Send + Sync + std::fmt::Debug + 'static {
    /// Before a write; an error refuses it.
    async fn before(&self) -> Result<(), StoreError>;
    /// After a write to `user`'s account; an error is the write's.
    async fn after(&self, user: &UserId) -> Result<(), StoreError>;
}

#[async_trait]
impl WriteNotice for IdentityCache {
    async fn before(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn after(&self, user: &UserId) -> Result<(), StoreError> {
        self.invalidate(user);
        Ok(())
    }
}

/// An account store whose writes are told to a [`WriteNotice`]: the server's drop its
/// cached identities; an admin command's are announced to the running server.
#[derive(Debug)]
pub(crate) struct NoticedAccounts {
    inner: Arc<dyn AccountStore>,
    notice: Arc<dyn WriteNotice>,
}

impl NoticedAccounts {
    pub(crate) fn wrap(
        inner: Arc<dyn AccountStore>,
        notice: Arc<dyn WriteNotice>,
    ) -> Arc<dyn AccountStore> {
        Arc::new(Self { inner, notice })
    }

    async fn write<T, E: From<StoreError>>(
        &self,
        user: &UserId,
        write: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        self.notice.before().await?;
        let result = write.await;
        self.notice.after(user).await?;
        result
    }
}

#[async_trait]
impl AccountStore for NoticedAccounts {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create(&self, account: &Account) -> Result<(), AccountError> {
        self.inner.create(account).await
    }

    async fn by_username(&self, username: &Username) -> Result<Option<Account>, StoreError> {
        self.inner.by_username(username).await
    }

    async fn by_id(&self, id: &UserId) -> Result<Option<Account>, StoreError> {
        self.inner.by_id(id).await
    }

    async fn set_password(
        &self,
        id: &UserId,
        hash: &PasswordHash,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.write(id, self.inner.set_password(id, hash, at)).await
    }

    async fn upgrade_password(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError> {
        self.write(id, self.inner.upgrade_password(id, expected, new))
            .await
    }

    async fn set_email(
        &self,
        id: &UserId,
        email: Option<&EmailAddress>,
    ) -> Result<bool, StoreError> {
        self.write(id, self.inner.set_email(id, email)).await
    }

    async fn mark_email_verified(
        &self,
        id: &UserId,
        email: &EmailAddress,
    ) -> Result<bool, StoreError> {
        self.write(id, self.inner.mark_email_verified(id, email))
            .await
    }

    async fn by_email(&self, email: &EmailAddress) -> Result<Vec<Account>, StoreError> {
        self.inner.by_email(email).await
    }

    async fn set_disabled(&self, id: &UserId, disabled: bool) -> Result<bool, StoreError> {
        self.write(id, self.inner.set_disabled(id, disabled)).await
    }

    async fn list(&self) -> Result<Vec<Account>, StoreError> {
        self.inner.list().await
    }

    async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        self.write(id, self.inner.delete(id)).await
    }

    async fn groups(&self, account: &UserId) -> Result<Vec<GroupName>, StoreError> {
        self.inner.groups(account).await
    }

    async fn update_groups(
        &self,
        account: &UserId,
        add: &[GroupName],
        remove: &[GroupName],
    ) -> Result<bool, StoreError> {
        self.write(account, self.inner.update_groups(account, add, remove))
            .await
    }

    async fn group_sizes(&self) -> Result<Vec<(GroupName, u64)>, StoreError> {
        self.inner.group_sizes().await
    }

    async fn create_invite(
        &self,
        hash: &InviteHash,
        expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.create_invite(hash, expires_at, created_at).await
    }

    async fn redeem_invite_and_create(
        &self,
        hash: &InviteHash,
        account: &Account,
        now: Timestamp,
    ) -> Result<(), AccountError> {
        self.inner
            .redeem_invite_and_create(hash, account, now)
            .await
    }

    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), AccountError> {
        self.inner.link_identity(identity).await
    }

    async fn create_with_identity(
        &self,
        account: &Account,
        identity: &LinkedIdentity,
    ) -> Result<(), AccountError> {
        self.inner.create_with_identity(account, identity).await
    }

    async fn by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Account>, StoreError> {
        self.inner.by_identity(issuer, subject).await
    }

    async fn identities(&self, account: &UserId) -> Result<Vec<LinkedIdentity>, StoreError> {
        self.inner.identities(account).await
    }

    async fn unlink_identity(
        &self,
        account: &UserId,
        issuer: &str,
        subject: &str,
    ) -> Result<bool, StoreError> {
        self.inner.unlink_identity(account, issuer, subject).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests {
    use cloakroom_core::accounts::Username;

    use super::*;

    fn group(name: &str) -> GroupName {
        GroupName::parse(name).unwrap()
    }

    async fn store_with_alice() -> (tempfile::TempDir, Arc<dyn AccountStore>, UserId) {
        let dir = tempfile::tempdir().unwrap();
        let db = cloakroom_sqlite::Database::open(dir.path().join("accounts.db")).unwrap();
        let store: Arc<dyn AccountStore> = Arc::new(cloakroom_sqlite::SqliteAccounts::new(db));
        let at = Timestamp::from_unix_millis(1_700_000_000_000);
        let alice = Account {
            id: UserId::new("u-alice").unwrap(),
            username: Username::parse("alice").unwrap(),
            password_hash: PasswordHash::new("$test$".into()),
            disabled: false,
            created_at: at,
            password_changed_at: at,
            email: None,
            email_verified: false,
            display_name: None,
        };
        store.create(&alice).await.unwrap();
        (dir, store, alice.id)
    }

    async fn groups_of(identities: &Identities, who: &UserId) -> Vec<GroupName> {
        identities.of(who).await.unwrap().unwrap().groups.clone()
    }

    /// The cache answers without the store — a change made behind its back is not seen — and
    /// a write through the store it hands out is seen on the next read.
    #[tokio::test]
    async fn identities_are_cached_and_dropped_by_the_writes_they_hand_out() {
        let (_dir, raw, alice) = store_with_alice().await;
        let (identities, writes) = Identities::new(raw.clone(), true);
        assert!(groups_of(&identities, &alice).await.is_empty());
        raw.update_groups(&alice, &[group("admins")], &[])
            .await
            .unwrap();
        assert!(
            groups_of(&identities, &alice).await.is_empty(),
            "served from the cache"
        );
        writes
            .update_groups(&alice, &[group("wiki")], &[])
            .await
            .unwrap();
        assert_eq!(
            groups_of(&identities, &alice).await,
            vec![group("admins"), group("wiki")]
        );
        writes.set_disabled(&alice, true).await.unwrap();
        assert!(identities.of(&alice).await.unwrap().is_none(), "disabled");
    }

    /// Without a cache every read asks the store.
    #[tokio::test]
    async fn without_a_cache_every_read_is_fresh() {
        let (_dir, raw, alice) = store_with_alice().await;
        let (identities, _) = Identities::new(raw.clone(), false);
        assert!(groups_of(&identities, &alice).await.is_empty());
        raw.update_groups(&alice, &[group("admins")], &[])
            .await
            .unwrap();
        assert_eq!(groups_of(&identities, &alice).await, vec![group("admins")]);
        raw.delete(&alice).await.unwrap();
        assert!(identities.of(&alice).await.unwrap().is_none(), "deleted");
    }
}
