//! Issue 17: second factors — an authenticator app (TOTP) and recovery codes, the second step
//! of a sign-in, step-up, the session's level, and what forward auth tells apps of it.
//!
//! Codes are computed here by a second implementation of RFC 6238 (HMAC-SHA-1 by hand over
//! the `hmac` and `sha1` crates), never by the library the server uses.

use std::time::Duration;

use cloakroom_server::config::{AccessRuleConfig, RulePolicy};
use serde_json::{Value, json};

use crate::support::{Browser, PASSWORD, Reply, TestServer, start, start_with};

/// Decodes RFC 4648 base32 (no padding), as an authenticator app reads the secret.
pub(crate) fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base32") as u32;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
            value &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 6238 with SHA-1, 6 digits, 30-second steps: the code of `secret` at Unix time `t`.
pub(crate) fn totp(secret: &[u8], t: i64) -> String {
    use hmac_sha1_test::{KeyInit, Mac};
    let counter = (t / 30) as u64;
    let mut mac = hmac_sha1_test::Hmac::<sha1::Sha1>::new_from_slice(secret).expect("key");
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    format!("{:06}", bin % 1_000_000)
}

#[test]
fn the_second_implementation_matches_rfc_6238() {
    let secret = b"12345678901234567890";
    assert_eq!(totp(secret, 59), "287082");
    assert_eq!(totp(secret, 1_111_111_109), "081804");
    assert_eq!(totp(secret, 2_000_000_000), "279037");
    assert_eq!(base32("GEZDGNBVGY3TQOJQ"), b"1234567890");
}

fn now(s: &TestServer) -> i64 {
    use cloakroom_core::Clock as _;
    s.clock.now().as_unix_secs()
}

/// Signs `name` up and turns an authenticator on: the secret and the recovery codes.
async fn enrolled(s: &TestServer, name: &str) -> (Browser, Vec<u8>, Vec<String>) {
    let mut b = s.signed_up(name).await;
    let (secret, codes) = turn_on_app(s, &mut b, name).await;
    (b, secret, codes)
}

/// Turns an authenticator on for `b`'s account `name`: the secret and the recovery codes.
async fn turn_on_app(s: &TestServer, b: &mut Browser, name: &str) -> (Vec<u8>, Vec<String>) {
    let r = b.post_json("/api/mfa/totp", &json!({})).await;
    r.assert(200);
    let body = r.json();
    let url = body["otpauth_url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("otpauth://totp/Cloakroom:{name}?secret=")),
        "{url}"
    );
    let secret = base32(body["secret"].as_str().expect("secret"));
    assert_eq!(secret.len(), 20);
    assert!(url.contains(body["secret"].as_str().unwrap()));
    let r = b
        .post_json(
            "/api/mfa/totp/confirm",
            &json!({ "code": totp(&secret, now(s)) }),
        )
        .await;
    r.assert(200);
    let codes: Vec<String> = serde_json::from_value(r.json()["recovery_codes"].clone()).unwrap();
    (secret, codes)
}

async fn password_login(s: &TestServer, name: &str) -> (Browser, Reply) {
    let mut b = s.browser();
    let r = b
        .post_json(
            "/api/login",
            &json!({ "username": name, "password": PASSWORD }),
        )
        .await;
    (b, r)
}

async fn second_factor(b: &mut Browser, method: &str, code: &str) -> Reply {
    b.post_json(
        "/api/login/second-factor",
        &json!({ "method": method, "code": code }),
    )
    .await
}

/// Steps up with the code of the next time step (the current one may be used up already).
async fn step_up_with_next_code(s: &TestServer, b: &mut Browser, secret: &[u8]) -> Reply {
    s.clock.advance(Duration::from_secs(30));
    b.post_json(
        "/api/step-up",
        &json!({ "method": "totp", "code": totp(secret, now(s)) }),
    )
    .await
}

/// A second browser of `name`, signed in with the password and a recovery code.
async fn signed_in_with_code(s: &TestServer, name: &str, code: &str) -> Browser {
    let (mut b, r) = password_login(s, name).await;
    r.assert(200);
    second_factor(&mut b, "recovery_code", code)
        .await
        .assert(200);
    b
}

async fn forward(b: &mut Browser) -> Reply {
    b.req("GET", "/auth/verify")
        .without("origin")
        .without("sec-fetch-site")
        .send()
        .await
}

#[tokio::test]
async fn an_authenticator_app_is_set_up_with_a_code_and_ends_the_other_sessions() {
    let s = start().await;
    let mut elsewhere = s.signed_up("tess").await;
    let mut b = s.logged_in("tess", "Firefox").await;
    let r = b.post_json("/api/mfa/totp", &json!({})).await;
    r.assert(200);
    let secret = base32(r.json()["secret"].as_str().unwrap());
    // Not on until confirmed: a sign-in still needs the password only.
    let (_, r) = password_login(&s, "tess").await;
    r.assert(200);
    assert!(r.json()["second_factor_required"].is_null());
    // A wrong code confirms nothing.
    let wrong = if totp(&secret, now(&s)) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = b
        .post_json("/api/mfa/totp/confirm", &json!({ "code": wrong }))
        .await;
    r.assert(400);
    assert_eq!(r.error_code(), "invalid_code");
    let r = b
        .post_json(
            "/api/mfa/totp/confirm",
            &json!({ "code": totp(&secret, now(&s)) }),
        )
        .await;
    r.assert(200);
    let codes = r.json()["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.as_str().is_some_and(|c| c.len() == 14))
    );
    // Every other session ended; this one stays.
    elsewhere.get("/api/session").await.assert(401);
    b.get("/api/session").await.assert(200);
    // Another setup needs a second factor given in this session first (then: 409, remove
    // the app first).
    let r = b.post_json("/api/mfa/totp", &json!({})).await;
    r.assert(403);
    assert_eq!(r.error_code(), "step_up_required");
    // The secret is sealed at rest: the stored bytes do not hold it.
    let account = s.account("tess").await.unwrap();
    let stored = s
        .state
        .second_factors()
        .totp(&account.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !stored
            .sealed
            .windows(secret.len())
            .any(|w| w == secret.as_slice()),
        "the secret is stored in the clear"
    );
}

#[tokio::test]
async fn a_password_alone_leaves_a_pending_session_that_signs_no_one_in() {
    let s = start().await;
    let (mut enrolled_browser, secret, _) = enrolled(&s, "uma").await;
    s.clock.advance(Duration::from_secs(30));
    let (mut b, r) = password_login(&s, "uma").await;
    r.assert(200);
    let body = r.json();
    assert_eq!(body["second_factor_required"], true, "{body}");
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    let pending = r.session_cookie().expect("a pending session cookie");
    // Not a device the user is signed in on: the enrolled browser lists itself alone.
    let listed = enrolled_browser.get("/api/sessions").await.json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // Treated as signed out by every other route, forward auth included.
    b.get("/api/session").await.assert(401);
    b.get("/api/sessions").await.assert(401);
    forward(&mut b).await.assert(401);
    // A wrong code: 401, still pending.
    let wrong = if totp(&secret, now(&s)) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = second_factor(&mut b, "totp", wrong).await;
    r.assert(401);
    assert_eq!(r.error_code(), "invalid_code");
    let r = second_factor(&mut b, "totp", &totp(&secret, now(&s))).await;
    r.assert(200);
    assert_eq!(r.json()["auth_level"], "aal2");
    assert_eq!(r.json()["session"]["auth_level"], "aal2");
    let full = r.session_cookie().expect("a new cookie");
    assert_ne!(full, pending, "the token rotates");
    let r = b.get("/api/session").await;
    r.assert(200);
    assert_eq!(r.json()["auth_level"], "aal2");
    let r = forward(&mut b).await;
    r.assert(200);
    assert_eq!(r.header("remote-auth-level").as_deref(), Some("aal2"));
    // The pending token is dead.
    let mut old = s.browser();
    old.req("GET", "/api/session")
        .cookie(&pending)
        .send()
        .await
        .assert(401);
}

#[tokio::test]
async fn a_code_is_accepted_once_within_its_window() {
    let s = start().await;
    let (_, secret, _) = enrolled(&s, "vic").await;
    // The code that confirmed the app is used up, for as long as it would be valid.
    let used = totp(&secret, now(&s));
    let (mut b, r) = password_login(&s, "vic").await;
    r.assert(200);
    let r = second_factor(&mut b, "totp", &used).await;
    r.assert(401);
    assert_eq!(r.error_code(), "invalid_code");
    s.clock.advance(Duration::from_secs(30));
    let code = totp(&secret, now(&s));
    second_factor(&mut b, "totp", &code).await.assert(200);
    // The same code again, from another browser within its window: refused.
    let (mut other, r) = password_login(&s, "vic").await;
    r.assert(200);
    let r = second_factor(&mut other, "totp", &code).await;
    r.assert(401);
    other.get("/api/session").await.assert(401);
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let s = start().await;
    let (_, _, codes) = enrolled(&s, "wes").await;
    let (mut b, r) = password_login(&s, "wes").await;
    r.assert(200);
    // Typed in capitals with spaces: still the code.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let r = second_factor(&mut b, "recovery_code", &typed).await;
    r.assert(200);
    assert_eq!(r.json()["auth_level"], "aal2");
    let (mut again, _) = password_login(&s, "wes").await;
    second_factor(&mut again, "recovery_code", &codes[3])
        .await
        .assert(401);
    second_factor(&mut again, "recovery_code", &codes[4])
        .await
        .assert(200);
    let r = again.get("/api/mfa").await;
    r.assert(200);
    assert_eq!(r.json()["recovery_codes_left"], 8);
}

#[tokio::test]
async fn removing_the_app_needs_a_recent_step_up_which_rotates_the_session() {
    let s = start().await;
    let (mut b, secret, codes) = enrolled(&s, "xan").await;
    // Enrolment itself is not a second factor given in this session: one is needed.
    let r = b.delete("/api/mfa/totp").await;
    r.assert(403);
    assert_eq!(r.error_code(), "step_up_required");
    let before = b.get("/api/session").await.json();
    assert_eq!(before["auth_level"], "aal1");
    let r = step_up_with_next_code(&s, &mut b, &secret).await;
    r.assert(200);
    let after = r.json();
    assert_eq!(after["auth_level"], "aal2");
    assert_ne!(after["session"]["id"], before["session"]["id"], "rotated");
    assert!(r.session_cookie().is_some(), "a new cookie");
    // A step-up grows stale.
    s.clock.advance(Duration::from_secs(16 * 60));
    let r = b.delete("/api/mfa/totp").await;
    r.assert(403);
    b.post_json(
        "/api/step-up",
        &json!({ "method": "recovery_code", "code": codes[0] }),
    )
    .await
    .assert(200);
    let mut elsewhere = signed_in_with_code(&s, "xan", &codes[1]).await;
    b.delete("/api/mfa/totp").await.assert(204);
    // Every other session ended with it.
    elsewhere.get("/api/session").await.assert(401);
    // Off, with the recovery codes: the password alone signs in again.
    let (_, r) = password_login(&s, "xan").await;
    r.assert(200);
    assert!(r.json()["second_factor_required"].is_null());
    // The step-up by password is for accounts without a second factor.
    let r = b
        .post_json(
            "/api/step-up",
            &json!({ "method": "password", "password": PASSWORD }),
        )
        .await;
    r.assert(200);
    assert_eq!(
        r.json()["auth_level"],
        "aal2",
        "the level stays what it was"
    );
}

#[tokio::test]
async fn a_password_change_with_a_second_factor_needs_a_recent_step_up() {
    let s = start().await;
    let (mut b, secret, _) = enrolled(&s, "yul").await;
    let change =
        json!({ "current_password": PASSWORD, "new_password": "another long passphrase 7" });
    let r = b.post_json("/api/password", &change).await;
    r.assert(403);
    assert_eq!(r.error_code(), "step_up_required");
    step_up_with_next_code(&s, &mut b, &secret)
        .await
        .assert(200);
    b.post_json("/api/password", &change).await.assert(200);
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let s = start().await;
    let _ = enrolled(&s, "zed").await;
    let (mut b, r) = password_login(&s, "zed").await;
    r.assert(200);
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            second_factor(&mut b, "totp", "123456")
                .await
                .status
                .as_u16(),
        );
    }
    assert!(
        statuses.contains(&429),
        "guessing codes is throttled: {statuses:?}"
    );
    // On counters of their own: the password still gets its answer at once.
    let (_, r) = password_login(&s, "zed").await;
    r.assert(200);
    assert_eq!(r.json()["second_factor_required"], true);
}

#[tokio::test]
async fn a_pending_sign_in_lasts_five_minutes() {
    let s = start().await;
    let (_, secret, _) = enrolled(&s, "ivo").await;
    let (mut b, r) = password_login(&s, "ivo").await;
    r.assert(200);
    s.clock.advance(Duration::from_secs(5 * 60 + 1));
    let r = second_factor(&mut b, "totp", &totp(&secret, now(&s))).await;
    r.assert(401);
    assert_eq!(r.error_code(), "second_factor_expired");
    // Ended: the right code no longer finds it.
    let r = second_factor(&mut b, "totp", &totp(&secret, now(&s))).await;
    r.assert(401);
    assert_eq!(r.error_code(), "no_pending_sign_in");
}

/// A native app: the password gives a pending bearer token, the second factor a session
/// token (the pending one is spent), and a step-up hands the rotated token back in the body.
#[tokio::test]
async fn a_native_app_gives_its_second_factor_with_the_pending_token() {
    let s = start().await;
    let (_, secret, _) = enrolled(&s, "nia").await;
    let mut app = crate::native::App::new(&s);
    let r = app.sign_in("nia").await;
    r.assert(200);
    assert!(r.set_cookies().is_empty());
    assert_eq!(r.json()["second_factor_required"], true);
    let pending = app.token.clone().expect("a pending token");
    app.call("GET", "/api/session", None).await.assert(401);
    s.clock.advance(Duration::from_secs(30));
    let code = json!({ "method": "totp", "code": totp(&secret, now(&s)) });
    let r = app
        .call("POST", "/api/login/second-factor", Some(&code))
        .await;
    r.assert(200);
    let token = r.json()["session_token"]
        .as_str()
        .expect("a token")
        .to_owned();
    assert_ne!(token, pending);
    app.token = Some(token.clone());
    let r = app.call("GET", "/api/session", None).await;
    r.assert(200);
    assert_eq!(r.json()["auth_level"], "aal2");
    let devices = app.call("GET", "/api/sessions", None).await.json();
    assert_eq!(devices[0]["device"], "Pixel 8 (app)", "{devices}");
    s.clock.advance(Duration::from_secs(30));
    let code = json!({ "method": "totp", "code": totp(&secret, now(&s)) });
    let r = app.call("POST", "/api/step-up", Some(&code)).await;
    r.assert(200);
    let rotated = r.json()["session_token"]
        .as_str()
        .expect("the new token")
        .to_owned();
    assert_ne!(rotated, token);
    // Both earlier tokens are dead; the rotated one works.
    for dead in [pending, token] {
        app.token = Some(dead);
        app.call("GET", "/api/session", None).await.assert(401);
    }
    app.token = Some(rotated);
    app.call("GET", "/api/session", None).await.assert(200);
}

fn two_factor_rules(raw: &mut cloakroom_server::config::RawConfig) {
    raw.access_rules = vec![AccessRuleConfig {
        domain: vec!["admin.example.com".into()],
        resources: vec![],
        methods: vec![],
        subject: vec![],
        policy: RulePolicy::TwoFactor,
    }];
    raw.app_origins.push("https://*.example.com".into());
}

async fn ask(b: &mut Browser, host: &str) -> Reply {
    b.req("GET", "/auth/verify")
        .without("origin")
        .without("sec-fetch-site")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", host)
        .header("x-forwarded-uri", "/")
        .header("accept", "text/html")
        .send()
        .await
}

fn jwt_claims(r: &Reply) -> Value {
    crate::email::jwt_claims(&r.header("x-cloakroom-jwt").expect("a service JWT"))
}

#[tokio::test]
async fn a_two_factor_rule_sends_a_one_factor_session_to_step_up_and_back() {
    let s = start_with(two_factor_rules).await;
    let (mut b, secret, _) = enrolled(&s, "ada").await;
    // Other apps take one factor, and say so.
    let r = ask(&mut b, "wiki.example.com").await;
    r.assert(200);
    assert_eq!(r.header("remote-auth-level").as_deref(), Some("aal1"));
    let claims = jwt_claims(&r);
    assert_eq!(claims["acr"], "aal1");
    assert_eq!(claims["amr"], json!(["pwd"]));
    // The admin app wants two: to the step-up page, with the way back.
    let r = ask(&mut b, "admin.example.com").await;
    r.assert(302);
    let location = r.location();
    assert!(
        location.ends_with("/step-up?rd=https%3A%2F%2Fadmin.example.com%2F"),
        "{location}"
    );
    assert_eq!(r.header("x-cloakroom-step-up").as_deref(), Some("1"));
    // Anonymous: to sign in, as with any rule.
    let mut anonymous = s.browser();
    let r = ask(&mut anonymous, "admin.example.com").await;
    r.assert(302);
    assert!(r.location().contains("/login?rd="));
    step_up_with_next_code(&s, &mut b, &secret)
        .await
        .assert(200);
    let r = ask(&mut b, "admin.example.com").await;
    r.assert(200);
    assert_eq!(r.header("remote-auth-level").as_deref(), Some("aal2"));
    let claims = jwt_claims(&r);
    assert_eq!(claims["acr"], "aal2");
    assert_eq!(claims["amr"], json!(["pwd", "otp", "mfa"]));
}

#[tokio::test]
async fn an_administrator_resets_the_factors_of_a_user_who_lost_them() {
    let s = start().await;
    let (mut b, _, _) = enrolled(&s, "bea").await;
    let out = cli(&s, &["user", "mfa", "bea"]).await;
    assert!(
        out.contains("authenticator app on; 10 recovery code(s) left; 0 passkey(s)"),
        "{out}"
    );
    let out = cli(&s, &["user", "mfa", "bea", "--reset"]).await;
    assert!(
        out.contains("removed every second factor of bea; ended 1 session(s)"),
        "{out}"
    );
    b.get("/api/session").await.assert(401);
    let (_, r) = password_login(&s, "bea").await;
    r.assert(200);
    assert!(r.json()["second_factor_required"].is_null());
}

/// Runs the `cloakroom` command beside the running server, as an administrator would.
async fn cli(s: &TestServer, args: &[&str]) -> String {
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::cli::cloakroom(&dir, &env, &args, "")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    out
}

/// The text between `start` and the next `end` in `html`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    Some(&html[from..from + html[from..].find(end)?])
}

/// The pages alone — forms and redirects, no script — set the app up, show the codes once,
/// and take the second step of a sign-in.
#[tokio::test]
async fn the_pages_set_up_the_app_and_sign_in_with_it_without_javascript() {
    let s = start().await;
    let mut b = s.signed_up("pia").await;
    let page = b.get("/account/security").await;
    page.assert(200);
    // One script, for passkeys, from this origin; nothing else needs it.
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(page.body.contains("<script src=\"/static/passkeys.js?v="));
    let csrf = crate::support::hidden(&page.body, "csrf_token").unwrap();
    let r = b
        .form("/account/security/totp", &[("csrf_token", &csrf)])
        .await;
    r.assert(200);
    assert!(r.body.contains("<svg"), "the QR code is inline SVG");
    let secret = base32(between(&r.body, "id=\"totp-secret\">", "<").expect("the key as text"));
    let r = b
        .form(
            "/account/security/totp/confirm",
            &[("csrf_token", &csrf), ("code", &totp(&secret, now(&s)))],
        )
        .await;
    r.assert(200);
    let codes = between(&r.body, "id=\"recovery-codes\">", "</ul>").expect("the codes");
    assert_eq!(codes.matches("<code>").count(), 10);
    // Shown once: the page does not show them again.
    assert!(
        !b.get("/account/security")
            .await
            .body
            .contains("id=\"recovery-codes\"")
    );

    s.clock.advance(Duration::from_secs(30));
    let mut c = s.browser();
    let login = c.get("/login").await;
    let csrf = crate::support::hidden(&login.body, "csrf_token").unwrap_or_default();
    let r = c
        .form(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", "pia"),
                ("password", PASSWORD),
                ("next", "/account/sessions"),
            ],
        )
        .await;
    assert!(r.status.is_redirection(), "{}", r.status);
    assert!(
        r.location()
            .starts_with("/login/second-factor?next=%2Faccount%2Fsessions"),
        "{}",
        r.location()
    );
    let page = c.get(&r.location()).await;
    page.assert(200);
    assert!(page.body.contains("name=\"code\""));
    // Pending: the personal pages still send the browser to sign in.
    assert!(c.get("/account/sessions").await.status.is_redirection());
    let r = c
        .form(
            "/login/second-factor",
            &[
                ("method", "totp"),
                ("code", &totp(&secret, now(&s))),
                ("next", "/account/sessions"),
            ],
        )
        .await;
    assert!(r.status.is_redirection(), "{}: {}", r.status, r.body);
    assert_eq!(r.location(), "/account/sessions");
    c.get("/account/sessions").await.assert(200);
    let r = c.get("/api/session").await;
    assert_eq!(r.json()["auth_level"], "aal2");
}

/// Through real nginx (`examples/nginx/cloakroom.conf`): a `two_factor` rule refuses a
/// one-factor session — nginx sends the browser to the step-up page — and lets it through
/// once a second factor was given, with `Remote-Auth-Level: aal2` for the app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_factor_rule_holds_through_nginx() {
    use crate::procs::{echo_upstream, free_port, require};
    use crate::proxies::{cloakroom_addr, start_nginx, through};
    let Some(()) = require("nginx", &["-v"]) else {
        return;
    };
    let mut started = None;
    for _ in 0..5 {
        let port = free_port();
        let s = start_with(move |raw| {
            raw.public_url = Some(format!("http://127.0.0.1:{port}"));
            raw.trusted_proxies = vec!["127.0.0.1".into()];
            raw.access_rules = vec![AccessRuleConfig {
                domain: vec!["127.0.0.1".into()],
                resources: vec!["^/app/admin(/.*)?$".into()],
                methods: vec![],
                subject: vec![],
                policy: RulePolicy::TwoFactor,
            }];
        })
        .await;
        let app = echo_upstream().await;
        let dir = tempfile::tempdir().unwrap();
        if let Some(guard) = start_nginx(dir.path(), port, &cloakroom_addr(&s), app).await {
            started = Some((s, port, guard, dir));
            break;
        }
    }
    let (s, port, _nginx, _dir) = started.expect("nginx could not listen on five free ports");
    let mut b = through(&s, port);
    b.post_json(
        "/api/signup",
        &json!({ "username": "ola", "password": PASSWORD }),
    )
    .await
    .assert(201);
    let (secret, _) = turn_on_app(&s, &mut b, "ola").await;
    // One factor: other apps let it through, and say so.
    let r = b.get("/app/page").await;
    r.assert(200);
    assert_eq!(
        r.json()["headers"]["remote-auth-level"],
        "aal1",
        "{}",
        r.body
    );
    // The admin app: nginx sends the browser to the step-up page, with the way back.
    let r = b.get("/app/admin/users").await;
    r.assert(302);
    assert!(
        r.location().contains("/step-up?rd=") && r.location().contains("%2Fapp%2Fadmin%2Fusers"),
        "{}",
        r.location()
    );
    step_up_with_next_code(&s, &mut b, &secret)
        .await
        .assert(200);
    let r = b.get("/app/admin/users").await;
    r.assert(200);
    assert_eq!(
        r.json()["headers"]["remote-auth-level"],
        "aal2",
        "{}",
        r.body
    );
}

/// Made-up answers to passkey ceremonies change nothing; a sign-in without password is off
/// unless `passkey_login` turns it on.
#[tokio::test]
async fn bad_passkey_answers_change_nothing() {
    let s = start().await;
    let mut b = s.signed_up("ivo").await;
    let r = b.post_json("/api/mfa/passkeys/options", &json!({})).await;
    r.assert(200);
    assert_eq!(r.json()["publicKey"]["rp"]["id"], "cloakroom.test");
    assert_eq!(
        r.json()["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let r = b.post_json("/api/login/passkey-options", &json!({})).await;
    r.assert(404);
    assert_eq!(r.error_code(), "passkeys_unavailable");
    // Not a credential: refused at the edge.
    let r = b
        .post_json(
            "/api/mfa/passkeys",
            &json!({ "name": "Laptop", "credential": { "id": 7 } }),
        )
        .await;
    r.assert(422);
    // A well-formed answer to a challenge it does not answer: refused, nothing registered;
    // the challenge is spent, so the same again finds none.
    let fake = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": { "attestationObject": "AAAA", "clientDataJSON": "AAAA" }
    });
    for code in ["passkey_refused", "no_challenge"] {
        let r = b
            .post_json(
                "/api/mfa/passkeys",
                &json!({ "name": "Laptop", "credential": fake }),
            )
            .await;
        r.assert(400);
        assert_eq!(r.error_code(), code);
    }
    let r = b.get("/api/mfa/passkeys").await;
    r.assert(200);
    assert_eq!(r.json(), json!([]));
    assert_eq!(b.get("/api/mfa").await.json()["passkeys"], 0);
    // An empty or overlong name is refused before anything else.
    for name in [" ".to_owned(), "x".repeat(65)] {
        let r = b
            .post_json(
                "/api/mfa/passkeys",
                &json!({ "name": name, "credential": fake }),
            )
            .await;
        r.assert(422);
        assert_eq!(r.error_code(), "invalid_name");
    }
    let csrf = b.csrf().await.unwrap();
    let r = b
        .req("PATCH", "/api/mfa/passkeys/AAAA")
        .json(&json!({ "name": "x" }))
        .csrf(&csrf)
        .send()
        .await;
    r.assert(404);
    assert_eq!(r.error_code(), "not_found");
    b.delete("/api/mfa/passkeys/AAAA").await.assert(404);
    // A step-up by passkey needs a credential, and a challenge it answers.
    let r = b
        .post_json("/api/step-up", &json!({ "method": "passkey" }))
        .await;
    r.assert(422);
    assert_eq!(r.error_code(), "invalid_body");
    let assertion = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": { "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null }
    });
    let r = b
        .post_json(
            "/api/step-up",
            &json!({ "method": "passkey", "credential": assertion }),
        )
        .await;
    r.assert(400);
    assert_eq!(r.error_code(), "no_challenge");
}

/// A sign-in without password answers a challenge sealed in its cookie: without that cookie,
/// or with one altered, nothing is checked and no one is signed in.
#[tokio::test]
async fn a_passkey_sign_in_needs_its_own_sealed_challenge() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = crate::support::start_at(port, |raw| raw.passkey_login = true).await;
    let mut b = s.browser();
    let assertion = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": { "authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA", "userHandle": null }
    });
    let r = b
        .post_json("/api/login/passkey", &json!({ "credential": assertion }))
        .await;
    r.assert(400);
    assert_eq!(r.error_code(), "no_challenge");
    let r = b.post_json("/api/login/passkey-options", &json!({})).await;
    r.assert(200);
    let options = r.json();
    assert!(options["publicKey"]["challenge"].is_string());
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert!(
        options["mediation"].is_null(),
        "asked from a button, not autofill"
    );
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.contains("-passkey="))
        .expect("the sealed challenge's cookie");
    // Host-only: a sibling subdomain cannot plant a cookie of this name beside it (two would
    // make every sign-in fail).
    assert!(
        cookie.starts_with(&format!(
            "__Host-{}-passkey=",
            s.state.settings().cookie_name
        )),
        "{cookie}"
    );
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax")
    );
    // The answer is checked against it (and fails: no passkey has that id), once.
    let pair = cookie.split(';').next().unwrap().to_owned();
    // The second time, the challenge is spent.
    for (status, code) in [(401, "passkey_refused"), (400, "no_challenge")] {
        let r = b
            .req("POST", "/api/login/passkey")
            .json(&json!({ "credential": assertion }))
            .header("cookie", &pair)
            .send()
            .await;
        r.assert(status);
        assert_eq!(r.error_code(), code);
    }
    // Altered: does not open.
    let altered = format!("{}A", pair.trim_end_matches('A'));
    let r = b
        .req("POST", "/api/login/passkey")
        .json(&json!({ "credential": assertion }))
        .header("cookie", &altered)
        .send()
        .await;
    assert_eq!(r.error_code(), "no_challenge");
    b.get("/api/session").await.assert(401);
}

/// A factor added or removed is mailed to the account's verified address (through a real SMTP
/// server): its owner hears of a change they did not make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factor_change_is_mailed_to_the_verified_address() {
    let Some(sink) = crate::procs::SmtpSink::start().await else {
        return;
    };
    let s = crate::email::server_sending_to(&sink).await;
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": "mae", "password": PASSWORD, "email": "mae@example.com" }),
    )
    .await
    .assert(201);
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let text = messages[0]["text"].as_str().unwrap();
    let token = text
        .lines()
        .find_map(|l| l.split_once("/verify-email?token=").map(|(_, t)| t.trim()))
        .expect("the verification link");
    b.post_json("/api/email/verify", &json!({ "token": token }))
        .await
        .assert(200);
    turn_on_app(&s, &mut b, "mae").await;
    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let m = messages
        .iter()
        .find(|m| {
            m["headers"]["Subject"]
                .as_str()
                .is_some_and(|s| s.contains("sign-in security"))
        })
        .expect("the factor notice");
    assert_eq!(m["headers"]["To"], "mae@example.com");
    assert!(
        m["text"]
            .as_str()
            .unwrap()
            .contains("An authenticator app was set up. Every other device was signed out."),
        "{}",
        m["text"]
    );
}

/// WebAuthn refuses IP addresses as relying parties: on a server whose public URL is one the
/// pages offer no passkeys (and load no script), even with `passkey_login` on.
#[tokio::test]
async fn a_public_url_on_an_ip_address_offers_no_passkeys() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut s = crate::support::start_at(port, |raw| {
        raw.public_url = Some(format!("http://127.0.0.1:{port}"));
        raw.passkey_login = true;
    })
    .await;
    s.base = format!("http://127.0.0.1:{port}");
    let mut b = s.browser();
    let login = b.get("/login").await;
    login.assert(200);
    assert!(!login.body.contains("<script"), "{}", login.body);
    assert!(!login.body.contains("passkey"));
    let mut b = s.signed_up("ipo").await;
    let page = b.get("/account/security").await;
    page.assert(200);
    assert!(!page.body.contains("<script"));
    assert!(!page.body.contains("Add a passkey"));
}
