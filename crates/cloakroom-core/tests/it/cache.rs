//! The near-cache: fast where it may be, never wrong where it must not be.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::{
    AuthMethod, Clock, ManualClock, MemoryStore, NearCache, NewSession, SessionManager, Timestamp,
    UserId, ValidationError,
};
use cloakroom_testkit::ObservedStore;

const FOREVER: Duration = Duration::from_secs(3600);

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

struct Two {
    store: Arc<ObservedStore>,
    clock: ManualClock,
    /// Instance A: no cache.
    plain: SessionManager,
    /// Instance B: a near-cache over the same store.
    cached: SessionManager,
}

fn two(poll: Duration) -> Two {
    let store = Arc::new(ObservedStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_700_000_000_000));
    let plain = SessionManager::from_arc(store.clone()).with_clock(clock.clone());
    let cached = SessionManager::from_arc(store.clone())
        .with_clock(clock.clone())
        .with_near_cache(NearCache::new(poll));
    Two {
        store,
        clock,
        plain,
        cached,
    }
}

#[tokio::test]
async fn cached_validations_do_not_reach_the_store() {
    let t = two(FOREVER);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    let loads = t.store.loads();
    for _ in 0..100 {
        assert_eq!(
            t.cached.validate(Some(&cookie)).await.unwrap().user_id,
            alice()
        );
    }
    assert_eq!(t.store.loads(), loads, "a cached session was loaded again");
    assert_eq!(t.cached.cached_sessions(), 1);
}

#[tokio::test]
async fn revocations_in_this_process_are_instant() {
    let t = two(FOREVER);
    let m = &t.cached;
    let a = m
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let b = m
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let c = m
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    for s in [&a, &b, &c] {
        m.validate(Some(&s.token.expose_cookie_value()))
            .await
            .unwrap();
    }
    m.revoke(&a.session.id).await.unwrap();
    assert!(matches!(
        m.validate(Some(&a.token.expose_cookie_value())).await,
        Err(ValidationError::Unknown)
    ));
    m.revoke_all_for_user(&alice(), Some(&c.session.id))
        .await
        .unwrap();
    assert!(matches!(
        m.validate(Some(&b.token.expose_cookie_value())).await,
        Err(ValidationError::Unknown)
    ));
    m.validate(Some(&c.token.expose_cookie_value()))
        .await
        .unwrap();
    let current = m
        .validate(Some(&c.token.expose_cookie_value()))
        .await
        .unwrap();
    let rotated = m.rotate(&current).await.unwrap();
    assert!(
        m.validate(Some(&c.token.expose_cookie_value()))
            .await
            .is_err(),
        "rotated-away token still cached"
    );
    m.validate(Some(&rotated.token.expose_cookie_value()))
        .await
        .unwrap();
    // Login over a cached cookie kills it too.
    let d = m
        .issue(
            NewSession::new(alice(), AuthMethod::password()),
            Some(&rotated.session.id),
        )
        .await
        .unwrap();
    assert!(
        m.validate(Some(&rotated.token.expose_cookie_value()))
            .await
            .is_err()
    );
    m.validate(Some(&d.token.expose_cookie_value()))
        .await
        .unwrap();
}

#[tokio::test]
async fn revocations_elsewhere_are_seen_within_the_poll_interval() {
    // A zero interval means "re-read the generation before every cached use": the bound at its
    // tightest, so a revocation elsewhere is refused on the very next request.
    let t = two(Duration::ZERO);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    t.plain.revoke(&issued.session.id).await.unwrap();
    assert!(matches!(
        t.cached.validate(Some(&cookie)).await,
        Err(ValidationError::Unknown)
    ));

    // With a long interval the cached copy is used until the next poll: that is the documented
    // staleness, and why the cache is opt-in.
    let t = two(FOREVER);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    t.plain.revoke(&issued.session.id).await.unwrap();
    assert!(
        t.cached.validate(Some(&cookie)).await.is_ok(),
        "within the interval the cache may be stale"
    );
}

#[tokio::test]
async fn data_changes_elsewhere_are_seen_within_the_poll_interval() {
    let t = two(Duration::ZERO);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    t.plain
        .update_data(&issued.session.id, |d| d.insert("theme", "dark"))
        .await
        .unwrap()
        .unwrap();
    let s = t.cached.validate(Some(&cookie)).await.unwrap();
    assert_eq!(
        s.data.get::<String>("theme").unwrap().as_deref(),
        Some("dark")
    );
    // And this instance's own updates are visible at once.
    t.cached
        .update_data(&issued.session.id, |d| d.insert("theme", "light"))
        .await
        .unwrap()
        .unwrap();
    let s = t.cached.validate(Some(&cookie)).await.unwrap();
    assert_eq!(
        s.data.get::<String>("theme").unwrap().as_deref(),
        Some("light")
    );
}

#[tokio::test]
async fn a_stale_expiry_is_checked_against_the_store() {
    let t = two(FOREVER);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    // The user keeps working through the other instance, which slides the idle expiry.
    t.clock.advance(Duration::from_secs(20 * 60));
    t.plain.validate(Some(&cookie)).await.unwrap();
    t.clock.advance(Duration::from_secs(20 * 60));
    // The cached copy says "idle for 40 minutes"; the store knows better.
    t.cached.validate(Some(&cookie)).await.unwrap();
    // And a session that really expired is refused.
    t.clock.advance(Duration::from_secs(31 * 60));
    assert!(matches!(
        t.cached.validate(Some(&cookie)).await,
        Err(ValidationError::IdleExpired)
    ));
}

#[tokio::test]
async fn touches_still_happen_and_refresh_the_cache() {
    let t = two(FOREVER);
    let issued = t
        .cached
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    let writes = t.store.writes();
    t.clock.advance(Duration::from_secs(61));
    let s = t.cached.validate(Some(&cookie)).await.unwrap();
    assert_eq!(s.last_seen_at, t.clock.now());
    assert_eq!(t.store.writes(), writes + 1);
    t.cached.validate(Some(&cookie)).await.unwrap();
    assert_eq!(
        t.store.writes(),
        writes + 1,
        "the refreshed entry is not touched again"
    );
}

#[tokio::test]
async fn a_store_that_cannot_be_asked_fails_closed() {
    let t = two(Duration::ZERO);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    t.cached.validate(Some(&cookie)).await.unwrap();
    t.store.set_unavailable(true);
    assert!(matches!(
        t.cached.validate(Some(&cookie)).await,
        Err(ValidationError::Store(_))
    ));
}

#[tokio::test]
async fn polls_are_rate_limited_by_the_interval() {
    let t = two(FOREVER);
    let issued = t
        .plain
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    for _ in 0..50 {
        t.cached.validate(Some(&cookie)).await.unwrap();
    }
    assert_eq!(t.store.generation_reads(), 1);
}

/// Regression guard for the subtle case: a validation loads the session, the session is
/// revoked (in this process) while that load is still in flight, and only then does the
/// validation put what it loaded into the cache. It must not stay there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_in_flight_during_a_revocation_is_not_cached() {
    let store = Arc::new(ObservedStore::new(MemoryStore::new()));
    let m = SessionManager::from_arc(store.clone()).with_near_cache(NearCache::new(FOREVER));
    let issued = m
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    let mut hold = store.hold_next_load();
    let slow = {
        let (m, cookie) = (m.clone(), cookie.clone());
        tokio::spawn(async move { m.validate(Some(&cookie)).await })
    };
    hold.entered().await;
    m.revoke(&issued.session.id).await.unwrap();
    hold.release();
    // The in-flight validation started before the revocation and may still answer "valid"…
    let _ = slow.await.unwrap();
    // …but nothing it loaded may outlive the revocation in the cache.
    assert!(matches!(
        m.validate(Some(&cookie)).await,
        Err(ValidationError::Unknown)
    ));
    assert_eq!(m.cached_sessions(), 0);
}
