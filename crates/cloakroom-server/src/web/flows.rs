//! The account flows as the web sees them: the account rules (`crate::accounts`), then the
//! session that follows — started on login and sign-up, rotated and the others ended on a
//! password change. Shared by the API and the pages, which differ only in how they answer.

use std::net::IpAddr;

use cloakroom_axum::{Auth, Session};
use cloakroom_core::accounts::Account;
use cloakroom_core::{AuthMethod, InvalidValue, SessionData, SessionToken};

use crate::accounts::passwords::{Busy, Password};
use crate::accounts::session_keys;
use crate::accounts::{self, AccountsError, Credentials, email};
use crate::mfa::Proof;
use crate::state::AppState;
use crate::web::error::WebError;
use crate::{events, metrics};

/// Starts a session for `account` after a successful login or sign-up.
pub(crate) async fn start_session(
    auth: &Auth,
    account: &Account,
    remember: bool,
) -> Result<Session, WebError> {
    let client = Client::Browser { remember };
    let data = accounts::session_data(account);
    let (session, _) = sign_in(auth, account, &client, AuthMethod::password(), data).await?;
    Ok(session)
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

/// Signs `account` in on `client` (by `how`) with session `data`: a browser's cookie
/// (replacing whatever session the request carried), or a native app's bearer token, handed
/// back.
async fn sign_in(
    auth: &Auth,
    account: &Account,
    client: &Client,
    how: AuthMethod,
    mut data: SessionData,
) -> Result<(Session, Option<SessionToken>), WebError> {
    let new = auth.new_session(account.id.clone(), how);
    match client {
        Client::Browser { remember } => {
            Ok((auth.login(new.remember(*remember).data(data)).await?, None))
        }
        Client::Native { device_name } => {
            data.insert(accounts::session_keys::DEVICE_NAME, device_name)
                .map_err(refused_data("device name"))?;
            // Native sessions live as long as a remembered browser's: an app signs in once.
            let (token, session) = auth.issue_bearer(new.remember(true).data(data)).await?;
            Ok((session, Some(token)))
        }
    }
}

/// Session data the server writes, refused (it would make the data too large): a 422 naming
/// `what`.
pub(crate) fn refused_data(what: &'static str) -> impl Fn(InvalidValue) -> WebError {
    move |e| WebError::Body {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        code: "invalid_body",
        message: format!("The {what} was refused: {e}."),
    }
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
    require_step_up_with_factors(state, session).await?;
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

/// How a login with the right password ended.
pub(crate) enum LoginOutcome {
    /// Signed in: the session (and a native app's token).
    SignedIn(Account, Session, Option<SessionToken>),
    /// The account has a second factor: a pending session holds the sign-in until it is given
    /// (`POST /api/login/second-factor`); a native app gets the pending session's token.
    SecondFactor {
        /// The methods the account can use (`totp`, `recovery_code`).
        methods: Vec<&'static str>,
        /// A native app's pending token.
        token: Option<SessionToken>,
    },
}

/// How long a pending sign-in waits for its second factor.
pub(crate) const PENDING_SIGN_IN: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// Data keys of a pending session: what the full session will be.
const PENDING_REMEMBER: &str = "cloakroom.pending_remember";
const PENDING_DEVICE: &str = "cloakroom.pending_device";

/// Logs in with checked credentials and starts the session, or, for an account with a second
/// factor, a pending session that waits for it.
pub(crate) async fn login(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    credentials: &Credentials,
    client: &Client,
) -> Result<LoginOutcome, WebError> {
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
    let factors = state.mfa.factors(&account.id).await?;
    if factors.any() {
        return pending_sign_in(auth, &account, client, &factors).await;
    }
    let data = accounts::session_data(&account);
    let (session, token) = sign_in(auth, &account, client, AuthMethod::password(), data).await?;
    let session = signed_in(state, &account, session, ip).await?;
    Ok(LoginOutcome::SignedIn(account, session, token))
}

/// The last step of every sign-in, once its session exists. `cloakroom user disable` sets the
/// flag, then ends every session. A disable that ran after the credentials were checked but
/// before our session existed missed it, so look again now that it exists: either the
/// disable's revocation saw the session, or this sees the flag.
async fn signed_in(
    state: &AppState,
    account: &Account,
    session: Session,
    ip: Option<IpAddr>,
) -> Result<Session, WebError> {
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
    Ok(session)
}

/// The password was right and the account has a second factor: a pending session, which
/// every route but the second factor's treats as signed out. It records how to finish: the
/// browser's "remember me", or the native app's device name.
async fn pending_sign_in(
    auth: &Auth,
    account: &Account,
    client: &Client,
    factors: &cloakroom_core::mfa::Factors,
) -> Result<LoginOutcome, WebError> {
    let mut data = SessionData::default();
    data.insert(session_keys::USERNAME, account.username.as_str())
        .and_then(|()| match client {
            Client::Browser { remember } => data.insert(PENDING_REMEMBER, remember),
            Client::Native { device_name } => data.insert(PENDING_DEVICE, device_name),
        })
        .map_err(refused_data("sign-in"))?;
    let new = auth
        .new_session(account.id.clone(), AuthMethod::password())
        .data(data)
        .pending();
    let token = match client {
        Client::Browser { .. } => {
            auth.login(new).await?;
            None
        }
        Client::Native { .. } => Some(auth.issue_bearer(new).await?.0),
    };
    metrics::login("second_factor_required");
    Ok(LoginOutcome::SecondFactor {
        methods: crate::mfa::SecondFactors::methods(factors),
        token,
    })
}

/// Why a pending sign-in cannot be finished.
fn no_pending_sign_in() -> WebError {
    WebError::refused(
        axum::http::StatusCode::UNAUTHORIZED,
        "no_pending_sign_in",
        "Sign in with your password first.",
    )
}

/// Finishes a pending sign-in with its second factor: checked (throttled like a password),
/// then the pending session is replaced by the full one — a new token (the fixation defence),
/// at `aal2`.
pub(crate) async fn second_factor(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    proof: Proof,
) -> Result<(Account, Session, Option<SessionToken>), WebError> {
    let method = proof.method();
    let mut pending = auth
        .pending_session()
        .await?
        .ok_or_else(no_pending_sign_in)?;
    let record = pending.record();
    if state.clock.now().duration_since(record.created_at) > PENDING_SIGN_IN {
        events::second_factor_failed(&username(&pending), method.as_str(), "expired", ip);
        let _ = pending.logout().await;
        return Err(WebError::refused(
            axum::http::StatusCode::UNAUTHORIZED,
            "second_factor_expired",
            "The sign-in took too long. Sign in with your password again.",
        ));
    }
    // The pending session says how to finish: the same kind of client it was started by.
    let client = if record.is_bearer() {
        let device = record.data.get::<String>(PENDING_DEVICE).ok().flatten();
        Client::Native {
            device_name: device.unwrap_or_else(|| "Native app".to_owned()),
        }
    } else {
        let remember = record.data.get::<bool>(PENDING_REMEMBER).ok().flatten();
        Client::Browser {
            remember: remember.unwrap_or(false),
        }
    };
    let account = state
        .accounts
        .store()
        .by_id(&record.user_id)
        .await?
        .ok_or_else(no_pending_sign_in)?;
    check_second_factor(state, &account, ip, &proof, "sign_in", &mut pending).await?;
    let mut data = accounts::session_data(&account);
    raise(&mut data, state.clock.now(), method).map_err(refused_data("session"))?;
    // A browser's sign-in replaces the pending session in the same step; a native app's is a
    // new bearer session, and the pending token is spent.
    let (session, token) = sign_in(auth, &account, &client, AuthMethod::password(), data).await?;
    if token.is_some() {
        let _ = pending.logout().await;
    }
    let session = signed_in(state, &account, session, ip).await?;
    Ok((account, session, token))
}

/// Signs in with a passkey alone (`passkey_login`): the challenge's sealed cookie opened and
/// spent, the passkey's answer checked (user verification included: a passkey is two factors
/// in one, so the session is `aal2`), then the account's own rules, as after a password.
pub(crate) async fn passkey_sign_in(
    state: &AppState,
    auth: &Auth,
    ip: Option<IpAddr>,
    cookie: Option<&str>,
    credential: &webauthn_rs::prelude::PublicKeyCredential,
    remember: bool,
) -> Result<(Account, Session), WebError> {
    auth.require_verified_origin()?;
    let passkeys = &state.mfa.passkeys;
    let checked = match passkeys.open_sign_in(cookie, &state.sessions).await {
        Ok(challenge) => passkeys.finish_sign_in(credential, challenge).await,
        Err(e) => Err(e),
    };
    let user = checked.map_err(|e| {
        events::login_failed("-", ip, e.reason());
        metrics::login("passkey_refused");
        mfa_error(e.into(), axum::http::StatusCode::UNAUTHORIZED)
    })?;
    let account = state
        .accounts
        .store()
        .by_id(&user)
        .await?
        .ok_or(AccountsError::UnknownAccount)?;
    if state.settings.require_verified_email && account.verified_email().is_none() {
        metrics::login("email_not_verified");
        let e = AccountsError::EmailNotVerified;
        refused(account.username.as_str(), ip, &e);
        return Err(e.into());
    }
    let mut data = accounts::session_data(&account);
    raise(&mut data, state.clock.now(), crate::mfa::Method::Passkey)
        .map_err(refused_data("session"))?;
    let how =
        AuthMethod::new(crate::mfa::level::PASSKEY_SIGN_IN).map_err(refused_data("sign-in"))?;
    let client = Client::Browser { remember };
    let (session, _) = sign_in(auth, &account, &client, how, data).await?;
    let session = signed_in(state, &account, session, ip).await?;
    Ok((account, session))
}

/// Marks session data as `aal2` at `now`, by `method`.
fn raise(
    data: &mut SessionData,
    now: cloakroom_core::Timestamp,
    method: crate::mfa::Method,
) -> Result<(), InvalidValue> {
    use crate::mfa::level;
    data.insert(level::AAL2_AT, &now.as_unix_millis())
        .and_then(|()| data.insert(level::SECOND_FACTOR, method.as_str()))
}

/// Checks a second factor of `account`, throttled like a password (per account and network).
/// A passkey answers the challenge kept in `holder` (the pending or full session), which is
/// taken out first: a challenge answers once.
async fn check_second_factor(
    state: &AppState,
    account: &Account,
    ip: Option<IpAddr>,
    proof: &Proof,
    purpose: &str,
    holder: &mut Session,
) -> Result<(), WebError> {
    let user = account.username.as_str();
    let method = proof.method();
    let attempt = state
        .accounts
        .begin_second_factor(account, ip)
        .await
        .inspect_err(|e| refused(user, ip, e))?;
    let checked = match proof {
        Proof::Code(method, code) => state.mfa.verify(&account.id, *method, code).await,
        Proof::Passkey(credential) => {
            match crate::web::passkeys::take(state, holder, crate::mfa::passkey::CHALLENGE_KEY)
                .await?
            {
                Some(challenge) => state
                    .mfa
                    .passkeys
                    .finish_authentication(&account.id, credential, &challenge)
                    .await
                    .map_err(Into::into),
                None => Err(crate::mfa::passkey::PasskeyError::NoChallenge.into()),
            }
        }
    };
    match checked {
        Ok(()) => {
            attempt.succeeded().await;
            events::second_factor_accepted(user, method.as_str(), purpose, ip);
            Ok(())
        }
        Err(e) => {
            let reason = match &e {
                crate::mfa::MfaError::Replayed => "replayed",
                crate::mfa::MfaError::WrongCode => "wrong_code",
                crate::mfa::MfaError::Passkey(p) => p.reason(),
                _ => "error",
            };
            events::second_factor_failed(user, method.as_str(), reason, ip);
            Err(mfa_error(e, axum::http::StatusCode::UNAUTHORIZED))
        }
    }
}

/// A second-factor refusal as the web answers it; a wrong code is `wrong_status` (401 at
/// sign-in and step-up, 400 when confirming a new authenticator).
pub(crate) fn mfa_error(e: crate::mfa::MfaError, wrong_status: axum::http::StatusCode) -> WebError {
    use crate::mfa::MfaError;
    use axum::http::StatusCode;
    let (status, code) = match &e {
        MfaError::WrongCode | MfaError::Replayed => (wrong_status, "invalid_code"),
        MfaError::NoEnrolment => (StatusCode::CONFLICT, "no_enrolment"),
        MfaError::AlreadyEnrolled => (StatusCode::CONFLICT, "totp_already_enabled"),
        MfaError::NotEnrolled => {
            return WebError::NotFound("This account has no authenticator app.");
        }
        MfaError::Passkey(p) => match passkey_refusal(p, wrong_status) {
            Some(refusal) => refusal,
            None => return internal(e),
        },
        MfaError::Store(_) | MfaError::Sealed(_) | MfaError::Build(_) => return internal(e),
    };
    WebError::Body {
        status,
        code,
        message: e.to_string(),
    }
}

/// A passkey refusal's status and code; `None` for a server fault.
fn passkey_refusal(
    e: &crate::mfa::passkey::PasskeyError,
    wrong_status: axum::http::StatusCode,
) -> Option<(axum::http::StatusCode, &'static str)> {
    use crate::mfa::passkey::PasskeyError;
    use axum::http::StatusCode;
    Some(match e {
        PasskeyError::Unavailable => (StatusCode::NOT_FOUND, "passkeys_unavailable"),
        PasskeyError::NoChallenge => (StatusCode::BAD_REQUEST, "no_challenge"),
        PasskeyError::NoPasskeys => (StatusCode::CONFLICT, "no_passkeys"),
        PasskeyError::Unknown if wrong_status == StatusCode::NOT_FOUND => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        PasskeyError::Refused(_) | PasskeyError::Unknown => (wrong_status, "passkey_refused"),
        PasskeyError::PossibleClone => (wrong_status, "passkey_possible_clone"),
        PasskeyError::AlreadyRegistered => (StatusCode::CONFLICT, "passkey_registered"),
        PasskeyError::BadName => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_name"),
        PasskeyError::Corrupt(_) | PasskeyError::Store(_) => return None,
    })
}

/// A server fault behind a second factor: logged, answered as a store failure (generic).
fn internal(e: crate::mfa::MfaError) -> WebError {
    match e {
        crate::mfa::MfaError::Store(s)
        | crate::mfa::MfaError::Passkey(crate::mfa::passkey::PasskeyError::Store(s)) => {
            WebError::Store(s)
        }
        other => {
            tracing::error!(error = %crate::error_chain::chain(&other), "second factor");
            WebError::Store(cloakroom_core::StoreError::Backend {
                store: "second factors",
                source: Box::new(other),
            })
        }
    }
}

/// Raises the request's session (step-up): `change` writes what was proven into its data, then
/// the session gets a new token. Two writes on purpose: the data's versioned update fails on a
/// session revoked meanwhile ("sign out" on another device), where a rotation alone would
/// create its successor regardless (the store's `rotate` need not find the old record).
async fn elevate(
    session: &mut Session,
    change: impl FnMut(&mut SessionData) -> Result<(), InvalidValue> + Send,
) -> Result<(), WebError> {
    session
        .update(change)
        .await?
        .map_err(refused_data("session"))?;
    Ok(session.rotate().await?)
}

/// Raises the request's session to `aal2` with a second factor (step-up): checked like at
/// sign-in, then the session gets a new token. Returns the account.
pub(crate) async fn step_up(
    state: &AppState,
    session: &mut Session,
    ip: Option<IpAddr>,
    proof: Proof,
) -> Result<Account, WebError> {
    let method = proof.method();
    let account = state
        .accounts
        .store()
        .by_id(session.user_id())
        .await?
        .ok_or(AccountsError::UnknownAccount)?;
    check_second_factor(state, &account, ip, &proof, "step_up", session).await?;
    let now = state.clock.now();
    elevate(session, |d| raise(d, now, method)).await?;
    Ok(account)
}

/// Step-up of an account with no second factor: the password again, recorded as recent.
/// Returns the account.
pub(crate) async fn step_up_password(
    state: &AppState,
    session: &mut Session,
    ip: Option<IpAddr>,
    password: &Password,
) -> Result<Account, WebError> {
    let name = username(session);
    let account = state
        .accounts
        .reauthenticate(session.user_id(), ip, password)
        .await
        .inspect_err(|e| refused(&name, ip, e))?;
    let now = state.clock.now().as_unix_millis();
    elevate(session, |d| d.insert(crate::mfa::level::REAUTH_AT, &now)).await?;
    Ok(account)
}

/// For an account with a second factor, a recent step-up (see [`require_step_up`]); an
/// account without one gives its password with the change itself.
pub(crate) async fn require_step_up_with_factors(
    state: &AppState,
    session: &Session,
) -> Result<(), WebError> {
    let factors = state.mfa.factors(session.user_id()).await?;
    if factors.any() {
        stepped_up(state, session, &factors)
    } else {
        Ok(())
    }
}

/// What a change that needs a recent step-up (a factor added or removed, new recovery codes)
/// asks of the session; returns the account's factors, read once for the caller too.
pub(crate) async fn require_step_up(
    state: &AppState,
    session: &Session,
) -> Result<cloakroom_core::mfa::Factors, WebError> {
    let factors = state.mfa.factors(session.user_id()).await?;
    stepped_up(state, session, &factors)?;
    Ok(factors)
}

/// Whether the session stepped up recently enough: with a second factor, one given in this
/// session within [`STEP_UP_WINDOW`](crate::mfa::level::STEP_UP_WINDOW); without, the password
/// within it (at sign-in or by step-up). Refused with 403 `step_up_required`.
fn stepped_up(
    state: &AppState,
    session: &Session,
    factors: &cloakroom_core::mfa::Factors,
) -> Result<(), WebError> {
    use crate::mfa::level;
    let record = session.record();
    let now = state.clock.now();
    let fresh = |t: cloakroom_core::Timestamp| now.duration_since(t) <= level::STEP_UP_WINDOW;
    let second = level::aal2_at(record).is_some_and(fresh);
    let (ok, how) = if factors.any() {
        (second, "your second factor")
    } else {
        (second || fresh(level::password_at(record)), "your password")
    };
    if ok {
        Ok(())
    } else {
        Err(WebError::refused(
            axum::http::StatusCode::FORBIDDEN,
            "step_up_required",
            &format!("Confirm it is you with {how} first (POST /api/step-up)."),
        ))
    }
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
