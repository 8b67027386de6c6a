//! Accounts for the Cloakroom server: who may log in with which password.
//!
//! Kept in core, beside the session store, so that the SQLite and PostgreSQL crates can hold
//! both and the server can pick either at run time. Core does not hash passwords (the server
//! does, with Argon2id); an [`Account`] carries an opaque PHC string.
//!
//! Invitations live here too: an [`InviteCode`] is a bearer secret an administrator hands to
//! one person, and the store only ever holds its [`InviteHash`], as sessions hold only the
//! hash of their token.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::mail::EmailAddress;
use crate::random::random_array;
use crate::session::UserId;
use crate::store::StoreError;
use crate::token::{TOKEN_LEN, TokenError, decode_fixed};

/// Shortest accepted username.
pub const MIN_USERNAME_LEN: usize = 3;
/// Longest accepted username.
pub const MAX_USERNAME_LEN: usize = 32;

/// Why a username was refused. The message is a sentence for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "A username is {MIN_USERNAME_LEN} to {MAX_USERNAME_LEN} characters long: letters, digits, dots, dashes or underscores, starting with a letter or digit."
)]
pub struct InvalidUsername;

/// A username as the user typed it (trimmed), unique without regard to case.
///
/// ASCII only, on purpose: Unicode usernames invite look-alike impersonation (`аdmin` with a
/// Cyrillic `а`), and a name is an identifier, not a display name.
///
/// ```
/// use cloakroom_core::accounts::Username;
///
/// let a = Username::parse(" Alice ").unwrap();
/// assert_eq!(a.as_str(), "Alice");
/// assert_eq!(a.key(), "alice");
/// assert!(Username::parse("al ice").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    /// Checks and normalises a username.
    pub fn parse(text: &str) -> Result<Self, InvalidUsername> {
        let t = text.trim();
        let ok = (MIN_USERNAME_LEN..=MAX_USERNAME_LEN).contains(&t.len())
            && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(t.to_owned()))
        } else {
            Err(InvalidUsername)
        }
    }

    /// The username as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form uniqueness and lookups use.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: width and alignment (`{:<32}`) are honoured in tables.
        f.pad(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.0)
    }
}

/// A password hash in PHC string format (`$argon2id$v=19$…`). `Debug` is redacted: a hash is
/// not a password, but it is an offline-cracking target and has no business in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a PHC string.
    pub fn new(phc: String) -> Self {
        Self(phc)
    }

    /// The PHC string, for a store to persist or a hasher to verify against.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// Longest accepted group name.
pub const MAX_GROUP_LEN: usize = 64;

/// Why a group name was refused. The message is a sentence for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "A group name is 1 to {MAX_GROUP_LEN} characters: letters, digits, dots, dashes or underscores, starting with a letter or digit."
)]
pub struct InvalidGroupName;

/// The name of a group of accounts (`admins`, `media.editors`), as access rules
/// (`subject = ["group:admins"]`), the `Remote-Groups` header and the service JWT's `groups`
/// claim spell it.
///
/// Compared exactly, case included: a group is an operator's label, and folding case would
/// make `Admins` and `admins` one group in the rules but two in an app that compares the
/// header. The alphabet leaves out `,` (the header's separator), `:` (the rules' `group:`
/// prefix) and whitespace, so a name reaches every consumer unescaped.
///
/// ```
/// use cloakroom_core::accounts::GroupName;
///
/// assert_eq!(GroupName::parse("media.editors").unwrap().as_str(), "media.editors");
/// assert!(GroupName::parse("a,b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    /// Checks a group name.
    pub fn parse(text: &str) -> Result<Self, InvalidGroupName> {
        let b = text.as_bytes();
        let ok = (1..=MAX_GROUP_LEN).contains(&b.len())
            && b[0].is_ascii_alphanumeric()
            && b.iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidGroupName)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Stable identifier; sessions belong to it. Never changes, never reused.
    pub id: UserId,
    /// The login name.
    pub username: Username,
    /// The password hash.
    pub password_hash: PasswordHash,
    /// A disabled account cannot log in.
    pub disabled: bool,
    /// When the account was created.
    pub created_at: Timestamp,
    /// When the password was last set.
    pub password_changed_at: Timestamp,
    /// An email address, if the user gave one. Mail goes to it only once it is verified,
    /// and only a verified address reaches apps (`Remote-Email`, the service JWT).
    pub email: Option<EmailAddress>,
    /// Whether the owner of `email` followed a verification link sent to it. Always `false`
    /// without an address.
    pub email_verified: bool,
    /// A display name, if known (for `Remote-Name`).
    pub display_name: Option<String>,
}

/// An identity at an OpenID provider, linked to an account: the provider's `(iss, sub)` pair,
/// which is the only stable name an OpenID Connect identity has (an email address can change
/// hands; `sub` is never reassigned within an issuer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedIdentity {
    /// The provider's issuer URL, exactly as its ID tokens' `iss` spell it.
    pub issuer: String,
    /// The provider's `sub` for this person.
    pub subject: String,
    /// The account it signs in to.
    pub account: UserId,
    /// When it was linked.
    pub linked_at: Timestamp,
}

impl Account {
    /// The address, if it is verified: the only one mail with a link may go to, and the only
    /// one apps are told (an unverified address is merely a claim, and an app trusting it
    /// could be talked into treating one user as another).
    pub fn verified_email(&self) -> Option<&EmailAddress> {
        self.email.as_ref().filter(|_| self.email_verified)
    }
}

/// Length of an encoded [`InviteCode`]: 32 bytes in base64url without padding.
pub const INVITE_CODE_LEN: usize = TOKEN_LEN;

/// A single-use invitation to sign up: 256 bits from the OS CSPRNG, shown once to the
/// administrator who minted it and never stored (the store keeps its [`InviteHash`]).
///
/// Like [`SessionToken`](crate::SessionToken) it exists only after
/// [`generate`](Self::generate) or a strict [`parse`](Self::parse), prints as `[redacted]` in
/// `Debug`, compares in constant time and yields its text only through
/// [`expose`](Self::expose).
///
/// ```
/// use cloakroom_core::accounts::InviteCode;
///
/// let code = InviteCode::generate();
/// let again = InviteCode::parse(&code.expose()).unwrap();
/// assert_eq!(code.hash(), again.hash());
/// assert!(InviteCode::parse("not-a-code").is_err());
/// ```
#[derive(Clone)]
pub struct InviteCode([u8; 32]);

impl InviteCode {
    /// A fresh code from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(random_array())
    }

    /// Parses a presented code: exactly [`INVITE_CODE_LEN`] characters of canonical base64url,
    /// no padding (checked before anything is decoded, so an oversized value costs nothing).
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        decode_fixed::<INVITE_CODE_LEN, 32>(s).map(Self)
    }

    /// The code's text, to hand to the invited person. Never log it.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// What the store keeps: SHA-256 of the code's 32 bytes. A leaked database yields no
    /// usable invitation.
    pub fn hash(&self) -> InviteHash {
        InviteHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteCode([redacted])")
    }
}

impl PartialEq for InviteCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for InviteCode {}

/// The store key of an invitation: SHA-256 of its [`InviteCode`]. Not a secret (finding the
/// code from it would take a SHA-256 preimage), so it may be logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InviteHash([u8; 32]);

impl InviteHash {
    /// A hash from its 32 raw bytes (as read back from a store).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for InviteHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteHash(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…)")
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Another account already has this username (compared without case).
    #[error("username is taken")]
    UsernameTaken,
    /// The invitation does not exist, has expired or was already used. Deliberately one
    /// variant: which of the three it was is of no use to a legitimate user and of some use to
    /// someone probing codes.
    #[error("the invitation is not valid")]
    InvalidInvite,
    /// This provider identity (issuer and subject) is already linked to an account.
    #[error("this identity is already linked to an account")]
    IdentityTaken,
    /// The store failed; see [`StoreError`].
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where accounts live. Same rules as [`SessionStore`](crate::SessionStore): shared by every
/// instance and safe under concurrent use; the store never reads a clock.
#[async_trait]
pub trait AccountStore: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors, logs and metrics.
    fn name(&self) -> &'static str;

    /// Adds an account. Fails with [`AccountError::UsernameTaken`] if the username's
    /// [`key`](Username::key) is in use (atomically: two concurrent sign-ups for `Alice` and
    /// `alice` cannot both succeed) or with a store error if the id exists.
    async fn create(&self, account: &Account) -> Result<(), AccountError>;

    /// The account with this username (compared without case).
    async fn by_username(&self, username: &Username) -> Result<Option<Account>, StoreError>;

    /// The account with this id.
    async fn by_id(&self, id: &UserId) -> Result<Option<Account>, StoreError>;

    /// Replaces the password hash. Returns whether the account exists.
    async fn set_password(
        &self,
        id: &UserId,
        hash: &PasswordHash,
        at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Replaces the password hash only if it is still `expected` (a parameter upgrade after
    /// login must not undo a concurrent password change). Returns whether it was replaced.
    async fn upgrade_password(
        &self,
        id: &UserId,
        expected: &PasswordHash,
        new: &PasswordHash,
    ) -> Result<bool, StoreError>;

    /// Sets (`Some`) or removes (`None`) the account's email address, and marks it
    /// unverified in the same write, even when the address is the one it already had: a
    /// change must never inherit the old address's verification. Returns whether the account
    /// exists.
    async fn set_email(
        &self,
        id: &UserId,
        email: Option<&EmailAddress>,
    ) -> Result<bool, StoreError>;

    /// Marks the account's address verified, but only if it is still exactly `email` (as
    /// [`EmailAddress`] normalises it): a verification link for an address the user has since
    /// replaced must not verify the new one. Returns whether it was marked (also `true` if it
    /// was already verified).
    async fn mark_email_verified(
        &self,
        id: &UserId,
        email: &EmailAddress,
    ) -> Result<bool, StoreError>;

    /// The accounts whose address is `email`, ordered by username key, verified or not
    /// (callers decide what an unverified address may be used for).
    ///
    /// The comparison is on the normalised form: the domain without regard to case (as DNS
    /// has it), the local part exactly (RFC 5321 lets a mail server tell `Bob` from `bob`,
    /// and treating them as one could send one person's reset link to another). Addresses are
    /// not unique: refusing a sign-up because an address is taken would tell anyone which
    /// addresses have accounts.
    async fn by_email(&self, email: &EmailAddress) -> Result<Vec<Account>, StoreError>;

    /// Disables or enables an account. Returns whether the account exists.
    async fn set_disabled(&self, id: &UserId, disabled: bool) -> Result<bool, StoreError>;

    /// Every account, ordered by username key.
    async fn list(&self) -> Result<Vec<Account>, StoreError>;

    /// Removes the account with this id for good. Returns whether it existed.
    ///
    /// * Afterwards neither [`by_id`](Self::by_id) nor [`by_username`](Self::by_username)
    ///   finds it, and [`list`](Self::list) leaves it out.
    /// * Its username is free at once: a later [`create`](Self::create) with that name (in
    ///   any case) succeeds, under a new id. Ids are never reused, so nothing kept under the
    ///   old id (sessions, an app's records keyed by the service JWT's `sub`) can attach to
    ///   the new account.
    /// * An invitation the account was created with stays used — deleting an account never
    ///   gives its invitation back — but no longer names the account.
    /// * Its linked provider identities go with it: signing in with one of them afterwards
    ///   finds no account; so do its group memberships.
    /// * The store does not touch sessions: ending them (first, so that no session outlives
    ///   its account) is the caller's job.
    async fn delete(&self, id: &UserId) -> Result<bool, StoreError>;

    /// The groups `account` is a member of, ordered by name; empty for an account without
    /// groups and for one that does not exist.
    async fn groups(&self, account: &UserId) -> Result<Vec<GroupName>, StoreError>;

    /// Adds `account` to each of `add` and removes it from each of `remove`, in one atomic
    /// write; adding a membership it has, or removing one it lacks, is not an error. A name in
    /// both lists ends up removed. Returns whether the account exists (and nothing changes
    /// when it does not). [`delete`](Self::delete) removes the account's memberships with it.
    async fn update_groups(
        &self,
        account: &UserId,
        add: &[GroupName],
        remove: &[GroupName],
    ) -> Result<bool, StoreError>;

    /// Every group with at least one member, with its number of members, ordered by name.
    async fn group_sizes(&self) -> Result<Vec<(GroupName, u64)>, StoreError>;

    /// Records an unused invitation, valid while the clock reads before `expires_at`;
    /// `created_at` is kept for the record. Only the hash is given, and only the hash is
    /// stored. Fails with a store error if the hash exists (a collision of 256-bit random
    /// codes means a broken generator, not bad luck).
    async fn create_invite(
        &self,
        hash: &InviteHash,
        expires_at: Timestamp,
        created_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Uses up the invitation `hash` and creates `account`, as one atomic operation:
    ///
    /// * the invitation is checked first: if it does not exist, was used, or `now` is not
    ///   before its expiry, this fails with [`AccountError::InvalidInvite`] and creates
    ///   nothing, whether or not the username is free;
    /// * then the username: if it is taken (as in [`create`](Self::create)), this fails with
    ///   [`AccountError::UsernameTaken`] and the invitation stays unused;
    /// * otherwise the account exists and the invitation is used, both or neither.
    ///
    /// Of any number of concurrent calls with one invitation, at most one succeeds.
    async fn redeem_invite_and_create(
        &self,
        hash: &InviteHash,
        account: &Account,
        now: Timestamp,
    ) -> Result<(), AccountError>;

    /// Links a provider identity to the existing account `identity.account`. Fails with
    /// [`AccountError::IdentityTaken`] if `(issuer, subject)` is linked already, to this
    /// account or another (atomically: of concurrent links of one identity at most one
    /// succeeds). An account may have any number of identities.
    async fn link_identity(&self, identity: &LinkedIdentity) -> Result<(), AccountError>;

    /// Creates `account` and links `identity` to it (whose `account` must be `account.id`),
    /// both or neither: [`AccountError::UsernameTaken`] or [`AccountError::IdentityTaken`]
    /// leave the store as it was. A first sign-in through a provider can therefore never
    /// leave an account that no identity signs in to, even when two such sign-ins race.
    async fn create_with_identity(
        &self,
        account: &Account,
        identity: &LinkedIdentity,
    ) -> Result<(), AccountError>;

    /// The account `(issuer, subject)` is linked to, if any. Issuer and subject compare
    /// exactly (byte for byte), as OpenID Connect compares them.
    async fn by_identity(&self, issuer: &str, subject: &str)
    -> Result<Option<Account>, StoreError>;

    /// The identities linked to `account`, oldest link first.
    async fn identities(&self, account: &UserId) -> Result<Vec<LinkedIdentity>, StoreError>;

    /// Removes the link `(issuer, subject)` from `account`. Returns whether it was linked to
    /// that account (a link to another account is left alone). Whether the account keeps a
    /// way to sign in is the caller's rule, not the store's.
    async fn unlink_identity(
        &self,
        account: &UserId,
        issuer: &str,
        subject: &str,
    ) -> Result<bool, StoreError>;

    /// Whether the backend is reachable.
    async fn ping(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["bob", "Alice.Smith", "a_b-c", "x1y", &"a".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "-bob",
            ".bob",
            "bob smith",
            "bób",
            "аdmin",
            &"a".repeat(33),
            "a@b.c",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Username::parse("BoB").unwrap().key(), "bob");
    }

    #[test]
    fn invite_codes_round_trip_and_stay_secret() {
        let code = InviteCode::generate();
        let text = code.expose();
        assert_eq!(text.len(), INVITE_CODE_LEN);
        assert_eq!(InviteCode::parse(&text).unwrap(), code);
        assert_ne!(InviteCode::generate(), code);
        assert_eq!(format!("{code:?}"), "InviteCode([redacted])");
        assert!(!format!("{:?}", code.hash()).contains(&text));
        for bad in [
            "",
            "short",
            &format!("{text}="),
            &"!".repeat(INVITE_CODE_LEN),
        ] {
            assert!(InviteCode::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_redacted() {
        let h = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        assert_eq!(format!("{h:?}"), "PasswordHash([redacted])");
    }
}
