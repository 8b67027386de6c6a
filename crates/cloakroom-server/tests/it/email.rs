//! Accounts with an email address: given at sign-up (API, page, `cloakroom user add
//! --email`), mailed a verification link through a real SMTP sink, and kept from apps until
//! verified. Issue 12, "Accounts get an email address".

use std::time::Duration;

use cloakroom_core::accounts::Username;
use cloakroom_core::link::EmailVerification;
use cloakroom_core::mail::EmailAddress;
use serde_json::json;

use crate::forward::nginx_style;
use crate::procs::SmtpSink;
use crate::support::{ORIGIN, PASSWORD, TestServer, start, start_with};
use cloakroom_testkit::http::CHROME_UA;

/// An in-process server mailing through `sink`.
pub(crate) async fn server_sending_to(sink: &SmtpSink) -> TestServer {
    let url = sink.url();
    start_with(move |raw| {
        raw.smtp_url = Some(url.parse().unwrap());
        raw.mail_from = Some("login@example.com".into());
        raw.smtp_timeout_secs = 2;
    })
    .await
}

/// The payload of a JWT, unverified (the forward-auth tests verify these tokens; here only
/// what they claim matters).
pub(crate) fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// Sign-up with an address stores it (domain lower-cased) unverified and mails a
/// verification link to it; the link is this server's, for this account and this address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_with_an_email_mails_a_verification_link_to_it() {
    let Some(sink) = SmtpSink::start().await else {
        return;
    };
    let s = server_sending_to(&sink).await;
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": "ada", "password": PASSWORD, "email": " Ada@Example.COM " }),
    )
    .await
    .assert(201);
    let ada = s.account("ada").await.unwrap();
    assert_eq!(
        ada.email.as_ref().map(EmailAddress::as_str),
        Some("Ada@example.com")
    );
    assert!(!ada.email_verified);

    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages.len(), 1, "one message");
    let m = &messages[0];
    assert_eq!(m["headers"]["To"], "Ada@example.com");
    let text = m["text"].as_str().unwrap();
    let link = text
        .lines()
        .find(|l| l.contains("/verify-email?token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    assert!(
        link.starts_with(&format!("{ORIGIN}/verify-email?token=")),
        "{link}"
    );
    let token = link.split_once("?token=").unwrap().1;
    let now = cloakroom_core::Clock::now(&s.clock);
    let verified = s
        .state
        .links()
        .verify::<EmailVerification>(token, now)
        .unwrap();
    assert_eq!(verified.claims.user(), &ada.id);
    let fp =
        cloakroom_core::link::EmailFingerprint::of(&ada.id, ada.email.as_ref().unwrap(), false);
    assert!(
        verified.claims.is_current(&fp),
        "bound to the address, not yet verified"
    );

    // Sign-up without an address sends nothing.
    s.signed_up("bob").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sink.messages().len(), 1);
}

/// An address that is not one is refused with a clear 422 on the API and on the page, and no
/// account is created; the page keeps what was typed.
#[tokio::test]
async fn a_malformed_email_is_refused_at_sign_up() {
    let s = start().await;
    for bad in [
        "not-an-address",
        "a@b\r\nBcc: eve@evil.test",
        "Ada <ada@example.com>",
    ] {
        let r = s
            .browser()
            .post_json(
                "/api/signup",
                &json!({ "username": "ada", "password": PASSWORD, "email": bad }),
            )
            .await;
        r.assert(422);
        assert_eq!(r.error_code(), "invalid_email", "{bad:?}");
    }
    assert!(
        s.state
            .account_store()
            .by_username(&Username::parse("ada").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let mut b = s.browser();
    b.get("/signup").await.assert(200);
    let r = b
        .form(
            "/signup",
            &[
                ("username", "ada"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("email", "no-at-sign"),
            ],
        )
        .await;
    r.assert(422);
    let body = &r.body;
    assert!(body.contains("id=\"email-error\""), "{body}");
    assert!(body.contains("value=\"no-at-sign\""), "{body}");
    // A blank field is no address.
    b.form(
        "/signup",
        &[
            ("username", "ada"),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
            ("email", "  "),
        ],
    )
    .await
    .assert(303);
    assert_eq!(s.account("ada").await.unwrap().email, None);
}

/// Apps are told an address (`Remote-Email`, `X-Auth-Request-Email`, the service JWT's
/// `email`) only once it is verified: an unverified one is merely a claim, and an app keyed
/// on addresses could be talked into treating one user as another.
#[tokio::test]
async fn only_a_verified_email_reaches_apps() {
    let s = start().await;
    let mut b = s.browser();
    b.post_json(
        "/api/signup",
        &json!({ "username": "ada", "password": PASSWORD, "email": "ada@example.com" }),
    )
    .await
    .assert(201);
    let r = nginx_style(&mut b, "GET", "https://app.example.com/")
        .send()
        .await;
    r.assert(200);
    assert_eq!(r.header("remote-user").as_deref(), Some("ada"));
    for h in ["remote-email", "x-auth-request-email"] {
        assert!(r.header(h).is_none(), "{h} with an unverified address");
    }
    let jwt = r.header("x-cloakroom-jwt").unwrap();
    assert!(!jwt_claims(&jwt).as_object().unwrap().contains_key("email"));

    let ada = s.account("ada").await.unwrap();
    assert!(
        s.state
            .account_store()
            .mark_email_verified(&ada.id, ada.email.as_ref().unwrap())
            .await
            .unwrap()
    );
    let mut again = s.logged_in("ada", CHROME_UA).await;
    let r = nginx_style(&mut again, "GET", "https://app.example.com/")
        .send()
        .await;
    r.assert(200);
    for h in ["remote-email", "x-auth-request-email"] {
        assert_eq!(r.header(h).as_deref(), Some("ada@example.com"), "{h}");
    }
    let jwt = r.header("x-cloakroom-jwt").unwrap();
    assert_eq!(jwt_claims(&jwt)["email"], "ada@example.com");
}

/// `cloakroom user add NAME --email ADDRESS` stores the address unverified and queues a
/// verification mail (delivered by a running server); a malformed address creates nothing.
#[test]
fn user_add_with_email_queues_a_verification_mail() {
    use crate::cli::{cloakroom, with_database};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    with_database(d);
    let env: Vec<(String, String)> = Vec::new();
    let password = format!("{PASSWORD}\n");
    let (ok, out, err) = cloakroom(
        d,
        &env,
        &["user", "add", "tess", "--email", "Tess@Example.ORG"],
        &password,
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("created user tess ("), "{out}");
    assert!(
        out.contains("queued verification mail 1 to Tess@example.org"),
        "{out}"
    );
    let (ok, out, err) = cloakroom(d, &env, &["mail", "list"], "");
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.contains("verify_email")
            && l.contains("Tess@example.org")
            && l.contains("pending")),
        "{out}"
    );
    let (ok, _, err) = cloakroom(
        d,
        &env,
        &["user", "add", "ula", "--email", "nope"],
        &password,
    );
    assert!(
        !ok && err.contains("an email address is name@domain"),
        "{err}"
    );
    let (_, out, _) = cloakroom(d, &env, &["user", "list"], "");
    assert!(!out.contains("ula"), "{out}");
}
