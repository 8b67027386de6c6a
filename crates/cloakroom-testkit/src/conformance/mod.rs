//! The store conformance suites: the [`SessionStore`], [`AccountStore`] and [`MailOutbox`]
//! contracts as executable tests.
//!
//! A backend crate runs the whole session suite with one line in its integration tests:
//!
//! ```ignore
//! cloakroom_testkit::conformance_suite!(conformance_sqlite_memory, harness());
//! ```
//!
//! where `harness()` is an async expression yielding `Option<impl Harness>`, a fresh and
//! isolated store per test (`None` skips the test, for services that are not running; see
//! [`skip`](crate::skip)). Every generated test lives in the named module, so its name contains
//! "conformance" and the backend. The suite starts its manual clock at the real current time
//! and only moves it forward, so stores with their own expiry (Redis TTLs) behave
//! realistically. [`account_conformance_suite!`](crate::account_conformance_suite) does the
//! same for account stores, and [`outbox_conformance_suite!`](crate::outbox_conformance_suite)
//! for mail outboxes, [`counters_conformance_suite!`](crate::counters_conformance_suite) for
//! the throttle's shared counters.
//!
//! Each check is also a public `async fn` taking the harness, for a backend that wants to run
//! one of them under conditions of its own (a failover, a slow network).
//!
//! [`SessionStore`]: cloakroom_core::SessionStore
//! [`AccountStore`]: cloakroom_core::accounts::AccountStore
//! [`MailOutbox`]: cloakroom_core::mail::MailOutbox

pub mod accounts;
pub mod counters;
pub mod outbox;
pub mod sessions;

pub use accounts::AccountHarness;
pub use counters::CountersHarness;
pub use outbox::OutboxHarness;
pub use sessions::{Cached, Harness};

use cloakroom_core::{AuthMethod, IssuedSession, NewSession, SessionManager, UserId};

pub(crate) fn user(name: &str) -> UserId {
    UserId::new(name).expect("valid test user id")
}

pub(crate) async fn issue(manager: &SessionManager, user_id: &UserId) -> IssuedSession {
    manager
        .issue(
            NewSession::new(user_id.clone(), AuthMethod::password()).user_agent("conformance"),
            None,
        )
        .await
        .expect("issue")
}
