//! [`SessionLayer`]: the tower middleware that reads the session cookie, enforces CSRF rules on
//! state-changing requests and writes cookie changes back.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use cloakroom_core::origin::{Origin, OriginPolicy, is_safe_method};
use cloakroom_core::{Session, SessionManager, SessionToken, ValidationError};
use tokio::sync::OnceCell;
use tower::{Layer, Service};

use crate::cookie::{CookiePolicy, HOST_PREFIX, Presented, SameSite, valid_cookie_name};
use crate::csrf;
use crate::rejection::{Rejection, Unauthenticated};

/// Default limit on a form body read to find its `csrf_token` field: 64 KiB.
pub const DEFAULT_MAX_FORM_BYTES: usize = 64 * 1024;

type ClientIpFn = Arc<dyn Fn(&Parts) -> Option<IpAddr> + Send + Sync>;

/// Adds Cloakroom sessions to a router.
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use cloakroom_axum::{SessionLayer, Session};
/// use cloakroom_core::{MemoryStore, SessionManager, origin::Origin};
///
/// async fn me(session: Session) -> String {
///     format!("hello {}", session.user_id())
/// }
///
/// let manager = SessionManager::new(MemoryStore::new());
/// let origin = Origin::parse("https://app.example.com").unwrap();
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .layer(SessionLayer::new(manager, origin));
/// ```
///
/// Every unsafe request (POST, PUT, PATCH, DELETE, …) passing through the layer must come from
/// the configured origin (Fetch Metadata, else `Origin`, else `Referer`; see
/// [`cloakroom_core::origin`]) — with or without a session, which also stops login CSRF. If it
/// carries a valid session it must also carry that session's CSRF token, in the
/// `X-CSRF-Token` header or a `csrf_token` field of a URL-encoded form. Refusals never reach
/// the handler.
#[derive(Clone)]
pub struct SessionLayer {
    config: Arc<Config>,
}

pub(crate) struct Config {
    pub(crate) manager: SessionManager,
    pub(crate) cookie: CookiePolicy,
    pub(crate) origins: OriginPolicy,
    pub(crate) csrf: bool,
    pub(crate) max_form_bytes: usize,
    client_ip: Option<ClientIpFn>,
}

impl Config {
    /// The client address recorded on a new session. Worked out only by the [`Auth`]
    /// extractor — the one that logs in — so that requests that never log in (forward auth,
    /// every page view) pay nothing for it.
    ///
    /// [`Auth`]: crate::Auth
    pub(crate) fn client_ip(&self, parts: &Parts) -> Option<IpAddr> {
        match &self.client_ip {
            Some(f) => f(parts),
            None => parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        }
    }
}

impl fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("SessionLayer")
            .field("manager", &c.manager)
            .field("cookie", &c.cookie)
            .field("origins", &c.origins)
            .field("csrf", &c.csrf)
            .field("max_form_bytes", &c.max_form_bytes)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Sessions from `manager`, for pages served at `public_origin`.
    ///
    /// Defaults: cookie `__Host-cloakroom`, `SameSite=Lax`, `Secure`, `HttpOnly`, `Path=/`;
    /// CSRF checks on; only `public_origin` may send state-changing requests; form bodies up to
    /// [`DEFAULT_MAX_FORM_BYTES`] are read for a CSRF field; the client IP recorded on new
    /// sessions is the socket peer (from axum's `ConnectInfo`, when the server provides it).
    pub fn new(manager: SessionManager, public_origin: Origin) -> Self {
        Self {
            config: Arc::new(Config {
                manager,
                cookie: CookiePolicy::default(),
                origins: OriginPolicy::new(public_origin),
                csrf: true,
                max_form_bytes: DEFAULT_MAX_FORM_BYTES,
                client_ip: None,
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.config) {
            Some(c) => f(c),
            None => {
                // Builders run before the layer is shared; if someone cloned it first, copy.
                let c = &self.config;
                let mut copy = Config {
                    manager: c.manager.clone(),
                    cookie: c.cookie.clone(),
                    origins: c.origins.clone(),
                    csrf: c.csrf,
                    max_form_bytes: c.max_form_bytes,
                    client_ip: c.client_ip.clone(),
                };
                f(&mut copy);
                self.config = Arc::new(copy);
            }
        }
        self
    }

    /// Names the cookie `__Host-<name>` (the prefix is added if missing and always kept).
    /// Default: `__Host-cloakroom`.
    ///
    /// # Panics
    /// If `name` contains characters a cookie name cannot hold — a configuration bug that
    /// should stop the program at start-up, not produce broken cookies.
    #[must_use]
    pub fn with_cookie_name(self, name: &str) -> Self {
        let full = if name.starts_with(HOST_PREFIX) {
            name.to_owned()
        } else {
            format!("{HOST_PREFIX}{name}")
        };
        assert!(valid_cookie_name(&full), "invalid cookie name {full:?}");
        self.edit(|c| c.cookie.name = full)
    }

    /// Sets the cookie's `SameSite` attribute. Default: [`SameSite::Lax`].
    #[must_use]
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.edit(|c| c.cookie.same_site = same_site)
    }

    /// Also accepts state-changing requests from `origin`. Default: only the public origin.
    #[must_use]
    pub fn with_allowed_origin(self, origin: Origin) -> Self {
        self.edit(|c| c.origins = c.origins.clone().with_allowed(origin))
    }

    /// Limits how much of a URL-encoded form body is read to find its CSRF field (larger
    /// bodies get 413). Default: [`DEFAULT_MAX_FORM_BYTES`].
    #[must_use]
    pub fn with_max_form_bytes(self, limit: usize) -> Self {
        self.edit(|c| c.max_form_bytes = limit)
    }

    /// Decides the client IP recorded on new sessions, e.g. from `X-Forwarded-For` behind a
    /// trusted proxy. Default: the socket peer address from `ConnectInfo`, if present.
    #[must_use]
    pub fn with_client_ip(
        self,
        f: impl Fn(&Parts) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.edit(|c| c.client_ip = Some(Arc::new(f)))
    }

    /// **Dangerous.** Turns off both CSRF defences (origin and token) for the routes under
    /// this layer. Only for routes that change nothing or do their own checks, such as a
    /// forward-auth endpoint answering a reverse proxy. Default: on.
    #[must_use]
    pub fn danger_disable_csrf(self) -> Self {
        self.edit(|c| c.csrf = false)
    }

    /// **Dangerous.** Drops the `Secure` attribute and the `__Host-` prefix, so the cookie
    /// works over plain HTTP on hosts other than `localhost` — and can then be read by anyone
    /// on the network path and overwritten by sibling subdomains. Default: secure.
    #[must_use]
    pub fn danger_insecure_cookie(self) -> Self {
        self.edit(|c| {
            c.cookie.secure = false;
            if let Some(rest) = c.cookie.name.strip_prefix(HOST_PREFIX) {
                c.cookie.name = rest.to_owned();
            }
        })
    }

    /// The cookie name in use.
    pub fn cookie_name(&self) -> &str {
        &self.config.cookie.name
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around a router; obtained through
/// [`tower::Layer::layer`] or, usually, `Router::layer(session_layer)`.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> fmt::Debug for SessionService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionService").finish_non_exhaustive()
    }
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The ready service handles this request; a fresh clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let state = Arc::new(RequestState::new(config.clone(), &parts));
            let body = if config.csrf && !is_safe_method(parts.method.as_str()) {
                match csrf::enforce(&config, &state, &parts, body).await {
                    Ok(body) => body,
                    Err(rejection) => {
                        state.log_refusal(&rejection, &parts);
                        return Ok(rejection.into_response());
                    }
                }
            } else {
                body
            };
            parts.extensions.insert(state.clone());
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            state.finish(&mut response);
            Ok(response)
        })
    }
}

/// The `tracing` target of security events (the server logs its own under the same one).
pub const SECURITY_TARGET: &str = "cloakroom::security";

/// Logs that a well-formed cookie named no live session — a stale cookie, or someone guessing
/// — at most once a second, with how many such presentations the previous lines left out.
fn unknown_session_presented() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    static LAST_SECOND: AtomicU64 = AtomicU64::new(u64::MAX);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let second = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::info!(
        target: SECURITY_TARGET,
        event = "unknown_session",
        suppressed,
        "a session cookie named no live session"
    );
}

/// What a request carried and what the handler changed; shared between the layer and the
/// extractors through the request extensions.
pub(crate) struct RequestState {
    pub(crate) config: Arc<Config>,
    presented: Presented,
    /// Shared, not copied: every extractor of the request sees the one record.
    validated: OnceCell<Result<Arc<Session>, Rejection>>,
    changes: Mutex<Changes>,
}

#[derive(Default)]
struct Changes {
    cookie: Option<CookieChange>,
    /// The session this request ended with, if a handler logged in, rotated or logged out.
    current: Option<Option<Arc<Session>>>,
}

enum CookieChange {
    Set {
        token: SessionToken,
        session: Arc<Session>,
    },
    Remove,
}

impl RequestState {
    fn new(config: Arc<Config>, parts: &Parts) -> Self {
        let presented = config.cookie.presented(&parts.headers);
        Self {
            config,
            presented,
            validated: OnceCell::new(),
            changes: Mutex::default(),
        }
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        // A panic elsewhere while holding this lock cannot leave `Changes` half-written (every
        // update is a single assignment), so the data is still good.
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session presented with this request, validated once and cached.
    async fn presented_session(&self) -> Result<Arc<Session>, Rejection> {
        self.validated
            .get_or_init(|| async {
                match &self.presented {
                    Presented::Absent => Err(Rejection::Unauthenticated(Unauthenticated::NoCookie)),
                    Presented::Duplicate => {
                        Err(Rejection::Unauthenticated(Unauthenticated::DuplicateCookie))
                    }
                    Presented::Malformed => {
                        Err(Rejection::Unauthenticated(Unauthenticated::MalformedCookie))
                    }
                    Presented::Token(token) => {
                        let result = self.config.manager.validate_token(token).await;
                        if let Err(ValidationError::Unknown) = &result {
                            unknown_session_presented();
                        }
                        result.map_err(Rejection::from_validation)
                    }
                }
            })
            .await
            .clone()
    }

    /// The request's current session: the one a handler switched to (login, rotation,
    /// logout), else the presented one.
    pub(crate) async fn current(&self) -> Result<Arc<Session>, Rejection> {
        if let Some(current) = self.changes().current.clone() {
            return current.ok_or(Rejection::Unauthenticated(Unauthenticated::UnknownSession));
        }
        self.presented_session().await
    }

    /// The id of the session the client presented, if its cookie was well-formed — whether or
    /// not the session exists. Login replaces it (fixation defence).
    pub(crate) fn presented_id(&self) -> Option<cloakroom_core::SessionId> {
        match (&self.changes().current, &self.presented) {
            (Some(Some(s)), _) => Some(s.id),
            (Some(None), _) => None,
            (None, Presented::Token(t)) => Some(t.id()),
            (None, _) => None,
        }
    }

    /// Records that the client should now hold `token` for `session`.
    pub(crate) fn set_session(&self, token: SessionToken, session: Arc<Session>) {
        let mut changes = self.changes();
        changes.current = Some(Some(session.clone()));
        changes.cookie = Some(CookieChange::Set { token, session });
    }

    /// Records that the client's session is gone.
    pub(crate) fn clear_session(&self) {
        let mut changes = self.changes();
        changes.current = Some(None);
        changes.cookie = Some(CookieChange::Remove);
    }

    /// Writes cookie changes and caching rules onto the response.
    fn finish(&self, response: &mut Response) {
        let changes = self.changes();
        let headers = response.headers_mut();
        match &changes.cookie {
            Some(CookieChange::Set { token, session }) => {
                let max_age = session.remember.then(|| {
                    session
                        .absolute_expires_at
                        .duration_since(self.config.manager.now())
                });
                headers.append(
                    header::SET_COOKIE,
                    self.config.cookie.set_cookie(token, max_age),
                );
            }
            Some(CookieChange::Remove) => {
                headers.append(header::SET_COOKIE, self.config.cookie.removal_cookie());
            }
            None => {}
        }
        let authenticated = matches!(changes.current, Some(Some(_)))
            || matches!(self.validated.get(), Some(Ok(_)))
            || changes.cookie.is_some();
        if authenticated {
            // Personal pages must not be stored by shared caches or the browser's back-forward
            // cache on a shared computer (OWASP ASVS V14.3).
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }

    /// Logs a CSRF or origin refusal as a security event, with the user (if the request
    /// carried a live session) and the client address.
    fn log_refusal(&self, rejection: &Rejection, parts: &Parts) {
        if !matches!(
            rejection,
            Rejection::CrossOrigin(_)
                | Rejection::ForeignOrigin { .. }
                | Rejection::CsrfTokenMissing
                | Rejection::CsrfTokenInvalid
        ) {
            return;
        }
        let user = match self.validated.get() {
            Some(Ok(session)) => session.user_id.as_str().to_owned(),
            _ => "-".to_owned(),
        };
        let ip = self
            .config
            .client_ip(parts)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tracing::warn!(
            target: SECURITY_TARGET,
            event = "csrf_refused",
            code = rejection.code(),
            reason = %rejection,
            user,
            ip,
            "state-changing request refused"
        );
    }

    pub(crate) async fn validate_for_csrf(&self) -> Option<Result<Arc<Session>, Rejection>> {
        match self.presented {
            Presented::Token(_) => Some(self.presented_session().await),
            _ => None,
        }
    }
}

impl From<ValidationError> for Rejection {
    fn from(e: ValidationError) -> Self {
        Self::from_validation(e)
    }
}
