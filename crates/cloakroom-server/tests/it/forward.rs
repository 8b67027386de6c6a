//! Forward auth and service JWTs over HTTP: every dialect's status logic, identity headers,
//! the JWT checked by our verifier and by an independent one (PyJWT), caching that never
//! delays a revocation, forwarded CSRF, and key rotation in a running server.

use std::time::Duration;

use cloakroom_core::Clock;
use cloakroom_testkit::ObservedStore;
use cloakroom_verify::{Verifier, VerifierConfig, VerifyError};
use serde_json::json;

use crate::procs::require;
use crate::support::{
    Browser, ORIGIN, PASSWORD, Reply, TestServer, hidden, start, start_observed, start_with,
};

const APP: &str = "https://app.example.com";

pub(crate) fn nginx_style<'a>(
    b: &'a mut Browser,
    method: &str,
    url: &str,
) -> crate::support::Req<'a> {
    b.req("GET", "/auth/verify")
        .without("origin")
        .without("sec-fetch-site")
        .header("x-original-url", url)
        .header("x-original-method", method)
}

fn traefik_style<'a>(
    b: &'a mut Browser,
    path: &str,
    method: &str,
    html: bool,
) -> crate::support::Req<'a> {
    let r = b
        .req("GET", path)
        .without("origin")
        .without("sec-fetch-site")
        .header("x-forwarded-method", method)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-uri", "/orders/7?x=1");
    if html {
        r.header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
    } else {
        r.header("accept", "application/json")
    }
}

pub fn verifier(s: &TestServer, audience: &str) -> Verifier {
    Verifier::new(
        VerifierConfig::new(
            &format!("{}/.well-known/jwks.json", s.base),
            ORIGIN,
            audience,
        )
        .unwrap()
        .with_min_refresh_interval(Duration::ZERO),
    )
}

#[tokio::test]
async fn refusals_take_the_shape_each_proxy_expects() {
    let s = start().await;
    let mut b = s.browser();
    // nginx: 401 with the login URL to redirect to, and `rd` pointing back.
    let r = nginx_style(&mut b, "GET", "https://app.example.com/orders/7?x=1")
        .send()
        .await;
    r.assert(401);
    assert_eq!(
        r.location(),
        format!("{ORIGIN}/login?rd=https%3A%2F%2Fapp.example.com%2Forders%2F7%3Fx%3D1")
    );
    // Traefik/Caddy: a browser is redirected (302 for safe methods, 303 for others)…
    let r = traefik_style(&mut b, "/api/authz/forward-auth", "GET", true)
        .send()
        .await;
    r.assert(302);
    assert!(r.location().starts_with(&format!(
        "{ORIGIN}/login?rd=https%3A%2F%2Fapp.example.com%2Forders%2F7"
    )));
    traefik_style(&mut b, "/api/authz/forward-auth", "POST", true)
        .send()
        .await
        .assert(303);
    // …an API client gets 401.
    traefik_style(&mut b, "/api/authz/forward-auth", "GET", false)
        .send()
        .await
        .assert(401);
    // Direct calls and the other compatible paths.
    b.req("GET", "/auth/verify").send().await.assert(401);
    nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(401);
    for path in ["/api/authz/auth-request", "/api/verify"] {
        let r = b
            .req("GET", path)
            .header("x-original-url", "https://app.example.com/")
            .send()
            .await;
        r.assert(401);
        assert!(r.location().contains("/login?rd="));
    }
    b.req("GET", "/oauth2/auth").send().await.assert(401);
    // Any method is accepted on the verify endpoint itself.
    b.req("POST", "/auth/verify").send().await.assert(401);
    b.req("HEAD", "/auth/verify").send().await.assert(401);
    // Garbage in the forwarding headers is a clear 400, not a decision.
    let r = b
        .req("GET", "/auth/verify")
        .header("x-original-url", "not a url")
        .send()
        .await;
    r.assert(400);
    let r = b
        .req("GET", "/auth/verify")
        .header("x-forwarded-host", "evil.net/@app")
        .send()
        .await;
    r.assert(400);
}

#[tokio::test]
async fn a_valid_session_gets_identity_headers_and_a_verifiable_service_jwt() {
    let s = start().await;
    let mut b = s.signed_up("alice").await;
    let handle = b.get("/api/session").await.json()["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = nginx_style(&mut b, "GET", "https://app.example.com/orders")
        .send()
        .await;
    r.assert(200);
    for h in ["remote-user", "x-auth-request-user", "remote-name"] {
        assert_eq!(r.header(h).as_deref(), Some("alice"), "{h}");
    }
    assert!(r.header("remote-email").is_none(), "no email is known");
    let token = r.header("x-cloakroom-jwt").unwrap();
    assert!(
        !token.contains(b.cookie.as_deref().unwrap()),
        "the session token must never be in the JWT"
    );
    let claims = verifier(&s, APP).verify(&token).await.unwrap();
    assert_eq!(claims.iss, ORIGIN);
    assert_eq!(claims.aud, APP);
    assert_eq!(claims.preferred_username, "alice");
    assert_eq!(claims.sid, handle);
    assert_eq!(claims.exp - claims.iat, 60);
    // The token is bound to its app: another app refuses it.
    let other = verifier(&s, "https://other.example.com")
        .verify(&token)
        .await
        .unwrap_err();
    assert!(matches!(other, VerifyError::WrongAudience), "{other:?}");

    // oauth2-proxy's contract: 202 and X-Auth-Request-* headers.
    let r = b
        .req("GET", "/oauth2/auth")
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    r.assert(202);
    assert_eq!(r.header("x-auth-request-user").as_deref(), Some("alice"));
    let info = b.get("/oauth2/userinfo").await;
    info.assert(200);
    assert_eq!(info.json()["preferredUsername"], "alice");
}

#[tokio::test]
async fn revocation_takes_effect_on_the_very_next_check_despite_the_token_cache() {
    let s = start().await;
    let mut a = s.signed_up("bob").await;
    let mut phone = s.logged_in("bob", "curl/8").await;
    let first = nginx_style(&mut phone, "GET", "https://app.example.com/")
        .send()
        .await;
    first.assert(200);
    let again = nginx_style(&mut phone, "GET", "https://app.example.com/")
        .send()
        .await;
    assert_eq!(
        first.header("x-cloakroom-jwt"),
        again.header("x-cloakroom-jwt"),
        "the token is reused while fresh"
    );
    a.post_json("/api/sessions/revoke-others", &json!({}))
        .await
        .assert(200);
    nginx_style(&mut phone, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(401);
    // Logout, too.
    nginx_style(&mut a, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(200);
    a.post_json("/api/logout", &json!({})).await.assert(204);
    let mut replay = s.browser();
    replay.cookie = Some(first.header("x-cloakroom-jwt").unwrap()); // not even a cookie shape
    nginx_style(&mut replay, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(401);
}

#[tokio::test]
async fn cached_tokens_are_reminted_after_half_their_life() {
    let s = start().await;
    let mut b = s.signed_up("carl").await;
    let t1 = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    s.clock.advance(Duration::from_secs(29));
    let t2 = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    assert_eq!(t1, t2);
    s.clock.advance(Duration::from_secs(2));
    let t3 = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    assert_ne!(t1, t3, "past half its life, a fresh token is minted");
    // A different app gets its own token.
    let other = nginx_style(&mut b, "GET", "https://other.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    assert_ne!(other, t3);
}

/// Issue 10: the forwarded request is parsed and its CSRF rule checked before the session is
/// looked at, so a request refused with 400 or 403 costs the store nothing.
#[tokio::test]
async fn refused_forward_requests_never_reach_the_store() {
    // Without the session cache, so that an accepted check shows as a load.
    let (s, observed) = crate::support::start_observed_with(|raw| {
        raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Off);
    })
    .await;
    let mut b = s.signed_up("ivy").await;
    let calls = |o: &ObservedStore| (o.loads(), o.writes());
    let before = calls(&observed);
    for bad in ["not a url", "javascript:alert(1)", "https://"] {
        let r = nginx_style(&mut b, "GET", bad).send().await;
        r.assert(400);
        assert_eq!(r.error_code(), "forward_auth");
    }
    let r = nginx_style(&mut b, "POST", "https://app.example.com/x")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "forward_auth");
    let r = traefik_style(&mut b, "/api/authz/forward-auth", "DELETE", false)
        .header("origin", "https://evil.example.net")
        .send()
        .await;
    r.assert(403);
    assert_eq!(
        calls(&observed),
        before,
        "no store call for a refused request"
    );
    // The counters do see a request that gets as far as the session.
    nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .assert(200);
    assert!(
        observed.loads() > before.0,
        "an accepted check loads the session"
    );
}

#[tokio::test]
async fn forward_auth_checks_rarely_write_to_the_store() {
    let (s, observed) = start_observed().await;
    let mut b = s.signed_up("dora").await;
    let before = observed.writes();
    for _ in 0..1000 {
        nginx_style(&mut b, "GET", "https://app.example.com/")
            .send()
            .await
            .assert(200);
    }
    assert_eq!(
        observed.writes(),
        before,
        "checks within the touch interval write nothing"
    );
    s.clock.advance(Duration::from_secs(61));
    for _ in 0..100 {
        nginx_style(&mut b, "GET", "https://app.example.com/")
            .send()
            .await
            .assert(200);
    }
    assert_eq!(
        observed.writes(),
        before + 1,
        "one throttled touch after the interval"
    );
}

#[tokio::test]
async fn unsafe_forwarded_requests_from_other_sites_are_refused() {
    let s = start().await;
    let mut b = s.signed_up("erik").await;
    fn post(b: &mut Browser) -> crate::support::Req<'_> {
        b.req("GET", "/auth/verify")
            .without("origin")
            .without("sec-fetch-site")
            .header("x-original-url", "https://app.example.com/transfer")
            .header("x-original-method", "POST")
    }
    let r = post(&mut b)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await;
    r.assert(403);
    assert!(r.header("remote-user").is_none());
    post(&mut b)
        .header("origin", "https://evil.example.net")
        .send()
        .await
        .assert(403);
    post(&mut b)
        .header("origin", APP)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .assert(200);
    // Safe methods are never blocked by this rule (top-level navigation from other sites).
    nginx_style(&mut b, "GET", "https://app.example.com/")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .assert(200);
    // Non-browser clients (no Fetch Metadata, no Origin) pass on a valid session.
    post(&mut b).send().await.assert(200);
}

#[tokio::test]
async fn login_honours_rd_only_for_allowed_hosts() {
    let s = start().await;
    let mut b = s.browser();
    let page = b
        .get("/login?rd=https%3A%2F%2Fcloakroom.test%2Fapp%2Fx")
        .await;
    assert_eq!(
        crate::support::hidden(&page.body, "next").as_deref(),
        Some("https://cloakroom.test/app/x")
    );
    let page = b.get("/login?rd=https%3A%2F%2Fevil.net%2F").await;
    assert_eq!(
        crate::support::hidden(&page.body, "next").as_deref(),
        Some("/")
    );
    s.signed_up("fay").await;
    let r = b
        .form(
            "/login",
            &[
                ("username", "fay"),
                ("password", PASSWORD),
                ("next", "https://cloakroom.test/app/x"),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "https://cloakroom.test/app/x");
    let r = s
        .browser()
        .form(
            "/login",
            &[
                ("username", "fay"),
                ("password", PASSWORD),
                ("next", "https://evil.net/"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/");
    // oauth2-proxy's sign-in keeps an allowed rd, drops another.
    assert_eq!(
        b.get("/oauth2/sign_in?rd=https://cloakroom.test/a")
            .await
            .location(),
        "/login?rd=https%3A%2F%2Fcloakroom.test%2Fa"
    );
    assert_eq!(
        b.get("/oauth2/sign_in?rd=https://evil.net/a")
            .await
            .location(),
        "/login?rd=%2F"
    );
    // oauth2-proxy's sign-out: a cross-site GET does not end the session (since finding 14
    // it is asked about on a page rather than refused with 403).
    b.req("GET", "/oauth2/sign_out")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .assert(200);
    b.get("/api/session").await.assert(200);
    // A foreign rd is never followed: the confirmation's POST ends the session and sends the
    // user home instead.
    let page = b.get("/oauth2/sign_out?rd=https://evil.net/").await;
    page.assert(200);
    let csrf = crate::support::hidden(&page.body, "csrf_token").unwrap();
    let r = b
        .form(
            "/oauth2/sign_out",
            &[("csrf_token", &csrf), ("rd", "https://evil.net/")],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/");
    b.get("/api/session").await.assert(401);
}

#[tokio::test]
async fn jwks_serves_public_keys_with_a_cache_lifetime() {
    let s = start().await;
    let r = s.browser().get("/.well-known/jwks.json").await;
    r.assert(200);
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=300")
    );
    let keys = r.json()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (
            k["kty"].as_str(),
            k["crv"].as_str(),
            k["alg"].as_str(),
            k["use"].as_str()
        ),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"), Some("sig"))
    );
    assert!(k.get("d").is_none(), "private key material served: {k}");
    if s.state.shared_keys().is_some() {
        // Sealed in PostgreSQL (see `scale.rs`), not files.
        return;
    }
    let files: Vec<_> = std::fs::read_dir(s.dir.path().join("keys"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    let private = serde_json::from_str::<serde_json::Value>(&text).unwrap()["private_pkcs8"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!r.body.contains(&private));
}

#[tokio::test]
async fn rotated_keys_are_published_before_signing_and_retired_after_their_tokens_expire() {
    let s = start().await;
    let mut b = s.signed_up("gus").await;
    let kid_of = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
    let old_token = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    let old_kid = kid_of(&old_token);

    let alg = s.state.settings().jwt_algorithm;
    match s.state.shared_keys() {
        Some(shared) => {
            cloakroom_server::cli::admin::keys_rotate_shared(shared, alg, s.clock.now())
                .await
                .unwrap();
        }
        None => {
            cloakroom_server::cli::admin::keys_rotate(s.dir.path(), alg, s.clock.now()).unwrap();
        }
    }
    s.state.reload_keys().await.unwrap();
    let published = |s: &TestServer| {
        let s = s.state.jwks();
        s["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(published(&s).len(), 2, "the new key is published at once");
    // Still signing with the old key for a JWKS cache lifetime.
    s.clock.advance(Duration::from_secs(31));
    let t = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    assert_eq!(kid_of(&t), old_kid);
    s.clock.advance(Duration::from_secs(330));
    let t = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    assert_ne!(
        kid_of(&t),
        old_kid,
        "the new key signs after the publication delay"
    );
    assert!(published(&s).contains(&kid_of(&t)));
    assert!(
        published(&s).contains(&old_kid),
        "the old key stays published while its tokens live"
    );
    s.clock.advance(Duration::from_secs(361));
    assert!(
        !published(&s).contains(&old_kid),
        "retired after its last token expired"
    );
}

#[tokio::test]
async fn pyjwt_verifies_the_service_jwt_independently() {
    let Some(()) = require("python3", &["-c", "import jwt, cryptography"]) else {
        return;
    };
    let s = start().await;
    let mut b = s.signed_up("hana").await;
    let token = nginx_style(&mut b, "GET", "https://app.example.com/x")
        .send()
        .await
        .header("x-cloakroom-jwt")
        .unwrap();
    let jwks_url = format!("{}/.well-known/jwks.json", s.base);
    let script = r#"
import sys, jwt
token, jwks_url, iss, aud = sys.argv[1:5]
key = jwt.PyJWKClient(jwks_url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["EdDSA", "ES256"], audience=aud, issuer=iss,
                    options={"require": ["exp", "iat", "iss", "aud", "sub"]})
assert jwt.get_unverified_header(token)["typ"] == "cloakroom-service+jwt"
print(claims["preferred_username"])
"#;
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", script, &token, &jwks_url, ORIGIN, APP])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "PyJWT refused the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hana");
}

/// The `aud` of a service JWT (read without verifying: the tests that need the signature
/// checked use [`verifier`]).
pub fn audience_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["aud"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_refused_without_a_token(r: &Reply, what: &str) {
    assert_eq!(r.status.as_u16(), 403, "{what}: {}", r.body);
    assert!(
        r.header("x-cloakroom-jwt").is_none() && r.header("remote-user").is_none(),
        "{what}: identity handed out"
    );
}

/// Finding 4: forward auth believed `X-Original-URL` / `X-Forwarded-Host` from whoever sent
/// them, so any signed-in user could get a service JWT for any audience. Only a trusted proxy
/// may describe the request; from anyone else the description is refused.
#[tokio::test]
async fn finding_04_untrusted_peers_cannot_choose_the_audience() {
    // The test client (127.0.0.1) is not in this list.
    let s = start_with(|raw| raw.trusted_proxies = vec!["10.0.0.0/8".into()]).await;
    let mut b = s.signed_up("mallory").await;
    let r = nginx_style(&mut b, "GET", "https://payments.internal.example/")
        .send()
        .await;
    assert_refused_without_a_token(&r, "X-Original-URL");
    // Even naming an app that is allowed: the peer may not describe requests at all.
    let r = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    assert_refused_without_a_token(&r, "X-Original-URL for a known app");
    let r = traefik_style(&mut b, "/api/authz/forward-auth", "GET", false)
        .send()
        .await;
    assert_refused_without_a_token(&r, "X-Forwarded-*");
    let r = b
        .req("GET", "/oauth2/auth")
        .header("x-forwarded-host", "payments.internal.example")
        .send()
        .await;
    assert_refused_without_a_token(&r, "oauth2 X-Forwarded-Host");
    // A direct call, describing nothing, is answered for Cloakroom's own origin.
    let r = b.req("GET", "/auth/verify").send().await;
    r.assert(200);
    assert_eq!(audience_of(&r.header("x-cloakroom-jwt").unwrap()), ORIGIN);
}

/// Finding 4: audiences are bounded by `app_origins` (exact origins and one-label wildcards);
/// without it, only the public URL's own origin. `jwt_audience` still fixes the `aud`, but
/// the host asked about must be an app.
#[tokio::test]
async fn finding_04_service_jwts_are_minted_only_for_app_origins() {
    let s = start_with(|raw| raw.app_origins = Vec::new()).await;
    let mut b = s.signed_up("mia").await;
    for url in [
        "https://payments.internal.example/x",
        "https://app.example.com/",
    ] {
        let r = nginx_style(&mut b, "GET", url).send().await;
        assert_refused_without_a_token(&r, url);
    }
    let r = traefik_style(&mut b, "/api/authz/forward-auth", "GET", true)
        .send()
        .await;
    assert_refused_without_a_token(&r, "X-Forwarded-Host of an unknown app");
    let r = nginx_style(&mut b, "GET", &format!("{ORIGIN}/x"))
        .send()
        .await;
    r.assert(200);
    assert_eq!(audience_of(&r.header("x-cloakroom-jwt").unwrap()), ORIGIN);

    let s = start_with(|raw| raw.app_origins = vec!["https://*.example.com".into()]).await;
    let mut b = s.signed_up("nina").await;
    let r = nginx_style(&mut b, "GET", "https://grafana.example.com/d/1")
        .send()
        .await;
    r.assert(200);
    let token = r.header("x-cloakroom-jwt").unwrap();
    let claims = verifier(&s, "https://grafana.example.com")
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(claims.aud, "https://grafana.example.com");
    for url in [
        "https://a.b.example.com/",
        "https://example.com/",
        "https://example.com.evil.net/",
        "https://evilexample.com/",
        "https://grafana.example.com.evil.net/",
        "http://grafana.example.com/",
        "https://grafana.example.com:8443/",
    ] {
        let r = nginx_style(&mut b, "GET", url).send().await;
        assert_refused_without_a_token(&r, url);
    }

    let s = start_with(|raw| raw.jwt_audience = Some("https://api.example.com".into())).await;
    let mut b = s.signed_up("omar").await;
    let r = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    r.assert(200);
    assert_eq!(
        audience_of(&r.header("x-cloakroom-jwt").unwrap()),
        "https://api.example.com"
    );
    let r = nginx_style(&mut b, "GET", "https://payments.internal.example/")
        .send()
        .await;
    assert_refused_without_a_token(&r, "an unknown app with jwt_audience set");
}

/// Finding 14: `GET /oauth2/sign_out` logged the user out on any request — an `<img>` on a
/// page of the same site was enough. A GET now signs out only as a same-origin navigation with
/// a valid `rd`; anything else gets a confirmation page whose form posts with the CSRF token.
#[tokio::test]
async fn finding_14_sign_out_by_get_needs_a_same_origin_navigation_with_a_valid_rd() {
    let s = start().await;
    let mut b = s.signed_up("pia").await;
    let rd = "/oauth2/sign_out?rd=https%3A%2F%2Fcloakroom.test%2Fbye";
    let alive = |r: Reply| r.status.as_u16() == 200;
    // An image, a fetch, a navigation from another site, a client without Fetch Metadata, a
    // same-origin navigation without rd or with a foreign one: a page that asks, nothing more.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let asks: Vec<Case<'_>> = vec![
        (
            "image",
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
            rd,
        ),
        (
            "fetch",
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "cors"),
                ("sec-fetch-dest", "empty"),
            ],
            rd,
        ),
        (
            "cross-site",
            vec![
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            rd,
        ),
        (
            "same-site",
            vec![
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            rd,
        ),
        ("no metadata", vec![], rd),
        (
            "no rd",
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            "/oauth2/sign_out",
        ),
        (
            "foreign rd",
            vec![
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "navigate"),
                ("sec-fetch-dest", "document"),
            ],
            "/oauth2/sign_out?rd=https%3A%2F%2Fevil.net%2F",
        ),
    ];
    for (what, headers, path) in asks {
        let mut req = b
            .req("GET", path)
            .without("sec-fetch-site")
            .without("origin");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = req.send().await;
        assert_eq!(r.status.as_u16(), 200, "{what}: {}", r.body);
        assert!(
            r.body.contains(r#"action="/oauth2/sign_out""#),
            "{what}: no confirmation form: {}",
            r.body
        );
        assert!(
            alive(b.get("/api/session").await),
            "{what}: signed out by a GET"
        );
    }
    // The confirmation form posts with the session's CSRF token, and keeps a valid rd.
    let page = b.get(rd).await;
    let csrf = hidden(&page.body, "csrf_token").unwrap();
    assert_eq!(
        hidden(&page.body, "rd").as_deref(),
        Some("https://cloakroom.test/bye")
    );
    let r = b
        .form("/oauth2/sign_out", &[("rd", "https://cloakroom.test/bye")])
        .await;
    r.assert(403);
    assert!(
        alive(b.get("/api/session").await),
        "a POST without the token"
    );
    let r = b
        .form(
            "/oauth2/sign_out",
            &[("csrf_token", &csrf), ("rd", "https://cloakroom.test/bye")],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "https://cloakroom.test/bye");
    b.get("/api/session").await.assert(401);
    // oauth2-proxy's own flow still works in one step: a same-origin link with a valid rd.
    let mut c = s.logged_in("pia", "Firefox").await;
    let r = c
        .req("GET", rd)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await;
    r.assert(303);
    assert_eq!(r.location(), "https://cloakroom.test/bye");
    c.get("/api/session").await.assert(401);
}

/// Issue 14: an answer that lets a request through goes to the proxy alone, so it carries the
/// identity headers and none of the headers that protect a page (250 bytes on every check for
/// nobody); a refusal, which Traefik and Caddy hand to the browser, keeps them.
#[tokio::test]
async fn only_answers_a_browser_may_read_carry_page_headers() {
    let s = start().await;
    let mut b = s.signed_up("pia").await;
    let ok = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    ok.assert(200);
    assert!(ok.header("remote-user").is_some());
    for page_header in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(
            ok.header(page_header).is_none(),
            "{page_header} on a 2xx for the proxy"
        );
    }
    assert_eq!(ok.header("cache-control").as_deref(), Some("no-store"));
    let mut anonymous = s.browser();
    let refused = traefik_style(&mut anonymous, "/api/authz/forward-auth", "GET", true)
        .send()
        .await;
    refused.assert(302);
    for page_header in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(
            refused.header(page_header).is_some(),
            "{page_header} missing on a refusal"
        );
    }
}
