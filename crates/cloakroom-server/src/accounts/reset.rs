//! Password-reset links: minted for an account's current password and revocation epoch, so
//! that a link dies when either moves (see `cloakroom_core::link::ResetFingerprint`).
//!
//! Shared by `POST /api/password-reset` (which mails the link) and `cloakroom user reset-link`
//! (which prints it), so both make the same link.

use cloakroom_core::accounts::Account;
use cloakroom_core::link::{LinkError, Minted, PasswordReset, ResetFingerprint};
use cloakroom_core::{SessionManager, StoreError, Timestamp};

use crate::tokens::links::Links;

/// Why no reset link could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum ResetLinkError {
    /// The session store could not say the account's revocation epoch.
    #[error("reading the revocation epoch")]
    Store(#[source] StoreError),
    /// The link could not be signed.
    #[error("signing the reset link")]
    Link(#[source] LinkError),
}

/// The fingerprint a reset link for `account` carries now, and must still match when it comes
/// back.
pub(crate) async fn fingerprint(
    sessions: &SessionManager,
    account: &Account,
) -> Result<ResetFingerprint, StoreError> {
    let epoch = sessions.revocation_epoch(&account.id).await?;
    Ok(ResetFingerprint::of(
        &account.id,
        &account.password_hash,
        epoch,
    ))
}

/// A reset link for `account`: `<public_url>/password-reset?token=…`, living the configured
/// reset lifetime.
pub(crate) async fn reset_link(
    links: &Links,
    sessions: &SessionManager,
    account: &Account,
    now: Timestamp,
) -> Result<(String, Minted), ResetLinkError> {
    let fp = fingerprint(sessions, account)
        .await
        .map_err(ResetLinkError::Store)?;
    links
        .reset_url(&PasswordReset::new(account.id.clone(), fp), now)
        .map_err(ResetLinkError::Link)
}
