//! Signing in through OpenID providers (OpenID Connect relying party, issue 13).
//!
//! The provider's ID token is checked once, at the callback, and then forgotten: what the
//! browser holds afterwards is an ordinary local session, made exactly as a password login
//! makes one. The provider's tokens never reach the browser and are not kept.

pub(crate) mod provider;
