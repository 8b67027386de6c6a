//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document, the JWKS and the
//! stylesheets.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::metrics;
use crate::state::AppState;
use crate::web::error::{Format, WebError};
use crate::web::site::{PASSKEYS_JS, STYLE_CSS};

/// This document.
///
/// Every route a program calls, described (OpenAPI 3.1), as this server serves it: its public
/// URL as the server, its cookie name in the security scheme.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    Json(crate::web::openapi::document(&state.settings)).into_response()
}

/// A stylesheet. Pages link it with a digest of its content in the URL (see `web::site`), so
/// it may be kept for a year: a changed stylesheet has a new URL.
fn stylesheet(css: impl IntoResponse) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        css,
    )
        .into_response()
}

/// `GET /static/passkeys.js`: the passkey script, cached like the stylesheets (its URL carries
/// a digest of its content).
pub(crate) async fn passkeys_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        PASSKEYS_JS,
    )
        .into_response()
}

/// `GET /static/style.css`.
pub(crate) async fn style() -> Response {
    stylesheet(STYLE_CSS)
}

/// `GET /static/branding.css`: the operator's stylesheet (`branding.css_file`), as read at
/// start-up; 404 when there is none.
pub(crate) async fn branding_css(State(state): State<AppState>) -> Response {
    match &state.site.branding_css {
        Some(css) => stylesheet(css.clone()),
        None => not_found_as(&state, false),
    }
}

/// Whether a request comes from a browser that wants a page (`Accept: text/html`).
pub(crate) fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// A 404 as a page (for a signed-out visitor) or as JSON.
fn not_found_as(state: &AppState, html: bool) -> Response {
    let format = if html {
        Format::Html(state.site.clone())
    } else {
        Format::Json
    };
    WebError::NotFound(NOT_FOUND).render(&format)
}

/// What a 404 says.
pub(crate) const NOT_FOUND: &str = "There is no page at this address.";

/// Anything else on the operations listener (`metrics_listen`): 404 — a page for a browser,
/// JSON for the rest. (The main listener's is `pages::not_found`, which knows who is signed
/// in.)
pub(crate) async fn not_found(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    not_found_as(&state, wants_html(&headers))
}

/// A JSON Web Key Set (RFC 7517).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Described, never built: the key ring writes the set.
pub(crate) struct JwkSet {
    /// Every key not yet retired, including keys that do not sign yet.
    keys: Vec<Jwk>,
}

/// A public key (RFC 7517, RFC 8037 for Ed25519).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Described, never built.
pub(crate) struct Jwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    kty: String,
    /// `Ed25519` or `P-256`.
    crv: String,
    /// The public key (base64url).
    x: String,
    /// The public key's y coordinate, for `EC` (base64url).
    y: Option<String>,
    /// The key id a JWT's header names.
    kid: String,
    /// `EdDSA` or `ES256`: the only algorithm this key verifies.
    alg: String,
    /// `sig`.
    #[schema(rename = "use")]
    use_: String,
}

/// The public keys service JWTs are signed with.
///
/// Cacheable for one JWKS lifetime (`Cache-Control`); a new key is published here for at
/// least that long before it signs.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "operations",
    responses((status = 200, description = "The key set", body = JwkSet,
        headers(("Cache-Control" = String, description = "`public, max-age=…`: one JWKS lifetime")))))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let body = state.minter.keys().jwks(state.clock.now());
    let max_age = format!(
        "public, max-age={}",
        crate::tokens::keys::JWKS_MAX_AGE.as_secs()
    );
    let mut r = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&max_age) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

/// Is the process up?
///
/// Liveness: the process is up and serving; it looks at no store. Also on the `metrics_listen`
/// address when one is set.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Whether the stores answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Readiness {
    /// `ready` or `unavailable`.
    status: ReadyStatus,
    /// The store that did not answer: `sessions` or `accounts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<&'static str>,
    /// Its backend: `sqlite`, `redis`, `postgres`, `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'static str>,
}

/// The verdict of `/readyz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReadyStatus {
    /// Every store answers.
    Ready,
    /// One does not.
    Unavailable,
}

/// Do the stores answer?
///
/// Readiness: every store answers; 503 names the one that does not. Served on the
/// `metrics_listen` address instead when one is set.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Every store answers", body = Readiness),
        (status = 503, description = "A store does not answer; the body names it.", body = Readiness),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let checks = [
        (
            "sessions",
            state.sessions.store_name(),
            state.sessions.ping().await,
        ),
        (
            "accounts",
            state.accounts.store().name(),
            state.accounts.store().ping().await,
        ),
    ];
    for (role, store, result) in checks {
        if let Err(e) = result {
            metrics::store_error(e.store());
            tracing::warn!(error = %crate::error_chain::chain(&e), role, "readiness check failed");
            let body = Readiness {
                status: ReadyStatus::Unavailable,
                store: Some(role),
                backend: Some(store),
            };
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    }
    Json(Readiness {
        status: ReadyStatus::Ready,
        store: None,
        backend: None,
    })
    .into_response()
}

/// Metrics, for Prometheus.
///
/// Served on the `metrics_listen` address instead when one is set.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text format (0.0.4)", content_type = "text/plain", body = String),
        (status = 503, description = "The metrics recorder could not be installed.", content_type = "text/plain", body = String),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    // The live-session gauge costs a count over the whole store, so it is refreshed at most
    // every `metrics::GAUGE_REFRESH`: scraping more often (or by more scrapers) costs nothing.
    if state.gauges.due(state.clock.now()) {
        match state.sessions.count_live().await {
            Ok(Some(n)) => metrics::active_sessions(n),
            Ok(None) => {}
            Err(e) => metrics::store_error(e.store()),
        }
    }
    metrics::publish_hot();
    if let Some(cache) = state.session_cache() {
        metrics::session_cache(cache);
    }
    match metrics::handle() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response(),
    }
}
