//! The one place server errors become HTTP responses.
//!
//! Client errors answer with their status and `{"error": "<code>", "message": "<what to fix>"}`.
//! Server-side failures answer generically ("try again shortly") and are logged with their
//! cause; no internal detail reaches the client.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloakroom_axum::Rejection;
use cloakroom_core::StoreError;
use cloakroom_core::accounts::{AccountError, InvalidUsername};
use serde::de::DeserializeOwned;

use crate::device::ceil_secs;
use crate::metrics;
use crate::passwords::{Busy, WeakPassword};

/// Everything a server handler can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A refusal from the session layer (401, 403, 503 …).
    #[error(transparent)]
    Session(#[from] Rejection),
    /// Unknown username or wrong password — deliberately indistinguishable.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The current password given for a password change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The account is disabled (said only after a correct password).
    #[error("this account is disabled")]
    AccountDisabled,
    /// Too many failed attempts; try again after the given time.
    #[error("too many failed attempts: try again in {} seconds", ceil_secs(*.0))]
    Throttled(Duration),
    /// The password hashing pool is saturated.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// Sign-up with a username that exists.
    #[error("this username is taken")]
    UsernameTaken,
    /// A username that breaks the rules.
    #[error(transparent)]
    InvalidUsername(#[from] InvalidUsername),
    /// A new password that breaks the rules.
    #[error(transparent)]
    WeakPassword(#[from] WeakPassword),
    /// A request body that could not be read (status, code, message).
    #[error("{2}")]
    Body(StatusCode, &'static str, String),
    /// No such thing (a session handle that is not yours, …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A store failed.
    #[error("store failure")]
    Store(#[from] StoreError),
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::UsernameTaken => Self::UsernameTaken,
            AccountError::Store(s) => Self::Store(s),
            // Non-exhaustive: a new kind of failure is the server's problem, not the client's.
            other => Self::Store(StoreError::Backend {
                store: "accounts",
                source: other.to_string().into(),
            }),
        }
    }
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Session(r) => r.status(),
            Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::WrongPassword | Self::AccountDisabled => StatusCode::FORBIDDEN,
            Self::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy(_) | Self::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UsernameTaken => StatusCode::CONFLICT,
            Self::InvalidUsername(_) | Self::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Body(status, ..) => *status,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
        }
    }

    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Session(r) => r.code(),
            Self::InvalidCredentials => "invalid_credentials",
            Self::WrongPassword => "wrong_password",
            Self::AccountDisabled => "account_disabled",
            Self::Throttled(_) => "too_many_attempts",
            Self::Busy(_) => "busy",
            Self::UsernameTaken => "username_taken",
            Self::InvalidUsername(_) => "invalid_username",
            Self::WeakPassword(_) => "weak_password",
            Self::Body(_, code, _) => code,
            Self::NotFound(_) => "not_found",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// The message for the user: specific for client errors, generic for server failures.
    pub fn message(&self) -> String {
        match self {
            Self::Session(r) => r.message(),
            Self::Store(_) => "a backing store is unavailable: try again shortly".to_owned(),
            other => other.to_string(),
        }
    }

    /// Seconds to put in `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Throttled(d) => Some(ceil_secs(*d).max(1)),
            Self::Busy(_) => Some(1),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Session(r) = self {
            return r.into_response();
        }
        if let Self::Store(e) = &self {
            metrics::store_error(e.store());
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "store failure");
        }
        let mut response = (
            self.status(),
            Json(serde_json::json!({ "error": self.code(), "message": self.message() })),
        )
            .into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn body_error(status: StatusCode, text: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "malformed_body",
    };
    ApiError::Body(status, code, text)
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

impl From<FormRejection> for ApiError {
    fn from(r: FormRejection) -> Self {
        body_error(r.status(), r.body_text())
    }
}

/// `axum::Json`, with its refusals (400, 413, 415, 422) in our error format.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(Json::<T>::from_request(req, state).await?.0))
    }
}
