//! Real reverse proxies in front of a real app, with Cloakroom deciding: nginx
//! (`auth_request`) and Caddy (`forward_auth`), configured from the files in `examples/`; and
//! Traefik's documented ForwardAuth header contract, which is not packaged here, exercised
//! directly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cloakroom_verify::{Verifier, VerifierConfig};
use serde_json::json;

use crate::procs::{Guarded, echo_upstream, free_port, require, wait_for_port};
use crate::support::{Browser, PASSWORD, TestServer, start_with};

fn example(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The example config with its placeholder addresses replaced by the test's.
fn adapted(text: &str, proxy_port: u16, cloakroom: &str, app_port: u16) -> String {
    text.replace("127.0.0.1:8080", cloakroom)
        .replace("127.0.0.1:3000", &format!("127.0.0.1:{app_port}"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{proxy_port};"))
        .replace(":80 {", &format!(":{proxy_port} {{"))
}

/// Cloakroom behind a proxy on `proxy_port`: its public URL is the proxy's.
async fn cloakroom_behind(proxy_port: u16) -> TestServer {
    start_with(move |raw| {
        raw.public_url = format!("http://127.0.0.1:{proxy_port}");
        raw.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await
}

fn cloakroom_addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// A browser talking to the proxy.
fn through(s: &TestServer, proxy_port: u16) -> Browser {
    let mut b = s.browser();
    b.set_base(
        &format!("http://127.0.0.1:{proxy_port}"),
        &format!("http://127.0.0.1:{proxy_port}"),
    );
    b
}

async fn start_nginx(dir: &Path, proxy_port: u16, cloakroom: &str, app_port: u16) -> Guarded {
    let server = adapted(
        &example("nginx/cloakroom.conf"),
        proxy_port,
        cloakroom,
        app_port,
    );
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
    let guard = Guarded(child);
    wait_for_port(proxy_port).await;
    guard
}

async fn start_caddy(dir: &Path, proxy_port: u16, cloakroom: &str, app_port: u16) -> Guarded {
    let caddyfile = adapted(&example("caddy/Caddyfile"), proxy_port, cloakroom, app_port);
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
    let proxy_port = free_port();
    let s = cloakroom_behind(proxy_port).await;
    let app = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let _nginx = start_nginx(dir.path(), proxy_port, &cloakroom_addr(&s), app).await;
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
