//! Password reset by mail: `POST /api/password-reset` (or the form at `/password-reset`) asks
//! for a link, `POST /api/password-reset/complete` (or the form the link opens) uses it.
//!
//! # What a stranger learns: nothing
//!
//! A request answers `202` with one fixed body whatever the login names: an account with a
//! verified address, one without, a disabled one, or nobody. So that the time to answer says
//! nothing either, the answer is sent before anything that depends on the account happens:
//! the lookup, the link and the mail run in a task of their own. The only refusal a request can
//! meet is the per-network throttle, which depends on the network alone. The per-account limit
//! on reset mails is applied in that task, where refusing is silent.
//!
//! # Using a link
//!
//! The link is a `PasswordReset` token (see `cloakroom_core::link`) whose fingerprint binds it
//! to the account's password hash and revocation epoch at the time it was made. Completing a
//! reset ends every session of the account — which moves the epoch — and then swaps the hash
//! only if it is still the one the link was made for (a compare-and-set in the store), so of two
//! uses of one link at once, exactly one sets a password. The other, and every later use, gets
//! `410`. The user is then signed in with a fresh session on this device, and a "your password
//! was changed" notice goes to the verified address.
//!
//! # The page a link opens
//!
//! `GET /password-reset?token=…` checks the link before showing the form, so a dead link says
//! so at once — with a form that asks for a new one — rather than after a new password was
//! typed. The token then travels in the form's body, not in a URL. The page is sent with
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`, and loads nothing from
//! another origin, so the token in its address reaches no one else: not through `Referer`,
//! not from a shared cache.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Session};
use cloakroom_core::accounts::{Account, Username};
use cloakroom_core::link::{LinkError, PasswordReset};
use cloakroom_core::mail::EmailAddress;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::AccountsError;
use crate::accounts::passwords::Password;
use crate::accounts::reset::{self, ResetLinkError};
use crate::mail::{Mail, MailError};
use crate::state::AppState;
use crate::web::api::{SessionResponse, session_response};
use crate::web::error::{ApiJson, WebError, WebForm, WebQuery};
use crate::web::pages::{self, FormError, Nav};
use crate::web::site::Site;
use crate::web::{ClientAddr, flows};
use crate::{events, metrics};

/// `POST /api/password-reset`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResetRequest {
    /// The username, or the account's email address.
    pub(crate) login: String,
}

/// The one answer to every reset request.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResetAccepted {
    /// What happens next, for the person who asked.
    pub(crate) message: &'static str,
}

const ACCEPTED: &str = "If an account matches and has a verified email address, a link to reset its password is on its way. It works once, for a limited time.";

/// `POST /api/password-reset/complete`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResetComplete {
    /// The `token` from the link.
    pub(crate) token: String,
    /// The new password (same rules as sign-up).
    #[schema(value_type = String, format = Password)]
    pub(crate) new_password: Password,
}

/// Asks for a password-reset link by mail.
///
/// Always `202` with the same body, whether or not an account matches; a link is mailed only
/// to an account's verified address. An account without one can be given a link by an
/// administrator (`cloakroom user reset-link USER`).
#[utoipa::path(post, path = "/api/password-reset", tag = "accounts", request_body = ResetRequest,
    security((), ("session_cookie" = [])),
    responses(
        (status = 202, description = "Accepted; a link is mailed if an account with a verified address matches (the same answer either way)", body = ResetAccepted),
    ))]
pub(crate) async fn password_reset_request(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<ResetAccepted>), WebError> {
    request(&state, ip, req.login).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetAccepted { message: ACCEPTED }),
    ))
}

/// Counts the request against its network, then mails links in a task of its own: nothing
/// that depends on the account may happen before the answer (see the module docs).
async fn request(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    login: String,
) -> Result<(), WebError> {
    state.accounts.throttle_reset_request(ip).await?;
    let task_state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = mail_reset_links(&task_state, &login).await {
            tracing::error!(error = %crate::error_chain::chain(&e), "could not send a password-reset mail");
        }
    });
    Ok(())
}

/// Why a reset mail could not be sent (logged, never answered).
#[derive(Debug, thiserror::Error)]
enum ResetMailError {
    #[error("looking up the account")]
    Store(#[from] cloakroom_core::StoreError),
    #[error(transparent)]
    Link(#[from] ResetLinkError),
    #[error("queueing the reset mail")]
    Mail(#[from] MailError),
}

/// The accounts `login` names: the one with that username, or (when it has an `@`, which no
/// username has) those with that address.
async fn named(state: &AppState, login: &str) -> Result<Vec<Account>, cloakroom_core::StoreError> {
    let store = state.accounts.store();
    if let Ok(username) = Username::parse(login) {
        return Ok(store.by_username(&username).await?.into_iter().collect());
    }
    match EmailAddress::parse(login) {
        Ok(address) => store.by_email(&address).await,
        Err(_) => Ok(Vec::new()),
    }
}

async fn mail_reset_links(state: &AppState, login: &str) -> Result<(), ResetMailError> {
    let now = state.clock.now();
    for account in named(state, login).await? {
        let Some(to) = account.verified_email() else {
            continue;
        };
        if account.disabled || !state.accounts.may_mail_reset(&account).await {
            continue;
        }
        let (link, _) = reset::reset_link(&state.links, &state.sessions, &account, now).await?;
        state
            .mailer
            .enqueue(Mail::PasswordReset {
                to: to.clone(),
                username: account.username.as_str().to_owned(),
                link,
                expires_in: state.links.reset_ttl(),
            })
            .await?;
        tracing::info!(user = %account.username, "password-reset link mailed");
    }
    Ok(())
}

/// Sets a new password with a reset link, ends every session of the account, and signs in
/// here with a new one.
#[utoipa::path(post, path = "/api/password-reset/complete", tag = "accounts", request_body = ResetComplete,
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Password set; every other session ended; signed in with a new session (the cookie is set)", body = SessionResponse),
    ))]
pub(crate) async fn password_reset_complete(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ResetComplete>,
) -> Result<Json<SessionResponse>, WebError> {
    let (account, session) = complete(&state, &auth, ip, &req.token, &req.new_password).await?;
    Ok(Json(session_response(&account, &session)))
}

fn used() -> WebError {
    WebError::refused(
        StatusCode::GONE,
        "reset_link_used",
        "This reset link was already used, or the password or sessions changed since it was sent. Ask for a new link if you still need one.",
    )
}

fn bad_link(e: &LinkError) -> WebError {
    WebError::bad_link(
        e,
        (
            "reset_link_expired",
            "This reset link has expired. Ask for a new one.",
        ),
        (
            "invalid_reset_link",
            "This is not a valid reset link. Ask for a new one.",
        ),
    )
}

/// The account a reset link is for, if the link works now: signed by us, unexpired, and
/// minted for the account's current state.
async fn account_of(state: &AppState, token: &str) -> Result<Account, WebError> {
    let link = state
        .links
        .verify::<PasswordReset>(token, state.clock.now())
        .map_err(|e| bad_link(&e))?;
    // A deleted account's link is as dead as a used one.
    let account = state
        .accounts
        .store()
        .by_id(link.claims.user())
        .await?
        .ok_or_else(used)?;
    if !link
        .claims
        .is_current(&reset::fingerprint(&state.sessions, &account).await?)
    {
        return Err(used());
    }
    if account.disabled {
        return Err(AccountsError::AccountDisabled.into());
    }
    Ok(account)
}

/// Uses a reset link (see the module docs for the order of steps and why).
pub(crate) async fn complete(
    state: &AppState,
    auth: &Auth,
    ip: Option<std::net::IpAddr>,
    token: &str,
    new_password: &Password,
) -> Result<(Account, Session), WebError> {
    let now = state.clock.now();
    let account = account_of(state, token).await?;
    let store = state.accounts.store();
    let hash = state
        .accounts
        .hash_new_password(&account, new_password)
        .await?;
    // Sessions first: a failure after this leaves the old password with every session ended,
    // never the new password beside a thief's session.
    let ended = state
        .sessions
        .revoke_all_for_user(&account.id, None)
        .await?;
    metrics::revoked("password_change", ended);
    if !store
        .upgrade_password(&account.id, &account.password_hash, &hash)
        .await?
    {
        // Another use of this link (or another change) got there first.
        return Err(used());
    }
    // The compare-and-set above swapped the hash; this records when.
    store.set_password(&account.id, &hash, now).await?;
    events::password_changed(account.username.as_str(), ip, ended);
    if let Some(to) = account.verified_email() {
        let notice = Mail::PasswordChanged {
            to: to.clone(),
            username: account.username.as_str().to_owned(),
        };
        if let Err(e) = state.mailer.enqueue(notice).await {
            tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the password-changed notice");
        }
    }
    let account = Account {
        password_hash: hash,
        password_changed_at: now,
        ..account
    };
    let session = flows::start_session(auth, &account, false).await?;
    Ok((account, session))
}

// --- The pages -----------------------------------------------------------------------------

/// `/password-reset`: asking for a link (no token), or choosing the new password (a token).
#[derive(Template)]
#[template(path = "password_reset.html")]
struct ResetPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: Option<String>,
    /// The link's token, carried in a hidden field: the form that sets the password.
    token: Option<String>,
    /// Whose password it sets, for password managers.
    username: Option<String>,
    /// The asking form: what was typed.
    login: String,
    notice: Option<&'static str>,
    error: FormError,
}

impl<'a> ResetPage<'a> {
    fn ask(site: &'a Site, nav: Option<Nav>, csrf: Option<String>) -> Self {
        Self {
            site,
            nav,
            csrf,
            token: None,
            username: None,
            login: String::new(),
            notice: None,
            error: FormError::default(),
        }
    }
}

/// `?token=` on `/password-reset`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// Whether `e` says the link itself is no good (rather than the password typed with it).
fn is_dead_link(e: &WebError) -> bool {
    matches!(
        e,
        WebError::Body {
            code: "reset_link_used" | "reset_link_expired" | "invalid_reset_link",
            ..
        }
    ) || matches!(e, WebError::Accounts(AccountsError::AccountDisabled))
}

fn reset_field(e: &WebError) -> Option<&'static str> {
    match e {
        WebError::Accounts(AccountsError::WeakPassword(_)) => Some("new_password"),
        e if pages::is_mismatch(e) => Some("confirm"),
        _ => None,
    }
}

/// `GET /password-reset`: the form that asks for a link, or — with `?token=` from one — the
/// form that sets the new password, once the link is known to work. A link that does not is
/// answered with its status (400 expired or not ours, 410 used) and the asking form.
pub(crate) async fn reset_page(
    State(state): State<AppState>,
    auth: Auth,
    WebQuery(q): WebQuery<TokenQuery>,
) -> Result<Response, WebError> {
    let session = auth.session().await.ok().flatten();
    let nav = session.as_ref().map(pages::nav);
    let csrf = session.as_ref().map(Session::csrf_token);
    let mut page = ResetPage::ask(&state.site, nav, csrf);
    let Some(token) = q.token else {
        return Ok(pages::render_secret(StatusCode::OK, &page));
    };
    match account_of(&state, &token).await {
        Ok(account) => {
            page.token = Some(token);
            page.username = Some(account.username.as_str().to_owned());
            Ok(pages::render_secret(StatusCode::OK, &page))
        }
        Err(e) if is_dead_link(&e) => {
            page.error = FormError::of(&e, |_| None);
            Ok(pages::render_secret(e.status(), &page))
        }
        Err(e) => Err(e),
    }
}

/// The form of `/password-reset`: `login` asks for a link; `token` with the new password
/// (twice) uses one.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct ResetForm {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    new_password: Option<Password>,
    #[serde(default)]
    confirm: Option<Password>,
}

/// `POST /password-reset`.
pub(crate) async fn reset_submit(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<ResetForm>,
) -> Result<Response, WebError> {
    let session = auth.session().await.ok().flatten();
    let nav = session.as_ref().map(pages::nav);
    let csrf = session.as_ref().map(Session::csrf_token);
    let mut page = ResetPage::ask(&state.site, nav, csrf);
    let Some(token) = form.token else {
        let login = form.login.unwrap_or_default();
        let result = if login.trim().is_empty() {
            Err(WebError::refused(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_login",
                "Enter your username or email address.",
            ))
        } else {
            request(&state, ip, login.clone()).await
        };
        page.login = login;
        return Ok(match result {
            Ok(()) => {
                page.notice = Some(ACCEPTED);
                pages::render_secret(StatusCode::OK, &page)
            }
            Err(e) => {
                page.error = FormError::of(&e, |_| None);
                let mut response = pages::render_secret(e.status(), &page);
                pages::add_retry_after(&mut response, &e);
                response
            }
        });
    };
    let (Some(new_password), Some(confirm)) = (form.new_password, form.confirm) else {
        return Err(WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_password",
            "Enter the new password twice.",
        ));
    };
    let result = if new_password.same_as(&confirm) {
        complete(&state, &auth, ip, &token, &new_password).await
    } else {
        Err(WebError::mismatch("The two new passwords differ."))
    };
    match result {
        Ok(_) => Ok(Redirect::to(pages::PASSWORD_RESET_DONE).into_response()),
        Err(e) if is_dead_link(&e) => {
            page.error = FormError::of(&e, |_| None);
            Ok(pages::render_secret(e.status(), &page))
        }
        Err(e) if reset_field(&e).is_some() || e.retry_after().is_some() => {
            // The link still works: the same form again, the error under its field.
            if let Ok(account) = account_of(&state, &token).await {
                page.username = Some(account.username.as_str().to_owned());
            }
            page.token = Some(token);
            page.error = FormError::of(&e, reset_field);
            let mut response = pages::render_secret(e.status(), &page);
            pages::add_retry_after(&mut response, &e);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}
