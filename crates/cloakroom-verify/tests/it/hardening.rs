//! Regression tests for the verifier's hardening findings (issue 11, finding 17).

use std::sync::atomic::Ordering;
use std::time::Duration;

use cloakroom_core::ManualClock;
use cloakroom_verify::{ConfigError, JwksError, Verifier, VerifierConfig, VerifyError};

use super::{AUD, ISS, claims, ed25519, now, serve_jwks, sign};

/// Why: a plain-`http://` JWKS URL to another host lets anyone on the path hand the verifier
/// their own keys, and then every token they sign verifies. Plain HTTP is fine where it never
/// leaves the machine.
#[tokio::test]
async fn finding_17_http_jwks_url_is_refused_unless_loopback() {
    for url in [
        "http://login.example.com/.well-known/jwks.json",
        "http://10.0.0.7:8080/.well-known/jwks.json",
        "http://[2001:db8::1]/.well-known/jwks.json",
        // Names that only look local: no resolver promises these stay on the machine.
        "http://localhost.example.com/jwks.json",
        "http://127.0.0.1.nip.io/jwks.json",
    ] {
        assert!(
            matches!(
                VerifierConfig::new(url, ISS, AUD),
                Err(ConfigError::InsecureJwksUrl)
            ),
            "{url} was accepted"
        );
        // The explicit opt-out, visible in any diff that uses it.
        assert!(VerifierConfig::danger_allow_http_jwks(url, ISS, AUD).is_ok());
    }
    assert!(VerifierConfig::new("https://login.example.com/jwks.json", ISS, AUD).is_ok());

    // Loopback over plain HTTP works, against a real JWKS server, however the host is spelt.
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let port = jwks.url.rsplit(':').next().unwrap();
    for host in ["127.0.0.1", "localhost", "LOCALHOST"] {
        let url = format!("http://{host}:{port}");
        let v = Verifier::new(VerifierConfig::new(&url, ISS, AUD).unwrap());
        assert!(v.verify(&sign(&ed, &claims())).await.is_ok(), "{url}");
    }
    assert!(VerifierConfig::new("http://[::1]:9/jwks.json", ISS, AUD).is_ok());
}

/// Why: when fetching failed, the last keys were trusted forever, so a retired (perhaps
/// compromised) key kept verifying at a service an attacker had cut off from Cloakroom.
#[tokio::test]
async fn finding_17_stale_keys_expire_when_refresh_keeps_failing() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let clock = ManualClock::starting_now();
    let v = Verifier::new(
        VerifierConfig::new(&jwks.url, ISS, AUD)
            .unwrap()
            .with_max_stale_age(Duration::from_secs(3600))
            .with_clock(clock.clone()),
    );
    let token = sign(&ed, &claims());
    v.verify(&token).await.unwrap();
    jwks.down.store(true, Ordering::SeqCst);

    // Past the cache lifetime, a failed refresh still serves the keys it has: a Cloakroom
    // restart must not refuse everyone.
    clock.advance(Duration::from_secs(600));
    v.verify(&token).await.unwrap();
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        2,
        "a refresh was tried"
    );

    // Past the maximum stale age, it fails closed, and says why.
    clock.advance(Duration::from_secs(3001));
    let err = v.verify(&token).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::Jwks(JwksError::Stale)),
        "{err:?}"
    );
    // Asking again, inside the refresh rate limit, does not get around it.
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        v.verify(&token).await,
        Err(VerifyError::Jwks(JwksError::Stale))
    ));

    // Once the JWKS answers again, the next due refresh brings verification back.
    jwks.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    v.verify(&token).await.unwrap();
}

/// Why: with no bound on `exp - iat`, a token minted for a year — by a leaked key or a
/// misconfigured minter — was accepted for that year. Cloakroom mints for at most 300 s.
#[tokio::test]
async fn finding_17_tokens_living_longer_than_the_bound_are_refused() {
    let ed = ed25519("ed");
    let jwks = serve_jwks(vec![ed.jwk.clone()]).await;
    let v = Verifier::new(VerifierConfig::new(&jwks.url, ISS, AUD).unwrap());
    let with_lifetime = |secs: i64| {
        let mut c = claims();
        c["exp"] = (now() + secs).into();
        sign(&ed, &c)
    };
    // The longest token Cloakroom mints, and the default bound itself, are accepted.
    v.verify(&with_lifetime(300)).await.unwrap();
    v.verify(&with_lifetime(600)).await.unwrap();
    for secs in [601, 3600, 365 * 24 * 3600] {
        let err = v.verify(&with_lifetime(secs)).await.unwrap_err();
        assert!(
            matches!(err, VerifyError::LifetimeTooLong),
            "{secs} s: {err:?}"
        );
    }
    // The bound is configurable, and a service can tighten it.
    let strict = Verifier::new(
        VerifierConfig::new(&jwks.url, ISS, AUD)
            .unwrap()
            .with_max_token_lifetime(Duration::from_secs(60)),
    );
    strict.verify(&with_lifetime(60)).await.unwrap();
    assert!(matches!(
        strict.verify(&with_lifetime(61)).await,
        Err(VerifyError::LifetimeTooLong)
    ));
}
