//! Validate latency through `SessionManager::validate`, over loopback. Ignored by default;
//! run with
//! `cargo test --release -p cloakroom-redis --test it -- --ignored --nocapture latency`.

use std::time::{Duration, Instant};

use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId};
use cloakroom_redis::{RedisConfig, RedisStore};

use crate::support;

const RUNS: usize = 20_000;

async fn measure(label: &str, store: RedisStore) {
    let manager = SessionManager::new(store);
    let issued = manager
        .issue(
            NewSession::new(UserId::new("bench").unwrap(), AuthMethod::password()),
            None,
        )
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    for _ in 0..2_000 {
        manager.validate(Some(&cookie)).await.unwrap();
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        manager.validate(Some(&cookie)).await.unwrap();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let mean = samples.iter().sum::<Duration>() / RUNS as u32;
    eprintln!(
        "{label}: {RUNS} validates, p50 {:?}, p99 {:?}, p99.9 {:?}, mean {mean:?}",
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
    manager.revoke(&issued.session.id).await.unwrap();
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
