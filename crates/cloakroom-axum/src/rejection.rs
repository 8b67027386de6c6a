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
    /// The `Authorization` header is not one `Bearer` with one well-formed session token:
    /// another scheme (where only bearer tokens are taken), two tokens, an over-long one.
    MalformedBearer,
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
            Self::MalformedBearer => "malformed_bearer",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::NoCookie => "You are not signed in. Please sign in.",
            Self::DuplicateCookie => {
                "Your browser sent the session cookie twice. Clear this site's cookies and sign in again."
            }
            Self::MalformedCookie => {
                "Your session cookie is damaged. Clear this site's cookies and sign in again."
            }
            Self::UnknownSession => {
                "Your session has ended: you signed out, or it was ended from another device. Please sign in again."
            }
            Self::IdleExpired => {
                "Your session expired after a period of inactivity. Please sign in again."
            }
            Self::AbsoluteExpired => {
                "Your session reached its maximum length. Please sign in again."
            }
            Self::Revoked => {
                "Your session was ended while this request was being handled. Please sign in again."
            }
            Self::MalformedBearer => {
                "The Authorization header must be `Bearer <session token>`: one token of 43 characters from a native sign-in."
            }
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
    /// 400: the request carries both a session cookie and a bearer token. Which one it means
    /// cannot be known, so neither is used.
    AmbiguousCredentials,
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
            Self::InvalidData(_) | Self::AmbiguousCredentials => StatusCode::BAD_REQUEST,
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
            Self::AmbiguousCredentials => "ambiguous_credentials",
            Self::CsrfTokenMissing => "csrf_token_missing",
            Self::CsrfTokenInvalid => "csrf_token_invalid",
            Self::FormTooLarge { .. } => "payload_too_large",
            Self::InvalidData(_) => "invalid_session_data",
            Self::Contended => "session_contended",
            Self::StoreUnavailable(_) => "session_store_unavailable",
            Self::LayerMissing => "internal_error",
        }
    }

    /// A sentence for the client saying what went wrong and, for client errors, what to do —
    /// written for a person (capitalised, full stops), since pages show it as it is. The
    /// machine-readable [`code`](Self::code) is what programs should match on.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(why) => why.message().to_owned(),
            Self::CrossOrigin(why) => cross_origin_message(*why).to_owned(),
            Self::ForeignOrigin { received, expected } => format!(
                "This request was refused because it came from {received}, but this site is \
                 {expected}. Open {expected} and try again."
            ),
            Self::AmbiguousCredentials => "This request carries both a session cookie and a \
                bearer token. Send one: the cookie from a browser, the bearer token from a \
                native app."
                .to_owned(),
            Self::CsrfTokenMissing => {
                "This request was refused because it has no CSRF token. Send it in the \
                 X-CSRF-Token header or the csrf_token form field."
                    .to_owned()
            }
            Self::CsrfTokenInvalid => {
                "This request's CSRF token does not belong to your session: the page may be out \
                 of date. Reload it and try again."
                    .to_owned()
            }
            Self::FormTooLarge { limit } => {
                format!("The form is too large: at most {limit} bytes are accepted.")
            }
            Self::InvalidData(e) => format!("The session data was refused: {e}."),
            Self::Contended => "Too many changes to this session at once. Try again.".to_owned(),
            Self::StoreUnavailable(_) => {
                "Sessions cannot be checked right now. Try again in a moment.".to_owned()
            }
            Self::LayerMissing => "Something went wrong on the server.".to_owned(),
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

/// What a person is told when their browser's request was judged cross-origin. The refusal's
/// own `Display` names headers, for logs.
fn cross_origin_message(why: CrossOriginRefusal) -> &'static str {
    match why {
        CrossOriginRefusal::CrossSite => {
            "This request was refused because it came from another site. Use this site's own pages."
        }
        CrossOriginRefusal::SameSite => {
            "This request was refused because it came from another address of this site. Use this site's own pages."
        }
        CrossOriginRefusal::NullOrigin => {
            "This request was refused because it came from a page with no origin (a sandboxed frame or a data: URL). Use this site's own pages."
        }
        CrossOriginRefusal::ForeignOrigin => {
            "This request was refused because it came from another site. Use this site's own pages."
        }
        CrossOriginRefusal::NoSourceInformation => {
            "This request was refused because nothing in it says where it came from (no Sec-Fetch-Site, Origin or Referer header). Use this site's own pages."
        }
        // `UnknownFetchSite`, and whatever the non-exhaustive enum grows.
        _ => "This request was refused because it did not come from this site's own pages.",
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
