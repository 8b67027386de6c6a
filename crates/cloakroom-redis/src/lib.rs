//! Cloakroom sessions on Redis or Valkey — one server or a Cluster.
//!
//! The store for deployments past one machine: any number of stateless server instances share
//! one Redis, so a revocation on one instance is seen by every other on its very next request.
//! [`RedisStore`] implements the whole [`SessionStore`](cloakroom_core::SessionStore) contract
//! and passes the conformance suite on a standalone server and on a 3-master Cluster.
//!
//! # Key layout
//!
//! | key | type | slot |
//! | --- | --- | --- |
//! | `<prefix>s:<hex id>` | hash: the session record | its own (records spread over the Cluster) |
//! | `<prefix>{u:<user>}:idx` | sorted set: the user's session ids, scored by expiry (ms) | the user's |
//! | `<prefix>{u:<user>}:epoch` | integer: the user's revocation epoch | the user's |
//! | `<prefix>l:<link id>` | string: a consumed single-use link, valued its expiry (ms) | its own |
//!
//! The id is SHA-256 of the token, never the token. A record is a hash whose fields the
//! scripts work with (`v` version, `u` user, `h` handle, `ls` last seen, `ie` idle expiry,
//! `ae` absolute expiry) plus one JSON field `b` for everything else. A key design decision:
//! no script ever parses JSON. Lua's `cjson` would push application data through doubles, and
//! a touch would have to decode and re-encode the whole record; with the hash a touch writes
//! two fields, and `save` keeps the stored user and handle simply by never writing them.
//!
//! # How each guarantee is kept
//!
//! Every write is a Lua script over **one slot**, so it is atomic on a standalone server and
//! on Cluster alike; nothing assumes a cross-slot transaction or keyspace notifications.
//!
//! * **create** writes the record only if the key is absent (`EXISTS` + `HSET` in one script),
//!   then adds the index entry. **save** compares the stored version in the script and writes
//!   only on a match, and never writes a missing record, so a revoked session is never written
//!   back. **touch** takes the later of the stored and new times, clamps the idle expiry to the
//!   absolute one and leaves the version alone.
//! * **TTL.** A record expires (`PEXPIREAT`) at its own `min(idle, absolute)` expiry plus a
//!   small grace (default 30 s), computed from the record's timestamps — the store never reads
//!   a clock. The manager judges expiry itself; the TTL is garbage collection, and the grace
//!   lets the manager report "expired" rather than "unknown" and absorbs clock skew.
//! * **Per-user index.** Scored by each session's expiry; its own TTL is its highest score
//!   plus grace, so an idle user's index disappears by itself. Entries are pruned when a
//!   session is added (entries an hour past expiry), when the user's sessions are listed
//!   (entries whose record Redis already expired), on revocation, and by
//!   [`purge_expired`](cloakroom_core::SessionStore::purge_expired), which deletes records
//!   expired at the caller's `now` even before Redis would, then their entries.
//! * **Invariants across slots.** Where an operation spans a record and an index, the steps
//!   are ordered so that an interruption errs on the safe side: (1) an index score is never
//!   below its record's expiry — a touch or save that would extend a record first raises the
//!   index entry (the script refuses and names the target; the store raises, then retries) —
//!   so pruning by score never orphans a live session; (2) records are deleted before their
//!   index entries, so an interruption leaves entries without records (cleaned on the next
//!   listing), never a live record its user's index has forgotten; (3) a create writes the
//!   record before its entry, and only answers `Ok` once the entry is in place.
//! * **Single-use links.** [`consume_link`](cloakroom_core::SessionStore::consume_link) is
//!   one `SET … NX PXAT <expiry + grace>` on the link's own key: atomic on one server and on
//!   Cluster, and gone a grace after the link expires (or at `purge_expired`, which scans for
//!   link keys as it does for indexes). The revocation epoch links are bound to is the one
//!   below, kept a day ([`EPOCH_RETENTION`](cloakroom_core::store::EPOCH_RETENTION)) after
//!   its last move. Like session TTLs, the key's expiry is read by Redis's clock: instances
//!   whose clocks differ from Redis's by more than the grace could see a just-expired link's
//!   record vanish early — but such a link is already refused as expired by its own check.
//! * **Create vs. "log out everywhere".** `delete_for_user` first increments the user's
//!   revocation epoch, then reads the index and deletes the records it lists. `create` reads
//!   the epoch before writing the record, and the script that adds the index entry returns the
//!   epoch again: if it moved, a revoke-all ran in between and may have read the index before
//!   the entry existed, so the create deletes what it wrote and fails with
//!   [`RevokedConcurrently`](cloakroom_core::StoreError::RevokedConcurrently). A create whose
//!   entry landed first is in the list the revoke-all reads and is deleted by it. The token of
//!   a refused create was never handed out, so nobody could have used it. (The integration
//!   tests hammer this race on standalone and Cluster, and fail if the check is removed.)
//!
//! # Failures
//!
//! Connection refused, timeouts, a dropped connection and Cluster-down conditions are
//! [`StoreError::Unavailable`](cloakroom_core::StoreError::Unavailable) with store `"redis"`,
//! so callers fail closed. Every round trip is bounded by the command timeout (default 2 s)
//! even while the client is reconnecting; the connection re-establishes itself when Redis
//! comes back, with no need to rebuild the store. Connections are multiplexed (one per
//! server, shared by every task), so there is no pool to size.
//!
//! # Cluster and failover
//!
//! Give [`RedisConfig::cluster`] a few seed nodes; the client discovers the rest and follows
//! `MOVED`/`ASK` redirections. When a master dies, requests for its slots fail as
//! `Unavailable` until Redis promotes a replica — about the cluster node timeout plus an
//! election (5 s in the tests with a 2 s node timeout) — after which the store serves again
//! without intervention (within milliseconds in the tests).
//!
//! What a failover can lose: Redis replicates asynchronously, so a write the old master
//! acknowledged but had not yet shipped to the promoted replica is gone. A just-created
//! session then simply disappears (the user logs in again); a lost **revocation** is worse: the
//! revoked session comes back. `WAIT 1 <timeout>` after a write would narrow that window (the
//! write is on at least one replica before the call returns) at the cost of a replica round
//! trip on every write, and it still is not a guarantee: the promoted replica may not be the
//! one that acknowledged, and `WAIT` cannot be issued atomically with the script. This store
//! does not issue `WAIT`: the window is the replication lag (typically sub-millisecond), and
//! deployments that cannot accept it should keep sessions in PostgreSQL with synchronous
//! replication. If that trade-off changes, `WAIT` belongs after `delete` and
//! `delete_for_user`, routed to each master that was written.
//!
//! # TLS
//!
//! `rediss://` URLs connect over rustls (the system's trust store, or
//! [`RedisConfig::with_root_certificates`] for a private authority), for the store's
//! connection and for the invalidation feed's subscription alike; the certificate and host
//! name are always checked.
//!
//! # What this crate deliberately does not do
//!
//! * No Sentinel, no `CLIENT TRACKING`: revocation is a delete, which every instance sees on
//!   its next load. A push-mode `CachedStore` may sit in front of the store; for it, every
//!   write script also publishes the change on a channel, and [`invalidation`] subscribes
//!   (see the design document).
//! * No reads from replicas: a replica may still hold a session its master just revoked.
//!
//! # Example
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId};
//! use cloakroom_redis::{RedisConfig, RedisStore};
//!
//! let config = RedisConfig::standalone("redis://127.0.0.1:6379")?.with_key_prefix("app:")?;
//! // or: RedisConfig::cluster(["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"])?
//! let sessions = SessionManager::new(RedisStore::connect(config).await?);
//! let alice = UserId::new("alice")?;
//! let issued = sessions.issue(NewSession::new(alice.clone(), AuthMethod::password()), None).await?;
//! assert!(sessions.validate(Some(&issued.token.expose_cookie_value())).await.is_ok());
//! sessions.revoke_all_for_user(&alice, None).await?; // every instance, next request
//! # Ok(())
//! # }
//! ```

mod config;
mod conn;
mod counters;
pub mod invalidation;
mod record;
mod scripts;
mod store;

pub use config::{ConfigError, DEFAULT_KEY_PREFIX, RedisConfig};
pub use counters::RedisCounters;
pub use store::RedisStore;
