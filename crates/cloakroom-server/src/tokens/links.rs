//! Single-use links as the server mints and verifies them: Ed25519 keys of their own, and the
//! URLs the flows hand out.
//!
//! The token format and every rule about it live in `cloakroom_core::link`; this module adds
//! the one thing core deliberately lacks, a crypto backend ([`LinkSigningKey`] implements
//! [`LinkKey`] with `ed25519-dalek`), and the keys' home.
//!
//! # Dedicated keys, in the data directory
//!
//! Link keys are not the service-JWT keys. A service JWT is handed to every app behind the
//! proxy; a key that signed both would let a bug in one check turn one kind of token into the
//! other. The `typ` header and `pur` claim already keep them apart; separate keys make that
//! hold even if a check were missed.
//!
//! They live in `<data_dir>/link-keys/` (one 0600 file per key, in a 0700 directory, written
//! atomically — the service-JWT keys' format and code), not in the account store. Whoever can
//! read the database can compute any account's reset fingerprint (password hash and epoch are
//! in it); if the signing key were there too, reading the database — a leaked backup, an
//! injected `SELECT` — would be enough to mint a reset link for every account. Kept apart, a
//! database leak costs password hashes to crack offline, not accounts. With the accounts in
//! PostgreSQL, where several instances must share the keys, they are in the database after
//! all — but sealed with the operator's secret, which the database never holds (see
//! [`crate::tokens::vault`]): a leak of the database alone still mints nothing.
//!
//! A key is made on first start and signs until another is added; every key in the directory
//! verifies. There is no rotation command yet: to rotate, add a key file and keep the old one
//! for a day (the longest link lifetime), then delete it.

use std::path::Path;
use std::time::Duration;

use cloakroom_core::Timestamp;
use cloakroom_core::link::{
    EmailVerification, LinkAlgorithm, LinkError, LinkKey, LinkPurpose, Minted, PasswordReset,
    SigningError, Verified,
};
use cloakroom_core::origin::Origin;
use ed25519_dalek::Signer as _;

use crate::tokens::keys::{KeyError, KeyRing};

/// An Ed25519 key that signs single-use links and nothing else.
pub struct LinkSigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for LinkSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigningKey")
            .field("kid", &self.kid)
            .field("private", &"[redacted]")
            .finish()
    }
}

impl LinkKey for LinkSigningKey {
    fn kid(&self) -> &str {
        &self.kid
    }

    fn algorithm(&self) -> LinkAlgorithm {
        LinkAlgorithm::EdDsa
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        Ok(self.key.sign(message).to_bytes().to_vec())
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        // `verify_strict`: no small-order keys or non-canonical signatures (RFC 8032's
        // cofactorless check, which also makes a signature unmalleable).
        ed25519_dalek::Signature::from_slice(signature)
            .is_ok_and(|s| self.key.verifying_key().verify_strict(message, &s).is_ok())
    }
}

/// The server's link keys and its public origin (every link's `aud`).
#[derive(Debug)]
pub struct Links {
    audience: Origin,
    /// Newest first: the first signs.
    keys: Vec<LinkSigningKey>,
    reset_ttl: Duration,
}

impl Links {
    /// Loads `<data_dir>/link-keys`, making the first key if there is none. Reset links will
    /// live `reset_ttl` (capped at 30 minutes).
    pub fn open(
        data_dir: &Path,
        audience: Origin,
        reset_ttl: Duration,
        now: Timestamp,
    ) -> Result<Self, KeyError> {
        Self::new(&KeyRing::open_links(data_dir, now)?, audience, reset_ttl)
    }

    /// Links signed by the keys of `ring` (the newest signs).
    pub(crate) fn new(
        ring: &KeyRing,
        audience: Origin,
        reset_ttl: Duration,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        // Oldest signer first in the ring; the newest signs.
        for k in ring.keys().iter().rev() {
            let key = k.ed25519().ok_or_else(|| KeyError::Invalid {
                path: format!("link key {}", k.kid()),
                reason: "link keys are Ed25519 (EdDSA)".into(),
            })?;
            keys.push(LinkSigningKey {
                kid: k.kid().to_owned(),
                key,
            });
        }
        Ok(Self {
            audience,
            keys,
            reset_ttl: reset_ttl.min(PasswordReset::MAX_LIFETIME),
        })
    }

    /// How long a reset link lives.
    pub fn reset_ttl(&self) -> Duration {
        self.reset_ttl
    }

    /// Mints a token for `link`, living `ttl`.
    pub fn mint<P: LinkPurpose>(
        &self,
        link: &P,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Minted, LinkError> {
        // `open` always leaves at least one key.
        let key = self.keys.first().ok_or(LinkError::Signing)?;
        link.mint(key, &self.audience, ttl, now)
    }

    /// Verifies a presented token for purpose `P`.
    pub fn verify<P: LinkPurpose>(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<Verified<P>, LinkError> {
        P::verify(token, &self.keys, &self.audience, now)
    }

    /// A reset link for `reset`: `<public_url>/password-reset?token=…`, living the configured
    /// reset lifetime.
    pub fn reset_url(
        &self,
        reset: &PasswordReset,
        now: Timestamp,
    ) -> Result<(String, Minted), LinkError> {
        let minted = self.mint(reset, self.reset_ttl, now)?;
        Ok((self.page_url("password-reset", &minted), minted))
    }

    /// A verification link for `verification`: `<public_url>/verify-email?token=…`, living
    /// 24 hours.
    pub fn verify_email_url(
        &self,
        verification: &EmailVerification,
        now: Timestamp,
    ) -> Result<(String, Minted), LinkError> {
        let minted = self.mint(verification, EmailVerification::MAX_LIFETIME, now)?;
        Ok((self.page_url("verify-email", &minted), minted))
    }

    fn page_url(&self, page: &str, minted: &Minted) -> String {
        // A token is base64url and dots: nothing in it needs escaping in a query.
        format!(
            "{}/{page}?token={}",
            self.audience.as_str().trim_end_matches('/'),
            minted.token.expose()
        )
    }
}

#[cfg(test)]
mod tests {
    use cloakroom_core::UserId;
    use cloakroom_core::accounts::PasswordHash;
    use cloakroom_core::link::ResetFingerprint;
    use cloakroom_core::mail::EmailAddress;

    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_unix_millis(1_700_000_000_000)
    }

    fn links(dir: &Path) -> Links {
        let origin = Origin::parse("https://login.example.com").unwrap();
        Links::open(dir, origin, Duration::from_secs(3600), t0()).unwrap()
    }

    /// jsonwebtoken-style trap, checked here too: the backend really signs, and a link
    /// verifies on a second process that loads the same directory.
    #[test]
    fn links_are_signed_with_ed25519_keys_of_their_own_that_survive_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = links(dir.path());
        assert_eq!(first.reset_ttl(), PasswordReset::MAX_LIFETIME, "capped");
        let user = UserId::new("u1").unwrap();
        let hash = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        let reset = PasswordReset::new(user.clone(), ResetFingerprint::of(&user, &hash, 0));
        let (url, minted) = first.reset_url(&reset, t0()).unwrap();
        assert!(url.starts_with("https://login.example.com/password-reset?token=ey"));
        assert!(url.ends_with(minted.token.expose()));
        let signature = minted.token.expose().rsplit('.').next().unwrap();
        assert_eq!(signature.len(), 86, "an Ed25519 signature is 64 bytes");

        let second = links(dir.path());
        let back = second
            .verify::<PasswordReset>(minted.token.expose(), t0())
            .unwrap();
        assert_eq!(back.claims, reset);
        assert!(
            second
                .verify::<EmailVerification>(minted.token.expose(), t0())
                .is_err()
        );

        let key_dir = dir.path().join("link-keys");
        assert_eq!(
            std::fs::metadata(&key_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(
            !dir.path().join("keys").exists(),
            "no service-JWT key was made or used"
        );

        let address = EmailAddress::parse("u1@example.com").unwrap();
        let (url, _) = second
            .verify_email_url(&EmailVerification::new(user, &address), t0())
            .unwrap();
        assert!(url.starts_with("https://login.example.com/verify-email?token=ey"));
    }

    #[test]
    fn another_deployments_keys_do_not_verify() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let user = UserId::new("u1").unwrap();
        let hash = PasswordHash::new("$x".into());
        let reset = PasswordReset::new(user.clone(), ResetFingerprint::of(&user, &hash, 0));
        let (_, minted) = links(a.path()).reset_url(&reset, t0()).unwrap();
        assert_eq!(
            links(b.path())
                .verify::<PasswordReset>(minted.token.expose(), t0())
                .unwrap_err(),
            LinkError::UnknownKey
        );
        assert!(format!("{:?}", links(a.path())).contains("[redacted]"));
    }
}
