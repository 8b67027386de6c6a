//! Hardening (issue 11): regression tests named after the audit finding they close. Each was
//! seen failing before its fix.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use cloakroom_server::config::RawConfig;
use cloakroom_server::{Stores, database_path};

use crate::procs::ServeProcess;
use crate::support::{ORIGIN, PASSWORD, start_observed, start_observed_with, start_with};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Finding 12: in a pre-created 0755 data directory the database (password hashes, CSRF
/// secrets) was created 0644 — readable by every local user. Every file is 0600 whatever the
/// umask or the directory's mode.
#[tokio::test]
async fn finding_12_database_files_are_private_in_a_world_readable_data_dir() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::DirBuilder::new().mode(0o755).create(&dir).unwrap();
    let raw = RawConfig {
        data_dir: dir.clone(),
        public_url: Some(ORIGIN.into()),
        ..RawConfig::default()
    };
    let stores = Stores::open(&raw.settings().unwrap()).await.unwrap();
    // A write, so that SQLite's write-ahead log and shared-memory files exist too.
    stores.accounts.list().await.unwrap();
    let db = database_path(&dir);
    for file in [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
    ] {
        if file.exists() {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }
    assert_eq!(mode(&db), 0o600);

    // A database created loosely by an older version is tightened when opened.
    drop(stores);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _stores = Stores::open(&raw.settings().unwrap()).await.unwrap();
    assert_eq!(mode(&db), 0o600);
}

/// Finding 13: with an `https://` public URL every response carries HSTS, so a browser never
/// again tries the session cookie's host over plain HTTP.
#[tokio::test]
async fn finding_13_https_public_url_sends_hsts() {
    let s = start_with(|_| {}).await;
    let mut b = s.browser();
    for path in ["/login", "/healthz", "/api/session"] {
        let r = b.get(path).await;
        assert_eq!(
            r.header("strict-transport-security").as_deref(),
            Some("max-age=31536000"),
            "{path}"
        );
    }
}

/// Finding 13: a plain `http://` public URL on a real host would have browsers drop the
/// `__Host-` cookie (or send it in clear text); it is refused unless the operator says
/// `danger_allow_http`. Loopback is fine (browsers treat it as secure).
#[test]
fn finding_13_http_public_url_is_refused_off_loopback() {
    let raw = |url: &str, danger: bool| RawConfig {
        public_url: Some(url.into()),
        danger_allow_http: danger,
        ..RawConfig::default()
    };
    let e = raw("http://login.example.com", false)
        .settings()
        .unwrap_err();
    assert!(e.to_string().contains("danger_allow_http"), "{e}");
    assert!(raw("http://login.example.com", true).settings().is_ok());
    for ok in [
        "http://localhost:8080",
        "http://127.0.0.1:9000",
        "http://[::1]:1",
    ] {
        assert!(raw(ok, false).settings().is_ok(), "{ok}");
    }
}

/// Finding 13: logging out tells the browser to drop this site's cookies.
#[tokio::test]
async fn finding_13_logout_sends_clear_site_data() {
    let s = start_with(|_| {}).await;
    let mut b = s.signed_up("hugo").await;
    let r = b.post_json("/api/logout", &serde_json::json!({})).await;
    r.assert(204);
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""));
    let mut b = s.signed_up("hugo2").await;
    let csrf = b.page_csrf("/").await;
    let r = b.form("/logout", &[("csrf_token", &csrf)]).await;
    r.assert(303);
    assert_eq!(r.header("clear-site-data").as_deref(), Some("\"cookies\""));
}

fn removes_the_cookie(r: &cloakroom_testkit::http::Reply) -> bool {
    r.set_cookies()
        .iter()
        .any(|c| c.starts_with("__Host-cloakroom=;") && c.contains("Max-Age=0"))
}

/// Finding 8: a logout the store could not carry out answered 503 and left the cookie in
/// the browser. It still fails honestly, and the browser forgets the ticket all the same.
#[tokio::test]
async fn finding_08_a_failed_logout_still_clears_the_cookie() {
    let (s, observed) = start_observed().await;
    let mut b = s.signed_up("olga").await;
    observed.set_writes_unavailable(true);
    let r = b.post_json("/api/logout", &serde_json::json!({})).await;
    r.assert(503);
    assert!(removes_the_cookie(&r), "{:?}", r.set_cookies());

    observed.set_writes_unavailable(false);
    let mut b = s.signed_up("olga2").await;
    let csrf = b.page_csrf("/").await;
    observed.set_writes_unavailable(true);
    let r = b.form("/logout", &[("csrf_token", &csrf)]).await;
    r.assert(503);
    assert!(removes_the_cookie(&r), "{:?}", r.set_cookies());
}

/// Finding 8: a password change saved the new password before ending the other sessions, so
/// a store failure in between left a thief's session alive under a password the owner
/// believed changed. Now the other sessions end first: either both happen or the password is
/// unchanged, and the answer says it failed.
#[tokio::test]
async fn finding_08_password_change_never_leaves_other_sessions_alive() {
    let (s, observed) = start_observed().await;
    let mut owner = s.signed_up("pia").await;
    let mut thief = s.logged_in("pia", "Thief/1.0").await;
    observed.set_writes_unavailable(true);
    let r = owner
        .post_json(
            "/api/password",
            &serde_json::json!({
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase 42",
            }),
        )
        .await;
    r.assert(503);
    observed.set_writes_unavailable(false);
    thief.get("/api/session").await.assert(200);
    // The thief's session survived, so the password must not have changed either.
    let mut again = s.browser();
    again
        .post_json(
            "/api/login",
            &serde_json::json!({"username": "pia", "password": PASSWORD}),
        )
        .await
        .assert(200);
}

/// Finding 9: `user disable` sets the flag and ends every session — but a login that had
/// already checked the password created its session just after, and kept it. The login now
/// looks at the flag again once its session exists: either the disable's revocation sees the
/// new session, or the login sees the flag.
#[tokio::test]
async fn finding_09_a_login_in_flight_during_disable_does_not_survive_it() {
    let (s, observed) = start_observed().await;
    let mut owner = s.signed_up("quinn").await;
    let id = owner.get("/api/session").await.json()["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = cloakroom_core::UserId::new(id).unwrap();

    let mut hold = observed.hold_next_create();
    let mut late = s.browser();
    let login = tokio::spawn(async move {
        let r = late
            .post_json(
                "/api/login",
                &serde_json::json!({"username": "quinn", "password": PASSWORD}),
            )
            .await;
        (r, late)
    });
    // The password is checked and the session about to be created: now the admin disables
    // the account, as `cloakroom user disable` does — the flag first, then every session.
    hold.entered().await;
    s.state
        .account_store()
        .set_disabled(&user, true)
        .await
        .unwrap();
    s.state
        .sessions()
        .revoke_all_for_user(&user, None)
        .await
        .unwrap();
    hold.release();
    let (r, mut late) = login.await.unwrap();
    assert_ne!(r.status, 200, "the login in flight is refused");
    late.get("/api/session").await.assert(401);
    owner.get("/api/session").await.assert(401);
}

/// Finding 15: `/metrics` and `/readyz` were served to every client. With `metrics_listen`
/// they move to their own address (a monitoring network, or loopback) and are gone from the
/// public one.
#[tokio::test]
async fn finding_15_metrics_and_readiness_can_leave_the_public_listener() {
    let s = start_with(|raw| raw.metrics_listen = Some("127.0.0.1:0".into())).await;
    let mut public = s.browser();
    public.get("/metrics").await.assert(404);
    public.get("/readyz").await.assert(404);
    public.get("/healthz").await.assert(200);
    let metrics = s.metrics_base.clone().expect("a metrics address");
    let http = reqwest::Client::new();
    for path in ["/metrics", "/readyz", "/healthz"] {
        let r = http.get(format!("{metrics}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// Finding 15: every scrape counted every live session in the store. The count is reused for
/// thirty seconds.
#[tokio::test]
async fn finding_15_scrapes_count_the_sessions_at_most_every_thirty_seconds() {
    let (s, observed) = start_observed().await;
    let mut b = s.browser();
    for _ in 0..5 {
        b.get("/metrics").await.assert(200);
    }
    assert_eq!(observed.live_counts(), 1);
    s.clock.advance(std::time::Duration::from_secs(31));
    b.get("/metrics").await.assert(200);
    assert_eq!(observed.live_counts(), 2);
}

/// Finding 16: a client sending its headers one byte at a time (slowloris) held a connection
/// for ever. It is cut off after `header_read_timeout_secs`.
#[tokio::test]
async fn finding_16_a_client_trickling_header_bytes_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|raw| raw.header_read_timeout_secs = 1).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    for byte in b"Host: cloakroom.test\r\nX-Slow: ".iter().cycle().take(40) {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if conn.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(1), conn.read(&mut buf)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the connection stayed open for {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
}

/// Finding 16: a request the server cannot finish (a store that hangs) held its connection
/// for ever. It is answered 503 after `request_timeout_secs`.
#[tokio::test]
async fn finding_16_a_stuck_request_is_answered_after_the_request_timeout() {
    let (s, observed) = start_observed_with(|raw| raw.request_timeout_secs = 1).await;
    let mut b = s.signed_up("rita").await;
    let hold = observed.hold_next_load();
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), b.get("/api/session"))
        .await
        .expect("answered before the test's own limit");
    r.assert(503);
    assert_eq!(r.error_code(), "timed_out");
    hold.release();
}

/// Finding 16: connections beyond `max_connections` wait in the kernel's backlog instead of
/// each taking memory and a task.
#[tokio::test]
async fn finding_16_connections_beyond_the_cap_wait_their_turn() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|raw| raw.max_connections = 1).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Let the server accept the first connection before the second arrives.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: cloakroom.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        second.read_to_end(&mut buf),
    )
    .await;
    assert!(
        waited.is_err(),
        "served beyond the cap: {}",
        String::from_utf8_lossy(&buf)
    );
    drop(first);
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        second.read_to_end(&mut buf),
    )
    .await
    .expect("served once the first connection closed")
    .unwrap();
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

/// Finding 18: only successes were logged. A whole flow — logins good and bad, throttling, a
/// CSRF and an origin refusal, an unknown session, logout, revocations, a password change,
/// an account disabled and a key rotated by the CLI — leaves one structured security event
/// each, and no token, cookie, CSRF token or password anywhere in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_18_security_events_are_logged_and_secrets_never_are() {
    use serde_json::json;
    let server = ServeProcess::start(
        |port| {
            [
                "--json-logs",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--public-url",
                &format!("http://localhost:{port}"),
            ]
            .map(str::to_owned)
            .to_vec()
        },
        &[],
    )
    .await;
    let origin = format!("http://localhost:{}", server.port);
    let browser = |ua: &str| {
        cloakroom_testkit::http::Browser::new(
            cloakroom_testkit::http::Client::new(&server.base, &origin).with_user_agent(ua),
        )
        .csrf_from("/api/session", "csrf_token")
    };
    let new_password = "an entirely new passphrase 7";
    let mut secrets = vec![PASSWORD.to_owned(), new_password.to_owned()];

    let mut owner = browser("Firefox/1");
    owner
        .post_json(
            "/api/signup",
            &json!({"username": "sven", "password": PASSWORD}),
        )
        .await
        .assert(201);
    let mut phone = browser("Phone/1");
    phone
        .post_json(
            "/api/login",
            &json!({"username": "sven", "password": PASSWORD}),
        )
        .await
        .assert(200);
    let mut laptop = browser("Laptop/1");
    laptop
        .post_json(
            "/api/login",
            &json!({"username": "sven", "password": PASSWORD}),
        )
        .await
        .assert(200);
    let mut stranger = browser("Curl/1");
    stranger
        .post_json(
            "/api/login",
            &json!({"username": "sven", "password": "not the password"}),
        )
        .await
        .assert(401);
    for b in [&mut owner, &mut phone, &mut laptop] {
        secrets.push(b.cookie.clone().unwrap());
        secrets.push(b.csrf().await.unwrap());
    }

    // A state-changing request without its CSRF token, and one from another origin.
    owner
        .req("POST", "/api/sessions/revoke-others")
        .without("x-csrf-token")
        .send()
        .await
        .assert(403);
    owner
        .req("POST", "/api/logout")
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .assert(403);
    // A well-formed cookie naming no session.
    let mut guesser = browser("Guesser/1");
    guesser.cookie = Some("A".repeat(43));
    guesser.get("/api/session").await.assert(401);

    // Revoke one device, then the others; change the password; log out.
    let devices = owner.get("/api/sessions").await.json();
    let phone_id = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["user_agent"] == "Phone/1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .delete(&format!("/api/sessions/{phone_id}"))
        .await
        .assert(204);
    owner
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await
        .assert(200);
    owner
        .post_json(
            "/api/password",
            &json!({"current_password": PASSWORD, "new_password": new_password}),
        )
        .await
        .assert(200);
    secrets.push(owner.cookie.clone().unwrap());
    owner.post_json("/api/logout", &json!({})).await.assert(204);

    // Throttling, on an account of its own.
    let mut target = browser("Target/1");
    target
        .post_json(
            "/api/signup",
            &json!({"username": "tina", "password": PASSWORD}),
        )
        .await
        .assert(201);
    let mut attacker = browser("Attacker/1");
    let mut throttled = false;
    for _ in 0..40 {
        let r = attacker
            .post_json(
                "/api/login",
                &json!({"username": "tina", "password": "guess guess guess"}),
            )
            .await;
        if r.status == 429 {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "repeated failures are throttled");

    let mut logs = server.admin(&["user", "disable", "sven", "--json-logs"]);
    logs += &server.admin(&["keys", "rotate", "--json-logs"]);
    logs += &server.stop();

    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "cloakroom::security")
        .collect();
    let find = |name: &str, check: &dyn Fn(&serde_json::Value) -> bool| {
        events
            .iter()
            .any(|e| e["fields"]["event"] == name && check(&e["fields"]))
    };
    let any = |_: &serde_json::Value| true;
    assert!(find("login", &|f| f["username"] == "sven"), "{logs}");
    assert!(find("login_failed", &|f| f["reason"]
        == "invalid_credentials"
        && f["ip"] == "127.0.0.1"));
    assert!(
        find("login_throttled", &|f| f["ip"] == "127.0.0.1"),
        "{logs}"
    );
    assert!(find("csrf_refused", &|f| f["code"] == "csrf_token_missing"
        && f["ip"] == "127.0.0.1"
        && f["user"] != "-"));
    assert!(find("csrf_refused", &|f| f["code"] == "cross_origin_request"));
    assert!(find("unknown_session", &any));
    assert!(find("sessions_revoked", &|f| f["reason"] == "revoke_one"));
    assert!(find("sessions_revoked", &|f| f["reason"] == "revoke_others"));
    assert!(find("password_changed", &|f| f["username"] == "sven"));
    assert!(find("logout", &|f| f["user"] == "sven"));
    assert!(find("account_disabled", &|f| f["username"] == "sven"));
    assert!(find("key_rotated", &any));
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the logs: {secret}"
        );
    }
}

/// Finding 16, and the README's word for it: the header-read timeout also closes a kept-alive
/// connection that sends no next request.
#[tokio::test]
async fn finding_16_an_idle_kept_alive_connection_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start_with(|raw| raw.header_read_timeout_secs = 1).await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: cloakroom.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: the server hangs up within the limit (plus slack).
    let closed = tokio::time::timeout(std::time::Duration::from_secs(4), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the idle connection was still open after 4 s"
    );
}
