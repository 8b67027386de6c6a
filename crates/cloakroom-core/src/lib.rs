//! Cloakroom's core: server-side sessions done right, with no web framework and no database
//! driver.
//!
//! Hand in your coat, keep the ticket. The browser holds an opaque 256-bit
//! [`SessionToken`] and nothing else; who the user is, how they logged in and what the app
//! keeps for them stays on the server in a [`Session`] record. Revoking a session is deleting
//! the record — the very next request fails, on every instance — which is exactly what a
//! self-contained JWT cannot do without rebuilding server state through a blacklist.
//!
//! # Design
//!
//! * **The store never sees the token.** Records are keyed by [`SessionId`], the SHA-256 of the
//!   token; a leaked database yields no usable cookie. A separate random [`SessionHandle`]
//!   names a session in "your devices" pages and revoke URLs.
//! * **Parse, don't validate.** A [`SessionToken`] only exists after a strict parse (43
//!   characters of canonical base64url), so malformed cookies never reach a store.
//! * **One contract, every backend.** [`SessionStore`] spells out what `create`, `save`,
//!   `delete` and the per-user index must guarantee — never overwrite, never resurrect a
//!   revoked session, no lost updates, no leaking index entries — and the conformance suite
//!   (in the `cloakroom-testkit` crate) checks it for memory, SQLite, Redis and PostgreSQL
//!   alike. [`store::SessionRow`] is the one decoder the SQL stores share.
//! * **Rules live in one place.** [`SessionManager`] owns the lifecycle (issue with fixation
//!   defence, validate with idle and absolute expiry, throttled activity writes, rotation,
//!   optimistic data updates, revocation), so web code cannot forget one.
//! * **Time is injected.** Every expiry decision reads a [`Clock`]; tests use a
//!   [`ManualClock`] and skip twelve hours without sleeping.
//! * **Secrets behave like secrets.** Tokens and CSRF secrets have redacted `Debug`,
//!   constant-time equality and no `Display`.
//!
//! [`accounts`] holds the account model and store trait the Cloakroom server uses; apps that
//! bring their own users can ignore it. [`mail`] holds the durable outbox's store contract, and
//! [`link`] the single-use link tokens (password reset, email verification, download links),
//! minted and verified through a signing-key trait so that core needs no crypto backend.
//!
//! # What this crate does not do
//!
//! It speaks no HTTP (see `cloakroom-axum` for cookies, CSRF enforcement and extractors) and no
//! SQL or Redis (see the store crates). The CSRF token and Fetch-Metadata/`Origin` policy here
//! are pure functions over header values, so any web layer can enforce them.
//!
//! # Features
//!
//! None. The store conformance suites, which used to be the `conformance` feature, live in the
//! `cloakroom-testkit` crate, so the product crate carries no test code and no tokio.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloakroom_core::{AuthMethod, MemoryStore, NewSession, SessionManager, UserId};
//!
//! let sessions = SessionManager::new(MemoryStore::new());
//! let alice = UserId::new("alice")?;
//!
//! // Log in on two devices.
//! let phone = sessions.issue(NewSession::new(alice.clone(), AuthMethod::password()), None).await?;
//! let laptop = sessions.issue(NewSession::new(alice.clone(), AuthMethod::password()), None).await?;
//!
//! // The phone is stolen: log out everywhere else, from the laptop.
//! sessions.revoke_all_for_user(&alice, Some(&laptop.session.id)).await?;
//! assert!(sessions.validate(Some(&phone.token.expose_cookie_value())).await.is_err());
//! assert!(sessions.validate(Some(&laptop.token.expose_cookie_value())).await.is_ok());
//! # Ok(())
//! # }
//! ```

pub mod accounts;
pub mod cache;
mod clock;
mod counter;
pub mod csrf;
pub mod link;
pub mod mail;
mod manager;
pub mod mfa;
pub mod origin;
mod policy;
mod random;
pub mod service_token;
mod session;
pub mod store;
pub mod throttle;
mod token;

pub use cache::{CacheLimits, CacheStats, CachedStore, Invalidation, Invalidator};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use counter::Counter;
pub use csrf::CsrfSecret;
pub use manager::{
    IssuedSession, NewSession, SessionManager, UpdateError, ValidationError, ValidationObserver,
};
pub use policy::{Lifetime, Policy};
pub use session::{
    AuthMethod, BEARER_KEY, Expiry, InvalidValue, MAX_DATA_LEN, MAX_USER_AGENT_LEN,
    MAX_USER_ID_LEN, PENDING_KEY, Session, SessionData, UserId, truncate_user_agent,
};
pub use store::{DeleteScope, MemoryStore, SaveOutcome, SessionStore, StoreError};
pub use token::{
    HANDLE_LEN, SessionHandle, SessionId, SessionIdHasher, SessionToken, TOKEN_LEN, TokenError,
};
