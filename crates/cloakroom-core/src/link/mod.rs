//! Single-use links: purpose-bound, short-lived signed tokens for a password reset, an email
//! verification and a download.
//!
//! These are the jobs a JWT fits: the token carries its own purpose, subject and expiry in a
//! URL, and whoever holds the URL can use it once without a session. Each purpose has its own
//! type — [`PasswordReset`], [`EmailVerification`], [`Download`] — with its own `typ` header,
//! `pur` claim and longest lifetime, and a token minted for one is refused as any other (RFC
//! 8725 §3.11–3.12, explicit typing and distinct validation rules per kind).
//!
//! ```text
//! header   {"alg":"EdDSA","typ":"cloakroom-reset+jwt","kid":"…"}
//! payload  {"aud":"https://login.example.com","sub":"<user id>","pur":"reset",
//!           "iat":…,"exp":…,"jti":"<128 random bits>","fpr":"<fingerprint>"}
//! ```
//!
//! # Design
//!
//! * **Core holds no crypto backend.** Signing is behind [`LinkKey`] (bytes in, bytes out);
//!   the Cloakroom server implements it with Ed25519 on keys used for nothing else. Everything
//!   around the signature — the compact serialization, the header, the claims — is core's, so
//!   an app embedding Cloakroom gets exactly the server's parsing.
//! * **Parse, don't validate.** A token is at most [`MAX_TOKEN_LEN`] bytes of canonical
//!   base64url; the header must be exactly `alg`, `typ`, `kid`; the algorithm must be one
//!   [`LinkAlgorithm`] names (so `none` and `HS256` are refused before any key is looked up)
//!   and the one bound to that `kid`; the `typ` must be the purpose's. Only then is the
//!   signature checked, and only a signed payload is parsed. What comes out is a
//!   [`Verified`] purpose value: there is no other way to get one.
//! * **Bound to this Cloakroom.** `aud` is the public origin; a token minted by another
//!   deployment (even one sharing keys by mistake) is refused.
//! * **Single use without a table, where the account can say so.** A reset token carries a
//!   [`ResetFingerprint`] of the account's current password hash and revocation epoch; the
//!   flow recomputes it from the account and refuses a token whose fingerprint no longer
//!   matches, so setting the password (with this link or any other way) or "log out
//!   everywhere" kills every outstanding reset link. A verification token carries an
//!   [`EmailFingerprint`] of the account, the exact address and its verified flag, which stops
//!   matching once the address is verified or changed. A download link carries a
//!   [`DownloadFingerprint`] of its maker's revocation epoch (which "log out everywhere"
//!   moves), and, with `single_use`, the flow records its [`LinkId`] in the session store
//!   until it expires ([`SessionStore::consume_link`](crate::SessionStore::consume_link)):
//!   a download leaves no account state behind to compare.
//! * **Short lives, capped twice.** Minting refuses a lifetime over the purpose's maximum
//!   (reset 30 minutes, verification 24 hours, download one hour), and verification refuses a
//!   token whose `exp − iat` exceeds it, whoever signed it.
//!
//! ```
//! use std::time::Duration;
//! use cloakroom_core::{Timestamp, UserId};
//! use cloakroom_core::accounts::PasswordHash;
//! use cloakroom_core::link::{
//!     LinkAlgorithm, LinkError, LinkKey, LinkPurpose, PasswordReset, ResetFingerprint, SigningError,
//! };
//! use cloakroom_core::origin::Origin;
//!
//! // Stands for a real signature (the server's is Ed25519); do not copy.
//! #[derive(Debug)]
//! struct DemoKey;
//! impl LinkKey for DemoKey {
//!     fn kid(&self) -> &str { "demo" }
//!     fn algorithm(&self) -> LinkAlgorithm { LinkAlgorithm::EdDsa }
//!     fn sign(&self, m: &[u8]) -> Result<Vec<u8>, SigningError> { Ok(m.iter().rev().copied().collect()) }
//!     fn verify(&self, m: &[u8], s: &[u8]) -> bool { m.iter().rev().eq(s.iter()) }
//! }
//!
//! let audience = Origin::parse("https://login.example.com").unwrap();
//! let alice = UserId::new("u-1").unwrap();
//! let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
//! let now = Timestamp::from_unix_millis(1_700_000_000_000);
//!
//! let reset = PasswordReset::new(alice.clone(), ResetFingerprint::of(&alice, &hash, 0));
//! let minted = reset.mint(&DemoKey, &audience, Duration::from_secs(1800), now).unwrap();
//!
//! let later = now.saturating_add(Duration::from_secs(60));
//! let link = PasswordReset::verify(minted.token.expose(), &[DemoKey], &audience, later).unwrap();
//! assert_eq!(link.claims.user(), &alice);
//! assert!(link.claims.is_current(&ResetFingerprint::of(&alice, &hash, 0)));
//! // After a logout everywhere (epoch 1) the same link no longer matches the account.
//! assert!(!link.claims.is_current(&ResetFingerprint::of(&alice, &hash, 1)));
//!
//! let expired = now.saturating_add(Duration::from_secs(1800));
//! assert_eq!(
//!     PasswordReset::verify(minted.token.expose(), &[DemoKey], &audience, expired).unwrap_err(),
//!     LinkError::Expired
//! );
//! ```

mod compact;
mod key;
mod purpose;
mod target;

use std::fmt;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::origin::Origin;
use crate::random::random_array;

pub use compact::MAX_KID_LEN;
pub use key::{LinkAlgorithm, LinkKey, SigningError};
pub use purpose::{
    DOWNLOAD_TYPE, Download, DownloadFingerprint, EmailFingerprint, EmailVerification, Fingerprint,
    PasswordReset, RESET_TYPE, ResetFingerprint, VERIFY_EMAIL_TYPE,
};
pub use target::{LINK_PARAMETER, LinkTarget, LinkTargetError, MAX_TARGET_LEN, link_allows_method};

/// Largest token accepted, in bytes. Checked before anything else is looked at.
pub const MAX_TOKEN_LEN: usize = 4096;

/// How far in the future an `iat` may be (clock skew between the instances that mint and
/// verify).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Why a token was not minted or not accepted.
///
/// The variants say what was wrong for logs and tests; a web edge should tell a user no more
/// than "expired" (offer a new link) or "invalid". None carries any part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Larger than [`MAX_TOKEN_LEN`].
    #[error("the link token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    /// Not three canonical base64url parts, or a header or payload that does not parse as
    /// exactly what link tokens carry.
    #[error("the link token is malformed")]
    Malformed,
    /// The header names an algorithm Cloakroom does not sign links with (`none`, `HS256`, …).
    #[error("the link token's algorithm is not accepted")]
    UnsupportedAlgorithm,
    /// The header's `typ` is not a Cloakroom link type.
    #[error("the token is not a Cloakroom link token")]
    UnknownType,
    /// A Cloakroom link token, but for another purpose (a verification link used to reset a
    /// password, say).
    #[error("the link token is for another purpose")]
    WrongType,
    /// No key has the header's `kid`, or that key signs with another algorithm. (When
    /// minting: the key's id is not a valid `kid`.)
    #[error("the link token's key is unknown")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the link token's signature is invalid")]
    BadSignature,
    /// The `aud` is another Cloakroom's.
    #[error("the link token is for another site")]
    WrongAudience,
    /// The lifetime asked for at minting is zero or over the purpose's maximum, or a token's
    /// `exp − iat` is.
    #[error("the link token's lifetime is not allowed")]
    Lifetime,
    /// Issued in the future (beyond [`CLOCK_SKEW`]).
    #[error("the link token is not valid yet")]
    NotYetValid,
    /// Past its `exp`.
    #[error("the link has expired")]
    Expired,
    /// The key could not sign (minting only).
    #[error("the link-signing key failed to sign")]
    Signing,
}

impl LinkError {
    /// Whether the token was genuine and only too old: the one case worth telling a user
    /// apart from "invalid", since asking for a new link fixes it.
    pub fn is_expired(&self) -> bool {
        matches!(self, Self::Expired)
    }
}

/// A minted token: a bearer secret. Prints as `[redacted]`; the text comes out only through
/// [`expose`](Self::expose), to be put in a URL and never in a log.
#[derive(Clone)]
pub struct LinkToken(String);

impl LinkToken {
    /// The token's text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken([redacted])")
    }
}

impl PartialEq for LinkToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}
impl Eq for LinkToken {}

/// Length of an encoded [`LinkId`].
pub const LINK_ID_LEN: usize = 22;

/// A token's unique id (`jti`): 128 random bits. Not a secret — a token cannot be rebuilt from
/// it — so it may be logged and stored, as a single-use download link's "used" record is.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId([u8; 16]);

impl LinkId {
    /// A fresh id: 128 bits from the OS CSPRNG. Minting makes one for every token; a store's
    /// tests make their own.
    pub fn generate() -> Self {
        Self(random_array())
    }

    /// Parses an encoded id: [`LINK_ID_LEN`] characters of canonical base64url.
    pub fn parse(s: &str) -> Option<Self> {
        crate::token::decode_fixed::<LINK_ID_LEN, 16>(s)
            .ok()
            .map(Self)
    }

    /// The 16 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compact::encode(&self.0))
    }
}

impl fmt::Debug for LinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkId({self})")
    }
}

/// What minting gives back.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The token, for the URL.
    pub token: LinkToken,
    /// Its `jti`.
    pub id: LinkId,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// A token that verified: its purpose's claims, which only [`LinkPurpose::verify`] can
/// produce.
#[derive(Debug, Clone)]
pub struct Verified<P> {
    /// What the token says, beyond the common claims.
    pub claims: P,
    /// Its `jti`.
    pub id: LinkId,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
}

/// One of the three purposes: [`PasswordReset`], [`EmailVerification`], [`Download`]. Sealed:
/// a purpose is a set of rules core enforces, not an extension point.
pub trait LinkPurpose: sealed::Sealed + Sized {
    /// The `typ` header of its tokens.
    const TYP: &'static str;
    /// The longest lifetime its tokens may have.
    const MAX_LIFETIME: Duration;

    /// Signs a token for these claims, living `ttl` (1 s to
    /// [`MAX_LIFETIME`](Self::MAX_LIFETIME)), issued by the Cloakroom at `audience`.
    fn mint<K: LinkKey + ?Sized>(
        &self,
        key: &K,
        audience: &Origin,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Minted, LinkError> {
        mint(self, key, audience, ttl, now)
    }

    /// Verifies a presented token against `keys` (any one of them may have signed it) and
    /// this Cloakroom's `audience`, at `now`.
    fn verify<K: LinkKey>(
        token: &str,
        keys: &[K],
        audience: &Origin,
        now: Timestamp,
    ) -> Result<Verified<Self>, LinkError> {
        verify(token, keys, audience, now)
    }
}

/// What only core may see of a purpose: its claim name and how its claims are written and
/// read back.
mod sealed {
    // Reachable only through `LinkPurpose`'s bound, which outside code can name but not
    // implement: the sealed-trait pattern.
    #![allow(unreachable_pub)]

    use serde::{Deserialize, Serialize};

    use super::LinkError;
    use crate::session::UserId;

    /// The claims every link token has, plus each purpose's own (absent ones stay absent: a
    /// reset token with a `url` claim is malformed). Unknown claims are refused.
    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Claims {
        pub(crate) aud: String,
        pub(crate) sub: UserId,
        pub(crate) pur: String,
        pub(crate) iat: i64,
        pub(crate) exp: i64,
        pub(crate) jti: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(crate) fpr: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(crate) url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub(crate) once: Option<bool>,
    }

    pub trait Sealed: Sized {
        /// The `pur` claim.
        const NAME: &'static str;
        /// Whose link it is (the `sub` claim).
        fn user(&self) -> &UserId;
        /// Writes the purpose's own claims.
        fn write(&self, claims: &mut Claims);
        /// Reads them back, refusing a token that lacks one or carries another purpose's.
        fn read(claims: Claims) -> Result<Self, LinkError>;
    }
}

use sealed::Claims;

/// Every `typ` Cloakroom mints: a header naming none of them is not ours at all.
const TYPES: [&str; 3] = [RESET_TYPE, VERIFY_EMAIL_TYPE, DOWNLOAD_TYPE];

fn mint<P: LinkPurpose, K: LinkKey + ?Sized>(
    link: &P,
    key: &K,
    audience: &Origin,
    ttl: Duration,
    now: Timestamp,
) -> Result<Minted, LinkError> {
    let secs = ttl.as_secs();
    if secs == 0 || ttl > P::MAX_LIFETIME {
        return Err(LinkError::Lifetime);
    }
    if !compact::valid_kid(key.kid()) {
        return Err(LinkError::UnknownKey);
    }
    let id = LinkId::generate();
    let iat = now.as_unix_secs();
    let exp = iat.saturating_add(i64::try_from(secs).map_err(|_| LinkError::Lifetime)?);
    let mut claims = Claims {
        aud: audience.as_str().to_owned(),
        sub: sealed::Sealed::user(link).clone(),
        pur: P::NAME.to_owned(),
        iat,
        exp,
        jti: id.to_string(),
        fpr: None,
        url: None,
        once: None,
    };
    link.write(&mut claims);
    let header = compact::Header {
        alg: key.algorithm().as_str().to_owned(),
        typ: P::TYP.to_owned(),
        kid: key.kid().to_owned(),
    };
    let payload = serde_json::to_vec(&claims).map_err(|_| LinkError::Malformed)?;
    let input = compact::signing_input(&header, &payload)?;
    let signature = key.sign(input.as_bytes()).map_err(|_| LinkError::Signing)?;
    let token = format!("{input}.{}", compact::encode(&signature));
    if token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::TooLarge);
    }
    Ok(Minted {
        token: LinkToken(token),
        id,
        expires_at: Timestamp::from_unix_millis(exp.saturating_mul(1000)),
    })
}

fn verify<P: LinkPurpose, K: LinkKey>(
    token: &str,
    keys: &[K],
    audience: &Origin,
    now: Timestamp,
) -> Result<Verified<P>, LinkError> {
    let parsed = compact::parse(token)?;
    let header = &parsed.header;
    let alg = LinkAlgorithm::from_jose(&header.alg).ok_or(LinkError::UnsupportedAlgorithm)?;
    if !TYPES.contains(&header.typ.as_str()) {
        return Err(LinkError::UnknownType);
    }
    if header.typ != P::TYP {
        return Err(LinkError::WrongType);
    }
    if !compact::valid_kid(&header.kid) {
        return Err(LinkError::UnknownKey);
    }
    let key = keys
        .iter()
        .find(|k| k.kid() == header.kid && k.algorithm() == alg)
        .ok_or(LinkError::UnknownKey)?;
    let signature = compact::decode(parsed.signature).ok_or(LinkError::BadSignature)?;
    if signature.is_empty() || !key.verify(parsed.signing_input.as_bytes(), &signature) {
        return Err(LinkError::BadSignature);
    }
    // From here on the payload is ours (signed by our key), but it is parsed as strictly.
    let payload = compact::decode(parsed.payload).ok_or(LinkError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| LinkError::Malformed)?;
    if claims.pur != P::NAME {
        return Err(LinkError::WrongType);
    }
    if claims.aud != audience.as_str() {
        return Err(LinkError::WrongAudience);
    }
    let lifetime = claims
        .exp
        .checked_sub(claims.iat)
        .ok_or(LinkError::Lifetime)?;
    let max = i64::try_from(P::MAX_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    if lifetime <= 0 || lifetime > max {
        return Err(LinkError::Lifetime);
    }
    let skew = i64::try_from(CLOCK_SKEW.as_secs()).unwrap_or(0);
    if claims.iat > now.as_unix_secs().saturating_add(skew) {
        return Err(LinkError::NotYetValid);
    }
    if now.as_unix_millis() >= claims.exp.saturating_mul(1000) {
        return Err(LinkError::Expired);
    }
    let id = LinkId::parse(&claims.jti).ok_or(LinkError::Malformed)?;
    let (issued_at, expires_at) = (
        Timestamp::from_unix_millis(claims.iat.saturating_mul(1000)),
        Timestamp::from_unix_millis(claims.exp.saturating_mul(1000)),
    );
    Ok(Verified {
        claims: P::read(claims)?,
        id,
        issued_at,
        expires_at,
    })
}

#[cfg(test)]
mod tests;
