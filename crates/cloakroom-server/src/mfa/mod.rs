//! Second factors as the server offers them (issue 17): an authenticator app (TOTP),
//! recovery codes, passkeys (`passkey.rs`), and the session's level of assurance. No HTTP in here: `web/mfa.rs` turns
//! these into routes and pages.
//!
//! A TOTP secret is sealed with the server's secret before it reaches the store (the
//! `secrets_file`, or with the accounts in SQLite and none configured, a secret of this data
//! directory's own, `<data_dir>/secrets`), so that a copied database or backup holds no
//! usable secret. Codes are accepted once: the store records the last step used, with a
//! compare-and-set, across instances.

pub(crate) mod level;
pub(crate) mod passkey;
pub(crate) mod recovery;
pub(crate) mod totp;

use std::sync::Arc;

use cloakroom_core::accounts::Account;
use cloakroom_core::mfa::{Factors, RecoveryCodeHash, SecondFactorStore};
use cloakroom_core::{Clock, StoreError, UserId};

use crate::secrets::Secrets;

/// A second factor, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Method {
    /// A six-digit code from the authenticator app.
    Totp,
    /// One of the ten recovery codes.
    RecoveryCode,
    /// A passkey's answer to a challenge.
    Passkey,
}

impl Method {
    /// As the API and the logs spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::RecoveryCode => "recovery_code",
            Self::Passkey => "passkey",
        }
    }
}

/// What a user gives as a second factor.
#[derive(Debug)]
pub(crate) enum Proof {
    /// A code: from the authenticator app, or a recovery code.
    Code(Method, String),
    /// A passkey's answer to the challenge kept in the session.
    Passkey(Box<webauthn_rs::prelude::PublicKeyCredential>),
}

impl Proof {
    /// The method it is given by.
    pub(crate) fn method(&self) -> Method {
        match self {
            Self::Code(m, _) => *m,
            Self::Passkey(_) => Method::Passkey,
        }
    }
}

/// Why a second-factor operation did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MfaError {
    /// The code is not right (or was used already: the answer does not tell which).
    #[error("That code is not right. Check the app's current code and try again.")]
    WrongCode,
    /// The code was right, but its time step was used already (logged as a replay).
    #[error("That code is not right. Check the app's current code and try again.")]
    Replayed,
    /// Confirming an enrolment that is not under way.
    #[error("No authenticator app is being set up: start again.")]
    NoEnrolment,
    /// Starting an enrolment while an authenticator is set up.
    #[error("An authenticator app is set up already: remove it first.")]
    AlreadyEnrolled,
    /// Removing an authenticator that is not there.
    #[error("This account has no authenticator app.")]
    NotEnrolled,
    /// A stored secret that none of the server's secrets opens: the secret was replaced
    /// without keeping the old one, or the data is not this server's.
    #[error("the stored authenticator secret does not open with the server's secrets")]
    Sealed(#[source] crate::secrets::OpenError),
    /// The secret cannot be put into an `otpauth://` URL.
    #[error("the authenticator cannot be described")]
    Build(#[source] totp::BuildError),
    /// A passkey operation did not happen.
    #[error(transparent)]
    Passkey(#[from] passkey::PasskeyError),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an enrolment shows: the secret, the URL an app reads, and its QR code.
#[derive(Debug)]
pub(crate) struct Enrolment {
    /// Base32, unpadded, for typing into an app.
    pub(crate) secret: String,
    /// `otpauth://totp/<issuer>:<user>?secret=…&issuer=…`.
    pub(crate) otpauth_url: String,
    /// The URL as a QR code (an SVG document).
    pub(crate) qr_svg: Option<String>,
}

/// The second factors of every account: the store, the server's secrets and clock.
#[derive(Debug, Clone)]
pub(crate) struct SecondFactors {
    store: Arc<dyn SecondFactorStore>,
    secrets: Secrets,
    clock: Arc<dyn Clock>,
    issuer: String,
    /// Passkeys: the relying party and its ceremonies.
    pub(crate) passkeys: passkey::Passkeys,
}

/// What a sealed TOTP secret is bound to: its purpose and account, so a sealed value copied
/// to another account's row does not open.
fn context(user: &UserId) -> Vec<u8> {
    let mut c = b"cloakroom totp v1\0".to_vec();
    c.extend_from_slice(user.as_str().as_bytes());
    c
}

impl SecondFactors {
    pub(crate) fn new(
        store: Arc<dyn SecondFactorStore>,
        secrets: Secrets,
        clock: Arc<dyn Clock>,
        issuer: String,
        passkeys: passkey::Passkeys,
    ) -> Self {
        Self {
            store,
            secrets,
            clock,
            issuer,
            passkeys,
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn SecondFactorStore> {
        &self.store
    }

    /// Which factors `user` has.
    pub(crate) async fn factors(&self, user: &UserId) -> Result<Factors, StoreError> {
        self.store.factors(user).await
    }

    /// The methods a sign-in of `user` may use for its second factor, as the API lists them.
    pub(crate) fn methods(factors: &Factors) -> Vec<&'static str> {
        let mut methods = Vec::with_capacity(3);
        if factors.totp {
            methods.push(Method::Totp.as_str());
        }
        if factors.passkeys > 0 {
            methods.push(Method::Passkey.as_str());
        }
        if factors.recovery_codes > 0 {
            methods.push(Method::RecoveryCode.as_str());
        }
        methods
    }

    /// Starts setting up an authenticator app for `account`: a new secret, sealed and stored
    /// unconfirmed (replacing an unfinished one). Refused while one is set up.
    pub(crate) async fn begin_totp(&self, account: &Account) -> Result<Enrolment, MfaError> {
        let secret: [u8; totp::SECRET_LEN] = crate::tokens::keys::random();
        let app = totp::authenticator(&secret, &self.issuer, account.username.as_str())
            .map_err(MfaError::Build)?;
        let url = app.to_url().map_err(MfaError::Build)?;
        let sealed = self.secrets.seal(&context(&account.id), &secret);
        if !self
            .store
            .begin_totp(&account.id, &sealed, self.clock.now())
            .await?
        {
            return Err(MfaError::AlreadyEnrolled);
        }
        Ok(Enrolment {
            secret: app.secret().to_base32(),
            qr_svg: totp::qr_svg(&url),
            otpauth_url: url,
        })
    }

    /// The enrolment under way for `account` (not confirmed yet), shown again — the same
    /// secret, so an app that scanned it needs no new scan.
    pub(crate) async fn enrolment(&self, account: &Account) -> Result<Option<Enrolment>, MfaError> {
        let Some(record) = self.store.totp(&account.id).await? else {
            return Ok(None);
        };
        if record.confirmed_at.is_some() {
            return Ok(None);
        }
        let secret = self.open(&account.id, &record.sealed)?;
        let app = totp::authenticator(&secret, &self.issuer, account.username.as_str())
            .map_err(MfaError::Build)?;
        let url = app.to_url().map_err(MfaError::Build)?;
        Ok(Some(Enrolment {
            secret: app.secret().to_base32(),
            qr_svg: totp::qr_svg(&url),
            otpauth_url: url,
        }))
    }

    /// Finishes setting up the authenticator with its first code: returns the new recovery
    /// codes (shown once; their digests replace any old set).
    pub(crate) async fn confirm_totp(
        &self,
        user: &UserId,
        code: &str,
    ) -> Result<Vec<String>, MfaError> {
        let record = self.store.totp(user).await?.ok_or(MfaError::NoEnrolment)?;
        if record.confirmed_at.is_some() {
            return Err(MfaError::AlreadyEnrolled);
        }
        let secret = self.open(user, &record.sealed)?;
        let step = totp::check(&secret, code, self.clock.now()).ok_or(MfaError::WrongCode)?;
        let (codes, hashes) = recovery::new_set(user);
        if self
            .store
            .confirm_totp(user, &record.sealed, step, &hashes, self.clock.now())
            .await?
        {
            Ok(codes)
        } else {
            Err(MfaError::NoEnrolment)
        }
    }

    /// Checks a second factor of `user`: a TOTP code (accepted once: its time step is used
    /// up), or a recovery code (used up).
    pub(crate) async fn verify(
        &self,
        user: &UserId,
        method: Method,
        code: &str,
    ) -> Result<(), MfaError> {
        match method {
            Method::Totp => {
                let record = self
                    .store
                    .totp(user)
                    .await?
                    .filter(|r| r.confirmed_at.is_some())
                    .ok_or(MfaError::WrongCode)?;
                let secret = self.open(user, &record.sealed)?;
                let step =
                    totp::check(&secret, code, self.clock.now()).ok_or(MfaError::WrongCode)?;
                if self.store.use_totp_step(user, step).await? {
                    Ok(())
                } else {
                    Err(MfaError::Replayed)
                }
            }
            // A passkey answers a challenge, not with a code (see `Proof`).
            Method::Passkey => Err(MfaError::WrongCode),
            Method::RecoveryCode => {
                let normalized = recovery::normalize(code).ok_or(MfaError::WrongCode)?;
                let hash = RecoveryCodeHash::of(user, &normalized);
                if self
                    .store
                    .use_recovery_code(user, &hash, self.clock.now())
                    .await?
                {
                    Ok(())
                } else {
                    Err(MfaError::WrongCode)
                }
            }
        }
    }

    /// Removes the authenticator app of `user`, and the recovery codes with it when no other
    /// factor is left (they would otherwise stand in for nothing).
    pub(crate) async fn remove_totp(&self, user: &UserId) -> Result<(), MfaError> {
        if !self.store.remove_totp(user).await? {
            return Err(MfaError::NotEnrolled);
        }
        if !self.store.factors(user).await?.any() {
            self.store
                .set_recovery_codes(user, &[], self.clock.now())
                .await?;
        }
        Ok(())
    }

    /// A new set of recovery codes for `user`, replacing the old set.
    pub(crate) async fn new_recovery_codes(&self, user: &UserId) -> Result<Vec<String>, MfaError> {
        let (codes, hashes) = recovery::new_set(user);
        self.store
            .set_recovery_codes(user, &hashes, self.clock.now())
            .await?;
        Ok(codes)
    }

    fn open(&self, user: &UserId, sealed: &[u8]) -> Result<Vec<u8>, MfaError> {
        self.secrets
            .open(&context(user), sealed)
            .map(|o| o.plaintext)
            .map_err(MfaError::Sealed)
    }
}
