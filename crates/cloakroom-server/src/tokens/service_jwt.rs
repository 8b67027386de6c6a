//! Service JWTs: what the edge hands to the services behind it.
//!
//! A browser session stays a session; only at the proxy does it become a short-lived
//! (60 s by default, 300 s at most), audience-bound, EdDSA-signed token that a downstream
//! service verifies against the JWKS without calling Cloakroom. It carries the session's
//! public handle (`sid`), never the session token.
//!
//! Signing costs tens of microseconds, so a token is minted once per session and audience and
//! reused until half its life has passed. Reuse never weakens revocation: the session is
//! validated on every forward-auth check before a cached token is handed out.
//!
//! The cache is looked up on every check, so it is keyed by the session id alone (its own
//! hash: ids are uniform already) and holds a few audiences per session, compared exactly —
//! no digest, no general-purpose hash of a 64-byte key per request (issue 14's profile). It is
//! bounded in every direction an attacker could push: at most [`MAX_AUDIENCES`] audiences per
//! session, an audience longer than [`MAX_CACHED_AUDIENCE`] bytes is never kept (an app's
//! origin is far shorter), and at most [`MAX_CACHED`] entries in all. When it is full a new
//! token is simply not cached until the periodic prune drops stale ones (within half a token
//! lifetime): clearing it instead would let one user minting for endless wildcard audiences
//! evict everyone else's.

use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloakroom_core::link::LinkId;
use cloakroom_core::{Session, SessionId, SessionIdHasher, Timestamp, UserId};
use dashmap::DashMap;

use crate::tokens::keys::KeyRing;

pub(crate) use cloakroom_core::service_token::{ServiceClaims, TOKEN_TYPE};

/// Most cached tokens (about a kilobyte each: the JWT and the identity headers).
pub(crate) const MAX_CACHED: usize = 10_000;

/// Most audiences cached for one session (one app per proxy host; most sessions use one).
pub(crate) const MAX_AUDIENCES: usize = 4;

/// Longest audience cached, in bytes.
pub(crate) const MAX_CACHED_AUDIENCE: usize = 255;

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MintError {
    /// No key signs at this moment (all retired, or the key directory was emptied).
    #[error("no signing key is active")]
    NoKey,
    /// Signing failed.
    #[error("signing failed")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// The token is not a valid header value (a JWT is base64url and dots: a bug if seen).
    #[error("the minted token is not a valid header value")]
    NotAHeader,
}

pub(crate) use crate::identity::Identity;

/// Everything forward auth adds to an answer, ready to copy into the response: header values
/// are validated once, when the token is minted, not on every check.
#[derive(Debug)]
pub(crate) struct ForwardHeaders {
    /// `Remote-User`, `X-Auth-Request-User`, `X-Auth-Request-Preferred-Username`.
    pub(crate) user: Option<HeaderValue>,
    /// `Remote-Name` (the display name, or the username).
    pub(crate) name: Option<HeaderValue>,
    /// `Remote-Email`, `X-Auth-Request-Email`.
    pub(crate) email: Option<HeaderValue>,
    /// `Remote-Groups`, `X-Auth-Request-Groups` (comma-separated), when the user has any.
    pub(crate) groups: Option<HeaderValue>,
    /// `X-Cloakroom-Jwt`.
    pub(crate) jwt: HeaderValue,
    /// `Remote-Auth-Level` (`aal1`, `aal2`), for a session.
    pub(crate) level: Option<HeaderValue>,
}

/// Who a token is about: the user, and the session handle or link id.
struct Subject<'a> {
    user: &'a str,
    sid: &'a str,
    link: bool,
    /// How the session's user proved who they are, and its level; empty and `None` for a link.
    amr: &'a [&'static str],
    acr: Option<&'static str>,
}

struct Cached {
    /// Compared exactly: a token for another app must never be handed out.
    audience: Box<str>,
    /// Who the token says the user is; compared with who they are now on every hit, so a
    /// group change or a new verified address is never hidden behind a cached token.
    identity: Arc<Identity>,
    headers: Arc<ForwardHeaders>,
    refresh_at: Timestamp,
}

/// Mints and caches service JWTs.
pub(crate) struct Minter {
    issuer: String,
    ttl: Duration,
    keys: RwLock<Arc<KeyRing>>,
    cache: DashMap<SessionId, Vec<Cached>, BuildHasherDefault<SessionIdHasher>>,
    /// Entries in all the vectors above.
    cached: AtomicUsize,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter for `issuer` with tokens living `ttl` (capped at the maximum), signing with
    /// `keys`.
    pub(crate) fn new(issuer: String, ttl: Duration, keys: KeyRing) -> Self {
        Self {
            issuer,
            ttl: ttl.min(crate::tokens::keys::MAX_TOKEN_TTL),
            keys: RwLock::new(Arc::new(keys)),
            cache: DashMap::default(),
            cached: AtomicUsize::new(0),
        }
    }

    /// The current key ring.
    pub(crate) fn keys(&self) -> Arc<KeyRing> {
        // A poisoned lock still holds a complete ring (replacement is one assignment).
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs with `ring` from now on (re-read after a rotation).
    /// (Nothing happens when `ring` holds the keys, on the schedule, already in use: the
    /// usual case of the periodic re-read, which then takes no write lock.)
    pub(crate) fn replace(&self, ring: KeyRing) {
        if self.keys().same_keys(&ring) {
            return;
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    /// The forward-auth headers for `session`, its user's current `identity` and `audience`,
    /// with a service JWT reused from the cache while it has more than half its life left and
    /// still says who the user is now.
    pub(crate) fn forward_headers(
        &self,
        session: &Session,
        identity: &Arc<Identity>,
        audience: &str,
        now: Timestamp,
    ) -> Result<Arc<ForwardHeaders>, MintError> {
        if let Some(entries) = self.cache.get(&session.id)
            && let Some(c) = entries.iter().find(|c| &*c.audience == audience)
            && now < c.refresh_at
            // The same cached identity is the same allocation; a reloaded one is compared.
            && (Arc::ptr_eq(&c.identity, identity) || *c.identity == **identity)
        {
            return Ok(c.headers.clone());
        }
        let level = crate::mfa::level::AuthLevel::of(session).as_str();
        let amr = crate::mfa::level::amr(session);
        let subject = Subject {
            user: session.user_id.as_str(),
            sid: session.handle.as_str(),
            link: false,
            amr: &amr,
            acr: Some(level),
        };
        let headers = Arc::new(self.headers(&subject, identity, audience, now)?);
        if audience.len() <= MAX_CACHED_AUDIENCE {
            self.remember(session.id, audience, identity, &headers, now);
        }
        Ok(headers)
    }

    /// Caches `headers`: a refresh replaces its entry (and so never grows the cache); a new
    /// entry is added only while the session and the cache have room (see the module docs).
    fn remember(
        &self,
        id: SessionId,
        audience: &str,
        identity: &Arc<Identity>,
        headers: &Arc<ForwardHeaders>,
        now: Timestamp,
    ) {
        let entry = Cached {
            audience: audience.into(),
            identity: identity.clone(),
            headers: headers.clone(),
            refresh_at: now.saturating_add(self.ttl / 2),
        };
        if let Some(mut entries) = self.cache.get_mut(&id) {
            if let Some(old) = entries.iter_mut().find(|c| *c.audience == *audience) {
                *old = entry;
            } else if entries.len() < MAX_AUDIENCES && self.reserve() {
                entries.push(entry);
            }
        } else if self.reserve() {
            self.cache.insert(id, vec![entry]);
        }
    }

    /// Counts one more entry, if the cache has room for it.
    fn reserve(&self) -> bool {
        self.cached
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_CACHED).then_some(n + 1)
            })
            .is_ok()
    }

    /// The forward-auth headers for a request a download link let through: the link's maker,
    /// `sid` the link's id, and `"link": true` in the token, so the app can tell a link's
    /// fetch from a signed-in user's. Not cached: a link is used once, or a few times.
    pub(crate) fn link_headers(
        &self,
        user: &UserId,
        link: &LinkId,
        who: &Identity,
        audience: &str,
        now: Timestamp,
    ) -> Result<ForwardHeaders, MintError> {
        let sid = link.to_string();
        let subject = Subject {
            user: user.as_str(),
            sid: &sid,
            link: true,
            amr: &[],
            acr: None,
        };
        self.headers(&subject, who, audience, now)
    }

    fn headers(
        &self,
        subject: &Subject<'_>,
        who: &Identity,
        audience: &str,
        now: Timestamp,
    ) -> Result<ForwardHeaders, MintError> {
        let token = self.mint(subject, who, audience, now)?;
        let name = who.name.as_deref().unwrap_or(&who.username);
        // All the values in one buffer: a check's clones of them then count on one shared
        // reference count, and hyper copies them from neighbouring memory (issue 14's profile
        // had a cache miss per value).
        let groups = who.groups_joined();
        let parts = [
            who.username.as_str(),
            name,
            who.email.as_deref().unwrap_or(""),
            &groups,
            &token,
        ];
        let mut buffer = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ranges = [0..0, 0..0, 0..0, 0..0, 0..0];
        for (part, range) in parts.iter().zip(&mut ranges) {
            let start = buffer.len();
            buffer.extend_from_slice(part.as_bytes());
            *range = start..buffer.len();
        }
        let buffer = Bytes::from(buffer);
        let [user, name, email, group_list, jwt] =
            ranges.map(|r| HeaderValue::from_maybe_shared(buffer.slice(r)).ok());
        Ok(ForwardHeaders {
            user,
            name,
            email: who.email.as_ref().and(email),
            groups: (!who.groups.is_empty()).then_some(group_list).flatten(),
            jwt: jwt.ok_or(MintError::NotAHeader)?,
            level: subject.acr.map(HeaderValue::from_static),
        })
    }

    fn mint(
        &self,
        subject: &Subject<'_>,
        who: &Identity,
        audience: &str,
        now: Timestamp,
    ) -> Result<String, MintError> {
        let keys = self.keys();
        let signer = keys.signer(now).ok_or(MintError::NoKey)?;
        let mut header = jsonwebtoken::Header::new(signer.jwt_algorithm());
        header.kid = Some(signer.kid().to_owned());
        header.typ = Some(TOKEN_TYPE.to_owned());
        let mut jti = [0u8; 16];
        // Same policy as session tokens: no randomness, no tokens.
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut jti).expect("the OS CSPRNG is unavailable");
        let iat = now.as_unix_secs();
        let claims = ServiceClaims {
            iss: self.issuer.clone(),
            aud: audience.to_owned(),
            sub: subject.user.to_owned(),
            preferred_username: who.username.clone(),
            sid: subject.sid.to_owned(),
            iat,
            exp: iat + i64::try_from(self.ttl.as_secs()).unwrap_or(60),
            jti: URL_SAFE_NO_PAD.encode(jti),
            link: subject.link,
            email: who.email.clone(),
            groups: who.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            amr: subject.amr.iter().map(|&m| m.to_owned()).collect(),
            acr: subject.acr.map(str::to_owned),
        };
        Ok(jsonwebtoken::encode(
            &header,
            &claims,
            signer.encoding_key(),
        )?)
    }

    /// Drops cached tokens that would be re-minted anyway.
    pub(crate) fn prune(&self, now: Timestamp) {
        self.cache.retain(|_, entries| {
            let before = entries.len();
            entries.retain(|c| c.refresh_at > now);
            self.cached
                .fetch_sub(before - entries.len(), Ordering::AcqRel);
            !entries.is_empty()
        });
    }

    /// How many tokens are cached.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.cached.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloakroom_core::{AuthMethod, MemoryStore, NewSession, SessionManager, UserId};

    /// Finding 7: the cache kept up to 100,000 entries, each holding the audience string the
    /// client chose. A flood of distinct audiences (allowed ones: a wildcard app origin has
    /// endless names) must leave it bounded.
    #[tokio::test]
    async fn finding_07_a_flood_of_audiences_keeps_the_jwt_cache_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let keys =
            KeyRing::open(dir.path(), crate::tokens::keys::KeyAlgorithm::EdDsa, now).unwrap();
        let minter = Minter::new(
            "https://cloakroom.test".into(),
            Duration::from_secs(60),
            keys,
        );
        let session = SessionManager::new(MemoryStore::new())
            .issue(
                NewSession::new(UserId::new("u1").unwrap(), AuthMethod::password()),
                None,
            )
            .await
            .unwrap()
            .session;
        let identity = &Arc::new(Identity {
            username: "u1".into(),
            name: None,
            email: None,
            groups: Vec::new(),
        });
        for i in 0..12_000 {
            let audience = format!("https://{i:0>63}.example.com");
            minter
                .forward_headers(&session, identity, &audience, now)
                .unwrap();
        }
        assert_eq!(
            minter.cached(),
            MAX_AUDIENCES,
            "one session holds a few audiences"
        );
        // However long the audience, none is kept past the bound.
        let long = format!("https://{}.example.com", "a".repeat(4000));
        let other = SessionManager::new(MemoryStore::new())
            .issue(
                NewSession::new(UserId::new("u2").unwrap(), AuthMethod::password()),
                None,
            )
            .await
            .unwrap()
            .session;
        minter
            .forward_headers(&other, identity, &long, now)
            .unwrap();
        assert_eq!(minter.cached(), MAX_AUDIENCES);
        // Many sessions: bounded in all.
        let manager = SessionManager::new(MemoryStore::new());
        for i in 0..(MAX_CACHED / MAX_AUDIENCES + 100) {
            let s = manager
                .issue(
                    NewSession::new(
                        UserId::new(format!("v{i}")).unwrap(),
                        AuthMethod::password(),
                    ),
                    None,
                )
                .await
                .unwrap()
                .session;
            for a in 0..MAX_AUDIENCES {
                let audience = format!("https://app{a}.example.com");
                minter
                    .forward_headers(&s, identity, &audience, now)
                    .unwrap();
            }
        }
        assert_eq!(minter.cached(), MAX_CACHED);
        // Once stale entries are pruned, tokens are cached again.
        minter.prune(now.saturating_add(Duration::from_secs(31)));
        assert_eq!(minter.cached(), 0);
        assert!(minter.cache.is_empty());
    }
}
