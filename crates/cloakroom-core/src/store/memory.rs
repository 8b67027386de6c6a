//! [`MemoryStore`]: sessions in this process's memory.

use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{DeleteScope, SaveOutcome, SessionStore, StoreError};
use crate::clock::Timestamp;
use crate::link::LinkId;
use crate::session::{Session, UserId};
use crate::token::{SessionId, SessionIdHasher};

const STORE: &str = "memory";

/// Sessions in a sharded concurrent map, with a per-user index. Clones share the same data.
///
/// For one process: tests, development, and single-instance deployments that accept losing
/// every session on restart. There is no background task — expired records are treated as
/// absent by the manager and removed by [`purge_expired`](SessionStore::purge_expired).
///
/// Lock order, which keeps it deadlock-free: a user's index entry, then a session shard —
/// never the other way round. Holding the index entry makes `create` and `delete_for_user`
/// for one user mutually exclusive, which closes the create-vs-revoke-all race.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Shared records: a load hands out the `Arc`, a write replaces it (copy-on-write).
    sessions: DashMap<SessionId, Arc<Session>, BuildHasherDefault<SessionIdHasher>>,
    by_user: DashMap<UserId, HashSet<SessionId, BuildHasherDefault<SessionIdHasher>>>,
    /// Consumed single-use links and when each expires.
    links: DashMap<LinkId, Timestamp>,
    /// Revocation epochs of users who were ever revoked (never forgotten: one small entry
    /// per such user, for as long as the process lives).
    epochs: DashMap<UserId, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records the store holds, expired ones included.
    pub fn len(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Whether the store holds no records.
    pub fn is_empty(&self) -> bool {
        self.inner.sessions.is_empty()
    }

    /// How many users have an index entry (for tests of index cleanup).
    pub fn indexed_users(&self) -> usize {
        self.inner.by_user.len()
    }

    /// Everything the store holds, serialized as JSON (for the conformance suite's check that
    /// no raw token is ever stored).
    pub fn dump(&self) -> Vec<u8> {
        let sessions: Vec<Session> = self
            .inner
            .sessions
            .iter()
            .map(|r| Session::clone(r.value()))
            .collect();
        let index: Vec<(UserId, Vec<SessionId>)> = self
            .inner
            .by_user
            .iter()
            .map(|r| (r.key().clone(), r.value().iter().copied().collect()))
            .collect();
        let mut out = serde_json::to_vec(&sessions).unwrap_or_default();
        for (user, ids) in index {
            out.extend_from_slice(user.as_str().as_bytes());
            for id in ids {
                out.extend_from_slice(id.as_bytes());
            }
        }
        for link in &self.inner.links {
            out.extend_from_slice(link.key().as_bytes());
            out.extend_from_slice(&link.value().as_unix_millis().to_be_bytes());
        }
        for epoch in &self.inner.epochs {
            out.extend_from_slice(epoch.key().as_str().as_bytes());
            out.extend_from_slice(&epoch.value().to_be_bytes());
        }
        out
    }

    fn unindex(&self, user: &UserId, id: &SessionId) {
        if let Some(mut ids) = self.inner.by_user.get_mut(user) {
            ids.remove(id);
        }
        self.inner.by_user.remove_if(user, |_, ids| ids.is_empty());
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("sessions", &self.inner.sessions.len())
            .field("users", &self.inner.by_user.len())
            .finish()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        let mut ids = self
            .inner
            .by_user
            .entry(session.user_id.clone())
            .or_default();
        match self.inner.sessions.entry(session.id) {
            dashmap::Entry::Occupied(_) => return Err(StoreError::AlreadyExists { store: STORE }),
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::new(session.clone()));
            }
        }
        ids.insert(session.id);
        Ok(())
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        Ok(self.inner.sessions.get(id).map(|r| r.value().clone()))
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let Some(mut stored) = self.inner.sessions.get_mut(id) else {
            return Ok(false);
        };
        let s = Arc::make_mut(&mut stored);
        s.last_seen_at = s.last_seen_at.max(last_seen_at);
        s.idle_expires_at = s
            .idle_expires_at
            .max(idle_expires_at.min(s.absolute_expires_at));
        Ok(true)
    }

    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError> {
        let Some(mut stored) = self.inner.sessions.get_mut(&session.id) else {
            return Ok(SaveOutcome::NotFound);
        };
        if stored.version != session.version {
            return Ok(SaveOutcome::VersionConflict);
        }
        let (user_id, handle) = (stored.user_id.clone(), stored.handle.clone());
        *stored = Arc::new(Session {
            user_id,
            handle,
            version: session.version + 1,
            ..session.clone()
        });
        Ok(SaveOutcome::Saved)
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let Some((_, removed)) = self.inner.sessions.remove(id) else {
            return Ok(false);
        };
        self.unindex(&removed.user_id, id);
        Ok(true)
    }

    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        // Under the new user's index entry, so a revoke-all for that user sees either neither
        // or the new session.
        let mut ids = self.inner.by_user.entry(new.user_id.clone()).or_default();
        let removed = self.inner.sessions.remove(old);
        if removed
            .as_ref()
            .is_some_and(|(_, s)| s.user_id == new.user_id)
        {
            ids.remove(old);
        }
        match self.inner.sessions.entry(new.id) {
            dashmap::Entry::Occupied(_) => return Err(StoreError::AlreadyExists { store: STORE }),
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::new(new.clone()));
            }
        }
        ids.insert(new.id);
        drop(ids);
        if let Some((_, s)) = removed.filter(|(_, s)| s.user_id != new.user_id) {
            self.unindex(&s.user_id, old);
        }
        Ok(())
    }

    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let Some(ids) = self.inner.by_user.get(user) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .iter()
            .filter_map(|id| self.inner.sessions.get(id))
            .filter(|s| s.is_live(now))
            .map(|s| Session::clone(s.value()))
            .collect())
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        // First, so that a link checked after this returns sees the new epoch.
        *self.inner.epochs.entry(user.clone()).or_default() += 1;
        let Some(mut ids) = self.inner.by_user.get_mut(user) else {
            return Ok(0);
        };
        let keep = match scope {
            DeleteScope::All => None,
            DeleteScope::AllExcept(id) => Some(*id),
        };
        let mut removed = 0;
        ids.retain(|id| {
            if Some(*id) == keep {
                return true;
            }
            if self.inner.sessions.remove(id).is_some() {
                removed += 1;
            }
            false
        });
        drop(ids);
        self.inner.by_user.remove_if(user, |_, ids| ids.is_empty());
        Ok(removed)
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Collected first: deleting takes the index lock, which must never be taken while a
        // session shard is held (see the lock order above).
        let expired: Vec<SessionId> = self
            .inner
            .sessions
            .iter()
            .filter(|s| !s.is_live(now))
            .map(|s| *s.key())
            .collect();
        let mut removed = 0;
        for id in expired {
            // Re-checked under the shard lock: the session may have been touched meanwhile.
            if let Some((_, s)) = self.inner.sessions.remove_if(&id, |_, s| !s.is_live(now)) {
                self.unindex(&s.user_id, &id);
                removed += 1;
            }
        }
        self.inner.links.retain(|_, expires_at| *expires_at > now);
        Ok(removed)
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        // The shard lock held by `entry` makes check-and-insert one step.
        match self.inner.links.entry(*id) {
            dashmap::Entry::Occupied(_) => Ok(false),
            dashmap::Entry::Vacant(v) => {
                v.insert(expires_at);
                Ok(true)
            }
        }
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.inner.epochs.get(user).map_or(0, |e| *e))
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        Ok(Some(
            self.inner
                .sessions
                .iter()
                .filter(|s| s.is_live(now))
                .count() as u64,
        ))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
