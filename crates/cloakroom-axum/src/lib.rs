//! Cloakroom sessions for axum (and any tower stack over axum's body type).
//!
//! Add [`SessionLayer`] to a router and handlers get:
//!
//! * [`Session`] — the request's session, or a 401 saying what to fix; `Option<Session>` for
//!   pages that work either way; [`CurrentUser`] for just the user id;
//! * [`Auth`] — log in (a new session that replaces whatever cookie the client held: fixation
//!   defence) and log out (server-side delete plus a removal cookie);
//! * on [`Session`]: typed data reads, lost-update-free writes, rotation on privilege change,
//!   "log out of all other devices", "your devices", and the CSRF token for forms.
//!
//! # What the layer enforces, and why
//!
//! * **The cookie policy** of OWASP and RFC 6265bis: `__Host-` prefix, `Secure`, `HttpOnly`,
//!   `Path=/`, no `Domain`, `SameSite=Lax`; a persistent `Max-Age` only for "remember me".
//!   Weakening switches are named `danger_*`.
//! * **Hostile cookies are refused deterministically**: a duplicated session cookie, an
//!   oversized or malformed value, or a miscapitalised prefix make the request anonymous —
//!   never a 500, and a malformed token never reaches the store.
//! * **CSRF, twice over**, on every unsafe method: the request must come from the configured
//!   origin (Fetch Metadata, else an exact `Origin`, else `Referer`) — which also protects
//!   login and sign-up forms — and, when it carries a session, the session's synchronizer
//!   token (`X-CSRF-Token` header or `csrf_token` form field, compared in constant time,
//!   rotated with the session). JSON handlers using [`axum::Json`] additionally refuse
//!   CORS-simple content types such as `text/plain` with 415, so a cross-site "simple"
//!   request cannot smuggle JSON in.
//! * **Fail closed**: if the store cannot answer, the request is refused with 503, never
//!   treated as authenticated.
//! * **No needless writes**: a request writes to the store only for a login, a rotation, a
//!   data change, a logout, or the throttled last-seen update. Authenticated responses carry
//!   `Cache-Control: no-store`.
//!
//! The session is validated at most once per request, and only if something asks for it (an
//! extractor, or the CSRF check of an unsafe request).
//!
//! # Example
//!
//! ```no_run
//! use axum::{Json, Router, routing::{get, post}};
//! use cloakroom_axum::{Auth, Rejection, Session, SessionLayer};
//! use cloakroom_core::{AuthMethod, MemoryStore, SessionManager, UserId, origin::Origin};
//!
//! #[derive(serde::Deserialize)]
//! struct Login { username: String }
//!
//! async fn login(auth: Auth, Json(form): Json<Login>) -> Result<&'static str, Rejection> {
//!     // … check the password first …
//!     let user = UserId::new(form.username).map_err(|e| Rejection::InvalidData(e.into()))?;
//!     auth.login(auth.new_session(user, AuthMethod::password())).await?;
//!     Ok("welcome")
//! }
//!
//! async fn me(session: Session) -> String {
//!     format!("signed in as {}", session.user_id())
//! }
//!
//! async fn logout(session: Session) -> Result<&'static str, Rejection> {
//!     session.logout().await?;
//!     Ok("bye")
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let sessions = SessionManager::new(MemoryStore::new());
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .route("/logout", post(logout))
//!     .layer(SessionLayer::new(sessions, Origin::parse("http://localhost:3000").unwrap()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

mod cookie;
mod csrf;
mod extract;
mod layer;
mod rejection;

pub use cookie::{
    DEFAULT_COOKIE_NAME, DuplicateCookie, HOST_PREFIX, SECURE_PREFIX, SameSite, find_cookie,
};
pub use csrf::{CSRF_FORM_FIELD, CSRF_HEADER};
pub use extract::{Auth, CurrentUser, Session, is_bearer_request};
pub use layer::{
    DEFAULT_MAX_FORM_BYTES, OtherSchemes, SECURITY_TARGET, SessionLayer, SessionService,
};
pub use rejection::{Rejection, Unauthenticated};
