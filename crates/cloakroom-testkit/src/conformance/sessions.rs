//! The [`SessionStore`] contract as tests, and [`conformance_suite!`](crate::conformance_suite)
//! to run them all against one backend.

// Test support: a failed expectation is how a conformance test fails, with its message.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_core::link::LinkId;
use cloakroom_core::{
    AuthMethod, Clock, DeleteScope, IssuedSession, Lifetime, ManualClock, NewSession, Policy,
    SaveOutcome, Session, SessionHandle, SessionManager, SessionStore, SessionToken, StoreError,
    UpdateError, UserId, ValidationError,
};

use super::{issue, user};

/// A backend under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The store under test: empty when the harness was made, and not shared with any other
    /// test (its own key prefix, schema or file).
    fn store(&self) -> Arc<dyn SessionStore>;

    /// Everything the backend holds for this store, as a query would see it: every record,
    /// index entry, key name and value, concatenated. Used to prove that purged sessions leave
    /// no index entries behind.
    async fn dump(&self) -> Vec<u8>;

    /// Every byte the backend has written anywhere for this store — for a file-backed store,
    /// the files themselves, including free pages and journals. Used to prove that no raw
    /// token is ever written. Defaults to [`dump`](Self::dump).
    async fn dump_raw(&self) -> Vec<u8> {
        self.dump().await
    }
}

/// Generates one `#[tokio::test]` per conformance check in a module named `$module`.
///
/// `$setup` is an expression evaluating to a future of `Option<impl Harness>`; it is evaluated
/// afresh for every test.
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $setup:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(sessions, $setup;
                create_never_overwrites,
                load_of_unknown_id_is_none,
                save_after_delete_does_not_resurrect,
                revoked_session_is_not_written_back_by_a_slow_update,
                concurrent_updates_lose_nothing,
                version_conflict_is_detected,
                save_never_changes_identity,
                touch_respects_absolute_expiry_and_never_moves_back,
                touch_never_creates,
                idle_expiry_with_manual_clock,
                absolute_expiry_with_manual_clock,
                delete_reports_existence,
                rotate_replaces_the_old_session,
                list_and_revoke_for_user,
                users_do_not_see_each_others_sessions,
                expired_sessions_are_not_listed,
                purge_removes_expired_sessions_and_their_index_entries,
                ten_thousand_sessions_for_one_user,
                raw_token_never_appears_in_stored_data,
                two_managers_share_revocation,
                consumed_links_are_used_once,
                concurrent_uses_of_a_link_have_one_winner,
                consumed_links_disappear_after_expiry,
                revocation_epoch_moves_with_every_revoke_all
            );
        }
    };
}

/// One `#[tokio::test]` per check named, each calling `conformance::$checks::$name` with a
/// harness from `$setup`; shared by both suites' macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($checks:ident, $setup:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(harness) = $setup.await else { return };
                $crate::conformance::$checks::$name(&harness).await;
            }
        )*
    };
}

fn setup(h: &impl Harness) -> (Arc<dyn SessionStore>, SessionManager, ManualClock) {
    let store = h.store();
    let clock = ManualClock::starting_now();
    let manager = SessionManager::from_arc(store.clone()).with_clock(clock.clone());
    (store, manager, clock)
}

/// `create` never overwrites an existing record.
pub async fn create_never_overwrites(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let original = issue(&manager, &user("alice")).await.session;
    let mut impostor = original.clone();
    impostor.user_id = user("mallory");
    impostor.data.insert("role", "admin").expect("small data");
    let err = store
        .create(&impostor)
        .await
        .expect_err("create over an existing id must fail");
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    let stored = store
        .load(&original.id)
        .await
        .expect("load")
        .expect("still there");
    assert_eq!(*stored, original);
    assert!(
        store
            .list_for_user(&user("mallory"), manager.now())
            .await
            .expect("list")
            .is_empty()
    );
}

/// Loading an id that was never created gives `None`, not an error.
pub async fn load_of_unknown_id_is_none(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let never = SessionToken::generate();
    assert_eq!(store.load(&never.id()).await.expect("load"), None);
    let err = manager
        .validate(Some(&never.expose_cookie_value()))
        .await
        .expect_err("unknown");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
}

/// `save` after `delete` reports `NotFound` and does not bring the session back.
pub async fn save_after_delete_does_not_resurrect(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let issued = issue(&manager, &user("alice")).await;
    let mut s = issued.session;
    assert!(store.delete(&s.id).await.expect("delete"));
    s.data.insert("late", &true).expect("small data");
    assert_eq!(store.save(&s).await.expect("save"), SaveOutcome::NotFound);
    assert_eq!(store.load(&s.id).await.expect("load"), None);
    assert!(
        store
            .list_for_user(&s.user_id, manager.now())
            .await
            .expect("list")
            .is_empty()
    );
    let err = manager
        .validate(Some(&issued.token.expose_cookie_value()))
        .await
        .expect_err("revoked");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
}

/// A request that loaded the session before it was revoked cannot write it back.
pub async fn revoked_session_is_not_written_back_by_a_slow_update(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let issued = issue(&manager, &user("alice")).await;
    let id = issued.session.id;
    let mut revoked_midway = false;
    let result = manager
        .update_data(&id, |data| {
            if !revoked_midway {
                revoked_midway = true;
                // "Log out everywhere" lands while this request is between its load and its save.
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(store.delete(&id))
                })
                .expect("delete");
            }
            data.insert("cart", &[1, 2, 3]).expect("small data");
        })
        .await;
    assert!(matches!(result, Err(UpdateError::Gone)), "{result:?}");
    assert_eq!(store.load(&id).await.expect("load"), None);
}

/// 100 concurrent read-modify-write updates of one session all land.
pub async fn concurrent_updates_lose_nothing(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let id = issue(&manager, &user("alice")).await.session.id;
    let mut tasks = Vec::new();
    for i in 0..100u32 {
        let manager = manager.clone();
        tasks.push(tokio::spawn(async move {
            manager
                .update_data(&id, |data| {
                    let n: u32 = data.get("counter").expect("u32").unwrap_or(0);
                    data.insert("counter", &(n + 1)).expect("small data");
                    data.insert(&format!("task{i}"), &i).expect("small data");
                })
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("update");
    }
    let session = store.load(&id).await.expect("load").expect("present");
    assert_eq!(session.data.get::<u32>("counter").expect("u32"), Some(100));
    for i in 0..100u32 {
        assert_eq!(
            session.data.get::<u32>(&format!("task{i}")).expect("u32"),
            Some(i)
        );
    }
    assert_eq!(session.version, 101);
}

/// Two saves of the same version: the first wins, the second is refused and writes nothing.
pub async fn version_conflict_is_detected(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let s = issue(&manager, &user("alice")).await.session;
    let mut a = Session::clone(&store.load(&s.id).await.expect("load").expect("present"));
    let mut b = a.clone();
    a.data.insert("writer", "a").expect("small data");
    b.data.insert("writer", "b").expect("small data");
    assert_eq!(store.save(&a).await.expect("save a"), SaveOutcome::Saved);
    assert_eq!(
        store.save(&b).await.expect("save b"),
        SaveOutcome::VersionConflict
    );
    let stored = store.load(&s.id).await.expect("load").expect("present");
    assert_eq!(
        stored
            .data
            .get::<String>("writer")
            .expect("string")
            .as_deref(),
        Some("a")
    );
    assert_eq!(stored.version, s.version + 1);
    // A save at the new version goes through.
    let mut c = Session::clone(&stored);
    c.data.insert("writer", "c").expect("small data");
    assert_eq!(store.save(&c).await.expect("save c"), SaveOutcome::Saved);
    assert_eq!(
        store
            .load(&s.id)
            .await
            .expect("load")
            .expect("present")
            .version,
        s.version + 2
    );
}

/// `save` cannot move a session to another user or change its public handle.
pub async fn save_never_changes_identity(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let s = issue(&manager, &user("alice")).await.session;
    let mut hijack = s.clone();
    hijack.user_id = user("mallory");
    hijack.handle = SessionHandle::generate();
    hijack.data.insert("x", &1).expect("small data");
    assert_eq!(store.save(&hijack).await.expect("save"), SaveOutcome::Saved);
    let stored = store.load(&s.id).await.expect("load").expect("present");
    assert_eq!(stored.user_id, s.user_id);
    assert_eq!(stored.handle, s.handle);
    assert_eq!(stored.data.get::<i32>("x").expect("i32"), Some(1));
    let now = manager.now();
    assert_eq!(
        store
            .list_for_user(&user("alice"), now)
            .await
            .expect("list")
            .len(),
        1
    );
    assert!(
        store
            .list_for_user(&user("mallory"), now)
            .await
            .expect("list")
            .is_empty()
    );
}

/// `touch` clamps to the absolute expiry, never moves times backwards, keeps the version.
pub async fn touch_respects_absolute_expiry_and_never_moves_back(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let s = issue(&manager, &user("alice")).await.session;
    let now = manager.now();
    let far = s
        .absolute_expires_at
        .saturating_add(Duration::from_secs(3600));
    assert!(store.touch(&s.id, now, far).await.expect("touch"));
    let stored = store.load(&s.id).await.expect("load").expect("present");
    assert_eq!(stored.idle_expires_at, s.absolute_expires_at);
    assert_eq!(stored.version, s.version);
    // A delayed, older touch does not shorten anything.
    let past = now.saturating_sub(Duration::from_secs(600));
    assert!(store.touch(&s.id, past, past).await.expect("touch"));
    let again = store.load(&s.id).await.expect("load").expect("present");
    assert_eq!(again.idle_expires_at, s.absolute_expires_at);
    assert_eq!(again.last_seen_at, now);
}

/// `touch` of a missing session reports `false` and creates nothing.
pub async fn touch_never_creates(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let s = issue(&manager, &user("alice")).await.session;
    store.delete(&s.id).await.expect("delete");
    let now = manager.now();
    assert!(
        !store
            .touch(&s.id, now, now.saturating_add(Duration::from_secs(60)))
            .await
            .expect("touch")
    );
    assert_eq!(store.load(&s.id).await.expect("load"), None);
}

/// Activity slides the idle expiry; inactivity past it ends the session.
pub async fn idle_expiry_with_manual_clock(h: &impl Harness) {
    let (_, manager, clock) = setup(h);
    let issued = issue(&manager, &user("alice")).await;
    let cookie = issued.token.expose_cookie_value();
    let idle = Lifetime::STANDARD.idle;
    for _ in 0..3 {
        clock.advance(idle - Duration::from_secs(60));
        manager
            .validate(Some(&cookie))
            .await
            .expect("active session stays valid");
    }
    clock.advance(idle + Duration::from_secs(1));
    let err = manager.validate(Some(&cookie)).await.expect_err("idle");
    assert!(matches!(err, ValidationError::IdleExpired), "{err:?}");
}

/// However busy, a session ends at its absolute expiry.
pub async fn absolute_expiry_with_manual_clock(h: &impl Harness) {
    let (_, manager, clock) = setup(h);
    let issued = issue(&manager, &user("alice")).await;
    let cookie = issued.token.expose_cookie_value();
    let absolute = issued.session.absolute_expires_at;
    while clock.now().saturating_add(Duration::from_secs(20 * 60)) < absolute {
        clock.advance(Duration::from_secs(20 * 60));
        let s = manager
            .validate(Some(&cookie))
            .await
            .expect("busy session stays valid");
        assert!(s.idle_expires_at <= absolute);
    }
    clock.set(absolute);
    let err = manager.validate(Some(&cookie)).await.expect_err("absolute");
    assert!(matches!(err, ValidationError::AbsoluteExpired), "{err:?}");
}

/// `delete` says whether there was something to delete.
pub async fn delete_reports_existence(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let s = issue(&manager, &user("alice")).await.session;
    assert!(store.delete(&s.id).await.expect("delete"));
    assert!(!store.delete(&s.id).await.expect("delete again"));
    assert!(
        !store
            .delete(&SessionToken::generate().id())
            .await
            .expect("delete unknown")
    );
}

/// Rotation kills the old token and keeps the data; the index follows.
pub async fn rotate_replaces_the_old_session(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let alice = user("alice");
    let old = issue(&manager, &alice).await;
    manager
        .update_data(&old.session.id, |d| d.insert("theme", "dark"))
        .await
        .expect("update")
        .expect("small");
    let current = store
        .load(&old.session.id)
        .await
        .expect("load")
        .expect("present");
    let new = manager.rotate(&current).await.expect("rotate");
    assert_ne!(new.session.id, old.session.id);
    assert_ne!(new.session.csrf_secret, old.session.csrf_secret);
    assert_eq!(
        new.session.absolute_expires_at,
        old.session.absolute_expires_at
    );
    assert!(
        manager
            .validate(Some(&old.token.expose_cookie_value()))
            .await
            .is_err()
    );
    let s = manager
        .validate(Some(&new.token.expose_cookie_value()))
        .await
        .expect("new valid");
    assert_eq!(
        s.data.get::<String>("theme").expect("string").as_deref(),
        Some("dark")
    );
    let listed = manager.list_for_user(&alice).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, new.session.id);
    // Login over a cookie that names nothing still works (and creates only the new session).
    let unknown = SessionToken::generate().id();
    manager
        .issue(
            NewSession::new(alice.clone(), AuthMethod::password()),
            Some(&unknown),
        )
        .await
        .expect("issue replacing unknown");
    assert_eq!(manager.list_for_user(&alice).await.expect("list").len(), 2);
}

/// List, revoke one by handle, revoke all others, revoke all.
pub async fn list_and_revoke_for_user(h: &impl Harness) {
    let (_, manager, _) = setup(h);
    let alice = user("alice");
    let a: Vec<_> = futures_join(&manager, &alice, 4).await;
    assert_eq!(manager.list_for_user(&alice).await.expect("list").len(), 4);

    assert!(
        manager
            .revoke_handle(&alice, &a[0].session.handle)
            .await
            .expect("revoke one")
    );
    assert!(
        !manager
            .revoke_handle(&alice, &a[0].session.handle)
            .await
            .expect("again")
    );
    assert!(
        manager
            .validate(Some(&a[0].token.expose_cookie_value()))
            .await
            .is_err()
    );
    assert_eq!(manager.list_for_user(&alice).await.expect("list").len(), 3);

    let current = &a[1];
    let n = manager
        .revoke_all_for_user(&alice, Some(&current.session.id))
        .await
        .expect("others");
    assert_eq!(n, 2);
    let listed = manager.list_for_user(&alice).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![current.session.id]
    );
    manager
        .validate(Some(&current.token.expose_cookie_value()))
        .await
        .expect("current survives");
    for other in &a[2..] {
        assert!(
            manager
                .validate(Some(&other.token.expose_cookie_value()))
                .await
                .is_err()
        );
    }

    assert_eq!(
        manager
            .revoke_all_for_user(&alice, None)
            .await
            .expect("all"),
        1
    );
    assert!(
        manager
            .list_for_user(&alice)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        manager
            .validate(Some(&current.token.expose_cookie_value()))
            .await
            .is_err()
    );
    assert_eq!(
        manager
            .revoke_all_for_user(&alice, None)
            .await
            .expect("none left"),
        0
    );
}

async fn futures_join(
    manager: &SessionManager,
    u: &UserId,
    n: usize,
) -> Vec<cloakroom_core::IssuedSession> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(issue(manager, u).await);
    }
    out
}

/// One user's list and revocations never reach another user's sessions.
pub async fn users_do_not_see_each_others_sessions(h: &impl Harness) {
    let (_, manager, _) = setup(h);
    let (alice, bob) = (user("alice"), user("bob"));
    let a = issue(&manager, &alice).await;
    let b = futures_join(&manager, &bob, 2).await;
    let listed = manager.list_for_user(&alice).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user_id, alice);
    // Alice cannot revoke Bob's session by its handle.
    assert!(
        !manager
            .revoke_handle(&alice, &b[0].session.handle)
            .await
            .expect("revoke")
    );
    assert_eq!(
        manager
            .revoke_all_for_user(&alice, Some(&b[0].session.id))
            .await
            .expect("all"),
        1
    );
    for s in &b {
        manager
            .validate(Some(&s.token.expose_cookie_value()))
            .await
            .expect("bob unaffected");
    }
    assert!(
        manager
            .validate(Some(&a.token.expose_cookie_value()))
            .await
            .is_err()
    );
    assert_eq!(manager.list_for_user(&bob).await.expect("list").len(), 2);
}

/// Expired sessions do not show up in "your devices", even before a purge.
pub async fn expired_sessions_are_not_listed(h: &impl Harness) {
    let (store, manager, clock) = setup(h);
    let alice = user("alice");
    issue(&manager, &alice).await;
    clock.advance(Lifetime::STANDARD.idle + Duration::from_secs(1));
    let fresh = issue(&manager, &alice).await;
    let listed = store
        .list_for_user(&alice, clock.now())
        .await
        .expect("list");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![fresh.session.id]
    );
}

/// Purge removes expired records and every index entry pointing at them, and nothing else.
pub async fn purge_removes_expired_sessions_and_their_index_entries(h: &impl Harness) {
    let (store, manager, clock) = setup(h);
    let (alice, bob) = (user("alice"), user("bob"));
    let old_a = futures_join(&manager, &alice, 3).await;
    let old_b = issue(&manager, &bob).await;
    clock.advance(Lifetime::STANDARD.idle + Duration::from_secs(1));
    let live = issue(&manager, &alice).await;
    let purged = manager.purge_expired().await.expect("purge");
    assert_eq!(purged, 4);
    for s in old_a.iter().chain(std::iter::once(&old_b)) {
        assert_eq!(store.load(&s.session.id).await.expect("load"), None);
    }
    manager
        .validate(Some(&live.token.expose_cookie_value()))
        .await
        .expect("live survives");
    assert_eq!(manager.list_for_user(&alice).await.expect("list").len(), 1);
    assert!(manager.list_for_user(&bob).await.expect("list").is_empty());
    // No trace of a purged session anywhere: neither its id's bytes nor its hex.
    let dump = h.dump().await;
    for s in old_a.iter().chain(std::iter::once(&old_b)) {
        assert!(
            !contains(&dump, s.session.id.as_bytes()),
            "purged id bytes still stored"
        );
        assert!(
            !contains(&dump, s.session.id.to_hex().as_bytes()),
            "purged id hex still stored"
        );
        assert!(
            !contains(&dump, s.session.handle.as_str().as_bytes()),
            "purged handle still stored"
        );
    }
    assert_eq!(manager.purge_expired().await.expect("purge again"), 0);
}

/// 10,000 sessions for one user are listed and revoked correctly.
pub async fn ten_thousand_sessions_for_one_user(h: &impl Harness) {
    const N: usize = 10_000;
    let (store, manager, _) = setup(h);
    let heavy = user("heavy-user");
    let other = issue(&manager, &user("bystander")).await;
    let mut ids = Vec::with_capacity(N);
    let mut tasks = Vec::new();
    for chunk in 0..16 {
        let manager = manager.clone();
        let heavy = heavy.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in (chunk..N).step_by(16) {
                out.push(issue(&manager, &heavy).await.session.id);
            }
            out
        }));
    }
    for t in tasks {
        ids.extend(t.await.expect("task"));
    }
    assert_eq!(ids.len(), N);
    let listed = manager.list_for_user(&heavy).await.expect("list");
    assert_eq!(listed.len(), N);
    let keep = ids[N / 2];
    let removed = manager
        .revoke_all_for_user(&heavy, Some(&keep))
        .await
        .expect("revoke others");
    assert_eq!(removed, (N - 1) as u64);
    let listed = manager.list_for_user(&heavy).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, keep);
    for id in ids.iter().step_by(997).filter(|id| **id != keep) {
        assert_eq!(store.load(id).await.expect("load"), None);
    }
    manager
        .validate(Some(&other.token.expose_cookie_value()))
        .await
        .expect("bystander unaffected");
}

/// Neither the token's bytes nor its cookie text is ever written to the store.
pub async fn raw_token_never_appears_in_stored_data(h: &impl Harness) {
    let (store, manager, clock) = setup(h);
    let mut tokens = Vec::new();
    for i in 0..5 {
        let issued = manager
            .issue(
                NewSession::new(user(&format!("user{i}")), AuthMethod::password())
                    .remember(i % 2 == 0),
                None,
            )
            .await
            .expect("issue");
        manager
            .update_data(&issued.session.id, |d| d.insert("n", &i))
            .await
            .expect("update")
            .expect("small");
        let rotated = manager
            .rotate(
                &store
                    .load(&issued.session.id)
                    .await
                    .expect("load")
                    .expect("present"),
            )
            .await
            .expect("rotate");
        clock.advance(Duration::from_secs(120));
        manager
            .validate(Some(&rotated.token.expose_cookie_value()))
            .await
            .expect("valid");
        tokens.push(issued.token);
        tokens.push(rotated.token);
    }
    let dump = h.dump_raw().await;
    assert!(!dump.is_empty(), "the harness dumped nothing");
    for t in &tokens {
        let text = t.expose_cookie_value();
        let raw = URL_SAFE_NO_PAD.decode(&text).expect("own encoding");
        assert!(
            !contains(&dump, text.as_bytes()),
            "token text found in stored data"
        );
        assert!(!contains(&dump, &raw), "token bytes found in stored data");
        assert!(
            !contains(&dump, &raw[..16]),
            "token prefix found in stored data"
        );
        assert!(
            !contains(&dump, hex(&raw).as_bytes()),
            "token hex found in stored data"
        );
    }
}

/// Two managers (two "instances") over one store: a revoke on one is seen by the other's next
/// validate, and an update by one is seen by the other.
pub async fn two_managers_share_revocation(h: &impl Harness) {
    let (store, first, clock) = setup(h);
    let second = SessionManager::from_arc(store)
        .with_clock(clock.clone())
        .with_policy(Policy::default());
    let issued = issue(&first, &user("alice")).await;
    let cookie = issued.token.expose_cookie_value();
    second
        .validate(Some(&cookie))
        .await
        .expect("valid on the second instance");
    second
        .update_data(&issued.session.id, |d| d.insert("k", "v"))
        .await
        .expect("update")
        .expect("small");
    let seen = first
        .validate(Some(&cookie))
        .await
        .expect("valid on the first");
    assert_eq!(
        seen.data.get::<String>("k").expect("string").as_deref(),
        Some("v")
    );
    assert!(first.revoke(&issued.session.id).await.expect("revoke"));
    let err = second
        .validate(Some(&cookie))
        .await
        .expect_err("revoked elsewhere");
    assert!(matches!(err, ValidationError::Unknown), "{err:?}");
}

/// A single-use link's record: the first `consume_link` wins, every later one (of that id)
/// loses, and other ids are unaffected.
pub async fn consumed_links_are_used_once(h: &impl Harness) {
    let (store, _, clock) = setup(h);
    let expires = clock.now().saturating_add(Duration::from_secs(600));
    let (a, b) = (LinkId::generate(), LinkId::generate());
    assert!(store.consume_link(&a, expires).await.expect("consume"));
    assert!(!store.consume_link(&a, expires).await.expect("again"));
    // Even with another expiry: a record is never replaced.
    let later = expires.saturating_add(Duration::from_secs(3600));
    assert!(
        !store
            .consume_link(&a, later)
            .await
            .expect("again, later expiry")
    );
    assert!(store.consume_link(&b, expires).await.expect("another link"));
    // A purge before the expiry keeps the records.
    store.purge_expired(clock.now()).await.expect("purge");
    assert!(!store.consume_link(&a, expires).await.expect("after purge"));
}

/// Many instances present one single-use link at once: exactly one is told it was first.
pub async fn concurrent_uses_of_a_link_have_one_winner(h: &impl Harness) {
    const N: usize = 32;
    let (store, _, clock) = setup(h);
    let expires = clock.now().saturating_add(Duration::from_secs(600));
    for _ in 0..3 {
        let id = LinkId::generate();
        let barrier = Arc::new(tokio::sync::Barrier::new(N));
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.consume_link(&id, expires).await.expect("consume")
                })
            })
            .collect();
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("task"));
        }
        assert_eq!(
            winners, 1,
            "{winners} of {N} concurrent uses were told they were first"
        );
    }
}

/// A consumed link's record is kept while the link lives and gone once it has expired and the
/// store was purged: nothing of it is left in the backend.
pub async fn consumed_links_disappear_after_expiry(h: &impl Harness) {
    let (store, _, clock) = setup(h);
    let short = LinkId::generate();
    let long = LinkId::generate();
    let soon = clock.now().saturating_add(Duration::from_secs(5));
    let later = clock.now().saturating_add(Duration::from_secs(3600));
    assert!(store.consume_link(&short, soon).await.expect("consume"));
    assert!(store.consume_link(&long, later).await.expect("consume"));
    let dump = h.dump().await;
    // However the backend writes the id: raw, base64url (a Redis key) or hex (a SQL dump).
    let traces = |id: &LinkId| {
        [
            id.as_bytes().to_vec(),
            id.to_string().into_bytes(),
            hex(id.as_bytes()).into_bytes(),
        ]
    };
    assert!(
        traces(&short).iter().any(|t| contains(&dump, t)),
        "the harness's dump does not show consumed links"
    );
    clock.advance(Duration::from_secs(6));
    store.purge_expired(clock.now()).await.expect("purge");
    let dump = h.dump().await;
    for t in traces(&short) {
        assert!(
            !contains(&dump, &t),
            "an expired link's record is still stored"
        );
    }
    assert!(
        traces(&long).iter().any(|t| contains(&dump, t)),
        "a live link's record was purged"
    );
    assert!(!store.consume_link(&long, later).await.expect("live one"));
}

/// Every revoke-all moves the user's revocation epoch on — in either scope, with or without
/// sessions — and nothing else does.
pub async fn revocation_epoch_moves_with_every_revoke_all(h: &impl Harness) {
    let (store, manager, _) = setup(h);
    let (alice, bob) = (user("alice"), user("bob"));
    let epoch = |u: UserId| {
        let store = store.clone();
        async move { store.revocation_epoch(&u).await.expect("epoch") }
    };
    assert_eq!(epoch(alice.clone()).await, 0, "never revoked");
    // Sign-ins, updates, rotations and single sign-outs leave it alone.
    let a = issue(&manager, &alice).await;
    let b = issue(&manager, &alice).await;
    let rotated = saved_then_rotated(&store, &manager, &a).await;
    manager.revoke(&b.session.id).await.expect("revoke one");
    assert_eq!(epoch(alice.clone()).await, 0, "moved without a revoke-all");
    // "Log out of all other devices" moves it.
    store
        .delete_for_user(&alice, DeleteScope::AllExcept(&rotated.session.id))
        .await
        .expect("revoke others");
    let first = epoch(alice.clone()).await;
    assert!(first > 0, "a revoke-others did not move the epoch");
    // "Log out everywhere" moves it again, and so does one with nothing left to end.
    manager
        .revoke_all_for_user(&alice, None)
        .await
        .expect("revoke all");
    let second = epoch(alice.clone()).await;
    assert!(second > first, "a revoke-all did not move the epoch");
    manager
        .revoke_all_for_user(&alice, None)
        .await
        .expect("revoke all, no sessions");
    assert!(
        epoch(alice.clone()).await > second,
        "a revoke-all without sessions did not move the epoch"
    );
    assert_eq!(
        epoch(bob).await,
        0,
        "another user's revocations moved bob's epoch"
    );
}

/// `issued` after a data update (a save) and a rotation.
async fn saved_then_rotated(
    store: &Arc<dyn SessionStore>,
    manager: &SessionManager,
    issued: &IssuedSession,
) -> IssuedSession {
    manager
        .update_data(&issued.session.id, |d| d.insert("k", &1))
        .await
        .expect("update")
        .expect("small");
    let current = store
        .load(&issued.session.id)
        .await
        .expect("load")
        .expect("present");
    manager.rotate(&current).await.expect("rotate")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A harness whose store is a [`CachedStore`](cloakroom_core::CachedStore) over another
/// harness's: the whole suite then checks the contract *through* the cache, which must change
/// nothing a caller can observe.
pub struct Cached<H> {
    harness: H,
    store: Arc<dyn SessionStore>,
}

impl<H> std::fmt::Debug for Cached<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached")
            .field("store", &self.store)
            .finish()
    }
}

impl<H: Harness> Cached<H> {
    /// The harness's store behind an exact cache with small bounds (256 sessions), so the
    /// suite's larger checks run through eviction too. Every "instance" of a check shares the
    /// one cache, as every request of one process does.
    pub fn exact(harness: H) -> Self {
        let limits = cloakroom_core::CacheLimits::default().with_max_entries(256);
        let store = Arc::new(cloakroom_core::CachedStore::exact(harness.store(), limits));
        Self { harness, store }
    }

    /// The harness behind `store`: a push cache the backend's test built over the harness's
    /// store, with its invalidation feed connected.
    pub fn new(harness: H, store: Arc<dyn SessionStore>) -> Self {
        Self { harness, store }
    }

    /// The harness underneath.
    pub fn inner(&self) -> &H {
        &self.harness
    }
}

#[async_trait]
impl<H: Harness> Harness for Cached<H> {
    fn store(&self) -> Arc<dyn SessionStore> {
        self.store.clone()
    }

    async fn dump(&self) -> Vec<u8> {
        self.harness.dump().await
    }

    async fn dump_raw(&self) -> Vec<u8> {
        self.harness.dump_raw().await
    }
}

/// How long a push cache may take to hear of a change made elsewhere, in these checks: far
/// above the measured delivery time on loopback (see `bench/run --store redis`), so a pass
/// means "delivered", not "fast".
pub const PUSH_BOUND: Duration = Duration::from_secs(2);

/// Waits until `check` holds, polling every millisecond, for at most [`PUSH_BOUND`]; returns
/// how long it took.
async fn within_bound<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < PUSH_BOUND,
            "{what}: not seen by the other instance within {PUSH_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Two instances over one shared backend, each with its own push cache (`a` and `b`, feeds
/// connected): a change made through one is seen by the other once delivered — a revocation,
/// a revoke-all, a data update, and a touch (without which the other's cached copy would look
/// idle-expired while the session is in use) — and each instance's own changes at once.
pub async fn push_caches_stay_exact(
    a: cloakroom_core::CachedStore,
    b: cloakroom_core::CachedStore,
) {
    let b_cache = b.clone();
    let clock = ManualClock::starting_now();
    let policy = Policy::default().with_standard(Lifetime {
        idle: Duration::from_secs(600),
        absolute: Duration::from_secs(12 * 3600),
    });
    let first = SessionManager::new(a)
        .with_clock(clock.clone())
        .with_policy(policy);
    let second = SessionManager::new(b)
        .with_clock(clock.clone())
        .with_policy(policy);
    let alice = user("alice");
    let issued = issue(&first, &alice).await;
    let cookie = issued.token.expose_cookie_value();
    for _ in 0..2 {
        second.validate(Some(&cookie)).await.expect("cached on b");
    }
    // A feed that kept dropping would pass every check below by reading the store each time.
    assert_eq!(b_cache.stats().hits, 1, "b's cache is not used");

    // A data update through a.
    first
        .update_data(&issued.session.id, |d| d.insert("k", "v"))
        .await
        .expect("update")
        .expect("small");
    within_bound("a data update", || async {
        second
            .validate(Some(&cookie))
            .await
            .expect("valid")
            .data
            .get::<String>("k")
            .expect("string")
            .is_some()
    })
    .await;

    // A touch through a, then time that would idle-expire b's old copy.
    clock.advance(Duration::from_secs(400));
    first.validate(Some(&cookie)).await.expect("touched on a");
    let touched = clock.now();
    within_bound("a touch", || async {
        second
            .validate(Some(&cookie))
            .await
            .expect("valid")
            .last_seen_at
            >= touched
    })
    .await;
    clock.advance(Duration::from_secs(400));
    second
        .validate(Some(&cookie))
        .await
        .expect("kept alive on a: not idle-expired on b");

    // A revocation through a; b's own revocation is refused by b at once.
    first.revoke(&issued.session.id).await.expect("revoke");
    within_bound("a revocation", || async {
        matches!(
            second.validate(Some(&cookie)).await,
            Err(ValidationError::Unknown)
        )
    })
    .await;
    let own = issue(&first, &alice).await;
    let own_cookie = own.token.expose_cookie_value();
    second.validate(Some(&own_cookie)).await.expect("valid");
    second.revoke(&own.session.id).await.expect("revoke on b");
    assert!(
        matches!(
            second.validate(Some(&own_cookie)).await,
            Err(ValidationError::Unknown)
        ),
        "an instance's own revocation must be seen at once"
    );

    // A revoke-all through a.
    let mut cookies = Vec::new();
    for _ in 0..3 {
        let s = issue(&first, &alice).await;
        let c = s.token.expose_cookie_value();
        second.validate(Some(&c)).await.expect("cached on b");
        cookies.push(c);
    }
    first
        .revoke_all_for_user(&alice, None)
        .await
        .expect("revoke all");
    for c in &cookies {
        within_bound("a revoke-all", || async {
            second.validate(Some(c)).await.is_err()
        })
        .await;
    }
    let stats = b_cache.stats();
    assert!(b_cache.is_active(), "the feed is down: {stats:?}");
    assert_eq!(stats.bypassed, 0, "b's feed dropped: {stats:?}");
}
