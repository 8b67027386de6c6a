//! Validate latency through `SessionManager::validate`, over loopback. Ignored by default;
//! run with
//! `cargo test --release -p cloakroom-postgres --test it -- --ignored --nocapture latency`.

use std::sync::Arc;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test; run with --release"]
async fn validate_latency() {
    let Some((store, _guard)) = support::store().await else {
        return;
    };
    cloakroom_testkit::latency::validate_latency("postgres", Arc::new(store), 20_000).await;
}
