//! The sign-in flow: the redirect to the provider, and the callback's checks.
//!
//! **Start** (`GET /oidc/{id}/login`): a fresh `state`, `nonce` and PKCE (S256) verifier go
//! into the pre-login cookie; the browser goes to the provider with the challenge.
//!
//! **Callback** (`GET /oidc/{id}/callback`), in this order, each failure answered and the
//! cookie cleared:
//! 1. the pre-login cookie is ours, unexpired, for this provider, and its `state` is the one
//!    that came back (so the code was asked for by this browser);
//! 2. it is recorded as used (the consumed-link records: a copied cookie works once);
//! 3. an `iss` parameter, when the provider sends one (RFC 9207), names this provider — the
//!    mix-up defence;
//! 4. the code is exchanged, with the PKCE verifier and the client's credentials;
//! 5. the ID token is verified by `openidconnect`: the signature, by a key of the provider's
//!    JWKS and an asymmetric algorithm ([`super::ALLOWED_ALGS`]); `iss`; `aud` (and `azp`
//!    when there are several audiences); `exp`; `nonce`; then here `iat` (not more than
//!    [`LEEWAY`] ahead, not older than [`MAX_AGE`]) and `at_hash` when present. A key the cache
//!    lacks refetches the JWKS once (rate-limited, see `discovery`).
//!
//! The caller (`web::oidc`) then finds or creates the account and starts the session.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cloakroom_core::{Clock, SessionManager, Timestamp};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyAdditionalClaims,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenClaims, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use super::discovery::DiscoveryError;
use super::prelogin::{Carried, LIFETIME, PreLogin, PreLoginError, Purpose};
use super::{ALLOWED_ALGS, Oidc, Provider};

/// How far ahead of this server's clock an ID token's `iat` may be.
pub(crate) const LEEWAY: Duration = Duration::from_secs(60);
/// How old an ID token may be when it arrives: it was made moments ago, for this exchange.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(600);

type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Verified claims of an ID token.
pub(crate) type Claims = IdTokenClaims<EmptyAdditionalClaims, CoreGenderClaim>;

/// Why a sign-in through a provider failed. The first group is the visitor's (or an
/// attacker's) to see; the second is the provider's or the network's, logged in full and
/// shown in general words.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FlowError {
    /// The pre-login cookie is missing, not ours, or expired.
    #[error(transparent)]
    PreLogin(#[from] PreLoginError),
    /// The cookie is for another provider, or the `state` differs.
    #[error("the state does not match this browser's sign-in")]
    StateMismatch,
    /// The cookie was used already.
    #[error("this sign-in was finished already")]
    Replayed,
    /// The callback carried no code.
    #[error("the callback has no code")]
    NoCode,
    /// The provider answered with an error (`access_denied`, say).
    // Debug-quoted: the text comes from the callback's query, and must not forge log lines.
    #[error("the provider refused: {0:?}")]
    Refused(String),
    /// `iss` names another issuer (a mix-up attack, or a misconfiguration).
    #[error("the callback's iss {0:?} is not this provider's")]
    WrongIssuer(String),
    /// Discovery or the keys could not be fetched.
    #[error("the provider's discovery document or keys")]
    Discovery(#[from] DiscoveryError),
    /// The code exchange failed.
    #[error("exchanging the code: {0}")]
    Exchange(String),
    /// The token answer had no ID token, or it failed verification.
    #[error("the ID token: {0}")]
    IdToken(String),
    /// The session store failed recording the cookie's use.
    #[error("recording the sign-in's use")]
    Store(#[from] cloakroom_core::StoreError),
}

impl FlowError {
    /// Whether the provider or the network is to blame, rather than the request (logged as
    /// an error, not a refusal).
    pub(crate) fn is_upstream(&self) -> bool {
        matches!(self, Self::Discovery(_) | Self::Exchange(_))
    }
}

fn client(
    provider: &Provider,
    metadata: CoreProviderMetadata,
    redirect: &str,
) -> Result<Rp, FlowError> {
    let secret = provider
        .config
        .client_secret
        .as_ref()
        .map(|s| ClientSecret::new(s.expose().to_owned()));
    let redirect = RedirectUrl::new(redirect.to_owned())
        .map_err(|e| FlowError::Exchange(format!("redirect URI: {e}")))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.config.client_id.clone()),
        secret,
    )
    .set_redirect_uri(redirect))
}

/// The provider's authorization URL, and the pre-login cookie's value.
pub(crate) async fn start(
    oidc: &Oidc,
    provider: &Provider,
    redirect: &str,
    next: String,
    link: Option<String>,
    now: Timestamp,
) -> Result<(String, String), FlowError> {
    let metadata = provider.discovery.metadata().await?;
    let client = client(provider, metadata, redirect)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in provider.config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = request.url();
    let pre = PreLogin {
        provider: provider.config.id.clone(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: verifier.secret().clone(),
        next,
        link,
    };
    let cookie = oidc
        .key
        .seal(Purpose::Oidc, &Carried::new(pre, now, LIFETIME))
        .ok_or(PreLoginError::Invalid)?;
    Ok((url.to_string(), cookie))
}

/// What came back to the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct CallbackQuery {
    pub(crate) code: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) iss: Option<String>,
}

fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.as_unix_millis()).unwrap_or_default()
}

/// What a verified callback yields.
#[derive(Debug)]
pub(crate) struct SignedIn {
    /// The ID token's claims.
    pub(crate) claims: Claims,
    /// The provider's session id (`sid`), if the ID token has one.
    pub(crate) sid: Option<String>,
    /// Where the visitor goes next.
    pub(crate) next: String,
    /// The account to connect the identity to, when that is what was started.
    pub(crate) link: Option<String>,
}

/// The `sid` claim of a JWT whose signature was verified already (`openidconnect`'s core
/// claims type has no field for it).
fn sid_of(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Sid {
        sid: Option<String>,
    }
    serde_json::from_slice::<Sid>(&json).ok()?.sid
}

/// Checks the callback (steps 1–5 of the module docs).
pub(crate) async fn finish(
    oidc: &Oidc,
    provider: &Provider,
    sessions: &SessionManager,
    clock: &dyn Clock,
    redirect: &str,
    cookie: Option<&str>,
    q: CallbackQuery,
) -> Result<SignedIn, FlowError> {
    let now = clock.now();
    let carried: Carried<PreLogin> =
        oidc.key
            .open_value(Purpose::Oidc, cookie.ok_or(PreLoginError::Missing)?, now)?;
    let pre = &carried.body;
    let state_matches = q.state.as_deref().is_some_and(|s| {
        // Constant-time, as a CSRF token is compared.
        use subtle::ConstantTimeEq as _;
        bool::from(s.as_bytes().ct_eq(pre.state.as_bytes()))
    });
    if pre.provider != provider.config.id || !state_matches {
        return Err(FlowError::StateMismatch);
    }
    if !carried.spend(sessions).await? {
        return Err(FlowError::Replayed);
    }
    if let Some(error) = q.error {
        return Err(FlowError::Refused(error));
    }
    let code = q.code.ok_or(FlowError::NoCode)?;
    let metadata = provider.discovery.metadata().await?;
    if let Some(iss) = &q.iss
        && iss != metadata.issuer().as_str()
    {
        return Err(FlowError::WrongIssuer(iss.clone()));
    }
    let rp = client(provider, metadata, redirect)?;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| FlowError::Exchange(e.to_string()))?
        .set_pkce_verifier(PkceCodeVerifier::new(pre.verifier.clone()))
        .request_async(&oidc.http)
        .await
        .map_err(|e| FlowError::Exchange(crate::error_chain::chain(&e)))?;
    let id_token = tokens
        .id_token()
        .ok_or_else(|| FlowError::IdToken("the token answer has no id_token".into()))?;
    let nonce = Nonce::new(pre.nonce.clone());
    let verify = |rp: &Rp| -> Result<Claims, openidconnect::ClaimsVerificationError> {
        let now_chrono = to_chrono(now);
        let verifier = rp
            .id_token_verifier()
            .set_allowed_algs(ALLOWED_ALGS)
            .set_time_fn(move || now_chrono)
            .set_issue_time_verifier_fn(move |iat| {
                let leeway = chrono::Duration::from_std(LEEWAY).unwrap_or_default();
                let max_age = chrono::Duration::from_std(MAX_AGE).unwrap_or_default();
                if iat > now_chrono + leeway {
                    Err(format!("iat {iat} is in the future"))
                } else if iat < now_chrono - max_age {
                    Err(format!("iat {iat} is too old"))
                } else {
                    Ok(())
                }
            });
        let claims = id_token.claims(&verifier, &nonce)?.clone();
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(openidconnect::ClaimsVerificationError::SignatureVerification)?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(openidconnect::ClaimsVerificationError::SignatureVerification)?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| openidconnect::ClaimsVerificationError::Other(e.to_string()))?;
            if actual != *expected {
                return Err(openidconnect::ClaimsVerificationError::Other(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        Ok(claims)
    };
    let claims = match verify(&rp) {
        Ok(claims) => claims,
        Err(openidconnect::ClaimsVerificationError::SignatureVerification(
            openidconnect::SignatureVerificationError::NoMatchingKey,
        )) => {
            // The provider may have rotated its keys since they were cached.
            let fresh = provider
                .discovery
                .refresh_for_unknown_key()
                .await?
                .ok_or_else(|| FlowError::IdToken("signed by an unknown key".into()))?;
            verify(&client(provider, fresh, redirect)?)
                .map_err(|e| FlowError::IdToken(e.to_string()))?
        }
        Err(e) => return Err(FlowError::IdToken(e.to_string())),
    };
    Ok(SignedIn {
        claims,
        sid: sid_of(&id_token.to_string()),
        next: pre.next.clone(),
        link: pre.link.clone(),
    })
}
