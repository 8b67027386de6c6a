//! A real server on 127.0.0.1:0 over a temporary data directory, and a browser-like client
//! that keeps the session cookie and sends same-origin headers unless told otherwise.

use std::sync::Arc;

use cloakroom_core::conformance::ObservedStore;
use cloakroom_core::{ManualClock, MemoryStore};
use cloakroom_server::Stores;
use cloakroom_server::config::RawConfig;
use cloakroom_server::{AppState, Server};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

pub const ORIGIN: &str = "https://cloakroom.test";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestServer {
    pub base: String,
    /// `CLOAKROOM_*` variables that point a `cloakroom` process at the same stores.
    pub env: Vec<(String, String)>,
    pub state: AppState,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub fn raw_config(dir: &std::path::Path) -> RawConfig {
    RawConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        public_url: ORIGIN.into(),
        // The apps the forward-auth tests protect (service JWTs are minted only for these).
        app_origins: vec![
            "https://app.example.com".into(),
            "https://other.example.com".into(),
        ],
        hash_workers: Some(2),
        ..RawConfig::default()
    }
}

/// Which stores the suite runs on: SQLite by default; with
/// `CLOAKROOM_TEST_SERVER_STORES=redis-postgres`, sessions in Redis and accounts in PostgreSQL
/// (each test under its own key prefix and schema, removed afterwards).
fn shared_stores(raw: &mut RawConfig) -> Vec<(String, String)> {
    let Ok(mode) = std::env::var("CLOAKROOM_TEST_SERVER_STORES") else {
        return Vec::new();
    };
    assert_eq!(
        mode, "redis-postgres",
        "unknown CLOAKROOM_TEST_SERVER_STORES={mode}"
    );
    let suffix = cloakroom_core::SessionHandle::generate()
        .as_str()
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    let redis = std::env::var("CLOAKROOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let postgres = std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let env = vec![
        ("CLOAKROOM_SESSION_STORE".to_owned(), "redis".to_owned()),
        ("CLOAKROOM_REDIS_URL".to_owned(), redis),
        (
            "CLOAKROOM_REDIS_KEY_PREFIX".to_owned(),
            format!("cloakroom-srvtest-{suffix}:"),
        ),
        ("CLOAKROOM_ACCOUNT_STORE".to_owned(), "postgres".to_owned()),
        ("CLOAKROOM_POSTGRES_URL".to_owned(), postgres),
        (
            "CLOAKROOM_POSTGRES_SCHEMA".to_owned(),
            format!("cloakroom_srvtest_{suffix}"),
        ),
    ];
    let value = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    raw.session_store = cloakroom_server::config::SessionStoreKind::Redis;
    raw.redis_url = Some(value("CLOAKROOM_REDIS_URL"));
    raw.redis_key_prefix = value("CLOAKROOM_REDIS_KEY_PREFIX");
    raw.account_store = cloakroom_server::config::AccountStoreKind::Postgres;
    raw.postgres_url = Some(value("CLOAKROOM_POSTGRES_URL"));
    raw.postgres_schema = value("CLOAKROOM_POSTGRES_SCHEMA");
    env
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Leave nothing behind in the shared Redis and PostgreSQL (best effort: the tools may
        // be missing on a developer machine, and the keys expire anyway).
        let get = |k: &str| {
            self.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        if let (Some(url), Some(prefix)) = (
            get("CLOAKROOM_REDIS_URL"),
            get("CLOAKROOM_REDIS_KEY_PREFIX"),
        ) {
            let script = format!(
                "redis-cli -u '{url}' --scan --pattern '{prefix}*' | xargs -r redis-cli -u '{url}' del"
            );
            let _ = std::process::Command::new("sh")
                .args(["-c", &script])
                .output();
        }
        if let (Some(url), Some(schema)) = (
            get("CLOAKROOM_POSTGRES_URL"),
            get("CLOAKROOM_POSTGRES_SCHEMA"),
        ) {
            let _ = std::process::Command::new("psql")
                .args([
                    url.as_str(),
                    "-qc",
                    &format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
                ])
                .output();
        }
    }
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(edit: impl FnOnce(&mut RawConfig)) -> TestServer {
    start_full(edit, |s| s).await
}

pub async fn start_with_stores(stores: impl FnOnce(Stores) -> Stores) -> TestServer {
    start_full(|_| {}, stores).await
}

/// A server whose sessions live in an [`ObservedStore`], to count its calls or switch it off.
pub async fn start_observed() -> (TestServer, Arc<ObservedStore>) {
    let observed = Arc::new(ObservedStore::new(MemoryStore::new()));
    let store = observed.clone();
    let s = start_with_stores(move |stores| Stores {
        sessions: store,
        ..stores
    })
    .await;
    (s, observed)
}

/// A server a real browser can use: on a free loopback port, with `http://localhost:PORT` as
/// its public URL. The browser must reach it at exactly that origin (form posts from any other
/// are refused), and `localhost` is where browsers accept a `Secure`, `__Host-` cookie over
/// plain HTTP — the README's quickstart setup.
pub async fn start_for_browser() -> TestServer {
    // The port has to be known before the settings are built, so it is picked, released and
    // bound again. Another test binding port 0 in between could take it; then pick again.
    let mut attempts = 0;
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let edit = |raw: &mut RawConfig| {
            raw.listen = format!("127.0.0.1:{port}");
            raw.public_url = format!("http://localhost:{port}");
        };
        match try_start(edit, |s| s).await {
            Ok(server) => return server,
            Err(e) if attempts < 5 => {
                attempts += 1;
                eprintln!("port {port} was taken ({e}); picking another");
            }
            Err(e) => panic!("cannot start a server for the browser: {e}"),
        }
    }
}

async fn start_full(
    edit: impl FnOnce(&mut RawConfig),
    wrap: impl FnOnce(Stores) -> Stores,
) -> TestServer {
    try_start(edit, wrap).await.unwrap()
}

/// Starts a server; only binding the listen address may fail.
async fn try_start(
    edit: impl FnOnce(&mut RawConfig),
    wrap: impl FnOnce(Stores) -> Stores,
) -> Result<TestServer, cloakroom_server::StartupError> {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = raw_config(dir.path());
    let env = shared_stores(&mut raw);
    edit(&mut raw);
    let settings = raw.settings().unwrap();
    let clock = ManualClock::starting_now();
    let stores = wrap(Stores::open(&settings).await.unwrap());
    let state = AppState::new(settings, stores, Arc::new(clock.clone())).unwrap();
    let server = Server::bind(state.clone()).await?;
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(TestServer {
        base: format!("http://{addr}"),
        env,
        state,
        clock,
        dir,
        _stop: stop,
    })
}

/// A response, reduced to what tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[track_caller]
    pub fn assert(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        self
    }
}

/// One browser: a cookie jar for the session cookie, same-origin headers by default.
pub struct Browser {
    base: String,
    origin: String,
    http: reqwest::Client,
    pub cookie: Option<String>,
    pub user_agent: String,
}

impl TestServer {
    pub fn browser(&self) -> Browser {
        self.browser_with_ua("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36")
    }

    pub fn browser_with_ua(&self, ua: &str) -> Browser {
        Browser {
            base: self.base.clone(),
            origin: ORIGIN.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            user_agent: ua.to_owned(),
        }
    }

    /// A browser signed up as `username` (with [`PASSWORD`]).
    pub async fn signed_up(&self, username: &str) -> Browser {
        let mut b = self.browser();
        b.post_json(
            "/api/signup",
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await
        .assert(201);
        b
    }

    /// A new browser logged in as `username`.
    pub async fn logged_in(&self, username: &str, ua: &str) -> Browser {
        let mut b = self.browser_with_ua(ua);
        b.post_json(
            "/api/login",
            &json!({ "username": username, "password": PASSWORD }),
        )
        .await
        .assert(200);
        b
    }
}

pub struct Req<'a> {
    browser: &'a mut Browser,
    method: reqwest::Method,
    path: String,
    headers: HeaderMap,
    body: Option<(Vec<u8>, String)>,
    with_cookie: bool,
}

impl Browser {
    /// Talks to `base` (a proxy in front of the server), claiming to be a page on `origin`.
    pub fn set_base(&mut self, base: &str, origin: &str) {
        self.base = base.to_owned();
        self.origin = origin.to_owned();
    }

    pub fn req(&mut self, method: &str, path: &str) -> Req<'_> {
        let mut headers = HeaderMap::new();
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        headers.insert("origin", HeaderValue::from_str(&self.origin).unwrap());
        headers.insert(
            "user-agent",
            HeaderValue::from_str(&self.user_agent).unwrap(),
        );
        Req {
            browser: self,
            method: method.parse().unwrap(),
            path: path.to_owned(),
            headers,
            body: None,
            with_cookie: true,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.req("GET", path).send().await
    }

    /// A JSON POST with this session's CSRF token (fetched from `/api/session` if logged in).
    pub async fn post_json(&mut self, path: &str, body: &Value) -> Reply {
        let csrf = self.csrf().await;
        let mut r = self.req("POST", path).json(body);
        if let Some(t) = csrf {
            r = r.header("x-csrf-token", &t);
        }
        r.send().await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        let csrf = self.csrf().await.unwrap_or_default();
        self.req("DELETE", path)
            .header("x-csrf-token", &csrf)
            .send()
            .await
    }

    /// The current session's CSRF token, if there is a session.
    pub async fn csrf(&mut self) -> Option<String> {
        self.cookie.as_ref()?;
        let r = self.get("/api/session").await;
        (r.status == StatusCode::OK).then(|| r.json()["csrf_token"].as_str().unwrap().to_owned())
    }

    /// The value of the hidden `csrf_token` field in a page.
    pub async fn page_csrf(&mut self, path: &str) -> String {
        let page = self.get(path).await;
        hidden(&page.body, "csrf_token")
            .unwrap_or_else(|| panic!("no csrf_token in {path}: {}", page.body))
    }

    /// Submits a form (URL-encoded).
    pub async fn form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = url_encode(fields);
        self.req("POST", path)
            .body(body.into_bytes(), "application/x-www-form-urlencoded")
            .send()
            .await
    }
}

pub fn url_encode(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// Finds `<input type="hidden" name="NAME" value="…">` in a page.
pub fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

impl Req<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.remove(name);
        self
    }

    pub fn no_cookie(mut self) -> Self {
        self.with_cookie = false;
        self
    }

    pub fn json(self, v: &Value) -> Self {
        self.body(v.to_string().into_bytes(), "application/json")
    }

    pub fn body(mut self, body: Vec<u8>, content_type: &str) -> Self {
        self.body = Some((body, content_type.to_owned()));
        self
    }

    pub async fn send(self) -> Reply {
        let mut rb = self
            .browser
            .http
            .request(self.method, format!("{}{}", self.browser.base, self.path))
            .headers(self.headers);
        if self.with_cookie
            && let Some(c) = &self.browser.cookie
        {
            rb = rb.header("cookie", format!("__Host-cloakroom={c}"));
        }
        if let Some((body, ct)) = self.body {
            rb = rb.header("content-type", ct).body(body);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        let reply = Reply {
            status,
            headers,
            body,
        };
        for c in reply.set_cookies() {
            if let Some(v) = c.strip_prefix("__Host-cloakroom=") {
                let v = v.split(';').next().unwrap();
                self.browser.cookie = (!v.is_empty()).then(|| v.to_owned());
            }
        }
        reply
    }
}
