//! Push caches for tests: one with its invalidation feed running, and a wait for the feed's
//! state.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom_core::{CacheLimits, CachedStore, Invalidator, SessionStore};

/// How long a feed may take to connect or to notice it was cut, here.
const PATIENCE: Duration = Duration::from_secs(10);

/// `inner` behind a push cache whose feed — `run_feed(invalidator)`, spawned — has connected.
///
/// # Panics
/// If the feed does not connect within a few seconds.
pub async fn push_cache<F, Fut>(inner: Arc<dyn SessionStore>, run_feed: F) -> CachedStore
where
    F: FnOnce(Invalidator) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (cache, invalidator) = CachedStore::push(inner, CacheLimits::default());
    tokio::spawn(run_feed(invalidator));
    wait_active(&cache, true).await;
    cache
}

/// Waits until the cache is in use (`active`) or bypassed (`!active`); returns how long that
/// took.
///
/// # Panics
/// If that does not happen within a few seconds.
pub async fn wait_active(cache: &CachedStore, active: bool) -> Duration {
    let started = Instant::now();
    while cache.is_active() != active {
        assert!(
            started.elapsed() < PATIENCE,
            "the push cache did not become {}",
            if active { "active" } else { "inactive" }
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}
