//! Signing in through OpenID providers (OpenID Connect relying party, issue 13).
//!
//! The provider's ID token is checked once, at the callback, and then forgotten: what the
//! browser holds afterwards is an ordinary local session, made exactly as a password login
//! makes one. The provider's tokens never reach the browser and are not kept.
//!
//! * `provider.rs` — the `[[oidc]]` tables.
//! * `client.rs` — the client that talks to providers (no redirects, a timeout, a size cap).
//! * `discovery.rs` — each provider's discovery document and keys, cached by their headers.
//! * `prelogin.rs` — the signed cookie that carries `state`, `nonce` and the PKCE verifier
//!   from the login route to the callback.
//! * `flow.rs` — the login route's redirect and the callback's checks, down to the account.
//! * `logout.rs` — back-channel logout tokens.
//!
//! The protocol — PKCE, the token request, the ID token's signature and claims — is the
//! `openidconnect` crate's; this module decides only what this server does with the result.
//! Logout tokens, which that crate does not know, are verified with `jsonwebtoken` against
//! the same cached keys.

pub(crate) mod client;
pub(crate) mod discovery;
pub(crate) mod flow;
pub(crate) mod logout;
pub(crate) mod prelogin;
pub(crate) mod provider;

use std::sync::Arc;

use cloakroom_core::Clock;
use openidconnect::core::CoreJwsSigningAlgorithm;

use client::ProviderClient;
use discovery::Discovery;
use prelogin::PreLoginKey;
use provider::OidcProvider;

/// The signature algorithms accepted from a provider: asymmetric ones only. Never `none`, and
/// never an HMAC — with a public key as its secret that would let anyone who read the JWKS
/// forge tokens, and with the client secret it would trust whoever else holds that secret.
pub(crate) const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// One configured provider and its cached documents.
#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) config: OidcProvider,
    pub(crate) discovery: Discovery,
}

/// Every configured provider, the pre-login key, and the HTTP client they share.
#[derive(Debug)]
pub(crate) struct Oidc {
    providers: Vec<Provider>,
    pub(crate) key: PreLoginKey,
    pub(crate) http: ProviderClient,
}

impl Oidc {
    /// The providers `configured` (in the order the login page shows them), with the
    /// pre-login key `key`. Nothing is fetched yet: a provider that is down at start-up must
    /// not keep the server, and password logins, from starting.
    pub(crate) fn new(
        configured: &[OidcProvider],
        key: PreLoginKey,
        clock: &Arc<dyn Clock>,
    ) -> Self {
        let http = ProviderClient::new();
        let providers = configured
            .iter()
            .map(|config| Provider {
                discovery: Discovery::new(config.issuer.clone(), http.clone(), clock.clone()),
                config: config.clone(),
            })
            .collect();
        Self {
            providers,
            key,
            http,
        }
    }

    /// The provider with this id.
    pub(crate) fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.id == id)
    }

    /// What the pages call provider `id` (the id itself for one no longer configured).
    pub(crate) fn display_name(&self, id: &str) -> String {
        self.provider(id)
            .map_or_else(|| id.to_owned(), |p| p.config.display_name.clone())
    }

    /// The provider whose issuer is `issuer` (as a linked identity records it).
    pub(crate) fn by_issuer(&self, issuer: &str) -> Option<&Provider> {
        let issuer = url::Url::parse(issuer).ok()?;
        self.providers.iter().find(|p| p.config.issuer == issuer)
    }

    /// Whether any provider is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// `(id, display name)` of each provider, for the login page's buttons.
    pub(crate) fn buttons(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| (p.config.id.clone(), p.config.display_name.clone()))
            .collect()
    }
}
