//! A store on the shared standalone Redis; the skip-or-fail rule, key-prefix cleanup and the
//! Redis servers and Clusters the tests start come from the testkit.

use cloakroom_redis::{RedisConfig, RedisStore};

pub(crate) use cloakroom_testkit::redis::{
    Cluster, PrefixGuard, Server, cli, dump, free_port, redis_server_available, redis_url,
    shared_cluster, unique_prefix, wait_bool,
};
pub(crate) use cloakroom_testkit::skip;

/// A store on the shared standalone Redis under a fresh prefix, or a skip.
pub(crate) async fn standalone_store(prefix: &str) -> Option<RedisStore> {
    let url = redis_url();
    let config = RedisConfig::standalone(&url)
        .expect("CLOAKROOM_TEST_REDIS_URL")
        .with_key_prefix(prefix)
        .unwrap();
    match RedisStore::connect(config).await {
        Ok(store) => Some(store),
        Err(e) if e.is_unavailable() => skip(format!("Redis at {url} is unreachable ({e})")),
        Err(e) => panic!("connecting to {url}: {e}"),
    }
}
