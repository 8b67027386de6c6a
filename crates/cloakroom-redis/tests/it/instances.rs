//! Two server instances, each with its own store object and connection, over one Redis.

use cloakroom_core::{AuthMethod, NearCache, NewSession, SessionManager, UserId, ValidationError};
use cloakroom_redis::{RedisConfig, RedisStore};

use crate::support;

async fn two_instances_share_revocation(a: RedisStore, b: RedisStore, cache: Option<NearCache>) {
    let (mut first, mut second) = (SessionManager::new(a), SessionManager::new(b));
    if let Some(cache) = cache {
        first = first.with_near_cache(cache);
        second = second.with_near_cache(cache);
    }
    // A user of its own per run: the cluster test runs this twice under one prefix.
    let alice = UserId::new(format!(
        "alice-{}",
        cloakroom_core::SessionHandle::generate()
    ))
    .unwrap();
    let issue = || first.issue(NewSession::new(alice.clone(), AuthMethod::password()), None);
    let one = issue().await.unwrap();
    let two = issue().await.unwrap();
    let keep = issue().await.unwrap();
    for s in [&one, &two, &keep] {
        second
            .validate(Some(&s.token.expose_cookie_value()))
            .await
            .expect("valid on the other instance");
    }

    assert!(first.revoke(&one.session.id).await.unwrap());
    let err = second
        .validate(Some(&one.token.expose_cookie_value()))
        .await
        .expect_err("revoked on the first instance");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");

    // "Log out of all other devices" on the second instance reaches the first.
    assert_eq!(
        second
            .revoke_all_for_user(&alice, Some(&keep.session.id))
            .await
            .unwrap(),
        1
    );
    let err = first
        .validate(Some(&two.token.expose_cookie_value()))
        .await
        .expect_err("revoked on the second instance");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
    first
        .validate(Some(&keep.token.expose_cookie_value()))
        .await
        .expect("the kept session survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocation_standalone() {
    let prefix = support::unique_prefix();
    let _cleanup = support::PrefixGuard(prefix.clone());
    let Some(a) = support::standalone_store(&prefix).await else {
        return;
    };
    let b = support::standalone_store(&prefix).await.unwrap();
    two_instances_share_revocation(a, b, None).await;
}

/// The same with a near-cache on both instances polling before every use: revocations on one
/// instance still reach the other on its very next request, through the store's generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_near_cached_instances_share_revocation() {
    let prefix = support::unique_prefix();
    let _cleanup = support::PrefixGuard(prefix.clone());
    let Some(a) = support::standalone_store(&prefix).await else {
        return;
    };
    let b = support::standalone_store(&prefix).await.unwrap();
    two_instances_share_revocation(a, b, Some(NearCache::new(std::time::Duration::ZERO))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocation_cluster() {
    let Some(cluster) = support::shared_cluster() else {
        support::skip::<()>("redis-server is not installed");
        return;
    };
    let prefix = support::unique_prefix();
    let connect = || async {
        let config = RedisConfig::cluster(cluster.seeds())
            .unwrap()
            .with_key_prefix(&prefix)
            .unwrap();
        RedisStore::connect(config).await.unwrap()
    };
    two_instances_share_revocation(connect().await, connect().await, None).await;
    let cache = NearCache::new(std::time::Duration::ZERO);
    two_instances_share_revocation(connect().await, connect().await, Some(cache)).await;
}
