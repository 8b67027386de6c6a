//! The Cloakroom server: a session server any app can sit behind.
//!
//! `cloakroom serve` runs accounts (Argon2id passwords, throttled logins), server-rendered
//! pages, a JSON API described by OpenAPI, and operations endpoints — all on
//! [`cloakroom_core`]'s sessions through [`cloakroom_axum`]'s layer, so every rule (cookie
//! policy, CSRF, fixation defence, expiry, fail-closed) is the library's, not re-implemented
//! here. With no configuration it runs on SQLite in `./cloakroom-data/`.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive the real thing on
//! port 0; [`Server`] adds binding, background upkeep and graceful shutdown.
//!
//! What it deliberately does not do (yet): send mail, federate logins (OIDC), or share
//! throttling counters across instances.

pub mod admin;
pub mod api;
pub mod auth;
pub mod client_ip;
pub mod config;
pub mod device;
pub mod error;
pub mod forward;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod pages;
pub mod passwords;
pub mod redirect;
pub mod service_jwt;
pub mod state;
pub mod throttle;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use cloakroom_axum::SessionLayer;
use utoipa::OpenApi;

pub use state::{AppState, StartupError};

/// Largest request body accepted anywhere (JSON or form).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const STYLE_CSS: &str = include_str!("../static/style.css");

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let settings = &state.settings;
    let client_ip = state.client_ip.clone();
    let mut layer = SessionLayer::new(state.sessions.clone(), settings.public_origin.clone())
        .with_cookie_name(&settings.cookie_name)
        .with_same_site(settings.same_site)
        .with_max_form_bytes(MAX_BODY_BYTES)
        .with_client_ip(move |parts| client_ip.of(parts));
    for origin in &settings.allowed_origins {
        layer = layer.with_allowed_origin(origin.clone());
    }

    let api = Router::new()
        .route("/api/signup", post(api::signup))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::current))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/revoke-others", post(api::revoke_others))
        .route("/api/sessions/{id}", delete(api::revoke))
        .route("/api/password", post(api::change_password));

    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route(
            "/signup",
            get(pages::signup_page).post(pages::signup_submit),
        )
        .route("/logout", post(pages::logout))
        .route("/account/sessions", get(pages::sessions_page))
        .route(
            "/account/sessions/revoke-others",
            post(pages::revoke_others),
        )
        .route("/account/sessions/{id}/revoke", post(pages::revoke_device))
        .route(
            "/account/password",
            get(pages::password_page).post(pages::password_submit),
        )
        .layer(layer.clone())
        // Refusals from the session layer (CSRF, store outage) are JSON; a person submitting a
        // form should see a page. Outside the session layer, so it sees those refusals too.
        .layer(middleware::from_fn(html_errors));

    // Forward auth answers a proxy about *another* request: its own method says nothing, and
    // its CSRF rules apply to the forwarded request (see `forward`), so the session layer's
    // CSRF checks are off here — and only here.
    let forward = Router::new()
        .route("/auth/verify", any(forward::verify))
        .route("/api/authz/auth-request", any(forward::verify))
        .route("/api/authz/forward-auth", any(forward::verify))
        .route("/api/verify", any(forward::verify))
        .route("/oauth2/auth", any(forward::oauth2_auth))
        .route("/oauth2/sign_in", get(forward::oauth2_sign_in))
        .route("/oauth2/sign_out", get(forward::oauth2_sign_out))
        .route("/oauth2/userinfo", get(forward::oauth2_userinfo))
        .layer(layer.clone().danger_disable_csrf());

    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi))
        .route("/.well-known/jwks.json", get(forward::jwks))
        .route("/static/style.css", get(style));

    Router::new()
        .merge(api.layer(layer))
        .merge(pages)
        .merge(forward)
        .merge(ops)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

async fn openapi() -> Response {
    let json = api::ApiDoc::openapi().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE_CSS,
    )
        .into_response()
}

async fn not_found() -> Response {
    error::ApiError::NotFound("page").into_response()
}

/// Headers every response carries. The CSP allows only our own stylesheet: the pages need no
/// script at all, so an injected one cannot run, and forms may only post back to us.
///
/// Built once, at compile time: a header name given as `&str` is parsed and validated again on
/// every response, and inserting the five one by one made the response's header map grow
/// twice. Together that was about a sixth of the instructions a `/healthz` request costs
/// (callgrind, see `bench/README.md`).
static SECURITY_HEADERS: [(HeaderName, HeaderValue); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ),
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Adds [`SECURITY_HEADERS`] to every response, leaving any a handler set itself.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.reserve(SECURITY_HEADERS.len());
    for (name, value) in &SECURITY_HEADERS {
        h.entry(name).or_insert_with(|| value.clone());
    }
    response
}

/// Turns JSON error bodies into an HTML error page for the page routes.
async fn html_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status().as_u16() < 400 || !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "Something went wrong.".to_owned());
    let mut page = pages::error_page(parts.status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().append(name, value.clone());
        }
    }
    page
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Binds the configured address (port 0 picks a free one).
    pub async fn bind(state: AppState) -> Result<Self, StartupError> {
        let addr = state.settings.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Listen {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.listen)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let upkeep = tokio::spawn(upkeep(self.state.clone()));
        let metrics_upkeep = tokio::spawn(async {
            let mut tick = tokio::time::interval(metrics::UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                metrics::run_upkeep();
            }
        });
        let app = app(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        upkeep.abort();
        metrics_upkeep.abort();
        result
    }
}

/// Periodic housekeeping: pick up key rotations made by the CLI, drop stale cached tokens,
/// purge expired sessions, forget stale throttling counters.
async fn upkeep(state: AppState) {
    let mut keys = tokio::time::interval(Duration::from_secs(10));
    let mut tick = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = keys.tick() => {
                let now = state.clock.now();
                if let Err(e) = state.minter.reload(&state.settings.data_dir, state.settings.jwt_algorithm, now) {
                    tracing::error!(error = %e, "reloading service-JWT keys failed; keeping the previous ones");
                }
                state.minter.prune(now);
                continue;
            }
            _ = tick.tick() => {}
        }
        match state.sessions.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired sessions purged"),
            Err(e) => {
                metrics::store_error(e.store());
                tracing::warn!(error = %e, "purging expired sessions failed");
            }
        }
        state.throttle.prune();
    }
}
