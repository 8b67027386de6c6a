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
