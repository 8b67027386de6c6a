//! Second factors on the web (issue 17): the JSON interface for an authenticator app (TOTP)
//! and recovery codes, the second step of a sign-in, step-up, and their pages — which work
//! without JavaScript (the QR code is an inline SVG drawn on the server).
//!
//! The API's routes and fields are fixed (other tools are built against them):
//! `POST /api/mfa/totp`, `POST /api/mfa/totp/confirm`, `DELETE /api/mfa/totp`,
//! `POST /api/login/second-factor`, `POST /api/step-up`, and `auth_level` in
//! `GET /api/session`.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Rejection, Session};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::passwords::Password;
use crate::mfa::{Method, Proof};
use crate::state::AppState;
use crate::web::api::{SessionResponse, session_response, signed_in};
use crate::web::error::{ApiJson, WebError, WebForm, WebQuery};
use crate::web::flows;
use crate::web::pages::{Nav, NextQuery, Visitor, nav, personal, render};
use crate::web::redirect::ReturnTo;
use crate::web::site::Site;
use crate::web::{ClientAddr, pages};
use crate::{events, metrics};
use webauthn_rs::prelude::PublicKeyCredential;

// --- The API ------------------------------------------------------------------------------

/// A second factor: `POST /api/login/second-factor`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct SecondFactorRequest {
    /// `totp`, `recovery_code` or `passkey`.
    pub(crate) method: Method,
    /// For `totp` and `recovery_code`: six digits from the app, or a recovery code
    /// (`xxxx-xxxx-xxxx`; case, spaces and dashes do not matter).
    #[serde(default)]
    pub(crate) code: Option<String>,
    /// For `passkey`: the browser's `PublicKeyCredential` (as JSON, binary fields base64url)
    /// answering the challenge of `POST /api/login/second-factor/passkey-options`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) credential: Option<Box<PublicKeyCredential>>,
}

/// The proof a request names: a code for `totp` and `recovery_code`, a credential for
/// `passkey`; 422 when it is missing.
pub(crate) fn proof(
    method: Method,
    code: Option<String>,
    credential: Option<Box<PublicKeyCredential>>,
) -> Result<Proof, WebError> {
    let missing = |field: &str| {
        WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &format!("`{field}` is needed for this method."),
        )
    };
    match method {
        Method::Passkey => credential
            .map(Proof::Passkey)
            .ok_or_else(|| missing("credential")),
        m => code
            .map(|c| Proof::Code(m, c))
            .ok_or_else(|| missing("code")),
    }
}

/// What `POST /api/login` answers for an account with a second factor.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecondFactorRequired {
    /// Always `true`: no session yet. A pending session cookie is set, which every route but
    /// `POST /api/login/second-factor` treats as signed out; it lasts 5 minutes.
    pub(crate) second_factor_required: bool,
    /// What the account can give: `totp`, `recovery_code`.
    pub(crate) methods: Vec<&'static str>,
    /// A native app's pending token (send it as `Authorization: Bearer` to
    /// `POST /api/login/second-factor`); absent for a browser.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_token: Option<String>,
}

/// `POST /api/step-up`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct StepUpRequest {
    /// `totp`, `recovery_code`, `passkey`, or — for an account without a second factor only
    /// — `password`.
    pub(crate) method: StepUpMethod,
    /// The code, for `totp` and `recovery_code`.
    #[serde(default)]
    pub(crate) code: Option<String>,
    /// For `passkey`: the answer to `POST /api/step-up/passkey-options`'s challenge.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) credential: Option<Box<PublicKeyCredential>>,
    /// The password, for `password`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub(crate) password: Option<Password>,
}

/// How to step up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StepUpMethod {
    /// A code from the authenticator app.
    Totp,
    /// A recovery code.
    RecoveryCode,
    /// A passkey.
    Passkey,
    /// The password (accounts without a second factor).
    Password,
}

impl StepUpMethod {
    /// The second factor it names; `None` for the password.
    fn factor(self) -> Option<Method> {
        match self {
            Self::Totp => Some(Method::Totp),
            Self::RecoveryCode => Some(Method::RecoveryCode),
            Self::Passkey => Some(Method::Passkey),
            Self::Password => None,
        }
    }
}

/// `POST /api/step-up`'s answer: the session, and a native app's new token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SteppedUp {
    /// The session after the step-up (its new CSRF token included).
    #[serde(flatten)]
    pub(crate) session: SessionResponse,
    /// A native app's new session token (the old one no longer works); absent for a browser,
    /// whose new cookie is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_token: Option<String>,
}

/// `POST /api/mfa/totp`: the new authenticator, not on until confirmed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TotpEnrolment {
    /// The secret, base32 without padding, for typing into the app.
    pub(crate) secret: String,
    /// `otpauth://totp/<site>:<user>?secret=…&issuer=…`, for a QR code.
    pub(crate) otpauth_url: String,
}

/// `POST /api/mfa/totp/confirm`.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct TotpConfirmRequest {
    /// The code the app shows now.
    pub(crate) code: String,
}

/// New recovery codes, shown once.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RecoveryCodes {
    /// Ten single-use codes.
    pub(crate) recovery_codes: Vec<String>,
}

/// `GET /api/mfa`: which factors the account has.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FactorsView {
    /// Whether an authenticator app is on.
    pub(crate) totp: bool,
    /// Recovery codes not used yet.
    pub(crate) recovery_codes_left: u32,
    /// Registered passkeys.
    pub(crate) passkeys: u32,
    /// This session's level: `aal1` or `aal2`.
    pub(crate) auth_level: &'static str,
}

/// Finishes a sign-in with its second factor.
#[utoipa::path(post, path = "/api/login/second-factor", tag = "second factors",
    request_body = SecondFactorRequest,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Signed in at `aal2`: the pending session is replaced by a new one (a new cookie; a native app gets a `NativeSession`)", body = crate::web::api::LoginAnswer),
    ))]
pub(crate) async fn login_second_factor(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<SecondFactorRequest>,
) -> Result<Response, WebError> {
    let proof = proof(req.method, req.code, req.credential)?;
    let (account, session, token) = flows::second_factor(&state, &auth, ip, proof).await?;
    Ok(signed_in(&account, &session, token))
}

/// Raises this session to `aal2` (or, without a second factor, confirms the password again).
#[utoipa::path(post, path = "/api/step-up", tag = "second factors",
    request_body = StepUpRequest,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Confirmed: the session has a new token (and CSRF token) and is at `aal2` after a second factor", body = SteppedUp),
    ))]
pub(crate) async fn step_up(
    State(state): State<AppState>,
    mut session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<StepUpRequest>,
) -> Result<Json<SteppedUp>, WebError> {
    let account = run_step_up(&state, &mut session, ip, req).await?;
    Ok(Json(SteppedUp {
        session: session_response(&account, &session),
        session_token: session.new_bearer_token(),
    }))
}

/// Steps up by the request's method: a second factor, or (without one) the password.
async fn run_step_up(
    state: &AppState,
    session: &mut Session,
    ip: Option<std::net::IpAddr>,
    req: StepUpRequest,
) -> Result<cloakroom_core::accounts::Account, WebError> {
    let missing = |field: &str| {
        WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &format!("`{field}` is needed for this method."),
        )
    };
    if let Some(method) = req.method.factor() {
        let proof = proof(method, req.code, req.credential)?;
        return flows::step_up(state, session, ip, proof).await;
    }
    if state.mfa.factors(session.user_id()).await?.any() {
        return Err(WebError::refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "second_factor_needed",
            "This account has a second factor: step up with it, not the password.",
        ));
    }
    let password = req.password.ok_or_else(|| missing("password"))?;
    flows::step_up_password(state, session, ip, &password).await
}

/// The account's factors and this session's level.
#[utoipa::path(get, path = "/api/mfa", tag = "second factors",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Which factors the account has", body = FactorsView)))]
pub(crate) async fn factors(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<FactorsView>, WebError> {
    let f = state.mfa.factors(session.user_id()).await?;
    Ok(Json(FactorsView {
        totp: f.totp,
        recovery_codes_left: f.recovery_codes,
        passkeys: f.passkeys,
        auth_level: crate::mfa::level::AuthLevel::of(session.record()).as_str(),
    }))
}

/// Starts setting up an authenticator app (needs a recent sign-in or step-up).
#[utoipa::path(post, path = "/api/mfa/totp", tag = "second factors",
    security(("session_cookie" = [])),
    responses((status = 200, description = "The new secret; it is not used until confirmed", body = TotpEnrolment)))]
pub(crate) async fn totp_begin(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<TotpEnrolment>, WebError> {
    flows::require_step_up(&state, &session).await?;
    let account = account_of(&state, &session).await?;
    let enrolment = state
        .mfa
        .begin_totp(&account)
        .await
        .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?;
    Ok(Json(TotpEnrolment {
        secret: enrolment.secret,
        otpauth_url: enrolment.otpauth_url,
    }))
}

/// Turns the authenticator on with its first code; every other session ends.
#[utoipa::path(post, path = "/api/mfa/totp/confirm", tag = "second factors",
    request_body = TotpConfirmRequest,
    security(("session_cookie" = [])),
    responses((status = 200, description = "On: ten recovery codes, shown once; every other session of the account has ended", body = RecoveryCodes)))]
pub(crate) async fn totp_confirm(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(ip): ClientAddr,
    ApiJson(req): ApiJson<TotpConfirmRequest>,
) -> Result<Json<RecoveryCodes>, WebError> {
    let codes = confirm(&state, &session, ip, &req.code).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

async fn confirm(
    state: &AppState,
    session: &Session,
    ip: Option<std::net::IpAddr>,
    code: &str,
) -> Result<Vec<String>, WebError> {
    flows::require_step_up(state, session).await?;
    let codes = state
        .mfa
        .confirm_totp(session.user_id(), code)
        .await
        .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?;
    changed(state, session, "totp", "added", ip).await?;
    Ok(codes)
}

/// Turns the authenticator app off (needs a recent second factor); every other session ends.
#[utoipa::path(delete, path = "/api/mfa/totp", tag = "second factors",
    security(("session_cookie" = [])),
    responses((status = 204, description = "Off (with the recovery codes, unless another factor is left); every other session of the account has ended")))]
pub(crate) async fn totp_remove(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(ip): ClientAddr,
) -> Result<StatusCode, WebError> {
    remove(&state, &session, ip).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    state: &AppState,
    session: &Session,
    ip: Option<std::net::IpAddr>,
) -> Result<(), WebError> {
    flows::require_step_up(state, session).await?;
    state
        .mfa
        .remove_totp(session.user_id())
        .await
        .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?;
    changed(state, session, "totp", "removed", ip).await
}

/// Replaces the recovery codes (needs a recent second factor).
#[utoipa::path(post, path = "/api/mfa/recovery-codes", tag = "second factors",
    security(("session_cookie" = [])),
    responses((status = 200, description = "Ten new codes, shown once; the old ones no longer work", body = RecoveryCodes)))]
pub(crate) async fn recovery_codes(
    State(state): State<AppState>,
    session: Session,
    ClientAddr(ip): ClientAddr,
) -> Result<Json<RecoveryCodes>, WebError> {
    let codes = new_codes(&state, &session, ip).await?;
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

async fn new_codes(
    state: &AppState,
    session: &Session,
    ip: Option<std::net::IpAddr>,
) -> Result<Vec<String>, WebError> {
    if !flows::require_step_up(state, session).await?.any() {
        return Err(WebError::refused(
            StatusCode::CONFLICT,
            "no_second_factor",
            "Recovery codes stand in for a second factor: set one up first.",
        ));
    }
    let codes = state
        .mfa
        .new_recovery_codes(session.user_id())
        .await
        .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?;
    changed(state, session, "recovery_codes", "replaced", ip).await?;
    Ok(codes)
}

/// After a factor changed: every other session ends, the event is logged, and the account's
/// verified address hears of it (a failure to queue that mail is logged; the change stands).
pub(crate) async fn changed(
    state: &AppState,
    session: &Session,
    factor: &str,
    change: &str,
    ip: Option<std::net::IpAddr>,
) -> Result<(), WebError> {
    let ended = session.logout_other_devices().await?;
    metrics::revoked("factor_changed", ended);
    events::factor_changed(&flows::username(session), factor, change, ended, ip);
    let sentence = match (factor, change) {
        ("totp", "added") => "An authenticator app was set up.",
        ("totp", _) => "The authenticator app was turned off.",
        ("passkey", "added") => "A passkey was added.",
        ("passkey", _) => "A passkey was removed.",
        _ => "New recovery codes were made; the old ones no longer work.",
    };
    let account = account_of(state, session).await?;
    if let Some(to) = account.verified_email() {
        let notice = crate::mail::Mail::FactorChanged {
            to: to.clone(),
            username: account.username.as_str().to_owned(),
            change: sentence.to_owned(),
        };
        if let Err(e) = state.mailer.enqueue(notice).await {
            tracing::error!(error = %crate::error_chain::chain(&e), user = %account.username, "could not queue the factor-change notice");
        }
    }
    Ok(())
}

pub(crate) async fn account_of(
    state: &AppState,
    session: &Session,
) -> Result<cloakroom_core::accounts::Account, WebError> {
    Ok(state
        .accounts
        .store()
        .by_id(session.user_id())
        .await?
        .ok_or(crate::accounts::AccountsError::UnknownAccount)?)
}

// --- Pages --------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    title: &'static str,
    action: &'static str,
    csrf: String,
    next: String,
    /// The code methods (`totp`, `recovery_code`).
    methods: Vec<&'static str>,
    /// Where the passkey form asks for its challenge, when the account has a passkey.
    passkey_options: Option<&'static str>,
    password: bool,
    error: Option<String>,
}

/// The methods a page offers: the code methods, and the passkey's challenge route if any.
fn page_methods(
    factors: &cloakroom_core::mfa::Factors,
    options: &'static str,
) -> (Vec<&'static str>, Option<&'static str>) {
    let mut methods = crate::mfa::SecondFactors::methods(factors);
    let passkey = methods.contains(&Method::Passkey.as_str());
    methods.retain(|m| *m != Method::Passkey.as_str());
    (methods, passkey.then_some(options))
}

/// The second-factor and step-up forms.
#[derive(Debug, Deserialize)]
pub(crate) struct CodeForm {
    method: StepUpMethod,
    #[serde(default)]
    code: Option<String>,
    /// A passkey's answer, as the page's script puts it in the form (JSON).
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    password: Option<Password>,
    #[serde(default)]
    next: Option<String>,
}

/// A credential a page's script put in a form field (JSON); 400 if it is not one.
pub(crate) fn parse_credential<T: serde::de::DeserializeOwned>(
    json: &str,
) -> Result<Box<T>, WebError> {
    serde_json::from_str(json).map_err(|_| {
        WebError::refused(
            StatusCode::BAD_REQUEST,
            "invalid_credential",
            "The passkey's answer could not be read. Try again.",
        )
    })
}

/// The proof a page's form gives.
fn form_proof(
    method: Method,
    code: Option<String>,
    credential: Option<&str>,
) -> Result<Proof, WebError> {
    let credential = credential.map(parse_credential).transpose()?;
    proof(method, code.or(Some(String::new())), credential)
}

/// The second step of a sign-in (for the `pending` session's user), with `error` if any.
async fn pending_form(
    state: &AppState,
    pending: &Session,
    next: &ReturnTo,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, WebError> {
    let factors = state.mfa.factors(pending.user_id()).await?;
    let (methods, passkey_options) =
        page_methods(&factors, "/api/login/second-factor/passkey-options");
    Ok(render(
        status,
        &SecondFactorPage {
            site: &state.site,
            nav: None,
            title: "Confirm it is you",
            action: "/login/second-factor",
            // A pending session needs none: the form is checked by its origin, as the login's.
            csrf: String::new(),
            next: next.as_str().to_owned(),
            methods,
            passkey_options,
            password: false,
            error,
        },
    ))
}

/// `GET /login/second-factor`: the second step of a sign-in.
pub(crate) async fn second_factor_page(
    State(state): State<AppState>,
    auth: Auth,
    WebQuery(q): WebQuery<NextQuery>,
) -> Result<Response, WebError> {
    match auth.pending_session().await? {
        Some(pending) => {
            pending_form(&state, &pending, &q.target(&state), StatusCode::OK, None).await
        }
        None => Ok(Redirect::to("/login").into_response()),
    }
}

/// `POST /login/second-factor`.
pub(crate) async fn second_factor_submit(
    State(state): State<AppState>,
    auth: Auth,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<CodeForm>,
) -> Result<Response, WebError> {
    let next = ReturnTo::parse(form.next.as_deref(), &state.settings.redirect_hosts);
    let Some(method) = form.method.factor() else {
        return Ok(Redirect::to("/login").into_response());
    };
    let result = match form_proof(method, form.code, form.credential.as_deref()) {
        Ok(proof) => flows::second_factor(&state, &auth, ip, proof)
            .await
            .map(drop),
        Err(e) => Err(e),
    };
    let Err(e) = result else {
        return Ok(Redirect::to(next.as_str()).into_response());
    };
    // No pending sign-in (any more): from the start.
    let Some(pending) = auth.pending_session().await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let mut response = pending_form(&state, &pending, &next, e.status(), Some(e.message())).await?;
    pages::add_retry_after(&mut response, &e);
    Ok(response)
}

async fn step_up_form(
    state: &AppState,
    session: &Session,
    next: &ReturnTo,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, WebError> {
    let factors = state.mfa.factors(session.user_id()).await?;
    let (methods, passkey_options) = page_methods(&factors, "/api/step-up/passkey-options");
    Ok(render(
        status,
        &SecondFactorPage {
            site: &state.site,
            nav: Some(nav(session)),
            title: "Confirm it is you",
            action: "/step-up",
            csrf: session.csrf_token(),
            next: next.as_str().to_owned(),
            methods,
            passkey_options,
            // Without a factor the password confirms it is you — except where a rule asked
            // for a second factor (an app's absolute URL), which a password cannot be.
            password: !factors.any() && !next.as_str().starts_with("http"),
            error,
        },
    ))
}

/// `GET /step-up?rd=`: where forward auth sends a session with one factor that a rule asks
/// two of, and where the security page sends a change that needs a recent second factor.
pub(crate) async fn step_up_page(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<NextQuery>,
) -> Result<Response, WebError> {
    let next = q.target(&state);
    let session = match personal(session, &format!("/step-up?next={}", next.as_str())) {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    step_up_form(&state, &session, &next, StatusCode::OK, None).await
}

/// `POST /step-up`.
pub(crate) async fn step_up_submit(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<CodeForm>,
) -> Result<Response, WebError> {
    let next = ReturnTo::parse(form.next.as_deref(), &state.settings.redirect_hosts);
    let mut session = match personal(session, "/step-up") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let credential = match form.credential.as_deref().map(parse_credential).transpose() {
        Ok(c) => c,
        Err(e) => {
            return step_up_form(&state, &session, &next, e.status(), Some(e.message())).await;
        }
    };
    let req = StepUpRequest {
        method: form.method,
        code: form.code,
        credential,
        password: form.password,
    };
    match run_step_up(&state, &mut session, ip, req).await {
        Ok(_) => Ok(Redirect::to(next.as_str()).into_response()),
        Err(e) => {
            let mut response =
                step_up_form(&state, &session, &next, e.status(), Some(e.message())).await?;
            pages::add_retry_after(&mut response, &e);
            Ok(response)
        }
    }
}

#[derive(Template)]
#[template(path = "security.html")]
struct SecurityPage<'a> {
    site: &'a Site,
    nav: Option<Nav>,
    csrf: String,
    totp: bool,
    recovery_left: u32,
    /// Whether this server offers passkeys (a public URL on a domain name).
    passkeys_available: bool,
    passkeys: Vec<PasskeyRow>,
    enrolment: Option<crate::mfa::Enrolment>,
    recovery_codes: Option<Vec<String>>,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// A passkey as the security page lists it: times in words, as every page gives them.
struct PasskeyRow {
    id: String,
    name: String,
    created_words: String,
    last_used_words: Option<String>,
}

/// What the security page shows besides the account's factors.
pub(crate) enum Shown {
    /// The status, with a notice.
    Status(Option<&'static str>),
    /// A new authenticator to scan and confirm.
    Enrolment(crate::mfa::Enrolment),
    /// Recovery codes, once.
    Codes(Vec<String>),
}

/// `?done=` after a change on the security page.
#[derive(Debug, Deserialize)]
pub(crate) struct DoneQuery {
    done: Option<String>,
}

async fn security(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    shown: Shown,
    error: Option<String>,
) -> Result<Response, WebError> {
    let f = state.mfa.factors(session.user_id()).await?;
    let passkeys = state
        .mfa
        .passkeys
        .list(session.user_id())
        .await
        .map_err(|e| flows::mfa_error(e.into(), StatusCode::NOT_FOUND))?;
    // The default conventions: these handlers do not read `Accept-Language`.
    let (now, style) = (
        state.clock.now(),
        crate::web::when::Style::from_accept_language(None),
    );
    let (mut enrolment, mut recovery_codes, mut notice) = (None, None, None);
    match shown {
        Shown::Status(n) => notice = n,
        Shown::Enrolment(e) => enrolment = Some(e),
        Shown::Codes(c) => recovery_codes = Some(c),
    }
    Ok(render(
        status,
        &SecurityPage {
            site: &state.site,
            nav: Some(nav(session)),
            csrf: session.csrf_token(),
            totp: f.totp,
            recovery_left: f.recovery_codes,
            passkeys_available: state.mfa.passkeys.available(),
            passkeys: passkeys
                .into_iter()
                .map(|p| PasskeyRow {
                    created_words: crate::web::when::at(p.created_at, now, style),
                    last_used_words: p.last_used_at.map(|t| crate::web::when::at(t, now, style)),
                    id: crate::mfa::passkey::encode_id(&p.credential_id),
                    name: p.name,
                })
                .collect(),
            enrolment,
            recovery_codes,
            notice,
            error,
        },
    ))
}

/// `GET /account/security`.
pub(crate) async fn security_page(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    WebQuery(q): WebQuery<DoneQuery>,
) -> Result<Response, WebError> {
    let session = match personal(session, "/account/security") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let notice = match q.done.as_deref() {
        Some("removed") => Some("The authenticator app is off. Every other device was signed out."),
        Some("passkey-added") => Some("The passkey was added. Every other device was signed out."),
        Some("passkey-renamed") => Some("The passkey was renamed."),
        Some("passkey-removed") => {
            Some("The passkey was removed. Every other device was signed out.")
        }
        _ => None,
    };
    security(
        &state,
        &session,
        StatusCode::OK,
        Shown::Status(notice),
        None,
    )
    .await
}

/// A change from the security page's forms: done (its page, or back to the status), sent to
/// step up first, or the page again with the refusal — and, for a wrong first code, the same
/// authenticator again, so an app that scanned it needs no new scan.
pub(crate) async fn security_change(
    state: &AppState,
    session: Result<Session, Rejection>,
    change: impl AsyncFnOnce(&AppState, &mut Session) -> Result<After, WebError>,
) -> Result<Response, WebError> {
    let mut session = match personal(session, "/account/security") {
        Visitor::SignedIn(s) => s,
        Visitor::Away(away) => return Ok(away),
    };
    let e = match change(state, &mut session).await {
        Ok(After::Show(shown)) => {
            return security(state, &session, StatusCode::OK, shown, None).await;
        }
        Ok(After::Done(done)) => {
            return Ok(Redirect::to(&format!("/account/security?done={done}")).into_response());
        }
        Err(e) => e,
    };
    if matches!(
        &e,
        WebError::Body {
            code: "step_up_required",
            ..
        }
    ) {
        return Ok(Redirect::to("/step-up?next=/account/security").into_response());
    }
    let again = match &e {
        WebError::Body {
            code: "invalid_code",
            ..
        } => {
            let account = account_of(state, &session).await?;
            state.mfa.enrolment(&account).await.ok().flatten()
        }
        _ => None,
    };
    let shown = again.map_or(Shown::Status(None), Shown::Enrolment);
    security(state, &session, e.status(), shown, Some(e.message())).await
}

/// How a change on the security page ends: a page to show (a new authenticator, recovery
/// codes), or done — back to the status, with the notice `?done=` names.
pub(crate) enum After {
    /// Show this.
    Show(Shown),
    /// Back to the status page.
    Done(&'static str),
}

/// `POST /account/security/totp`: a new secret, with its QR code and the confirming form.
pub(crate) async fn security_totp_begin(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
) -> Result<Response, WebError> {
    security_change(&state, session, async |state, session| {
        flows::require_step_up(state, session).await?;
        let account = account_of(state, session).await?;
        let enrolment = state
            .mfa
            .begin_totp(&account)
            .await
            .map_err(|e| flows::mfa_error(e, StatusCode::BAD_REQUEST))?;
        Ok(After::Show(Shown::Enrolment(enrolment)))
    })
    .await
}

/// The confirming form.
#[derive(Debug, Deserialize)]
pub(crate) struct ConfirmForm {
    code: String,
}

/// `POST /account/security/totp/confirm`: on, and the recovery codes shown once.
pub(crate) async fn security_totp_confirm(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
    WebForm(form): WebForm<ConfirmForm>,
) -> Result<Response, WebError> {
    security_change(&state, session, async |state, session| {
        Ok(After::Show(Shown::Codes(
            confirm(state, session, ip, &form.code).await?,
        )))
    })
    .await
}

/// `POST /account/security/totp/remove`.
pub(crate) async fn security_totp_remove(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
) -> Result<Response, WebError> {
    security_change(&state, session, async |state, session| {
        remove(state, session, ip)
            .await
            .map(|()| After::Done("removed"))
    })
    .await
}

/// `POST /account/security/recovery-codes`.
pub(crate) async fn security_recovery_codes(
    State(state): State<AppState>,
    session: Result<Session, Rejection>,
    ClientAddr(ip): ClientAddr,
) -> Result<Response, WebError> {
    security_change(&state, session, async |state, session| {
        Ok(After::Show(Shown::Codes(
            new_codes(state, session, ip).await?,
        )))
    })
    .await
}
