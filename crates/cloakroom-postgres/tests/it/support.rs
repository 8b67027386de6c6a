//! The skip-or-fail rule and per-test schemas.

use cloakroom_postgres::{PostgresConfig, PostgresStore};

pub(crate) use cloakroom_core::conformance::skip;

pub(crate) fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test (or test run) uses.
pub(crate) fn unique_schema() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("cloakroom_test_{hex}")
}

pub(crate) fn config(schema: &str) -> PostgresConfig {
    PostgresConfig::from_url(&postgres_url())
        .expect("CLOAKROOM_TEST_POSTGRES_URL")
        .with_schema(schema)
        .unwrap()
        .with_pool_size(8)
        .unwrap()
}

/// A store on a fresh schema, or a skip if PostgreSQL is unreachable. The schema is dropped
/// when the returned guard is.
pub(crate) async fn store() -> Option<(PostgresStore, SchemaGuard)> {
    let schema = unique_schema();
    match PostgresStore::connect(config(&schema)).await {
        Ok(store) => Some((store, SchemaGuard(schema))),
        Err(e) if e.is_unavailable() => skip(format!(
            "PostgreSQL at {} is unreachable ({e})",
            postgres_url()
        )),
        Err(e) => panic!("connecting to PostgreSQL: {e}"),
    }
}

/// A direct connection, for what the tests inspect or break behind the store's back.
pub(crate) async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Drops its schema. Runs on a thread of its own with its own runtime, because a test's
/// runtime may already be shutting down when the guard is dropped.
pub(crate) struct SchemaGuard(pub(crate) String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = admin().await;
                let _ = client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await;
            });
        })
        .join();
    }
}
