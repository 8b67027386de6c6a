//! Is this state-changing request from our own pages? The Fetch-Metadata / `Origin` policy.
//!
//! Browsers label every request with `Sec-Fetch-Site` (a header pages cannot forge). For unsafe
//! methods Cloakroom accepts only `same-origin` (and `none`, a user-initiated navigation) and
//! refuses `same-site` too: a compromised or user-content subdomain is a classic CSRF source
//! that `SameSite` cookies do not stop. Older browsers and some privacy tools send no Fetch
//! Metadata; then the `Origin` header (or, failing that, `Referer`) must equal a configured
//! origin *exactly* — no prefix or suffix matching, so `https://app.example.com.evil.net` and
//! `http://app.example.com` are foreign, and the opaque `null` origin is refused (unless Fetch
//! Metadata vouches `same-origin`: a browser sends `Origin: null` for a form on a page of ours
//! served with `Referrer-Policy: no-referrer`). A request that
//! carries none of these headers is refused as well: every browser sends at least one of them
//! on a cross-origin unsafe request, and non-browser clients can set `Origin` explicitly.
//!
//! This is the same shape as Go 1.25's `CrossOriginProtection` and the OWASP CSRF cheat sheet's
//! "Fetch Metadata" + "verifying origin with standard headers" defences, stricter on
//! `same-site`.

use std::fmt;

/// Why a configured origin was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// Not a URL at all.
    #[error("not a valid URL")]
    Url(#[source] url::ParseError),
    /// Only `http` and `https` origins can host Cloakroom pages.
    #[error("origin must use http or https, not {0:?}")]
    Scheme(String),
    /// A URL with user info, a path, a query or a fragment is not an origin.
    #[error("an origin is scheme://host[:port] with no path, query or credentials")]
    NotAnOrigin,
}

/// A web origin (`scheme://host[:port]`) in its serialized, comparable form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin(String);

impl Origin {
    /// Parses an origin such as `https://app.example.com` or `http://localhost:8080`.
    /// A single trailing `/` is tolerated; anything else after the authority is refused.
    pub fn parse(text: &str) -> Result<Self, OriginError> {
        let url = url::Url::parse(text).map_err(OriginError::Url)?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(OriginError::Scheme(url.scheme().to_owned()));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || url.path() != "/"
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(OriginError::NotAnOrigin);
        }
        Ok(Self(url.origin().ascii_serialization()))
    }

    /// The origin of any absolute http(s) URL (its path and query are ignored).
    pub fn of_url(text: &str) -> Option<Self> {
        Self::of_parsed_url(&url::Url::parse(text).ok()?)
    }

    /// The origin of an already parsed URL, if it is `http(s)`: for callers that parsed it
    /// once for other reasons too.
    pub fn of_parsed_url(url: &url::Url) -> Option<Self> {
        match url.origin() {
            o @ url::Origin::Tuple(..) if matches!(url.scheme(), "http" | "https") => {
                Some(Self(o.ascii_serialization()))
            }
            _ => None,
        }
    }

    /// The serialized origin, as browsers send it in `Origin`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the origin is `https`.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The host, as `url::Url::host_str` spells it (`[::1]` for an IPv6 address), without
    /// the port.
    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        match rest.find(']') {
            Some(end) if rest.starts_with('[') => &rest[..=end],
            _ => rest.split_once(':').map_or(rest, |(host, _)| host),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({})", self.0)
    }
}

/// Whether an HTTP method is "safe" (RFC 9110 §9.2.1) and so exempt from CSRF checks.
pub fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// What a request says about where it came from. Header values are raw bytes, exactly as
/// received; `None` means the header was absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSource<'a> {
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<&'a [u8]>,
    /// `Origin`.
    pub origin: Option<&'a [u8]>,
    /// `Referer`.
    pub referer: Option<&'a [u8]>,
}

/// Why a state-changing request was judged cross-origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CrossOriginRefusal {
    /// `Sec-Fetch-Site: cross-site`.
    #[error("cross-site request refused (Sec-Fetch-Site: cross-site)")]
    CrossSite,
    /// `Sec-Fetch-Site: same-site` — another origin on the same site, e.g. a sibling subdomain.
    #[error("request from another origin of the same site refused (Sec-Fetch-Site: same-site)")]
    SameSite,
    /// A `Sec-Fetch-Site` value that is not one of the four the standard defines.
    #[error("unrecognised Sec-Fetch-Site value refused")]
    UnknownFetchSite,
    /// `Origin: null` (sandboxed frames, some redirects, `data:` URLs).
    #[error("opaque origin refused (Origin: null)")]
    NullOrigin,
    /// `Origin` or `Referer` names an origin that is not ours.
    #[error("request from a foreign origin refused")]
    ForeignOrigin,
    /// Neither Fetch Metadata nor `Origin` nor `Referer`.
    #[error("request refused: no Sec-Fetch-Site, Origin or Referer header says where it came from")]
    NoSourceInformation,
}

/// The set of origins whose pages may send state-changing requests.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Vec<Origin>,
}

impl OriginPolicy {
    /// A policy accepting exactly `origin`.
    pub fn new(origin: Origin) -> Self {
        Self {
            allowed: vec![origin],
        }
    }

    /// Also accepts `origin` (for example a second public hostname).
    #[must_use]
    pub fn with_allowed(mut self, origin: Origin) -> Self {
        if !self.allowed.contains(&origin) {
            self.allowed.push(origin);
        }
        self
    }

    /// The accepted origins; the first is the primary one.
    pub fn allowed(&self) -> &[Origin] {
        &self.allowed
    }

    fn is_allowed(&self, serialized: &[u8]) -> bool {
        self.allowed.iter().any(|o| o.0.as_bytes() == serialized)
    }

    /// Judges a state-changing request (call it only for unsafe methods).
    pub fn check(&self, source: RequestSource<'_>) -> Result<(), CrossOriginRefusal> {
        if let Some(site) = source.sec_fetch_site {
            match site {
                b"same-origin" | b"none" => {}
                b"cross-site" => return Err(CrossOriginRefusal::CrossSite),
                b"same-site" => return Err(CrossOriginRefusal::SameSite),
                _ => return Err(CrossOriginRefusal::UnknownFetchSite),
            }
            // The browser vouches for same-origin; a present Origin must still agree, which
            // also catches a page served under a hostname other than the configured one.
            // `null` names no other host: it is what a browser sends for a form on one of our
            // own pages served with `Referrer-Policy: no-referrer` (an opaque origin — a
            // sandboxed frame, a `data:` URL — is never `same-origin` with anything).
            return match (site, source.origin) {
                (_, None) | (b"same-origin", Some(b"null")) => Ok(()),
                (_, Some(origin)) => self.check_origin(origin),
            };
        }
        if let Some(origin) = source.origin {
            return self.check_origin(origin);
        }
        if let Some(referer) = source.referer {
            let referer = std::str::from_utf8(referer).ok().and_then(Origin::of_url);
            return match referer {
                Some(o) if self.is_allowed(o.0.as_bytes()) => Ok(()),
                _ => Err(CrossOriginRefusal::ForeignOrigin),
            };
        }
        Err(CrossOriginRefusal::NoSourceInformation)
    }

    fn check_origin(&self, origin: &[u8]) -> Result<(), CrossOriginRefusal> {
        if origin == b"null" {
            Err(CrossOriginRefusal::NullOrigin)
        } else if self.is_allowed(origin) {
            Ok(())
        } else {
            Err(CrossOriginRefusal::ForeignOrigin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OriginPolicy {
        OriginPolicy::new(Origin::parse("https://app.example.com").unwrap())
    }

    fn src<'a>(
        site: Option<&'a str>,
        origin: Option<&'a str>,
        referer: Option<&'a str>,
    ) -> RequestSource<'a> {
        RequestSource {
            sec_fetch_site: site.map(str::as_bytes),
            origin: origin.map(str::as_bytes),
            referer: referer.map(str::as_bytes),
        }
    }

    #[test]
    fn host_is_the_url_host_without_the_port() {
        for (text, host) in [
            ("https://login.example.com", "login.example.com"),
            ("http://localhost:8080", "localhost"),
            ("http://[::1]:8080", "[::1]"),
            ("https://127.0.0.1", "127.0.0.1"),
        ] {
            let origin = Origin::parse(text).unwrap();
            assert_eq!(origin.host(), host);
            let url = url::Url::parse(text).unwrap();
            assert_eq!(Some(origin.host()), url.host_str(), "{text}");
        }
    }

    #[test]
    fn origin_parsing_normalises_and_refuses_non_origins() {
        assert_eq!(
            Origin::parse("https://App.Example.com/").unwrap().as_str(),
            "https://app.example.com"
        );
        assert_eq!(
            Origin::parse("https://a.com:443").unwrap().as_str(),
            "https://a.com"
        );
        assert_eq!(
            Origin::parse("http://localhost:8080").unwrap().as_str(),
            "http://localhost:8080"
        );
        assert!(Origin::parse("https://a.com/path").is_err());
        assert!(Origin::parse("https://u:p@a.com").is_err());
        assert!(Origin::parse("ftp://a.com").is_err());
        assert!(Origin::parse("a.com").is_err());
    }

    #[test]
    fn fetch_metadata_decides_first() {
        let p = policy();
        assert_eq!(p.check(src(Some("same-origin"), None, None)), Ok(()));
        assert_eq!(p.check(src(Some("none"), None, None)), Ok(()));
        assert_eq!(
            p.check(src(
                Some("cross-site"),
                Some("https://app.example.com"),
                None
            )),
            Err(CrossOriginRefusal::CrossSite)
        );
        assert_eq!(
            p.check(src(Some("same-site"), None, None)),
            Err(CrossOriginRefusal::SameSite)
        );
        assert_eq!(
            p.check(src(Some("Same-Origin"), None, None)),
            Err(CrossOriginRefusal::UnknownFetchSite)
        );
        assert_eq!(
            p.check(src(Some("same-origin"), Some("https://evil.net"), None)),
            Err(CrossOriginRefusal::ForeignOrigin)
        );
    }

    #[test]
    fn origin_must_match_exactly() {
        let p = policy();
        assert_eq!(
            p.check(src(None, Some("https://app.example.com"), None)),
            Ok(())
        );
        for bad in [
            "https://app.example.com.evil.net",
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://evil.app.example.com",
            "https://app.example.co",
            "https://app.example.com/",
            "",
        ] {
            assert_eq!(
                p.check(src(None, Some(bad), None)),
                Err(CrossOriginRefusal::ForeignOrigin),
                "{bad}"
            );
        }
        assert_eq!(
            p.check(src(None, Some("null"), None)),
            Err(CrossOriginRefusal::NullOrigin)
        );
    }

    /// A page sent with `Referrer-Policy: no-referrer` (the password-reset page, whose
    /// address holds a token) makes the browser send `Origin: null` on its own form's POST,
    /// while `Sec-Fetch-Site` still says `same-origin`. Regression: that form was refused
    /// ("came from a page with no origin"), seen in Chromium.
    #[test]
    fn a_null_origin_vouched_same_origin_by_fetch_metadata_is_ours() {
        let p = policy();
        assert_eq!(
            p.check(src(Some("same-origin"), Some("null"), None)),
            Ok(())
        );
        // A sandboxed frame or a data: URL has an opaque origin of its own: the browser
        // calls it cross-site, and without Fetch Metadata nothing vouches for a null origin.
        // `none` (typed in the address bar, a bookmark) comes with no page origin at all: a
        // `null` with it vouches for nothing.
        for site in ["cross-site", "same-site", "none"] {
            assert!(
                p.check(src(Some(site), Some("null"), None)).is_err(),
                "{site}"
            );
        }
        assert_eq!(
            p.check(src(None, Some("null"), None)),
            Err(CrossOriginRefusal::NullOrigin)
        );
    }

    #[test]
    fn referer_is_the_last_resort() {
        let p = policy();
        assert_eq!(
            p.check(src(None, None, Some("https://app.example.com/account?x=1"))),
            Ok(())
        );
        assert_eq!(
            p.check(src(None, None, Some("https://app.example.com.evil.net/"))),
            Err(CrossOriginRefusal::ForeignOrigin)
        );
        assert_eq!(
            p.check(src(None, None, Some("not a url"))),
            Err(CrossOriginRefusal::ForeignOrigin)
        );
        assert_eq!(
            p.check(src(None, None, None)),
            Err(CrossOriginRefusal::NoSourceInformation)
        );
    }

    #[test]
    fn extra_origins_are_accepted() {
        let p = policy().with_allowed(Origin::parse("http://localhost:8080").unwrap());
        assert_eq!(
            p.check(src(None, Some("http://localhost:8080"), None)),
            Ok(())
        );
        assert_eq!(p.allowed().len(), 2);
    }

    #[test]
    fn safe_methods() {
        assert!(is_safe_method("GET"));
        assert!(is_safe_method("HEAD"));
        assert!(!is_safe_method("POST"));
        assert!(!is_safe_method("get"));
    }
}
