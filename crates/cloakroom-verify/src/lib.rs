//! Verify Cloakroom service JWTs in the services behind the proxy.
//!
//! Behind a Cloakroom-guarded proxy, every request reaches your service with an
//! `X-Cloakroom-Jwt` header: a short-lived token saying who the user is, signed by Cloakroom
//! and bound to your service's origin. [`Verifier`] checks it against Cloakroom's JWKS with no
//! call to Cloakroom per request; [`ServiceIdentity`] does it as an axum extractor.
//!
//! # What it refuses, and why
//!
//! JWT verification fails in well-known ways (RFC 8725); this crate closes each:
//!
//! * **Algorithm confusion.** The algorithm comes from the *key*, never from the token: an
//!   Ed25519 (`OKP`) key verifies only `EdDSA`, a P-256 (`EC`) key only `ES256`. Everything
//!   else — `none`, `HS256` "signed" with the public key, RSA — is refused.
//! * **Key injection.** `jku`, `x5u` and embedded `jwk` headers are ignored: keys come only
//!   from the JWKS URL you configured.
//! * **Wrong audience or issuer.** `aud` must equal this service's own audience, so a token
//!   minted for app A is worthless at app B; `iss` must equal Cloakroom's URL.
//! * **Stale or premature tokens.** `exp` and `iat` are required; `iat` in the future and an
//!   expired `exp` are refused, with at most 60 s of leeway for clock skew.
//! * **Type confusion.** The `typ` header must be `cloakroom-service+jwt`.
//!
//! Keys are cached. An unknown `kid` triggers a refresh — rate-limited, so a flood of forged
//! `kid`s cannot turn into a flood of JWKS fetches — and the cache is refreshed anyway once it
//! is older than the JWKS cache lifetime, so a retired key stops being accepted.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::get};
//! use cloakroom_verify::{ServiceIdentity, Verifier, VerifierConfig};
//!
//! async fn hello(ServiceIdentity(who): ServiceIdentity) -> String {
//!     format!("hello {}", who.preferred_username)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::new(VerifierConfig::new(
//!     "https://login.example.com/.well-known/jwks.json",
//!     "https://login.example.com",
//!     "https://app.example.com",
//! )?);
//! let app: Router = Router::new().route("/", get(hello)).with_state(Arc::new(verifier));
//! # Ok(()) }
//! ```

#[cfg(feature = "axum")]
mod extract;
mod jwks;
mod verifier;

#[cfg(feature = "axum")]
pub use extract::{ServiceIdentity, ServiceIdentityRejection};
pub use jwks::JwksError;
pub use verifier::{
    ConfigError, JWT_HEADER, MAX_LEEWAY, ServiceClaims, TOKEN_TYPE, Verifier, VerifierConfig,
    VerifyError,
};
