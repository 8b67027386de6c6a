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
//! * **Long-lived tokens.** `exp - iat` may be at most [`DEFAULT_MAX_TOKEN_LIFETIME`] (600 s,
//!   twice the longest Cloakroom mints; configurable). A token minted for longer did not come
//!   from Cloakroom's minter.
//! * **Keys from anyone on the path.** The JWKS URL must be `https://`; plain `http://` only
//!   to a loopback address or `localhost`, unless the config is built with
//!   [`VerifierConfig::danger_allow_http_jwks`].
//!
//! Keys are cached. An unknown `kid` triggers a refresh — rate-limited, so a flood of forged
//! `kid`s cannot turn into a flood of JWKS fetches — and the cache is refreshed anyway once it
//! is older than the JWKS cache lifetime, so a retired key stops being accepted. When a refresh
//! fails the cached keys are kept, so a Cloakroom restart refuses no one, but only for
//! [`DEFAULT_MAX_STALE_AGE`] (an hour; configurable) after the last successful fetch: past
//! that every token is refused ([`JwksError::Stale`], a 503 from the extractor), so an
//! attacker who cuts a service off from the JWKS cannot keep a retired key alive there.
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
    ConfigError, DEFAULT_MAX_STALE_AGE, DEFAULT_MAX_TOKEN_LIFETIME, JWT_HEADER, MAX_LEEWAY,
    ServiceClaims, TOKEN_TYPE, Verifier, VerifierConfig, VerifyError,
};
