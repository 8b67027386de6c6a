//! Security events: one structured log line for each thing an operator or an incident
//! responder needs to see — failed and throttled logins, logouts and revocations, password
//! changes, disabled and deleted accounts, key rotations, download links made, opened and
//! refused. (CSRF and origin refusals and presentations of unknown sessions are logged by the
//! session layer, `cloakroom_axum`, under the same target.)
//!
//! Every event has the target [`TARGET`] and a field `event` with a stable name, so that a
//! log pipeline can select them (`--json-logs` writes them as JSON lines). No event ever
//! carries a token, a cookie, a CSRF token or a password: users are named by username or id,
//! sessions by their public handle, download links by their id (`jti`).

use std::net::IpAddr;

/// The `tracing` target of every security event.
pub(crate) const TARGET: &str = cloakroom_axum::SECURITY_TARGET;

/// At most this much of what a client typed as a username goes into a log line.
const MAX_LOGGED_USERNAME: usize = 64;

/// What a client typed as a username, cut to a loggable length.
fn typed(username: &str) -> &str {
    match username.char_indices().nth(MAX_LOGGED_USERNAME) {
        Some((end, _)) => &username[..end],
        None => username,
    }
}

fn ip_text(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// A login (or a password change's current password) was refused: wrong credentials, a
/// disabled account.
pub(crate) fn login_failed(username: &str, ip: Option<IpAddr>, reason: &'static str) {
    tracing::warn!(
        target: TARGET,
        event = "login_failed",
        username = ?typed(username),
        ip = %ip_text(ip),
        reason,
        "login refused"
    );
}

/// A password attempt was refused by throttling before it was looked at.
pub(crate) fn throttled(username: &str, ip: Option<IpAddr>, retry_after_secs: u64) {
    tracing::warn!(
        target: TARGET,
        event = "login_throttled",
        username = ?typed(username),
        ip = %ip_text(ip),
        retry_after_secs,
        "password attempt throttled"
    );
}

/// A user logged in.
pub(crate) fn login(username: &str, handle: &str, ip: Option<IpAddr>) {
    tracing::info!(
        target: TARGET,
        event = "login",
        username,
        session = handle,
        ip = %ip_text(ip),
        "login"
    );
}

/// A session was ended by its own logout.
pub(crate) fn logout(user: &str, handle: &str) {
    tracing::info!(target: TARGET, event = "logout", user, session = handle, "logout");
}

/// Sessions were ended on purpose: one by its handle (`revoke_one`), every other one
/// (`revoke_others`), every one (`revoke_all`, by an administrator).
pub(crate) fn revoked(user: &str, reason: &'static str, count: u64) {
    tracing::info!(
        target: TARGET,
        event = "sessions_revoked",
        user,
        reason,
        count,
        "sessions revoked"
    );
}

/// A password was changed; `ended` other sessions ended with it.
pub(crate) fn password_changed(username: &str, ip: Option<IpAddr>, ended: u64) {
    tracing::info!(
        target: TARGET,
        event = "password_changed",
        username,
        ip = %ip_text(ip),
        ended,
        "password changed"
    );
}

/// An account's email address was changed (`verified: false`) or verified (`verified: true`).
/// The address itself is not logged: the account store has it.
pub(crate) fn email_changed(username: &str, ip: Option<IpAddr>, verified: bool) {
    tracing::info!(
        target: TARGET,
        event = if verified { "email_verified" } else { "email_changed" },
        username,
        ip = %ip_text(ip),
        "email address {}", if verified { "verified" } else { "changed" }
    );
}

/// A sign-in through an OpenID provider, or a logout token from one, was refused; `reason`
/// is a stable code (`oidc_state`, `oidc_invalid_answer`, `invalid_logout_token`, …).
pub(crate) fn oidc_refused(provider: &str, ip: Option<IpAddr>, reason: &'static str) {
    tracing::warn!(
        target: TARGET,
        event = "oidc_refused",
        provider,
        ip = %ip_text(ip),
        reason,
        "OpenID sign-in or logout refused"
    );
}

/// An administrator disabled an account; `ended` sessions ended with it.
pub(crate) fn account_disabled(username: &str, ended: u64) {
    tracing::warn!(
        target: TARGET,
        event = "account_disabled",
        username,
        ended,
        "account disabled"
    );
}

/// An account was deleted — by its owner (`by = "user"`, from `ip`) or by an administrator
/// (`by = "admin"`); `ended` sessions ended first.
pub(crate) fn account_deleted(username: &str, by: &'static str, ip: Option<IpAddr>, ended: u64) {
    tracing::warn!(
        target: TARGET,
        event = "account_deleted",
        username,
        by,
        ip = %ip_text(ip),
        ended,
        "account deleted"
    );
}

/// A new service-JWT signing key was published.
pub(crate) fn key_rotated(kid: &str, alg: &str, signs_from: &str) {
    tracing::info!(
        target: TARGET,
        event = "key_rotated",
        kid,
        alg,
        signs_from,
        "service-JWT signing key rotated"
    );
}

/// A download link was made for `user` (by the user, or by an administrator: `by`). The link
/// is named by its id; its URL and token are not logged.
pub(crate) fn link_created(
    user: &str,
    by: &'static str,
    link: &str,
    single_use: bool,
    expires_at: &str,
) {
    tracing::info!(
        target: TARGET,
        event = "link_created",
        user,
        by,
        link,
        single_use,
        expires_at,
        "download link created"
    );
}

/// A download link let a request through as its maker `user`.
pub(crate) fn link_opened(user: &str, link: &str, single_use: bool, ip: Option<IpAddr>) {
    tracing::info!(
        target: TARGET,
        event = "link_opened",
        user,
        link,
        single_use,
        ip = %ip_text(ip),
        "download link opened"
    );
}

/// A request carrying a download link was refused (`reason` is the refusal's code; `link` the
/// link's id once its token verified, else empty).
pub(crate) fn link_refused(reason: &'static str, link: &str, ip: Option<IpAddr>) {
    tracing::warn!(
        target: TARGET,
        event = "link_refused",
        reason,
        link,
        ip = %ip_text(ip),
        "download link refused"
    );
}

/// An access rule refused a forwarded request (`user` is `None` for an anonymous one).
pub(crate) fn access_denied(user: Option<&str>, url: Option<&str>) {
    tracing::info!(
        target: TARGET,
        event = "access_denied",
        user = user.unwrap_or("-"),
        url = url.unwrap_or("-"),
        "access rule refused a request"
    );
}

/// An account's groups changed (`by`: `cli` or the admin's username).
pub(crate) fn groups_changed(
    user: &str,
    added: &[cloakroom_core::accounts::GroupName],
    removed: &[cloakroom_core::accounts::GroupName],
    by: &str,
) {
    let list = |g: &[cloakroom_core::accounts::GroupName]| {
        g.iter()
            .map(cloakroom_core::accounts::GroupName::as_str)
            .collect::<Vec<_>>()
            .join(",")
    };
    tracing::info!(
        target: TARGET,
        event = "groups_changed",
        user,
        added = %list(added),
        removed = %list(removed),
        by,
        "account groups changed"
    );
}

/// A rule asked a session with one factor for its second (forward auth sent it to step up).
pub(crate) fn step_up_required(user: &str, url: Option<&str>) {
    tracing::info!(
        target: TARGET,
        event = "step_up_required",
        user,
        url = url.unwrap_or("-"),
        "a rule asked for a second factor"
    );
}

/// A second factor was accepted: at sign-in (`purpose` = `sign_in`) or to step up.
pub(crate) fn second_factor_accepted(user: &str, method: &str, purpose: &str, ip: Option<IpAddr>) {
    tracing::info!(
        target: TARGET,
        event = "second_factor_accepted",
        user,
        method,
        purpose,
        ip = %ip_text(ip),
        "second factor accepted"
    );
}

/// A second factor was refused: `reason` is `wrong_code`, `replayed` (a TOTP code whose time
/// step was used already) or `expired` (the pending sign-in was too old).
pub(crate) fn second_factor_failed(user: &str, method: &str, reason: &str, ip: Option<IpAddr>) {
    tracing::warn!(
        target: TARGET,
        event = "second_factor_failed",
        user,
        method,
        reason,
        ip = %ip_text(ip),
        "second factor refused"
    );
}

/// A factor was added or removed by the user (`factor`: `totp`, `recovery_codes`); the other
/// sessions were ended.
pub(crate) fn factor_changed(
    user: &str,
    factor: &str,
    change: &str,
    ended: u64,
    ip: Option<IpAddr>,
) {
    tracing::warn!(
        target: TARGET,
        event = "factor_changed",
        user,
        factor,
        change,
        ended_sessions = ended,
        ip = %ip_text(ip),
        "second factor changed"
    );
}

/// An administrator removed every second factor of an account (`cloakroom user mfa --reset`).
pub(crate) fn factors_reset(user: &str, by: &str, ended: u64) {
    tracing::warn!(
        target: TARGET,
        event = "factors_reset",
        user,
        by,
        ended_sessions = ended,
        "every second factor removed by an administrator"
    );
}
