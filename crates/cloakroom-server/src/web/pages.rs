//! Server-rendered HTML pages: usable without JavaScript, every form carrying its CSRF token.
//!
//! A refused form comes back with its error under the field it is about — the field marked
//! `aria-invalid="true"`, its `aria-describedby` naming the error, and focused — or above the
//! form when it is about no one field (too many attempts, say). Times are written as a person
//! reads them (see [`when`]); the words are "sign in" and "sign out" throughout.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Rejection, Session, Unauthenticated};
use cloakroom_core::SessionHandle;
use cloakroom_core::accounts::InviteCode;
use serde::Deserialize;

use crate::accounts::passwords::Password;
use crate::accounts::{AccountsError, Credentials};
use crate::config::SignupMode;
use crate::state::AppState;
use crate::web::device::{relative, rfc3339};
use crate::web::error::{self, Format, WebError, WebForm, WebQuery};
use crate::web::redirect::ReturnTo;
use crate::web::site::Site;
use crate::web::when::{self, Style};
use crate::web::{CLEAR_SITE_DATA, ClientAddr, flows, ops};

/// What the page header shows for a signed-in user.
#[derive(Debug, Clone)]
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

/// A page whose address holds a secret (a reset or verification link's token): sent with
/// `Referrer-Policy: no-referrer`, so the address goes out in no `Referer`, and
/// `Cache-Control: no-store`, so no cache keeps it. (Its own forms then post with
/// `Origin: null`, which the origin policy accepts only when Fetch Metadata says
/// `same-origin`.)
pub(crate) fn render_secret(status: StatusCode, page: &impl Template) -> Response {
    let mut response = render(status, page);
    let h = response.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

// --- Error pages ---------------------------------------------------------------------------

/// An error page, for refusals outside a form.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    title: &'static str,
    message: String,
    /// Offer the way back to the account, or the way in.
    signed_in: bool,
}

/// Renders an error as a page: the HTML format of [`WebError::render`]. A signed-in visitor
/// (`nav`, or at least `signed_in`) is offered the way back to their account; anyone else the
/// way to sign in.
pub(crate) fn error_page(
    site: &Site,
    status: StatusCode,
    message: String,
    nav: Option<Nav>,
    signed_in: bool,
) -> Response {
    render(
        status,
        &ErrorPage {
            site,
            nav,
            title: error_title(status),
            message,
            signed_in,
        },
    )
}

/// A page title for a status, in words a person uses (not "Unprocessable Entity").
fn error_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 | 422 => "This request cannot be used",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Page not found",
        409 => "Please try again",
        410 => "This link no longer works",
        424 => "The sign-in provider did not answer",
        429 => "Too many attempts",
        503 => "Temporarily unavailable",
        _ => "Something went wrong",
    }
}

/// Marks a failed page response with the visitor's [`Nav`] when they are signed in, so that
/// the error page (written outside the session layer, see [`error::render`]) greets them as
/// the other pages do. Runs inside the session layer; touches successful responses not at all.
pub(crate) async fn mark_visitor(auth: Auth, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if error::is_failure(&response)
        && let Ok(Some(session)) = auth.session().await
    {
        response.extensions_mut().insert(nav(&session));
    }
    response
}

/// Any path nothing else answers: a 404 page for a browser (`Accept: text/html`), knowing who
/// is signed in; JSON for the rest.
pub(crate) async fn not_found(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
) -> Response {
    if !ops::wants_html(&headers) {
        return WebError::NotFound(ops::NOT_FOUND).render(&Format::Json);
    }
    // A store that cannot say is no reason to fail a 404: the visitor is shown signed out.
    let nav = auth.session().await.ok().flatten().map(|s| nav(&s));
    let signed_in = nav.is_some();
    error_page(
        &state.site,
        StatusCode::NOT_FOUND,
        ops::NOT_FOUND.to_owned(),
        nav,
        signed_in,
    )
}

// --- Form errors ---------------------------------------------------------------------------

/// A refused form's error: its sentence, and the field it is about, if it is about one.
#[derive(Debug, Default)]
pub(crate) struct FormError {
    field: Option<&'static str>,
    message: Option<String>,
}

impl FormError {
    /// `e`, placed by `field_of` (which knows the form's fields).
    pub(crate) fn of(e: &WebError, field_of: fn(&WebError) -> Option<&'static str>) -> Self {
        Self {
            field: field_of(e),
            message: Some(e.message()),
        }
    }

    /// The error under `field`, if it is there.
    pub(crate) fn on(&self, field: &str) -> Option<&str> {
        self.message
            .as_deref()
            .filter(|_| self.field == Some(field))
    }

    /// The error above the form, if it is about no one field.
    pub(crate) fn general(&self) -> Option<&str> {
        self.message.as_deref().filter(|_| self.field.is_none())
    }
}

pub(crate) fn is_mismatch(e: &WebError) -> bool {
    matches!(
        e,
        WebError::Body {
            code: "mismatch",
            ..
        }
    )
}

fn login_field(e: &WebError) -> Option<&'static str> {
    // Which of the two was wrong is deliberately not said; the error sits with the password,
    // the field the user types again.
    matches!(e, WebError::Accounts(AccountsError::InvalidCredentials)).then_some("password")
}

fn signup_field(e: &WebError) -> Option<&'static str> {
    match e {
        WebError::Accounts(AccountsError::InvalidUsername(_) | AccountsError::UsernameTaken) => {
            Some("username")
        }
        WebError::Accounts(AccountsError::WeakPassword(_)) => Some("password"),
        WebError::Accounts(AccountsError::InvalidEmail(_) | AccountsError::EmailRequired) => {
            Some("email")
        }
        // The code field is shown whenever one of these comes back (a refused code is not
        // carried again), so the error has a place.
        WebError::Accounts(AccountsError::InvalidInvite | AccountsError::InviteRequired) => {
            Some("invite")
        }
        e if is_mismatch(e) => Some("confirm"),
        _ => None,
    }
}

fn password_field(e: &WebError) -> Option<&'static str> {
    match e {
        WebError::Accounts(AccountsError::WrongPassword) => Some("current_password"),
        WebError::Accounts(AccountsError::WeakPassword(_)) => Some("new_password"),
        e if is_mismatch(e) => Some("confirm"),
        _ => None,
    }
}

fn delete_field(e: &WebError) -> Option<&'static str> {
    matches!(e, WebError::Accounts(AccountsError::WrongPassword)).then_some("password")
}

pub(crate) fn add_retry_after(response: &mut Response, e: &WebError) {
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
}

// --- Signed in or not ------------------------------------------------------------------------

/// A line on the login page saying why the visitor is there. Carried in `?notice=`, which
/// anyone can put in a link: it only ever selects one of these fixed sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// After "Sign out".
    SignedOut,
    /// A personal page found the session expired (idle or at its maximum length).
    Expired,
    /// A personal page found the session gone: ended from another device, or expired and
    /// already cleaned up.
    Ended,
    /// After the account was deleted.
    Deleted,
}

impl Notice {
    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "signed-out" => Self::SignedOut,
            "expired" => Self::Expired,
            "ended" => Self::Ended,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::SignedOut => "signed-out",
            Self::Expired => "expired",
            Self::Ended => "ended",
            Self::Deleted => "deleted",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::SignedOut => "You have been signed out.",
            Self::Expired => "Your session expired, please sign in again.",
            Self::Ended => "Your session has ended, please sign in again.",
            Self::Deleted => "Your account has been deleted. Every device was signed out.",
        }
    }

    /// The notice for a personal page visited without a live session, if the visitor had
    /// one that ended (rather than never having signed in).
    fn of(why: Unauthenticated) -> Option<Self> {
        match why {
            Unauthenticated::IdleExpired | Unauthenticated::AbsoluteExpired => Some(Self::Expired),
            Unauthenticated::UnknownSession | Unauthenticated::Revoked => Some(Self::Ended),
            _ => None,
        }
    }

    /// The login page with this notice.
    fn login_url(self) -> String {
        format!("/login?notice={}", self.as_str())
    }
}

/// The login page saying "You have been signed out.", for every way of signing out.
pub(crate) fn signed_out_url() -> String {
    Notice::SignedOut.login_url()
}

pub(crate) fn login_redirect(next: &str, notice: Option<Notice>) -> Response {
    let mut target = format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
    );
    if let Some(n) = notice {
        target.push_str("&notice=");
        target.push_str(n.as_str());
    }
    Redirect::to(&target).into_response()
}

/// Who asks for a personal page.
pub(crate) enum Visitor {
    /// Someone signed in: the page is theirs.
    SignedIn(Session),
    /// Anyone else, with the response that sends them on.
    Away(Response),
}

/// The session a personal page needs; without one, the response that sends the visitor to
/// sign in (and back to `next`), saying why if their session ended. A store that cannot tell
/// is an error, never "signed out" (fail closed).
pub(crate) fn personal(session: Result<Session, Rejection>, next: &str) -> Visitor {
    match session {
        Ok(session) => Visitor::SignedIn(session),
        Err(Rejection::Unauthenticated(why)) => {
            Visitor::Away(login_redirect(next, Notice::of(why)))
        }
        Err(e) => Visitor::Away(WebError::from(e).into_response()),
    }
}

// --- Sign in and sign up -------------------------------------------------------------------

/// `?next=` (a local path) or `?rd=` (an absolute URL on an allowed host, from forward auth)
/// on the login and sign-up pages, and `?notice=` on the login page.
#[derive(Debug, Deserialize)]
pub(crate) struct NextQuery {
    next: Option<String>,
    rd: Option<String>,
    notice: Option<String>,
}

impl NextQuery {
    pub(crate) fn target(&self, state: &AppState) -> ReturnTo {
        ReturnTo::parse(
            self.rd.as_deref().or(self.next.as_deref()),
            &state.settings.redirect_hosts,
        )
    }
}

/// What the login and sign-up forms show: the same fields, two pages.
struct EntryForm {
    error: FormError,
    username: String,
    next: String,
    csrf: Option<String>,
    /// Sign-up only: a well-formed invitation code from the link, carried in a hidden field.
    invite: Option<String>,
    /// Sign-up only: the address as typed, shown again after a refusal.
    email: String,
    /// Login only: the password was right, but the address must be verified first.
    unverified: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    form: EntryForm,
    notice: Option<&'static str>,
    /// The password was right but the address is not verified: offer a new link.
    unverified: bool,
    /// `(id, name)` of each OpenID provider: a "Sign in with …" button each.
    providers: Vec<(String, String)>,
    /// "Sign in with a passkey" (`passkey_login`).
    passkey_login: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    form: EntryForm,
    /// Sign-up is closed: say so instead of showing the form.
    closed: bool,
    /// Sign-up needs an invitation: carry the code, or ask for it.
    by_invite: bool,
    /// Sign-in needs a verified address, so the address is not optional.
    email_required: bool,
}

#[derive(Clone, Copy)]
enum Entry {
    Login,
    Signup,
}

fn entry_page(
    entry: Entry,
    state: &AppState,
    status: StatusCode,
    form: EntryForm,
    notice: Option<Notice>,
) -> Response {
    let site = &state.site;
    match entry {
        Entry::Login => render(
            status,
            &LoginPage {
                site,
                nav: None,
                unverified: form.unverified,
                providers: state.oidc.buttons(),
                passkey_login: state.mfa.passkeys.passwordless(),
                form,
                notice: notice.map(Notice::text),
            },
        ),
        Entry::Signup => render(
            status,
            &SignupPage {
                site,
                nav: None,
                form,
                closed: false,
                by_invite: state.settings.signup == SignupMode::Invite,
                email_required: state.settings.require_verified_email,
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
        error: FormError::default(),
        username: String::new(),
        next: next.as_str().to_owned(),
        csrf: None,
        invite,
        email: String::new(),
        unverified: false,
    };
    let notice = q.notice.as_deref().and_then(Notice::parse);
    entry_page(entry, state, StatusCode::OK, form, notice)
}

/// `GET /login`.
pub(crate) async fn login_page(
    State(state): State<AppState>,
    session: Option<Session>,
    WebQuery(q): WebQuery<NextQuery>,
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
    let client = flows::Client::Browser {
        remember: form.remember.is_some(),
    };
    match flows::login(&state, &auth, ip, &creds, &client).await {
        Ok(flows::LoginOutcome::SignedIn(..)) => Redirect::to(next.as_str()).into_response(),
        Ok(flows::LoginOutcome::SecondFactor { .. }) => Redirect::to(&format!(
            "/login/second-factor?next={}",
            url::form_urlencoded::byte_serialize(next.as_str().as_bytes()).collect::<String>()
        ))
        .into_response(),
        Err(e) => {
            let shown = EntryForm {
                error: FormError::of(&e, login_field),
                username: creds.username,
                next: next.as_str().to_owned(),
                csrf: csrf_of(&auth).await,
                invite: None,
                email: String::new(),
                unverified: matches!(e, WebError::Accounts(AccountsError::EmailNotVerified)),
            };
            let mut response = entry_page(Entry::Login, &state, e.status(), shown, None);
            add_retry_after(&mut response, &e);
            response
        }
    }
}

/// The login page again after a refused passkey sign-in, saying why.
pub(crate) async fn login_refused(
    state: &AppState,
    auth: &Auth,
    next: &ReturnTo,
    e: &WebError,
) -> Response {
    let shown = EntryForm {
        error: FormError::of(e, login_field),
        username: String::new(),
        next: next.as_str().to_owned(),
        csrf: csrf_of(auth).await,
        invite: None,
        email: String::new(),
        unverified: matches!(e, WebError::Accounts(AccountsError::EmailNotVerified)),
    };
    let mut response = entry_page(Entry::Login, state, e.status(), shown, None);
    add_retry_after(&mut response, e);
    response
}

pub(crate) async fn csrf_of(auth: &Auth) -> Option<String> {
    auth.session().await.ok().flatten().map(|s| s.csrf_token())
}

/// `GET /signup`.
pub(crate) async fn signup_page(
    State(state): State<AppState>,
    session: Option<Session>,
    WebQuery(q): WebQuery<NextQuery>,
    WebQuery(invite): WebQuery<InviteQuery>,
) -> Response {
    if state.settings.signup == SignupMode::Closed && session.is_none() {
        return signup_closed(&state, &q.target(&state));
    }
    let invite = carried_invite(invite.invite.as_deref());
    entry_form(Entry::Signup, &state, session.as_ref(), &q, invite)
}

/// The sign-up page of a server whose sign-up is closed: 403, no form.
fn signup_closed(state: &AppState, next: &ReturnTo) -> Response {
    let form = EntryForm {
        error: FormError::default(),
        username: String::new(),
        next: next.as_str().to_owned(),
        csrf: None,
        invite: None,
        email: String::new(),
        unverified: false,
    };
    let page = SignupPage {
        site: &state.site,
        nav: None,
        form,
        closed: true,
        by_invite: false,
        email_required: false,
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
    /// An optional email address.
    email: Option<String>,
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
        flows::signup(
            &state,
            &auth,
            ip,
            &creds,
            form.invite.as_deref(),
            form.email.as_deref(),
            false,
        )
        .await
        .map(|(_, session)| session.is_some())
    } else {
        Err(WebError::mismatch("The two passwords differ."))
    };
    match result {
        Ok(true) => Redirect::to(next.as_str()).into_response(),
        // Sign-in waits for the address to be verified.
        Ok(false) => crate::web::email::check_your_mail(&state),
        Err(WebError::Accounts(AccountsError::SignupClosed)) => signup_closed(&state, &next),
        Err(e) => {
            // A refused code is not carried again: the form then asks for one.
            let invite = match e {
                WebError::Accounts(AccountsError::InvalidInvite) => None,
                _ => carried_invite(form.invite.as_deref()),
            };
            let shown = EntryForm {
                error: FormError::of(&e, signup_field),
                username: creds.username,
                next: next.as_str().to_owned(),
                csrf: csrf_of(&auth).await,
                invite,
                email: form.email.unwrap_or_default(),
                unverified: false,
            };
            let mut response = entry_page(Entry::Signup, &state, e.status(), shown, None);
            add_retry_after(&mut response, &e);
            response
        }
    }
}

/// `POST /logout`: ends this session, back to the login page, which says so.
pub(crate) async fn logout(auth: Auth) -> Result<Response, WebError> {
    flows::logout(&auth).await?;
    Ok(([CLEAR_SITE_DATA.clone()], Redirect::to(&signed_out_url())).into_response())
}

// --- The account ---------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    notice: Option<&'static str>,
    /// OpenID providers are configured: link to "Sign-in methods".
    oidc: bool,
    site: &'a Site,
    nav: Option<Nav>,
    csrf: String,
    username: String,
    /// RFC 3339, for `<time datetime>`; the page shows the other two.
    auth_time: String,
    auth_time_relative: String,
    auth_time_at: String,
    device: String,
    expires_at: String,
    expires_at_words: String,
    remember: bool,
}

/// `?notice=` on the account home: only `password-reset`, after a reset link set a new
/// password (anything else shows nothing).
#[derive(Debug, Deserialize)]
pub(crate) struct HomeQuery {
    notice: Option<String>,
}

/// What the home page says after a reset link set the password and signed the user in.
pub(crate) const PASSWORD_RESET_DONE: &str = "/?notice=password-reset";

/// `GET /`: the account home, or a redirect to sign in.
pub(crate) async fn home(
    State(state): State<AppState>,
    style: Style,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<HomeQuery>,
) -> Response {
    let session = match personal(session, "/") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return away,
    };
    let r = session.record();
    let now = state.clock.now();
    let notice = (q.notice.as_deref() == Some("password-reset"))
        .then_some("Your new password is set. Every other device was signed out.");
    let page = HomePage {
        notice,
        oidc: !state.oidc.is_empty(),
        site: &state.site,
        csrf: session.csrf_token(),
        username: flows::username(&session),
        auth_time: rfc3339(r.auth_time),
        auth_time_relative: relative(r.auth_time, now),
        auth_time_at: when::at(r.auth_time, now, style),
        device: crate::web::device::session_label(r),
        expires_at: rfc3339(r.absolute_expires_at),
        expires_at_words: when::at(r.absolute_expires_at, now, style),
        remember: r.remember,
        nav: Some(nav(&session)),
    };
    render(StatusCode::OK, &page)
}

struct DeviceRow {
    id: String,
    /// The OpenID provider it signed in with, if not a password.
    via: Option<String>,
    current: bool,
    label: String,
    ip: String,
    /// RFC 3339, for `<time datetime>`.
    created_at: String,
    created_relative: String,
    created_words: String,
    last_seen_at: String,
    last_seen_relative: String,
    last_seen_words: String,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage<'a> {
    site: &'a Site,
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

/// `GET /account/sessions`: "Your devices" — this one first, then the others, most recently
/// used first.
pub(crate) async fn sessions_page(
    State(state): State<AppState>,
    style: Style,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<RevokedQuery>,
) -> Result<Response, WebError> {
    let session = match personal(session, "/account/sessions") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let mut list = session.devices().await?;
    // Stable: the others keep the manager's most-recently-used order.
    list.sort_by_key(|s| s.id != session.record().id);
    let now = state.clock.now();
    let devices = list
        .iter()
        .map(|s| DeviceRow {
            via: s
                .auth_method
                .as_str()
                .strip_prefix("oidc:")
                .map(|id| state.oidc.display_name(id)),
            id: s.handle.to_string(),
            current: s.id == session.record().id,
            label: crate::web::device::session_label(s),
            ip: s
                .ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            created_at: rfc3339(s.created_at),
            created_relative: relative(s.created_at, now),
            created_words: when::at(s.created_at, now, style),
            last_seen_at: rfc3339(s.last_seen_at),
            last_seen_relative: relative(s.last_seen_at, now),
            last_seen_words: when::at(s.last_seen_at, now, style),
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
            site: &state.site,
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
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/sessions", None));
    };
    // A handle that does not even decode (`%FF`) is no session of yours either; left to
    // axum, it was a plain-text 400 instead of a page.
    let handle = id
        .ok()
        .and_then(|Path(id)| SessionHandle::parse(&id).ok())
        .ok_or(WebError::NotFound(
            "That session does not exist, or is not yours.",
        ))?;
    let current = session.handle() == &handle;
    if !session.revoke_device(&handle).await? {
        // Signed out elsewhere meanwhile (or by a second click): what the user wanted is
        // true, so say so on the list rather than show an error.
        return Ok(Redirect::to("/account/sessions?gone=1").into_response());
    }
    flows::revoked(&session, "revoke_one", 1);
    Ok(if current {
        Redirect::to(&signed_out_url()).into_response()
    } else {
        Redirect::to("/account/sessions?revoked=1").into_response()
    })
}

/// `POST /account/sessions/revoke-others`.
pub(crate) async fn revoke_others(session: Option<Session>) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/sessions", None));
    };
    let n = session.logout_other_devices().await?;
    flows::revoked(&session, "revoke_others", n);
    Ok(Redirect::to(&format!("/account/sessions?revoked={n}")).into_response())
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: String,
    notice: Option<String>,
    error: FormError,
}

/// `?changed=1` after a password change.
#[derive(Debug, Deserialize)]
pub(crate) struct ChangedQuery {
    changed: Option<u64>,
}

/// `GET /account/password`.
pub(crate) async fn password_page(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<ChangedQuery>,
) -> Response {
    let session = match personal(session, "/account/password") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return away,
    };
    let notice = q.changed.map(|n| match n {
        0 => "Password changed.".to_owned(),
        1 => "Password changed. 1 other device was signed out.".to_owned(),
        n => format!("Password changed. {n} other devices were signed out."),
    });
    render(
        StatusCode::OK,
        &PasswordPage {
            site: &state.site,
            csrf: session.csrf_token(),
            notice,
            error: FormError::default(),
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
        return Ok(login_redirect("/account/password", None));
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
        Err(WebError::mismatch("The two new passwords differ."))
    };
    Ok(match result {
        Ok(n) => Redirect::to(&format!("/account/password?changed={n}")).into_response(),
        Err(e) => {
            let mut response = render(
                e.status(),
                &PasswordPage {
                    site: &state.site,
                    csrf: session.csrf_token(),
                    notice: None,
                    error: FormError::of(&e, password_field),
                    nav: Some(nav(&session)),
                },
            );
            add_retry_after(&mut response, &e);
            response
        }
    })
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: String,
    username: String,
    /// How many devices are signed in, this one included.
    devices: usize,
    error: FormError,
}

fn delete_page_for(
    site: &Site,
    session: &Session,
    devices: usize,
    status: StatusCode,
    error: FormError,
) -> Response {
    render(
        status,
        &DeletePage {
            site,
            csrf: session.csrf_token(),
            username: flows::username(session),
            devices,
            error,
            nav: Some(nav(session)),
        },
    )
}

/// `GET /account/delete`: what deleting the account means, and the form that does it.
pub(crate) async fn delete_page(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
) -> Result<Response, WebError> {
    let session = match personal(session, "/account/delete") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let devices = session.devices().await?.len();
    Ok(delete_page_for(
        &state.site,
        &session,
        devices,
        StatusCode::OK,
        FormError::default(),
    ))
}

/// The deletion form: the password, typed again.
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteForm {
    password: Password,
}

/// `POST /account/delete`: deletes the account (see [`flows::delete_account`]), then the login
/// page says so.
pub(crate) async fn delete_submit(
    State(state): State<AppState>,
    auth: Auth,
    session: Option<Session>,
    ClientAddr(ip): ClientAddr,
    form: Result<WebForm<DeleteForm>, WebError>,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        return Ok(login_redirect("/account/delete", None));
    };
    let WebForm(form) = form?;
    match flows::delete_account(&state, &auth, &session, ip, &form.password).await {
        Ok(_) => Ok((
            [CLEAR_SITE_DATA.clone()],
            Redirect::to(&Notice::Deleted.login_url()),
        )
            .into_response()),
        Err(e) if delete_field(&e).is_some() || e.retry_after().is_some() => {
            let devices = session.devices().await?.len();
            let mut response = delete_page_for(
                &state.site,
                &session,
                devices,
                e.status(),
                FormError::of(&e, delete_field),
            );
            add_retry_after(&mut response, &e);
            Ok(response)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_anything_else_is_ignored() {
        for n in [
            Notice::SignedOut,
            Notice::Expired,
            Notice::Ended,
            Notice::Deleted,
        ] {
            assert_eq!(Notice::parse(n.as_str()), Some(n));
            assert!(n.text().ends_with('.'), "{}", n.text());
        }
        for other in ["", "Expired", "<script>", "signed-out "] {
            assert_eq!(Notice::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn errors_go_under_their_field_or_above_the_form() {
        let wrong = WebError::Accounts(AccountsError::WrongPassword);
        let e = FormError::of(&wrong, password_field);
        assert_eq!(
            e.on("current_password"),
            Some("Your current password is wrong.")
        );
        assert_eq!(e.on("new_password"), None);
        assert_eq!(e.general(), None);
        let throttled = WebError::Accounts(AccountsError::Throttled(
            std::time::Duration::from_millis(1500),
        ));
        let e = FormError::of(&throttled, password_field);
        assert_eq!(
            e.general(),
            Some("Too many attempts. Try again in 2 seconds.")
        );
        assert_eq!(e.on("current_password"), None);
        let mismatch = WebError::mismatch("The two passwords differ.");
        assert_eq!(signup_field(&mismatch), Some("confirm"));
        assert_eq!(FormError::default().general(), None);
    }
}

/// The page that tells a signed-in user a rule refused them: who they are, what they may not
/// open, and a way to sign out (to sign in as someone else). Never a redirect to the login
/// page, which would loop.
#[derive(askama::Template)]
#[template(path = "access_denied.html")]
struct DeniedPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    user: Option<&'a str>,
    url: Option<&'a str>,
    /// For the sign-out form, when the page is served on the portal with the session.
    csrf: Option<String>,
}

/// The refusal page as forward auth answers it to a browser behind Traefik or Caddy (the
/// proxy shows it on the app's host, where there is no form to post).
pub(crate) fn denied_page(site: &Site, user: Option<&str>, url: Option<&str>) -> Response {
    render(
        StatusCode::FORBIDDEN,
        &DeniedPage {
            site,
            nav: None,
            user,
            url,
            csrf: None,
        },
    )
}

/// `?rd=` on the refusal page.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct DeniedQuery {
    /// The URL that was refused.
    rd: Option<String>,
}

/// `GET /access-denied?rd=<url>`: where nginx sends a browser a rule refused (its
/// `auth_request` cannot pass a page through). Signed out, the visitor is sent to sign in.
pub(crate) async fn access_denied(
    State(state): State<AppState>,
    session: Option<Session>,
    WebQuery(q): WebQuery<DeniedQuery>,
) -> Response {
    let hosts = &state.settings.redirect_hosts;
    let rd = q.rd.as_deref().and_then(|rd| ReturnTo::checked(rd, hosts));
    // Shown only when it is a place to return to or an app forward auth answers for: the
    // page must not display whatever a link put in it.
    let shown = q.rd.as_deref().filter(|candidate| {
        rd.is_some()
            || ReturnTo::fits(candidate)
                && cloakroom_core::origin::Origin::of_url(candidate)
                    .is_some_and(|o| state.settings.app_origins.allows(&o))
    });
    let Some(session) = session else {
        let target = match &rd {
            Some(rd) => format!(
                "/login?rd={}",
                url::form_urlencoded::byte_serialize(rd.as_str().as_bytes()).collect::<String>()
            ),
            None => "/login".to_owned(),
        };
        return axum::response::Redirect::to(&target).into_response();
    };
    let user = flows::username(&session);
    render(
        StatusCode::FORBIDDEN,
        &DeniedPage {
            site: &state.site,
            nav: Some(nav(&session)),
            user: Some(&user),
            url: shown,
            csrf: Some(session.csrf_token()),
        },
    )
}
