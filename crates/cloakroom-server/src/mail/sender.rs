//! The sender task: takes due messages from the outbox, delivers them, records what happened.
//!
//! One message at a time, each under a lease that outlasts the attempt's deadline, so the
//! lease only runs out when the process died (then another sender, or this one restarted,
//! takes the message over). A transient failure is retried with exponential backoff; a
//! permanent refusal (5xx) or the last attempt marks the message failed. The task wakes when a
//! message is enqueued in this process, when a retry it scheduled falls due, and otherwise
//! every [`POLL`] — for messages other instances or the admin CLI enqueued.
//!
//! On shutdown it finishes the attempt in hand (bounded by its deadline) and stops claiming.

use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::mail::{ClaimedMail, MailOutbox, RetryPolicy};
use cloakroom_core::{Clock, StoreError, Timestamp};
use tokio::sync::{Notify, watch};

use super::smtp::Transport;

/// The longest the sender sleeps before looking at the outbox again.
pub(crate) const POLL: Duration = Duration::from_secs(5);

/// How much longer than an attempt's deadline its lease lasts (room for the clocks of
/// instances to disagree).
const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// Longest error text kept in the outbox.
const MAX_ERROR_LEN: usize = 500;

/// Delivers the outbox.
#[derive(Debug)]
pub(crate) struct Sender {
    pub(crate) outbox: Arc<dyn MailOutbox>,
    pub(crate) transport: Transport,
    pub(crate) policy: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) wake: Arc<Notify>,
    /// The most one attempt may take, start to finish.
    pub(crate) deadline: Duration,
}

impl Sender {
    /// Runs until `stop` turns true (or its sender is dropped).
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            let next = match self.deliver_due(&stop).await {
                Ok(next) => next,
                Err(e) => {
                    crate::metrics::store_error(e.store());
                    tracing::warn!(error = %e, "the mail outbox is unavailable; trying again shortly");
                    None
                }
            };
            if *stop.borrow() {
                break;
            }
            let now = self.clock.now();
            let nap = next.map_or(POLL, |at| at.duration_since(now).min(POLL));
            tokio::select! {
                () = tokio::time::sleep(nap) => {}
                () = self.wake.notified() => {}
                changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            }
        }
        tracing::debug!("mail sender stopped");
    }

    /// Delivers every message due now, one at a time, until none is left or `stop` is set.
    /// Returns the earliest retry it scheduled, when the next pass is worth making.
    pub(crate) async fn deliver_due(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Timestamp>, StoreError> {
        let mut next: Option<Timestamp> = None;
        while !*stop.borrow() {
            let now = self.clock.now();
            let lease_until = now.saturating_add(self.deadline + LEASE_MARGIN);
            let Some(claimed) = self.outbox.claim_due(now, lease_until, 1).await?.pop() else {
                break;
            };
            if let Some(retry) = self.attempt(&claimed).await? {
                next = Some(next.map_or(retry, |n| n.min(retry)));
            }
        }
        Ok(next)
    }

    /// One delivery attempt and its record; returns the retry time if one was scheduled.
    async fn attempt(&self, claimed: &ClaimedMail) -> Result<Option<Timestamp>, StoreError> {
        let outcome =
            match tokio::time::timeout(self.deadline, self.transport.deliver(claimed)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(super::smtp::DeliveryError {
                    permanent: false,
                    reason: format!("no answer within {} s", self.deadline.as_secs()),
                }),
            };
        let now = self.clock.now();
        let (id, attempt, kind) = (claimed.id, claimed.attempt, claimed.mail.kind());
        let error = match outcome {
            Ok(()) => {
                if !self.outbox.mark_sent(id, attempt, now).await? {
                    // Our lease ran out and another sender took the message over: it may be
                    // sent twice (delivery is at least once), never lost.
                    tracing::warn!(mail_id = %id, attempt, "mail sent after its lease ran out");
                }
                crate::metrics::mail("sent");
                tracing::info!(mail_id = %id, kind, attempt, to_domain = claimed.mail.to().domain(), "mail delivered");
                return Ok(None);
            }
            Err(e) => e,
        };
        let mut reason = error.reason;
        if reason.len() > MAX_ERROR_LEN {
            let cut = (0..=MAX_ERROR_LEN)
                .rev()
                .find(|&i| reason.is_char_boundary(i))
                .unwrap_or(0);
            reason.truncate(cut);
        }
        let retry_at = if error.permanent {
            None
        } else {
            self.policy.after_failure(attempt, now)
        };
        // Said before it is recorded: whoever sees the failure in the outbox (an operator
        // with `mail list`, or a process killed right after) finds it in the log as well.
        match retry_at {
            Some(at) => {
                crate::metrics::mail("retry");
                tracing::warn!(
                    mail_id = %id, kind, attempt, error = %reason,
                    retry_in_secs = at.duration_since(now).as_secs(),
                    "mail delivery failed; it will be tried again"
                );
            }
            None => {
                crate::metrics::mail("failed");
                tracing::error!(
                    mail_id = %id, kind, attempt, error = %reason, permanent = error.permanent,
                    "mail delivery failed for good; the message is kept in the outbox (cloakroom mail list)"
                );
            }
        }
        self.outbox
            .mark_failed(id, attempt, &reason, retry_at, now)
            .await?;
        Ok(retry_at)
    }
}
