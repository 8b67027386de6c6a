//! Validate latency through `SessionManager::validate`, over loopback. Ignored by default;
//! run with
//! `cargo test --release -p cloakroom-redis --test it -- --ignored --nocapture latency`.

use std::sync::Arc;

use cloakroom_redis::{RedisConfig, RedisStore};

use crate::support;

async fn measure(label: &str, store: RedisStore) {
    cloakroom_testkit::latency::validate_latency(label, Arc::new(store), 20_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test; run with --release"]
async fn validate_latency_standalone() {
    let prefix = support::unique_prefix();
    let _cleanup = support::PrefixGuard(prefix.clone());
    let Some(store) = support::standalone_store(&prefix).await else {
        return;
    };
    measure("redis standalone", store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test; run with --release"]
async fn validate_latency_cluster() {
    let Some(cluster) = support::shared_cluster() else {
        return;
    };
    let config = RedisConfig::cluster(cluster.seeds())
        .unwrap()
        .with_key_prefix(&support::unique_prefix())
        .unwrap();
    measure("redis cluster", RedisStore::connect(config).await.unwrap()).await;
}
