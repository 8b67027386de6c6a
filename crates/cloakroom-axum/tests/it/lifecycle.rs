//! Login, cookies, rotation, logout, devices, concurrency and write discipline.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::start;

#[tokio::test]
async fn login_sets_a_host_only_secure_session_cookie() {
    let app = start().await;
    let r = app
        .post("/login")
        .json(&json!({ "user": "alice" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookies = r.set_cookies();
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert!(c.starts_with("__Host-cloakroom="), "{c}");
    for attr in ["; HttpOnly", "; SameSite=Lax", "; Secure", "; Path=/"] {
        assert!(c.contains(attr), "{attr} missing from {c}");
    }
    assert!(!c.contains("Domain"), "{c}");
    assert!(
        !c.contains("Max-Age") && !c.contains("Expires"),
        "session cookie must not persist: {c}"
    );
    assert_eq!(r.session_cookie().unwrap().len(), 43);
    assert_eq!(r.headers["cache-control"], "no-store");

    let me = app
        .get("/me")
        .cookie(&r.session_cookie().unwrap())
        .send()
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.json()["user"], "alice");
    assert_eq!(me.json()["ip"], "127.0.0.1");
    assert_eq!(me.json()["user_agent"], "it-tests/1.0");
    assert_eq!(me.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn remember_me_gets_a_persistent_cookie_bounded_by_the_absolute_lifetime() {
    let app = start().await;
    let r = app
        .post("/login")
        .json(&json!({ "user": "alice", "remember": true }))
        .send()
        .await;
    let c = &r.set_cookies()[0];
    let max_age: u64 = c
        .split("; ")
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age in {c}"))
        .parse()
        .unwrap();
    assert_eq!(max_age, 90 * 24 * 3600);
}

#[tokio::test]
async fn anonymous_responses_are_left_alone() {
    let app = start().await;
    let r = app.get("/public").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("cache-control").is_none());
    assert!(r.set_cookies().is_empty());
    let r = app.get("/maybe").send().await;
    assert_eq!(r.body, "anonymous");
    let r = app.get("/me").send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthenticated");
    assert!(r.json()["message"].as_str().unwrap().contains("sign in"));
}

#[tokio::test]
async fn a_cookie_presented_before_login_is_dead_after_it() {
    let app = start().await;
    // The attacker's own, valid session, planted in the victim's browser. The login page the
    // victim then loads is rendered for that session, so the form carries its CSRF token.
    let (planted, planted_csrf) = app.login("mallory").await;
    let r = app
        .post("/login")
        .cookie(&planted)
        .csrf(&planted_csrf)
        .json(&json!({ "user": "alice" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let fresh = r.session_cookie().unwrap();
    assert_ne!(fresh, planted);
    assert_eq!(
        app.get("/me").cookie(&planted).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/me").cookie(&fresh).send().await.json()["user"],
        "alice"
    );
}

#[tokio::test]
async fn rotation_replaces_the_token_and_its_csrf_secret() {
    let app = start().await;
    let (old, old_csrf) = app.login("alice").await;
    app.post("/incr").cookie(&old).csrf(&old_csrf).send().await;
    let r = app
        .post("/rotate")
        .cookie(&old)
        .csrf(&old_csrf)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new = r.session_cookie().unwrap();
    let new_csrf = r.json()["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        app.get("/me").cookie(&old).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    let me = app.get("/me").cookie(&new).send().await;
    assert_eq!(me.json()["data"]["counter"], 1, "data survives rotation");
    // The old session's CSRF token is worthless with the new session.
    let r = app.post("/incr").cookie(&new).csrf(&old_csrf).send().await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "csrf_token_invalid");
    assert_eq!(
        app.post("/incr")
            .cookie(&new)
            .csrf(&new_csrf)
            .send()
            .await
            .body,
        "2"
    );
}

#[tokio::test]
async fn logout_deletes_server_side_and_sends_a_matching_removal_cookie() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    let r = app.post("/logout").cookie(&cookie).csrf(&csrf).send().await;
    assert_eq!(r.status, StatusCode::OK);
    let removal = &r.set_cookies()[0];
    assert!(removal.starts_with("__Host-cloakroom=;"), "{removal}");
    for attr in [
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
        "; Path=/",
        "Max-Age=0",
    ] {
        assert!(removal.contains(attr), "{attr} missing from {removal}");
    }
    // Replaying the old cookie (a copy kept by an attacker) fails.
    let replay = app.get("/me").cookie(&cookie).send().await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.post("/incr")
            .cookie(&cookie)
            .csrf(&csrf)
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn log_out_everywhere_else_and_revoke_one_device() {
    let app = start().await;
    let (laptop, laptop_csrf) = app.login("alice").await;
    let (phone, _) = app.login("alice").await;
    let (tablet, _) = app.login("alice").await;
    let (bob, _) = app.login("bob").await;

    let devices = app.get("/devices").cookie(&laptop).send().await.json();
    assert_eq!(devices.as_array().unwrap().len(), 3);
    let phone_handle = app.get("/me").cookie(&phone).send().await.json()["handle"].clone();
    let bob_handle = app.get("/me").cookie(&bob).send().await.json()["handle"].clone();

    // Another user's handle is not found, and Bob's session is untouched.
    let r = app
        .post("/revoke")
        .cookie(&laptop)
        .csrf(&laptop_csrf)
        .json(&bob_handle)
        .send()
        .await;
    assert_eq!(r.body, "false");
    assert_eq!(
        app.get("/me").cookie(&bob).send().await.status,
        StatusCode::OK
    );

    let r = app
        .post("/revoke")
        .cookie(&laptop)
        .csrf(&laptop_csrf)
        .json(&phone_handle)
        .send()
        .await;
    assert_eq!(r.body, "true");
    assert_eq!(
        app.get("/me").cookie(&phone).send().await.status,
        StatusCode::UNAUTHORIZED
    );

    let r = app
        .post("/logout-others")
        .cookie(&laptop)
        .csrf(&laptop_csrf)
        .send()
        .await;
    assert_eq!(r.body, "1");
    assert_eq!(
        app.get("/me").cookie(&tablet).send().await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/me").cookie(&laptop).send().await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/me").cookie(&bob).send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn fifty_concurrent_updates_lose_nothing() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    // Each request on its own task, so they really are in flight together.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (app, cookie, csrf) = (app.clone(), cookie.clone(), csrf.clone());
            tokio::spawn(async move { app.post("/incr").cookie(&cookie).csrf(&csrf).send().await })
        })
        .collect();
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    let mut seen: Vec<u64> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body.parse().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<_>>(),
        "every update saw a distinct count"
    );
    assert_eq!(
        app.get("/me").cookie(&cookie).send().await.json()["data"]["counter"],
        50
    );
}

#[tokio::test]
async fn safe_requests_never_write_except_the_throttled_touch() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    let writes = app.store.writes();
    for _ in 0..100 {
        assert_eq!(
            app.get("/me").cookie(&cookie).send().await.status,
            StatusCode::OK
        );
        app.get("/maybe").cookie(&cookie).send().await;
        app.get("/whoami").cookie(&cookie).send().await;
    }
    assert_eq!(app.store.writes(), writes, "reads wrote to the store");
    app.clock.advance(Duration::from_secs(61));
    app.get("/me").cookie(&cookie).send().await;
    app.get("/me").cookie(&cookie).send().await;
    assert_eq!(
        app.store.writes(),
        writes + 1,
        "exactly one throttled touch"
    );
}

#[tokio::test]
async fn the_session_is_validated_once_per_request_and_only_when_asked() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    let loads = app.store.loads();
    app.get("/public").cookie(&cookie).send().await;
    assert_eq!(
        app.store.loads(),
        loads,
        "a handler that does not ask does not load"
    );
    app.get("/me").cookie(&cookie).send().await;
    assert_eq!(app.store.loads(), loads + 1);
}

#[tokio::test]
async fn idle_sessions_expire_with_a_message_saying_so() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    app.clock.advance(Duration::from_secs(31 * 60));
    let r = app.get("/me").cookie(&cookie).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.json()["message"].as_str().unwrap().contains("inactivity"),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_store_outage_fails_closed() {
    let app = start().await;
    let (cookie, csrf) = app.login("alice").await;
    app.store.set_unavailable(true);
    for r in [
        app.get("/me").cookie(&cookie).send().await,
        app.get("/maybe").cookie(&cookie).send().await,
        app.post("/incr").cookie(&cookie).csrf(&csrf).send().await,
    ] {
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert_eq!(r.error_code(), "session_store_unavailable");
        assert!(
            !r.body.contains("switched off"),
            "internal cause leaked: {}",
            r.body
        );
    }
    app.store.set_unavailable(false);
    assert_eq!(
        app.get("/me").cookie(&cookie).send().await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn extractors_without_the_layer_are_a_server_error_not_a_bypass() {
    use tower::ServiceExt;
    let app = axum::Router::new().route(
        "/me",
        axum::routing::get(|s: cloakroom_axum::Session| async move { s.user_id().to_string() }),
    );
    let r = app
        .oneshot(
            axum::http::Request::get("/me")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
