//! The JWT side of the comparison: keys, claims, signing with `jsonwebtoken`, and verification
//! with AWS-LC.
//!
//! The keys are benchmark-only PEM files in `bench/keys/` (see its README). Every algorithm
//! signs the *same* claims, so the algorithms differ only in their cryptography and signature
//! size.
//!
//! A key design decision: the baselines verify with [`Verifier`], a JWS compact verifier over
//! `aws-lc-rs`, not with `jsonwebtoken`. A baseline has to be the fastest implementation a user
//! would pick, or the comparison flatters Cloakroom: on this machine jsonwebtoken's RustCrypto
//! backend verifies ES256 about four times slower than AWS-LC. `jsonwebtoken` still mints every
//! token (what a provider would issue is not what is measured), and its own verifier stays as
//! [`Alg::jsonwebtoken_verifier`], the reference the micro benchmark shows next to AWS-LC and the
//! tests check the new verifier against.

use std::borrow::Cow;

use aws_lc_rs::{hmac, signature};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cloakroom_core::service_token::{ServiceClaims, TOKEN_TYPE};
use cloakroom_core::{Clock, SystemClock, Timestamp};

use crate::fixtures::BenchUser;
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
/// Clock skew allowed on `exp` and `nbf`: jsonwebtoken's default, so both verifiers accept the
/// same tokens.
pub const LEEWAY_SECS: i64 = 60;

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

    /// The JOSE name, as the `alg` header spells it (RFC 7518 §3.1, RFC 8037 §3.1).
    pub fn jose_name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }

    /// The signing half (jsonwebtoken).
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

    /// The verifying half the baselines use: AWS-LC, checking what a real resource server
    /// checks (see [`Verifier::verify`]). The public key is parsed once, here, as a service
    /// that loaded its JWKS at start-up would hold it.
    pub fn verifier(self) -> Result<Verifier, KeyError> {
        let key = match self {
            Self::Hs256 => Key::Hmac(hmac::Key::new(hmac::HMAC_SHA256, HS256_SECRET)),
            Self::Rs256 => public(&signature::RSA_PKCS1_2048_8192_SHA256, RS256_PUBLIC)?,
            Self::EdDsa => public(&signature::ED25519, EDDSA_PUBLIC)?,
            Self::Es256 => public(&signature::ECDSA_P256_SHA256_FIXED, ES256_PUBLIC)?,
        };
        Ok(Verifier { alg: self, key })
    }

    /// jsonwebtoken's verifier (RustCrypto backend) with the same checks: the reference the
    /// AWS-LC figures are compared with, no longer a baseline.
    pub fn jsonwebtoken_verifier(
        self,
    ) -> Result<JsonwebtokenVerifier, jsonwebtoken::errors::Error> {
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
        validation.leeway = LEEWAY_SECS.unsigned_abs();
        Ok(JsonwebtokenVerifier { key, validation })
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
        self.sign_with(typ, KEY_ID, claims)
    }

    /// Signs `claims` with an explicit `typ` and `kid`.
    pub fn sign_with<T: Serialize>(
        &self,
        typ: &str,
        kid: &str,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = self.header.clone();
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}

/// Why a benchmark key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM file is not one base64 block between `-----BEGIN`/`-----END` lines.
    #[error("the PEM file is malformed")]
    Pem(#[source] Option<base64::DecodeError>),
    /// AWS-LC refused the key (wrong type, curve or encoding).
    #[error("the key was refused: {0}")]
    Rejected(aws_lc_rs::error::KeyRejected),
}

fn public(alg: &'static dyn signature::VerificationAlgorithm, pem: &[u8]) -> Result<Key, KeyError> {
    let der = pem_to_der(pem)?;
    // SubjectPublicKeyInfo DER, as `openssl pkey -pubout` writes it: AWS-LC takes it for all
    // three key types.
    signature::ParsedPublicKey::new(alg, der)
        .map(Key::Public)
        .map_err(KeyError::Rejected)
}

/// The DER inside a single-block PEM file.
fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, KeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::Pem(None))?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if !lines.next().is_some_and(|l| l.starts_with("-----BEGIN ")) {
        return Err(KeyError::Pem(None));
    }
    let mut body = String::new();
    for line in lines {
        if line.starts_with("-----END ") {
            return STANDARD.decode(body).map_err(|e| KeyError::Pem(Some(e)));
        }
        body.push_str(line);
    }
    Err(KeyError::Pem(None))
}

// Four of these live for a whole run and are never moved on the hot path; boxing the HMAC key
// would only add a pointer chase to every HS256 verification.
#[allow(clippy::large_enum_variant)]
enum Key {
    Hmac(hmac::Key),
    Public(signature::ParsedPublicKey),
}

/// Verifies JWS compact tokens of one algorithm with AWS-LC.
#[allow(missing_debug_implementations)] // Holds key material.
pub struct Verifier {
    alg: Alg,
    key: Key,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not three base64url parts separated by dots, or a header or claims that are not the
    /// expected JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names another algorithm than the key's (or `none`).
    #[error("wrong algorithm")]
    WrongAlgorithm,
    /// The header lists critical extensions, none of which this verifier understands
    /// (RFC 7515 §4.1.11 says to refuse).
    #[error("unsupported critical header")]
    Critical,
    /// The signature does not match.
    #[error("bad signature")]
    Signature,
    /// `exp` has passed (beyond the leeway).
    #[error("expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// Another issuer.
    #[error("wrong issuer")]
    Issuer,
    /// Another audience.
    #[error("wrong audience")]
    Audience,
}

/// The parts of a JOSE header this verifier acts on; anything else is ignored.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    crit: Option<serde::de::IgnoredAny>,
}

/// The largest signature accepted: an RSA-4096 one. Decoded on the stack.
const MAX_SIGNATURE: usize = 512;

impl Verifier {
    /// Verifies `token` now (see [`verify_at`](Self::verify_at)).
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_at(token, SystemClock.now().as_unix_secs())
    }

    /// Verifies `token` at `now` (seconds since the epoch) and returns its claims: what a
    /// resource server does, in its order —
    ///
    /// 1. exactly three base64url parts (RFC 7515 §7.1, no padding);
    /// 2. the header's `alg` is this key's algorithm (RFC 8725 §3.1: the key decides the
    ///    algorithm, never the token, which stops `none` and HMAC-with-the-public-key
    ///    forgeries), and no `crit` extensions;
    /// 3. the signature over `header.payload`, with AWS-LC (constant-time for HMAC);
    /// 4. only then the claims, parsed in full (extra claims in a fat token are parsed and
    ///    skipped, as a service that reads only what it needs would): `exp` and `nbf` against
    ///    the clock with [`LEEWAY_SECS`], `iss` and `aud`.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        let (signed, signature_b64) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
        let (header_b64, payload_b64) = signed.split_once('.').ok_or(VerifyError::Malformed)?;
        if payload_b64.contains('.') {
            return Err(VerifyError::Malformed);
        }
        let header_json = decode(header_b64)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(&header_json).map_err(|_| VerifyError::Malformed)?;
        if header.alg != self.alg.jose_name() {
            return Err(VerifyError::WrongAlgorithm);
        }
        if header.crit.is_some() {
            return Err(VerifyError::Critical);
        }
        let mut sig = [0u8; MAX_SIGNATURE];
        let sig_len = URL_SAFE_NO_PAD
            .decode_slice(signature_b64, &mut sig)
            .map_err(|_| VerifyError::Malformed)?;
        let sig = &sig[..sig_len];
        let verified = match &self.key {
            Key::Hmac(key) => hmac::verify(key, signed.as_bytes(), sig),
            Key::Public(key) => key.verify_sig(signed.as_bytes(), sig),
        };
        verified.map_err(|_| VerifyError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload_b64)?).map_err(|_| VerifyError::Malformed)?;
        if now > claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(VerifyError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf)
        {
            return Err(VerifyError::NotYetValid);
        }
        if claims.iss != ISSUER {
            return Err(VerifyError::Issuer);
        }
        if claims.aud != AUDIENCE {
            return Err(VerifyError::Audience);
        }
        Ok(claims)
    }
}

fn decode(part: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| VerifyError::Malformed)
}

/// Verifies tokens of one algorithm with jsonwebtoken (RustCrypto backend).
#[allow(missing_debug_implementations)] // Holds key material.
pub struct JsonwebtokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JsonwebtokenVerifier {
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
    /// Not before (optional in a JWT; checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
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
        nbf: Some(iat - 5),
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

/// The `kid` of benchmark service tokens: as long as the server's (12 random bytes in
/// base64url), so a baseline's `X-Cloakroom-Jwt` is as long as Cloakroom's.
pub const SERVICE_KEY_ID: &str = "bench-svc-key-01";
/// How long Cloakroom's service tokens live by default.
pub const SERVICE_LIFETIME_SECS: i64 = 60;

/// The claims Cloakroom puts in a service JWT (the product's own type), for `user` and the
/// session with public handle `sid`, as the server mints them for a verified email address.
/// `jti` is fixed here: it only has to be as long as the server's random one (16 bytes in
/// base64url).
pub fn service_claims(
    issuer: &str,
    audience: &str,
    user: &BenchUser,
    sid: &str,
    iat: i64,
) -> ServiceClaims {
    ServiceClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: user.id.to_string(),
        preferred_username: user.username.clone(),
        sid: sid.to_owned(),
        iat,
        exp: iat + SERVICE_LIFETIME_SECS,
        jti: "bench-jti-0123456789ab".to_owned(),
        link: false,
        email: Some(user.email()),
        groups: Vec::new(),
        amr: vec!["pwd".into()],
        acr: Some("aal1".into()),
    }
}

/// Mints a service JWT as the server does: its `typ`, a `kid` of the server's length.
pub fn mint_service_token(
    signer: &Signer,
    claims: &ServiceClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    signer.sign_with(TOKEN_TYPE, SERVICE_KEY_ID, claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        SystemClock.now()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// jsonwebtoken 11 compiles with no crypto backend (or two) and panics at the first
    /// sign/verify; this fails the build's tests instead of a benchmark run.
    #[test]
    fn jsonwebtoken_signs_and_verifies_every_algorithm() {
        for alg in Alg::ALL {
            let claims = typical_claims(7, now());
            let token = alg.signer().unwrap().sign(&claims).unwrap();
            let verifier = alg.jsonwebtoken_verifier().unwrap();
            assert_eq!(verifier.verify(&token).unwrap(), claims, "{}", alg.name());
        }
    }

    /// What the baselines rely on: a token jsonwebtoken signed verifies with the AWS-LC
    /// verifier and yields the same claims, typical and fat, for every algorithm.
    #[test]
    fn aws_lc_verifies_what_jsonwebtoken_signed() {
        for alg in Alg::ALL {
            let signer = alg.signer().unwrap();
            let verifier = alg.verifier().unwrap();
            let claims = typical_claims(7, now());
            let token = signer.sign(&claims).unwrap();
            assert_eq!(verifier.verify(&token).unwrap(), claims, "{}", alg.name());
            let fat = signer.sign(&fat_claims(7, now())).unwrap();
            assert!(fat.len() > 2 * token.len(), "the fat token is fat");
            assert_eq!(verifier.verify(&fat).unwrap(), claims, "{}", alg.name());
        }
    }

    #[test]
    fn a_tampered_signature_or_payload_is_refused() {
        for alg in Alg::ALL {
            let verifier = alg.verifier().unwrap();
            let token = alg
                .signer()
                .unwrap()
                .sign(&typical_claims(7, now()))
                .unwrap();
            let (signed, sig) = token.rsplit_once('.').unwrap();
            // One bit of the signature flipped, re-encoded so the token is still well formed.
            let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
            bytes[0] ^= 1;
            let flipped = format!("{signed}.{}", b64(&bytes));
            assert_eq!(
                verifier.verify(&flipped),
                Err(VerifyError::Signature),
                "{}",
                alg.name()
            );
            // Another user's claims under the original signature.
            let header = signed.split_once('.').unwrap().0;
            let forged = b64(&serde_json::to_vec(&typical_claims(8, now())).unwrap());
            let swapped = format!("{header}.{forged}.{sig}");
            assert_eq!(
                verifier.verify(&swapped),
                Err(VerifyError::Signature),
                "{}",
                alg.name()
            );
            assert_eq!(
                verifier.verify(&format!("{signed}.")),
                Err(VerifyError::Signature)
            );
        }
    }

    #[test]
    fn the_key_decides_the_algorithm_not_the_header() {
        let claims = typical_claims(7, now());
        for alg in Alg::ALL {
            let verifier = alg.verifier().unwrap();
            for other in Alg::ALL.into_iter().filter(|&a| a != alg) {
                let token = other.signer().unwrap().sign(&claims).unwrap();
                assert_eq!(
                    verifier.verify(&token),
                    Err(VerifyError::WrongAlgorithm),
                    "{} took {}",
                    alg.name(),
                    other.name()
                );
            }
            // `alg: none` with no signature.
            let none = format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(&serde_json::to_vec(&claims).unwrap())
            );
            assert_eq!(verifier.verify(&none), Err(VerifyError::WrongAlgorithm));
        }
        // The classic confusion: HS256 keyed with the public key an attacker can read.
        let signed = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(&serde_json::to_vec(&claims).unwrap())
        );
        let key = hmac::Key::new(hmac::HMAC_SHA256, ES256_PUBLIC);
        let tag = hmac::sign(&key, signed.as_bytes());
        let forged = format!("{signed}.{}", b64(tag.as_ref()));
        assert_eq!(
            Alg::Es256.verifier().unwrap().verify(&forged),
            Err(VerifyError::WrongAlgorithm)
        );
    }

    #[test]
    fn expired_early_and_foreign_tokens_are_refused() {
        let at = now();
        let t = at.as_unix_secs();
        for alg in Alg::ALL {
            let signer = alg.signer().unwrap();
            let verifier = alg.verifier().unwrap();
            let sign = |c: &Claims| signer.sign(c).unwrap();
            let mut c = typical_claims(1, at);
            c.exp = t - LEEWAY_SECS - 1;
            assert_eq!(verifier.verify_at(&sign(&c), t), Err(VerifyError::Expired));
            // Within the leeway it still passes, as with jsonwebtoken.
            c.exp = t - LEEWAY_SECS + 1;
            assert!(verifier.verify_at(&sign(&c), t).is_ok());
            let mut c = typical_claims(1, at);
            c.nbf = Some(t + LEEWAY_SECS + 10);
            assert_eq!(
                verifier.verify_at(&sign(&c), t),
                Err(VerifyError::NotYetValid)
            );
            c.nbf = None;
            assert!(verifier.verify_at(&sign(&c), t).is_ok(), "nbf is optional");
            // The same token, checked an hour and a minute later.
            let token = sign(&typical_claims(1, at));
            assert!(verifier.verify_at(&token, t).is_ok());
            assert_eq!(
                verifier.verify_at(&token, t + LIFETIME_SECS + LEEWAY_SECS + 1),
                Err(VerifyError::Expired)
            );
            let mut c = typical_claims(1, at);
            c.aud = "https://elsewhere.example.com".into();
            assert_eq!(verifier.verify(&sign(&c)), Err(VerifyError::Audience));
            let mut c = typical_claims(1, at);
            c.iss = "https://evil.example.com/".into();
            assert_eq!(verifier.verify(&sign(&c)), Err(VerifyError::Issuer));
        }
    }

    #[test]
    fn malformed_tokens_and_critical_headers_are_refused() {
        let verifier = Alg::Hs256.verifier().unwrap();
        let token = Alg::Hs256
            .signer()
            .unwrap()
            .sign(&typical_claims(1, now()))
            .unwrap();
        let (header, rest) = token.split_once('.').unwrap();
        for bad in [
            String::new(),
            "a.b".to_owned(),
            format!("{token}.x"),
            format!("{header}=.{rest}"),
            format!("{header}.{rest}="),
            token.replace('.', ".."),
        ] {
            assert_eq!(verifier.verify(&bad), Err(VerifyError::Malformed), "{bad}");
        }
        let crit = b64(br#"{"alg":"HS256","crit":["exp"],"exp":1}"#);
        assert_eq!(
            verifier.verify(&format!("{crit}.{rest}")),
            Err(VerifyError::Critical)
        );
    }

    #[test]
    fn the_service_token_is_as_long_as_the_servers() {
        let user = BenchUser::numbered(42);
        let iat = now().as_unix_secs();
        let claims = service_claims(
            "http://127.0.0.1:40000",
            "http://127.0.0.1:40000",
            &user,
            "Xq3v0cJ2m9tB1kW8pL5aZg",
            iat,
        );
        let token = mint_service_token(&Alg::EdDsa.signer().unwrap(), &claims).unwrap();
        let (header, payload) = token.split_once('.').unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["typ"], TOKEN_TYPE);
        assert_eq!(header["kid"].as_str().unwrap().len(), 16);
        let payload = payload.split_once('.').unwrap().0;
        let back: ServiceClaims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.jti.len(), 22, "16 random bytes in base64url");
    }
}
