//! Bad input gets a clear 4xx and changes nothing; the token is accepted only from the cookie;
//! CSRF and origin refusals on the API.

use serde_json::json;

use crate::support::{ORIGIN, PASSWORD, start};

#[tokio::test]
async fn oversized_malformed_and_mistyped_bodies() {
    let s = start().await;
    let mut b = s.browser();
    let big = vec![b'a'; 1024 * 1024];
    let r = b
        .req("POST", "/api/login")
        .body(big, "application/json")
        .send()
        .await;
    r.assert(413);
    assert_eq!(r.error_code(), "payload_too_large");
    let r = b
        .req("POST", "/api/login")
        .body(b"{\"username\": ".to_vec(), "application/json")
        .send()
        .await;
    r.assert(400);
    assert!(!r.json()["message"].as_str().unwrap().is_empty());
    let r = b
        .req("POST", "/api/login")
        .json(&json!({ "username": 42, "password": [] }))
        .send()
        .await;
    r.assert(422);
    let r = b
        .req("POST", "/api/login")
        .body(br#"{"username":"a","password":"b"}"#.to_vec(), "text/plain")
        .send()
        .await;
    r.assert(415);
    let r = b
        .req("POST", "/api/signup")
        .body(b"\xff\xfe".to_vec(), "application/json")
        .send()
        .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(
        s.state.account_store().list().await.unwrap().len(),
        0,
        "bad input created something"
    );
}

#[tokio::test]
async fn hostile_cookies_are_unauthenticated_never_a_server_error() {
    let s = start().await;
    let mut b = s.signed_up("ivy").await;
    let good = b.cookie.clone().unwrap();
    for cookie in [
        format!("__Host-cloakroom={good}; __Host-cloakroom={good}"),
        format!("__Host-cloakroom={}", "A".repeat(5000)),
        "__Host-cloakroom=%00%01".to_owned(),
        format!("__host-cloakroom={good}"),
        format!("__Host-cloakroom={good}AAAA"),
    ] {
        let r = b
            .req("GET", "/api/session")
            .no_cookie()
            .header("cookie", &cookie)
            .send()
            .await;
        r.assert(401);
        let r = b
            .req("GET", "/")
            .no_cookie()
            .header("cookie", &cookie)
            .send()
            .await;
        r.assert(303);
    }
}

#[tokio::test]
async fn the_token_is_only_accepted_from_the_cookie() {
    let s = start().await;
    let mut b = s.signed_up("jack").await;
    let token = b.cookie.clone().unwrap();
    for r in [
        b.req("GET", "/api/session")
            .no_cookie()
            .header("authorization", &format!("Bearer {token}"))
            .send()
            .await,
        b.req(
            "GET",
            &format!("/api/session?session={token}&token={token}"),
        )
        .no_cookie()
        .send()
        .await,
        b.req("GET", "/api/session")
            .no_cookie()
            .header("x-session-token", &token)
            .send()
            .await,
    ] {
        r.assert(401);
    }
}

#[tokio::test]
async fn csrf_and_origin_refusals_on_the_api() {
    let s = start().await;
    let mut b = s.signed_up("kate").await;
    let csrf = b.csrf().await.unwrap();
    // Missing token.
    let r = b.req("POST", "/api/sessions/revoke-others").send().await;
    r.assert(403);
    assert_eq!(r.error_code(), "csrf_token_missing");
    // Wrong token.
    let r = b
        .req("POST", "/api/sessions/revoke-others")
        .header("x-csrf-token", "nope")
        .send()
        .await;
    r.assert(403);
    // Cross-site, even with the right token.
    let r = b
        .req("POST", "/api/sessions/revoke-others")
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "cross_origin_request");
    let r = b
        .req("POST", "/api/sessions/revoke-others")
        .header("x-csrf-token", &csrf)
        .without("sec-fetch-site")
        .header("origin", &format!("{ORIGIN}.evil.net"))
        .send()
        .await;
    r.assert(403);
    // Login CSRF: a cross-site login attempt never reaches the password check.
    let mut anon = s.browser();
    let r = anon
        .req("POST", "/api/login")
        .header("sec-fetch-site", "cross-site")
        .json(&json!({ "username": "kate", "password": PASSWORD }))
        .send()
        .await;
    r.assert(403);
    assert!(anon.cookie.is_none());
    let r = anon
        .req("POST", "/api/signup")
        .without("sec-fetch-site")
        .without("origin")
        .json(&json!({ "username": "mallory", "password": PASSWORD }))
        .send()
        .await;
    r.assert(403);
    // And the right way works.
    b.req("POST", "/api/sessions/revoke-others")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .assert(200);
}

#[tokio::test]
async fn unknown_routes_are_json_404s_with_security_headers() {
    let s = start().await;
    let mut b = s.browser();
    let r = b.get("/nope").await;
    r.assert(404);
    assert_eq!(r.error_code(), "not_found");
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("default-src 'none'")
    );
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(r.header("referrer-policy").as_deref(), Some("same-origin"));
    assert_eq!(
        r.header("cross-origin-opener-policy").as_deref(),
        Some("same-origin")
    );
}
