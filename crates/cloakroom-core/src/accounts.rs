//! Accounts for the Cloakroom server: who may log in with which password.
//!
//! Kept in core, beside the session store, so that the SQLite and PostgreSQL crates can hold
//! both and the server can pick either at run time. Core does not hash passwords (the server
//! does, with Argon2id); an [`Account`] carries an opaque PHC string.

use std::fmt;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::session::UserId;
use crate::store::StoreError;

/// Shortest accepted username.
pub const MIN_USERNAME_LEN: usize = 3;
/// Longest accepted username.
pub const MAX_USERNAME_LEN: usize = 32;

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a username is {MIN_USERNAME_LEN} to {MAX_USERNAME_LEN} characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
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
        f.write_str(&self.0)
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
    /// An email address, if known (for `Remote-Email` in forward auth).
    pub email: Option<String>,
    /// A display name, if known (for `Remote-Name`).
    pub display_name: Option<String>,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Another account already has this username (compared without case).
    #[error("username is taken")]
    UsernameTaken,
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

    /// Disables or enables an account. Returns whether the account exists.
    async fn set_disabled(&self, id: &UserId, disabled: bool) -> Result<bool, StoreError>;

    /// Every account, ordered by username key.
    async fn list(&self) -> Result<Vec<Account>, StoreError>;

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
    fn hashes_are_redacted() {
        let h = PasswordHash::new("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
        assert_eq!(format!("{h:?}"), "PasswordHash([redacted])");
    }
}
