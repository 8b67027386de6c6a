//! A real server on 127.0.0.1:0 over a temporary data directory, and a browser-like client
//! that keeps the session cookie and sends same-origin headers unless told otherwise.

use std::sync::Arc;

use cloakroom_core::{ManualClock, MemoryStore};
use cloakroom_server::Stores;
use cloakroom_server::config::RawConfig;
use cloakroom_server::{AppState, Server};
use cloakroom_testkit::ObservedStore;
use cloakroom_testkit::http::{CHROME_UA, Client};
use cloakroom_testkit::postgres::SchemaGuard;
use cloakroom_testkit::redis::PrefixGuard;
use serde_json::json;

pub use cloakroom_testkit::http::{Browser, Reply, Request as Req, hidden, url_encode};

pub const ORIGIN: &str = "https://cloakroom.test";
pub const PASSWORD: &str = "correct horse battery staple";
/// Every path that answers a forward-auth decision: Cloakroom's own, Authelia's three and
/// oauth2-proxy's.
pub const DECISION_PATHS: [&str; 5] = [
    "/auth/verify",
    "/api/verify",
    "/api/authz/auth-request",
    "/api/authz/forward-auth",
    "/oauth2/auth",
];

pub struct TestServer {
    pub base: String,
    /// The `metrics_listen` address, when the test set one.
    pub metrics_base: Option<String>,
    /// `CLOAKROOM_*` variables that point a `cloakroom` process at the same stores.
    pub env: Vec<(String, String)>,
    pub state: AppState,
    pub clock: ManualClock,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Held as `cloakroom serve` holds it: admin commands run beside this server announce
    /// their session writes to it instead of writing around its session cache.
    _lock: cloakroom_server::DataDirLock,
    /// Removes this server's keys and schema from the shared Redis and PostgreSQL.
    _cleanup: Option<(PrefixGuard, SchemaGuard)>,
}

pub fn raw_config(dir: &std::path::Path) -> RawConfig {
    RawConfig {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_owned(),
        public_url: Some(ORIGIN.into()),
        // The apps the forward-auth tests protect (service JWTs are minted only for these).
        app_origins: vec![
            "https://app.example.com".into(),
            "https://other.example.com".into(),
        ],
        hash_workers: Some(2),
        // The suite signs up through the API and the pages; away from loopback (as here) the
        // default would be closed.
        signup: Some(cloakroom_server::config::SignupMode::Open),
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
    let redis = cloakroom_testkit::redis::redis_url();
    let postgres = cloakroom_testkit::postgres::postgres_url();
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
        // Accounts in PostgreSQL keep the signing keys there, sealed with a secret.
        (
            "CLOAKROOM_SECRETS".to_owned(),
            format!(r#"["test secret {suffix} 0123456789abcdef"]"#),
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
    // With the push cache on: every check of the suite then runs through it and its feed.
    raw.session_cache = Some(cloakroom_server::config::SessionCacheMode::Push);
    env
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(edit: impl FnOnce(&mut RawConfig)) -> TestServer {
    start_full(edit, |s| s).await
}

/// A server whose sessions live in an [`ObservedStore`], to count its calls or switch it off.
pub async fn start_observed() -> (TestServer, Arc<ObservedStore>) {
    start_observed_with(|_| {}).await
}

/// [`start_observed`] with settings of the test's own.
pub async fn start_observed_with(
    edit: impl FnOnce(&mut RawConfig),
) -> (TestServer, Arc<ObservedStore>) {
    let observed = Arc::new(ObservedStore::new(MemoryStore::new()));
    let store = observed.clone();
    let s = start_full(edit, move |stores| Stores {
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
            raw.public_url = Some(format!("http://localhost:{port}"));
            for_browser(raw, None);
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

/// The settings of a server a browser suite drives: mail to `smtp_url`, if given.
pub fn for_browser(raw: &mut RawConfig, smtp_url: Option<&str>) {
    // The browser suite signs up a few dozen users from one address; its subject is the
    // pages, not the sign-up throttle (tested in accounts_hardening).
    raw.signup_limit_per_network = 1000;
    if let Some(url) = smtp_url {
        raw.smtp_url = Some(url.parse().unwrap());
        raw.mail_from = Some("login@example.com".into());
    }
}

/// A server listening on `127.0.0.1:port` with the public URL `http://localhost:port`, for
/// peers that must know the server's address before it starts (an OpenID provider registers
/// its redirect URI).
pub async fn start_at(port: u16, edit: impl FnOnce(&mut RawConfig)) -> TestServer {
    let mut s = try_start(
        |raw| {
            raw.listen = format!("127.0.0.1:{port}");
            raw.public_url = Some(format!("http://localhost:{port}"));
            edit(raw);
        },
        |s| s,
    )
    .await
    .unwrap();
    // Requests go to the public URL's spelling: pages at another one are redirected to it.
    s.base = format!("http://localhost:{port}");
    s
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
    let cleanup = (!env.is_empty()).then(|| {
        (
            PrefixGuard(raw.redis_key_prefix.clone()),
            SchemaGuard(raw.postgres_schema.clone()),
        )
    });
    edit(&mut raw);
    let mut settings = raw.settings().unwrap();
    if let Some((_, secrets)) = env.iter().find(|(k, _)| k == "CLOAKROOM_SECRETS")
        && settings.secrets.is_none()
        && settings.secrets_file.is_none()
    {
        let list: Vec<String> = serde_json::from_str(secrets).unwrap();
        settings.secrets =
            Some(cloakroom_server::secrets::Secrets::from_list(&list, "test").unwrap());
    }
    let clock = ManualClock::starting_now();
    cloakroom_server::ensure_data_dir(&settings.data_dir).unwrap();
    let lock = cloakroom_server::DataDirLock::acquire(&settings.data_dir).unwrap();
    let stores = wrap(Stores::open(&settings).await.unwrap());
    let state = AppState::new(settings, stores, Arc::new(clock.clone())).unwrap();
    let server = Server::bind(state.clone()).await?;
    let addr = server.local_addr();
    let metrics_base = server.metrics_addr().map(|a| format!("http://{a}"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok(TestServer {
        base: format!("http://{addr}"),
        metrics_base,
        env,
        state,
        clock,
        dir,
        _stop: stop,
        _lock: lock,
        _cleanup: cleanup,
    })
}

impl TestServer {
    /// The account named `name`, if there is one.
    pub async fn account(&self, name: &str) -> Option<cloakroom_core::accounts::Account> {
        self.state
            .account_store()
            .by_username(&cloakroom_core::accounts::Username::parse(name).unwrap())
            .await
            .unwrap()
    }

    pub fn browser(&self) -> Browser {
        self.browser_with_ua(CHROME_UA)
    }

    /// A browser on the server's public origin ([`ORIGIN`] unless the test chose another)
    /// that sends the session's CSRF token from `/api/session`.
    pub fn browser_with_ua(&self, ua: &str) -> Browser {
        let origin = self.state.settings().public_origin.as_str().to_owned();
        Browser::new(Client::new(&self.base, &origin).with_user_agent(ua))
            .csrf_from("/api/session", "csrf_token")
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
