//! The pre-login cookie: what the second request of a sign-in needs from the first, kept in
//! the browser that started it, not in a table. Two sign-ins carry one: an OpenID sign-in (the
//! provider, `state`, `nonce`, the PKCE verifier and where to go afterwards, for the callback)
//! and a passkey sign-in without password (the WebAuthn challenge's state, for the answer).
//! Each is a [`Carried`] body under its own [`Purpose`], so one never opens as the other.
//!
//! `<payload>.<mac>`, both base64url: the payload is JSON, the MAC an HMAC-SHA256 over a
//! domain string and the payload under a key of its own (`<data_dir>/oidc-prelogin.key`, 32
//! random bytes, made once, readable by the server's user only). The MAC makes it unforgeable;
//! the cookie being `__Host-`, HttpOnly and `SameSite=Lax` binds it to this browser; its
//! `exp` bounds it (10 minutes for a provider, 5 for a passkey); and its random id, recorded as
//! used when it is spent (the session store's consumed-link records), makes it work once even
//! if it were copied.
//!
//! The payload is not encrypted: what it holds is useless without the code the provider sends
//! only to this browser's callback, and the PKCE verifier proves to the provider that the one
//! who exchanges the code started the flow.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_core::link::LinkId;
use cloakroom_core::{SessionManager, StoreError, Timestamp};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a sign-in may take at the provider.
pub(crate) const LIFETIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The cookie's value is at most this long (a longer one is refused unread).
const MAX_LEN: usize = 4096;

/// Which sign-in a cookie belongs to: part of what its MAC covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// An OpenID sign-in, from the login route to the callback.
    Oidc,
    /// A passkey sign-in without password, from the challenge to the answer.
    Passkey,
}

impl Purpose {
    fn domain(self) -> &'static [u8] {
        match self {
            Self::Oidc => b"cloakroom oidc pre-login v1\0",
            Self::Passkey => b"cloakroom passkey sign-in v1\0",
        }
    }
}

/// A body the browser carries, with when it stops working and the id that is spent once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Carried<T> {
    /// What the second request needs.
    #[serde(flatten)]
    pub(crate) body: T,
    /// When it stops working, in Unix seconds.
    pub(crate) exp: i64,
    /// Its id, recorded as used when it is spent.
    pub(crate) id: String,
}

impl<T> Carried<T> {
    /// `body`, working from `now` for `lifetime`, under a new random id.
    pub(crate) fn new(body: T, now: Timestamp, lifetime: std::time::Duration) -> Self {
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
        Self {
            body,
            exp: now.as_unix_secs().saturating_add(lifetime),
            id: LinkId::generate().to_string(),
        }
    }

    /// Records it as used (the consumed-link records): `true` the first time only, on every
    /// instance.
    pub(crate) async fn spend(&self, sessions: &SessionManager) -> Result<bool, StoreError> {
        let Some(id) = LinkId::parse(&self.id) else {
            return Ok(false);
        };
        let expires = Timestamp::from_unix_millis(self.exp.saturating_mul(1000));
        sessions.consume_link(&id, expires).await
    }
}

/// What the login route leaves for the callback.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PreLogin {
    /// The provider's id.
    pub(crate) provider: String,
    /// The `state` sent to the provider.
    pub(crate) state: String,
    /// The `nonce` the ID token must carry.
    pub(crate) nonce: String,
    /// The PKCE verifier.
    pub(crate) verifier: String,
    /// Where to go after sign-in (already checked: a local path or an allowed URL).
    pub(crate) next: String,
    /// Set when a signed-in user connects the provider to their account: that account's id
    /// (the callback then links instead of signing in, and only for that same user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) link: Option<String>,
}

/// Why a pre-login cookie was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PreLoginError {
    /// Not there: the sign-in started in another browser, or long ago.
    #[error("no pre-login cookie")]
    Missing,
    /// Not one of ours, or altered.
    #[error("the pre-login cookie is not valid")]
    Invalid,
    /// Too old.
    #[error("the pre-login cookie has expired")]
    Expired,
}

/// The MAC key.
#[derive(Clone)]
pub(crate) struct PreLoginKey([u8; 32]);

impl std::fmt::Debug for PreLoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreLoginKey([redacted])")
    }
}

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
#[error("the OpenID pre-login key {}", path.display())]
pub struct PreLoginKeyError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl PreLoginKey {
    /// Reads `<data_dir>/oidc-prelogin.key`, making it (owner-only) if it does not exist.
    pub(crate) fn open(data_dir: &Path) -> Result<Self, PreLoginKeyError> {
        let path = Self::path(data_dir);
        let err = |source| PreLoginKeyError {
            path: path.clone(),
            source,
        };
        match std::fs::read(&path) {
            Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
                .map(Self)
                .map_err(|_| {
                    err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "not 32 bytes: remove it to have a new one made",
                    ))
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                crate::data_dir::write_new_private(&path, key.bytes()).map_err(err)?;
                Ok(key)
            }
            Err(e) => Err(err(e)),
        }
    }

    /// Where a data directory keeps the key.
    pub(crate) fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("oidc-prelogin.key")
    }

    /// A key of 32 bytes read from elsewhere (the shared key store).
    pub(crate) fn from_bytes(key: [u8; 32]) -> Self {
        Self(key)
    }

    /// A new random key.
    pub(crate) fn generate() -> Self {
        Self(crate::tokens::keys::random())
    }

    /// The key's bytes, for sealing into the shared key store.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, purpose: Purpose) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)] // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(purpose.domain());
        mac
    }

    /// The cookie value for `c`; `None` if its body does not serialise (a map with
    /// non-string keys: none of ours).
    pub(crate) fn seal<T: Serialize>(&self, purpose: Purpose, c: &Carried<T>) -> Option<String> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).ok()?);
        let mut mac = self.mac(purpose);
        mac.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Some(format!("{payload}.{tag}"))
    }

    /// What `value` carries for `purpose`, if it is ours, unaltered and unexpired at `now`.
    pub(crate) fn open_value<T: serde::de::DeserializeOwned>(
        &self,
        purpose: Purpose,
        value: &str,
        now: Timestamp,
    ) -> Result<Carried<T>, PreLoginError> {
        if value.len() > MAX_LEN {
            return Err(PreLoginError::Invalid);
        }
        let (payload, tag) = value.split_once('.').ok_or(PreLoginError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| PreLoginError::Invalid)?;
        let mut mac = self.mac(purpose);
        mac.update(payload.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&tag).map_err(|_| PreLoginError::Invalid)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| PreLoginError::Invalid)?;
        let p: Carried<T> = serde_json::from_slice(&json).map_err(|_| PreLoginError::Invalid)?;
        if now.as_unix_secs() >= p.exp {
            return Err(PreLoginError::Expired);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exp: i64) -> Carried<PreLogin> {
        Carried {
            body: PreLogin {
                provider: "fixture".into(),
                state: "s".into(),
                nonce: "n".into(),
                verifier: "v".into(),
                next: "/".into(),
                link: None,
            },
            exp,
            id: LinkId::generate().to_string(),
        }
    }

    #[test]
    fn sealed_state_opens_once_unaltered_and_unexpired() {
        let dir = tempfile::tempdir().unwrap();
        let key = PreLoginKey::open(dir.path()).unwrap();
        let now = Timestamp::from_unix_millis(1_000_000);
        let p = sample(2_000);
        let value = key.seal(Purpose::Oidc, &p).unwrap();
        let open = |key: &PreLoginKey, value: &str, now| {
            key.open_value::<PreLogin>(Purpose::Oidc, value, now)
        };
        assert_eq!(open(&key, &value, now), Ok(p.clone()));
        // The same key again from the file.
        let again = PreLoginKey::open(dir.path()).unwrap();
        assert!(open(&again, &value, now).is_ok());
        // Not under another purpose: a passkey sign-in's cookie is no OpenID one, nor back.
        assert_eq!(
            key.open_value::<PreLogin>(Purpose::Passkey, &value, now),
            Err(PreLoginError::Invalid)
        );
        // Altered payload or tag, another key, expiry, garbage.
        let (payload, tag) = value.split_once('.').unwrap();
        let mut altered = payload.to_owned().into_bytes();
        altered[3] ^= 1;
        let altered = format!("{}.{tag}", String::from_utf8_lossy(&altered));
        assert_eq!(open(&key, &altered, now), Err(PreLoginError::Invalid));
        let other = PreLoginKey::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(open(&other, &value, now), Err(PreLoginError::Invalid));
        assert_eq!(
            open(&key, &value, Timestamp::from_unix_millis(2_000_000)),
            Err(PreLoginError::Expired)
        );
        for bad in ["", ".", "a.b", &"x".repeat(5000)] {
            assert_eq!(open(&key, bad, now), Err(PreLoginError::Invalid), "{bad}");
        }
    }
}
