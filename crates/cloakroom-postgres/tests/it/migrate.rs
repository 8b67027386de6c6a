//! Migrations: concurrent instances, re-runs, and a schema from the future.

use cloakroom_postgres::{PostgresStore, SCHEMA_VERSION};

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_each_step_once() {
    let Some((_probe, _probe_guard)) = support::store().await else {
        return;
    };
    let schema = support::unique_schema();
    let guard = support::SchemaGuard(schema.clone());
    // Four instances start at once on a schema that does not exist yet.
    let starts: Vec<_> = (0..4)
        .map(|_| tokio::spawn(PostgresStore::connect(support::config(&schema))))
        .collect();
    for s in starts {
        s.await.unwrap().expect("every instance starts");
    }
    let client = support::admin().await;
    let versions: Vec<i32> = client
        .query(
            &format!(
                "SELECT version FROM \"{}\".schema_migrations ORDER BY version",
                guard.0
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // A restart is a no-op.
    PostgresStore::connect(support::config(&schema))
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_build_is_refused() {
    let Some((store, guard)) = support::store().await else {
        return;
    };
    support::admin()
        .await
        .execute(
            &format!(
                "INSERT INTO \"{}\".schema_migrations (version) VALUES ($1)",
                guard.0
            ),
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = store.migrate().await.expect_err("too new");
    assert!(!err.is_unavailable(), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("supports up to")),
        "{err:?}"
    );
}
