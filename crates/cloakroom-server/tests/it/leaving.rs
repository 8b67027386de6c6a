//! Issue 18, item 12 (and item 6's `user delete`): leaving. A user deletes their own account
//! from `/account/delete` or `DELETE /api/account` after typing the password again; an
//! administrator with `cloakroom user delete`. Every session ends first, then the account; the
//! next request of any of its sessions is refused everywhere, and the username is free again.

use std::time::Duration;

use cloakroom_core::UserId;
use cloakroom_core::accounts::Username;
use cloakroom_server::Stores;
use cloakroom_server::cli::admin::{Admin, ask_to_delete};
use cloakroom_testkit::http::CHROME_UA;
use serde_json::json;

use crate::cli::cloakroom;
use crate::support::{Browser, PASSWORD, Reply, TestServer, start};

const ANDROID: &str = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0";

async fn user_id(s: &TestServer, name: &str) -> Option<UserId> {
    s.state
        .account_store()
        .by_username(&Username::parse(name).unwrap())
        .await
        .unwrap()
        .map(|a| a.id)
}

/// What the stores hold of `id` afterwards: its account, and its live sessions.
async fn assert_gone(s: &TestServer, name: &str, id: &UserId) {
    assert_eq!(user_id(s, name).await, None, "no account named {name}");
    assert_eq!(s.state.account_store().by_id(id).await.unwrap(), None);
    assert!(
        s.state
            .sessions()
            .list_for_user(id)
            .await
            .unwrap()
            .is_empty(),
        "no session of {name} is left"
    );
}

/// `DELETE /api/account` with `password`, and `csrf` (if any) in `X-CSRF-Token`.
async fn api_delete(b: &mut Browser, csrf: Option<&str>, password: &str) -> Reply {
    let mut r = b
        .req("DELETE", "/api/account")
        .json(&json!({ "password": password }));
    if let Some(token) = csrf {
        r = r.csrf(token);
    }
    r.send().await
}

/// Every way in with this session's cookie is refused: pages, API, forward auth.
async fn assert_refused_everywhere(b: &mut Browser) {
    b.get("/api/session").await.assert(401);
    b.get("/api/sessions").await.assert(401);
    assert!(b.get("/").await.location().starts_with("/login?next=%2F"));
    b.req("GET", "/auth/verify")
        .header("x-original-url", "https://cloakroom.test/app")
        .send()
        .await
        .assert(401);
}

#[tokio::test]
async fn a_user_deletes_their_account_from_the_page() {
    let s = start().await;
    let mut laptop = s.signed_up("rosa").await;
    let mut phone = s.logged_in("rosa", ANDROID).await;
    let id = user_id(&s, "rosa").await.unwrap();
    let old_ticket = laptop.cookie.clone();
    phone
        .req("GET", "/auth/verify")
        .header("x-original-url", "https://cloakroom.test/app")
        .send()
        .await
        .assert(200);

    let home = laptop.get("/").await;
    assert!(
        home.body
            .contains("<a href=\"/account/delete\">Delete your account</a>")
    );
    let page = laptop.get("/account/delete").await;
    page.assert(200);
    assert!(
        page.body
            .contains("All 2 devices you are signed in on are signed out")
    );
    let csrf = crate::support::hidden(&page.body, "csrf_token").unwrap();

    // Without its CSRF token the form is refused, like every other.
    laptop
        .form("/account/delete", &[("password", PASSWORD)])
        .await
        .assert(403);
    // A wrong password deletes nothing, and says so under the field.
    let r = laptop
        .form(
            "/account/delete",
            &[
                ("csrf_token", &csrf),
                ("password", "not my password at all"),
            ],
        )
        .await;
    r.assert(403);
    assert!(
        r.body.contains(
            "<p class=\"field-error\" role=\"alert\" id=\"password-error\">Your current password is wrong.</p>"
        ),
        "{}",
        r.body
    );
    assert_eq!(user_id(&s, "rosa").await, Some(id.clone()));
    phone.get("/api/session").await.assert(200);

    let r = laptop
        .form(
            "/account/delete",
            &[("csrf_token", &csrf), ("password", PASSWORD)],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/login?notice=deleted");
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""));
    assert_eq!(laptop.cookie, None, "the cookie is removed");
    let login = laptop.get(&r.location()).await;
    assert!(login.body.contains("Your account has been deleted."));

    assert_gone(&s, "rosa", &id).await;
    assert_refused_everywhere(&mut phone).await;
    laptop.cookie = old_ticket;
    assert_refused_everywhere(&mut laptop).await;
    let r = s
        .browser()
        .post_json(
            "/api/login",
            &json!({ "username": "rosa", "password": PASSWORD }),
        )
        .await;
    r.assert(401);
    assert_eq!(r.error_code(), "invalid_credentials");

    // The name is free again, for a new account with a new id: nothing of the old one
    // (sessions, an app's records under the old `sub`) attaches to it.
    let mut again = s.signed_up("Rosa").await;
    let new_id = user_id(&s, "rosa").await.unwrap();
    assert_ne!(new_id, id);
    again.get("/api/session").await.assert(200);
    phone.get("/api/session").await.assert(401);
}

#[tokio::test]
async fn the_api_deletes_the_account() {
    let s = start().await;
    let mut b = s.signed_up("sven").await;
    let mut other = s.logged_in("sven", ANDROID).await;
    let id = user_id(&s, "sven").await.unwrap();

    let r = api_delete(&mut b, None, PASSWORD).await;
    r.assert(403);
    assert_eq!(r.error_code(), "csrf_token_missing");
    let csrf = b.csrf().await.unwrap();
    let r = api_delete(&mut b, Some(&csrf), "not the password").await;
    r.assert(403);
    assert_eq!(r.error_code(), "wrong_password");
    assert_eq!(r.json()["message"], "Your current password is wrong.");
    other.get("/api/session").await.assert(200);

    let r = api_delete(&mut b, Some(&csrf), PASSWORD).await;
    r.assert(204);
    assert_eq!(r.session_cookie().as_deref(), Some(""), "a removal cookie");
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""));
    assert_gone(&s, "sven", &id).await;
    assert_refused_everywhere(&mut other).await;
    let r = api_delete(&mut b, None, PASSWORD).await;
    r.assert(401);
    // The OpenAPI document describes the route.
    let doc = s.browser().get("/openapi.json").await.json();
    assert!(
        doc["paths"]["/api/account"]["delete"].is_object(),
        "{}",
        doc["paths"]
    );
}

/// Typing the password again is throttled exactly like a login: a stolen session is no
/// faster way to guess the password.
#[tokio::test]
async fn the_password_check_is_throttled_like_a_login() {
    let s = start().await;
    let mut b = s.signed_up("tara").await;
    let csrf = b.csrf().await.unwrap();
    for _ in 0..5 {
        let r = api_delete(&mut b, Some(&csrf), "not the password").await;
        r.assert(403);
    }
    let r = api_delete(&mut b, Some(&csrf), PASSWORD).await;
    r.assert(429);
    assert_eq!(r.header("retry-after").as_deref(), Some("1"));
    assert!(user_id(&s, "tara").await.is_some(), "nothing was deleted");
    // The page answers the same, above the form.
    let page_csrf = b.page_csrf("/account/delete").await;
    let r = b
        .form(
            "/account/delete",
            &[("csrf_token", &page_csrf), ("password", PASSWORD)],
        )
        .await;
    r.assert(429);
    assert!(
        r.body.contains("id=\"form-error\">Too many attempts."),
        "{}",
        r.body
    );
    s.clock.advance(Duration::from_secs(2));
    api_delete(&mut b, Some(&csrf), PASSWORD).await.assert(204);
}

/// A login that checked the password while the account was being deleted must not leave a
/// session behind: the account is disabled first, and a login looks at the flag again once
/// its session exists (see `accounts::remove`). The window this guards is narrow (between
/// the revocation and the removal), so without the flag the test fails only now and then —
/// about one run in three here — rather than every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_racing_the_deletion_leave_no_session() {
    let s = std::sync::Arc::new(start().await);
    let mut owner = s.signed_up("ugo").await;
    let id = user_id(&s, "ugo").await.unwrap();
    let csrf = owner.csrf().await.unwrap();
    let mut logins = tokio::task::JoinSet::new();
    for i in 0..16 {
        let s = s.clone();
        logins.spawn(async move {
            let mut b = s.browser_with_ua(CHROME_UA);
            // Each from a network of its own (the test client is a trusted proxy): attempts
            // in flight count against their network, and this is not about throttling.
            let r = b
                .req("POST", "/api/login")
                .header("x-forwarded-for", &format!("198.51.100.{}", i + 1))
                .json(&json!({ "username": "ugo", "password": PASSWORD }))
                .send()
                .await;
            (r.status.as_u16(), b)
        });
    }
    api_delete(&mut owner, Some(&csrf), PASSWORD)
        .await
        .assert(204);
    while let Some(done) = logins.join_next().await {
        let (status, mut b) = done.unwrap();
        // Before: signed in (and then signed out by the deletion). During: disabled. After:
        // no such account. A full hashing pool answers 503.
        assert!(
            matches!(status, 200 | 401 | 403 | 503),
            "a login answers, whatever the order: {status}"
        );
        b.get("/api/session").await.assert(401);
    }
    assert_gone(&s, "ugo", &id).await;
}

/// `cloakroom user delete`, as an operation: it asks first, and only a yes deletes.
#[tokio::test]
async fn the_admin_deletes_a_user_after_confirmation() {
    let s = start().await;
    let mut laptop = s.signed_up("wim").await;
    let mut phone = s.logged_in("wim", ANDROID).await;
    let id = user_id(&s, "wim").await.unwrap();
    // As the admin command opens them: beside the running server, its session writes are
    // announced to the server's cache.
    let admin = Admin::new(Stores::open_existing(s.state.settings()).await.unwrap());

    let e = admin.user_delete("wim", |_| Ok(false)).await.unwrap_err();
    assert_eq!(e.to_string(), "not confirmed; wim was not deleted");
    laptop.get("/api/session").await.assert(200);

    let out = admin
        .user_delete("WIM", |name| {
            assert_eq!(name, "wim", "asked with the name as registered");
            Ok(true)
        })
        .await
        .unwrap();
    assert_eq!(out, "deleted user wim; ended 2 session(s)\n");
    assert_gone(&s, "wim", &id).await;
    assert_refused_everywhere(&mut laptop).await;
    assert_refused_everywhere(&mut phone).await;
    let e = admin.user_delete("wim", |_| Ok(true)).await.unwrap_err();
    assert!(e.to_string().contains("no user"), "{e}");

    // The question on the terminal: yes is the username typed again.
    let mut prompt = Vec::new();
    assert!(ask_to_delete("wim", &b"wim\n"[..], &mut prompt).unwrap());
    let prompt = String::from_utf8(prompt).unwrap();
    assert!(
        prompt.contains("Delete the account wim") && prompt.contains("Type the username"),
        "{prompt}"
    );
    assert!(ask_to_delete("wim", &b" WIM \n"[..], Vec::new()).unwrap());
    for no in [&b"y\n"[..], b"yes\n", b"\n", b""] {
        assert!(!ask_to_delete("wim", no, Vec::new()).unwrap(), "{no:?}");
    }
}

/// `cloakroom user delete` as a process: without a terminal it refuses unless `--yes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_delete_refuses_without_yes_when_nobody_can_confirm() {
    let s = start().await;
    let mut b = s.signed_up("xena").await;
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let run = move |args: &'static [&'static str]| {
        let (dir, env) = (dir.clone(), env.clone());
        tokio::task::spawn_blocking(move || cloakroom(&dir, &env, args, "xena\n"))
    };

    let (ok, out, err) = run(&["user", "delete", "xena"]).await.unwrap();
    assert!(!ok, "{out}");
    assert!(
        err.contains("not a terminal") && err.contains("--yes"),
        "{err}"
    );
    b.get("/api/session").await.assert(200);
    assert!(user_id(&s, "xena").await.is_some());

    let (ok, out, err) = run(&["user", "delete", "xena", "--yes"]).await.unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "deleted user xena; ended 1 session(s)\n");
    assert_refused_everywhere(&mut b).await;
    assert_eq!(user_id(&s, "xena").await, None);
    let (ok, _, err) = run(&["user", "delete", "xena", "--yes"]).await.unwrap();
    assert!(!ok && err.contains("no user"), "{err}");
    s.signed_up("xena").await;
}
