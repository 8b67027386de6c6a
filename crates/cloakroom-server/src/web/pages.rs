//! Server-rendered HTML pages: usable without JavaScript, every form carrying its CSRF token,
//! errors shown inline next to the form that caused them.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Session};
use cloakroom_core::SessionHandle;
use cloakroom_core::accounts::InviteCode;
use serde::Deserialize;

use crate::accounts::passwords::Password;
use crate::accounts::{AccountsError, Credentials};
use crate::config::SignupMode;
use crate::state::AppState;
use crate::web::device::{label, relative, rfc3339};
use crate::web::error::{WebError, WebForm};
use crate::web::flows;
use crate::web::redirect::ReturnTo;
use crate::web::{CLEAR_SITE_DATA, ClientAddr};

/// What the page header shows for a signed-in user.
#[derive(Debug)]
pub(crate) struct Nav {
    pub(crate) username: String,
    pub(crate) csrf: String,
}

pub(crate) fn nav(session: &Session) -> Nav {
    Nav {
        username: flows::username(session),
        csrf: session.csrf_token(),
    }
}

pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
        }
    }
}

/// An error page with the user's nav, for refusals outside a form.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: Option<Nav>,
    title: String,
    message: String,
}

/// Renders an error as a page: the HTML format of [`WebError::render`].
pub(crate) fn error_page(status: StatusCode, message: String) -> Response {
    let title = status.canonical_reason().unwrap_or("Error").to_owned();
    render(
        status,
        &ErrorPage {
            nav: None,
            title,
            message,
        },
    )
}

fn login_redirect(next: &str) -> Response {
    let target = format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    Redirect::to(&target).into_response()
}

/// `?next=` (a local path) or `?rd=` (an absolute URL on an allowed host, from forward auth)
/// on the login and sign-up pages.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
    rd: Option<String>,
}

impl NextQuery {
    fn target(&self, state: &AppState) -> ReturnTo {
        ReturnTo::parse(
            self.rd.as_deref().or(self.next.as_deref()),
            &state.settings.redirect_hosts,
        )
    }
}

/// What the login and sign-up forms show: the same fields, two pages.
struct EntryForm {
    error: Option<String>,
    username: String,
    next: String,
    csrf: Option<String>,
    /// Sign-up only: a well-formed invitation code from the link, carried in a hidden field.
    invite: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    form: EntryForm,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    nav: Option<Nav>,
    form: EntryForm,
    /// Sign-up is closed: say so instead of showing the form.
    closed: bool,
    /// Sign-up needs an invitation: carry the code, or ask for it.
    by_invite: bool,
}

#[derive(Clone, Copy)]
enum Entry {
    Login,
    Signup,
}

fn entry_page(entry: Entry, state: &AppState, status: StatusCode, form: EntryForm) -> Response {
    match entry {
        Entry::Login => render(status, &LoginPage { nav: None, form }),
        Entry::Signup => render(
            status,
            &SignupPage {
                nav: None,
                form,
                closed: false,
                by_invite: state.settings.signup == SignupMode::Invite,
            },
        ),
    }
}

/// `?invite=` on the sign-up page (the link `cloakroom user invite` prints).
#[derive(Debug, Deserialize)]
pub(crate) struct InviteQuery {
    invite: Option<String>,
}

/// The code to carry into the form: only one that could be valid, re-encoded from its parsed
/// form, so whatever else was in the link never reaches the page. A malformed one is dropped
/// and the form asks for the code instead.
fn carried_invite(text: Option<&str>) -> Option<String> {
    text.and_then(|t| InviteCode::parse(t.trim()).ok())
        .map(|code| code.expose())
}

/// `GET /login` and `GET /signup`: the form, or straight on for a signed-in user.
fn entry_form(
    entry: Entry,
    state: &AppState,
    session: Option<&Session>,
    q: &NextQuery,
    invite: Option<String>,
) -> Response {
    let next = q.target(state);
    if session.is_some() {
        return Redirect::to(next.as_str()).into_response();
    }
    let form = EntryForm {
        error: None,
        username: String::new(),
        next: next.as_str().to_owned(),
        csrf: None,
        invite,
    };
    entry_page(entry, state, StatusCode::OK, form)
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(q): Query<NextQuery>,
) -> Response {
    entry_form(Entry::Login, &state, session.as_ref(), &q, None)
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    username: String,
    password: Password,
    remember: Option<String>,
    next: Option<String>,
}

/// `POST /login`.
pub(crate) async fn login_submit(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<LoginForm>,
) -> Response {
    let next = ReturnTo::parse(form.next.as_deref(), &state.settings.redirect_hosts);
    let creds = Credentials {
        username: form.username,
        password: form.password,
    };
    match flows::login(&state, &auth, ip, &creds, form.remember.is_some()).await {
        Ok(_) => Redirect::to(next.as_str()).into_response(),
        Err(e) => {
            let shown = EntryForm {
                error: Some(e.message()),
                username: creds.username,
                next: next.as_str().to_owned(),
                csrf: csrf_of(&auth).await,
                invite: None,
            };
            let mut response = entry_page(Entry::Login, &state, e.status(), shown);
            add_retry_after(&mut response, &e);
            response
        }
    }
}

async fn csrf_of(auth: &Auth) -> Option<String> {
    auth.session().await.ok().flatten().map(|s| s.csrf_token())
}

fn add_retry_after(response: &mut Response, e: &WebError) {
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
}

/// `GET /signup`.
pub(crate) async fn signup_page(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(q): Query<NextQuery>,
    Query(invite): Query<InviteQuery>,
) -> Response {
    if state.settings.signup == SignupMode::Closed && session.is_none() {
        return signup_closed(&q.target(&state));
    }
    let invite = carried_invite(invite.invite.as_deref());
    entry_form(Entry::Signup, &state, session.as_ref(), &q, invite)
}

/// The sign-up page of a server whose sign-up is closed: 403, no form.
fn signup_closed(next: &ReturnTo) -> Response {
    let form = EntryForm {
        error: None,
        username: String::new(),
        next: next.as_str().to_owned(),
        csrf: None,
        invite: None,
    };
    let page = SignupPage {
        nav: None,
        form,
        closed: true,
        by_invite: false,
    };
    render(StatusCode::FORBIDDEN, &page)
}

/// The sign-up form.
#[derive(Debug, Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    username: String,
    password: Password,
    confirm: Password,
    next: Option<String>,
    /// The invitation code (hidden, from the link, or typed).
    invite: Option<String>,
}

/// `POST /signup`.
pub(crate) async fn signup_submit(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<SignupForm>,
) -> Response {
    let next = ReturnTo::parse(form.next.as_deref(), &state.settings.redirect_hosts);
    let creds = Credentials {
        username: form.username,
        password: form.password,
    };
    let result = if creds.password.same_as(&form.confirm) {
        flows::signup(&state, &auth, ip, &creds, form.invite.as_deref(), false)
            .await
            .map(drop)
    } else {
        Err(WebError::mismatch("the two passwords differ"))
    };
    match result {
        Ok(()) => Redirect::to(next.as_str()).into_response(),
        Err(WebError::Accounts(AccountsError::SignupClosed)) => signup_closed(&next),
        Err(e) => {
            // A refused code is not carried again: the form then asks for one.
            let invite = match e {
                WebError::Accounts(AccountsError::InvalidInvite) => None,
                _ => carried_invite(form.invite.as_deref()),
            };
            let shown = EntryForm {
                error: Some(e.message()),
                username: creds.username,
                next: next.as_str().to_owned(),
                csrf: csrf_of(&auth).await,
                invite,
            };
            let mut response = entry_page(Entry::Signup, &state, e.status(), shown);
            add_retry_after(&mut response, &e);
            response
        }
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    nav: Option<Nav>,
    csrf: String,
    username: String,
    auth_time: String,
    auth_time_relative: String,
    device: String,
    expires_at: String,
    remember: bool,
}

/// `GET /`: the account home, or a redirect to log in.
pub(crate) async fn home(State(state): State<AppState>, session: Option<Session>) -> Response {
    let Some(session) = session else {
        return login_redirect("/");
    };
    let r = session.record();
    let page = HomePage {
        csrf: session.csrf_token(),
        username: flows::username(&session),
        auth_time: rfc3339(r.auth_time),
        auth_time_relative: relative(r.auth_time, state.clock.now()),
        device: label(r.user_agent.as_deref()),
        expires_at: rfc3339(r.absolute_expires_at),
        remember: r.remember,
        nav: Some(nav(&session)),
    };
    render(StatusCode::OK, &page)
}

/// `POST /logout`: ends this session, back to the login page.
pub(crate) async fn logout(auth: Auth) -> Result<Response, WebError> {
    flows::logout(&auth).await?;
    Ok(([CLEAR_SITE_DATA.clone()], Redirect::to("/login")).into_response())
}

struct DeviceRow {
    id: String,
    current: bool,
    label: String,
    ip: String,
    created_at: String,
    created_relative: String,
    last_seen_at: String,
    last_seen_relative: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    nav: Option<Nav>,
    csrf: String,
    notice: Option<String>,
    devices: Vec<DeviceRow>,
}

/// `?revoked=` after a revocation, for the confirmation line.
#[derive(Debug, Deserialize)]
pub(crate) struct RevokedQuery {
    revoked: Option<u64>,
    /// Set after revoking a device that had already ended.
    gone: Option<u8>,
}

/// `GET /account/sessions`: "Your devices".
pub(crate) async fn sessions_page(
    State(state): State<AppState>,
    session: Option<Session>,
    Query(q): Query<RevokedQuery>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/sessions"));
    };
    let list = session.devices().await?;
    let now = state.clock.now();
    let devices = list
        .iter()
        .map(|s| DeviceRow {
            id: s.handle.to_string(),
            current: s.id == session.record().id,
            label: label(s.user_agent.as_deref()),
            ip: s
                .ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            created_at: rfc3339(s.created_at),
            created_relative: relative(s.created_at, now),
            last_seen_at: rfc3339(s.last_seen_at),
            last_seen_relative: relative(s.last_seen_at, now),
        })
        .collect();
    let notice = q
        .revoked
        .map(|n| match n {
            0 => "No other device was signed in.".to_owned(),
            1 => "Signed out 1 device.".to_owned(),
            n => format!("Signed out {n} devices."),
        })
        .or_else(|| {
            q.gone
                .map(|_| "That device was already signed out.".to_owned())
        });
    Ok(render(
        StatusCode::OK,
        &SessionsPage {
            csrf: session.csrf_token(),
            notice,
            devices,
            nav: Some(nav(&session)),
        },
    ))
}

/// `POST /account/sessions/{id}/revoke`.
pub(crate) async fn revoke_device(
    session: Option<Session>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/sessions"));
    };
    let current = session.handle().as_str() == id;
    let handle = SessionHandle::parse(&id).map_err(|_| WebError::NotFound("No such session."))?;
    if !session.revoke_device(&handle).await? {
        // Signed out elsewhere meanwhile (or by a second click): what the user wanted is
        // true, so say so on the list rather than show an error.
        return Ok(Redirect::to("/account/sessions?gone=1").into_response());
    }
    flows::revoked(&session, "revoke_one", 1);
    Ok(if current {
        Redirect::to("/login").into_response()
    } else {
        Redirect::to("/account/sessions?revoked=1").into_response()
    })
}

/// `POST /account/sessions/revoke-others`.
pub(crate) async fn revoke_others(session: Option<Session>) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/sessions"));
    };
    let n = session.logout_other_devices().await?;
    flows::revoked(&session, "revoke_others", n);
    Ok(Redirect::to(&format!("/account/sessions?revoked={n}")).into_response())
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Option<Nav>,
    csrf: String,
    notice: Option<String>,
    error: Option<String>,
}

/// `?changed=1` after a password change.
#[derive(Debug, Deserialize)]
pub(crate) struct ChangedQuery {
    changed: Option<u64>,
}

/// `GET /account/password`.
pub(crate) async fn password_page(
    session: Option<Session>,
    Query(q): Query<ChangedQuery>,
) -> Response {
    let Some(session) = session else {
        return login_redirect("/account/password");
    };
    let notice = q.changed.map(|n| match n {
        0 => "Password changed.".to_owned(),
        1 => "Password changed. 1 other device was signed out.".to_owned(),
        n => format!("Password changed. {n} other devices were signed out."),
    });
    render(
        StatusCode::OK,
        &PasswordPage {
            csrf: session.csrf_token(),
            notice,
            error: None,
            nav: Some(nav(&session)),
        },
    )
}

/// The password form.
#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    current_password: Password,
    new_password: Password,
    confirm: Password,
}

/// `POST /account/password`.
pub(crate) async fn password_submit(
    State(state): State<AppState>,
    session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    form: Result<WebForm<PasswordForm>, WebError>,
) -> Result<Response, WebError> {
    let Some(mut session) = session else {
        return Ok(login_redirect("/account/password"));
    };
    let WebForm(form) = form?;
    let result = if form.new_password.same_as(&form.confirm) {
        flows::change_password(
            &state,
            &mut session,
            ip,
            &form.current_password,
            &form.new_password,
        )
        .await
    } else {
        Err(WebError::mismatch("the two new passwords differ"))
    };
    Ok(match result {
        Ok(n) => Redirect::to(&format!("/account/password?changed={n}")).into_response(),
        Err(e) => {
            let mut response = render(
                e.status(),
                &PasswordPage {
                    csrf: session.csrf_token(),
                    notice: None,
                    error: Some(e.message()),
                    nav: Some(nav(&session)),
                },
            );
            add_retry_after(&mut response, &e);
            response
        }
    })
}
