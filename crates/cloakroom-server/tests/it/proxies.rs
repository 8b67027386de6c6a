//! Real reverse proxies in front of a real app, with Cloakroom deciding: nginx
//! (`auth_request`) and Caddy (`forward_auth`), configured from the files in `examples/`; and
//! Traefik's documented ForwardAuth header contract, which is not packaged here, exercised
//! directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cloakroom_verify::{Verifier, VerifierConfig};
use serde_json::json;

use crate::procs::{Guarded, echo_upstream, free_port, require, wait_for_port};
use crate::support::{Browser, DECISION_PATHS, PASSWORD, TestServer, start_with};

pub(crate) fn example(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The example config with its placeholder addresses replaced by the test's.
pub(crate) fn adapted(text: &str, proxy_port: u16, cloakroom: &str, app_port: u16) -> String {
    text.replace("127.0.0.1:8080", cloakroom)
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{app_port}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{proxy_port};"))
        .replace(":80 {", &format!(":{proxy_port} {{"))
}

/// Cloakroom behind a proxy on `proxy_port`: its public URL is the proxy's.
async fn cloakroom_behind(proxy_port: u16) -> TestServer {
    start_with(move |raw| {
        raw.public_url = Some(format!("http://127.0.0.1:{proxy_port}"));
        raw.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
}

pub(crate) fn cloakroom_addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// A browser talking to the proxy.
pub(crate) fn through(s: &TestServer, proxy_port: u16) -> Browser {
    let mut b = s.browser();
    b.set_base(
        &format!("http://127.0.0.1:{proxy_port}"),
        &format!("http://127.0.0.1:{proxy_port}"),
    );
    b
}

/// nginx on `proxy_port`, or `None` if it could not listen there: the port was free when it
/// was picked, but another test may have bound it since (then whatever answers on it is not
/// nginx — a test once sent its requests to another test's echo app and failed confusingly).
pub(crate) async fn start_nginx(
    dir: &Path,
    proxy_port: u16,
    cloakroom: &str,
    app_port: u16,
) -> Option<Guarded> {
    let server = adapted(
        &example("nginx/cloakroom.conf"),
        proxy_port,
        cloakroom,
        app_port,
    );
    run_nginx(dir, proxy_port, &server).await
}

/// nginx on `proxy_port` with `server` (an adapted example: `server`, `map` and `upstream`
/// blocks) in its `http {}`, or `None` if it could not listen there (see [`start_nginx`]).
pub(crate) async fn run_nginx(dir: &Path, proxy_port: u16, server: &str) -> Option<Guarded> {
    let d = dir.display();
    let conf = format!(
        "worker_processes 1;\nerror_log {d}/error.log warn;\npid {d}/nginx.pid;\nevents {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{server}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .args([
            "-p",
            &dir.display().to_string(),
            "-c",
            &path.display().to_string(),
            "-g",
            "daemon off; master_process off;",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Guarded(child);
    wait_for_port(proxy_port).await;
    // nginx that failed to bind exits at once; give it the moment to.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    if guard.0.try_wait().unwrap().is_some() {
        eprintln!("nginx could not listen on {proxy_port} (taken meanwhile); trying another port");
        return None;
    }
    Some(guard)
}

async fn start_caddy(dir: &Path, proxy_port: u16, cloakroom: &str, app_port: u16) -> Guarded {
    let caddyfile = adapted(&example("caddy/Caddyfile"), proxy_port, cloakroom, app_port);
    run_caddy(dir, proxy_port, &caddyfile).await
}

/// Caddy on `proxy_port` with `caddyfile` (an adapted example).
pub(crate) async fn run_caddy(dir: &Path, proxy_port: u16, caddyfile: &str) -> Guarded {
    let path: PathBuf = dir.join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let child = Command::new("caddy")
        .args([
            "run",
            "--config",
            &path.display().to_string(),
            "--adapter",
            "caddyfile",
        ])
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guarded(child);
    wait_for_port(proxy_port).await;
    guard
}

/// The scenario both proxies must pass.
async fn scenario(s: &TestServer, proxy_port: u16, flavour: &str) {
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    // No cookie: refused, sent to the login page with a way back.
    let mut anon = through(s, proxy_port);
    let r = anon
        .req("GET", "/app/page?q=1")
        .header("accept", "text/html")
        .send()
        .await;
    r.assert(302);
    assert!(
        r.location().starts_with(&format!("{proxy}/login?rd=")),
        "{flavour}: {}",
        r.location()
    );
    assert!(
        r.location().contains("%2Fapp%2Fpage%3Fq%3D1"),
        "{flavour}: {}",
        r.location()
    );
    // A forged identity header without a session does not get through either.
    let r = anon
        .req("GET", "/app/page")
        .header("remote-user", "admin")
        .send()
        .await;
    assert!(
        r.status == 302 || r.status == 401,
        "{flavour}: {}",
        r.status
    );
    assert!(
        !r.body.contains("\"headers\""),
        "{flavour}: the app was reached: {}",
        r.body
    );
    // Sign up and log in through the proxy: Cloakroom's pages are served on the app's host.
    let mut alice = through(s, proxy_port);
    alice
        .post_json(
            "/api/signup",
            &json!({ "username": "alice", "password": PASSWORD }),
        )
        .await
        .assert(201);
    let mut phone = through(s, proxy_port);
    phone
        .post_json(
            "/api/login",
            &json!({ "username": "alice", "password": PASSWORD }),
        )
        .await
        .assert(200);
    // Valid cookie: the app is reached, with the identity and a service JWT — and a
    // client-supplied Remote-User is overwritten.
    let r = alice
        .req("GET", "/app/page")
        .header("remote-user", "admin")
        .send()
        .await;
    r.assert(200);
    let echoed = r.json();
    assert_eq!(echoed["path"], "/app/page", "{flavour}");
    let h = &echoed["headers"];
    assert_eq!(h["remote-user"], "alice", "{flavour}: {h}");
    assert_eq!(h["remote-name"], "alice", "{flavour}: {h}");
    let token = h["x-cloakroom-jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("{flavour}: no JWT reached the app: {h}"));
    let verifier = Verifier::new(
        VerifierConfig::new(&format!("{proxy}/.well-known/jwks.json"), &proxy, &proxy).unwrap(),
    );
    let claims = verifier
        .verify(token)
        .await
        .unwrap_or_else(|e| panic!("{flavour}: {e}"));
    assert_eq!(claims.preferred_username, "alice");
    // Groups (issue 15) reach the app on its next request, and a forged list does not.
    let store = s.state.account_store();
    let id = s.account("alice").await.unwrap().id;
    let admins = cloakroom_core::accounts::GroupName::parse("admins").unwrap();
    store.update_groups(&id, &[admins], &[]).await.unwrap();
    let r = alice
        .req("GET", "/app/page")
        .header("remote-groups", "root")
        .send()
        .await;
    let h = &r.json()["headers"];
    assert_eq!(h["remote-groups"], "admins", "{flavour}: {h}");
    assert_eq!(h["x-auth-request-groups"], "admins", "{flavour}: {h}");
    phone.req("GET", "/app/other").send().await.assert(200);
    // "Log out of all other devices": the phone is refused on its next request.
    alice
        .post_json("/api/sessions/revoke-others", &json!({}))
        .await
        .assert(200);
    phone
        .req("GET", "/app/other")
        .header("accept", "text/html")
        .send()
        .await
        .assert(302);
    alice.req("GET", "/app/page").send().await.assert(200);
    // Logout: the same cookie is refused at once.
    let cookie = alice.cookie.clone();
    alice.post_json("/api/logout", &json!({})).await.assert(204);
    alice.cookie = cookie;
    alice
        .req("GET", "/app/page")
        .header("accept", "text/html")
        .send()
        .await
        .assert(302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request() {
    let Some(()) = require("nginx", &["-v"]) else {
        return;
    };
    let (s, proxy_port, _nginx, _dir) = behind(Proxy::Nginx).await.unwrap();
    scenario(&s, proxy_port, "nginx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth() {
    let Some(()) = require("caddy", &["version"]) else {
        return;
    };
    let proxy_port = free_port();
    let s = cloakroom_behind(proxy_port).await;
    let app = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let _caddy = start_caddy(dir.path(), proxy_port, &cloakroom_addr(&s), app).await;
    scenario(&s, proxy_port, "caddy").await;
}

/// Traefik's ForwardAuth sends `X-Forwarded-Method/-Proto/-Host/-Uri` (and the original
/// headers) and passes any non-2xx answer to the client; `authResponseHeaders` are copied to
/// the upstream request on 2xx. This is that contract, as Traefik's documentation states it,
/// against the endpoint `examples/traefik/dynamic.yml` uses.
#[tokio::test]
async fn traefik_forward_auth_contract() {
    let config = example("traefik/dynamic.yml");
    assert!(config.contains("/api/authz/forward-auth"));
    let s = crate::support::start().await;
    let mut b = s.browser();
    fn check<'a>(b: &'a mut Browser, method: &str, accept: &str) -> crate::support::Req<'a> {
        b.req("GET", "/api/authz/forward-auth")
            .without("origin")
            .without("sec-fetch-site")
            .header("x-forwarded-method", method)
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "app.example.com")
            .header("x-forwarded-uri", "/dashboard")
            .header("x-forwarded-for", "203.0.113.7")
            .header("accept", accept)
    }
    let r = check(&mut b, "GET", "text/html").send().await;
    r.assert(302);
    assert_eq!(
        r.location(),
        "https://cloakroom.test/login?rd=https%3A%2F%2Fapp.example.com%2Fdashboard"
    );
    check(&mut b, "POST", "text/html").send().await.assert(303);
    check(&mut b, "GET", "application/json")
        .send()
        .await
        .assert(401);
    b.post_json(
        "/api/signup",
        &json!({ "username": "tina", "password": PASSWORD }),
    )
    .await
    .assert(201);
    let r = check(&mut b, "GET", "text/html").send().await;
    r.assert(200);
    for name in ["Remote-User", "Remote-Name", "X-Cloakroom-Jwt"] {
        assert!(config.contains(name), "{name} not in authResponseHeaders");
        assert!(r.header(name).is_some(), "{name} missing from the answer");
    }
    assert_eq!(r.header("remote-user").as_deref(), Some("tina"));
}

/// Which example proxy a test runs behind.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Proxy {
    Nginx,
    Caddy,
}

/// Cloakroom behind the example config of `proxy`, in front of the echo app; `None` when the
/// proxy is not installed (a skip).
pub(crate) async fn behind(proxy: Proxy) -> Option<(TestServer, u16, Guarded, tempfile::TempDir)> {
    match proxy {
        Proxy::Nginx => require("nginx", &["-v"])?,
        Proxy::Caddy => require("caddy", &["version"])?,
    }
    // Cloakroom must know the proxy's port before the proxy starts; if the proxy then cannot
    // listen there, everything starts again on another port.
    for _ in 0..5 {
        let proxy_port = free_port();
        let s = cloakroom_behind(proxy_port).await;
        let app = echo_upstream().await;
        let dir = tempfile::tempdir().unwrap();
        let guard = match proxy {
            Proxy::Nginx => start_nginx(dir.path(), proxy_port, &cloakroom_addr(&s), app).await,
            Proxy::Caddy => {
                Some(start_caddy(dir.path(), proxy_port, &cloakroom_addr(&s), app).await)
            }
        };
        if let Some(guard) = guard {
            return Some((s, proxy_port, guard, dir));
        }
    }
    panic!("{proxy:?} could not listen on any of five free ports")
}

/// A browser signed up as `username` through the proxy.
pub(crate) async fn signed_up_through(s: &TestServer, proxy_port: u16, username: &str) -> Browser {
    let mut b = through(s, proxy_port);
    b.post_json(
        "/api/signup",
        &json!({ "username": username, "password": PASSWORD }),
    )
    .await
    .assert(201);
    b
}

/// The `aud` of the service JWT the app received (echoed back to the test).
fn echoed_audience(r: &crate::support::Reply, what: &str) -> String {
    let token = r.json()["headers"]["x-cloakroom-jwt"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no JWT reached the app: {}", r.body))
        .to_owned();
    crate::forward::audience_of(&token)
}

/// Finding 4 through a real proxy: a client's own `X-Original-URL`, `X-Forwarded-Host` or
/// `Host` cannot change the audience of the JWT the app gets, and the forward-auth endpoints
/// cannot be reached from outside at all.
async fn client_cannot_choose_the_audience(proxy: Proxy) {
    let Some((s, port, _proxy, _dir)) = behind(proxy).await else {
        return;
    };
    let ours = format!("http://127.0.0.1:{port}");
    let mut b = signed_up_through(&s, port, "alice").await;
    let r = b
        .req("GET", "/app/page")
        .header("x-original-url", "https://payments.internal.example/")
        .header("x-original-method", "GET")
        .header("x-forwarded-host", "payments.internal.example")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-uri", "/")
        .send()
        .await;
    r.assert(200);
    assert_eq!(
        echoed_audience(&r, &format!("{proxy:?}")),
        ours,
        "{proxy:?}"
    );
    // A Host of the client's choosing names an app Cloakroom does not protect: refused.
    let r = b
        .req("GET", "/app/page")
        .header("host", "payments.internal.example")
        .send()
        .await;
    assert_eq!(r.status.as_u16(), 403, "{proxy:?} Host: {}", r.body);
    for path in DECISION_PATHS {
        let r = b
            .req("GET", path)
            .header("x-original-url", "https://payments.internal.example/")
            .header("x-forwarded-host", "payments.internal.example")
            .send()
            .await;
        assert!(
            r.header("x-cloakroom-jwt").is_none(),
            "{proxy:?} {path}: a JWT was handed to the client"
        );
        if path != "/auth/verify" {
            // `/auth/verify` is not routed to Cloakroom at all: it is an app path.
            assert_eq!(r.status.as_u16(), 404, "{proxy:?} {path}: {}", r.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_04_a_client_cannot_choose_the_audience_through_nginx() {
    client_cannot_choose_the_audience(Proxy::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_04_a_client_cannot_choose_the_audience_through_caddy() {
    client_cannot_choose_the_audience(Proxy::Caddy).await;
}

/// Every identity header an app might believe: Cloakroom's, Authelia's and oauth2-proxy's.
pub(crate) const IDENTITY_HEADERS: &[&str] = &[
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-cloakroom-jwt",
];

/// Finding 5 through a real proxy: forged identity headers are cleared whether or not
/// Cloakroom sets them (alice has no email and no groups, so Cloakroom sends no
/// `Remote-Email`; the app must not see the client's).
async fn forged_identity_headers_never_reach_the_app(proxy: Proxy) {
    let Some((s, port, _proxy, _dir)) = behind(proxy).await else {
        return;
    };
    let mut b = signed_up_through(&s, port, "alice").await;
    let mut req = b.req("GET", "/app/page");
    for name in IDENTITY_HEADERS {
        req = req.header(name, "forged-admin");
    }
    let r = req.send().await;
    r.assert(200);
    let h = &r.json()["headers"];
    for name in IDENTITY_HEADERS {
        let seen = h[*name].as_str().unwrap_or_default();
        assert!(
            !seen.contains("forged-admin") && !seen.contains("{http."),
            "{proxy:?}: the app received a forged or unfilled {name}: {h}"
        );
    }
    for name in ["remote-user", "remote-name", "x-auth-request-user"] {
        assert_eq!(h[name], "alice", "{proxy:?}: {name}: {h}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_05_forged_identity_headers_never_reach_the_app_through_nginx() {
    forged_identity_headers_never_reach_the_app(Proxy::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_05_forged_identity_headers_never_reach_the_app_through_caddy() {
    forged_identity_headers_never_reach_the_app(Proxy::Caddy).await;
}

/// Finding 5 for Traefik (not packaged here): the example runs a headers middleware that
/// clears every identity header, and the `X-Original-*` headers a client could use to
/// describe another request, before ForwardAuth; Traefik then sets those Cloakroom answers.
#[test]
fn finding_05_the_traefik_example_clears_every_identity_header() {
    let config = example("traefik/dynamic.yml");
    let strip = config
        .split("cloakroom-strip:")
        .nth(1)
        .and_then(|rest| rest.split("\n    cloakroom:").next())
        .unwrap_or_else(|| panic!("no cloakroom-strip middleware: {config}"));
    for name in IDENTITY_HEADERS
        .iter()
        .chain(&["x-original-url", "x-original-method"])
    {
        assert!(
            strip
                .to_ascii_lowercase()
                .contains(&format!("{name}: \"\"")),
            "{name} is not cleared by cloakroom-strip"
        );
    }
    assert!(
        config.contains("middlewares: [cloakroom-strip, cloakroom]"),
        "the app router must clear the headers before asking Cloakroom"
    );
}

/// Finding 6 through a real proxy: the app never receives the session cookie (a logging or
/// compromised app would hold a 12-hour credential); other cookies still reach it.
async fn the_app_never_sees_the_session_cookie(proxy: Proxy) {
    let Some((s, port, _proxy, _dir)) = behind(proxy).await else {
        return;
    };
    let mut b = signed_up_through(&s, port, "alice").await;
    let token = b.cookie.clone().unwrap();
    let ours = format!("__Host-cloakroom={token}");
    for cookies in [
        ours.clone(),
        format!("{ours}; theme=dark; lang=en"),
        format!("theme=dark; {ours}; lang=en"),
        format!("theme=dark; lang=en; {ours}"),
        format!("theme=dark;{ours};lang=en"),
    ] {
        let r = b
            .req("GET", "/app/page")
            .no_cookie()
            .header("cookie", &cookies)
            .send()
            .await;
        r.assert(200);
        let seen = r.json()["headers"]["cookie"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            !seen.contains(&token) && !seen.contains("__Host-cloakroom"),
            "{proxy:?}: the app received the session cookie: {seen:?} (sent {cookies:?})"
        );
        if cookies.contains("theme") {
            assert!(
                seen.contains("theme=dark") && seen.contains("lang=en"),
                "{proxy:?}: other cookies lost: {seen:?} (sent {cookies:?})"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_06_the_app_never_sees_the_session_cookie_through_nginx() {
    the_app_never_sees_the_session_cookie(Proxy::Nginx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_06_the_app_never_sees_the_session_cookie_through_caddy() {
    the_app_never_sees_the_session_cookie(Proxy::Caddy).await;
}

/// The README quotes the example configs; a quote that drifts from the file the tests run
/// would document a configuration nobody tested. Every quote of a proxy's configuration must
/// be in one of that proxy's example files.
#[test]
fn the_readme_quotes_the_example_configs_verbatim() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    // Compared line by line without indentation: the file nests the quote in `server {`.
    let flat = |t: &str| t.lines().map(str::trim).collect::<Vec<_>>().join("\n");
    for (fence, files) in [
        (
            "```nginx\n",
            &["nginx/cloakroom.conf", "nginx/subdomains.conf"][..],
        ),
        (
            "```caddyfile\n",
            &["caddy/Caddyfile", "caddy/Caddyfile.subdomains"][..],
        ),
    ] {
        let quotes: Vec<&str> = readme
            .split(fence)
            .skip(1)
            .map(|rest| rest.split("\n```").next().unwrap_or_default())
            .collect();
        assert!(!quotes.is_empty(), "no {fence} block in the README");
        let texts: Vec<String> = files.iter().map(|file| flat(&example(file))).collect();
        for quoted in quotes {
            let needle = flat(quoted);
            assert!(
                texts.iter().any(|text| text.contains(&needle)),
                "a README quote is in none of examples/{files:?}:\n{quoted}"
            );
        }
    }
}
