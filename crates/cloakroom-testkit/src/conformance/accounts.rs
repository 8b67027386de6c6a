//! The [`AccountStore`] contract as tests, and
//! [`account_conformance_suite!`](crate::account_conformance_suite) to run them all against one
//! backend.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::accounts::AccountStore;
use cloakroom_core::{SessionHandle, Timestamp, UserId};

use super::user;

/// An account store under test: empty and not shared with any other test.
pub trait AccountHarness: Send + Sync {
    /// The store under test.
    fn accounts(&self) -> Arc<dyn AccountStore>;
}

/// Generates one `#[tokio::test]` per account-store check in a module named `$module`;
/// `$setup` evaluates to a future of `Option<impl AccountHarness>`.
#[macro_export]
macro_rules! account_conformance_suite {
    ($module:ident, $setup:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(accounts, $setup;
                accounts_are_found_by_username_without_case_and_by_id,
                usernames_are_unique_without_case_even_under_concurrency,
                passwords_change_and_upgrades_never_undo_a_change,
                accounts_can_be_disabled_and_listed
            );
        }
    };
}

fn account(name: &str, at: Timestamp) -> cloakroom_core::accounts::Account {
    use cloakroom_core::accounts::{Account, PasswordHash, Username};
    Account {
        id: UserId::new(format!("id-{name}-{}", SessionHandle::generate())).expect("id"),
        username: Username::parse(name).expect("username"),
        password_hash: PasswordHash::new(format!("$test${name}")),
        disabled: false,
        created_at: at,
        password_changed_at: at,
        email: Some(format!("{name}@example.com")),
        display_name: None,
    }
}

/// Lookups by username ignore case; lookups by id are exact; unknown names are `None`.
pub async fn accounts_are_found_by_username_without_case_and_by_id(h: &impl AccountHarness) {
    use cloakroom_core::accounts::Username;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let alice = account("Alice", at);
    store.create(&alice).await.expect("create");
    let found = store
        .by_username(&Username::parse("aLiCe").expect("name"))
        .await
        .expect("lookup");
    assert_eq!(found.as_ref(), Some(&alice));
    assert_eq!(
        found.expect("found").username.as_str(),
        "Alice",
        "the registered spelling is kept"
    );
    assert_eq!(
        store.by_id(&alice.id).await.expect("by id"),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .by_username(&Username::parse("bob").expect("name"))
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(store.by_id(&user("nobody")).await.expect("by id"), None);
}

/// Two accounts can never share a username, whatever the case, even when created at once.
pub async fn usernames_are_unique_without_case_even_under_concurrency(h: &impl AccountHarness) {
    use cloakroom_core::accounts::AccountError;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    store.create(&account("carol", at)).await.expect("create");
    let err = store
        .create(&account("CAROL", at))
        .await
        .expect_err("taken");
    assert!(matches!(err, AccountError::UsernameTaken), "{err:?}");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let name = if i % 2 == 0 { "dave" } else { "Dave" };
        tasks.push(tokio::spawn(async move {
            store.create(&account(name, at)).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            Err(AccountError::UsernameTaken) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(created, 1);
}

/// Password changes land; a stale upgrade (after a concurrent change) does not.
pub async fn passwords_change_and_upgrades_never_undo_a_change(h: &impl AccountHarness) {
    use cloakroom_core::accounts::PasswordHash;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let erin = account("erin", at);
    store.create(&erin).await.expect("create");
    let changed = PasswordHash::new("$test$changed".into());
    let later = at.saturating_add(Duration::from_secs(60));
    assert!(
        store
            .set_password(&erin.id, &changed, later)
            .await
            .expect("set")
    );
    let stale_upgrade = PasswordHash::new("$test$upgraded-old".into());
    assert!(
        !store
            .upgrade_password(&erin.id, &erin.password_hash, &stale_upgrade)
            .await
            .expect("upgrade")
    );
    let now = store.by_id(&erin.id).await.expect("load").expect("present");
    assert_eq!(now.password_hash, changed);
    assert_eq!(now.password_changed_at, later);
    let upgraded = PasswordHash::new("$test$upgraded".into());
    assert!(
        store
            .upgrade_password(&erin.id, &changed, &upgraded)
            .await
            .expect("upgrade")
    );
    assert_eq!(
        store
            .by_id(&erin.id)
            .await
            .expect("load")
            .expect("present")
            .password_hash,
        upgraded
    );
    assert!(
        !store
            .set_password(&user("ghost"), &changed, later)
            .await
            .expect("set unknown")
    );
}

/// Disabling is stored and listing returns every account in username order.
pub async fn accounts_can_be_disabled_and_listed(h: &impl AccountHarness) {
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    for name in ["zed", "Amy", "mike"] {
        store.create(&account(name, at)).await.expect("create");
    }
    let list = store.list().await.expect("list");
    let names: Vec<_> = list.iter().map(|a| a.username.as_str()).collect();
    assert_eq!(names, ["Amy", "mike", "zed"]);
    let mike = &list[1];
    assert!(store.set_disabled(&mike.id, true).await.expect("disable"));
    assert!(
        store
            .by_id(&mike.id)
            .await
            .expect("load")
            .expect("present")
            .disabled
    );
    assert!(store.set_disabled(&mike.id, false).await.expect("enable"));
    assert!(
        !store
            .by_id(&mike.id)
            .await
            .expect("load")
            .expect("present")
            .disabled
    );
    assert!(
        !store
            .set_disabled(&user("ghost"), true)
            .await
            .expect("unknown")
    );
    store.ping().await.expect("ping");
}
