//! Back-channel logout tokens (OpenID Connect Back-Channel Logout 1.0): the provider posts one
//! to `/oidc/{id}/backchannel-logout` when the user signs out there, and every session that
//! sign-in made here ends.
//!
//! A logout token is a JWT signed by the provider's key, as an ID token is, checked here with
//! `jsonwebtoken` against the same cached JWKS (`openidconnect` has no logout tokens): an
//! asymmetric algorithm only, the key named by `kid` (an unknown one refetches the keys, as for
//! ID tokens), `iss` this provider, `aud` our client id, `iat`
//! not ahead of our clock and not older than [`MAX_AGE`], `exp` (required), the back-channel
//! logout event, no `nonce` (which would make it an ID token), and `sub` or `sid`. Its `jti`
//! is recorded as used (the consumed-link records) before any session ends, so a captured
//! token cannot be replayed to end later sessions. (The price: if the store fails between the
//! record and the revocation, the provider's retry is refused as a replay — but the store the
//! revocation needs is the one that just failed.)
//!
//! `typ` is not checked: the specification only recommends `logout+jwt`, providers send
//! `JWT` or others, and what tells a logout token from an ID token is what is checked — the
//! event present, and no `nonce`.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use cloakroom_core::link::LinkId;
use cloakroom_core::{SessionManager, Timestamp};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Provider;
use super::discovery::DiscoveryError;
use super::flow::LEEWAY;

/// The event a logout token carries.
pub(crate) const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The oldest a logout token may be.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(600);
/// The longest a logout token may be.
const MAX_LEN: usize = 8 * 1024;

/// The asymmetric algorithms accepted (as for ID tokens: see `oidc::ALLOWED_ALGS`).
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// Why a logout token was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum LogoutError {
    /// The token is not a valid logout token from this provider (the reason is for the log
    /// and the provider).
    #[error("{0}")]
    Invalid(String),
    /// Its `jti` was seen before.
    #[error("this logout token was used already")]
    Replayed,
    /// The provider's keys could not be fetched.
    #[error("the provider's keys")]
    Discovery(#[from] DiscoveryError),
    /// The session store failed.
    #[error("the session store")]
    Store(#[from] cloakroom_core::StoreError),
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
    jti: String,
    events: serde_json::Map<String, serde_json::Value>,
    sub: Option<String>,
    sid: Option<String>,
    nonce: Option<serde_json::Value>,
}

/// A verified logout token: whose sign-ins end.
#[derive(Debug)]
pub(crate) struct Logout {
    /// The provider's issuer.
    pub(crate) issuer: String,
    /// The provider's subject, if named.
    pub(crate) subject: Option<String>,
    /// The provider's session, if named.
    pub(crate) sid: Option<String>,
}

fn invalid(why: impl std::fmt::Display) -> LogoutError {
    LogoutError::Invalid(why.to_string())
}

fn decode(
    token: &str,
    header: &jsonwebtoken::Header,
    keys: &JwkSet,
    issuer: &str,
    client_id: &str,
) -> Result<Option<Claims>, LogoutError> {
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => return Err(invalid("no kid, and the provider has several keys")),
    };
    let Some(jwk) = jwk else {
        return Ok(None);
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(format!("the key: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY.as_secs();
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[client_id]);
    validation.required_spec_claims = ["iss", "aud", "exp"]
        .into_iter()
        .map(String::from)
        .collect::<HashSet<_>>();
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(invalid)?;
    Ok(Some(data.claims))
}

/// Verifies `token` for `provider` (see the module docs), and records its `jti`.
pub(crate) async fn verify(
    provider: &Provider,
    sessions: &SessionManager,
    token: &str,
    now: Timestamp,
) -> Result<Logout, LogoutError> {
    if token.len() > MAX_LEN {
        return Err(invalid("the token is too long"));
    }
    let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(invalid(format!(
            "the algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let metadata = provider.discovery.metadata().await?;
    let issuer = metadata.issuer().as_str().to_owned();
    let keys = |m: &openidconnect::core::CoreProviderMetadata| -> Result<JwkSet, LogoutError> {
        serde_json::to_value(m.jwks())
            .and_then(serde_json::from_value)
            .map_err(|e| invalid(format!("the provider's JWKS: {e}")))
    };
    let client_id = &provider.config.client_id;
    let claims = match decode(token, &header, &keys(&metadata)?, &issuer, client_id)? {
        Some(claims) => claims,
        None => {
            let fresh = provider
                .discovery
                .refresh_for_unknown_key()
                .await?
                .ok_or_else(|| invalid("signed by an unknown key"))?;
            decode(token, &header, &keys(&fresh)?, &issuer, client_id)?
                .ok_or_else(|| invalid("signed by an unknown key"))?
        }
    };
    let leeway = i64::try_from(LEEWAY.as_secs()).unwrap_or(60);
    let max_age = i64::try_from(MAX_AGE.as_secs()).unwrap_or(600);
    let now_secs = now.as_unix_secs();
    if claims.iat > now_secs + leeway || claims.iat < now_secs - max_age {
        return Err(invalid("iat is out of bounds"));
    }
    if !claims.events.contains_key(EVENT) {
        return Err(invalid("no back-channel logout event"));
    }
    if claims.nonce.is_some() {
        return Err(invalid("a logout token has no nonce"));
    }
    if claims.sub.is_none() && claims.sid.is_none() {
        return Err(invalid("neither sub nor sid"));
    }
    let digest = Sha256::new()
        .chain_update(b"cloakroom oidc logout jti v1\0")
        .chain_update(claims.iss.as_bytes())
        .chain_update([0])
        .chain_update(claims.jti.as_bytes())
        .finalize();
    let id = LinkId::parse(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]))
        .ok_or_else(|| invalid("jti"))?;
    let until = Timestamp::from_unix_millis((claims.iat + max_age + leeway).saturating_mul(1000));
    if !sessions.consume_link(&id, until).await? {
        return Err(LogoutError::Replayed);
    }
    Ok(Logout {
        issuer: claims.iss,
        subject: claims.sub,
        sid: claims.sid,
    })
}
