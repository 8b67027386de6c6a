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

use crate::cookie::{
    CookiePolicy, HOST_PREFIX, Presented, SECURE_PREFIX, SameSite, valid_cookie_name,
};
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
    /// Whether `Authorization: Bearer` carries sessions, and what other schemes get.
    bearer: Option<OtherSchemes>,
    /// Whether unsafe requests carrying nothing a browser sends may pass, unverified.
    non_browser: bool,
}

/// What a layer taking bearer tokens does with an `Authorization` header of another scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtherSchemes {
    /// Refuse it (401): the routes are the session server's own, where any `Authorization`
    /// is meant for it.
    Refuse,
    /// Leave it alone: the routes answer for another app (forward auth), whose own `Basic`
    /// credentials and API keys pass by — including `Bearer` values that are not shaped like
    /// a session token (43 characters of base64url).
    Ignore,
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
            .field("bearer", &c.bearer)
            .field("non_browser", &c.non_browser)
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
                bearer: None,
                non_browser: false,
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
                    bearer: c.bearer,
                    non_browser: c.non_browser,
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
        let base = name
            .strip_prefix(HOST_PREFIX)
            .or_else(|| name.strip_prefix(SECURE_PREFIX))
            .unwrap_or(name)
            .to_owned();
        assert!(valid_cookie_name(&base), "invalid cookie name {base:?}");
        self.edit(|c| c.cookie.name = prefixed(&base, c.cookie.domain.is_some(), c.cookie.secure))
    }

    /// One session for every host under `domain` (`example.com`): the cookie gets
    /// `Domain=example.com`, and since `__Host-` forbids a domain, the `__Secure-` prefix
    /// instead (`__Secure-cloakroom`), which still makes browsers refuse it without `Secure`.
    ///
    /// The price: every subdomain receives the cookie and can set one of that name — a
    /// forgotten or taken-over subdomain included. Use it for a portal in front of apps on
    /// subdomains one operator controls; the host-only default is safer everywhere else.
    /// CSRF checks are unchanged: the subdomains are same-*site*, not same-origin, and only
    /// the configured origins may send state-changing requests.
    ///
    /// # Panics
    /// If `domain` is not a plain lower-case host name (a configuration bug).
    #[must_use]
    pub fn with_cookie_domain(self, domain: &str) -> Self {
        assert!(
            !domain.is_empty()
                && domain
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)),
            "invalid cookie domain {domain:?}"
        );
        self.edit(|c| {
            c.cookie.domain = Some(domain.to_owned());
            c.cookie.name = prefixed(base_name(&c.cookie.name), true, c.cookie.secure);
        })
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

    /// Also takes sessions from `Authorization: Bearer <token>`, for native apps, whose
    /// sessions are issued with [`Auth::issue_bearer`](crate::Auth::issue_bearer) and marked
    /// as such (a browser's cookie token is never accepted as a bearer token, nor a native
    /// app's in a cookie). A bearer request is exempt from the CSRF checks: the header is
    /// never sent by a browser on its own, so no other site can make one. A request with
    /// both a session cookie and a bearer token is refused (400); a malformed `Authorization`
    /// — two tokens, an over-long one, or with [`OtherSchemes::Refuse`] another scheme or a
    /// value that is no session token — gets 401 with `WWW-Authenticate: Bearer …
    /// error="invalid_request"` (RFC 6750). Default: off.
    #[must_use]
    pub fn with_bearer_sessions(self, other_schemes: OtherSchemes) -> Self {
        self.edit(|c| c.bearer = Some(other_schemes))
    }

    /// Lets a state-changing request that carries none of what a browser sends — no session
    /// cookie, no bearer token, no `Origin`, `Referer` or `Sec-Fetch-Site` — through the
    /// origin check *unverified*: a native app's sign-in. Nothing ambient comes with such a
    /// request, so it can abuse no one's session; and it can set no cookie either (a login
    /// CSRF would need one): [`Auth::login`](crate::Auth::login) refuses it, while
    /// [`Auth::issue_bearer`](crate::Auth::issue_bearer) answers with a token. For the
    /// routes that sign native apps in, and no others. Default: off.
    #[must_use]
    pub fn with_non_browser_sign_in(self) -> Self {
        self.edit(|c| c.non_browser = true)
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
            c.cookie.name = base_name(&c.cookie.name).to_owned();
        })
    }

    /// The cookie name in use.
    pub fn cookie_name(&self) -> &str {
        &self.config.cookie.name
    }
}

/// A cookie name without its prefix.
fn base_name(name: &str) -> &str {
    name.strip_prefix(HOST_PREFIX)
        .or_else(|| name.strip_prefix(SECURE_PREFIX))
        .unwrap_or(name)
}

/// The cookie's full name: `__Host-` when host-only, `__Secure-` with a domain, none when
/// insecure (browsers refuse either prefix without `Secure`).
fn prefixed(base: &str, domain: bool, secure: bool) -> String {
    match (secure, domain) {
        (false, _) => base.to_owned(),
        (true, false) => format!("{HOST_PREFIX}{base}"),
        (true, true) => format!("{SECURE_PREFIX}{base}"),
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
            if let Some(rejection) = state.refused.clone() {
                let mut response = rejection.into_response();
                state.finish(&mut response);
                return Ok(response);
            }
            let checked =
                config.csrf && !is_safe_method(parts.method.as_str()) && !state.origin_unverified;
            let body = if checked {
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
/// Where the request's session token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The session cookie (or none at all).
    Cookie,
    /// `Authorization: Bearer`.
    Bearer,
}

/// What the `Authorization` header says, for a layer that takes bearer tokens.
enum BearerHeader {
    /// No header, or another scheme where those are ignored.
    Absent,
    /// One well-formed token.
    Token(SessionToken),
    /// Anything else.
    Malformed,
}

/// The longest `Authorization` value read: the scheme, a space and a token, with room.
const MAX_AUTHORIZATION: usize = 128;

fn bearer_header(headers: &axum::http::HeaderMap, other: OtherSchemes) -> BearerHeader {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return BearerHeader::Absent;
    };
    let is_bearer = |v: &HeaderValue| {
        v.as_bytes()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"bearer "))
    };
    // One token, nothing around it: `Bearer a, Bearer b` or `Bearer a b` is refused, not
    // read as its first token.
    let token = |v: &HeaderValue| {
        let bytes = v.as_bytes();
        (is_bearer(v) && bytes.len() <= MAX_AUTHORIZATION)
            .then(|| std::str::from_utf8(&bytes[7..]).ok())
            .flatten()
            .and_then(|t| SessionToken::parse(t).ok())
    };
    match other {
        OtherSchemes::Refuse => {
            if values.next().is_some() {
                // Two headers: which is meant cannot be known.
                return BearerHeader::Malformed;
            }
            token(value).map_or(BearerHeader::Malformed, BearerHeader::Token)
        }
        // Only what is shaped like one of our tokens is ours; anything else (the app's own
        // Basic credentials or API keys, `Bearer glsa_…`) is the app's business.
        OtherSchemes::Ignore => {
            let mut ours = headers
                .get_all(header::AUTHORIZATION)
                .iter()
                .filter_map(token);
            match (ours.next(), ours.next()) {
                (Some(t), None) if values.next().is_none() => BearerHeader::Token(t),
                (None, _) => BearerHeader::Absent,
                _ => BearerHeader::Malformed,
            }
        }
    }
}

pub(crate) struct RequestState {
    pub(crate) config: Arc<Config>,
    presented: Presented,
    /// Where `presented` came from.
    pub(crate) source: Source,
    /// A refusal decided from the headers alone, before anything else runs.
    refused: Option<Rejection>,
    /// An unsafe request let through without an origin check (a bearer request, a native
    /// sign-in): it may not set a cookie.
    pub(crate) origin_unverified: bool,
    /// Shared, not copied: every extractor of the request sees the one record.
    validated: OnceCell<Result<Arc<Session>, Rejection>>,
    /// The presented session, when it is a pending one (a second factor due): set aside by the
    /// validation above, which treats it as absent.
    pending: std::sync::OnceLock<Arc<Session>>,
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
        let cookie = config.cookie.presented(&parts.headers);
        let bearer = config.bearer.map_or(BearerHeader::Absent, |other| {
            bearer_header(&parts.headers, other)
        });
        let (presented, source, refused) = match bearer {
            BearerHeader::Absent => (cookie, Source::Cookie, None),
            BearerHeader::Token(_) | BearerHeader::Malformed if cookie != Presented::Absent => (
                Presented::Absent,
                Source::Bearer,
                Some(Rejection::AmbiguousCredentials),
            ),
            BearerHeader::Token(token) => (Presented::Token(token), Source::Bearer, None),
            BearerHeader::Malformed => (
                Presented::Absent,
                Source::Bearer,
                Some(Rejection::Unauthenticated(Unauthenticated::MalformedBearer)),
            ),
        };
        // Which unsafe requests skip the origin check: a bearer's (no browser sends the header
        // on its own), and, where native sign-in is allowed, one that carries nothing a
        // browser sends with an unsafe request — no session, no `Origin`, `Referer` or
        // `Sec-Fetch-Site`.
        let h = &parts.headers;
        let sent_nothing_a_browser_sends = presented == Presented::Absent
            && source == Source::Cookie
            && !h.contains_key(header::ORIGIN)
            && !h.contains_key(header::REFERER)
            && !h.contains_key("sec-fetch-site");
        let origin_unverified = config.csrf
            && !is_safe_method(parts.method.as_str())
            && (source == Source::Bearer || (config.non_browser && sent_nothing_a_browser_sends));
        Self {
            config,
            presented,
            source,
            refused,
            origin_unverified,
            validated: OnceCell::new(),
            pending: std::sync::OnceLock::new(),
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
                        // A token works only the way its session was issued: a browser's
                        // cookie token is no bearer token, a native app's no cookie.
                        match result {
                            Ok(s) if s.is_bearer() != (self.source == Source::Bearer) => {
                                Err(Rejection::Unauthenticated(Unauthenticated::UnknownSession))
                            }
                            // Half a sign-in signs no one in: only the route that asks for
                            // the second factor sees it (`Auth::pending_session`).
                            Ok(s) if s.is_pending() => {
                                let _ = self.pending.set(s);
                                Err(Rejection::Unauthenticated(Unauthenticated::UnknownSession))
                            }
                            other => other.map_err(Rejection::from_validation),
                        }
                    }
                }
            })
            .await
            .clone()
    }

    /// The presented session if it is a pending one (see [`Session::is_pending`]), and the
    /// handler has not switched to another.
    pub(crate) async fn pending_session(&self) -> Result<Option<Arc<Session>>, Rejection> {
        if self.changes().current.is_some() {
            return Ok(None);
        }
        match self.presented_session().await {
            Err(e @ Rejection::StoreUnavailable(_)) => Err(e),
            _ => Ok(self.pending.get().cloned()),
        }
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

    /// The token of the session this request switched to, when the client holds its token
    /// itself (a bearer request): it must be told in the response's body.
    pub(crate) fn issued_bearer_token(&self) -> Option<String> {
        if self.source != Source::Bearer {
            return None;
        }
        match &self.changes().cookie {
            Some(CookieChange::Set { token, .. }) => Some(token.expose_cookie_value()),
            _ => None,
        }
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
        let unauthorized = response.status() == axum::http::StatusCode::UNAUTHORIZED;
        let headers = response.headers_mut();
        if self.source == Source::Bearer && unauthorized {
            // RFC 6750 §3: say which scheme, and why this one failed.
            let value = if matches!(
                self.refused,
                Some(Rejection::Unauthenticated(Unauthenticated::MalformedBearer))
            ) {
                "Bearer realm=\"cloakroom\", error=\"invalid_request\", \
                 error_description=\"one Bearer token of 43 characters\""
            } else {
                "Bearer realm=\"cloakroom\", error=\"invalid_token\", \
                 error_description=\"the session has ended or never existed\""
            };
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(value));
        }
        let cookie = if self.source == Source::Bearer {
            // A native app holds its token itself: there is no cookie to set or remove.
            &None
        } else {
            &changes.cookie
        };
        match cookie {
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
