//! Forward auth: the decision a reverse proxy asks for before letting a request through to an
//! app, in the dialects proxies already speak.
//!
//! * `GET /auth/verify` — Cloakroom's own endpoint; any method is accepted.
//! * Authelia's `/api/authz/auth-request`, `/api/authz/forward-auth` and legacy `/api/verify`.
//! * oauth2-proxy's `/oauth2/auth`, `/oauth2/sign_in`, `/oauth2/sign_out`, `/oauth2/userinfo`.
//!   A `GET /oauth2/sign_out` signs out at once only as a same-origin navigation with a valid
//!   `rd`; otherwise it shows a page whose form posts (with the CSRF token) to sign out.
//!
//! The forwarded request is parsed at the edge into a [`ForwardedRequest`]: nginx
//! (`auth_request`) describes it with `X-Original-URL`/`X-Original-Method`; Traefik and Caddy
//! with `X-Forwarded-Method/Proto/Host/Uri`. Which one it is decides the shape of a refusal:
//! nginx wants `401` plus a `Location` to send the browser to; Traefik and Caddy pass the
//! answer through, so a browser gets a redirect (`302` for safe methods, `303` otherwise)
//! and an API client a plain `401`.
//!
//! Only a trusted proxy may describe a request (see [`crate::web::client_ip`]): forwarding
//! headers from any other peer are refused with 403 rather than ignored, so a proxy missing
//! from `trusted_proxies` shows up at once instead of silently getting tokens for the wrong
//! app, and a client talking to Cloakroom directly cannot name an app. A call with no
//! forwarding headers at all is a direct check for Cloakroom's own origin. The app a request
//! is for must be one of `app_origins` (or the public URL's origin); any other host gets 403,
//! so a service JWT's audience is always an app the operator named.
//!
//! Parsing, the trust and app checks and the CSRF rule run *before* the session is looked at
//! (the [`Checked`] extractor comes first in every handler's arguments): a request refused
//! with 400 or 403 never reaches the store.
//!
//! Success answers with the identity headers (`Remote-User`, `Remote-Email`, `Remote-Name`,
//! `X-Auth-Request-User`, `X-Auth-Request-Email`) and `X-Cloakroom-Jwt`, a short-lived service
//! JWT for the app (see [`crate::tokens::service_jwt`]). The hot path does no store write
//! except the throttled last-seen update, and no signature except once per half token
//! lifetime; a revoked session is refused on the very next check.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Session};
use cloakroom_core::origin::{Origin, is_safe_method};
use cloakroom_core::service_token::JWT_HEADER;
use serde::Deserialize;

use crate::accounts::session_keys as keys;
use crate::metrics;
use crate::state::AppState;
use crate::tokens::service_jwt::Identity;
use crate::web::error::{Format, WebError, WebForm};
use crate::web::pages;
use crate::web::redirect::ReturnTo;
use crate::web::{CLEAR_SITE_DATA, flows};

/// Which proxy dialect described the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// nginx `auth_request`: `X-Original-URL`.
    Nginx,
    /// Traefik / Caddy: `X-Forwarded-Method`, `-Proto`, `-Host`, `-Uri`.
    Forwarded,
    /// No forwarding headers: a direct call.
    Direct,
}

/// The request a proxy asks about, parsed once at the edge.
#[derive(Debug, Clone)]
pub struct ForwardedRequest {
    /// Which dialect described it.
    pub flavor: Flavor,
    /// The original method, upper case.
    pub method: String,
    /// The original URL, when the proxy said.
    pub url: Option<url::Url>,
    /// The origin of [`url`](Self::url): the app the request is for.
    pub app_origin: Option<Origin>,
    /// Whether the client takes HTML (a browser, to be redirected to the login page).
    pub accepts_html: bool,
}

/// The forwarding headers do not describe a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed forwarding headers: {0}")]
pub struct MalformedForward(&'static str);

fn text<'a>(h: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, MalformedForward> {
    h.get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| MalformedForward("a header is not visible ASCII"))
        })
        .transpose()
}

fn http_url(s: &str) -> Result<url::Url, MalformedForward> {
    let url =
        url::Url::parse(s).map_err(|_| MalformedForward("the original URL does not parse"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(MalformedForward("the original URL is not an http(s) URL"));
    }
    Ok(url)
}

fn method(m: Option<&str>) -> Result<String, MalformedForward> {
    match m {
        None => Ok("GET".to_owned()),
        Some(m) if !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Ok(m.to_ascii_uppercase())
        }
        Some(_) => Err(MalformedForward("the original method is not a method")),
    }
}

impl ForwardedRequest {
    /// Reads the forwarding headers.
    pub fn parse(h: &HeaderMap) -> Result<Self, MalformedForward> {
        let accepts_html = text(h, "accept")?.is_some_and(|a| a.contains("text/html"));
        if let Some(original) = text(h, "x-original-url")? {
            let url = http_url(original)?;
            // A proxy that describes the request its own way (Caddy, Traefik) passes the
            // client's headers on too: an `X-Original-URL` the client wrote must not override
            // the host the proxy saw.
            if let Some(host) = text(h, "x-forwarded-host")?
                && http_url(&format!("http://{host}/"))
                    .ok()
                    .is_none_or(|f| f.host_str() != url.host_str())
            {
                return Err(MalformedForward(
                    "X-Original-URL and X-Forwarded-Host name different hosts",
                ));
            }
            return Ok(Self {
                flavor: Flavor::Nginx,
                method: method(text(h, "x-original-method")?)?,
                app_origin: Origin::of_parsed_url(&url),
                url: Some(url),
                accepts_html,
            });
        }
        let (m, proto, host, uri) = (
            text(h, "x-forwarded-method")?,
            text(h, "x-forwarded-proto")?,
            text(h, "x-forwarded-host")?,
            text(h, "x-forwarded-uri")?,
        );
        if m.is_none() && proto.is_none() && host.is_none() && uri.is_none() {
            return Ok(Self {
                flavor: Flavor::Direct,
                method: "GET".to_owned(),
                url: None,
                app_origin: None,
                accepts_html,
            });
        }
        let url = match host {
            Some(host) => {
                let proto = proto.unwrap_or("http");
                if proto != "http" && proto != "https" {
                    return Err(MalformedForward("X-Forwarded-Proto is not http or https"));
                }
                let uri = uri.unwrap_or("/");
                if !uri.starts_with('/') {
                    return Err(MalformedForward("X-Forwarded-Uri is not a path"));
                }
                // A host with a path or credentials in it would change what the URL means.
                if host.contains(['/', '@', '\\', ' ', '?', '#']) {
                    return Err(MalformedForward("X-Forwarded-Host is not a host"));
                }
                Some(http_url(&format!("{proto}://{host}{uri}"))?)
            }
            None => None,
        };
        Ok(Self {
            flavor: Flavor::Forwarded,
            method: method(m)?,
            app_origin: url.as_ref().and_then(Origin::of_parsed_url),
            url,
            accepts_html,
        })
    }

    /// The origin of the app the request is for.
    pub fn app_origin(&self) -> Option<&Origin> {
        self.app_origin.as_ref()
    }
}

/// Refuses an unsafe forwarded request that a browser marked as coming from another site, or
/// whose `Origin` is not the app's own. Requests without those headers (non-browser clients)
/// pass: the app behind the proxy still gets the user's identity only with a valid session.
fn forwarded_csrf(h: &HeaderMap, fwd: &ForwardedRequest) -> Result<(), &'static str> {
    if is_safe_method(&fwd.method) {
        return Ok(());
    }
    match h.get("sec-fetch-site").map(HeaderValue::as_bytes) {
        Some(b"cross-site") => return Err("cross-site request refused"),
        Some(b"same-site") => return Err("request from another site origin refused"),
        _ => {}
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let ours = fwd.app_origin();
        if ours.is_none_or(|o| o.as_str().as_bytes() != origin.as_bytes()) {
            return Err("request from a foreign origin refused");
        }
    }
    Ok(())
}

/// The headers in which a proxy describes the request it asks about.
const DESCRIBING: [&str; 6] = [
    "x-original-url",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-uri",
];

/// Whether any header describes a forwarded request (as opposed to a direct check).
fn describes_a_request(h: &HeaderMap) -> bool {
    DESCRIBING.iter().any(|name| h.contains_key(*name))
}

/// The forwarded request, parsed and checked against the CSRF rule straight from the
/// request's headers — before, and instead of, any session lookup.
#[derive(Debug)]
pub(crate) struct Checked(ForwardedRequest);

impl FromRequestParts<AppState> for Checked {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        if describes_a_request(&parts.headers) && !state.client_ip.peer_is_trusted(parts) {
            return Err(WebError::Forward {
                status: StatusCode::FORBIDDEN,
                message: "forwarding headers are accepted only from trusted_proxies".into(),
            });
        }
        let fwd = ForwardedRequest::parse(&parts.headers).map_err(|e| WebError::Forward {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string().into(),
        })?;
        if fwd
            .app_origin()
            .is_some_and(|o| !state.settings.app_origins.allows(o))
        {
            return Err(WebError::Forward {
                status: StatusCode::FORBIDDEN,
                message: "this host is not one of the protected apps (app_origins)".into(),
            });
        }
        if state.settings.forward_auth_csrf
            && let Err(why) = forwarded_csrf(&parts.headers, &fwd)
        {
            metrics::forward_auth(metrics::ForwardOutcome::Csrf);
            return Err(WebError::Forward {
                status: StatusCode::FORBIDDEN,
                message: why.into(),
            });
        }
        Ok(Self(fwd))
    }
}

fn login_url(state: &AppState, fwd: &ForwardedRequest) -> String {
    let public = state.settings.public_origin.as_str();
    match &fwd.url {
        Some(url) => {
            let rd: String =
                url::form_urlencoded::byte_serialize(url.as_str().as_bytes()).collect();
            format!("{public}/login?rd={rd}")
        }
        None => format!("{public}/login"),
    }
}

fn sign_in_first() -> WebError {
    WebError::Forward {
        status: StatusCode::UNAUTHORIZED,
        message: "sign in first".into(),
    }
}

const REMOTE_USER: HeaderName = HeaderName::from_static("remote-user");
const REMOTE_NAME: HeaderName = HeaderName::from_static("remote-name");
const REMOTE_EMAIL: HeaderName = HeaderName::from_static("remote-email");
const X_AUTH_REQUEST_USER: HeaderName = HeaderName::from_static("x-auth-request-user");
const X_AUTH_REQUEST_EMAIL: HeaderName = HeaderName::from_static("x-auth-request-email");
const X_AUTH_REQUEST_PREFERRED_USERNAME: HeaderName =
    HeaderName::from_static("x-auth-request-preferred-username");
const X_CLOAKROOM_JWT: HeaderName = HeaderName::from_static(JWT_HEADER);

/// The shared decision: `success` is the status to answer a valid session with (200, or 202
/// for oauth2-proxy).
fn decide(
    state: &AppState,
    fwd: &ForwardedRequest,
    session: Option<Session>,
    success: StatusCode,
) -> Result<Response, WebError> {
    let Some(session) = session else {
        metrics::forward_auth(metrics::ForwardOutcome::Unauthenticated);
        return Ok(match fwd.flavor {
            Flavor::Nginx => {
                // Rendered here, not by the group: the refusal carries where to sign in.
                let mut r = sign_in_first().render(Format::Json);
                if let Ok(v) = HeaderValue::from_str(&login_url(state, fwd)) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            Flavor::Forwarded if fwd.accepts_html => {
                // 302 keeps a GET a GET; 303 turns a POST into a GET of the login page.
                let status = if is_safe_method(&fwd.method) {
                    StatusCode::FOUND
                } else {
                    StatusCode::SEE_OTHER
                };
                (status, [(header::LOCATION, login_url(state, fwd))]).into_response()
            }
            _ => return Err(sign_in_first()),
        });
    };
    let record = session.record();
    let origin;
    let audience = match &state.settings.jwt_audience {
        Some(aud) => aud.as_str(),
        None => {
            origin = fwd.app_origin();
            origin.unwrap_or(&state.settings.public_origin).as_str()
        }
    };
    let identity = || Identity {
        username: flows::username(&session),
        name: session.get::<String>(keys::NAME).ok().flatten(),
        email: session.get::<String>(keys::EMAIL).ok().flatten(),
    };
    let headers = state
        .minter
        .forward_headers(record, audience, state.clock.now(), identity)
        .map_err(|e| {
            tracing::error!(error = %crate::error_chain::chain(&e), "minting a service JWT failed");
            WebError::Forward {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "the service token could not be issued".into(),
            }
        })?;
    metrics::forward_auth(metrics::ForwardOutcome::Allowed);
    let mut response = success.into_response();
    let h = response.headers_mut();
    if let Some(user) = &headers.user {
        for name in [
            REMOTE_USER,
            X_AUTH_REQUEST_USER,
            X_AUTH_REQUEST_PREFERRED_USERNAME,
        ] {
            h.insert(name, user.clone());
        }
    }
    if let Some(name) = &headers.name {
        h.insert(REMOTE_NAME, name.clone());
    }
    if let Some(email) = &headers.email {
        h.insert(REMOTE_EMAIL, email.clone());
        h.insert(X_AUTH_REQUEST_EMAIL, email.clone());
    }
    h.insert(X_CLOAKROOM_JWT, headers.jwt.clone());
    Ok(response)
}

/// `/auth/verify` and Authelia's endpoints (any method).
pub(crate) async fn verify(
    State(state): State<AppState>,
    Checked(fwd): Checked,
    session: Option<Session>,
) -> Result<Response, WebError> {
    decide(&state, &fwd, session, StatusCode::OK)
}

/// oauth2-proxy's `/oauth2/auth`: 202 on success.
pub(crate) async fn oauth2_auth(
    State(state): State<AppState>,
    Checked(fwd): Checked,
    session: Option<Session>,
) -> Result<Response, WebError> {
    decide(&state, &fwd, session, StatusCode::ACCEPTED)
}

/// `?rd=` on oauth2-proxy's sign-in and sign-out.
#[derive(Debug, Deserialize)]
pub(crate) struct Rd {
    rd: Option<String>,
}

/// oauth2-proxy's `/oauth2/sign_in`: to the login page, keeping `rd` (if allowed).
pub(crate) async fn oauth2_sign_in(State(state): State<AppState>, Query(q): Query<Rd>) -> Response {
    let target = ReturnTo::parse(q.rd.as_deref(), &state.settings.redirect_hosts);
    let rd: String = url::form_urlencoded::byte_serialize(target.as_str().as_bytes()).collect();
    Redirect::to(&format!("/login?rd={rd}")).into_response()
}

/// Whether a request is a top-level navigation from a page of this very origin — something
/// no other site, and no `<img>`, `fetch` or frame on this one, can produce (Fetch Metadata).
fn same_origin_navigation(h: &HeaderMap) -> bool {
    let is = |name: &str, value: &[u8]| h.get(name).is_some_and(|v| v.as_bytes() == value);
    is("sec-fetch-site", b"same-origin")
        && is("sec-fetch-mode", b"navigate")
        && is("sec-fetch-dest", b"document")
}

/// The page that asks before signing out.
#[derive(askama::Template)]
#[template(path = "sign_out.html")]
struct SignOutPage {
    nav: Option<pages::Nav>,
    csrf: String,
    rd: Option<String>,
}

/// oauth2-proxy's `GET /oauth2/sign_out`. oauth2-proxy signs out on any GET, so any page —
/// an `<img>` on a forum of the same site, a link on another — could sign users out. Here a
/// GET signs out only as a same-origin navigation with a valid `rd` (an app's own "sign out"
/// link); anything else gets a confirmation page whose form posts with the CSRF token.
pub(crate) async fn oauth2_sign_out(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    Query(q): Query<Rd>,
) -> Result<Response, WebError> {
    let hosts = &state.settings.redirect_hosts;
    let rd = q.rd.as_deref().and_then(|rd| ReturnTo::checked(rd, hosts));
    let Some(session) = auth.session().await? else {
        // Nothing to end.
        return Ok(Redirect::to(rd.unwrap_or_else(ReturnTo::login).as_str()).into_response());
    };
    if let Some(rd) = &rd
        && same_origin_navigation(&headers)
    {
        return sign_out(auth, rd.clone()).await;
    }
    Ok(pages::render(
        StatusCode::OK,
        &SignOutPage {
            nav: Some(pages::nav(&session)),
            csrf: session.csrf_token(),
            rd: rd.map(|r| r.as_str().to_owned()),
        },
    ))
}

/// The confirmation form of [`oauth2_sign_out`].
#[derive(Debug, Deserialize)]
pub(crate) struct SignOutForm {
    rd: Option<String>,
}

/// `POST /oauth2/sign_out`, on the pages' session layer (so the CSRF token is required): ends
/// the session, then to `rd` (if allowed) or the login page.
pub(crate) async fn oauth2_sign_out_confirmed(
    State(state): State<AppState>,
    auth: Auth,
    WebForm(form): WebForm<SignOutForm>,
) -> Result<Response, WebError> {
    let target = match form.rd.as_deref() {
        Some(rd) => ReturnTo::parse(Some(rd), &state.settings.redirect_hosts),
        None => ReturnTo::login(),
    };
    sign_out(auth, target).await
}

async fn sign_out(auth: Auth, target: ReturnTo) -> Result<Response, WebError> {
    flows::logout(&auth).await?;
    Ok(([CLEAR_SITE_DATA.clone()], Redirect::to(target.as_str())).into_response())
}

/// oauth2-proxy's `/oauth2/userinfo`.
pub(crate) async fn oauth2_userinfo(session: Option<Session>) -> Result<Response, WebError> {
    let session = session.ok_or_else(sign_in_first)?;
    let username = flows::username(&session);
    let email = session.get::<String>(keys::EMAIL).ok().flatten();
    Ok(axum::Json(serde_json::json!({
        "user": session.user_id().as_str(),
        "email": email,
        "preferredUsername": username,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn nginx_dialect() {
        let f = ForwardedRequest::parse(&headers(&[
            ("x-original-url", "https://app.example.com/a?b=1"),
            ("x-original-method", "post"),
        ]))
        .unwrap();
        assert_eq!(f.flavor, Flavor::Nginx);
        assert_eq!(f.method, "POST");
        assert_eq!(f.app_origin().unwrap().as_str(), "https://app.example.com");
    }

    #[test]
    fn traefik_and_caddy_dialect() {
        let f = ForwardedRequest::parse(&headers(&[
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.example.com:8443"),
            ("x-forwarded-uri", "/items/1"),
            ("accept", "text/html,application/xhtml+xml"),
        ]))
        .unwrap();
        assert_eq!(f.flavor, Flavor::Forwarded);
        assert_eq!(
            f.url.unwrap().as_str(),
            "https://app.example.com:8443/items/1"
        );
        assert!(f.accepts_html);
    }

    #[test]
    fn malformed_forwarding_headers_are_refused() {
        for bad in [
            vec![("x-original-url", "not a url")],
            vec![("x-original-url", "javascript:alert(1)")],
            vec![
                ("x-forwarded-host", "evil.net/@app.example.com"),
                ("x-forwarded-uri", "/"),
            ],
            vec![
                ("x-forwarded-host", "app.example.com"),
                ("x-forwarded-uri", "no-slash"),
            ],
            vec![("x-forwarded-proto", "ftp"), ("x-forwarded-host", "a.com")],
            vec![
                ("x-forwarded-method", "GET /x"),
                ("x-forwarded-host", "a.com"),
            ],
        ] {
            assert!(ForwardedRequest::parse(&headers(&bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            ForwardedRequest::parse(&HeaderMap::new()).unwrap().flavor,
            Flavor::Direct
        );
    }

    #[test]
    fn forwarded_csrf_refuses_marked_cross_site_requests_only() {
        let fwd = |m: &str| ForwardedRequest {
            flavor: Flavor::Nginx,
            method: m.to_owned(),
            url: Some(url::Url::parse("https://app.example.com/x").unwrap()),
            app_origin: Origin::parse("https://app.example.com").ok(),
            accepts_html: false,
        };
        assert!(
            forwarded_csrf(&headers(&[("sec-fetch-site", "cross-site")]), &fwd("POST")).is_err()
        );
        assert!(forwarded_csrf(&headers(&[("sec-fetch-site", "cross-site")]), &fwd("GET")).is_ok());
        assert!(forwarded_csrf(&headers(&[("origin", "https://evil.net")]), &fwd("POST")).is_err());
        assert!(forwarded_csrf(&headers(&[("origin", "null")]), &fwd("PUT")).is_err());
        assert!(
            forwarded_csrf(
                &headers(&[("origin", "https://app.example.com")]),
                &fwd("POST")
            )
            .is_ok()
        );
        assert!(forwarded_csrf(&HeaderMap::new(), &fwd("POST")).is_ok());
    }

    mod properties {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;

        const NAMES: [&str; 8] = [
            "x-original-url",
            "x-original-method",
            "x-forwarded-method",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-forwarded-uri",
            "accept",
            "host",
        ];

        proptest! {
            /// Any forwarding headers, bytes and all, parse into a request or a refusal —
            /// never a panic — and what is accepted is well-formed: an upper-case method, an
            /// http(s) URL with a host, and the app origin that URL's own.
            #[test]
            fn forwarding_headers_parse_or_are_refused(
                values in vec((0..NAMES.len(), vec(any::<u8>(), 0..48)), 0..8),
            ) {
                let mut h = HeaderMap::new();
                for (which, bytes) in values {
                    if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                        h.append(HeaderName::from_static(NAMES[which]), v);
                    }
                }
                if let Ok(req) = ForwardedRequest::parse(&h) {
                    prop_assert!(!req.method.is_empty());
                    prop_assert!(req.method.bytes().all(|b| b.is_ascii_uppercase()));
                    if let Some(url) = &req.url {
                        prop_assert!(matches!(url.scheme(), "http" | "https"));
                        prop_assert!(url.host_str().is_some());
                        let expected = Origin::of_parsed_url(url);
                        prop_assert_eq!(req.app_origin(), expected.as_ref());
                    } else {
                        prop_assert!(req.app_origin().is_none());
                    }
                }
            }

            /// A well-formed nginx description is read exactly as sent: the URL, its origin,
            /// and the method in upper case.
            #[test]
            fn nginx_descriptions_are_read_as_sent(
                https in any::<bool>(),
                host in "[a-z][a-z0-9]{0,9}(\\.[a-z][a-z0-9]{0,9}){0,2}",
                port in proptest::option::of(1024_u16..),
                path in "(/[a-zA-Z0-9._~-]{0,8}){0,4}",
                method in "[a-zA-Z]{1,10}",
            ) {
                let scheme = if https { "https" } else { "http" };
                let authority = match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.clone(),
                };
                let url = format!("{scheme}://{authority}{path}");
                let h = headers(&[("x-original-url", &url), ("x-original-method", &method)]);
                let req = ForwardedRequest::parse(&h).unwrap();
                prop_assert_eq!(req.flavor, Flavor::Nginx);
                prop_assert_eq!(req.method, method.to_ascii_uppercase());
                let parsed = req.url.unwrap();
                prop_assert_eq!(parsed.host_str(), Some(host.as_str()));
                let origin = req.app_origin.unwrap();
                let prefix = format!("{scheme}://{host}");
                prop_assert!(origin.as_str().starts_with(&prefix), "{} for {}", origin.as_str(), url);
            }
        }
    }
}
