//! The link tokens' rules, and the bad input from issue 12 ("Bad input"): garbage, truncated,
//! oversized and wrong-`typ` tokens, `alg: none`, HS256 under our `kid`.

use std::time::Duration;

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::accounts::PasswordHash;
use crate::mail::EmailAddress;
use crate::session::UserId;

/// A stand-in for a real signature scheme (the server's is Ed25519): SHA-256 of a secret and
/// the message. Enough to tell our signatures from anyone else's in these tests.
#[derive(Debug)]
struct TestKey {
    kid: &'static str,
    secret: &'static [u8],
}

impl LinkKey for TestKey {
    fn kid(&self) -> &str {
        self.kid
    }

    fn algorithm(&self) -> LinkAlgorithm {
        LinkAlgorithm::EdDsa
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        Ok(Sha256::new()
            .chain_update(self.secret)
            .chain_update(message)
            .finalize()
            .to_vec())
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.sign(message).is_ok_and(|s| s == signature)
    }
}

const KEY: TestKey = TestKey {
    kid: "k1",
    secret: b"one",
};
const OTHER: TestKey = TestKey {
    kid: "k2",
    secret: b"two",
};

fn audience() -> Origin {
    Origin::parse("https://login.example.com").unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000)
}

fn alice() -> UserId {
    UserId::new("u-alice").unwrap()
}

fn hash() -> PasswordHash {
    PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into())
}

fn reset() -> PasswordReset {
    PasswordReset::new(alice(), ResetFingerprint::of(&alice(), &hash(), 0))
}

fn reset_token() -> String {
    reset()
        .mint(&KEY, &audience(), PasswordReset::MAX_LIFETIME, t0())
        .unwrap()
        .token
        .expose()
        .to_owned()
}

fn verify_reset(token: &str) -> Result<Verified<PasswordReset>, LinkError> {
    PasswordReset::verify(token, &[KEY], &audience(), t0())
}

/// Signs `header` and `claims` as given, with `key`: a token our key really signed, saying
/// whatever the test needs.
fn signed(header: &serde_json::Value, claims: &serde_json::Value, key: &TestKey) -> String {
    let input = format!(
        "{}.{}",
        compact::encode(header.to_string().as_bytes()),
        compact::encode(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", compact::encode(&sig))
}

fn reset_claims() -> serde_json::Value {
    let payload = reset_token().split('.').nth(1).unwrap().to_owned();
    serde_json::from_slice(&compact::decode(&payload).unwrap()).unwrap()
}

fn reset_header() -> serde_json::Value {
    serde_json::json!({ "alg": "EdDSA", "typ": RESET_TYPE, "kid": "k1" })
}

#[test]
fn each_purpose_round_trips() {
    let r = verify_reset(&reset_token()).unwrap();
    assert_eq!(r.claims, reset());
    assert_eq!(
        r.expires_at,
        t0().saturating_add(PasswordReset::MAX_LIFETIME)
    );

    let address = EmailAddress::parse("alice@example.com").unwrap();
    let v = EmailVerification::new(alice(), &address);
    let minted = v
        .mint(&KEY, &audience(), Duration::from_secs(86_400), t0())
        .unwrap();
    let back = EmailVerification::verify(minted.token.expose(), &[KEY], &audience(), t0()).unwrap();
    assert_eq!(back.claims, v);
    assert_eq!(back.id, minted.id);

    let target = LinkTarget::parse("https://app.example/files/report.pdf").unwrap();
    let d = Download::new(alice(), target.clone(), true, 0);
    let minted = d
        .mint(&KEY, &audience(), Download::DEFAULT_LIFETIME, t0())
        .unwrap();
    let url = target.with_token(&minted.token);
    assert!(url.starts_with("https://app.example/files/report.pdf?cloakroom_link=ey"));
    let (asked, token) = LinkTarget::from_request(
        target.origin(),
        url.trim_start_matches(target.origin().as_str()),
    )
    .unwrap();
    let back = Download::verify(token, &[KEY], &audience(), t0()).unwrap();
    assert_eq!(back.claims, d);
    assert_eq!(back.claims.target(), &asked);
    assert!(back.claims.single_use());
}

#[test]
fn reset_links_die_with_the_password_or_the_epoch() {
    let link = verify_reset(&reset_token()).unwrap().claims;
    assert!(link.is_current(&ResetFingerprint::of(&alice(), &hash(), 0)));
    let changed = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into());
    assert!(!link.is_current(&ResetFingerprint::of(&alice(), &changed, 0)));
    assert!(!link.is_current(&ResetFingerprint::of(&alice(), &hash(), 1)));
    let bob = UserId::new("u-bob").unwrap();
    assert!(!link.is_current(&ResetFingerprint::of(&bob, &hash(), 0)));
}

#[test]
fn download_links_die_with_their_makers_epoch() {
    let target = LinkTarget::parse("https://app.example/files/a.pdf").unwrap();
    let minted = Download::new(alice(), target, true, 4)
        .mint(&KEY, &audience(), Download::DEFAULT_LIFETIME, t0())
        .unwrap();
    let link = Download::verify(minted.token.expose(), &[KEY], &audience(), t0())
        .unwrap()
        .claims;
    assert!(link.is_current(4));
    assert!(!link.is_current(5));
    assert!(!link.is_current(0));
}

#[test]
fn verification_links_are_bound_to_the_exact_address_and_die_once_verified() {
    let address = EmailAddress::parse("alice@example.com").unwrap();
    let link = EmailVerification::new(alice(), &address);
    assert!(link.is_current(&EmailFingerprint::of(&alice(), &address, false)));
    assert!(!link.is_current(&EmailFingerprint::of(&alice(), &address, true)));
    let other = EmailAddress::parse("alice@example.org").unwrap();
    assert!(!link.is_current(&EmailFingerprint::of(&alice(), &other, false)));
    let upper = EmailAddress::parse("Alice@example.com").unwrap();
    assert!(!link.is_current(&EmailFingerprint::of(&alice(), &upper, false)));
}

#[test]
fn a_token_for_one_purpose_is_refused_as_another() {
    let token = reset_token();
    assert_eq!(
        EmailVerification::verify(&token, &[KEY], &audience(), t0()).unwrap_err(),
        LinkError::WrongType
    );
    assert_eq!(
        Download::verify(&token, &[KEY], &audience(), t0()).unwrap_err(),
        LinkError::WrongType
    );
    // A reset payload relabelled as a download in the header, re-signed by our own key: the
    // purpose claim still says "reset".
    let header = serde_json::json!({ "alg": "EdDSA", "typ": DOWNLOAD_TYPE, "kid": "k1" });
    let relabelled = signed(&header, &reset_claims(), &KEY);
    assert_eq!(
        Download::verify(&relabelled, &[KEY], &audience(), t0()).unwrap_err(),
        LinkError::WrongType
    );
}

#[test]
fn unknown_types_are_not_ours() {
    for typ in ["JWT", "cloakroom-service+jwt", "", "CLOAKROOM-RESET+JWT"] {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": typ, "kid": "k1" });
        let token = signed(&header, &reset_claims(), &KEY);
        assert_eq!(
            verify_reset(&token).unwrap_err(),
            LinkError::UnknownType,
            "{typ}"
        );
    }
}

#[test]
fn alg_none_and_hs256_under_our_kid_are_refused_before_any_key_is_used() {
    let claims = compact::encode(reset_claims().to_string().as_bytes());
    for alg in ["none", "None", "HS256", "RS256", "ES256", "eddsa", ""] {
        let header = serde_json::json!({ "alg": alg, "typ": RESET_TYPE, "kid": "k1" });
        let input = format!(
            "{}.{claims}",
            compact::encode(header.to_string().as_bytes())
        );
        // `none` comes unsigned; HS256 comes with a MAC keyed by something public (the
        // classic confusion attack uses the public key). Neither gets as far as a key.
        for sig in [
            String::new(),
            compact::encode(&KEY.sign(input.as_bytes()).unwrap()),
        ] {
            let token = format!("{input}.{sig}");
            assert_eq!(
                verify_reset(&token).unwrap_err(),
                LinkError::UnsupportedAlgorithm,
                "{alg}"
            );
        }
    }
    // Our algorithm with an empty signature: refused as unsigned.
    let input = reset_token().rsplit_once('.').unwrap().0.to_owned();
    assert_eq!(
        verify_reset(&format!("{input}.")).unwrap_err(),
        LinkError::BadSignature
    );
}

#[test]
fn garbage_truncated_oversized_and_tampered_tokens_are_refused() {
    let token = reset_token();
    for bad in [
        "",
        "garbage",
        "a.b",
        "....",
        "eyJ.eyJ.eyJ",
        &token[..token.len() / 2],
        &token[..token.len() - 1],
        &token[..token.rfind('.').unwrap()],
        &format!("{token}."),
        &format!("{token}x"),
        &format!(" {token}"),
        &token.replace('.', ".."),
    ] {
        assert!(verify_reset(bad).is_err(), "{bad:?}");
    }
    let huge = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
    assert_eq!(verify_reset(&huge).unwrap_err(), LinkError::TooLarge);

    // Another user's id in a payload signed for alice.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = reset_claims();
    claims["sub"] = "u-mallory".into();
    parts[1] = compact::encode(claims.to_string().as_bytes());
    assert_eq!(
        verify_reset(&parts.join(".")).unwrap_err(),
        LinkError::BadSignature
    );
    // Signed by a key we do not hold, under a kid we do not know, or under ours.
    let theirs = reset()
        .mint(&OTHER, &audience(), Duration::from_secs(60), t0())
        .unwrap();
    assert_eq!(
        verify_reset(theirs.token.expose()).unwrap_err(),
        LinkError::UnknownKey
    );
    let spoofed = signed(&reset_header(), &reset_claims(), &OTHER);
    assert_eq!(verify_reset(&spoofed).unwrap_err(), LinkError::BadSignature);
    for kid in ["", "k 1", "../k1", &"k".repeat(MAX_KID_LEN + 1)] {
        let header = serde_json::json!({ "alg": "EdDSA", "typ": RESET_TYPE, "kid": kid });
        assert_eq!(
            verify_reset(&signed(&header, &reset_claims(), &KEY)).unwrap_err(),
            LinkError::UnknownKey,
            "{kid:?}"
        );
    }
}

#[test]
fn signed_but_unexpected_claims_are_refused() {
    let mut extra = reset_claims();
    extra["admin"] = true.into();
    let mut foreign = reset_claims();
    foreign["url"] = "https://app.example/a".into();
    let mut missing = reset_claims();
    missing.as_object_mut().unwrap().remove("fpr");
    let mut short_fpr = reset_claims();
    short_fpr["fpr"] = "AAAA".into();
    let mut bad_sub = reset_claims();
    bad_sub["sub"] = "".into();
    let mut bad_jti = reset_claims();
    bad_jti["jti"] = "1".into();
    for claims in [extra, foreign, missing, short_fpr, bad_sub, bad_jti] {
        let token = signed(&reset_header(), &claims, &KEY);
        assert_eq!(
            verify_reset(&token).unwrap_err(),
            LinkError::Malformed,
            "{claims}"
        );
    }
    let mut other_site = reset_claims();
    other_site["aud"] = "https://login.example.org".into();
    assert_eq!(
        verify_reset(&signed(&reset_header(), &other_site, &KEY)).unwrap_err(),
        LinkError::WrongAudience
    );
}

#[test]
fn lifetimes_are_capped_when_minting_and_when_verifying() {
    let over = |max: Duration| max + Duration::from_secs(1);
    assert_eq!(
        reset()
            .mint(&KEY, &audience(), over(PasswordReset::MAX_LIFETIME), t0())
            .unwrap_err(),
        LinkError::Lifetime
    );
    assert_eq!(
        reset()
            .mint(&KEY, &audience(), Duration::from_millis(999), t0())
            .unwrap_err(),
        LinkError::Lifetime
    );
    let address = EmailAddress::parse("a@example.com").unwrap();
    assert!(
        EmailVerification::new(alice(), &address)
            .mint(
                &KEY,
                &audience(),
                over(EmailVerification::MAX_LIFETIME),
                t0()
            )
            .is_err()
    );
    let target = LinkTarget::parse("https://app.example/a").unwrap();
    assert!(
        Download::new(alice(), target, false, 0)
            .mint(&KEY, &audience(), over(Download::MAX_LIFETIME), t0())
            .is_err()
    );
    // A token our key signed with a longer life than allowed (a bug elsewhere, or a key
    // shared with something that mints differently) is still refused.
    let mut long = reset_claims();
    long["exp"] = (long["iat"].as_i64().unwrap() + 1801).into();
    assert_eq!(
        verify_reset(&signed(&reset_header(), &long, &KEY)).unwrap_err(),
        LinkError::Lifetime
    );
    let mut backwards = reset_claims();
    backwards["exp"] = (backwards["iat"].as_i64().unwrap() - 1).into();
    assert_eq!(
        verify_reset(&signed(&reset_header(), &backwards, &KEY)).unwrap_err(),
        LinkError::Lifetime
    );
}

#[test]
fn expiry_is_exact_and_future_tokens_wait() {
    let token = reset_token();
    let exp = t0().saturating_add(PasswordReset::MAX_LIFETIME);
    let at = |t| PasswordReset::verify(&token, &[KEY], &audience(), t);
    assert!(at(Timestamp::from_unix_millis(exp.as_unix_millis() - 1)).is_ok());
    assert_eq!(at(exp).unwrap_err(), LinkError::Expired);
    assert!(at(exp).unwrap_err().is_expired());
    // Minted by an instance whose clock runs ahead: fine within the allowed skew.
    assert!(at(t0().saturating_sub(CLOCK_SKEW)).is_ok());
    assert_eq!(
        at(t0().saturating_sub(CLOCK_SKEW + Duration::from_secs(1))).unwrap_err(),
        LinkError::NotYetValid
    );
}

#[test]
fn any_key_of_the_ring_verifies_its_own_tokens() {
    let theirs = reset()
        .mint(&OTHER, &audience(), Duration::from_secs(60), t0())
        .unwrap();
    assert!(PasswordReset::verify(theirs.token.expose(), &[KEY, OTHER], &audience(), t0()).is_ok());
    assert!(PasswordReset::verify(&reset_token(), &[OTHER, KEY], &audience(), t0()).is_ok());
}

#[test]
fn tokens_and_ids_print_safely() {
    let minted = reset()
        .mint(&KEY, &audience(), Duration::from_secs(60), t0())
        .unwrap();
    assert_eq!(format!("{:?}", minted.token), "LinkToken([redacted])");
    assert!(!format!("{minted:?}").contains(minted.token.expose()));
    let id = minted.id.to_string();
    assert_eq!(id.len(), LINK_ID_LEN);
    assert_eq!(LinkId::parse(&id), Some(minted.id));
    assert!(minted.token.expose().len() < 600, "a reset token is small");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever arrives, nothing panics and nothing verifies.
    #[test]
    fn arbitrary_input_never_verifies(s in ".{0,600}") {
        prop_assert!(verify_reset(&s).is_err());
        prop_assert!(Download::verify(&s, &[KEY], &audience(), t0()).is_err());
    }

    /// Changing any one character of a genuine token breaks it.
    #[test]
    fn any_single_change_breaks_a_token(pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.-]") {
        let token = reset_token();
        let i = pos.index(token.len());
        let mut changed = token.clone();
        changed.replace_range(i..=i, &c);
        prop_assume!(changed != token);
        prop_assert!(verify_reset(&changed).is_err());
    }

    /// A download link for any clean path opens exactly that path, from the URL it was
    /// handed out as, and no other.
    #[test]
    fn download_links_open_exactly_their_target(
        segments in prop::collection::vec("[A-Za-z0-9_~-]{1,12}", 1..6),
        query in prop::option::of("[a-z]{1,5}=[A-Za-z0-9]{0,5}"),
        ttl in 1u64..=3600,
    ) {
        let path = format!("/{}", segments.join("/"));
        let q = query.map(|q| format!("?{q}")).unwrap_or_default();
        let target = LinkTarget::parse(&format!("https://app.example{path}{q}")).unwrap();
        let minted = Download::new(alice(), target.clone(), false, 0)
            .mint(&KEY, &audience(), Duration::from_secs(ttl), t0())
            .unwrap();
        let url = target.with_token(&minted.token);
        let (asked, token) =
            LinkTarget::from_request(target.origin(), &url["https://app.example".len()..]).unwrap();
        let verified = Download::verify(token, &[KEY], &audience(), t0()).unwrap();
        prop_assert_eq!(verified.claims.target(), &asked);
        let sibling = format!("{path}x{q}");
        let (other, _) = LinkTarget::from_request(
            target.origin(),
            &format!("{sibling}{}cloakroom_link={token}", if q.is_empty() { '?' } else { '&' }),
        ).unwrap();
        prop_assert_ne!(verified.claims.target(), &other);
    }

    /// The target parser never panics, and what it accepts it accepts again unchanged.
    #[test]
    fn targets_parse_to_a_fixed_point(s in "[ -~]{0,80}") {
        for url in [format!("https://app.example/{s}"), s.clone()] {
            if let Ok(t) = LinkTarget::parse(&url) {
                prop_assert_eq!(LinkTarget::parse(&t.to_string()), Ok(t.clone()));
                let p = t.path();
                prop_assert!(!p.contains("/../") && !p.contains("/./") && !p.contains("//"));
            }
        }
        let origin = Origin::parse("https://app.example").unwrap();
        let _ = LinkTarget::from_request(&origin, &s);
    }
}
