//! Mail that proves an address: the verification link sent when an account gets an address.
//!
//! Shared by sign-up (page and API) and `cloakroom user add --email`, so both send the same
//! link. The link is bound to the account and the exact address (`EmailFingerprint`): once the
//! address is verified or replaced, it no longer matches and the link is dead.

use cloakroom_core::Timestamp;
use cloakroom_core::accounts::Account;
use cloakroom_core::link::{EmailVerification, LinkError};
use cloakroom_core::mail::MailId;

use crate::mail::{Mail, MailError, Mailer};
use crate::tokens::links::Links;

/// Why no verification mail could be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum VerificationMailError {
    /// The link could not be signed.
    #[error("signing the verification link")]
    Link(#[source] LinkError),
    /// The outbox refused the message.
    #[error("queueing the verification mail")]
    Mail(#[source] MailError),
}

/// Queues a verification link for `account`'s address, if it has one that is not verified yet.
/// Returns the message's id, or `None` when there is nothing to verify.
pub(crate) async fn send_verification(
    links: &Links,
    mailer: &Mailer,
    account: &Account,
    now: Timestamp,
) -> Result<Option<MailId>, VerificationMailError> {
    let Some(address) = account.email.as_ref().filter(|_| !account.email_verified) else {
        return Ok(None);
    };
    let (link, _) = links
        .verify_email_url(&EmailVerification::new(account.id.clone(), address), now)
        .map_err(VerificationMailError::Link)?;
    mailer
        .enqueue(Mail::VerifyEmail {
            to: address.clone(),
            username: account.username.as_str().to_owned(),
            link,
            expires_in: EmailVerification::MAX_LIFETIME,
        })
        .await
        .map(Some)
        .map_err(VerificationMailError::Mail)
}
