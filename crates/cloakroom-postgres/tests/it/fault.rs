//! Connections that die under the pool, and a server that is not there.

use std::time::{Duration, Instant};

use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId, ValidationError};
use cloakroom_postgres::{PostgresConfig, PostgresStore};

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_fail_closed_and_the_pool_recovers() {
    let Some((_probe, _g)) = support::store().await else {
        return;
    };
    let schema = support::unique_schema();
    let _guard = support::SchemaGuard(schema.clone());
    let app = format!("cloakroom-fault-{schema}");
    let store = PostgresStore::connect(support::config(&schema).with_application_name(&app))
        .await
        .unwrap();
    let manager = SessionManager::new(store);
    let issued = manager
        .issue(
            NewSession::new(UserId::new("alice").unwrap(), AuthMethod::password()),
            None,
        )
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    // Several connections in the pool, all about to be killed.
    let warm: Vec<_> = (0..6).map(|_| manager.validate(Some(&cookie))).collect();
    for w in warm {
        w.await.unwrap();
    }

    let killed: i64 = support::admin()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed > 0, "no store connection to terminate");

    // Each failure is a fail-closed `Unavailable`, never a pass; within a bounded number of
    // attempts the pool has replaced its dead connections and validation works again.
    let start = Instant::now();
    let mut failures = 0;
    loop {
        match manager.validate(Some(&cookie)).await {
            Ok(s) => {
                assert_eq!(s.id, issued.session.id);
                break;
            }
            Err(ValidationError::Store(e)) if e.is_unavailable() => failures += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert!(failures <= 8, "the pool kept handing out dead connections");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    eprintln!("pg fault: {failures} failed validations before recovery");
    for _ in 0..10 {
        manager.validate(Some(&cookie)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_within_seconds() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config =
        PostgresConfig::from_url(&format!("postgres://postgres@127.0.0.1:{port}/test")).unwrap();
    let start = Instant::now();
    let err = PostgresStore::connect(config)
        .await
        .expect_err("nothing there");
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(err.store(), "postgres");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Issue 14: a push cache whose `LISTEN` connection is terminated is emptied and bypassed at
/// once, never serving what it held while it could miss a revocation, and is used again once
/// the feed has listened again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cache_without_its_feed_fails_exact_not_stale() {
    use cloakroom_testkit::cache::{push_cache, wait_active};
    let Some((store, _guard)) = support::store().await else {
        return;
    };
    let cache = push_cache(std::sync::Arc::new(store.clone()), |feed| {
        store.clone().feed_invalidations(feed)
    })
    .await;
    let manager = SessionManager::new(cache.clone());
    let issued = manager
        .issue(
            NewSession::new(UserId::new("alice").unwrap(), AuthMethod::password()),
            None,
        )
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    manager.validate(Some(&cookie)).await.unwrap();
    manager.validate(Some(&cookie)).await.unwrap();
    assert_eq!(cache.stats().hits, 1);

    let listener = format!("cloakroom-feed {}", store.invalidation_channel());
    let killed: i64 = support::admin()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&listener],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the listener is one connection");
    wait_active(&cache, false).await;
    assert_eq!(cache.stats().entries, 0);
    // Revoked meanwhile: nothing cached may answer for it once the feed is back.
    manager.revoke(&issued.session.id).await.unwrap();
    wait_active(&cache, true).await;
    assert!(matches!(
        manager.validate(Some(&cookie)).await,
        Err(ValidationError::Unknown)
    ));
}
