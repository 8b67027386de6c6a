//! Cloakroom sessions (and the server's accounts and mail outbox) on PostgreSQL.
//!
//! The store for deployments that already run PostgreSQL, or that want sessions with the
//! database's durability and replication: an acknowledged create or revocation is committed
//! (and, with synchronous replication, on a standby) before the call returns — the guarantee
//! that Redis's asynchronous replication cannot give (see `cloakroom-redis`).
//!
//! # Design
//!
//! * **The contract in SQL.** Each guarantee is one statement or one transaction, so it holds
//!   across any number of instances: `create` is `INSERT … ON CONFLICT DO NOTHING` (never
//!   overwrites); `save` is `UPDATE … WHERE id = $1 AND version = $2` (never resurrects a
//!   deleted row, and two saves of one version cannot both succeed), fused with an existence
//!   check into one round trip; `touch` is an `UPDATE` with `GREATEST`/`LEAST`, so it never
//!   moves times back nor past the absolute expiry and leaves the version alone; `rotate`
//!   inserts the new row and deletes the old one in one transaction.
//! * **The per-user index is an index.** A B-tree on `(user_id, expires_at)` serves "your
//!   devices" and revocation; it cannot point at a deleted row and cannot leak. "Log out
//!   everywhere" is `DELETE … WHERE user_id = $1 [AND id <> $2]`: one statement that removes
//!   every row committed before it started, so a create acknowledged before a revoke-all
//!   never survives it.
//! * **Expiry.** `expires_at` is a stored generated column (`LEAST(idle, absolute)`) with its
//!   own index; [`purge_expired`](cloakroom_core::SessionStore::purge_expired) is one indexed
//!   `DELETE`. Run it periodically; until then the manager refuses expired rows anyway.
//! * **Migrations** live in a `schema_migrations` table in the configured schema. Each step
//!   runs in its own transaction after `pg_advisory_xact_lock` on a key derived from the schema
//!   name, so instances starting together apply each step exactly once; a schema newer than
//!   the build is refused. The schema is configurable so that several applications (or test
//!   runs) share one database.
//! * **Failures.** Connections come from a deadpool pool with bounded connect, wait and
//!   recycle times, and every store call is bounded by a command timeout (5 s by default).
//!   Refused or dropped connections, a server shutting down or out of slots, and timeouts are
//!   [`StoreError::Unavailable`](cloakroom_core::StoreError::Unavailable) with store
//!   `"postgres"`, so callers fail closed. A connection the server terminated is discarded
//!   when the pool notices it closed; the requests that were already using it fail (closed,
//!   never open) and the next ones get a fresh connection.
//!
//! # TLS
//!
//! `sslmode=verify-full` (or `require`) in the URL connects the pool and the invalidation
//! feed over rustls, checking the certificate and host name against the webpki roots or
//! [`PostgresConfig::with_root_certificates`]. rustls has no mode that skips that check, so
//! `require` means `verify-full` here, and `prefer`, `allow` and `verify-ca` are refused (see
//! [`ConfigError::UnsupportedSslMode`]). Without `sslmode`, connections are plain.
//!
//! # What this crate deliberately does not do
//!
//! * No cache of its own: every `load` reads the row, so a revocation is visible on every
//!   instance at once. A push-mode `CachedStore` may sit in front of it; the store only
//!   announces every change to a session row (`NOTIFY` from a trigger, in the writing
//!   transaction) and [`invalidation`] listens for a cache.
//! * No sqlx: its SQLite driver would collide with `cloakroom-sqlite`'s `rusqlite`.
//!
//! # Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId};
//! use cloakroom_postgres::{PostgresConfig, PostgresStore};
//!
//! let config = PostgresConfig::from_url("postgres://app@127.0.0.1/app")?.with_schema("sessions")?;
//! let sessions = SessionManager::new(PostgresStore::connect(config).await?);
//! let issued = sessions
//!     .issue(NewSession::new(UserId::new("alice")?, AuthMethod::password()), None)
//!     .await?;
//! assert!(sessions.validate(Some(&issued.token.expose_cookie_value())).await.is_ok());
//! # Ok(())
//! # }
//! ```

mod accounts;
mod config;
mod counters;
pub mod invalidation;
mod keys;
mod mfa;
mod outbox;
mod schema;
mod store;

pub use accounts::PostgresAccounts;
pub use config::{ConfigError, DEFAULT_SCHEMA, PostgresConfig};
pub use counters::PostgresCounters;
pub use keys::{PostgresKeys, Rotation, StoredKey};
pub use outbox::PostgresOutbox;
pub use schema::SCHEMA_VERSION;
pub use store::PostgresStore;
