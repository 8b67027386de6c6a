//! [`SessionManager`]: the session lifecycle, on top of any [`SessionStore`].
//!
//! Web code talks to the manager, never to the store: the manager is where the rules live
//! (strict token parsing before any store access, idle and absolute expiry, throttled activity
//! writes, rotation, optimistic concurrency), so every backend gets them for free and no
//! handler can forget one.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock, Timestamp};
use crate::csrf::CsrfSecret;
use crate::link::LinkId;
use crate::policy::Policy;
use crate::session::{AuthMethod, Expiry, Session, SessionData, UserId, truncate_user_agent};
use crate::store::{DeleteScope, SaveOutcome, SessionStore, StoreError};
use crate::token::{SessionHandle, SessionId, SessionToken, TokenError};

/// Why a request is not authenticated. Everything but [`Store`](Self::Store) is the client's
/// doing and means "anonymous"; `Store` means "cannot tell", which callers must also treat as
/// unauthenticated (fail closed) but report as a server error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// No session cookie was presented.
    #[error("no session")]
    Missing,
    /// The presented value is not a well-formed token; no store was queried.
    #[error("malformed session token")]
    Malformed(#[source] TokenError),
    /// Well-formed, but no such session: never issued, logged out, or revoked.
    #[error("unknown or revoked session")]
    Unknown,
    /// The session was unused for longer than its idle timeout.
    #[error("session expired after inactivity")]
    IdleExpired,
    /// The session reached its absolute lifetime.
    #[error("session reached its maximum lifetime")]
    AbsoluteExpired,
    /// The store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ValidationError {
    /// A short, stable label for metrics and logs (`"missing"`, `"malformed"`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Unknown => "unknown",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Store(_) => "store_error",
        }
    }
}

/// Why [`SessionManager::update_data`] did not apply an update.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The session no longer exists or has expired; nothing was written.
    #[error("the session no longer exists")]
    Gone,
    /// Every attempt lost a compare-and-set race to another writer
    /// ([`Policy::max_update_attempts`]); nothing was written.
    #[error("the session is being updated by too many requests at once")]
    Contended,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What to record about a new session.
///
/// ```
/// use cloakroom_core::{AuthMethod, NewSession, UserId};
///
/// let new = NewSession::new(UserId::new("42").unwrap(), AuthMethod::password())
///     .remember(true)
///     .user_agent("Mozilla/5.0 …");
/// ```
#[derive(Debug, Clone)]
pub struct NewSession {
    user_id: UserId,
    auth_method: AuthMethod,
    remember: bool,
    user_agent: Option<String>,
    ip: Option<IpAddr>,
    data: SessionData,
    bearer: bool,
    pending: bool,
}

impl NewSession {
    /// A session for `user_id`, authenticated by `auth_method` just now.
    pub fn new(user_id: UserId, auth_method: AuthMethod) -> Self {
        Self {
            user_id,
            auth_method,
            remember: false,
            user_agent: None,
            ip: None,
            data: SessionData::default(),
            bearer: false,
            pending: false,
        }
    }

    /// A session for a native app, whose token travels as `Authorization: Bearer` instead of
    /// in a cookie (see [`Session::is_bearer`]). Recorded on the session, so that a browser's
    /// cookie token is never accepted as a bearer token and a native app's never as a cookie.
    #[must_use]
    pub fn bearer(mut self) -> Self {
        self.bearer = true;
        self
    }

    /// A pending session: the password was right, a second factor is still due (see
    /// [`Session::is_pending`]). Recorded on the session, so no layer mistakes it for a
    /// signed-in one.
    #[must_use]
    pub fn pending(mut self) -> Self {
        self.pending = true;
        self
    }

    /// Whether this is a "remember me" login (default: no).
    #[must_use]
    pub fn remember(mut self, remember: bool) -> Self {
        self.remember = remember;
        self
    }

    /// The client's user agent (truncated to a bounded length).
    #[must_use]
    pub fn user_agent(mut self, ua: &str) -> Self {
        self.user_agent = Some(truncate_user_agent(ua));
        self
    }

    /// The client's address.
    #[must_use]
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Initial application data.
    #[must_use]
    pub fn data(mut self, data: SessionData) -> Self {
        self.data = data;
        self
    }
}

/// A freshly created session and the token that unlocks it. The token exists only here and in
/// the client's cookie.
#[derive(Debug)]
pub struct IssuedSession {
    /// The bearer token to send to the client.
    pub token: SessionToken,
    /// The stored record.
    pub session: Session,
}

/// Told about every validation, for metrics. Implementations must be cheap: they run on the
/// hottest path.
pub trait ValidationObserver: Send + Sync + 'static {
    /// A validation finished with `outcome` after `elapsed` (parse, load, expiry, touch).
    fn validated(&self, outcome: Result<&Session, &ValidationError>, elapsed: std::time::Duration);
}

/// Owns the session lifecycle. Cheap to clone; clones share the store and clock.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cloakroom_core::{AuthMethod, MemoryStore, NewSession, SessionManager, UserId};
///
/// let manager = SessionManager::new(MemoryStore::new());
/// let user = UserId::new("alice")?;
/// let issued = manager.issue(NewSession::new(user.clone(), AuthMethod::password()), None).await?;
///
/// // Later, a request presents the cookie:
/// let cookie = issued.token.expose_cookie_value();
/// let session = manager.validate(Some(&cookie)).await?;
/// assert_eq!(session.user_id, user);
///
/// manager.revoke(&session.id).await?;
/// assert!(manager.validate(Some(&cookie)).await.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SessionManager {
    pub(crate) store: Arc<dyn SessionStore>,
    clock: Arc<dyn Clock>,
    policy: Policy,
    observer: Option<Arc<dyn ValidationObserver>>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store.name())
            .field("clock", &self.clock)
            .field("policy", &self.policy)
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl SessionManager {
    /// A manager over `store` with the system clock and the default [`Policy`].
    pub fn new(store: impl SessionStore) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A manager over a shared store.
    pub fn from_arc(store: Arc<dyn SessionStore>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            policy: Policy::default(),
            observer: None,
        }
    }

    /// Uses `clock` for every expiry decision.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `policy` for lifetimes and throttling.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Reports every validation to `observer` (metrics).
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn ValidationObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The current time on the manager's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The store's name, for logs and metrics.
    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// Creates a session. If `replacing` names a session the client already had (a cookie
    /// presented at login), that session is deleted as part of the same step — the fixation
    /// defence: whatever token a client held before authenticating is dead after it.
    pub async fn issue(
        &self,
        new: NewSession,
        replacing: Option<&SessionId>,
    ) -> Result<IssuedSession, StoreError> {
        let now = self.clock.now();
        let lifetime = self.policy.lifetime(new.remember);
        let absolute_expires_at = now.saturating_add(lifetime.absolute);
        let token = SessionToken::generate();
        let session = Session {
            id: token.id(),
            user_id: new.user_id,
            handle: SessionHandle::generate(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: lifetime.idle_expiry(now, absolute_expires_at),
            absolute_expires_at,
            auth_time: now,
            auth_method: new.auth_method,
            remember: new.remember,
            user_agent: new.user_agent,
            ip: new.ip,
            csrf_secret: CsrfSecret::generate(),
            data: new.data,
            version: 1,
        };
        let mut session = session;
        for (set, key) in [
            (new.bearer, crate::session::BEARER_KEY),
            (new.pending, crate::session::PENDING_KEY),
        ] {
            if set {
                session
                    .data
                    .insert(key, &true)
                    .map_err(|e| StoreError::Backend {
                        store: "session data",
                        source: Box::new(e),
                    })?;
            }
        }
        match replacing {
            Some(old) => self.store.rotate(old, &session).await?,
            None => self.store.create(&session).await?,
        }
        Ok(IssuedSession { token, session })
    }

    /// Gives `current` a new token, handle and CSRF secret (on a privilege change, or after a
    /// password change) and deletes the old record. Data, creation time, authentication facts
    /// and the absolute expiry carry over: rotation must not extend a session's life.
    pub async fn rotate(&self, current: &Session) -> Result<IssuedSession, StoreError> {
        let now = self.clock.now();
        let token = SessionToken::generate();
        let lifetime = self.policy.lifetime(current.remember);
        let session = Session {
            id: token.id(),
            handle: SessionHandle::generate(),
            last_seen_at: now,
            idle_expires_at: lifetime.idle_expiry(now, current.absolute_expires_at),
            csrf_secret: CsrfSecret::generate(),
            version: 1,
            ..current.clone()
        };
        self.store.rotate(&current.id, &session).await?;
        Ok(IssuedSession { token, session })
    }

    /// Checks a presented cookie value: parse → hash → load → expiry → throttled touch.
    ///
    /// The token is parsed strictly before anything else, so garbage never reaches the store.
    /// At most one store write happens per [`Policy::touch_interval`] per session. The record
    /// is shared, not copied: behind a [`CachedStore`](crate::CachedStore) a valid check
    /// allocates nothing but the store call's future.
    pub async fn validate(
        &self,
        cookie_value: Option<&str>,
    ) -> Result<Arc<Session>, ValidationError> {
        let parsed = cookie_value
            .ok_or(ValidationError::Missing)
            .and_then(|raw| SessionToken::parse(raw).map_err(ValidationError::Malformed));
        match parsed {
            Ok(token) => self.validate_token(&token).await,
            Err(e) => {
                if let Some(observer) = &self.observer {
                    observer.validated(Err(&e), std::time::Duration::ZERO);
                }
                Err(e)
            }
        }
    }

    /// [`validate`](Self::validate) for an already parsed token.
    pub async fn validate_token(
        &self,
        token: &SessionToken,
    ) -> Result<Arc<Session>, ValidationError> {
        let Some(observer) = &self.observer else {
            return self.validate_unobserved(token).await;
        };
        let started = std::time::Instant::now();
        let outcome = self.validate_unobserved(token).await;
        observer.validated(outcome.as_deref(), started.elapsed());
        outcome
    }

    async fn validate_unobserved(
        &self,
        token: &SessionToken,
    ) -> Result<Arc<Session>, ValidationError> {
        let session = self
            .store
            .load(&token.id())
            .await?
            .ok_or(ValidationError::Unknown)?;
        let now = self.clock.now();
        match session.expiry_at(now) {
            Some(Expiry::Absolute) => return Err(ValidationError::AbsoluteExpired),
            Some(Expiry::Idle) => return Err(ValidationError::IdleExpired),
            None => {}
        }
        self.touch_if_due(session, now).await
    }

    /// The throttled last-seen write; the record is copied only when it is written.
    async fn touch_if_due(
        &self,
        session: Arc<Session>,
        now: Timestamp,
    ) -> Result<Arc<Session>, ValidationError> {
        if now.duration_since(session.last_seen_at) < self.policy.touch_interval {
            return Ok(session);
        }
        let lifetime = self.policy.lifetime(session.remember);
        let idle = lifetime.idle_expiry(now, session.absolute_expires_at);
        if !self.store.touch(&session.id, now, idle).await? {
            // Revoked between the load and the touch: revocation wins.
            return Err(ValidationError::Unknown);
        }
        let mut touched = Arc::unwrap_or_clone(session);
        touched.last_seen_at = now;
        touched.idle_expires_at = touched.idle_expires_at.max(idle);
        Ok(Arc::new(touched))
    }

    /// Applies `f` to the session's data and saves it, retrying on concurrent modification so
    /// that no update is lost: `f` may run more than once and must only touch the data it is
    /// given. If `f` leaves the data unchanged nothing is written.
    ///
    /// Returns what the last run of `f` returned.
    pub async fn update_data<R>(
        &self,
        id: &SessionId,
        mut f: impl FnMut(&mut SessionData) -> R + Send,
    ) -> Result<R, UpdateError> {
        for _ in 0..self.policy.max_update_attempts {
            let loaded = self.store.load(id).await?.ok_or(UpdateError::Gone)?;
            let mut session = Arc::unwrap_or_clone(loaded);
            if !session.is_live(self.clock.now()) {
                return Err(UpdateError::Gone);
            }
            let before = session.data.clone();
            let out = f(&mut session.data);
            if session.data == before {
                return Ok(out);
            }
            match self.store.save(&session).await? {
                SaveOutcome::Saved => return Ok(out),
                SaveOutcome::VersionConflict => continue,
                SaveOutcome::NotFound => return Err(UpdateError::Gone),
            }
        }
        Err(UpdateError::Contended)
    }

    /// Ends one session. Returns whether it existed.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, StoreError> {
        self.store.delete(id).await
    }

    /// Ends the session of `user` whose public handle is `handle` ("your devices" → revoke).
    /// Returns whether such a session existed; another user's handle is simply not found.
    pub async fn revoke_handle(
        &self,
        user: &UserId,
        handle: &SessionHandle,
    ) -> Result<bool, StoreError> {
        let sessions = self.store.list_for_user(user, self.clock.now()).await?;
        match sessions.iter().find(|s| &s.handle == handle) {
            Some(s) => self.revoke(&s.id).await,
            None => Ok(false),
        }
    }

    /// Ends every session of `user`, or every one but `except` ("log out of all other
    /// devices"). Returns how many were ended.
    pub async fn revoke_all_for_user(
        &self,
        user: &UserId,
        except: Option<&SessionId>,
    ) -> Result<u64, StoreError> {
        let scope = except.map_or(DeleteScope::All, DeleteScope::AllExcept);
        self.store.delete_for_user(user, scope).await
    }

    /// The user's live sessions, most recently used first. A pending sign-in (a second factor
    /// still due, [`Session::is_pending`]) is no session the user is signed in with, and is
    /// left out for every lister alike: "Your devices", the API, the admin CLI.
    pub async fn list_for_user(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        let mut sessions = self.store.list_for_user(user, self.clock.now()).await?;
        sessions.retain(|s| !s.is_pending());
        sessions.sort_by(|a, b| {
            b.last_seen_at
                .cmp(&a.last_seen_at)
                .then(b.created_at.cmp(&a.created_at))
        });
        Ok(sessions)
    }

    /// Records the use of a single-use link; `true` for its first use only (see
    /// [`SessionStore::consume_link`] for the guarantees). The caller has verified the link,
    /// expiry included.
    pub async fn consume_link(
        &self,
        id: &LinkId,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        self.store.consume_link(id, expires_at).await
    }

    /// The user's revocation epoch, which every "log out everywhere" moves on (see
    /// [`SessionStore::revocation_epoch`]).
    pub async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        self.store.revocation_epoch(user).await
    }

    /// Removes expired sessions from the store. Returns how many.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        self.store.purge_expired(self.clock.now()).await
    }

    /// How many sessions are live now, if the store can tell.
    pub async fn count_live(&self) -> Result<Option<u64>, StoreError> {
        self.store.count_live(self.clock.now()).await
    }

    /// Whether the store is reachable.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
