//! Two server instances, each with its own store object and connection, over one Redis:
//! without a cache, every revocation is seen on the other's very next request; with push
//! caches, once the invalidation feed delivers it.

use std::sync::Arc;

use cloakroom_core::{
    AuthMethod, CachedStore, NewSession, SessionManager, UserId, ValidationError,
};
use cloakroom_redis::{RedisConfig, RedisStore};
use cloakroom_testkit::conformance::sessions::push_caches_stay_exact;

use crate::support;

/// `store` behind a push cache whose feed is connected.
pub(crate) async fn push_cached(store: RedisStore) -> CachedStore {
    cloakroom_testkit::cache::push_cache(Arc::new(store.clone()), |feed| {
        store.feed_invalidations(feed)
    })
    .await
}

async fn two_instances_share_revocation(a: RedisStore, b: RedisStore) {
    let (first, second) = (SessionManager::new(a), SessionManager::new(b));
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
    two_instances_share_revocation(a, b).await;
}

/// Push caches on both instances: every change through one reaches the other by pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_cached_instances_stay_exact_standalone() {
    let prefix = support::unique_prefix();
    let _cleanup = support::PrefixGuard(prefix.clone());
    let Some(a) = support::standalone_store(&prefix).await else {
        return;
    };
    let b = support::standalone_store(&prefix).await.unwrap();
    push_caches_stay_exact(push_cached(a).await, push_cached(b).await).await;
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
    two_instances_share_revocation(connect().await, connect().await).await;
    // On Cluster, a script's PUBLISH reaches the subscribers of every node.
    push_caches_stay_exact(
        push_cached(connect().await).await,
        push_cached(connect().await).await,
    )
    .await;
}
