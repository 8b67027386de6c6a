//! The session stores the benchmarks run against, one small function each.
//!
//! Adding a backend is adding its function here and its variant to [`Backend`]; the micro
//! benchmarks and `bench-seed` pick it up from there. A function returns `Ok(None)` when its
//! backend is not available in this build or not reachable here, and the benchmark then says
//! so and skips it instead of failing.

use std::path::Path;
use std::sync::Arc;

use cloakroom_core::{MemoryStore, SessionStore};
use cloakroom_sqlite::{Database, SqliteStore};

/// Redis for benchmarks (loopback), overridable with this environment variable.
pub const REDIS_URL_VAR: &str = "CLOAKROOM_BENCH_REDIS_URL";
/// PostgreSQL for benchmarks (loopback), overridable with this environment variable.
pub const POSTGRES_URL_VAR: &str = "CLOAKROOM_BENCH_POSTGRES_URL";
/// Key prefix / schema the benchmarks write under, so they never touch an application's data.
pub const NAMESPACE: &str = "cloakroom_bench";

/// A session store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// [`MemoryStore`].
    Memory,
    /// [`SqliteStore`] on a file (WAL, `synchronous=FULL`, as the server runs it).
    Sqlite,
    /// `cloakroom_redis::RedisStore` on loopback.
    Redis,
    /// `cloakroom_postgres::PostgresStore` on loopback.
    Postgres,
}

impl Backend {
    /// Every backend, in the order reports list them.
    pub const ALL: [Self; 4] = [Self::Memory, Self::Sqlite, Self::Redis, Self::Postgres];

    /// Lowercase name for benchmark ids and flags.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.name() == name)
    }

    /// Opens this backend; `dir` is where file-backed stores keep their database.
    pub async fn open(self, dir: &Path) -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
        match self {
            Self::Memory => Ok(Some(memory())),
            Self::Sqlite => sqlite(&dir.join("cloakroom.db")).map(Some),
            Self::Redis => redis().await,
            Self::Postgres => postgres().await,
        }
    }
}

/// The in-process store.
pub fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

/// SQLite on the file at `path` (created if missing), configured exactly as the server opens
/// it.
pub fn sqlite(path: &Path) -> anyhow::Result<Arc<dyn SessionStore>> {
    Ok(Arc::new(SqliteStore::new(Database::open(path)?)))
}

/// Redis at [`REDIS_URL_VAR`] (default `redis://127.0.0.1:6379`), keys under
/// `cloakroom_bench:`. `Ok(None)` (said on standard error) if it does not answer. Records
/// carry Redis TTLs, so benchmark sessions expire by themselves.
pub async fn redis() -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
    let url = std::env::var(REDIS_URL_VAR).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let config = cloakroom_redis::RedisConfig::standalone(&url)?
        .with_key_prefix(&format!("{NAMESPACE}:"))?;
    match cloakroom_redis::RedisStore::connect(config).await {
        Ok(store) => Ok(Some(Arc::new(store))),
        Err(e) => {
            eprintln!("redis: {url} does not answer ({e}); skipped");
            Ok(None)
        }
    }
}

/// PostgreSQL at [`POSTGRES_URL_VAR`] (default `postgres://postgres@127.0.0.1:5432/test`), in
/// schema `cloakroom_bench` (created and migrated if missing). `Ok(None)` (said on standard
/// error) if it does not answer.
pub async fn postgres() -> anyhow::Result<Option<Arc<dyn SessionStore>>> {
    let url = std::env::var(POSTGRES_URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let config = cloakroom_postgres::PostgresConfig::from_url(&url)?.with_schema(NAMESPACE)?;
    let store = match cloakroom_postgres::PostgresStore::connect(config).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!("postgres: {url} does not answer ({e}); skipped");
            return Ok(None);
        }
    };
    store.migrate().await?;
    Ok(Some(Arc::new(store)))
}
