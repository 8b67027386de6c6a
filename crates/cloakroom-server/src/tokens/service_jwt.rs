//! Service JWTs: what the edge hands to the services behind it.
//!
//! A browser session stays a session; only at the proxy does it become a short-lived
//! (60 s by default, 300 s at most), audience-bound, EdDSA-signed token that a downstream
//! service verifies against the JWKS without calling Cloakroom. It carries the session's
//! public handle (`sid`), never the session token.
//!
//! Signing costs tens of microseconds, so a token is minted once per session and audience and
//! reused until half its life has passed. Reuse never weakens revocation: the session is
//! validated on every forward-auth check before a cached token is handed out.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_core::{Session, SessionId, Timestamp};
use dashmap::DashMap;

use crate::tokens::keys::{KeyAlgorithm, KeyError, KeyRing};

pub(crate) use cloakroom_core::service_token::{ServiceClaims, TOKEN_TYPE};

/// Most cached tokens kept before the cache is cleared.
const MAX_CACHED: usize = 100_000;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MintError {
    /// No key signs at this moment (all retired, or the key directory was emptied).
    #[error("no signing key is active")]
    NoKey,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The token is not a valid header value (a JWT is base64url and dots: a bug if seen).
    #[error("the minted token is not a valid header value")]
    NotAHeader,
}

/// Who the user is, as forward auth tells the app (computed once per cached token).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The username.
    pub(crate) username: String,
    /// The display name, if known.
    pub(crate) name: Option<String>,
    /// The email address, if known.
    pub(crate) email: Option<String>,
}

/// Everything forward auth adds to an answer, ready to copy into the response: header values
/// are validated once, when the token is minted, not on every check.
#[derive(Debug)]
pub(crate) struct ForwardHeaders {
    /// `Remote-User`, `X-Auth-Request-User`, `X-Auth-Request-Preferred-Username`.
    pub(crate) user: Option<HeaderValue>,
    /// `Remote-Name` (the display name, or the username).
    pub(crate) name: Option<HeaderValue>,
    /// `Remote-Email`, `X-Auth-Request-Email`.
    pub(crate) email: Option<HeaderValue>,
    /// `X-Cloakroom-Jwt`.
    pub(crate) jwt: HeaderValue,
}

struct Cached {
    audience: Box<str>,
    headers: Arc<ForwardHeaders>,
    refresh_at: Timestamp,
}

fn audience_key(audience: &str) -> u64 {
    // A fixed-key hash: the key only spreads entries; the audience itself is compared on every
    // hit, so a collision costs a re-mint, never a token for the wrong app.
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(audience, &mut h);
    std::hash::Hasher::finish(&h)
}

/// Mints and caches service JWTs.
pub(crate) struct Minter {
    issuer: String,
    ttl: Duration,
    keys: RwLock<Arc<KeyRing>>,
    cache: DashMap<(SessionId, u64), Cached>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter for `issuer` with tokens living `ttl` (capped at the maximum), signing with
    /// `keys`.
    pub(crate) fn new(issuer: String, ttl: Duration, keys: KeyRing) -> Self {
        Self {
            issuer,
            ttl: ttl.min(crate::tokens::keys::MAX_TOKEN_TTL),
            keys: RwLock::new(Arc::new(keys)),
            cache: DashMap::new(),
        }
    }

    /// The current key ring.
    pub(crate) fn keys(&self) -> Arc<KeyRing> {
        // A poisoned lock still holds a complete ring (replacement is one assignment).
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the key directory (after `cloakroom keys rotate` in another process).
    pub(crate) fn reload(
        &self,
        data_dir: &std::path::Path,
        alg: KeyAlgorithm,
        now: Timestamp,
    ) -> Result<(), KeyError> {
        let ring = KeyRing::open(data_dir, alg, now)?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        Ok(())
    }

    /// The forward-auth headers for `session` and `audience`, with a service JWT reused from
    /// the cache while it has more than half its life left. `identity` is asked only when a
    /// token has to be minted.
    pub(crate) fn forward_headers(
        &self,
        session: &Session,
        audience: &str,
        now: Timestamp,
        identity: impl FnOnce() -> Identity,
    ) -> Result<Arc<ForwardHeaders>, MintError> {
        let key = (session.id, audience_key(audience));
        if let Some(c) = self.cache.get(&key)
            && now < c.refresh_at
            && &*c.audience == audience
        {
            return Ok(c.headers.clone());
        }
        let who = identity();
        let token = self.mint(session, &who.username, audience, now)?;
        let value = |v: &str| HeaderValue::from_str(v).ok();
        let headers = Arc::new(ForwardHeaders {
            user: value(&who.username),
            name: value(who.name.as_deref().unwrap_or(&who.username)),
            email: who.email.as_deref().and_then(value),
            jwt: HeaderValue::from_str(&token).map_err(|_| MintError::NotAHeader)?,
        });
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
        let entry = Cached {
            audience: audience.into(),
            headers: headers.clone(),
            refresh_at: now.saturating_add(self.ttl / 2),
        };
        self.cache.insert(key, entry);
        Ok(headers)
    }

    fn mint(
        &self,
        session: &Session,
        username: &str,
        audience: &str,
        now: Timestamp,
    ) -> Result<String, MintError> {
        let keys = self.keys();
        let signer = keys.signer(now).ok_or(MintError::NoKey)?;
        let mut header = jsonwebtoken::Header::new(signer.jwt_algorithm());
        header.kid = Some(signer.kid().to_owned());
        header.typ = Some(TOKEN_TYPE.to_owned());
        let mut jti = [0u8; 16];
        // Same policy as session tokens: no randomness, no tokens.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut jti).expect("the OS CSPRNG is unavailable");
        let iat = now.as_unix_secs();
        let claims = ServiceClaims {
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            sub: session.user_id.to_string(),
            preferred_username: username.to_owned(),
            sid: session.handle.to_string(),
            iat,
            exp: iat + i64::try_from(self.ttl.as_secs()).unwrap_or(60),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            signer.encoding_key(),
        )?)
    }

    /// Drops cached tokens that would be re-minted anyway.
    pub(crate) fn prune(&self, now: Timestamp) {
        self.cache.retain(|_, c| c.refresh_at > now);
    }
}
