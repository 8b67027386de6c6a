//! A provider's discovery document and keys, fetched from its issuer and cached.
//!
//! Both are fetched together and kept for as long as the answers' `Cache-Control: max-age`
//! says (at least [`MIN_FRESH`], so a provider that forbids caching is not asked on every
//! login; at most [`MAX_FRESH`], so a key the provider has since revoked is dropped within a
//! day; [`DEFAULT_FRESH`] without the header). A token signed by a key the cache does not know
//! — the provider rotated — refetches the keys at once, but at most once per
//! [`UNKNOWN_KID_PAUSE`]: a stream of tokens with made-up `kid`s must not turn this server into
//! a flood of requests to the provider. A failed fetch is remembered for [`FAILURE_PAUSE`]:
//! while a provider is down or slow, sign-ins through it are refused at once rather than each
//! holding the cache's lock for the whole timeout in turn.

use std::time::Duration;

use cloakroom_core::{Clock, Timestamp};
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use tokio::sync::Mutex;

use super::client::{HttpError, ProviderClient};

/// The shortest time a fetched document is kept.
pub(crate) const MIN_FRESH: Duration = Duration::from_secs(60);
/// The longest.
pub(crate) const MAX_FRESH: Duration = Duration::from_secs(24 * 3600);
/// How long without a `max-age`.
pub(crate) const DEFAULT_FRESH: Duration = Duration::from_secs(3600);
/// The least time between two key refreshes for an unknown `kid`.
pub(crate) const UNKNOWN_KID_PAUSE: Duration = Duration::from_secs(60);
/// How long a failed fetch is remembered: within it, sign-ins through the provider are
/// refused at once instead of each waiting for the provider in turn.
pub(crate) const FAILURE_PAUSE: Duration = Duration::from_secs(10);

/// Why a provider's documents could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    /// The request failed.
    #[error("fetching {url}")]
    Http {
        /// What was fetched.
        url: String,
        /// Why it failed.
        #[source]
        source: HttpError,
    },
    /// The provider answered with another status than 200.
    #[error("{url} answered {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer was not the document.
    #[error("{url} is not a valid document")]
    Parse {
        /// What was fetched.
        url: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The document names another issuer than the one configured (a mix-up, or a typo).
    #[error("the discovery document names the issuer {found:?}, not the configured {configured:?}")]
    IssuerMismatch {
        /// As configured.
        configured: String,
        /// As the document says.
        found: String,
    },
    /// A fetch failed less than [`FAILURE_PAUSE`] ago; the provider is not asked again yet.
    #[error("the provider failed moments ago ({0}); not asking again yet")]
    RecentlyFailed(String),
    /// The document's `jwks_uri` is not usable.
    #[error("the discovery document's jwks_uri {0:?} is not an https URL (or http on loopback)")]
    JwksUri(String),
}

struct Cached {
    metadata: CoreProviderMetadata,
    fresh_until: Timestamp,
}

#[derive(Default)]
struct Cache {
    cached: Option<Cached>,
    /// When a token's unknown `kid` last made the keys be fetched.
    unknown_kid_refresh: Option<Timestamp>,
    /// When the last fetch failed, and why.
    failed: Option<(Timestamp, String)>,
}

/// One provider's documents, fetched when first needed and refreshed as they go stale.
pub(crate) struct Discovery {
    issuer: url::Url,
    http: ProviderClient,
    clock: std::sync::Arc<dyn Clock>,
    // Held across the fetch: concurrent logins wait for one fetch rather than each making one.
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

/// How long an answer may be kept, from its `Cache-Control`.
pub(crate) fn freshness(headers: &http::HeaderMap) -> Duration {
    let directives: Vec<String> = headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "no-store" || d == "no-cache")
    {
        return MIN_FRESH;
    }
    directives
        .iter()
        .find_map(|d| d.strip_prefix("max-age="))
        .and_then(|secs| secs.trim_matches('"').parse::<u64>().ok())
        .map_or(DEFAULT_FRESH, |secs| {
            Duration::from_secs(secs).clamp(MIN_FRESH, MAX_FRESH)
        })
}

impl Discovery {
    pub(crate) fn new(
        issuer: url::Url,
        http: ProviderClient,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Self {
        Self {
            issuer,
            http,
            clock,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The discovery document, its keys set, fresh by the cache rules.
    pub(crate) async fn metadata(&self) -> Result<CoreProviderMetadata, DiscoveryError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if let Some(c) = cache.cached.as_ref().filter(|c| now < c.fresh_until) {
            return Ok(c.metadata.clone());
        }
        if let Some((at, why)) = &cache.failed
            && now.duration_since(*at) < FAILURE_PAUSE
        {
            return Err(DiscoveryError::RecentlyFailed(why.clone()));
        }
        let fetched = match self.fetch(now).await {
            Ok(fetched) => fetched,
            Err(e) => {
                cache.failed = Some((now, e.to_string()));
                return Err(e);
            }
        };
        cache.failed = None;
        let metadata = fetched.metadata.clone();
        cache.cached = Some(fetched);
        Ok(metadata)
    }

    /// Refetches the keys because a token named one the cache lacks, unless that was done
    /// less than [`UNKNOWN_KID_PAUSE`] ago. Returns the document with the new keys, or `None`
    /// when it is too soon (the caller then refuses the token).
    pub(crate) async fn refresh_for_unknown_key(
        &self,
    ) -> Result<Option<CoreProviderMetadata>, DiscoveryError> {
        let mut cache = self.cache.lock().await;
        let now = self.clock.now();
        if cache
            .unknown_kid_refresh
            .is_some_and(|at| now.duration_since(at) < UNKNOWN_KID_PAUSE)
        {
            return Ok(None);
        }
        cache.unknown_kid_refresh = Some(now);
        let fetched = self.fetch(now).await?;
        let metadata = fetched.metadata.clone();
        cache.cached = Some(fetched);
        Ok(Some(metadata))
    }

    async fn get(&self, url: &url::Url) -> Result<(Vec<u8>, Duration), DiscoveryError> {
        let response = self
            .http
            .get(url)
            .await
            .map_err(|source| DiscoveryError::Http {
                url: url.to_string(),
                source,
            })?;
        if response.status() != http::StatusCode::OK {
            return Err(DiscoveryError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let fresh = freshness(response.headers());
        Ok((response.into_body(), fresh))
    }

    async fn fetch(&self, now: Timestamp) -> Result<Cached, DiscoveryError> {
        let mut url = self.issuer.clone();
        // `<issuer>/.well-known/openid-configuration`, the issuer's path kept (OIDC Discovery
        // §4: appended, not replaced).
        let path = format!(
            "{}/.well-known/openid-configuration",
            url.path().trim_end_matches('/')
        );
        url.set_path(&path);
        let (body, doc_fresh) = self.get(&url).await?;
        let mut metadata: CoreProviderMetadata =
            serde_json::from_slice(&body).map_err(|source| DiscoveryError::Parse {
                url: url.to_string(),
                source,
            })?;
        let found = metadata.issuer().as_str();
        if url::Url::parse(found).ok().as_ref() != Some(&self.issuer) {
            return Err(DiscoveryError::IssuerMismatch {
                configured: self.issuer.to_string(),
                found: found.to_owned(),
            });
        }
        let jwks_url = url::Url::parse(metadata.jwks_uri().as_str())
            .ok()
            .filter(|u| {
                u.scheme() == "https"
                    || (u.scheme() == "http"
                        && u.host()
                            .is_some_and(|h| crate::config::is_loopback_host(&h)))
            })
            .ok_or_else(|| DiscoveryError::JwksUri(metadata.jwks_uri().to_string()))?;
        let (body, keys_fresh) = self.get(&jwks_url).await?;
        let jwks: CoreJsonWebKeySet =
            serde_json::from_slice(&body).map_err(|source| DiscoveryError::Parse {
                url: jwks_url.to_string(),
                source,
            })?;
        metadata = metadata.set_jwks(jwks);
        Ok(Cached {
            metadata,
            fresh_until: now.saturating_add(doc_fresh.min(keys_fresh)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::CACHE_CONTROL, value.parse().unwrap());
        h
    }

    #[test]
    fn cache_headers_are_honoured_within_bounds() {
        assert_eq!(freshness(&http::HeaderMap::new()), DEFAULT_FRESH);
        assert_eq!(
            freshness(&headers("public, max-age=7200")),
            Duration::from_secs(7200)
        );
        assert_eq!(freshness(&headers("max-age=5")), MIN_FRESH);
        assert_eq!(freshness(&headers("max-age=99999999")), MAX_FRESH);
        assert_eq!(freshness(&headers("no-store")), MIN_FRESH);
        assert_eq!(freshness(&headers("max-age=nonsense")), DEFAULT_FRESH);
    }
}
