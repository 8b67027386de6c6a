//! The account flows as the web sees them: the account rules (`crate::accounts`), then the
//! session that follows — started on login and sign-up, rotated and the others ended on a
//! password change. Shared by the API and the pages, which differ only in how they answer.

use std::net::IpAddr;

use cloakroom_axum::{Auth, Session};
use cloakroom_core::AuthMethod;
use cloakroom_core::accounts::Account;

use crate::accounts::passwords::{Busy, Password};
use crate::accounts::{self, AccountsError, Credentials};
use crate::metrics;
use crate::state::AppState;
use crate::web::error::WebError;

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

/// Changes the password of the session's user: the account rules first, then every other
/// session ends and this one is rotated. Returns how many sessions were ended.
pub(crate) async fn change_password(
    state: &AppState,
    session: &mut Session,
    ip: Option<IpAddr>,
    current: &Password,
    new: &Password,
) -> Result<u64, WebError> {
    let account = state
        .accounts
        .change_password(session.user_id(), ip, current, new)
        .await?;
    let ended = session.logout_other_devices().await?;
    metrics::revoked("password_change", ended);
    session.rotate().await?;
    tracing::info!(user = %account.username, ended, "password changed");
    Ok(ended)
}

/// Logs in with checked credentials and starts the session.
pub(crate) async fn login(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    credentials: &Credentials,
    remember: bool,
) -> Result<(Account, Session), WebError> {
    let account = state.accounts.login(ip, credentials).await?;
    let session = start_session(auth, &account, remember).await?;
    metrics::login("success");
    tracing::info!(user = %account.username, handle = %session.handle(), "login");
    Ok((account, session))
}

/// Creates an account (if the configured sign-up mode allows) and starts its session.
pub(crate) async fn signup(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    credentials: &Credentials,
    remember: bool,
) -> Result<(Account, Session), WebError> {
    let account = state
        .accounts
        .signup(state.settings.signup, ip, credentials)
        .await?;
    let session = start_session(auth, &account, remember).await?;
    Ok((account, session))
}

impl From<Busy> for WebError {
    fn from(e: Busy) -> Self {
        AccountsError::Busy(e).into()
    }
}
