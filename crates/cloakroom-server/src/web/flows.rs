//! The account flows as the web sees them: the account rules (`crate::accounts`), then the
//! session that follows — started on login and sign-up, rotated and the others ended on a
//! password change. Shared by the API and the pages, which differ only in how they answer.

use std::net::IpAddr;

use cloakroom_axum::{Auth, Session};
use cloakroom_core::accounts::Account;
use cloakroom_core::{AuthMethod, SessionToken};

use crate::accounts::passwords::{Busy, Password};
use crate::accounts::session_keys;
use crate::accounts::{self, AccountsError, Credentials, email};
use crate::state::AppState;
use crate::web::error::WebError;
use crate::{events, metrics};

/// Starts a session for `account` after a successful login or sign-up.
pub(crate) async fn start_session(
    auth: &Auth,
    account: &Account,
    remember: bool,
) -> Result<Session, WebError> {
    let new = auth
        .new_session(account.id.clone(), AuthMethod::password())
        .remember(remember)
        .data(accounts::session_data(account));
    Ok(auth.login(new).await?)
}

/// Who is signing in: a browser (a cookie) or a native app (a bearer token).
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// A browser, with "remember me" or not.
    Browser {
        /// A persistent session.
        remember: bool,
    },
    /// A native app, with the name its user will see under "Your devices".
    Native {
        /// "Pixel 8".
        device_name: String,
    },
}

/// A native app's session: issued, not set as a cookie; its token goes back in the answer.
async fn start_native_session(
    auth: &Auth,
    account: &Account,
    device_name: &str,
) -> Result<(SessionToken, Session), WebError> {
    let mut data = accounts::session_data(account);
    data.insert(accounts::session_keys::DEVICE_NAME, &device_name)
        .map_err(|e| WebError::Body {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_body",
            message: format!("The device name was refused: {e}."),
        })?;
    // Native sessions live as long as a remembered browser's: an app signs in once.
    let new = auth
        .new_session(account.id.clone(), AuthMethod::password())
        .remember(true)
        .data(data);
    Ok(auth.issue_bearer(new).await?)
}

/// Changes the password of the session's user: the account rules first, then every other
/// session ends, then the new password is saved and this session rotated. Returns how many sessions were ended.
pub(crate) async fn change_password(
    state: &AppState,
    session: &mut Session,
    ip: Option<IpAddr>,
    current: &Password,
    new: &Password,
) -> Result<u64, WebError> {
    let change = state
        .accounts
        .prepare_password_change(session.user_id(), ip, current, new)
        .await
        .inspect_err(|e| refused(&username(session), ip, e))?;
    // Other sessions end before the new password is saved: see `prepare_password_change`.
    let ended = session.logout_other_devices().await?;
    metrics::revoked("password_change", ended);
    let account = change.commit().await?;
    session.rotate().await?;
    events::password_changed(account.username.as_str(), ip, ended);
    Ok(ended)
}

/// Logs in with checked credentials and starts the session.
pub(crate) async fn login(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    credentials: &Credentials,
    client: &Client,
) -> Result<(Account, Session, Option<SessionToken>), WebError> {
    if matches!(client, Client::Browser { .. }) {
        // Before the password is even looked at: a browser's sign-in must come from our pages.
        auth.require_verified_origin()?;
    }
    let account = state
        .accounts
        .login(ip, credentials)
        .await
        .inspect_err(|e| refused(&credentials.username, ip, e))?;
    if state.settings.require_verified_email && account.verified_email().is_none() {
        metrics::login("email_not_verified");
        let e = AccountsError::EmailNotVerified;
        refused(account.username.as_str(), ip, &e);
        return Err(e.into());
    }
    let (session, token) = match client {
        Client::Browser { remember } => (start_session(auth, &account, *remember).await?, None),
        Client::Native { device_name } => {
            let (token, session) = start_native_session(auth, &account, device_name).await?;
            (session, Some(token))
        }
    };
    // `cloakroom user disable` sets the flag, then ends every session. A disable that ran
    // after the password check but before our session existed missed it, so look again now
    // that it exists: either the disable's revocation saw the session, or this sees the flag.
    if state.accounts.is_disabled(&account.id).await? {
        // Best effort: the disable's own revocation may have ended it already.
        let _ = session.logout().await;
        metrics::login("disabled");
        let e = AccountsError::AccountDisabled;
        refused(account.username.as_str(), ip, &e);
        return Err(e.into());
    }
    metrics::login("success");
    events::login(account.username.as_str(), session.handle().as_str(), ip);
    Ok((account, session, token))
}

/// Creates an account (if the configured sign-up mode allows, with `invite` where it asks for
/// an invitation), mails the link that verifies its address, if it has one, and starts its
/// session — unless sign-in needs a verified address (`require_verified_email`): then the
/// account waits for its link, and there is no session (`None`).
pub(crate) async fn signup(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    credentials: &Credentials,
    invite: Option<&str>,
    email: Option<&str>,
    remember: bool,
) -> Result<(Account, Option<Session>), WebError> {
    let required = state.settings.require_verified_email;
    let account = state
        .accounts
        .signup(
            state.settings.signup,
            ip,
            credentials,
            invite,
            email,
            required,
        )
        .await?;
    // The account exists whatever happens to the mail: a failure here is the operator's to
    // fix (it is logged), and the user can have another link sent.
    if let Err(e) =
        email::send_verification(&state.links, &state.mailer, &account, state.clock.now()).await
    {
        tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the verification mail");
    }
    if required {
        return Ok((account, None));
    }
    let session = start_session(auth, &account, remember).await?;
    Ok((account, Some(session)))
}

/// Deletes the account of `session`'s user, after checking their password again (throttled
/// like a login): every session ends — this one too, and its cookie goes — and then the
/// account (see `accounts::remove` for why in that order). Returns how many sessions ended.
pub(crate) async fn delete_account(
    state: &AppState,
    auth: &Auth,
    session: &Session,
    ip: Option<IpAddr>,
    password: &Password,
) -> Result<u64, WebError> {
    let name = username(session);
    let deletion = state
        .accounts
        .prepare_deletion(session.user_id(), ip, password)
        .await
        .inspect_err(|e| refused(&name, ip, e))?;
    let (account, ended) = deletion.commit(&state.sessions).await?;
    events::account_deleted(account.username.as_str(), "user", ip, ended);
    // This session ended with the others; what is left is the cookie, which goes even if the
    // store stumbles now — the account is gone either way.
    if let Err(e) = auth.logout().await {
        tracing::warn!(error = %e, "clearing the cookie of a deleted account's session");
    }
    Ok(ended)
}

impl From<Busy> for WebError {
    fn from(e: Busy) -> Self {
        AccountsError::Busy(e).into()
    }
}

/// Ends the request's session (if any) and removes the cookie, for every logout route.
pub(crate) async fn logout(auth: &Auth) -> Result<(), WebError> {
    let current = auth.session().await?;
    auth.logout().await?;
    if let Some(session) = current {
        metrics::revoked("logout", 1);
        events::logout(&username(&session), session.handle().as_str());
    }
    Ok(())
}

/// Records sessions the user ended on purpose ("log out other devices", revoke one).
pub(crate) fn revoked(session: &Session, reason: &'static str, count: u64) {
    metrics::revoked(reason, count);
    events::revoked(&username(session), reason, count);
}

/// The session's user as pages, logs and forward auth name them: the username kept in the
/// session, or the user id.
pub(crate) fn username(session: &Session) -> String {
    session
        .get::<String>(session_keys::USERNAME)
        .ok()
        .flatten()
        .unwrap_or_else(|| session.user_id().to_string())
}

/// Logs an account flow's refusal as the security event it is (if it is one).
fn refused(username: &str, ip: Option<IpAddr>, e: &AccountsError) {
    match e {
        AccountsError::InvalidCredentials => {
            events::login_failed(username, ip, "invalid_credentials");
        }
        AccountsError::WrongPassword => events::login_failed(username, ip, "wrong_password"),
        AccountsError::AccountDisabled => events::login_failed(username, ip, "account_disabled"),
        AccountsError::EmailNotVerified => {
            events::login_failed(username, ip, "email_not_verified");
        }
        AccountsError::Throttled(wait) => {
            events::throttled(username, ip, accounts::ceil_secs(*wait));
        }
        _ => {}
    }
}
