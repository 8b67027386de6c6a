//! The skip-or-fail rule for tests that need a service (Redis, PostgreSQL, nginx, a browser…).
//!
//! A developer without Redis running should still be able to run `cargo test` and see which
//! tests did not run and why; CI must never pass because a service silently went missing.
//! So a test that cannot reach its service calls [`skip`], which prints the reason and lets the
//! test return — unless `CLOAKROOM_REQUIRE_SERVICES=1` is set (as `.ci/run` does), in which
//! case the test fails with that reason.

/// Whether a missing service (Redis, PostgreSQL, nginx, …) fails a test instead of skipping it:
/// `CLOAKROOM_REQUIRE_SERVICES=1`, as CI sets it.
pub fn services_required() -> bool {
    std::env::var("CLOAKROOM_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips a test that needs an unavailable service: prints why and returns `None` — or, when
/// [`services_required`], fails the test with the reason.
///
/// # Panics
/// Under `CLOAKROOM_REQUIRE_SERVICES=1`, by design.
pub fn skip<T>(reason: impl std::fmt::Display) -> Option<T> {
    assert!(
        !services_required(),
        "CLOAKROOM_REQUIRE_SERVICES=1 but {reason}"
    );
    eprintln!("skipping: {reason}");
    None
}
