//! Hostile cookies: refused deterministically, never a 500, never a store query for garbage.

use reqwest::StatusCode;

use crate::support::start;

#[tokio::test]
async fn hostile_cookies_are_anonymous_and_cost_no_store_query() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    let loads = app.store.loads();
    let huge = "A".repeat(6000);
    let cases = [
        format!("__Host-cloakroom={cookie}; __Host-cloakroom={cookie}"),
        format!("__Host-cloakroom={huge}"),
        "__Host-cloakroom=".to_owned(),
        "__Host-cloakroom=not-a-token".to_owned(),
        format!("__Host-cloakroom={}=", &cookie[..42]),
        format!("__Host-cloakroom=\"{cookie}\""),
        format!("__Host-cloakroom={}%41", &cookie[..41]),
        format!("__Host-cloakroom={cookie}x"),
    ];
    for case in &cases {
        let r = app.get("/me").raw_cookie(case).send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{case:.60}: {}", r.body);
        let r = app.get("/maybe").raw_cookie(case).send().await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "anonymous"),
            "{case:.60}"
        );
    }
    assert_eq!(
        app.store.loads(),
        loads,
        "a malformed or duplicated cookie reached the store"
    );
}

#[tokio::test]
async fn a_miscapitalised_prefix_is_someone_elses_cookie() {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    for name in [
        "__host-cloakroom",
        "__HOST-cloakroom",
        "__Host-Cloakroom",
        "cloakroom",
        "__Secure-cloakroom",
    ] {
        let r = app
            .get("/me")
            .raw_cookie(&format!("{name}={cookie}"))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
    }
}

#[tokio::test]
async fn duplicates_across_cookie_headers_are_refused_too() {
    let app = start().await;
    let (mine, _) = app.login("alice").await;
    let (theirs, _) = app.login("mallory").await;
    let r = app.get("/me").cookie(&mine).cookie(&theirs).send().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["message"].as_str().unwrap().contains("twice"));
}

#[tokio::test]
async fn non_utf8_and_oversized_cookie_headers_never_crash() {
    let app = start().await;
    let r = app
        .get("/maybe")
        .header("cookie", &format!("a={}", "b".repeat(16 * 1024)))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "anonymous");
}
