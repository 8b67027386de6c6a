//! The verifier against a real JWKS served over HTTP, and every attack RFC 8725 lists that
//! applies to it.

// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers with `pub`; there is no API to keep tidy here.
#![allow(unreachable_pub)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse as _;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_verify::{ServiceIdentity, TOKEN_TYPE, Verifier, VerifierConfig, VerifyError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

mod hardening;

const ISS: &str = "https://login.example.com";
const AUD: &str = "https://app-a.example.com";

/// A key pair as a test signer holds it.
#[derive(Clone)]
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    public_bytes: Vec<u8>,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).unwrap();
    b
}

fn ed25519(kid: &str) -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::from_bytes(&random::<32>());
    let public = key.verifying_key().to_bytes();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(public), "kid": kid, "alg": "EdDSA", "use": "sig" }),
        public_bytes: public.to_vec(),
    }
}

fn p256(kid: &str) -> TestKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::SecretKey::from_slice(&random::<32>()).unwrap();
    let point = key.public_key().to_encoded_point(false);
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({ "kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                     "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()), "kid": kid, "alg": "ES256", "use": "sig" }),
        public_bytes: point.as_bytes().to_vec(),
    }
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims() -> Value {
    json!({ "iss": ISS, "aud": AUD, "sub": "u1", "preferred_username": "alice", "sid": "h1",
            "iat": now(), "exp": now() + 60, "jti": "j1" })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    header.typ = Some(TOKEN_TYPE.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A JWKS endpoint whose key set the test controls, counting fetches.
struct Jwks {
    url: String,
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the endpoint answers 503 (Cloakroom down, or the path to it cut).
    down: Arc<AtomicBool>,
}

async fn serve_jwks(keys: Vec<Value>) -> Jwks {
    let shared = Arc::new(RwLock::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (k, f, d) = (shared.clone(), fetches.clone(), down.clone());
    let app = Router::new().route(
        "/jwks.json",
        get(move || {
            let (k, f, d) = (k.clone(), f.clone(), d.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                axum::Json(json!({ "keys": *k.read().unwrap() })).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks {
        url,
        keys: shared,
        fetches,
        down,
    }
}

fn verifier(jwks: &Jwks) -> Verifier {
    Verifier::new(VerifierConfig::new(&jwks.url, ISS, AUD).unwrap())
}

#[tokio::test]
async fn valid_eddsa_and_es256_tokens_are_accepted() {
    let (ed, ec) = (ed25519("ed"), p256("ec"));
    let jwks = serve_jwks(vec![ed.jwk.clone(), ec.jwk.clone()]).await;
    let v = verifier(&jwks);
    for key in [&ed, &ec] {
        let c = v.verify(&sign(key, &claims())).await.unwrap();
        assert_eq!(
            (
                c.preferred_username.as_str(),
                c.aud.as_str(),
                c.sub.as_str()
            ),
            ("alice", AUD, "u1")
        );
    }
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1, "keys are cached");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let header = URL_SAFE_NO_PAD
        .encode(json!({ "alg": "none", "typ": TOKEN_TYPE, "kid": "ed" }).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert!(matches!(
            verifier(&jwks).verify(&token).await,
            Err(VerifyError::Malformed)
        ));
    }
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    // The classic confusion: the attacker knows the public key and "signs" with it as an HMAC
    // secret, hoping the verifier takes the algorithm from the token.
    for secret in [
        ed.public_bytes.clone(),
        ed.jwk.to_string().into_bytes(),
        ed.jwk["x"].as_str().unwrap().as_bytes().to_vec(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ed".into());
        header.typ = Some(TOKEN_TYPE.into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(&secret)).unwrap();
        let err = verifier(&jwks).verify(&token).await.unwrap_err();
        assert!(matches!(err, VerifyError::AlgorithmNotAllowed), "{err:?}");
    }
}

#[tokio::test]
async fn the_algorithm_is_pinned_to_the_key_type() {
    let (ed, ec) = (ed25519("ed"), p256("ec"));
    let jwks = serve_jwks(vec![ed.jwk.clone(), ec.jwk.clone()]).await;
    // An EdDSA token claiming the EC key's kid.
    let impostor = TestKey {
        kid: "ec".into(),
        ..ed.clone()
    };
    let err = verifier(&jwks)
        .verify(&sign(&impostor, &claims()))
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::AlgorithmNotAllowed), "{err:?}");
}

#[tokio::test]
async fn unknown_kid_wrong_type_and_tampering_are_refused() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let v = verifier(&jwks);
    let stranger = ed25519("someone-else");
    assert!(matches!(
        v.verify(&sign(&stranger, &claims())).await,
        Err(VerifyError::UnknownKey)
    ));
    // Our kid, another key.
    let forged = TestKey {
        kid: "ed".into(),
        ..stranger
    };
    assert!(matches!(
        v.verify(&sign(&forged, &claims())).await,
        Err(VerifyError::BadSignature)
    ));
    // A valid token with its payload edited.
    let token = sign(&ed, &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = claims();
    payload["preferred_username"] = "admin".into();
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    assert!(matches!(
        v.verify(&parts.join(".")).await,
        Err(VerifyError::BadSignature)
    ));
    // Right key, wrong typ.
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("ed".into());
    let plain = jsonwebtoken::encode(&header, &claims(), &ed.encoding).unwrap();
    assert!(matches!(
        v.verify(&plain).await,
        Err(VerifyError::WrongType)
    ));
    assert!(matches!(v.verify("").await, Err(VerifyError::Missing)));
    assert!(matches!(
        v.verify("a.b.c").await,
        Err(VerifyError::Malformed)
    ));
    assert!(matches!(
        v.verify(&"a".repeat(20_000)).await,
        Err(VerifyError::Malformed)
    ));
}

#[tokio::test]
async fn time_claims_are_enforced_with_bounded_leeway() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let v = verifier(&jwks);
    let mut c = claims();
    c["exp"] = (now() - 120).into();
    assert!(matches!(
        v.verify(&sign(&ed, &c)).await,
        Err(VerifyError::Expired)
    ));
    let mut c = claims();
    c["iat"] = (now() + 3600).into();
    c["exp"] = (now() + 3660).into();
    assert!(matches!(
        v.verify(&sign(&ed, &c)).await,
        Err(VerifyError::NotYetValid)
    ));
    let mut c = claims();
    c["exp"] = (now() - 10).into();
    assert!(
        v.verify(&sign(&ed, &c)).await.is_ok(),
        "10 s of skew is within the 30 s leeway"
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        v.verify(&sign(&ed, &c)).await,
        Err(VerifyError::MissingClaim(_))
    ));
    assert!(
        VerifierConfig::new(&jwks.url, ISS, AUD)
            .unwrap()
            .with_leeway(Duration::from_secs(61))
            .is_err()
    );
}

#[tokio::test]
async fn a_token_for_app_a_is_refused_by_app_b_and_the_issuer_must_match() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let token_for_a = sign(&ed, &claims());
    let app_b =
        Verifier::new(VerifierConfig::new(&jwks.url, ISS, "https://app-b.example.com").unwrap());
    assert!(matches!(
        app_b.verify(&token_for_a).await,
        Err(VerifyError::WrongAudience)
    ));
    let mut c = claims();
    c["iss"] = "https://evil.example.com".into();
    assert!(matches!(
        verifier(&jwks).verify(&sign(&ed, &c)).await,
        Err(VerifyError::WrongIssuer)
    ));
}

#[tokio::test]
async fn jku_and_embedded_jwk_headers_are_ignored() {
    let ed = ed25519("ed");
    let ours = serve_jwks(vec![ed.jwk.clone()]).await;
    let attacker = ed25519("attacker");
    let theirs = serve_jwks(vec![attacker.jwk.clone()]).await;
    let v = verifier(&ours);
    for kid in ["attacker", "ed"] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        header.typ = Some(TOKEN_TYPE.into());
        header.jku = Some(theirs.url.clone());
        header.jwk = Some(serde_json::from_value(attacker.jwk.clone()).unwrap());
        let token = jsonwebtoken::encode(&header, &claims(), &attacker.encoding).unwrap();
        let err = v.verify(&token).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::UnknownKey | VerifyError::BadSignature),
            "{kid}: {err:?}"
        );
    }
    assert_eq!(
        theirs.fetches.load(Ordering::SeqCst),
        0,
        "the attacker's JWKS was fetched"
    );
}

#[tokio::test]
async fn key_rotation_old_tokens_work_until_the_key_is_retired() {
    let (old, new) = (ed25519("old"), ed25519("new"));
    let jwks = serve_jwks(vec![old.jwk.clone()]).await;
    let v = Verifier::new(
        VerifierConfig::new(&jwks.url, ISS, AUD)
            .unwrap()
            .with_cache_max_age(Duration::ZERO)
            .with_min_refresh_interval(Duration::ZERO),
    );
    let old_token = sign(&old, &claims());
    v.verify(&old_token).await.unwrap();
    // The new key is published before it signs; both verify during the overlap.
    *jwks.keys.write().unwrap() = vec![old.jwk.clone(), new.jwk.clone()];
    v.verify(&old_token).await.unwrap();
    v.verify(&sign(&new, &claims())).await.unwrap();
    // Retired: the old key's tokens are refused from the next refresh on.
    *jwks.keys.write().unwrap() = vec![new.jwk.clone()];
    assert!(matches!(
        v.verify(&old_token).await,
        Err(VerifyError::UnknownKey)
    ));
    v.verify(&sign(&new, &claims())).await.unwrap();
}

#[tokio::test]
async fn unknown_kids_cannot_force_a_jwks_fetch_per_request() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let v = verifier(&jwks);
    v.verify(&sign(&ed, &claims())).await.unwrap();
    for i in 0..50 {
        let stranger = ed25519(&format!("k{i}"));
        assert!(v.verify(&sign(&stranger, &claims())).await.is_err());
    }
    assert!(
        jwks.fetches.load(Ordering::SeqCst) <= 2,
        "{} fetches",
        jwks.fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn unreachable_keys_are_a_server_error_not_a_pass() {
    let ed = ed25519("ed");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", l.local_addr().unwrap())
    };
    let v = Arc::new(Verifier::new(VerifierConfig::new(&dead, ISS, AUD).unwrap()));
    assert!(matches!(
        v.verify(&sign(&ed, &claims())).await,
        Err(VerifyError::Jwks(_))
    ));
    let app = Router::new()
        .route(
            "/",
            get(|ServiceIdentity(c): ServiceIdentity| async move { c.preferred_username }),
        )
        .with_state(v);
    let req = axum::http::Request::get("/")
        .header("x-cloakroom-jwt", sign(&ed, &claims()))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), 503);
}

#[tokio::test]
async fn the_extractor_answers_401_without_a_valid_token() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let app = Router::new()
        .route(
            "/",
            get(|ServiceIdentity(c): ServiceIdentity| async move { c.preferred_username }),
        )
        .with_state(Arc::new(verifier(&jwks)));
    let call = |token: Option<String>| {
        let app = app.clone();
        async move {
            let mut req = axum::http::Request::get("/");
            if let Some(t) = token {
                req = req.header("x-cloakroom-jwt", t);
            }
            app.oneshot(req.body(axum::body::Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    assert_eq!(call(None).await.status(), 401);
    assert_eq!(call(Some("garbage".into())).await.status(), 401);
    let ok = call(Some(sign(&ed, &claims()))).await;
    assert_eq!(ok.status(), 200);
    let body = axum::body::to_bytes(ok.into_body(), 1024).await.unwrap();
    assert_eq!(&body[..], b"alice");
}

#[tokio::test]
async fn a_static_key_set_needs_no_fetching() {
    let ed = ed25519("ed");
    let jwks = json!({ "keys": [ed.jwk.clone()] }).to_string();
    let config = VerifierConfig::new("http://127.0.0.1:9/unused", ISS, AUD).unwrap();
    let v = Verifier::with_static_jwks(config.clone(), jwks.as_bytes()).unwrap();
    assert_eq!(
        v.verify(&sign(&ed, &claims()))
            .await
            .unwrap()
            .preferred_username,
        "alice"
    );
    assert!(matches!(
        v.verify(&sign(&ed25519("other"), &claims())).await,
        Err(VerifyError::UnknownKey)
    ));
    assert!(Verifier::with_static_jwks(config, b"not json").is_err());
}
