//! Account flows shared by the JSON API and the HTML pages: sign up, log in, change password.
//!
//! Each takes what the client sent, enforces every rule (throttling, password policy,
//! enumeration resistance) and returns either the new session or an [`ApiError`]; the API and
//! the pages only differ in how they present the result.

use std::net::IpAddr;

use cloakroom_axum::{Auth, Session};
use cloakroom_core::accounts::{Account, PasswordHash, Username};
use cloakroom_core::{AuthMethod, SessionData, SessionHandle, UserId};

use crate::error::ApiError;
use crate::metrics;
use crate::passwords::{Password, check_new_password};
use crate::state::AppState;

/// Session data keys the server keeps for forward auth and pages, so that answering them
/// needs no account lookup.
pub mod keys {
    /// The username.
    pub const USERNAME: &str = "username";
    /// The email address, if known.
    pub const EMAIL: &str = "email";
    /// The display name, if known.
    pub const NAME: &str = "name";
}

/// Credentials as submitted.
#[derive(Debug)]
pub struct Credentials {
    /// As typed.
    pub username: String,
    /// As typed.
    pub password: Password,
    /// "Remember me".
    pub remember: bool,
}

fn session_data(account: &Account) -> SessionData {
    let mut data = SessionData::default();
    // Small, known-size values: these inserts cannot exceed the data limit.
    let _ = data.insert(keys::USERNAME, account.username.as_str());
    if let Some(email) = &account.email {
        let _ = data.insert(keys::EMAIL, email);
    }
    if let Some(name) = &account.display_name {
        let _ = data.insert(keys::NAME, name);
    }
    data
}

async fn start_session(
    auth: &Auth,
    account: &Account,
    remember: bool,
) -> Result<Session, ApiError> {
    let new = auth
        .new_session(account.id.clone(), AuthMethod::password())
        .remember(remember)
        .data(session_data(account));
    Ok(auth.login(new).await?)
}

/// The throttling key for a typed username: its case-folded form, or the raw text folded if it
/// is not even a valid username (so garbage is throttled like everything else).
fn throttle_key(typed: &str) -> String {
    Username::parse(typed).map_or_else(|_| typed.trim().to_ascii_lowercase(), |u| u.key())
}

/// Logs in. Unknown users and wrong passwords fail identically (status, body and — through a
/// dummy hash — timing).
pub async fn login(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    c: Credentials,
) -> Result<(Account, Session), ApiError> {
    let key = throttle_key(&c.username);
    if let Some(wait) = state.throttle.wait(&key, ip) {
        metrics::throttled();
        metrics::login("throttled");
        return Err(ApiError::Throttled(wait));
    }
    let account = match Username::parse(&c.username) {
        Ok(username) => state.accounts.by_username(&username).await?,
        Err(_) => None,
    };
    // Over-long passwords are never hashed: they are wrong for every account by policy.
    let outcome = match (&account, c.password.within_length_limit()) {
        (Some(account), true) => {
            state
                .passwords
                .verify(&c.password, &account.password_hash)
                .await?
        }
        _ => {
            state.passwords.verify_dummy(&c.password).await?;
            crate::passwords::Verified {
                matches: false,
                upgraded: None,
            }
        }
    };
    let Some(account) = account.filter(|_| outcome.matches) else {
        state.throttle.failed(&key, ip);
        metrics::login("invalid_credentials");
        return Err(ApiError::InvalidCredentials);
    };
    if account.disabled {
        metrics::login("disabled");
        return Err(ApiError::AccountDisabled);
    }
    state.throttle.succeeded(&key);
    if let Some(upgraded) = &outcome.upgraded {
        // Best effort: a failure here leaves the old (still valid) hash in place.
        if let Err(e) = state
            .accounts
            .upgrade_password(&account.id, &account.password_hash, upgraded)
            .await
        {
            tracing::warn!(error = %e, "password hash upgrade failed");
        }
    }
    let session = start_session(auth, &account, c.remember).await?;
    metrics::login("success");
    tracing::info!(user = %account.username, handle = %session.handle(), "login");
    Ok((account, session))
}

/// Creates an account and logs it in.
pub async fn signup(
    state: &AppState,
    auth: &Auth,
    c: Credentials,
) -> Result<(Account, Session), ApiError> {
    let username = Username::parse(&c.username).inspect_err(|_| metrics::signup("invalid"))?;
    check_new_password(&c.password, &username).inspect_err(|_| metrics::signup("invalid"))?;
    let hash = state.passwords.hash(&c.password).await?;
    let now = state.clock.now();
    let account = Account {
        id: new_user_id(),
        username,
        password_hash: hash,
        disabled: false,
        created_at: now,
        password_changed_at: now,
        email: None,
        display_name: None,
    };
    state
        .accounts
        .create(&account)
        .await
        .inspect_err(|_| metrics::signup("rejected"))?;
    metrics::signup("success");
    tracing::info!(user = %account.username, "signup");
    let session = start_session(auth, &account, c.remember).await?;
    Ok((account, session))
}

/// A new, enabled account with a fresh random id.
pub fn new_account(
    username: Username,
    password_hash: PasswordHash,
    now: cloakroom_core::Timestamp,
) -> Account {
    Account {
        id: new_user_id(),
        username,
        password_hash,
        disabled: false,
        created_at: now,
        password_changed_at: now,
        email: None,
        display_name: None,
    }
}

/// A fresh, random, never-reused user id.
pub fn new_user_id() -> UserId {
    // A session handle is 128 random bits in URL-safe text: exactly what a user id needs.
    #[allow(clippy::expect_used)] // 22 URL-safe characters are always a valid user id.
    UserId::new(SessionHandle::generate().as_str()).expect("a handle is a valid user id")
}

/// Changes the password of the session's user: verifies the current one, sets the new one,
/// ends every other session and rotates this one. Returns how many sessions were ended.
pub async fn change_password(
    state: &AppState,
    session: &mut Session,
    ip: Option<IpAddr>,
    current: &Password,
    new: &Password,
) -> Result<u64, ApiError> {
    let account = state
        .accounts
        .by_id(session.user_id())
        .await?
        .ok_or(ApiError::Session(
            cloakroom_axum::Rejection::Unauthenticated(
                cloakroom_axum::Unauthenticated::UnknownSession,
            ),
        ))?;
    let key = account.username.key();
    if let Some(wait) = state.throttle.wait(&key, ip) {
        metrics::throttled();
        return Err(ApiError::Throttled(wait));
    }
    let verified = current.within_length_limit()
        && state
            .passwords
            .verify(current, &account.password_hash)
            .await?
            .matches;
    if !verified {
        state.throttle.failed(&key, ip);
        return Err(ApiError::WrongPassword);
    }
    check_new_password(new, &account.username)?;
    let hash: PasswordHash = state.passwords.hash(new).await?;
    state
        .accounts
        .set_password(&account.id, &hash, state.clock.now())
        .await?;
    let ended = session.logout_other_devices().await?;
    metrics::revoked("password_change", ended);
    session.rotate().await?;
    tracing::info!(user = %account.username, ended, "password changed");
    Ok(ended)
}
