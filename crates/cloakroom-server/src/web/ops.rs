//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document, the JWKS and the
//! stylesheets.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi as _;

use crate::metrics;
use crate::state::AppState;
use crate::web::error::{Format, WebError};
use crate::web::site::STYLE_CSS;

/// `GET /openapi.json`.
pub(crate) async fn openapi() -> Response {
    let json = crate::web::api::ApiDoc::openapi()
        .to_json()
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
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

/// `GET /.well-known/jwks.json`: the public keys, cacheable for one JWKS lifetime.
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

/// `GET /healthz`: the process is up and serving.
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: every store answers. 503 names the one that does not.
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
            tracing::warn!(error = %e, role, "readiness check failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "store": role, "backend": store })),
            )
                .into_response();
        }
    }
    Json(json!({ "status": "ready" })).into_response()
}

/// `GET /metrics`: Prometheus text format.
///
/// The live-session gauge costs a count over the whole store, so it is refreshed at most
/// every [`metrics::GAUGE_REFRESH`]: scraping more often (or by more scrapers) costs nothing.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    if state.gauges.due(state.clock.now()) {
        match state.sessions.count_live().await {
            Ok(Some(n)) => metrics::active_sessions(n),
            Ok(None) => {}
            Err(e) => metrics::store_error(e.store()),
        }
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
