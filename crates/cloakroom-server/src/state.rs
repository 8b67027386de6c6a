//! What every handler shares: settings, the session manager, accounts, password hashing,
//! throttling — opened once at start-up from the [`Settings`].

use std::ops::Deref;
use std::sync::Arc;

use cloakroom_core::accounts::AccountStore;
use cloakroom_core::mail::MailOutbox;
use cloakroom_core::{Clock, MemoryStore, SessionManager, SessionStore, StoreError, SystemClock};
use cloakroom_postgres::{PostgresAccounts, PostgresOutbox, PostgresStore};
use cloakroom_redis::RedisStore;
use cloakroom_sqlite::{Database, DbError, SqliteAccounts, SqliteOutbox, SqliteStore};

use crate::accounts::Accounts;
use crate::accounts::passwords::Passwords;
use crate::config::{AccountStoreKind, SessionStoreKind, Settings};
use crate::data_dir::{database_path, ensure_data_dir, require_existing, uses_sqlite};
use crate::mail::{MailSetupError, Mailer};
use crate::metrics;
use crate::tokens::keys::KeyRing;
use crate::tokens::links::Links;
use crate::tokens::service_jwt::Minter;
use crate::web::client_ip::ClientIp;
use crate::web::site::Site;

/// Why the server (or an admin command) could not start. Each variant says what to fix; its
/// message never repeats its source's, which an error chain prints after it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The data directory cannot be created, written or found.
    #[error("data directory {path}")]
    DataDir {
        /// The directory (absolute).
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite database cannot be opened.
    #[error("database {path}")]
    Database {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: DbError,
    },
    /// An admin command found no Cloakroom database where the settings point (it never
    /// creates one: an empty database would pass for a server whose accounts are all gone).
    #[error(
        "no Cloakroom database in the data directory (pass the --data-dir of an existing \
         server, or set data_dir in its --config file or CLOAKROOM_DATA_DIR; or run \
         `cloakroom serve` once to create one there)"
    )]
    NoDatabase {
        /// What was found instead, naming the file.
        #[source]
        source: DbError,
    },
    /// Another process holds the data directory: a running server, or a restore.
    #[error(
        "the data directory {dir} is in use by another cloakroom process{}: stop it first \
         (or give this one another --data-dir)",
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    Locked {
        /// The directory (absolute).
        dir: String,
        /// The holder's process id, as it wrote it in the lock file.
        holder: Option<u32>,
    },
    /// A store does not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service-JWT keys cannot be read or created.
    #[error(transparent)]
    Keys(#[from] crate::tokens::keys::KeyError),
    /// Settings that cannot work together.
    #[error("configuration: {0}")]
    Misconfigured(String),
    /// The operator's stylesheet (`branding.css_file`) cannot be read.
    #[error("branding.css_file {path}: {source}")]
    Branding {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mail cannot be set up (a template file, the SMTP transport).
    #[error(transparent)]
    Mail(#[from] MailSetupError),
    /// The OpenID pre-login key cannot be read or created.
    #[error(transparent)]
    OidcKey(#[from] crate::oidc::prelogin::PreLoginKeyError),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Shared server state: what every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

/// The contents of [`AppState`].
#[derive(Debug)]
pub struct Inner {
    /// Checked settings.
    pub(crate) settings: Settings,
    /// The session lifecycle.
    pub(crate) sessions: SessionManager,
    /// Sign-up, login, password change, with their throttling and hashing pool.
    pub(crate) accounts: Accounts,
    /// Client address resolution.
    pub(crate) client_ip: ClientIp,
    /// The clock everything reads.
    pub(crate) clock: Arc<dyn Clock>,
    /// Service-JWT minting and keys.
    pub(crate) minter: Minter,
    /// When `/metrics` last counted the live sessions.
    pub(crate) gauges: metrics::Gauges,
    /// The product name, logo and stylesheets the pages show, and their CSP.
    pub(crate) site: Arc<Site>,
    /// Outgoing mail: the outbox and its sender.
    pub(crate) mailer: Mailer,
    /// Single-use link tokens (reset, verification, download).
    pub(crate) links: Links,
    /// OpenID providers to sign in through, and the pre-login key.
    pub(crate) oidc: crate::oidc::Oidc,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    /// The checked settings the server runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// The session manager (with the near-cache, if configured).
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.sessions
    }

    /// The account store.
    pub fn account_store(&self) -> &Arc<dyn AccountStore> {
        self.inner.accounts.store()
    }

    /// Outgoing mail: [`Mailer::enqueue`] is how a flow sends a message.
    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// The single-use link keys and URLs.
    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    /// Re-reads the service-JWT keys from the data directory now, as the server does every
    /// few seconds to pick up `cloakroom keys rotate` run in another process.
    pub fn reload_keys(&self) -> Result<(), crate::tokens::keys::KeyError> {
        let s = &self.inner.settings;
        self.inner
            .minter
            .reload(&s.data_dir, s.jwt_algorithm, self.inner.clock.now())
    }

    /// The JWKS as `/.well-known/jwks.json` serves it now.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.minter.keys().jwks(self.inner.clock.now())
    }
}

/// The stores a configuration names, opened and checked.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// The mail outbox, beside the accounts.
    pub outbox: Arc<dyn MailOutbox>,
}

impl Stores {
    /// Opens the configured stores for the server, creating the data directory and the
    /// database when they are missing, and checks they answer.
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        ensure_data_dir(&settings.data_dir)?;
        Self::connect(settings).await
    }

    /// Opens the configured stores for an admin command: when a store is in SQLite, the data
    /// directory must already hold a Cloakroom database (checked read-only); none is created.
    pub async fn open_existing(settings: &Settings) -> Result<Self, StartupError> {
        require_existing(settings)?;
        Self::connect(settings).await
    }

    async fn connect(settings: &Settings) -> Result<Self, StartupError> {
        let db = if uses_sqlite(settings) {
            let path = database_path(&settings.data_dir);
            Some(
                Database::open(&path).map_err(|source| StartupError::Database {
                    path: crate::data_dir::shown(&path),
                    source,
                })?,
            )
        } else {
            None
        };
        // One pool for both PostgreSQL stores.
        let postgres = match &settings.postgres {
            Some(config) => Some(PostgresStore::connect(config.clone()).await?),
            None => None,
        };
        let sessions: Arc<dyn SessionStore> =
            match (settings.session_store, &settings.redis, &postgres, &db) {
                (SessionStoreKind::Sqlite, _, _, Some(db)) => {
                    Arc::new(SqliteStore::new(db.clone()))
                }
                (SessionStoreKind::Memory, ..) => Arc::new(MemoryStore::new()),
                (SessionStoreKind::Redis | SessionStoreKind::RedisCluster, Some(config), ..) => {
                    Arc::new(RedisStore::connect(config.clone()).await?)
                }
                (SessionStoreKind::Postgres, _, Some(pg), _) => Arc::new(pg.clone()),
                // `Settings` always carries the connection a store kind needs.
                (kind, ..) => {
                    return Err(StartupError::Misconfigured(format!(
                        "no connection settings for {kind:?} sessions"
                    )));
                }
            };
        // The outbox lives with the accounts: the flows that send mail write both.
        let (accounts, outbox): (Arc<dyn AccountStore>, Arc<dyn MailOutbox>) =
            match (settings.account_store, postgres, db) {
                (AccountStoreKind::Sqlite, _, Some(db)) => (
                    Arc::new(SqliteAccounts::new(db.clone())),
                    Arc::new(SqliteOutbox::new(db)),
                ),
                (AccountStoreKind::Postgres, Some(pg), _) => (
                    Arc::new(PostgresAccounts::new(pg.clone())),
                    Arc::new(PostgresOutbox::new(pg)),
                ),
                (kind, ..) => {
                    return Err(StartupError::Misconfigured(format!(
                        "no connection settings for {kind:?} accounts"
                    )));
                }
            };
        sessions.ping().await?;
        accounts.ping().await?;
        Ok(Self {
            sessions,
            accounts,
            outbox,
        })
    }
}

impl AppState {
    /// Opens everything the settings name, on the system clock.
    pub async fn open(settings: Settings) -> Result<Self, StartupError> {
        let stores = Stores::open(&settings).await?;
        Self::new(settings, stores, Arc::new(SystemClock))
    }

    /// State over already opened stores and a given clock (tests use a manual one).
    pub fn new(
        settings: Settings,
        stores: Stores,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        // Install the recorder before the first metric is recorded, or those would be lost.
        let _ = metrics::handle();
        let site = Arc::new(Site::load(&settings.branding)?);
        let keys = KeyRing::open(&settings.data_dir, settings.jwt_algorithm, clock.now())?;
        let minter = Minter::new(settings.public_origin.to_string(), settings.jwt_ttl, keys);
        let links = Links::open(
            &settings.data_dir,
            settings.public_origin.clone(),
            settings.password_reset_ttl,
            clock.now(),
        )?;
        let oidc = crate::oidc::Oidc::open(&settings.oidc, &settings.data_dir, &clock)?;
        let mailer = Mailer::open(
            &settings.mail,
            stores.outbox.clone(),
            clock.clone(),
            &settings.public_origin,
        )?;
        let mut sessions = SessionManager::from_arc(metrics::CountingStore::wrap(stores.sessions))
            .with_clock(clock.clone())
            .with_policy(settings.policy)
            .with_observer(metrics::Observer::shared());
        if let Some(cache) = settings.session_cache {
            sessions = sessions.with_near_cache(cache);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                minter,
                accounts: Accounts::new(
                    stores.accounts,
                    Passwords::new(settings.hash_workers),
                    clock.clone(),
                    settings.signup_limit_per_network,
                ),
                client_ip: ClientIp::new(settings.trusted_proxies.clone()),
                gauges: metrics::Gauges::default(),
                site,
                mailer,
                links,
                oidc,
                sessions,
                clock,
                settings,
            }),
        })
    }
}
