//! [`LinkTarget`]: the one exact URL a download link opens, and the parser that finds a link in
//! a request.
//!
//! A link is bound to an origin, a path and a query, compared as the strings the client sends,
//! with no normalisation: two spellings of one resource are two resources, so what the app
//! behind the proxy serves is what the link names. For that to be safe, a path that a server
//! *would* normalise into another one is refused outright rather than bound:
//! `/files/../admin`, `/files/%2e%2e/admin`, a double-encoded `%252e%252e`, an encoded `/` or
//! `\` inside a segment, an empty segment (`/files//admin`), and anything that is not printable
//! ASCII. An app that receives a request a link opened therefore receives exactly the path the
//! link was minted for.

use std::fmt;

use crate::origin::Origin;

use super::{LinkToken, MAX_TOKEN_LEN};

/// The query parameter a download link's token travels in.
pub const LINK_PARAMETER: &str = "cloakroom_link";

/// Longest URL a link may be minted for, in bytes (the token carries it, and a token is at
/// most [`MAX_TOKEN_LEN`] bytes).
pub const MAX_TARGET_LEN: usize = 2048;

/// Why a URL cannot be bound to a link, or a request carries no usable one. Every message
/// says what to fix; none repeats the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkTargetError {
    /// Longer than [`MAX_TARGET_LEN`] (or, for a request, than a target plus a token).
    #[error("the URL is longer than {MAX_TARGET_LEN} bytes")]
    TooLong,
    /// Not an absolute `http://` or `https://` URL with a host.
    #[error("a link is for an absolute http or https URL")]
    NotHttp,
    /// A character outside printable ASCII, or a `%` not followed by two hex digits.
    #[error("the URL has characters that must be percent-encoded, or a broken percent-encoding")]
    Malformed,
    /// User name or password in the URL.
    #[error("the URL must not carry a user name or password")]
    Credentials,
    /// A `#fragment`: browsers never send it, so it cannot be bound.
    #[error("the URL must not have a #fragment")]
    Fragment,
    /// A `.` or `..` path segment, plain or percent-encoded (once or twice).
    #[error("the path has a '.' or '..' segment (plain or percent-encoded); name the file itself")]
    DotSegment,
    /// A percent-encoded `/` or `\` inside a segment, or a raw `\`.
    #[error("the path has an encoded '/' or a '\\'")]
    EncodedSeparator,
    /// Two slashes in a row.
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// The URL already carries a link parameter.
    #[error("the URL already has a {LINK_PARAMETER} parameter")]
    AlreadyALink,
    /// A request with no link parameter (or an empty one).
    #[error("the request carries no {LINK_PARAMETER}")]
    NoToken,
    /// A request with more than one link parameter: which one counts would be a guess.
    #[error("the request carries more than one {LINK_PARAMETER}")]
    ManyTokens,
}

/// The exact URL a download link opens: an origin, a path and an optional query, each as the
/// client spells it. Exists only after [`parse`](Self::parse) or
/// [`from_request`](Self::from_request) accepted it.
///
/// ```
/// use cloakroom_core::link::{LinkTarget, LinkTargetError};
/// use cloakroom_core::origin::Origin;
///
/// let target = LinkTarget::parse("https://app.example/files/report.pdf?v=2").unwrap();
/// assert_eq!(target.to_string(), "https://app.example/files/report.pdf?v=2");
///
/// // A request for it carries the token as one more parameter, which is not part of the binding.
/// let origin = Origin::parse("https://app.example").unwrap();
/// let (asked, token) =
///     LinkTarget::from_request(&origin, "/files/report.pdf?v=2&cloakroom_link=abc.def.ghi").unwrap();
/// assert_eq!((asked, token), (target, "abc.def.ghi"));
///
/// assert_eq!(
///     LinkTarget::parse("https://app.example/files/%2e%2e/admin"),
///     Err(LinkTargetError::DotSegment)
/// );
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LinkTarget {
    origin: Origin,
    path: String,
    query: Option<String>,
}

impl LinkTarget {
    /// Parses the URL a link is asked for.
    pub fn parse(url: &str) -> Result<Self, LinkTargetError> {
        if url.len() > MAX_TARGET_LEN {
            return Err(LinkTargetError::TooLong);
        }
        printable_ascii(url)?;
        if url.contains('#') {
            return Err(LinkTargetError::Fragment);
        }
        let (scheme, rest) = url.split_once("://").ok_or(LinkTargetError::NotHttp)?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(LinkTargetError::NotHttp);
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if authority.contains('@') {
            return Err(LinkTargetError::Credentials);
        }
        if authority.is_empty() || authority.contains('\\') {
            return Err(LinkTargetError::NotHttp);
        }
        let origin = Origin::parse(&format!("{scheme}://{authority}"))
            .map_err(|_| LinkTargetError::NotHttp)?;
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        let target = Self::new(origin, path, query)?;
        if let Some(q) = &target.query
            && q.split('&').any(is_link_pair)
        {
            return Err(LinkTargetError::AlreadyALink);
        }
        Ok(target)
    }

    /// Splits a request into the target it asks for and the link token it carries:
    /// `origin` as forward auth worked it out, `path_and_query` as the client sent it. The one
    /// `cloakroom_link` parameter is taken out wherever it stands; every other parameter stays,
    /// in order, as the binding.
    pub fn from_request<'a>(
        origin: &Origin,
        path_and_query: &'a str,
    ) -> Result<(Self, &'a str), LinkTargetError> {
        if path_and_query.len() > MAX_TARGET_LEN + MAX_TOKEN_LEN + LINK_PARAMETER.len() + 2 {
            return Err(LinkTargetError::TooLong);
        }
        printable_ascii(path_and_query)?;
        if path_and_query.contains('#') {
            return Err(LinkTargetError::Fragment);
        }
        let (path, query) = path_and_query
            .split_once('?')
            .ok_or(LinkTargetError::NoToken)?;
        let mut token = None;
        let mut rest = Vec::new();
        for pair in query.split('&') {
            if is_link_pair(pair) {
                if token.is_some() {
                    return Err(LinkTargetError::ManyTokens);
                }
                token = Some(&pair[LINK_PARAMETER.len() + 1..]);
            } else {
                rest.push(pair);
            }
        }
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(LinkTargetError::NoToken)?;
        let rest = rest.join("&");
        let target = Self::new(origin.clone(), path, Some(&rest))?;
        Ok((target, token))
    }

    fn new(origin: Origin, path: &str, query: Option<&str>) -> Result<Self, LinkTargetError> {
        check_path(path)?;
        let query = query.filter(|q| !q.is_empty());
        if let Some(q) = query {
            check_escapes(q)?;
        }
        let target = Self {
            origin,
            path: path.to_owned(),
            query: query.map(str::to_owned),
        };
        if target.to_string().len() > MAX_TARGET_LEN {
            return Err(LinkTargetError::TooLong);
        }
        Ok(target)
    }

    /// The origin.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The path, as spelled.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query without the link parameter, if there is one.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The URL to hand out: this target with `token` as its last parameter.
    pub fn with_token(&self, token: &LinkToken) -> String {
        let sep = if self.query.is_some() { '&' } else { '?' };
        format!("{self}{sep}{LINK_PARAMETER}={}", token.expose())
    }
}

impl fmt::Display for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin, self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for LinkTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkTarget({self})")
    }
}

/// Whether the method may use a download link: only reads (a link grants a fetch).
pub fn link_allows_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

fn is_link_pair(pair: &str) -> bool {
    pair.strip_prefix(LINK_PARAMETER)
        .is_some_and(|rest| rest.starts_with('='))
}

fn printable_ascii(s: &str) -> Result<(), LinkTargetError> {
    if s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(LinkTargetError::Malformed)
    }
}

/// Checks that every `%` starts a two-digit escape.
fn check_escapes(s: &str) -> Result<(), LinkTargetError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(LinkTargetError::Malformed);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Percent-decodes `s` (escapes already checked).
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if s[i] == b'%'
            && let (Some(Some(h)), Some(Some(l))) =
                (s.get(i + 1).map(|&b| hex(b)), s.get(i + 2).map(|&b| hex(b)))
        {
            // Two hex digits make at most 255.
            out.push(u8::try_from(h * 16 + l).unwrap_or(u8::MAX));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn check_path(path: &str) -> Result<(), LinkTargetError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(LinkTargetError::NotHttp);
    };
    check_escapes(path)?;
    if path.contains('\\') {
        return Err(LinkTargetError::EncodedSeparator);
    }
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            // Only the last segment may be empty: `/files/` is a directory, `/a//b` is refused.
            if i + 1 == segments.len() {
                continue;
            }
            return Err(LinkTargetError::EmptySegment);
        }
        // Decoded once and twice: a server (or a proxy and a server) that decodes either way
        // must not find a traversal or a separator in what we bound as one segment.
        let once = unescape(segment.as_bytes());
        let twice = unescape(&once);
        for decoded in [&once, &twice] {
            if decoded.as_slice() == b"." || decoded.as_slice() == b".." {
                return Err(LinkTargetError::DotSegment);
            }
            if decoded.iter().any(|&b| b == b'/' || b == b'\\') {
                return Err(LinkTargetError::EncodedSeparator);
            }
            if decoded.iter().any(|&b| b.is_ascii_control()) {
                return Err(LinkTargetError::Malformed);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_their_spelling() {
        for (url, shown) in [
            (
                "https://app.example/files/report.pdf",
                "https://app.example/files/report.pdf",
            ),
            (
                "https://APP.example:443/a?b=1&c",
                "https://app.example/a?b=1&c",
            ),
            ("http://app.example:8080", "http://app.example:8080/"),
            ("https://app.example?x=1", "https://app.example/?x=1"),
            ("https://app.example/a%20b/", "https://app.example/a%20b/"),
            ("https://app.example/a?", "https://app.example/a"),
        ] {
            assert_eq!(LinkTarget::parse(url).unwrap().to_string(), shown, "{url}");
        }
    }

    #[test]
    fn traversal_and_ambiguity_are_refused() {
        use LinkTargetError as E;
        for (url, why) in [
            ("https://app.example/files/../admin", E::DotSegment),
            ("https://app.example/files/./a.pdf", E::DotSegment),
            ("https://app.example/files/%2e%2e/admin", E::DotSegment),
            ("https://app.example/files/%2E%2e/admin", E::DotSegment),
            ("https://app.example/files/.%2e/admin", E::DotSegment),
            ("https://app.example/files/%252e%252e/admin", E::DotSegment),
            ("https://app.example/files/..", E::DotSegment),
            ("https://app.example/files/a%2fb", E::EncodedSeparator),
            ("https://app.example/files/a%5cb", E::EncodedSeparator),
            ("https://app.example/files/a%252fb", E::EncodedSeparator),
            ("https://app.example\\files/a", E::NotHttp),
            ("https://app.example/files/a\\b", E::EncodedSeparator),
            ("https://app.example/files//a", E::EmptySegment),
            ("https://app.example/a%00b", E::Malformed),
            ("https://app.example/a%zz", E::Malformed),
            ("https://app.example/a%2", E::Malformed),
            ("https://app.example/a b", E::Malformed),
            ("https://app.example/é", E::Malformed),
            ("https://app.example/a#top", E::Fragment),
            ("https://user:pw@app.example/a", E::Credentials),
            ("ftp://app.example/a", E::NotHttp),
            ("//app.example/a", E::NotHttp),
            ("https:///a", E::NotHttp),
            ("https://app.example/a?cloakroom_link=x", E::AlreadyALink),
        ] {
            assert_eq!(LinkTarget::parse(url), Err(why), "{url}");
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(LinkTarget::parse(&long), Err(E::TooLong));
    }

    #[test]
    fn requests_give_up_their_token_and_keep_the_rest() {
        let origin = Origin::parse("https://app.example").unwrap();
        let target = LinkTarget::parse("https://app.example/f?a=1&&b=2").unwrap();
        for request in [
            "/f?a=1&&b=2&cloakroom_link=T",
            "/f?cloakroom_link=T&a=1&&b=2",
            "/f?a=1&cloakroom_link=T&&b=2",
        ] {
            assert_eq!(
                LinkTarget::from_request(&origin, request).unwrap(),
                (target.clone(), "T"),
                "{request}"
            );
        }
        let bare = LinkTarget::parse("https://app.example/f").unwrap();
        assert_eq!(
            LinkTarget::from_request(&origin, "/f?cloakroom_link=T").unwrap(),
            (bare, "T")
        );
        use LinkTargetError as E;
        for (request, why) in [
            ("/f", E::NoToken),
            ("/f?a=1", E::NoToken),
            ("/f?cloakroom_link=", E::NoToken),
            ("/f?cloakroom_link", E::NoToken),
            ("/f?cloakroom_link=T&cloakroom_link=U", E::ManyTokens),
            ("/files/../admin?cloakroom_link=T", E::DotSegment),
            ("/files/%2e%2e/admin?cloakroom_link=T", E::DotSegment),
            ("/f?cloakroom_link=T#x", E::Fragment),
        ] {
            assert_eq!(
                LinkTarget::from_request(&origin, request),
                Err(why),
                "{request}"
            );
        }
        // Another parameter that merely starts with the name is not the link.
        let (t, token) =
            LinkTarget::from_request(&origin, "/f?cloakroom_linkx=1&cloakroom_link=T").unwrap();
        assert_eq!((t.query(), token), (Some("cloakroom_linkx=1"), "T"));
    }

    #[test]
    fn only_reads_may_use_a_link() {
        assert!(link_allows_method("GET") && link_allows_method("HEAD"));
        for m in ["POST", "PUT", "DELETE", "get", "OPTIONS"] {
            assert!(!link_allows_method(m), "{m}");
        }
    }
}
