//! Password reset by mail, end to end through a real SMTP sink (aiosmtpd): ask, receive the
//! link, use it, and every way a link must fail. Issue 12, "Password reset".

use std::time::Duration;

use cloakroom_core::accounts::Username;
use serde_json::json;

use crate::email::server_sending_to;
use crate::procs::SmtpSink;
use crate::support::{PASSWORD, TestServer, start};
use cloakroom_testkit::http::CHROME_UA;

const NEW_PASSWORD: &str = "a brand new passphrase for ada";

/// Signs up `name` with `email` and marks the address verified (the verification page is not
/// what these tests are about).
async fn verified_user(s: &TestServer, name: &str, email: &str) -> crate::support::Browser {
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": name, "password": PASSWORD, "email": email }),
    )
    .await
    .assert(201);
    let store = s.state.account_store();
    let a = store
        .by_username(&Username::parse(name).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .mark_email_verified(&a.id, a.email.as_ref().unwrap())
            .await
            .unwrap()
    );
    b
}

/// A reset link for `account` as it is now, minted as the server mints them.
async fn reset_link_now(s: &TestServer, account: &cloakroom_core::accounts::Account) -> String {
    let now = cloakroom_core::Clock::now(&s.clock);
    let epoch = s
        .state
        .sessions()
        .revocation_epoch(&account.id)
        .await
        .unwrap();
    let fp = cloakroom_core::link::ResetFingerprint::of(&account.id, &account.password_hash, epoch);
    let reset = cloakroom_core::link::PasswordReset::new(account.id.clone(), fp);
    s.state.links().reset_url(&reset, now).unwrap().0
}

fn link_in(message: &serde_json::Value) -> String {
    let text = message["text"].as_str().unwrap();
    text.lines()
        .find(|l| l.contains("/password-reset?token="))
        .unwrap_or_else(|| panic!("no reset link in {text}"))
        .to_owned()
}

fn token_of(link: &str) -> String {
    link.split_once("?token=").unwrap().1.to_owned()
}

/// Messages to `to` among what the sink holds.
fn mails_to(sink: &SmtpSink, to: &str) -> Vec<serde_json::Value> {
    sink.messages()
        .into_iter()
        .filter(|m| m["headers"]["To"] == to)
        .collect()
}

pub(crate) async fn wait_for_mail(
    sink: &SmtpSink,
    to: &str,
    subject_has: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let found: Vec<_> = mails_to(sink, to)
            .into_iter()
            .filter(|m| {
                m["headers"]["Subject"]
                    .as_str()
                    .unwrap()
                    .contains(subject_has)
            })
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {subject_has:?} mail to {to}: {:?}", sink.messages());
}

/// The whole flow: the request is accepted, the mail arrives with the link, the link sets the
/// password, every old session is refused, the new session works, the old password is gone,
/// the new one logs in, a "password changed" notice is mailed, and the link is dead (410).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_by_mail_sets_the_password_ends_old_sessions_and_signs_in() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    let mut old = verified_user(&s, "ada", "ada@example.com").await;
    let mut other = s.logged_in("ada", CHROME_UA).await;

    let r = s
        .browser()
        .post_json("/api/password-reset", &json!({ "login": "ADA" }))
        .await;
    r.assert(202);
    let mail = wait_for_mail(&sink, "ada@example.com", "Reset", 1).await;
    let link = link_in(&mail[0]);
    assert!(
        link.starts_with(&format!("{}/password-reset?token=", crate::support::ORIGIN)),
        "{link}"
    );
    let token = token_of(&link);

    let mut device = s.browser();
    let r = device
        .post_json(
            "/api/password-reset/complete",
            &json!({ "token": token, "new_password": NEW_PASSWORD }),
        )
        .await;
    r.assert(200);
    assert_eq!(r.json()["user"]["username"], "ada");
    assert!(r.session_cookie().is_some(), "signed in here");
    device.get("/api/session").await.assert(200);
    old.get("/api/session").await.assert(401);
    other.get("/api/session").await.assert(401);

    s.browser()
        .post_json(
            "/api/login",
            &json!({ "username": "ada", "password": PASSWORD }),
        )
        .await
        .assert(401);
    s.browser()
        .post_json(
            "/api/login",
            &json!({ "username": "ada", "password": NEW_PASSWORD }),
        )
        .await
        .assert(200);
    wait_for_mail(&sink, "ada@example.com", "password was changed", 1).await;

    // Used once: the fingerprint no longer matches.
    let r = s
        .browser()
        .post_json(
            "/api/password-reset/complete",
            &json!({ "token": token, "new_password": "yet another passphrase here" }),
        )
        .await;
    r.assert(410);
    assert_eq!(r.error_code(), "reset_link_used");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    device.get("/api/session").await.assert(200);
}

/// A request by verified email address works like one by username; a request for an account
/// without a verified address, or for nobody, mails nothing — and all get the identical 202.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_the_same_answer_and_only_verified_addresses_get_mail() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    verified_user(&s, "ada", "Ada@Example.com").await;
    s.browser()
        .post_json(
            "/api/signup",
            &json!({ "username": "bob", "password": PASSWORD, "email": "bob@example.com" }),
        )
        .await
        .assert(201);
    let mut bodies = Vec::new();
    for login in [
        "Ada@EXAMPLE.COM",
        "bob",
        "bob@example.com",
        "nobody",
        "nobody@example.com",
        "?!",
    ] {
        let r = s
            .browser()
            .post_json("/api/password-reset", &json!({ "login": login }))
            .await;
        r.assert(202);
        bodies.push((r.body.clone(), r.header("content-type")));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    wait_for_mail(&sink, "Ada@example.com", "Reset", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_bob: Vec<_> = mails_to(&sink, "bob@example.com")
        .into_iter()
        .filter(|m| m["headers"]["Subject"].as_str().unwrap().contains("Reset"))
        .collect();
    assert!(to_bob.is_empty(), "bob's address is not verified");
}

/// A tampered, truncated or foreign token is a 400 (`invalid_reset_link`); an expired one a
/// 400 of its own (`reset_link_expired`); a weak new password a 422 that leaves the link
/// usable; a "log out everywhere" kills the link (410).
#[tokio::test]
async fn bad_expired_and_overtaken_links_are_refused() {
    let s = start().await;
    let _ada = verified_user(&s, "ada", "ada@example.com").await;
    let out = s
        .state
        .account_store()
        .by_username(&Username::parse("ada").unwrap())
        .await
        .unwrap()
        .unwrap();
    let token = token_of(&reset_link_now(&s, &out).await);
    let complete = |token: String, password: &'static str| {
        let s = &s;
        async move {
            s.browser()
                .post_json(
                    "/api/password-reset/complete",
                    &json!({ "token": token, "new_password": password }),
                )
                .await
        }
    };
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(tampered).unwrap(),
        token[..token.len() - 10].to_owned(),
        "not-a-token".to_owned(),
        "x".repeat(5000),
    ] {
        let r = complete(bad, NEW_PASSWORD).await;
        r.assert(400);
        assert_eq!(r.error_code(), "invalid_reset_link");
    }
    let r = complete(token.clone(), "short").await;
    r.assert(422);
    assert_eq!(r.error_code(), "weak_password");

    s.clock.advance(Duration::from_secs(31 * 60));
    let r = complete(token.clone(), NEW_PASSWORD).await;
    r.assert(400);
    assert_eq!(r.error_code(), "reset_link_expired");

    let fresh = token_of(&reset_link_now(&s, &out).await);
    // Logging out everywhere (the admin's `sessions revoke`) moves the epoch.
    s.state
        .sessions()
        .revoke_all_for_user(&out.id, None)
        .await
        .unwrap();
    let r = complete(fresh, NEW_PASSWORD).await;
    r.assert(410);
    assert_eq!(r.error_code(), "reset_link_used");
}

/// Reset requests are throttled per network (a 429 that depends on nothing but the network),
/// and reset mails per account (silently: the answer stays 202).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_throttled_per_network_and_mails_per_account() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    verified_user(&s, "ada", "ada@example.com").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = s
            .browser()
            .post_json("/api/password-reset", &json!({ "login": "ada" }))
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_eq!(r.error_code(), "too_many_attempts");
            assert!(r.header("retry-after").is_some());
        }
    }
    assert_eq!(
        statuses.iter().filter(|&&c| c == 202).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses[10..], [429, 429]);
    wait_for_mail(&sink, "ada@example.com", "Reset", 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let resets = mails_to(&sink, "ada@example.com")
        .into_iter()
        .filter(|m| m["headers"]["Subject"].as_str().unwrap().contains("Reset"))
        .count();
    assert_eq!(resets, 3, "at most 3 reset mails to one account in a row");
}

/// `cloakroom user reset-link USER` prints a link on its first line that a browser can use;
/// an unknown user is an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_working_reset_link() {
    use crate::procs::ServeProcess;
    let server = ServeProcess::start(
        |port| vec!["--listen".into(), format!("127.0.0.1:{port}")],
        &[],
    )
    .await;
    let public = format!("http://localhost:{}", server.port);
    let browser = || {
        crate::support::Browser::new(cloakroom_testkit::http::Client::new(&server.base, &public))
            .csrf_from("/api/session", "csrf_token")
    };
    let mut b = browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": "cli-user", "password": PASSWORD }),
    )
    .await
    .assert(201);
    // The CLI signs for the server's public URL, as an operator's shared configuration would.
    let env = vec![("CLOAKROOM_PUBLIC_URL".to_owned(), public.clone())];
    let (ok, out, err) = crate::cli::cloakroom(
        server.dir.path(),
        &env,
        &["user", "reset-link", "cli-user"],
        "",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = crate::cli::cloakroom(
        server.dir.path(),
        &env,
        &["user", "reset-link", "nobody"],
        "",
    );
    assert!(!ok && err.contains("no user \"nobody\""), "{err}");
    let link = out.lines().next().unwrap();
    assert!(link.contains("/password-reset?token="), "{out}");
    assert!(
        out.contains("reset link for cli-user: works once, until "),
        "{out}"
    );
    let r = browser()
        .post_json(
            "/api/password-reset/complete",
            &json!({ "token": token_of(link), "new_password": NEW_PASSWORD }),
        )
        .await;
    r.assert(200);
    b.get("/api/session").await.assert(401);
}

/// The pages, as a browser without JavaScript meets them: the login page links to
/// `/password-reset`; its form asks for a link (the same sentence whoever is named); the
/// mailed link opens a form that carries the token in its body and keeps the address out of
/// `Referer` and caches; a mismatched or weak password comes back under its field with the
/// link still working; the right one sets the password, signs in here (home says so) and ends
/// the old session; the used link is then a 410 page that offers a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_pages_work_without_javascript() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    let mut old = verified_user(&s, "ada", "ada@example.com").await;
    let mut b = s.browser();

    let login = b.get("/login").await;
    assert!(
        login
            .body
            .contains(r#"<a href="/password-reset">Forgot your password?</a>"#),
        "{}",
        login.body
    );
    let ask = b.get("/password-reset").await;
    ask.assert(200);
    assert!(ask.body.contains(r#"name="login""#), "{}", ask.body);
    let mut answers = Vec::new();
    for who in ["ada", "nobody"] {
        let r = b.form("/password-reset", &[("login", who)]).await;
        r.assert(200);
        assert!(
            r.body
                .contains("a link to reset its password is on its way"),
            "{}",
            r.body
        );
        answers.push(r.body.replace(&format!(r#"value="{who}""#), ""));
    }
    assert_eq!(
        answers[0], answers[1],
        "the page says nothing about who exists"
    );
    let mail = wait_for_mail(&sink, "ada@example.com", "Reset", 1).await;
    let link = link_in(&mail[0]);
    let path = link.strip_prefix(crate::support::ORIGIN).unwrap();
    let token = token_of(&link);

    let form = b.get(path).await;
    form.assert(200);
    assert_eq!(
        form.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert_eq!(form.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        cloakroom_testkit::http::hidden(&form.body, "token").as_deref(),
        Some(token.as_str())
    );
    assert!(
        form.body.contains(r#"action="/password-reset""#),
        "{}",
        form.body
    );
    assert!(
        !form.body.contains("https://"),
        "nothing loads from elsewhere: {}",
        form.body
    );

    let r = b
        .form(
            "/password-reset",
            &[
                ("token", &token),
                ("new_password", NEW_PASSWORD),
                ("confirm", "something else entirely"),
            ],
        )
        .await;
    r.assert(422);
    assert!(r.body.contains(r#"id="confirm-error""#), "{}", r.body);
    assert_eq!(
        cloakroom_testkit::http::hidden(&r.body, "token").as_deref(),
        Some(token.as_str())
    );
    let r = b
        .form(
            "/password-reset",
            &[
                ("token", &token),
                ("new_password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    r.assert(422);
    assert!(r.body.contains(r#"id="new_password-error""#), "{}", r.body);

    let r = b
        .form(
            "/password-reset",
            &[
                ("token", &token),
                ("new_password", NEW_PASSWORD),
                ("confirm", NEW_PASSWORD),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/?notice=password-reset");
    let home = b.get("/?notice=password-reset").await;
    home.assert(200);
    assert!(
        home.body.contains("Your new password is set."),
        "{}",
        home.body
    );
    assert!(home.body.contains("Hello, ada"), "{}", home.body);
    old.get("/api/session").await.assert(401);

    let again = s.browser().get(path).await;
    again.assert(410);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(
        again.body.contains(r#"name="login""#),
        "offers a new link: {}",
        again.body
    );
    assert_eq!(
        again.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    let r = s
        .browser()
        .form(
            "/password-reset",
            &[
                ("token", &token),
                ("new_password", "yet another passphrase"),
                ("confirm", "yet another passphrase"),
            ],
        )
        .await;
    r.assert(410);

    let bad = s.browser().get("/password-reset?token=not-a-token").await;
    bad.assert(400);
    assert!(bad.body.contains("not a valid reset link"), "{}", bad.body);
    assert!(bad.body.contains(r#"name="login""#), "{}", bad.body);
}

/// An expired link's page says so (400) and offers a new one.
#[tokio::test]
async fn an_expired_link_page_offers_a_new_one() {
    let s = start().await;
    verified_user(&s, "ada", "ada@example.com").await;
    let out = s
        .state
        .account_store()
        .by_username(&Username::parse("ada").unwrap())
        .await
        .unwrap()
        .unwrap();
    let link = reset_link_now(&s, &out).await;
    let path = link
        .strip_prefix(crate::support::ORIGIN)
        .unwrap()
        .to_owned();
    s.browser().get(&path).await.assert(200);
    s.clock.advance(Duration::from_secs(31 * 60));
    let r = s.browser().get(&path).await;
    r.assert(400);
    assert!(
        r.body
            .contains("This reset link has expired. Ask for a new one."),
        "{}",
        r.body
    );
    assert!(r.body.contains("Send a new link"), "{}", r.body);
}
