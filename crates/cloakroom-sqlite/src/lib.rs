//! Cloakroom's embedded default store: sessions on SQLite.
//!
//! Sessions, the server's accounts and its mail outbox in one file, no server to run, and
//! durable: an acknowledged session survives a crash of the process (and of the machine —
//! `synchronous=FULL`). It is the right store for a single instance, which is most
//! deployments; past one machine, use the Redis and PostgreSQL stores.
//!
//! # Design
//!
//! * **One writer, many readers.** SQLite serialises writers anyway, so a dedicated thread owns
//!   the write connection and commits queued writes in groups — one fsync for many writes —
//!   while readers use their own connections in WAL mode and never wait for it (see
//!   [`Database`]).
//! * **The contract in SQL.** Create-if-absent, update-if-version-matches and
//!   rotate-in-one-transaction are single statements or transactions, so they hold across
//!   processes too (the admin CLI may write while the server runs).
//! * **Migrations by `PRAGMA user_version`**, append-only, one transaction per step.
//! * **Backups while serving.** [`backup`] copies a live database with SQLite's online backup
//!   API in one read transaction (a consistent snapshot; the writer is never blocked) and
//!   [`restore`] puts one back atomically; neither carries sessions, so a restore never revives
//!   a revoked one.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId};
//! use cloakroom_sqlite::{Database, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let db = Database::open(dir.path().join("cloakroom.db"))?;
//! let sessions = SessionManager::new(SqliteStore::new(db));
//! let issued = sessions.issue(NewSession::new(UserId::new("alice")?, AuthMethod::password()), None).await?;
//! assert!(sessions.validate(Some(&issued.token.expose_cookie_value())).await.is_ok());
//! # Ok(())
//! # }
//! ```

mod accounts;
mod backup;
mod db;
mod mfa;
mod outbox;
mod schema;
mod store;

pub use accounts::SqliteAccounts;
pub use backup::{Copied, backup, restore, verify};
pub use db::{Database, DbError};
pub use outbox::SqliteOutbox;
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
