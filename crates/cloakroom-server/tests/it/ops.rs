//! Operations endpoints and the OpenAPI document.

use serde_json::json;

use crate::support::{PASSWORD, start, start_observed_with};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = start().await;
    let mut b = s.browser();
    let r = b.get("/healthz").await;
    r.assert(200);
    assert_eq!(r.body, "ok");
    let r = b.get("/readyz").await;
    r.assert(200);
    assert_eq!(r.json()["status"], "ready");

    let mut u = s.signed_up("rita").await;
    u.get("/api/session").await;
    b.post_json(
        "/api/login",
        &json!({ "username": "rita", "password": "wrong password 1" }),
    )
    .await;
    b.post_json(
        "/api/login",
        &json!({ "username": "rita", "password": PASSWORD }),
    )
    .await;
    u.post_json("/api/logout", &json!({})).await;
    let m = b.get("/metrics").await;
    m.assert(200);
    for name in [
        "cloakroom_session_validations_total{outcome=\"valid\"}",
        "cloakroom_session_validation_seconds_bucket",
        "cloakroom_logins_total{outcome=\"success\"}",
        "cloakroom_logins_total{outcome=\"invalid_credentials\"}",
        "cloakroom_session_revocations_total{reason=\"logout\"}",
        "cloakroom_signups_total{outcome=\"success\"}",
        "cloakroom_session_store_writes_total{op=\"create\"}",
        // Issue 14: the session cache's counts, published at scrape time (README).
        "cloakroom_session_cache_total{result=\"hit\"}",
        "cloakroom_session_cache_total{result=\"miss\"}",
        "cloakroom_session_cache_entries",
        "cloakroom_session_cache_bytes",
        "cloakroom_session_cache_active",
    ] {
        assert!(
            m.body.contains(name),
            "{name} missing from /metrics:\n{}",
            m.body
        );
    }
}

#[tokio::test]
async fn openapi_describes_every_api_route() {
    let s = start().await;
    let doc = s.browser().get("/openapi.json").await;
    doc.assert(200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/api/signup", "post"),
        ("/api/login", "post"),
        ("/api/logout", "post"),
        ("/api/session", "get"),
        ("/api/sessions", "get"),
        ("/api/sessions/{id}", "delete"),
        ("/api/sessions/revoke-others", "post"),
        ("/api/password", "post"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    let login = &doc["components"]["schemas"]["LoginRequest"]["properties"];
    assert!(
        login["username"].is_object()
            && login["password"].is_object()
            && login["remember"].is_object()
    );
}

#[tokio::test]
async fn a_store_outage_fails_closed_and_readiness_says_which() {
    // Without the session cache, which (exact, over a store nobody else writes) would go on
    // answering for sessions it holds: the point here is what a store failure does.
    let (s, observed) = start_observed_with(|raw| {
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Off);
    })
    .await;
    let mut b = s.signed_up("sam").await;
    b.get("/api/session").await.assert(200);
    observed.set_unavailable(true);
    let r = b.get("/api/session").await;
    r.assert(503);
    assert!(
        !r.body.contains("switched off"),
        "internal detail leaked: {}",
        r.body
    );
    let r = b.get("/").await;
    r.assert(503);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let r = b.get("/readyz").await;
    r.assert(503);
    assert_eq!(r.json()["store"], "sessions");
    b.get("/healthz").await.assert(200);
    observed.set_unavailable(false);
    b.get("/api/session").await.assert(200);
    b.get("/readyz").await.assert(200);
}
