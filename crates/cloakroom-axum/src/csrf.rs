//! CSRF enforcement for state-changing requests: origin first, then the session's token.

use axum::body::Body;
use axum::http::header;
use axum::http::request::Parts;
use cloakroom_core::origin::{CrossOriginRefusal, Origin, RequestSource};

use crate::layer::{Config, RequestState};
use crate::rejection::Rejection;

/// The header scripts send the token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field HTML forms send the token in.
pub const CSRF_FORM_FIELD: &str = "csrf_token";

/// The origin a refused request says it came from, for the message: `Origin`, else the
/// origin of `Referer`, shown only if it is a well-formed origin (it is attacker-controlled
/// text that ends up on a page and in a log line).
fn received_origin(headers: &axum::http::HeaderMap) -> String {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    text("origin")
        .and_then(|o| Origin::parse(o).ok())
        .or_else(|| text("referer").and_then(Origin::of_url))
        .map_or_else(|| "another origin".to_owned(), |o| o.as_str().to_owned())
}

/// Refuses a state-changing request that did not come from our own pages, or that carries a
/// live session but not that session's CSRF token. Returns the body for the handler (a form
/// body had to be read to find its token field, and is handed on intact).
pub(crate) async fn enforce(
    config: &Config,
    state: &RequestState,
    parts: &Parts,
    body: Body,
) -> Result<Body, Rejection> {
    let headers = &parts.headers;
    let raw = |name: &str| headers.get(name).map(|v| v.as_bytes());
    config
        .origins
        .check(RequestSource {
            sec_fetch_site: raw("sec-fetch-site"),
            origin: raw("origin"),
            referer: raw("referer"),
        })
        .map_err(|why| match why {
            CrossOriginRefusal::ForeignOrigin => Rejection::ForeignOrigin {
                received: received_origin(headers),
                expected: config
                    .origins
                    .allowed()
                    .first()
                    .map_or_else(String::new, |o| o.as_str().to_owned()),
            },
            other => Rejection::CrossOrigin(other),
        })?;

    let session = match state.validate_for_csrf().await {
        // No session cookie: there is no authority to abuse; the origin check above already
        // stopped login CSRF.
        None => return Ok(body),
        // A dead session makes the request anonymous, except that "cannot tell" fails closed.
        Some(Err(e @ Rejection::StoreUnavailable(_))) => return Err(e),
        Some(Err(_)) => return Ok(body),
        Some(Ok(session)) => session,
    };

    if let Some(value) = headers.get(CSRF_HEADER) {
        let ok = value.to_str().is_ok_and(|t| session.csrf_secret.verify(t));
        return if ok {
            Ok(body)
        } else {
            Err(Rejection::CsrfTokenInvalid)
        };
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Rejection::CsrfTokenMissing);
    }
    let limit = config.max_form_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::FormTooLarge { limit });
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Rejection::FormTooLarge { limit })?;
    let mut tokens = form_urlencoded::parse(&bytes).filter(|(k, _)| k == CSRF_FORM_FIELD);
    match (tokens.next(), tokens.next()) {
        (None, _) => Err(Rejection::CsrfTokenMissing),
        (Some((_, token)), None) if session.csrf_secret.verify(&token) => Ok(Body::from(bytes)),
        // Two token fields are ambiguous: refuse rather than pick one.
        _ => Err(Rejection::CsrfTokenInvalid),
    }
}
