//! Tokens Cloakroom issues besides the session ticket: the service JWTs that forward auth
//! hands to apps, signed by rotating keys published as a JWKS, and single-use links (password
//! reset, email verification, download), signed by keys of their own.

pub(crate) mod download;
pub mod keys;
pub mod links;
pub(crate) mod service_jwt;
pub mod vault;
