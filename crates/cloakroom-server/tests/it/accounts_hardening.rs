//! Issue 11, the account findings: the hashing pool survives cancelled logins, the throttle
//! reserves before it verifies, an attacker is slowed down without locking the owner out, and
//! sign-up is throttled and can be closed. Each test failed on the code before its fix.
//!
//! Client addresses are varied through `X-Forwarded-For` from a trusted loopback proxy; the
//! throttle reads the test server's manual clock, so nothing here waits for a backoff to pass.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{ORIGIN, PASSWORD, TestServer, start_with};

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
