//! [`RedisCounters`]: failure counters with exponential backoff, shared by every instance on
//! the same Redis — what makes a login throttle hold across a load balancer.
//!
//! A counter is one hash (`f`: failures, `l`: time of the last one) under the store's key
//! prefix. Checking whether an attempt must wait and counting it are one script, so parallel
//! attempts on different instances cannot all pass on the same count; each script touches one
//! key, so it runs atomically on Cluster too. A counter expires (`PEXPIRE`) when its failures
//! would be forgotten anyway, so Redis holds only counters that still matter, whatever the
//! number of clients an attacker rotates through.
//!
//! Times are the caller's (its injected clock), as everywhere else in the stores: instances
//! whose clocks disagree by *s* can shorten or lengthen a wait by up to *s*, while the counts —
//! the budget of free failures — are exact.

use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::throttle::{Backoff, BackoffCounters};
use cloakroom_core::{StoreError, Timestamp};
use redis::Script;

use crate::store::RedisStore;

/// `KEYS[1]` counter. `ARGV`: now free base_ms max_ms forget_ms. Returns 0 when the attempt
/// is counted, else the milliseconds it must still wait (nothing is counted then).
static RESERVE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local forget = tonumber(ARGV[5])
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if f > 0 and now - last >= forget then f = 0 end
local over = f - tonumber(ARGV[2])
if over >= 0 then
  local delay = math.min(tonumber(ARGV[3]) * 2 ^ math.min(over, 20), tonumber(ARGV[4]))
  local wait = math.ceil(last + delay - now)
  if wait > 0 then return wait end
end
redis.call('HSET', KEYS[1], 'f', f + 1, 'l', ARGV[1])
redis.call('PEXPIRE', KEYS[1], forget)
return 0
",
    )
});

/// `KEYS[1]` counter. Takes back one counted attempt; the counter goes at zero.
static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if f <= 1 then redis.call('DEL', KEYS[1]) else redis.call('HINCRBY', KEYS[1], 'f', -1) end
return 0
",
    )
});

/// Backoff counters in Redis, beside a [`RedisStore`]'s sessions (same connection, same key
/// prefix, under `throttle:`). Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisCounters {
    store: RedisStore,
    prefix: String,
}

impl RedisStore {
    /// Backoff counters on this store's Redis.
    pub fn counters(&self) -> RedisCounters {
        RedisCounters {
            prefix: format!("{}throttle:", self.key_prefix()),
            store: self.clone(),
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl BackoffCounters for RedisCounters {
    async fn reserve(
        &self,
        name: &str,
        limits: &Backoff,
        now: Timestamp,
    ) -> Result<Option<Duration>, StoreError> {
        let mut inv = RESERVE.key(format!("{}{name}", self.prefix));
        inv.arg(now.as_unix_millis())
            .arg(limits.free)
            .arg(millis(limits.base))
            .arg(millis(limits.max))
            .arg(millis(limits.forget).max(1));
        let mut conn = self.store.conn();
        let wait: i64 = self
            .store
            .bounded(async move { inv.invoke_async(&mut conn).await })
            .await?;
        Ok((wait > 0).then(|| Duration::from_millis(wait.unsigned_abs())))
    }

    async fn release(&self, name: &str) -> Result<(), StoreError> {
        let inv = RELEASE.key(format!("{}{name}", self.prefix));
        let mut conn = self.store.conn();
        self.store
            .bounded(async move { inv.invoke_async::<i64>(&mut conn).await })
            .await
            .map(drop)
    }

    async fn reset(&self, name: &str) -> Result<(), StoreError> {
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}{name}", self.prefix));
        let mut conn = self.store.conn();
        self.store
            .bounded(async move { del.query_async::<i64>(&mut conn).await })
            .await
            .map(drop)
    }
}
