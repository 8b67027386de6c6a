//! The JSON API (`/api/…`), described by the OpenAPI document at `/openapi.json` (see
//! [`crate::web::openapi`], which adds the refusals).
//!
//! The session token travels only in the session cookie — never in a query string, a body or
//! an `Authorization` header — so it cannot leak through logs, `Referer` or browser history.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cloakroom_axum::{Auth, Session};
use cloakroom_core::SessionHandle;
use cloakroom_core::accounts::Account;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::Credentials;
use crate::accounts::passwords::Password;
use crate::state::AppState;
use crate::tokens::download;
use crate::web::device::rfc3339;
use crate::web::error::{ApiJson, WebError};
use crate::web::flows;
use crate::web::{CLEAR_SITE_DATA, ClientAddr};
use crate::{events, metrics};

/// Credentials for `POST /api/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LoginRequest {
    /// The username (case does not matter).
    pub(crate) username: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub(crate) password: Password,
    /// Keep the session for 30 days of inactivity (90 at most) instead of 30 minutes.
    #[serde(default)]
    pub(crate) remember: bool,
    /// `browser` (the default: the session cookie is set) or `native`: a native app, which
    /// gets the session token in the answer and sends it as `Authorization: Bearer`. A native
    /// sign-in needs no `Origin`: it sets no cookie, so no other site can use it.
    #[serde(default)]
    pub(crate) client: ClientKind,
    /// A native app's name for its device ("Pixel 8"), shown under "Your devices"; 1 to 64
    /// characters.
    pub(crate) device_name: Option<String>,
}

/// Who signs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientKind {
    /// A browser: the session is a cookie.
    #[default]
    Browser,
    /// A native app: the session is a bearer token.
    Native,
}

/// What `POST /api/login` answers: a browser's session, or a native app's token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // Described, never built: the handler answers one of the two.
pub(crate) enum LoginAnswer {
    /// A browser (`"client": "browser"`, the default): the session cookie is set.
    Browser(SessionResponse),
    /// A native app (`"client": "native"`): no cookie.
    Native(NativeSession),
    /// An account with a second factor: a pending session, not signed in yet.
    SecondFactor(crate::web::mfa::SecondFactorRequired),
}

/// A native app's session (`POST /api/login` with `"client": "native"`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NativeSession {
    /// The session token (43 characters): send it as `Authorization: Bearer <token>`. It is
    /// shown once; Cloakroom keeps only its hash.
    pub(crate) session_token: String,
    /// When the session ends at the latest (RFC 3339); inactivity ends it sooner.
    pub(crate) expires_at: String,
}

/// A new account for `POST /api/signup`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SignupRequest {
    /// 3–32 characters: letters, digits, `.`, `_`, `-`; unique without regard to case.
    pub(crate) username: String,
    /// At least 12 characters, at most 1,024 bytes; not a common password or the username.
    #[schema(value_type = String, format = Password)]
    pub(crate) password: Password,
    /// As for login.
    #[serde(default)]
    pub(crate) remember: bool,
    /// The invitation code, where sign-up is by invitation (`signup = "invite"`); ignored
    /// otherwise.
    #[serde(default)]
    pub(crate) invite: Option<String>,
    /// An email address for password resets (`name@domain`). A verification link is mailed
    /// to it; it is used (and shown to apps) only once verified. Required where sign-in needs
    /// a verified address (`require_verified_email`).
    #[serde(default)]
    #[schema(format = Email)]
    pub(crate) email: Option<String>,
}

/// `POST /api/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasswordRequest {
    /// The password in use now.
    #[schema(value_type = String, format = Password)]
    pub(crate) current_password: Password,
    /// The new password (same rules as sign-up).
    #[schema(value_type = String, format = Password)]
    pub(crate) new_password: Password,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserView {
    /// Stable user id.
    pub(crate) id: String,
    /// Username.
    pub(crate) username: String,
    /// The account's email address, if it has one, verified or not.
    #[schema(format = Email)]
    pub(crate) email: Option<String>,
    /// Whether `email` is verified (only a verified address is used for password resets and
    /// shown to apps).
    pub(crate) email_verified: bool,
}

impl From<&Account> for UserView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            username: a.username.to_string(),
            email: a.email.as_ref().map(|e| e.as_str().to_owned()),
            email_verified: a.email.is_some() && a.email_verified,
        }
    }
}

/// The answer to a sign-up where sign-in needs a verified address
/// (`require_verified_email`): the account exists, and waits for its link.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VerificationPending {
    /// Always `true`: no session was started.
    pub(crate) email_verification_required: bool,
    /// What to do next.
    pub(crate) message: &'static str,
}

/// What sign-up says when the account must verify its address before signing in.
pub(crate) const CHECK_YOUR_MAIL: &str =
    "Your account is created. We sent a link to your email address: follow it, then sign in.";

/// The current session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionView {
    /// The session's public handle (as in `/api/sessions`).
    pub(crate) id: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339 (updated at most once a minute).
    pub(crate) last_seen_at: String,
    /// When the session ends if unused (RFC 3339).
    pub(crate) idle_expires_at: String,
    /// When the session ends regardless (RFC 3339).
    pub(crate) absolute_expires_at: String,
    /// When the user last proved who they are (RFC 3339).
    pub(crate) auth_time: String,
    /// How (`password`).
    pub(crate) auth_method: String,
    /// Whether this is a "remember me" session.
    pub(crate) remember: bool,
    /// `aal1` or `aal2` (as `auth_level` above).
    pub(crate) auth_level: &'static str,
    /// When the second factor was given in this session (RFC 3339), at `aal2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) second_factor_at: Option<String>,
}

/// Who am I: `GET /api/session`, and the answer to login, sign-up and password change.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionResponse {
    /// The user.
    pub(crate) user: UserView,
    /// This session.
    pub(crate) session: SessionView,
    /// Send this in `X-CSRF-Token` with every state-changing request.
    pub(crate) csrf_token: String,
    /// How this session's user proved who they are: `aal1` (one factor) or `aal2` (a second
    /// factor given in this session).
    pub(crate) auth_level: &'static str,
}

/// One of the user's sessions, for "your devices".
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeviceView {
    /// Public handle; `DELETE /api/sessions/{id}` ends it.
    pub(crate) id: String,
    /// Whether this is the session making the request.
    pub(crate) current: bool,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339.
    pub(crate) last_seen_at: String,
    /// The address it logged in from.
    pub(crate) ip: Option<String>,
    /// The user agent it logged in with.
    pub(crate) user_agent: Option<String>,
    /// A human label such as "Firefox on Android".
    pub(crate) device: String,
}

/// How many sessions an operation ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Revoked {
    /// Number of sessions ended.
    pub(crate) revoked: u64,
}

/// The answer to a password change.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasswordChanged {
    /// Number of other sessions ended.
    pub(crate) revoked: u64,
    /// The rotated session's CSRF token (the old one is void).
    pub(crate) csrf_token: String,
    /// A native app's new bearer token: the session was rotated, and the old token is void.
    /// Absent for a browser, which gets the new cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_token: Option<String>,
}

/// Every error body (written by `WebError::render`, the one place errors become responses).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// A stable code such as `invalid_credentials`; each response lists those it can hold.
    pub(crate) error: &'static str,
    /// What happened and what to do.
    pub(crate) message: String,
}

fn session_view(s: &cloakroom_core::Session) -> SessionView {
    SessionView {
        id: s.handle.to_string(),
        created_at: rfc3339(s.created_at),
        last_seen_at: rfc3339(s.last_seen_at),
        idle_expires_at: rfc3339(s.idle_expires_at),
        absolute_expires_at: rfc3339(s.absolute_expires_at),
        auth_time: rfc3339(s.auth_time),
        auth_method: s.auth_method.as_str().to_owned(),
        remember: s.remember,
        auth_level: crate::mfa::level::AuthLevel::of(s).as_str(),
        second_factor_at: crate::mfa::level::aal2_at(s).map(rfc3339),
    }
}

pub(crate) fn session_response(account: &Account, session: &Session) -> SessionResponse {
    SessionResponse {
        user: account.into(),
        session: session_view(session.record()),
        csrf_token: session.csrf_token(),
        auth_level: crate::mfa::level::AuthLevel::of(session.record()).as_str(),
    }
}

/// Creates an account and signs it in.
///
/// Whether anyone may sign up is the `signup` setting: `open`, `closed`, or `invite` (with a
/// code from `cloakroom user invite`).
#[utoipa::path(post, path = "/api/signup", tag = "accounts", request_body = SignupRequest,
    security((), ("session_cookie" = [])),
    responses(
        (status = 201, description = "Account created; the session cookie is set", body = SessionResponse),
        (status = 202, description = "Account created, but sign-in needs a verified address (`require_verified_email`): a link was mailed to it, and no session was started", body = VerificationPending),
    ))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<Response, WebError> {
    let creds = Credentials {
        username: req.username,
        password: req.password,
    };
    let (account, session) = flows::signup(
        &state,
        &auth,
        ip,
        &creds,
        req.invite.as_deref(),
        req.email.as_deref(),
        req.remember,
    )
    .await?;
    Ok(match session {
        Some(session) => (
            StatusCode::CREATED,
            Json(session_response(&account, &session)),
        )
            .into_response(),
        None => (
            StatusCode::ACCEPTED,
            Json(VerificationPending {
                email_verification_required: true,
                message: CHECK_YOUR_MAIL,
            }),
        )
            .into_response(),
    })
}

/// Signs in with a username and password.
#[utoipa::path(post, path = "/api/login", tag = "sessions", request_body = LoginRequest,
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "Logged in. A browser: the session cookie is set (a new one: any session the request carried is replaced), and the body is a `SessionResponse`. A native app (`\"client\": \"native\"`): no cookie, and the body is a `NativeSession` with the bearer token. An account with a second factor: a `SecondFactorRequired` and a pending session (finish with `POST /api/login/second-factor`)", body = LoginAnswer),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, WebError> {
    let client = match req.client {
        ClientKind::Browser => flows::Client::Browser {
            remember: req.remember,
        },
        ClientKind::Native => flows::Client::Native {
            device_name: device_name(req.device_name.as_deref())?,
        },
    };
    let creds = Credentials {
        username: req.username,
        password: req.password,
    };
    let (account, session, token) = match flows::login(&state, &auth, ip, &creds, &client).await? {
        flows::LoginOutcome::SignedIn(account, session, token) => (account, session, token),
        flows::LoginOutcome::SecondFactor { methods, token } => {
            return Ok(Json(crate::web::mfa::SecondFactorRequired {
                second_factor_required: true,
                methods,
                session_token: token.map(|t| t.expose_cookie_value()),
            })
            .into_response());
        }
    };
    Ok(signed_in(&account, &session, token))
}

/// The answer to a finished sign-in: a browser's `SessionResponse` (its cookie is set), or a
/// native app's token.
pub(crate) fn signed_in(
    account: &Account,
    session: &Session,
    token: Option<cloakroom_core::SessionToken>,
) -> Response {
    match token {
        Some(token) => Json(NativeSession {
            session_token: token.expose_cookie_value(),
            expires_at: rfc3339(session.record().absolute_expires_at),
        })
        .into_response(),
        None => Json(session_response(account, session)).into_response(),
    }
}

/// A native app's device name: 1 to 64 characters, none of them control characters; absent,
/// "Native app".
fn device_name(name: Option<&str>) -> Result<String, WebError> {
    let Some(name) = name.map(str::trim) else {
        return Ok("Native app".to_owned());
    };
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(WebError::Body {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_device_name",
            message: "A device name is 1 to 64 characters, none of them control characters."
                .to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// Ends this session and clears the cookie.
#[utoipa::path(post, path = "/api/logout", tag = "sessions",
    security((), ("session_cookie" = [])),
    responses((status = 204, description = "Logged out (also without a session); the cookie is removed, and `Clear-Site-Data: \"cookies\"` sent")))]
pub(crate) async fn logout(auth: Auth) -> Result<Response, WebError> {
    flows::logout(&auth).await?;
    Ok((StatusCode::NO_CONTENT, [CLEAR_SITE_DATA.clone()]).into_response())
}

/// Who am I.
#[utoipa::path(get, path = "/api/session", tag = "sessions",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The user, this session, and its CSRF token", body = SessionResponse),
    ))]
pub(crate) async fn current(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<SessionResponse>, WebError> {
    let account = state
        .accounts
        .store()
        .by_id(session.user_id())
        .await?
        .ok_or(WebError::NotFound("This account no longer exists."))?;
    Ok(Json(session_response(&account, &session)))
}

/// The user's sessions ("your devices"), most recently used first.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions",
    security(("session_cookie" = [])),
    responses((status = 200, description = "The user's sessions", body = Vec<DeviceView>)))]
pub(crate) async fn sessions(session: Session) -> Result<Json<Vec<DeviceView>>, WebError> {
    let list = session.devices().await?;
    Ok(Json(
        list.iter()
            .map(|s| DeviceView {
                id: s.handle.to_string(),
                current: s.id == session.record().id,
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                ip: s.ip.map(|ip| ip.to_string()),
                user_agent: s.user_agent.clone(),
                device: crate::web::device::session_label(s),
            })
            .collect(),
    ))
}

/// Ends one of the user's sessions.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's public handle")),
    security(("session_cookie" = [])),
    responses((status = 204, description = "Ended")))]
pub(crate) async fn revoke(
    session: Session,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, WebError> {
    let not_found = || WebError::NotFound("That session does not exist, or is not yours.");
    // A handle that does not even decode (`%FF`) is no session of yours either; left to
    // axum, it was a plain-text 400.
    let handle = id
        .ok()
        .and_then(|Path(id)| SessionHandle::parse(&id).ok())
        .ok_or_else(not_found)?;
    if !session.revoke_device(&handle).await? {
        return Err(not_found());
    }
    flows::revoked(&session, "revoke_one", 1);
    Ok(StatusCode::NO_CONTENT)
}

/// Signs out of every other device.
#[utoipa::path(post, path = "/api/sessions/revoke-others", tag = "sessions",
    security(("session_cookie" = [])),
    responses((status = 200, description = "How many sessions ended", body = Revoked)))]
pub(crate) async fn revoke_others(session: Session) -> Result<Json<Revoked>, WebError> {
    let revoked = session.logout_other_devices().await?;
    flows::revoked(&session, "revoke_others", revoked);
    Ok(Json(Revoked { revoked }))
}

/// Changes the password: every other session ends, this one is rotated (new cookie).
#[utoipa::path(post, path = "/api/password", tag = "accounts", request_body = PasswordRequest,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Changed; this session was rotated (a new cookie and CSRF token)", body = PasswordChanged),
    ))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    mut session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<PasswordChanged>, WebError> {
    let revoked = flows::change_password(
        &state,
        &mut session,
        ip,
        &req.current_password,
        &req.new_password,
    )
    .await?;
    Ok(Json(PasswordChanged {
        revoked,
        csrf_token: session.csrf_token(),
        session_token: session.new_bearer_token(),
    }))
}

/// `DELETE /api/account`: the password, typed again.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct DeleteAccountRequest {
    /// The account's password.
    #[schema(value_type = String, format = Password)]
    pub(crate) password: Password,
}

/// Deletes the signed-in user's account: every session ends first (this one too; the cookie
/// is cleared), then the account. Its username can be signed up again; its id is never reused.
#[utoipa::path(delete, path = "/api/account", tag = "accounts", request_body = DeleteAccountRequest,
    security(("session_cookie" = [])),
    responses((status = 204, description = "Deleted; every session ended and the cookie is cleared (`Clear-Site-Data: \"cookies\"`)")))]
pub(crate) async fn delete_account(
    State(state): State<AppState>,
    auth: Auth,
    session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<DeleteAccountRequest>,
) -> Result<Response, WebError> {
    flows::delete_account(&state, &auth, &session, ip, &req.password).await?;
    Ok((StatusCode::NO_CONTENT, [CLEAR_SITE_DATA.clone()]).into_response())
}

/// `POST /api/links`: a download link to one URL of a protected app.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct LinkRequest {
    /// The exact URL the link opens: `http(s)://`, on one of `app_origins` (or the public
    /// URL's origin). Its path is bound as written; its query too. No `#fragment`, no `..`
    /// (plain or percent-encoded), no `cloakroom_link` parameter of its own.
    #[schema(example = "https://app.example/files/report.pdf")]
    pub(crate) url: String,
    /// How long the link works: 1 to 3600 seconds.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3600, default = 600)]
    pub(crate) ttl_seconds: Option<u64>,
    /// Whether the first fetch uses it up (a `GET` or `HEAD`); otherwise it works until it
    /// expires.
    #[serde(default = "single_use_by_default")]
    #[schema(default = true)]
    pub(crate) single_use: bool,
}

fn single_use_by_default() -> bool {
    true
}

/// A download link, made.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LinkResponse {
    /// The URL asked for, with `cloakroom_link=<token>` appended: whoever holds it can fetch
    /// that URL (once, if single-use) until it expires, without a session, as you.
    pub(crate) url: String,
    /// When it stops working (RFC 3339).
    pub(crate) expires_at: String,
}

/// Makes a download link: one exact URL of an app behind the proxy, fetchable without a
/// session — on another device, or by `curl` — once or until it expires.
///
/// Forward auth lets a `GET` or `HEAD` of exactly that URL through as you (`"link": true` in
/// the service JWT). The link dies when it expires, when it has been used (if single-use), and
/// when you sign out everywhere, change your password, or your account is disabled.
#[utoipa::path(post, path = "/api/links", tag = "links", request_body = LinkRequest,
    security(("session_cookie" = [])),
    responses((status = 201, description = "The link", body = LinkResponse)))]
pub(crate) async fn create_link(
    State(state): State<AppState>,
    session: Session,
    ApiJson(req): ApiJson<LinkRequest>,
) -> Result<(StatusCode, Json<LinkResponse>), WebError> {
    let ttl = req
        .ttl_seconds
        .map_or(download::DEFAULT_TTL, std::time::Duration::from_secs);
    // A link lends the maker's access: a URL the rules refuse them is not theirs to lend.
    if let Ok(url) = url::Url::parse(&req.url) {
        let identity = state.identities.of(session.user_id()).await?.ok_or(
            cloakroom_axum::Rejection::Unauthenticated(
                cloakroom_axum::Unauthenticated::UnknownSession,
            ),
        )?;
        let raw = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let target = crate::web::forward::rule_target(&state, Some(&url), Some(raw));
        let decision =
            crate::web::forward::rules_decide(&state, target.as_ref(), "GET", Some(&identity));
        if !matches!(
            decision.outcome,
            crate::access::Outcome::Allow | crate::access::Outcome::Bypass
        ) {
            return Err(WebError::Denied {
                user: Some(identity.username.clone()),
            });
        }
    }
    let link = download::create(
        state.links(),
        &state.sessions,
        &state.settings.app_origins,
        session.user_id(),
        &req.url,
        ttl,
        req.single_use,
        state.clock.now(),
    )
    .await?;
    metrics::download_link("created");
    let expires_at = rfc3339(link.expires_at);
    events::link_created(
        &flows::username(&session),
        "user",
        &link.id.to_string(),
        req.single_use,
        &expires_at,
    );
    Ok((
        StatusCode::CREATED,
        Json(LinkResponse {
            url: link.url,
            expires_at,
        }),
    ))
}
