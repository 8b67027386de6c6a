//! The HTTP edge: the router, its middleware, and the handlers of each route group.
//!
//! | group | routes | errors as |
//! | --- | --- | --- |
//! | [`pages`] (and the pages of [`reset`] and [`email`]) | `/`, `/login`, `/signup`, `/logout`, `/account/…`, `/password-reset`, `/verify-email`, and any unknown path | HTML pages (JSON for a 404 that is not for a browser) |
//! | [`api`], [`admin`] | `/api/…`, `/api/admin/…` (OpenAPI at `/openapi.json`) | JSON |
//! | [`forward`] | `/auth/verify`, Authelia's and oauth2-proxy's endpoints | JSON, in the proxy's dialect |
//! | [`ops`] | `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, JWKS, stylesheets | JSON |
//!
//! A new route goes into the module of its group and its line in [`app`]; unless it is a page,
//! its handler gets a `#[utoipa::path]` and a place in [`openapi`]'s document (a test fails
//! until it has). Handlers fail with a [`WebError`](error::WebError); the group's renderer
//! (see [`error`]) writes it, once.

pub(crate) mod admin;
pub(crate) mod api;
pub(crate) mod client_ip;
pub(crate) mod device;
pub(crate) mod email;
pub(crate) mod error;
pub(crate) mod flows;
pub(crate) mod forward;
pub(crate) mod mfa;
pub(crate) mod oidc;
pub(crate) mod openapi;
pub(crate) mod ops;
pub(crate) mod pages;
pub(crate) mod passkeys;
pub(crate) mod redirect;
pub(crate) mod reset;
pub(crate) mod site;
pub(crate) mod when;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, delete, get, patch, post};
use cloakroom_axum::{OtherSchemes, SessionLayer};

use crate::state::AppState;
use error::{Format, WebError, render};

/// Largest request body accepted anywhere (JSON or form).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let settings = &state.settings;
    let client_ip = state.client_ip.clone();
    let mut layer = SessionLayer::new(state.sessions.clone(), settings.public_origin.clone())
        .with_cookie_name(&settings.cookie_name)
        .with_same_site(settings.same_site)
        .with_max_form_bytes(MAX_BODY_BYTES)
        .with_client_ip(move |parts| client_ip.of(parts));
    if let Some(domain) = &settings.cookie_domain {
        layer = layer.with_cookie_domain(domain);
    }
    for origin in &settings.allowed_origins {
        layer = layer.with_allowed_origin(origin.clone());
    }
    // Only a loopback public URL has other spellings that reach the same server.
    let loopback_public = url::Url::parse(settings.public_origin.as_str())
        .ok()
        .filter(|u| {
            u.scheme() == "http"
                && u.host()
                    .is_some_and(|h| crate::config::is_loopback_host(&h))
        });
    let hsts = settings
        .hsts_max_age
        .and_then(|age| HeaderValue::from_str(&format!("max-age={}", age.as_secs())).ok());
    let csp = state.site.csp.clone();
    let site = state.site.clone();

    // The API takes native apps' bearer tokens as well as cookies; only the sign-in itself
    // lets a request without any browser's headers through (it then sets no cookie).
    let api_layer = layer.clone().with_bearer_sessions(OtherSchemes::Refuse);
    let sign_in = Router::new()
        .route("/api/login", post(api::login))
        .route("/api/login/second-factor", post(mfa::login_second_factor))
        .route(
            "/api/login/second-factor/passkey-options",
            post(passkeys::second_factor_options),
        )
        .layer(api_layer.clone().with_non_browser_sign_in())
        .layer(middleware::map_response(|r| render(Format::Json, r)));
    // The routes that end by setting a browser's cookie take no bearer token: a native app's
    // request there is one without a browser's origin, and the origin check refuses it before
    // anything is done.
    let browser_sign_in = Router::new()
        .route("/api/signup", post(api::signup))
        .route(
            "/api/login/passkey-options",
            post(passkeys::sign_in_options),
        )
        .route("/api/login/passkey", post(passkeys::sign_in))
        .route(
            "/api/password-reset/complete",
            post(reset::password_reset_complete),
        )
        .layer(layer.clone())
        .layer(middleware::map_response(|r| render(Format::Json, r)));
    let api = Router::new()
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::current))
        .route("/api/sessions", get(api::sessions))
        .route("/api/sessions/revoke-others", post(api::revoke_others))
        .route("/api/sessions/{id}", delete(api::revoke))
        .route("/api/password", post(api::change_password))
        .route("/api/step-up", post(mfa::step_up))
        .route("/api/mfa", get(mfa::factors))
        .route(
            "/api/mfa/totp",
            post(mfa::totp_begin).delete(mfa::totp_remove),
        )
        .route("/api/mfa/totp/confirm", post(mfa::totp_confirm))
        .route("/api/mfa/recovery-codes", post(mfa::recovery_codes))
        .route(
            "/api/mfa/passkeys",
            get(passkeys::list).post(passkeys::register),
        )
        .route(
            "/api/mfa/passkeys/options",
            post(passkeys::registration_options),
        )
        .route(
            "/api/mfa/passkeys/{id}",
            patch(passkeys::rename).delete(passkeys::remove),
        )
        .route(
            "/api/step-up/passkey-options",
            post(passkeys::step_up_options),
        )
        .route("/api/account", delete(api::delete_account))
        .route("/api/links", post(api::create_link))
        .route("/api/password-reset", post(reset::password_reset_request))
        .route("/api/email", post(email::change_api))
        .route("/api/email/verify", post(email::verify_api))
        .route("/api/email/resend", post(email::resend_api))
        .route("/api/admin/users", get(admin::users))
        .route("/api/admin/users/{username}", get(admin::user))
        .route(
            "/api/admin/users/{username}/groups",
            post(admin::change_groups),
        )
        .route("/api/admin/groups", get(admin::groups))
        .layer(api_layer)
        // Outside the session layer, so that its refusals are rendered too.
        .layer(middleware::map_response(|r| render(Format::Json, r)));

    let pages = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login_submit))
        .route(
            "/login/second-factor",
            get(mfa::second_factor_page).post(mfa::second_factor_submit),
        )
        .route("/step-up", get(mfa::step_up_page).post(mfa::step_up_submit))
        .route("/account/security", get(mfa::security_page))
        .route("/account/security/totp", post(mfa::security_totp_begin))
        .route(
            "/account/security/totp/confirm",
            post(mfa::security_totp_confirm),
        )
        .route(
            "/account/security/totp/remove",
            post(mfa::security_totp_remove),
        )
        .route(
            "/account/security/recovery-codes",
            post(mfa::security_recovery_codes),
        )
        .route("/account/security/passkeys", post(passkeys::security_add))
        .route(
            "/account/security/passkeys/{id}/rename",
            post(passkeys::security_rename),
        )
        .route(
            "/account/security/passkeys/{id}/remove",
            post(passkeys::security_remove),
        )
        .route("/login/passkey", post(passkeys::sign_in_submit))
        .route(
            "/signup",
            get(pages::signup_page).post(pages::signup_submit),
        )
        .route("/logout", post(pages::logout))
        .route("/access-denied", get(pages::access_denied))
        .route("/oauth2/sign_out", post(forward::oauth2_sign_out_confirmed))
        .route("/account/sessions", get(pages::sessions_page))
        .route(
            "/account/sessions/revoke-others",
            post(pages::revoke_others),
        )
        .route("/account/sessions/{id}/revoke", post(pages::revoke_device))
        .route(
            "/account/password",
            get(pages::password_page).post(pages::password_submit),
        )
        .route(
            "/account/delete",
            get(pages::delete_page).post(pages::delete_submit),
        )
        .route(
            "/account/email",
            get(email::email_page_get).post(email::email_submit),
        )
        .route("/account/email/resend", post(email::resend_own))
        .route("/account/connections", get(oidc::connections_page))
        .route("/account/connections/connect", post(oidc::connect_start))
        .route("/account/connections/disconnect", post(oidc::disconnect))
        .route(
            "/password-reset",
            get(reset::reset_page).post(reset::reset_submit),
        )
        .route(
            "/verify-email",
            get(email::verify_page).post(email::verify_submit),
        )
        .route("/oidc/{id}/login", get(oidc::login))
        .route("/oidc/{id}/callback", get(oidc::callback))
        .route("/verify-email/resend", post(email::resend_submit))
        // Inside the session layer, so that an error page knows who is signed in.
        .layer(middleware::from_fn(pages::mark_visitor))
        .layer(layer.clone())
        .layer(middleware::map_response({
            let site = site.clone();
            move |r| render(Format::Html(site.clone()), r)
        }))
        .layer(middleware::from_fn(move |r, n| {
            canonical_loopback(loopback_public.clone(), r, n)
        }));

    // Forward auth answers a proxy about *another* request: its own method says nothing, and
    // its CSRF rules apply to the forwarded request (see `forward`), so the session layer's
    // CSRF checks are off here — and only here.
    let forward = Router::new()
        .route("/auth/verify", any(forward::verify))
        .route("/api/authz/auth-request", any(forward::verify))
        .route("/api/authz/forward-auth", any(forward::verify))
        .route("/api/verify", any(forward::verify))
        .route("/oauth2/auth", any(forward::oauth2_auth))
        .route("/oauth2/sign_in", get(forward::oauth2_sign_in))
        .route("/oauth2/sign_out", get(forward::oauth2_sign_out))
        .route("/oauth2/userinfo", get(forward::oauth2_userinfo))
        .layer(
            layer
                .clone()
                .danger_disable_csrf()
                .with_bearer_sessions(OtherSchemes::Ignore),
        )
        .layer(middleware::map_response(|r| render(Format::Json, r)));

    // A provider posts logout tokens from its own servers: no browser, no Origin, no session —
    // the token's signature is the whole authentication.
    let provider_calls = Router::new()
        .route(
            "/oidc/{id}/backchannel-logout",
            post(oidc::backchannel_logout),
        )
        .layer(middleware::map_response(|r| render(Format::Json, r)));

    let mut ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/openapi.json", get(ops::openapi))
        .route("/.well-known/jwks.json", get(ops::jwks))
        .route("/static/style.css", get(ops::style))
        .route("/static/passkeys.js", get(ops::passkeys_js))
        .route("/static/branding.css", get(ops::branding_css));
    if settings.metrics_listen.is_none() {
        ops = ops
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics));
    }
    let request_timeout = settings.request_timeout;

    // A 404 for a browser is a page that knows who is signed in, so it runs under the session
    // layer — without its CSRF checks: it changes nothing, whatever the method, and a refused
    // POST to a path that does not exist would only hide the 404.
    let not_found = Router::new()
        .fallback(pages::not_found)
        .layer(layer.danger_disable_csrf())
        .with_state(state.clone());

    Router::new()
        .merge(api)
        .merge(sign_in)
        .merge(browser_sign_in)
        .merge(pages)
        .merge(forward)
        .merge(provider_calls)
        .merge(ops)
        .fallback_service(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(move |r, n| {
            time_limit(request_timeout, r, n)
        }))
        .layer(middleware::from_fn(move |r, n| {
            security_headers(csp.clone(), hsts.clone(), r, n)
        }))
        .with_state(state)
}

/// A page asked for at another spelling of a loopback public URL (`127.0.0.1:8080` when the
/// public URL is `http://localhost:8080`) is sent to the public URL on GET. Left alone, the
/// page would load and then every form on it would be refused as cross-origin, since the
/// browser's `Origin` names the spelling it was opened at.
async fn canonical_loopback(public: Option<url::Url>, request: Request, next: Next) -> Response {
    use axum::response::IntoResponse as _;
    let Some(public) = public else {
        return next.run(request).await;
    };
    let safe = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let other_spelling = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| url::Url::parse(&format!("http://{h}/")).ok())
        .is_some_and(|seen| {
            seen.port_or_known_default() == public.port_or_known_default()
                && seen
                    .host()
                    .is_some_and(|h| crate::config::is_loopback_host(&h))
                && seen.host_str() != public.host_str()
        });
    if !(safe && other_spelling) {
        return next.run(request).await;
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", axum::http::uri::PathAndQuery::as_str);
    let target = format!("{}{path}", public.as_str().trim_end_matches('/'));
    axum::response::Redirect::temporary(&target).into_response()
}

/// The operations endpoints alone, for the `metrics_listen` address: `/metrics`, `/readyz`
/// and `/healthz`, for the monitoring network rather than the world.
pub(crate) fn metrics_app(state: AppState) -> Router {
    let csp = state.site.csp.clone();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .layer(middleware::from_fn(move |r, n| {
            security_headers(csp.clone(), None, r, n)
        }))
        .with_state(state)
}

/// Answers 503 to a request still unanswered after `limit` (a stuck store, say), so that it
/// cannot hold its connection and memory for ever.
async fn time_limit(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(limit_secs = limit.as_secs(), "a request timed out");
            WebError::TimedOut.render(&Format::Json)
        }
    }
}

/// Added to every logout: the browser drops this site's cookies even if the server could not
/// end the session (store down), and whatever else the site stored in them.
pub(crate) static CLEAR_SITE_DATA: (HeaderName, HeaderValue) = (
    HeaderName::from_static("clear-site-data"),
    HeaderValue::from_static("\"cookies\""),
);

/// Headers every response carries, besides the Content-Security-Policy (which depends on the
/// site's branding: see `site::Site::load`). The CSP allows only our own stylesheets and
/// images (and the logo's host): the pages need no script at all, so an injected one cannot
/// run, and forms may only post back to us.
///
/// Built once, at compile time (the CSP once at start-up): a header name given as `&str` is
/// parsed and validated again on every response, and inserting the headers one by one made
/// the response's header map grow twice. Together that was about a sixth of the instructions
/// a `/healthz` request costs (callgrind, see `bench/README.md`).
static SECURITY_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Whether only a reverse proxy reads `response`: a forward-auth answer that lets a request
/// through, which always carries a service JWT and goes to no browser (see
/// `forward::allowed`). A header, not a response extension, marks it: inserting the first
/// extension allocates a map, on every check.
pub(crate) fn for_the_proxy(response: &Response) -> bool {
    const JWT: HeaderName = HeaderName::from_static(cloakroom_core::service_token::JWT_HEADER);
    response.status().is_success() && response.headers().contains_key(JWT)
}

/// Adds [`SECURITY_HEADERS`] and the site's `csp` to every response a browser may read,
/// leaving any a handler set itself, and `Strict-Transport-Security` when the public URL is
/// https (`hsts`, built once at start-up): after one visit a browser never tries this host
/// over plain http again, so the cookie cannot be stripped off a downgraded connection.
async fn security_headers(
    csp: HeaderValue,
    hsts: Option<HeaderValue>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if for_the_proxy(&response) {
        return response;
    }
    let h = response.headers_mut();
    h.reserve(SECURITY_HEADERS.len() + 2);
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(csp);
    for (name, value) in &SECURITY_HEADERS {
        h.entry(name).or_insert_with(|| value.clone());
    }
    if let Some(value) = hsts {
        h.insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    response
}

/// The client's address, as the trusted-proxy settings resolve it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(state.client_ip.of(parts)))
    }
}
