//! The OpenAPI document at `/openapi.json`: every route a program calls — the JSON API,
//! forward auth in each proxy's dialect, oauth2-proxy's endpoints, the JWKS and the
//! operations endpoints. The HTML pages and the stylesheet are for people and are left out
//! (`tests/it/openapi.rs` holds the list, and fails when a route is neither documented nor
//! on it).
//!
//! Each handler's `#[utoipa::path]` says what it answers when it succeeds. Refusals are
//! added here, in one place, because most of them do not come from the handler at all: the
//! session layer refuses a cross-origin request or a missing CSRF token before the handler
//! runs, the body extractor refuses a wrong `Content-Type`, the time limit answers 503 —
//! the same for every operation behind the same layers. [`document`] adds, to each
//! operation, the refusals of the layers in front of it ([`Group`], mirroring the route
//! groups of [`super::app`]) and its own ([`OWN`]). Each error response names the `error`
//! codes its body can hold (the `{"error", "message"}` body that
//! [`WebError::render`](super::error::WebError::render) writes), so a client can match on
//! them and a test can check that the server answers nothing undocumented.
//!
//! This is done on the generated JSON, not through utoipa's builders: what is added reads
//! like the document it produces.

use serde_json::{Value, json};
use utoipa::OpenApi as _;

use crate::config::Settings;
use crate::web::{admin, api, email, forward, mfa, oidc, ops, passkeys, reset};

/// The operations, schemas and tags utoipa generates from the handlers' annotations.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Cloakroom", description = "Server-side sessions: accounts, sign-in, your devices, sign out \
        everywhere; forward auth for reverse proxies, with short-lived service JWTs.\n\n\
        Authentication is the session cookie (`session_cookie`), or, for a native app, its session token as \
        `Authorization: Bearer` (`bearer_token`, from `POST /api/login` with `\"client\": \"native\"`) on `/api/…` and \
        forward auth; a bearer request needs no CSRF token, and one carrying both is refused (400). A state-changing request must come from \
        the server's own origin (Fetch Metadata `Sec-Fetch-Site`, else `Origin`) and, when it carries a session \
        cookie, the session's CSRF token in `X-CSRF-Token`. Every error body is `{\"error\": \"<code>\", \
        \"message\": \"…\"}`; each response lists the codes it can hold."),
    paths(
        api::signup, api::login, api::logout, api::current, api::sessions, api::revoke,
        api::revoke_others, api::change_password, api::delete_account, api::create_link,
        reset::password_reset_request, reset::password_reset_complete,
        email::change_api, email::verify_api, email::resend_api, oidc::backchannel_logout,
        forward::verify, forward::oauth2_auth, forward::oauth2_sign_in, forward::oauth2_sign_out,
        forward::oauth2_sign_out_confirmed, forward::oauth2_userinfo,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi, ops::jwks,
        admin::users, admin::user, admin::change_groups, admin::groups,
        mfa::login_second_factor, mfa::step_up, mfa::factors, mfa::totp_begin, mfa::totp_confirm,
        mfa::totp_remove, mfa::recovery_codes,
        passkeys::registration_options, passkeys::register, passkeys::list, passkeys::rename,
        passkeys::remove, passkeys::second_factor_options, passkeys::step_up_options,
        passkeys::sign_in_options, passkeys::sign_in,
    ),
    components(
        schemas(api::ErrorBody),
        responses(forward::Allowed, forward::ToLogin),
    ),
    tags(
        (name = "sessions", description = "Sign in and out; your devices"),
        (name = "accounts", description = "Sign up; change the password; delete the account"),
        (name = "links", description = "Download links: one exact URL of an app behind the proxy, \
            fetchable without a session, once or until it expires"),
        (name = "forward-auth", description = "The decision a reverse proxy asks for before letting a request through: \
            Cloakroom's own endpoint and Authelia's"),
        (name = "oauth2-proxy", description = "oauth2-proxy's endpoints, for proxies configured for it"),
        (name = "oidc", description = "Signing in through OpenID providers: the endpoint a provider calls"),
        (name = "operations", description = "Health, readiness, metrics, keys, this document"),
        (name = "admin", description = "Accounts and their groups, for members of `admin_group` only"),
        (name = "second factors", description = "An authenticator app (TOTP) and recovery codes; \
            the second step of a sign-in; step-up to `aal2`"),
        (name = "passkeys", description = "Passkeys (WebAuthn): registering and removing them, and the challenges \
            a second factor, a step-up or a sign-in without password (`passkey_login`) answers"),
    ),
)]
struct ApiDoc;

/// Authelia's endpoints: the same handler as `/auth/verify`, so the same operation, under
/// its own operation id.
const AUTHELIA: [(&str, &str); 3] = [
    ("/api/authz/auth-request", "authelia_auth_request"),
    ("/api/authz/forward-auth", "authelia_forward_auth"),
    ("/api/verify", "authelia_verify"),
];

/// The document as this server serves it: its public URL as the server, its cookie name in
/// the security scheme.
pub(crate) fn document(settings: &Settings) -> Value {
    // utoipa's types serialize to JSON without fail (every map key is a string).
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    doc["servers"] = json!([{ "url": settings.public_origin.as_str() }]);
    doc["components"]["securitySchemes"] = json!({
        "session_cookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.cookie_name,
            "description": "The session cookie, set by sign-up and login: an opaque random token \
                (`Secure`, `HttpOnly`, `Path=/`, `SameSite=Lax` unless configured `Strict`; the \
                `__Host-` prefix by default). Its name is the `cookie_name` setting.",
        },
        "bearer_token": {
            "type": "http",
            "scheme": "bearer",
            "description": "A native app's session token (43 characters), from `POST /api/login` with \
                `\"client\": \"native\"`. Accepted wherever the session cookie is, on `/api/…` and forward \
                auth; never by the pages. A browser's cookie token is not accepted here, nor this one as a cookie.",
        }
    });
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                add_refusals(method, path, op);
                add_bearer(method, path, op);
            }
        }
        if let Some(verify) = paths.get("/auth/verify").cloned() {
            for (path, id) in AUTHELIA {
                let mut item = verify.clone();
                item["get"]["operationId"] = id.into();
                item["get"]["summary"] = format!("Authelia's `{path}`: as `/auth/verify`.").into();
                paths.insert(path.to_owned(), item);
            }
        }
    }
    doc
}

/// The API operations that end by setting a browser's cookie, mounted without bearer tokens
/// (see [`super::app`]).
const BROWSER_ONLY: [&str; 4] = [
    "signup",
    "password_reset_complete",
    "passkey_sign_in_options",
    "passkey_sign_in",
];

/// Whether the session layer in front of `op` takes bearer tokens.
fn takes_bearer(group: Group, op: &Value) -> bool {
    matches!(group, Group::Api | Group::Forward)
        && !BROWSER_ONLY.contains(&op["operationId"].as_str().unwrap_or_default())
}

/// Where the session cookie is accepted on the API and forward auth, a native app's bearer
/// token is too (the pages' one form, `POST /oauth2/sign_out`, never takes it).
fn add_bearer(method: &str, path: &str, op: &mut Value) {
    if !takes_bearer(group(method, path), op) {
        return;
    }
    // `get_mut`, not indexing: `op["security"]` would add a `null` where there is none.
    if let Some(security) = op.get_mut("security").and_then(Value::as_array_mut)
        && security.contains(&json!({ "session_cookie": [] }))
    {
        security.push(json!({ "bearer_token": [] }));
    }
}

/// The layers in front of an operation, as [`super::app`] groups the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// `/api/…`: the session layer with its CSRF checks; errors as JSON.
    Api,
    /// Forward auth and oauth2-proxy: the session layer without CSRF checks (they apply to the
    /// forwarded request); errors as JSON.
    Forward,
    /// A form handled with the pages (oauth2-proxy's sign-out confirmation): the session
    /// layer with its CSRF checks; errors as HTML pages.
    Page,
    /// Health, readiness, metrics, keys, this document: no session layer.
    Ops,
}

fn group(method: &str, path: &str) -> Group {
    match (method, path) {
        ("post", "/oauth2/sign_out") => Group::Page,
        (_, "/auth/verify" | "/api/verify")
        | (_, "/oauth2/auth" | "/oauth2/sign_in" | "/oauth2/sign_out" | "/oauth2/userinfo") => {
            Group::Forward
        }
        (_, p) if p.starts_with("/api/authz/") => Group::Forward,
        (_, p) if p.starts_with("/api/") => Group::Api,
        _ => Group::Ops,
    }
}

/// One refusal: the status, when it happens, and the codes its body's `error` can hold.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: u16,
    codes: &'static [&'static str],
    when: &'static str,
}

const fn refusal(status: u16, codes: &'static [&'static str], when: &'static str) -> Refusal {
    Refusal {
        status,
        codes,
        when,
    }
}

const BUSY: Refusal = refusal(
    503,
    &["busy", "store_unavailable"],
    "Password hashing is saturated (`busy`; see `Retry-After`), or the account store is \
     unavailable.",
);

const NOT_ADMIN: Refusal = refusal(
    403,
    &["access_denied"],
    "Signed in, but not a member of `admin_group`.",
);

const ACCOUNTS_DOWN: Refusal = refusal(
    503,
    &["store_unavailable"],
    "The account store is unavailable.",
);

const STEP_UP: Refusal = refusal(
    403,
    &["step_up_required"],
    "The change needs a recent step-up (`POST /api/step-up`): with a second factor, one given \
     in this session within 15 minutes; without, the password within 15 minutes.",
);

const PASSKEY_NO_CHALLENGE: Refusal = refusal(
    400,
    &["no_challenge", "invalid_credential"],
    "No passkey challenge is under way (`no_challenge`: ask for one with the `…/passkey-options` \
     route first; each answers once, within 5 minutes), or the answer is not a credential \
     (`invalid_credential`).",
);

const PASSKEYS_UNAVAILABLE: Refusal = refusal(
    404,
    &["passkeys_unavailable"],
    "This server offers no passkeys (its public URL is an IP address), or — for a sign-in \
     without password — `passkey_login` is off.",
);

const NO_PASSKEYS: Refusal = refusal(409, &["no_passkeys"], "The account has no passkey.");

const CODE_THROTTLED: Refusal = refusal(
    429,
    &["too_many_attempts"],
    "Too many wrong codes for this account or from this network; see `Retry-After`.",
);

/// The refusals an operation (by operation id) makes itself; those of the layers in front of
/// it are added by [`layer_refusals`].
const OWN: &[(&str, &[Refusal])] = &[
    ("users", &[NOT_ADMIN, ACCOUNTS_DOWN]),
    ("groups", &[NOT_ADMIN, ACCOUNTS_DOWN]),
    (
        "user",
        &[
            NOT_ADMIN,
            refusal(404, &["not_found"], "No account has this username."),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "change_groups",
        &[
            NOT_ADMIN,
            refusal(404, &["not_found"], "No account has this username."),
            refusal(
                422,
                &["invalid_group"],
                "A group name breaks the rules (1 to 64 letters, digits, `.`, `-`, `_`, \
                 starting with a letter or digit).",
            ),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "signup",
        &[
            refusal(
                403,
                &["signup_closed", "invite_required", "invalid_invite"],
                "Sign-up is closed (`signup_closed`), needs an invitation (`invite_required`), \
                 or the invitation is not valid (`invalid_invite`: unknown, expired or used, \
                 not saying which).",
            ),
            refusal(
                409,
                &["username_taken"],
                "The username is taken (said only where sign-up is open, or to the holder of a \
                 valid invitation).",
            ),
            refusal(
                422,
                &[
                    "invalid_username",
                    "weak_password",
                    "invalid_email",
                    "email_required",
                ],
                "The username, the password or the email address breaks the rules, or the \
                 address is missing where sign-in needs a verified one (`email_required`).",
            ),
            refusal(
                429,
                &["too_many_attempts"],
                "Too many sign-ups from this network; see `Retry-After`.",
            ),
            BUSY,
        ],
    ),
    (
        "login",
        &[
            refusal(
                401,
                &["invalid_credentials"],
                "Unknown user or wrong password (indistinguishable).",
            ),
            refusal(
                403,
                &["account_disabled", "email_not_verified"],
                "The account is disabled (`account_disabled`), or sign-in needs a verified \
                 email address and the account has none yet (`email_not_verified`: follow the \
                 mailed link, or `POST /api/email/resend`); both said only after a correct \
                 password.",
            ),
            refusal(
                429,
                &["too_many_attempts"],
                "Too many failures for this account or from this network; see `Retry-After`.",
            ),
            BUSY,
        ],
    ),
    (
        "current",
        &[
            refusal(
                404,
                &["not_found"],
                "The account was deleted while the request ran.",
            ),
            refusal(
                503,
                &["store_unavailable"],
                "The account store is unavailable.",
            ),
        ],
    ),
    (
        "revoke",
        &[refusal(404, &["not_found"], "No such session of yours.")],
    ),
    (
        "login_second_factor",
        &[
            refusal(
                401,
                &[
                    "invalid_code",
                    "passkey_refused",
                    "passkey_possible_clone",
                    "no_pending_sign_in",
                    "second_factor_expired",
                ],
                "The code is wrong or was used already (`invalid_code`), the passkey's answer \
                 was refused (`passkey_refused`; `passkey_possible_clone`: its signature counter \
                 went backwards), there is no pending sign-in (`no_pending_sign_in`: \
                 `POST /api/login` first), or it is over 5 minutes old \
                 (`second_factor_expired`).",
            ),
            PASSKEY_NO_CHALLENGE,
            refusal(
                422,
                &["invalid_body"],
                "The method's field is missing (`code`, or `credential` for `passkey`).",
            ),
            refusal(
                403,
                &["account_disabled"],
                "The account was disabled meanwhile.",
            ),
            CODE_THROTTLED,
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "step_up",
        &[
            refusal(
                401,
                &["invalid_code", "passkey_refused", "passkey_possible_clone"],
                "The code is wrong or was used already, or the passkey's answer was refused.",
            ),
            PASSKEY_NO_CHALLENGE,
            refusal(403, &["wrong_password"], "The password is wrong."),
            refusal(
                422,
                &["second_factor_needed", "invalid_body"],
                "`password` for an account with a second factor (`second_factor_needed`), or \
                 the method's field is missing (`invalid_body`).",
            ),
            CODE_THROTTLED,
            BUSY,
        ],
    ),
    ("factors", &[ACCOUNTS_DOWN]),
    (
        "passkey_registration_options",
        &[STEP_UP, PASSKEYS_UNAVAILABLE, ACCOUNTS_DOWN],
    ),
    (
        "passkey_register",
        &[
            refusal(
                400,
                &["passkey_refused", "no_challenge", "invalid_credential"],
                "The authenticator's answer was refused (`passkey_refused`), or no registration \
                 is under way (`no_challenge`: `POST /api/mfa/passkeys/options` first; each \
                 works once).",
            ),
            STEP_UP,
            refusal(
                409,
                &["passkey_registered"],
                "This authenticator's passkey is registered already.",
            ),
            refusal(422, &["invalid_name"], "The name is empty or too long."),
            ACCOUNTS_DOWN,
        ],
    ),
    ("passkey_list", &[ACCOUNTS_DOWN]),
    (
        "passkey_rename",
        &[
            refusal(404, &["not_found"], "No such passkey of yours."),
            refusal(422, &["invalid_name"], "The name is empty or too long."),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "passkey_remove",
        &[
            STEP_UP,
            refusal(404, &["not_found"], "No such passkey of yours."),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "passkey_second_factor_options",
        &[
            refusal(
                401,
                &["no_pending_sign_in"],
                "No pending sign-in: `POST /api/login` first.",
            ),
            NO_PASSKEYS,
            PASSKEYS_UNAVAILABLE,
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "passkey_step_up_options",
        &[NO_PASSKEYS, PASSKEYS_UNAVAILABLE, ACCOUNTS_DOWN],
    ),
    ("passkey_sign_in_options", &[PASSKEYS_UNAVAILABLE]),
    (
        "passkey_sign_in",
        &[
            refusal(
                401,
                &["passkey_refused", "passkey_possible_clone"],
                "The passkey's answer was refused: unknown or removed passkey, wrong signature, \
                 no user verification (`passkey_refused`), or its signature counter went \
                 backwards (`passkey_possible_clone`).",
            ),
            PASSKEY_NO_CHALLENGE,
            refusal(
                403,
                &["account_disabled", "email_not_verified"],
                "The account is disabled, or sign-in needs a verified email address.",
            ),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "totp_begin",
        &[
            STEP_UP,
            refusal(
                409,
                &["totp_already_enabled"],
                "An authenticator app is on already: remove it first.",
            ),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "totp_confirm",
        &[
            refusal(400, &["invalid_code"], "The code is not right."),
            STEP_UP,
            refusal(
                409,
                &["no_enrolment", "totp_already_enabled"],
                "No setup is under way (`no_enrolment`: `POST /api/mfa/totp` first), or the \
                 app is on already.",
            ),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "totp_remove",
        &[
            STEP_UP,
            refusal(404, &["not_found"], "The account has no authenticator app."),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "recovery_codes",
        &[
            STEP_UP,
            refusal(
                409,
                &["no_second_factor"],
                "The account has no second factor for codes to stand in for.",
            ),
            ACCOUNTS_DOWN,
        ],
    ),
    (
        "change_password",
        &[
            STEP_UP,
            refusal(403, &["wrong_password"], "The current password is wrong."),
            refusal(
                422,
                &["weak_password"],
                "The new password breaks the rules.",
            ),
            refusal(
                429,
                &["too_many_attempts"],
                "Too many wrong current passwords; see `Retry-After`.",
            ),
            BUSY,
        ],
    ),
    (
        "password_reset_request",
        &[refusal(
            429,
            &["too_many_attempts"],
            "Too many reset requests from this network; see `Retry-After`. Never said for one \
             account: that would tell which accounts exist.",
        )],
    ),
    (
        "password_reset_complete",
        &[
            refusal(
                400,
                &["invalid_reset_link", "reset_link_expired"],
                "The token is not a reset link of this server (`invalid_reset_link`), or it has \
                 expired (`reset_link_expired`): ask for a new one.",
            ),
            refusal(403, &["account_disabled"], "The account is disabled."),
            refusal(
                410,
                &["reset_link_used"],
                "The link was used, or the password or the sessions changed since it was sent.",
            ),
            refusal(
                422,
                &["weak_password"],
                "The new password breaks the rules.",
            ),
            BUSY,
        ],
    ),
    (
        "change_api",
        &[
            STEP_UP,
            refusal(403, &["wrong_password"], "The password is wrong."),
            refusal(
                422,
                &["invalid_email"],
                "The address is not one (`name@domain`), or is missing.",
            ),
            refusal(
                429,
                &["too_many_attempts"],
                "Too many wrong passwords; see `Retry-After`.",
            ),
            BUSY,
        ],
    ),
    (
        "verify_api",
        &[
            refusal(
                400,
                &["invalid_verification_link", "verification_link_expired"],
                "The token is not a verification link of this server \
                 (`invalid_verification_link`), or it has expired \
                 (`verification_link_expired`): have a new one sent.",
            ),
            refusal(
                410,
                &["verification_link_used"],
                "The link was used, or the account's address changed since it was sent.",
            ),
            refusal(
                503,
                &["store_unavailable"],
                "The account store is unavailable.",
            ),
        ],
    ),
    (
        "resend_api",
        &[refusal(
            429,
            &["too_many_attempts"],
            "Too many requests from this network; see `Retry-After`. Never said for one \
             account: that would tell which accounts exist.",
        )],
    ),
    (
        "backchannel_logout",
        &[
            refusal(
                400,
                &["invalid_logout_token", "malformed_body", "oidc_unavailable"],
                "The logout token is not a valid one from this provider (signature, `iss`, \
                 `aud`, `iat`, the logout event, `sub`), or was used already; the body does \
                 not parse; or the provider's keys cannot be fetched (`oidc_unavailable`): \
                 Back-Channel Logout answers every failed logout with 400.",
            ),
            refusal(
                415,
                &["unsupported_media_type"],
                "The body is not `application/x-www-form-urlencoded`.",
            ),
            refusal(422, &["invalid_body"], "The body has no `logout_token`."),
            refusal(404, &["not_found"], "No provider has this id."),
            refusal(
                503,
                &["store_unavailable"],
                "The session store is unavailable.",
            ),
        ],
    ),
    (
        "delete_account",
        &[
            refusal(403, &["wrong_password"], "The password is wrong."),
            refusal(
                429,
                &["too_many_attempts"],
                "Too many wrong passwords; see `Retry-After`.",
            ),
            BUSY,
        ],
    ),
    (
        "create_link",
        &[
            refusal(
                400,
                &["invalid_url", "invalid_ttl"],
                "The URL cannot be shared as a link (`invalid_url`: not an absolute http(s) URL, \
                 a `#fragment`, a `.` or `..` path segment — plain or percent-encoded —, an \
                 encoded `/` or `\\`, `//`, credentials, or a `cloakroom_link` parameter of \
                 its own), or `ttl_seconds` is 0 or over 3600 (`invalid_ttl`).",
            ),
            refusal(
                403,
                &["origin_not_allowed", "access_denied"],
                "The URL's origin is not one of the protected apps (`app_origins`, or the \
                 public URL's own; `origin_not_allowed`), or the access rules refuse the \
                 maker a `GET` of it (`access_denied`): a link lends the maker's access, \
                 never more.",
            ),
            refusal(
                503,
                &["store_unavailable", "link_signing_failed"],
                "The session store could not tell the user's revocation epoch, or the link \
                 could not be signed.",
            ),
        ],
    ),
    ("verify", FORWARD_AUTH),
    ("oauth2_auth", FORWARD_AUTH),
    (
        "oauth2_userinfo",
        &[refusal(401, &["forward_auth"], "No valid session.")],
    ),
    ("readyz", &[TIMED_OUT]),
    ("metrics", &[TIMED_OUT]),
];

/// A forward-auth decision's refusals (`/auth/verify`, Authelia's, oauth2-proxy's `auth`).
const FORWARD_AUTH: &[Refusal] = &[
    refusal(
        400,
        &["forward_auth"],
        "The forwarding headers do not describe a request.",
    ),
    refusal(
        403,
        &["access_denied"],
        "An access rule (`[[access_rules]]`, `default_policy`) refuses the request: for a \
         signed-in user `X-Cloakroom-Denied` names them (nginx's configuration sends the \
         browser to `/access-denied`); a browser behind Traefik or Caddy gets that page as \
         the answer. Never a way to the login page for someone signed in.",
    ),
    refusal(
        401,
        &["forward_auth"],
        "No valid session: sign in first. In nginx's dialect (`X-Original-URL`) the answer \
         carries `Location`: the login page, with the original URL as `rd`.",
    ),
    refusal(
        403,
        &["forward_auth"],
        "Forwarding headers from a peer not in `trusted_proxies`, a host not in \
         `app_origins`, or (with `forward_auth_csrf`) an unsafe forwarded request from \
         another site.",
    ),
    refusal(
        503,
        &["forward_auth"],
        "The service JWT could not be issued.",
    ),
    // A request whose URL carries `cloakroom_link` is decided by the link alone.
    refusal(
        400,
        &["invalid_link"],
        "The forwarded URL carries a `cloakroom_link` that is not a download link of this \
         Cloakroom (garbage, truncated, over 4 KiB, another token type or algorithm, a bad \
         signature), or a URL that cannot carry one (a `..` in its path, plain or \
         percent-encoded; two link parameters). `X-Cloakroom-Link: invalid_link`.",
    ),
    refusal(
        403,
        &[
            "link_not_for_this_request",
            "invalid_link",
            "link_expired",
            "link_revoked",
            "link_used",
        ],
        "A genuine link, but for another URL or for a method other than `GET` and `HEAD` \
         (`link_not_for_this_request`). In nginx's dialect (`X-Original-URL`) every link \
         refusal is 403, since `auth_request` passes no other refusal on: the code is in the \
         body and in `X-Cloakroom-Link`, which the example configuration turns back into 400 \
         or 410 for the client.",
    ),
    refusal(
        410,
        &["link_used", "link_expired", "link_revoked"],
        "The link was good and is no more: a single-use link used already (`link_used`), past \
         its expiry (`link_expired`), or withdrawn (`link_revoked`: its maker signed out \
         everywhere, changed the password, or the account is disabled or gone). \
         `X-Cloakroom-Link` holds the code.",
    ),
    refusal(
        503,
        &["store_unavailable"],
        "A store could not tell whether the link is still good: it is refused (fail closed).",
    ),
];

const TIMED_OUT: Refusal = refusal(
    503,
    &["timed_out"],
    "Not answered within `request_timeout_secs` (a store that hangs); try again shortly.",
);

/// The refusals of the layers in front of `op`.
fn layer_refusals(group: Group, method: &str, op: &Value) -> Vec<Refusal> {
    if group == Group::Ops {
        return Vec::new();
    }
    let reads_session = op["security"].is_array();
    let body = op["requestBody"]["content"].as_object().is_some();
    let query = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));

    let mut refusals = Vec::new();
    if needs_session(op) {
        refusals.push(refusal(
            401,
            &["unauthenticated"],
            "No session, or it has ended (signed out, revoked or expired): sign in again.",
        ));
    }
    if reads_session && takes_bearer(group, op) {
        refusals.push(refusal(
            400,
            &["ambiguous_credentials"],
            "The request carries both a session cookie and `Authorization: Bearer`: send one.",
        ));
    }
    if checks_csrf(group, method) {
        refusals.push(refusal(
            403,
            &[
                "cross_origin_request",
                "csrf_token_missing",
                "csrf_token_invalid",
            ],
            "The request came from another origin (`cross_origin_request`), or carries a \
             session cookie without that session's CSRF token (`csrf_token_missing`, \
             `csrf_token_invalid`).",
        ));
    }
    if query {
        refusals.push(refusal(
            400,
            &["malformed_query"],
            "The query string does not parse (a parameter given twice, say).",
        ));
    }
    if body {
        refusals.extend([
            refusal(400, &["malformed_body"], "The body does not parse."),
            refusal(
                413,
                &["payload_too_large"],
                "The body is larger than 64 KiB.",
            ),
            refusal(
                415,
                &["unsupported_media_type"],
                "The body is not of the documented `Content-Type`.",
            ),
            refusal(
                422,
                &["invalid_body"],
                "The body lacks a field, or a field has the wrong type.",
            ),
        ]);
    }
    refusals.push(if reads_session {
        refusal(
            503,
            &["session_store_unavailable", "timed_out"],
            "The session store is unavailable (the request is refused rather than let through), \
             or it was not answered within `request_timeout_secs`; try again shortly.",
        )
    } else {
        TIMED_OUT
    });
    refusals
}

/// Adds to `op` the refusals of its layers and its own, and the CSRF header where the session
/// layer checks it.
fn add_refusals(method: &str, path: &str, op: &mut Value) {
    let group = group(method, path);
    let id = op["operationId"].as_str().unwrap_or_default();
    let mut refusals: Vec<Refusal> = OWN
        .iter()
        .filter(|(op_id, _)| *op_id == id)
        .flat_map(|(_, r)| r.iter().copied())
        .collect();
    refusals.extend(layer_refusals(group, method, op));
    for r in refusals {
        match group {
            Group::Page => add_page_refusal(op, r),
            _ => add_json_refusal(op, r),
        }
    }
    if checks_csrf(group, method) {
        add_csrf_header(op);
    }
}

/// Whether the session layer checks origin and CSRF token: on unsafe methods, except for
/// forward auth (whose rules apply to the forwarded request).
fn checks_csrf(group: Group, method: &str) -> bool {
    let unsafe_method = !matches!(method, "get" | "head" | "options" | "trace");
    unsafe_method && matches!(group, Group::Api | Group::Page)
}

/// Whether `op` needs a session: `security` without the empty alternative (`[{}, …]` is a
/// session that may be absent).
fn needs_session(op: &Value) -> bool {
    op["security"]
        .as_array()
        .is_some_and(|s| s.iter().all(|r| r != &json!({})))
}

/// The schema of an error body whose `error` is one of `codes`.
fn error_schema(codes: &[String]) -> Value {
    json!({
        "allOf": [
            { "$ref": "#/components/schemas/ErrorBody" },
            { "type": "object", "properties": { "error": { "enum": codes } } },
        ]
    })
}

/// The codes an error schema made by [`error_schema`] allows.
fn codes_of(schema: &Value) -> Option<Vec<String>> {
    let codes = schema["allOf"][1]["properties"]["error"]["enum"].as_array()?;
    Some(
        codes
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect(),
    )
}

/// Adds a JSON refusal to `op`'s responses, merging it into one already there for the same
/// status: codes are joined, a body of another shape becomes one of two (`oneOf`), and a
/// response in another media type gets a JSON alternative.
fn add_json_refusal(op: &mut Value, r: Refusal) {
    let response = response_for(op, r);
    let content = &mut response["content"]["application/json"]["schema"];
    let mut codes: Vec<String> = r.codes.iter().map(|c| (*c).to_owned()).collect();
    if content.is_null() {
        *content = error_schema(&codes);
    } else if let Some(known) = codes_of(content) {
        codes = unique(known.into_iter().chain(codes));
        *content = error_schema(&codes);
    } else if let Some(one_of) = content.get_mut("oneOf").and_then(Value::as_array_mut) {
        one_of.push(error_schema(&codes));
    } else {
        *content = json!({ "oneOf": [content.take(), error_schema(&codes)] });
    }
    if r.status == 429 || r.codes.contains(&"busy") {
        response["headers"]["Retry-After"] = json!({
            "description": "Seconds to wait before trying again.",
            "schema": { "type": "integer", "minimum": 1 },
        });
    }
}

/// Adds a refusal answered with an error page (no codes: a page is for a person).
fn add_page_refusal(op: &mut Value, r: Refusal) {
    let response = response_for(op, r);
    response["content"]["text/html"] = json!({ "schema": { "type": "string" } });
}

/// `op`'s response for `r.status`, created or with `r.when` added to its description.
fn response_for(op: &mut Value, r: Refusal) -> &mut Value {
    let response = &mut op["responses"][r.status.to_string()];
    let description = match response["description"].as_str() {
        Some(d) if !d.is_empty() && !d.contains(r.when) => format!("{d} {}", r.when),
        Some(d) if !d.is_empty() => d.to_owned(),
        _ => r.when.to_owned(),
    };
    response["description"] = description.into();
    response
}

/// `codes` without repeats, in their first order.
fn unique(codes: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = Vec::new();
    for c in codes {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    seen
}

/// The `X-CSRF-Token` header: required where the operation needs a session, and whenever a
/// session cookie is sent.
fn add_csrf_header(op: &mut Value) {
    let form = op["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object();
    let also = if form {
        " A form may send it in its `csrf_token` field instead."
    } else {
        ""
    };
    let param = json!({
        "name": "X-CSRF-Token",
        "in": "header",
        "required": needs_session(op) && !form,
        "description": format!(
            "The session's CSRF token: `csrf_token` from `GET /api/session` or from the login, \
             sign-up or password-change answer. Required whenever the request carries a session \
             cookie.{also}"
        ),
        "schema": { "type": "string" },
    });
    match op["parameters"].as_array_mut() {
        Some(params) => params.push(param),
        None => op["parameters"] = json!([param]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        let dir = tempfile::tempdir().unwrap();
        let raw = crate::config::RawConfig {
            data_dir: dir.path().to_owned(),
            public_url: Some("https://cloakroom.test".into()),
            ..crate::config::RawConfig::default()
        };
        document(&raw.settings().unwrap())
    }

    /// A row of [`OWN`] for an operation that does not exist would silently document nothing.
    #[test]
    fn every_own_refusal_names_a_documented_operation() {
        let doc = doc();
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        for (id, _) in OWN {
            assert!(
                ids.contains(id),
                "OWN names {id}, which is not an operation: {ids:?}"
            );
        }
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "operation ids repeat: {ids:?}");
    }

    #[test]
    fn refusals_merge_into_one_response_per_status() {
        let doc = doc();
        let signup = &doc["paths"]["/api/signup"]["post"]["responses"]["403"];
        let codes = codes_of(&signup["content"]["application/json"]["schema"]).unwrap();
        for code in [
            "signup_closed",
            "cross_origin_request",
            "csrf_token_missing",
        ] {
            assert!(codes.contains(&code.to_owned()), "{code} not in {codes:?}");
        }
        let ready = &doc["paths"]["/readyz"]["get"]["responses"]["503"]["content"];
        assert_eq!(
            ready["application/json"]["schema"]["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["503"]["content"];
        let types: Vec<&String> = metrics.as_object().unwrap().keys().collect();
        assert_eq!(types, ["application/json", "text/plain"]);
    }
}
