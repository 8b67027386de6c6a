//! Issue 11, the account findings: the hashing pool survives cancelled logins, the throttle
//! reserves before it verifies, an attacker is slowed down without locking the owner out, and
//! sign-up is throttled and can be closed or limited to invitations. Each test failed on the
//! code before its fix.
//!
//! Client addresses are varied through `X-Forwarded-For` from a trusted loopback proxy; the
//! throttle reads the test server's manual clock, so nothing here waits for a backoff to pass.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use cloakroom_server::config::SignupMode;

use crate::cli::cloakroom;
use crate::support::{Browser, ORIGIN, PASSWORD, Reply, TestServer, hidden, start_with};

/// A server that believes `X-Forwarded-For` from loopback, so each request can name its
/// client address.
async fn behind_proxy() -> TestServer {
    start_with(|raw| raw.trusted_proxies = vec!["127.0.0.1/32".into()]).await
}

/// A `POST` of `body` to `path` from client address `ip`, as a same-origin page would send it.
fn post_from(
    http: &reqwest::Client,
    s: &TestServer,
    path: &str,
    ip: &str,
    body: &serde_json::Value,
) -> reqwest::RequestBuilder {
    http.post(format!("{}{path}", s.base))
        .header("origin", ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header("x-forwarded-for", ip)
        .json(body)
}

/// The status of one login of `user` with `password` from `ip`.
async fn login_from(s: &TestServer, ip: &str, user: &str, password: &str) -> StatusCode {
    let body = json!({ "username": user, "password": password });
    post_from(&reqwest::Client::new(), s, "/api/login", ip, &body)
        .send()
        .await
        .unwrap()
        .status()
}

/// `n` wrong-password logins of `user` from `ip`, all at once; their statuses.
async fn parallel_wrong_logins(s: &TestServer, ip: &str, user: &str, n: usize) -> Vec<StatusCode> {
    let http = reqwest::Client::new();
    let mut set = JoinSet::new();
    for i in 0..n {
        let body = json!({ "username": user, "password": format!("wrong guess number {i}") });
        let request = post_from(&http, s, "/api/login", ip, &body);
        set.spawn(async move { request.send().await.unwrap().status() });
    }
    set.join_all().await
}

fn count(statuses: &[StatusCode], status: u16) -> usize {
    statuses.iter().filter(|s| s.as_u16() == status).count()
}

/// Sends a whole `POST /api/login` on a raw connection and hangs up `after` later, without
/// reading the answer: a client that gives up, as `curl` does on Ctrl-C.
async fn login_and_hang_up(base: String, ip: String, user: String, after: Duration) {
    use tokio::io::AsyncWriteExt;
    let body = json!({ "username": user, "password": "some wrong password" }).to_string();
    let request = format!(
        "POST /api/login HTTP/1.1\r\nhost: cloakroom.test\r\norigin: {ORIGIN}\r\n\
         sec-fetch-site: same-origin\r\nx-forwarded-for: {ip}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(after).await;
    drop(socket);
}

/// Finding 1: a login dropped while its password check waited in the queue never gave its
/// queue slot back. ~250 cancelled logins answered every later login with 503 until restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_01_cancelled_logins_do_not_disable_logins() {
    let s = behind_proxy().await;
    s.signed_up("owner").await;
    let mut set = JoinSet::new();
    for i in 0..500 {
        // Unknown users from many addresses: what a botnet sends, with no throttle to stop it.
        let ip = format!("198.51.{}.{}", i / 200, 1 + i % 200);
        let user = format!("nobody{i}");
        set.spawn(login_and_hang_up(
            s.base.clone(),
            ip,
            user,
            Duration::from_millis(200),
        ));
    }
    set.join_all().await;
    // What was already hashing finishes; nothing that was dropped may hold a slot any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let status = login_from(&s, "192.0.2.10", "owner", PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "the owner's login after the flood");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the owner's login took {:?}",
        started.elapsed()
    );
}

/// Finding 2: the throttle was checked before the password check and updated after it, so
/// thirty parallel wrong passwords all got 401. An attempt now counts the moment it starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_02_parallel_guesses_are_throttled() {
    let s = behind_proxy().await;
    s.signed_up("victim").await;
    let statuses = parallel_wrong_logins(&s, "203.0.113.7", "victim", 30).await;
    let (unauthorized, throttled) = (count(&statuses, 401), count(&statuses, 429));
    assert!(
        unauthorized <= 5 && unauthorized + throttled == 30,
        "{unauthorized} × 401 and {throttled} × 429 of 30 parallel guesses: {statuses:?}"
    );
}

/// Finding 2: an IPv6 client owns a whole /64; counting each address on its own let it spray
/// guesses at many accounts without ever being throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_02_ipv6_is_throttled_per_64() {
    let s = behind_proxy().await;
    for i in 1..=20 {
        let status = login_from(
            &s,
            &format!("2001:db8:1:2::{i:x}"),
            &format!("user{i}"),
            "x",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let next = login_from(&s, "2001:db8:1:2:ffff::1", "user21", "x").await;
    assert_eq!(
        next,
        StatusCode::TOO_MANY_REQUESTS,
        "the 21st guess from one /64"
    );
    let elsewhere = login_from(&s, "2001:db8:1:3::1", "user22", "x").await;
    assert_eq!(
        elsewhere,
        StatusCode::UNAUTHORIZED,
        "a neighbouring /64 is unaffected"
    );
}

/// Finding 3: after a burst of wrong passwords the owner's correct one got 429 for fifteen
/// minutes, from anywhere. The attacker's network is slowed down; the owner's is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_03_attacker_is_slowed_but_owner_gets_in() {
    let s = behind_proxy().await;
    s.signed_up("owner").await;
    let attacker = "203.0.113.66";
    parallel_wrong_logins(&s, attacker, "owner", 30).await;
    for _ in 0..3 {
        s.clock.advance(Duration::from_secs(60));
        login_from(&s, attacker, "owner", "still guessing!!").await;
    }
    // The attacker is slowed down, even when the guess is right.
    let r = post_from(
        &reqwest::Client::new(),
        &s,
        "/api/login",
        attacker,
        &json!({ "username": "owner", "password": PASSWORD }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // 5 free failures, then 1 s doubling: after 8 failures, 8 s.
    assert_eq!(retry, 8, "Retry-After");
    // The owner, from a network with no failures against the account, gets in.
    assert_eq!(
        login_from(&s, "192.0.2.44", "owner", PASSWORD).await,
        StatusCode::OK
    );
    // And that success does not lift the attacker's own backoff.
    assert_eq!(
        login_from(&s, attacker, "owner", "one more guess!!").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Finding 10: sign-up was not throttled, so one client could create accounts (and probe
/// which usernames exist through 409) as fast as the server hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_signup_is_throttled_per_network() {
    let s = behind_proxy().await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let body = json!({ "username": format!("new{i}"), "password": PASSWORD });
        let r = post_from(&http, &s, "/api/signup", "203.0.113.9", &body)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[..10], [201; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    // Probing a taken name counts too; another network is unaffected.
    let body = json!({ "username": "new0", "password": PASSWORD });
    let r = post_from(&http, &s, "/api/signup", "198.51.100.3", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

/// Finding 10: anyone reaching a deployed server could create an account. Away from
/// loopback, sign-up is closed unless configured open: 403 on the API and the page, before
/// the username is looked at (so a taken name is not revealed either).
#[tokio::test]
async fn finding_10_signup_is_closed_by_default_on_a_public_url() {
    // The suite's configuration opens sign-up; this server keeps the default.
    let s = start_with(|raw| raw.signup = None).await;
    let mut b = s.browser();
    let r = b
        .post_json(
            "/api/signup",
            &json!({ "username": "walter", "password": PASSWORD }),
        )
        .await;
    r.assert(403);
    assert_eq!(r.error_code(), "signup_closed");
    let page = b.get("/signup").await;
    page.assert(403);
    assert!(page.body.contains("Sign-up is closed"), "{}", page.body);
    assert!(
        !page
            .body
            .contains("<form method=\"post\" action=\"/signup\"")
    );
    let r = b
        .form(
            "/signup",
            &[
                ("username", "walter"),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
            ],
        )
        .await;
    r.assert(403);
    assert!(r.body.contains("Sign-up is closed"), "{}", r.body);
}

/// What every refused invitation answers, whether the code never existed, expired or was used.
const INVALID_INVITE: &str =
    "This invitation is not valid. It may have expired or been used already.";

/// A server whose sign-up is by invitation.
async fn invite_only() -> TestServer {
    start_with(|raw| raw.signup = Some(SignupMode::Invite)).await
}

/// Mints an invitation by running `cloakroom user invite` (with `args`) against the server's
/// data, as an administrator would; checks the two lines it prints and returns the code.
async fn mint(s: &TestServer, args: &'static [&'static str]) -> String {
    let (dir, env) = (s.dir.path().to_owned(), s.env.clone());
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let mut all = vec![
            "user",
            "invite",
            "--public-url",
            ORIGIN,
            "--signup",
            "invite",
        ];
        all.extend_from_slice(args);
        cloakroom(&dir, &env, &all, "")
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let rest = lines[0].strip_prefix("invitation code: ").expect(&out);
    let (code, expiry) = rest.split_once(" (expires ").expect(&out);
    assert!(expiry.ends_with("Z)"), "an RFC 3339 expiry: {out}");
    assert_eq!(code.len(), 43, "256 bits in base64url: {out}");
    assert_eq!(
        lines[1],
        format!("sign-up link: {ORIGIN}/signup?invite={code}")
    );
    code.to_owned()
}

/// A sign-up through the API with `invite`, from a fresh client.
async fn signup_with(
    s: &TestServer,
    username: &str,
    invite: Option<&str>,
) -> (u16, String, String) {
    let mut b = s.browser();
    let mut body = json!({ "username": username, "password": PASSWORD });
    if let Some(code) = invite {
        body["invite"] = json!(code);
    }
    let r = b.post_json("/api/signup", &body).await;
    let (code, message) = if r.status.is_success() {
        (String::new(), String::new())
    } else {
        let v = r.json();
        (
            v["error"].as_str().unwrap_or_default().to_owned(),
            v["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    (r.status.as_u16(), code, message)
}

/// Finding 10 asked for `signup = "invite"`: an administrator mints a single-use code with the
/// CLI; sign-up without one is refused before the username is looked at, the code creates
/// one account, and a used code is refused exactly like one that never existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_codes_from_the_cli_create_one_account_each() {
    let s = invite_only().await;
    let (status, code, _) = signup_with(&s, "ines", None).await;
    assert_eq!((status, code.as_str()), (403, "invite_required"));
    let (status, code, unknown) = signup_with(&s, "ines", Some(&"A".repeat(43))).await;
    assert_eq!((status, code.as_str()), (403, "invalid_invite"));
    assert_eq!(unknown, INVALID_INVITE);
    let (status, code, garbage) = signup_with(&s, "ines", Some("not a code")).await;
    assert_eq!((status, code.as_str()), (403, "invalid_invite"));
    assert_eq!(garbage, INVALID_INVITE);

    let invite = mint(&s, &[]).await;
    assert_eq!(signup_with(&s, "ines", Some(&invite)).await.0, 201);
    let (status, code, used) = signup_with(&s, "jonas", Some(&invite)).await;
    assert_eq!((status, code.as_str()), (403, "invalid_invite"));
    assert_eq!(used, unknown, "a used code answers like an unknown one");
    s.logged_in("ines", cloakroom_testkit::http::CHROME_UA)
        .await;

    // Only the hash is stored: the code appears nowhere in the data directory.
    if s.env.is_empty() {
        for entry in std::fs::read_dir(s.dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(invite.len()).any(|w| w == invite.as_bytes()),
                    "{} holds the code",
                    path.display()
                );
            }
        }
    }
}

/// Finding 10, invitations: a taken username answers 409 to the holder of a valid code and
/// leaves the code unused, so the invited person can pick another name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_a_taken_username_answers_409_and_keeps_the_code() {
    let s = invite_only().await;
    let first = mint(&s, &[]).await;
    assert_eq!(signup_with(&s, "karl", Some(&first)).await.0, 201);
    let second = mint(&s, &["--expires-in-days", "2"]).await;
    let (status, code, _) = signup_with(&s, "KARL", Some(&second)).await;
    assert_eq!((status, code.as_str()), (409, "username_taken"));
    assert_eq!(signup_with(&s, "karla", Some(&second)).await.0, 201);
}

/// Finding 10, invitations: an expired code is refused, with the same answer as an unknown
/// one. The server reads time from its clock, moved past the expiry here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_an_expired_code_is_refused() {
    let s = invite_only().await;
    let invite = mint(&s, &["--expires-in-days", "1"]).await;
    s.clock.advance(Duration::from_secs(86_400 + 60));
    let (status, code, message) = signup_with(&s, "lotte", Some(&invite)).await;
    assert_eq!((status, code.as_str()), (403, "invalid_invite"));
    assert_eq!(message, INVALID_INVITE);
}

/// Finding 10, invitations: concurrent sign-ups with one code create exactly one account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_concurrent_sign_ups_with_one_code_create_one_account() {
    let s = std::sync::Arc::new(invite_only().await);
    let invite = mint(&s, &[]).await;
    let mut tasks = JoinSet::new();
    for i in 0..6 {
        let (s, invite) = (s.clone(), invite.clone());
        tasks.spawn(async move { signup_with(&s, &format!("racer{i}"), Some(&invite)).await.0 });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403, 403, 403, 403, 403]);
    assert_eq!(s.state.account_store().list().await.unwrap().len(), 1);
}

/// Finding 10, invitations: the sign-up throttle per network still applies, to attempts with
/// wrong codes too, so codes cannot be guessed at the speed of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_sign_ups_are_still_throttled_per_network() {
    let s = start_with(|raw| {
        raw.signup = Some(SignupMode::Invite);
        raw.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    let http = reqwest::Client::new();
    for i in 0..10 {
        let body = json!({ "username": format!("guess{i}"), "password": PASSWORD, "invite": "B".repeat(43) });
        let r = post_from(&http, &s, "/api/signup", "203.0.113.7", &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let invite = mint(&s, &[]).await;
    let body = json!({ "username": "patient", "password": PASSWORD, "invite": invite });
    let r = post_from(&http, &s, "/api/signup", "203.0.113.7", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = post_from(&http, &s, "/api/signup", "198.51.100.7", &body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the throttle did not use the code"
    );
}

/// Submits the sign-up form as `username` with `more` fields (the invitation, `next`).
async fn signup_form(b: &mut Browser, username: &str, more: &[(&str, &str)]) -> Reply {
    let mut fields = vec![
        ("username", username),
        ("password", PASSWORD),
        ("confirm", PASSWORD),
    ];
    fields.extend_from_slice(more);
    b.form("/signup", &fields).await
}

/// Finding 10, invitations: the link the CLI prints opens a sign-up page that carries the code
/// in a hidden field, and submitting it creates the account; without a code the page asks for
/// one, and a refused code is not carried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_10_invite_the_sign_up_page_carries_the_code_from_the_link() {
    let s = invite_only().await;
    let mut b = s.browser();
    let page = b.get("/signup").await;
    page.assert(200);
    assert!(
        page.body.contains("<label for=\"invite\">"),
        "{}",
        page.body
    );
    assert_eq!(hidden(&page.body, "invite"), None);
    let r = signup_form(&mut b, "mona", &[]).await;
    r.assert(403);
    assert!(r.body.contains("by invitation"), "{}", r.body);

    let invite = mint(&s, &[]).await;
    let page = b
        .get(&format!("/signup?invite={invite}&next=/account/sessions"))
        .await;
    page.assert(200);
    assert_eq!(
        hidden(&page.body, "invite").as_deref(),
        Some(invite.as_str())
    );
    assert!(!page.body.contains("<label for=\"invite\">"));
    let r = signup_form(
        &mut b,
        "mona",
        &[("invite", &invite), ("next", "/account/sessions")],
    )
    .await;
    r.assert(303);
    assert_eq!(r.location(), "/account/sessions");
    b.get("/account/sessions").await.assert(200);

    // The same link again: the page still offers the form, the code is refused, and the
    // form then asks for another one instead of carrying the used code.
    let mut other = s.browser();
    let page = other.get(&format!("/signup?invite={invite}")).await;
    page.assert(200);
    let r = signup_form(&mut other, "nils", &[("invite", &invite)]).await;
    r.assert(403);
    assert!(
        r.body.contains("This invitation is not valid."),
        "{}",
        r.body
    );
    assert_eq!(hidden(&r.body, "invite"), None);
}
