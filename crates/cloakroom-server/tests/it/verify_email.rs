//! Verifying, re-sending and changing an email address, through a real SMTP sink; and
//! `require_verified_email`. Issue 12, "Email verification" and "Accounts get an email
//! address".

use std::time::Duration;

use serde_json::json;

use crate::email::server_sending_to;
use crate::forward::nginx_style;
use crate::procs::SmtpSink;
use crate::reset::wait_for_mail as mails;
use crate::support::{ORIGIN, PASSWORD, TestServer, start_with};

/// The path (from `/verify-email`) of the link in a verification mail.
fn verify_path(message: &serde_json::Value) -> String {
    let text = message["text"].as_str().unwrap();
    let link = text
        .lines()
        .find(|l| l.contains("/verify-email?token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    link.trim().strip_prefix(ORIGIN).unwrap().to_owned()
}

/// Opens the link at `path` in `b` and presses its "Confirm" button; the answer to the press.
async fn confirm(b: &mut crate::support::Browser, path: &str) -> cloakroom_testkit::http::Reply {
    let page = b.get(path).await;
    page.assert(200);
    let token = cloakroom_testkit::http::hidden(&page.body, "token").expect("a confirm form");
    let mut fields = vec![("token", token)];
    if let Some(csrf) = cloakroom_testkit::http::hidden(&page.body, "csrf_token") {
        fields.push(("csrf_token", csrf));
    }
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    b.form("/verify-email", &fields).await
}

fn token_of(path: &str) -> String {
    path.split_once("?token=").unwrap().1.to_owned()
}

const CONFIRM: &str = "Confirm";

/// A browser signed up as `name` with the address `email` (not verified yet).
async fn signed_up_with(s: &TestServer, name: &str, email: &str) -> crate::support::Browser {
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": name, "password": PASSWORD, "email": email }),
    )
    .await
    .assert(201);
    b
}

/// The mailed link verifies the address when opened — in a signed-in browser, that session
/// hands the address to apps at once —, and works once: opened again it is a 410 page that
/// offers a new link. The JSON route does the same for API clients; garbage is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mailed_link_verifies_the_address_once() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    let mut b = signed_up_with(&s, "ada", "ada@example.com").await;
    let r = b.get("/api/session").await;
    assert_eq!(r.json()["user"]["email"], "ada@example.com");
    assert_eq!(r.json()["user"]["email_verified"], false);
    let path = verify_path(&mails(&sink, "ada@example.com", CONFIRM, 1).await[0]);

    // Opening the link confirms nothing by itself (a mail scanner opens every link): it says
    // which account and address, and the button does it.
    let page = b.get(&path).await;
    page.assert(200);
    assert!(
        page.body
            .contains("Confirm that ada@example.com is the email address of the account ada."),
        "{}",
        page.body
    );
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    assert!(
        !s.account("ada").await.unwrap().email_verified,
        "not by opening it"
    );
    let done = confirm(&mut b, &path).await;
    done.assert(200);
    assert!(
        done.body
            .contains("Your email address ada@example.com is confirmed."),
        "{}",
        done.body
    );
    assert!(s.account("ada").await.unwrap().email_verified);
    assert_eq!(
        b.get("/api/session").await.json()["user"]["email_verified"],
        true
    );
    let r = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    r.assert(200);
    assert_eq!(r.header("remote-email").as_deref(), Some("ada@example.com"));

    let again = s.browser().get(&path).await;
    again.assert(410);
    assert!(again.body.contains("already used"), "{}", again.body);
    assert!(
        again.body.contains(r#"action="/verify-email/resend""#),
        "{}",
        again.body
    );
    let r = s
        .browser()
        .post_json("/api/email/verify", &json!({ "token": token_of(&path) }))
        .await;
    r.assert(410);
    assert_eq!(r.error_code(), "verification_link_used");
    for bad in ["", "not-a-token", &"x".repeat(5000)] {
        let r = s
            .browser()
            .post_json("/api/email/verify", &json!({ "token": bad }))
            .await;
        r.assert(400);
        assert_eq!(r.error_code(), "invalid_verification_link");
    }
    s.browser().get("/verify-email").await.assert(400);

    // The API, for a second account; expiry after 24 hours.
    signed_up_with(&s, "bob", "bob@example.com").await;
    let token = token_of(&verify_path(
        &mails(&sink, "bob@example.com", CONFIRM, 1).await[0],
    ));
    let r = s
        .browser()
        .post_json("/api/email/verify", &json!({ "token": token }))
        .await;
    r.assert(200);
    assert_eq!(
        r.json(),
        json!({ "email": "bob@example.com", "email_verified": true })
    );
    signed_up_with(&s, "cyd", "cyd@example.com").await;
    let token = token_of(&verify_path(
        &mails(&sink, "cyd@example.com", CONFIRM, 1).await[0],
    ));
    s.clock.advance(Duration::from_secs(24 * 3600 + 60));
    let r = s
        .browser()
        .post_json("/api/email/verify", &json!({ "token": token }))
        .await;
    r.assert(400);
    assert_eq!(r.error_code(), "verification_link_expired");
    assert!(!s.account("cyd").await.unwrap().email_verified);
}

/// A change needs the password; the new address is unverified, gets its link, and apps stop
/// seeing the old one at once; the old (verified) address is told. The old address's link
/// no longer verifies anything. The page does the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_address_needs_the_password_and_tells_the_old_one() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    let mut b = signed_up_with(&s, "ada", "ada@example.com").await;
    let first = verify_path(&mails(&sink, "ada@example.com", CONFIRM, 1).await[0]);
    confirm(&mut b, &first).await.assert(200);

    let r = b
        .post_json(
            "/api/email",
            &json!({ "email": "ada@new.example", "current_password": "not the password" }),
        )
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "wrong_password");
    let r = b
        .post_json(
            "/api/email",
            &json!({ "email": "nope", "current_password": PASSWORD }),
        )
        .await;
    r.assert(422);
    assert_eq!(r.error_code(), "invalid_email");
    assert_eq!(
        s.account("ada").await.unwrap().email.unwrap().as_str(),
        "ada@example.com"
    );

    let r = b
        .post_json(
            "/api/email",
            &json!({ "email": "ada@new.example", "current_password": PASSWORD }),
        )
        .await;
    r.assert(200);
    assert_eq!(
        r.json(),
        json!({ "email": "ada@new.example", "email_verified": false })
    );
    let r = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    assert!(
        r.header("remote-email").is_none(),
        "the old address is gone for apps"
    );
    let notice = mails(&sink, "ada@example.com", "changing", 1).await;
    assert!(
        notice[0]["text"]
            .as_str()
            .unwrap()
            .contains("ada@new.example"),
        "{notice:?}"
    );
    // The first link is spent; a link for the new address verifies it.
    s.browser().get(&first).await.assert(410);
    let second = verify_path(&mails(&sink, "ada@new.example", CONFIRM, 1).await[0]);
    confirm(&mut s.browser(), &second).await.assert(200);
    assert!(s.account("ada").await.unwrap().email_verified);

    // The page: wrong password under its field; then a change.
    let page = b.get("/account/email").await;
    page.assert(200);
    assert!(page.body.contains("ada@new.example"), "{}", page.body);
    let csrf = cloakroom_testkit::http::hidden(&page.body, "csrf_token").unwrap();
    let r = b
        .form(
            "/account/email",
            &[
                ("csrf_token", &csrf),
                ("email", "ada@third.example"),
                ("current_password", "wrong"),
            ],
        )
        .await;
    r.assert(403);
    assert!(
        r.body.contains(r#"id="current_password-error""#),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"value="ada@third.example""#),
        "{}",
        r.body
    );
    let r = b
        .form(
            "/account/email",
            &[
                ("csrf_token", &csrf),
                ("email", "ada@third.example"),
                ("current_password", PASSWORD),
            ],
        )
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/email?notice=changed");
    let page = b.get("/account/email?notice=changed").await;
    assert!(page.body.contains("Not confirmed yet"), "{}", page.body);
    mails(&sink, "ada@new.example", "changing", 1).await;
    mails(&sink, "ada@third.example", CONFIRM, 1).await;
    // The signed-in "send again" button.
    let r = b
        .form("/account/email/resend", &[("csrf_token", &csrf)])
        .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/email?notice=sent");
    mails(&sink, "ada@third.example", CONFIRM, 2).await;
}

/// "Send the link again" answers the same whoever is named, and mails only an address that
/// waits for verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_link_can_be_asked_for_without_saying_who_exists() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    signed_up_with(&s, "ada", "ada@example.com").await;
    mails(&sink, "ada@example.com", CONFIRM, 1).await;
    let mut bodies = Vec::new();
    for login in ["ada", "ada@example.com", "nobody", "?!"] {
        let r = s
            .browser()
            .post_json("/api/email/resend", &json!({ "login": login }))
            .await;
        r.assert(202);
        bodies.push(r.body.clone());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    let all = mails(&sink, "ada@example.com", CONFIRM, 3).await;
    let newest = verify_path(all.last().unwrap());
    confirm(&mut s.browser(), &newest).await.assert(200);
    s.browser()
        .post_json("/api/email/resend", &json!({ "login": "ada" }))
        .await
        .assert(202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        mails(&sink, "ada@example.com", CONFIRM, 3).await.len(),
        3,
        "a verified address gets no more links"
    );
}

/// With `require_verified_email`: sign-up needs an address and starts no session (202);
/// sign-in before the link is followed is refused (403 `email_not_verified`, on the page with
/// a button for a new link); after it, sign-in works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_can_require_a_verified_address() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let url = sink.url();
    let s = start_with(move |raw| {
        raw.smtp_url = Some(url.parse().unwrap());
        raw.mail_from = Some("login@example.com".into());
        raw.require_verified_email = true;
    })
    .await;
    let r = s
        .browser()
        .post_json(
            "/api/signup",
            &json!({ "username": "ada", "password": PASSWORD }),
        )
        .await;
    r.assert(422);
    assert_eq!(r.error_code(), "email_required");
    let r = s
        .browser()
        .post_json(
            "/api/signup",
            &json!({ "username": "ada", "password": PASSWORD, "email": "ada@example.com" }),
        )
        .await;
    r.assert(202);
    assert_eq!(r.json()["email_verification_required"], true);
    assert!(
        r.session_cookie().is_none(),
        "no session before verification"
    );

    let login = json!({ "username": "ada", "password": PASSWORD });
    let r = s.browser().post_json("/api/login", &login).await;
    r.assert(403);
    assert_eq!(r.error_code(), "email_not_verified");
    assert!(r.session_cookie().is_none());
    // A wrong password is still just a wrong password: nothing about verification.
    let r = s
        .browser()
        .post_json(
            "/api/login",
            &json!({ "username": "ada", "password": "wrong password!" }),
        )
        .await;
    r.assert(401);

    let page = s
        .browser()
        .form("/login", &[("username", "ada"), ("password", PASSWORD)])
        .await;
    page.assert(403);
    assert!(
        page.body
            .contains("Confirm your email address before signing in"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"action="/verify-email/resend""#),
        "{}",
        page.body
    );
    let r = s
        .browser()
        .form("/verify-email/resend", &[("login", "ada")])
        .await;
    r.assert(200);
    let sent = mails(&sink, "ada@example.com", CONFIRM, 2).await;

    // The sign-up page asks for the address, and says what happens.
    let form = s.browser().get("/signup").await;
    assert!(
        form.body.contains(r#"maxlength="254" required"#),
        "{}",
        form.body
    );
    let r = s
        .browser()
        .form(
            "/signup",
            &[
                ("username", "bob"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("email", "bob@example.com"),
            ],
        )
        .await;
    r.assert(200);
    assert!(r.body.contains("Check your mail"), "{}", r.body);
    assert!(r.session_cookie().is_none());

    confirm(&mut s.browser(), &verify_path(&sent[1]))
        .await
        .assert(200);
    s.browser()
        .post_json("/api/login", &login)
        .await
        .assert(200);
}
