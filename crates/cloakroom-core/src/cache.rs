//! The session cache: hot sessions kept in this process, so the session check touches no disk
//! and no network, without ever serving a session that was revoked.
//!
//! [`CachedStore`] wraps any [`SessionStore`] and is itself one, so everything above it (the
//! manager, the axum layer, the server) is unchanged, and the store conformance suite runs
//! through it unchanged too. A cache may answer `load` only when it knows of every write to the
//! backend; there are two ways to know, and they are the two modes:
//!
//! - **Exact** ([`CachedStore::exact`]): this process is the backend's only writer (SQLite in
//!   the data directory, which the server locks; see DESIGN.md), so every write passes through
//!   this wrapper, which invalidates or updates the entry when the write returns. Nothing can
//!   change behind it: the cache is as exact as the store.
//! - **Push** ([`CachedStore::push`]): several instances write to a shared backend (Redis,
//!   PostgreSQL), which announces every change on an invalidation feed (Redis pub/sub published
//!   by the same script as the write, PostgreSQL `NOTIFY` in the writing transaction). The
//!   backend's listener drives an [`Invalidator`]. While the feed is not connected — before
//!   the first subscription, after any error — the cache is empty and bypassed: exact, not
//!   stale. A revocation made elsewhere reaches this instance one delivery later (measured by
//!   `bench/run --store redis`); its own writes are seen at once.
//!
//! Three rules make both modes safe against the races of a concurrent server:
//!
//! 1. **Invalidate after the write, never before.** Invalidating first would let a concurrent
//!    load re-cache the old record before the write lands.
//! 2. **A load that raced an invalidation is not cached.** Every invalidation moves an epoch on
//!    *before* removing entries; a miss reads the epoch before asking the store and, after
//!    inserting what it read, removes it again if the epoch moved meanwhile. Either the
//!    invalidation's removal comes after the insert, or the insert sees the new epoch. Epochs
//!    are striped by session id (one per [`EPOCH_STRIPES`]th of the ids; a user's or the whole
//!    cache's invalidation moves them all), so that on a busy push feed — every touch on every
//!    instance is a message — a load is discarded only for a change near its own session, not
//!    for any change anywhere.
//! 3. **Bounded in count and bytes.** Each entry weighs its estimated size (see
//!    [`Session::approx_size`]), but at least `max_bytes / max_entries`, so the total weight
//!    bound enforces both limits; eviction is quick_cache's S3-FIFO (a CLOCK-like queue that
//!    resists scans). An evicted session is simply read from the store again.
//!
//! Hits return the shared `Arc<Session>`: no copy of the record on the hot path. A touch
//! replaces the entry with an updated copy (copy-on-write), once per touch interval.

use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use quick_cache::Weighter;
use quick_cache::sync::{Cache, DefaultLifecycle};

use crate::clock::Timestamp;
use crate::counter::Counter;
use crate::link::LinkId;
use crate::session::{Session, UserId};
use crate::store::{DeleteScope, SaveOutcome, SessionStore, StoreError};
use crate::token::{SessionId, SessionIdHasher};

/// Bounds of a [`CachedStore`].
///
/// ```
/// use cloakroom_core::CacheLimits;
///
/// let limits = CacheLimits::default().with_max_entries(50_000).with_max_bytes(32 << 20);
/// assert_eq!(limits.max_entries, 50_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheLimits {
    /// Most sessions kept. Default: 100,000.
    pub max_entries: usize,
    /// Most bytes kept, by [`Session::approx_size`]. Default: 64 MiB.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 << 20,
        }
    }
}

impl CacheLimits {
    /// Sets the count bound (at least 1).
    #[must_use]
    pub fn with_max_entries(mut self, max: usize) -> Self {
        self.max_entries = max.max(1);
        self
    }

    /// Sets the byte bound (at least 1 KiB).
    #[must_use]
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max.max(1024);
        self
    }

    /// The weight of the lightest entry: `max_bytes / max_entries`, so that the byte bound
    /// also bounds the count.
    fn floor(&self) -> u64 {
        (self.max_bytes / u64::try_from(self.max_entries).unwrap_or(u64::MAX)).max(1)
    }
}

/// Counts of cache lookups since start, for metrics. Read with [`CachedStore::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that read the store and may have filled the cache.
    pub misses: u64,
    /// Loads that read the store because the cache was unusable (push feed down).
    pub bypassed: u64,
    /// Sessions held now.
    pub entries: u64,
    /// Their estimated bytes (the weight the byte bound limits).
    pub bytes: u64,
}

#[derive(Clone)]
struct Weigh {
    floor: u64,
}

impl Weighter<SessionId, Arc<Session>> for Weigh {
    fn weight(&self, _id: &SessionId, session: &Arc<Session>) -> u64 {
        u64::try_from(session.approx_size())
            .unwrap_or(u64::MAX)
            .max(self.floor)
    }
}

/// How many epochs the ids are spread over (see rule 2 in the module docs).
pub const EPOCH_STRIPES: usize = 64;

/// The stripe of `id`: its first byte (ids are SHA-256 outputs, so uniform).
fn stripe(id: &SessionId) -> usize {
    usize::from(id.as_bytes()[0]) % EPOCH_STRIPES
}

type Entries = Cache<
    SessionId,
    Arc<Session>,
    Weigh,
    BuildHasherDefault<SessionIdHasher>,
    DefaultLifecycle<SessionId, Arc<Session>>,
>;

struct Shared {
    entries: Entries,
    /// Move on every invalidation, before entries are removed (rule 2); one per stripe of ids.
    epochs: [AtomicU64; EPOCH_STRIPES],
    /// Whether `load` may answer from (and fill) the cache. Always true for exact; for push,
    /// true only while the feed is connected.
    usable: AtomicBool,
    hits: Counter,
    misses: Counter,
    bypassed: Counter,
}

impl Shared {
    fn epoch(&self, id: &SessionId) -> u64 {
        self.epochs[stripe(id)].load(Ordering::Acquire)
    }

    fn bump_all(&self) {
        for e in &self.epochs {
            e.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn usable(&self) -> bool {
        self.usable.load(Ordering::Acquire)
    }

    /// Caches a record read (or written) while the epoch was `epoch`. If an invalidation came
    /// between, no copy of the id stays cached — neither this one nor one already there, which
    /// may predate what the caller saw: the invalidation that moved the epoch may have been for
    /// another id of the stripe, and removed only that one (found by the flaky push-cache expiry
    /// tests: a touch's refused update left the copy from before the touch).
    fn insert(&self, epoch: u64, session: Arc<Session>) {
        let id = session.id;
        if self.usable() && self.epoch(&id) == epoch {
            self.entries.insert(id, session);
            if self.epoch(&id) == epoch {
                return;
            }
        }
        self.entries.remove(&id);
    }

    fn invalidate(&self, id: &SessionId) {
        self.epochs[stripe(id)].fetch_add(1, Ordering::AcqRel);
        self.entries.remove(id);
    }

    fn invalidate_user(&self, user: &UserId) {
        self.bump_all();
        self.entries.retain(|_, s| &s.user_id != user);
    }

    fn clear(&self) {
        self.bump_all();
        self.entries.clear();
    }
}

/// A [`SessionStore`] with a bounded in-process cache of sessions in front of another one. See
/// the [module documentation](self) for the two modes and their guarantees. Clones share the
/// cache.
#[derive(Clone)]
pub struct CachedStore {
    inner: Arc<dyn SessionStore>,
    shared: Arc<Shared>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("usable", &self.shared.usable())
            .field("entries", &self.shared.entries.len())
            .finish()
    }
}

impl CachedStore {
    /// An exact cache over `inner`, for a backend this process alone writes to (memory, or
    /// SQLite under the data directory's lock). Every write must go through the returned store
    /// (or its clones): a write made around it would not be seen until the entry is evicted.
    pub fn exact(inner: Arc<dyn SessionStore>, limits: CacheLimits) -> Self {
        Self::with(inner, limits, true)
    }

    /// A cache over a shared backend, kept exact by the backend's invalidation feed. Returns
    /// the store and the [`Invalidator`] for the backend's listener to drive; until that
    /// reports [`connected`](Invalidator::connected), every load reads the store.
    pub fn push(inner: Arc<dyn SessionStore>, limits: CacheLimits) -> (Self, Invalidator) {
        let store = Self::with(inner, limits, false);
        let invalidator = Invalidator {
            shared: store.shared.clone(),
        };
        (store, invalidator)
    }

    fn with(inner: Arc<dyn SessionStore>, limits: CacheLimits, usable: bool) -> Self {
        let entries = Cache::with(
            limits.max_entries.min(1 << 20),
            limits.max_bytes,
            Weigh {
                floor: limits.floor(),
            },
            BuildHasherDefault::default(),
            DefaultLifecycle::default(),
        );
        Self {
            inner,
            shared: Arc::new(Shared {
                entries,
                epochs: std::array::from_fn(|_| AtomicU64::new(0)),
                usable: AtomicBool::new(usable),
                hits: Counter::default(),
                misses: Counter::default(),
                bypassed: Counter::default(),
            }),
        }
    }

    /// Lookup counts and the cache's size now.
    pub fn stats(&self) -> CacheStats {
        let s = &self.shared;
        CacheStats {
            hits: s.hits.get(),
            misses: s.misses.get(),
            bypassed: s.bypassed.get(),
            entries: u64::try_from(s.entries.len()).unwrap_or(u64::MAX),
            bytes: s.entries.weight(),
        }
    }

    /// Whether loads are answered from the cache now (always, in exact mode; in push mode,
    /// while the feed is connected).
    pub fn is_active(&self) -> bool {
        self.shared.usable()
    }

    /// Forgets what `change` names: for a write made around this store that its writer
    /// announces (the admin CLI, writing to SQLite beside the running server, tells the server
    /// before it reports success).
    pub fn invalidate(&self, change: &Invalidation) {
        match change {
            Invalidation::Session(id) => self.shared.invalidate(id),
            Invalidation::User(user) => self.shared.invalidate_user(user),
        }
    }

    /// Forgets every cached session.
    pub fn invalidate_all(&self) {
        self.shared.clear();
    }
}

#[async_trait]
impl SessionStore for CachedStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create(session).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let s = &self.shared;
        if !s.usable() {
            s.bypassed.add(1);
            return self.inner.load(id).await;
        }
        if let Some(hit) = s.entries.get(id) {
            s.hits.add(1);
            return Ok(Some(hit));
        }
        s.misses.add(1);
        let epoch = s.epoch(id);
        let loaded = self.inner.load(id).await?;
        if let Some(session) = &loaded {
            s.insert(epoch, session.clone());
        }
        Ok(loaded)
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let s = &self.shared;
        let epoch = s.epoch(id);
        let touched = self.inner.touch(id, last_seen_at, idle_expires_at).await;
        match touched {
            Ok(true) => {
                // The store's rule, applied to the copy: clamped, never backwards.
                if let Some(cached) = s.entries.peek(id) {
                    let mut updated = Session::clone(&cached);
                    updated.last_seen_at = updated.last_seen_at.max(last_seen_at);
                    updated.idle_expires_at = updated
                        .idle_expires_at
                        .max(idle_expires_at.min(updated.absolute_expires_at));
                    s.insert(epoch, Arc::new(updated));
                }
            }
            _ => s.invalidate(id),
        }
        touched
    }

    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError> {
        let result = self.inner.save(session).await;
        // Whatever happened, the cached copy may no longer be the latest.
        self.shared.invalidate(&session.id);
        result
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let result = self.inner.delete(id).await;
        self.shared.invalidate(id);
        result
    }

    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        let result = self.inner.rotate(old, new).await;
        self.shared.invalidate(old);
        result
    }

    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.list_for_user(user, now).await
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        let result = self.inner.delete_for_user(user, scope).await;
        // The kept session (AllExcept) goes too: it is simply read again.
        self.shared.invalidate_user(user);
        result
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Expired entries are refused by the manager whether cached or not, and evicted in
        // time; the purge itself changes nothing a check could see.
        self.inner.purge_expired(now).await
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        self.inner.consume_link(id, expires_at).await
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        self.inner.revocation_epoch(user).await
    }

    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        self.inner.count_live(now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// What a shared backend announces on its invalidation feed: a change to one session (a delete,
/// a rotation away from it, a save or a touch), or to every session of a user (a revoke-all).
///
/// The wire form is text, so that both Redis pub/sub and PostgreSQL `NOTIFY` carry it as is:
/// `s <64 hex digits of the session id>` or `u <user id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// One session changed or went.
    Session(SessionId),
    /// Sessions of this user went.
    User(UserId),
}

impl Invalidation {
    /// The wire form.
    pub fn encode(&self) -> String {
        match self {
            Self::Session(id) => format!("s {}", id.to_hex()),
            Self::User(user) => format!("u {}", user.as_str()),
        }
    }

    /// Reads the wire form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(' ')? {
            ("s", hex) => SessionId::from_hex(hex).ok().map(Self::Session),
            ("u", user) => UserId::new(user).ok().map(Self::User),
            _ => None,
        }
    }
}

/// The handle a backend's invalidation listener drives (see [`CachedStore::push`]).
///
/// The listener's duty: call [`connected`](Self::connected) once its subscription is confirmed,
/// [`apply`](Self::apply) every message in order, and [`disconnected`](Self::disconnected) the
/// moment it can no longer be sure it hears every message (an error, a closed connection, a
/// lagging buffer). The cache is used only in between.
#[derive(Clone)]
pub struct Invalidator {
    shared: Arc<Shared>,
}

impl fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidator")
            .field("connected", &self.shared.usable())
            .finish()
    }
}

impl Invalidator {
    /// The feed is subscribed: every change from now on will be delivered. What the cache held
    /// before may have missed some, so it starts empty.
    pub fn connected(&self) {
        self.shared.clear();
        self.shared.usable.store(true, Ordering::Release);
    }

    /// The feed is lost: stop using the cache, and forget it.
    pub fn disconnected(&self) {
        self.shared.usable.store(false, Ordering::Release);
        self.shared.clear();
    }

    /// Applies one message from the feed. A message that does not parse clears the whole
    /// cache: a feed this process cannot read must not leave it stale.
    pub fn apply(&self, message: &str) {
        match Invalidation::parse(message) {
            Some(Invalidation::Session(id)) => self.shared.invalidate(&id),
            Some(Invalidation::User(user)) => self.shared.invalidate_user(&user),
            None => self.shared.clear(),
        }
    }
}
