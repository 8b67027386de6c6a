//! The one place errors become HTTP responses.
//!
//! A handler fails with a [`WebError`]; the session layer and its extractors fail with a
//! [`Rejection`], which converts into one. Neither writes a body itself: returning one from a
//! handler yields a bodiless placeholder that carries the typed error, and the route group's
//! [`render`] middleware — the only renderer — writes it in the group's [`Format`]: JSON for
//! the API, operations and forward auth, an HTML page for the pages. Nothing ever parses a
//! response body to find out what went wrong.
//!
//! Client errors answer with their status and say what to fix (`{"error": "<code>",
//! "message": "…"}` or the same sentence on a page). Messages are written for people —
//! capitalised sentences with full stops, in the words of the pages ("sign in") — while the
//! `error` code is the contract programs match on. Server-side failures answer generically
//! ("try again in a moment") and are logged once, with their cause; no internal detail
//! reaches the client.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloakroom_axum::{Rejection, Unauthenticated};
use cloakroom_core::StoreError;
use serde::de::DeserializeOwned;

use crate::accounts::{AccountsError, ceil_secs};
use crate::metrics;
use crate::tokens::download;
use crate::web::api::ErrorBody;
use crate::web::pages::{self, Nav};
use crate::web::site::Site;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebError {
    /// A refusal from the session layer (401, 403, 503 …).
    #[error(transparent)]
    Session(Rejection),
    /// An account flow refused.
    #[error(transparent)]
    Accounts(AccountsError),
    /// A request body or query string that could not be read, or a form that contradicts
    /// itself.
    #[error("{message}")]
    Body {
        /// 400, 413, 415 or 422.
        status: StatusCode,
        /// The machine-readable code.
        code: &'static str,
        /// What to fix.
        message: String,
    },
    /// No such thing (a session handle that is not yours, …); the message says what.
    #[error("{0}")]
    NotFound(&'static str),
    /// An access rule refused the request (forward auth, the admin API): 403, and never a
    /// way to the login page for someone signed in — signing in again changes nothing.
    #[error("{}", denied_message(.user.as_deref()))]
    Denied {
        /// Who is signed in, if anyone.
        user: Option<String>,
    },
    /// A forward-auth refusal: the proxy passes the status on.
    #[error("{message}")]
    Forward {
        /// 400, 401, 403 or 503.
        status: StatusCode,
        /// Why.
        message: Cow<'static, str>,
    },
    /// A request carrying a download link was refused (forward auth).
    #[error(transparent)]
    Link(download::Refusal),
    /// A download link was not made (`POST /api/links`).
    #[error(transparent)]
    LinkCreate(download::CreateError),
    /// A store failed.
    #[error("store failure")]
    Store(#[from] StoreError),
    /// The request was not answered within `request_timeout_secs`.
    #[error("The server took too long to answer. Try again in a moment.")]
    TimedOut,
}

impl From<Rejection> for WebError {
    fn from(r: Rejection) -> Self {
        Self::Session(r)
    }
}

impl From<AccountsError> for WebError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Store(s) => Self::Store(s),
            // The session outlived its account: to the client it is a session that ended.
            AccountsError::UnknownAccount => {
                Self::Session(Rejection::Unauthenticated(Unauthenticated::UnknownSession))
            }
            other => Self::Accounts(other),
        }
    }
}

impl From<download::CreateError> for WebError {
    fn from(e: download::CreateError) -> Self {
        match e {
            download::CreateError::Store(s) => Self::Store(s),
            other => Self::LinkCreate(other),
        }
    }
}

impl WebError {
    /// A body that contradicts itself (two passwords that differ, …); `message` is a
    /// sentence.
    pub(crate) fn mismatch(message: &str) -> Self {
        Self::Body {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "mismatch",
            message: message.to_owned(),
        }
    }

    /// A refusal of the client's own: `status` (a 4xx), a stable `code`, and a sentence.
    pub(crate) fn refused(status: StatusCode, code: &'static str, message: &str) -> Self {
        Self::Body {
            status,
            code,
            message: message.to_owned(),
        }
    }

    /// A single-use link whose token did not verify: `expired` when it is past its lifetime,
    /// `invalid` for anything else (not ours, altered, another kind), each a code and a
    /// sentence (both 400).
    pub(crate) fn bad_link(
        e: &cloakroom_core::link::LinkError,
        expired: (&'static str, &str),
        invalid: (&'static str, &str),
    ) -> Self {
        let (code, message) = if e.is_expired() { expired } else { invalid };
        Self::refused(StatusCode::BAD_REQUEST, code, message)
    }

    /// The status this error answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Session(r) => r.status(),
            Self::Accounts(e) => match e {
                AccountsError::InvalidCredentials => StatusCode::UNAUTHORIZED,
                AccountsError::WrongPassword
                | AccountsError::AccountDisabled
                | AccountsError::SignupClosed
                | AccountsError::InviteRequired
                | AccountsError::InvalidInvite
                | AccountsError::EmailNotVerified => StatusCode::FORBIDDEN,
                AccountsError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                AccountsError::UsernameTaken => StatusCode::CONFLICT,
                AccountsError::InvalidUsername(_)
                | AccountsError::WeakPassword(_)
                | AccountsError::InvalidEmail(_)
                | AccountsError::EmailRequired => StatusCode::UNPROCESSABLE_ENTITY,
                AccountsError::UnknownAccount => StatusCode::UNAUTHORIZED,
                AccountsError::Busy(_) | AccountsError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::Body { status, .. } | Self::Forward { status, .. } => *status,
            Self::Link(r) => match r {
                download::Refusal::Request(_) | download::Refusal::Token(_) => {
                    StatusCode::BAD_REQUEST
                }
                download::Refusal::NotForThisRequest { .. } => StatusCode::FORBIDDEN,
                download::Refusal::Expired
                | download::Refusal::Revoked { .. }
                | download::Refusal::Used { .. } => StatusCode::GONE,
                download::Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::LinkCreate(e) => match e {
                download::CreateError::Url(_) | download::CreateError::Ttl => {
                    StatusCode::BAD_REQUEST
                }
                download::CreateError::NotAnApp => StatusCode::FORBIDDEN,
                download::CreateError::Store(_) | download::CreateError::Signing(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Denied { .. } => StatusCode::FORBIDDEN,
            Self::Store(_) | Self::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable code.
    fn code(&self) -> &'static str {
        match self {
            Self::Session(r) => r.code(),
            Self::Accounts(e) => match e {
                AccountsError::InvalidCredentials => "invalid_credentials",
                AccountsError::WrongPassword => "wrong_password",
                AccountsError::AccountDisabled => "account_disabled",
                AccountsError::UnknownAccount => "unauthenticated",
                AccountsError::Throttled(_) => "too_many_attempts",
                AccountsError::Busy(_) => "busy",
                AccountsError::UsernameTaken => "username_taken",
                AccountsError::SignupClosed => "signup_closed",
                AccountsError::InviteRequired => "invite_required",
                AccountsError::InvalidInvite => "invalid_invite",
                AccountsError::InvalidUsername(_) => "invalid_username",
                AccountsError::WeakPassword(_) => "weak_password",
                AccountsError::InvalidEmail(_) => "invalid_email",
                AccountsError::EmailRequired => "email_required",
                AccountsError::EmailNotVerified => "email_not_verified",
                AccountsError::Store(_) => "store_unavailable",
            },
            Self::Body { code, .. } => code,
            Self::Link(r) => r.code(),
            Self::LinkCreate(e) => match e {
                download::CreateError::Url(_) => "invalid_url",
                download::CreateError::NotAnApp => "origin_not_allowed",
                download::CreateError::Ttl => "invalid_ttl",
                download::CreateError::Store(_) => "store_unavailable",
                download::CreateError::Signing(_) => "link_signing_failed",
            },
            Self::NotFound(_) => "not_found",
            Self::Forward { .. } => "forward_auth",
            Self::Denied { .. } => "access_denied",
            Self::Store(_) => "store_unavailable",
            Self::TimedOut => "timed_out",
        }
    }

    /// The message for the user, a sentence: specific for client errors, generic for server
    /// failures.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Session(r) => r.message(),
            Self::Store(_)
            | Self::Accounts(AccountsError::Store(_))
            | Self::Link(download::Refusal::Store(_))
            | Self::LinkCreate(
                download::CreateError::Store(_) | download::CreateError::Signing(_),
            ) => "The service is unavailable right now. Try again in a moment.".to_owned(),
            other => other.to_string(),
        }
    }

    /// Whether the request that failed so certainly had a live session: a CSRF-token refusal
    /// is only ever given to one.
    fn had_session(&self) -> bool {
        matches!(
            self,
            Self::Session(Rejection::CsrfTokenMissing | Rejection::CsrfTokenInvalid)
        )
    }

    /// Seconds to put in `Retry-After`, if any.
    pub(crate) fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Accounts(AccountsError::Throttled(d)) => Some(ceil_secs(*d).max(1)),
            Self::Accounts(AccountsError::Busy(_)) => Some(1),
            _ => None,
        }
    }

    /// Logs what the client is not told, once per response.
    fn log(&self) {
        match self {
            Self::Store(e)
            | Self::Accounts(AccountsError::Store(e))
            | Self::Link(download::Refusal::Store(e)) => {
                metrics::store_error(e.store());
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "store failure");
            }
            Self::Session(r) => r.log(),
            Self::LinkCreate(e @ download::CreateError::Signing(_)) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e), "signing a download link failed");
            }
            _ => {}
        }
    }

    /// Writes this error as a whole response in `format`, for a visitor who is not (known to
    /// be) signed in.
    pub(crate) fn render(&self, format: &Format) -> Response {
        self.render_for(format, None)
    }

    /// Writes this error as a whole response in `format`; `nav` is the signed-in visitor's,
    /// when the route group knows it.
    fn render_for(&self, format: &Format, nav: Option<Nav>) -> Response {
        let mut response = match format {
            Format::Json => (
                self.status(),
                Json(ErrorBody {
                    error: self.code(),
                    message: self.message(),
                }),
            )
                .into_response(),
            Format::Html(site) => {
                let signed_in = nav.is_some() || self.had_session();
                pages::error_page(site, self.status(), self.message(), nav, signed_in)
            }
        };
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// How a route group writes its errors.
#[derive(Debug, Clone)]
pub(crate) enum Format {
    /// `{"error": "<code>", "message": "…"}`: the API, operations, forward auth.
    Json,
    /// An error page of this site: the pages people see.
    Html(Arc<Site>),
}

/// The placeholder a failed handler returns; [`render`] replaces it.
#[derive(Debug, Clone)]
struct Failed(Arc<WebError>);

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        self.log();
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status();
        response.extensions_mut().insert(Failed(Arc::new(self)));
        response
    }
}

/// Whether `response` is a failure the group's renderer will write: a failed handler's
/// placeholder, or a session-layer refusal.
pub(crate) fn is_failure(response: &Response) -> bool {
    let e = response.extensions();
    e.get::<Failed>().is_some() || e.get::<Rejection>().is_some()
}

/// The route groups' error renderer: writes a failed handler's [`WebError`], or a session
/// layer [`Rejection`], in the group's format, keeping every header already set (the layer's
/// `Set-Cookie` and `Cache-Control`, for one). A page is written for the signed-in visitor
/// whose [`Nav`] the response carries (see `pages::mark_visitor`), else for a signed-out one.
pub(crate) async fn render(format: Format, response: Response) -> Response {
    let error = if let Some(Failed(e)) = response.extensions().get::<Failed>() {
        e.clone()
    } else if let Some(r) = response.extensions().get::<Rejection>() {
        Arc::new(WebError::Session(r.clone()))
    } else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let nav = parts.extensions.remove::<Nav>();
    let rendered = error.render_for(&format, nav);
    let (new, body) = rendered.into_parts();
    parts.status = new.status;
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in new.headers {
        if let Some(name) = name {
            parts.headers.insert(name, value);
        }
    }
    parts.extensions.remove::<Failed>();
    parts.extensions.remove::<Rejection>();
    Response::from_parts(parts, body)
}

/// Another library's message as a sentence: capitalised, with a full stop.
fn sentence(text: &str) -> String {
    let text = text.trim();
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

fn body_error(status: StatusCode, message: &str) -> WebError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "malformed_body",
    };
    WebError::Body {
        status,
        code,
        message: sentence(message),
    }
}

impl From<JsonRejection> for WebError {
    fn from(r: JsonRejection) -> Self {
        body_error(r.status(), &r.body_text())
    }
}

impl From<FormRejection> for WebError {
    fn from(r: FormRejection) -> Self {
        body_error(r.status(), &r.body_text())
    }
}

impl From<QueryRejection> for WebError {
    fn from(r: QueryRejection) -> Self {
        WebError::Body {
            status: StatusCode::BAD_REQUEST,
            code: "malformed_query",
            message: r.body_text(),
        }
    }
}

/// `axum::extract::Query`, refusing (400) with a [`WebError`]: a query string that does not
/// parse (a parameter given twice, say) is answered in the route's format, like any error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WebQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for WebQuery<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        Ok(Self(Query::<T>::from_request_parts(parts, state).await?.0))
    }
}

/// `axum::Json`, refusing (400, 413, 415, 422) with a [`WebError`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        Ok(Self(Json::<T>::from_request(req, state).await?.0))
    }
}

/// `axum::Form`, refusing (400, 413, 415, 422) with a [`WebError`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WebForm<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for WebForm<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, WebError> {
        Ok(Self(axum::Form::<T>::from_request(req, state).await?.0))
    }
}

fn denied_message(user: Option<&str>) -> String {
    match user {
        Some(user) => format!(
            "You are signed in as {user}, but your account has no access to this page. Ask your \
             administrator for access, or sign in as someone else."
        ),
        None => "This page is not open to anyone.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_libraries_messages_become_sentences() {
        assert_eq!(
            sentence("Failed to deserialize the JSON body: missing field `password`"),
            "Failed to deserialize the JSON body: missing field `password`."
        );
        assert_eq!(
            sentence("expected `Content-Type: application/json`"),
            "Expected `Content-Type: application/json`."
        );
        assert_eq!(sentence("Done."), "Done.");
    }
}
