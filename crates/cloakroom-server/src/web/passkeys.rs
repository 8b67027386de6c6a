//! Passkeys on the web (issue 17): registering, naming and removing them, the challenges a
//! second factor, a step-up or a passwordless sign-in answers, and the pages' forms.
//!
//! A ceremony is two requests: `…-options` hands the browser a challenge (and keeps its state
//! server-side, see `mfa::passkey`), then the answer goes where the proof goes — the same
//! `POST /api/login/second-factor` and `POST /api/step-up` as a code, with
//! `{"method": "passkey", "credential": …}`. The pages post the answer in a form field, put
//! there by `/static/passkeys.js`; everything else on them works without script.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Rejection, Session};
use cloakroom_core::mfa::PasskeyRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use crate::mfa::MfaError;
use crate::mfa::passkey::{
    CHALLENGE_KEY, CHALLENGE_LIFETIME, PasskeyError, REGISTRATION_KEY, encode_id,
};
use crate::state::AppState;
use crate::web::api::signed_in;
use crate::web::device::rfc3339;
use crate::web::error::{ApiJson, WebError};
use crate::web::mfa::{After, account_of, changed};
use crate::web::oidc::{cookie_value, set_cookie};
use crate::web::{ClientAddr, flows};

/// The passwordless challenge's cookie: `__Host-`, the session cookie's base name,
/// `-passkey`. Always host-only (it is `Secure`, `Path=/`, without `Domain`): a sibling
/// subdomain cannot plant a cookie of this name beside it, which would make every sign-in
/// fail (two cookies of one name are refused).
pub(crate) fn cookie_name(session_cookie: &str) -> String {
    format!("{}{session_cookie}-passkey", cloakroom_axum::HOST_PREFIX)
}

fn passkey_error(e: PasskeyError, wrong: StatusCode) -> WebError {
    flows::mfa_error(MfaError::Passkey(e), wrong)
}

/// A passkey, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PasskeyView {
    /// The credential id (base64url): how the routes below name it.
    pub(crate) id: String,
    /// The name its owner gave it.
    pub(crate) name: String,
    /// When it was registered (RFC 3339).
    pub(crate) created_at: String,
    /// When it last signed in or stepped up (RFC 3339).
    pub(crate) last_used_at: Option<String>,
}

impl From<&PasskeyRecord> for PasskeyView {
    fn from(p: &PasskeyRecord) -> Self {
        Self {
            id: encode_id(&p.credential_id),
            name: p.name.clone(),
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
        }
    }
}

/// `POST /api/mfa/passkeys`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RegisterRequest {
    /// What to call it ("Laptop"): 1 to 64 characters.
    pub(crate) name: String,
    /// The browser's answer to `navigator.credentials.create()` (JSON, binary fields
    /// base64url), for the options of `POST /api/mfa/passkeys/options`.
    #[schema(value_type = Object)]
    pub(crate) credential: Box<RegisterPublicKeyCredential>,
}

/// A registered passkey, and the account's recovery codes if it had none.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Registered {
    /// The new passkey.
    pub(crate) passkey: PasskeyView,
    /// Ten recovery codes, shown once: made when the account had none (its first factor).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recovery_codes: Option<Vec<String>>,
}

/// `PATCH /api/mfa/passkeys/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RenameRequest {
    /// The new name: 1 to 64 characters.
    pub(crate) name: String,
}

/// `POST /api/login/passkey`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct PasskeySignInRequest {
    /// The browser's answer to `navigator.credentials.get()` for the challenge of
    /// `POST /api/login/passkey-options`.
    #[schema(value_type = Object)]
    pub(crate) credential: Box<PublicKeyCredential>,
    /// "Keep me signed in".
    #[serde(default)]
    pub(crate) remember: bool,
}

/// Options for `navigator.credentials.create()`/`get()`, binary fields base64url (the
/// document's schema only: the answer is the WebAuthn library's).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CeremonyOptions {
    /// The `publicKey` member, as WebAuthn defines it.
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    public_key: (),
}

/// Starts registering a passkey (needs a recent sign-in or step-up, as every new factor).
#[utoipa::path(post, path = "/api/mfa/passkeys/options", tag = "passkeys", operation_id = "passkey_registration_options",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Options for `navigator.credentials.create()`; the state stays in the session", body = CeremonyOptions)))]
pub(crate) async fn registration_options(
    State(state): State<AppState>,
    mut session: Session,
) -> Result<Response, WebError> {
    flows::require_step_up(&state, &session).await?;
    let account = account_of(&state, &session).await?;
    let (options, registration) = state
        .mfa
        .passkeys
        .begin_registration(&account)
        .await
        .map_err(|e| passkey_error(e, StatusCode::BAD_REQUEST))?;
    offer(
        &state,
        &mut session,
        REGISTRATION_KEY,
        &registration,
        &options,
    )
    .await
}

/// A ceremony's state as a session keeps it: with when it was made, since the library's
/// state has no time of its own.
#[derive(Serialize, Deserialize)]
struct Held<T> {
    /// Unix milliseconds.
    at: i64,
    state: T,
}

/// Keeps a ceremony's `state` in `holder`'s data under `key` (server-side, see
/// `mfa::passkey`), and answers the browser's `options`.
async fn offer(
    state: &AppState,
    holder: &mut Session,
    key: &'static str,
    ceremony: &(impl Serialize + Sync),
    options: &impl Serialize,
) -> Result<Response, WebError> {
    let held = Held {
        at: state.clock.now().as_unix_millis(),
        state: ceremony,
    };
    holder
        .update(|d| d.insert(key, &held))
        .await?
        .map_err(flows::refused_data("passkey request"))?;
    Ok(Json(options).into_response())
}

/// Takes a ceremony's state out of `holder`'s data (one versioned write: of two requests
/// answering one challenge, one finds it); `None` if there is none, or it is older than
/// [`CHALLENGE_LIFETIME`].
pub(crate) async fn take<T: serde::de::DeserializeOwned>(
    state: &AppState,
    holder: &mut Session,
    key: &'static str,
) -> Result<Option<T>, WebError> {
    let taken = holder.update(|d| d.remove(key)).await?;
    let now = state.clock.now();
    Ok(taken
        .and_then(|v| serde_json::from_value::<Held<T>>(v).ok())
        .filter(|h| {
            let made = cloakroom_core::Timestamp::from_unix_millis(h.at);
            now.duration_since(made) <= CHALLENGE_LIFETIME
        })
        .map(|h| h.state))
}

/// Registers a passkey from the browser's answer; every other session ends.
#[utoipa::path(post, path = "/api/mfa/passkeys", tag = "passkeys", operation_id = "passkey_register",
    request_body = RegisterRequest,
    security(("session_cookie" = [])),
    responses((status = 201, description = "Registered; every other session of the account has ended", body = Registered)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    mut session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), WebError> {
    let done = add(&state, &mut session, ip, &req.name, &req.credential).await?;
    Ok((StatusCode::CREATED, Json(done)))
}

/// Registration's second half, for the API and the page.
async fn add(
    state: &AppState,
    session: &mut Session,
    ip: Option<std::net::IpAddr>,
    name: &str,
    credential: &RegisterPublicKeyCredential,
) -> Result<Registered, WebError> {
    let bad = |e| passkey_error(e, StatusCode::BAD_REQUEST);
    let name = crate::mfa::passkey::name(name).map_err(bad)?;
    let factors = flows::require_step_up(state, session).await?;
    let registration = take(state, session, REGISTRATION_KEY)
        .await?
        .ok_or_else(|| bad(PasskeyError::NoChallenge))?;
    let account = account_of(state, session).await?;
    let passkey = state
        .mfa
        .passkeys
        .finish_registration(&account, &name, credential, &registration)
        .await
        .map_err(bad)?;
    let recovery_codes = if factors.recovery_codes == 0 {
        Some(
            state
                .mfa
                .new_recovery_codes(&account.id)
                .await
                .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?,
        )
    } else {
        None
    };
    changed(state, session, "passkey", "added", ip).await?;
    Ok(Registered {
        passkey: PasskeyView::from(&passkey),
        recovery_codes,
    })
}

/// The account's passkeys, oldest first.
#[utoipa::path(get, path = "/api/mfa/passkeys", tag = "passkeys", operation_id = "passkey_list",
    security(("session_cookie" = [])),
    responses((status = 200, description = "The account's passkeys", body = [PasskeyView])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<Vec<PasskeyView>>, WebError> {
    let list = state
        .mfa
        .passkeys
        .list(session.user_id())
        .await
        .map_err(|e| passkey_error(e, StatusCode::NOT_FOUND))?;
    Ok(Json(list.iter().map(PasskeyView::from).collect()))
}

/// Renames one of the account's passkeys.
#[utoipa::path(patch, path = "/api/mfa/passkeys/{id}", tag = "passkeys", operation_id = "passkey_rename",
    params(("id" = String, Path, description = "The credential id (base64url)")),
    request_body = RenameRequest,
    security(("session_cookie" = [])),
    responses((status = 200, description = "Renamed", body = PasskeyView)))]
pub(crate) async fn rename(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> Result<Json<PasskeyView>, WebError> {
    let renamed = state
        .mfa
        .passkeys
        .rename(session.user_id(), &id, &req.name)
        .await
        .map_err(|e| passkey_error(e, StatusCode::NOT_FOUND))?;
    Ok(Json(PasskeyView::from(&renamed)))
}

/// Removes one of the account's passkeys (needs a recent second factor); every other session
/// ends.
#[utoipa::path(delete, path = "/api/mfa/passkeys/{id}", tag = "passkeys", operation_id = "passkey_remove",
    params(("id" = String, Path, description = "The credential id (base64url)")),
    security(("session_cookie" = [])),
    responses((status = 204, description = "Removed (with the recovery codes, if no factor is left); every other session of the account has ended")))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
) -> Result<StatusCode, WebError> {
    remove_one(&state, &session, ip, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_one(
    state: &AppState,
    session: &Session,
    ip: Option<std::net::IpAddr>,
    id: &str,
) -> Result<(), WebError> {
    flows::require_step_up(state, session).await?;
    state
        .mfa
        .passkeys
        .remove(session.user_id(), id)
        .await
        .map_err(|e| passkey_error(e, StatusCode::NOT_FOUND))?;
    changed(state, session, "passkey", "removed", ip).await
}

/// A challenge for the passkeys of `holder`'s user, its state kept in `holder`.
async fn challenge(state: &AppState, holder: &mut Session) -> Result<Response, WebError> {
    let (options, challenge) = state
        .mfa
        .passkeys
        .begin_authentication(holder.user_id())
        .await
        .map_err(|e| passkey_error(e, StatusCode::BAD_REQUEST))?;
    offer(state, holder, CHALLENGE_KEY, &challenge, &options).await
}

/// A challenge for the second step of a sign-in (the pending session's passkeys).
#[utoipa::path(post, path = "/api/login/second-factor/passkey-options", tag = "passkeys", operation_id = "passkey_second_factor_options",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Options for `navigator.credentials.get()`; answer with `POST /api/login/second-factor` `{\"method\": \"passkey\", \"credential\": …}`", body = CeremonyOptions)))]
pub(crate) async fn second_factor_options(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, WebError> {
    let mut pending = auth.pending_session().await?.ok_or_else(|| {
        WebError::refused(
            StatusCode::UNAUTHORIZED,
            "no_pending_sign_in",
            "Sign in with your password first.",
        )
    })?;
    challenge(&state, &mut pending).await
}

/// A challenge for step-up (the session's passkeys).
#[utoipa::path(post, path = "/api/step-up/passkey-options", tag = "passkeys", operation_id = "passkey_step_up_options",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Options for `navigator.credentials.get()`; answer with `POST /api/step-up` `{\"method\": \"passkey\", \"credential\": …}`", body = CeremonyOptions)))]
pub(crate) async fn step_up_options(
    State(state): State<AppState>,
    mut session: Session,
) -> Result<Response, WebError> {
    challenge(&state, &mut session).await
}

/// A challenge any of this site's passkeys may answer, to sign in without a password
/// (`passkey_login = true`).
#[utoipa::path(post, path = "/api/login/passkey-options", tag = "passkeys", operation_id = "passkey_sign_in_options",
    responses((status = 200, description = "Options for `navigator.credentials.get()`; its state is sealed in a `__Host-` cookie that lasts 5 minutes and works once", body = CeremonyOptions)))]
pub(crate) async fn sign_in_options(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Response, WebError> {
    auth.require_verified_origin()?;
    let passkeys = &state.mfa.passkeys;
    let unavailable = |e| passkey_error(e, StatusCode::NOT_FOUND);
    let (options, challenge) = passkeys.begin_sign_in().map_err(unavailable)?;
    let mut response = Json(options).into_response();
    let name = cookie_name(&state.settings.cookie_name);
    // The state always serialises (the library's own derive); a cookie that could not be
    // made would only fail the answer later, with `no_challenge`.
    if let Some(v) = passkeys
        .seal_sign_in(challenge)
        .and_then(|sealed| set_cookie(&name, &sealed, CHALLENGE_LIFETIME.as_secs()))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The passwordless challenge's cookie, as the request carries it.
fn challenge_cookie<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie_value(headers, &cookie_name(&state.settings.cookie_name))
}

/// `response`, removing the challenge's cookie: it is spent, whatever the answer was.
fn spent(state: &AppState, mut response: Response) -> Response {
    if let Some(v) = set_cookie(&cookie_name(&state.settings.cookie_name), "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Signs in with a passkey alone (`passkey_login = true`): the session starts at `aal2`.
#[utoipa::path(post, path = "/api/login/passkey", tag = "passkeys", operation_id = "passkey_sign_in",
    request_body = PasskeySignInRequest,
    responses(
        (status = 200, description = "Signed in at `aal2`: a new session cookie", body = crate::web::api::LoginAnswer),
    ))]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PasskeySignInRequest>,
) -> Result<Response, WebError> {
    let cookie = challenge_cookie(&state, &headers);
    let result =
        flows::passkey_sign_in(&state, &auth, ip, cookie, &req.credential, req.remember).await;
    Ok(spent(
        &state,
        match result {
            Ok((account, session)) => signed_in(&account, &session, None),
            Err(e) => e.into_response(),
        },
    ))
}

// --- Pages --------------------------------------------------------------------------------

/// `POST /login/passkey`: the login page's "Sign in with a passkey".
#[derive(Debug, Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    credential: String,
    next: Option<String>,
}

/// `POST /login/passkey`.
pub(crate) async fn sign_in_submit(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    headers: HeaderMap,
    crate::web::error::WebForm(form): crate::web::error::WebForm<SignInForm>,
) -> Response {
    let next =
        crate::web::redirect::ReturnTo::parse(form.next.as_deref(), &state.settings.redirect_hosts);
    let cookie = challenge_cookie(&state, &headers);
    let result = match crate::web::mfa::parse_credential::<PublicKeyCredential>(&form.credential) {
        // The page offers no "keep me signed in" beside the passkey button.
        Ok(credential) => {
            flows::passkey_sign_in(&state, &auth, ip, cookie, &credential, false).await
        }
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(_) => Redirect::to(next.as_str()).into_response(),
        Err(e) => crate::web::pages::login_refused(&state, &auth, &next, &e).await,
    };
    spent(&state, response)
}

/// The security page's "Add a passkey".
#[derive(Debug, Deserialize)]
pub(crate) struct AddForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    credential: String,
}

/// `POST /account/security/passkeys`.
pub(crate) async fn security_add(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
    crate::web::error::WebForm(form): crate::web::error::WebForm<AddForm>,
) -> Result<Response, WebError> {
    crate::web::mfa::security_change(&state, session, async |state, session| {
        let credential =
            crate::web::mfa::parse_credential::<RegisterPublicKeyCredential>(&form.credential)?;
        let done = add(state, session, ip, &form.name, &credential).await?;
        Ok(match done.recovery_codes {
            Some(codes) => After::Show(crate::web::mfa::Shown::Codes(codes)),
            None => After::Done("passkey-added"),
        })
    })
    .await
}

/// The rename form.
#[derive(Debug, Deserialize)]
pub(crate) struct RenameForm {
    #[serde(default)]
    name: String,
}

/// `POST /account/security/passkeys/{id}/rename`.
pub(crate) async fn security_rename(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    Path(id): Path<String>,
    crate::web::error::WebForm(form): crate::web::error::WebForm<RenameForm>,
) -> Result<Response, WebError> {
    crate::web::mfa::security_change(&state, session, async |state, session| {
        state
            .mfa
            .passkeys
            .rename(session.user_id(), &id, &form.name)
            .await
            .map_err(|e| passkey_error(e, StatusCode::NOT_FOUND))?;
        Ok(After::Done("passkey-renamed"))
    })
    .await
}

/// `POST /account/security/passkeys/{id}/remove`.
pub(crate) async fn security_remove(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    crate::web::mfa::security_change(&state, session, async |state, session| {
        remove_one(state, session, ip, &id).await?;
        Ok(After::Done("passkey-removed"))
    })
    .await
}
