//! Operations endpoints: liveness, readiness, metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::metrics;
use crate::state::AppState;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: every store answers. 503 names the one that does not.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let checks = [
        (
            "sessions",
            state.sessions.store_name(),
            state.sessions.ping().await,
        ),
        (
            "accounts",
            state.accounts.name(),
            state.accounts.ping().await,
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
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.sessions.count_live().await {
        Ok(Some(n)) => metrics::active_sessions(n),
        Ok(None) => {}
        Err(e) => metrics::store_error(e.store()),
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
