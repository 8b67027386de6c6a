//! The invalidation feed: what a push-mode session cache ([`CachedStore::push`]) listens to.
//!
//! Every script that changes or removes a record publishes `s <id>` on the store's channel in
//! the same atomic step. [`RedisStore::feed_invalidations`] subscribes to that channel on a
//! connection of its own and applies each message to the cache, in the order Redis delivers
//! them.
//!
//! Plain pub/sub rather than `CLIENT TRACKING`: tracking announces keys *read* by this client,
//! which would need RESP3 or a redirect connection per node and invalidates on every touch of
//! any field, while a channel the scripts publish on carries exactly the changes that matter,
//! works the same on Standalone and Cluster (where a `PUBLISH` reaches every node's
//! subscribers), and costs one message per write. Writes are throttled (one touch per session
//! per touch interval), so the channel is quiet next to the checks it saves.
//!
//! Fail exact: the cache is used only while the subscription is known to be alive. Until the
//! first `SUBSCRIBE` is confirmed, after any error, and when a `PING` on the subscription does
//! not come back within the liveness bound, the cache is emptied and bypassed; the feed then
//! reconnects (to the next seed node on Cluster) and starts over with an empty cache. A
//! connection that dies without an error can therefore hide messages for at most
//! [`LIVENESS`] twice over — the one window in which a push cache can be stale, documented in
//! DESIGN.md.
//!
//! [`CachedStore::push`]: cloakroom_core::CachedStore::push

use std::time::Duration;

use cloakroom_core::Invalidator;
use futures_util::StreamExt as _;

use crate::store::RedisStore;

/// How often the subscription is pinged, and how long a ping may take.
pub const LIVENESS: Duration = Duration::from_millis(500);

/// The wait before reconnecting after a failure.
const RETRY: Duration = Duration::from_millis(200);

impl RedisStore {
    /// Keeps `invalidator` fed with this store's changes, made by any instance, for as long as
    /// the returned future runs (spawn it; it never returns). See the [module docs](self).
    pub async fn feed_invalidations(self, invalidator: Invalidator) {
        let mut attempt = 0_usize;
        loop {
            let urls = self.urls();
            let url = &urls[attempt % urls.len()];
            if let Err(e) = self.listen(url, &invalidator).await {
                tracing::warn!(
                    error = %e,
                    "the Redis invalidation feed is down: the session cache is bypassed until it is back"
                );
            }
            invalidator.disconnected();
            attempt += 1;
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One subscription, until it fails.
    async fn listen(&self, url: &str, invalidator: &Invalidator) -> redis::RedisResult<()> {
        let timeout = self.command_timeout();
        let connect = async {
            let client = self.config().client(url)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(self.invalidation_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| timed_out("subscribing"))??;
        let (mut sink, mut stream) = pubsub.split();
        invalidator.connected();
        tracing::info!("the Redis invalidation feed is connected: the session cache is in use");
        let mut ping = tokio::time::interval(LIVENESS);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else {
                        return Err(timed_out("the subscription closed"));
                    };
                    match message.get_payload::<String>() {
                        Ok(text) => invalidator.apply(&text),
                        // Unreadable: forget everything rather than guess.
                        Err(_) => invalidator.apply(""),
                    }
                }
                _ = ping.tick() => {
                    // Subscribed, Redis answers a PING with an array (`pong`, ``): any reply will do.
                    tokio::time::timeout(LIVENESS, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| timed_out("a ping on the subscription"))??;
                }
            }
        }
    }
}

fn timed_out(what: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "invalidation feed", what.to_owned()))
}
