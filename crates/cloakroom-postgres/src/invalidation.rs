//! The invalidation feed: what a push-mode session cache ([`CachedStore::push`]) listens to.
//!
//! A trigger on the sessions table (migration 9) sends `s <id>` with `pg_notify` for every
//! updated or deleted row, in the writing transaction, on a channel named after the schema.
//! PostgreSQL delivers a notification only if its transaction commits, after it commits, and
//! in commit order — so a listener hears of a revocation exactly once it is true.
//! [`PostgresStore::feed_invalidations`] holds one connection of its own (not from the pool:
//! `LISTEN` belongs to a session), applies every notification to the cache, and checks the
//! connection with a `SELECT 1` every [`LIVENESS`]; on any failure the cache is emptied and
//! bypassed until a new `LISTEN` is in place (fail exact, not stale).
//!
//! [`CachedStore::push`]: cloakroom_core::CachedStore::push

use std::time::Duration;

use cloakroom_core::Invalidator;
use cloakroom_core::store::BoxError;
use futures_util::StreamExt as _;
use tokio_postgres::AsyncMessage;

use crate::schema::channel;
use crate::store::PostgresStore;

/// How often the listening connection is checked, and how long a check may take.
pub const LIVENESS: Duration = Duration::from_millis(500);

/// The wait before reconnecting after a failure.
const RETRY: Duration = Duration::from_millis(200);

impl PostgresStore {
    /// The `NOTIFY` channel this store's changes are announced on.
    pub fn invalidation_channel(&self) -> String {
        channel(self.schema())
    }

    /// Keeps `invalidator` fed with this schema's session changes, made by any instance, for as
    /// long as the returned future runs (spawn it; it never returns). See the
    /// [module docs](self).
    pub async fn feed_invalidations(self, invalidator: Invalidator) {
        loop {
            if let Err(e) = self.listen(&invalidator).await {
                tracing::warn!(
                    error = %e,
                    "the PostgreSQL invalidation feed is down: the session cache is bypassed until it is back"
                );
            }
            invalidator.disconnected();
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One `LISTEN`, until it fails, over the same TLS as the pool's connections.
    async fn listen(&self, invalidator: &Invalidator) -> Result<(), BoxError> {
        match self.tls() {
            Some(tls) => self.listen_over(invalidator, tls.connector()).await,
            None => self.listen_over(invalidator, tokio_postgres::NoTls).await,
        }
    }

    async fn listen_over<T>(&self, invalidator: &Invalidator, tls: T) -> Result<(), BoxError>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
        T::Stream: Send + 'static,
    {
        let timeout = self.command_timeout();
        // Named, so an operator (or a test) can tell the listener from the pool's connections.
        let mut config = self.pg_config().clone();
        config.application_name(format!("cloakroom-feed {}", self.invalidation_channel()));
        let (client, mut connection) = tokio::time::timeout(timeout, config.connect(tls))
            .await
            .map_err(|_| "connecting timed out")??;
        // The connection task delivers notifications as they arrive, in order.
        let feed = invalidator.clone();
        let mut driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => feed.apply(n.payload()),
                    Ok(_) => {}
                    Err(e) => return e.to_string(),
                }
            }
            "the connection closed".to_owned()
        });
        let listening = async {
            // The channel name is `cloakroom_sessions_` and hex digits: nothing to escape.
            client
                .batch_execute(&format!("LISTEN \"{}\"", self.invalidation_channel()))
                .await
        };
        let outcome = async {
            tokio::time::timeout(timeout, listening)
                .await
                .map_err(|_| "LISTEN timed out")??;
            invalidator.connected();
            tracing::info!(
                "the PostgreSQL invalidation feed is connected: the session cache is in use"
            );
            let mut check = tokio::time::interval(LIVENESS);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                check.tick().await;
                tokio::time::timeout(LIVENESS, client.simple_query("SELECT 1"))
                    .await
                    .map_err(|_| "a liveness check timed out")??;
            }
        };
        let result: Result<(), BoxError> = tokio::select! {
            r = outcome => r,
            ended = &mut driver => Err(ended.unwrap_or_else(|e| e.to_string()).into()),
        };
        driver.abort();
        result
    }
}
