//! Creates racing "log out everywhere".
//!
//! Checked for every create: one acknowledged before the revoke-all started never survives it
//! (the contract), a refused one leaves nothing behind, and no record is ever left without its
//! index entry, nor an entry without its record. Across the run, some creates must have been
//! caught by the revocation epoch — a login in flight while "log out everywhere" ran, whose
//! index entry landed after the revoke read the index. Without the epoch those would survive
//! the revoke-all that started before they finished; with it they are refused and removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloakroom_core::{
    AuthMethod, DeleteScope, MemoryStore, NewSession, Session, SessionManager, SessionStore,
    StoreError, UserId,
};
use cloakroom_redis::{RedisConfig, RedisStore};
use redis::aio::ConnectionLike;

use crate::support;

const ROUNDS: u64 = 12;
const CREATORS: usize = 6;
const PER_CREATOR: usize = 12;

/// A session record as `issue` would build it, without storing it anywhere that matters.
async fn fresh_session(user: &UserId) -> Session {
    SessionManager::new(MemoryStore::new())
        .issue(NewSession::new(user.clone(), AuthMethod::password()), None)
        .await
        .unwrap()
        .session
}

async fn hammer<C>(stores: [RedisStore; 2], mut raw: C, prefix: &str)
where
    C: ConnectionLike + Send,
{
    // One global order of events: a create's acknowledgement and a revoke's start each take
    // the next number, so "acknowledged before the revoke started" is a comparison.
    let clock = Arc::new(AtomicU64::new(1));
    let (mut interleaved, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let user = UserId::new(format!("racer-{round}")).unwrap();
        let mut creators = tokio::task::JoinSet::new();
        for c in 0..CREATORS {
            let store = stores[c % 2].clone();
            let (user, clock) = (user.clone(), clock.clone());
            creators.spawn(async move {
                let mut out = Vec::new();
                for _ in 0..PER_CREATOR {
                    let s = fresh_session(&user).await;
                    let acked = match store.create(&s).await {
                        Ok(()) => Some(clock.fetch_add(1, Ordering::SeqCst)),
                        Err(StoreError::RevokedConcurrently { .. }) => None,
                        Err(e) => panic!("create failed: {e}"),
                    };
                    out.push((s.id, acked));
                }
                out
            });
        }
        let revoker = {
            let (store, user, clock) = (
                stores[round as usize % 2].clone(),
                user.clone(),
                clock.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1 + round % 6)).await;
                let started = clock.fetch_add(1, Ordering::SeqCst);
                store
                    .delete_for_user(&user, DeleteScope::All)
                    .await
                    .unwrap();
                started
            })
        };
        let mut created = Vec::new();
        while let Some(r) = creators.join_next().await {
            created.extend(r.unwrap());
        }
        let revoke_started = revoker.await.unwrap();

        let index = format!("{prefix}{{u:{user}}}:idx");
        let (mut before, mut after) = (0, 0);
        for (id, acked) in &created {
            let stored = stores[0].load(id).await.unwrap();
            match acked {
                Some(t) if *t < revoke_started => {
                    before += 1;
                    assert!(
                        stored.is_none(),
                        "round {round}: a session acknowledged before the revoke-all survived it"
                    );
                }
                Some(_) => after += 1,
                None => {
                    refused += 1;
                    assert!(
                        stored.is_none(),
                        "round {round}: a refused create left its record"
                    );
                }
            }
            let indexed: Option<f64> = redis::cmd("ZSCORE")
                .arg(&index)
                .arg(id.to_hex())
                .query_async(&mut raw)
                .await
                .unwrap();
            assert_eq!(
                stored.is_some(),
                indexed.is_some(),
                "round {round}: record and index entry disagree (orphan)"
            );
        }
        let members: u64 = redis::cmd("ZCARD")
            .arg(&index)
            .query_async(&mut raw)
            .await
            .unwrap();
        let records = {
            let mut n = 0;
            for (id, _) in &created {
                n += u64::from(stores[1].load(id).await.unwrap().is_some());
            }
            n
        };
        assert_eq!(
            members, records,
            "round {round}: index entries without records"
        );
        if before > 0 && after + refused > 0 {
            interleaved += 1;
        }
        stores[0]
            .delete_for_user(&user, DeleteScope::All)
            .await
            .unwrap();
    }
    eprintln!(
        "race: {interleaved} of {ROUNDS} rounds interleaved creates with the revoke; \
         {refused} creates refused as RevokedConcurrently"
    );
    // A race test whose revoke never landed among the creates tests nothing.
    assert!(
        interleaved > 0,
        "the revoke-all never overlapped the creates"
    );
    assert!(
        refused > 0,
        "no create was ever refused: the race window was never hit, or the epoch check is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_racing_revoke_all_standalone() {
    let prefix = support::unique_prefix();
    let _cleanup = support::PrefixGuard(prefix.clone());
    let Some(a) = support::standalone_store(&prefix).await else {
        return;
    };
    let b = support::standalone_store(&prefix).await.unwrap();
    let raw = redis::Client::open(support::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    hammer([a, b], raw, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_racing_revoke_all_cluster() {
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
    let raw = redis::cluster::ClusterClient::new(cluster.seeds())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    hammer([connect().await, connect().await], raw, &prefix).await;
}
