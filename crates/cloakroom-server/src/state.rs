//! What every handler shares: settings, the session manager, accounts, password hashing,
//! throttling — opened once at start-up from the [`Settings`].

use std::ops::Deref;
use std::sync::Arc;

use cloakroom_core::accounts::AccountStore;
use cloakroom_core::mail::MailOutbox;
use cloakroom_core::{
    CachedStore, Clock, Invalidator, MemoryStore, SessionManager, SessionStore, StoreError,
    SystemClock,
};
use cloakroom_postgres::{PostgresAccounts, PostgresOutbox, PostgresStore};
use cloakroom_redis::RedisStore;
use cloakroom_sqlite::{Database, DbError, SqliteAccounts, SqliteOutbox, SqliteStore};

use crate::accounts::Accounts;
use crate::accounts::passwords::Passwords;
use crate::config::{AccountStoreKind, SessionCacheMode, SessionStoreKind, Settings};
use crate::data_dir::{database_path, ensure_data_dir, require_existing, uses_sqlite};
use crate::mail::{MailSetupError, Mailer};
use crate::metrics;
use crate::tokens::keys::KeyRing;
use crate::tokens::links::Links;
use crate::tokens::service_jwt::Minter;
use crate::tokens::vault::{KeyMaterial, SharedKeys};
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
    /// The keys shared in PostgreSQL cannot be read, opened or created.
    #[error(transparent)]
    SharedKeys(#[from] crate::tokens::vault::VaultError),
    /// A store's CA file (`redis_ca_file`, `postgres_ca_file`) cannot be read or holds no
    /// certificate.
    #[error("{setting} {path}")]
    CaFile {
        /// The setting.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The secrets file cannot be read, or holds no usable secret.
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
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
    /// The admin socket, which admin commands tell of their session writes so that the exact
    /// session cache stays exact, cannot be created in the data directory.
    #[error(
        "cannot create the admin socket {path} (a Unix socket path must be under 108 bytes: \
         use a shorter data_dir)"
    )]
    AdminSocket {
        /// The socket's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
    /// The session cache under it, if `session_cache` is not `off`.
    pub(crate) session_cache: Option<CachedStore>,
    /// Sign-up, login, password change, with their throttling and hashing pool.
    pub(crate) accounts: Accounts,
    /// Who each session's user is, read per check (cached when exact).
    pub(crate) identities: crate::identity::Identities,
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
    /// The keys in PostgreSQL, when the accounts are there; `None`: files in the data dir.
    pub(crate) shared_keys: Option<SharedKeys>,
    /// Second factors: authenticator apps, recovery codes.
    pub(crate) mfa: crate::mfa::SecondFactors,
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

    /// The session manager (over the session cache, if configured).
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.sessions
    }

    /// The session cache, unless `session_cache = "off"`.
    pub fn session_cache(&self) -> Option<&CachedStore> {
        self.inner.session_cache.as_ref()
    }

    /// The account store.
    pub fn account_store(&self) -> &Arc<dyn AccountStore> {
        self.inner.accounts.store()
    }

    /// The accounts' second factors.
    pub fn second_factors(&self) -> &Arc<dyn cloakroom_core::mfa::SecondFactorStore> {
        self.inner.mfa.store()
    }

    /// Outgoing mail: [`Mailer::enqueue`] is how a flow sends a message.
    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// The single-use link keys and URLs.
    pub fn links(&self) -> &Links {
        &self.inner.links
    }

    /// Re-reads the service-JWT keys now (from PostgreSQL when they are shared there, else
    /// from the data directory), as the server does every few seconds to pick up a rotation
    /// made by `cloakroom keys rotate` or by another instance.
    pub async fn reload_keys(&self) -> Result<(), StartupError> {
        let s = &self.inner.settings;
        let ring = match &self.inner.shared_keys {
            Some(shared) => shared.service_jwt().await?,
            None => KeyRing::open(&s.data_dir, s.jwt_algorithm, self.inner.clock.now())?,
        };
        self.inner.minter.replace(ring);
        Ok(())
    }

    /// Rotates the service-JWT key if `key_rotation_days` says it is due: once for every
    /// instance when the keys are shared (the first to see it due does it; the others find a
    /// new key). Returns the new key's id if this call rotated.
    pub async fn rotate_keys_if_due(&self) -> Result<Option<String>, StartupError> {
        let s = &self.inner.settings;
        let Some(every) = s.key_rotation else {
            return Ok(None);
        };
        let now = self.inner.clock.now();
        let keys = self.inner.minter.keys();
        let newest = keys.keys().iter().map(|k| k.created_at()).max();
        if newest.is_some_and(|n| now.duration_since(n) < every) {
            return Ok(None);
        }
        let since = now.saturating_sub(every);
        let rotated = match &self.inner.shared_keys {
            Some(shared) => shared
                .rotate(s.jwt_algorithm, now, Some(since))
                .await?
                .map(|(key, _)| key),
            None => Some(KeyRing::rotate_files(&s.data_dir, s.jwt_algorithm, now)?.0),
        };
        self.reload_keys().await?;
        Ok(rotated.map(|key| {
            crate::events::key_rotated(
                key.kid(),
                key.alg().as_str(),
                &crate::web::device::rfc3339(key.signs_from()),
            );
            key.kid().to_owned()
        }))
    }

    /// The signing keys shared in PostgreSQL, when the accounts are there.
    pub fn shared_keys(&self) -> Option<&SharedKeys> {
        self.inner.shared_keys.as_ref()
    }

    /// The JWKS as `/.well-known/jwks.json` serves it now.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.minter.keys().jwks(self.inner.clock.now())
    }
}

/// Whether the server caches identities (see [`crate::identity`]): only as the accounts' one
/// writer, with the admin socket that admin commands announce their writes on (bound whenever
/// the sessions are in SQLite).
pub(crate) fn identities_cached(settings: &Settings) -> bool {
    settings.session_store == SessionStoreKind::Sqlite
        && settings.account_store == AccountStoreKind::Sqlite
}

/// The stores a configuration names, opened and checked.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// The accounts' second factors, beside them.
    pub second_factors: Arc<dyn cloakroom_core::mfa::SecondFactorStore>,
    /// The mail outbox, beside the accounts.
    pub outbox: Arc<dyn MailOutbox>,
    /// The session store's invalidation feed, for a push cache (shared stores only).
    pub feed: Option<InvalidationFeed>,
    /// The signing keys shared in PostgreSQL, opened (with the accounts there); `None`: the
    /// keys are files in the data directory.
    pub keys: Option<OpenedKeys>,
    /// The login throttle's counters in the shared store, with the sessions there (Redis,
    /// PostgreSQL); `None`: in this process.
    pub throttle: Option<Arc<dyn cloakroom_core::throttle::BackoffCounters>>,
}

/// What opening the stores does with the signing keys shared in PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeysAccess {
    /// Nothing (no command that needs them).
    None,
    /// Reads them, changing nothing (admin commands).
    Read,
    /// Reads them, making, importing or re-sealing what is due (the server).
    Serve,
}

/// The shared key store and what it held when the stores were opened.
#[derive(Debug, Clone)]
pub struct OpenedKeys {
    shared: SharedKeys,
    material: KeyMaterial,
}

impl OpenedKeys {
    /// The key store, for later reads and rotations.
    pub fn shared(&self) -> &SharedKeys {
        &self.shared
    }

    /// Links signed with the shared link keys, for `audience`.
    pub(crate) fn links(
        &self,
        audience: cloakroom_core::origin::Origin,
        reset_ttl: std::time::Duration,
    ) -> Result<Links, crate::tokens::keys::KeyError> {
        Links::new(&self.material.link, audience, reset_ttl)
    }
}

/// Where a push cache hears of the changes other instances make: the shared session store's
/// invalidation feed (see `cloakroom_redis::invalidation`, `cloakroom_postgres::invalidation`).
#[derive(Debug, Clone)]
pub enum InvalidationFeed {
    /// Redis pub/sub, published by the store's write scripts.
    Redis(RedisStore),
    /// PostgreSQL `NOTIFY`, sent by a trigger in the writing transaction.
    Postgres(PostgresStore),
}

impl InvalidationFeed {
    /// Runs the feed for `invalidator` on the current runtime, for the process's life.
    fn spawn(self, invalidator: Invalidator) {
        match self {
            Self::Redis(store) => drop(tokio::spawn(store.feed_invalidations(invalidator))),
            Self::Postgres(store) => drop(tokio::spawn(store.feed_invalidations(invalidator))),
        }
    }
}

impl Stores {
    /// Opens the configured stores for the server, creating the data directory and the
    /// database when they are missing, and checks they answer.
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        ensure_data_dir(&settings.data_dir)?;
        Self::connect(settings, KeysAccess::Serve).await
    }

    /// Opens the configured stores for an admin command: when a store is in SQLite, the data
    /// directory must already hold a Cloakroom database (checked read-only); none is created.
    ///
    /// Session writes to SQLite are announced to a running server, so that its exact session
    /// cache stays exact (see DESIGN.md, "The session cache").
    pub async fn open_existing(settings: &Settings) -> Result<Self, StartupError> {
        require_existing(settings)?;
        // With the accounts in PostgreSQL the link keys are there too: commands that make
        // links (an invitation, a reset link, a download link) sign with them.
        let keys = if settings.account_store == AccountStoreKind::Postgres {
            KeysAccess::Read
        } else {
            KeysAccess::None
        };
        let mut stores = Self::connect(settings, keys).await?;
        let announcer = crate::admin_socket::Announcer::new(&settings.data_dir);
        if settings.session_store == SessionStoreKind::Sqlite {
            stores.sessions =
                crate::admin_socket::AnnouncingStore::wrap(stores.sessions, announcer.clone());
        }
        // Whatever this command's own cache settings say: the server beside it caches
        // identities whenever accounts and sessions are in this directory.
        if identities_cached(settings) {
            stores.accounts = crate::identity::NoticedAccounts::wrap(stores.accounts, announcer);
        }
        Ok(stores)
    }

    /// Opens the configured stores for an admin command that works with the signing keys: as
    /// [`open_existing`](Self::open_existing), and with the accounts in PostgreSQL the keys
    /// there are opened too (needing the secrets).
    pub async fn open_existing_with_keys(settings: &Settings) -> Result<Self, StartupError> {
        require_existing(settings)?;
        Self::connect(settings, KeysAccess::Read).await
    }

    /// Connects the stores, and opens the signing keys shared in PostgreSQL (with the accounts
    /// there) as `keys` says.
    async fn connect(settings: &Settings, keys: KeysAccess) -> Result<Self, StartupError> {
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
            Some(config) => {
                let mut config = config.clone();
                if let Some(file) = &settings.postgres_ca_file {
                    config = config
                        .with_root_certificates(&read_ca("postgres_ca_file", file)?)
                        .map_err(|e| ca_error("postgres_ca_file", file, e))?;
                }
                Some(PostgresStore::connect(config).await?)
            }
            None => None,
        };
        let redis = match (&settings.redis, &settings.redis_ca_file) {
            (Some(config), Some(file)) => Some(
                config
                    .clone()
                    .with_root_certificates(&read_ca("redis_ca_file", file)?)
                    .map_err(|e| ca_error("redis_ca_file", file, e))?,
            ),
            (config, _) => config.clone(),
        };
        // With the sessions in a shared store, the throttle's counters go there too: every
        // instance counts the same failures.
        let mut throttle = None;
        let (sessions, feed): (Arc<dyn SessionStore>, _) =
            match (settings.session_store, &redis, &postgres, &db) {
                (SessionStoreKind::Sqlite, _, _, Some(db)) => {
                    (Arc::new(SqliteStore::new(db.clone())), None)
                }
                (SessionStoreKind::Memory, ..) => (Arc::new(MemoryStore::new()), None),
                (SessionStoreKind::Redis | SessionStoreKind::RedisCluster, Some(config), ..) => {
                    let store = RedisStore::connect(config.clone()).await?;
                    throttle = Some(Arc::new(store.counters()) as Arc<_>);
                    (
                        Arc::new(store.clone()),
                        Some(InvalidationFeed::Redis(store)),
                    )
                }
                (SessionStoreKind::Postgres, _, Some(pg), _) => {
                    throttle = Some(
                        Arc::new(cloakroom_postgres::PostgresCounters::new(pg.clone())) as Arc<_>,
                    );
                    (
                        Arc::new(pg.clone()),
                        Some(InvalidationFeed::Postgres(pg.clone())),
                    )
                }
                // `Settings` always carries the connection a store kind needs.
                (kind, ..) => {
                    return Err(StartupError::Misconfigured(format!(
                        "no connection settings for {kind:?} sessions"
                    )));
                }
            };
        // With the accounts in PostgreSQL, so are the keys: every instance signs alike. Opened
        // here, where the database is at hand; the first keys are stamped with the system
        // clock (a test's manual clock starts at the current time).
        let secrets = match (&settings.secrets, &settings.secrets_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(file)) if keys != KeysAccess::None => {
                crate::secrets::Secrets::load(None, Some(file))?
            }
            _ => None,
        };
        let keys = match (&settings.account_store, &postgres, &secrets) {
            _ if keys == KeysAccess::None => None,
            (AccountStoreKind::Postgres, Some(pg), Some(secrets)) => {
                let shared = SharedKeys::new(
                    cloakroom_postgres::PostgresKeys::new(pg.clone()),
                    secrets.clone(),
                );
                let material = match keys {
                    KeysAccess::Serve => {
                        shared
                            .open(
                                &settings.data_dir,
                                settings.jwt_algorithm,
                                cloakroom_core::SystemClock.now(),
                            )
                            .await?
                    }
                    _ => shared.read().await?,
                };
                Some(OpenedKeys { shared, material })
            }
            (AccountStoreKind::Postgres, _, None) => {
                return Err(StartupError::Misconfigured(
                    "`secrets_file` is needed with account_store = \"postgres\": every \
                     instance on that database signs with the same keys, kept there sealed with \
                     the secret. Give one secret of at least 32 characters (`openssl rand \
                     -base64 48`) in a file, or as CLOAKROOM_SECRETS='[\"<secret>\"]', the same \
                     on every instance"
                        .into(),
                ));
            }
            _ => None,
        };
        // The outbox lives with the accounts: the flows that send mail write both.
        type Beside = (
            Arc<dyn AccountStore>,
            Arc<dyn cloakroom_core::mfa::SecondFactorStore>,
            Arc<dyn MailOutbox>,
        );
        let (accounts, second_factors, outbox): Beside =
            match (settings.account_store, postgres, db) {
                (AccountStoreKind::Sqlite, _, Some(db)) => {
                    let accounts = SqliteAccounts::new(db.clone());
                    (
                        Arc::new(accounts.clone()),
                        Arc::new(accounts),
                        Arc::new(SqliteOutbox::new(db)),
                    )
                }
                (AccountStoreKind::Postgres, Some(pg), _) => {
                    let accounts = PostgresAccounts::new(pg.clone());
                    (
                        Arc::new(accounts.clone()),
                        Arc::new(accounts),
                        Arc::new(PostgresOutbox::new(pg)),
                    )
                }
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
            second_factors,
            outbox,
            feed,
            keys,
            throttle,
        })
    }
}

/// Reads a store's CA file.
fn read_ca(setting: &'static str, file: &std::path::Path) -> Result<Vec<u8>, StartupError> {
    std::fs::read(file).map_err(|e| ca_error(setting, file, e))
}

fn ca_error(
    setting: &'static str,
    file: &std::path::Path,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StartupError {
    StartupError::CaFile {
        setting,
        path: crate::data_dir::shown(file),
        source: Box::new(e),
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
        let (material, shared_keys) = match stores.keys {
            Some(opened) => (opened.material, Some(opened.shared)),
            None => (KeyMaterial::local(&settings, clock.now())?, None),
        };
        let minter = Minter::new(
            settings.public_origin.to_string(),
            settings.jwt_ttl,
            material.service_jwt,
        );
        let links = Links::new(
            &material.link,
            settings.public_origin.clone(),
            settings.password_reset_ttl,
        )?;
        let oidc = crate::oidc::Oidc::new(&settings.oidc, material.prelogin, &clock);
        let mailer = Mailer::open(
            &settings.mail,
            stores.outbox.clone(),
            clock.clone(),
            &settings.public_origin,
        )?;
        // The cache sits above the write counter, which counts what reaches the store.
        let counted = metrics::CountingStore::wrap(stores.sessions);
        let limits = settings.session_cache_limits;
        let session_cache = match settings.session_cache {
            SessionCacheMode::Off => None,
            SessionCacheMode::Exact => Some(CachedStore::exact(counted.clone(), limits)),
            SessionCacheMode::Push => {
                let feed = stores.feed.ok_or_else(|| {
                    StartupError::Misconfigured(
                        "session_cache = \"push\" needs a session store with an invalidation \
                         feed (redis, redis-cluster, postgres)"
                            .into(),
                    )
                })?;
                let (cache, invalidator) = CachedStore::push(counted.clone(), limits);
                feed.spawn(invalidator);
                Some(cache)
            }
        };
        let store: Arc<dyn SessionStore> = match &session_cache {
            Some(cache) => Arc::new(cache.clone()),
            None => counted,
        };
        let sessions = SessionManager::from_arc(store)
            .with_clock(clock.clone())
            .with_policy(settings.policy)
            .with_observer(metrics::Observer::shared());
        let (identities, account_store) =
            crate::identity::Identities::new(stores.accounts, identities_cached(&settings));
        let secrets = factor_secrets(&settings)?;
        let passkeys = crate::mfa::passkey::Passkeys::new(
            settings.public_origin.as_str(),
            &site.name,
            settings.passkey_login,
            stores.second_factors.clone(),
            oidc.key.clone(),
            clock.clone(),
        );
        let mfa = crate::mfa::SecondFactors::new(
            stores.second_factors,
            secrets,
            clock.clone(),
            site.name.clone(),
            passkeys,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                minter,
                identities,
                accounts: Accounts::new(
                    account_store,
                    Passwords::new(settings.hash_workers),
                    clock.clone(),
                    settings.signup_limit_per_network,
                    stores.throttle,
                ),
                client_ip: ClientIp::new(settings.trusted_proxies.clone()),
                gauges: metrics::Gauges::default(),
                site,
                mailer,
                links,
                oidc,
                shared_keys,
                mfa,
                sessions,
                session_cache,
                clock,
                settings,
            }),
        })
    }
}

/// The secrets that seal second-factor secrets: the operator's (`CLOAKROOM_SECRETS`,
/// `secrets_file`), or, with none given, the data directory's own `secrets` file, made on
/// first use (0600) — with the accounts in SQLite that directory is the server's alone, and a
/// copy of the database without it holds no usable authenticator secret.
fn factor_secrets(settings: &Settings) -> Result<crate::secrets::Secrets, StartupError> {
    if let Some(secrets) = &settings.secrets {
        return Ok(secrets.clone());
    }
    if let Some(file) = &settings.secrets_file
        && let Some(secrets) = crate::secrets::Secrets::load(None, Some(file))?
    {
        return Ok(secrets);
    }
    let path = settings.data_dir.join("secrets");
    if !path.exists() {
        let bytes: [u8; 48] = crate::tokens::keys::random();
        let text = format!(
            "# Made by cloakroom: seals the accounts' authenticator secrets. Back it up with the \
             database; without it, every authenticator app must be set up again.\n{}\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
        );
        crate::data_dir::write_new_private(&path, text.as_bytes()).map_err(|source| {
            StartupError::DataDir {
                path: crate::data_dir::shown(&path),
                source,
            }
        })?;
    }
    crate::secrets::Secrets::load(None, Some(&path))?.ok_or_else(|| {
        StartupError::Misconfigured(format!("{} holds no secret", crate::data_dir::shown(&path)))
    })
}
