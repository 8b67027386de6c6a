//! The near-cache: validated sessions kept in this process, so the hot path touches no disk
//! and no network.
//!
//! DESIGN.md allows a cache in front of a shared store only on three conditions, and this one
//! is built around them:
//!
//! 1. **A revocation in this process removes the entry before the revoking call returns.**
//!    Every revoking path of the [`SessionManager`](crate::SessionManager) (revoke, revoke all,
//!    rotate, login over an old cookie, data updates) invalidates the cache after the store
//!    call and before returning. An entry being loaded concurrently cannot slip back in: loads
//!    are only cached if no invalidation happened while they were in flight (an epoch counter
//!    is read before the load and checked after the insert).
//! 2. **A revocation in another instance reaches this one within a bounded time.** The store
//!    keeps a change generation ([`SessionStore::change_generation`]) that moves on every
//!    delete, rotation and save. Before using the cache, a validation makes sure the generation
//!    was read no longer than the poll interval ago — reading it itself if needed — and any
//!    change clears the cache. So a session revoked elsewhere is refused here at most one poll
//!    interval after the revocation returned (plus, on Redis, the moment between a delete and
//!    its generation bump). If the generation cannot be read, validation fails closed.
//! 3. **An entry never outlives the session's expiry.** The manager checks idle and absolute
//!    expiry on every use; a cached record that looks expired is dropped and the store asked,
//!    so a session kept alive on another instance is not refused here by a stale copy.
//!
//! The cache is off unless enabled with
//! [`SessionManager::with_near_cache`](crate::SessionManager::with_near_cache): with it, "the
//! very next request fails on every instance" becomes "every request after the poll interval",
//! a trade each deployment should make knowingly.

use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::session::{Session, UserId};
use crate::store::memory::IdHasher;
use crate::token::SessionId;

/// Near-cache settings.
///
/// ```
/// use std::time::Duration;
/// use cloakroom_core::NearCache;
///
/// let cache = NearCache::new(Duration::from_millis(100)).with_max_entries(50_000);
/// assert_eq!(cache.poll_interval, Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCache {
    /// The longest a revocation made elsewhere can go unnoticed here.
    pub poll_interval: Duration,
    /// Most sessions kept; past it the cache starts over. Default: 100,000.
    pub max_entries: usize,
}

impl NearCache {
    /// A cache that notices changes made elsewhere within `poll_interval`.
    pub fn new(poll_interval: Duration) -> Self {
        Self {
            poll_interval,
            max_entries: 100_000,
        }
    }

    /// Sets the size bound.
    #[must_use]
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }
}

pub(crate) struct Cache {
    config: NearCache,
    entries: DashMap<SessionId, Arc<Session>, BuildHasherDefault<IdHasher>>,
    /// Moves on every invalidation; a load that saw another value must not be cached.
    epoch: AtomicU64,
    /// The store generation the entries reflect (`u64::MAX` before the first read).
    generation: AtomicU64,
    /// Nanoseconds after `base` at which the generation was last read (the read's start).
    polled_at: AtomicU64,
    base: Instant,
    /// Set if the store cannot report a generation: the cache then stays unused.
    unsupported: AtomicBool,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("config", &self.config)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// What a poll is due to do: read the generation, starting now.
#[derive(Clone, Copy)]
pub(crate) struct PollTicket(u64);

impl Cache {
    pub(crate) fn new(config: NearCache) -> Self {
        Self {
            config,
            entries: DashMap::default(),
            epoch: AtomicU64::new(0),
            generation: AtomicU64::new(u64::MAX),
            polled_at: AtomicU64::new(0),
            base: Instant::now(),
            unsupported: AtomicBool::new(false),
        }
    }

    fn elapsed_nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(crate) fn usable(&self) -> bool {
        !self.unsupported.load(Ordering::Relaxed)
    }

    /// `Some` if the generation must be read before the cache may be used.
    pub(crate) fn poll_due(&self) -> Option<PollTicket> {
        let now = self.elapsed_nanos();
        let interval = u64::try_from(self.config.poll_interval.as_nanos()).unwrap_or(u64::MAX);
        let never = self.generation.load(Ordering::Acquire) == u64::MAX;
        (never || now.saturating_sub(self.polled_at.load(Ordering::Acquire)) >= interval)
            .then_some(PollTicket(now))
    }

    /// Records a generation read that started at `ticket`.
    pub(crate) fn polled(&self, ticket: PollTicket, generation: Option<u64>) {
        let Some(generation) = generation else {
            self.unsupported.store(true, Ordering::Relaxed);
            self.clear();
            return;
        };
        if self.generation.swap(generation, Ordering::AcqRel) != generation {
            self.clear();
        }
        self.polled_at.fetch_max(ticket.0, Ordering::AcqRel);
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.entries.get(id).map(|e| e.value().clone())
    }

    /// Caches a session loaded while the epoch was `epoch`, unless something was invalidated
    /// meanwhile.
    pub(crate) fn insert(&self, epoch: u64, session: Session) {
        if self.entries.len() >= self.config.max_entries {
            self.clear();
        }
        let id = session.id;
        self.entries.insert(id, Arc::new(session));
        // An invalidation bumps the epoch *before* removing entries: if it came after our
        // check, its removal comes after our insert; if before, we see it here.
        if self.epoch() != epoch {
            self.entries.remove(&id);
        }
    }

    /// Replaces an entry still present (after a touch).
    pub(crate) fn refresh(&self, session: Session) {
        if let Some(mut e) = self.entries.get_mut(&session.id) {
            *e = Arc::new(session);
        }
    }

    pub(crate) fn invalidate(&self, id: &SessionId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(id);
    }

    pub(crate) fn invalidate_user(&self, user: &UserId, except: Option<&SessionId>) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries
            .retain(|id, s| &s.user_id != user || Some(id) == except);
    }

    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}
