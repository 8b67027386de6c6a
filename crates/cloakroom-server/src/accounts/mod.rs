//! Accounts: sign-up, login, password change and deletion, with the rules that guard them — password
//! policy, Argon2id on a bounded pool, brute-force throttling, resistance to user enumeration.
//!
//! [`Accounts`] knows nothing of HTTP: it takes what a user typed and answers with an
//! [`Account`] or an [`AccountsError`]. Starting, rotating and ending the *session* that
//! follows is the web layer's job (`crate::web`), so a new way to sign in (a mail link, OIDC)
//! reuses these rules without reaching into request state. A new account rule goes here.

pub(crate) mod email;
pub mod passwords;
pub(crate) mod reset;
pub(crate) mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::accounts::{
    Account, AccountError, AccountStore, InvalidUsername, InviteCode, Username,
};
use cloakroom_core::mail::{EmailAddress, InvalidEmailAddress};
use cloakroom_core::{
    Clock, SessionData, SessionHandle, SessionManager, StoreError, Timestamp, UserId,
};

use crate::config::SignupMode;
use crate::metrics;
use passwords::{Busy, Password, Passwords, Verified, WeakPassword, check_new_password};
use throttle::{AccountKey, Refused, Throttle};

/// Session data keys the server keeps for forward auth and pages, so that answering them
/// needs no account lookup.
pub mod session_keys {
    /// The username.
    pub const USERNAME: &str = "username";
    /// The email address, only once verified (it reaches apps as `Remote-Email`).
    pub const EMAIL: &str = "email";
    /// The display name, if known.
    pub const NAME: &str = "name";
    /// The issuer of the OpenID provider the session was signed in through, if any.
    pub const OIDC_ISSUER: &str = "oidc_iss";
    /// The provider's subject (`sub`) it signed in as.
    pub const OIDC_SUBJECT: &str = "oidc_sub";
    /// The provider's session id (`sid`) for it, which a back-channel logout names.
    pub const OIDC_SID: &str = "oidc_sid";
    /// A native app's name for the device it runs on ("Pixel 8"), for "Your devices".
    pub const DEVICE_NAME: &str = "device_name";
}

/// Why an account flow refused. Every variant but [`Store`](Self::Store) is the client's to
/// fix, and its message — a sentence written for the person at the form — says how.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum AccountsError {
    /// Unknown username or wrong password — deliberately indistinguishable.
    #[error("Invalid username or password.")]
    InvalidCredentials,
    /// The current password given for a password change is wrong.
    #[error("Your current password is wrong.")]
    WrongPassword,
    /// The account is disabled (said only after a correct password).
    #[error("This account is disabled. Ask your administrator.")]
    AccountDisabled,
    /// The account behind a session no longer exists.
    #[error("This account no longer exists.")]
    UnknownAccount,
    /// Too many failed attempts; try again after the given time.
    #[error("Too many attempts. Try again in {}.", wait_phrase(*.0))]
    Throttled(Duration),
    /// The password hashing pool is saturated.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Sign-up with a username that exists (said only where sign-up is open, which makes
    /// usernames public by design: see [`SignupMode::Open`], or to the holder of a valid
    /// invitation: see [`SignupMode::Invite`]).
    #[error("This username is taken. Choose another.")]
    UsernameTaken,
    /// Sign-up is closed on this server: an administrator creates accounts.
    #[error("Sign-up is closed on this server. Ask an administrator for an account.")]
    SignupClosed,
    /// Sign-up on this server needs an invitation, and none was given.
    #[error("Sign-up on this server is by invitation. Ask an administrator for one.")]
    InviteRequired,
    /// The invitation given is unknown, expired or used — deliberately not saying which.
    #[error("This invitation is not valid. It may have expired or been used already.")]
    InvalidInvite,
    /// A username that breaks the rules.
    #[error(transparent)]
    InvalidUsername(#[from] InvalidUsername),
    /// A new password that breaks the rules.
    #[error(transparent)]
    WeakPassword(#[from] WeakPassword),
    /// An email address that is not one.
    #[error(transparent)]
    InvalidEmail(#[from] InvalidEmailAddress),
    /// Sign-up without an address where sign-in needs a verified one
    /// (`require_verified_email`).
    #[error("Enter your email address: this server sends a link to it before you can sign in.")]
    EmailRequired,
    /// A correct password, but sign-in needs a verified address and the account has none
    /// (said only after a correct password, like [`AccountDisabled`](Self::AccountDisabled)).
    #[error(
        "Confirm your email address before signing in: follow the link we mailed you, or have a new one sent."
    )]
    EmailNotVerified,
    /// The account store failed.
    #[error("account store failure")]
    Store(#[from] StoreError),
}

impl From<AccountError> for AccountsError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::UsernameTaken => Self::UsernameTaken,
            AccountError::InvalidInvite => Self::InvalidInvite,
            AccountError::Store(s) => Self::Store(s),
            // Non-exhaustive: a new kind of failure is the server's problem, not the client's.
            other => Self::Store(StoreError::Backend {
                store: "accounts",
                source: other.to_string().into(),
            }),
        }
    }
}

/// A duration in whole seconds, rounded up (for `Retry-After`).
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A wait as a person says it: "1 second", "40 seconds", "2 minutes". Rounded up, never
/// down: whoever tries again after the time said is not refused again.
pub(crate) fn wait_phrase(d: Duration) -> String {
    let secs = ceil_secs(d).max(1);
    let (n, unit) = if secs < 60 {
        (secs, "second")
    } else {
        (secs.div_ceil(60), "minute")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

/// Credentials as submitted.
#[derive(Debug)]
pub(crate) struct Credentials {
    /// As typed.
    pub(crate) username: String,
    /// As typed.
    pub(crate) password: Password,
}

/// The account flows over an account store.
#[derive(Debug, Clone)]
pub(crate) struct Accounts {
    store: Arc<dyn AccountStore>,
    passwords: Passwords,
    throttle: Throttle,
    clock: Arc<dyn Clock>,
}

/// The throttling key for a typed username: a digest of its case-folded form, or of the raw
/// text folded if it is not even a valid username (so garbage is throttled like everything
/// else, and a 64 KiB "username" costs the table no more than a short one).
fn throttle_key(typed: &str) -> AccountKey {
    AccountKey::of(
        &Username::parse(typed).map_or_else(|_| typed.trim().to_ascii_lowercase(), |u| u.key()),
    )
}

/// A throttle's refusal as the flows answer it: wait (counted as throttled), or the shared
/// counters are down (a store failure: 503, fail closed).
fn refusal(r: Refused) -> AccountsError {
    match r {
        Refused::Wait(wait) => {
            metrics::throttled();
            AccountsError::Throttled(wait)
        }
        Refused::Unavailable(e) => AccountsError::Store(e),
    }
}

impl Accounts {
    /// The flows over `store`, letting `free_signups` sign-ups per network through before
    /// the next one waits.
    pub(crate) fn new(
        store: Arc<dyn AccountStore>,
        passwords: Passwords,
        clock: Arc<dyn Clock>,
        free_signups: u32,
        shared_counters: Option<Arc<dyn cloakroom_core::throttle::BackoffCounters>>,
    ) -> Self {
        let throttle = Throttle::with_signup_allowance(clock.clone(), free_signups);
        Self {
            store,
            passwords,
            throttle: match shared_counters {
                Some(counters) => throttle.shared(counters),
                None => throttle,
            },
            clock,
        }
    }

    /// The account store.
    pub(crate) fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// Whether the account is disabled now (or gone, which counts as disabled).
    pub(crate) async fn is_disabled(&self, user: &UserId) -> Result<bool, AccountsError> {
        Ok(self.store.by_id(user).await?.is_none_or(|a| a.disabled))
    }

    /// Forgets stale throttling counters (run periodically so memory, and the shared store,
    /// stay bounded).
    pub(crate) async fn prune(&self) {
        self.throttle.prune();
        self.throttle.purge_shared().await;
    }

    /// Checks a login. Unknown users and wrong passwords fail identically (status, body and —
    /// through a dummy hash — timing).
    pub(crate) async fn login(
        &self,
        ip: Option<IpAddr>,
        c: &Credentials,
    ) -> Result<Account, AccountsError> {
        // Counted before anything else happens: parallel guesses cannot slip past the count,
        // and a request dropped half-way stays counted.
        let attempt = self
            .throttle
            .begin(throttle_key(&c.username), ip)
            .await
            .map_err(|r| {
                if matches!(r, Refused::Wait(_)) {
                    metrics::login("throttled");
                }
                refusal(r)
            })?;
        let account = match Username::parse(&c.username) {
            Ok(username) => self.store.by_username(&username).await?,
            Err(_) => None,
        };
        // Over-long passwords are never hashed: they are wrong for every account by policy.
        let outcome = match (&account, c.password.within_length_limit()) {
            (Some(account), true) => {
                self.passwords
                    .verify(&c.password, &account.password_hash)
                    .await?
            }
            _ => {
                self.passwords.verify_dummy(&c.password).await?;
                Verified {
                    matches: false,
                    upgraded: None,
                }
            }
        };
        let Some(account) = account.filter(|_| outcome.matches) else {
            metrics::login("invalid_credentials");
            return Err(AccountsError::InvalidCredentials);
        };
        attempt.succeeded().await;
        if account.disabled {
            metrics::login("disabled");
            return Err(AccountsError::AccountDisabled);
        }
        if let Some(upgraded) = &outcome.upgraded {
            // Best effort: a failure here leaves the old (still valid) hash in place.
            if let Err(e) = self
                .store
                .upgrade_password(&account.id, &account.password_hash, upgraded)
                .await
            {
                tracing::warn!(error = %crate::error_chain::chain(&e), "password hash upgrade failed");
            }
        }
        Ok(account)
    }

    /// Creates an account, if the sign-up mode allows. A closed sign-up, or an invitation-only
    /// one without a code, refuses before the username is looked at, so it reveals nothing
    /// about which names exist; otherwise sign-up is throttled per client network (see
    /// [`throttle`]). In invitation mode the code is checked before the username, so only the
    /// holder of a valid invitation learns that a name is taken; `invite` is ignored in the
    /// other modes.
    pub(crate) async fn signup(
        &self,
        mode: SignupMode,
        ip: Option<IpAddr>,
        c: &Credentials,
        invite: Option<&str>,
        email: Option<&str>,
        email_required: bool,
    ) -> Result<Account, AccountsError> {
        let invite = match mode {
            SignupMode::Closed => {
                metrics::signup("closed");
                return Err(AccountsError::SignupClosed);
            }
            SignupMode::Open => None,
            SignupMode::Invite => match invite.map(str::trim).filter(|i| !i.is_empty()) {
                Some(code) => Some(code),
                None => {
                    metrics::signup("invite_required");
                    return Err(AccountsError::InviteRequired);
                }
            },
        };
        let username = Username::parse(&c.username).inspect_err(|_| metrics::signup("invalid"))?;
        check_new_password(&c.password, &username).inspect_err(|_| metrics::signup("invalid"))?;
        let email = parse_optional_email(email).inspect_err(|_| metrics::signup("invalid"))?;
        if email_required && email.is_none() {
            metrics::signup("invalid");
            return Err(AccountsError::EmailRequired);
        }
        self.throttle.signup(ip).await.map_err(|r| {
            if matches!(r, Refused::Wait(_)) {
                metrics::signup("throttled");
            }
            refusal(r)
        })?;
        // A malformed code is refused here, before a password is hashed for it; it gets the
        // same answer as an unknown one.
        let invite = invite
            .map(|code| {
                InviteCode::parse(code).map_err(|_| {
                    metrics::signup("invalid_invite");
                    AccountsError::InvalidInvite
                })
            })
            .transpose()?;
        let hash = self.passwords.hash(&c.password).await?;
        let now = self.clock.now();
        let mut account = new_account(username, hash, now);
        account.email = email;
        let created = match &invite {
            Some(code) => {
                self.store
                    .redeem_invite_and_create(&code.hash(), &account, now)
                    .await
            }
            None => self.store.create(&account).await,
        };
        created.inspect_err(|e| {
            metrics::signup(if matches!(e, AccountError::InvalidInvite) {
                "invalid_invite"
            } else {
                "rejected"
            });
        })?;
        metrics::signup("success");
        tracing::info!(user = %account.username, invited = invite.is_some(), "signup");
        Ok(account)
    }

    /// Checks a new password for `account` against the sign-up rules and hashes it (for a
    /// password set by a reset link, where there is no current password to check).
    pub(crate) async fn hash_new_password(
        &self,
        account: &Account,
        new: &Password,
    ) -> Result<cloakroom_core::accounts::PasswordHash, AccountsError> {
        check_new_password(new, &account.username)?;
        Ok(self.passwords.hash(new).await?)
    }

    /// Counts a sign-up from `ip` that does not go through [`signup`](Self::signup) (a first
    /// sign-in through an OpenID provider), or refuses it with how long to wait.
    pub(crate) async fn throttle_signup(&self, ip: Option<IpAddr>) -> Result<(), AccountsError> {
        self.throttle.signup(ip).await.map_err(|r| {
            if matches!(r, Refused::Wait(_)) {
                metrics::signup("throttled");
            }
            refusal(r)
        })
    }

    /// A hash of a random password nobody knows: the password of an account made by a sign-in
    /// through an OpenID provider (a reset link to its verified address can set a real one).
    pub(crate) async fn hash_unknown_password(
        &self,
    ) -> Result<cloakroom_core::accounts::PasswordHash, AccountsError> {
        let unknown = Password::new(SessionHandle::generate().as_str().to_owned());
        Ok(self.passwords.hash(&unknown).await?)
    }

    /// Counts a reset request from `ip`, or refuses it with how long to wait. Said to the
    /// client: it depends on the network only, never on whether the account exists.
    pub(crate) async fn throttle_reset_request(
        &self,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountsError> {
        self.throttle.reset_request(ip).await.map_err(refusal)
    }

    /// Whether another reset mail may go to `account` now. Never said to the client (that
    /// would tell which accounts exist): a refused request just sends nothing (nor does one
    /// the shared counters cannot count).
    pub(crate) async fn may_mail_reset(&self, account: &Account) -> bool {
        self.throttle
            .reset_mail(AccountKey::of(account.id.as_str()))
            .await
            .is_ok()
    }

    /// Verifies the current password of `user` and hashes the new one; nothing is saved yet.
    /// The caller ends the user's other sessions, then [`commit`](PasswordChange::commit)s:
    /// in that order a store failure between the two can leave the old password with the
    /// sessions ended, never the new password with a thief's session alive.
    pub(crate) async fn prepare_password_change(
        &self,
        user: &UserId,
        ip: Option<IpAddr>,
        current: &Password,
        new: &Password,
    ) -> Result<PasswordChange, AccountsError> {
        let account = self.reauthenticate(user, ip, current).await?;
        check_new_password(new, &account.username)?;
        let hash = self.passwords.hash(new).await?;
        Ok(PasswordChange {
            account,
            hash,
            store: self.store.clone(),
            clock: self.clock.clone(),
        })
    }

    /// Verifies the password of `user` before their account is deleted; nothing is changed
    /// yet. [`AccountDeletion::commit`] then does the deleting.
    pub(crate) async fn prepare_deletion(
        &self,
        user: &UserId,
        ip: Option<IpAddr>,
        password: &Password,
    ) -> Result<AccountDeletion, AccountsError> {
        let account = self.reauthenticate(user, ip, password).await?;
        Ok(AccountDeletion {
            account,
            store: self.store.clone(),
        })
    }

    /// Starts a second-factor attempt for `account` from `ip`, counted like a password attempt
    /// (per account and network, per network, per account) on counters of its own: a stolen
    /// password must not become a way to guess codes faster than passwords.
    pub(crate) async fn begin_second_factor(
        &self,
        account: &Account,
        ip: Option<IpAddr>,
    ) -> Result<throttle::Attempt, AccountsError> {
        // A prefix no username can have keeps these counters apart from the password's.
        let key = AccountKey::of(&format!("\u{0}second-factor {}", account.username.key()));
        self.throttle.begin(key, ip).await.map_err(refusal)
    }

    /// Checks the password of a signed-in user again, throttled exactly like a login (the
    /// attempt counts from its start, per account and network): a stolen session must not
    /// become a way to guess the password faster than the login page allows.
    pub(crate) async fn reauthenticate(
        &self,
        user: &UserId,
        ip: Option<IpAddr>,
        password: &Password,
    ) -> Result<Account, AccountsError> {
        let account = self
            .store
            .by_id(user)
            .await?
            .ok_or(AccountsError::UnknownAccount)?;
        let attempt = self
            .throttle
            .begin(AccountKey::of(&account.username.key()), ip)
            .await
            .map_err(refusal)?;
        let verified = password.within_length_limit()
            && self
                .passwords
                .verify(password, &account.password_hash)
                .await?
                .matches;
        if !verified {
            return Err(AccountsError::WrongPassword);
        }
        attempt.succeeded().await;
        Ok(account)
    }
}

/// A verified password change, not yet saved (see [`Accounts::prepare_password_change`]).
#[derive(Debug)]
#[must_use = "nothing changes until the change is committed"]
pub(crate) struct PasswordChange {
    account: Account,
    hash: cloakroom_core::accounts::PasswordHash,
    store: Arc<dyn AccountStore>,
    clock: Arc<dyn Clock>,
}

impl PasswordChange {
    /// Saves the new password.
    pub(crate) async fn commit(self) -> Result<Account, AccountsError> {
        self.store
            .set_password(&self.account.id, &self.hash, self.clock.now())
            .await?;
        Ok(self.account)
    }
}

/// A deletion whose password was checked, not yet carried out (see
/// [`Accounts::prepare_deletion`]).
#[derive(Debug)]
#[must_use = "nothing is deleted until the deletion is committed"]
pub(crate) struct AccountDeletion {
    account: Account,
    store: Arc<dyn AccountStore>,
}

impl AccountDeletion {
    /// Deletes the account (see [`remove`]). Returns it, and how many sessions ended.
    pub(crate) async fn commit(
        self,
        sessions: &SessionManager,
    ) -> Result<(Account, u64), AccountsError> {
        let ended = remove(&*self.store, sessions, &self.account).await?;
        Ok((self.account, ended))
    }
}

/// Removes `account` and ends every session of it; returns how many sessions ended. For the
/// owner's own deletion and for `cloakroom user delete` alike.
///
/// The order is what makes it whole. The account is disabled first, so no login can start a
/// new session from here on — and a login that checked the password just before looks at the
/// flag again once its session exists (see `web::flows::login`), so either it sees the flag
/// and ends its session, or its session existed before the revocation below began and that
/// ends it. Then every session ends, and only then does the record go: a store failure half
/// way leaves a disabled account with its sessions ended, never a session without an account.
pub(crate) async fn remove(
    store: &dyn AccountStore,
    sessions: &SessionManager,
    account: &Account,
) -> Result<u64, StoreError> {
    store.set_disabled(&account.id, true).await?;
    let ended = sessions.revoke_all_for_user(&account.id, None).await?;
    metrics::revoked("account_deleted", ended);
    store.delete(&account.id).await?;
    Ok(ended)
}

/// What a session of `account` carries, so that forward auth and pages need no account
/// lookup.
pub(crate) fn session_data(account: &Account) -> SessionData {
    let mut data = SessionData::default();
    // Small, known-size values: these inserts cannot exceed the data limit.
    let _ = data.insert(session_keys::USERNAME, account.username.as_str());
    if let Some(email) = account.verified_email() {
        let _ = data.insert(session_keys::EMAIL, email.as_str());
    }
    if let Some(name) = &account.display_name {
        let _ = data.insert(session_keys::NAME, name);
    }
    data
}

/// A new, enabled account with a fresh random id.
pub(crate) fn new_account(
    username: Username,
    password_hash: cloakroom_core::accounts::PasswordHash,
    now: Timestamp,
) -> Account {
    Account {
        id: new_user_id(),
        username,
        password_hash,
        disabled: false,
        created_at: now,
        password_changed_at: now,
        email: None,
        email_verified: false,
        display_name: None,
    }
}

/// An address as typed in a form or a JSON field, where leaving it out (or blank) means none.
pub(crate) fn parse_optional_email(
    text: Option<&str>,
) -> Result<Option<EmailAddress>, InvalidEmailAddress> {
    text.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(EmailAddress::parse)
        .transpose()
}

/// A fresh, random, never-reused user id.
fn new_user_id() -> UserId {
    // A session handle is 128 random bits in URL-safe text: exactly what a user id needs.
    #[allow(clippy::expect_used)] // 22 URL-safe characters are always a valid user id.
    UserId::new(SessionHandle::generate().as_str()).expect("a handle is a valid user id")
}
