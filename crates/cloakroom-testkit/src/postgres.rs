//! PostgreSQL for tests (feature `postgres`): the shared server, a schema per test, and its
//! cleanup.

/// The shared server: `CLOAKROOM_TEST_POSTGRES_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("CLOAKROOM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema name no other test (or test run) uses.
pub fn unique_schema() -> String {
    format!("cloakroom_test_{}", crate::random_hex())
}

/// A direct connection to [`postgres_url`], for what the tests inspect or break behind the
/// store's back.
///
/// # Panics
/// If the server cannot be reached: call it once a store has connected, or after a [`skip`]
/// check.
///
/// [`skip`]: crate::skip
pub async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to CLOAKROOM_TEST_POSTGRES_URL");
    tokio::spawn(conn);
    client
}

/// Drops its schema. Runs on a thread of its own with its own runtime, because a test's
/// runtime may already be shutting down when the guard is dropped.
#[derive(Debug)]
pub struct SchemaGuard(
    /// The schema to drop.
    pub String,
);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the cleanup");
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
