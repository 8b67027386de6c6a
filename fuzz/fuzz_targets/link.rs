//! Single-use link tokens and download-link URLs on arbitrary input.
//!
//! The key here accepts every signature, so the fuzzer gets past the signature check into the
//! claims: whatever it finds must still never panic, and anything accepted must satisfy every
//! rule a genuine token does (right purpose, audience, lifetime cap, not expired). The URL
//! parsers must never panic, must refuse every traversal, and must give back what they accept.
#![no_main]

use cloakroom_core::link::{
    Download, EmailVerification, LinkAlgorithm, LinkKey, LinkPurpose, LinkTarget, PasswordReset,
    SigningError,
};
use cloakroom_core::origin::Origin;
use cloakroom_core::Timestamp;
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
struct AcceptsAnything;

impl LinkKey for AcceptsAnything {
    fn kid(&self) -> &str {
        "k1"
    }
    fn algorithm(&self) -> LinkAlgorithm {
        LinkAlgorithm::EdDsa
    }
    fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SigningError> {
        Ok(vec![0])
    }
    fn verify(&self, _: &[u8], _: &[u8]) -> bool {
        true
    }
}

fuzz_target!(|input: (String, String, i64)| {
    let (token, url, now) = input;
    let audience = Origin::parse("https://login.example.com").unwrap();
    let now = Timestamp::from_unix_millis(now);
    let keys = [AcceptsAnything];
    if let Ok(v) = PasswordReset::verify(&token, &keys, &audience, now) {
        assert!(v.expires_at > now);
        assert!(v.expires_at.duration_since(v.issued_at) <= PasswordReset::MAX_LIFETIME);
    }
    if let Ok(v) = EmailVerification::verify(&token, &keys, &audience, now) {
        assert!(v.expires_at.duration_since(v.issued_at) <= EmailVerification::MAX_LIFETIME);
    }
    if let Ok(v) = Download::verify(&token, &keys, &audience, now) {
        assert!(v.expires_at.duration_since(v.issued_at) <= Download::MAX_LIFETIME);
        let t = v.claims.target();
        assert_eq!(LinkTarget::parse(&t.to_string()).as_ref(), Ok(t));
    }
    if let Ok(t) = LinkTarget::parse(&url) {
        assert_eq!(LinkTarget::parse(&t.to_string()).as_ref(), Ok(&t));
        assert!(!t.path().split('/').any(|s| s == "." || s == ".."));
    }
    let app = Origin::parse("https://app.example").unwrap();
    if let Ok((t, token)) = LinkTarget::from_request(&app, &url) {
        assert!(!token.is_empty());
        assert!(!t.path().split('/').any(|s| s == "." || s == ".."));
        assert!(t.query().is_none_or(|q| !q.split('&').any(|p| p.starts_with("cloakroom_link="))));
    }
});
