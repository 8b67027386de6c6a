//! A Redis that goes away mid-test, and comes back.

use std::time::{Duration, Instant};

use cloakroom_core::{AuthMethod, NewSession, SessionManager, UserId, ValidationError};
use cloakroom_redis::{RedisConfig, RedisStore};

use crate::support::{self, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_closed_fast_and_the_store_recovers() {
    if !support::redis_server_available() {
        support::skip::<()>("redis-server is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let server = Server::start(dir.path(), port, false);
    let config = RedisConfig::standalone(&server.url())
        .unwrap()
        .with_key_prefix(&support::unique_prefix())
        .unwrap();
    let manager = SessionManager::new(RedisStore::connect(config).await.unwrap());
    let alice = UserId::new("alice").unwrap();
    let issue = || manager.issue(NewSession::new(alice.clone(), AuthMethod::password()), None);
    let before = issue().await.unwrap();
    let cookie = before.token.expose_cookie_value();
    manager.validate(Some(&cookie)).await.unwrap();

    server.kill();
    for _ in 0..3 {
        let t = Instant::now();
        let result = manager.validate(Some(&cookie)).await;
        let took = t.elapsed();
        match result {
            Err(ValidationError::Store(e)) => {
                assert!(e.is_unavailable(), "{e:?}");
                assert_eq!(e.store(), "redis");
            }
            other => panic!("a dead Redis must fail closed, got {other:?}"),
        }
        assert!(took < Duration::from_secs(4), "took {took:?} to fail");
    }
    assert!(manager.ping().await.is_err_and(|e| e.is_unavailable()));
    assert!(issue().await.is_err_and(|e| e.is_unavailable()));

    // Back on the same port, empty (it kept nothing). The same manager and store carry on
    // once the store has reconnected by itself; allow a bounded window for that.
    let _server = Server::start(dir.path(), port, false);
    let window = Instant::now();
    let fresh = loop {
        match issue().await {
            Ok(issued) => break issued,
            Err(e) if e.is_unavailable() && window.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery within 10 s: {e}"),
        }
    };
    eprintln!("outage: serving again {:?} after restart", window.elapsed());
    manager
        .validate(Some(&fresh.token.expose_cookie_value()))
        .await
        .expect("a session issued after the restart validates");
    let err = manager
        .validate(Some(&cookie))
        .await
        .expect_err("data is gone");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
}

/// Issue 14: a push cache whose invalidation feed is cut — here the subscriber's connection is
/// killed by the server, and then the whole server — is emptied and bypassed at once, never
/// serving what it held while it could miss a revocation, and is used again once the feed is
/// back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cache_without_its_feed_fails_exact_not_stale() {
    use cloakroom_testkit::cache::{push_cache, wait_active};
    if !support::redis_server_available() {
        support::skip::<()>("redis-server is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let server = Server::start(dir.path(), port, false);
    let config = RedisConfig::standalone(&server.url())
        .unwrap()
        .with_key_prefix(&support::unique_prefix())
        .unwrap();
    let store = RedisStore::connect(config).await.unwrap();
    let cache = push_cache(std::sync::Arc::new(store.clone()), |feed| {
        store.clone().feed_invalidations(feed)
    })
    .await;
    let manager = SessionManager::new(cache.clone());
    let alice = UserId::new("alice").unwrap();
    let issued = manager
        .issue(NewSession::new(alice, AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    manager.validate(Some(&cookie)).await.unwrap();
    manager.validate(Some(&cookie)).await.unwrap();
    assert_eq!(cache.stats().hits, 1);

    // The subscriber's connection is cut: the cache empties and goes unused.
    support::cli(port, &["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
    let noticed = wait_active(&cache, false).await;
    assert_eq!(cache.stats().entries, 0);
    eprintln!("feed cut: noticed after {noticed:?}");
    // Back by itself; the session is served from the cache again after one miss.
    wait_active(&cache, true).await;
    manager.validate(Some(&cookie)).await.unwrap();
    manager.validate(Some(&cookie)).await.unwrap();
    let hits = cache.stats().hits;
    assert!(hits >= 2, "{:?}", cache.stats());

    // The server dies: no cached answer, only the store's failure (fail closed).
    server.kill();
    wait_active(&cache, false).await;
    assert!(matches!(
        manager.validate(Some(&cookie)).await,
        Err(ValidationError::Store(_))
    ));
    assert_eq!(
        cache.stats().hits,
        hits,
        "served from a cache without a feed"
    );
}
