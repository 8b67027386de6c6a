//! [`Verifier`]: service JWTs checked against a cached JWKS.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cloakroom_core::{Clock, SystemClock, Timestamp};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use tokio::sync::{Mutex, RwLock};

use crate::jwks::{JwksError, Key, parse};

pub use cloakroom_core::service_token::{JWT_HEADER, ServiceClaims, TOKEN_TYPE};

/// The most clock-skew leeway a verifier may allow.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// The default [`VerifierConfig::with_max_token_lifetime`]: twice the longest lifetime Cloakroom
/// mints (`jwt_ttl_secs` is at most 300 s), so every token Cloakroom can issue is accepted —
/// also by a verifier upgraded later than the server — while a token minted for an hour, a day
/// or a year is refused. Such a token did not come from Cloakroom's minter: it was signed with
/// a leaked key or by a misconfigured one, and a short bound limits how long it is good for.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// The default [`VerifierConfig::with_max_stale_age`]: an hour. Twelve times the cache lifetime
/// (300 s), long enough to ride out a Cloakroom restart, a deployment or a short network
/// outage without refusing anyone; short enough that a key Cloakroom has retired (say after a
/// leak) stops verifying within the hour at a service an attacker has cut off from the JWKS.
/// Longer outages gain little from stale keys anyway: with Cloakroom unreachable, the proxy
/// mints no new tokens either.
pub const DEFAULT_MAX_STALE_AGE: Duration = Duration::from_secs(3600);
/// Longest token accepted, in bytes (a service JWT is well under 1 KiB).
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A bad verifier configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The JWKS URL is not an http(s) URL.
    #[error("the JWKS URL must be an http(s) URL")]
    JwksUrl,
    /// The JWKS URL is plain `http://` to a host other than a loopback address or
    /// `localhost`: anyone on the path could serve their own keys, and every token they sign
    /// would verify. Use `https://`, or
    /// [`VerifierConfig::danger_allow_http_jwks`] where something else protects the path.
    #[error("the JWKS URL must be https unless its host is loopback (127.0.0.0/8, ::1, localhost)")]
    InsecureJwksUrl,
    /// Issuer or audience is empty.
    #[error("issuer and audience must not be empty")]
    Empty,
    /// More leeway than [`MAX_LEEWAY`].
    #[error("leeway must be at most 60 seconds")]
    Leeway,
}

/// Why a token was refused. Everything but [`Jwks`](Self::Jwks) means "not a valid token
/// for this service"; `Jwks` means the keys could not be fetched (answer 503, not 401).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No token was presented.
    #[error("no service token")]
    Missing,
    /// Not a JWT, or a JWT with an unknown or unsupported algorithm (`none` among them).
    #[error("malformed service token")]
    Malformed,
    /// The `typ` header is not [`TOKEN_TYPE`].
    #[error("not a Cloakroom service token (typ)")]
    WrongType,
    /// No `kid`, or one the JWKS does not contain.
    #[error("signed by an unknown key")]
    UnknownKey,
    /// The token's `alg` is not the one its key is for.
    #[error("algorithm not allowed for this key")]
    AlgorithmNotAllowed,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// Past `exp` (beyond the leeway).
    #[error("expired")]
    Expired,
    /// `iat` (or `nbf`) in the future beyond the leeway.
    #[error("issued in the future")]
    NotYetValid,
    /// `iss` is not Cloakroom's.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` is not this service.
    #[error("token is for another service")]
    WrongAudience,
    /// `exp - iat` is longer than the maximum token lifetime
    /// ([`VerifierConfig::with_max_token_lifetime`]). Cloakroom never mints such a token.
    #[error("the token lives longer than service tokens may")]
    LifetimeTooLong,
    /// A required claim is missing.
    #[error("missing claim {0}")]
    MissingClaim(String),
    /// The JWKS could not be fetched.
    #[error("the signing keys are unavailable")]
    Jwks(#[from] JwksError),
}

/// Where the keys are and what a token must say.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    jwks_url: reqwest::Url,
    issuer: String,
    audience: String,
    leeway: Duration,
    cache_max_age: Duration,
    max_stale_age: Duration,
    max_token_lifetime: Duration,
    min_refresh_interval: Duration,
    http_timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl VerifierConfig {
    /// Tokens from `issuer` (Cloakroom's public URL, e.g. `https://login.example.com`) for
    /// `audience` (this service's origin, e.g. `https://app.example.com`), verified with the
    /// keys at `jwks_url`.
    ///
    /// `jwks_url` must be `https://`, or plain `http://` to a loopback address or `localhost`
    /// (a Cloakroom on the same machine); anything else is
    /// [`ConfigError::InsecureJwksUrl`].
    ///
    /// Defaults: 30 s leeway, keys cached for 300 s and trusted for at most
    /// [`DEFAULT_MAX_STALE_AGE`] while refreshing fails, at most one refresh every 10 s, 5 s
    /// HTTP timeout, tokens living at most [`DEFAULT_MAX_TOKEN_LIFETIME`], the system clock.
    pub fn new(jwks_url: &str, issuer: &str, audience: &str) -> Result<Self, ConfigError> {
        let config = Self::danger_allow_http_jwks(jwks_url, issuer, audience)?;
        if config.jwks_url.scheme() == "http" && !is_loopback(&config.jwks_url) {
            return Err(ConfigError::InsecureJwksUrl);
        }
        Ok(config)
    }

    /// Like [`new`](Self::new), but also accepts a plain `http://` JWKS URL to any host.
    ///
    /// Whoever can change the JWKS response in transit can sign tokens this verifier accepts.
    /// Use it only where the path is protected by other means (a service mesh with mutual
    /// TLS, a private link), and say so where you call it.
    pub fn danger_allow_http_jwks(
        jwks_url: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<Self, ConfigError> {
        let url = reqwest::Url::parse(jwks_url).map_err(|_| ConfigError::JwksUrl)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::JwksUrl);
        }
        if issuer.is_empty() || audience.is_empty() {
            return Err(ConfigError::Empty);
        }
        Ok(Self {
            jwks_url: url,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: Duration::from_secs(30),
            cache_max_age: Duration::from_secs(300),
            max_stale_age: DEFAULT_MAX_STALE_AGE,
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            min_refresh_interval: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        })
    }

    /// Clock-skew leeway for `exp`, `iat` and `nbf` (at most [`MAX_LEEWAY`]).
    pub fn with_leeway(mut self, leeway: Duration) -> Result<Self, ConfigError> {
        if leeway > MAX_LEEWAY {
            return Err(ConfigError::Leeway);
        }
        self.leeway = leeway;
        Ok(self)
    }

    /// How long fetched keys are trusted before the JWKS is fetched again.
    #[must_use]
    pub fn with_cache_max_age(mut self, age: Duration) -> Self {
        self.cache_max_age = age;
        self
    }

    /// How long fetched keys may still be used while fetching them again keeps failing
    /// (default [`DEFAULT_MAX_STALE_AGE`]), counted from the last successful fetch. Past it,
    /// every token is refused with [`JwksError::Stale`] until a fetch succeeds.
    #[must_use]
    pub fn with_max_stale_age(mut self, age: Duration) -> Self {
        self.max_stale_age = age;
        self
    }

    /// The longest `exp - iat` a token may have (default [`DEFAULT_MAX_TOKEN_LIFETIME`]);
    /// longer-lived tokens are refused with [`VerifyError::LifetimeTooLong`].
    #[must_use]
    pub fn with_max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = lifetime;
        self
    }

    /// The clock the key cache ages by (default: the system clock), so tests can age the
    /// cache by hours without sleeping. Token times (`exp`, `iat`) are checked against the
    /// system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The least time between two JWKS fetches (unknown `kid`s cannot force more).
    #[must_use]
    pub fn with_min_refresh_interval(mut self, interval: Duration) -> Self {
        self.min_refresh_interval = interval;
        self
    }
}

/// Plain HTTP cannot be tampered with on the way if it never leaves the machine. `localhost`
/// is taken by name (RFC 6761 reserves it for loopback); other names that merely resolve to a
/// loopback address today are not.
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[derive(Default)]
struct Cache {
    keys: Arc<HashMap<String, Key>>,
    fetched_at: Option<Timestamp>,
}

/// Verifies service JWTs. Share one per process (`Arc<Verifier>`); it caches the keys.
pub struct Verifier {
    config: VerifierConfig,
    http: reqwest::Client,
    cache: RwLock<Cache>,
    last_attempt: Mutex<Option<Timestamp>>,
    /// Keys given up front: never fetched, never refreshed.
    fixed: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier; keys are fetched on first use.
    pub fn new(config: VerifierConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            // The JWKS URL is configuration; a redirect elsewhere is not.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            config,
            http,
            cache: RwLock::new(Cache::default()),
            last_attempt: Mutex::new(None),
            fixed: false,
        }
    }

    /// A verifier with a fixed key set (a JWKS document) instead of fetching one: for
    /// deployments that distribute the JWKS out of band, and for tests. The `jwks_url` of
    /// `config` is not used.
    pub fn with_static_jwks(config: VerifierConfig, jwks: &[u8]) -> Result<Self, JwksError> {
        let keys = parse(jwks)?;
        let mut v = Self::new(config);
        v.cache = RwLock::new(Cache {
            keys: Arc::new(keys),
            fetched_at: Some(v.config.clock.now()),
        });
        v.fixed = true;
        Ok(v)
    }

    /// Checks `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<ServiceClaims, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(VerifyError::Malformed);
        }
        // Parsing the header cannot succeed for `alg: none` or any algorithm jsonwebtoken does
        // not know. `jku`, `x5u` and `jwk` are never looked at.
        let header = decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.typ.as_deref() != Some(TOKEN_TYPE) {
            return Err(VerifyError::WrongType);
        }
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let key = self.key(&kid).await?;
        if header.alg != key.alg {
            return Err(VerifyError::AlgorithmNotAllowed);
        }
        let mut validation = Validation::new(key.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        // Into a generic value first: jsonwebtoken deserialises before it validates, and a
        // missing `exp` should be reported as such, not as a shape error.
        let data =
            decode::<serde_json::Value>(token, &key.key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => VerifyError::BadSignature,
                    ErrorKind::ExpiredSignature => VerifyError::Expired,
                    ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                    ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                    ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                    ErrorKind::InvalidAlgorithm => VerifyError::AlgorithmNotAllowed,
                    ErrorKind::MissingRequiredClaim(c) => VerifyError::MissingClaim(c.clone()),
                    _ => VerifyError::Malformed,
                }
            })?;
        let claims: ServiceClaims = serde_json::from_value(data.claims)
            .map_err(|e| VerifyError::MissingClaim(e.to_string()))?;
        let max_lifetime =
            i64::try_from(self.config.max_token_lifetime.as_secs()).unwrap_or(i64::MAX);
        if claims.exp.saturating_sub(claims.iat) > max_lifetime {
            return Err(VerifyError::LifetimeTooLong);
        }
        let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap_or(i64::MAX);
        let leeway = i64::try_from(self.config.leeway.as_secs()).unwrap_or(60);
        if claims.iat > now + leeway {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<Key, VerifyError> {
        {
            let cache = self.cache.read().await;
            // A fixed key set is never fetched, so it never goes stale either.
            if self.fixed {
                return cache.keys.get(kid).cloned().ok_or(VerifyError::UnknownKey);
            }
            let fresh = self
                .age(&cache)
                .is_some_and(|age| age < self.config.cache_max_age.min(self.config.max_stale_age));
            if fresh && let Some(k) = cache.keys.get(kid) {
                return Ok(k.clone());
            }
        }
        self.refresh().await?;
        let cache = self.cache.read().await;
        if self
            .age(&cache)
            .is_some_and(|age| age > self.config.max_stale_age)
        {
            return Err(JwksError::Stale.into());
        }
        cache.keys.get(kid).cloned().ok_or(VerifyError::UnknownKey)
    }

    /// How long ago the cached keys were fetched; `None` if they never were.
    fn age(&self, cache: &Cache) -> Option<Duration> {
        let now = self.config.clock.now();
        cache.fetched_at.map(|t| now.duration_since(t))
    }

    /// Fetches the JWKS unless one was fetched (or attempted) less than the minimum refresh
    /// interval ago. A failed fetch keeps the previous keys — tokens live minutes, so serving
    /// on slightly stale keys beats refusing everyone while Cloakroom restarts — but only up to
    /// the maximum stale age, which [`key`](Self::key) enforces.
    async fn refresh(&self) -> Result<(), VerifyError> {
        let now = self.config.clock.now();
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|t| now.duration_since(t) < self.config.min_refresh_interval) {
            // Rate-limited: use what we have — unless we have never had anything.
            return if self.cache.read().await.fetched_at.is_some() {
                Ok(())
            } else {
                Err(JwksError::NoKeysYet.into())
            };
        }
        *last = Some(now);
        let fetched = async {
            let response = self
                .http
                .get(self.config.jwks_url.clone())
                .send()
                .await
                .map_err(JwksError::Fetch)?;
            let body = response
                .error_for_status()
                .map_err(JwksError::Fetch)?
                .bytes()
                .await
                .map_err(JwksError::Fetch)?;
            parse(&body)
        }
        .await;
        match fetched {
            Ok(keys) => {
                *self.cache.write().await = Cache {
                    keys: Arc::new(keys),
                    fetched_at: Some(self.config.clock.now()),
                };
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, url = %self.config.jwks_url, "JWKS refresh failed");
                if self.cache.read().await.fetched_at.is_some() {
                    Ok(())
                } else {
                    Err(e.into())
                }
            }
        }
    }
}
