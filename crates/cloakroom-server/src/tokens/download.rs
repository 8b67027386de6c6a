//! Download links as the server makes and opens them: `POST /api/links` and `cloakroom links
//! create` make one; forward auth opens one.
//!
//! The token and its rules (one exact URL, a purpose of its own, at most an hour) are
//! `cloakroom_core::link`'s; the keys are [`Links`]'. What this module adds is what a link
//! means to the server:
//!
//! * **Only for the apps behind the proxy.** A link's origin must be one forward auth answers
//!   for (`app_origins`, or the public URL's own): the same rule that bounds service-JWT
//!   audiences, so a link can never name an app the operator did not.
//! * **Whose it is, checked at every use.** The link lets its holder in as its maker. At each
//!   use the maker's account must still exist and be enabled, and the maker's revocation
//!   epoch must be the one the link was made in: a link dies with "log out everywhere", a
//!   password change (which ends the other sessions), `cloakroom sessions revoke`, a disabled
//!   or deleted account. A link lent to someone is a share of the maker's access, and the
//!   maker taking their access back must take the link back too — the same rule reset links
//!   follow, and the one a user who thinks their account was used by someone else needs.
//! * **Single use takes state.** A download leaves nothing in the account to compare, so the
//!   session store records the link's id (not the token) on first use and keeps it until the
//!   link expires ([`SessionManager::consume_link`]); any further use is refused as used. The
//!   record is written last, after every other check, so a refused request never uses a
//!   link up; a `HEAD` counts as the use like a `GET` (both fetch it as far as the app is
//!   concerned). A store that cannot answer refuses the link (fail closed).
//! * **Nothing secret in logs.** Events name the link by its id (`jti`), which cannot be
//!   turned back into the token; the token and the URL's query string are never logged.

use std::time::Duration;

use cloakroom_core::accounts::{Account, AccountStore};
use cloakroom_core::link::{
    Download, LINK_PARAMETER, LinkError, LinkId, LinkTarget, LinkTargetError, link_allows_method,
};
use cloakroom_core::origin::Origin;
use cloakroom_core::{SessionManager, StoreError, Timestamp, UserId};

use crate::config::AppOrigins;
use crate::tokens::links::Links;

/// How long a link lives when the request does not say.
pub(crate) const DEFAULT_TTL: Duration = Download::DEFAULT_LIFETIME;
/// The longest a link may live.
pub(crate) const MAX_TTL: Duration = Download::MAX_LIFETIME;

/// A link, made.
#[derive(Debug)]
pub(crate) struct NewLink {
    /// The URL to hand out: the target with `cloakroom_link=<token>` appended. A bearer
    /// secret until it expires (or is used).
    pub(crate) url: String,
    /// Its id, for logs.
    pub(crate) id: LinkId,
    /// When it expires.
    pub(crate) expires_at: Timestamp,
}

/// Why a link was not made. The messages are sentences for the person who asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CreateError {
    /// The URL cannot be bound to a link (not http(s), a traversal, a fragment, …).
    #[error("This URL cannot be shared as a link: {}.", .0)]
    Url(#[source] LinkTargetError),
    /// The URL is not on one of the protected apps.
    #[error(
        "Links are made only for the apps behind this Cloakroom (app_origins); this URL's origin is not one of them."
    )]
    NotAnApp,
    /// A lifetime of zero or over an hour.
    #[error("A link lives 1 to 3600 seconds.")]
    Ttl,
    /// The session store could not tell the maker's revocation epoch.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The link-signing key failed.
    #[error("the link could not be signed")]
    Signing(#[source] LinkError),
}

/// Makes a link for `user` to `url`, living `ttl`, opening it once or (`single_use = false`)
/// until it expires.
#[allow(clippy::too_many_arguments)] // Each is one thing a link is made of.
pub(crate) async fn create(
    links: &Links,
    sessions: &SessionManager,
    apps: &AppOrigins,
    user: &UserId,
    url: &str,
    ttl: Duration,
    single_use: bool,
    now: Timestamp,
) -> Result<NewLink, CreateError> {
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(CreateError::Ttl);
    }
    let target = LinkTarget::parse(url).map_err(CreateError::Url)?;
    if !apps.allows(target.origin()) {
        return Err(CreateError::NotAnApp);
    }
    let epoch = sessions.revocation_epoch(user).await?;
    let link = Download::new(user.clone(), target.clone(), single_use, epoch);
    let minted = links.mint(&link, ttl, now).map_err(|e| match e {
        LinkError::Lifetime => CreateError::Ttl,
        other => CreateError::Signing(other),
    })?;
    Ok(NewLink {
        url: target.with_token(&minted.token),
        id: minted.id,
        expires_at: minted.expires_at,
    })
}

/// A link that let a request through.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Its maker, as the account is now.
    pub(crate) account: Account,
    /// Its id.
    pub(crate) id: LinkId,
    /// Whether this use consumed it.
    pub(crate) single_use: bool,
}

/// Why a request carrying a link was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Refusal {
    /// The request's URL cannot carry a link (a traversal, two link parameters, …).
    #[error("This link is not valid: {}.", .0)]
    Request(#[source] LinkTargetError),
    /// The token is not a download link of this Cloakroom: garbage, truncated, too large, of
    /// another type or algorithm, signed by another key, or tampered with.
    #[error("This link is not valid.")]
    Token(#[source] LinkError),
    /// A genuine link, for another URL or a method that is not a read.
    #[error("This link does not open this address (a link opens one URL, for reading only).")]
    NotForThisRequest {
        /// Its id.
        id: LinkId,
    },
    /// Past its expiry.
    #[error("This link has expired. Ask for a new one.")]
    Expired,
    /// Its maker's account is gone or disabled, or the maker logged out everywhere since.
    #[error("This link has been withdrawn. Ask for a new one.")]
    Revoked {
        /// Its id.
        id: LinkId,
    },
    /// A single-use link, used already.
    #[error("This link has been used already. Ask for a new one.")]
    Used {
        /// Its id.
        id: LinkId,
    },
    /// A store could not answer: the link is refused (fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refusal {
    /// The stable code, as the API's `error` and forward auth's `X-Cloakroom-Link` say it.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Self::Request(_) | Self::Token(_) => "invalid_link",
            Self::NotForThisRequest { .. } => "link_not_for_this_request",
            Self::Expired => "link_expired",
            Self::Revoked { .. } => "link_revoked",
            Self::Used { .. } => "link_used",
            Self::Store(_) => "store_unavailable",
        }
    }

    /// The link's id, once the token verified.
    pub(crate) fn link_id(&self) -> Option<LinkId> {
        match self {
            Self::NotForThisRequest { id } | Self::Revoked { id } | Self::Used { id } => Some(*id),
            _ => None,
        }
    }
}

/// Whether `path_and_query` has a `cloakroom_link=` parameter: only then is a request about
/// a link at all (and refused if the link is bad), else it is left to the session.
pub(crate) fn carries_link(path_and_query: &str) -> bool {
    path_and_query.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.strip_prefix(LINK_PARAMETER)
                .is_some_and(|rest| rest.starts_with('='))
        })
    })
}

/// Decides a request for `origin` + `path_and_query` (as the client sent them) with `method`,
/// which [`carries_link`]. Every check comes before the single-use record is written.
#[allow(clippy::too_many_arguments)] // What a request is, and what it is checked against.
pub(crate) async fn open(
    links: &Links,
    sessions: &SessionManager,
    accounts: &dyn AccountStore,
    origin: &Origin,
    method: &str,
    path_and_query: &str,
    now: Timestamp,
) -> Result<Opened, Refusal> {
    let (asked, token) =
        LinkTarget::from_request(origin, path_and_query).map_err(Refusal::Request)?;
    let link = links.verify::<Download>(token, now).map_err(|e| match e {
        LinkError::Expired => Refusal::Expired,
        other => Refusal::Token(other),
    })?;
    let id = link.id;
    if !link_allows_method(method) || link.claims.target() != &asked {
        return Err(Refusal::NotForThisRequest { id });
    }
    let user = link.claims.user();
    let account = match accounts.by_id(user).await? {
        Some(a) if !a.disabled => a,
        _ => return Err(Refusal::Revoked { id }),
    };
    if !link
        .claims
        .is_current(sessions.revocation_epoch(user).await?)
    {
        return Err(Refusal::Revoked { id });
    }
    let single_use = link.claims.single_use();
    if single_use && !sessions.consume_link(&id, link.expires_at).await? {
        return Err(Refusal::Used { id });
    }
    Ok(Opened {
        account,
        id,
        single_use,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_link_parameter_makes_a_request_a_link_request() {
        for yes in [
            "/f?cloakroom_link=x",
            "/f?a=1&cloakroom_link=",
            "/f?a&cloakroom_link=x&b",
        ] {
            assert!(carries_link(yes), "{yes}");
        }
        for no in [
            "/f",
            "/cloakroom_link=x",
            "/f?cloakroom_link",
            "/f?xcloakroom_link=1",
            "/f?cloakroom_linkx=1",
            "/f?a=cloakroom_link=x",
        ] {
            assert!(!carries_link(no), "{no}");
        }
    }
}
