//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document, the JWKS and the
//! stylesheet.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::OpenApi as _;

use crate::metrics;
use crate::state::AppState;
use crate::web::error::{Format, WebError};

const STYLE_CSS: &str = include_str!("../../static/style.css");

/// `GET /openapi.json`.
pub(crate) async fn openapi() -> Response {
    let json = crate::web::api::ApiDoc::openapi()
        .to_json()
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// `GET /static/style.css`.
pub(crate) async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE_CSS,
    )
        .into_response()
}

/// Anything else: 404 — a page for a browser (`Accept: text/html`), JSON for the rest.
pub(crate) async fn not_found(request: axum::extract::Request) -> Response {
    let browser = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let format = if browser { Format::Html } else { Format::Json };
    WebError::NotFound("page not found").render(format)
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
            tracing::warn!(error = %crate::error_chain::chain(&e), role, "readiness check failed");
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
