//! What a real provider cannot be made to do: an ID token with the wrong `nonce`, signed by a
//! key it never published, by a key it rotated to, with `alg: none` or HS256 under its `kid`,
//! with a bad `at_hash`, or a stale `iat`. A small provider of the test's own
//! ([`FaultyProvider`]) answers discovery, its JWKS and the token endpoint with exactly the
//! token each test forges; the sign-in is started and finished through the real routes.
//! (`oidc.rs` runs the honest flows against a certified provider.)

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::support::{TestServer, start_at};

/// One Ed25519 signing key and its `kid`.
#[derive(Clone)]
struct Key {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl Key {
    fn new(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        Self {
            kid: kid.to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes()),
        })
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let der = self.key.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap()
    }
}

/// What the next token answer holds.
#[derive(Default)]
struct Faults {
    /// The published keys.
    published: Vec<Key>,
    /// The ID token to answer with, made by the test.
    id_token: Option<String>,
    /// The access token to answer with.
    access_token: String,
    /// How often the JWKS was fetched.
    jwks_fetches: u32,
    /// Answer discovery with 503.
    discovery_down: bool,
    /// How often discovery was asked for.
    discovery_fetches: u32,
}

struct FaultyProvider {
    issuer: String,
    faults: Arc<Mutex<Faults>>,
}

impl FaultyProvider {
    async fn start(first_key: Key) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Mutex::new(Faults {
            published: vec![first_key],
            access_token: "an-access-token".into(),
            ..Faults::default()
        }));
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move |State(f): State<Arc<Mutex<Faults>>>| {
                    let d = discovery.clone();
                    async move {
                        let mut f = f.lock().unwrap();
                        f.discovery_fetches += 1;
                        if f.discovery_down {
                            return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
                        }
                        Ok(Json(d))
                    }
                }),
            )
            .route(
                "/jwks",
                get(|State(f): State<Arc<Mutex<Faults>>>| async move {
                    let mut f = f.lock().unwrap();
                    f.jwks_fetches += 1;
                    let keys: Vec<Value> = f.published.iter().map(Key::jwk).collect();
                    (
                        [("cache-control", "public, max-age=3600")],
                        Json(json!({ "keys": keys })),
                    )
                }),
            )
            .route(
                "/token",
                post(|State(f): State<Arc<Mutex<Faults>>>| async move {
                    let f = f.lock().unwrap();
                    Json(json!({
                        "access_token": f.access_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": f.id_token,
                    }))
                }),
            )
            .with_state(faults.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { issuer, faults }
    }
}

async fn server_for(provider: &FaultyProvider) -> TestServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = provider.issuer.clone();
    start_at(port, move |raw| {
        raw.oidc = vec![cloakroom_server::config::OidcProviderConfig {
            id: "faulty".into(),
            preset: None,
            tenant: None,
            issuer: Some(issuer),
            client_id: "cloakroom".into(),
            client_secret_file: None,
            scopes: vec!["openid".into()],
            display_name: Some("Faulty".into()),
        }];
    })
    .await
}

/// A started sign-in: the browser with its pre-login cookie, and the `state` and `nonce`
/// Cloakroom sent to the provider.
struct Started {
    browser: crate::support::Browser,
    cookie: String,
    state: String,
    nonce: String,
}

async fn start(s: &TestServer) -> Started {
    let mut browser = s.browser();
    let r = browser.get("/oidc/faulty/login").await;
    r.assert(303);
    let cookie = r
        .set_cookies()
        .into_iter()
        .find(|c| c.split('=').next().is_some_and(|n| n.ends_with("-oidc")))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let to = url::Url::parse(&r.location()).unwrap();
    let q = |name: &str| {
        to.query_pairs()
            .find(|(k, _)| k == name)
            .unwrap()
            .1
            .into_owned()
    };
    Started {
        browser,
        cookie,
        state: q("state"),
        nonce: q("nonce"),
    }
}

impl Started {
    async fn callback(mut self) -> (cloakroom_testkit::http::Reply, crate::support::Browser) {
        let path = format!("/oidc/faulty/callback?code=the-code&state={}", self.state);
        let r = self
            .browser
            .req("GET", &path)
            .raw_cookie(&self.cookie)
            .send()
            .await;
        (r, self.browser)
    }
}

/// Honest claims for `nonce`, as the provider at `issuer` would make them now.
fn claims(s: &TestServer, issuer: &str, nonce: &str) -> Value {
    let now = cloakroom_core::Clock::now(&s.clock).as_unix_secs();
    json!({
        "iss": issuer, "aud": "cloakroom", "sub": "frank", "nonce": nonce,
        "iat": now, "exp": now + 300, "preferred_username": "frank",
    })
}

/// Makes an ID token from honest claims.
type Forgery<'a> = Box<dyn Fn(&Value) -> String + 'a>;

fn forge_unsigned(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Each forgery is refused with the "could not be verified" page (401: not signed in, with a
/// page that says why), signs nobody in and makes no account; the honest token then
/// works. Breaks if any one ID-token check is dropped: signature and key (a key never
/// published; `alg: none`; HS256 keyed with the public key), `iss`, `aud`, `exp`, `iat`,
/// `nonce`, `at_hash`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_id_tokens_are_refused() {
    let published = Key::new("k1");
    let provider = FaultyProvider::start(published.clone()).await;
    let s = server_for(&provider).await;
    let stranger = Key::new("k1");
    let now = cloakroom_core::Clock::now(&s.clock).as_unix_secs();
    let at_hash = |token: &str| {
        // EdDSA's hash for at_hash is SHA-512 (OpenID Connect Core, with RFC 8037).
        let digest = sha2::Sha512::digest(token.as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..32])
    };
    let forgeries: Vec<(&str, Forgery<'_>)> = vec![
        (
            "a key it never published (same kid)",
            Box::new(|c| stranger.sign(c)),
        ),
        (
            "alg none",
            Box::new(|c| forge_unsigned(&json!({ "alg": "none", "kid": "k1" }), c, "")),
        ),
        (
            "HS256 keyed with the public key",
            Box::new(|c| {
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some("k1".into());
                let secret = published.jwk()["x"].as_str().unwrap().to_owned();
                jsonwebtoken::encode(
                    &h,
                    c,
                    &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
                )
                .unwrap()
            }),
        ),
        (
            "another issuer",
            Box::new(|c| {
                let mut c = c.clone();
                c["iss"] = "http://127.0.0.1:1".into();
                published.sign(&c)
            }),
        ),
        (
            "another audience",
            Box::new(|c| {
                let mut c = c.clone();
                c["aud"] = "someone-else".into();
                published.sign(&c)
            }),
        ),
        (
            "expired",
            Box::new(|c| {
                let mut c = c.clone();
                c["exp"] = (now - 10).into();
                published.sign(&c)
            }),
        ),
        (
            "issued in the future",
            Box::new(|c| {
                let mut c = c.clone();
                c["iat"] = (now + 3600).into();
                published.sign(&c)
            }),
        ),
        (
            "issued long ago",
            Box::new(|c| {
                let mut c = c.clone();
                c["iat"] = (now - 3600).into();
                published.sign(&c)
            }),
        ),
        (
            "the wrong nonce",
            Box::new(|c| {
                let mut c = c.clone();
                c["nonce"] = "not-the-nonce".into();
                published.sign(&c)
            }),
        ),
        (
            "no nonce",
            Box::new(|c| {
                let mut c = c.clone();
                c.as_object_mut().unwrap().remove("nonce");
                published.sign(&c)
            }),
        ),
        (
            "an at_hash of another access token",
            Box::new(|c| {
                let mut c = c.clone();
                c["at_hash"] = at_hash("another-access-token").into();
                published.sign(&c)
            }),
        ),
    ];
    for (what, forge) in &forgeries {
        let started = start(&s).await;
        let token = forge(&claims(&s, &provider.issuer, &started.nonce));
        provider.faults.lock().unwrap().id_token = Some(token);
        let (r, mut b) = started.callback().await;
        assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.body);
        assert!(
            r.body.contains("could not be verified"),
            "{what}: {}",
            r.body
        );
        b.get("/api/session").await.assert(401);
    }
    assert!(
        s.state
            .account_store()
            .by_identity(&provider.issuer, "frank")
            .await
            .unwrap()
            .is_none()
    );

    // The honest token, with a matching at_hash, signs in.
    let started = start(&s).await;
    let mut c = claims(&s, &provider.issuer, &started.nonce);
    c["at_hash"] = at_hash("an-access-token").into();
    provider.faults.lock().unwrap().id_token = Some(published.sign(&c));
    let (r, mut b) = started.callback().await;
    r.assert(303);
    assert_eq!(
        b.get("/api/session").await.json()["user"]["username"],
        "frank"
    );
}

/// The provider rotates its key: a token under the new `kid` makes Cloakroom refetch the JWKS
/// once, and signs in. A burst of tokens under made-up `kid`s refetches at most once a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_once_and_unknown_ones_are_rate_limited() {
    let first = Key::new("k1");
    let provider = FaultyProvider::start(first.clone()).await;
    let s = server_for(&provider).await;
    let sign_in_with = |key: Key| {
        let s = &s;
        let provider = &provider;
        async move {
            let started = start(s).await;
            let c = claims(s, &provider.issuer, &started.nonce);
            provider.faults.lock().unwrap().id_token = Some(key.sign(&c));
            started.callback().await.0
        }
    };
    sign_in_with(first.clone()).await.assert(303);
    assert_eq!(provider.faults.lock().unwrap().jwks_fetches, 1);

    let second = Key::new("k2");
    provider.faults.lock().unwrap().published = vec![second.clone(), first];
    sign_in_with(second.clone()).await.assert(303);
    assert_eq!(
        provider.faults.lock().unwrap().jwks_fetches,
        2,
        "the unknown kid refetched the keys"
    );

    // Made-up kids, within the minute: refused, with no further fetch.
    for i in 0..5 {
        let r = sign_in_with(Key::new(&format!("made-up-{i}"))).await;
        assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    }
    assert_eq!(provider.faults.lock().unwrap().jwks_fetches, 2);
    // A minute later, one more fetch is allowed.
    s.clock.advance(std::time::Duration::from_secs(61));
    sign_in_with(Key::new("made-up-later")).await;
    assert_eq!(provider.faults.lock().unwrap().jwks_fetches, 3);
}

/// A logout token works once: its replay (a captured token sent again) is refused with 400 and
/// ends nothing more; and the session it names ends at once. Breaks if the `jti` is not
/// recorded, or if `events`, `nonce` or `iat` go unchecked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_token_works_once() {
    let key = Key::new("k1");
    let provider = FaultyProvider::start(key.clone()).await;
    let s = server_for(&provider).await;
    let sign_in = || async {
        let started = start(&s).await;
        let mut c = claims(&s, &provider.issuer, &started.nonce);
        c["sid"] = "provider-session-1".into();
        provider.faults.lock().unwrap().id_token = Some(key.sign(&c));
        let (r, b) = started.callback().await;
        r.assert(303);
        b
    };
    let mut first = sign_in().await;
    let now = cloakroom_core::Clock::now(&s.clock).as_unix_secs();
    let logout = json!({
        "iss": provider.issuer, "aud": "cloakroom", "iat": now, "exp": now + 120,
        "jti": "logout-1", "sub": "frank", "sid": "provider-session-1",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    let post = |token: String| {
        let s = &s;
        async move {
            s.browser()
                .req("POST", "/oidc/faulty/backchannel-logout")
                .without("origin")
                .without("sec-fetch-site")
                .body(
                    cloakroom_testkit::http::url_encode(&[("logout_token", &token)]),
                    "application/x-www-form-urlencoded",
                )
                .send()
                .await
        }
    };
    // Not logout tokens: no event, a nonce, too old.
    for (what, edit) in [
        ("no event", json!({ "events": {} })),
        ("a nonce", json!({ "nonce": "n" })),
        ("too old", json!({ "iat": now - 3600, "exp": now + 60 })),
    ] {
        let mut c = logout.clone();
        for (k, v) in edit.as_object().unwrap() {
            c[k] = v.clone();
        }
        c["jti"] = format!("bad-{what}").into();
        let r = post(key.sign(&c)).await;
        assert_eq!(r.status.as_u16(), 400, "{what}: {}", r.body);
        first.get("/api/session").await.assert(200);
    }
    let token = key.sign(&logout);
    post(token.clone()).await.assert(200);
    first.get("/api/session").await.assert(401);
    // The same sign-in again, then the captured token replayed: refused, nothing ends.
    let mut second = sign_in().await;
    let r = post(token).await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.body);
    assert!(r.body.contains("used already"), "{}", r.body);
    second.get("/api/session").await.assert(200);
}

/// A provider that does not answer is a page that says so (424), not a server error; password
/// sign-in is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_is_a_page_that_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = start_at(port, |raw| {
        raw.oidc = vec![cloakroom_server::config::OidcProviderConfig {
            id: "down".into(),
            preset: None,
            tenant: None,
            // Port 9 (discard): nothing listens there.
            issuer: Some("http://127.0.0.1:9".into()),
            client_id: "cloakroom".into(),
            client_secret_file: None,
            scopes: vec!["openid".into()],
            display_name: Some("Down ID".into()),
        }];
    })
    .await;
    let r = s.browser().get("/oidc/down/login").await;
    assert_eq!(r.status.as_u16(), 424, "{}", r.body);
    assert!(
        r.body.contains("Down ID cannot be reached right now"),
        "{}",
        r.body
    );
    s.signed_up("patty")
        .await
        .get("/api/session")
        .await
        .assert(200);
}

/// A provider whose discovery fails is not asked again for a few seconds: sign-ins through it
/// are refused at once (424) instead of each waiting on it in turn; once it is back, and the
/// pause is over, sign-in works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_provider_is_not_asked_again_at_once() {
    let key = Key::new("k1");
    let provider = FaultyProvider::start(key.clone()).await;
    provider.faults.lock().unwrap().discovery_down = true;
    let s = server_for(&provider).await;
    for _ in 0..3 {
        let r = s.browser().get("/oidc/faulty/login").await;
        assert_eq!(r.status.as_u16(), 424, "{}", r.body);
    }
    assert_eq!(provider.faults.lock().unwrap().discovery_fetches, 1);
    s.clock.advance(std::time::Duration::from_secs(11));
    s.browser().get("/oidc/faulty/login").await;
    assert_eq!(provider.faults.lock().unwrap().discovery_fetches, 2);
    provider.faults.lock().unwrap().discovery_down = false;
    s.clock.advance(std::time::Duration::from_secs(11));
    let started = start(&s).await;
    let c = claims(&s, &provider.issuer, &started.nonce);
    provider.faults.lock().unwrap().id_token = Some(key.sign(&c));
    started.callback().await.0.assert(303);
}
