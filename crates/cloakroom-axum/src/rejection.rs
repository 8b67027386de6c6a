//! Every way the session layer or its extractors refuse a request, and the one place those
//! refusals become HTTP responses.
//!
//! Client errors say what to fix; server errors say nothing specific to the client and are
//! logged with their cause.

use std::sync::Arc;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cloakroom_core::origin::CrossOriginRefusal;
use cloakroom_core::{InvalidValue, StoreError, ValidationError};

/// Why a request has no (usable) session.
///
/// ```
/// use cloakroom_axum::{Rejection, Unauthenticated};
///
/// let r = Rejection::Unauthenticated(Unauthenticated::IdleExpired);
/// assert_eq!(r.status(), 401);
/// assert!(r.message().contains("inactivity"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unauthenticated {
    /// No session cookie.
    NoCookie,
    /// The session cookie was sent more than once.
    DuplicateCookie,
    /// The session cookie is not a well-formed token.
    MalformedCookie,
    /// No such session: never issued, logged out or revoked.
    UnknownSession,
    /// The session expired after inactivity.
    IdleExpired,
    /// The session reached its maximum lifetime.
    AbsoluteExpired,
    /// The session was revoked while this request was being handled.
    Revoked,
}

impl Unauthenticated {
    /// A stable machine-readable label.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoCookie => "missing",
            Self::DuplicateCookie => "duplicate_cookie",
            Self::MalformedCookie => "malformed",
            Self::UnknownSession => "unknown",
            Self::IdleExpired => "idle_expired",
            Self::AbsoluteExpired => "absolute_expired",
            Self::Revoked => "revoked",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::NoCookie => "no session: sign in first",
            Self::DuplicateCookie => {
                "the session cookie was sent twice: clear this site's cookies and sign in again"
            }
            Self::MalformedCookie => {
                "the session cookie is malformed: clear this site's cookies and sign in again"
            }
            Self::UnknownSession => "this session has ended (signed out or revoked): sign in again",
            Self::IdleExpired => "the session expired after inactivity: sign in again",
            Self::AbsoluteExpired => "the session reached its maximum lifetime: sign in again",
            Self::Revoked => "this session was revoked: sign in again",
        }
    }

    pub(crate) fn from_validation(e: &ValidationError) -> Option<Self> {
        Some(match e {
            ValidationError::Missing => Self::NoCookie,
            ValidationError::Malformed(_) => Self::MalformedCookie,
            ValidationError::Unknown => Self::UnknownSession,
            ValidationError::IdleExpired => Self::IdleExpired,
            ValidationError::AbsoluteExpired => Self::AbsoluteExpired,
            _ => return None,
        })
    }
}

/// A refusal from the session layer or one of its extractors.
///
/// Every variant answers with its own status and a JSON body
/// `{"error": "<code>", "message": "<what to do>"}`; server-side failures are logged with their
/// cause and answered generically. Handlers can return it directly:
///
/// ```
/// use cloakroom_axum::{Rejection, Session};
///
/// async fn handler(mut session: Session) -> Result<&'static str, Rejection> {
///     session.insert("theme", "dark").await?; // 400 if too large, 503 if the store is down
///     Ok("saved")
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// 401: the handler needs a session and there is none.
    Unauthenticated(Unauthenticated),
    /// 403: a state-changing request that did not come from our own pages.
    CrossOrigin(CrossOriginRefusal),
    /// 403: a state-changing request from a page at another origin than ours — most often
    /// the same site opened at another spelling (`127.0.0.1` for `localhost`, another port).
    /// The message names both, so the fix is obvious.
    ForeignOrigin {
        /// The origin the request came from (`Origin`, else `Referer`'s origin).
        received: String,
        /// The origin this server's pages are served at.
        expected: String,
    },
    /// 403: a state-changing request with a session but without its CSRF token.
    CsrfTokenMissing,
    /// 403: a state-changing request whose CSRF token does not belong to its session.
    CsrfTokenInvalid,
    /// 413: a form body larger than the layer reads when looking for the CSRF token.
    FormTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 400: session data that cannot be stored (too large, or not serialisable).
    InvalidData(Arc<InvalidValue>),
    /// 409: too many concurrent writers on one session; retrying later will work.
    Contended,
    /// 503: the session store cannot be reached; the request is refused (fail closed).
    StoreUnavailable(Arc<StoreError>),
    /// 500: a session extractor was used on a route without the session layer.
    LayerMissing,
}

impl Rejection {
    /// The HTTP status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::CrossOrigin(_)
            | Self::ForeignOrigin { .. }
            | Self::CsrfTokenMissing
            | Self::CsrfTokenInvalid => StatusCode::FORBIDDEN,
            Self::FormTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidData(_) => StatusCode::BAD_REQUEST,
            Self::Contended => StatusCode::CONFLICT,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::LayerMissing => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code (the `error` field of the JSON body).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::CrossOrigin(_) | Self::ForeignOrigin { .. } => "cross_origin_request",
            Self::CsrfTokenMissing => "csrf_token_missing",
            Self::CsrfTokenInvalid => "csrf_token_invalid",
            Self::FormTooLarge { .. } => "payload_too_large",
            Self::InvalidData(_) => "invalid_session_data",
            Self::Contended => "session_contended",
            Self::StoreUnavailable(_) => "session_store_unavailable",
            Self::LayerMissing => "internal_error",
        }
    }

    /// A sentence for the client saying what went wrong and, for client errors, what to do.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(why) => why.message().to_owned(),
            Self::CrossOrigin(why) => format!("{why}; send it from this site's own pages"),
            Self::ForeignOrigin { received, expected } => format!(
                "request from a foreign origin refused: it came from {received}, but this \
                 site is {expected}; open it at {expected} and try again"
            ),
            Self::CsrfTokenMissing => {
                "missing CSRF token: send it in the X-CSRF-Token header or the csrf_token form field"
                    .to_owned()
            }
            Self::CsrfTokenInvalid => {
                "CSRF token does not match this session: reload the page and try again".to_owned()
            }
            Self::FormTooLarge { limit } => format!("form body larger than {limit} bytes"),
            Self::InvalidData(e) => format!("session data refused: {e}"),
            Self::Contended => "too many concurrent updates to this session: retry".to_owned(),
            Self::StoreUnavailable(_) => "session store unavailable: try again shortly".to_owned(),
            Self::LayerMissing => "internal server error".to_owned(),
        }
    }

    pub(crate) fn from_validation(e: ValidationError) -> Self {
        match Unauthenticated::from_validation(&e) {
            Some(why) => Self::Unauthenticated(why),
            None => match e {
                ValidationError::Store(s) => Self::StoreUnavailable(Arc::new(s)),
                // `ValidationError` is non-exhaustive; anything new is not the client's fault.
                _ => Self::StoreUnavailable(Arc::new(StoreError::Backend {
                    store: "unknown",
                    source: e.to_string().into(),
                })),
            },
        }
    }
}

impl From<StoreError> for Rejection {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(Arc::new(e))
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::StoreUnavailable(e) => Some(e.as_ref()),
            Self::InvalidData(e) => Some(e.as_ref()),
            Self::CrossOrigin(e) => Some(e),
            _ => None,
        }
    }
}

impl Rejection {
    /// Logs what the client is not told: server-side failures with their cause. (CSRF and
    /// origin refusals are logged by the layer as security events, with user and address.) [`IntoResponse`] calls it; an application that renders
    /// rejections itself calls it once per response.
    pub fn log(&self) {
        match self {
            Self::StoreUnavailable(e) => {
                tracing::error!(error = %e, source = ?std::error::Error::source(e.as_ref()), "session store failed");
            }
            Self::LayerMissing => {
                tracing::error!("a session extractor was used on a route without SessionLayer");
            }
            _ => {}
        }
    }
}

/// A JSON body `{"error": "<code>", "message": "…"}` with the rejection's status. The response
/// also carries the `Rejection` itself as an extension, so an application that answers in
/// another format (an HTML page, say) can re-render it from the typed value instead of
/// parsing the body.
impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.log();
        let body = serde_json::json!({ "error": self.code(), "message": self.message() });
        let mut response = (self.status(), Json(body)).into_response();
        response.extensions_mut().insert(self);
        response
    }
}
