//! The JSON API end to end: accounts, sessions, devices, password change, enumeration and
//! throttling.

use std::time::Duration;

use serde_json::json;

use crate::support::{PASSWORD, start};

const FIREFOX_ANDROID: &str =
    "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0";

#[tokio::test]
async fn signup_login_session_logout() {
    let s = start().await;
    let mut b = s.browser();
    let r = b
        .post_json(
            "/api/signup",
            &json!({ "username": "Alice", "password": PASSWORD }),
        )
        .await;
    r.assert(201);
    assert_eq!(r.json()["user"]["username"], "Alice");
    let cookie = &r.set_cookies()[0];
    for attr in [
        "__Host-cloakroom=",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
        "; Path=/",
    ] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Domain"),
        "{cookie}"
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));

    let me = b.get("/api/session").await;
    me.assert(200);
    let me = me.json();
    assert_eq!(me["user"]["username"], "Alice");
    assert_eq!(me["session"]["auth_method"], "password");
    assert_eq!(me["session"]["remember"], false);
    assert_eq!(me["csrf_token"].as_str().unwrap().len(), 86);
    assert!(
        me["session"]["absolute_expires_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // Log in again with a different case, "remember me".
    let mut other = s.browser();
    let r = other
        .post_json(
            "/api/login",
            &json!({ "username": "aLiCe", "password": PASSWORD, "remember": true }),
        )
        .await;
    r.assert(200);
    assert!(
        r.set_cookies()[0].contains("Max-Age=7776000"),
        "{:?}",
        r.set_cookies()
    );

    let old = b.cookie.clone().unwrap();
    let r = b.post_json("/api/logout", &json!({})).await;
    r.assert(204);
    assert!(
        r.set_cookies()[0].starts_with("__Host-cloakroom=;")
            && r.set_cookies()[0].contains("Max-Age=0")
    );
    assert_eq!(b.cookie, None);
    // The logged-out cookie replayed by someone who copied it.
    b.cookie = Some(old);
    let r = b.get("/api/session").await;
    r.assert(401);
    assert_eq!(r.error_code(), "unauthenticated");
    // The other device is unaffected.
    other.get("/api/session").await.assert(200);
}

#[tokio::test]
async fn devices_list_revoke_one_and_revoke_others() {
    let s = start().await;
    s.signed_up("bob").await;
    let mut laptop = s
        .logged_in(
            "bob",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        )
        .await;
    let mut phone = s.logged_in("bob", FIREFOX_ANDROID).await;
    let mut tablet = s
        .logged_in(
            "bob",
            "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) Version/17.5 Safari/604.1",
        )
        .await;
    let mut eve = s.signed_up("eve").await;

    let list = laptop.get("/api/sessions").await;
    list.assert(200);
    let items = list.json();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 4, "signup session + 3 logins: {items:?}");
    assert_eq!(items.iter().filter(|i| i["current"] == true).count(), 1);
    let phone_item = items
        .iter()
        .find(|i| i["device"] == "Firefox on Android")
        .expect("phone listed");
    assert_eq!(phone_item["ip"], "127.0.0.1");
    assert!(phone_item["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(phone_item["last_seen_at"].is_string());
    assert_eq!(phone_item["user_agent"], FIREFOX_ANDROID);
    for i in items {
        assert!(
            i.get("token").is_none() && i["id"].as_str().unwrap().len() == 22,
            "{i}"
        );
    }

    // Eve cannot revoke Bob's session by its handle.
    let phone_id = phone_item["id"].as_str().unwrap().to_owned();
    eve.delete(&format!("/api/sessions/{phone_id}"))
        .await
        .assert(404);
    phone.get("/api/session").await.assert(200);

    laptop
        .delete(&format!("/api/sessions/{phone_id}"))
        .await
        .assert(204);
    phone.get("/api/session").await.assert(401);
    laptop
        .delete(&format!("/api/sessions/{phone_id}"))
        .await
        .assert(404);
    laptop
        .delete("/api/sessions/not-a-handle")
        .await
        .assert(404);

    let r = laptop
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await;
    r.assert(200);
    assert_eq!(r.json()["revoked"], 2);
    tablet.get("/api/session").await.assert(401);
    laptop.get("/api/session").await.assert(200);
    eve.get("/api/session").await.assert(200);
    assert_eq!(
        laptop
            .get("/api/sessions")
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn password_change_revokes_others_rotates_this_one_and_retires_the_old_password() {
    let s = start().await;
    let mut here = s.signed_up("carol").await;
    let mut elsewhere = s.logged_in("carol", FIREFOX_ANDROID).await;
    let before = here.cookie.clone().unwrap();
    let old_csrf = here.csrf().await.unwrap();

    let r = here
        .post_json("/api/password", &json!({ "current_password": "not my password", "new_password": "a brand new passphrase" }))
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "wrong_password");
    let r = here
        .post_json(
            "/api/password",
            &json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    r.assert(422);
    assert_eq!(r.error_code(), "weak_password");
    elsewhere.get("/api/session").await.assert(200);

    let r = here
        .post_json(
            "/api/password",
            &json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase" }),
        )
        .await;
    r.assert(200);
    assert_eq!(r.json()["revoked"], 1);
    let after = here.cookie.clone().unwrap();
    assert_ne!(after, before, "this session was rotated");
    assert_ne!(r.json()["csrf_token"].as_str().unwrap(), old_csrf);
    here.get("/api/session").await.assert(200);
    elsewhere.get("/api/session").await.assert(401);
    let mut replay = s.browser();
    replay.cookie = Some(before);
    replay.get("/api/session").await.assert(401);

    let mut fresh = s.browser();
    fresh
        .post_json(
            "/api/login",
            &json!({ "username": "carol", "password": PASSWORD }),
        )
        .await
        .assert(401);
    fresh
        .post_json(
            "/api/login",
            &json!({ "username": "carol", "password": "a brand new passphrase" }),
        )
        .await
        .assert(200);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_are_indistinguishable() {
    let s = start().await;
    s.signed_up("dave").await;
    let mut b = s.browser();
    let wrong = b
        .post_json(
            "/api/login",
            &json!({ "username": "dave", "password": "wrong password 123" }),
        )
        .await;
    let unknown = b
        .post_json(
            "/api/login",
            &json!({ "username": "nobody", "password": "wrong password 123" }),
        )
        .await;
    let invalid = b
        .post_json(
            "/api/login",
            &json!({ "username": "%%%", "password": "wrong password 123" }),
        )
        .await;
    let long = b
        .post_json(
            "/api/login",
            &json!({ "username": "dave", "password": "x".repeat(5000) }),
        )
        .await;
    for r in [&wrong, &unknown, &invalid, &long] {
        r.assert(401);
        assert_eq!(r.body, wrong.body);
        assert!(r.set_cookies().is_empty());
    }
    assert_eq!(wrong.json()["error"], "invalid_credentials");
}

#[tokio::test]
async fn unknown_user_costs_as_much_as_a_wrong_password() {
    let s = start().await;
    s.signed_up("erin").await;
    let mut b = s.browser();
    async fn time(b: &mut crate::support::Browser, name: &str) -> Duration {
        let req = b
            .req("POST", "/api/login")
            .json(&json!({ "username": name, "password": "wrong password 123" }));
        let t = std::time::Instant::now();
        req.send().await.assert(401);
        t.elapsed()
    }
    // Median of a few, so one scheduling hiccup does not decide. Both run a full Argon2id
    // verification; without the dummy hash the unknown user would answer in microseconds.
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..3 {
        known.push(time(&mut b, "erin").await);
        unknown.push(time(&mut b, "nobody-here").await);
    }
    known.sort();
    unknown.sort();
    let (k, u) = (known[1].as_secs_f64(), unknown[1].as_secs_f64());
    assert!(
        u > k / 3.0,
        "unknown user answered in {u:.4}s vs {k:.4}s for a wrong password"
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after_and_success_resets() {
    let s = start().await;
    s.signed_up("frank").await;
    let mut b = s.browser();
    let attempt = |password: &'static str| json!({ "username": "frank", "password": password });
    for _ in 0..5 {
        b.post_json("/api/login", &attempt("wrong password 123"))
            .await
            .assert(401);
    }
    let r = b.post_json("/api/login", &attempt(PASSWORD)).await;
    r.assert(429);
    assert_eq!(r.error_code(), "too_many_attempts");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // Unknown accounts are throttled the same way (no existence oracle).
    for _ in 0..5 {
        b.post_json(
            "/api/login",
            &json!({ "username": "ghost", "password": "wrong password 1" }),
        )
        .await
        .assert(401);
    }
    b.post_json(
        "/api/login",
        &json!({ "username": "ghost", "password": "wrong password 1" }),
    )
    .await
    .assert(429);

    s.clock.advance(Duration::from_secs(retry));
    b.post_json("/api/login", &attempt(PASSWORD))
        .await
        .assert(200);
    // Success reset the account's counter: one more failure is not throttled.
    let mut c = s.browser();
    c.post_json("/api/login", &attempt("wrong password 123"))
        .await
        .assert(401);
    c.post_json("/api/login", &attempt(PASSWORD))
        .await
        .assert(200);
}

#[tokio::test]
async fn signup_rules() {
    let s = start().await;
    let mut b = s.browser();
    let signup = |u: &str, p: &str| json!({ "username": u, "password": p });
    let r = b.post_json("/api/signup", &signup("a b", PASSWORD)).await;
    r.assert(422);
    assert_eq!(r.error_code(), "invalid_username");
    for (p, why) in [
        ("short", "12"),
        ("qwerty123456", "common"),
        ("georgeharris", "username"),
    ] {
        let r = b.post_json("/api/signup", &signup("georgeharris", p)).await;
        r.assert(422);
        assert!(
            r.json()["message"].as_str().unwrap().contains(why),
            "{}",
            r.body
        );
    }
    let r = b
        .post_json("/api/signup", &signup("george", &"p".repeat(1025)))
        .await;
    r.assert(422);
    b.post_json("/api/signup", &signup("george", "éééé 🔑🔑 long enough"))
        .await
        .assert(201);
    let mut c = s.browser();
    let r = c
        .post_json("/api/signup", &signup("GEORGE", PASSWORD))
        .await;
    r.assert(409);
    assert_eq!(r.error_code(), "username_taken");
}

#[tokio::test]
async fn disabled_accounts_cannot_log_in() {
    let s = start().await;
    let mut b = s.signed_up("hank").await;
    let id = b.get("/api/session").await.json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = cloakroom_core::UserId::new(id).unwrap();
    s.state
        .account_store()
        .set_disabled(&user, true)
        .await
        .unwrap();
    let mut c = s.browser();
    let r = c
        .post_json(
            "/api/login",
            &json!({ "username": "hank", "password": PASSWORD }),
        )
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "account_disabled");
    // A wrong password on a disabled account says nothing about it being disabled.
    let r = c
        .post_json(
            "/api/login",
            &json!({ "username": "hank", "password": "wrong password 12" }),
        )
        .await;
    r.assert(401);
}
