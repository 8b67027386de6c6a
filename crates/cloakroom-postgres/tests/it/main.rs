//! Integration tests of the PostgreSQL store against a real server
//! (`CLOAKROOM_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`): the
//! conformance suite, concurrent migrations, two instances, dropped connections and an
//! unreachable server, and a latency probe. Every test uses a schema of its own, dropped at
//! the end. An unreachable server skips the tests unless `CLOAKROOM_REQUIRE_SERVICES=1`.
// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod fault;
mod migrate;
mod support;

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::{
    AuthMethod, CachedStore, NewSession, SessionManager, SessionStore, UserId, ValidationError,
};
use cloakroom_postgres::PostgresStore;
use cloakroom_testkit::conformance::sessions::push_caches_stay_exact;
use cloakroom_testkit::conformance::{Cached, Harness};

struct Postgres {
    store: PostgresStore,
    _schema: support::SchemaGuard,
}

#[async_trait]
impl Harness for Postgres {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.store.clone())
    }

    async fn dump(&self) -> Vec<u8> {
        dump_schema(self.store.schema()).await
    }
}

/// Every row of every table in `schema`, as PostgreSQL renders it (`bytea` as hex), with the
/// table names.
async fn dump_schema(schema: &str) -> Vec<u8> {
    let client = support::admin().await;
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
            &[&schema],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let table: String = t.get(0);
        out.extend(table.as_bytes());
        let rows = client
            .query(
                &format!("SELECT t::text FROM \"{schema}\".\"{table}\" t"),
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            out.extend(r.get::<_, String>(0).as_bytes());
        }
    }
    out
}

async fn postgres() -> Option<Postgres> {
    let (store, guard) = support::store().await?;
    Some(Postgres {
        store,
        _schema: guard,
    })
}

cloakroom_testkit::conformance_suite!(conformance_postgres, postgres());

/// `store` behind a push cache whose `LISTEN` is in place.
async fn push_cached(store: PostgresStore) -> CachedStore {
    cloakroom_testkit::cache::push_cache(Arc::new(store.clone()), |feed| {
        store.feed_invalidations(feed)
    })
    .await
}

async fn postgres_push() -> Option<Cached<Postgres>> {
    let harness = postgres().await?;
    let store = Arc::new(push_cached(harness.store.clone()).await);
    Some(Cached::new(harness, store))
}

cloakroom_testkit::conformance_suite!(conformance_postgres_push_cache, postgres_push());
cloakroom_testkit::conformance_suite!(conformance_postgres_exact_cache, async {
    postgres().await.map(Cached::exact)
});

/// Two instances with push caches over one schema: every change through one reaches the other
/// by `NOTIFY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_cached_instances_stay_exact() {
    let Some((a, guard)) = support::store().await else {
        return;
    };
    let b = PostgresStore::connect(support::config(&guard.0))
        .await
        .unwrap();
    push_caches_stay_exact(push_cached(a).await, push_cached(b).await).await;
}

/// Two instances, each with its own pool, over one schema: a revocation on one is refused by
/// the other on its next validate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_revocation() {
    let Some((a, guard)) = support::store().await else {
        return;
    };
    let b = PostgresStore::connect(support::config(&guard.0))
        .await
        .unwrap();
    let (first, second) = (SessionManager::new(a), SessionManager::new(b));
    let alice = UserId::new("alice").unwrap();
    let issued = first
        .issue(NewSession::new(alice.clone(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    second.validate(Some(&cookie)).await.unwrap();
    assert_eq!(first.revoke_all_for_user(&alice, None).await.unwrap(), 1);
    let err = second.validate(Some(&cookie)).await.unwrap_err();
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
}

struct Accounts {
    accounts: cloakroom_postgres::PostgresAccounts,
    _schema: support::SchemaGuard,
}

impl cloakroom_testkit::conformance::AccountHarness for Accounts {
    fn accounts(&self) -> Arc<dyn cloakroom_core::accounts::AccountStore> {
        Arc::new(self.accounts.clone())
    }

    fn second_factors(&self) -> Arc<dyn cloakroom_core::mfa::SecondFactorStore> {
        Arc::new(self.accounts.clone())
    }
}

async fn accounts() -> Option<Accounts> {
    let (store, guard) = support::store().await?;
    Some(Accounts {
        accounts: cloakroom_postgres::PostgresAccounts::new(store),
        _schema: guard,
    })
}

cloakroom_testkit::account_conformance_suite!(conformance_postgres_accounts, accounts());

struct Outbox {
    store: PostgresStore,
    _schema: support::SchemaGuard,
}

#[async_trait]
impl cloakroom_testkit::conformance::OutboxHarness for Outbox {
    fn outbox(&self) -> Arc<dyn cloakroom_core::mail::MailOutbox> {
        Arc::new(cloakroom_postgres::PostgresOutbox::new(self.store.clone()))
    }

    async fn dump(&self) -> Vec<u8> {
        dump_schema(self.store.schema()).await
    }
}

async fn outbox() -> Option<Outbox> {
    let (store, guard) = support::store().await?;
    Some(Outbox {
        store,
        _schema: guard,
    })
}

cloakroom_testkit::outbox_conformance_suite!(conformance_postgres_outbox, outbox());

struct Counters {
    store: PostgresStore,
    _schema: support::SchemaGuard,
}

impl cloakroom_testkit::conformance::CountersHarness for Counters {
    fn counters(&self) -> Arc<dyn cloakroom_core::throttle::BackoffCounters> {
        Arc::new(cloakroom_postgres::PostgresCounters::new(
            self.store.clone(),
        ))
    }
}

async fn counters() -> Option<Counters> {
    let (store, guard) = support::store().await?;
    Some(Counters {
        store,
        _schema: guard,
    })
}

cloakroom_testkit::counters_conformance_suite!(conformance_postgres_counters, counters());
