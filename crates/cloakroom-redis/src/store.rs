//! [`RedisStore`]: the [`SessionStore`] contract on Redis, standalone or Cluster.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::link::LinkId;
use cloakroom_core::store::EPOCH_RETENTION;
use cloakroom_core::{
    DeleteScope, SaveOutcome, Session, SessionId, SessionStore, StoreError, Timestamp, UserId,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use redis::{ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use crate::config::{RedisConfig, Topology};
use crate::conn::Conn;
use crate::record::{self, Keys};
use crate::scripts::{
    CREATE, DELETE, EPOCH_BUMP, INDEX_ADD, INDEX_RAISE, PURGE_LINK, PURGE_ONE, SAVE, TOUCH,
};

const STORE: &str = "redis";

/// How long a user's revocation epoch outlives its last increment: the store contract's
/// [`EPOCH_RETENTION`] (a day), which outlasts any create that read the old value
/// (milliseconds) and any link bound to it (an hour at most), and keeps the key count bounded
/// by the users who revoked recently.
const EPOCH_TTL_MS: u64 = EPOCH_RETENTION.as_millis() as u64;

/// Index entries scored this long before a new session's creation are dropped when it is
/// added. Their records expired at least this long ago by the creating instance's clock and
/// Redis removed them `grace` after that, so only an hour of clock skew could drop an entry
/// whose record some instance still accepts.
const PRUNE_MARGIN: Duration = Duration::from_secs(3600);

/// Requests in flight at once in bulk operations (listing or revoking many sessions).
const BULK_CONCURRENCY: usize = 64;

/// Members per `ZREM`.
const ZREM_CHUNK: usize = 1000;

/// How often a touch or save may find its index entry needing a raise before giving up. Each
/// round means a concurrent write moved the record; more than a few means something is wrong.
const MAX_RAISES: usize = 4;

/// Sessions in Redis or Valkey, standalone or Cluster. Cheap to clone; clones share one
/// multiplexed connection (per server).
///
/// See the [crate documentation](crate) for the key layout, the scripts and the guarantees.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    keys: Keys,
    grace_ms: i64,
    command_timeout: Duration,
    cluster: bool,
    /// `keys.channel()`, built once: every write script names it.
    channel: String,
    /// What it was connected with.
    config: RedisConfig,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "topology",
                &if self.inner.cluster {
                    "cluster"
                } else {
                    "standalone"
                },
            )
            .field("key_prefix", &self.inner.config.key_prefix)
            .finish_non_exhaustive()
    }
}

/// No reply within the configured command timeout.
#[derive(Debug, thiserror::Error)]
#[error("no reply from Redis within {0:?}")]
struct TimedOut(Duration);

/// A script answered with something the store never asks it to return.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from a Redis script: {0}")]
struct UnexpectedReply(String);

fn redis_error(e: RedisError) -> StoreError {
    let unavailable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::ClusterConnectionNotFound
                | ErrorKind::Server(
                    ServerErrorKind::MasterDown
                        | ServerErrorKind::BusyLoading
                        | ServerErrorKind::ReadOnly
                )
        );
    if unavailable {
        StoreError::Unavailable {
            store: STORE,
            source: Box::new(e),
        }
    } else {
        StoreError::Backend {
            store: STORE,
            source: Box::new(e),
        }
    }
}

fn unexpected(what: impl Into<String>) -> StoreError {
    StoreError::Backend {
        store: STORE,
        source: Box::new(UnexpectedReply(what.into())),
    }
}

/// What a multi-step script ([`TOUCH`], [`SAVE`]) answered.
enum Step {
    Done(i64),
    /// The index entry of `user`'s session must first be raised to `target`.
    Raise {
        user: String,
        target: i64,
    },
}

fn step(reply: Vec<Value>, raise_code: i64) -> Result<Step, StoreError> {
    let mut it = reply.into_iter();
    let code: i64 = it
        .next()
        .and_then(|v| redis::from_redis_value(v).ok())
        .ok_or_else(|| unexpected("no status code"))?;
    if code != raise_code {
        return Ok(Step::Done(code));
    }
    let user: String = it
        .next()
        .and_then(|v| redis::from_redis_value(v).ok())
        .ok_or_else(|| unexpected("no user"))?;
    let target: i64 = it
        .next()
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| unexpected("no target"))?;
    Ok(Step::Raise { user, target })
}

fn ms(t: Timestamp) -> i64 {
    t.as_unix_millis()
}

impl RedisStore {
    /// Connects to Redis as `config` says. Fails with [`StoreError::Unavailable`] if no server
    /// answers within the connect timeout, so a misconfiguration shows at startup. Once
    /// connected, the store reconnects by itself whenever the connection drops.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let connect = Conn::connect(&config);
        // Cluster discovery makes several round trips; give it a few command timeouts.
        let conn = match tokio::time::timeout(config.command_timeout * 3, connect).await {
            Ok(r) => r.map_err(redis_error)?,
            Err(_) => {
                return Err(StoreError::Unavailable {
                    store: STORE,
                    source: Box::new(TimedOut(config.command_timeout * 3)),
                });
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                keys: Keys::new(&config.key_prefix),
                grace_ms: i64::try_from(config.expiry_grace.as_millis()).unwrap_or(i64::MAX),
                command_timeout: config.command_timeout,
                cluster: matches!(config.topology, Topology::Cluster(_)),
                channel: Keys::new(&config.key_prefix).channel(),
                config,
            }),
        })
    }

    /// The key prefix this store writes under.
    pub fn key_prefix(&self) -> &str {
        &self.inner.config.key_prefix
    }

    pub(crate) fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// Runs one round trip, bounded by the command timeout: the guarantee that a dead or
    /// unreachable Redis fails a request within seconds instead of hanging it.
    pub(crate) async fn bounded<T>(
        &self,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.command_timeout, fut).await {
            Ok(r) => r.map_err(redis_error),
            Err(_) => Err(StoreError::Unavailable {
                store: STORE,
                source: Box::new(TimedOut(self.inner.command_timeout)),
            }),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs `f` over `items` with bounded concurrency, in order. On Cluster the requests go to
    /// whichever master owns each key; on a standalone server they share the connection's
    /// pipeline.
    async fn bulk<I, T, F, Fut>(&self, items: I, f: F) -> Result<Vec<T>, StoreError>
    where
        I: IntoIterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        futures_util::stream::iter(items)
            .map(f)
            .buffered(BULK_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn zrem(&self, index: &str, members: &[String]) -> Result<(), StoreError> {
        for chunk in members.chunks(ZREM_CHUNK) {
            let mut cmd = redis::cmd("ZREM");
            cmd.arg(index).arg(chunk);
            self.query::<i64>(cmd).await?;
        }
        Ok(())
    }

    async fn raise_index(&self, user: &str, member: &str, target: i64) -> Result<(), StoreError> {
        let mut inv = INDEX_RAISE.key(self.inner.keys.index(user));
        inv.arg(member).arg(target).arg(self.inner.grace_ms);
        let mut conn = self.conn();
        self.bounded(async move { inv.invoke_async::<i64>(&mut conn).await })
            .await?;
        Ok(())
    }

    /// Deletes a record and its index entry, for a create that must not stand. Failures are
    /// logged only: the caller is already failing, the token was never handed out, and the
    /// record's TTL removes it in any case.
    async fn undo_create(&self, session: &Session) {
        let member = session.id.to_hex();
        let index = self.inner.keys.index(session.user_id.as_str());
        let mut del = redis::cmd("DEL");
        del.arg(self.inner.keys.record(&session.id));
        if let Err(e) = self.query::<i64>(del).await {
            tracing::warn!(error = %e, "could not remove a session whose create failed");
        }
        if let Err(e) = self.zrem(&index, &[member]).await {
            tracing::warn!(error = %e, "could not remove the index entry of a failed create");
        }
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn name(&self) -> &'static str {
        STORE
    }

    async fn create(&self, session: &Session) -> Result<(), StoreError> {
        let keys = &self.inner.keys;
        let user = session.user_id.as_str();
        let body = record::body(session).map_err(|e| StoreError::Backend {
            store: STORE,
            source: Box::new(e),
        })?;
        let expires = ms(session.expires_at());

        // The epoch before the record exists: if it moves before the index entry is in place,
        // a revoke-all ran in between and may have missed this session.
        let epoch_before: Option<i64> = {
            let mut get = redis::cmd("GET");
            get.arg(keys.epoch(user));
            self.query(get).await?
        };

        let mut create = CREATE.key(keys.record(&session.id));
        create
            .arg(user)
            .arg(session.handle.as_str())
            .arg(session.version)
            .arg(ms(session.last_seen_at))
            .arg(ms(session.idle_expires_at))
            .arg(ms(session.absolute_expires_at))
            .arg(body)
            .arg(expires.saturating_add(self.inner.grace_ms));
        let mut conn = self.conn();
        let created: i64 = self
            .bounded(async move { create.invoke_async(&mut conn).await })
            .await?;
        if created == 0 {
            return Err(StoreError::AlreadyExists { store: STORE });
        }

        let prune_below = ms(session.created_at.saturating_sub(PRUNE_MARGIN));
        let mut add = INDEX_ADD.key(keys.index(user));
        add.key(keys.epoch(user))
            .arg(expires)
            .arg(session.id.to_hex())
            .arg(prune_below)
            .arg(self.inner.grace_ms);
        let mut conn = self.conn();
        let epoch_after: Option<i64> = match self
            .bounded(async move { add.invoke_async(&mut conn).await })
            .await
        {
            Ok(e) => e,
            Err(e) => {
                self.undo_create(session).await;
                return Err(e);
            }
        };
        if epoch_after != epoch_before {
            self.undo_create(session).await;
            return Err(StoreError::RevokedConcurrently { store: STORE });
        }
        Ok(())
    }

    async fn load(&self, id: &SessionId) -> Result<Option<Arc<Session>>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.inner.keys.record(id));
        let fields: HashMap<String, String> = self.query(cmd).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        record::decode(*id, &fields)
            .map(|s| Some(Arc::new(s)))
            .map_err(|e| StoreError::Corrupt {
                store: STORE,
                source: Box::new(e),
            })
    }

    async fn touch(
        &self,
        id: &SessionId,
        last_seen_at: Timestamp,
        idle_expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = self.inner.keys.record(id);
        let member = id.to_hex();
        let mut cap = 0_i64;
        for _ in 0..MAX_RAISES {
            let mut inv = TOUCH.key(&key);
            inv.arg(ms(last_seen_at))
                .arg(ms(idle_expires_at))
                .arg(cap)
                .arg(self.inner.grace_ms)
                .arg(&self.inner.channel)
                .arg(&member);
            let mut conn = self.conn();
            let reply: Vec<Value> = self
                .bounded(async move { inv.invoke_async(&mut conn).await })
                .await?;
            match step(reply, 2)? {
                Step::Done(0) => return Ok(false),
                Step::Done(1) => return Ok(true),
                Step::Done(other) => return Err(unexpected(format!("touch status {other}"))),
                Step::Raise { user, target } => {
                    self.raise_index(&user, &member, target).await?;
                    cap = target;
                }
            }
        }
        Err(unexpected("touch kept racing concurrent writes"))
    }

    async fn save(&self, session: &Session) -> Result<SaveOutcome, StoreError> {
        let key = self.inner.keys.record(&session.id);
        let member = session.id.to_hex();
        let next_version = session
            .version
            .checked_add(1)
            .ok_or_else(|| unexpected("version overflow"))?;
        let body = record::body(session).map_err(|e| StoreError::Backend {
            store: STORE,
            source: Box::new(e),
        })?;
        let mut cap = 0_i64;
        for _ in 0..MAX_RAISES {
            let mut inv = SAVE.key(&key);
            inv.arg(session.version)
                .arg(next_version)
                .arg(ms(session.last_seen_at))
                .arg(ms(session.idle_expires_at))
                .arg(ms(session.absolute_expires_at))
                .arg(&body)
                .arg(cap)
                .arg(self.inner.grace_ms)
                .arg(&self.inner.channel)
                .arg(&member);
            let mut conn = self.conn();
            let reply: Vec<Value> = self
                .bounded(async move { inv.invoke_async(&mut conn).await })
                .await?;
            match step(reply, 3)? {
                Step::Done(0) => return Ok(SaveOutcome::NotFound),
                Step::Done(1) => return Ok(SaveOutcome::VersionConflict),
                Step::Done(2) => return Ok(SaveOutcome::Saved),
                Step::Done(other) => return Err(unexpected(format!("save status {other}"))),
                Step::Raise { user, target } => {
                    self.raise_index(&user, &member, target).await?;
                    cap = target;
                }
            }
        }
        Err(unexpected("save kept racing concurrent writes"))
    }

    async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let user = self.delete_record(&id.to_hex()).await?;
        let Some(user) = user else {
            return Ok(false);
        };
        // The record is gone, which is what the contract asks. A failure to drop the index
        // entry leaves a dangling member that listing, pruning or the index TTL remove later.
        if !user.is_empty()
            && let Err(e) = self
                .zrem(&self.inner.keys.index(&user), &[id.to_hex()])
                .await
        {
            tracing::warn!(error = %e, "session deleted but its index entry was not");
        }
        Ok(true)
    }

    async fn list_for_user(
        &self,
        user: &UserId,
        now: Timestamp,
    ) -> Result<Vec<Session>, StoreError> {
        let index = self.inner.keys.index(user.as_str());
        // Scores are never below their record's expiry, so nothing live is skipped here.
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(&index).arg(format!("({}", ms(now))).arg("+inf");
        let members: Vec<String> = self.query(range).await?;
        let records = self
            .bulk(members, |member| {
                let mut cmd = redis::cmd("HGETALL");
                cmd.arg(self.inner.keys.record_hex(&member));
                async move {
                    let fields: HashMap<String, String> = self.query(cmd).await?;
                    Ok((member, fields))
                }
            })
            .await?;
        let mut live = Vec::new();
        let mut dangling = Vec::new();
        for (member, fields) in records {
            if fields.is_empty() {
                // The record expired in Redis or was deleted: its entry goes too. No create can
                // be in flight for it — a create writes the record before its index entry.
                dangling.push(member);
                continue;
            }
            let id = SessionId::from_hex(&member).map_err(|e| StoreError::Corrupt {
                store: STORE,
                source: Box::new(e),
            })?;
            let session = record::decode(id, &fields).map_err(|e| StoreError::Corrupt {
                store: STORE,
                source: Box::new(e),
            })?;
            if session.user_id == *user && session.is_live(now) {
                live.push(session);
            }
        }
        self.zrem(&index, &dangling).await?;
        Ok(live)
    }

    async fn delete_for_user(
        &self,
        user: &UserId,
        scope: DeleteScope<'_>,
    ) -> Result<u64, StoreError> {
        let keys = &self.inner.keys;
        let index = keys.index(user.as_str());
        // First the epoch: any create that has not yet added its index entry will see it moved
        // and remove itself; any that has is in the index read next.
        let mut bump = EPOCH_BUMP.key(keys.epoch(user.as_str()));
        bump.arg(EPOCH_TTL_MS);
        let mut conn = self.conn();
        self.bounded(async move { bump.invoke_async::<i64>(&mut conn).await })
            .await?;

        let mut range = redis::cmd("ZRANGE");
        range.arg(&index).arg(0).arg(-1);
        let members: Vec<String> = self.query(range).await?;
        let keep = match scope {
            DeleteScope::All => None,
            DeleteScope::AllExcept(id) => Some(id.to_hex()),
        };
        let doomed: Vec<String> = members
            .into_iter()
            .filter(|m| Some(m) != keep.as_ref())
            .collect();
        // One script per record, so each deletion announces itself atomically.
        let deleted = self
            .bulk(doomed.iter().cloned(), |member| async move {
                Ok(u64::from(self.delete_record(&member).await?.is_some()))
            })
            .await?;
        // Records first, entries second: an interruption leaves entries without records (which
        // listing cleans up), never a live record its user's index has forgotten.
        self.zrem(&index, &doomed).await?;
        Ok(deleted.into_iter().sum())
    }

    async fn purge_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut removed = 0;
        for index in self.scan_all(&self.inner.keys.index_pattern()).await? {
            removed += self.purge_index(&index, now).await?;
        }
        // Consumed links expire by their TTL too; this removes them at the caller's `now`,
        // as the contract asks, even before Redis would.
        let links = self.scan_all(&self.inner.keys.link_pattern()).await?;
        self.bulk(links, |key| {
            let mut inv = PURGE_LINK.key(key);
            inv.arg(ms(now));
            let mut conn = self.conn();
            self.bounded(async move { inv.invoke_async::<i64>(&mut conn).await })
        })
        .await?;
        Ok(removed)
    }

    async fn consume_link(&self, id: &LinkId, expires_at: Timestamp) -> Result<bool, StoreError> {
        // One key, so one slot: `SET NX` is atomic on a standalone server and on Cluster. The
        // key expires a grace after the link, like a record; its value is the link's expiry,
        // for `purge_expired`.
        let expires = ms(expires_at);
        let mut set = redis::cmd("SET");
        set.arg(self.inner.keys.link(id))
            .arg(expires)
            .arg("NX")
            .arg("PXAT")
            .arg(expires.saturating_add(self.inner.grace_ms));
        let reply: Option<String> = self.query(set).await?;
        Ok(reply.is_some())
    }

    async fn revocation_epoch(&self, user: &UserId) -> Result<u64, StoreError> {
        let mut get = redis::cmd("GET");
        get.arg(self.inner.keys.epoch(user.as_str()));
        let epoch: Option<u64> = self.query(get).await?;
        Ok(epoch.unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>(redis::cmd("PING")).await.map(drop)
    }
}

impl RedisStore {
    /// Every key matching `pattern` on every master (each once).
    async fn scan_all(&self, pattern: &str) -> Result<HashSet<String>, StoreError> {
        let mut conn = self.conn();
        let targets = self
            .bounded(async move { conn.scan_targets().await })
            .await?;
        let mut keys = HashSet::new();
        for target in targets {
            let mut cursor = 0;
            loop {
                let mut conn = self.conn();
                let pattern = pattern.to_owned();
                let (next, found) = self
                    .bounded(async move { conn.scan(target, cursor, &pattern).await })
                    .await?;
                keys.extend(found);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// Deletes one record by its id's hex, announcing it (the [`DELETE`] script). Returns
    /// its user (empty if the field was missing), or `None` if there was no record.
    async fn delete_record(&self, hex: &str) -> Result<Option<String>, StoreError> {
        let mut inv = DELETE.key(self.inner.keys.record_hex(hex));
        inv.arg(&self.inner.channel).arg(hex);
        let mut conn = self.conn();
        self.bounded(async move { inv.invoke_async(&mut conn).await })
            .await
    }

    /// The channel this store announces changes on.
    pub fn invalidation_channel(&self) -> &str {
        &self.inner.channel
    }

    /// Where a subscriber may connect: the server, or the Cluster's seed nodes.
    pub(crate) fn urls(&self) -> &[String] {
        match &self.inner.config.topology {
            Topology::Standalone(url) => std::slice::from_ref(url),
            Topology::Cluster(seeds) => seeds,
        }
    }

    /// The configuration it was connected with (its trust anchors make further clients).
    pub(crate) fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    pub(crate) fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    /// Purges one user's index: every entry scored at or before `now` (by the invariant, every
    /// session that can be expired at `now`) has its record deleted if it is indeed expired,
    /// and its entry removed if the record is gone.
    async fn purge_index(&self, index: &str, now: Timestamp) -> Result<u64, StoreError> {
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(index).arg("-inf").arg(ms(now));
        let candidates: Vec<String> = self.query(range).await?;
        let outcomes = self
            .bulk(candidates.iter().cloned(), |member| {
                let mut inv = PURGE_ONE.key(self.inner.keys.record_hex(&member));
                inv.arg(ms(now)).arg(&self.inner.channel).arg(member);
                let mut conn = self.conn();
                self.bounded(async move { inv.invoke_async::<i64>(&mut conn).await })
            })
            .await?;
        let mut gone = Vec::new();
        let mut removed = 0;
        for (member, outcome) in candidates.into_iter().zip(outcomes) {
            match outcome {
                0 => gone.push(member),
                2 => {
                    removed += 1;
                    gone.push(member);
                }
                _ => {}
            }
        }
        self.zrem(index, &gone).await?;
        Ok(removed)
    }
}
