//! `cloakroom mail …`: check that mail works, and see what the outbox holds.
//!
//! `mail test` goes through the outbox like every other message: it enqueues, and a running
//! `cloakroom serve` delivers. The command never sends by itself, on purpose — it may run with a
//! different environment than the server (no `smtp_url`, another relay), and a message it
//! delivered would tell nothing about the server's own configuration. It waits for the
//! server's verdict instead and reports it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::SystemClock;
use cloakroom_core::mail::{EmailAddress, MailId, MailState};

use super::admin::AdminError;
use crate::config::Settings;
use crate::mail::{Mail, Mailer};
use crate::state::Stores;
use crate::web::device::rfc3339;

fn fail(e: impl std::fmt::Display) -> AdminError {
    AdminError(e.to_string())
}

/// `mail test ADDRESS`: enqueues a test message; unless `wait` is `None`, waits that long for
/// a server to deliver it and says what happened.
pub async fn mail_test(
    stores: &Stores,
    settings: &Settings,
    address: &str,
    wait: Option<Duration>,
) -> Result<String, AdminError> {
    let to = EmailAddress::parse(address).map_err(fail)?;
    let mailer = Mailer::open(
        &settings.mail,
        stores.outbox.clone(),
        Arc::new(SystemClock),
        &settings.public_origin,
    )
    .map_err(fail)?;
    let id = mailer
        .enqueue(Mail::Test { to: to.clone() })
        .await
        .map_err(fail)?;
    let Some(wait) = wait else {
        return Ok(format!(
            "queued test message {id} to {to}; a running `cloakroom serve` delivers it\n"
        ));
    };
    outcome(&mailer, id, &to, wait).await
}

/// How long `mail test` waits by default: long enough for a server's sender to wake, make
/// one attempt, and record it.
pub fn default_wait(settings: &Settings) -> Duration {
    crate::mail::POLL + settings.mail.timeout * 4 + Duration::from_secs(5)
}

async fn outcome(
    mailer: &Mailer,
    id: MailId,
    to: &EmailAddress,
    wait: Duration,
) -> Result<String, AdminError> {
    let started = tokio::time::Instant::now();
    loop {
        let record = mailer
            .outbox()
            .get(id)
            .await
            .map_err(fail)?
            .ok_or_else(|| fail(format!("test message {id} is no longer in the outbox")))?;
        let error = record.last_error.as_deref().unwrap_or("no reason recorded");
        match record.state {
            MailState::Sent => {
                return Ok(format!(
                    "delivered test message {id} to {to} (attempt {})\n",
                    record.attempts
                ));
            }
            MailState::Failed => {
                return Err(fail(format!(
                    "test message {id} to {to} could not be delivered: {error}"
                )));
            }
            MailState::Pending if started.elapsed() >= wait => {
                return Err(fail(if record.attempts == 0 {
                    format!(
                        "test message {id} is still queued after {} s: is `cloakroom serve` running on this data?",
                        wait.as_secs()
                    )
                } else {
                    format!(
                        "test message {id} is not delivered yet; attempt {} failed: {error} (the server keeps trying; see `cloakroom mail list`)",
                        record.attempts
                    )
                }));
            }
            MailState::Pending => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// `mail list`: the most recent messages, newest first, and what became of them.
pub async fn mail_list(stores: &Stores, limit: usize) -> Result<String, AdminError> {
    let mut out = format!(
        "{:<8} {:<8} {:<8} {:<16} {:<32} {:<20} {}\n",
        "ID", "STATE", "ATTEMPTS", "KIND", "TO", "CREATED", "LAST ERROR"
    );
    for r in stores.outbox.recent(limit).await.map_err(fail)? {
        let _ = writeln!(
            out,
            "{:<8} {:<8} {:<8} {:<16} {:<32} {:<20} {}",
            r.id,
            r.state.as_str(),
            r.attempts,
            r.kind,
            r.to,
            rfc3339(r.created_at),
            r.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(out)
}
