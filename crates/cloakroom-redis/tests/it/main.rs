//! Integration tests of the Redis store against real servers: the conformance suite on a
//! standalone Redis and on a 3-master, 3-replica Cluster; the create-vs-revoke-all race;
//! Cluster spread and failover; two instances; an outage and recovery; and a latency probe.
//!
//! The standalone tests use `CLOAKROOM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//! the Cluster and fault tests start their own `redis-server` processes. Unreachable services
//! skip the tests unless `CLOAKROOM_REQUIRE_SERVICES=1`.
// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod cluster;
mod fault;
mod instances;
mod race;
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::SessionStore;
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::conformance::Harness;

/// A store under its own prefix, and where to look for what it wrote.
pub(crate) struct RedisHarness {
    pub(crate) store: RedisStore,
    pub(crate) prefix: String,
    /// Every server of the deployment; the dump reads the masters among them.
    pub(crate) urls: Vec<String>,
    /// Cleans the shared standalone Redis up after the test (the Cluster dies with the tests).
    _cleanup: Option<support::PrefixGuard>,
}

#[async_trait]
impl Harness for RedisHarness {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }

    async fn dump(&self) -> Vec<u8> {
        support::dump(&self.urls, &self.prefix).await
    }
}

async fn standalone() -> Option<RedisHarness> {
    let prefix = support::unique_prefix();
    let store = support::standalone_store(&prefix).await?;
    Some(RedisHarness {
        store,
        prefix: prefix.clone(),
        urls: vec![support::redis_url()],
        _cleanup: Some(support::PrefixGuard(prefix)),
    })
}

async fn cluster() -> Option<RedisHarness> {
    let Some(cluster) = support::shared_cluster() else {
        return support::skip("redis-server is not installed, so no Cluster can be started");
    };
    let prefix = support::unique_prefix();
    let config = RedisConfig::cluster(cluster.seeds())
        .unwrap()
        .with_key_prefix(&prefix)
        .unwrap();
    let store = RedisStore::connect(config)
        .await
        .expect("connect to the test Cluster");
    Some(RedisHarness {
        store,
        prefix,
        urls: cluster.seeds(),
        _cleanup: None,
    })
}

impl cloakroom_testkit::conformance::CountersHarness for RedisHarness {
    fn counters(&self) -> Arc<dyn cloakroom_core::throttle::BackoffCounters> {
        Arc::new(self.store.counters())
    }
}

cloakroom_testkit::counters_conformance_suite!(conformance_redis_counters, standalone());
cloakroom_testkit::counters_conformance_suite!(conformance_cluster_counters, cluster());
cloakroom_testkit::conformance_suite!(conformance_redis, standalone());
cloakroom_testkit::conformance_suite!(conformance_cluster, cluster());

/// A harness whose store is behind a push cache with its feed connected.
async fn push(
    harness: Option<RedisHarness>,
) -> Option<cloakroom_testkit::conformance::Cached<RedisHarness>> {
    let harness = harness?;
    let store = Arc::new(instances::push_cached(harness.store.clone()).await);
    Some(cloakroom_testkit::conformance::Cached::new(harness, store))
}

cloakroom_testkit::conformance_suite!(conformance_redis_push_cache, push(standalone().await));
cloakroom_testkit::conformance_suite!(conformance_cluster_push_cache, push(cluster().await));
cloakroom_testkit::conformance_suite!(conformance_redis_exact_cache, async {
    standalone()
        .await
        .map(cloakroom_testkit::conformance::Cached::exact)
});
