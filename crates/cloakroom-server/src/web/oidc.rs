//! Signing in through OpenID providers: `GET /oidc/{id}/login`, `GET /oidc/{id}/callback`
//! (pages) and `POST /oidc/{id}/backchannel-logout` (for the provider). The protocol is in
//! [`crate::oidc`]; this is what the server does with its outcome.
//!
//! # Accounts
//!
//! A verified sign-in names `(issuer, subject)`. The account linked to it signs in. With none,
//! and `oidc_signup = true` (the default), an account is made and linked in one step (so a
//! race of two first sign-ins makes one account): its username from the provider's
//! `preferred_username`, else the address's local part, else its name — cut to the username
//! rules and made unique with a number —, its address only if the provider says it is
//! verified, and a random password nobody knows. With `oidc_signup = false` the sign-in is
//! refused with a page that says so. A disabled account is refused as at a password login, and
//! so is one without a verified address where `require_verified_email` asks for one. New
//! accounts are made only where sign-up is open (`signup = "open"` as well as `oidc_signup`),
//! counted against the same per-network limit as the sign-up form: a provider is no way
//! around a closed or invitation-only server.
//!
//! The session records the provider's issuer, the subject and its `sid`, so that a
//! back-channel logout ends exactly the sessions that sign-in made.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::Auth;
use cloakroom_core::AuthMethod;
use cloakroom_core::accounts::{Account, AccountError, LinkedIdentity, Username};
use cloakroom_core::mail::EmailAddress;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts::{self, AccountsError, session_keys};
use crate::oidc::flow::{self, CallbackQuery, Claims, FlowError, SignedIn};
use crate::oidc::logout::{self, LogoutError};
use crate::oidc::{Oidc, Provider};
use crate::state::AppState;
use crate::web::error::{WebError, WebForm, WebQuery};
use crate::web::redirect::ReturnTo;
use crate::web::{ClientAddr, flows};
use crate::{events, metrics};

/// The pre-login cookie's name: `__Host-`, the session cookie's base name, `-oidc`. Always
/// host-only (it is `Secure`, `Path=/`, without `Domain`), whatever the session cookie's scope:
/// a sibling subdomain cannot plant a cookie of this name beside it.
pub(crate) fn prelogin_cookie_name(session_cookie: &str) -> String {
    format!("{}{session_cookie}-oidc", cloakroom_axum::HOST_PREFIX)
}

fn provider(oidc: &Oidc, id: Result<Path<String>, PathRejection>) -> Result<&Provider, WebError> {
    id.ok()
        .and_then(|Path(id)| oidc.provider(&id))
        .ok_or(WebError::NotFound("No such sign-in provider."))
}

/// `<public_url>/oidc/{id}/callback`, the `redirect_uri` registered at the provider.
fn redirect_uri(state: &AppState, id: &str) -> String {
    format!(
        "{}/oidc/{id}/callback",
        state.settings.public_origin.as_str().trim_end_matches('/')
    )
}

/// A pre-login cookie (an OpenID or a passkey sign-in's, see `oidc::prelogin`) set to `value`
/// for `max_age` seconds; an empty value and 0 remove it.
pub(crate) fn set_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

/// The stable code of a refused sign-in, for its page and its security event.
fn flow_code(e: &FlowError) -> &'static str {
    match e {
        FlowError::Refused(_) => "oidc_refused",
        FlowError::Discovery(_) | FlowError::Exchange(_) => "oidc_unavailable",
        FlowError::IdToken(_) => "oidc_invalid_answer",
        _ => "oidc_state",
    }
}

fn flow_error(provider: &Provider, e: &FlowError) -> WebError {
    let name = &provider.config.display_name;
    let (status, code, message) = match e {
        FlowError::Refused(_) => (
            StatusCode::FORBIDDEN,
            "oidc_refused",
            format!("{name} did not sign you in. Try again, or sign in another way."),
        ),
        // 4xx, as every refusal of a sign-in (a page for a person; never a 5xx that monitoring
        // would blame on this server): 424, the sign-in depended on the provider, which failed.
        FlowError::Discovery(_) | FlowError::Exchange(_) => (
            StatusCode::FAILED_DEPENDENCY,
            "oidc_unavailable",
            format!("{name} cannot be reached right now. Try again in a moment."),
        ),
        FlowError::IdToken(_) => (
            StatusCode::UNAUTHORIZED,
            "oidc_invalid_answer",
            format!("The answer from {name} could not be verified, so you were not signed in. Try again."),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            "oidc_state",
            "This sign-in cannot be finished: it was started in another browser or more than 10 minutes ago, or it was finished already. Start again.".to_owned(),
        ),
    };
    WebError::refused(status, code, &message)
}

/// `?next=` (or `?rd=`) on the login route.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    rd: Option<String>,
}

/// `GET /oidc/{id}/login`: to the provider, with `state`, `nonce` and a PKCE challenge whose
/// verifier waits in the pre-login cookie.
pub(crate) async fn login(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    WebQuery(q): WebQuery<LoginQuery>,
) -> Result<Response, WebError> {
    let provider = provider(&state.oidc, id)?;
    let next = ReturnTo::parse(
        q.rd.as_deref().or(q.next.as_deref()),
        &state.settings.redirect_hosts,
    );
    to_provider(&state, provider, next.as_str().to_owned(), None).await
}

/// To the provider, with a fresh pre-login cookie (see `oidc::flow::start`).
async fn to_provider(
    state: &AppState,
    provider: &Provider,
    next: String,
    link: Option<String>,
) -> Result<Response, WebError> {
    let redirect = redirect_uri(state, &provider.config.id);
    let (url, cookie) = flow::start(
        &state.oidc,
        provider,
        &redirect,
        next,
        link,
        state.clock.now(),
    )
    .await
    .map_err(|e| {
        tracing::error!(provider = %provider.config.id, error = %crate::error_chain::chain(&e), "starting an OpenID sign-in");
        flow_error(provider, &e)
    })?;
    let mut response = Redirect::to(&url).into_response();
    let name = prelogin_cookie_name(&state.settings.cookie_name);
    let max_age = crate::oidc::prelogin::LIFETIME.as_secs();
    if let Some(v) = set_cookie(&name, &cookie, max_age) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The pre-login cookie's value: read as the session cookie is (a sibling site's non-ASCII
/// cookie in the same header does not hide it), and none at all when presented twice.
pub(crate) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cloakroom_axum::find_cookie(headers, name)
        .ok()
        .flatten()
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// `GET /oidc/{id}/callback`: checks what came back (see `oidc::flow`), then signs in to the
/// linked account, or a new one. The pre-login cookie goes, whatever the outcome.
pub(crate) async fn callback(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    WebQuery(q): WebQuery<CallbackQuery>,
) -> Result<Response, WebError> {
    let provider = provider(&state.oidc, id)?;
    let name = prelogin_cookie_name(&state.settings.cookie_name);
    let redirect = redirect_uri(&state, &provider.config.id);
    let outcome = flow::finish(
        &state.oidc,
        provider,
        &state.sessions,
        &*state.clock,
        &redirect,
        cookie_value(&headers, &name),
        q,
    )
    .await;
    let result = match outcome {
        Ok(signed_in) if signed_in.link.is_some() => connect(&state, &auth, provider, &signed_in)
            .await
            .map(|()| Redirect::to(&signed_in.next).into_response()),
        Ok(signed_in) => sign_in(&state, &auth, provider, ip, &signed_in)
            .await
            .map(|()| Redirect::to(&signed_in.next).into_response()),
        Err(FlowError::Store(e)) => Err(WebError::Store(e)),
        Err(e) => {
            metrics::login("oidc_refused");
            events::oidc_refused(&provider.config.id, ip, flow_code(&e));
            if e.is_upstream() || matches!(e, FlowError::IdToken(_)) {
                tracing::error!(provider = %provider.config.id, error = %crate::error_chain::chain(&e), "an OpenID sign-in failed");
            } else {
                tracing::warn!(provider = %provider.config.id, error = %e, "an OpenID sign-in was refused");
            }
            Err(flow_error(provider, &e))
        }
    };
    let mut response = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Some(v) = set_cookie(&name, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// Where connecting a provider ends.
const CONNECTED: &str = "/account/connections?notice=connected";

/// How recent a sign-in must be to connect a provider without typing the password again.
const FRESH_SIGN_IN: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The form that starts connecting a provider.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectForm {
    provider: String,
    #[serde(default)]
    password: Option<crate::accounts::passwords::Password>,
}

/// `POST /account/connections/connect`: to the provider, to connect it to this account. A
/// form with the CSRF token (so no other site can start it), and the password again unless
/// the user signed in during the last [`FRESH_SIGN_IN`] — a connected provider is a way into
/// the account, and a session left open must not be enough to add one.
pub(crate) async fn connect_start(
    State(state): State<AppState>,
    session: Option<cloakroom_axum::Session>,
    ClientAddr(ip): ClientAddr,
    form: Result<WebForm<ConnectForm>, WebError>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(crate::web::pages::login_redirect(
            "/account/connections",
            None,
        ));
    };
    let WebForm(form) = form?;
    let provider = state
        .oidc
        .provider(&form.provider)
        .ok_or(WebError::NotFound("No such sign-in provider."))?;
    let fresh = state.clock.now().duration_since(session.record().auth_time) <= FRESH_SIGN_IN;
    if !fresh
        && let Some(refused) = password_again(
            &state,
            &session,
            ip,
            form.password.as_ref(),
            "Enter your password to connect another account: you signed in more than 5 minutes ago.",
        )
        .await?
    {
        return Ok(refused);
    }
    to_provider(
        &state,
        provider,
        CONNECTED.to_owned(),
        Some(session.user_id().as_str().to_owned()),
    )
    .await
}

/// Tells the account's verified address that a provider can now sign in to it: a way into the
/// account was added, and its owner should hear of it if it was not them. A failure to queue
/// is logged; the connection stands.
async fn notify_connected(state: &AppState, account: &Account, provider: &Provider) {
    let Some(to) = account.verified_email() else {
        return;
    };
    let notice = crate::mail::Mail::IdentityConnected {
        to: to.clone(),
        username: account.username.as_str().to_owned(),
        provider: provider.config.display_name.clone(),
    };
    if let Err(e) = state.mailer.enqueue(notice).await {
        tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the sign-in-method notice");
    }
}

fn taken_elsewhere(provider: &Provider) -> WebError {
    WebError::refused(
        StatusCode::CONFLICT,
        "identity_taken",
        &format!(
            "This {} account is already connected to another account here.",
            provider.config.display_name
        ),
    )
}

/// Links the sign-in's identity to the signed-in account that started the connection (and
/// only if it is still that account's browser).
async fn connect(
    state: &AppState,
    auth: &Auth,
    provider: &Provider,
    signed_in: &SignedIn,
) -> Result<(), WebError> {
    let session = auth.session().await?;
    let Some(session) = session.filter(|s| Some(s.user_id().as_str()) == signed_in.link.as_deref())
    else {
        return Err(WebError::refused(
            StatusCode::BAD_REQUEST,
            "oidc_state",
            "This connection was started by another account, or you signed out meanwhile. Sign in and start again.",
        ));
    };
    let claims = &signed_in.claims;
    let (issuer, subject) = (claims.issuer().as_str(), claims.subject().as_str());
    let store = state.accounts.store();
    match store.by_identity(issuer, subject).await? {
        Some(linked) if &linked.id == session.user_id() => return Ok(()),
        Some(_) => return Err(taken_elsewhere(provider)),
        None => {}
    }
    let identity = LinkedIdentity {
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        account: session.user_id().clone(),
        linked_at: state.clock.now(),
    };
    match store.link_identity(&identity).await {
        Ok(()) => {
            tracing::info!(user = %flows::username(&session), provider = %provider.config.id, "OpenID identity connected");
            if let Some(account) = store.by_id(session.user_id()).await? {
                notify_connected(state, &account, provider).await;
            }
            Ok(())
        }
        Err(AccountError::IdentityTaken) => Err(taken_elsewhere(provider)),
        Err(e) => Err(AccountsError::from(e).into()),
    }
}

/// With `oidc_link_by_email`, the one local account whose verified address is the one the
/// provider vouches for.
async fn account_by_verified_email(
    state: &AppState,
    claims: &Claims,
) -> Result<Option<Account>, WebError> {
    if !state.settings.oidc_link_by_email || claims.email_verified() != Some(true) {
        return Ok(None);
    }
    let Some(address) = claims
        .email()
        .and_then(|e| EmailAddress::parse(e.as_str()).ok())
    else {
        return Ok(None);
    };
    let mut found: Vec<Account> = state
        .accounts
        .store()
        .by_email(&address)
        .await?
        .into_iter()
        .filter(|a| a.verified_email() == Some(&address))
        .collect();
    // Two accounts with one address: linking either would be a guess.
    Ok((found.len() == 1).then(|| found.remove(0)))
}

/// The username a new account gets: from the provider's claims, within the rules, made
/// unique by the caller.
fn username_base(claims: &Claims) -> String {
    let email_local = claims
        .email()
        .and_then(|e| e.as_str().split_once('@').map(|(l, _)| l.to_owned()));
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().replace(' ', "."));
    let candidates = claims
        .preferred_username()
        .map(|u| u.as_str().to_owned())
        .into_iter()
        .chain(email_local)
        .chain(name);
    for candidate in candidates {
        let cleaned: String = candidate
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .take(28)
            .collect();
        if Username::parse(&cleaned).is_ok() {
            return cleaned;
        }
    }
    "user".to_owned()
}

/// The account a racing sign-in linked the identity to, after this one found none.
async fn linked_meanwhile(state: &AppState, claims: &Claims) -> Result<Account, WebError> {
    state
        .accounts
        .store()
        .by_identity(claims.issuer().as_str(), claims.subject().as_str())
        .await?
        .ok_or(WebError::Accounts(AccountsError::UnknownAccount))
}

/// The account linked to the sign-in, or a new one (see the module docs).
async fn account_for(
    state: &AppState,
    provider: &Provider,
    ip: Option<std::net::IpAddr>,
    claims: &Claims,
) -> Result<Account, WebError> {
    let store = state.accounts.store();
    let issuer = claims.issuer().as_str();
    let subject = claims.subject().as_str();
    if let Some(account) = store.by_identity(issuer, subject).await? {
        return Ok(account);
    }
    if let Some(account) = account_by_verified_email(state, claims).await? {
        let identity = LinkedIdentity {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            account: account.id.clone(),
            linked_at: state.clock.now(),
        };
        match store.link_identity(&identity).await {
            Ok(()) => {
                tracing::info!(user = %account.username, provider = %provider.config.id, "OpenID identity linked by verified email");
                notify_connected(state, &account, provider).await;
                return Ok(account);
            }
            // A sign-in racing this one linked it first: to whichever account it chose.
            Err(AccountError::IdentityTaken) => return linked_meanwhile(state, claims).await,
            Err(e) => return Err(AccountsError::from(e).into()),
        }
    }
    // A provider is no way around a closed or invitation-only sign-up.
    if !state.settings.oidc_signup || state.settings.signup != crate::config::SignupMode::Open {
        return Err(WebError::refused(
            StatusCode::FORBIDDEN,
            "oidc_signup_closed",
            &format!(
                "No account here is linked to this {} account, and new accounts cannot be made this way. Sign in with your password, or ask an administrator.",
                provider.config.display_name
            ),
        ));
    }
    state.accounts.throttle_signup(ip).await?;
    let now = state.clock.now();
    let hash = state.accounts.hash_unknown_password().await?;
    let email = claims
        .email()
        .filter(|_| claims.email_verified() == Some(true))
        .and_then(|e| EmailAddress::parse(e.as_str()).ok());
    let base = username_base(claims);
    for attempt in 0..12u32 {
        let name = match attempt {
            0 => base.clone(),
            1..=8 => format!("{base}-{}", attempt + 1),
            _ => format!(
                "{base}-{}",
                &cloakroom_core::SessionHandle::generate().as_str()[..6]
            ),
        };
        let Ok(username) = Username::parse(&name) else {
            continue;
        };
        let mut account = accounts::new_account(username, hash.clone(), now);
        account.email = email.clone();
        account.email_verified = email.is_some();
        account.display_name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().chars().take(100).collect());
        let identity = LinkedIdentity {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            account: account.id.clone(),
            linked_at: now,
        };
        match store.create_with_identity(&account, &identity).await {
            Ok(()) => {
                metrics::signup("oidc");
                tracing::info!(user = %account.username, provider = %provider.config.id, "signup through an OpenID provider");
                return Ok(account);
            }
            Err(AccountError::UsernameTaken) => {}
            // A first sign-in racing this one linked the identity: use its account.
            Err(AccountError::IdentityTaken) => return linked_meanwhile(state, claims).await,
            Err(e) => return Err(AccountsError::from(e).into()),
        }
    }
    Err(WebError::refused(
        StatusCode::CONFLICT,
        "username_taken",
        "No free username could be found for this account. Ask an administrator.",
    ))
}

/// Signs in to the sign-in's account with a new session that records the provider.
async fn sign_in(
    state: &AppState,
    auth: &Auth,
    provider: &Provider,
    ip: Option<std::net::IpAddr>,
    signed_in: &SignedIn,
) -> Result<(), WebError> {
    let claims = &signed_in.claims;
    let account = account_for(state, provider, ip, claims).await?;
    if account.disabled {
        metrics::login("disabled");
        events::login_failed(account.username.as_str(), ip, "account_disabled");
        return Err(AccountsError::AccountDisabled.into());
    }
    if state.settings.require_verified_email && account.verified_email().is_none() {
        metrics::login("email_not_verified");
        events::login_failed(account.username.as_str(), ip, "email_not_verified");
        return Err(AccountsError::EmailNotVerified.into());
    }
    let mut data = accounts::session_data(&account);
    // Small values: these inserts stay within the data limit.
    let _ = data.insert(session_keys::OIDC_ISSUER, claims.issuer().as_str());
    let _ = data.insert(session_keys::OIDC_SUBJECT, claims.subject().as_str());
    if let Some(sid) = &signed_in.sid {
        let _ = data.insert(session_keys::OIDC_SID, sid);
    }
    let method = AuthMethod::new(format!("oidc:{}", provider.config.id))
        .unwrap_or_else(|_| AuthMethod::password());
    let session = auth
        .login(auth.new_session(account.id.clone(), method).data(data))
        .await?;
    if state.accounts.is_disabled(&account.id).await? {
        let _ = session.logout().await;
        return Err(AccountsError::AccountDisabled.into());
    }
    metrics::login("success");
    events::login(account.username.as_str(), session.handle().as_str(), ip);
    Ok(())
}

/// The form a provider posts to the back-channel logout endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LogoutForm {
    /// The logout token: a JWT signed by the provider.
    pub(crate) logout_token: String,
}

/// Back-channel logout (OpenID Connect Back-Channel Logout 1.0), for the provider: the user
/// signed out there, so every session that sign-in made here ends — on every instance, at the
/// next request.
#[utoipa::path(post, path = "/oidc/{id}/backchannel-logout", tag = "oidc",
    params(("id" = String, Path, description = "The provider's id, as configured")),
    request_body(content = LogoutForm, content_type = "application/x-www-form-urlencoded"),
    security(()),
    responses((status = 200, description = "Accepted: the sessions of that sign-in have ended (also when there were none)")))]
pub(crate) async fn backchannel_logout(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    id: Result<Path<String>, PathRejection>,
    WebForm(form): WebForm<LogoutForm>,
) -> Result<Response, WebError> {
    let provider = provider(&state.oidc, id)?;
    let now = state.clock.now();
    let logout = logout::verify(provider, &state.sessions, &form.logout_token, now)
        .await
        .map_err(|e| match e {
            LogoutError::Store(s) => WebError::Store(s),
            LogoutError::Discovery(d) => {
                tracing::error!(provider = %provider.config.id, error = %crate::error_chain::chain(&d), "verifying a logout token");
                // Back-Channel Logout 1.0: a logout that failed is answered 400.
                WebError::refused(
                    StatusCode::BAD_REQUEST,
                    "oidc_unavailable",
                    "The provider's keys cannot be fetched right now.",
                )
            }
            other => {
                events::oidc_refused(&provider.config.id, ip, "invalid_logout_token");
                tracing::warn!(provider = %provider.config.id, error = %other, "a logout token was refused");
                WebError::refused(
                    StatusCode::BAD_REQUEST,
                    "invalid_logout_token",
                    &format!("The logout token was refused: {other}."),
                )
            }
        })?;
    let ended = end_sessions(&state, &logout).await?;
    metrics::revoked("oidc_backchannel_logout", ended);
    tracing::info!(provider = %provider.config.id, ended, "back-channel logout");
    Ok((
        StatusCode::OK,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response())
}

/// Ends the sessions a logout token names: those of the linked account signed in through this
/// issuer — with this `sid`, when it names one.
async fn end_sessions(state: &AppState, logout: &logout::Logout) -> Result<u64, WebError> {
    let Some(subject) = &logout.subject else {
        // Without `sub` the account is unknown: sessions are not indexed by `sid`.
        return Err(WebError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_logout_token",
            "A logout token without sub is not supported.",
        ));
    };
    let Some(account) = state
        .accounts
        .store()
        .by_identity(&logout.issuer, subject)
        .await?
    else {
        return Ok(0);
    };
    let mut ended = 0;
    for session in state.sessions.list_for_user(&account.id).await? {
        let data = &session.data;
        let issuer = data.get::<String>(session_keys::OIDC_ISSUER).ok().flatten();
        let sub = data
            .get::<String>(session_keys::OIDC_SUBJECT)
            .ok()
            .flatten();
        let sid = data.get::<String>(session_keys::OIDC_SID).ok().flatten();
        // This identity's sign-ins only (an account may have two at one provider), and with
        // a `sid`, only that provider session's.
        let same_sign_in = issuer.as_deref() == Some(logout.issuer.as_str())
            && sub.as_deref() == Some(subject.as_str())
            && logout.sid.as_ref().is_none_or(|s| sid.as_ref() == Some(s));
        if same_sign_in && state.sessions.revoke(&session.id).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

// --- "Sign-in methods": connected providers ------------------------------------------------

struct Connection {
    name: String,
    issuer: String,
    subject: String,
    linked_at: String,
    linked_words: String,
}

#[derive(askama::Template)]
#[template(path = "connections.html")]
struct ConnectionsPage<'a> {
    site: &'a crate::web::site::Site,
    nav: Option<crate::web::pages::Nav>,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
    connected: Vec<Connection>,
    /// Only one is connected: disconnecting it needs the password, so the account keeps a
    /// way to sign in.
    last: bool,
    available: Vec<(String, String)>,
}

/// `?notice=` on the connections page.
#[derive(Debug, Deserialize)]
pub(crate) struct ConnectionsQuery {
    notice: Option<String>,
}

async fn connections_page_for(
    state: &AppState,
    session: &cloakroom_axum::Session,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<Response, WebError> {
    let identities = state.accounts.store().identities(session.user_id()).await?;
    let now = state.clock.now();
    let connected: Vec<Connection> = identities
        .iter()
        .map(|i| Connection {
            name: state
                .oidc
                .by_issuer(&i.issuer)
                .map_or_else(|| i.issuer.clone(), |p| p.config.display_name.clone()),
            issuer: i.issuer.clone(),
            subject: i.subject.clone(),
            linked_at: crate::web::device::rfc3339(i.linked_at),
            linked_words: crate::web::when::at(
                i.linked_at,
                now,
                crate::web::when::Style::INTERNATIONAL,
            ),
        })
        .collect();
    let available = state
        .oidc
        .buttons()
        .into_iter()
        .filter(|(id, _)| {
            state.oidc.provider(id).is_some_and(|p| {
                !identities
                    .iter()
                    .any(|i| url::Url::parse(&i.issuer).ok().as_ref() == Some(&p.config.issuer))
            })
        })
        .collect();
    Ok(crate::web::pages::render(
        status,
        &ConnectionsPage {
            site: &state.site,
            nav: Some(crate::web::pages::nav(session)),
            csrf: session.csrf_token(),
            notice,
            error,
            last: connected.len() == 1,
            connected,
            available,
        },
    ))
}

/// `GET /account/connections`: the providers connected to the account, a "Disconnect" for
/// each and a "Connect" for the others.
pub(crate) async fn connections_page(
    State(state): State<AppState>,
    session: Result<cloakroom_axum::Session, cloakroom_axum::Rejection>,
    WebQuery(q): WebQuery<ConnectionsQuery>,
) -> Result<Response, WebError> {
    let session = match crate::web::pages::personal(session, "/account/connections") {
        crate::web::pages::Visitor::SignedIn(s) => s,
        crate::web::pages::Visitor::Away(away) => return Ok(away),
    };
    let notice = match q.notice.as_deref() {
        Some("connected") => Some("Connected. You can now sign in with it."),
        Some("disconnected") => Some("Disconnected."),
        _ => None,
    };
    connections_page_for(&state, &session, StatusCode::OK, notice, None).await
}

/// Checks the password typed again on "Sign-in methods" (throttled like a login). `None`
/// when it is right; else the page again with `wrong` (or the throttle's message) above it.
async fn password_again(
    state: &AppState,
    session: &cloakroom_axum::Session,
    ip: Option<std::net::IpAddr>,
    password: Option<&crate::accounts::passwords::Password>,
    wrong: &str,
) -> Result<Option<Response>, WebError> {
    let checked = match password {
        Some(p) => state
            .accounts
            .reauthenticate(session.user_id(), ip, p)
            .await
            .map(drop)
            .map_err(WebError::from),
        None => Err(AccountsError::WrongPassword.into()),
    };
    let Err(e) = checked else {
        return Ok(None);
    };
    let message = match e {
        WebError::Accounts(AccountsError::WrongPassword) => wrong.to_owned(),
        ref other => other.message(),
    };
    let mut response =
        connections_page_for(state, session, e.status(), None, Some(message)).await?;
    crate::web::pages::add_retry_after(&mut response, &e);
    Ok(Some(response))
}

/// The disconnect form.
#[derive(Debug, Deserialize)]
pub(crate) struct DisconnectForm {
    issuer: String,
    subject: String,
    password: Option<crate::accounts::passwords::Password>,
}

/// `POST /account/connections/disconnect`: unlinks one identity. The last one only with the
/// password (checked and throttled like a login), so that the account never loses its last
/// way to sign in.
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    session: Option<cloakroom_axum::Session>,
    ClientAddr(ip): ClientAddr,
    form: Result<WebForm<DisconnectForm>, WebError>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(crate::web::pages::login_redirect(
            "/account/connections",
            None,
        ));
    };
    let WebForm(form) = form?;
    let store = state.accounts.store();
    let identities = store.identities(session.user_id()).await?;
    if identities.len() <= 1
        && let Some(refused) = password_again(
            &state,
            &session,
            ip,
            form.password.as_ref(),
            "Your password is wrong. This is your last connected account: without your password you could not sign in any more.",
        )
        .await?
    {
        return Ok(refused);
    }
    store
        .unlink_identity(session.user_id(), &form.issuer, &form.subject)
        .await?;
    tracing::info!(user = %flows::username(&session), issuer = %form.issuer, "OpenID identity disconnected");
    Ok(Redirect::to("/account/connections?notice=disconnected").into_response())
}
