//! Integration tests of cloakroom-core: the store conformance suite on the memory store, and
//! the manager's behaviour as a web layer would observe it.
// A panic is how a test fails, with its location; helpers outside #[test] may unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Test modules share helpers with `pub`; there is no API to keep tidy here.
#![allow(unreachable_pub)]

mod cache;
mod manager;

use std::sync::Arc;

use async_trait::async_trait;
use cloakroom_core::{MemoryStore, SessionStore};
use cloakroom_testkit::conformance::Harness;

struct Memory(MemoryStore);

#[async_trait]
impl Harness for Memory {
    fn store(&self) -> Arc<dyn SessionStore> {
        Arc::new(self.0.clone())
    }

    async fn dump(&self) -> Vec<u8> {
        self.0.dump()
    }
}

async fn memory() -> Option<Memory> {
    Some(Memory(MemoryStore::new()))
}

cloakroom_testkit::conformance_suite!(conformance_memory, memory());
// Through an exact cache (as the server runs the memory store only in tests; the contract must
// hold through any cache all the same).
cloakroom_testkit::conformance_suite!(conformance_memory_exact_cache, async {
    memory()
        .await
        .map(cloakroom_testkit::conformance::Cached::exact)
});
