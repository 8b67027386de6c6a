//! Email addresses: verifying one with the link mailed to it, having the link sent again, and
//! changing it.
//!
//! # Verifying
//!
//! The link (`<public_url>/verify-email?token=…`, an `EmailVerification` token from
//! `cloakroom_core::link`) is bound to the account, the exact address and "not verified yet".
//! Following it marks the address verified only if the account still holds that address (a
//! compare-and-set in the store), so a link for an address since replaced verifies nothing,
//! and a second use finds the state moved on: `410`. Opening the link only shows which
//! account and address it confirms, with a button (a `POST`) that does it: a mail scanner
//! that opens every link must not confirm an address for whoever typed it into their own
//! account — which would hand that account a "verified" address that is someone else's, to
//! show apps and, with `oidc_link_by_email`, to have the real owner's provider sign-in linked
//! to. It does not sign anyone in.
//!
//! # Changing
//!
//! A change needs the password (checked and throttled like a login): a session alone — left
//! open on a shared computer, say — must not be enough to point password resets at another
//! mailbox. The new address starts unverified and gets its link; the old one, if it was
//! verified, is told. Until the new address is verified, apps see no address at all.
//!
//! # Sending the link again
//!
//! `POST /api/email/resend` (and its form) takes a username or an address and always answers
//! the same, like a reset request: it says nothing about which accounts exist. It is counted
//! per network, and its mails share each account's limit with reset mails, so it cannot be
//! used to flood a mailbox.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Rejection, Session};
use cloakroom_core::accounts::{Account, Username};
use cloakroom_core::link::{EmailFingerprint, EmailVerification, LinkError};
use cloakroom_core::mail::EmailAddress;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::passwords::Password;
use crate::accounts::{AccountsError, email, parse_optional_email, session_keys};
use crate::events;
use crate::mail::Mail;
use crate::state::AppState;
use crate::web::ClientAddr;
use crate::web::error::{ApiJson, WebError, WebForm, WebQuery};
use crate::web::pages::{self, FormError, Nav, Visitor};
use crate::web::site::Site;

/// The one answer to every request for a new link.
const RESENT: &str =
    "If an account matches and its email address is not confirmed yet, a new link is on its way.";

// --- The steps, shared by the API and the pages --------------------------------------------

fn used() -> WebError {
    WebError::refused(
        StatusCode::GONE,
        "verification_link_used",
        "This link was already used, or the address changed since it was sent. Sign in to see your address, or have a new link sent.",
    )
}

fn bad_link(e: &LinkError) -> WebError {
    WebError::bad_link(
        e,
        (
            "verification_link_expired",
            "This link has expired. Have a new one sent.",
        ),
        (
            "invalid_verification_link",
            "This is not a valid confirmation link. Have a new one sent.",
        ),
    )
}

/// The account and address a verification link is for, if it works now.
async fn check(state: &AppState, token: &str) -> Result<(Account, EmailAddress), WebError> {
    let link = state
        .links
        .verify::<EmailVerification>(token, state.clock.now())
        .map_err(|e| bad_link(&e))?;
    let account = state
        .accounts
        .store()
        .by_id(link.claims.user())
        .await?
        .ok_or_else(used)?;
    let address = account.email.clone().ok_or_else(used)?;
    let now = EmailFingerprint::of(&account.id, &address, account.email_verified);
    if !link.claims.is_current(&now) {
        return Err(used());
    }
    Ok((account, address))
}

/// Verifies the address a link was sent to (see the module docs). Returns the account, its
/// address now verified.
async fn verify(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    token: &str,
) -> Result<Account, WebError> {
    let (account, address) = check(state, token).await?;
    if !state
        .accounts
        .store()
        .mark_email_verified(&account.id, &address)
        .await?
    {
        return Err(used());
    }
    events::email_changed(account.username.as_str(), ip, true);
    Ok(Account {
        email_verified: true,
        ..account
    })
}

/// Lets the request's session, if it is the account's, carry the address as verified now, so
/// that apps behind forward auth see it without a new sign-in. (Its other sessions pick it up
/// at their next sign-in.)
async fn refresh_session(session: Option<&mut Session>, account: &Account) -> Result<(), WebError> {
    let Some(session) = session.filter(|s| s.user_id() == &account.id) else {
        return Ok(());
    };
    if let Some(address) = account.verified_email() {
        session
            .insert(session_keys::EMAIL, address.as_str())
            .await?;
    } else {
        session.remove(session_keys::EMAIL).await?;
    }
    Ok(())
}

/// The accounts `login` names (see `reset::named`), whose address waits for verification.
async fn unverified(
    state: &AppState,
    login: &str,
) -> Result<Vec<Account>, cloakroom_core::StoreError> {
    let store = state.accounts.store();
    let found = if let Ok(username) = Username::parse(login) {
        store.by_username(&username).await?.into_iter().collect()
    } else if let Ok(address) = EmailAddress::parse(login) {
        store.by_email(&address).await?
    } else {
        Vec::new()
    };
    Ok(found
        .into_iter()
        .filter(|a| a.email.is_some() && !a.email_verified && !a.disabled)
        .collect())
}

/// Counts a request for a new link against its network, then sends links in a task of its
/// own, so that neither the answer nor its timing depends on the account.
async fn resend(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    login: String,
) -> Result<(), WebError> {
    state.accounts.throttle_reset_request(ip).await?;
    let state = state.clone();
    tokio::spawn(async move {
        let accounts = match unverified(&state, &login).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %crate::error_chain::chain(&e), "looking up an account to send a confirmation link to");
                return;
            }
        };
        for account in accounts {
            if state.accounts.may_mail_reset(&account).await {
                send(&state, &account).await;
            }
        }
    });
    Ok(())
}

/// Queues the verification link for `account`'s address; a failure is logged (the user can
/// ask again), never shown.
async fn send(state: &AppState, account: &Account) {
    if let Err(e) =
        email::send_verification(&state.links, &state.mailer, account, state.clock.now()).await
    {
        tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the verification mail");
    }
}

/// Changes the address of `session`'s user after checking the password (see the module
/// docs). Returns the account as it is now.
async fn change(
    state: &AppState,
    session: &mut Session,
    ip: Option<std::net::IpAddr>,
    typed: &str,
    password: &Password,
) -> Result<Account, WebError> {
    let Some(new) = parse_optional_email(Some(typed)).map_err(AccountsError::from)? else {
        return Err(WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_email",
            "Enter an email address.",
        ));
    };
    crate::web::flows::require_step_up_with_factors(state, session).await?;
    let account = state
        .accounts
        .reauthenticate(session.user_id(), ip, password)
        .await?;
    if account.email.as_ref() == Some(&new) {
        // The same address: nothing changes; an unverified one gets its link again.
        if !account.email_verified && state.accounts.may_mail_reset(&account).await {
            send(state, &account).await;
        }
        return Ok(account);
    }
    let store = state.accounts.store();
    if !store.set_email(&account.id, Some(&new)).await? {
        return Err(AccountsError::UnknownAccount.into());
    }
    events::email_changed(account.username.as_str(), ip, false);
    let old = account.verified_email().cloned();
    let account = Account {
        email: Some(new.clone()),
        email_verified: false,
        ..account
    };
    send(state, &account).await;
    if let Some(old) = old {
        let notice = Mail::EmailChanged {
            to: old,
            username: account.username.as_str().to_owned(),
            new_address: new,
        };
        if let Err(e) = state.mailer.enqueue(notice).await {
            tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the change-of-address notice");
        }
    }
    refresh_session(Some(session), &account).await?;
    Ok(account)
}

// --- The API ---------------------------------------------------------------------------------

/// `POST /api/email/verify`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct VerifyRequest {
    /// The `token` from the link.
    pub(crate) token: String,
}

/// `POST /api/email/resend`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ResendRequest {
    /// The username, or the account's email address.
    pub(crate) login: String,
}

/// `POST /api/email`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct EmailRequest {
    /// The new address (`name@domain`).
    #[schema(format = Email)]
    pub(crate) email: String,
    /// The account's password.
    #[schema(value_type = String, format = Password)]
    pub(crate) current_password: Password,
}

/// An account's address and whether it is verified.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EmailView {
    /// The address.
    #[schema(format = Email)]
    pub(crate) email: Option<String>,
    /// Whether it is verified: only a verified address gets reset links and reaches apps.
    pub(crate) email_verified: bool,
}

impl From<&Account> for EmailView {
    fn from(a: &Account) -> Self {
        Self {
            email: a.email.as_ref().map(|e| e.as_str().to_owned()),
            email_verified: a.email.is_some() && a.email_verified,
        }
    }
}

/// The one answer to every request for a new link.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ResendAccepted {
    /// What happens next.
    pub(crate) message: &'static str,
}

/// Verifies an email address with the token of the link mailed to it. Needs no session; a
/// session of the same account that makes the request carries the address from now on.
#[utoipa::path(post, path = "/api/email/verify", tag = "accounts", request_body = VerifyRequest,
    security((), ("session_cookie" = [])),
    responses((status = 200, description = "Verified", body = EmailView)))]
pub(crate) async fn verify_api(
    State(state): State<AppState>,
    mut session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<EmailView>, WebError> {
    let account = verify(&state, ip, &req.token).await?;
    refresh_session(session.as_mut(), &account).await?;
    Ok(Json(EmailView::from(&account)))
}

/// Sends the verification link again. Always `202` with the same body, whether or not an
/// account matches; a link goes only to an address that is not verified yet.
#[utoipa::path(post, path = "/api/email/resend", tag = "accounts", request_body = ResendRequest,
    security((), ("session_cookie" = [])),
    responses((status = 202, description = "Accepted; a link is mailed if an account with an unverified address matches (the same answer either way)", body = ResendAccepted)))]
pub(crate) async fn resend_api(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<(StatusCode, Json<ResendAccepted>), WebError> {
    resend(&state, ip, req.login).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ResendAccepted { message: RESENT }),
    ))
}

/// Changes the account's email address (the password is checked again). The new address is
/// unverified until its link is followed, and gets that link; a verified old address is told
/// of the change.
#[utoipa::path(post, path = "/api/email", tag = "accounts", request_body = EmailRequest,
    security(("session_cookie" = [])),
    responses((status = 200, description = "Changed (or unchanged, if it is the same address)", body = EmailView)))]
pub(crate) async fn change_api(
    State(state): State<AppState>,
    mut session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<EmailRequest>,
) -> Result<Json<EmailView>, WebError> {
    let account = change(&state, &mut session, ip, &req.email, &req.current_password).await?;
    Ok(Json(EmailView::from(&account)))
}

// --- The pages -------------------------------------------------------------------------------

/// The outcome of a verification link, the sign-up that waits for one, or a request for a new
/// one.
#[derive(Template)]
#[template(path = "verify_email.html")]
struct VerifyPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: Option<String>,
    title: &'static str,
    notice: Option<String>,
    error: Option<String>,
    /// The link's token, carried into the confirm form.
    confirm: Option<String>,
    /// Offer to send a new link.
    resend: bool,
    signed_in: bool,
    login: String,
}

impl<'a> VerifyPage<'a> {
    fn new(site: &'a Site, session: Option<&Session>, title: &'static str) -> Self {
        Self {
            site,
            nav: session.map(pages::nav),
            csrf: session.map(Session::csrf_token),
            title,
            notice: None,
            error: None,
            confirm: None,
            resend: false,
            signed_in: session.is_some(),
            login: String::new(),
        }
    }
}

/// The page after a sign-up that must verify its address before signing in.
pub(crate) fn check_your_mail(state: &AppState) -> Response {
    let mut page = VerifyPage::new(&state.site, None, "Check your mail");
    page.notice = Some(crate::web::api::CHECK_YOUR_MAIL.to_owned());
    pages::render(StatusCode::OK, &page)
}

/// `?token=` on `/verify-email`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    token: Option<String>,
}

/// `GET /verify-email?token=…`: which account and address the link confirms, and the button
/// that does it (see the module docs); a link that does not work is answered with its status
/// (400 expired or not ours, 410 used or overtaken) and a way to have a new one sent.
pub(crate) async fn verify_page(
    State(state): State<AppState>,
    session: Option<Session>,
    WebQuery(q): WebQuery<TokenQuery>,
) -> Result<Response, WebError> {
    let result = match q.token {
        Some(token) => check(&state, &token).await.map(|c| (c, token)),
        None => Err(bad_link(&LinkError::Malformed)),
    };
    match result {
        Ok(((account, address), token)) => {
            let mut page =
                VerifyPage::new(&state.site, session.as_ref(), "Confirm your email address");
            page.notice = Some(format!(
                "Confirm that {address} is the email address of the account {}.",
                account.username
            ));
            page.confirm = Some(token);
            Ok(pages::render_secret(StatusCode::OK, &page))
        }
        Err(e @ WebError::Body { .. }) => Ok(dead_link(&state, session.as_ref(), &e)),
        Err(e) => Err(e),
    }
}

fn dead_link(state: &AppState, session: Option<&Session>, e: &WebError) -> Response {
    let mut page = VerifyPage::new(&state.site, session, "This link does not work");
    page.error = Some(e.message());
    page.resend = true;
    pages::render_secret(e.status(), &page)
}

/// The confirm form.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    #[serde(default)]
    token: String,
}

/// `POST /verify-email`: confirms the address and says so.
pub(crate) async fn verify_submit(
    State(state): State<AppState>,
    mut session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<ConfirmForm>,
) -> Result<Response, WebError> {
    match verify(&state, ip, &form.token).await {
        Ok(account) => {
            let mut page =
                VerifyPage::new(&state.site, session.as_ref(), "Email address confirmed");
            let address = account.email.as_ref().map_or("", EmailAddress::as_str);
            page.notice = Some(if session.is_some() {
                format!("Your email address {address} is confirmed.")
            } else {
                format!("Your email address {address} is confirmed. You can sign in now.")
            });
            refresh_session(session.as_mut(), &account).await?;
            Ok(pages::render(StatusCode::OK, &page))
        }
        Err(e @ WebError::Body { .. }) => Ok(dead_link(&state, session.as_ref(), &e)),
        Err(e) => Err(e),
    }
}

/// The form that asks for a new link.
#[derive(Debug, Deserialize)]
pub(crate) struct ResendForm {
    #[serde(default)]
    login: String,
}

/// `POST /verify-email/resend`: the same answer whatever the login names.
pub(crate) async fn resend_submit(
    State(state): State<AppState>,
    session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<ResendForm>,
) -> Response {
    let mut page = VerifyPage::new(&state.site, session.as_ref(), "Confirm your email address");
    let result = if form.login.trim().is_empty() {
        Err(WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_login",
            "Enter your username or email address.",
        ))
    } else {
        resend(&state, ip, form.login.clone()).await
    };
    // Signed out, the form stays on the page (the signed-in form would resend for the session's
    // account instead).
    page.signed_in = false;
    page.resend = true;
    page.login = form.login;
    match result {
        Ok(()) => {
            page.notice = Some(RESENT.to_owned());
            pages::render(StatusCode::OK, &page)
        }
        Err(e) => {
            page.error = Some(e.message());
            let mut response = pages::render(e.status(), &page);
            pages::add_retry_after(&mut response, &e);
            response
        }
    }
}

#[derive(Template)]
#[template(path = "email.html")]
struct EmailPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: String,
    address: Option<String>,
    verified: bool,
    notice: Option<&'static str>,
    error: FormError,
    /// The new address as typed, shown again after a refusal.
    typed: String,
}

fn email_page(
    state: &AppState,
    session: &Session,
    account: &Account,
    status: StatusCode,
    notice: Option<&'static str>,
    error: FormError,
    typed: String,
) -> Response {
    pages::render(
        status,
        &EmailPage {
            site: &state.site,
            nav: Some(pages::nav(session)),
            csrf: session.csrf_token(),
            address: account.email.as_ref().map(|e| e.as_str().to_owned()),
            verified: account.email_verified,
            notice,
            error,
            typed,
        },
    )
}

/// `?notice=` on `/account/email`.
#[derive(Debug, Deserialize)]
pub(crate) struct EmailQuery {
    notice: Option<String>,
}

fn notice_text(notice: &str) -> Option<&'static str> {
    Some(match notice {
        "changed" => {
            "Address changed. We mailed a link to the new address: follow it to confirm it."
        }
        "sent" => "We mailed a new link to your address.",
        "wait" => {
            "A link was sent to your address a moment ago. Check your mail, or try again in a few minutes."
        }
        _ => return None,
    })
}

async fn account_of(state: &AppState, session: &Session) -> Result<Account, WebError> {
    Ok(state
        .accounts
        .store()
        .by_id(session.user_id())
        .await?
        .ok_or(AccountsError::UnknownAccount)?)
}

/// `GET /account/email`: the address, whether it is confirmed, and the form that changes it.
pub(crate) async fn email_page_get(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<EmailQuery>,
) -> Result<Response, WebError> {
    let session = match pages::personal(session, "/account/email") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let account = account_of(&state, &session).await?;
    let notice = q.notice.as_deref().and_then(notice_text);
    Ok(email_page(
        &state,
        &session,
        &account,
        StatusCode::OK,
        notice,
        FormError::default(),
        String::new(),
    ))
}

/// The form that changes the address.
#[derive(Debug, Deserialize)]
pub(crate) struct EmailForm {
    #[serde(default)]
    email: String,
    current_password: Password,
}

fn email_field(e: &WebError) -> Option<&'static str> {
    match e {
        WebError::Accounts(AccountsError::WrongPassword) => Some("current_password"),
        WebError::Accounts(AccountsError::InvalidEmail(_))
        | WebError::Body {
            code: "invalid_email",
            ..
        } => Some("email"),
        _ => None,
    }
}

/// `POST /account/email`.
pub(crate) async fn email_submit(
    State(state): State<AppState>,
    session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    form: Result<WebForm<EmailForm>, WebError>,
) -> Result<Response, WebError> {
    let Some(mut session) = session else {
        return Ok(pages::login_redirect("/account/email", None));
    };
    let WebForm(form) = form?;
    match change(
        &state,
        &mut session,
        ip,
        &form.email,
        &form.current_password,
    )
    .await
    {
        Ok(_) => Ok(Redirect::to("/account/email?notice=changed").into_response()),
        Err(e) if email_field(&e).is_some() || e.retry_after().is_some() => {
            let account = account_of(&state, &session).await?;
            let mut response = email_page(
                &state,
                &session,
                &account,
                e.status(),
                None,
                FormError::of(&e, email_field),
                form.email,
            );
            pages::add_retry_after(&mut response, &e);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

/// `POST /account/email/resend`: the signed-in user's link again (within the per-account limit
/// on mails, which here may be said: the user knows their own account exists).
pub(crate) async fn resend_own(
    State(state): State<AppState>,
    session: Option<Session>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(pages::login_redirect("/account/email", None));
    };
    let account = account_of(&state, &session).await?;
    if account.email.is_none() || account.email_verified {
        return Ok(Redirect::to("/account/email").into_response());
    }
    if !state.accounts.may_mail_reset(&account).await {
        return Ok(Redirect::to("/account/email?notice=wait").into_response());
    }
    send(&state, &account).await;
    Ok(Redirect::to("/account/email?notice=sent").into_response())
}
