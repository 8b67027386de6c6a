//! The manager as a web layer sees it: typed reasons, throttled writes, lifetimes, fixation.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::{
    AuthMethod, Clock, Lifetime, ManualClock, MemoryStore, NewSession, Policy, SessionManager,
    SessionToken, Timestamp, UpdateError, UserId, ValidationError,
};
use cloakroom_testkit::ObservedStore;

fn setup() -> (Arc<ObservedStore>, SessionManager, ManualClock) {
    let store = Arc::new(ObservedStore::new(MemoryStore::new()));
    let clock = ManualClock::new(Timestamp::from_unix_millis(1_700_000_000_000));
    let manager = SessionManager::from_arc(store.clone()).with_clock(clock.clone());
    (store, manager, clock)
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

#[tokio::test]
async fn missing_and_malformed_cookies_never_reach_the_store() {
    let (store, manager, _) = setup();
    assert!(matches!(
        manager.validate(None).await,
        Err(ValidationError::Missing)
    ));
    for bad in [
        "",
        "x",
        "%00",
        &"A".repeat(44),
        &"A".repeat(4096),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        let err = manager.validate(Some(bad)).await.unwrap_err();
        assert!(
            matches!(err, ValidationError::Malformed(_)),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.label(), "malformed");
    }
    assert_eq!(store.loads(), 0);
}

#[tokio::test]
async fn validation_writes_at_most_once_per_touch_interval() {
    let (store, manager, clock) = setup();
    let issued = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let cookie = issued.token.expose_cookie_value();
    let after_issue = store.writes();
    for _ in 0..1000 {
        clock.advance(Duration::from_millis(50));
        manager.validate(Some(&cookie)).await.unwrap();
    }
    // 1000 requests over 50 s: inside one 60 s touch interval, so no write at all.
    assert_eq!(store.writes(), after_issue);
    clock.advance(Duration::from_secs(11));
    let s = manager.validate(Some(&cookie)).await.unwrap();
    assert_eq!(store.writes(), after_issue + 1);
    assert_eq!(s.last_seen_at, clock.now());
}

#[tokio::test]
async fn store_failure_fails_closed_with_a_typed_error() {
    let (store, manager, _) = setup();
    let issued = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    store.set_unavailable(true);
    let err = manager
        .validate(Some(&issued.token.expose_cookie_value()))
        .await
        .unwrap_err();
    match &err {
        ValidationError::Store(e) => {
            assert!(e.is_unavailable());
            assert_eq!(e.store(), "observed");
        }
        other => panic!("expected a store error, got {other:?}"),
    }
    assert_eq!(err.label(), "store_error");
    store.set_unavailable(false);
    manager
        .validate(Some(&issued.token.expose_cookie_value()))
        .await
        .unwrap();
}

#[tokio::test]
async fn login_over_a_planted_cookie_kills_it() {
    let (_, manager, _) = setup();
    // An attacker obtains a valid session (their own) and plants its cookie in the victim's
    // browser; the victim then logs in.
    let planted = manager
        .issue(
            NewSession::new(UserId::new("mallory").unwrap(), AuthMethod::password()),
            None,
        )
        .await
        .unwrap();
    let victim = manager
        .issue(
            NewSession::new(alice(), AuthMethod::password()),
            Some(&planted.session.id),
        )
        .await
        .unwrap();
    assert!(matches!(
        manager
            .validate(Some(&planted.token.expose_cookie_value()))
            .await,
        Err(ValidationError::Unknown)
    ));
    assert_ne!(victim.token, planted.token);
    assert_eq!(
        manager
            .validate(Some(&victim.token.expose_cookie_value()))
            .await
            .unwrap()
            .user_id,
        alice()
    );
}

#[tokio::test]
async fn remember_me_gets_the_persistent_lifetime() {
    let (_, manager, clock) = setup();
    let now = clock.now();
    let short = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let long = manager
        .issue(
            NewSession::new(alice(), AuthMethod::password()).remember(true),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        short.session.absolute_expires_at,
        now.saturating_add(Lifetime::STANDARD.absolute)
    );
    assert_eq!(
        short.session.idle_expires_at,
        now.saturating_add(Lifetime::STANDARD.idle)
    );
    assert_eq!(
        long.session.absolute_expires_at,
        now.saturating_add(Lifetime::REMEMBER_ME.absolute)
    );
    clock.advance(Duration::from_secs(24 * 3600));
    assert!(
        manager
            .validate(Some(&short.token.expose_cookie_value()))
            .await
            .is_err()
    );
    manager
        .validate(Some(&long.token.expose_cookie_value()))
        .await
        .unwrap();
}

#[tokio::test]
async fn custom_policy_applies() {
    let (store, _, clock) = setup();
    let manager = SessionManager::from_arc(store)
        .with_clock(clock.clone())
        .with_policy(Policy::default().with_standard(Lifetime {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(300),
        }));
    let issued = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(61));
    assert!(matches!(
        manager
            .validate(Some(&issued.token.expose_cookie_value()))
            .await,
        Err(ValidationError::IdleExpired)
    ));
}

#[tokio::test]
async fn unchanged_data_is_not_written_and_gone_sessions_are_reported() {
    let (store, manager, _) = setup();
    let issued = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    let before = store.writes();
    let n = manager
        .update_data(&issued.session.id, |d| d.as_map().len())
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(store.writes(), before);
    manager.revoke(&issued.session.id).await.unwrap();
    let err = manager
        .update_data(&issued.session.id, |d| d.insert("k", &1))
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::Gone));
}

#[tokio::test]
async fn expired_sessions_cannot_be_updated() {
    let (_, manager, clock) = setup();
    let issued = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    clock.advance(Lifetime::STANDARD.idle);
    let err = manager
        .update_data(&issued.session.id, |d| d.insert("k", &1))
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::Gone));
}

#[tokio::test]
async fn user_agents_are_bounded() {
    let (_, manager, _) = setup();
    let ua = "A".repeat(10_000);
    let issued = manager
        .issue(
            NewSession::new(alice(), AuthMethod::password()).user_agent(&ua),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        issued.session.user_agent.unwrap().len(),
        cloakroom_core::MAX_USER_AGENT_LEN
    );
}

#[tokio::test]
async fn sessions_are_listed_most_recent_first() {
    let (_, manager, clock) = setup();
    let first = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    let second = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
    manager
        .validate(Some(&first.token.expose_cookie_value()))
        .await
        .unwrap();
    let listed = manager.list_for_user(&alice()).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![first.session.id, second.session.id]
    );
    let _ = SessionToken::generate();
}

#[tokio::test]
async fn memory_store_cleans_its_user_index() {
    let store = MemoryStore::new();
    let clock = ManualClock::new(Timestamp::from_unix_millis(0));
    let manager = SessionManager::new(store.clone()).with_clock(clock.clone());
    let a = manager
        .issue(NewSession::new(alice(), AuthMethod::password()), None)
        .await
        .unwrap();
    manager
        .issue(
            NewSession::new(UserId::new("bob").unwrap(), AuthMethod::password()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(store.indexed_users(), 2);
    manager.revoke(&a.session.id).await.unwrap();
    assert_eq!(store.indexed_users(), 1);
    clock.advance(Lifetime::STANDARD.absolute);
    assert_eq!(manager.purge_expired().await.unwrap(), 1);
    assert_eq!(store.indexed_users(), 0);
    assert!(store.is_empty());
}
