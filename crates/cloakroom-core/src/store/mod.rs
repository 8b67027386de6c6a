//! The seam between the session lifecycle and where sessions live.
//!
//! [`SessionStore`] is the one trait every backend implements (memory, SQLite, Redis,
//! PostgreSQL). Its contract is written on each method and checked by the conformance suite
//! (in `cloakroom-testkit`), which every backend runs unchanged. The contract exists because
//! these are exactly the places popular session libraries get wrong: a slow request writing a
//! revoked session back (express-session, Spring Session), last-writer-wins data loss under
//! concurrent requests, and per-user indexes that leak or break on Redis Cluster.
//!
//! Stores are deliberately dumb about time: they never read a clock. Whoever calls them (the
//! [`SessionManager`](crate::SessionManager)) passes `now` where it matters and judges expiry
//! itself; a store's own expiry (a Redis TTL, a SQL purge) is garbage collection only.
//!
//! Two small records beside the sessions serve single-use links (see [`crate::link`]): the
//! ids of consumed links ([`SessionStore::consume_link`]), because a download cannot be
//! single-use without state, and each user's revocation epoch
//! ([`SessionStore::revocation_epoch`]), which "log out everywhere" moves on, so that links
//! bound to it die with the sessions. They live in the session store because that is the
//! store every instance shares and every backend already keeps expiring records in.

pub(crate) mod memory;
mod row;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use row::{CorruptColumn, IpColumn, SessionRow, version_column};

use crate::clock::Timestamp;
use crate::link::LinkId;
use crate::session::{Session, UserId};
use crate::token::SessionId;

/// A boxed error from a backend, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong inside a store. Every variant names the store, so "which store failed" is
/// in the message an operator sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time. Callers must fail closed:
    /// a request whose session cannot be checked is unauthenticated.
    #[error("{store} session store is unavailable")]
    Unavailable {
        /// Which store (`"redis"`, `"sqlite"`, …).
        store: &'static str,
        /// The underlying cause.
        #[source]
        source: BoxError,
    },
    /// The backend answered, but what it holds for a session could not be decoded.
    #[error("{store} session store holds a record that cannot be decoded")]
    Corrupt {
        /// Which store.
        store: &'static str,
        /// The decoding failure.
        #[source]
        source: BoxError,
    },
    /// [`SessionStore::create`] found a record with the same id. With 256-bit random tokens this
    /// means a broken random source or a caller bug, never bad luck.
    #[error("{store} session store already holds a session with this id")]
    AlreadyExists {
        /// Which store.
        store: &'static str,
    },
    /// A create raced a "revoke all" for the same user and lost; the new session was removed
    /// before it could be used.
    #[error("{store} session store: the user's sessions were revoked while this one was created")]
    RevokedConcurrently {
        /// Which store.
        store: &'static str,
    },
    /// Any other backend failure (a rejected query, a failed migration, a bug).
    #[error("{store} session store failed")]
    Backend {
        /// Which store.
        store: &'static str,
        /// The underlying cause.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether the store could not be reached (as opposed to answering with an error).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The name of the store that failed.
    pub fn store(&self) -> &'static str {
        match self {
            Self::Unavailable { store, .. }
            | Self::Corrupt { store, .. }
            | Self::AlreadyExists { store }
            | Self::RevokedConcurrently { store }
            | Self::Backend { store, .. } => store,
        }
    }
}

/// The result of a versioned [`SessionStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum SaveOutcome {
    /// The record was replaced and its stored version is now `expected + 1`.
    Saved,
    /// The stored version differs from the expected one: someone else saved first. Nothing
    /// was written; reload and retry.
    VersionConflict,
    /// There is no such session (deleted, revoked or expired and removed). Nothing was
    /// written — in particular, the session was *not* recreated.
    NotFound,
}

/// How long a store must remember a user's [revocation epoch](SessionStore::revocation_epoch)
/// after it last moved. A backend may forget it after that (Redis lets the key expire) and
/// start again from 0, so anything bound to an epoch must live less than this: a download link
/// lives an hour at most, a reset link half an hour.
pub const EPOCH_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Which of a user's sessions [`SessionStore::delete_for_user`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteScope<'a> {
    /// Every session of the user ("log out everywhere", account disabled).
    All,
    /// Every session but this one ("log out of all other devices").
    AllExcept(&'a SessionId),
}

/// Where sessions live. Implementations must be safe to share between tasks and instances:
/// several server processes may use one backend at once, and every guarantee below holds
/// across them.
///
/// Time is never read by a store; `now` arguments come from the caller's clock.
#[async_trait]
pub trait SessionStore: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for errors, logs and metrics (`"memory"`, `"sqlite"`, …).
    fn name(&self) -> &'static str;

    /// Stores a new session and adds it to its user's index.
    ///
    /// Contract:
    /// - **Never overwrites**: if a record with `session.id` exists (live or expired but not yet
    ///   removed), nothing changes and the result is [`StoreError::AlreadyExists`].
    /// - Once this returns `Ok`, the session is durable to the backend's standard (a SQLite
    ///   create survives a process crash) and visible to every instance's `load`.
    /// - Against [`delete_for_user`](Self::delete_for_user) for the same user: a create
    ///   acknowledged before the revoke-all began never survives it. A create that overlaps it
    ///   is ordered either before it (and removed by it), after it (and survives, as a login
    ///   after "log out everywhere" should), or fails with [`StoreError::RevokedConcurrently`]
    ///   — never half: no record without its index entry is left behind.
    async fn create(&self, session: &Session) -> Result<(), StoreError>;

    /// Fetches a session by id.
    ///
    /// Contract: returns the record as last saved or touched, or `None` if there is none. A
    /// record past its expiry may still be returned (the caller judges expiry) or may already
    /// be gone; it is never returned after [`delete`](Self::delete) or
    /// [`delete_for_user`](Self::delete_for_user) removed it.
    ///
    /// The record is shared (`Arc`): a store that keeps records in memory hands out its own
    /// copy without cloning it, and callers change a record only through the store.
    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError>;

    /// Records activity: sets `last_seen_at` and `idle_expires_at` of an existing session.
    ///
    /// Contract:
    /// - Never creates a record; returns `false` if there is none.
    /// - `idle_expires_at` is clamped to the record's `absolute_expires_at`, so activity can
    ///   never extend a session past its absolute expiry.
    /// - Neither value moves backwards (a delayed touch cannot shorten a session another
    ///   request extended), and the version is unchanged: a touch never causes a data update
    ///   to conflict, and a concurrent [`save`](Self::save) may win over it.
    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Replaces a session's record if, and only if, its stored version is `session.version`;
    /// the stored version becomes `session.version + 1`.
    ///
    /// Contract:
    /// - **Never resurrects**: if the session is gone, nothing is written
    ///   ([`SaveOutcome::NotFound`]). A slow request cannot write back a revoked session.
    /// - **Compare-and-set**: if another save landed first, nothing is written
    ///   ([`SaveOutcome::VersionConflict`]); two concurrent saves of one version never both
    ///   succeed.
    /// - The id, user and handle of a record never change through `save`.
    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError>;

    /// Removes a session and its index entry. Returns whether it existed.
    ///
    /// Contract: after this returns, no instance's `load` returns the session.
    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError>;

    /// Atomically replaces `old` by `new` (session rotation on login or privilege change).
    ///
    /// Contract: afterwards `new` exists and `old` does not. If the backend cannot do both in
    /// one atomic step it must delete `old` first, so a failure can leave the user logged out
    /// but never leaves the old (possibly attacker-planted) session alive. `old` need not
    /// exist. `new` is created under the same rules as [`create`](Self::create).
    async fn rotate(&self, old: &SessionId, new: &Session) -> Result<(), StoreError> {
        self.delete(old).await?;
        self.create(new).await
    }

    /// The user's live sessions at `now`, in no particular order.
    ///
    /// Contract: contains every session of the user that is neither deleted nor expired at
    /// `now`, and nothing else — never another user's session.
    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError>;

    /// Removes the user's sessions (all, or all but one). Returns how many were removed.
    ///
    /// Contract: when this returns, no session of the user in scope that existed when it was
    /// called, or whose create had not yet completed, can be loaded by any instance (see
    /// [`create`](Self::create) for the race). It also moves the user's
    /// [revocation epoch](Self::revocation_epoch) on, in either scope and even when the user
    /// had no session.
    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError>;

    /// Removes every session expired at `now` together with its index entries, and every
    /// [consumed-link record](Self::consume_link) whose link expired at or before `now`.
    /// Returns how many sessions were removed.
    ///
    /// Contract: live sessions and records of live links are untouched; afterwards no index
    /// holds an entry for a removed session (indexes never grow without bound). Stores that
    /// expire records by themselves may do less work here but must still uphold the index
    /// guarantee.
    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Records the use of a single-use link and says whether it was the first: `true` the
    /// first time `id` is consumed, `false` ever after, until the record goes.
    ///
    /// Contract:
    /// - **First use wins, atomically.** Of any number of calls with one `id` — concurrent,
    ///   on any instance sharing the backend — exactly one returns `true`; a record, once
    ///   written, is never replaced.
    /// - **Kept until the link expires, then gone.** The record stays at least until
    ///   `expires_at` (the link's `exp`) and is removed once that has passed: by
    ///   [`purge_expired`](Self::purge_expired) at any `now` at or after it, or sooner by the
    ///   backend's own expiry (a TTL, never before `expires_at`). Consumed links never
    ///   accumulate past their lifetime. The caller refuses an expired link before it asks,
    ///   so an id whose record is gone is never presented again in time to matter.
    /// - **Fail closed.** An error means "cannot tell": the caller must refuse the link. The
    ///   id may or may not have been recorded (a reply lost after the write); a link then
    ///   counts as used without having been, never the other way round.
    /// - Only the id is stored: it is not a secret, and the token cannot be rebuilt from it.
    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError>;

    /// The user's revocation epoch: a number that [`delete_for_user`](Self::delete_for_user)
    /// moves on. A token that must die with "log out everywhere" (a download link, a reset
    /// link) carries the epoch it was minted at and is refused once the epoch differs.
    ///
    /// Contract:
    /// - After `delete_for_user` for the user returns `Ok` (either scope, whether or not it
    ///   removed anything), every later call for that user, on any instance, returns a value
    ///   larger than any returned before that `delete_for_user` began.
    /// - Nothing else moves it: creating, saving, rotating or deleting one session leaves it
    ///   alone, and another user's revocations never touch it.
    /// - A user who was never revoked has epoch 0. A backend may forget an epoch that has not
    ///   moved for [`EPOCH_RETENTION`] and answer 0 again.
    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError>;

    /// How many sessions are live at `now`, if the backend can tell cheaply (for an
    /// "active sessions" gauge). The default says it cannot.
    async fn count_live(&self, now: Timestamp) -> Result<Option<u64>, StoreError> {
        let _ = now;
        Ok(None)
    }

    /// Whether the backend is reachable (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;
}
