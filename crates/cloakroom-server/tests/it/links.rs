//! Download links over HTTP: `POST /api/links` and its rules, forward auth opening a link in
//! every dialect (once, exactly its URL, until it expires, while its maker's sessions stand),
//! every kind of bad link refused with a clear 4xx and never logged, a store that cannot
//! answer refusing the link, `cloakroom links create`, and the whole flow through real nginx.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_verify::{Verifier, VerifierConfig};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::procs::ServeProcess;
use crate::support::{
    Browser, DECISION_PATHS, ORIGIN, PASSWORD, Reply, TestServer, start, start_observed,
};

const APP: &str = "https://app.example.com";
const REPORT: &str = "https://app.example.com/files/report.pdf";

/// Asks for a link and returns the whole answer.
async fn ask(b: &mut Browser, body: &Value) -> Reply {
    b.post_json("/api/links", body).await
}

/// A link to `url` (201 expected); `ttl` and `single_use` as the API takes them.
async fn link(b: &mut Browser, url: &str, ttl: Option<u64>, single_use: bool) -> String {
    let mut body = json!({ "url": url, "single_use": single_use });
    if let Some(ttl) = ttl {
        body["ttl_seconds"] = ttl.into();
    }
    let r = ask(b, &body).await;
    r.assert(201);
    r.json()["url"].as_str().unwrap().to_owned()
}

/// The token in a link.
fn token_of(link: &str) -> String {
    link.split("cloakroom_link=").nth(1).unwrap().to_owned()
}

/// A JWT's (or link token's) decoded part: 0 the header, 1 the payload.
fn part(token: &str, i: usize) -> Value {
    let text = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
}

/// Forward auth asked at `path`, in nginx's dialect, about `method url`, by a client that
/// holds no session.
async fn nginx(s: &TestServer, path: &str, method: &str, url: &str) -> Reply {
    s.browser()
        .req("GET", path)
        .without("origin")
        .without("sec-fetch-site")
        .header("x-original-url", url)
        .header("x-original-method", method)
        .send()
        .await
}

/// The same in Traefik's and Caddy's dialect.
async fn forwarded(s: &TestServer, path: &str, method: &str, url: &str) -> Reply {
    let u = url::Url::parse(url).unwrap();
    let authority = match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap()),
        None => u.host_str().unwrap().to_owned(),
    };
    // The path and query as written (the parsed URL would have normalised them).
    let uri = &url[url.find(&authority).unwrap() + authority.len()..];
    s.browser()
        .req("GET", path)
        .without("origin")
        .without("sec-fetch-site")
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", u.scheme())
        .header("x-forwarded-host", &authority)
        .header("x-forwarded-uri", uri)
        .send()
        .await
}

/// A refusal: its status, the code in the body and in `X-Cloakroom-Link`, and no identity.
#[track_caller]
fn assert_link_refused(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.body);
    assert_eq!(r.error_code(), code, "{what}: {}", r.body);
    assert_eq!(
        r.header("x-cloakroom-link").as_deref(),
        Some(code),
        "{what}"
    );
    assert!(
        r.header("remote-user").is_none() && r.header("x-cloakroom-jwt").is_none(),
        "{what}: identity handed out"
    );
}

/// The link's answer let the request through as `user`, with a service JWT saying so.
#[track_caller]
fn assert_opened_as(r: &Reply, success: u16, user: &str, what: &str) -> Value {
    assert_eq!(r.status.as_u16(), success, "{what}: {}", r.body);
    for name in [
        "remote-user",
        "x-auth-request-user",
        "x-auth-request-preferred-username",
    ] {
        assert_eq!(r.header(name).as_deref(), Some(user), "{what}: {name}");
    }
    let jwt = r.header("x-cloakroom-jwt").expect("a service JWT");
    let claims = part(&jwt, 1);
    assert_eq!(claims["link"], true, "{what}: {claims}");
    assert_eq!(claims["preferred_username"], user, "{what}");
    claims
}

#[tokio::test]
async fn creating_a_link_takes_a_session_a_csrf_token_and_an_app_url() {
    let s = start().await;
    // No session: 401; and the CSRF rules of every unsafe API call.
    let mut anon = s.browser();
    let r = ask(&mut anon, &json!({ "url": REPORT })).await;
    r.assert(401);
    assert_eq!(r.error_code(), "unauthenticated");
    let mut alice = s.signed_up("alice").await;
    let r = alice
        .req("POST", "/api/links")
        .json(&json!({ "url": REPORT }))
        .send()
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "csrf_token_missing");
    let csrf = alice.csrf().await.unwrap();
    let r = alice
        .req("POST", "/api/links")
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .csrf(&csrf)
        .json(&json!({ "url": REPORT }))
        .send()
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "cross_origin_request");

    // The answer: the URL with the token appended, living 600 s unless asked otherwise.
    let r = ask(&mut alice, &json!({ "url": REPORT })).await;
    r.assert(201);
    let url = r.json()["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{REPORT}?cloakroom_link=ey")),
        "{url}"
    );
    let claims = part(&token_of(&url), 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert_eq!(claims["once"], true, "single use by default");
    assert_eq!(claims["url"], REPORT);
    assert_eq!(claims["aud"], ORIGIN);
    let expires = time::OffsetDateTime::from_unix_timestamp(claims["exp"].as_i64().unwrap())
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(r.json()["expires_at"], expires);
    assert_eq!(part(&token_of(&url), 0)["typ"], "cloakroom-link+jwt");
    // A query stays, and the token comes after it.
    let with_query = link(
        &mut alice,
        &format!("{REPORT}?v=2&lang=en"),
        Some(3600),
        false,
    )
    .await;
    assert!(
        with_query.starts_with(&format!("{REPORT}?v=2&lang=en&cloakroom_link=")),
        "{with_query}"
    );
    let claims = part(&token_of(&with_query), 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(claims["once"], false);

    // Lifetimes: 1 to 3600 seconds.
    for ttl in [json!(0), json!(3601), json!(86_400)] {
        let r = ask(&mut alice, &json!({ "url": REPORT, "ttl_seconds": ttl })).await;
        r.assert(400);
        assert_eq!(r.error_code(), "invalid_ttl", "{ttl}");
    }
    let r = ask(&mut alice, &json!({ "url": REPORT, "ttl_seconds": -1 })).await;
    r.assert(422);
    link(&mut alice, REPORT, Some(1), true).await;

    // Only the protected apps (and the public URL's own origin), exactly.
    for other in [
        "https://evil.example/files/report.pdf",
        "http://app.example.com/files/report.pdf",
        "https://app.example.com:8443/files/report.pdf",
        "https://x.app.example.com/files/report.pdf",
    ] {
        let r = ask(&mut alice, &json!({ "url": other })).await;
        r.assert(403);
        assert_eq!(r.error_code(), "origin_not_allowed", "{other}");
    }
    link(&mut alice, &format!("{ORIGIN}/exports/1.csv"), None, true).await;

    // URLs that cannot be bound to one exact resource.
    for bad in [
        "/files/report.pdf",
        "app.example.com/files/report.pdf",
        "ftp://app.example.com/files/report.pdf",
        "https://app.example.com/files/../admin",
        "https://app.example.com/files/%2e%2e/admin",
        "https://app.example.com/files/%2E%2e/admin",
        "https://app.example.com/files/%252e%252e/admin",
        "https://app.example.com/files/a%2fb",
        "https://app.example.com/files//report.pdf",
        "https://app.example.com/files/report.pdf#page=2",
        "https://alice:pw@app.example.com/files/report.pdf",
        "https://app.example.com/files/report.pdf?cloakroom_link=x",
        "https://app.example.com/files/r\u{e9}port.pdf",
    ] {
        let r = ask(&mut alice, &json!({ "url": bad })).await;
        r.assert(400);
        assert_eq!(r.error_code(), "invalid_url", "{bad}");
        assert!(
            r.json()["message"].as_str().unwrap().ends_with('.'),
            "{bad}"
        );
    }
}

/// The flow, in every dialect: the first fetch without a session is let through as the
/// link's maker (and the service JWT verifies and says `"link": true`); the second is
/// refused as used — 410 where the proxy passes statuses through, 403 with
/// `X-Cloakroom-Link: link_used` for nginx, whose `auth_request` passes nothing else.
#[tokio::test]
async fn a_single_use_link_opens_its_url_once_in_every_dialect() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let alice_id = alice.get("/api/session").await.json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in DECISION_PATHS {
        let success = if path == "/oauth2/auth" { 202 } else { 200 };
        for dialect in ["nginx", "forwarded"] {
            let what = format!("{path} ({dialect})");
            let url = link(&mut alice, REPORT, None, true).await;
            let check = |method: &'static str| {
                let url = url.clone();
                let s = &s;
                async move {
                    match dialect {
                        "nginx" => nginx(s, path, method, &url).await,
                        _ => forwarded(s, path, method, &url).await,
                    }
                }
            };
            let r = check("GET").await;
            let claims = assert_opened_as(&r, success, "alice", &what);
            assert_eq!(claims["sub"], alice_id.as_str(), "{what}");
            assert_eq!(claims["aud"], APP, "{what}");
            assert_eq!(
                claims["sid"],
                part(&token_of(&url), 1)["jti"],
                "{what}: the link's id"
            );
            let jwt = r.header("x-cloakroom-jwt").unwrap();
            let verified = crate::forward::verifier(&s, APP)
                .verify(&jwt)
                .await
                .unwrap();
            assert!(verified.link, "{what}");
            let r = check("GET").await;
            match dialect {
                "nginx" => assert_link_refused(&r, 403, "link_used", &what),
                _ => assert_link_refused(&r, 410, "link_used", &what),
            }
            assert!(
                r.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains("used already")
            );
        }
    }
    // A reusable link works until it expires.
    let url = link(&mut alice, REPORT, None, false).await;
    for _ in 0..3 {
        assert_opened_as(
            &nginx(&s, "/auth/verify", "GET", &url).await,
            200,
            "alice",
            "reusable",
        );
    }
    // HEAD is a fetch too: it uses a single-use link up.
    let url = link(&mut alice, REPORT, None, true).await;
    assert_opened_as(
        &nginx(&s, "/auth/verify", "HEAD", &url).await,
        200,
        "alice",
        "HEAD",
    );
    assert_link_refused(
        &forwarded(&s, "/auth/verify", "GET", &url).await,
        410,
        "link_used",
        "GET after HEAD",
    );
}

/// Sixteen fetches of one single-use link at once: exactly one gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fetches_of_a_single_use_link_let_one_through() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let url = link(&mut alice, REPORT, None, true).await;
    let uri = url.trim_start_matches(APP).to_owned();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(16));
    let mut fetches = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (base, uri, barrier) = (s.base.clone(), uri.clone(), barrier.clone());
        fetches.spawn(async move {
            let request = reqwest::Client::new()
                .get(format!("{base}/auth/verify"))
                .header("x-forwarded-method", "GET")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "app.example.com")
                .header("x-forwarded-uri", uri);
            barrier.wait().await;
            let r = request.send().await.unwrap();
            let code = r.headers().get("x-cloakroom-link").cloned();
            (r.status().as_u16(), code)
        });
    }
    let mut statuses = Vec::new();
    while let Some(answer) = fetches.join_next().await {
        statuses.push(answer.unwrap());
    }
    let through = statuses.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(through, 1, "{statuses:?}");
    for (status, code) in statuses.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 410, "{statuses:?}");
        assert_eq!(code.as_ref().unwrap(), "link_used");
    }
}

/// A link opens exactly its URL, for reading: another file, another query, another origin or a
/// write is refused — and a refusal never uses the link up.
#[tokio::test]
async fn a_link_opens_exactly_its_url_and_nothing_else() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let url = link(&mut alice, &format!("{APP}/files/a.pdf?v=2"), None, true).await;
    let token = token_of(&url);
    for (method, other) in [
        (
            "GET",
            format!("{APP}/files/b.pdf?v=2&cloakroom_link={token}"),
        ),
        (
            "GET",
            format!("{APP}/files/a.pdf?v=3&cloakroom_link={token}"),
        ),
        ("GET", format!("{APP}/files/a.pdf?cloakroom_link={token}")),
        (
            "GET",
            format!("{APP}/files/a.pdf?v=2&x=1&cloakroom_link={token}"),
        ),
        (
            "GET",
            format!("{APP}/files/a.pdf/?v=2&cloakroom_link={token}"),
        ),
        (
            "GET",
            format!("{APP}/files/A.pdf?v=2&cloakroom_link={token}"),
        ),
        (
            "GET",
            format!("https://other.example.com/files/a.pdf?v=2&cloakroom_link={token}"),
        ),
        ("POST", url.clone()),
        ("PUT", url.clone()),
        ("DELETE", url.clone()),
        ("OPTIONS", url.clone()),
    ] {
        let what = format!("{method} {other}");
        assert_link_refused(
            &forwarded(&s, "/auth/verify", method, &other).await,
            403,
            "link_not_for_this_request",
            &what,
        );
        assert_link_refused(
            &nginx(&s, "/auth/verify", method, &other).await,
            403,
            "link_not_for_this_request",
            &what,
        );
    }
    // Where the parameter stands is not part of the binding; the link is still unused.
    let moved = format!("{APP}/files/a.pdf?cloakroom_link={token}&v=2");
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &moved).await,
        200,
        "alice",
        "moved",
    );
}

/// A link is refused once it has expired (the clock is the server's, moved by the test).
#[tokio::test]
async fn a_link_is_refused_after_its_expiry() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let once = link(&mut alice, REPORT, Some(60), true).await;
    let reusable = link(&mut alice, REPORT, Some(60), false).await;
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &reusable).await,
        200,
        "alice",
        "fresh",
    );
    s.clock.advance(Duration::from_secs(59));
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &reusable).await,
        200,
        "alice",
        "59 s",
    );
    s.clock.advance(Duration::from_secs(1));
    for url in [&once, &reusable] {
        let r = forwarded(&s, "/auth/verify", "GET", url).await;
        assert_link_refused(&r, 410, "link_expired", "expired");
        assert!(r.json()["message"].as_str().unwrap().contains("expired"));
        assert_link_refused(
            &nginx(&s, "/auth/verify", "GET", url).await,
            403,
            "link_expired",
            "expired, nginx",
        );
    }
}

/// A link is its maker's access lent out: it dies when the maker signs out everywhere (or
/// of all other devices), changes the password, is disabled or deleted — but not with a
/// plain sign-out of one device.
#[tokio::test]
async fn a_link_dies_with_its_makers_sessions() {
    let s = start().await;
    let mut laptop = s.signed_up("alice").await;
    let mut phone = s
        .logged_in("alice", "Mozilla/5.0 (Android 14; Mobile) Firefox/128.0")
        .await;

    let survives = link(&mut laptop, REPORT, None, false).await;
    phone.post_json("/api/logout", &json!({})).await.assert(204);
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &survives).await,
        200,
        "alice",
        "after one sign-out",
    );

    let url = link(&mut laptop, REPORT, None, false).await;
    laptop
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await
        .assert(200);
    for dead in [&url, &survives] {
        let r = forwarded(&s, "/auth/verify", "GET", dead).await;
        assert_link_refused(&r, 410, "link_revoked", "after signing out elsewhere");
        assert!(r.json()["message"].as_str().unwrap().contains("withdrawn"));
    }

    let url = link(&mut laptop, REPORT, None, false).await;
    let r = laptop
        .post_json(
            "/api/password",
            &json!({ "current_password": PASSWORD, "new_password": "a brand new passphrase here" }),
        )
        .await;
    r.assert(200);
    assert_link_refused(
        &nginx(&s, "/auth/verify", "GET", &url).await,
        403,
        "link_revoked",
        "after a password change",
    );

    let url = link(&mut laptop, REPORT, None, false).await;
    let store = s.state.account_store().clone();
    let id = cloakroom_core::UserId::new(
        laptop.get("/api/session").await.json()["user"]["id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    store.set_disabled(&id, true).await.unwrap();
    assert_link_refused(
        &forwarded(&s, "/auth/verify", "GET", &url).await,
        410,
        "link_revoked",
        "disabled",
    );
    store.set_disabled(&id, false).await.unwrap();
    assert_opened_as(
        &forwarded(&s, "/auth/verify", "GET", &url).await,
        200,
        "alice",
        "enabled again",
    );
    store.delete(&id).await.unwrap();
    assert_link_refused(
        &forwarded(&s, "/auth/verify", "GET", &url).await,
        410,
        "link_revoked",
        "deleted",
    );
}

/// A request that carries the link parameter is decided by the link, whoever is signed in:
/// a colleague opens the file as its sharer, and a bad link is refused even with a session.
#[tokio::test]
async fn the_link_decides_even_beside_a_session() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let mut bob = s.signed_up("bob").await;
    let url = link(&mut alice, REPORT, None, true).await;
    async fn ask(b: &mut Browser, url: &str) -> Reply {
        b.req("GET", "/auth/verify")
            .without("origin")
            .without("sec-fetch-site")
            .header("x-original-url", url)
            .send()
            .await
    }
    assert_opened_as(
        &ask(&mut bob, &url).await,
        200,
        "alice",
        "bob opens alice's link",
    );
    assert_link_refused(
        &ask(&mut bob, &url).await,
        403,
        "link_used",
        "used, bob signed in",
    );
    // Without the parameter, bob is bob.
    let r = ask(&mut bob, REPORT).await;
    r.assert(200);
    assert_eq!(r.header("remote-user").as_deref(), Some("bob"));
}

/// Every kind of bad link gets a clear 4xx, in both dialects, before any store is asked.
#[tokio::test]
async fn bad_links_get_a_clear_4xx() {
    let s = start().await;
    let mut alice = s.signed_up("alice").await;
    let good = token_of(&link(&mut alice, REPORT, None, false).await);
    let header = part(&good, 0);
    let kid = header["kid"].as_str().unwrap().to_owned();
    let payload = good.split('.').nth(1).unwrap().to_owned();
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

    // A reset token of this very server, signed by its own link key: the wrong type.
    let links = cloakroom_server::tokens::links::Links::open(
        s.dir.path(),
        cloakroom_core::origin::Origin::parse(ORIGIN).unwrap(),
        Duration::from_secs(1800),
        cloakroom_core::Clock::now(&s.clock),
    )
    .unwrap();
    let user = cloakroom_core::UserId::new("u1").unwrap();
    let hash = cloakroom_core::accounts::PasswordHash::new("$argon2id$x".into());
    let reset = cloakroom_core::link::PasswordReset::new(
        user.clone(),
        cloakroom_core::link::ResetFingerprint::of(&user, &hash, 0),
    );
    let (_, reset) = links
        .reset_url(&reset, cloakroom_core::Clock::now(&s.clock))
        .unwrap();
    // HS256 under our kid, keyed with the public key (the classic confusion attack).
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hs_header = b64(&json!({ "alg": "HS256", "typ": "cloakroom-link+jwt", "kid": kid }));
    let hs_input = format!("{hs_header}.{payload}");
    let hs = format!(
        "{hs_input}.{}",
        URL_SAFE_NO_PAD.encode(hmac_sha256(
            jwks.to_string().as_bytes(),
            hs_input.as_bytes()
        ))
    );
    let none = format!(
        "{}.{payload}.",
        b64(&json!({ "alg": "none", "typ": "cloakroom-link+jwt", "kid": kid }))
    );
    let typ_jwt = {
        let sig = good.rsplit('.').next().unwrap();
        format!(
            "{}.{payload}.{sig}",
            b64(&json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid }))
        )
    };
    let tampered = {
        let mut claims = part(&good, 1);
        claims["url"] = format!("{APP}/admin").into();
        let sig = good.rsplit('.').next().unwrap();
        format!("{}.{}.{sig}", good.split('.').next().unwrap(), b64(&claims))
    };
    let foreign = {
        let dir = tempfile::tempdir().unwrap();
        let other = cloakroom_server::tokens::links::Links::open(
            dir.path(),
            cloakroom_core::origin::Origin::parse(ORIGIN).unwrap(),
            Duration::from_secs(1800),
            cloakroom_core::Clock::now(&s.clock),
        )
        .unwrap();
        let target = cloakroom_core::link::LinkTarget::parse(REPORT).unwrap();
        let d = cloakroom_core::link::Download::new(user.clone(), target, false, 0);
        other
            .mint(
                &d,
                Duration::from_secs(600),
                cloakroom_core::Clock::now(&s.clock),
            )
            .unwrap()
            .token
            .expose()
            .to_owned()
    };
    let tokens = [
        ("garbage", "not-a-token".to_owned()),
        ("truncated", good[..good.len() - 10].to_owned()),
        ("two parts", good.rsplit_once('.').unwrap().0.to_owned()),
        ("oversized", "A".repeat(4097)),
        ("a reset token", reset.token.expose().to_owned()),
        ("typ JWT", typ_jwt),
        ("alg none", none),
        ("HS256 under our kid", hs),
        ("tampered", tampered),
        ("another deployment's", foreign),
        ("empty", String::new()),
    ];
    for (what, token) in &tokens {
        let url = format!("{REPORT}?cloakroom_link={token}");
        assert_link_refused(
            &forwarded(&s, "/auth/verify", "GET", &url).await,
            400,
            "invalid_link",
            what,
        );
        assert_link_refused(
            &nginx(&s, "/api/verify", "GET", &url).await,
            403,
            "invalid_link",
            what,
        );
    }
    // Requests that cannot carry a link at all: traversal, plain or encoded, and two tokens.
    for path in [
        "/files/../admin",
        "/files/%2e%2e/admin",
        "/files/%2E%2E/admin",
        "/files/.%2e/admin",
        "/files/%252e%252e/admin",
        "/files/..%2fadmin",
        "/files/%2e%2e%2fadmin",
        "/files/./report.pdf",
    ] {
        let url = format!("{APP}{path}?cloakroom_link={good}");
        assert_link_refused(
            &forwarded(&s, "/auth/verify", "GET", &url).await,
            400,
            "invalid_link",
            path,
        );
        let r = nginx(&s, "/auth/verify", "GET", &url).await;
        assert_link_refused(&r, 403, "invalid_link", path);
    }
    let twice = format!("{REPORT}?cloakroom_link={good}&cloakroom_link={good}");
    assert_link_refused(
        &forwarded(&s, "/auth/verify", "GET", &twice).await,
        400,
        "invalid_link",
        "two tokens",
    );
    // The good one still works: none of that used it.
    assert_opened_as(
        &nginx(
            &s,
            "/auth/verify",
            "GET",
            &format!("{REPORT}?cloakroom_link={good}"),
        )
        .await,
        200,
        "alice",
        "good",
    );
}

/// HMAC-SHA-256 (RFC 2104), for forging an HS256 token in a test.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// A session store that cannot answer: the link is refused (503), never let through.
#[tokio::test]
async fn a_store_that_cannot_answer_refuses_the_link() {
    let (s, store) = start_observed().await;
    let mut alice = s.signed_up("alice").await;
    let once = link(&mut alice, REPORT, None, true).await;
    let reusable = link(&mut alice, REPORT, None, false).await;
    store.set_unavailable(true);
    for url in [&once, &reusable] {
        let r = nginx(&s, "/auth/verify", "GET", url).await;
        r.assert(503);
        assert!(r.header("remote-user").is_none() && r.header("x-cloakroom-jwt").is_none());
    }
    store.set_unavailable(false);
    // The refused attempt did not use the single-use link up.
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &once).await,
        200,
        "alice",
        "store back",
    );
}

/// `cloakroom links create` makes the same link for an operator; the running server opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_make_links_with_the_cli() {
    let s = start().await;
    s.signed_up("alice").await;
    let mut env = s.env.clone();
    env.push(("CLOAKROOM_PUBLIC_URL".into(), ORIGIN.into()));
    env.push(("CLOAKROOM_APP_ORIGINS".into(), format!("[\"{APP}\"]")));
    let dir = s.dir.path().to_owned();
    let run = move |args: Vec<&'static str>| {
        let (dir, env) = (dir.clone(), env.clone());
        tokio::task::spawn_blocking(move || crate::cli::cloakroom(&dir, &env, &args, ""))
    };
    let (ok, out, err) = run(vec![
        "links", "create", REPORT, "--ttl", "10m", "--user", "alice",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    let url = out.lines().next().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{REPORT}?cloakroom_link=")),
        "{out}"
    );
    assert!(out.contains("as alice, once, until"), "{out}");
    let claims = part(&token_of(&url), 1);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(
        !err.contains(&token_of(&url)),
        "the token was logged: {err}"
    );
    assert_opened_as(
        &nginx(&s, "/auth/verify", "GET", &url).await,
        200,
        "alice",
        "CLI link",
    );
    assert_link_refused(
        &nginx(&s, "/auth/verify", "GET", &url).await,
        403,
        "link_used",
        "CLI link again",
    );

    let (ok, out, err) = run(vec![
        "links",
        "create",
        REPORT,
        "--ttl",
        "90s",
        "--reusable",
        "--user",
        "alice",
    ])
    .await
    .unwrap();
    assert!(ok, "{err}");
    let url = out.lines().next().unwrap().to_owned();
    assert_eq!(part(&token_of(&url), 1)["once"], false);
    for _ in 0..2 {
        assert_opened_as(
            &nginx(&s, "/auth/verify", "GET", &url).await,
            200,
            "alice",
            "reusable CLI link",
        );
    }

    for (args, says) in [
        (
            vec!["links", "create", REPORT, "--user", "nobody"],
            "no user",
        ),
        (
            vec!["links", "create", REPORT, "--ttl", "2h", "--user", "alice"],
            "1 hour",
        ),
        (
            vec!["links", "create", REPORT, "--ttl", "0", "--user", "alice"],
            "1 second",
        ),
        (
            vec![
                "links",
                "create",
                "https://evil.example/x",
                "--user",
                "alice",
            ],
            "app_origins",
        ),
        (
            vec![
                "links",
                "create",
                "https://app.example.com/a/../b",
                "--user",
                "alice",
            ],
            "'..'",
        ),
        (vec!["links", "create", REPORT], "--user"),
    ] {
        let (ok, out, err) = run(args.clone()).await.unwrap();
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Nothing a server logs holds a link's token: not when it is made, used, used again, or
/// presented broken — while the events that say so are there, naming the link by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_tokens_never_reach_the_log() {
    let server = ServeProcess::start(
        |port| vec!["--listen".into(), format!("127.0.0.1:{port}")],
        &[("CLOAKROOM_LOG", "debug")],
    )
    .await;
    let public = format!("http://localhost:{}", server.port);
    let client = cloakroom_testkit::http::Client::new(&server.base, &public);
    let mut b = Browser::new(client).csrf_from("/api/session", "csrf_token");
    b.post_json(
        "/api/signup",
        &json!({ "username": "alice", "password": PASSWORD }),
    )
    .await
    .assert(201);
    let target = format!("{public}/files/report.pdf");
    let url = link(&mut b, &target, None, true).await;
    let token = token_of(&url);
    let check = |url: String| {
        let base = server.base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/auth/verify"))
                .header("x-original-url", url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(check(url.clone()).await, 200);
    assert_eq!(check(url.clone()).await, 403);
    let broken = &token[..token.len() - 5];
    assert_eq!(
        check(format!("{target}?cloakroom_link={broken}")).await,
        403
    );
    assert_eq!(
        check(format!("{target}x?cloakroom_link={token}")).await,
        403
    );
    let jti = part(&token, 1)["jti"].as_str().unwrap().to_owned();
    let log = server.stop();
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        token.as_str(),
        broken,
        signature,
        token.split('.').nth(1).unwrap(),
    ] {
        assert!(
            !log.contains(secret),
            "the log holds a link token (or part of one):\n{log}"
        );
    }
    for event in [
        "link_created",
        "link_opened",
        "link_refused",
        "link_used",
        "invalid_link",
    ] {
        assert!(log.contains(event), "no {event} in the log:\n{log}");
    }
    assert!(
        log.contains(&jti),
        "the events name the link by its id:\n{log}"
    );
}

/// The whole flow through real nginx with the example configuration: a link fetched
/// without a cookie reaches the app as its maker — without the token in the URL the app sees
/// — and is refused cleanly after use, after expiry, for another file and for a traversal
/// (`auth_request` passes only 401 and 403 on; the configuration turns the reason back into
/// 410 or 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_through_nginx() {
    let Some((s, port, _nginx, _dir)) = crate::proxies::behind(crate::proxies::Proxy::Nginx).await
    else {
        return;
    };
    let proxy = format!("http://127.0.0.1:{port}");
    let mut alice = crate::proxies::signed_up_through(&s, port, "alice").await;
    let url = link(
        &mut alice,
        &format!("{proxy}/files/report.pdf?v=2"),
        None,
        true,
    )
    .await;
    let token = token_of(&url);

    // Fetched as curl would: no cookie, no browser headers.
    let curl = reqwest::Client::new();
    let r = curl.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(
        echoed["path"], "/files/report.pdf?v=2",
        "the app sees the URL without the token"
    );
    assert_eq!(echoed["headers"]["remote-user"], "alice");
    let jwt = echoed["headers"]["x-cloakroom-jwt"].as_str().unwrap();
    let claims = Verifier::new(
        VerifierConfig::new(&format!("{proxy}/.well-known/jwks.json"), &proxy, &proxy).unwrap(),
    )
    .verify(jwt)
    .await
    .unwrap();
    assert!(claims.link);
    assert!(
        !echoed.to_string().contains(&token),
        "the token reached the app: {echoed}"
    );

    // Used: 410 with a sentence, and the app is not reached.
    let r = curl.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("used already"));

    // Another file with the same token, a traversal, a broken token.
    let reusable = token_of(&link(&mut alice, &format!("{proxy}/files/a.pdf"), None, false).await);
    let r = curl
        .get(format!("{proxy}/files/b.pdf?cloakroom_link={reusable}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // Sent raw: a client library would resolve even `%2e%2e` (as WHATWG URLs do).
    for traversal in ["..", "%2e%2e", "%2E%2e", ".%2e", "%252e%252e"] {
        let (status, answer) = raw_get(
            port,
            &format!("/files/{traversal}/files/a.pdf?cloakroom_link={reusable}"),
        )
        .await;
        assert_eq!(status, 400, "{traversal}: {answer}");
        assert!(answer.contains("not valid"), "{traversal}: {answer}");
    }
    let r = curl
        .get(format!(
            "{proxy}/files/a.pdf?cloakroom_link={}",
            &reusable[..40]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = curl
        .get(format!("{proxy}/files/a.pdf?cloakroom_link={reusable}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        200,
        "none of that used the reusable link up"
    );

    // Expired: 410.
    s.clock.advance(Duration::from_secs(601));
    let r = curl
        .get(format!("{proxy}/files/a.pdf?cloakroom_link={reusable}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert!(r.text().await.unwrap().contains("expired"));
    // Without a link, the proxy still sends a visitor to the login page.
    let r = curl
        .get(format!("{proxy}/files/a.pdf"))
        .send()
        .await
        .unwrap();
    assert!(r.url().path().starts_with("/login"), "{}", r.url());
}

/// A GET with the request line exactly as given (a client library would normalise `..`):
/// the status and the body.
async fn raw_get(port: u16, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request =
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Through Caddy with the example Caddyfile: `forward_auth` passes Cloakroom's refusal on as
/// it is, so a used link is a 410 with no mapping; the app does see the token (Caddy 2.6 has no
/// way to drop one query parameter — the README says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_links_through_caddy() {
    let Some((s, port, _caddy, _dir)) = crate::proxies::behind(crate::proxies::Proxy::Caddy).await
    else {
        return;
    };
    let proxy = format!("http://127.0.0.1:{port}");
    let mut alice = crate::proxies::signed_up_through(&s, port, "alice").await;
    let url = link(&mut alice, &format!("{proxy}/files/report.pdf"), None, true).await;
    let curl = reqwest::Client::new();
    let r = curl.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["remote-user"], "alice");
    assert!(
        echoed["path"]
            .as_str()
            .unwrap()
            .starts_with("/files/report.pdf?cloakroom_link=")
    );
    let r = curl.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 410);
    assert_eq!(r.headers()["x-cloakroom-link"], "link_used");
    let token = token_of(&url);
    let r = curl
        .get(format!("{proxy}/files/other.pdf?cloakroom_link={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}
