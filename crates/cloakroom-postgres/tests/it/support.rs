//! Stores on a schema of their own; the skip-or-fail rule, the shared server and the schema
//! cleanup come from the testkit.

use cloakroom_postgres::{PostgresConfig, PostgresStore};

pub(crate) use cloakroom_testkit::postgres::{SchemaGuard, admin, postgres_url, unique_schema};
pub(crate) use cloakroom_testkit::skip;

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
