//! The CSRF matrix: every way a forged or sloppy state-changing request is refused, and the
//! one way it is allowed.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{App, Reply, start};

async fn refused(reply: Reply, code: &str) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.error_code(), code, "{}", reply.body);
}

async fn counter(app: &App, cookie: &str) -> u64 {
    app.get("/me").cookie(cookie).send().await.json()["data"]["counter"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn valid_same_origin_request_with_token_is_allowed() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    let r = app.post("/incr").cookie(&cookie).csrf(&csrf).send().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Fetch Metadata alone (no Origin) is enough for a same-origin request.
    let r = app
        .post("/incr")
        .cookie(&cookie)
        .csrf(&csrf)
        .without("origin")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Origin alone (an older browser without Fetch Metadata) too.
    let r = app
        .post("/incr")
        .cookie(&cookie)
        .csrf(&csrf)
        .without("sec-fetch-site")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(counter(&app, &cookie).await, 3);
}

#[tokio::test]
async fn token_refusals() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    let (_, other_sessions_token) = app.login("mallory").await;
    refused(
        app.post("/incr").cookie(&cookie).send().await,
        "csrf_token_missing",
    )
    .await;
    refused(
        app.post("/incr")
            .cookie(&cookie)
            .csrf("not-a-token")
            .send()
            .await,
        "csrf_token_invalid",
    )
    .await;
    refused(
        app.post("/incr")
            .cookie(&cookie)
            .csrf(&"A".repeat(86))
            .send()
            .await,
        "csrf_token_invalid",
    )
    .await;
    refused(
        app.post("/incr")
            .cookie(&cookie)
            .csrf(&other_sessions_token)
            .send()
            .await,
        "csrf_token_invalid",
    )
    .await;
    assert_eq!(
        counter(&app, &cookie).await,
        0,
        "a refused request changed something"
    );
}

#[tokio::test]
async fn origin_refusals_even_with_a_valid_token() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    let ok = || app.post("/incr").cookie(&cookie).csrf(&csrf);
    refused(
        ok().header("sec-fetch-site", "cross-site").send().await,
        "cross_origin_request",
    )
    .await;
    refused(
        ok().header("sec-fetch-site", "same-site").send().await,
        "cross_origin_request",
    )
    .await;
    let no_fm = || ok().without("sec-fetch-site");
    for origin in [
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "https://evil.app.example.com",
        "https://app.example.com:444",
        "null",
    ] {
        refused(
            no_fm().header("origin", origin).send().await,
            "cross_origin_request",
        )
        .await;
    }
    // Neither Fetch Metadata nor Origin nor Referer.
    refused(
        no_fm().without("origin").send().await,
        "cross_origin_request",
    )
    .await;
    // Referer as the last resort: ours passes, a lookalike does not.
    let r = no_fm()
        .without("origin")
        .header("referer", "https://app.example.com/account")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    refused(
        no_fm()
            .without("origin")
            .header("referer", "https://app.example.com.evil.net/")
            .send()
            .await,
        "cross_origin_request",
    )
    .await;
    assert_eq!(counter(&app, &cookie).await, 1);
}

#[tokio::test]
async fn login_is_protected_against_login_csrf() {
    let app = start().await;
    let login = || app.post("/login").json(&json!({ "user": "attacker" }));
    for r in [
        login().header("sec-fetch-site", "cross-site").send().await,
        login()
            .without("sec-fetch-site")
            .header("origin", "https://evil.net")
            .send()
            .await,
        login()
            .without("sec-fetch-site")
            .without("origin")
            .send()
            .await,
    ] {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert!(r.set_cookies().is_empty(), "a refused login set a cookie");
    }
}

#[tokio::test]
async fn json_endpoints_refuse_cors_simple_content_types() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = app
            .post("/echo")
            .cookie(&cookie)
            .csrf(&csrf)
            .body(r#"{"a":1}"#, ct)
            .send()
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{ct}: {}",
            r.body
        );
    }
    // And anonymously too (a cross-site "simple" request needs no preflight).
    let r = app
        .post("/login")
        .body(r#"{"user":"x"}"#, "text/plain")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .post("/echo")
        .cookie(&cookie)
        .csrf(&csrf)
        .json(&json!({"a": 1}))
        .send()
        .await;
    assert_eq!(r.json(), json!({"a": 1}));
}

#[tokio::test]
async fn html_forms_carry_the_token_in_a_field_and_the_body_reaches_the_handler() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    let r = app
        .post("/note")
        .cookie(&cookie)
        .form(&format!("note=hi+there&csrf_token={csrf}"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, "alice wrote hi there");
    refused(
        app.post("/note")
            .cookie(&cookie)
            .form("note=hi")
            .send()
            .await,
        "csrf_token_missing",
    )
    .await;
    refused(
        app.post("/note")
            .cookie(&cookie)
            .form("note=hi&csrf_token=forged")
            .send()
            .await,
        "csrf_token_invalid",
    )
    .await;
    // Two token fields are ambiguous, even if one is right.
    refused(
        app.post("/note")
            .cookie(&cookie)
            .form(&format!("csrf_token=forged&csrf_token={csrf}&note=x"))
            .send()
            .await,
        "csrf_token_invalid",
    )
    .await;
    let huge = format!("note={}&csrf_token={csrf}", "x".repeat(100 * 1024));
    let r = app.post("/note").cookie(&cookie).form(&huge).send().await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_dead_session_makes_the_request_anonymous_not_forbidden() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    app.post("/logout").cookie(&cookie).csrf(&csrf).send().await;
    // Logging in again over a dead cookie needs no token: there is no session to protect.
    let r = app
        .post("/login")
        .cookie(&cookie)
        .json(&json!({ "user": "alice" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.post("/incr").cookie(&cookie).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
