//! The three purposes, and the fingerprints that make reset and verification links single-use.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::PasswordHash;
use crate::mail::EmailAddress;
use crate::session::UserId;

use super::sealed::{Claims, Sealed};
use super::{LinkError, LinkPurpose, LinkTarget, compact};

/// `typ` of a password-reset token.
pub const RESET_TYPE: &str = "cloakroom-reset+jwt";
/// `typ` of an email-verification token.
pub const VERIFY_EMAIL_TYPE: &str = "cloakroom-verify-email+jwt";
/// `typ` of a download-link token.
pub const DOWNLOAD_TYPE: &str = "cloakroom-link+jwt";

/// A digest of the account state a link was minted for, tagged with its purpose so that a
/// reset fingerprint can never stand in for a verification one. The flow recomputes it from
/// the account when the link comes back; the two compare in constant time.
pub struct Fingerprint<P>([u8; 32], PhantomData<fn() -> P>);

/// What a reset link is bound to: the account, its current password hash and its revocation
/// epoch.
///
/// `SHA-256("cloakroom reset fingerprint v1" 0x00 ‖ len‖user id ‖ len‖PHC string ‖
/// len‖epoch)`, each length a big-endian `u64`. Any change to the inputs (a new password —
/// through this link or any other way —, a revocation epoch moved on by "log out everywhere",
/// even a silent parameter upgrade of the hash at the next login) makes every outstanding link
/// stale.
///
/// A plain hash rather than a keyed MAC, because it needs no secret to be safe: the token is
/// signed, so a fingerprint cannot be forged or swapped, and what a link's holder can read —
/// the hash of a PHC string — is useless for guessing the password, since the PHC string's
/// random salt is among the hashed inputs and never leaves the database. The signing key, not
/// the fingerprint, is what stops a database reader from minting links (see the server's
/// `tokens::links`).
pub type ResetFingerprint = Fingerprint<PasswordReset>;

/// What a download link is bound to: the account that made it and its revocation epoch
/// ([`SessionStore::revocation_epoch`](crate::SessionStore::revocation_epoch)), so that "log
/// out everywhere", a password change or an administrator ending the user's sessions kills
/// every link the user handed out — whoever holds it now.
///
/// Built like [`ResetFingerprint`], under its own domain string. Not the password hash: a
/// silent parameter upgrade of the hash at the next login would kill links for no reason,
/// and every password change moves the epoch anyway (it ends the other sessions).
pub type DownloadFingerprint = Fingerprint<Download>;

/// What a verification link is bound to: the account, the exact address, and whether that
/// address is verified — minted for "not yet", so that once it is (or the address changes),
/// the link no longer matches and works no more.
///
/// Built like [`ResetFingerprint`], under its own domain string. Hashing the address rather
/// than carrying it keeps it out of a URL that proxies and browser histories may record.
pub type EmailFingerprint = Fingerprint<EmailVerification>;

impl Fingerprint<PasswordReset> {
    /// The fingerprint of an account's state now.
    pub fn of(user: &UserId, password_hash: &PasswordHash, revocation_epoch: u64) -> Self {
        Self::digest(
            "cloakroom reset fingerprint v1",
            &[
                user.as_str().as_bytes(),
                password_hash.expose().as_bytes(),
                &revocation_epoch.to_be_bytes(),
            ],
        )
    }
}

impl Fingerprint<EmailVerification> {
    /// The fingerprint of an account's address and its verified flag.
    pub fn of(user: &UserId, address: &EmailAddress, verified: bool) -> Self {
        Self::digest(
            "cloakroom verify-email fingerprint v1",
            &[
                user.as_str().as_bytes(),
                address.as_str().as_bytes(),
                &[u8::from(verified)],
            ],
        )
    }
}

impl Fingerprint<Download> {
    /// The fingerprint of an account's revocation state now.
    pub fn of(user: &UserId, revocation_epoch: u64) -> Self {
        Self::digest(
            "cloakroom download fingerprint v1",
            &[user.as_str().as_bytes(), &revocation_epoch.to_be_bytes()],
        )
    }
}

impl<P> Fingerprint<P> {
    /// A domain-separated SHA-256 over length-prefixed fields: no two different field lists
    /// hash the same input, whatever bytes the fields hold.
    fn digest(domain: &str, fields: &[&[u8]]) -> Self {
        let mut h = Sha256::new();
        h.update(domain.as_bytes());
        h.update([0]);
        for f in fields {
            h.update((f.len() as u64).to_be_bytes());
            h.update(f);
        }
        Self(h.finalize().into(), PhantomData)
    }

    fn to_claim(&self) -> String {
        compact::encode(&self.0)
    }

    /// The subject and fingerprint of a purpose bound to account state, refusing a token
    /// that carries a download link's claims besides.
    fn read_bound(claims: Claims) -> Result<(UserId, Self), LinkError> {
        if claims.url.is_some() || claims.once.is_some() {
            return Err(LinkError::Malformed);
        }
        let fingerprint = Self::from_claim(claims.fpr.as_deref())?;
        Ok((claims.sub, fingerprint))
    }

    fn from_claim(fpr: Option<&str>) -> Result<Self, LinkError> {
        compact::decode(fpr.ok_or(LinkError::Malformed)?)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(|b| Self(b, PhantomData))
            .ok_or(LinkError::Malformed)
    }
}

impl<P> Clone for Fingerprint<P> {
    fn clone(&self) -> Self {
        Self(self.0, PhantomData)
    }
}

impl<P> PartialEq for Fingerprint<P> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl<P> Eq for Fingerprint<P> {}

impl<P> fmt::Debug for Fingerprint<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(…)")
    }
}

/// A password-reset link's claims: whose password, and the account state it was minted for.
/// Its `typ` is [`RESET_TYPE`]; it lives at most 30 minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordReset {
    user: UserId,
    fingerprint: ResetFingerprint,
}

impl PasswordReset {
    /// The longest a reset link may live (OWASP's Forgot Password cheat sheet: short).
    pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

    /// A reset for `user`, whose account is now in the state `fingerprint` describes.
    pub fn new(user: UserId, fingerprint: ResetFingerprint) -> Self {
        Self { user, fingerprint }
    }

    /// Whose password it resets.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Whether the account is still in the state the link was minted for. `false` means the
    /// link was used (or overtaken by another password change or a "log out everywhere").
    pub fn is_current(&self, now: &ResetFingerprint) -> bool {
        self.fingerprint == *now
    }
}

impl LinkPurpose for PasswordReset {
    const TYP: &'static str = RESET_TYPE;
    const MAX_LIFETIME: Duration = Self::MAX_LIFETIME;
}

impl Sealed for PasswordReset {
    const NAME: &'static str = "reset";

    fn user(&self) -> &UserId {
        &self.user
    }

    fn write(&self, claims: &mut Claims) {
        claims.fpr = Some(self.fingerprint.to_claim());
    }

    fn read(claims: Claims) -> Result<Self, LinkError> {
        let (user, fingerprint) = Fingerprint::read_bound(claims)?;
        Ok(Self { user, fingerprint })
    }
}

/// An email-verification link's claims: whose account, bound to the address it was sent to.
/// Its `typ` is [`VERIFY_EMAIL_TYPE`]; it lives at most 24 hours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailVerification {
    user: UserId,
    fingerprint: EmailFingerprint,
}

impl EmailVerification {
    /// The longest a verification link may live.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

    /// A verification of `address` (not verified yet) for `user`.
    pub fn new(user: UserId, address: &EmailAddress) -> Self {
        let fingerprint = EmailFingerprint::of(&user, address, false);
        Self { user, fingerprint }
    }

    /// Whose address it verifies.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// Whether the account still holds the address the link was sent to, unverified: the
    /// caller passes the account's fingerprint now ([`EmailFingerprint::of`] its address and
    /// verified flag).
    pub fn is_current(&self, now: &EmailFingerprint) -> bool {
        self.fingerprint == *now
    }
}

impl LinkPurpose for EmailVerification {
    const TYP: &'static str = VERIFY_EMAIL_TYPE;
    const MAX_LIFETIME: Duration = Self::MAX_LIFETIME;
}

impl Sealed for EmailVerification {
    const NAME: &'static str = "verify-email";

    fn user(&self) -> &UserId {
        &self.user
    }

    fn write(&self, claims: &mut Claims) {
        claims.fpr = Some(self.fingerprint.to_claim());
    }

    fn read(claims: Claims) -> Result<Self, LinkError> {
        let (user, fingerprint) = Fingerprint::read_bound(claims)?;
        Ok(Self { user, fingerprint })
    }
}

/// A download link's claims: who shares it, the one URL it opens, whether it opens it once,
/// and the sharer's revocation state it was made in ([`DownloadFingerprint`]). Its `typ` is
/// [`DOWNLOAD_TYPE`]; it lives at most an hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    user: UserId,
    target: LinkTarget,
    single_use: bool,
    fingerprint: DownloadFingerprint,
}

impl Download {
    /// The longest a download link may live.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
    /// The lifetime when none is asked for.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);

    /// A link made by `user` for `target`, while the user's revocation epoch is
    /// `revocation_epoch`.
    pub fn new(user: UserId, target: LinkTarget, single_use: bool, revocation_epoch: u64) -> Self {
        let fingerprint = DownloadFingerprint::of(&user, revocation_epoch);
        Self {
            user,
            target,
            single_use,
            fingerprint,
        }
    }

    /// Who made it (whose identity the app sees when it is used).
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// What it opens.
    pub fn target(&self) -> &LinkTarget {
        &self.target
    }

    /// Whether the first use consumes it (the caller records the token's id until it expires).
    pub fn single_use(&self) -> bool {
        self.single_use
    }

    /// Whether the user's revocation epoch is still the one the link was made in. `false`
    /// means the user logged out everywhere (or changed the password, or an administrator
    /// ended their sessions) since: the link is dead.
    pub fn is_current(&self, revocation_epoch: u64) -> bool {
        self.fingerprint == DownloadFingerprint::of(&self.user, revocation_epoch)
    }
}

impl LinkPurpose for Download {
    const TYP: &'static str = DOWNLOAD_TYPE;
    const MAX_LIFETIME: Duration = Self::MAX_LIFETIME;
}

impl Sealed for Download {
    const NAME: &'static str = "link";

    fn user(&self) -> &UserId {
        &self.user
    }

    fn write(&self, claims: &mut Claims) {
        claims.url = Some(self.target.to_string());
        claims.once = Some(self.single_use);
        claims.fpr = Some(self.fingerprint.to_claim());
    }

    fn read(claims: Claims) -> Result<Self, LinkError> {
        let (Some(url), Some(single_use)) = (claims.url, claims.once) else {
            return Err(LinkError::Malformed);
        };
        let fingerprint = DownloadFingerprint::from_claim(claims.fpr.as_deref())?;
        // Re-parsed as strictly as when it was minted: a verified link names a clean target.
        let target = LinkTarget::parse(&url).map_err(|_| LinkError::Malformed)?;
        Ok(Self {
            user: claims.sub,
            target,
            single_use,
            fingerprint,
        })
    }
}
