//! The JSON API (`/api/…`), described by the OpenAPI document at `/openapi.json`.
//!
//! The session token travels only in the session cookie — never in a query string, a body or
//! an `Authorization` header — so it cannot leak through logs, `Referer` or browser history.

use std::net::IpAddr;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use cloakroom_axum::{Auth, Session};
use cloakroom_core::SessionHandle;
use cloakroom_core::accounts::Account;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Credentials};
use crate::device::{label, rfc3339};
use crate::error::{ApiError, ApiJson};
use crate::metrics;
use crate::passwords::Password;
use crate::state::AppState;

/// The client's address, as the trusted-proxy settings resolve it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(state.client_ip.of(parts)))
    }
}

/// Credentials for `POST /api/login`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The username (case does not matter).
    pub username: String,
    /// The password.
    #[schema(value_type = String, format = Password)]
    pub password: Password,
    /// Keep the session for 30 days of inactivity (90 at most) instead of 30 minutes.
    #[serde(default)]
    pub remember: bool,
}

/// A new account for `POST /api/signup`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SignupRequest {
    /// 3–32 characters: letters, digits, `.`, `_`, `-`; unique without regard to case.
    pub username: String,
    /// At least 12 characters, at most 1,024 bytes; not a common password or the username.
    #[schema(value_type = String, format = Password)]
    pub password: Password,
    /// As for login.
    #[serde(default)]
    pub remember: bool,
}

/// `POST /api/password`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordRequest {
    /// The password in use now.
    #[schema(value_type = String, format = Password)]
    pub current_password: Password,
    /// The new password (same rules as sign-up).
    #[schema(value_type = String, format = Password)]
    pub new_password: Password,
}

/// A user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Stable user id.
    pub id: String,
    /// Username.
    pub username: String,
}

impl From<&Account> for UserView {
    fn from(a: &Account) -> Self {
        Self {
            id: a.id.to_string(),
            username: a.username.to_string(),
        }
    }
}

/// The current session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session's public handle (as in `/api/sessions`).
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 (updated at most once a minute).
    pub last_seen_at: String,
    /// When the session ends if unused (RFC 3339).
    pub idle_expires_at: String,
    /// When the session ends regardless (RFC 3339).
    pub absolute_expires_at: String,
    /// When the user last proved who they are (RFC 3339).
    pub auth_time: String,
    /// How (`password`).
    pub auth_method: String,
    /// Whether this is a "remember me" session.
    pub remember: bool,
}

/// Who am I: `GET /api/session`, and the answer to login, sign-up and password change.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionResponse {
    /// The user.
    pub user: UserView,
    /// This session.
    pub session: SessionView,
    /// Send this in `X-CSRF-Token` with every state-changing request.
    pub csrf_token: String,
}

/// One of the user's sessions, for "your devices".
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Public handle; `DELETE /api/sessions/{id}` ends it.
    pub id: String,
    /// Whether this is the session making the request.
    pub current: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_seen_at: String,
    /// The address it logged in from.
    pub ip: Option<String>,
    /// The user agent it logged in with.
    pub user_agent: Option<String>,
    /// A human label such as "Firefox on Android".
    pub device: String,
}

/// How many sessions an operation ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// Number of sessions ended.
    pub revoked: u64,
}

/// The answer to a password change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    /// Number of other sessions ended.
    pub revoked: u64,
    /// The rotated session's CSRF token (the old one is void).
    pub csrf_token: String,
}

/// Every error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code such as `invalid_credentials`.
    pub error: String,
    /// What happened and what to do.
    pub message: String,
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
    }
}

fn session_response(account: &Account, session: &Session) -> SessionResponse {
    SessionResponse {
        user: account.into(),
        session: session_view(session.record()),
        csrf_token: session.csrf_token(),
    }
}

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/api/signup", tag = "accounts", request_body = SignupRequest,
    responses(
        (status = 201, description = "Account created; the session cookie is set", body = SessionResponse),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Username or password breaks the rules", body = ErrorBody),
        (status = 403, description = "Cross-origin request", body = ErrorBody),
    ))]
pub async fn signup(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let creds = Credentials {
        username: req.username,
        password: req.password,
        remember: req.remember,
    };
    let (account, session) = auth::signup(&state, &auth, creds).await?;
    Ok((
        StatusCode::CREATED,
        Json(session_response(&account, &session)),
    ))
}

/// Logs in with a username and password.
#[utoipa::path(post, path = "/api/login", tag = "sessions", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = SessionResponse),
        (status = 401, description = "Unknown user or wrong password (indistinguishable)", body = ErrorBody),
        (status = 403, description = "Account disabled, or cross-origin request", body = ErrorBody),
        (status = 429, description = "Too many failures; see Retry-After", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SessionResponse>, ApiError> {
    let creds = Credentials {
        username: req.username,
        password: req.password,
        remember: req.remember,
    };
    let (account, session) = auth::login(&state, &auth, ip, creds).await?;
    Ok(Json(session_response(&account, &session)))
}

/// Ends this session and clears the cookie.
#[utoipa::path(post, path = "/api/logout", tag = "sessions",
    responses((status = 204, description = "Logged out (also without a session)")))]
pub async fn logout(auth: Auth) -> Result<StatusCode, ApiError> {
    let had = auth.session().await?.is_some();
    auth.logout().await?;
    if had {
        metrics::revoked("logout", 1);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Who am I.
#[utoipa::path(get, path = "/api/session", tag = "sessions",
    responses(
        (status = 200, body = SessionResponse),
        (status = 401, description = "No session", body = ErrorBody),
    ))]
pub async fn current(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<SessionResponse>, ApiError> {
    let account = state
        .accounts
        .by_id(session.user_id())
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    Ok(Json(session_response(&account, &session)))
}

/// The user's sessions ("your devices"), most recently used first.
#[utoipa::path(get, path = "/api/sessions", tag = "sessions",
    responses((status = 200, body = Vec<DeviceView>), (status = 401, body = ErrorBody)))]
pub async fn sessions(session: Session) -> Result<Json<Vec<DeviceView>>, ApiError> {
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
                device: label(s.user_agent.as_deref()),
            })
            .collect(),
    ))
}

/// Ends one of the user's sessions.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "The session's public handle")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such session of yours", body = ErrorBody),
    ))]
pub async fn revoke(session: Session, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let handle = SessionHandle::parse(&id).map_err(|_| ApiError::NotFound("session"))?;
    if !session.revoke_device(&handle).await? {
        return Err(ApiError::NotFound("session"));
    }
    metrics::revoked("revoke_one", 1);
    Ok(StatusCode::NO_CONTENT)
}

/// Logs out of every other device.
#[utoipa::path(post, path = "/api/sessions/revoke-others", tag = "sessions",
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody)))]
pub async fn revoke_others(session: Session) -> Result<Json<Revoked>, ApiError> {
    let revoked = session.logout_other_devices().await?;
    metrics::revoked("revoke_others", revoked);
    Ok(Json(Revoked { revoked }))
}

/// Changes the password: every other session ends, this one is rotated (new cookie).
#[utoipa::path(post, path = "/api/password", tag = "accounts", request_body = PasswordRequest,
    responses(
        (status = 200, body = PasswordChanged),
        (status = 403, description = "Current password wrong", body = ErrorBody),
        (status = 422, description = "New password breaks the rules", body = ErrorBody),
        (status = 429, description = "Too many failures", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    mut session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let revoked = auth::change_password(
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
    }))
}

/// The OpenAPI description of this API.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Cloakroom", description = "Server-side sessions: accounts, login, your devices, log out everywhere. \
        Authentication is the `__Host-cloakroom` cookie only. State-changing requests must come from the \
        server's own origin (Fetch Metadata / Origin) and, with a session, carry its CSRF token in `X-CSRF-Token`."),
    paths(signup, login, logout, current, sessions, revoke, revoke_others, change_password),
    components(schemas(LoginRequest, SignupRequest, PasswordRequest, SessionResponse, UserView, SessionView,
        DeviceView, Revoked, PasswordChanged, ErrorBody)),
    tags((name = "sessions"), (name = "accounts")),
)]
pub struct ApiDoc;
