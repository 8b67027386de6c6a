//! Regression tests for the hardening findings (issue 11) that concern the session layer.

use reqwest::StatusCode;
use reqwest::header::HeaderValue;

use crate::support::{App, ORIGIN, start};

/// Sends `GET /me` with each of `lines` as one `Cookie` header line, byte for byte, the way a
/// browser would send a jar that other sites of the same domain have written into.
async fn me_with_cookie_lines(app: &App, lines: &[Vec<u8>]) -> (StatusCode, String) {
    let mut request = reqwest::Client::new()
        .get(format!("{}/me", app.client.base()))
        .header("sec-fetch-site", "same-origin")
        .header("origin", ORIGIN);
    for line in lines {
        request = request.header("cookie", HeaderValue::from_bytes(line).unwrap());
    }
    let response = request.send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A running app and the cookie value of alice's session on it.
async fn signed_in() -> (App, String) {
    let app = start().await;
    let (cookie, _) = app.login("alice").await;
    (app, cookie)
}

fn line(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Why: a cookie such as `theme=café`, set by a sibling subdomain for the parent domain, made
/// the whole `Cookie` header unreadable (not visible ASCII), so the session next to it was
/// never found and the user was signed out for as long as that cookie lived.
#[tokio::test]
async fn finding_11_non_ascii_foreign_cookies_do_not_hide_the_session() {
    let (app, cookie) = signed_in().await;
    let ours = format!("__Host-cloakroom={cookie}");
    let ours = ours.as_bytes();
    let cases: Vec<Vec<Vec<u8>>> = vec![
        // UTF-8, as a browser sends a cookie written by `document.cookie = "theme=café"`.
        vec![line(&[b"theme=caf\xc3\xa9; ", ours])],
        vec![line(&[ours, "; theme=café".as_bytes()])],
        // Latin-1 — not even UTF-8 — and junk of every other shape around our cookie.
        vec![line(&[b"theme=caf\xe9;", ours, b";lang=\xff\xfe"])],
        vec![line(&[
            b"no-equals-sign; ;;=; =\xe9; ",
            ours,
            b"; \"quoted\"=\"\xc3\xa9\"",
        ])],
        // HTTP/2 sends every cookie as its own header line: junk in another line, too.
        vec![
            b"theme=caf\xe9".to_vec(),
            ours.to_vec(),
            b"x=\x80\x81".to_vec(),
        ],
    ];
    for lines in &cases {
        let (status, body) = me_with_cookie_lines(&app, lines).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{:?}: {body}",
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l))
                .collect::<Vec<_>>()
        );
        assert!(body.contains("\"alice\""), "{body}");
    }
}

/// Why: the whole `Cookie` header was refused past 8 KiB, so a sibling subdomain could hide the
/// session by writing a few large cookies for the parent domain (cookie bombing).
#[tokio::test]
async fn finding_11_large_foreign_cookies_do_not_hide_the_session() {
    let (app, cookie) = signed_in().await;
    let bomb = format!("bomb={}", "x".repeat(4000));
    let header = format!("{bomb}; {bomb}; {bomb}; __Host-cloakroom={cookie}");
    let (status, body) = me_with_cookie_lines(&app, &[header.into_bytes()]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The other side of finding 11: tolerance stops at our own cookie. A non-ASCII byte in our
/// value, or our cookie twice with junk between, is still refused without a store query.
#[tokio::test]
async fn finding_11_our_own_cookie_stays_strict_next_to_junk() {
    let (app, cookie) = signed_in().await;
    let ours = format!("__Host-cloakroom={cookie}");
    let ours = ours.as_bytes();
    let loads = app.store.loads();
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![line(&[
            b"theme=caf\xe9; __Host-cloakroom=",
            &cookie.as_bytes()[..42],
            b"\xe9",
        ])],
        vec![line(&[ours, b"\xc3\xa9; theme=caf\xe9"])],
        vec![line(&[ours, b"; theme=caf\xe9; ", ours])],
        vec![ours.to_vec(), b"theme=caf\xe9".to_vec(), ours.to_vec()],
    ];
    for lines in &cases {
        let (status, body) = me_with_cookie_lines(&app, lines).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert_eq!(
        app.store.loads(),
        loads,
        "a refused cookie reached the store"
    );
}
