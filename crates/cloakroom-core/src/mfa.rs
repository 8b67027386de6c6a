//! Second factors: what an account keeps beside its password, and the store contract for it.
//!
//! Three kinds, as the server offers them: a TOTP authenticator (RFC 6238), single-use
//! recovery codes, and passkeys (WebAuthn credentials). Core holds the records and the
//! [`SecondFactorStore`] contract; the protocols themselves (TOTP codes, WebAuthn ceremonies)
//! and the sealing of secrets are the server's. The store never sees a secret in the clear:
//! a TOTP secret arrives sealed, a recovery code as its digest, and a passkey is public-key
//! material only.
//!
//! Every "use" is a compare-and-set in the store, so that of any number of concurrent uses
//! — on one instance or several — exactly one wins: a TOTP time step is accepted once, a
//! recovery code once.

use std::fmt;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::{StoreError, Timestamp, UserId};

/// An account's TOTP authenticator as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// The shared secret, sealed by the server (the store cannot read it).
    pub sealed: Vec<u8>,
    /// When enrolment began.
    pub created_at: Timestamp,
    /// When the first code confirmed it; `None` while enrolment is unfinished, and then the
    /// authenticator is not a factor yet.
    pub confirmed_at: Option<Timestamp>,
    /// The last time step (Unix time / 30 s) a code was accepted for: no code of this step or
    /// an earlier one is accepted again.
    pub last_step: Option<u64>,
}

impl fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpRecord")
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// The digest of one recovery code, bound to its account: what the store keeps. Codes carry
/// 60 random bits, so a plain digest is enough (no guessable input to stretch), and binding
/// the account means a leaked table cannot be matched across accounts.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecoveryCodeHash([u8; 32]);

impl RecoveryCodeHash {
    /// The digest of `normalized` (the code as the server normalises it) for `user`.
    pub fn of(user: &UserId, normalized: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"cloakroom recovery code v1\0");
        h.update((user.as_str().len() as u64).to_be_bytes());
        h.update(user.as_str().as_bytes());
        h.update(normalized.as_bytes());
        Self(h.finalize().into())
    }

    /// Rebuilds a stored digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes, for storage.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCodeHash(..)")
    }
}

/// A passkey (WebAuthn credential) registered to an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// The credential id the authenticator chose (unique across all accounts).
    pub credential_id: Vec<u8>,
    /// Whose it is.
    pub account: UserId,
    /// The name its owner gave it ("Laptop").
    pub name: String,
    /// The credential as the WebAuthn library serialises it: public key, algorithm, signature
    /// counter. Nothing in it is secret.
    pub data: String,
    /// When it was registered.
    pub created_at: Timestamp,
    /// When it last signed a challenge that was accepted.
    pub last_used_at: Option<Timestamp>,
}

/// Which second factors an account has, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Factors {
    /// A confirmed TOTP authenticator.
    pub totp: bool,
    /// Registered passkeys.
    pub passkeys: u32,
    /// Recovery codes not used yet.
    pub recovery_codes: u32,
}

impl Factors {
    /// Whether a password alone is no longer enough to sign in: a confirmed authenticator or a
    /// passkey (recovery codes stand in for those; they are no factor of their own).
    pub fn any(&self) -> bool {
        self.totp || self.passkeys > 0
    }
}

/// Where an account's second factors live: beside the accounts (SQLite, PostgreSQL), so that a
/// factor and its account are written and deleted together.
///
/// Each method's contract is checked by the account conformance suite.
#[async_trait]
pub trait SecondFactorStore: Send + Sync + fmt::Debug + 'static {
    /// Which factors `user` has now.
    async fn factors(&self, user: &UserId) -> Result<Factors, StoreError>;

    /// The TOTP authenticator of `user`, confirmed or not.
    async fn totp(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError>;

    /// Starts enrolment with a new sealed secret: replaces an unconfirmed one, and returns
    /// `false` (changing nothing) when a confirmed authenticator exists — that one is removed
    /// first, on purpose.
    async fn begin_totp(
        &self,
        user: &UserId,
        sealed: &[u8],
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Finishes enrolment: if the unconfirmed secret of `user` is still exactly `sealed`, marks
    /// it confirmed with `step` as its last used step and replaces the account's recovery codes
    /// with `codes`, all in one transaction. `false` (nothing changed) when the secret was
    /// replaced, confirmed or removed meanwhile.
    async fn confirm_totp(
        &self,
        user: &UserId,
        sealed: &[u8],
        step: u64,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Records `step` as used for the confirmed authenticator of `user`: `true` only if it is
    /// later than every step used before. Of concurrent calls with one step, exactly one gets
    /// `true` — a code is accepted once.
    async fn use_totp_step(&self, user: &UserId, step: u64) -> Result<bool, StoreError>;

    /// Removes the TOTP authenticator of `user` (confirmed or not); whether there was one.
    async fn remove_totp(&self, user: &UserId) -> Result<bool, StoreError>;

    /// Replaces every recovery code of `user` with `codes` (none: removes them all).
    async fn set_recovery_codes(
        &self,
        user: &UserId,
        codes: &[RecoveryCodeHash],
        at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Uses the recovery code with digest `code`: `true` once, for the first of any number of
    /// concurrent calls; `false` for a used or unknown code.
    async fn use_recovery_code(
        &self,
        user: &UserId,
        code: &RecoveryCodeHash,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Registers a passkey; `false` (nothing changed) if its credential id is registered
    /// already, to this account or another.
    async fn add_passkey(&self, passkey: &PasskeyRecord) -> Result<bool, StoreError>;

    /// The passkeys of `user`, oldest first.
    async fn passkeys(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError>;

    /// The passkey with this credential id, whoever's it is.
    async fn passkey(&self, credential_id: &[u8]) -> Result<Option<PasskeyRecord>, StoreError>;

    /// Stores a passkey's updated data (its signature counter) after a use at `at`, if its data
    /// is still exactly `previous` — a compare-and-set, so that of two uses checked against
    /// the same counter one wins, and a stored counter never goes back. `false` (nothing
    /// changed) if `user` has no such passkey (removed meanwhile) or its data changed since.
    async fn update_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        previous: &str,
        data: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Renames one of `user`'s passkeys; `false` if there is no such passkey.
    async fn rename_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        name: &str,
    ) -> Result<bool, StoreError>;

    /// Removes one of `user`'s passkeys (never another account's); whether it existed.
    async fn remove_passkey(&self, user: &UserId, credential_id: &[u8])
    -> Result<bool, StoreError>;

    /// Removes every second factor of `user` — authenticator, recovery codes, passkeys — in one
    /// transaction; whether there was anything to remove.
    async fn reset(&self, user: &UserId) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_code_digests_are_bound_to_the_account_and_redacted() {
        let a = UserId::new("a").expect("id");
        let b = UserId::new("b").expect("id");
        assert_ne!(
            RecoveryCodeHash::of(&a, "abcd"),
            RecoveryCodeHash::of(&b, "abcd")
        );
        assert_eq!(
            RecoveryCodeHash::of(&a, "abcd"),
            RecoveryCodeHash::of(&a, "abcd")
        );
        assert_eq!(
            format!("{:?}", RecoveryCodeHash::of(&a, "abcd")),
            "RecoveryCodeHash(..)"
        );
        let record = TotpRecord {
            sealed: vec![7; 40],
            created_at: Timestamp::from_unix_millis(0),
            confirmed_at: None,
            last_step: None,
        };
        let shown = format!("{record:?}");
        assert!(shown.contains("[40 bytes]") && !shown.contains("7, 7"));
    }
}
