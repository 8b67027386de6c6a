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
//! A forwarded URL with a `cloakroom_link` parameter is a download link's request (see
//! [`crate::tokens::download`]) and is decided by the link alone: exactly the method (`GET`,
//! `HEAD`), origin, path and query it was made for, as the client sent them — which is why
//! [`ForwardedRequest::target`] keeps the path and query unnormalised. A refused link says
//! why in `X-Cloakroom-Link`; in nginx's dialect the status is always 403, since
//! `auth_request` turns anything but 401 and 403 into a 500.
//!
//! Success answers with the identity headers (`Remote-User`, `Remote-Email`, `Remote-Name`,
//! `X-Auth-Request-User`, `X-Auth-Request-Email`) and `X-Cloakroom-Jwt`, a short-lived service
//! JWT for the app (see [`crate::tokens::service_jwt`]). The hot path does no store write
//! except the throttled last-seen update, and no signature except once per half token
//! lifetime; a revoked session is refused on the very next check.

use std::net::IpAddr;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cloakroom_axum::{Auth, Session};
use cloakroom_core::origin::{Origin, is_safe_method};
use cloakroom_core::service_token::JWT_HEADER;
use serde::Deserialize;

use crate::access::{AccessRequest, Decision, Outcome, RuleTarget, Who};
use crate::mfa::level::AuthLevel;
use crate::state::AppState;
use crate::tokens::download;
use crate::tokens::service_jwt::{ForwardHeaders, Identity, MintError};
use crate::web::error::{Format, WebError, WebForm, WebQuery};
use crate::web::pages;
use crate::web::redirect::ReturnTo;
use crate::web::{CLEAR_SITE_DATA, ClientAddr, flows};
use crate::{events, metrics};

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
    /// The original path and query exactly as the proxy passed them on, not normalised the
    /// way [`url`](Self::url) is (`/a/../b` stays as it is): what a download link is bound to,
    /// and what the app receives.
    pub target: Option<String>,
    /// Whether the client takes HTML (a browser, to be redirected to the login page).
    pub accepts_html: bool,
}

/// The forwarding headers do not describe a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The forwarding headers are malformed: {0}.")]
pub struct MalformedForward(&'static str);

// The headers read on every check, named once: a lookup by `&str` parses and hashes the name
// first (2 % of a forward-auth check's time in a perf profile, issue 14).
const X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

fn text<'a>(h: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, MalformedForward> {
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

/// The path and query of an absolute URL that [`http_url`] accepted, as written. `None` when
/// its authority holds anything a parser might read differently (`\`, `@`): such a request
/// is then never taken for a download link's.
pub(crate) fn raw_target(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.contains(['\\', '@']) || target.starts_with('#') {
        return None;
    }
    Some(match target.strip_prefix('?') {
        Some(_) => format!("/{target}"),
        None if target.is_empty() => "/".to_owned(),
        None => target.to_owned(),
    })
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
        let accepts_html = text(h, &header::ACCEPT)?.is_some_and(|a| a.contains("text/html"));
        if let Some(original) = text(h, &X_ORIGINAL_URL)? {
            let url = http_url(original)?;
            // A proxy that describes the request its own way (Caddy, Traefik) passes the
            // client's headers on too: an `X-Original-URL` the client wrote must not override
            // the host the proxy saw.
            if let Some(host) = text(h, &X_FORWARDED_HOST)?
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
                method: method(text(h, &X_ORIGINAL_METHOD)?)?,
                app_origin: Origin::of_parsed_url(&url),
                target: raw_target(original),
                url: Some(url),
                accepts_html,
            });
        }
        let (m, proto, host, uri) = (
            text(h, &X_FORWARDED_METHOD)?,
            text(h, &X_FORWARDED_PROTO)?,
            text(h, &X_FORWARDED_HOST)?,
            text(h, &X_FORWARDED_URI)?,
        );
        if m.is_none() && proto.is_none() && host.is_none() && uri.is_none() {
            return Ok(Self {
                flavor: Flavor::Direct,
                method: "GET".to_owned(),
                url: None,
                app_origin: None,
                target: None,
                accepts_html,
            });
        }
        let mut target = None;
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
                let url = http_url(&format!("{proto}://{host}{uri}"))?;
                target = Some(uri.to_owned());
                Some(url)
            }
            None => None,
        };
        Ok(Self {
            flavor: Flavor::Forwarded,
            method: method(m)?,
            app_origin: url.as_ref().and_then(Origin::of_parsed_url),
            target,
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
    match h.get(SEC_FETCH_SITE).map(HeaderValue::as_bytes) {
        Some(b"cross-site") => {
            return Err("This request was refused because it came from another site.");
        }
        Some(b"same-site") => {
            return Err(
                "This request was refused because it came from another address of this site.",
            );
        }
        _ => {}
    }
    if let Some(origin) = h.get(header::ORIGIN) {
        let ours = fwd.app_origin();
        if ours.is_none_or(|o| o.as_str().as_bytes() != origin.as_bytes()) {
            return Err(
                "This request was refused because it came from another origin than the app's.",
            );
        }
    }
    Ok(())
}

/// The headers in which a proxy describes the request it asks about.
const DESCRIBING: [HeaderName; 6] = [
    X_ORIGINAL_URL,
    X_ORIGINAL_METHOD,
    X_FORWARDED_METHOD,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_URI,
];

/// Whether any header describes a forwarded request (as opposed to a direct check).
fn describes_a_request(h: &HeaderMap) -> bool {
    DESCRIBING.iter().any(|name| h.contains_key(name))
}

/// The headers in which a proxy describes the request it asks about, for the OpenAPI
/// document: [`ForwardedRequest::parse`] reads them from the header map. With none of them,
/// the call is a direct check for Cloakroom's own origin; from a peer not in
/// `trusted_proxies`, any of them is refused (403).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Described, never built.
pub(crate) struct ForwardingHeaders {
    /// nginx (`auth_request`): the original URL. Takes precedence over the `X-Forwarded-*`
    /// description, and must name the same host as `X-Forwarded-Host` when both are sent.
    #[param(
        rename = "X-Original-URL",
        nullable = false,
        pattern = "^https?://[^/?#]+"
    )]
    original_url: Option<String>,
    /// nginx: the original method (default `GET`).
    #[param(
        rename = "X-Original-Method",
        nullable = false,
        pattern = "^[A-Za-z]{1,16}$"
    )]
    original_method: Option<String>,
    /// Traefik, Caddy: the original method (default `GET`).
    #[param(
        rename = "X-Forwarded-Method",
        nullable = false,
        pattern = "^[A-Za-z]{1,16}$"
    )]
    forwarded_method: Option<String>,
    /// Traefik, Caddy: `http` or `https` (default `http`).
    #[param(rename = "X-Forwarded-Proto", nullable = false, pattern = "^https?$")]
    forwarded_proto: Option<String>,
    /// Traefik, Caddy: the app's host (and port).
    #[param(
        rename = "X-Forwarded-Host",
        nullable = false,
        pattern = "^[^/@\\\\ ?#]+$"
    )]
    forwarded_host: Option<String>,
    /// Traefik, Caddy: the original path and query (default `/`).
    #[param(rename = "X-Forwarded-Uri", nullable = false, pattern = "^/")]
    forwarded_uri: Option<String>,
    /// The client's: with `text/html`, a refusal in Traefik's or Caddy's dialect is a redirect
    /// to the login page instead of 401.
    #[param(rename = "Accept", nullable = false)]
    accept: Option<String>,
}

/// A valid session: let the request through. The headers are for the app behind the proxy
/// (nginx `auth_request_set`, Traefik `authResponseHeaders`, Caddy `copy_headers`).
#[derive(utoipa::ToResponse)]
#[response(
    description = "A valid session: let the request through, with the user's identity for the app",
    headers(
        ("Remote-User" = String, description = "The username (Authelia's name)"),
        ("Remote-Name" = String, description = "The display name, if known"),
        ("Remote-Email" = String, description = "The account's email address, only once verified"),
        ("X-Auth-Request-User" = String, description = "The username (oauth2-proxy's name)"),
        ("X-Auth-Request-Preferred-Username" = String, description = "The username"),
        ("X-Auth-Request-Email" = String, description = "The account's email address, only once verified"),
        ("Remote-Groups" = String, description = "The user's groups, comma-separated, when they are in any (Authelia's name)"),
        ("X-Auth-Request-Groups" = String, description = "The user's groups, comma-separated, when they are in any (oauth2-proxy's name)"),
        ("X-Cloakroom-Jwt" = String, description = "A short-lived service JWT for the app, \
            signed with a key from `/.well-known/jwks.json`"),
    )
)]
#[allow(dead_code)] // Described, never built.
pub(crate) struct Allowed;

/// No valid session, in Traefik's or Caddy's dialect, for a browser.
#[derive(utoipa::ToResponse)]
#[response(
    description = "No valid session, a browser (`Accept: text/html`) and Traefik's or Caddy's dialect: \
        to the login page; 302 when the original method is a safe one, 303 otherwise (the browser then \
        GETs the page)",
    headers(("Location" = String, description = "The login page, with the original URL as `rd`")),
)]
#[allow(dead_code)] // Described, never built.
pub(crate) struct ToLogin;

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
                message: "Forwarding headers are accepted only from the proxies in \
                          trusted_proxies."
                    .into(),
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
                message: "This host is not one of the protected apps (app_origins).".into(),
            });
        }
        // A native app's bearer token is never sent by a browser on its own: no other site
        // can make a request carry it. The session layer says whether it took one — an app's
        // own `Authorization` beside a cookie is no exemption.
        if state.settings.forward_auth_csrf
            && !cloakroom_axum::is_bearer_request(parts)
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

fn login_url(state: &AppState, fwd: &ForwardedRequest, page: &str) -> String {
    let public = state.settings.public_origin.as_str();
    match &fwd.url {
        Some(url) => {
            let rd: String =
                url::form_urlencoded::byte_serialize(url.as_str().as_bytes()).collect();
            format!("{public}{page}?rd={rd}")
        }
        None => format!("{public}{page}"),
    }
}

fn sign_in_first() -> WebError {
    WebError::Forward {
        status: StatusCode::UNAUTHORIZED,
        message: "You are not signed in. Please sign in.".into(),
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
const REMOTE_GROUPS: HeaderName = HeaderName::from_static("remote-groups");
const X_AUTH_REQUEST_GROUPS: HeaderName = HeaderName::from_static("x-auth-request-groups");

/// The shared decision: `success` is the status to answer a valid session with (200, or 202
/// for oauth2-proxy).
async fn decide(
    state: &AppState,
    fwd: &ForwardedRequest,
    target: Option<&RuleTarget>,
    anonymous: Decision,
    session: Option<Session>,
    success: StatusCode,
) -> Result<Response, WebError> {
    // Who the user is now, not when they signed in: a session whose account is gone or
    // disabled lets nobody through.
    let signed_in = match session {
        Some(session) => match state.identities.of(session.user_id()).await? {
            Some(identity) => Some((session, identity)),
            None => {
                // The account is gone or disabled: its session is worth nothing. Ended here,
                // or the login page would find it valid and send the browser straight back.
                let _ = session.logout().await;
                None
            }
        },
        None => None,
    };
    let Some((session, identity)) = signed_in else {
        return match anonymous.outcome {
            Outcome::Deny => Ok(denied(state, fwd, None)),
            _ => to_sign_in(state, fwd),
        };
    };
    match rules_decide(state, target, &fwd.method, Some(&identity)).outcome {
        Outcome::Allow | Outcome::Bypass => {}
        Outcome::TwoFactor => {
            if AuthLevel::of(session.record()) != AuthLevel::Aal2 {
                events::step_up_required(
                    &identity.username,
                    fwd.url.as_ref().map(url::Url::as_str),
                );
                return to_step_up(state, fwd);
            }
        }
        // A rule refused this user: 403, never the login page (signing in again would change
        // nothing, and a redirect there loops).
        Outcome::Deny | Outcome::SignIn => return Ok(denied(state, fwd, Some(&identity))),
    }
    let headers = state
        .minter
        .forward_headers(
            session.record(),
            &identity,
            audience(state, fwd),
            state.clock.now(),
        )
        .map_err(|e| mint_failed(&e))?;
    metrics::forward_auth(metrics::ForwardOutcome::Allowed);
    Ok(allowed(success, &headers))
}

/// `url` (with `raw`, its path and query as the client sent them, when known) as the access
/// rules see it; `None` when there are no rules, so that a check without them works nothing
/// out. Without a URL (a direct check) the request is for the public URL's host.
pub(crate) fn rule_target(
    state: &AppState,
    url: Option<&url::Url>,
    raw: Option<&str>,
) -> Option<RuleTarget> {
    if state.settings.access_rules.is_empty() {
        return None;
    }
    let host = url
        .and_then(url::Url::host_str)
        .unwrap_or_else(|| state.settings.public_origin.host())
        .to_owned();
    Some(RuleTarget::new(host, url.map_or("/", url::Url::path), raw))
}

/// What the access rules say about `target` for `who` (anonymous: `None`). Without a target
/// (no rules) the default policy decides.
pub(crate) fn rules_decide(
    state: &AppState,
    target: Option<&RuleTarget>,
    method: &str,
    who: Option<&Identity>,
) -> Decision {
    let rules = &state.settings.access_rules;
    let who = who.map(|i| Who {
        username: &i.username,
        groups: &i.groups,
    });
    match target {
        Some(target) => rules.decide_strictest(target, method, who.as_ref()),
        // Nothing to match: `decide` falls through to the default policy.
        None => rules.decide(
            &AccessRequest {
                host: "",
                path: "/",
                method,
            },
            who.as_ref(),
        ),
    }
}

/// A request a rule refused: 403, in the proxy's dialect. A browser behind Traefik or Caddy
/// (which pass the answer through) gets the page that says who is signed in; nginx gets the
/// JSON refusal, which its configuration turns into a redirect to `/access-denied`.
fn denied(state: &AppState, fwd: &ForwardedRequest, who: Option<&Identity>) -> Response {
    metrics::forward_auth(metrics::ForwardOutcome::Denied);
    let url = fwd.url.as_ref().map(url::Url::as_str);
    events::access_denied(who.map(|i| i.username.as_str()), url);
    let error = WebError::Denied {
        user: who.map(|i| i.username.clone()),
    };
    let mut response = if fwd.flavor == Flavor::Forwarded && fwd.accepts_html {
        pages::denied_page(&state.site, who.map(|i| i.username.as_str()), url)
    } else {
        error.render(&Format::Json)
    };
    if let Some(who) = who
        && let Ok(v) = HeaderValue::from_str(&who.username)
    {
        response.headers_mut().insert(X_CLOAKROOM_DENIED, v);
    }
    response
}

/// Names the signed-in user a rule refused, for the proxy's logs and error page.
const X_CLOAKROOM_DENIED: HeaderName = HeaderName::from_static("x-cloakroom-denied");

/// No valid session: where to sign in, in the proxy's dialect.
fn to_sign_in(state: &AppState, fwd: &ForwardedRequest) -> Result<Response, WebError> {
    send_to(fwd, &login_url(state, fwd, "/login"), sign_in_first)
}

/// A session with one factor where a rule asks for two: to the step-up page, which comes back
/// here once the second factor is given. `X-Cloakroom-Step-Up: 1` tells a program why.
fn to_step_up(state: &AppState, fwd: &ForwardedRequest) -> Result<Response, WebError> {
    let mut response = match send_to(fwd, &login_url(state, fwd, "/step-up"), step_up_first) {
        Ok(r) => r,
        Err(e) => e.render(&Format::Json),
    };
    response
        .headers_mut()
        .insert(X_CLOAKROOM_STEP_UP, HeaderValue::from_static("1"));
    Ok(response)
}

/// Says that a rule asks this session for its second factor.
const X_CLOAKROOM_STEP_UP: HeaderName = HeaderName::from_static("x-cloakroom-step-up");

/// The answer that sends a browser to `url` (a page of ours, with `rd`), in the proxy's
/// dialect; `refusal` for a client that is not a browser.
fn send_to(
    fwd: &ForwardedRequest,
    url: &str,
    refusal: fn() -> WebError,
) -> Result<Response, WebError> {
    metrics::forward_auth(metrics::ForwardOutcome::Unauthenticated);
    Ok(match fwd.flavor {
        Flavor::Nginx => {
            // Rendered here, not by the group: the refusal carries where to go.
            let mut r = refusal().render(&Format::Json);
            if let Ok(v) = HeaderValue::from_str(url) {
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
            (status, [(header::LOCATION, url)]).into_response()
        }
        _ => return Err(refusal()),
    })
}

fn step_up_first() -> WebError {
    WebError::Forward {
        status: StatusCode::UNAUTHORIZED,
        message: "This app asks for your second factor. Please confirm it is you.".into(),
    }
}

/// The service JWT's audience: `jwt_audience` if set, else the app's origin (the public
/// URL's for a direct check).
fn audience<'a>(state: &'a AppState, fwd: &'a ForwardedRequest) -> &'a str {
    match &state.settings.jwt_audience {
        Some(aud) => aud.as_str(),
        None => fwd
            .app_origin()
            .unwrap_or(&state.settings.public_origin)
            .as_str(),
    }
}

fn mint_failed(e: &MintError) -> WebError {
    tracing::error!(error = %crate::error_chain::chain(e), "minting a service JWT failed");
    WebError::Forward {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: "The service token could not be issued. Try again in a moment.".into(),
    }
}

/// The answer that lets a request through, with the identity headers for the app. It goes to
/// the proxy alone — nginx drops a subrequest's answer, Traefik and Caddy pass a 2xx's request
/// on to the app and copy only the headers they were told to — so the page-protecting headers
/// (CSP, framing, referrer) would be 250 bytes on every check for nobody: its service JWT
/// marks it as the proxy's (see [`crate::web::for_the_proxy`]).
fn allowed(success: StatusCode, headers: &ForwardHeaders) -> Response {
    let mut response = success.into_response();
    let h = response.headers_mut();
    // Room for all of them at once: growing the map insert by insert reallocated it twice per
    // check (3 % of a check in the profile).
    h.reserve(12);
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
    if let Some(groups) = &headers.groups {
        h.insert(REMOTE_GROUPS, groups.clone());
        h.insert(X_AUTH_REQUEST_GROUPS, groups.clone());
    }
    h.insert(X_CLOAKROOM_JWT, headers.jwt.clone());
    if let Some(level) = &headers.level {
        h.insert(REMOTE_AUTH_LEVEL, level.clone());
    }
    response
}

/// The session's assurance level for the app: `aal1` or `aal2`.
const REMOTE_AUTH_LEVEL: HeaderName = HeaderName::from_static("remote-auth-level");

/// Says why a download link was refused, in every dialect (its code: `link_used`, …).
const X_CLOAKROOM_LINK: HeaderName = HeaderName::from_static("x-cloakroom-link");

/// Decides a request that carries a download link (a `cloakroom_link` parameter) by the link
/// alone; `None` for any other request.
///
/// The link decides even when a session cookie comes with the request: the link names what it
/// opens and as whom, and a colleague who is signed in as themselves must still be able to
/// open a file shared with them. A bad link is refused, never quietly replaced by the
/// session, so nobody is told a link works when it does not.
async fn by_link(
    state: &AppState,
    fwd: &ForwardedRequest,
    ip: Option<IpAddr>,
    success: StatusCode,
) -> Option<Result<Response, WebError>> {
    let (Some(origin), Some(target)) = (fwd.app_origin(), fwd.target.as_deref()) else {
        return None;
    };
    if !download::carries_link(target) {
        return None;
    }
    let opened = download::open(
        state.links(),
        &state.sessions,
        state.account_store().as_ref(),
        origin,
        &fwd.method,
        target,
        state.clock.now(),
    )
    .await;
    Some(match opened {
        Ok(opened) => link_allowed(state, fwd, &opened, ip, success).await,
        Err(refusal) => link_refused(fwd, refusal, ip),
    })
}

async fn link_allowed(
    state: &AppState,
    fwd: &ForwardedRequest,
    opened: &download::Opened,
    ip: Option<IpAddr>,
    success: StatusCode,
) -> Result<Response, WebError> {
    let account = &opened.account;
    // The maker as forward auth knows them (cached where it can be); `open` found the account
    // enabled a moment ago, so none here means it was disabled since.
    let Some(who) = state.identities.of(&account.id).await? else {
        return Err(sign_in_first());
    };
    // A link lends its maker's access, never more: what the rules refuse the maker, the link
    // does not open (their groups may have changed since it was made).
    let target = rule_target(state, fwd.url.as_ref(), fwd.target.as_deref());
    // A link carries no second factor: what a rule keeps for two factors it does not open.
    let decision = rules_decide(state, target.as_ref(), &fwd.method, Some(&who));
    if !matches!(decision.outcome, Outcome::Allow | Outcome::Bypass) {
        return Ok(denied(state, fwd, Some(&who)));
    }
    let headers = state
        .minter
        .link_headers(
            &account.id,
            &opened.id,
            &who,
            audience(state, fwd),
            state.clock.now(),
        )
        .map_err(|e| mint_failed(&e))?;
    metrics::download_link("opened");
    events::link_opened(
        account.username.as_str(),
        &opened.id.to_string(),
        opened.single_use,
        ip,
    );
    Ok(allowed(success, &headers))
}

/// A refused link: its status, code and message, and `X-Cloakroom-Link: <code>`.
///
/// nginx's `auth_request` passes only 401 and 403 on (any other status becomes a 500), so in
/// nginx's dialect every link refusal is 403; the example configuration turns
/// `X-Cloakroom-Link` back into 410 or 400 for the client. Traefik and Caddy pass the answer
/// through as it is.
fn link_refused(
    fwd: &ForwardedRequest,
    refusal: download::Refusal,
    ip: Option<IpAddr>,
) -> Result<Response, WebError> {
    let code = refusal.code();
    let id = refusal
        .link_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let error = WebError::Link(refusal);
    if matches!(error, WebError::Link(download::Refusal::Store(_))) {
        // Fail closed, like a session store that cannot answer.
        return Err(error);
    }
    metrics::download_link(code);
    events::link_refused(code, &id, ip);
    let mut response = match fwd.flavor {
        Flavor::Nginx => {
            // Rendered here, not by the group: the status is the dialect's.
            let mut r = error.render(&Format::Json);
            *r.status_mut() = StatusCode::FORBIDDEN;
            r
        }
        _ => error.into_response(),
    };
    response
        .headers_mut()
        .insert(X_CLOAKROOM_LINK, HeaderValue::from_static(code));
    Ok(response)
}

/// May this request through?
///
/// The proxy asks before passing a request to an app. Any method is answered alike: the
/// method of the request asked about is in `X-Original-Method` or `X-Forwarded-Method`.
/// Authelia's `/api/authz/auth-request`, `/api/authz/forward-auth` and `/api/verify` are this
/// same endpoint.
///
/// A forwarded URL that carries a `cloakroom_link` parameter (a download link from
/// `POST /api/links`) is decided by the link alone, session or not: a `GET` or `HEAD` of
/// exactly the URL it was made for is let through as its maker, with `"link": true` in the
/// service JWT; anything else is refused with `X-Cloakroom-Link` saying why.
#[utoipa::path(get, path = "/auth/verify", tag = "forward-auth",
    params(ForwardingHeaders),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, response = Allowed),
        (status = 302, response = ToLogin),
        (status = 303, response = ToLogin),
    ))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    Checked(fwd): Checked,
    ClientAddr(ip): ClientAddr,
    auth: Auth,
) -> Result<Response, WebError> {
    answer(&state, &fwd, ip, &auth, StatusCode::OK).await
}

/// The decision both dialects share; `success` is the status that lets a request through.
async fn answer(
    state: &AppState,
    fwd: &ForwardedRequest,
    ip: Option<IpAddr>,
    auth: &Auth,
    success: StatusCode,
) -> Result<Response, WebError> {
    if let Some(answer) = by_link(state, fwd, ip, success).await {
        return answer;
    }
    // Worked out once for all the decisions below (and not at all without rules).
    let target = rule_target(state, fwd.url.as_ref(), fwd.target.as_deref());
    // A bypassed request is one for anybody, signed in or not: no session lookup.
    let anonymous = rules_decide(state, target.as_ref(), &fwd.method, None);
    if anonymous.outcome == Outcome::Bypass {
        metrics::forward_auth(metrics::ForwardOutcome::Allowed);
        return Ok(success.into_response());
    }
    // Validated only now: a link decides alone, so its request costs no session lookup.
    let session = auth.session().await?;
    decide(state, fwd, target.as_ref(), anonymous, session, success).await
}

/// May this request through? (oauth2-proxy's contract)
///
/// As `/auth/verify`, answering 202 instead of 200 when it may.
#[utoipa::path(get, path = "/oauth2/auth", tag = "oauth2-proxy",
    params(ForwardingHeaders),
    security((), ("session_cookie" = [])),
    responses(
        (status = 202, response = Allowed),
        (status = 302, response = ToLogin),
        (status = 303, response = ToLogin),
    ))]
pub(crate) async fn oauth2_auth(
    State(state): State<AppState>,
    Checked(fwd): Checked,
    ClientAddr(ip): ClientAddr,
    auth: Auth,
) -> Result<Response, WebError> {
    answer(&state, &fwd, ip, &auth, StatusCode::ACCEPTED).await
}

/// `?rd=` on oauth2-proxy's sign-in and sign-out.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Rd {
    /// Where to go afterwards: a path here, or a URL on one of `redirect_hosts` (anything
    /// else is ignored).
    rd: Option<String>,
}

/// Sign in, then come back.
///
/// To the login page, keeping `rd` if it is allowed.
#[utoipa::path(get, path = "/oauth2/sign_in", tag = "oauth2-proxy", params(Rd),
    responses((status = 303, description = "To the login page",
        headers(("Location" = String, description = "`/login`, with `rd` when it is allowed")))))]
pub(crate) async fn oauth2_sign_in(
    State(state): State<AppState>,
    WebQuery(q): WebQuery<Rd>,
) -> Response {
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
struct SignOutPage<'a> {
    site: &'a crate::web::site::Site,
    nav: Option<pages::Nav>,
    csrf: String,
    rd: Option<String>,
}

/// Sign out, after asking.
///
/// oauth2-proxy signs out on any GET, so any page — an `<img>` on a forum of the same site, a
/// link on another — could sign users out. Here a GET signs out only as a same-origin
/// navigation (`Sec-Fetch-Site: same-origin`, `Sec-Fetch-Mode: navigate`, `Sec-Fetch-Dest:
/// document`) with a valid `rd` (an app's own "sign out" link); anything else gets a
/// confirmation page whose form posts, with the CSRF token, to `POST /oauth2/sign_out`.
#[utoipa::path(get, path = "/oauth2/sign_out", tag = "oauth2-proxy", params(Rd),
    security((), ("session_cookie" = [])),
    responses(
        (status = 200, description = "A page asking to confirm, with a form that posts to `POST /oauth2/sign_out`",
            content_type = "text/html", body = String),
        (status = 303, description = "Signed out (a same-origin navigation with a valid `rd`), or there was no session: to `rd`, or the login page",
            headers(("Location" = String, description = "`rd`, or `/login`"))),
    ))]
pub(crate) async fn oauth2_sign_out(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    WebQuery(q): WebQuery<Rd>,
) -> Result<Response, WebError> {
    let hosts = &state.settings.redirect_hosts;
    let rd = q.rd.as_deref().and_then(|rd| ReturnTo::checked(rd, hosts));
    let Some(session) = auth.session().await? else {
        // Nothing to end.
        return Ok(Redirect::to(rd.unwrap_or_else(ReturnTo::signed_out).as_str()).into_response());
    };
    if let Some(rd) = &rd
        && same_origin_navigation(&headers)
    {
        return sign_out(auth, rd.clone()).await;
    }
    Ok(pages::render(
        StatusCode::OK,
        &SignOutPage {
            site: &state.site,
            nav: Some(pages::nav(&session)),
            csrf: session.csrf_token(),
            rd: rd.map(|r| r.as_str().to_owned()),
        },
    ))
}

/// The confirmation form of [`oauth2_sign_out`] (its `csrf_token` field is the session
/// layer's).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SignOutForm {
    /// Where to go afterwards (as for `GET`).
    rd: Option<String>,
}

/// Sign out (the confirmation form).
///
/// Handled with the pages, on their session layer (so the CSRF token is required, and errors
/// are pages): ends the session, then to `rd` (if allowed) or the login page, which says so.
#[utoipa::path(post, path = "/oauth2/sign_out", tag = "oauth2-proxy",
    request_body(content = SignOutForm, content_type = "application/x-www-form-urlencoded"),
    security((), ("session_cookie" = [])),
    responses((status = 303, description = "Signed out: to `rd`, or the login page. `Clear-Site-Data: \"cookies\"`.",
        headers(("Location" = String, description = "`rd`, or `/login`")))))]
pub(crate) async fn oauth2_sign_out_confirmed(
    State(state): State<AppState>,
    auth: Auth,
    WebForm(form): WebForm<SignOutForm>,
) -> Result<Response, WebError> {
    let target = match form.rd.as_deref() {
        Some(rd) => ReturnTo::parse(Some(rd), &state.settings.redirect_hosts),
        None => ReturnTo::signed_out(),
    };
    sign_out(auth, target).await
}

async fn sign_out(auth: Auth, target: ReturnTo) -> Result<Response, WebError> {
    flows::logout(&auth).await?;
    Ok(([CLEAR_SITE_DATA.clone()], Redirect::to(target.as_str())).into_response())
}

/// Who is signed in, in oauth2-proxy's terms.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Userinfo {
    /// The user id.
    user: String,
    /// The email address, if known.
    email: Option<String>,
    /// The username.
    preferred_username: String,
}

/// Who is signed in (oauth2-proxy's contract).
#[utoipa::path(get, path = "/oauth2/userinfo", tag = "oauth2-proxy",
    security((), ("session_cookie" = [])),
    responses((status = 200, description = "The signed-in user", body = Userinfo)))]
pub(crate) async fn oauth2_userinfo(
    State(state): State<AppState>,
    session: Option<Session>,
) -> Result<Response, WebError> {
    let session = session.ok_or_else(sign_in_first)?;
    // Who the user is now, as forward auth tells apps (not what the session froze).
    let identity = state
        .identities
        .of(session.user_id())
        .await?
        .ok_or_else(sign_in_first)?;
    Ok(axum::Json(Userinfo {
        user: session.user_id().as_str().to_owned(),
        email: identity.email.clone(),
        preferred_username: identity.username.clone(),
    })
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
            target: Some("/x".to_owned()),
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
