//! Cloakroom's test support, in one place: the store conformance suites, a store wrapper that
//! counts and fails on cue, a browser-like HTTP client, throwaway Redis and PostgreSQL, and the
//! rule for tests whose service is missing.
//!
//! Not a product crate (`publish = false`): the crates of this workspace, and authors of
//! their own stores, take it as a dev-dependency. Panicking is how it reports a failure, since
//! a panic is how a test fails.
//!
//! # Run the conformance suite against your own store
//!
//! Every store in this workspace — memory, SQLite, Redis (standalone and Cluster), PostgreSQL —
//! passes the same suite: create never overwrites, a revoked session is never written back,
//! concurrent updates lose nothing, the per-user index never leaks, no raw token is ever
//! stored, and the rest of the [`SessionStore`](cloakroom_core::SessionStore) contract. A store
//! written outside this workspace gets the whole contract checked the same way, with one
//! line per configuration. Depend on the testkit from the repository:
//!
//! ```toml
//! [dev-dependencies]
//! cloakroom-testkit = { git = "https://github.com/cloakroom/cloakroom" }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! async-trait = "0.1"
//! ```
//!
//! implement [`conformance::Harness`] for a fresh, isolated store (its own key prefix, schema
//! or file), and name the suite in an integration test, for example `tests/conformance.rs`:
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use cloakroom_core::{MemoryStore, SessionStore};
//! use cloakroom_testkit::conformance::Harness;
//!
//! /// Stands for your store.
//! struct MyStore(MemoryStore);
//!
//! #[async_trait]
//! impl Harness for MyStore {
//!     fn store(&self) -> Arc<dyn SessionStore> {
//!         Arc::new(self.0.clone())
//!     }
//!
//!     /// Everything the store holds: every key, record and index entry.
//!     async fn dump(&self) -> Vec<u8> {
//!         self.0.dump()
//!     }
//! }
//!
//! /// A fresh store per test, or `None` (through `cloakroom_testkit::skip`) when the
//! /// service it needs is not running.
//! async fn my_store() -> Option<MyStore> {
//!     Some(MyStore(MemoryStore::new()))
//! }
//!
//! // One `#[tokio::test]` per check, in a module named `conformance_my_store`.
//! cloakroom_testkit::conformance_suite!(conformance_my_store, my_store());
//! # fn main() {}
//! ```
//!
//! `cargo test conformance` then runs every check against the store. An account store does
//! the same with [`conformance::AccountHarness`] and [`account_conformance_suite!`], a mail
//! outbox with [`conformance::OutboxHarness`] and [`outbox_conformance_suite!`]. Each check is
//! also a public function in [`conformance::sessions`], [`conformance::accounts`] and
//! [`conformance::outbox`], to run under conditions of your own (during a failover, say).
//!
//! # Missing services: skip, or fail in CI
//!
//! A test that needs a service it cannot reach calls [`skip`], which prints why and returns
//! `None` so the test can return early. With `CLOAKROOM_REQUIRE_SERVICES=1` (as CI sets it)
//! [`skip`] fails the test instead, so a CI run never passes because Redis was down.
//!
//! # What else is here
//!
//! * [`ObservedStore`]: wraps a store to count its reads and writes, hold a load open
//!   mid-flight, or fail every call as unavailable.
//! * [`latency::validate_latency`]: the store crates' latency probe (a measurement, not a
//!   test).
//!
//! # Features
//!
//! Helpers that need a driver are behind a feature, so a store author who only runs the suites
//! builds no database client and no HTTP stack:
//!
//! * `http` — module `http`: a browser-like client (same-origin headers, a cookie jar for
//!   the session cookie, CSRF tokens) for tests over real HTTP.
//! * `redis` — module `redis`: per-test key prefixes on the shared Redis
//!   (`CLOAKROOM_TEST_REDIS_URL`) removed afterwards, and `redis-server` processes and 6-node
//!   Clusters started by the tests, which never outlive the test binary.
//! * `postgres` — module `postgres`: a schema per test on the shared PostgreSQL
//!   (`CLOAKROOM_TEST_POSTGRES_URL`), dropped afterwards.

// Test support: a failed expectation is how a test fails, with its message.
#![allow(clippy::expect_used)]

pub mod cache;
pub mod conformance;
#[cfg(feature = "http")]
pub mod http;
pub mod latency;
mod observed;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
mod services;

pub use observed::{LoadHold, ObservedStore};
pub use services::{services_required, skip};

/// Twelve random hex digits, for names no other test (or test run) uses.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
