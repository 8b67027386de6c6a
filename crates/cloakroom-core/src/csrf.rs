//! Synchronizer CSRF tokens bound to a session.
//!
//! Each session carries a random [`CsrfSecret`]. Pages and `GET /api/session` hand out
//! [`CsrfSecret::masked_token`]s: the secret XORed with a fresh one-time pad, pad prepended.
//! Every token is different, so a compression side channel (BREACH) cannot recover the
//! secret from responses, yet all of them verify against the one secret. A new session —
//! login, rotation — has a new secret, so tokens never outlive the session they came from and
//! one session's token is worthless for another.
//!
//! The token complements, and does not replace, the Fetch-Metadata/Origin check in
//! [`origin`](crate::origin): either one alone stops the classic cross-site form post; both
//! together also cover old browsers and same-site subdomain attackers.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::random::random_array;
use crate::token::decode_fixed;

/// Length of an encoded CSRF token: 64 bytes in base64url without padding.
pub const CSRF_TOKEN_LEN: usize = 86;

/// A session's CSRF secret. `Debug` is redacted; equality is constant-time.
#[derive(Clone)]
pub struct CsrfSecret([u8; 32]);

impl CsrfSecret {
    /// A fresh secret from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_array())
    }

    /// A secret from its raw bytes (as read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes, for a store to persist.
    pub const fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A fresh masked token for this secret, to embed in a form or hand to a script.
    pub fn masked_token(&self) -> String {
        let pad: [u8; 32] = random_array();
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&pad);
        for (i, b) in self.0.iter().enumerate() {
            raw[32 + i] = b ^ pad[i];
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `presented` is a token produced by [`masked_token`](Self::masked_token) for this
    /// secret. Malformed input is simply `false`; the comparison is constant-time.
    pub fn verify(&self, presented: &str) -> bool {
        let Ok(raw) = decode_fixed::<CSRF_TOKEN_LEN, 64>(presented) else {
            return false;
        };
        let mut unmasked = [0u8; 32];
        for i in 0..32 {
            unmasked[i] = raw[i] ^ raw[32 + i];
        }
        unmasked.ct_eq(&self.0).into()
    }
}

impl fmt::Debug for CsrfSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfSecret([redacted])")
    }
}

impl PartialEq for CsrfSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for CsrfSecret {}

impl serde::Serialize for CsrfSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for CsrfSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode_fixed::<43, 32>(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_and_verify() {
        let s = CsrfSecret::generate();
        let a = s.masked_token();
        let b = s.masked_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), CSRF_TOKEN_LEN);
        assert!(s.verify(&a));
        assert!(s.verify(&b));
    }

    #[test]
    fn another_sessions_token_and_garbage_fail() {
        let s = CsrfSecret::generate();
        let other = CsrfSecret::generate();
        assert!(!s.verify(&other.masked_token()));
        assert!(!s.verify(""));
        assert!(!s.verify(&"A".repeat(CSRF_TOKEN_LEN)));
        let mut t = s.masked_token();
        t.push('A');
        assert!(!s.verify(&t));
        let flipped: String = {
            let mut raw = URL_SAFE_NO_PAD.decode(s.masked_token()).unwrap();
            raw[40] ^= 1;
            URL_SAFE_NO_PAD.encode(raw)
        };
        assert!(!s.verify(&flipped));
    }

    #[test]
    fn serde_round_trip_and_redacted_debug() {
        let s = CsrfSecret::generate();
        let json = serde_json::to_string(&s).unwrap();
        let back: CsrfSecret = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(format!("{s:?}"), "CsrfSecret([redacted])");
    }
}
