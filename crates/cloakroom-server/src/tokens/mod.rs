//! Tokens Cloakroom issues besides the session ticket: today the service JWTs that forward
//! auth hands to apps, signed by rotating keys published as a JWKS. A new token kind (a
//! single-use link, …) goes here, next to the keys that sign it.

pub mod keys;
pub(crate) mod service_jwt;
