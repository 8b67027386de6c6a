//! The [`AccountStore`] contract as tests, and
//! [`account_conformance_suite!`](crate::account_conformance_suite) to run them all against one
//! backend.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::accounts::{AccountStore, LinkedIdentity};
use cloakroom_core::{SessionHandle, Timestamp, UserId};

use super::user;

/// An account store under test: empty and not shared with any other test.
pub trait AccountHarness: Send + Sync {
    /// The store under test.
    fn accounts(&self) -> Arc<dyn AccountStore>;

    /// The second factors beside those accounts (the same database).
    fn second_factors(&self) -> Arc<dyn cloakroom_core::mfa::SecondFactorStore>;
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
                accounts_can_be_disabled_and_listed,
                deleted_accounts_are_gone_and_free_their_username,
                invites_create_one_account_each,
                invites_expire_and_unknown_invites_are_refused,
                invites_survive_a_taken_username,
                invites_are_redeemed_once_even_under_concurrency,
                identities_link_to_one_account_each,
                first_sign_ins_create_account_and_link_together,
                identities_unlink_and_go_with_their_account,
                email_changes_reset_verification_and_stale_verifications_fail,
                accounts_are_found_by_email_with_the_domain_in_any_case,
                groups_are_memberships_that_go_with_their_account,
                totp_enrolment_is_confirmed_once_and_replaced_only_until_then,
                totp_steps_are_accepted_once_even_under_concurrency,
                recovery_codes_are_used_once_even_under_concurrency,
                passkeys_are_unique_and_only_their_owner_changes_them,
                factors_reset_together_and_go_with_their_account
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
        email: Some(
            cloakroom_core::mail::EmailAddress::parse(&format!("{name}@example.com"))
                .expect("address"),
        ),
        email_verified: false,
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

/// A deleted account is found by no lookup and listed nowhere; its username can be registered
/// again under a new id; the invitation it was created with stays used; other accounts are
/// untouched; deleting twice (or an unknown id) says it found nothing.
pub async fn deleted_accounts_are_gone_and_free_their_username(h: &impl AccountHarness) {
    use cloakroom_core::accounts::{AccountError, Username};
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let code = invite(&*store, at, Duration::from_secs(3600)).await;
    let kim = account("Kim", at);
    store
        .redeem_invite_and_create(&code.hash(), &kim, at)
        .await
        .expect("redeem");
    let lou = account("lou", at);
    store.create(&lou).await.expect("create");

    assert!(store.delete(&kim.id).await.expect("delete"), "it existed");
    assert_eq!(store.by_id(&kim.id).await.expect("by id"), None);
    let name = Username::parse("kim").expect("name");
    assert_eq!(store.by_username(&name).await.expect("by name"), None);
    let names: Vec<_> = store
        .list()
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.username.as_str().to_owned())
        .collect();
    assert!(!names.contains(&"Kim".to_owned()), "{names:?}");
    assert_eq!(
        store.by_id(&lou.id).await.expect("by id"),
        Some(lou.clone()),
        "another account is untouched"
    );
    assert!(!store.delete(&kim.id).await.expect("delete again"));
    assert!(!store.delete(&user("ghost")).await.expect("delete unknown"));

    let err = store
        .redeem_invite_and_create(&code.hash(), &account("moe", at), at)
        .await
        .expect_err("still used");
    assert!(matches!(err, AccountError::InvalidInvite), "{err:?}");

    let again = account("KIM", at);
    store.create(&again).await.expect("the name is free again");
    assert_ne!(again.id, kim.id);
    assert_eq!(
        store.by_username(&name).await.expect("by name"),
        Some(again)
    );
    assert_eq!(store.by_id(&kim.id).await.expect("by id"), None);
}

/// A fresh invitation, created at `at` and valid for `ttl`.
async fn invite(
    store: &dyn AccountStore,
    at: Timestamp,
    ttl: Duration,
) -> cloakroom_core::accounts::InviteCode {
    let code = cloakroom_core::accounts::InviteCode::generate();
    store
        .create_invite(&code.hash(), at.saturating_add(ttl), at)
        .await
        .expect("create invite");
    code
}

/// A redeemed invitation creates the account, and cannot be redeemed again.
pub async fn invites_create_one_account_each(h: &impl AccountHarness) {
    use cloakroom_core::accounts::AccountError;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let code = invite(&*store, at, Duration::from_secs(7 * 86_400)).await;
    let fay = account("fay", at);
    store
        .redeem_invite_and_create(&code.hash(), &fay, at)
        .await
        .expect("redeem");
    assert_eq!(store.by_id(&fay.id).await.expect("load"), Some(fay));
    let err = store
        .redeem_invite_and_create(&code.hash(), &account("gus", at), at)
        .await
        .expect_err("used");
    assert!(matches!(err, AccountError::InvalidInvite), "{err:?}");
    assert_eq!(
        store
            .by_username(&cloakroom_core::accounts::Username::parse("gus").expect("name"))
            .await
            .expect("lookup"),
        None,
        "a used invitation creates nothing"
    );
}

/// An invitation is valid strictly before its expiry; an unknown one never; neither creates
/// an account, and the answer does not say which it was.
pub async fn invites_expire_and_unknown_invites_are_refused(h: &impl AccountHarness) {
    use cloakroom_core::accounts::{AccountError, InviteCode, Username};
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let code = invite(&*store, at, Duration::from_secs(60)).await;
    let expires = at.saturating_add(Duration::from_secs(60));
    for (hash, now) in [
        (code.hash(), expires),
        (code.hash(), expires.saturating_add(Duration::from_secs(1))),
        (InviteCode::generate().hash(), at),
    ] {
        let err = store
            .redeem_invite_and_create(&hash, &account("hal", at), now)
            .await
            .expect_err("refused");
        assert!(matches!(err, AccountError::InvalidInvite), "{err:?}");
    }
    assert_eq!(
        store
            .by_username(&Username::parse("hal").expect("name"))
            .await
            .expect("lookup"),
        None
    );
    let just_before = Timestamp::from_unix_millis(expires.as_unix_millis() - 1);
    store
        .redeem_invite_and_create(&code.hash(), &account("hal", at), just_before)
        .await
        .expect("valid until its expiry");
}

/// A taken username fails the redemption without using the invitation up; an invalid
/// invitation is reported as such even when the username is taken too.
pub async fn invites_survive_a_taken_username(h: &impl AccountHarness) {
    use cloakroom_core::accounts::{AccountError, InviteCode};
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    store.create(&account("ivy", at)).await.expect("create");
    let code = invite(&*store, at, Duration::from_secs(3600)).await;
    let err = store
        .redeem_invite_and_create(&code.hash(), &account("IVY", at), at)
        .await
        .expect_err("taken");
    assert!(matches!(err, AccountError::UsernameTaken), "{err:?}");
    let err = store
        .redeem_invite_and_create(&InviteCode::generate().hash(), &account("IVY", at), at)
        .await
        .expect_err("unknown invite");
    assert!(matches!(err, AccountError::InvalidInvite), "{err:?}");
    let jay = account("jay", at);
    store
        .redeem_invite_and_create(&code.hash(), &jay, at)
        .await
        .expect("the invitation is still usable");
    assert_eq!(store.by_id(&jay.id).await.expect("load"), Some(jay));
}

/// Twenty sign-ups racing with one invitation, each for a different name: exactly one account
/// is created.
pub async fn invites_are_redeemed_once_even_under_concurrency(h: &impl AccountHarness) {
    use cloakroom_core::accounts::AccountError;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let code = invite(&*store, at, Duration::from_secs(3600)).await;
    let before = store.list().await.expect("list").len();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, hash) = (store.clone(), code.hash());
        tasks.push(tokio::spawn(async move {
            store
                .redeem_invite_and_create(&hash, &account(&format!("racer{i}"), at), at)
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(()) => created += 1,
            Err(AccountError::InvalidInvite) => {}
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(store.list().await.expect("list").len(), before + 1);
}

fn identity(issuer: &str, subject: &str, account: &UserId, at: Timestamp) -> LinkedIdentity {
    LinkedIdentity {
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        account: account.clone(),
        linked_at: at,
    }
}

const GOOGLE: &str = "https://accounts.google.com";
const OTHER: &str = "https://login.example.net";

/// An identity finds its account; `(issuer, subject)` is linked at most once, even under
/// concurrency; issuer and subject compare exactly (another issuer's `sub`, or another case,
/// is another identity); an account may have several identities, listed oldest first.
pub async fn identities_link_to_one_account_each(h: &impl AccountHarness) {
    use cloakroom_core::accounts::AccountError;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let (ann, bob) = (account("ann", at), account("bob", at));
    store.create(&ann).await.expect("create");
    store.create(&bob).await.expect("create");
    assert_eq!(store.by_identity(GOOGLE, "1").await.expect("lookup"), None);

    let first = identity(GOOGLE, "1", &ann.id, at);
    store.link_identity(&first).await.expect("link");
    assert_eq!(
        store.by_identity(GOOGLE, "1").await.expect("lookup"),
        Some(ann.clone())
    );
    for (issuer, subject) in [
        (OTHER, "1"),
        (GOOGLE, "10"),
        ("https://accounts.google.com/", "1"),
    ] {
        assert_eq!(
            store.by_identity(issuer, subject).await.expect("lookup"),
            None,
            "{issuer} {subject}"
        );
    }
    let err = store
        .link_identity(&identity(GOOGLE, "1", &bob.id, at))
        .await
        .expect_err("taken");
    assert!(matches!(err, AccountError::IdentityTaken), "{err:?}");
    let err = store.link_identity(&first).await.expect_err("taken");
    assert!(matches!(err, AccountError::IdentityTaken), "{err:?}");

    let later = identity(
        OTHER,
        "1",
        &ann.id,
        Timestamp::from_unix_millis(1_700_000_000_500),
    );
    store
        .link_identity(&later)
        .await
        .expect("a second identity");
    assert_eq!(
        store.identities(&ann.id).await.expect("list"),
        vec![first, later]
    );
    assert_eq!(store.identities(&bob.id).await.expect("list"), vec![]);

    let racers = (0..8).map(|n| {
        let store = store.clone();
        let to = if n % 2 == 0 {
            ann.id.clone()
        } else {
            bob.id.clone()
        };
        tokio::spawn(async move {
            store
                .link_identity(&identity(GOOGLE, "raced", &to, at))
                .await
                .is_ok()
        })
    });
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.expect("join"));
    }
    assert_eq!(won, 1, "one identity, one link");
}

/// `create_with_identity` makes the account and the link together, or neither: a taken
/// identity creates no account, a taken username links nothing; of concurrent first sign-ins
/// with one identity exactly one creates an account.
pub async fn first_sign_ins_create_account_and_link_together(h: &impl AccountHarness) {
    use cloakroom_core::accounts::{AccountError, Username};
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let cat = account("cat", at);
    store
        .create_with_identity(&cat, &identity(GOOGLE, "c", &cat.id, at))
        .await
        .expect("create");
    assert_eq!(
        store.by_identity(GOOGLE, "c").await.expect("lookup"),
        Some(cat.clone())
    );

    let dan = account("dan", at);
    let err = store
        .create_with_identity(&dan, &identity(GOOGLE, "c", &dan.id, at))
        .await
        .expect_err("identity taken");
    assert!(matches!(err, AccountError::IdentityTaken), "{err:?}");
    let dan_name = Username::parse("dan").expect("name");
    assert_eq!(store.by_username(&dan_name).await.expect("lookup"), None);

    let cat2 = account("CAT", at);
    let err = store
        .create_with_identity(&cat2, &identity(GOOGLE, "c2", &cat2.id, at))
        .await
        .expect_err("username taken");
    assert!(matches!(err, AccountError::UsernameTaken), "{err:?}");
    assert_eq!(store.by_identity(GOOGLE, "c2").await.expect("lookup"), None);

    let racers = (0..8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let a = account(&format!("racer{n}"), at);
            store
                .create_with_identity(&a, &identity(OTHER, "same", &a.id, at))
                .await
                .is_ok()
        })
    });
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.expect("join"));
    }
    assert_eq!(won, 1, "one identity, one account");
    let racers_left = store
        .list()
        .await
        .expect("list")
        .iter()
        .filter(|a| a.username.as_str().starts_with("racer"))
        .count();
    assert_eq!(racers_left, 1, "the losers left no account behind");
}

/// Unlinking removes only the named link of the named account; deleting an account removes
/// its links, so its identities find nothing afterwards.
pub async fn identities_unlink_and_go_with_their_account(h: &impl AccountHarness) {
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let (eve, fay) = (account("eve", at), account("fay", at));
    store.create(&eve).await.expect("create");
    store.create(&fay).await.expect("create");
    store
        .link_identity(&identity(GOOGLE, "e", &eve.id, at))
        .await
        .expect("link");
    store
        .link_identity(&identity(OTHER, "e", &eve.id, at))
        .await
        .expect("link");
    store
        .link_identity(&identity(GOOGLE, "f", &fay.id, at))
        .await
        .expect("link");

    assert!(
        !store
            .unlink_identity(&fay.id, GOOGLE, "e")
            .await
            .expect("unlink"),
        "another account's link is left alone"
    );
    assert!(
        store
            .unlink_identity(&eve.id, GOOGLE, "e")
            .await
            .expect("unlink")
    );
    assert!(
        !store
            .unlink_identity(&eve.id, GOOGLE, "e")
            .await
            .expect("unlink twice")
    );
    assert_eq!(store.by_identity(GOOGLE, "e").await.expect("lookup"), None);
    assert_eq!(
        store.by_identity(OTHER, "e").await.expect("lookup"),
        Some(eve.clone())
    );

    assert!(store.delete(&eve.id).await.expect("delete"));
    assert_eq!(store.by_identity(OTHER, "e").await.expect("lookup"), None);
    assert_eq!(store.identities(&eve.id).await.expect("list"), vec![]);
    assert_eq!(
        store.by_identity(GOOGLE, "f").await.expect("lookup"),
        Some(fay),
        "another account keeps its links"
    );
}

/// An address is stored as given and unverified; verifying needs the address still to be the
/// one the link was for; any change, even to the same address, starts unverified again.
pub async fn email_changes_reset_verification_and_stale_verifications_fail(
    h: &impl AccountHarness,
) {
    use cloakroom_core::mail::EmailAddress;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let erin = account("erin", at);
    store.create(&erin).await.expect("create");
    let first = EmailAddress::parse("erin@example.com").expect("address");
    let second = EmailAddress::parse("erin@other.example").expect("address");
    let read = || async { store.by_id(&erin.id).await.expect("by id").expect("exists") };

    let a = read().await;
    assert_eq!(a.email.as_ref(), Some(&first));
    assert!(!a.email_verified, "a new address starts unverified");

    assert!(
        store
            .mark_email_verified(&erin.id, &first)
            .await
            .expect("verify")
    );
    assert!(read().await.email_verified);
    assert!(
        store
            .mark_email_verified(&erin.id, &first)
            .await
            .expect("verify"),
        "verifying twice is not an error"
    );

    assert!(store.set_email(&erin.id, Some(&second)).await.expect("set"));
    let a = read().await;
    assert_eq!(a.email.as_ref(), Some(&second));
    assert!(!a.email_verified, "a changed address is not verified");
    assert!(
        !store
            .mark_email_verified(&erin.id, &first)
            .await
            .expect("verify"),
        "a link for the old address must not verify the new one"
    );
    assert!(!read().await.email_verified);

    assert!(
        store
            .mark_email_verified(&erin.id, &second)
            .await
            .expect("verify")
    );
    assert!(store.set_email(&erin.id, Some(&second)).await.expect("set"));
    assert!(
        !read().await.email_verified,
        "setting the address again resets verification"
    );

    assert!(store.set_email(&erin.id, None).await.expect("clear"));
    let a = read().await;
    assert_eq!(a.email, None);
    assert!(!a.email_verified);
    assert!(
        !store
            .mark_email_verified(&erin.id, &second)
            .await
            .expect("verify")
    );

    assert!(
        !store
            .set_email(&user("nobody"), Some(&first))
            .await
            .expect("set")
    );
    assert!(
        !store
            .mark_email_verified(&user("nobody"), &first)
            .await
            .expect("verify")
    );
}

/// `by_email` finds every account with the address (domain in any case, local part exact),
/// verified or not, ordered by username; an account created verified keeps the flag.
pub async fn accounts_are_found_by_email_with_the_domain_in_any_case(h: &impl AccountHarness) {
    use cloakroom_core::mail::EmailAddress;
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let shared = EmailAddress::parse("Team@Example.COM").expect("address");
    let mut zed = account("zed", at);
    zed.email = Some(shared.clone());
    zed.email_verified = true;
    let mut amy = account("amy", at);
    amy.email = Some(shared.clone());
    let mut nobody = account("nomail", at);
    nobody.email = None;
    for a in [&zed, &amy, &nobody] {
        store.create(a).await.expect("create");
    }
    let found = store
        .by_email(&EmailAddress::parse("Team@example.com").expect("address"))
        .await
        .expect("lookup");
    let names: Vec<_> = found.iter().map(|a| a.username.as_str()).collect();
    assert_eq!(names, ["amy", "zed"]);
    assert_eq!(found[1], zed, "created verified, stays verified");
    assert!(!found[0].email_verified);
    assert!(
        store
            .by_email(&EmailAddress::parse("team@example.com").expect("address"))
            .await
            .expect("lookup")
            .is_empty(),
        "the local part is compared exactly"
    );
    assert_eq!(
        store
            .by_id(&nobody.id)
            .await
            .expect("by id")
            .expect("exists")
            .email,
        None
    );
}

/// Group memberships: added and removed in one write (a name in both lists ends removed),
/// listed by name, exact in case, counted per group, refused for an unknown account, and
/// gone with their account.
pub async fn groups_are_memberships_that_go_with_their_account(h: &impl AccountHarness) {
    use cloakroom_core::accounts::GroupName;
    let g = |n: &str| GroupName::parse(n).expect("group name");
    let store = h.accounts();
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let alice = account("alice", at);
    let bob = account("bob", at);
    store.create(&alice).await.expect("create");
    store.create(&bob).await.expect("create");
    assert!(store.groups(&alice.id).await.expect("groups").is_empty());

    assert!(
        store
            .update_groups(&alice.id, &[g("wiki"), g("admins"), g("Admins")], &[])
            .await
            .expect("update")
    );
    assert_eq!(
        store.groups(&alice.id).await.expect("groups"),
        vec![g("Admins"), g("admins"), g("wiki")],
        "ordered by name, case kept and significant"
    );
    // Adding what is there and removing what is not are no-ops; a name in both ends removed.
    assert!(
        store
            .update_groups(
                &alice.id,
                &[g("wiki"), g("media")],
                &[g("Admins"), g("nope"), g("media")]
            )
            .await
            .expect("update")
    );
    assert_eq!(
        store.groups(&alice.id).await.expect("groups"),
        vec![g("admins"), g("wiki")]
    );
    store
        .update_groups(&bob.id, &[g("wiki")], &[])
        .await
        .expect("update");
    assert_eq!(
        store.group_sizes().await.expect("sizes"),
        vec![(g("admins"), 1), (g("wiki"), 2)]
    );

    let ghost = UserId::new("id-nobody").expect("id");
    assert!(
        !store
            .update_groups(&ghost, &[g("admins")], &[])
            .await
            .expect("update"),
        "no account, no membership"
    );
    assert!(store.groups(&ghost).await.expect("groups").is_empty());

    assert!(store.delete(&alice.id).await.expect("delete"));
    assert!(store.groups(&alice.id).await.expect("groups").is_empty());
    assert_eq!(
        store.group_sizes().await.expect("sizes"),
        vec![(g("wiki"), 1)],
        "a deleted account's memberships go with it"
    );
}

// ---- Second factors (`SecondFactorStore`) ----

fn codes(user: &UserId, n: usize) -> Vec<cloakroom_core::mfa::RecoveryCodeHash> {
    (0..n)
        .map(|i| cloakroom_core::mfa::RecoveryCodeHash::of(user, &format!("code-{i}")))
        .collect()
}

/// Enrolment: begin stores an unconfirmed secret (not a factor yet) and replaces one; confirm
/// needs the exact secret still there, sets the step and the recovery codes; a confirmed
/// authenticator is never replaced by another `begin`.
pub async fn totp_enrolment_is_confirmed_once_and_replaced_only_until_then(
    h: &impl AccountHarness,
) {
    let (store, factors) = (h.accounts(), h.second_factors());
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let ann = account("ann", at);
    store.create(&ann).await.expect("create");
    assert_eq!(factors.totp(&ann.id).await.expect("read"), None);
    assert!(
        factors
            .begin_totp(&ann.id, b"first", at)
            .await
            .expect("begin")
    );
    assert!(!factors.factors(&ann.id).await.expect("factors").any());
    assert!(
        factors
            .begin_totp(&ann.id, b"second", at)
            .await
            .expect("replace")
    );
    // The first secret was replaced: confirming it changes nothing.
    assert!(
        !factors
            .confirm_totp(&ann.id, b"first", 10, &codes(&ann.id, 10), at)
            .await
            .expect("confirm")
    );
    assert!(
        factors
            .confirm_totp(&ann.id, b"second", 10, &codes(&ann.id, 10), at)
            .await
            .expect("confirm")
    );
    let record = factors.totp(&ann.id).await.expect("read").expect("there");
    assert_eq!(record.sealed, b"second");
    assert_eq!(record.confirmed_at, Some(at));
    assert_eq!(record.last_step, Some(10));
    let now = factors.factors(&ann.id).await.expect("factors");
    assert!(now.totp && now.any());
    assert_eq!(now.recovery_codes, 10);
    // Confirmed: neither a new enrolment nor a second confirmation changes it.
    assert!(
        !factors
            .begin_totp(&ann.id, b"third", at)
            .await
            .expect("begin")
    );
    assert!(
        !factors
            .confirm_totp(&ann.id, b"second", 11, &codes(&ann.id, 3), at)
            .await
            .expect("confirm")
    );
    assert_eq!(
        factors
            .totp(&ann.id)
            .await
            .expect("read")
            .expect("there")
            .sealed,
        b"second"
    );
    assert!(factors.remove_totp(&ann.id).await.expect("remove"));
    assert!(!factors.remove_totp(&ann.id).await.expect("remove again"));
    assert!(!factors.factors(&ann.id).await.expect("factors").totp);
}

/// A step is accepted once and only after every earlier one; of concurrent uses exactly one
/// wins. An unconfirmed authenticator accepts nothing.
pub async fn totp_steps_are_accepted_once_even_under_concurrency(h: &impl AccountHarness) {
    let (store, factors) = (h.accounts(), h.second_factors());
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let bo = account("bob", at);
    store.create(&bo).await.expect("create");
    factors.begin_totp(&bo.id, b"s", at).await.expect("begin");
    assert!(!factors.use_totp_step(&bo.id, 5).await.expect("unconfirmed"));
    factors
        .confirm_totp(&bo.id, b"s", 5, &[], at)
        .await
        .expect("confirm");
    assert!(!factors.use_totp_step(&bo.id, 5).await.expect("same step"));
    assert!(
        !factors
            .use_totp_step(&bo.id, 4)
            .await
            .expect("earlier step")
    );
    let uses = (0..16).map(|_| {
        let (factors, id) = (factors.clone(), bo.id.clone());
        tokio::spawn(async move { factors.use_totp_step(&id, 6).await.expect("use") })
    });
    let mut won = 0;
    for u in uses {
        won += usize::from(u.await.expect("task"));
    }
    assert_eq!(won, 1, "one of 16 concurrent uses of a step wins");
    assert!(factors.use_totp_step(&bo.id, 8).await.expect("later"));
    let other = UserId::new("nobody").expect("id");
    assert!(
        !factors
            .use_totp_step(&other, 100)
            .await
            .expect("no authenticator")
    );
}

/// Each code works once, for its own account only; replacing the codes ends the old ones.
pub async fn recovery_codes_are_used_once_even_under_concurrency(h: &impl AccountHarness) {
    let (store, factors) = (h.accounts(), h.second_factors());
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let (cy, di) = (account("cyd", at), account("dia", at));
    store.create(&cy).await.expect("create");
    store.create(&di).await.expect("create");
    let cy_codes = codes(&cy.id, 10);
    factors
        .set_recovery_codes(&cy.id, &cy_codes, at)
        .await
        .expect("set");
    assert_eq!(
        factors
            .factors(&cy.id)
            .await
            .expect("factors")
            .recovery_codes,
        10
    );
    // Another account's digest of the same text is another digest.
    assert!(
        !factors
            .use_recovery_code(&di.id, &cy_codes[0], at)
            .await
            .expect("other account")
    );
    let uses = (0..16).map(|_| {
        let (factors, id, code) = (factors.clone(), cy.id.clone(), cy_codes[0]);
        tokio::spawn(async move {
            factors
                .use_recovery_code(&id, &code, at)
                .await
                .expect("use")
        })
    });
    let mut won = 0;
    for u in uses {
        won += usize::from(u.await.expect("task"));
    }
    assert_eq!(won, 1, "one of 16 concurrent uses of a code wins");
    assert_eq!(
        factors
            .factors(&cy.id)
            .await
            .expect("factors")
            .recovery_codes,
        9
    );
    let fresh = [cloakroom_core::mfa::RecoveryCodeHash::of(&cy.id, "new")];
    factors
        .set_recovery_codes(&cy.id, &fresh, at)
        .await
        .expect("replace");
    assert!(
        !factors
            .use_recovery_code(&cy.id, &cy_codes[1], at)
            .await
            .expect("replaced code")
    );
    assert!(
        factors
            .use_recovery_code(&cy.id, &fresh[0], at)
            .await
            .expect("new code")
    );
}

fn passkey(owner: &UserId, id: &[u8], at: Timestamp) -> cloakroom_core::mfa::PasskeyRecord {
    cloakroom_core::mfa::PasskeyRecord {
        credential_id: id.to_vec(),
        account: owner.clone(),
        name: "Laptop".into(),
        data: "{\"counter\":0}".into(),
        created_at: at,
        last_used_at: None,
    }
}

/// A credential id is registered once across all accounts; lookups find it by id; only its
/// owner renames, updates or removes it.
pub async fn passkeys_are_unique_and_only_their_owner_changes_them(h: &impl AccountHarness) {
    let (store, factors) = (h.accounts(), h.second_factors());
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let later = Timestamp::from_unix_millis(1_700_000_060_000);
    let (ed, flo) = (account("eda", at), account("flo", at));
    store.create(&ed).await.expect("create");
    store.create(&flo).await.expect("create");
    assert!(
        factors
            .add_passkey(&passkey(&ed.id, b"k1", at))
            .await
            .expect("add")
    );
    assert!(
        factors
            .add_passkey(&passkey(&ed.id, b"k2", later))
            .await
            .expect("add")
    );
    assert!(
        !factors
            .add_passkey(&passkey(&flo.id, b"k1", at))
            .await
            .expect("taken")
    );
    let listed = factors.passkeys(&ed.id).await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|p| p.credential_id.as_slice())
            .collect::<Vec<_>>(),
        [b"k1".as_slice(), b"k2"]
    );
    assert_eq!(factors.factors(&ed.id).await.expect("factors").passkeys, 2);
    assert!(factors.factors(&ed.id).await.expect("factors").any());
    assert_eq!(
        factors
            .passkey(b"k1")
            .await
            .expect("find")
            .map(|p| p.account),
        Some(ed.id.clone())
    );
    assert_eq!(factors.passkey(b"none").await.expect("find"), None);
    // Flo can touch none of Ed's.
    assert!(
        !factors
            .rename_passkey(&flo.id, b"k1", "mine")
            .await
            .expect("rename")
    );
    assert!(
        !factors
            .update_passkey(&flo.id, b"k1", "{\"counter\":0}", "{}", later)
            .await
            .expect("update")
    );
    assert!(
        !factors
            .remove_passkey(&flo.id, b"k1")
            .await
            .expect("remove")
    );
    assert!(
        factors
            .rename_passkey(&ed.id, b"k1", "Phone")
            .await
            .expect("rename")
    );
    assert!(
        factors
            .update_passkey(&ed.id, b"k1", "{\"counter\":0}", "{\"counter\":5}", later)
            .await
            .expect("update")
    );
    // Checked against a counter that moved on meanwhile: nothing changes.
    assert!(
        !factors
            .update_passkey(&ed.id, b"k1", "{\"counter\":0}", "{\"counter\":3}", at)
            .await
            .expect("update")
    );
    let k1 = factors.passkey(b"k1").await.expect("find").expect("there");
    assert_eq!(
        (k1.name.as_str(), k1.data.as_str(), k1.last_used_at),
        ("Phone", "{\"counter\":5}", Some(later))
    );
    assert!(factors.remove_passkey(&ed.id, b"k1").await.expect("remove"));
    assert_eq!(factors.passkey(b"k1").await.expect("find"), None);
    assert_eq!(factors.factors(&ed.id).await.expect("factors").passkeys, 1);
}

/// `reset` removes every factor at once; deleting the account removes them too, so a new
/// account can never inherit them.
pub async fn factors_reset_together_and_go_with_their_account(h: &impl AccountHarness) {
    let (store, factors) = (h.accounts(), h.second_factors());
    let at = Timestamp::from_unix_millis(1_700_000_000_000);
    let (gus, hal) = (account("gus", at), account("hal", at));
    for a in [&gus, &hal] {
        store.create(a).await.expect("create");
        factors.begin_totp(&a.id, b"s", at).await.expect("begin");
        factors
            .confirm_totp(&a.id, b"s", 1, &codes(&a.id, 10), at)
            .await
            .expect("confirm");
        factors
            .add_passkey(&passkey(&a.id, a.id.as_str().as_bytes(), at))
            .await
            .expect("add");
    }
    assert!(factors.reset(&gus.id).await.expect("reset"));
    assert_eq!(
        factors.factors(&gus.id).await.expect("factors"),
        cloakroom_core::mfa::Factors::default()
    );
    assert_eq!(factors.totp(&gus.id).await.expect("read"), None);
    assert!(!factors.reset(&gus.id).await.expect("nothing left"));
    // Hal's are untouched, until Hal's account goes.
    assert!(factors.factors(&hal.id).await.expect("factors").any());
    assert!(store.delete(&hal.id).await.expect("delete"));
    assert_eq!(
        factors.factors(&hal.id).await.expect("factors"),
        cloakroom_core::mfa::Factors::default()
    );
    assert_eq!(
        factors
            .passkey(hal.id.as_str().as_bytes())
            .await
            .expect("find"),
        None
    );
}
