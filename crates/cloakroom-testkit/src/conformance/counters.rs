//! The [`BackoffCounters`] contract as tests, and
//! [`counters_conformance_suite!`](crate::counters_conformance_suite) to run them all against
//! one backend.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::Timestamp;
use cloakroom_core::throttle::{Backoff, BackoffCounters};

/// Counters under test, not shared with any other test.
pub trait CountersHarness: Send + Sync {
    /// The counters under test.
    fn counters(&self) -> Arc<dyn BackoffCounters>;
}

/// Generates one `#[tokio::test]` per counter check in a module named `$module`; `$setup`
/// evaluates to a future of `Option<impl CountersHarness>`.
#[macro_export]
macro_rules! counters_conformance_suite {
    ($module:ident, $setup:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(counters, $setup;
                free_failures_pass_then_waits_double_up_to_the_cap,
                a_quiet_spell_forgets_the_count,
                release_and_reset_give_attempts_back,
                counters_are_independent,
                parallel_attempts_never_pass_on_the_same_count,
                purge_keeps_counters_that_still_count
            );
        }
    };
}

const LIMITS: Backoff = Backoff {
    free: 3,
    base: Duration::from_secs(1),
    max: Duration::from_secs(8),
    forget: Duration::from_secs(3600),
};

/// Times near the real present (a store with its own expiry, Redis's TTLs, keeps what the test
/// writes for as long as it needs), from a base read once: `t(0)` is the same instant in every
/// call of the run.
fn t(secs: i64) -> Timestamp {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE
        .get_or_init(|| cloakroom_core::Clock::now(&cloakroom_core::SystemClock).as_unix_millis());
    Timestamp::from_unix_millis(base + secs * 1000)
}

fn name(h: &impl CountersHarness, n: &str) -> (Arc<dyn BackoffCounters>, String) {
    (h.counters(), format!("conformance:{n}"))
}

/// `free` failures pass; then each attempt waits `base` doubling per failure, up to `max`,
/// counted from the last failure; a refused attempt counts nothing.
pub async fn free_failures_pass_then_waits_double_up_to_the_cap(h: &impl CountersHarness) {
    let (c, n) = name(h, "curve");
    let t0 = t(0);
    for _ in 0..3 {
        assert_eq!(c.reserve(&n, &LIMITS, t0).await.expect("reserve"), None);
    }
    assert_eq!(
        c.reserve(&n, &LIMITS, t0).await.expect("reserve"),
        Some(Duration::from_secs(1)),
        "the fourth waits the base delay"
    );
    // Refused attempts counted nothing: after the wait, one more passes, then 2 s.
    let t1 = t0.saturating_add(Duration::from_secs(1));
    assert_eq!(c.reserve(&n, &LIMITS, t1).await.expect("reserve"), None);
    assert_eq!(
        c.reserve(&n, &LIMITS, t1).await.expect("reserve"),
        Some(Duration::from_secs(2))
    );
    let mut at = t1;
    for _ in 0..5 {
        at = at.saturating_add(Duration::from_secs(8));
        assert_eq!(c.reserve(&n, &LIMITS, at).await.expect("reserve"), None);
    }
    assert_eq!(
        c.reserve(&n, &LIMITS, at).await.expect("reserve"),
        Some(Duration::from_secs(8)),
        "the wait is capped"
    );
}

/// A count whose last failure is `forget` old starts again.
pub async fn a_quiet_spell_forgets_the_count(h: &impl CountersHarness) {
    let (c, n) = name(h, "quiet");
    for _ in 0..4 {
        let _ = c.reserve(&n, &LIMITS, t(0)).await.expect("reserve");
    }
    assert!(
        c.reserve(&n, &LIMITS, t(0))
            .await
            .expect("reserve")
            .is_some()
    );
    let later = t(0).saturating_add(LIMITS.forget);
    for _ in 0..3 {
        assert_eq!(c.reserve(&n, &LIMITS, later).await.expect("reserve"), None);
    }
}

/// `release` takes one attempt back; `reset` all of them.
pub async fn release_and_reset_give_attempts_back(h: &impl CountersHarness) {
    let (c, n) = name(h, "back");
    for _ in 0..3 {
        c.reserve(&n, &LIMITS, t(0)).await.expect("reserve");
    }
    c.release(&n).await.expect("release");
    assert_eq!(c.reserve(&n, &LIMITS, t(0)).await.expect("reserve"), None);
    assert!(
        c.reserve(&n, &LIMITS, t(0))
            .await
            .expect("reserve")
            .is_some()
    );
    c.reset(&n).await.expect("reset");
    for _ in 0..3 {
        assert_eq!(c.reserve(&n, &LIMITS, t(0)).await.expect("reserve"), None);
    }
    // Unknown names are not errors; a release at one leaves nothing behind.
    c.release("conformance:unknown").await.expect("release");
    c.reset("conformance:unknown").await.expect("reset");
    c.reset(&n).await.expect("reset");
    c.reserve(&n, &LIMITS, t(0)).await.expect("reserve");
    c.release(&n).await.expect("release");
    for _ in 0..3 {
        assert_eq!(c.reserve(&n, &LIMITS, t(0)).await.expect("reserve"), None);
    }
}

/// Each name counts on its own.
pub async fn counters_are_independent(h: &impl CountersHarness) {
    let (c, a) = name(h, "a");
    let b = format!("{a}-other");
    for _ in 0..3 {
        c.reserve(&a, &LIMITS, t(0)).await.expect("reserve");
    }
    assert!(
        c.reserve(&a, &LIMITS, t(0))
            .await
            .expect("reserve")
            .is_some()
    );
    assert_eq!(c.reserve(&b, &LIMITS, t(0)).await.expect("reserve"), None);
}

/// Of 20 attempts at once (as from several instances), exactly the free ones pass.
pub async fn parallel_attempts_never_pass_on_the_same_count(h: &impl CountersHarness) {
    let (c, n) = name(h, "parallel");
    let attempts = (0..20).map(|_| {
        let (c, n) = (c.clone(), n.clone());
        tokio::spawn(async move { c.reserve(&n, &LIMITS, t(0)).await.expect("reserve") })
    });
    let mut passed = 0;
    for a in attempts {
        if a.await.expect("task").is_none() {
            passed += 1;
        }
    }
    assert_eq!(passed, 3, "exactly the free failures pass");
}

/// A purge drops only counters whose failures are forgotten.
pub async fn purge_keeps_counters_that_still_count(h: &impl CountersHarness) {
    let (c, n) = name(h, "purge");
    for _ in 0..4 {
        let _ = c.reserve(&n, &LIMITS, t(0)).await.expect("reserve");
    }
    // Half the forgetting time later, the count still holds the attempt back.
    let half = t(0).saturating_add(LIMITS.forget / 2);
    assert_eq!(c.purge_forgotten(half).await.expect("purge"), 0);
    assert!(
        c.reserve(&n, &LIMITS, t(0))
            .await
            .expect("reserve")
            .is_some(),
        "still counting after a purge"
    );
    // Once forgotten, a store that purges (one without its own expiry) drops the counter: the
    // count is gone even for an attempt dated before the forgetting time.
    let purged = c
        .purge_forgotten(t(0).saturating_add(LIMITS.forget))
        .await
        .expect("purge");
    if purged > 0 {
        assert_eq!(purged, 1);
        assert_eq!(c.reserve(&n, &LIMITS, t(0)).await.expect("reserve"), None);
    }
}
