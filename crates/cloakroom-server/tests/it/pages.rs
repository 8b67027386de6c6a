//! The HTML pages: forms work without JavaScript, carry CSRF tokens, show errors inline, and
//! never redirect off-site.

use crate::support::{PASSWORD, hidden, start};

#[tokio::test]
async fn signup_form_lands_where_the_user_was_going() {
    let s = start().await;
    let mut b = s.browser();
    let r = b.get("/account/sessions").await;
    r.assert(303);
    assert_eq!(r.location(), "/login?next=%2Faccount%2Fsessions");
    let page = b.get("/signup?next=/account/sessions").await;
    page.assert(200);
    assert!(
        page.body.contains("<label for=\"username\">"),
        "labelled inputs"
    );
    assert_eq!(
        hidden(&page.body, "next").as_deref(),
        Some("/account/sessions")
    );
    let r = b
        .form(
            "/signup",
            &[
                ("username", "lena"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("next", "/account/sessions"),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/sessions");
    let devices = b.get("/account/sessions").await;
    devices.assert(200);
    assert!(devices.body.contains("This device"), "{}", devices.body);
    assert!(devices.body.contains("Chrome on Linux"));
    assert!(devices.body.contains("just now"));
}

#[tokio::test]
async fn login_errors_are_shown_inline_and_open_redirects_refused() {
    let s = start().await;
    s.signed_up("mona").await;
    let mut b = s.browser();
    let r = b
        .form(
            "/login",
            &[
                ("username", "mona"),
                ("password", "wrong password!!"),
                ("next", "/"),
            ],
        )
        .await;
    r.assert(401);
    assert!(r.body.contains("role=\"alert\""));
    assert!(r.body.contains("Invalid username or password."));
    assert!(r.body.contains("value=\"mona\""), "the username is kept");
    assert!(
        !r.body.contains("wrong password!!"),
        "the password is never echoed"
    );
    for evil in [
        "//evil.net/x",
        "https://evil.net",
        "/\\evil.net",
        "javascript:alert(1)",
    ] {
        let mut c = s.browser();
        let r = c
            .form(
                "/login",
                &[("username", "mona"), ("password", PASSWORD), ("next", evil)],
            )
            .await;
        r.assert(303);
        assert_eq!(r.location(), "/", "{evil}");
    }
    let page = b.get("/login?next=//evil.net").await;
    assert_eq!(hidden(&page.body, "next").as_deref(), Some("/"));
}

#[tokio::test]
async fn home_devices_revoke_and_logout_through_forms() {
    let s = start().await;
    let mut a = s.signed_up("nina").await;
    let mut phone = s
        .logged_in(
            "nina",
            "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
        )
        .await;
    let mut tablet = s
        .logged_in(
            "nina",
            "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) Version/17.5 Safari/604.1",
        )
        .await;
    let home = a.get("/").await;
    home.assert(200);
    assert!(home.body.contains("Hello, nina"));

    let page = a.get("/account/sessions").await;
    assert!(page.body.contains("Firefox on Android") && page.body.contains("Safari on iPad"));
    let phone_handle = phone.get("/api/session").await.json()["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let csrf = hidden(&page.body, "csrf_token").unwrap();

    // A form post without the token is refused with a page, not JSON.
    let r = a
        .form(&format!("/account/sessions/{phone_handle}/revoke"), &[])
        .await;
    r.assert(403);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("CSRF"));
    phone.get("/api/session").await.assert(200);

    let r = a
        .form(
            &format!("/account/sessions/{phone_handle}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/sessions?revoked=1");
    phone.get("/api/session").await.assert(401);
    assert!(
        a.get("/account/sessions?revoked=1")
            .await
            .body
            .contains("Signed out 1 device.")
    );
    // Issue 18: a second click (or a device signed out elsewhere meanwhile) is not an error.
    let r = a
        .form(
            &format!("/account/sessions/{phone_handle}/revoke"),
            &[("csrf_token", &csrf)],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/sessions?gone=1");
    assert!(
        a.get("/account/sessions?gone=1")
            .await
            .body
            .contains("That device was already signed out.")
    );

    let r = a
        .form("/account/sessions/revoke-others", &[("csrf_token", &csrf)])
        .await;
    r.assert(303);
    tablet.get("/api/session").await.assert(401);
    a.get("/api/session").await.assert(200);

    let csrf = a.page_csrf("/").await;
    let r = a.form("/logout", &[("csrf_token", &csrf)]).await;
    r.assert(303);
    assert_eq!(r.location(), "/login?notice=signed-out");
    assert!(a.cookie.is_none());
    a.get("/").await.assert(303);
}

#[tokio::test]
async fn password_page_changes_the_password_and_signs_out_elsewhere() {
    let s = start().await;
    let mut a = s.signed_up("olga").await;
    let mut other = s.logged_in("olga", "curl/8").await;
    let csrf = a.page_csrf("/account/password").await;
    let r = a
        .form(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", "wrong one here"),
                ("new_password", "another good phrase"),
                ("confirm", "another good phrase"),
            ],
        )
        .await;
    r.assert(403);
    assert!(r.body.contains("current password is wrong"));
    let r = a
        .form(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "another good phrase"),
                ("confirm", "different"),
            ],
        )
        .await;
    r.assert(422);
    let before = a.cookie.clone();
    let r = a
        .form(
            "/account/password",
            &[
                ("csrf_token", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "another good phrase"),
                ("confirm", "another good phrase"),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/password?changed=1");
    assert_ne!(a.cookie, before);
    assert!(
        a.get("/account/password?changed=1")
            .await
            .body
            .contains("1 other device was signed out")
    );
    other.get("/api/session").await.assert(401);
}

#[tokio::test]
async fn login_form_csrf_is_enforced_by_origin() {
    let s = start().await;
    s.signed_up("pia").await;
    let mut b = s.browser();
    let r = b
        .req("POST", "/login")
        .header("sec-fetch-site", "cross-site")
        .body(
            crate::support::url_encode(&[("username", "pia"), ("password", PASSWORD)]).into_bytes(),
            "application/x-www-form-urlencoded",
        )
        .send()
        .await;
    r.assert(403);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(b.cookie.is_none());
}

#[tokio::test]
async fn pages_escape_user_controlled_text() {
    let s = start().await;
    let mut b = s.browser_with_ua("<script>alert(1)</script>");
    b.post_json(
        "/api/signup",
        &serde_json::json!({ "username": "quinn", "password": PASSWORD }),
    )
    .await
    .assert(201);
    let page = b.get("/account/sessions").await;
    assert!(!page.body.contains("<script>"), "{}", page.body);
    let r = s
        .browser()
        .form(
            "/login",
            &[
                ("username", "<b>x</b>"),
                ("password", "nope nope nope"),
                ("next", "/"),
            ],
        )
        .await;
    assert!(!r.body.contains("<b>x</b>"));
    assert!(
        r.body.contains("&lt;b&gt;x&lt;/b&gt;") || r.body.contains("&#60;b&#62;"),
        "{}",
        r.body
    );
}

/// Issue 18: opening `http://127.0.0.1:PORT` when the public URL is `http://localhost:PORT`
/// loaded the page, and then every form on it was refused as cross-origin. A GET of a page at
/// another loopback spelling is sent to the public URL instead; API calls are left alone.
#[tokio::test]
async fn pages_at_another_loopback_spelling_go_to_the_public_url() {
    let s = crate::support::start_for_browser().await;
    let public = s.state.settings().public_origin.as_str().to_owned();
    let port = public.rsplit(':').next().unwrap().to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!(
            "http://127.0.0.1:{port}/login?next=%2Faccount%2Fsessions"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert_eq!(
        r.headers()["location"],
        format!("{public}/login?next=%2Faccount%2Fsessions").as_str()
    );
    let r = http
        .get(format!("http://127.0.0.1:{port}/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the API is not redirected");
    let r = http.get(format!("{public}/login")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the public URL itself is served");
}

/// Issue 18: a form posted from another origin got "request from a foreign origin refused",
/// which says nothing about what to fix. The page names the origin it came from and the one
/// expected.
#[tokio::test]
async fn a_foreign_origin_refusal_names_both_origins() {
    let s = crate::support::start().await;
    let mut b = s.browser();
    let r = b
        .req("POST", "/login")
        .header("origin", "http://127.0.0.1:8080")
        .without("sec-fetch-site")
        .body(
            b"username=a&password=b".to_vec(),
            "application/x-www-form-urlencoded",
        )
        .send()
        .await;
    r.assert(403);
    assert!(
        r.body.contains("it came from http://127.0.0.1:8080")
            && r.body.contains("this site is https://cloakroom.test"),
        "{}",
        r.body
    );
}

/// Issue 18: a browser asking for a page that does not exist got raw JSON.
#[tokio::test]
async fn browsers_get_a_404_page() {
    let s = crate::support::start().await;
    let mut b = s.browser();
    let r = b
        .req("GET", "/no/such/page")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await;
    r.assert(404);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{:?}",
        r.header("content-type")
    );
    assert!(r.body.contains("<h1>Page not found</h1>"), "{}", r.body);
    let r = b.get("/no/such/page").await;
    r.assert(404);
    assert_eq!(r.error_code(), "not_found", "an API client still gets JSON");
}

/// A query string or a path segment that does not parse is answered with a page like any
/// other error, not axum's plain-text 400.
#[tokio::test]
async fn unparsable_queries_and_paths_get_pages() {
    let s = crate::support::start().await;
    let mut b = s.signed_up("nils").await;
    let r = b.get("/login?next=%2Fa&next=%2Fb").await;
    r.assert(400);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{:?}: {}",
        r.header("content-type"),
        r.body
    );
    let devices = b.get("/account/sessions").await;
    let csrf = hidden(&devices.body, "csrf_token").unwrap();
    let r = b
        .form("/account/sessions/%FF/revoke", &[("csrf_token", &csrf)])
        .await;
    r.assert(404);
    assert!(
        r.header("content-type").unwrap().starts_with("text/html"),
        "{:?}: {}",
        r.header("content-type"),
        r.body
    );
    assert!(r.body.contains("That session does not exist"), "{}", r.body);
}
