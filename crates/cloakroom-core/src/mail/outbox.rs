//! [`MailOutbox`]: the durable queue of outgoing mail, as a store contract.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::store::StoreError;

use super::EmailAddress;

/// Longest subject line accepted, in bytes (RFC 5322 §2.1.1 caps a header line at 998).
pub const MAX_SUBJECT_LEN: usize = 900;
/// Largest body (text or HTML) accepted, in bytes. Cloakroom's messages are a few hundred
/// bytes; this bounds what an operator's template can make of them.
pub const MAX_BODY_LEN: usize = 256 * 1024;

/// Why a message cannot go into the outbox.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidMail {
    /// The kind is not 1 to 32 characters of `a-z`, `0-9` and `_`.
    #[error("a mail kind is 1 to 32 characters of a-z, 0-9 and '_'")]
    Kind,
    /// The subject is empty, too long, or holds a control character (a line break would start
    /// a new header).
    #[error("a subject is 1 to {MAX_SUBJECT_LEN} bytes on one line")]
    Subject,
    /// A body is empty or larger than [`MAX_BODY_LEN`].
    #[error("a mail body is 1 to {MAX_BODY_LEN} bytes")]
    Body,
}

/// A rendered message, ready for a transport: who it is for, what it says, in plain text and
/// optionally HTML. The sender is not part of it; the server adds its configured `From` when it
/// delivers, so a corrected `mail_from` applies to mail already queued.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    kind: String,
    to: EmailAddress,
    subject: String,
    text: String,
    html: Option<String>,
}

impl OutgoingMail {
    /// A message of `kind` (`password_reset`, `test`, …: for logs and inspection) to `to`.
    pub fn new(
        kind: &str,
        to: EmailAddress,
        subject: &str,
        text: String,
        html: Option<String>,
    ) -> Result<Self, InvalidMail> {
        let kind_ok = (1..=32).contains(&kind.len())
            && kind
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !kind_ok {
            return Err(InvalidMail::Kind);
        }
        if subject.is_empty()
            || subject.len() > MAX_SUBJECT_LEN
            || subject.chars().any(char::is_control)
        {
            return Err(InvalidMail::Subject);
        }
        let body_ok = |b: &str| (1..=MAX_BODY_LEN).contains(&b.len());
        if !body_ok(&text) || html.as_deref().is_some_and(|h| !body_ok(h)) {
            return Err(InvalidMail::Body);
        }
        Ok(Self {
            kind: kind.to_owned(),
            to,
            subject: subject.to_owned(),
            text,
            html,
        })
    }

    /// What kind of message it is.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The recipient.
    pub fn to(&self) -> &EmailAddress {
        &self.to
    }

    /// The subject line.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The plain-text body. May hold a single-use link: never log it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The HTML body, if any. May hold a single-use link: never log it.
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bodies carry reset and verification links: bearer secrets.
        f.debug_struct("OutgoingMail")
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("bodies", &"[redacted]")
            .finish()
    }
}

/// A message's number in its outbox: increasing, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailId(i64);

impl MailId {
    /// The id a store assigned.
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The number.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A message handed to one sender for one delivery attempt.
#[derive(Debug, Clone)]
pub struct ClaimedMail {
    /// Which message.
    pub id: MailId,
    /// The number of this attempt, from 1. It is also the claim's fencing token: reports about
    /// an attempt that is no longer the latest are refused.
    pub attempt: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// What to send.
    pub mail: OutgoingMail,
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for its (next) attempt, or being attempted under a lease.
    Pending,
    /// Delivered to the SMTP server (or, without one, to the log). Its bodies are gone.
    Sent,
    /// Given up on: a permanent refusal, or out of attempts. Kept for inspection.
    Failed,
}

impl MailState {
    /// The name stores and the CLI use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }

    /// The state a stored name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pending" => Some(Self::Pending),
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// What the outbox knows about a message, for inspection (no bodies: they hold links).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    /// Which message.
    pub id: MailId,
    /// Its kind.
    pub kind: String,
    /// The recipient.
    pub to: EmailAddress,
    /// The subject line.
    pub subject: String,
    /// Where it is in its life.
    pub state: MailState,
    /// Attempts begun so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// While pending: when it is next due (while an attempt holds it, when that lease ends).
    pub next_attempt_at: Option<Timestamp>,
    /// When it was sent or given up on.
    pub finished_at: Option<Timestamp>,
    /// Why the latest failed attempt failed.
    pub last_error: Option<String>,
}

/// The durable queue of outgoing mail. It lives in the account store (SQLite or PostgreSQL),
/// shared by every instance and by the admin CLI, and, like the other stores, never reads a
/// clock: callers pass the time.
///
/// A message is `pending` until it is `sent` or `failed`. Claims are leases: claiming makes a
/// message due again at the lease's end, so a sender that dies mid-attempt gives it back
/// without anyone noticing the death. The attempt number fences the reports: only the sender
/// holding the latest attempt can record its outcome.
#[async_trait]
pub trait MailOutbox: Send + Sync + fmt::Debug + 'static {
    /// A short name for errors, logs and metrics.
    fn name(&self) -> &'static str;

    /// Adds `mail`, pending and due at `now`, with no attempts. Durable when it returns: a
    /// crash afterwards does not lose it. Returns its id, greater than every id before it.
    async fn enqueue(&self, mail: &OutgoingMail, now: Timestamp) -> Result<MailId, StoreError>;

    /// Claims at most `limit` pending messages due at `now` (next attempt time at or before
    /// `now`), the longest-due first, for one delivery attempt each: each one's attempt count
    /// goes up by one and it is not due again before `lease_until`.
    ///
    /// Of any number of concurrent callers (tasks, instances, processes), each message goes
    /// to at most one until `lease_until` passes.
    async fn claim_due(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: usize,
    ) -> Result<Vec<ClaimedMail>, StoreError>;

    /// Records that attempt `attempt` of `id` delivered the message: it becomes `sent` at
    /// `now` and its bodies are deleted (a sent reset link no longer sits in the database).
    ///
    /// Returns `false`, changing nothing, unless the message is pending with exactly
    /// `attempt` attempts — a sender whose lease ran out and whose message was claimed again
    /// cannot overwrite the newer attempt's outcome.
    async fn mark_sent(&self, id: MailId, attempt: u32, now: Timestamp)
    -> Result<bool, StoreError>;

    /// Records that attempt `attempt` of `id` failed with `error`. With `retry_at`, the
    /// message stays pending and is due at that time; without, it becomes `failed` at `now`
    /// and is kept, bodies and all, for inspection. Fenced like
    /// [`mark_sent`](Self::mark_sent).
    async fn mark_failed(
        &self,
        id: MailId,
        attempt: u32,
        error: &str,
        retry_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// What the outbox knows about `id`, if it holds it.
    async fn get(&self, id: MailId) -> Result<Option<MailRecord>, StoreError>;

    /// The `limit` most recent messages, newest first.
    async fn recent(&self, limit: usize) -> Result<Vec<MailRecord>, StoreError>;

    /// Deletes finished messages: `sent` ones finished before `sent_before`, `failed` ones
    /// before `failed_before`. Pending messages are never deleted. Returns how many went.
    async fn purge(
        &self,
        sent_before: Timestamp,
        failed_before: Timestamp,
    ) -> Result<u64, StoreError>;
}

/// When to try a failed delivery again: after `first`, doubling each time up to `cap`, for at
/// most `max_attempts` attempts in all.
///
/// ```
/// use std::time::Duration;
/// use cloakroom_core::Timestamp;
/// use cloakroom_core::mail::RetryPolicy;
///
/// let policy = RetryPolicy::new(Duration::from_secs(30), Duration::from_secs(3600), 4);
/// let now = Timestamp::EPOCH;
/// let secs = |attempt| policy.after_failure(attempt, now).map(|t| t.as_unix_secs());
/// assert_eq!([secs(1), secs(2), secs(3), secs(4)], [Some(30), Some(60), Some(120), None]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    first: Duration,
    cap: Duration,
    max_attempts: u32,
}

impl RetryPolicy {
    /// A policy; `max_attempts` counts the first attempt too (at least one is always made).
    pub fn new(first: Duration, cap: Duration, max_attempts: u32) -> Self {
        Self {
            first,
            cap: cap.max(first),
            max_attempts: max_attempts.max(1),
        }
    }

    /// The attempts made before giving up.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// When to try again after attempt `attempt` (from 1) failed at `now`, or `None` to give
    /// up.
    pub fn after_failure(&self, attempt: u32, now: Timestamp) -> Option<Timestamp> {
        if attempt >= self.max_attempts {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(31);
        let delay = self.first.saturating_mul(1 << doublings).min(self.cap);
        Some(now.saturating_add(delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to() -> EmailAddress {
        EmailAddress::parse("a@example.com").unwrap()
    }

    #[test]
    fn messages_are_checked_and_their_bodies_redacted() {
        let m =
            OutgoingMail::new("password_reset", to(), "Reset", "secret link".into(), None).unwrap();
        assert!(!format!("{m:?}").contains("secret"));
        assert_eq!(
            OutgoingMail::new("Reset!", to(), "s", "t".into(), None),
            Err(InvalidMail::Kind)
        );
        for subject in [
            "",
            "a\r\nBcc: eve@evil.test",
            &"s".repeat(MAX_SUBJECT_LEN + 1),
        ] {
            assert_eq!(
                OutgoingMail::new("k", to(), subject, "t".into(), None),
                Err(InvalidMail::Subject)
            );
        }
        assert_eq!(
            OutgoingMail::new("k", to(), "s", String::new(), None),
            Err(InvalidMail::Body)
        );
        assert_eq!(
            OutgoingMail::new(
                "k",
                to(),
                "s",
                "t".into(),
                Some("x".repeat(MAX_BODY_LEN + 1))
            ),
            Err(InvalidMail::Body)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_gives_up() {
        let p = RetryPolicy::new(Duration::from_secs(10), Duration::from_secs(35), 6);
        let t0 = Timestamp::EPOCH;
        let delays: Vec<_> = (1..=6)
            .map(|a| p.after_failure(a, t0).map(|t| t.as_unix_secs()))
            .collect();
        assert_eq!(
            delays,
            [Some(10), Some(20), Some(35), Some(35), Some(35), None]
        );
        // Huge attempt numbers neither overflow nor exceed the cap.
        let big = RetryPolicy::new(Duration::from_secs(1), Duration::from_secs(60), u32::MAX);
        assert_eq!(
            big.after_failure(u32::MAX - 1, t0)
                .map(|t| t.as_unix_secs()),
            Some(60)
        );
        assert_eq!(
            RetryPolicy::new(Duration::ZERO, Duration::ZERO, 0).max_attempts(),
            1
        );
    }

    #[test]
    fn states_round_trip_their_names() {
        for s in [MailState::Pending, MailState::Sent, MailState::Failed] {
            assert_eq!(MailState::from_name(s.as_str()), Some(s));
        }
        assert_eq!(MailState::from_name("queued"), None);
    }
}
