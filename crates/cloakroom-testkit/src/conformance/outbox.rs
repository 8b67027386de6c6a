//! The [`MailOutbox`] contract as tests, and
//! [`outbox_conformance_suite!`](crate::outbox_conformance_suite) to run them all against one
//! backend.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::Timestamp;
use cloakroom_core::mail::{EmailAddress, MailId, MailOutbox, MailState, OutgoingMail};

/// An outbox under test: empty and not shared with any other test.
#[async_trait]
pub trait OutboxHarness: Send + Sync {
    /// The outbox under test.
    fn outbox(&self) -> Arc<dyn MailOutbox>;

    /// Everything the backend holds, as bytes (every value of every row), to show that a sent
    /// message's bodies are really gone.
    async fn dump(&self) -> Vec<u8>;
}

/// Generates one `#[tokio::test]` per outbox check in a module named `$module`; `$setup`
/// evaluates to a future of `Option<impl OutboxHarness>`.
#[macro_export]
macro_rules! outbox_conformance_suite {
    ($module:ident, $setup:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::__conformance_tests!(outbox, $setup;
                enqueued_mail_is_claimed_once_and_kept_whole,
                sending_deletes_the_bodies_and_finishes_the_message,
                a_lease_hands_a_message_back_and_fences_the_stale_sender,
                failures_wait_for_their_retry_and_giving_up_keeps_the_message,
                claims_take_the_longest_due_first_and_respect_the_limit,
                concurrent_claimers_never_share_a_message,
                purge_removes_only_finished_messages_past_their_cutoff
            );
        }
    };
}

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + secs * 1000)
}

fn mail(n: usize) -> OutgoingMail {
    OutgoingMail::new(
        "password_reset",
        EmailAddress::parse(&format!("user{n}@example.com")).expect("address"),
        &format!("Reset your password ({n})"),
        format!("Open https://login.example.com/password-reset?token=SECRET-TEXT-{n}"),
        Some(format!(
            "<a href=\"https://login.example.com/password-reset?token=SECRET-HTML-{n}\">Reset</a>"
        )),
    )
    .expect("valid mail")
}

/// The one message due at `now`, leased until `lease_until`.
async fn claim_one(
    outbox: &dyn MailOutbox,
    now: Timestamp,
    lease_until: Timestamp,
) -> cloakroom_core::mail::ClaimedMail {
    let mut claimed = outbox.claim_due(now, lease_until, 1).await.expect("claim");
    assert_eq!(claimed.len(), 1, "one message due");
    claimed.remove(0)
}

async fn state(outbox: &dyn MailOutbox, id: MailId) -> (MailState, u32) {
    let r = outbox.get(id).await.expect("get").expect("present");
    (r.state, r.attempts)
}

/// A new message is pending with no attempts and due at once; a claim hands it over whole,
/// as attempt 1, and nobody else can claim it while the lease holds.
pub async fn enqueued_mail_is_claimed_once_and_kept_whole(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let first = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let second = outbox.enqueue(&mail(2), t(0)).await.expect("enqueue");
    assert!(second > first, "ids increase");
    let record = outbox.get(first).await.expect("get").expect("present");
    assert_eq!(
        (record.state, record.attempts, record.next_attempt_at),
        (MailState::Pending, 0, Some(t(0)))
    );
    assert_eq!(
        (
            record.kind.as_str(),
            record.to.as_str(),
            record.subject.as_str()
        ),
        (
            "password_reset",
            "user1@example.com",
            "Reset your password (1)"
        )
    );
    assert_eq!(record.created_at, t(0));
    assert_eq!(
        outbox
            .get(MailId::new(first.get() + 1000))
            .await
            .expect("get"),
        None
    );

    assert!(
        outbox
            .claim_due(t(-1), t(60), 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due before it was enqueued"
    );
    let claimed = outbox.claim_due(t(0), t(60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    let c = &claimed[0];
    assert_eq!((c.id, c.attempt, c.created_at), (first, 1, t(0)));
    assert_eq!(c.mail, mail(1));
    assert_eq!(claimed[1].mail, mail(2));
    assert!(
        outbox
            .claim_due(t(59), t(120), 10)
            .await
            .expect("claim")
            .is_empty(),
        "leased"
    );
    let r = outbox.get(first).await.expect("get").expect("present");
    assert_eq!(
        (r.state, r.attempts, r.next_attempt_at),
        (MailState::Pending, 1, Some(t(60)))
    );
}

/// Sending finishes a message: it is never claimed again, and neither of its bodies (which
/// hold the link) is anywhere in the store. Reporting it twice changes nothing.
pub async fn sending_deletes_the_bodies_and_finishes_the_message(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let id = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let dump = String::from_utf8_lossy(&h.dump().await).into_owned();
    assert!(
        dump.contains("SECRET-TEXT-1") && dump.contains("SECRET-HTML-1"),
        "queued bodies are stored"
    );
    let claim = claim_one(&*outbox, t(0), t(30)).await;
    assert!(
        outbox
            .mark_sent(id, claim.attempt, t(5))
            .await
            .expect("sent")
    );
    let r = outbox.get(id).await.expect("get").expect("present");
    assert_eq!(
        (r.state, r.attempts, r.finished_at, r.next_attempt_at),
        (MailState::Sent, 1, Some(t(5)), None)
    );
    let dump = String::from_utf8_lossy(&h.dump().await).into_owned();
    assert!(!dump.contains("SECRET-TEXT-1"), "the text body is gone");
    assert!(!dump.contains("SECRET-HTML-1"), "the HTML body is gone");
    assert!(
        !outbox
            .mark_sent(id, claim.attempt, t(6))
            .await
            .expect("again")
    );
    assert!(
        !outbox
            .mark_failed(id, claim.attempt, "late", Some(t(10)), t(6))
            .await
            .expect("late failure")
    );
    assert_eq!(state(&*outbox, id).await, (MailState::Sent, 1));
    assert!(
        outbox
            .claim_due(t(3600), t(3700), 10)
            .await
            .expect("claim")
            .is_empty()
    );
}

/// A sender that dies holding a message gives it back when its lease ends; the next claim is
/// attempt 2, and the first sender's late report is refused either way.
pub async fn a_lease_hands_a_message_back_and_fences_the_stale_sender(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let id = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let stale = claim_one(&*outbox, t(0), t(30)).await;
    assert!(
        outbox
            .claim_due(t(29), t(60), 1)
            .await
            .expect("claim")
            .is_empty()
    );
    let fresh = claim_one(&*outbox, t(30), t(60)).await;
    assert_eq!((fresh.id, fresh.attempt), (id, 2));
    assert!(
        !outbox
            .mark_sent(id, stale.attempt, t(31))
            .await
            .expect("stale sent")
    );
    assert!(
        !outbox
            .mark_failed(id, stale.attempt, "stale", None, t(31))
            .await
            .expect("stale failure")
    );
    assert_eq!(state(&*outbox, id).await, (MailState::Pending, 2));
    assert!(
        outbox
            .mark_sent(id, fresh.attempt, t(32))
            .await
            .expect("sent")
    );
    assert_eq!(state(&*outbox, id).await, (MailState::Sent, 2));
}

/// A failure with a retry time keeps the message pending and not due before then, with the
/// error recorded; a failure without one makes it `failed`, kept for inspection and never
/// claimed again.
pub async fn failures_wait_for_their_retry_and_giving_up_keeps_the_message(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let id = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let c = claim_one(&*outbox, t(0), t(30)).await;
    assert!(
        outbox
            .mark_failed(id, c.attempt, "connection refused", Some(t(100)), t(1))
            .await
            .expect("failed")
    );
    let r = outbox.get(id).await.expect("get").expect("present");
    assert_eq!(
        (
            r.state,
            r.next_attempt_at,
            r.last_error.as_deref(),
            r.finished_at
        ),
        (
            MailState::Pending,
            Some(t(100)),
            Some("connection refused"),
            None
        )
    );
    assert!(
        outbox
            .claim_due(t(99), t(130), 1)
            .await
            .expect("claim")
            .is_empty()
    );
    let c = claim_one(&*outbox, t(100), t(130)).await;
    assert_eq!(c.attempt, 2);
    assert_eq!(c.mail, mail(1), "a retried message is whole");
    assert!(
        outbox
            .mark_failed(id, c.attempt, "550 no such user", None, t(101))
            .await
            .expect("gave up")
    );
    let r = outbox.get(id).await.expect("get").expect("present");
    assert_eq!(
        (r.state, r.attempts, r.finished_at, r.last_error.as_deref()),
        (MailState::Failed, 2, Some(t(101)), Some("550 no such user"))
    );
    assert!(
        outbox
            .claim_due(t(100_000), t(100_030), 10)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(outbox.recent(10).await.expect("recent")[0].id, id);
}

/// Claims take the messages that have waited longest first (an old retry before a new
/// message), and never more than `limit`.
pub async fn claims_take_the_longest_due_first_and_respect_the_limit(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let old = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let c = claim_one(&*outbox, t(0), t(5)).await;
    assert!(
        outbox
            .mark_failed(old, c.attempt, "timeout", Some(t(10)), t(1))
            .await
            .expect("failed")
    );
    let mut ids = Vec::new();
    for n in 2..=5 {
        ids.push(outbox.enqueue(&mail(n), t(20)).await.expect("enqueue"));
    }
    let claimed = outbox.claim_due(t(20), t(50), 2).await.expect("claim");
    let got: Vec<MailId> = claimed.iter().map(|c| c.id).collect();
    assert_eq!(
        got,
        [old, ids[0]],
        "the retry due at 10 s, then the oldest new message"
    );
    let rest = outbox.claim_due(t(20), t(50), 10).await.expect("claim");
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), ids[1..]);
    let recent = outbox.recent(3).await.expect("recent");
    assert_eq!(
        recent.iter().map(|r| r.id).collect::<Vec<_>>(),
        [ids[3], ids[2], ids[1]],
        "newest first"
    );
}

/// Eight senders claiming at once from forty messages: every message goes to exactly one.
pub async fn concurrent_claimers_never_share_a_message(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let mut all = HashSet::new();
    for n in 0..40 {
        all.insert(outbox.enqueue(&mail(n), t(0)).await.expect("enqueue"));
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let outbox = outbox.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = outbox.claim_due(t(1), t(600), 3).await.expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|c| (c.id, c.attempt)));
            }
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for (id, attempt) in task.await.expect("task") {
            assert_eq!(attempt, 1, "claimed twice: {id}");
            assert!(seen.insert(id), "{id} went to two senders");
        }
    }
    assert_eq!(seen, all);
}

/// Purging deletes sent and failed messages finished before their cutoffs, and never a
/// pending one, however old.
pub async fn purge_removes_only_finished_messages_past_their_cutoff(h: &impl OutboxHarness) {
    let outbox = h.outbox();
    let pending = outbox.enqueue(&mail(1), t(0)).await.expect("enqueue");
    let sent = outbox.enqueue(&mail(2), t(0)).await.expect("enqueue");
    let failed = outbox.enqueue(&mail(3), t(0)).await.expect("enqueue");
    let fresh = outbox.enqueue(&mail(4), t(0)).await.expect("enqueue");
    let claims = outbox.claim_due(t(0), t(30), 10).await.expect("claim");
    let attempt = |id: MailId| claims.iter().find(|c| c.id == id).expect("claimed").attempt;
    assert!(
        outbox
            .mark_sent(sent, attempt(sent), t(10))
            .await
            .expect("sent")
    );
    assert!(
        outbox
            .mark_failed(failed, attempt(failed), "550", None, t(10))
            .await
            .expect("failed")
    );
    assert!(
        outbox
            .mark_sent(fresh, attempt(fresh), t(20))
            .await
            .expect("sent")
    );
    let day = Duration::from_secs(86_400);
    assert_eq!(
        outbox.purge(t(10), t(10)).await.expect("purge"),
        0,
        "cutoffs are exclusive"
    );
    assert_eq!(outbox.purge(t(11), t(10)).await.expect("purge"), 1);
    assert_eq!(outbox.get(sent).await.expect("get"), None);
    assert!(
        outbox.get(failed).await.expect("get").is_some(),
        "failed ones have their own cutoff"
    );
    assert_eq!(outbox.purge(t(11), t(11)).await.expect("purge"), 1);
    assert_eq!(outbox.get(failed).await.expect("get"), None);
    let far = t(0).saturating_add(day * 365);
    assert_eq!(outbox.purge(t(15), far).await.expect("purge"), 0);
    assert!(outbox.get(fresh).await.expect("get").is_some());
    assert_eq!(outbox.purge(far, far).await.expect("purge"), 1);
    assert_eq!(
        state(&*outbox, pending).await.0,
        MailState::Pending,
        "pending is never purged"
    );
}
