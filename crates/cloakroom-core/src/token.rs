//! The ticket and the coat-hook: [`SessionToken`] is what the browser holds, [`SessionId`] is what
//! the store sees, [`SessionHandle`] is what a user sees in "your devices".
//!
//! The three are deliberately different values. A store only ever holds the SHA-256 of the
//! token, so a leaked database or Redis dump yields no usable cookie (OWASP ASVS 5.0 V7.2).
//! The handle is an independent random value, so listing or revoking a device never exposes the
//! token or its hash in a page or URL.

use std::fmt;
use std::hash::Hasher;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::random::random_array;

/// Length of an encoded [`SessionToken`]: 32 bytes in base64url without padding.
pub const TOKEN_LEN: usize = 43;
/// Length of an encoded [`SessionHandle`]: 16 bytes in base64url without padding.
pub const HANDLE_LEN: usize = 22;

/// Why a presented token (or handle) was refused before any store was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The value has the wrong length for its kind.
    #[error("wrong length: expected {expected} characters, got {actual}")]
    Length {
        /// The only accepted length.
        expected: usize,
        /// The length presented.
        actual: usize,
    },
    /// The value has the right length but is not canonical base64url without padding.
    #[error("not canonical base64url")]
    Encoding,
}

/// The bearer secret in the session cookie: 256 bits from the operating system's CSPRNG.
///
/// It can only be obtained by [`generate`](Self::generate) or a successful, strict
/// [`parse`](Self::parse) — so holding one means the shape was already checked and no store is
/// ever queried for garbage. It has no `Display`: the only way to get the text is
/// [`expose_cookie_value`](Self::expose_cookie_value), which is easy to spot in review. `Debug`
/// is redacted and equality is constant-time.
#[derive(Clone)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_array())
    }

    /// Parses a presented token: exactly 43 characters of canonical base64url, no padding.
    ///
    /// The length is checked before anything is decoded, so an oversized value costs nothing.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        decode_fixed::<TOKEN_LEN, 32>(s).map(Self)
    }

    /// The value to put in the cookie. Never log it.
    pub fn expose_cookie_value(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The store key for this token: SHA-256 of its 32 bytes.
    pub fn id(&self) -> SessionId {
        SessionId(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SessionToken {}

/// The store key of a session: SHA-256 of its token.
///
/// Knowing an id does not let anyone forge the cookie (that would take a SHA-256 preimage), so
/// it may appear in logs and store keys; it still never appears in a page or URL — that is
/// what [`SessionHandle`] is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// An id from its 32 raw bytes (as read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, 64 characters (the form text-keyed stores use).
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.0 {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Self, TokenError> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(TokenError::Length {
                expected: 64,
                actual: bytes.len(),
            });
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
        }
        Ok(Self(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Result<u8, TokenError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(TokenError::Encoding),
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to correlate log lines.
        write!(f, "SessionId({}…)", &self.to_hex()[..12])
    }
}

/// The public name of a session: shown in "your devices", used in revoke-one URLs.
///
/// Independent of the token (16 random bytes), so it reveals nothing about the cookie.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// A fresh random handle.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_array::<16>()))
    }

    /// Parses a handle: exactly 22 characters of canonical base64url.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        decode_fixed::<HANDLE_LEN, 16>(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: width and alignment (`{:<32}`) are honoured in tables.
        f.pad(&self.0)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.0)
    }
}

impl serde::Serialize for SessionHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SessionHandle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Decodes exactly `CHARS` characters of canonical, unpadded base64url into `BYTES` bytes.
pub(crate) fn decode_fixed<const CHARS: usize, const BYTES: usize>(
    s: &str,
) -> Result<[u8; BYTES], TokenError> {
    if s.len() != CHARS {
        return Err(TokenError::Length {
            expected: CHARS,
            actual: s.len(),
        });
    }
    let mut out = [0u8; BYTES];
    // The engine rejects padding, characters outside the URL-safe alphabet and non-zero
    // trailing bits, so every accepted token has exactly one spelling.
    match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
        Ok(n) if n == BYTES => Ok(out),
        _ => Err(TokenError::Encoding),
    }
}

/// Session ids are SHA-256 outputs of server-generated random tokens: already uniformly
/// distributed, and never chosen by a client (an attacker can only make lookups miss). Folding
/// the bytes into one word is therefore as good a hash as any, and SipHash over 32 bytes would
/// be wasted work on the hottest path in the system. Use it as
/// `BuildHasherDefault<SessionIdHasher>` for maps keyed by [`SessionId`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionIdHasher(u64);

impl Hasher for SessionIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_round_trip_and_differ() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a, b);
        let text = a.expose_cookie_value();
        assert_eq!(text.len(), TOKEN_LEN);
        assert_eq!(SessionToken::parse(&text).unwrap(), a);
        assert_eq!(SessionToken::parse(&text).unwrap().id(), a.id());
    }

    #[test]
    fn parse_is_strict() {
        let good = SessionToken::generate().expose_cookie_value();
        for bad in [
            String::new(),
            good[..42].to_owned(),
            format!("{good}A"),
            format!("{good}="),
            format!("{}+", &good[..42]),
            format!("{}/", &good[..42]),
            format!("{} ", &good[..42]),
            format!("{}é", &good[..41]),
            "A".repeat(10_000),
        ] {
            assert!(SessionToken::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn non_canonical_trailing_bits_are_refused() {
        // 43 chars carry 258 bits; the last character's low 2 bits must be zero.
        let mut s = "A".repeat(42);
        s.push('B');
        assert_eq!(SessionToken::parse(&s), Err(TokenError::Encoding));
        s.pop();
        s.push('E');
        assert!(SessionToken::parse(&s).is_ok());
    }

    #[test]
    fn debug_is_redacted() {
        let t = SessionToken::generate();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(&t.expose_cookie_value()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn id_is_sha256_and_hex_round_trips() {
        let t = SessionToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            t.id().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
        assert_eq!(SessionId::from_hex(&t.id().to_hex()).unwrap(), t.id());
        assert!(SessionId::from_hex("zz").is_err());
        assert!(SessionId::from_hex(&"g".repeat(64)).is_err());
    }

    #[test]
    fn handles_parse_strictly() {
        let h = SessionHandle::generate();
        assert_eq!(h.as_str().len(), HANDLE_LEN);
        assert_eq!(SessionHandle::parse(h.as_str()).unwrap(), h);
        assert!(SessionHandle::parse("short").is_err());
        assert!(SessionHandle::parse(&"!".repeat(HANDLE_LEN)).is_err());
    }
}
