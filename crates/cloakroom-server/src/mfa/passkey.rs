//! Passkeys (WebAuthn), driven by `webauthn-rs`: registration, and authentication as a second
//! factor, for step-up, or — where `passkey_login` is on — on their own (discoverable
//! credentials). The CBOR, COSE keys, signatures and counters are the library's; what is here
//! is where its ceremony state lives, and what the store keeps.
//!
//! **Ceremony state stays on the server.** `webauthn-rs` hands back a state with each
//! challenge and warns that a client-held state invites replay. A registration, a second
//! factor and a step-up have a session record (full or pending) to keep it in; the state is
//! taken out of the record before it is used, so one challenge answers once. A passwordless
//! sign-in has no session yet: its state travels as an OpenID sign-in's does, in the
//! pre-login cookie (`oidc::prelogin`: MAC'd under the pre-login key for its own purpose,
//! short-lived, `__Host-`, spent in the consumed-link records when it is answered) —
//! unforgeable and good once, which is what the warning asks of server-side state. (The state
//! holds the challenge the browser was sent anyway; nothing in it is secret.)
//!
//! **The relying party is `public_url`**: its host is the RP id, its origin the only one
//! accepted. WebAuthn refuses IP addresses as RP ids, so a server whose public URL is an IP
//! address has no passkeys (it says so at start-up, and the pages offer none).
//!
//! **The user handle** given to authenticators is a digest of the account id, not the id or
//! the username: authenticators and password managers show and sync it.

use std::sync::Arc;

use cloakroom_core::accounts::Account;
use cloakroom_core::mfa::{PasskeyRecord, SecondFactorStore};
use cloakroom_core::{Clock, SessionManager, StoreError, UserId};
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, DiscoverableAuthentication, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::oidc::prelogin::{Carried, PreLoginKey, Purpose};

/// Session data key: a registration under way.
pub(crate) const REGISTRATION_KEY: &str = "cloakroom.passkey_registration";
/// Session data key: a challenge for the session's (or pending sign-in's) passkeys.
pub(crate) const CHALLENGE_KEY: &str = "cloakroom.passkey_challenge";
/// How long a challenge may be answered (a passwordless one's sealed cookie, or a state kept
/// in a session): the browser's own timeout, which the library sets to five minutes.
pub(crate) const CHALLENGE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5 * 60);
/// The longest name a passkey may be given.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// Why a passkey operation did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PasskeyError {
    /// The public URL cannot be a relying party (an IP address).
    #[error("Passkeys are not available on this server: its public URL has no domain name.")]
    Unavailable,
    /// No ceremony under way (never started, answered already, or from another session).
    #[error("The passkey request has expired or was used. Try again.")]
    NoChallenge,
    /// The account has no passkey to ask for.
    #[error("This account has no passkey.")]
    NoPasskeys,
    /// The authenticator's answer was refused: wrong signature, origin, challenge, user
    /// verification missing… (which one is logged, not told).
    #[error("The passkey was not accepted. Try again, or use another way to confirm it is you.")]
    Refused(#[source] WebauthnError),
    /// The signature counter went backwards: the credential may have been cloned.
    #[error(
        "The passkey was not accepted: its signature counter went backwards, so it may have been copied."
    )]
    PossibleClone,
    /// The credential is not (or no longer) registered.
    #[error("That passkey is not registered here (it may have been removed).")]
    Unknown,
    /// Registering a credential that is registered already.
    #[error("That passkey is registered already.")]
    AlreadyRegistered,
    /// A name that is empty or too long.
    #[error("A passkey's name must be 1 to {MAX_NAME_CHARS} characters.")]
    BadName,
    /// A stored passkey or state the library cannot read back.
    #[error("a stored passkey cannot be read")]
    Corrupt(#[source] serde_json::Error),
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PasskeyError {
    fn from_library(e: WebauthnError) -> Self {
        match e {
            WebauthnError::CredentialPossibleCompromise => Self::PossibleClone,
            e => Self::Refused(e),
        }
    }

    /// A refusal as the security events name its reason.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::PossibleClone => "possible_clone",
            Self::Unknown => "unknown_passkey",
            Self::NoChallenge => "no_challenge",
            Self::Refused(_) => "passkey_refused",
            _ => "error",
        }
    }
}

/// The passkeys of every account: the relying party, and the store.
#[derive(Clone)]
pub(crate) struct Passkeys {
    webauthn: Option<Arc<Webauthn>>,
    store: Arc<dyn SecondFactorStore>,
    /// Signs a passwordless challenge's cookie.
    key: PreLoginKey,
    clock: Arc<dyn Clock>,
    discoverable: bool,
}

impl std::fmt::Debug for Passkeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passkeys")
            .field("available", &self.webauthn.is_some())
            .field("discoverable", &self.discoverable)
            .finish_non_exhaustive()
    }
}

/// A credential id as routes and pages spell it.
pub(crate) fn encode_id(id: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, id)
}

/// A credential id from a route; `None` if it is not base64url.
pub(crate) fn decode_id(id: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, id).ok()
}

/// The user handle authenticators keep for `user`: 16 bytes of a digest of its id.
fn user_handle(user: &UserId) -> Uuid {
    let digest = Sha256::new()
        .chain_update(b"cloakroom webauthn user handle v1\0")
        .chain_update(user.as_str().as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The relying party of `public_origin`: its host the RP id, its origin the only one accepted;
/// `None` when the host is no domain name (WebAuthn refuses IP addresses).
fn relying_party(public_origin: &str, rp_name: &str) -> Option<Webauthn> {
    let origin = Url::parse(public_origin).ok()?;
    let rp_id = origin.domain()?.to_owned();
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name(rp_name).build())
        .ok()
}

/// A passkey's name, trimmed; refused when empty or too long.
pub(crate) fn name(raw: &str) -> Result<String, PasskeyError> {
    let name = raw.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(PasskeyError::BadName);
    }
    Ok(name.to_owned())
}

impl Passkeys {
    /// The relying party of `public_origin` (named `rp_name`); without passkeys when the
    /// origin has no domain name.
    pub(crate) fn new(
        public_origin: &str,
        rp_name: &str,
        discoverable: bool,
        store: Arc<dyn SecondFactorStore>,
        key: PreLoginKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let webauthn = relying_party(public_origin, rp_name).map(Arc::new);
        if webauthn.is_none() {
            tracing::warn!(
                public_url = public_origin,
                "passkeys are off: WebAuthn needs a public URL on a domain name, not an IP address"
            );
        }
        Self {
            webauthn,
            store,
            key,
            clock,
            discoverable,
        }
    }

    /// Whether this server offers passkeys at all.
    pub(crate) fn available(&self) -> bool {
        self.webauthn.is_some()
    }

    /// Whether passkeys sign in without the password (`passkey_login`, and available).
    pub(crate) fn passwordless(&self) -> bool {
        self.discoverable && self.available()
    }

    fn webauthn(&self) -> Result<&Webauthn, PasskeyError> {
        self.webauthn.as_deref().ok_or(PasskeyError::Unavailable)
    }

    /// The passkeys of `user`, oldest first.
    pub(crate) async fn list(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, PasskeyError> {
        Ok(self.store.passkeys(user).await?)
    }

    /// Starts registering a passkey for `account`: the options for the browser, and the state
    /// to keep in the session. Its own passkeys are excluded (an authenticator registers once).
    pub(crate) async fn begin_registration(
        &self,
        account: &Account,
    ) -> Result<(CreationChallengeResponse, PasskeyRegistration), PasskeyError> {
        let webauthn = self.webauthn()?;
        let existing = self.store.passkeys(&account.id).await?;
        let exclude = existing
            .iter()
            .map(|p| p.credential_id.clone())
            .collect::<Vec<_>>();
        let name = account.username.as_str();
        let (mut options, state) = webauthn
            .start_passkey_registration(
                user_handle(&account.id),
                name,
                name,
                Some(exclude).filter(|e| !e.is_empty()),
            )
            .map_err(PasskeyError::Refused)?;
        if self.discoverable {
            // The library asks for a non-discoverable credential; signing in without a
            // username needs the authenticator to keep it (a "resident" key).
            if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
                selection.require_resident_key = true;
                selection.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
            }
        }
        Ok((options, state))
    }

    /// Finishes a registration with the browser's answer: the passkey is stored under
    /// `name`.
    pub(crate) async fn finish_registration(
        &self,
        account: &Account,
        name: &str,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let passkey = self
            .webauthn()?
            .finish_passkey_registration(credential, state)
            .map_err(PasskeyError::from_library)?;
        let record = PasskeyRecord {
            credential_id: passkey.cred_id().to_vec(),
            account: account.id.clone(),
            name: name.to_owned(),
            data: serde_json::to_string(&passkey).map_err(PasskeyError::Corrupt)?,
            created_at: self.clock.now(),
            last_used_at: None,
        };
        if !self.store.add_passkey(&record).await? {
            return Err(PasskeyError::AlreadyRegistered);
        }
        Ok(record)
    }

    /// A challenge for the passkeys of `user` (a second factor, or step-up): the options for
    /// the browser, and the state to keep in the session.
    pub(crate) async fn begin_authentication(
        &self,
        user: &UserId,
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), PasskeyError> {
        let webauthn = self.webauthn()?;
        let passkeys = self
            .store
            .passkeys(user)
            .await?
            .iter()
            .map(|r| parse(&r.data))
            .collect::<Result<Vec<_>, _>>()?;
        if passkeys.is_empty() {
            return Err(PasskeyError::NoPasskeys);
        }
        webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(PasskeyError::Refused)
    }

    /// Checks the browser's answer to a challenge for `user`'s passkeys, then records the use
    /// (and the new counter). A passkey removed since the challenge was sent is refused.
    pub(crate) async fn finish_authentication(
        &self,
        user: &UserId,
        credential: &PublicKeyCredential,
        state: &PasskeyAuthentication,
    ) -> Result<(), PasskeyError> {
        let result = self
            .webauthn()?
            .finish_passkey_authentication(credential, state)
            .map_err(PasskeyError::from_library)?;
        let record = self
            .store
            .passkey(result.cred_id())
            .await?
            .filter(|r| &r.account == user)
            .ok_or(PasskeyError::Unknown)?;
        self.used(&record, &result).await
    }

    /// A challenge any discoverable passkey of this site may answer (passwordless sign-in).
    pub(crate) fn begin_sign_in(
        &self,
    ) -> Result<(RequestChallengeResponse, DiscoverableAuthentication), PasskeyError> {
        if !self.passwordless() {
            return Err(PasskeyError::Unavailable);
        }
        let (mut options, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(PasskeyError::Refused)?;
        // The library sets conditional mediation (an autofill prompt); the page asks from a
        // button, where the browser's own dialog is the right one.
        options.mediation = None;
        Ok((options, state))
    }

    /// The passwordless challenge's state as its cookie carries it (see the module docs).
    pub(crate) fn seal_sign_in(&self, state: DiscoverableAuthentication) -> Option<String> {
        let carried = Carried::new(state, self.clock.now(), CHALLENGE_LIFETIME);
        self.key.seal(Purpose::Passkey, &carried)
    }

    /// Opens a passwordless challenge's cookie and spends it: its state, once, before it
    /// expires, and while `passkey_login` is on. Anything else is `NoChallenge`.
    pub(crate) async fn open_sign_in(
        &self,
        cookie: Option<&str>,
        sessions: &SessionManager,
    ) -> Result<DiscoverableAuthentication, PasskeyError> {
        // Turned off since the challenge was sent: it is answered no more.
        if !self.passwordless() {
            return Err(PasskeyError::Unavailable);
        }
        let carried: Carried<DiscoverableAuthentication> = cookie
            .and_then(|c| {
                self.key
                    .open_value(Purpose::Passkey, c, self.clock.now())
                    .ok()
            })
            .ok_or(PasskeyError::NoChallenge)?;
        if !carried.spend(sessions).await? {
            return Err(PasskeyError::NoChallenge);
        }
        Ok(carried.body)
    }

    /// Checks a passwordless sign-in's answer: whose passkey it is (by its credential id, and
    /// the user handle the authenticator kept for it), its signature, user verification and
    /// counter. Returns the account's id.
    pub(crate) async fn finish_sign_in(
        &self,
        credential: &PublicKeyCredential,
        state: DiscoverableAuthentication,
    ) -> Result<UserId, PasskeyError> {
        let webauthn = self.webauthn()?;
        let (handle, id) = webauthn
            .identify_discoverable_authentication(credential)
            .map_err(PasskeyError::Refused)?;
        let record = self.store.passkey(id).await?.ok_or(PasskeyError::Unknown)?;
        if user_handle(&record.account) != handle {
            return Err(PasskeyError::Unknown);
        }
        let passkey = parse(&record.data)?;
        let result = webauthn
            .finish_discoverable_authentication_v2(credential, state, &passkey)
            .map_err(PasskeyError::from_library)?;
        self.used(&record, &result).await?;
        Ok(record.account)
    }

    /// Records an accepted use: the counter and backup flags the library updated, and when.
    ///
    /// The library compared the counter with the copy the challenge was made from; this
    /// compares it again with the stored one, and writes only over the data it compared with
    /// (a compare-and-set), so that of two uses with one counter value one wins, and a
    /// stored counter never goes back. `Unknown` if the passkey was removed meanwhile.
    async fn used(
        &self,
        record: &PasskeyRecord,
        result: &AuthenticationResult,
    ) -> Result<(), PasskeyError> {
        let mut current = record.clone();
        // Another use in between moves the data on: read it again, a few times at most.
        for _ in 0..3 {
            let stored = counter(&current.data)?;
            let used = result.counter();
            // Authenticators without a counter (most synced passkeys) always say 0.
            if (used > 0 || stored > 0) && used <= stored {
                return Err(PasskeyError::PossibleClone);
            }
            let mut passkey = parse(&current.data)?;
            passkey.update_credential(result);
            let data = serde_json::to_string(&passkey).map_err(PasskeyError::Corrupt)?;
            if self
                .store
                .update_passkey(
                    &current.account,
                    &current.credential_id,
                    &current.data,
                    &data,
                    self.clock.now(),
                )
                .await?
            {
                return Ok(());
            }
            current = self
                .store
                .passkey(&current.credential_id)
                .await?
                .filter(|r| r.account == record.account)
                .ok_or(PasskeyError::Unknown)?;
        }
        Err(PasskeyError::PossibleClone)
    }

    /// Renames one of `user`'s passkeys.
    pub(crate) async fn rename(
        &self,
        user: &UserId,
        id: &str,
        new_name: &str,
    ) -> Result<PasskeyRecord, PasskeyError> {
        let name = name(new_name)?;
        let id = decode_id(id).ok_or(PasskeyError::Unknown)?;
        if !self.store.rename_passkey(user, &id, &name).await? {
            return Err(PasskeyError::Unknown);
        }
        self.store
            .passkey(&id)
            .await?
            .filter(|r| &r.account == user)
            .ok_or(PasskeyError::Unknown)
    }

    /// Removes one of `user`'s passkeys, and the recovery codes with it when no factor is
    /// left.
    pub(crate) async fn remove(&self, user: &UserId, id: &str) -> Result<(), PasskeyError> {
        let id = decode_id(id).ok_or(PasskeyError::Unknown)?;
        if !self.store.remove_passkey(user, &id).await? {
            return Err(PasskeyError::Unknown);
        }
        if !self.store.factors(user).await?.any() {
            self.store
                .set_recovery_codes(user, &[], self.clock.now())
                .await?;
        }
        Ok(())
    }
}

fn parse(data: &str) -> Result<Passkey, PasskeyError> {
    serde_json::from_str(data).map_err(PasskeyError::Corrupt)
}

/// The signature counter in a stored passkey, which the library keeps private: read from its
/// serialised form (`{"cred": {"counter": …}}`), and a stored passkey without one is corrupt
/// rather than a counter of 0 — a new library format must not switch the check off quietly.
fn counter(data: &str) -> Result<u32, PasskeyError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        cred: StoredCredential,
    }
    #[derive(serde::Deserialize)]
    struct StoredCredential {
        counter: u32,
    }
    serde_json::from_str::<Stored>(data)
        .map(|s| s.cred.counter)
        .map_err(PasskeyError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_url_on_a_domain_name_only() {
        assert!(relying_party("https://login.example.com", "Acme").is_some());
        assert!(relying_party("http://localhost:8080", "Acme").is_some());
        assert!(relying_party("http://127.0.0.1:8080", "Acme").is_none());
        assert!(relying_party("http://[::1]:8080", "Acme").is_none());
    }

    #[test]
    fn user_handles_are_stable_per_account() {
        let a = UserId::new("alice-id").unwrap();
        let b = UserId::new("bob-id").unwrap();
        assert_eq!(user_handle(&a), user_handle(&a));
        assert_ne!(user_handle(&a), user_handle(&b));
    }

    #[test]
    fn the_stored_counter_is_read_and_its_absence_is_an_error() {
        assert_eq!(
            counter(r#"{"cred":{"cred_id":"AA","counter":7}}"#).unwrap(),
            7
        );
        assert!(counter(r#"{"cred":{"cred_id":"AA"}}"#).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Laptop ").unwrap(), "Laptop");
        assert!(name("   ").is_err());
        assert!(name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(name("a\u{7}b").is_err());
        assert_eq!(
            name(&"é".repeat(MAX_NAME_CHARS)).unwrap().chars().count(),
            64
        );
    }

    #[test]
    fn credential_ids_round_trip_as_base64url() {
        let id = vec![0xfb, 0xff, 0x00, 0x10];
        assert_eq!(decode_id(&encode_id(&id)), Some(id));
        assert_eq!(decode_id("not base64!"), None);
    }
}
