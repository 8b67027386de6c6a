//! The JWT side of the comparison: keys, claims and `jsonwebtoken` signing and verification.
//!
//! The keys are benchmark-only PEM files in `bench/keys/` (see its README). Every algorithm
//! signs the *same* claims, so the algorithms differ only in their cryptography and signature
//! size.

use cloakroom_core::Timestamp;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// `iss` of every benchmark token.
pub const ISSUER: &str = "https://auth.example.com/";
/// `aud` of every benchmark token.
pub const AUDIENCE: &str = "https://api.example.com";
/// `kid` in every header.
pub const KEY_ID: &str = "bench-2026-11";
/// How long minted user tokens live: longer than any benchmark run.
pub const LIFETIME_SECS: i64 = 3600;

/// A 256-bit HMAC secret (benchmark-only).
const HS256_SECRET: &[u8] = b"cloakroom-bench-hs256-secret-0123456789abcdef";

const RS256_PRIVATE: &[u8] = include_bytes!("../keys/rs256-private.pem");
const RS256_PUBLIC: &[u8] = include_bytes!("../keys/rs256-public.pem");
const ES256_PRIVATE: &[u8] = include_bytes!("../keys/es256-private.pem");
const ES256_PUBLIC: &[u8] = include_bytes!("../keys/es256-public.pem");
const EDDSA_PRIVATE: &[u8] = include_bytes!("../keys/eddsa-private.pem");
const EDDSA_PUBLIC: &[u8] = include_bytes!("../keys/eddsa-public.pem");

/// The signature algorithms compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC-SHA-256 (a shared secret).
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit key.
    Rs256,
    /// Ed25519.
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Alg {
    /// Every algorithm, cheapest to verify first (as usually measured).
    pub const ALL: [Self; 4] = [Self::Hs256, Self::EdDsa, Self::Es256, Self::Rs256];

    /// Lowercase name, used in benchmark ids, file names and URL paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "hs256",
            Self::Rs256 => "rs256",
            Self::EdDsa => "eddsa",
            Self::Es256 => "es256",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }

    /// The signing half.
    pub fn signer(self) -> Result<Signer, jsonwebtoken::errors::Error> {
        let key = match self {
            Self::Hs256 => EncodingKey::from_secret(HS256_SECRET),
            Self::Rs256 => EncodingKey::from_rsa_pem(RS256_PRIVATE)?,
            Self::EdDsa => EncodingKey::from_ed_pem(EDDSA_PRIVATE)?,
            Self::Es256 => EncodingKey::from_ec_pem(ES256_PRIVATE)?,
        };
        let mut header = Header::new(self.algorithm());
        header.kid = Some(KEY_ID.to_owned());
        Ok(Signer { key, header })
    }

    /// The verifying half, checking what a real resource server checks: the algorithm bound
    /// to the key, the signature, `exp` (and `nbf`), `iss` and `aud`.
    pub fn verifier(self) -> Result<Verifier, jsonwebtoken::errors::Error> {
        let key = match self {
            Self::Hs256 => DecodingKey::from_secret(HS256_SECRET),
            Self::Rs256 => DecodingKey::from_rsa_pem(RS256_PUBLIC)?,
            Self::EdDsa => DecodingKey::from_ed_pem(EDDSA_PUBLIC)?,
            Self::Es256 => DecodingKey::from_ec_pem(ES256_PUBLIC)?,
        };
        let mut validation = Validation::new(self.algorithm());
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        Ok(Verifier { key, validation })
    }
}

/// Signs tokens with one algorithm's key.
#[allow(missing_debug_implementations)] // Holds a private key.
pub struct Signer {
    key: EncodingKey,
    header: Header,
}

impl Signer {
    /// Signs `claims` (header: `alg`, `typ: JWT`, `kid`).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&self.header, claims, &self.key)
    }

    /// Signs `claims` with an explicit `typ` (service tokens: RFC 8725 §3.11).
    pub fn sign_typed<T: Serialize>(
        &self,
        typ: &str,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = self.header.clone();
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

/// Verifies tokens of one algorithm.
#[allow(missing_debug_implementations)] // Holds key material.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// Verifies `token` and returns its claims (extra claims in a fat token are parsed and
    /// skipped, as a service that reads only what it needs would).
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map(|d| d.claims)
    }
}

/// The claims of a typical access or ID token: who, for whom, until when, and the few profile
/// fields a downstream app shows. Roughly what an OIDC provider issues by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject (the user).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// Granted scopes.
    pub scope: String,
    /// Email address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Application roles.
    pub roles: Vec<String>,
}

/// Typical claims for user number `n`, issued at `now`.
pub fn typical_claims(n: usize, now: Timestamp) -> Claims {
    let iat = now.as_unix_secs();
    Claims {
        iss: ISSUER.to_owned(),
        sub: format!("user-{n:08}-5f38-4c1e-9a7d-2b6e0c41d{:03}", n % 1000),
        aud: AUDIENCE.to_owned(),
        exp: iat + LIFETIME_SECS,
        nbf: iat - 5,
        iat,
        jti: format!("{:016x}{:016x}", n as u64 ^ 0x9e37_79b9_7f4a_7c15, iat),
        scope: "openid profile email".to_owned(),
        email: format!("user{n}@example.com"),
        name: format!("Example User {n}"),
        roles: vec!["user".to_owned(), "billing:read".to_owned()],
    }
}

/// A "fat" token for user number `n`: the typical claims plus what enterprise identity
/// providers commonly add (group memberships, per-client roles, profile and session fields) —
/// the kind of token that makes people move claims out of JWTs.
pub fn fat_claims(n: usize, now: Timestamp) -> serde_json::Value {
    let base = typical_claims(n, now);
    let groups: Vec<String> = (0..40)
        .map(|g| format!("/org/engineering/team-{g:02}/members"))
        .collect();
    let permissions: Vec<String> = (0..25)
        .map(|p| format!("resource-{p:02}:read resource-{p:02}:write"))
        .collect();
    let mut value = serde_json::to_value(base).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        let extra = serde_json::json!({
            "azp": "web-frontend",
            "sid": "0b5a3c1e-7f2d-4e8a-9c61-3d0f2b7a8e54",
            "acr": "urn:mace:incommon:iap:silver",
            "amr": ["pwd", "otp"],
            "auth_time": now.as_unix_secs() - 120,
            "preferred_username": format!("user{n}"),
            "given_name": "Example",
            "family_name": format!("User {n}"),
            "email_verified": true,
            "locale": "en-GB",
            "zoneinfo": "Europe/London",
            "tenant": "9188040d-6c67-4c5b-b112-36a304b66dad",
            "groups": groups,
            "permissions": permissions,
            "realm_access": { "roles": ["offline_access", "uma_authorization", "default-roles-example"] },
            "resource_access": {
                "web-frontend": { "roles": ["viewer", "editor"] },
                "billing": { "roles": ["reader"] },
                "account": { "roles": ["manage-account", "view-profile"] },
            },
        });
        if let Some(extra) = extra.as_object() {
            map.extend(extra.clone());
        }
    }
    value
}

/// What Cloakroom's edge would put in a short-lived service JWT (DESIGN.md "service-to-service
/// calls"): who, which session, for which service, valid for a minute.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceClaims<'a> {
    /// The Cloakroom instance.
    pub iss: &'a str,
    /// The user id.
    pub sub: &'a str,
    /// The downstream service.
    pub aud: &'a str,
    /// Expiry (`iat` + 60 s).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The username, so the service needs no lookup.
    pub username: &'a str,
    /// The session's public handle, for audit logs.
    pub sid: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// jsonwebtoken 11 compiles with no crypto backend (or two) and panics at the first
    /// sign/verify; this fails the build's tests instead of a benchmark run.
    #[test]
    fn every_algorithm_signs_and_verifies() {
        let now = cloakroom_core::Clock::now(&cloakroom_core::SystemClock);
        for alg in Alg::ALL {
            let claims = typical_claims(7, now);
            let token = alg.signer().unwrap().sign(&claims).unwrap();
            let verifier = alg.verifier().unwrap();
            assert_eq!(verifier.verify(&token).unwrap(), claims, "{}", alg.name());
            let fat = alg.signer().unwrap().sign(&fat_claims(7, now)).unwrap();
            assert_eq!(verifier.verify(&fat).unwrap(), claims, "{}", alg.name());
            assert!(fat.len() > 2 * token.len(), "the fat token is fat");
            // A tampered payload and another algorithm's token are refused.
            let mut parts: Vec<&str> = token.split('.').collect();
            let other = typical_claims(8, now);
            let forged_payload = {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(serde_json::to_vec(&other).unwrap())
            };
            parts[1] = &forged_payload;
            assert!(verifier.verify(&parts.join(".")).is_err());
            for wrong in Alg::ALL.into_iter().filter(|&a| a != alg) {
                let t = wrong.signer().unwrap().sign(&claims).unwrap();
                assert!(
                    verifier.verify(&t).is_err(),
                    "{} took {}",
                    alg.name(),
                    wrong.name()
                );
            }
        }
    }

    #[test]
    fn expired_and_foreign_tokens_are_refused() {
        let now = cloakroom_core::Clock::now(&cloakroom_core::SystemClock);
        let signer = Alg::Hs256.signer().unwrap();
        let verifier = Alg::Hs256.verifier().unwrap();
        let mut c = typical_claims(1, now);
        c.exp = now.as_unix_secs() - 3600;
        assert!(verifier.verify(&signer.sign(&c).unwrap()).is_err());
        let mut c = typical_claims(1, now);
        c.aud = "https://elsewhere.example.com".into();
        assert!(verifier.verify(&signer.sign(&c).unwrap()).is_err());
    }
}
