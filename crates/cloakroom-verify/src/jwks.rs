//! The JWKS: fetched, parsed into keys with their one allowed algorithm, cached.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Why the JWKS could not be fetched or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The HTTP request failed or answered with an error status.
    #[error("fetching the JWKS failed")]
    Fetch(#[source] reqwest::Error),
    /// No JWKS has been fetched successfully yet, and another attempt is not due.
    #[error("no JWKS has been fetched yet")]
    NoKeysYet,
    /// The keys in the cache were fetched longer ago than the maximum stale age
    /// ([`VerifierConfig::with_max_stale_age`](crate::VerifierConfig::with_max_stale_age)) and
    /// fetching them again keeps failing. They are no longer trusted: a key Cloakroom has
    /// retired since — perhaps because it leaked — must not verify forever at a service that
    /// cannot reach Cloakroom. Every token is refused until a fetch succeeds.
    #[error("the cached JWKS is older than its maximum stale age and could not be refreshed")]
    Stale,
    /// The body is not a JWKS.
    #[error("the JWKS is not valid JSON of the expected shape")]
    Parse(#[source] serde_json::Error),
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    kid: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// A verification key and the only algorithm it may verify.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

/// Parses a JWKS document into usable keys by `kid`. Keys of other types or curves, keys
/// without a `kid`, encryption keys and keys whose declared `alg` contradicts their type are
/// skipped, never guessed at.
pub(crate) fn parse(body: &[u8]) -> Result<HashMap<String, Key>, JwksError> {
    let set: RawSet = serde_json::from_slice(body).map_err(JwksError::Parse)?;
    let mut keys = HashMap::new();
    for value in set.keys {
        let Ok(raw) = serde_json::from_value::<RawKey>(value) else {
            continue;
        };
        let Some(kid) = raw.kid else { continue };
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let parsed = match (
            raw.kty.as_str(),
            raw.crv.as_deref(),
            raw.x.as_deref(),
            raw.y.as_deref(),
        ) {
            ("OKP", Some("Ed25519"), Some(x), None) => {
                DecodingKey::from_ed_components(x).ok().map(|key| Key {
                    alg: Algorithm::EdDSA,
                    key,
                })
            }
            ("EC", Some("P-256"), Some(x), Some(y)) => {
                DecodingKey::from_ec_components(x, y).ok().map(|key| Key {
                    alg: Algorithm::ES256,
                    key,
                })
            }
            _ => None,
        };
        let Some(key) = parsed else { continue };
        let declared_ok = match raw.alg.as_deref() {
            None => true,
            Some("EdDSA") => key.alg == Algorithm::EdDSA,
            Some("ES256") => key.alg == Algorithm::ES256,
            Some(_) => false,
        };
        if declared_ok {
            keys.insert(kid, key);
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_signature_keys_are_kept() {
        let body = serde_json::json!({ "keys": [
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed", "alg": "EdDSA", "use": "sig" },
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "liar", "alg": "HS256" },
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "enc", "use": "enc" },
            { "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" },
            { "kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB" },
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            "not even an object"
        ]});
        let keys = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ed"]);
        assert_eq!(keys["ed"].alg, Algorithm::EdDSA);
        assert!(parse(b"{}").is_err());
    }
}
